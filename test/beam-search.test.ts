/**
 * BeamGroup alone, against a brute-force reference on a tiny vocabulary: with a beam wider than
 * every set of candidates, beam search prunes nothing, so its hypotheses must be exactly the best
 * of all complete sequences by length-penalized score. Plus topK and proposeTokens against plain
 * references, and early stopping.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BeamGroup, beamScore, proposeTokens, type Hypothesis } from '../src/engine/beam-search.js';
import { topKIds } from '../src/sampling/selection.js';

const topK = (row: ArrayLike<number>, k: number): number[] => topKIds(Float32Array.from(row), k);
import { makeSamplingParams, type SamplingParams } from '../src/sampling/params.js';
import { Rng } from '../src/sampling/rng.js';

interface B {
  outputTokenIds: number[];
  cumulativeLogprob: number;
}

/** A fixed "model": random logits per prefix (deterministic in the prefix). */
function model(V: number, seed: number): (out: readonly number[]) => Float32Array {
  const memo = new Map<string, Float32Array>();
  return (out) => {
    const key = out.join(',');
    let row = memo.get(key);
    if (!row) {
      let h = seed;
      for (const t of out) h = (h * 31 + t + 7) >>> 0;
      const rng = new Rng(h);
      row = Float32Array.from({ length: V }, () => (rng.next() - 0.5) * 6);
      memo.set(key, row);
    }
    return row;
  };
}

/** Plain log-softmax (float64) of one row. */
function logSoftmax(row: Float32Array): number[] {
  const m = Math.max(...row);
  const lse = m + Math.log(row.reduce((a, x) => a + Math.exp(x - m), 0));
  return [...row].map((x) => x - lse);
}

function params(W: number, n: number, maxTokens: number, extra: Partial<SamplingParams> = {}): SamplingParams {
  return makeSamplingParams({ useBeamSearch: true, temperature: 0, bestOf: W, n, maxTokens, ...extra }, { vocabSize: 1000 });
}

/** Drive a BeamGroup to the end the way the engine does; returns its hypotheses and step count. */
function runBeam(p: SamplingParams, promptLen: number, eos: number[], logitsOf: (out: readonly number[]) => Float32Array): { hyps: Hypothesis[]; steps: number } {
  const g = new BeamGroup<B>(p, promptLen, eos, p.maxTokens, [{ outputTokenIds: [], cumulativeLogprob: 0 }]);
  for (let steps = 1; ; steps++) {
    let ready = false;
    for (const b of g.live) ready = g.offer(b, proposeTokens(Float32Array.from(logitsOf(b.outputTokenIds)), g.width));
    assert.ok(ready, 'every live beam has proposed');
    const res = g.step();
    g.live = res.extend.map((e) => ({ outputTokenIds: [...e.parent.outputTokenIds, e.tokenId], cumulativeLogprob: e.parent.cumulativeLogprob + e.logprob }));
    if (res.done) return { hyps: g.results(p.n), steps };
    assert.ok(steps <= p.maxTokens, 'the search ends by max_tokens');
  }
}

/** Every complete sequence the search could return, scored; best first (stable). */
function bruteForce(p: SamplingParams, promptLen: number, eos: number[], V: number, logitsOf: (out: readonly number[]) => Float32Array): Hypothesis[] {
  const all: Hypothesis[] = [];
  const walk = (out: number[], cum: number): void => {
    const lp = logSoftmax(logitsOf(out));
    for (let t = 0; t < V; t++) {
      const next = [...out, t];
      const c = cum + lp[t]!;
      if (eos.includes(t)) {
        // An EOS before min_tokens is not a hypothesis (the search drops it).
        if (next.length >= p.minTokens) all.push({ outputTokenIds: next, cumulativeLogprob: c, score: beamScore(promptLen + out.length, c, p.lengthPenalty), finishReason: 'stop' });
      } else if (next.length >= p.maxTokens) {
        all.push({ outputTokenIds: next, cumulativeLogprob: c, score: beamScore(promptLen + next.length, c, p.lengthPenalty), finishReason: 'length' });
      } else {
        walk(next, c);
      }
    }
  };
  walk([], 0);
  return all.sort((a, b) => b.score - a.score);
}

function assertSameHypotheses(got: Hypothesis[], want: Hypothesis[]): void {
  assert.equal(got.length, want.length);
  for (let i = 0; i < want.length; i++) {
    assert.deepEqual(got[i]!.outputTokenIds, want[i]!.outputTokenIds, `hypothesis ${i}`);
    assert.equal(got[i]!.finishReason, want[i]!.finishReason);
    assert.ok(Math.abs(got[i]!.score - want[i]!.score) < 1e-9, `score ${got[i]!.score} vs ${want[i]!.score}`);
    assert.ok(Math.abs(got[i]!.cumulativeLogprob - want[i]!.cumulativeLogprob) < 1e-9);
  }
}

describe('beam search', () => {
  test('topK: the k largest, descending, lower index first on ties', () => {
    const rng = new Rng(5);
    for (const [len, k] of [
      [1, 1],
      [7, 3],
      [50, 8],
      [33, 33],
      [10, 12],
    ] as const) {
      const row = Float32Array.from({ length: len }, () => Math.floor(rng.next() * 6)); // many ties
      const ref = [...row.keys()].sort((a, b) => row[b]! - row[a]! || a - b).slice(0, k);
      assert.deepEqual(topK(row, k), ref, `len ${len}, k ${k}`);
    }
  });

  test('proposeTokens: the 2·width best tokens with their log-softmax values', () => {
    const row = model(11, 3)([]);
    const lp = logSoftmax(row);
    const got = proposeTokens(Float32Array.from(row), 2);
    assert.deepEqual(
      got.map((p) => p.tokenId),
      topK(row, 4),
    );
    for (const p of got) assert.ok(Math.abs(p.logprob - lp[p.tokenId]!) < 1e-12);
  });

  for (const [V, L, lengthPenalty, minTokens, seed] of [
    [3, 3, 1, 0, 1],
    [4, 3, 1, 0, 2],
    [4, 3, 0, 0, 3],
    [4, 3, 2, 0, 4],
    [4, 3, -0.5, 2, 5],
    [3, 4, 1, 3, 6],
  ] as const) {
    test(`a beam wider than every candidate set equals brute force (V ${V}, ${L} tokens, length_penalty ${lengthPenalty}, min_tokens ${minTokens})`, () => {
      const eos = [V - 1];
      const nonEos = V - 1;
      // Wide enough to keep every live prefix and every finished hypothesis.
      let total = nonEos ** L;
      for (let t = 0; t < L; t++) total += nonEos ** t;
      const W = total;
      const logitsOf = model(V, seed);
      for (const n of [1, 3, W]) {
        const p = params(W, n, L, { lengthPenalty, minTokens, earlyStopping: 'never' });
        const { hyps } = runBeam(p, 5, eos, logitsOf);
        assertSameHypotheses(hyps, bruteForce(p, 5, eos, V, logitsOf).slice(0, Math.min(n, W)));
      }
    });
  }

  test('early_stopping true ends the search as soon as width hypotheses are finished', () => {
    // EOS (id 0) is the most likely token everywhere: each step finishes hypotheses.
    const V = 5;
    const base = model(V, 9);
    const logitsOf = (out: readonly number[]): Float32Array => {
      const row = Float32Array.from(base(out));
      row[0] = 10;
      return row;
    };
    const p = params(2, 2, 6, { earlyStopping: true });
    const { hyps, steps } = runBeam(p, 3, [0], logitsOf);
    // Step 1 finishes [EOS]; step 2 finishes both beams' EOS: two of three kept, search over.
    assert.equal(steps, 2);
    assert.equal(hyps.length, 2);
    for (const h of hyps) assert.equal(h.outputTokenIds[h.outputTokenIds.length - 1], 0);
    // Without early stopping the search goes on while a live beam could still do better.
    const never = runBeam(params(2, 2, 6, { earlyStopping: 'never' }), 3, [0], logitsOf);
    assert.ok(never.steps >= steps);
  });

  test('ignore_eos: EOS is an ordinary token and every hypothesis runs to max_tokens', () => {
    const V = 3;
    const logitsOf = model(V, 11);
    const p = params(2, 2, 4, { ignoreEos: true });
    const { hyps } = runBeam(p, 2, [0], logitsOf);
    assert.equal(hyps.length, 2);
    for (const h of hyps) {
      assert.equal(h.finishReason, 'length');
      assert.equal(h.outputTokenIds.length, 4);
    }
  });
});
