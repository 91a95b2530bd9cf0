/**
 * The OpenAI-compatible server. First the request mapping (OpenAI request → prompt ids +
 * SamplingParams) without an engine; then end to end: a real server on a free port around an
 * engine started once for this file, driven by the official `openai` client and by raw HTTP.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ContextLengthError, InvalidRequestError, NotFoundError, PagewiseError } from '../src/errors.js';
import { completionLogprobs, chatLogprobs, TokenStrings } from '../src/server/format.js';
import { buckets125 } from '../src/server/metrics.js';
import { parseChatRequest, parseCompletionRequest, parseDetokenizeRequest, parseTokenizeRequest } from '../src/server/request.js';
import { toHttpError } from '../src/server/errors.js';
import { PagewiseTokenizer } from '../src/tokenizer/tokenizer.js';
import { fixturePath } from './helpers/fixtures.js';
import { requestContext } from './helpers/server.js';

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
    rejects(() => parseCompletionRequest({ prompt: 'a', use_beam_search: true }, ctx), 400, 'use_beam_search');
    rejects(() => parseCompletionRequest({ prompt: 'a', response_format: { type: 'json_object' } }, ctx), 400, 'response_format');
    rejects(() => parseCompletionRequest({ prompt: 'a', guided_regex: 'a+' }, ctx), 400, 'guided_regex');
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
    rejects(() => parseChatRequest({ messages, tools: [{ type: 'function', function: { name: 'f' } }] }, ctx), 400, 'tool_choice');
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
