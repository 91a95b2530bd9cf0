import { cpuBackend } from '../src/backend/native.js';
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidRequestError } from '../src/errors.js';
import {
  makeSamplingParams,
  deriveSeed,
  isGreedy,
  MAX_LOGPROBS,
  SAMPLING_EPS,
  type SamplingParams,
  type SamplingParamsInput,
} from '../src/sampling/params.js';
import { Rng } from '../src/sampling/rng.js';
import { logitsProcessors, maskByBitmask, tokenBitmask } from '../src/sampling/logits-processors.js';
import { promptLogprobs } from '../src/sampling/logprobs.js';
import { DRAW_STAGES } from '../src/sampling/random-draw.js';
import { nucleus, selectTopK, TopK, topKIds } from '../src/sampling/selection.js';
import { Sampler, type SamplerRow } from '../src/sampling/sampler.js';

const V = 16;
const ctx = { vocabSize: V };

function params(input: SamplingParamsInput, vocabSize = V): SamplingParams {
  return makeSamplingParams(input, { vocabSize });
}

function row(p: SamplingParams, seed = 0, extra: Partial<SamplerRow> = {}): SamplerRow {
  return { params: p, rng: new Rng(seed), promptTokenIds: [], outputTokenIds: [], eosTokenIds: [2], grammarMask: null, ...extra };
}

/** Normal(0, sd²) logits from a seeded stream. */
function randomLogits(n: number, seed: number, sd = 2): Float32Array {
  const r = new Rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u1 = r.next() || 1e-12;
    const u2 = r.next();
    out[i] = sd * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }
  return out;
}

/** Reference distribution, written the straightforward way: sort, cumulate, mask (vLLM's rules). */
function referenceProbs(logits: ArrayLike<number>, opts: { temperature: number; topK?: number; topP?: number; minP?: number }): number[] {
  const n = logits.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => logits[b]! - logits[a]! || a - b);
  const keep = new Array<boolean>(n).fill(true);
  if (opts.topK !== undefined && opts.topK > 0) order.forEach((id, r) => (keep[id] = r < opts.topK!));
  const scaled = Array.from(logits, (x) => x / opts.temperature);
  const softmaxOver = (mask: boolean[]): number[] => {
    const m = Math.max(...scaled.filter((_, i) => mask[i]));
    const e = scaled.map((x, i) => (mask[i] ? Math.exp(x - m) : 0));
    const s = e.reduce((a, b) => a + b, 0);
    return e.map((x) => x / s);
  };
  let probs = softmaxOver(keep);
  if (opts.topP !== undefined && opts.topP < 1) {
    let before = 0;
    const next = [...keep];
    for (const id of order) {
      if (!keep[id]) continue;
      next[id] = before < opts.topP;
      before += probs[id]!;
    }
    keep.splice(0, n, ...next);
    probs = softmaxOver(keep);
  }
  if (opts.minP !== undefined && opts.minP > 0) {
    const pmax = Math.max(...probs);
    for (let i = 0; i < n; i++) if (probs[i]! < opts.minP * pmax) keep[i] = false;
    probs = softmaxOver(keep);
  }
  return probs;
}

/** A stream of evenly spaced points (k + 0.5) / m: inverse-CDF counts are then exact to ±1. */
class GridRng extends Rng {
  private k = 0;
  constructor(private readonly m: number) {
    super(0);
  }
  override next(): number {
    return ((this.k++ % this.m) + 0.5) / this.m;
  }
}

function counts(logits: Float32Array, p: SamplingParams, draws: number, rng: Rng): number[] {
  const n = logits.length;
  const sampler = new Sampler(cpuBackend(), n);
  const c = new Array<number>(n).fill(0);
  const buf = new Float32Array(n);
  const r: SamplerRow = { params: p, rng, promptTokenIds: [], outputTokenIds: [], eosTokenIds: [], grammarMask: null };
  for (let i = 0; i < draws; i++) {
    buf.set(logits);
    c[sampler.sample(buf, [r])[0]!.tokenId]!++;
  }
  return c;
}

describe('makeSamplingParams: defaults and normalisation', () => {
  test('vLLM defaults', () => {
    const p = params({});
    assert.deepEqual(p, {
      n: 1, bestOf: 1, temperature: 1, topP: 1, topK: -1, minP: 0,
      presencePenalty: 0, frequencyPenalty: 0, repetitionPenalty: 1,
      seed: null, stop: [], stopTokenIds: [], includeStopStrInOutput: false, ignoreEos: false,
      maxTokens: 16, minTokens: 0, logprobs: null, promptLogprobs: null, logitBias: null, allowedTokenIds: null,
      skipSpecialTokens: true, spacesBetweenSpecialTokens: true, useBeamSearch: false, lengthPenalty: 1, earlyStopping: false, structuredOutputs: null,
    });
  });

  test('model defaults fill unset (undefined or null) fields; request values win', () => {
    const defaults = { temperature: 0.7, topP: 0.8, topK: 20 };
    const p = makeSamplingParams({ topP: null as unknown as number, topK: 5 }, { vocabSize: V, defaults });
    assert.equal(p.temperature, 0.7);
    assert.equal(p.topP, 0.8);
    assert.equal(p.topK, 5);
    const g = makeSamplingParams({ temperature: 0 }, { vocabSize: V, defaults });
    assert.equal(g.temperature, 0);
  });

  test('greedy resets top_p / top_k / min_p; isGreedy uses SAMPLING_EPS', () => {
    const p = params({ temperature: 0, topP: 0.5, topK: 3, minP: 0.2 });
    assert.equal(p.topP, 1);
    assert.equal(p.topK, -1);
    assert.equal(p.minP, 0);
    assert.ok(isGreedy(p));
    assert.ok(isGreedy(params({ temperature: SAMPLING_EPS / 10 })));
    assert.ok(!isGreedy(params({ temperature: SAMPLING_EPS })));
  });

  test('top_k 0 means off (stored as -1); stop string becomes a list, duplicates dropped', () => {
    assert.equal(params({ topK: 0 }).topK, -1);
    assert.deepEqual(params({ stop: 'END' }).stop, ['END']);
    assert.deepEqual(params({ stop: ['a', 'b', 'a'] }).stop, ['a', 'b']);
    assert.deepEqual(params({ stop: null }).stop, []);
    assert.deepEqual(params({ stopTokenIds: [3, 3, 4] }).stopTokenIds, [3, 4]);
  });

  test('logit_bias from a JSON object becomes a Map of ids; a Map is accepted as is', () => {
    const p = params({ logitBias: { '3': 5, '7': -100 } });
    assert.deepEqual([...p.logitBias!.entries()], [[3, 5], [7, -100]]);
    const q = params({ logitBias: new Map([[1, 2]]) });
    assert.deepEqual([...q.logitBias!.entries()], [[1, 2]]);
  });

  test('seed: -1 means unseeded; best_of defaults to n; max_tokens null uses the model length', () => {
    assert.equal(params({ seed: -1 }).seed, null);
    assert.equal(params({ seed: 123 }).seed, 123);
    assert.equal(params({ n: 3 }).bestOf, 3);
    assert.equal(makeSamplingParams({ maxTokens: null }, { vocabSize: V, maxModelLen: 512 }).maxTokens, 512);
    assert.equal(makeSamplingParams({}, { vocabSize: V }).maxTokens, 16);
    assert.equal(params({ logprobs: 0 }).logprobs, 0);
    assert.equal(makeSamplingParams({ logprobs: 50 }, { vocabSize: V, maxLogprobs: 50 }).logprobs, 50);
  });

  test('beam search accepts temperature 0 with best_of > 1', () => {
    const p = params({ useBeamSearch: true, temperature: 0, n: 2, bestOf: 4, lengthPenalty: 0.5, earlyStopping: 'never' });
    assert.equal(p.bestOf, 4);
    assert.equal(p.earlyStopping, 'never');
  });

  test('deriveSeed: seed + index (vLLM child requests), index 0 is the request seed', () => {
    assert.equal(deriveSeed(42, 0), 42);
    assert.equal(deriveSeed(42, 3), 45);
    assert.equal(deriveSeed(-5, 2), -3);
  });
});

describe('makeSamplingParams: every invalid value is a 400 naming the field and the rule', () => {
  const cases: Array<[string, SamplingParamsInput, string, string, Partial<{ vocabSize: number; maxLogprobs: number }>?]> = [
    ['n = 0', { n: 0 }, 'n', 'n must be >= 1, got 0'],
    ['n fractional', { n: 1.5 }, 'n', 'n must be an integer, got 1.5'],
    ['n string', { n: '2' as unknown as number }, 'n', 'n must be a number, got string "2"'],
    ['best_of < n', { n: 3, bestOf: 2 }, 'best_of', 'best_of must be >= n (n=3), got 2'],
    ['temperature < 0', { temperature: -1 }, 'temperature', 'temperature must be >= 0, got -1'],
    ['temperature NaN', { temperature: NaN }, 'temperature', 'temperature must be a finite number, got NaN'],
    ['temperature Infinity', { temperature: Infinity }, 'temperature', 'temperature must be a finite number, got Infinity'],
    ['temperature string', { temperature: 'hot' as unknown as number }, 'temperature', 'temperature must be a number, got string "hot"'],
    ['top_p = 0', { topP: 0 }, 'top_p', 'top_p must be in (0, 1], got 0'],
    ['top_p > 1', { topP: 1.5 }, 'top_p', 'top_p must be in (0, 1], got 1.5'],
    ['top_k = -2', { topK: -2 }, 'top_k', 'top_k must be -1 or 0 (disabled) or >= 1, got -2'],
    ['top_k fractional', { topK: 2.5 }, 'top_k', 'top_k must be an integer, got 2.5'],
    ['min_p < 0', { minP: -0.1 }, 'min_p', 'min_p must be in [0, 1], got -0.1'],
    ['min_p > 1', { minP: 1.1 }, 'min_p', 'min_p must be in [0, 1], got 1.1'],
    ['presence_penalty > 2', { presencePenalty: 2.5 }, 'presence_penalty', 'presence_penalty must be in [-2, 2], got 2.5'],
    ['frequency_penalty < -2', { frequencyPenalty: -3 }, 'frequency_penalty', 'frequency_penalty must be in [-2, 2], got -3'],
    ['repetition_penalty = 0', { repetitionPenalty: 0 }, 'repetition_penalty', 'repetition_penalty must be > 0, got 0'],
    ['repetition_penalty Infinity', { repetitionPenalty: Infinity }, 'repetition_penalty', 'repetition_penalty must be a finite number, got Infinity'],
    ['seed fractional', { seed: 1.5 }, 'seed', 'seed must be an integer, got 1.5'],
    ['seed beyond 2^53', { seed: 2 ** 60 }, 'seed', `seed must be an integer, got ${2 ** 60}`],
    ['max_tokens = 0', { maxTokens: 0 }, 'max_tokens', 'max_tokens must be >= 1, got 0'],
    ['max_tokens fractional', { maxTokens: 2.5 }, 'max_tokens', 'max_tokens must be an integer, got 2.5'],
    ['min_tokens < 0', { minTokens: -1 }, 'min_tokens', 'min_tokens must be >= 0, got -1'],
    ['min_tokens > max_tokens', { minTokens: 20, maxTokens: 10 }, 'min_tokens', 'min_tokens must be <= max_tokens (10), got 20'],
    ['logprobs > max', { logprobs: 21 }, 'logprobs', `logprobs must be in [0, ${MAX_LOGPROBS}], got 21`],
    ['logprobs < 0', { logprobs: -1 }, 'logprobs', `logprobs must be in [0, ${MAX_LOGPROBS}], got -1`],
    ['logprobs over a custom cap', { logprobs: 6 }, 'logprobs', 'logprobs must be in [0, 5], got 6', { maxLogprobs: 5 }],
    ['prompt_logprobs > max', { promptLogprobs: 100 }, 'prompt_logprobs', `prompt_logprobs must be in [0, ${MAX_LOGPROBS}], got 100`],
    ['logit_bias key not an id', { logitBias: { abc: 1 } }, 'logit_bias', 'logit_bias keys must be token ids, got "abc"'],
    ['logit_bias key out of vocab', { logitBias: { '16': 1 } }, 'logit_bias', 'logit_bias contains out-of-vocab token id 16 (valid ids are 0..15)'],
    ['logit_bias value > 100', { logitBias: { '3': 101 } }, 'logit_bias', 'logit_bias value for token 3 must be in [-100, 100], got 101'],
    ['logit_bias value NaN', { logitBias: { '3': NaN } }, 'logit_bias', 'logit_bias value for token 3 must be a finite number, got NaN'],
    ['logit_bias not an object', { logitBias: [1, 2] as unknown as Record<string, number> }, 'logit_bias', 'logit_bias must be an object mapping token ids to biases, got [1,2]'],
    ['allowed_token_ids empty', { allowedTokenIds: [] }, 'allowed_token_ids', 'allowed_token_ids must not be empty'],
    ['allowed_token_ids out of vocab', { allowedTokenIds: [1, 99] }, 'allowed_token_ids', 'allowed_token_ids contains out-of-vocab token id 99 (valid ids are 0..15)'],
    ['allowed_token_ids negative', { allowedTokenIds: [-1] }, 'allowed_token_ids', 'allowed_token_ids contains out-of-vocab token id -1 (valid ids are 0..15)'],
    ['stop_token_ids out of vocab', { stopTokenIds: [16] }, 'stop_token_ids', 'stop_token_ids contains out-of-vocab token id 16 (valid ids are 0..15)'],
    ['stop_token_ids not a list', { stopTokenIds: 3 as unknown as number[] }, 'stop_token_ids', 'stop_token_ids must be a list of token ids, got 3'],
    ['stop empty string', { stop: ['ok', ''] }, 'stop', 'stop must not contain an empty string'],
    ['stop non-string', { stop: ['ok', 5 as unknown as string] }, 'stop', 'stop must contain only strings, got 5'],
    ['stop wrong type', { stop: 5 as unknown as string }, 'stop', 'stop must be a string or a list of strings, got 5'],
    ['too many stop strings', { stop: Array.from({ length: 17 }, (_, i) => `s${i}`) }, 'stop', 'stop may contain at most 16 strings, got 17'],
    ['ignore_eos not boolean', { ignoreEos: 'yes' as unknown as boolean }, 'ignore_eos', 'ignore_eos must be a boolean, got "yes"'],
    ['greedy with n > 1', { temperature: 0, n: 2 }, 'n', 'n must be 1 when using greedy sampling (temperature 0), got 2'],
    ['greedy with best_of > 1', { temperature: 0, bestOf: 3 }, 'best_of', 'best_of must be 1 when using greedy sampling (temperature 0), got 3'],
    ['beam search with best_of 1', { useBeamSearch: true, temperature: 0 }, 'best_of', 'best_of (the beam width) must be > 1 when using beam search, got 1'],
    ['beam search with temperature', { useBeamSearch: true, bestOf: 2, temperature: 0.5 }, 'temperature', 'temperature must be 0 when using beam search, got 0.5'],
    ['early_stopping without beam search', { earlyStopping: true }, 'early_stopping', 'early_stopping is only used by beam search and must be false, got true'],
    ['early_stopping bad value', { earlyStopping: 'sometimes' as unknown as boolean }, 'early_stopping', 'early_stopping must be true, false or "never", got "sometimes"'],
    ['length_penalty without beam search', { lengthPenalty: 2 }, 'length_penalty', 'length_penalty is only used by beam search and must be 1, got 2'],
  ];
  for (const [name, input, param, message, extraCtx] of cases) {
    test(name, () => {
      assert.throws(
        () => makeSamplingParams(input, { ...ctx, ...extraCtx }),
        (err: unknown) => {
          assert.ok(err instanceof InvalidRequestError, `expected InvalidRequestError, got ${String(err)}`);
          assert.equal(err.message, message);
          assert.equal(err.param, param);
          assert.equal(err.status, 400);
          return true;
        },
      );
    });
  }

  test('beam search rejects top_p < 1 and top_k', () => {
    assert.throws(() => params({ useBeamSearch: true, bestOf: 2, temperature: 0, topP: 0.5 }), /top_p must be 1 when using beam search, got 0.5/);
    // Greedy normalisation does not hide top_k from beam search: it is checked first.
    assert.throws(() => params({ useBeamSearch: true, bestOf: 2, temperature: 0, topK: 5 }), /top_k must be -1 \(disabled\) when using beam search, got 5/);
  });
});

describe('Rng', () => {
  test('xoshiro128** reference outputs from state [1, 2, 3, 4]', () => {
    const r = new Rng(0);
    r.setState([1, 2, 3, 4]);
    const got = [r.nextUint32(), r.nextUint32(), r.nextUint32(), r.nextUint32()];
    assert.deepEqual(got, [11520, 0, 5927040, 70819200]);
  });

  test('same seed, same stream; different seeds (including high bits) differ', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    for (let i = 0; i < 100; i++) assert.equal(a.next(), b.next());
    const draws = (s: number): number[] => {
      const r = new Rng(s);
      return [r.next(), r.next(), r.next()];
    };
    assert.notDeepEqual(draws(1), draws(2));
    assert.notDeepEqual(draws(1), draws(1 + 2 ** 32));
    assert.notDeepEqual(draws(-1), draws(2 ** 32 - 1));
  });

  test('next() is in [0, 1) and uniform (mean, variance, bins)', () => {
    const r = new Rng(7);
    const N = 100_000;
    const bins = new Array<number>(10).fill(0);
    let sum = 0;
    let sq = 0;
    for (let i = 0; i < N; i++) {
      const x = r.next();
      assert.ok(x >= 0 && x < 1);
      sum += x;
      sq += x * x;
      bins[Math.floor(x * 10)]!++;
    }
    assert.ok(Math.abs(sum / N - 0.5) < 0.005);
    assert.ok(Math.abs(sq / N - sum * sum / N / N - 1 / 12) < 0.002);
    for (const b of bins) assert.ok(Math.abs(b / N - 0.1) < 0.005, `bin ${b}`);
  });

  test('clone continues the same stream independently; create(null) is random', () => {
    const a = new Rng(5);
    a.next();
    const b = a.clone();
    assert.equal(a.next(), b.next());
    assert.equal(b.seed, 5);
    const x = Rng.create(null);
    const y = Rng.create(null);
    assert.notEqual(x.seed, y.seed);
    assert.ok(Number.isSafeInteger(x.seed) && x.seed >= 0);
  });
});

describe('Sampler: greedy', () => {
  test('argmax with ties going to the lowest id, no random draw', () => {
    const s = new Sampler(cpuBackend(), 8);
    const logits = new Float32Array([0, 3, 1, 3, -1, 2, 3, 0]);
    const r = row(params({ temperature: 0 }, 8));
    const before = r.rng.clone();
    const [res] = s.sample(logits, [r]);
    assert.equal(res!.tokenId, 1);
    assert.equal(r.rng.next(), before.next(), 'greedy must not advance the stream');
    assert.ok(Number.isNaN(res!.logprob));
    assert.equal(res!.topLogprobs, null);
  });

  test('argmax lanes: the maximum anywhere in a long row, incl. the remainder', () => {
    for (const n of [1, 2, 3, 5, 7, 1001]) {
      const s = new Sampler(cpuBackend(), n);
      for (let pos = 0; pos < n; pos += Math.max(1, Math.floor(n / 7))) {
        const logits = new Float32Array(n).fill(-5);
        logits[pos] = 1;
        assert.equal(s.sample(logits, [row(params({ temperature: 0 }, n))])[0]!.tokenId, pos);
      }
      // All equal: lowest id.
      assert.equal(s.sample(new Float32Array(n).fill(0.5), [row(params({ temperature: 0 }, n))])[0]!.tokenId, 0);
    }
  });

  test('top_k = 1 equals greedy on random rows', () => {
    const n = 5000;
    const s = new Sampler(cpuBackend(), n);
    for (let t = 0; t < 20; t++) {
      const logits = randomLogits(n, 100 + t);
      const g = s.sample(logits.slice(), [row(params({ temperature: 0 }, n))])[0]!.tokenId;
      const k1 = s.sample(logits.slice(), [row(params({ temperature: 1.3, topK: 1 }, n), t)])[0]!.tokenId;
      assert.equal(k1, g);
    }
  });

  test('temperature 1e-6 is greedy; temperature 1e-3 samples the argmax when the margin is large', () => {
    const n = 3000;
    const s = new Sampler(cpuBackend(), n);
    for (let t = 0; t < 20; t++) {
      const logits = randomLogits(n, 300 + t);
      const g = s.sample(logits.slice(), [row(params({ temperature: 0 }, n))])[0]!.tokenId;
      const tiny = row(params({ temperature: 1e-6 }, n), t);
      const before = tiny.rng.clone();
      assert.equal(s.sample(logits.slice(), [tiny])[0]!.tokenId, g);
      assert.equal(tiny.rng.next(), before.next(), 'temperature < 1e-5 is greedy: no draw');
      // Random sampling at T = 1e-3: the runner-up is e^(-margin/T) less likely.
      const sorted = Array.from(logits).sort((a, b) => b - a);
      if (sorted[0]! - sorted[1]! > 0.05) {
        assert.equal(s.sample(logits.slice(), [row(params({ temperature: 1e-3 }, n), t)])[0]!.tokenId, g);
      }
    }
  });

  test('greedy with penalties uses the processed logits', () => {
    const s = new Sampler(cpuBackend(), 4);
    const logits = new Float32Array([1, 3, 2.9, 0]);
    const r = row(params({ temperature: 0, repetitionPenalty: 2 }, 4), 0, { outputTokenIds: [1] });
    assert.equal(s.sample(logits, [r])[0]!.tokenId, 2);
  });
});

describe('Sampler: logits processors', () => {
  test('penalties match a hand-computed case (repetition incl. negative logits, frequency, presence)', () => {
    const s = new Sampler(cpuBackend(), 6);
    const logits = new Float32Array([2, -1, 0.5, -3, 1, 4]);
    const p = params({ repetitionPenalty: 2, frequencyPenalty: 0.5, presencePenalty: 0.25 }, 6);
    // Prompt has 0, 1 (and 0 again); output has 2 twice and 3 once. 4 and 5 are untouched.
    s.process(logits, [row(p, 0, { promptTokenIds: [0, 1, 0], outputTokenIds: [2, 2, 3] })]);
    const expected = [
      2 / 2, // prompt, positive: divided
      -1 * 2, // prompt, negative: multiplied
      0.5 / 2 - 0.5 * 2 - 0.25, // output x2: repetition, then frequency·count and presence
      -3 * 2 - 0.5 * 1 - 0.25, // output x1, negative
      1,
      4,
    ];
    for (let i = 0; i < 6; i++) assert.ok(Math.abs(logits[i]! - expected[i]!) < 1e-6, `id ${i}: ${logits[i]} vs ${expected[i]}`);
  });

  test('frequency/presence count only output tokens; repetition alone covers prompt and output', () => {
    const s = new Sampler(cpuBackend(), 4);
    const a = new Float32Array([1, 1, 1, 1]);
    s.process(a, [row(params({ frequencyPenalty: 1, presencePenalty: 1 }, 4), 0, { promptTokenIds: [0], outputTokenIds: [1, 1] })]);
    assert.deepEqual(Array.from(a), [1, 1 - 2 - 1, 1, 1]);
    const b = new Float32Array([1, 1, -1, 1]);
    s.process(b, [row(params({ repetitionPenalty: 4 }, 4), 0, { promptTokenIds: [0], outputTokenIds: [2] })]);
    assert.deepEqual(Array.from(b), [0.25, 1, -4, 1]);
    // Scratch state is reset between rows: a second row with no history is untouched.
    const c = new Float32Array([1, 1, 1, 1, 1, 1, 1, 1]);
    s.process(c, [
      row(params({ frequencyPenalty: 1 }, 4), 0, { outputTokenIds: [3] }),
      row(params({ frequencyPenalty: 1 }, 4), 0, { outputTokenIds: [] }),
    ]);
    assert.deepEqual(Array.from(c), [1, 1, 1, 0, 1, 1, 1, 1]);
  });

  test('logit_bias adds to the logits and can force a token', () => {
    const s = new Sampler(cpuBackend(), 5);
    const logits = new Float32Array([5, 1, 0, 0, 0]);
    s.process(logits, [row(params({ logitBias: { '1': 10, '0': -2.5 } }, 5))]);
    assert.deepEqual(Array.from(logits), [2.5, 11, 0, 0, 0]);
    const forced = new Float32Array([5, 1, 0, 0, 0]);
    const p = params({ temperature: 1, logitBias: { '3': 100 } }, 5);
    for (let seed = 0; seed < 20; seed++) assert.equal(s.sample(forced.slice(), [row(p, seed)])[0]!.tokenId, 3);
  });

  test('allowed_token_ids masks everything else', () => {
    const s = new Sampler(cpuBackend(), 6);
    const logits = new Float32Array([9, 1, 2, 3, 4, 5]);
    s.process(logits, [row(params({ allowedTokenIds: [1, 3] }, 6))]);
    assert.deepEqual(Array.from(logits), [-Infinity, 1, -Infinity, 3, -Infinity, -Infinity]);
    const p = params({ temperature: 2, allowedTokenIds: [1, 3] }, 6);
    const seen = new Set<number>();
    for (let seed = 0; seed < 200; seed++) seen.add(s.sample(new Float32Array([9, 1, 2, 3, 4, 5]), [row(p, seed)])[0]!.tokenId);
    assert.deepEqual([...seen].sort(), [1, 3]);
  });

  test('min_tokens suppresses EOS and stop ids until reached', () => {
    const s = new Sampler(cpuBackend(), 6);
    const p = params({ temperature: 0, minTokens: 2, stopTokenIds: [4] }, 6);
    const base = [0, 0, 10, 0, 9, 1]; // EOS (2) best, stop id 4 second
    const at = (out: number[]): number =>
      s.sample(new Float32Array(base), [row(p, 0, { outputTokenIds: out, eosTokenIds: [2] })])[0]!.tokenId;
    assert.equal(at([]), 5);
    assert.equal(at([5]), 5);
    assert.equal(at([5, 5]), 2);
    const processed = new Float32Array(base);
    s.process(processed, [row(p, 0, { outputTokenIds: [1], eosTokenIds: [2, 3] })]);
    assert.deepEqual(Array.from(processed), [0, 0, -Infinity, -Infinity, -Infinity, 1]);
  });

  test('everything masked (allowed ⊆ stop ids during min_tokens) still yields a token', () => {
    const s = new Sampler(cpuBackend(), 4);
    const p = params({ temperature: 1, minTokens: 3, allowedTokenIds: [2] }, 4);
    assert.equal(s.sample(new Float32Array([1, 2, 3, 4]), [row(p, 0, { eosTokenIds: [2] })])[0]!.tokenId, 2);
  });
});

describe('Sampler: logprobs', () => {
  test('logprob and rank come from the raw logits, even when processing changed the row', () => {
    const s = new Sampler(cpuBackend(), 5);
    const raw = [1, 4, 2, 4, 0];
    const lse = Math.log(raw.reduce((a, x) => a + Math.exp(x), 0));
    const p = params({ temperature: 0, logprobs: 3, logitBias: { '0': 50 } }, 5);
    const [res] = s.sample(new Float32Array(raw), [row(p)]);
    assert.equal(res!.tokenId, 0);
    assert.ok(Math.abs(res!.logprob - (1 - lse)) < 1e-12);
    assert.equal(res!.rank, 4); // 4, 4 and 2 are larger
    assert.deepEqual(
      res!.topLogprobs!.map((t) => [t.tokenId, t.rank]),
      [[1, 1], [3, 1], [2, 3]],
    );
    for (const t of res!.topLogprobs!) assert.ok(Math.abs(t.logprob - (raw[t.tokenId]! - lse)) < 1e-12);
  });

  test('logprobs 0 gives the chosen token only; null gives nothing; best_of > n computes the logprob', () => {
    const s = new Sampler(cpuBackend(), 3);
    const r0 = s.sample(new Float32Array([0, 1, 2]), [row(params({ temperature: 0, logprobs: 0 }, 3))])[0]!;
    assert.deepEqual(r0.topLogprobs, []);
    assert.equal(r0.rank, 1);
    const rb = s.sample(new Float32Array([0, 1, 2]), [row(params({ temperature: 1, n: 1, bestOf: 2 }, 3))])[0]!;
    assert.ok(Number.isFinite(rb.logprob));
    assert.equal(rb.topLogprobs, null);
  });

  test('matches float64 log-softmax on a large random row', () => {
    const n = 32000;
    const logits = randomLogits(n, 9, 3);
    const s = new Sampler(cpuBackend(), n);
    const [res] = s.sample(logits.slice(), [row(params({ temperature: 0.9, logprobs: 5 }, n), 3)]);
    let m = -Infinity;
    for (const x of logits) m = Math.max(m, x);
    let sum = 0;
    for (const x of logits) sum += Math.exp(x - m);
    const lse = m + Math.log(sum);
    assert.ok(Math.abs(res!.logprob - (logits[res!.tokenId]! - lse)) < 1e-9);
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => logits[b]! - logits[a]! || a - b);
    assert.deepEqual(res!.topLogprobs!.map((t) => t.tokenId), order.slice(0, 5));
    assert.equal(res!.rank, order.indexOf(res!.tokenId) + 1);
  });

  test('prompt logprobs: row i scores token i + 1, with rank and top-k', () => {
    const V3 = 4;
    const logits = new Float32Array([0, 1, 2, 3, /* row 1 */ 5, 5, 0, -1]);
    const out = promptLogprobs(cpuBackend(), logits, 2, V3, [1, 1], 2);
    const lse0 = Math.log(1 + Math.E + Math.E ** 2 + Math.E ** 3);
    assert.ok(Math.abs(out[0]!.token.logprob - (1 - lse0)) < 1e-12);
    assert.equal(out[0]!.token.rank, 3);
    assert.deepEqual(out[0]!.top.map((t) => t.tokenId), [3, 2]);
    const lse1 = Math.log(2 * Math.exp(5) + 1 + Math.exp(-1));
    assert.ok(Math.abs(out[1]!.token.logprob - (5 - lse1)) < 1e-12);
    assert.equal(out[1]!.token.rank, 1);
    assert.deepEqual(out[1]!.top.map((t) => [t.tokenId, t.rank]), [[0, 1], [1, 1]]);
    assert.deepEqual(promptLogprobs(cpuBackend(), logits, 1, V3, [0], 0)[0]!.top, []);
  });
});

describe('Sampler: batch invariance and determinism', () => {
  // Top-k/p rows are sampled one by one; plain temperature and greedy rows are drawn together on
  // the thread pool (processed first, logprobs after): every kind must not depend on the batch.
  const kinds: Array<[string, SamplingParamsInput]> = [
    ['top-k/top-p with a repetition penalty', { temperature: 0.8, topP: 0.9, topK: 100, repetitionPenalty: 1.2 }],
    ['plain temperature with a repetition penalty', { temperature: 0.9, repetitionPenalty: 1.1 }],
    ['plain temperature with logprobs', { temperature: 1.3, logprobs: 2 }],
  ];
  for (const [kind, mineParams] of kinds) test(`a seeded row gives the same tokens alone and inside any batch: ${kind}`, () => {
    const n = 2000;
    const mine = params(mineParams, n);
    const others = [
      params({ temperature: 0 }, n),
      params({ temperature: 1.5 }, n),
      params({ temperature: 0.7, topP: 0.5, logprobs: 3 }, n),
      params({ temperature: 1, minP: 0.1, frequencyPenalty: 1 }, n),
    ];
    const steps = 40;
    const run = (batchOthers: SamplingParams[], position: number): number[] => {
      const s = new Sampler(cpuBackend(), n);
      const me: SamplerRow = { params: mine, rng: new Rng(1234), promptTokenIds: [1, 2, 3], outputTokenIds: [], eosTokenIds: [2], grammarMask: null };
      const rest = batchOthers.map((p, i) => row(p, 99 + i, { promptTokenIds: [5, 6] }));
      const out: number[] = [];
      for (let t = 0; t < steps; t++) {
        const rows = [...rest];
        rows.splice(position, 0, me);
        const logits = new Float32Array(rows.length * n);
        rows.forEach((r, i) => logits.set(randomLogits(n, r === me ? 7000 + t : 9000 + t * 13 + i), i * n));
        const res = s.sample(logits, rows);
        const tok = res[position]!.tokenId;
        out.push(tok);
        me.outputTokenIds = [...me.outputTokenIds, tok];
      }
      return out;
    };
    const alone = run([], 0);
    assert.deepEqual(run(others, 0), alone);
    assert.deepEqual(run(others, 2), alone);
    assert.deepEqual(run(others.slice(1, 3), 2), alone);
    assert.ok(new Set(alone).size > 5, 'the row really samples');
  });

  test('different seeds give different sequences; same seed the same', () => {
    const n = 1000;
    const s = new Sampler(cpuBackend(), n);
    const draw = (seed: number): number[] => {
      const r = row(params({ temperature: 1 }, n), seed);
      return Array.from({ length: 20 }, (_, t) => s.sample(randomLogits(n, t), [r])[0]!.tokenId);
    };
    assert.deepEqual(draw(1), draw(1));
    assert.notDeepEqual(draw(1), draw(2));
  });
});

describe('Sampler: the sampled distribution is exactly the target', () => {
  // 12 ids with a spread of probabilities (and one tie) so every truncation rule bites.
  const logits = new Float32Array([2.0, 1.5, 1.5, 1.0, 0.7, 0.3, 0.0, -0.5, -1.0, -2.0, -3.0, 0.9]);
  const configs: Array<[string, { temperature: number; topK?: number; topP?: number; minP?: number }]> = [
    ['softmax T=1', { temperature: 1 }],
    ['softmax T=0.6', { temperature: 0.6 }],
    ['softmax T=1.7', { temperature: 1.7 }],
    ['top-k 4', { temperature: 1, topK: 4 }],
    ['top-p 0.7', { temperature: 1, topP: 0.7 }],
    ['top-p 0.95 T=0.8', { temperature: 0.8, topP: 0.95 }],
    ['min-p 0.2', { temperature: 1, minP: 0.2 }],
    ['top-k 8 + top-p 0.8 + min-p 0.1', { temperature: 1.2, topK: 8, topP: 0.8, minP: 0.1 }],
    ['top-k 6 + min-p 0.3', { temperature: 0.9, topK: 6, minP: 0.3 }],
  ];

  for (const [name, cfg] of configs) {
    test(`${name}: stratified draws hit each id within ±1 of p·M`, () => {
      const M = 20_000;
      const expected = referenceProbs(logits, cfg);
      const c = counts(logits, params(cfg, logits.length), M, new GridRng(M));
      for (let i = 0; i < logits.length; i++) {
        assert.ok(Math.abs(c[i]! - expected[i]! * M) <= 1.01, `${name} id ${i}: ${c[i]} vs ${expected[i]! * M}`);
      }
    });

    test(`${name}: 20k seeded draws match within 4.5 standard errors`, () => {
      const N = 20_000;
      const expected = referenceProbs(logits, cfg);
      const c = counts(logits, params(cfg, logits.length), N, new Rng(2024));
      let chi2 = 0;
      let dof = -1;
      for (let i = 0; i < logits.length; i++) {
        const p = expected[i]!;
        if (p === 0) {
          assert.equal(c[i], 0, `${name}: id ${i} is outside the support`);
          continue;
        }
        const se = Math.sqrt((p * (1 - p)) / N);
        assert.ok(Math.abs(c[i]! / N - p) <= 4.5 * se + 1e-12, `${name} id ${i}: ${c[i]! / N} vs ${p}`);
        chi2 += (c[i]! - N * p) ** 2 / (N * p);
        dof++;
      }
      // Chi-square at p = 0.001 for up to 11 degrees of freedom is < 31.3.
      assert.ok(chi2 < 31.3, `${name}: chi2 ${chi2.toFixed(2)} with ${dof} dof`);
    });
  }

  test('top-p nucleus rule on a hand example (vLLM: drop ids whose preceding mass >= p)', () => {
    const probs = [0.5, 0.3, 0.15, 0.05];
    const l = new Float32Array(probs.map(Math.log));
    const c = counts(l, params({ temperature: 1, topP: 0.75 }, 4), 8000, new GridRng(8000));
    assert.equal(c[2], 0);
    assert.equal(c[3], 0);
    assert.ok(Math.abs(c[0]! - 5000) <= 1 && Math.abs(c[1]! - 3000) <= 1, String(c));
  });

  test('large vocabulary: top-p / top-k / min-p supports and frequencies match the reference', () => {
    // A 10k-vocab row (the histogram and quickselect paths), checked with stratified draws.
    const n = 10_000;
    const l = randomLogits(n, 77, 3);
    for (const cfg of [
      { temperature: 0.7, topP: 0.9 },
      { temperature: 1.0, topP: 0.5 },
      { temperature: 1.0, topK: 1500, topP: 0.95 },
      { temperature: 0.8, minP: 0.05 },
      { temperature: 1.1, topP: 0.8, minP: 0.02 },
      { temperature: 1.0, topK: 2000 },
    ]) {
      const expected = referenceProbs(l, cfg);
      const M = 4000;
      const c = counts(l, params(cfg, n), M, new GridRng(M));
      for (let i = 0; i < n; i++) {
        if (expected[i] === 0) assert.equal(c[i], 0, `${JSON.stringify(cfg)} id ${i} outside the support`);
        else assert.ok(Math.abs(c[i]! - expected[i]! * M) <= 1.01, `${JSON.stringify(cfg)} id ${i}: ${c[i]} vs ${expected[i]! * M}`);
      }
    }
  });
});

describe('Sampling pipeline: stages and masks', () => {
  test('the stages run in vLLM order, each skipping rows it does not apply to', () => {
    assert.deepEqual(
      logitsProcessors(V).map((s) => s.name),
      ['grammar', 'penalties', 'allowed_token_ids', 'logit_bias', 'min_tokens'],
    );
    assert.deepEqual(
      DRAW_STAGES.map((s) => s.name),
      ['top_k', 'top_p', 'min_p'],
    );
    const plain = row(params({ temperature: 0.7 }));
    assert.deepEqual(logitsProcessors(V).filter((s) => s.appliesTo(plain)), []);
    assert.deepEqual(DRAW_STAGES.filter((s) => s.appliesTo(plain.params, V)), []);
    // min_tokens applies only while the output is short and there is something to suppress.
    const minTok = logitsProcessors(V).find((s) => s.name === 'min_tokens')!;
    assert.equal(minTok.appliesTo(row(params({ minTokens: 2, maxTokens: 5 }))), true);
    assert.equal(minTok.appliesTo(row(params({ minTokens: 2, maxTokens: 5 }), 0, { outputTokenIds: [1, 1] })), false);
    assert.equal(minTok.appliesTo(row(params({ minTokens: 2, maxTokens: 5 }), 0, { eosTokenIds: [] })), false);
    // top_k >= V selects nothing and is skipped.
    assert.equal(DRAW_STAGES[0]!.appliesTo(params({ temperature: 1, topK: V }), V), false);
  });

  test('maskByBitmask keeps exactly the set bits, on awkward sizes and offsets', () => {
    const r = new Rng(5);
    for (const n of [1, 5, 31, 32, 33, 64, 95, 1000, 4099]) {
      for (const density of [0, 0.01, 0.3, 0.97, 1]) {
        const words = (n + 31) >>> 5;
        const mask = new Uint32Array(words);
        for (let i = 0; i < words * 32; i++) if (r.next() < density) mask[i >>> 5]! |= 1 << (i & 31);
        // Runs of all-ones and all-zero words as well.
        if (words > 4) (mask[1] = 0xffffffff), (mask[2] = 0xffffffff), (mask[3] = 0);
        const off = 3;
        const row = randomLogits(n + 2 * off, n);
        const got = row.slice();
        maskByBitmask(got, off, n, mask);
        for (let i = 0; i < row.length; i++) {
          const id = i - off;
          const keep = id < 0 || id >= n || ((mask[id >>> 5]! >>> (id & 31)) & 1) === 1;
          assert.equal(got[i], keep ? row[i] : -Infinity, `n=${n} density=${density} id=${id}`);
        }
      }
    }
    assert.throws(() => maskByBitmask(new Float32Array(40), 0, 40, new Uint32Array(1)), /2 for 40 ids/);
  });

  test('tokenBitmask sets the listed in-range ids only', () => {
    const m = tokenBitmask([0, 31, 32, 69, -1, 70, 5, 5], 70);
    assert.equal(m.length, 3);
    assert.deepEqual([...m], [(1 | (1 << 5) | (1 << 31)) >>> 0, 1, 1 << 5]);
  });
});

describe('Selection: top-k and nucleus', () => {
  const refOrder = (x: Float32Array | Float64Array): number[] =>
    Array.from({ length: x.length }, (_, i) => i).sort((a, b) => x[b]! - x[a]! || a - b);

  test('topKIds is the best-first prefix of (value desc, id asc), ties included', () => {
    for (const [n, k, seed] of [[1, 1, 1], [10, 3, 2], [100, 100, 3], [100, 150, 4], [5000, 40, 5]] as const) {
      const x = randomLogits(n, seed);
      for (let i = 0; i < n; i += 3) x[i] = Math.round(x[i]!); // exact ties
      assert.deepEqual(topKIds(x, k), refOrder(x).slice(0, k));
    }
  });

  test('selectTopK (heap and quickselect paths) picks the same set as a full sort', () => {
    const n = 6000;
    const x = randomLogits(n + 7, 9);
    for (let i = 0; i < x.length; i += 2) x[i] = Math.round(x[i]! * 2) / 2;
    const idx = new Int32Array(n);
    for (const k of [1, 17, 1024, 1025, 3000, n - 1]) {
      const got = selectTopK(x, 7, n, k, idx, new TopK(), new Float64Array(n));
      assert.equal(got, k);
      const want = refOrder(x.subarray(7, 7 + n)).slice(0, k);
      assert.deepEqual([...idx.subarray(0, k)].sort((a, b) => a - b), want.sort((a, b) => a - b), `k=${k}`);
    }
  });

  test('nucleus is the shortest best-first prefix reaching the target mass', () => {
    const r = new Rng(11);
    for (const n of [1, 7, 16, 17, 200, 3000]) {
      const w = new Float64Array(n);
      // Multiples of 1/64 (and zeros): every partial sum is exact, so the cut is unambiguous.
      for (let i = 0; i < n; i++) w[i] = r.next() < 0.2 ? Math.round(r.next() * 4) / 4 : Math.round(r.next() * 64) / 64;
      const total = w.reduce((a, b) => a + b, 0);
      for (const p of [0.01, 0.5, 0.9, 1]) {
        const idx = Int32Array.from({ length: n }, (_, i) => i);
        const m = nucleus(idx, 0, n, w, p * total);
        const order = refOrder(w);
        let acc = 0;
        let want = n;
        for (let t = 0; t < n; t++) {
          acc += w[order[t]!]!;
          if (acc >= p * total) {
            want = t + 1;
            break;
          }
        }
        assert.equal(m, want, `n=${n} p=${p}`);
        assert.deepEqual([...idx.subarray(0, m)].sort((a, b) => a - b), order.slice(0, m).sort((a, b) => a - b));
      }
    }
  });
});

describe('Sampler: input checks', () => {
  test('rejects a logits buffer that is too short', () => {
    const s = new Sampler(cpuBackend(), 4);
    assert.throws(() => s.sample(new Float32Array(7), [row(params({}, 4)), row(params({}, 4))]), /expected 2 x 4/);
  });
});

test('error messages stay short and safe on hostile values (deeply nested, huge)', () => {
  let deep: unknown = [];
  for (let i = 0; i < 200000; i++) deep = [deep];
  assert.throws(() => makeSamplingParams({ temperature: deep as number }, { vocabSize: 10 }), /temperature must be a number, got object <array>/);
  const huge = 'x'.repeat(100000);
  assert.throws(
    () => makeSamplingParams({ topP: huge as unknown as number }, { vocabSize: 10 }),
    (e: unknown) => e instanceof Error && /top_p must be a number/.test(e.message) && e.message.length < 200,
  );
});
