/**
 * The engine's core promise: a request's tokens depend only on its prompt, params and seed — not
 * on what else runs, on chunk sizes, on preemption or on arrival order. Runs EngineCore in-process
 * on a random-weight model.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { makeEngineConfig, type EngineConfig } from '../src/config/engine-config.js';
import { EngineCore } from '../src/engine/core.js';
import type { RequestDelta } from '../src/engine/protocol.js';
import { ContextLengthError } from '../src/errors.js';
import { makeSamplingParams, type SamplingParamsInput } from '../src/sampling/params.js';
import { Rng } from '../src/sampling/rng.js';
import { presetModelDir } from './helpers/tiny-model.js';
import { createBackend } from '../src/backend/index.js';

interface Req {
  id: string;
  prompt: number[];
  params: SamplingParamsInput;
}

let dir: string;
before(async () => {
  dir = await presetModelDir('tiny');
});

function makeRequests(count: number, seed: number, sampled: boolean): Req[] {
  const rng = new Rng(seed);
  const int = (lo: number, hi: number): number => lo + Math.floor(rng.next() * (hi - lo + 1));
  return Array.from({ length: count }, (_, i) => ({
    id: `r${i}`,
    prompt: Array.from({ length: int(1, 70) }, () => int(4, 1023)),
    params: sampled
      ? { temperature: 1, topP: 0.9, seed: 1000 + i, maxTokens: int(1, 40), ignoreEos: true }
      : { temperature: 0, maxTokens: int(1, 40), ignoreEos: true },
  }));
}

function core(cfg: Partial<EngineConfig>): EngineCore {
  return new EngineCore(createBackend({ threads: 2 }), dir, makeEngineConfig({ model: dir, threads: 2, kvCacheMemory: 8 * 1024 * 1024, ...cfg }));
}

/** Run requests to completion; `arrive(step)` returns the requests that arrive before that step. */
function run(c: EngineCore, arrivals: Req[][], onDeltas?: (d: RequestDelta[], step: number) => void): Map<string, number[]> {
  const out = new Map<string, number[]>();
  const V = c.info.model.vocabSize;
  let step = 0;
  const collect = (deltas: RequestDelta[]): void => {
    for (const d of deltas) {
      const toks = out.get(d.requestId) ?? [];
      for (const s of d.seqs) toks.push(...s.newTokenIds);
      out.set(d.requestId, toks);
    }
  };
  while (c.hasWork() || step < arrivals.length) {
    for (const r of arrivals[step] ?? []) {
      c.addRequest({ requestId: r.id, promptTokenIds: r.prompt, params: makeSamplingParams(r.params, { vocabSize: V }), arrivalTime: 0 });
    }
    const { deltas } = c.step();
    collect(deltas);
    onDeltas?.(deltas, step);
    step++;
  }
  return out;
}

function solo(reqs: Req[]): Map<string, number[]> {
  const c = core({});
  const out = new Map<string, number[]>();
  for (const r of reqs) for (const [k, v] of run(c, [[r]])) out.set(k, v);
  c.close();
  return out;
}

for (const sampled of [false, true]) {
  describe(`batch invariance (${sampled ? 'seeded sampling' : 'greedy'})`, () => {
    const reqs = makeRequests(64, sampled ? 2 : 1, sampled);
    let alone: Map<string, number[]>;
    before(() => {
      alone = solo(reqs);
      for (const r of reqs) assert.equal(alone.get(r.id)!.length, makeSamplingParams(r.params, { vocabSize: 1024 }).maxTokens);
    });

    test('64 requests submitted together give exactly their solo tokens', () => {
      const c = core({});
      assert.deepEqual(run(c, [reqs]), alone);
      assert.equal(c.kv.pool.numUsed, 0);
      c.close();
    });

    for (const chunk of [1, 7, 64]) {
      test(`chunked prefill with a token budget of ${chunk}`, () => {
        const c = core({ maxNumBatchedTokens: chunk });
        assert.deepEqual(run(c, [reqs]), alone);
        c.close();
      });
    }

    test('working memory handed back between every step', () => {
      const c = core({ maxNumBatchedTokens: 64 });
      let released = 0;
      assert.deepEqual(
        run(c, [reqs], () => (released += c.releaseWorkingMemory())),
        alone,
      );
      assert.ok(released > 0);
      c.close();
    });

    test('a tiny KV pool that forces preemption', () => {
      // 24 blocks of 16 tokens: far less than 64 requests need at once.
      const c = core({ kvCacheMemory: 24 * c0BlockBytes(), maxNumBatchedTokens: 64 });
      const got = run(c, [reqs]);
      assert.ok(c.scheduler.stats().numPreemptions > 0, 'expected preemptions');
      assert.deepEqual(got, alone);
      assert.equal(c.kv.pool.numUsed, 0);
      c.close();
    });

    test('requests arriving while others run', () => {
      const c = core({ maxNumBatchedTokens: 32 });
      const arrivals: Req[][] = [];
      reqs.forEach((r, i) => (arrivals[i % 2 === 0 ? i : i * 3] ??= []).push(r));
      assert.deepEqual(run(c, arrivals), alone);
      c.close();
    });
  });
}

let blockBytesCache = 0;
function c0BlockBytes(): number {
  if (!blockBytesCache) {
    const c = core({});
    blockBytesCache = c.info.kvCacheBytes / c.info.numBlocks;
    c.close();
  }
  return blockBytesCache;
}

describe('abort and admission', () => {
  test('aborting half of the requests mid-flight frees every block', () => {
    const reqs = makeRequests(32, 3, false).map((r) => ({ ...r, params: { ...r.params, maxTokens: 30 } }));
    const c = core({ maxNumBatchedTokens: 64 });
    const finished = new Map<string, string | null>();
    run(c, [reqs], (deltas, step) => {
      for (const d of deltas) if (d.finished) finished.set(d.requestId, d.seqs[0]?.finishReason ?? null);
      if (step === 3) {
        for (const d of c.abort(reqs.filter((_, i) => i % 2 === 1).map((r) => r.id))) {
          assert.ok(d.finished);
          finished.set(d.requestId, d.seqs[0]?.finishReason ?? null);
        }
      }
    });
    assert.equal(finished.size, 32);
    reqs.forEach((r, i) => assert.equal(finished.get(r.id), i % 2 === 1 ? 'abort' : 'length', r.id));
    assert.equal(c.kv.pool.numUsed, 0);
    assert.equal(c.kv.pool.numFree, c.kv.pool.numBlocks);
    c.close();
  });

  test('a request that can never fit fails clearly and does not disturb the others', () => {
    const reqs = makeRequests(8, 4, false);
    const alone = solo(reqs);
    const c = core({ kvCacheMemory: 10 * c0BlockBytes() });
    const V = c.info.model.vocabSize;
    assert.throws(
      () =>
        c.addRequest({
          requestId: 'huge',
          promptTokenIds: Array.from({ length: 150 }, () => 5),
          params: makeSamplingParams({ maxTokens: 100 }, { vocabSize: V }),
          arrivalTime: 0,
        }),
      (e: unknown) => e instanceof ContextLengthError && /KV cache has only 10/.test(e.message),
    );
    assert.throws(
      () =>
        c.addRequest({
          requestId: 'too-long',
          promptTokenIds: Array.from({ length: 500 }, () => 5),
          params: makeSamplingParams({ maxTokens: 100 }, { vocabSize: V }),
          arrivalTime: 0,
        }),
      (e: unknown) => e instanceof ContextLengthError && /maximum context length is 512/.test(e.message),
    );
    assert.deepEqual(run(c, [reqs]), alone);
    c.close();
  });

  test('stop token ids and EOS end a sequence with finish reason stop', () => {
    const c = core({});
    const V = c.info.model.vocabSize;
    const [r] = makeRequests(1, 5, false);
    const free = run(c, [[r!]]).get('r0')!;
    const stopId = free[2]!;
    c.addRequest({ requestId: 's', promptTokenIds: r!.prompt, params: makeSamplingParams({ ...r!.params, maxTokens: 40, stopTokenIds: [stopId] }, { vocabSize: V }), arrivalTime: 0 });
    let last: RequestDelta | undefined;
    while (c.hasWork()) for (const d of c.step().deltas) last = d;
    assert.equal(last?.seqs[0]?.finishReason, 'stop');
    assert.equal(last?.seqs[0]?.stopReason, stopId);
    c.close();
  });
});

test('static batching admits a whole batch at once (beyond one step budget) and none until it finishes', () => {
  const reqs = makeRequests(12, 6, false).map((r) => ({ ...r, prompt: r.prompt.concat(Array(40).fill(7)), params: { ...r.params, maxTokens: 5 } }));
  const alone = solo(reqs);
  const c = core({ scheduler: 'static', maxNumSeqs: 8, maxNumBatchedTokens: 64 });
  const V = c.info.model.vocabSize;
  for (const r of reqs) c.addRequest({ requestId: r.id, promptTokenIds: r.prompt, params: makeSamplingParams(r.params, { vocabSize: V }), arrivalTime: 0 });
  const out = new Map<string, number[]>();
  let sawFullBatch = false;
  while (c.hasWork()) {
    const before = c.scheduler.numRunning;
    for (const d of c.step().deltas) out.set(d.requestId, [...(out.get(d.requestId) ?? []), ...d.seqs.flatMap((s) => s.newTokenIds)]);
    if (c.scheduler.numRunning === 8) sawFullBatch = true;
    // A new batch starts only from an empty running set.
    if (before > 0) assert.ok(c.scheduler.numRunning <= before);
  }
  assert.ok(sawFullBatch, 'the first static batch should hold max_num_seqs requests');
  assert.deepEqual(out, alone);
  c.close();
});

test('FLOP accounting: matmul FLOPs per token, and a prefill with the head for its last token and causal attention', () => {
  const c = core({});
  const m = c.info.model;
  const q = m.numHeads * m.headDim;
  const kv = m.numKvHeads * m.headDim;
  const H = m.hiddenSize;
  const perLayer = H * (q + 2 * kv) + q * H + 2 * m.intermediateSize * H + m.intermediateSize * H;
  const head = m.vocabSize * H;
  assert.equal(c.flopsPerToken(), 2 * (m.numLayers * perLayer + head));
  const L = 37;
  const attention = 4 * m.numLayers * m.numHeads * m.headDim * ((L * (L + 1)) / 2);
  assert.equal(c.prefillFlops(L), L * 2 * m.numLayers * perLayer + 2 * head + attention);
  c.close();
});
