/**
 * The OpenAI-compatible server. First the request mapping (OpenAI request → prompt ids +
 * SamplingParams) without an engine; then end to end: a real server on a free port around an
 * engine started once for this file, driven by the official `openai` client and by raw HTTP.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import type { Worker } from 'node:worker_threads';
import OpenAI from 'openai';
import { ContextLengthError, InvalidRequestError, NotFoundError, PagewiseError } from '../src/errors.js';
import { completionLogprobs, chatLogprobs, TokenStrings } from '../src/server/format.js';
import { buckets125 } from '../src/server/metrics.js';
import { parseChatRequest, parseCompletionRequest, parseDetokenizeRequest, parseTokenizeRequest } from '../src/server/request.js';
import { toHttpError } from '../src/server/errors.js';
import { PagewiseTokenizer } from '../src/tokenizer/tokenizer.js';
import { fixturePath } from './helpers/fixtures.js';
import { metricValue, postJson, raw, requestContext, startServer, storiesWithChatTemplate, waitFor, type TestServer } from './helpers/server.js';

const qwen = PagewiseTokenizer.fromDir(fixturePath('qwen2-tiny'));
const stories = PagewiseTokenizer.fromDir(fixturePath('stories260k'));
const ctx = requestContext(qwen);

/** Assert `fn` throws a PagewiseError with this status whose param (and message) match. */
function rejects(fn: () => unknown, status: number, param: string | null, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof PagewiseError, `expected a PagewiseError, got ${String(e)}`);
    assert.equal(e.status, status, e.message);
    if (param !== null) assert.equal(e.param, param, e.message);
    if (message) assert.match(e.message, message);
    return true;
  });
}

describe('request mapping: /v1/completions', () => {
  test('a text prompt is tokenized with BOS; defaults are vLLM\'s (max_tokens 16)', () => {
    const r = parseCompletionRequest({ model: 'test-model', prompt: 'Once upon a time' }, ctx);
    assert.deepEqual(r.prompts, [{ tokenIds: [1, 403, 407, 261, 378], text: 'Once upon a time' }]);
    assert.equal(r.params.length, 1);
    const p = r.params[0]!;
    assert.equal(p.maxTokens, 16);
    assert.equal(p.temperature, 1);
    assert.equal(p.n, 1);
    assert.equal(p.logprobs, null);
    assert.equal(r.stream, false);
    assert.equal(r.model, 'test-model');
    assert.deepEqual(r.ignoredFields, []);
  });

  test('prompt forms: list of strings, token ids, list of token id lists', () => {
    const a = parseCompletionRequest({ prompt: ['Once', 'upon'] }, ctx);
    assert.equal(a.prompts.length, 2);
    assert.equal(a.prompts[1]!.text, 'upon');
    const b = parseCompletionRequest({ prompt: [5, 6, 7] }, ctx);
    assert.deepEqual(b.prompts, [{ tokenIds: [5, 6, 7], text: null }]);
    const c = parseCompletionRequest({ prompt: [[5], [6, 7]] }, ctx);
    assert.deepEqual(
      c.prompts.map((p) => p.tokenIds),
      [[5], [6, 7]],
    );
    assert.equal(c.params.length, 2);
  });

  test('bad prompts name the prompt field', () => {
    rejects(() => parseCompletionRequest({}, ctx), 400, 'prompt', /required/);
    rejects(() => parseCompletionRequest({ prompt: '' }, ctx), 400, 'prompt', /empty/);
    rejects(() => parseCompletionRequest({ prompt: [] }, ctx), 400, 'prompt', /empty/);
    rejects(() => parseCompletionRequest({ prompt: [1, 'a'] }, ctx), 400, 'prompt', /mixing/);
    rejects(() => parseCompletionRequest({ prompt: [1, 2.5] }, ctx), 400, 'prompt', /integer/);
    rejects(() => parseCompletionRequest({ prompt: [1, 512] }, ctx), 400, 'prompt', /outside the vocabulary/);
    rejects(() => parseCompletionRequest({ prompt: [[1], []] }, ctx), 400, 'prompt[1]', /empty/);
    rejects(() => parseCompletionRequest({ prompt: 42 }, ctx), 400, 'prompt');
    rejects(() => parseCompletionRequest({ prompt: 'a\ud800b' }, ctx), 400, 'prompt', /surrogate/);
  });

  test('suffix is rejected clearly; unknown fields are reported, not fatal', () => {
    rejects(() => parseCompletionRequest({ prompt: 'a', suffix: 'b' }, ctx), 400, 'suffix', /not supported/);
    assert.doesNotThrow(() => parseCompletionRequest({ prompt: 'a', suffix: null }, ctx));
    const r = parseCompletionRequest({ prompt: 'a', foo: 1, bar: { x: 1 }, user: 'me' }, ctx);
    assert.deepEqual(r.ignoredFields, ['foo', 'bar']);
  });

  test('OpenAI and vLLM sampling fields map onto SamplingParams', () => {
    const r = parseCompletionRequest(
      {
        prompt: 'Once',
        max_tokens: 7,
        n: 3,
        temperature: 0.5,
        top_p: 0.9,
        top_k: 40,
        min_p: 0.05,
        presence_penalty: 0.5,
        frequency_penalty: -0.5,
        repetition_penalty: 1.2,
        seed: 1234,
        stop: ['.', '!'],
        stop_token_ids: [2, 5],
        include_stop_str_in_output: true,
        ignore_eos: true,
        min_tokens: 2,
        logprobs: 3,
        logit_bias: { '5': -100 },
        skip_special_tokens: false,
        user: 'someone',
      },
      ctx,
    );
    const p = r.params[0]!;
    assert.equal(p.maxTokens, 7);
    assert.equal(p.n, 3);
    assert.equal(p.temperature, 0.5);
    assert.equal(p.topP, 0.9);
    assert.equal(p.topK, 40);
    assert.equal(p.minP, 0.05);
    assert.equal(p.presencePenalty, 0.5);
    assert.equal(p.frequencyPenalty, -0.5);
    assert.equal(p.repetitionPenalty, 1.2);
    assert.equal(p.seed, 1234);
    assert.deepEqual(p.stop, ['.', '!']);
    assert.deepEqual(p.stopTokenIds, [2, 5]);
    assert.equal(p.includeStopStrInOutput, true);
    assert.equal(p.ignoreEos, true);
    assert.equal(p.minTokens, 2);
    assert.equal(p.logprobs, 3);
    assert.equal(r.logprobs, 3);
    assert.deepEqual([...p.logitBias!.entries()], [[5, -100]]);
    assert.equal(p.skipSpecialTokens, false);
  });

  test('max_tokens: null means the rest of the context (capped by the KV pool and max_new_tokens)', () => {
    const r = parseCompletionRequest({ prompt: 'Once upon a time', max_tokens: null }, ctx);
    assert.equal(r.params[0]!.maxTokens, 512 - 5);
    const small = requestContext(qwen, { kvCacheTokens: 100 });
    assert.equal(parseCompletionRequest({ prompt: 'Once upon a time', max_tokens: null }, small).params[0]!.maxTokens, 95);
    const capped = requestContext(qwen, { maxNewTokens: 30 });
    assert.equal(parseCompletionRequest({ prompt: 'Once', max_tokens: null }, capped).params[0]!.maxTokens, 30);
    // Per prompt: each prompt's own length.
    const two = parseCompletionRequest({ prompt: [[1], [1, 2, 3]], max_tokens: null }, ctx);
    assert.deepEqual(
      two.params.map((p) => p.maxTokens),
      [511, 509],
    );
    rejects(() => parseCompletionRequest({ prompt: Array.from({ length: 512 }, () => 5), max_tokens: null }, ctx), 400, 'prompt', /maximum context length/);
  });

  test('echo with max_tokens 0 returns the prompt only; max_tokens 0 without echo is an error', () => {
    const r = parseCompletionRequest({ prompt: 'Once', echo: true, max_tokens: 0, logprobs: 1 }, ctx);
    assert.equal(r.echoOnly, true);
    assert.equal(r.params[0]!.maxTokens, 1);
    assert.equal(r.params[0]!.promptLogprobs, 1, 'echo with logprobs returns the prompt\'s logprobs too');
    rejects(() => parseCompletionRequest({ prompt: 'Once', max_tokens: 0 }, ctx), 400, 'max_tokens');
  });

  test('generation_config defaults fill unset fields only', () => {
    const c = requestContext(qwen, { defaults: { temperature: 0.7, topP: 0.8, topK: 20 } });
    const p = parseCompletionRequest({ prompt: 'a' }, c).params[0]!;
    assert.deepEqual([p.temperature, p.topP, p.topK], [0.7, 0.8, 20]);
    const q = parseCompletionRequest({ prompt: 'a', temperature: 1, top_k: -1 }, c).params[0]!;
    assert.deepEqual([q.temperature, q.topP, q.topK], [1, 0.8, -1]);
  });

  test('best_of > n asks the engine for logprobs (to rank) but not the client', () => {
    const r = parseCompletionRequest({ prompt: 'a', n: 2, best_of: 4 }, ctx);
    assert.equal(r.params[0]!.bestOf, 4);
    assert.equal(r.params[0]!.logprobs, 0);
    assert.equal(r.logprobs, null);
    rejects(() => parseCompletionRequest({ prompt: 'a', n: 2, best_of: 4, stream: true }, ctx), 400, 'best_of');
  });

  test('limits and unsupported features are 400s naming the field', () => {
    rejects(() => parseCompletionRequest({ prompt: 'a', n: 9 }, ctx), 400, 'n', /max-num-seqs/);
    rejects(() => parseCompletionRequest({ prompt: 'a', logprobs: 21 }, ctx), 400, 'logprobs');
    rejects(() => parseCompletionRequest({ prompt: 'a', logprobs: true }, ctx), 400, 'logprobs');
    rejects(() => parseCompletionRequest({ prompt: 'a', temperature: 'hot' }, ctx), 400, 'temperature');
    rejects(() => parseCompletionRequest({ prompt: 'a', top_p: 0 }, ctx), 400, 'top_p');
    rejects(() => parseCompletionRequest({ prompt: 'a', max_tokens: 1e300 }, ctx), 400, 'max_tokens');
    rejects(() => parseCompletionRequest({ prompt: 'a', stream: 'yes' }, ctx), 400, 'stream');
    rejects(() => parseCompletionRequest({ prompt: 'a', stream_options: { include_usage: true } }, ctx), 400, 'stream_options');
    rejects(() => parseCompletionRequest({ prompt: 'a', use_beam_search: true }, ctx), 400, 'best_of', /beam width/);
    rejects(() => parseCompletionRequest({ prompt: 'a', response_format: { type: 'yaml' } }, ctx), 400, 'response_format');
    rejects(() => parseCompletionRequest({ prompt: 'a', guided_regex: 5 }, ctx), 400, 'guided_regex');
    rejects(() => parseCompletionRequest({ prompt: 'a', stream: true, prompt_logprobs: 1 }, ctx), 400, 'prompt_logprobs');
    rejects(() => parseCompletionRequest({ prompt: 'a', stop: [''] }, ctx), 400, 'stop');
    rejects(() => parseCompletionRequest({ prompt: 'a', stop_token_ids: [99999] }, ctx), 400, 'stop_token_ids');
  });

  test('the model must be one of the served names (404), or absent', () => {
    assert.equal(parseCompletionRequest({ prompt: 'a' }, ctx).model, 'test-model');
    assert.throws(() => parseCompletionRequest({ model: 'gpt-4', prompt: 'a' }, ctx), (e: unknown) => e instanceof NotFoundError && e.status === 404 && /gpt-4/.test(e.message));
    rejects(() => parseCompletionRequest({ model: 7, prompt: 'a' }, ctx), 400, 'model');
  });

  test('a text far longer than the context is refused before tokenizing', () => {
    const huge = 'Once upon a time '.repeat(100_000);
    const t0 = performance.now();
    assert.throws(() => parseCompletionRequest({ prompt: huge }, ctx), (e: unknown) => e instanceof ContextLengthError);
    assert.ok(performance.now() - t0 < 500, 'no tokenization of megabytes');
  });

  test('the body must be a JSON object', () => {
    for (const body of [undefined, null, [], 'x', 3, true]) rejects(() => parseCompletionRequest(body, ctx), 400, null, /JSON object|empty/);
  });
});

describe('request mapping: /v1/chat/completions', () => {
  const messages = [{ role: 'user', content: 'Once upon a time' }];

  test('messages are rendered with the chat template; no BOS is added to the rendered text', () => {
    const r = parseChatRequest({ messages }, ctx);
    const rendered = qwen.applyChatTemplate(messages);
    assert.equal(r.prompt.text, rendered);
    assert.deepEqual(r.prompt.tokenIds, qwen.encode(rendered, { addSpecialTokens: false }));
    assert.notEqual(r.prompt.tokenIds[0], qwen.bosTokenId);
    // Chat default max_tokens: the rest of the context.
    assert.equal(r.params.maxTokens, 512 - r.prompt.tokenIds.length);
  });

  test('a template that writes BOS itself gets exactly one BOS', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pagewise-chat-'));
    copyFileSync(join(fixturePath('qwen2-tiny'), 'tokenizer.json'), join(dir, 'tokenizer.json'));
    const cfg = JSON.parse(readFileSync(join(fixturePath('qwen2-tiny'), 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    cfg['chat_template'] = "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(cfg));
    const tok = PagewiseTokenizer.fromDir(dir);
    const r = parseChatRequest({ messages }, requestContext(tok));
    assert.equal(r.prompt.tokenIds[0], tok.bosTokenId);
    assert.notEqual(r.prompt.tokenIds[1], tok.bosTokenId);
    assert.equal(r.prompt.tokenIds.filter((id) => id === tok.bosTokenId).length, 1);
  });

  test('add_generation_prompt and continue_final_message', () => {
    const withGen = parseChatRequest({ messages }, ctx).prompt.text;
    const without = parseChatRequest({ messages, add_generation_prompt: false }, ctx).prompt.text;
    assert.ok(withGen.endsWith('<|im_start|>assistant\n'));
    assert.ok(!without.endsWith('<|im_start|>assistant\n'));
    const cont = parseChatRequest({ messages: [...messages, { role: 'assistant', content: 'There was' }], continue_final_message: true, add_generation_prompt: false }, ctx);
    assert.ok(cont.prompt.text.endsWith('<|im_start|>assistant\nThere was'), cont.prompt.text);
    rejects(() => parseChatRequest({ messages, continue_final_message: true, add_generation_prompt: true }, ctx), 400, 'continue_final_message');
  });

  test('a model without a chat template gets a clear 400', () => {
    rejects(() => parseChatRequest({ messages }, requestContext(stories)), 400, 'messages', /chat_template/);
  });

  test('logprobs + top_logprobs, max_completion_tokens, content parts, echo', () => {
    const r = parseChatRequest(
      {
        messages: [
          { role: 'system', content: [{ type: 'text', text: 'Be brief.' }] },
          { role: 'user', content: 'Hi' },
          { role: 'assistant', content: 'Hello' },
        ],
        logprobs: true,
        top_logprobs: 2,
        max_completion_tokens: 5,
        max_tokens: 9,
        echo: true,
      },
      ctx,
    );
    assert.equal(r.topLogprobs, 2);
    assert.equal(r.params.logprobs, 2);
    assert.equal(r.params.maxTokens, 5);
    assert.equal(r.echoText, 'Hello');
    assert.ok(r.prompt.text.includes('Be brief.'));
    assert.equal(parseChatRequest({ messages, logprobs: true }, ctx).topLogprobs, 0);
    assert.equal(parseChatRequest({ messages }, ctx).topLogprobs, null);
  });

  test('bad messages and chat fields name the field', () => {
    rejects(() => parseChatRequest({}, ctx), 400, 'messages', /required/);
    rejects(() => parseChatRequest({ messages: [] }, ctx), 400, 'messages', /empty/);
    rejects(() => parseChatRequest({ messages: 'hi' }, ctx), 400, 'messages');
    rejects(() => parseChatRequest({ messages: [{ content: 'x' }] }, ctx), 400, 'messages', /role/);
    rejects(() => parseChatRequest({ messages: [{ role: 'user', content: 5 }] }, ctx), 400, 'messages', /content/);
    rejects(() => parseChatRequest({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, ctx), 400, 'messages', /image_url/);
    rejects(() => parseChatRequest({ messages, top_logprobs: 3 }, ctx), 400, 'top_logprobs', /logprobs must be set/);
    rejects(() => parseChatRequest({ messages, logprobs: 1 }, ctx), 400, 'logprobs');
    rejects(() => parseChatRequest({ messages, tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: 'auto' }, ctx), 400, 'tool_choice');
    rejects(() => parseChatRequest({ messages, chat_template: '{{ x }}' }, ctx), 400, 'chat_template');
    rejects(() => parseChatRequest({ messages, max_completion_tokens: 0 }, ctx), 400, 'max_completion_tokens');
    rejects(() => parseChatRequest({ messages, n: 2, temperature: 0 }, ctx), 400, 'n', /greedy/);
  });

  test('tools with tool_choice "none" are rendered into the prompt', () => {
    const r = parseChatRequest({ messages, tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: 'none' }, ctx);
    assert.ok(r.prompt.tokenIds.length > 0);
  });
});

describe('request mapping: /tokenize, /detokenize', () => {
  test('tokenize a prompt or messages; detokenize ids', () => {
    assert.deepEqual(parseTokenizeRequest({ prompt: 'Once upon a time' }, ctx).tokenIds, [1, 403, 407, 261, 378]);
    assert.deepEqual(parseTokenizeRequest({ prompt: 'Once', add_special_tokens: false }, ctx).tokenIds, [403]);
    const chat = parseTokenizeRequest({ messages: [{ role: 'user', content: 'Hi' }] }, ctx);
    assert.deepEqual(chat.tokenIds, qwen.encodeChatPrompt(qwen.applyChatTemplate([{ role: 'user', content: 'Hi' }])));
    rejects(() => parseTokenizeRequest({}, ctx), 400, 'prompt');
    rejects(() => parseTokenizeRequest({ prompt: 'a', messages: [] }, ctx), 400, 'messages');
    assert.deepEqual(parseDetokenizeRequest({ tokens: [403, 407] }, ctx).tokenIds, [403, 407]);
    rejects(() => parseDetokenizeRequest({ tokens: [-1] }, ctx), 400, 'tokens');
    rejects(() => parseDetokenizeRequest({ tokens: 'abc' }, ctx), 400, 'tokens');
  });
});

describe('response formats', () => {
  const strs = new TokenStrings(qwen, false);
  const entry = (id: number, logprob: number, top: Array<[number, number]>) => ({
    token: { tokenId: id, logprob, rank: 1 },
    top: top.map(([tokenId, lp], i) => ({ tokenId, logprob: lp, rank: i + 1 })),
  });

  test('legacy completions logprobs: tokens, token_logprobs, top_logprobs dicts, text_offset', () => {
    const lp = completionLogprobs([403, 407], [null, entry(407, -0.5, [[407, -0.5], [261, -1.5]])], 2, 10, strs);
    assert.deepEqual(lp.tokens, ['Once', 'upon']);
    assert.deepEqual(lp.token_logprobs, [null, -0.5]);
    assert.deepEqual(lp.text_offset, [10, 14]);
    assert.equal(lp.top_logprobs[0], null);
    assert.deepEqual({ ...lp.top_logprobs[1] }, { upon: -0.5, a: -1.5 });
    // -inf is not JSON: clamped like vLLM.
    const inf = completionLogprobs([5], [entry(5, -Infinity, [])], 0, 0, strs);
    assert.equal(inf.token_logprobs[0], -9999);
    assert.equal(JSON.parse(JSON.stringify(inf)).token_logprobs[0], -9999);
  });

  test('chat logprobs: token, logprob, bytes, top_logprobs', () => {
    const lp = chatLogprobs([403], [entry(403, -0.25, [[403, -0.25], [407, -2]])], 1, strs);
    assert.deepEqual(lp, [{ token: 'Once', logprob: -0.25, bytes: [...Buffer.from('Once')], top_logprobs: [{ token: 'Once', logprob: -0.25, bytes: [...Buffer.from('Once')] }] }]);
    assert.equal(new TokenStrings(qwen, true).get(403), 'token_id:403');
  });

  test('errors map to OpenAI\'s shape and status', () => {
    const e = toHttpError(new InvalidRequestError('bad n', { param: 'n' }));
    assert.deepEqual(e, { status: 400, body: { error: { message: 'bad n', type: 'invalid_request_error', param: 'n', code: null } } });
    assert.equal(toHttpError(Object.assign(new Error('too big'), { statusCode: 413, code: 'FST_ERR_CTP_BODY_TOO_LARGE' })).status, 413);
    assert.equal(toHttpError(new Error('boom')).status, 500);
  });

  test('vLLM 1-2-5 buckets', () => {
    assert.deepEqual(buckets125(100), [1, 2, 5, 10, 20, 50, 100]);
  });
});

// ---------------------------------------------------------------------------------------------
// End to end: one engine (stories260k, a real tiny model, plus a ChatML template) for this file.

/** vLLM's extra request fields, which the openai client passes through as given. */
type Extra = Record<string, unknown>;

describe('server end to end', () => {
  let s: TestServer;
  let client: OpenAI;
  const model = 'stories';

  before(async () => {
    s = await startServer({ model: storiesWithChatTemplate(), maxNumSeqs: 4, maxWaitingRequests: 4 }, { servedModelName: model });
    client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  after(async () => {
    await s?.close();
  });

  /** Everything finished and every KV block back in the pool. */
  const idle = (): Promise<void> => waitFor(() => s.engine.numInFlight === 0 && (s.engine.lastStats?.blocksUsed ?? 0) === 0, 5000, 'engine idle with all blocks free');

  test('completions: greedy text, usage, finish_reason', async () => {
    const r = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 20, temperature: 0 });
    assert.equal(r.object, 'text_completion');
    assert.match(r.id, /^cmpl-/);
    assert.equal(r.model, model);
    assert.equal(r.choices.length, 1);
    assert.ok(r.choices[0]!.text.startsWith(', there was a little girl'), r.choices[0]!.text);
    assert.equal(r.choices[0]!.finish_reason, 'length');
    assert.deepEqual(r.usage, { prompt_tokens: 5, completion_tokens: 20, total_tokens: 25 });
  });

  test('completions streaming: chunks add up to the same text, [DONE], include_usage', async () => {
    const full = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 20, temperature: 0 });
    const stream = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 20, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = '';
    const chunks: OpenAI.Completion[] = [];
    for await (const c of stream) chunks.push(c);
    for (const c of chunks) for (const ch of c.choices) text += ch.text;
    assert.equal(text, full.choices[0]!.text);
    assert.ok(chunks.length > 3, 'several chunks');
    const last = chunks[chunks.length - 1]!;
    assert.deepEqual(last.choices, []);
    assert.deepEqual(last.usage, { prompt_tokens: 5, completion_tokens: 20, total_tokens: 25 });
    assert.equal(chunks[chunks.length - 2]!.choices[0]!.finish_reason, 'length');
    assert.ok(chunks.slice(0, -2).every((c) => c.choices[0]!.finish_reason === null && c.usage === undefined));
  });

  test('n > 1 with a seed: n choices, reproducible, streamed interleaved by index', async () => {
    const req = { model, prompt: 'Once upon a time', max_tokens: 12, temperature: 1, seed: 7, n: 3 };
    const a = await client.completions.create(req);
    const b = await client.completions.create(req);
    assert.deepEqual(
      a.choices.map((c) => c.index),
      [0, 1, 2],
    );
    assert.deepEqual(
      a.choices.map((c) => c.text),
      b.choices.map((c) => c.text),
    );
    assert.equal(a.usage!.completion_tokens, 36);
    const texts = ['', '', ''];
    const seen: number[] = [];
    for await (const c of await client.completions.create({ ...req, stream: true })) {
      for (const ch of c.choices) {
        texts[ch.index] += ch.text;
        seen.push(ch.index);
      }
    }
    assert.deepEqual(
      texts,
      a.choices.map((c) => c.text),
    );
    assert.deepEqual([...new Set(seen)].sort(), [0, 1, 2]);
    assert.notDeepEqual(seen.slice(0, 3), [0, 0, 0], 'choices interleave');
  });

  test('several prompts: one choice per prompt and n, indexed prompt*n + i', async () => {
    const r = await client.completions.create({ model, prompt: ['Once upon a time', 'The cat'], max_tokens: 5, temperature: 0 });
    assert.deepEqual(
      r.choices.map((c) => c.index),
      [0, 1],
    );
    assert.equal(r.usage!.prompt_tokens, 5 + s.engine.tokenizer.encode('The cat').length);
    const t = await client.completions.create({ model, prompt: [[1, 403, 407, 261, 378], [1, 403]], max_tokens: 5, temperature: 0 });
    assert.equal(t.choices[0]!.text, r.choices[0]!.text, 'token ids and text give the same completion');
  });

  test('completions logprobs (legacy format) and echo', async () => {
    const r = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 5, temperature: 0, logprobs: 2 });
    const lp = r.choices[0]!.logprobs!;
    assert.equal(lp.tokens!.length, 5);
    assert.equal(lp.token_logprobs!.length, 5);
    assert.equal(lp.text_offset!.length, 5);
    assert.equal(lp.text_offset![0], 0);
    for (let i = 0; i < 5; i++) {
      const top = lp.top_logprobs![i]!;
      const chosen = lp.token_logprobs![i]!;
      assert.ok(chosen <= 0);
      assert.ok(Object.keys(top).length >= 2 && Object.keys(top).length <= 3);
      assert.equal(Math.max(...Object.values(top)), chosen, 'greedy picks the most likely token');
    }
    const e = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 3, temperature: 0, echo: true, logprobs: 1 });
    assert.ok(e.choices[0]!.text.startsWith('Once upon a time, there'), e.choices[0]!.text);
    const elp = e.choices[0]!.logprobs!;
    assert.equal(elp.tokens!.length, 5 + 3, 'prompt tokens then generated tokens');
    assert.equal(elp.token_logprobs![0], null, 'the first prompt token has no logprob');
  });

  test('stop strings end the text before the stop string, with stop_reason', async () => {
    const r = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 100, temperature: 0, stop: ['.'] });
    const c = r.choices[0]! as OpenAI.CompletionChoice & { stop_reason?: unknown };
    assert.equal(c.finish_reason, 'stop');
    assert.equal(c.stop_reason, '.');
    assert.equal(c.text, ', there was a little girl named Lily');
    let streamed = '';
    for await (const ch of await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 100, temperature: 0, stop: ['.'], stream: true })) streamed += ch.choices[0]?.text ?? '';
    assert.equal(streamed, c.text);
  });

  test('vLLM extra sampling fields are honoured', async () => {
    const body = { model, prompt: 'Once upon a time', max_tokens: 40, temperature: 0.8, top_k: 5, min_p: 0.05, repetition_penalty: 1.1, ignore_eos: true, min_tokens: 40, seed: 3 } as Extra;
    const r = await client.completions.create(body as unknown as OpenAI.CompletionCreateParamsNonStreaming);
    assert.equal(r.usage!.completion_tokens, 40);
    const greedy = (await postJson(s.url, '/v1/completions', { model, prompt: 'Once upon a time', max_tokens: 8, temperature: 0, return_token_ids: true })).json() as {
      choices: Array<{ token_ids: number[] }>;
    };
    const third = greedy.choices[0]!.token_ids[2]!;
    const stopped = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 8, temperature: 0, stop_token_ids: [third] } as Extra as unknown as OpenAI.CompletionCreateParamsNonStreaming);
    const c = stopped.choices[0]! as OpenAI.CompletionChoice & { stop_reason?: unknown };
    assert.equal(c.finish_reason, 'stop');
    assert.equal(c.stop_reason, third);
    assert.equal(stopped.usage!.completion_tokens, 3);
  });

  test('beam search (vLLM\'s legacy use_beam_search, best_of = beam width)', async () => {
    const body = { model, prompt: 'Once upon a time', max_tokens: 8, temperature: 0, use_beam_search: true, best_of: 3, n: 2 };
    const r = (await postJson(s.url, '/v1/completions', body)).json() as OpenAI.Completion;
    assert.deepEqual(
      r.choices.map((c) => c.index),
      [0, 1],
    );
    assert.ok(r.choices.every((c) => c.text.length > 0));
    assert.notEqual(r.choices[0]!.text, r.choices[1]!.text);
    let streamed = '';
    for await (const c of await client.completions.create({ ...body, stream: true } as Extra as unknown as OpenAI.CompletionCreateParamsStreaming)) {
      for (const ch of c.choices) if (ch.index === 0) streamed += ch.text;
    }
    assert.equal(streamed, r.choices[0]!.text);
  });

  test('chat: template-rendered prompt, assistant message, usage; streaming matches', async () => {
    const messages = [{ role: 'user' as const, content: 'Tell me a story.' }];
    const r = await client.chat.completions.create({ model, messages, max_tokens: 15, temperature: 0 });
    assert.equal(r.object, 'chat.completion');
    assert.match(r.id, /^chatcmpl-/);
    assert.equal(r.choices[0]!.message.role, 'assistant');
    assert.equal(typeof r.choices[0]!.message.content, 'string');
    assert.equal(r.choices[0]!.finish_reason, 'length');
    const rendered = s.engine.tokenizer.applyChatTemplate(messages);
    assert.equal(r.usage!.prompt_tokens, s.engine.tokenizer.encodeChatPrompt(rendered).length);
    assert.equal(r.usage!.completion_tokens, 15);

    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const c of await client.chat.completions.create({ model, messages, max_tokens: 15, temperature: 0, stream: true, stream_options: { include_usage: true } })) chunks.push(c);
    assert.equal(chunks[0]!.object, 'chat.completion.chunk');
    assert.equal(chunks[0]!.choices[0]!.delta.role, 'assistant');
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    assert.equal(text, r.choices[0]!.message.content);
    assert.deepEqual(chunks[chunks.length - 1]!.usage, r.usage);
    assert.equal(chunks[chunks.length - 2]!.choices[0]!.finish_reason, 'length');
  });

  test('chat: n > 1 and logprobs with top_logprobs', async () => {
    const messages = [{ role: 'user' as const, content: 'Hi' }];
    const r = await client.chat.completions.create({ model, messages, max_tokens: 6, temperature: 0.9, seed: 11, n: 2, logprobs: true, top_logprobs: 2 });
    assert.deepEqual(
      r.choices.map((c) => c.index),
      [0, 1],
    );
    for (const c of r.choices) {
      const content = c.logprobs!.content!;
      assert.equal(content.length, 6);
      for (const t of content) {
        assert.equal(typeof t.token, 'string');
        assert.ok(t.logprob <= 0);
        assert.deepEqual(t.bytes, [...Buffer.from(t.token, 'utf8')]);
        assert.equal(t.top_logprobs.length, 2);
        assert.ok(t.top_logprobs[0]!.logprob >= t.top_logprobs[1]!.logprob);
      }
    }
    const streamed: string[] = ['', ''];
    let lpCount = 0;
    for await (const c of await client.chat.completions.create({ model, messages, max_tokens: 6, temperature: 0.9, seed: 11, n: 2, logprobs: true, top_logprobs: 2, stream: true })) {
      for (const ch of c.choices) {
        streamed[ch.index] += ch.delta.content ?? '';
        lpCount += ch.logprobs?.content?.length ?? 0;
      }
    }
    assert.deepEqual(
      streamed,
      r.choices.map((c) => c.message.content),
    );
    assert.equal(lpCount, 12);
  });

  test('models, tokenize, detokenize, version, health', async () => {
    const models = await client.models.list();
    assert.deepEqual(
      models.data.map((m) => m.id),
      [model],
    );
    assert.equal((await client.models.retrieve(model)).id, model);
    const tok = await postJson(s.url, '/tokenize', { model, prompt: 'Once upon a time' });
    assert.equal(tok.status, 200);
    assert.deepEqual(tok.json(), { count: 5, max_model_len: 512, tokens: [1, 403, 407, 261, 378] });
    const chatTok = (await postJson(s.url, '/tokenize', { messages: [{ role: 'user', content: 'Hi' }] })).json() as { tokens: number[] };
    assert.notEqual(chatTok.tokens[0], 1, 'the template writes no BOS and none is added');
    const detok = await postJson(s.url, '/detokenize', { tokens: [1, 403, 407, 261, 378] });
    assert.equal((detok.json() as { prompt: string }).prompt, '<s> Once upon a time');
    const v = await raw(s.url, { path: '/version' });
    assert.equal((v.json() as { version: string }).version, JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version);
    const h = await raw(s.url, { path: '/health' });
    assert.equal(h.status, 200);
  });

  test('unknown fields are ignored with a logged warning', async () => {
    const r = await postJson(s.url, '/v1/completions', { model, prompt: 'Once', max_tokens: 2, temperature: 0, some_future_field: { a: 1 } });
    assert.equal(r.status, 200);
    assert.ok(s.logs.some((l) => l.startsWith('warn:') && l.includes('"some_future_field"')), s.logs.join('\n'));
  });

  test('400: invalid values name the field; malformed JSON never reaches the engine', async () => {
    const before = s.engine.lastStats?.promptTokensTotal ?? 0;
    const r = await postJson(s.url, '/v1/completions', { model, prompt: 'Once', temperature: -1 });
    assert.equal(r.status, 400);
    assert.deepEqual((r.json() as { error: unknown }).error, { message: 'temperature must be >= 0, got -1', type: 'invalid_request_error', param: 'temperature', code: null });
    await assert.rejects(client.completions.create({ model, prompt: 'x', max_tokens: 600 }), (e: unknown) => e instanceof OpenAI.BadRequestError && /maximum context length/.test(e.message));
    for (const body of ['{"model": "stories", "prompt": "Once"', '{"prompt": "Once",}', 'null', '']) {
      const bad = await raw(s.url, { path: '/v1/completions', body });
      assert.equal(bad.status, 400, body);
      const err = (bad.json() as { error: { message: string; type: string } }).error;
      assert.equal(err.type, 'invalid_request_error');
      assert.ok(err.message.length > 0);
    }
    assert.equal(s.engine.lastStats?.promptTokensTotal ?? 0, before, 'no prompt was computed');
    assert.equal(s.engine.numInFlight, 0);
  });

  test('404: unknown model and unknown route', async () => {
    await assert.rejects(client.completions.create({ model: 'gpt-4', prompt: 'x' }), (e: unknown) => e instanceof OpenAI.NotFoundError && /gpt-4/.test(e.message));
    await assert.rejects(client.chat.completions.create({ model: 'gpt-4', messages: [{ role: 'user', content: 'x' }] }), OpenAI.NotFoundError);
    await assert.rejects(client.models.retrieve('gpt-4'), OpenAI.NotFoundError);
    const r = await raw(s.url, { path: '/v1/embeddings', body: '{}' });
    assert.equal(r.status, 404);
    assert.equal((r.json() as { error: { type: string } }).error.type, 'not_found_error');
  });

  test('413: a body over the limit', async () => {
    const r = await raw(s.url, { path: '/v1/completions', body: JSON.stringify({ model, prompt: 'x'.repeat(17 * 1024 * 1024) }) });
    assert.equal(r.status, 413);
    assert.deepEqual(r.json(), { error: { message: 'Request body is too large', type: 'invalid_request_error', param: null, code: null } });
  });

  test("the engine's stats and finished events reach every subscriber, beside the server's metrics", async () => {
    const seen = { a: 0, b: 0, finished: 0 };
    const offA = s.engine.on('stats', () => seen.a++);
    const offB = s.engine.on('stats', () => seen.b++);
    const offF = s.engine.on('finished', () => seen.finished++);
    try {
      const before = metricValue((await raw(s.url, { path: '/metrics' })).text, 'pagewise:request_success_total') ?? 0;
      const r = await raw(s.url, { path: '/v1/completions', body: JSON.stringify({ model, prompt: 'Hi', max_tokens: 3 }) });
      assert.equal(r.status, 200);
      assert.ok(seen.a > 0 && seen.a === seen.b, `both stats subscribers called as often (${seen.a}, ${seen.b})`);
      assert.ok(seen.finished >= 1, 'the finished subscriber saw the request');
      assert.ok((metricValue((await raw(s.url, { path: '/metrics' })).text, 'pagewise:request_success_total') ?? 0) >= before + 1, 'the metrics still count');
      offA();
      const a = seen.a;
      assert.equal((await raw(s.url, { path: '/v1/completions', body: JSON.stringify({ model, prompt: 'Hi', max_tokens: 3 }) })).status, 200);
      assert.equal(seen.a, a, 'an unsubscribed listener is not called');
      assert.ok(seen.b > a);
    } finally {
      offA();
      offB();
      offF();
    }
  });

  test('a client that disconnects (streaming or not) aborts its request and frees its KV blocks', async () => {
    await idle();
    const abortedBefore = metricValue(await (await raw(s.url, { path: '/metrics' })).text, 'pagewise:request_success_total') ?? 0;
    // The server's abort counter decides whether a hang-up landed, not the client's view: the tiny
    // model can finish all its tokens before the hang-up arrives (a fast host, or one that stalls
    // this process for a moment), so each half hangs up again until one abort counts.
    const aborts = async (): Promise<number> => {
      const text = (await raw(s.url, { path: '/metrics' })).text;
      const m = /pagewise:request_success_total\{[^}]*finished_reason="abort"[^}]*\} (\d+)/.exec(text);
      return m ? Number(m[1]) : 0;
    };
    const abortsBefore = await aborts();
    // Streaming: read the first chunk, then hang up.
    for (let attempt = 0; attempt < 5 && (await aborts()) === abortsBefore; attempt++) {
      const ac = new AbortController();
      const res = await fetch(`${s.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model, prompt: 'Once upon a time', max_tokens: 500, ignore_eos: true, stream: true }),
        signal: ac.signal,
      });
      assert.equal(res.status, 200);
      await res.body!.getReader().read();
      ac.abort();
      await idle();
    }
    const afterStreaming = await aborts();
    assert.equal(afterStreaming, abortsBefore + 1, 'the streaming hang-up counted as an abort');
    // Not streaming: hang up while the engine is generating.
    for (let attempt = 0; attempt < 5 && (await aborts()) === afterStreaming; attempt++) {
      const ac2 = new AbortController();
      const pending = fetch(`${s.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 450, ignore_eos: true }),
        signal: ac2.signal,
      }).catch(() => null);
      let settled = false;
      void pending.then(() => (settled = true));
      await waitFor(() => settled || (s.engine.numInFlight > 0 && (s.engine.lastStats?.blocksUsed ?? 0) > 0), 5000, 'the request to start');
      ac2.abort();
      await pending;
      await idle();
    }
    assert.equal(await aborts(), abortsBefore + 2, 'two aborted requests counted');
    assert.equal(s.engine.lastStats?.blocksUsed ?? 0, 0, 'the aborted requests freed their blocks');
    const m = await (await raw(s.url, { path: '/metrics' })).text;
    assert.ok((metricValue(m, 'pagewise:request_success_total') ?? 0) >= abortedBefore + 2);
  });

  test('503 when the waiting queue is full (--max-waiting-requests)', async () => {
    await idle();
    const long = JSON.stringify({ model, prompt: 'Once upon a time', max_tokens: 500, ignore_eos: true, stream: true });
    // The tiny model can finish a 500-token request before the queue fills when the host stalls
    // this process for a moment: try again until the ninth request meets a full queue.
    let refused: { status: number; json: () => unknown } | null = null;
    for (let attempt = 0; attempt < 5 && !refused; attempt++) {
      const controllers: AbortController[] = [];
      const start = (): Promise<Response | null> => {
        const ac = new AbortController();
        controllers.push(ac);
        return fetch(`${s.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: long, signal: ac.signal }).catch(() => null);
      };
      try {
        // max-num-seqs 4: four run (their first chunks arrive) ...
        const running = await Promise.all([start(), start(), start(), start()]);
        for (const r of running) await r?.body?.getReader().read();
        // ... four wait (no answer until they are scheduled) ...
        const waiting = [start(), start(), start(), start()];
        void waiting;
        const full = await waitFor(() => s.engine.numInFlight === 8, 2000, 'eight requests in the engine').then(
          () => true,
          () => false,
        );
        if (!full) continue;
        // ... and the next one is refused.
        const r = await postJson(s.url, '/v1/completions', { model, prompt: 'Once', max_tokens: 1 });
        if (r.status === 503) refused = r;
      } finally {
        for (const ac of controllers) ac.abort();
        await idle();
      }
    }
    assert.ok(refused, 'a request beyond a full waiting queue got 503');
    const err = (refused.json() as { error: { type: string; message: string } }).error;
    assert.equal(err.type, 'service_unavailable_error');
    assert.match(err.message, /max-waiting-requests/);
  });

  test('metrics: vLLM names under pagewise:, fed by engine stats and finished requests', async () => {
    const m = await (await raw(s.url, { path: '/metrics' })).text;
    for (const name of [
      'pagewise:num_requests_running',
      'pagewise:num_requests_waiting',
      'pagewise:kv_cache_usage_perc',
      'pagewise:prefix_cache_queries_total',
      'pagewise:prefix_cache_hits_total',
      'pagewise:num_preemptions_total',
      'pagewise:prompt_tokens_total',
      'pagewise:generation_tokens_total',
    ]) {
      assert.notEqual(metricValue(m, name), null, name);
    }
    assert.match(m, /# TYPE pagewise:num_requests_waiting gauge/);
    assert.match(m, /# TYPE pagewise:prompt_tokens_total counter/);
    assert.match(m, /# TYPE pagewise:time_to_first_token_seconds histogram/);
    assert.match(m, /pagewise:num_requests_running\{model_name="stories",engine="0"\} 0/);
    assert.ok(metricValue(m, 'pagewise:prompt_tokens_total')! > 0);
    assert.ok(metricValue(m, 'pagewise:generation_tokens_total')! > 100);
    assert.ok(metricValue(m, 'pagewise:prefix_cache_hits_total')! > 0, 'repeated prompts hit the prefix cache');
    for (const h of ['time_to_first_token_seconds', 'inter_token_latency_seconds', 'e2e_request_latency_seconds', 'request_queue_time_seconds']) {
      assert.ok(metricValue(m, `pagewise:${h}_count`)! > 0, h);
    }
  });

  test('401 with --api-key (constant-time check); /health and /metrics stay open', async () => {
    const { createServer } = await import('../src/server/app.js');
    const app = createServer(s.engine, { servedModelName: model, apiKey: 'sekret', log: () => {} });
    await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const addr = app.server.address() as { port: number };
      const url = `http://127.0.0.1:${addr.port}`;
      const body = { model, prompt: 'Once', max_tokens: 1 };
      for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: 'sekret' }, { authorization: 'Bearer sekret2' }] as Array<Record<string, string>>) {
        const r = await postJson(url, '/v1/completions', body, headers);
        assert.equal(r.status, 401, JSON.stringify(headers));
        assert.equal((r.json() as { error: { type: string } }).error.type, 'authentication_error');
      }
      assert.equal((await postJson(url, '/v1/completions', body, { authorization: 'Bearer sekret' })).status, 200);
      assert.equal((await raw(url, { path: '/v1/models' })).status, 401);
      assert.equal((await raw(url, { path: '/health' })).status, 200);
      assert.equal((await raw(url, { path: '/metrics' })).status, 200);
      const good = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'sekret', maxRetries: 0 });
      assert.equal((await good.completions.create(body)).choices.length, 1);
      const bad = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'nope', maxRetries: 0 });
      await assert.rejects(bad.completions.create(body), OpenAI.AuthenticationError);
    } finally {
      await app.close();
    }
  });
});

describe('engine failure', () => {
  test('a dead engine core: in-flight requests get 500, /health turns 503, new work 503, no hang', async () => {
    const s = await startServer({ model: fixturePath('stories260k') }, { servedModelName: 'stories' });
    try {
      // No chat template in this model: a clear 400.
      const noTemplate = await postJson(s.url, '/v1/chat/completions', { messages: [{ role: 'user', content: 'Hi' }] });
      assert.equal(noTemplate.status, 400);
      assert.match((noTemplate.json() as { error: { message: string } }).error.message, /chat_template/);

      // Eight sequences each (~0.8 s of this model's work on the 2-core host, 500 tokens alone
      // ~0.3 s): both requests must still be running when the second is admitted, also on a
      // loaded machine (a lone 500-token stream once finished first there).
      const long = { prompt: 'Once upon a time', max_tokens: 500, ignore_eos: true, n: 8 };
      const res = await fetch(`${s.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...long, stream: true }) });
      const reader = res.body!.getReader();
      await reader.read();
      const nonStream = postJson(s.url, '/v1/completions', long);
      await waitFor(() => s.engine.numInFlight === 2, 5000, 'both requests running');
      // Kill the engine worker (what a crashed native op or an exception in a step amounts to).
      await (s.engine as unknown as { worker: Worker }).worker.terminate();

      const r = await nonStream;
      assert.equal(r.status, 500);
      assert.match((r.json() as { error: { message: string } }).error.message, /engine worker exited/);
      let rest = '';
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        rest += Buffer.from(value).toString('utf8');
      }
      assert.match(rest, /data: \{"error":\{"message":"[^"]*engine worker exited/);
      assert.ok(rest.trimEnd().endsWith('data: [DONE]'));
      assert.equal((await raw(s.url, { path: '/health' })).status, 503);
      const after = await postJson(s.url, '/v1/completions', { prompt: 'Once', max_tokens: 1 });
      assert.equal(after.status, 503);
      assert.ok(s.logs.some((l) => l.startsWith('error:') && /engine worker exited/.test(l)), s.logs.join('\n'));
    } finally {
      await s.close();
    }
  });
});

describe('pagewise serve', () => {
  test('logs where it listens; SIGTERM finishes in-flight requests and exits 0', async () => {
    const argv = ['serve', '--model', fixturePath('stories260k'), '--port', '0', '--threads', '2', '--kv-cache-memory', '64MiB', '--shutdown-grace', '10'];
    const code = `import('./src/cli/main.ts').then((m) => m.main(${JSON.stringify(argv)}))`;
    const child = spawn(process.execPath, ['--import', 'tsx', '-e', code], { cwd: new URL('..', import.meta.url), stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    try {
      await waitFor(() => /serving model .* on http:\/\/127\.0\.0\.1:\d+\/v1/.test(stderr), 20000, 'the server to listen');
      assert.match(stderr, /KV pool \d+ blocks × 16 tokens, 2 threads/);
      const url = /on (http:\/\/127\.0\.0\.1:\d+)\/v1/.exec(stderr)![1]!;
      const res = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: 300, ignore_eos: true, stream: true }),
      });
      const reader = res.body!.getReader();
      let text = Buffer.from((await reader.read()).value!).toString('utf8');
      child.kill('SIGTERM');
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        text += Buffer.from(value).toString('utf8');
      }
      assert.ok(text.trimEnd().endsWith('data: [DONE]'), 'the in-flight stream completes');
      assert.match(text, /"finish_reason":"length"/);
      assert.equal(await exited, 0);
      assert.match(stderr, /SIGTERM: shutting down/);
      await assert.rejects(fetch(`${url}/health`), 'no longer listening');
    } finally {
      child.kill('SIGKILL');
    }
  });
});
