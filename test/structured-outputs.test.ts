/**
 * Structured outputs end to end: request fields (response_format, structured_outputs, guided_*)
 * through the server with the official openai client, the offline API, the engine's grammar stage
 * (n > 1, best_of, beam search, streaming, batched = solo), compiles that do not stall other
 * requests, and bad specs refused with a 400 before anything reaches the engine. The model is a
 * random-weight fixture: whatever it writes, every output that finishes with "stop" must parse and
 * validate, since the mask leaves nothing else possible.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Ajv } from 'ajv';
import OpenAI from 'openai';
import { LengthFinishReasonError } from 'openai/core/error';
import { AsyncEngine } from '../src/engine/async-engine.js';
import { EngineCore } from '../src/engine/core.js';
import { LLM } from '../src/engine/llm.js';
import { makeEngineConfig } from '../src/config/engine-config.js';
import { createBackend } from '../src/backend/index.js';
import { GrammarError, InvalidRequestError } from '../src/errors.js';
import { makeSamplingParams } from '../src/sampling/params.js';
import type { GrammarSpec } from '../src/structured/spec.js';
import { fixturePath } from './helpers/fixtures.js';
import { toolsModel } from './helpers/tools-fixture.js';
import { requestContext, startServer, TEST_ENGINE, type TestServer } from './helpers/server.js';
import { parseChatRequest, parseCompletionRequest } from '../src/server/request.js';
import { PagewiseTokenizer } from '../src/tokenizer/tokenizer.js';
import { Sampler } from '../src/sampling/sampler.js';
import { tokenBitmask } from '../src/sampling/logits-processors.js';
import { Rng } from '../src/sampling/rng.js';
import { cpuBackend } from '../src/backend/native.js';

/**
 * A random model's JSON strings and containers end only when it happens to sample their closing
 * character (about one id in 500 in a string); a bias on the closers makes outputs finish within
 * a few hundred tokens, so there are many "stop" outputs to check. The bias changes what is
 * likely, never what is allowed.
 */
function closerBias(tok: PagewiseTokenizer): Record<string, number> {
  const bias: Record<string, number> = {};
  const wanted = new Set(['"', '}', ']', '<0x22>', '<0x7D>', '<0x5D>']);
  for (let id = 0; id < tok.vocabSize; id++) if (wanted.has(tok.idToToken(id) ?? '')) bias[String(id)] = 6;
  assert.ok(Object.keys(bias).length >= 3, 'the fixture vocabulary has the closing characters');
  return bias;
}

/**
 * Deterministic search (beam search, greedy) on a random model prefers whatever its weights favour,
 * and JSON allows whitespace between any two tokens: without this bias the beams fill max_tokens
 * with tabs and newlines. Banning whitespace by bias leaves the grammar and the search as they are.
 */
function noWhitespaceBias(tok: PagewiseTokenizer): Record<string, number> {
  const bias: Record<string, number> = {};
  for (let id = 0; id < tok.vocabSize; id++) if (/^(▁|<0x09>|<0x0A>|<0x0D>|<0x20>)+$/.test(tok.idToToken(id) ?? '')) bias[String(id)] = -100;
  assert.ok(Object.keys(bias).length >= 3, 'the fixture vocabulary has whitespace tokens');
  return bias;
}

const SCHEMAS: Array<{ name: string; schema: Record<string, unknown> }> = [
  {
    name: 'enum, bounded integer, additionalProperties false',
    schema: {
      type: 'object',
      properties: { role: { enum: ['admin', 'user', 'guest'] }, age: { type: 'integer', minimum: 0, maximum: 120 }, ok: { type: 'boolean' } },
      required: ['role', 'age', 'ok'],
      additionalProperties: false,
    },
  },
  {
    name: '$ref into $defs, arrays of refs',
    schema: {
      $defs: { point: { type: 'object', properties: { x: { type: 'integer', minimum: -9, maximum: 9 }, y: { type: 'integer', minimum: -9, maximum: 9 } }, required: ['x', 'y'], additionalProperties: false } },
      type: 'object',
      properties: { origin: { $ref: '#/$defs/point' }, path: { type: 'array', items: { $ref: '#/$defs/point' }, maxItems: 3 } },
      required: ['origin', 'path'],
      additionalProperties: false,
    },
  },
  {
    name: 'anyOf of a short string, a bounded integer and null',
    schema: { anyOf: [{ type: 'string', maxLength: 4 }, { type: 'integer', minimum: 10, maximum: 20 }, { type: 'null' }] },
  },
  {
    name: 'numbers with exclusive and negative bounds',
    schema: {
      type: 'object',
      properties: { n: { type: 'integer', exclusiveMinimum: 0, exclusiveMaximum: 100 }, neg: { type: 'integer', minimum: -50, maximum: -3 }, p: { type: 'number', minimum: -1.5, maximum: 2.5 } },
      required: ['n', 'neg', 'p'],
      additionalProperties: false,
    },
  },
  {
    name: 'string patterns and lengths',
    schema: {
      type: 'object',
      properties: { zip: { type: 'string', pattern: '^[0-9]{5}$' }, code: { type: 'string', pattern: '^[A-Z]{2}-[0-9]{1,3}$' }, word: { type: 'string', minLength: 2, maxLength: 4 } },
      required: ['zip', 'code', 'word'],
      additionalProperties: false,
    },
  },
  {
    name: 'nested objects and arrays, const, optional properties',
    schema: {
      type: 'object',
      properties: {
        kind: { const: 'order' },
        lines: { type: 'array', items: { type: 'object', properties: { sku: { enum: ['a1', 'b2'] }, qty: { type: 'integer', minimum: 1, maximum: 9 } }, required: ['sku', 'qty'], additionalProperties: false }, minItems: 1, maxItems: 2 },
        note: { type: 'string', maxLength: 3 },
      },
      required: ['kind', 'lines'],
      additionalProperties: false,
    },
  },
];

const ajv = new Ajv({ strict: false });

/** Every "stop" output parses and validates; returns how many there were. */
function checkOutputs(outputs: ReadonlyArray<{ text: string; finish: string | null }>, schema: Record<string, unknown>, what: string): number {
  const validate = ajv.compile(schema);
  let stops = 0;
  for (const o of outputs) {
    if (o.finish !== 'stop') continue;
    stops++;
    let value: unknown;
    assert.doesNotThrow(() => (value = JSON.parse(o.text)), `${what}: not JSON: ${JSON.stringify(o.text)}`);
    assert.ok(validate(value), `${what}: ${JSON.stringify(o.text)} does not validate: ${ajv.errorsText(validate.errors)}`);
  }
  return stops;
}

describe('structured outputs: request fields and the sampler stage', () => {
  const tok = PagewiseTokenizer.fromDir(fixturePath('llama-tiny'));
  const ctx = requestContext(tok);
  const schema = SCHEMAS[0]!.schema;

  test('every field maps onto SamplingParams.structuredOutputs; text and "text" formats leave it off', () => {
    const so = (body: Record<string, unknown>): unknown => parseCompletionRequest({ prompt: 'a', ...body }, ctx).params[0]!.structuredOutputs;
    assert.equal(so({}), null);
    assert.equal(so({ response_format: { type: 'text' } }), null);
    assert.deepEqual(so({ response_format: { type: 'json_object' } }), { kind: 'json_object' });
    assert.deepEqual(so({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema, strict: false } } }), { kind: 'json_schema', schema, strict: false });
    assert.deepEqual(so({ structured_outputs: { json: schema } }), { kind: 'json_schema', schema, compact: false });
    assert.deepEqual(so({ structured_outputs: { json: schema, disable_any_whitespace: true } }), { kind: 'json_schema', schema, compact: true });
    assert.deepEqual(so({ structured_outputs: { regex: 'a+', disable_fallback: false } }), { kind: 'regex', pattern: 'a+' });
    assert.deepEqual(so({ structured_outputs: { choice: ['x', 'y'] } }), { kind: 'choice', choices: ['x', 'y'] });
    assert.deepEqual(so({ structured_outputs: { grammar: 'root ::= "a"' } }), { kind: 'grammar', ebnf: 'root ::= "a"' });
    assert.deepEqual(so({ structured_outputs: { json_object: true } }), { kind: 'json_object', compact: false });
    assert.deepEqual(so({ guided_json: schema, guided_decoding_backend: 'xgrammar' }), { kind: 'json_schema', schema });
    assert.deepEqual(so({ guided_regex: 'b' }), { kind: 'regex', pattern: 'b' });
    assert.deepEqual(so({ guided_choice: ['p'] }), { kind: 'choice', choices: ['p'] });
    assert.deepEqual(so({ guided_grammar: 'root ::= "b"' }), { kind: 'grammar', ebnf: 'root ::= "b"' });
    const chat = parseChatRequest({ messages: [{ role: 'user', content: 'x' }], response_format: { type: 'json_object' } }, requestContext(PagewiseTokenizer.fromDir(fixturePath('qwen2-tiny'))));
    assert.deepEqual(chat.params.structuredOutputs, { kind: 'json_object' });
    assert.equal(chat.grammarParam, 'response_format');
  });

  test('shape errors are 400s naming the field, before any compile', () => {
    const bad = (body: Record<string, unknown>, param: string, message: RegExp): void => {
      assert.throws(
        () => parseCompletionRequest({ prompt: 'a', ...body }, ctx),
        (e: unknown) => e instanceof InvalidRequestError && e.status === 400 && e.param === param && message.test(e.message),
        JSON.stringify(body),
      );
    };
    bad({ response_format: 'json' }, 'response_format', /must be an object/);
    bad({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: 5 } } }, 'response_format', /JSON schema/);
    bad({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: {}, strict: 'yes' } } }, 'response_format', /strict/);
    bad({ structured_outputs: {} }, 'structured_outputs', /exactly one/);
    bad({ structured_outputs: { regex: 'a', whitespace_pattern: ' *' } }, 'structured_outputs', /whitespace_pattern/);
    bad({ structured_outputs: { regex: 'a[à-é]' } }, 'structured_outputs', /non-ASCII/);
    bad({ guided_choice: 'x' }, 'guided_choice', /list of strings/);
    bad({ guided_regex: '' }, 'guided_regex', /non-empty/);
    bad({ guided_json: schema, response_format: { type: 'json_object' } }, 'guided_json', /only one/);
    bad({ guided_whitespace_pattern: '\\s*', guided_regex: 'a' }, 'guided_whitespace_pattern', /not supported/);
    bad({ guided_json: { type: 'integer', minimum: 3, maximum: 1 } }, 'guided_json', /range is empty/);
    bad({ guided_regex: 'a', allowed_token_ids: [5] }, 'allowed_token_ids', /cannot be combined/);
  });

  test('the grammar stage masks exactly the ids outside the row\'s bitmask; unconstrained rows are untouched', () => {
    const V = 70;
    const sampler = new Sampler(cpuBackend(), V);
    const allowed = [3, 31, 32, 33, 64, 69];
    const mask = tokenBitmask(allowed, V);
    const p = makeSamplingParams({ temperature: 1, seed: 1 }, { vocabSize: V });
    const logits = new Float32Array(2 * V).map((_, i) => Math.sin(i) * 3);
    const raw = logits.slice();
    sampler.process(logits, [
      { params: p, rng: new Rng(1), promptTokenIds: [], outputTokenIds: [], eosTokenIds: [2], grammarMask: mask },
      { params: p, rng: new Rng(1), promptTokenIds: [], outputTokenIds: [], eosTokenIds: [2], grammarMask: null },
    ]);
    for (let i = 0; i < V; i++) assert.equal(logits[i], allowed.includes(i) ? raw[i] : -Infinity, `id ${i}`);
    assert.deepEqual(logits.subarray(V), raw.subarray(V));
    for (let seed = 0; seed < 50; seed++) {
      const r = sampler.sample(raw.slice(0, V), [{ params: makeSamplingParams({ temperature: 1.5, seed }, { vocabSize: V }), rng: new Rng(seed), promptTokenIds: [], outputTokenIds: [], eosTokenIds: [2], grammarMask: mask }]);
      assert.ok(allowed.includes(r[0]!.tokenId), `drew ${r[0]!.tokenId}`);
    }
  });
});

describe('structured outputs through the server (openai client)', () => {
  let s: TestServer;
  let client: OpenAI;
  let bias: Record<string, number>;
  const model = 'llama-tiny';
  const messages = [{ role: 'user' as const, content: 'Give me JSON.' }];

  before(async () => {
    // llama-tiny with a chat template (the tools fixture's renders plain messages as they are).
    s = await startServer({ model: toolsModel('hermes'), maxNumSeqs: 16 }, { servedModelName: model });
    client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    bias = closerBias(s.engine.tokenizer);
  });
  after(async () => {
    await s?.close();
  });

  test('response_format json_schema: every finished output of many schemas parses and validates (n > 1)', async () => {
    let total = 0;
    let stops = 0;
    for (const [k, { name, schema }] of SCHEMAS.entries()) {
      const r = await client.chat.completions.create({
        model,
        messages,
        n: 4,
        seed: 100 + k,
        max_tokens: 300,
        logit_bias: bias,
        response_format: { type: 'json_schema', json_schema: { name: `s${k}`, schema, strict: true } },
      });
      assert.equal(r.choices.length, 4);
      total += r.choices.length;
      stops += checkOutputs(r.choices.map((c) => ({ text: c.message.content ?? '', finish: c.finish_reason })), schema, name);
    }
    // The check means something only if most outputs finished.
    assert.ok(stops >= total / 2, `${stops} of ${total} outputs finished with "stop"`);
  });

  test('zodResponseFormat: the client parses the message into the zod type', async () => {
    // zod is a devDependency (the openai helper needs zod 3.25+ or 4); named through a variable so
    // the typecheck does not depend on it.
    const zodPackage = 'zod';
    const { z } = (await import(zodPackage).catch((err: unknown) => {
      throw new Error(`this test needs the zod devDependency (npm install --save-dev zod@^4): ${String(err)}`);
    })) as { z: any }; // the zod API, untyped
    const { zodResponseFormat } = await import('openai/helpers/zod');
    const Event = z.object({ name: z.enum(['party', 'meeting']), day: z.number().int().min(1).max(31), attendees: z.array(z.enum(['ann', 'bob'])).max(2) });
    const format = zodResponseFormat(Event, 'event');
    let parsed = 0;
    for (let seed = 0; seed < 4; seed++) {
      let r: Awaited<ReturnType<typeof client.chat.completions.parse>>;
      try {
        r = await client.chat.completions.parse({ model, messages, seed, max_tokens: 200, logit_bias: bias, response_format: format });
      } catch (err) {
        // parse() refuses an output cut by max_tokens; only finished outputs must parse.
        if (err instanceof LengthFinishReasonError) continue;
        throw err;
      }
      const c = r.choices[0]!;
      if (c.finish_reason !== 'stop') continue;
      assert.ok(c.message.parsed !== null, 'parsed');
      assert.deepEqual(Event.parse(c.message.parsed), c.message.parsed);
      parsed++;
    }
    assert.ok(parsed >= 2, `${parsed} of 4 parsed`);
  });

  test('json_object, and streaming: the streamed text is the same output and parses', async () => {
    const body = { model, messages, seed: 7, max_tokens: 300, logit_bias: bias, response_format: { type: 'json_object' as const } };
    const r = await client.chat.completions.create(body);
    const text = r.choices[0]!.message.content ?? '';
    let streamed = '';
    let finish: string | null = null;
    for await (const chunk of await client.chat.completions.create({ ...body, stream: true })) {
      for (const c of chunk.choices) {
        streamed += c.delta.content ?? '';
        finish = c.finish_reason ?? finish;
      }
    }
    assert.equal(streamed, text);
    assert.equal(finish, r.choices[0]!.finish_reason);
    if (finish === 'stop') {
      const v: unknown = JSON.parse(text);
      assert.ok(typeof v === 'object' && v !== null && !Array.isArray(v), text);
    }
  });

  test('completions: structured_outputs and guided_* (regex, choice, grammar, json), best_of, beam search', async () => {
    type Extra = Record<string, unknown>;
    const create = (extra: Extra): Promise<OpenAI.Completion> =>
      client.completions.create({ model, prompt: 'Answer:', max_tokens: 40, seed: 3, ...extra } as unknown as OpenAI.CompletionCreateParamsNonStreaming);
    const all = (r: OpenAI.Completion): Array<{ text: string; finish: string | null }> => r.choices.map((c) => ({ text: c.text, finish: c.finish_reason }));

    const regex = await create({ n: 3, structured_outputs: { regex: '[a-z]{2,5}-[0-9]{2}' } });
    for (const c of all(regex)) if (c.finish === 'stop') assert.match(c.text, /^[a-z]{2,5}-[0-9]{2}$/);
    assert.ok(all(regex).some((c) => c.finish === 'stop'));

    const choice = await create({ n: 3, guided_choice: ['yes', 'no', 'maybe later'] });
    for (const c of all(choice)) assert.ok(['yes', 'no', 'maybe later'].includes(c.text) && c.finish === 'stop', c.text);

    const grammar = await create({ n: 2, guided_grammar: 'root ::= "(" num ("+" num)* ")"\nnum ::= [0-9]{1,2}' });
    for (const c of all(grammar)) if (c.finish === 'stop') assert.match(c.text, /^\([0-9]{1,2}(\+[0-9]{1,2})*\)$/);

    const schema = SCHEMAS[0]!.schema;
    const bestOf = await create({ n: 2, best_of: 4, max_tokens: 200, logit_bias: bias, guided_json: schema });
    assert.equal(bestOf.choices.length, 2);
    checkOutputs(all(bestOf), schema, 'best_of');

    const beam = await create({ n: 2, best_of: 3, use_beam_search: true, temperature: 0, max_tokens: 120, logit_bias: { ...bias, ...noWhitespaceBias(s.engine.tokenizer) }, guided_json: schema });
    assert.equal(beam.choices.length, 2);
    assert.ok(checkOutputs(all(beam), schema, 'beam search') >= 1, JSON.stringify(all(beam)));

    // Greedy decoding with disable_any_whitespace: compact JSON that ends (whitespace cannot loop).
    const compact = await create({ temperature: 0, max_tokens: 120, structured_outputs: { json: schema, disable_any_whitespace: true } });
    assert.equal(compact.choices[0]!.finish_reason, 'stop', compact.choices[0]!.text);
    assert.equal(checkOutputs(all(compact), schema, 'compact'), 1);
    // xgrammar's compact layout: one space after ':' and ',' (as JSON.stringify with separators), no other whitespace.
    assert.doesNotMatch(compact.choices[0]!.text.replace(/"(?:[^"\\]|\\.)*"/g, '""'), /[\n\r\t]|  |[^:,] /);

    // A JSON schema given as text, as vLLM accepts it.
    const asText = await create({ max_tokens: 200, logit_bias: bias, structured_outputs: { json: JSON.stringify(schema) } });
    checkOutputs(all(asText), schema, 'schema as text');
  });

  test('bad schemas, regexes and grammars: 400 naming the field and the problem; nothing reaches the engine', async () => {
    const engine = s.engine;
    const generate = engine.generate.bind(engine);
    let submitted = 0;
    engine.generate = (req) => {
      submitted++;
      return generate(req);
    };
    try {
      const cases: Array<{ extra: Record<string, unknown>; param: string; message: RegExp }> = [
        { extra: { response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', properties: { a: { $ref: '#/$defs/nope' } } } } } }, param: 'response_format', message: /JSON schema/ },
        { extra: { response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'integer', minimum: 5, maximum: 1 } } } }, param: 'response_format', message: /range is empty/ },
        { extra: { structured_outputs: { regex: '(unclosed' } }, param: 'structured_outputs', message: /regex/ },
        { extra: { guided_grammar: 'root ::= missing_rule' }, param: 'guided_grammar', message: /EBNF grammar/ },
        { extra: { guided_choice: [] }, param: 'guided_choice', message: /choice/ },
        { extra: { guided_json: '{not json' }, param: 'guided_json', message: /not valid JSON/ },
        { extra: { structured_outputs: { regex: 'a', choice: ['b'] } }, param: 'structured_outputs', message: /exactly one/ },
      ];
      for (const c of cases) {
        await assert.rejects(
          client.chat.completions.create({ model, messages, max_tokens: 4, ...c.extra } as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming),
          (e: unknown) => {
            assert.ok(e instanceof OpenAI.BadRequestError, String(e));
            assert.match(e.message, c.message);
            assert.equal((e.error as { param?: unknown } | undefined)?.param ?? e.param, c.param, e.message);
            return true;
          },
        );
      }
      assert.equal(submitted, 0);
    } finally {
      engine.generate = generate;
    }
  });
});

describe('structured outputs in the engine', () => {
  test('offline API: SamplingParams.structuredOutputs; a bad spec is a GrammarError before submission', async () => {
    const llm = new LLM({ ...TEST_ENGINE, model: fixturePath('llama-tiny') });
    try {
      const outs = await llm.generate(['Once', 'Twice'], { n: 2, seed: 1, maxTokens: 30, structuredOutputs: { kind: 'regex', pattern: '(ab|cd){1,3}!' } });
      let stops = 0;
      for (const o of outs) {
        for (const c of o.outputs) {
          if (c.finishReason !== 'stop') continue;
          stops++;
          assert.match(c.text, /^(ab|cd){1,3}!$/);
        }
      }
      assert.ok(stops > 0);
      await assert.rejects(llm.generate('Once', { structuredOutputs: { kind: 'grammar', ebnf: 'root ::= (' } }), GrammarError);
    } finally {
      await llm.close();
    }
  });

  test('a constrained request batched with others gives the tokens it gives alone', async () => {
    const engine = await AsyncEngine.start({ ...TEST_ENGINE, model: fixturePath('llama-tiny') });
    try {
      const V = engine.info.model.vocabSize;
      const spec: GrammarSpec = { kind: 'json_schema', schema: SCHEMAS[1]!.schema };
      const params = (seed: number, so: GrammarSpec | null) => makeSamplingParams({ seed, maxTokens: 48, temperature: 1, structuredOutputs: so }, { vocabSize: V });
      const prompt = engine.tokenizer.encode('Once upon a time');
      const alone = await engine.generate({ promptTokenIds: prompt, params: params(9, spec) }).final();
      const streams = [
        engine.generate({ promptTokenIds: prompt.slice(0, 3), params: params(1, null) }),
        engine.generate({ promptTokenIds: prompt, params: params(9, spec) }),
        engine.generate({ promptTokenIds: [1, 5, 6, 7, 8], params: params(2, { kind: 'regex', pattern: '[0-9]+' }) }),
      ];
      const batched = await Promise.all(streams.map((st) => st.final()));
      assert.deepEqual(batched[1]!.outputs[0]!.tokenIds, alone.outputs[0]!.tokenIds);
    } finally {
      await engine.shutdown();
    }
  });

  test('drawing before masking (rows with no other stage) changes nothing: greedy picks the same tokens, sampling the same distribution', async () => {
    const engine = await AsyncEngine.start({ ...TEST_ENGINE, model: fixturePath('llama-tiny') });
    try {
      const V = engine.info.model.vocabSize;
      const prompt = engine.tokenizer.encode('Once upon a time');
      // A logit_bias of 0 changes no logit but is a stage, so that row is masked before its draw.
      const maskFirst = { 5: 0 };
      const run = async (input: Parameters<typeof makeSamplingParams>[0]): Promise<number[][]> =>
        (await engine.generate({ promptTokenIds: prompt, params: makeSamplingParams(input, { vocabSize: V }) }).final()).outputs.map((o) => o.tokenIds);
      const spec: GrammarSpec = { kind: 'json_schema', schema: SCHEMAS[5]!.schema };
      const greedy = await run({ temperature: 0, maxTokens: 60, structuredOutputs: spec });
      assert.deepEqual(greedy, await run({ temperature: 0, maxTokens: 60, structuredOutputs: spec, logitBias: maskFirst }));
      // First-token frequencies over the 16 ids that spell a letter a-h (pieces and bytes), 1600 draws each way.
      const letters: GrammarSpec = { kind: 'regex', pattern: '[a-h]' };
      const freq = async (bias: Record<number, number> | null): Promise<Map<number, number>> => {
        const counts = new Map<number, number>();
        for (let k = 0; k < 100; k++) {
          for (const ids of await run({ n: 16, seed: 1000 * k, temperature: 1.5, maxTokens: 2, structuredOutputs: letters, logitBias: bias })) counts.set(ids[0]!, (counts.get(ids[0]!) ?? 0) + 1);
        }
        return counts;
      };
      const a = await freq(null);
      const b = await freq(maskFirst);
      assert.ok(a.size >= 6 && b.size >= 6, `draws cover the letters: ${[...a.keys()]} / ${[...b.keys()]}`);
      let tv = 0;
      for (const id of new Set([...a.keys(), ...b.keys()])) tv += Math.abs((a.get(id) ?? 0) - (b.get(id) ?? 0)) / 1600;
      // Two samples of 1600 from one near-uniform 16-way distribution differ by about 0.055 in total
      // variation; a draw that ignored the mask's renormalization would be far off.
      assert.ok(tv / 2 < 0.1, `total variation ${tv / 2}: ${JSON.stringify([...a])} vs ${JSON.stringify([...b])}`);
    } finally {
      await engine.shutdown();
    }
  });

  /** An engine core stepped by the test itself, for the compile-while-stepping tests. */
  const compileTestCore = (): EngineCore =>
    new EngineCore(createBackend({ threads: 2 }), fixturePath('llama-tiny'), makeEngineConfig({ model: fixturePath('llama-tiny'), kvCacheMemory: 16 * 1024 * 1024, threads: 2 }));

  test('a request aborted while its grammar compiles finishes at once and never runs; one waiting on the same compile is admitted', async () => {
    const core = compileTestCore();
    try {
      let admitted = 0;
      core.events = { admitted: () => admitted++, rejected: (id, err) => assert.fail(`${id} rejected: ${String(err)}`) };
      const V = core.info.model.vocabSize;
      const spec: GrammarSpec = { kind: 'json_schema', schema: SCHEMAS[3]!.schema };
      const params = makeSamplingParams({ seed: 2, maxTokens: 4, structuredOutputs: spec }, { vocabSize: V });
      core.addRequest({ requestId: 'gone', promptTokenIds: [1, 403], params, arrivalTime: 0 });
      assert.equal(core.numCompiling, 1);
      const deltas = core.abort(['gone']);
      assert.deepEqual(
        deltas.map((d) => [d.requestId, d.finished, d.seqs.length]),
        [['gone', true, 0]],
      );
      assert.equal(core.numCompiling, 0);
      // The id is free again at once; a request with the same schema waits for the same compile.
      core.addRequest({ requestId: 'gone', promptTokenIds: [1, 403], params, arrivalTime: 0 });
      core.abort(['gone']);
      core.addRequest({ requestId: 'next', promptTokenIds: [1, 403], params, arrivalTime: 0 });
      assert.equal(core.numCompiling, 1);
      while (core.numCompiling > 0) await new Promise((r) => setTimeout(r, 5));
      // Only the request still waiting is admitted: the aborted ones never run.
      assert.equal(admitted, 1);
      const seen = new Set<string>();
      let tokens = 0;
      while (core.hasWork())
        for (const d of core.step().deltas) {
          seen.add(d.requestId);
          tokens += d.seqs.reduce((a, q) => a + q.newTokenIds.length, 0);
        }
      assert.deepEqual([...seen], ['next']);
      assert.ok(tokens > 0);
    } finally {
      core.close();
    }
  });

  test('a grammar compiling does not hold up other requests: they step while it compiles', async () => {
    const core = compileTestCore();
    try {
      let admitted = 0;
      core.events = { admitted: () => admitted++, rejected: (id, err) => assert.fail(`${id} rejected: ${String(err)}`) };
      const V = core.info.model.vocabSize;
      core.addRequest({ requestId: 'plain', promptTokenIds: [1, 403, 407], params: makeSamplingParams({ seed: 1, maxTokens: 6, ignoreEos: true }, { vocabSize: V }), arrivalTime: 0 });
      const spec: GrammarSpec = { kind: 'json_schema', schema: SCHEMAS[5]!.schema };
      core.addRequest({ requestId: 'json', promptTokenIds: [1, 403], params: makeSamplingParams({ seed: 2, maxTokens: 6, structuredOutputs: spec }, { vocabSize: V }), arrivalTime: 0 });
      assert.equal(core.numCompiling, 1);
      // The compile cannot finish inside this synchronous run of steps: the other request finishes meanwhile.
      let plainTokens = 0;
      while (core.hasWork()) for (const d of core.step().deltas) if (d.requestId === 'plain') plainTokens += d.seqs.reduce((a, q) => a + q.newTokenIds.length, 0);
      assert.equal(plainTokens, 6);
      assert.equal(core.numCompiling, 1);
      while (core.numCompiling > 0) await new Promise((r) => setTimeout(r, 5));
      assert.equal(admitted, 1);
      let jsonTokens = 0;
      while (core.hasWork()) for (const d of core.step().deltas) if (d.requestId === 'json') jsonTokens += d.seqs.reduce((a, q) => a + q.newTokenIds.length, 0);
      assert.ok(jsonTokens > 0);
      // Cached now: a second request with the same schema is admitted at once.
      core.addRequest({ requestId: 'json2', promptTokenIds: [1, 403], params: makeSamplingParams({ seed: 3, maxTokens: 2, structuredOutputs: spec }, { vocabSize: V }), arrivalTime: 0 });
      assert.equal(core.numCompiling, 0);
      while (core.hasWork()) core.step();
    } finally {
      core.close();
    }
  });
});
