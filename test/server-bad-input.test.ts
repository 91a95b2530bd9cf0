/**
 * Hostile and malformed requests, interleaved with good ones, against a real server: every bad
 * request gets a 4xx with OpenAI's error shape and a message, every good one completes, and the
 * server stays healthy throughout.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { postJson, raw, startServer, storiesWithChatTemplate, type RawResponse, type TestServer } from './helpers/server.js';

interface BadCase {
  name: string;
  path?: string;
  /** A JSON value (sent as JSON), or exact bytes / text. */
  json?: unknown;
  body?: string | Buffer;
  method?: string;
  headers?: Record<string, string>;
  /** Exact status expected; any 4xx otherwise. */
  status?: number;
  /** The error's param, when the request names one field. */
  param?: string;
}

const C = '/v1/completions';
const CHAT = '/v1/chat/completions';
const msgs = [{ role: 'user', content: 'Hi' }];
const ok = { prompt: 'Once upon a time', max_tokens: 2 };
const nest = (depth: number, leaf: string): string => '['.repeat(depth) + leaf + ']'.repeat(depth);

const BAD: BadCase[] = [
  // Not JSON, or not an object.
  { name: 'truncated JSON', body: '{"prompt": "Once"' },
  { name: 'trailing comma', body: '{"prompt": "Once",}' },
  { name: 'single quotes', body: "{'prompt': 'Once'}" },
  { name: 'NaN literal', body: '{"prompt": "Once", "temperature": NaN}' },
  { name: 'empty body', body: '' },
  { name: 'JSON null', json: null },
  { name: 'JSON list', json: [ok] },
  { name: 'JSON string', json: 'Once upon a time' },
  { name: 'JSON number', json: 42 },
  { name: 'plain text with a text/plain type', body: 'hello', headers: { 'content-type': 'text/plain' } },
  // Bytes that are not text.
  { name: 'invalid UTF-8 in the body', body: Buffer.from([0x7b, 0x22, 0x70, 0x72, 0x6f, 0x6d, 0x70, 0x74, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]) },
  { name: 'overlong UTF-8 encoding', body: Buffer.concat([Buffer.from('{"prompt":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')]) },
  { name: 'lone surrogate escape in the prompt', body: '{"prompt": "a\\ud800b", "max_tokens": 2}', param: 'prompt' },
  { name: 'lone surrogate in a message', path: CHAT, body: '{"messages": [{"role": "user", "content": "\\udc00"}]}', param: 'messages' },
  // Deep and huge.
  { name: 'deeply nested prompt', body: `{"prompt": ${nest(100_000, '1')}}` },
  { name: 'deeply nested unknown field', body: `{"prompt": "Once", "x": ${nest(5000, '{}')}}` },
  { name: 'deeply nested stop', body: `{"prompt": "Once", "stop": ${nest(200, '"a"')}}` },
  { name: 'deeply nested logit_bias', body: `{"prompt": "Once", "logit_bias": ${nest(200, '1')}}` },
  { name: 'body over the size limit', body: JSON.stringify({ prompt: 'x'.repeat(17 * 1024 * 1024) }), status: 413 },
  { name: 'text far longer than the context', json: { prompt: 'Once upon a time '.repeat(200_000) }, param: 'prompt' },
  { name: 'token prompt longer than the context', json: { prompt: Array.from({ length: 600 }, () => 5) } },
  // The prompt field.
  { name: 'prompt missing', json: { max_tokens: 2 }, param: 'prompt' },
  { name: 'prompt is a number', json: { prompt: 5 }, param: 'prompt' },
  { name: 'prompt is an object', json: { prompt: { text: 'x' } }, param: 'prompt' },
  { name: 'prompt is empty', json: { prompt: '' }, param: 'prompt' },
  { name: 'prompt is an empty list', json: { prompt: [] }, param: 'prompt' },
  { name: 'prompt mixes types', json: { prompt: ['a', 1] }, param: 'prompt' },
  { name: 'negative token id', json: { prompt: [1, -5] }, param: 'prompt' },
  { name: 'token id beyond the vocabulary', json: { prompt: [1, 1e9] }, param: 'prompt' },
  { name: 'fractional token id', json: { prompt: [1, 2.5] }, param: 'prompt' },
  { name: 'empty token list in a batch', json: { prompt: [[1], []] }, param: 'prompt[1]' },
  { name: 'suffix', json: { ...ok, suffix: 'The end.' }, param: 'suffix' },
  // Out-of-range and wrongly typed sampling fields.
  { name: 'max_tokens negative', json: { ...ok, max_tokens: -1 }, param: 'max_tokens' },
  { name: 'max_tokens 1e308', json: { ...ok, max_tokens: 1e308 }, param: 'max_tokens' },
  { name: 'max_tokens overflows to Infinity', body: '{"prompt": "Once", "max_tokens": 1e999}', param: 'max_tokens' },
  { name: 'max_tokens as a string', json: { ...ok, max_tokens: '10' }, param: 'max_tokens' },
  { name: 'max_tokens fractional', json: { ...ok, max_tokens: 1.5 }, param: 'max_tokens' },
  { name: 'max_tokens beyond the context', json: { ...ok, max_tokens: 100_000 }, param: 'max_tokens' },
  { name: 'temperature negative', json: { ...ok, temperature: -1 }, param: 'temperature' },
  { name: 'temperature Infinity', body: '{"prompt": "Once", "temperature": -1e999}', param: 'temperature' },
  { name: 'temperature as a string', json: { ...ok, temperature: 'hot' }, param: 'temperature' },
  { name: 'top_p 0', json: { ...ok, top_p: 0 }, param: 'top_p' },
  { name: 'top_p above 1', json: { ...ok, top_p: 1.5 }, param: 'top_p' },
  { name: 'top_k -5', json: { ...ok, top_k: -5 }, param: 'top_k' },
  { name: 'top_k fractional', json: { ...ok, top_k: 1.5 }, param: 'top_k' },
  { name: 'min_p 2', json: { ...ok, min_p: 2 }, param: 'min_p' },
  { name: 'n 0', json: { ...ok, n: 0 }, param: 'n' },
  { name: 'n one million', json: { ...ok, n: 1_000_000 }, param: 'n' },
  { name: 'best_of below n', json: { ...ok, n: 3, best_of: 2 }, param: 'best_of' },
  { name: 'logprobs 100', json: { ...ok, logprobs: 100 }, param: 'logprobs' },
  { name: 'logprobs negative', json: { ...ok, logprobs: -1 }, param: 'logprobs' },
  { name: 'presence_penalty 5', json: { ...ok, presence_penalty: 5 }, param: 'presence_penalty' },
  { name: 'frequency_penalty -3', json: { ...ok, frequency_penalty: -3 }, param: 'frequency_penalty' },
  { name: 'repetition_penalty 0', json: { ...ok, repetition_penalty: 0 }, param: 'repetition_penalty' },
  { name: 'seed as a string', json: { ...ok, seed: 'abc' }, param: 'seed' },
  { name: 'seed beyond 2^53', json: { ...ok, seed: 1e30 }, param: 'seed' },
  { name: 'stop as a number', json: { ...ok, stop: 123 }, param: 'stop' },
  { name: 'stop with numbers', json: { ...ok, stop: [1, 2] }, param: 'stop' },
  { name: 'stop with an empty string', json: { ...ok, stop: [''] }, param: 'stop' },
  { name: 'stop with 1000 strings', json: { ...ok, stop: Array.from({ length: 1000 }, (_, i) => `s${i}`) }, param: 'stop' },
  { name: 'stop_token_ids with strings', json: { ...ok, stop_token_ids: ['a'] }, param: 'stop_token_ids' },
  { name: 'logit_bias with a non-id key', json: { ...ok, logit_bias: { abc: 1 } }, param: 'logit_bias' },
  { name: 'logit_bias out of range', json: { ...ok, logit_bias: { '5': 1000 } }, param: 'logit_bias' },
  { name: 'logit_bias as a list', json: { ...ok, logit_bias: [1, 2] }, param: 'logit_bias' },
  { name: 'min_tokens above max_tokens', json: { ...ok, min_tokens: 10 }, param: 'min_tokens' },
  { name: 'ignore_eos as a string', json: { ...ok, ignore_eos: 'yes' }, param: 'ignore_eos' },
  { name: 'stream as a string', json: { ...ok, stream: 'yes' }, param: 'stream' },
  { name: 'stream_options without stream', json: { ...ok, stream_options: { include_usage: true } }, param: 'stream_options' },
  { name: 'echo as a string', json: { ...ok, echo: 'true' }, param: 'echo' },
  { name: 'beam search without a beam width', json: { ...ok, use_beam_search: true, temperature: 0 }, param: 'best_of' },
  { name: 'beam search with sampling', json: { ...ok, use_beam_search: true, best_of: 2, temperature: 0.5 }, param: 'temperature' },
  { name: 'response_format of an unknown type', json: { ...ok, response_format: { type: 'yaml' } }, param: 'response_format' },
  { name: 'json_schema without its schema', json: { ...ok, response_format: { type: 'json_schema', json_schema: { name: 'x' } } }, param: 'response_format' },
  { name: 'a schema that does not compile', json: { ...ok, response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { $ref: '#/$defs/missing' } } } }, param: 'response_format' },
  { name: 'a malformed regex', json: { ...ok, structured_outputs: { regex: '(ab' } }, param: 'structured_outputs' },
  { name: 'a malformed grammar', json: { ...ok, guided_grammar: 'root ::= ("a"' }, param: 'guided_grammar' },
  { name: 'two constraints', json: { ...ok, guided_regex: 'a+', guided_choice: ['a'] }, param: 'guided_choice' },
  { name: 'unknown model', json: { ...ok, model: 'gpt-4' }, status: 404, param: 'model' },
  { name: 'model as a number', json: { ...ok, model: 42 }, param: 'model' },
  { name: 'more prompts than the queue holds', json: { prompt: Array.from({ length: 300 }, () => [1]), max_tokens: 1 }, param: 'prompt' },
  // Chat.
  { name: 'chat: messages missing', path: CHAT, json: {}, param: 'messages' },
  { name: 'chat: messages is a string', path: CHAT, json: { messages: 'Hi' }, param: 'messages' },
  { name: 'chat: messages empty', path: CHAT, json: { messages: [] }, param: 'messages' },
  { name: 'chat: message without role', path: CHAT, json: { messages: [{ content: 'Hi' }] }, param: 'messages' },
  { name: 'chat: role is a number', path: CHAT, json: { messages: [{ role: 1, content: 'Hi' }] }, param: 'messages' },
  { name: 'chat: content is a number', path: CHAT, json: { messages: [{ role: 'user', content: 7 }] }, param: 'messages' },
  { name: 'chat: image content', path: CHAT, json: { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'http://x/y.png' } }] }] }, param: 'messages' },
  { name: 'chat: text part without text', path: CHAT, json: { messages: [{ role: 'user', content: [{ type: 'text' }] }] }, param: 'messages' },
  { name: 'chat: top_logprobs without logprobs', path: CHAT, json: { messages: msgs, top_logprobs: 2 }, param: 'top_logprobs' },
  { name: 'chat: top_logprobs 50', path: CHAT, json: { messages: msgs, logprobs: true, top_logprobs: 50 }, param: 'top_logprobs' },
  { name: 'chat: logprobs as a number', path: CHAT, json: { messages: msgs, logprobs: 5 }, param: 'logprobs' },
  { name: 'chat: max_completion_tokens 0', path: CHAT, json: { messages: msgs, max_completion_tokens: 0 }, param: 'max_completion_tokens' },
  { name: 'chat: tool_choice auto without --enable-auto-tool-choice', path: CHAT, json: { messages: msgs, tools: [{ type: 'function', function: { name: 'f', parameters: {} } }], tool_choice: 'auto' }, param: 'tool_choice' },
  { name: 'chat: tool_choice names an unknown function', path: CHAT, json: { messages: msgs, tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: { type: 'function', function: { name: 'g' } } }, param: 'tool_choice' },
  { name: 'chat: a tool without a name', path: CHAT, json: { messages: msgs, tools: [{ type: 'function', function: {} }], tool_choice: 'none' }, param: 'tools' },
  { name: 'chat: tool call arguments that are not JSON', path: CHAT, json: { messages: [...msgs, { role: 'assistant', tool_calls: [{ id: 'a', type: 'function', function: { name: 'f', arguments: '{' } }] }] }, param: 'messages' },
  { name: 'chat: greedy with n 2', path: CHAT, json: { messages: msgs, temperature: 0, n: 2 }, param: 'n' },
  { name: 'chat: continue_final_message with add_generation_prompt', path: CHAT, json: { messages: msgs, continue_final_message: true, add_generation_prompt: true }, param: 'continue_final_message' },
  { name: 'chat: per-request chat_template', path: CHAT, json: { messages: msgs, chat_template: '{{ 7 }}' }, param: 'chat_template' },
  { name: 'chat: chat_template_kwargs as a list', path: CHAT, json: { messages: msgs, chat_template_kwargs: [1] }, param: 'chat_template_kwargs' },
  // Other routes.
  { name: 'tokenize: neither prompt nor messages', path: '/tokenize', json: {} },
  { name: 'tokenize: prompt is a list', path: '/tokenize', json: { prompt: [1, 2] }, param: 'prompt' },
  { name: 'detokenize: ids beyond the vocabulary', path: '/detokenize', json: { tokens: [1, 99999999] }, param: 'tokens' },
  { name: 'detokenize: tokens is a string', path: '/detokenize', json: { tokens: '1,2' }, param: 'tokens' },
  { name: 'GET on a POST route', path: C, method: 'GET', status: 404 },
  { name: 'unknown route', path: '/v1/engines/davinci/completions', json: ok, status: 404 },
  { name: 'malformed URL escape', path: '/v1/%zz', json: ok },
];

/** Valid requests, some of them unusual: all must complete with 200. */
const GOOD: Array<{ name: string; path: string; json: unknown; stream?: boolean }> = [
  { name: 'completion', path: C, json: { prompt: 'Once upon a time', max_tokens: 5, temperature: 0 } },
  { name: 'streamed completion', path: C, json: { prompt: 'Once upon a time', max_tokens: 5, stream: true, stream_options: { include_usage: true } }, stream: true },
  { name: 'chat', path: CHAT, json: { messages: msgs, max_tokens: 5 } },
  { name: 'streamed chat', path: CHAT, json: { messages: msgs, max_tokens: 5, stream: true }, stream: true },
  { name: 'emoji and CJK prompt', path: C, json: { prompt: 'Once 😀 upon 時間', max_tokens: 3 } },
  { name: 'unknown fields and a __proto__ key', path: C, json: JSON.parse('{"prompt": "Once", "max_tokens": 2, "__proto__": {"polluted": true}, "future_field": [1, 2]}') },
  { name: 'token ids, n 2, logprobs', path: C, json: { prompt: [1, 403, 407], max_tokens: 3, n: 2, logprobs: 2, seed: 5 } },
  { name: 'chat with logprobs and content parts', path: CHAT, json: { messages: [{ role: 'user', content: [{ type: 'text', text: 'Hi' }] }], max_tokens: 3, logprobs: true, top_logprobs: 3 } },
  { name: 'tokenize', path: '/tokenize', json: { prompt: 'Once upon a time' } },
  { name: 'echo only (max_tokens 0)', path: C, json: { prompt: 'Once upon a time', max_tokens: 0, echo: true } },
  { name: 'stop strings with emoji', path: C, json: { prompt: 'Once upon a time', max_tokens: 20, stop: ['😀', '.'] } },
  { name: 'structured output (regex)', path: C, json: { prompt: 'Once', max_tokens: 6, guided_regex: '[a-z]{1,3}' } },
  { name: 'null optional fields', path: C, json: { prompt: 'Once', max_tokens: 2, temperature: null, top_p: null, stop: null, seed: null, logprobs: null, user: null } },
];

function assertGood(r: RawResponse, name: string, stream: boolean): void {
  assert.equal(r.status, 200, `${name}: ${r.text.slice(0, 300)}`);
  if (stream) {
    assert.ok(r.text.trimEnd().endsWith('data: [DONE]'), `${name}: stream ends with [DONE]`);
    assert.ok(!r.text.includes('"error"'), `${name}: no error event`);
  } else {
    const body = r.json() as Record<string, unknown>;
    assert.ok(body['choices'] !== undefined || body['tokens'] !== undefined, name);
  }
}

describe('bad input', () => {
  let s: TestServer;

  before(async () => {
    s = await startServer({ model: storiesWithChatTemplate(), maxWaitingRequests: 256 }, { servedModelName: 'stories' });
  });
  after(async () => {
    await s?.close();
  });

  test(`${BAD.length} malformed or hostile requests get 4xx with a message; good ones interleaved complete`, async () => {
    assert.ok(BAD.length >= 50);
    let good = 0;
    for (let i = 0; i < BAD.length; i++) {
      const c = BAD[i]!;
      const body = c.json !== undefined ? JSON.stringify(c.json) : c.body;
      const r = await raw(s.url, { method: c.method ?? (body === undefined ? 'GET' : 'POST'), path: c.path ?? C, body, headers: c.headers });
      if (c.status !== undefined) assert.equal(r.status, c.status, `${c.name}: ${r.text.slice(0, 300)}`);
      else assert.ok(r.status >= 400 && r.status < 500, `${c.name}: status ${r.status}: ${r.text.slice(0, 300)}`);
      const err = (r.json() as { error?: { message?: unknown; type?: unknown; param?: unknown } }).error;
      assert.ok(err && typeof err.message === 'string' && err.message.length > 0, `${c.name}: error message in ${r.status} ${r.text.slice(0, 300)}`);
      assert.equal(typeof err.type, 'string', c.name);
      if (c.param !== undefined) assert.equal(err.param, c.param, `${c.name}: ${err.message as string}`);

      if (i % 2 === 1) {
        const g = GOOD[good++ % GOOD.length]!;
        assertGood(await postJson(s.url, g.path, { model: 'stories', ...(g.json as object) }), g.name, g.stream ?? false);
      }
    }
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined, 'no prototype pollution');
    assert.equal((await raw(s.url, { path: '/health' })).status, 200);
    assert.equal(s.engine.numInFlight, 0);
    assert.ok(!s.logs.some((l) => l.startsWith('error:')), s.logs.filter((l) => l.startsWith('error:')).join('\n'));
    assert.ok(s.logs.some((l) => l.includes('"future_field"')), 'unknown fields are logged');
  });

  test('every good request completes, also when sent all at once', async () => {
    const rs = await Promise.all(GOOD.map((g) => postJson(s.url, g.path, { model: 'stories', ...(g.json as object) })));
    rs.forEach((r, i) => assertGood(r, GOOD[i]!.name, GOOD[i]!.stream ?? false));
    assert.equal((await raw(s.url, { path: '/health' })).status, 200);
  });
});
