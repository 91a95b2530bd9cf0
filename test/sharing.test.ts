/**
 * Memory sharing: prefix caching, parallel sampling (n > 1) forked from one prefill with
 * copy-on-write, and beam search on shared blocks — each must give exactly the unshared results
 * and leave the pool fully free.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { makeEngineConfig, type EngineConfig } from '../src/config/engine-config.js';
import { beamScore } from '../src/engine/beam-search.js';
import { EngineCore } from '../src/engine/core.js';
import type { RequestDelta, SeqDelta } from '../src/engine/protocol.js';
import { makeSamplingParams, type SamplingParamsInput } from '../src/sampling/params.js';
import { Rng } from '../src/sampling/rng.js';
import { fixturePath } from './helpers/fixtures.js';
import { ModelHarness } from './helpers/model-harness.js';
import { presetModelDir } from './helpers/tiny-model.js';
import { createBackend } from '../src/backend/index.js';

let tiny: string;
before(async () => {
  tiny = await presetModelDir('tiny');
});

function core(dir: string, cfg: Partial<EngineConfig> = {}): EngineCore {
  return new EngineCore(createBackend({ threads: 2 }), dir, makeEngineConfig({ model: dir, threads: 2, kvCacheMemory: 8 * 1024 * 1024, ...cfg }));
}

interface Req {
  id: string;
  prompt: number[];
  params: SamplingParamsInput;
}

/** Run to completion; returns every request's sequences (by index) as reported. */
function run(c: EngineCore, reqs: Req[], onStep?: () => void): Map<string, SeqDelta[]> {
  const out = new Map<string, SeqDelta[]>();
  const V = c.info.model.vocabSize;
  for (const r of reqs) c.addRequest({ requestId: r.id, promptTokenIds: r.prompt, params: makeSamplingParams(r.params, { vocabSize: V }), arrivalTime: 0 });
  const merge = (d: RequestDelta): void => {
    const seqs = out.get(d.requestId) ?? [];
    for (const s of d.seqs) {
      const cur = (seqs[s.index] ??= { ...s, newTokenIds: [], newLogprobs: s.newLogprobs ? [] : null });
      cur.newTokenIds.push(...s.newTokenIds);
      if (s.newLogprobs) cur.newLogprobs!.push(...s.newLogprobs);
      cur.cumulativeLogprob = s.cumulativeLogprob;
      cur.finishReason = s.finishReason;
    }
    out.set(d.requestId, seqs);
  };
  while (c.hasWork()) {
    for (const d of c.step().deltas) merge(d);
    onStep?.();
  }
  return out;
}

const tokensOf = (m: Map<string, SeqDelta[]>): Record<string, number[][]> =>
  Object.fromEntries([...m].map(([k, v]) => [k, v.map((s) => s.newTokenIds)]));

function sharedPrefixRequests(count: number, prefixLen: number, seed: number): Req[] {
  const rng = new Rng(seed);
  const int = (lo: number, hi: number): number => lo + Math.floor(rng.next() * (hi - lo + 1));
  const prefix = Array.from({ length: prefixLen }, () => int(4, 1000));
  return Array.from({ length: count }, (_, i) => ({
    id: `p${i}`,
    prompt: [...prefix, ...Array.from({ length: int(1, 20) }, () => int(4, 1000))],
    params: { temperature: 0.8, seed: 100 + i, maxTokens: int(4, 24), ignoreEos: true, logprobs: 1 },
  }));
}

describe('prefix caching', () => {
  test('cached outputs are bit-identical to uncached ones, and the cache is hit', () => {
    const reqs = sharedPrefixRequests(12, 67, 1);
    const off = core(tiny, { enablePrefixCaching: false });
    const want = run(off, reqs);
    off.close();
    const on = core(tiny);
    // One request first so its blocks are cached, then the rest.
    const got = run(on, reqs.slice(0, 1));
    for (const [k, v] of run(on, reqs.slice(1))) got.set(k, v);
    assert.deepEqual(got, want);
    assert.ok(on.kv.prefixStats.hits >= 11 * 64, `prefix hits ${on.kv.prefixStats.hits}`);
    assert.equal(on.kv.pool.numUsed, 0);
    on.close();
  });

  test('prompt logprobs are complete when the prefix is cached', () => {
    const reqs = sharedPrefixRequests(3, 40, 4).map((r) => ({ ...r, params: { ...r.params, promptLogprobs: 2 } }));
    const c = core(tiny);
    const V = c.info.model.vocabSize;
    const lps: unknown[] = [];
    for (const r of reqs) {
      c.addRequest({ requestId: r.id, promptTokenIds: r.prompt, params: makeSamplingParams(r.params, { vocabSize: V }), arrivalTime: 0 });
      while (c.hasWork()) for (const d of c.step().deltas) if (d.promptLogprobs) lps.push(d.promptLogprobs);
    }
    assert.equal(lps.length, 3);
    lps.forEach((lp, i) => assert.equal((lp as unknown[]).length, reqs[i]!.prompt.length));
    // The shared prefix's logprobs are the same in every request.
    const head = (lp: unknown): string => JSON.stringify((lp as unknown[]).slice(0, 40));
    assert.equal(head(lps[1]), head(lps[0]));
    assert.equal(head(lps[2]), head(lps[0]));
    c.close();
  });

  test('eviction under pressure keeps results correct', () => {
    const reqs = [...sharedPrefixRequests(10, 40, 2), ...sharedPrefixRequests(10, 50, 3).map((r) => ({ ...r, id: `q${r.id}` }))];
    const off = core(tiny, { enablePrefixCaching: false });
    const want = run(off, reqs);
    const blockBytes = off.info.kvCacheBytes / off.info.numBlocks;
    off.close();
    const on = core(tiny, { kvCacheMemory: 14 * blockBytes, maxNumBatchedTokens: 48 });
    const got = new Map<string, SeqDelta[]>();
    for (let i = 0; i < reqs.length; i += 3) for (const [k, v] of run(on, reqs.slice(i, i + 3))) got.set(k, v);
    assert.deepEqual(tokensOf(got), tokensOf(want));
    assert.equal(on.kv.pool.numUsed, 0);
    on.close();
  });
});

describe('parallel sampling', () => {
  test('n=4 with a seed equals four separate requests seeded seed+i, sharing the prompt blocks', () => {
    const rng = new Rng(9);
    const prompt = Array.from({ length: 45 }, () => 4 + Math.floor(rng.next() * 1000));
    const base = { temperature: 1, topP: 0.95, maxTokens: 20, ignoreEos: true, logprobs: 2 };
    const sep = core(tiny, { enablePrefixCaching: false });
    const want = [0, 1, 2, 3].map((i) => ({ ...run(sep, [{ id: `s${i}`, prompt, params: { ...base, seed: 77 + i } }]).get(`s${i}`)![0]!, index: i }));
    sep.close();
    const c = core(tiny, { enablePrefixCaching: false });
    let peak = 0;
    const got = run(c, [{ id: 'n4', prompt, params: { ...base, n: 4, seed: 77 } }], () => (peak = Math.max(peak, c.kv.pool.numUsed)));
    assert.deepEqual(got.get('n4'), want);
    // Unshared, 4 × ceil(65/16) = 20 blocks; shared, the 2 full prompt blocks count once.
    assert.ok(peak <= 4 * 3 + 2, `peak blocks ${peak}`);
    assert.equal(c.kv.pool.numUsed, 0);
    c.close();
  });

  test('best_of > n keeps the n sequences with the highest cumulative logprob (engine side reports all)', () => {
    const c = core(tiny);
    const got = run(c, [{ id: 'b', prompt: [5, 6, 7, 8, 9], params: { temperature: 1, n: 2, bestOf: 5, seed: 3, maxTokens: 6, ignoreEos: true } }]);
    const seqs = got.get('b')!;
    assert.equal(seqs.length, 5);
    for (const s of seqs) assert.ok(Number.isFinite(s.cumulativeLogprob));
    c.close();
  });

  test('forking requests never run more sequences than --max-num-seqs', () => {
    const c = core(tiny, { maxNumSeqs: 2 });
    const got = run(c, [
      { id: 'two', prompt: [5, 6, 7], params: { temperature: 1, n: 2, seed: 1, maxTokens: 5, ignoreEos: true } },
      { id: 'one', prompt: [8, 9], params: { temperature: 1, seed: 2, maxTokens: 5, ignoreEos: true } },
    ]);
    assert.equal(got.get('two')!.length, 2);
    assert.equal(got.get('one')!.length, 1);
    assert.throws(
      () => run(c, [{ id: 'three', prompt: [5], params: { temperature: 1, n: 3, maxTokens: 2 } }]),
      /runs 3 sequences at once .* at most 2 \(--max-num-seqs\)/,
    );
    c.close();
  });

  test('aborting a forked request and preemption of shared blocks return every reference', () => {
    const c = core(tiny, { kvCacheMemory: 12 * (1 << 13) });
    const V = c.info.model.vocabSize;
    const prompt = Array.from({ length: 40 }, (_, i) => 10 + i);
    for (let r = 0; r < 6; r++) {
      c.addRequest({ requestId: `a${r}`, promptTokenIds: prompt, params: makeSamplingParams({ temperature: 1, n: 3, seed: r, maxTokens: 30, ignoreEos: true }, { vocabSize: V }), arrivalTime: 0 });
    }
    for (let i = 0; i < 6; i++) c.step();
    c.abort(['a0', 'a2']);
    while (c.hasWork()) c.step();
    assert.equal(c.kv.pool.numUsed, 0);
    assert.equal(c.kv.pool.numFree, c.kv.pool.numBlocks);
    c.close();
  });
});

describe('beam search', () => {
  /**
   * Reference: beam search that recomputes every hypothesis's logits from scratch with the model
   * harness (no KV cache, no sharing), following vLLM v0's rules.
   */
  function referenceBeamSearch(h: ModelHarness, prompt: number[], W: number, maxTokens: number, eos: number[], lengthPenalty: number) {
    const V = h.vocab;
    let live = [{ out: [] as number[], cum: 0 }];
    const finished: Array<{ out: number[]; cum: number; score: number }> = [];
    const addFinished = (out: number[], cum: number, stop: boolean): void => {
      finished.push({ out, cum, score: beamScore(prompt.length + out.length - (stop ? 1 : 0), cum, lengthPenalty) });
      finished.sort((a, b) => b.score - a.score);
      if (finished.length > W) finished.pop();
    };
    for (let step = 0; step < maxTokens; step++) {
      const cands: Array<{ parent: number; tok: number; cum: number }> = [];
      live.forEach((b, bi) => {
        const all = h.logitsOf([...prompt, ...b.out]);
        const row = all.subarray(all.length - V);
        let m = -Infinity;
        for (const v of row) m = Math.max(m, v);
        let s = 0;
        for (const v of row) s += Math.exp(v - m);
        const lse = m + Math.log(s);
        const order = Array.from(row.keys()).sort((x, y) => row[y]! - row[x]! || x - y).slice(0, 2 * W);
        for (const t of order) cands.push({ parent: bi, tok: t, cum: b.cum + (row[t]! - lse) });
      });
      cands.sort((a, b) => b.cum - a.cum);
      const next: Array<{ out: number[]; cum: number }> = [];
      for (const c of cands) {
        const out = [...live[c.parent]!.out, c.tok];
        if (eos.includes(c.tok)) addFinished(out, c.cum, true);
        else if (next.length < W) next.push({ out, cum: c.cum });
      }
      live = next;
      if (step === maxTokens - 1) for (const b of live) addFinished(b.out, b.cum, false);
      else if (finished.length >= W && finished[finished.length - 1]!.score >= beamScore(prompt.length + live[0]!.out.length, live[0]!.cum, lengthPenalty)) break;
    }
    return finished;
  }

  for (const [name, W, maxTokens] of [
    ['stories260k', 3, 6],
    ['llama-tiny', 4, 5],
    // Sliding-window layers (window 16, six KV groups); the 20-token prompt crosses the window.
    ['gemma3-tiny', 3, 6],
  ] as const) {
    test(`${name}: width ${W}, ${maxTokens} tokens, equals a from-scratch reference beam search`, () => {
      const dir = fixturePath(name);
      const prompt =
        name === 'stories260k' ? [1, 403, 407, 261, 378] : name === 'gemma3-tiny' ? [1, 17, 300, 42, 99, 7, 260, 301, 88, 19, 402, 77, 5, 64, 310, 222, 9, 140, 33, 480] : [1, 17, 300, 42, 99, 7];
      const h = new ModelHarness(dir, { precision: 'float32', kvDtype: 'float32' });
      const want = referenceBeamSearch(h, prompt, W, maxTokens, [2], 1.0);
      h.close();
      const c = core(dir, { dtype: 'float32', kvCacheDtype: 'float32' });
      let peak = 0;
      const got = run(c, [{ id: 'beam', prompt, params: { useBeamSearch: true, temperature: 0, n: W, bestOf: W, maxTokens } }], () => (peak = Math.max(peak, c.kv.pool.numUsed)));
      const seqs = got.get('beam')!;
      assert.equal(seqs.length, want.length);
      seqs.forEach((s, i) => {
        assert.deepEqual(s.newTokenIds, want[i]!.out, `hypothesis ${i}`);
        assert.ok(Math.abs(s.cumulativeLogprob - want[i]!.cum) < 1e-4, `hypothesis ${i} logprob ${s.cumulativeLogprob} vs ${want[i]!.cum}`);
      });
      // Per KV group: the shared prompt blocks, and each beam's own last block.
      const blocks = Math.ceil(prompt.length / 16);
      assert.ok(peak <= (blocks + W) * c.kv.numGroups, `beams should share their prompt blocks: peak ${peak} blocks`);
      assert.equal(c.kv.pool.numUsed, 0);
      c.close();
    });
  }
});
