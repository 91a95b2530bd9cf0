/**
 * A random draw from a processed row: temperature → top-k → top-p → min-p → one draw from the
 * row's own Rng (inverse CDF over the surviving candidates), vLLM v0's order.
 *
 * Temperature is not a pass of its own: every weight is exp((logit - max) · (1/T)) in float64,
 * computed by the first stage that needs weights (dividing the float32 row by T first would round
 * differently). The narrowing stages (`DRAW_STAGES`) each have a cheap `appliesTo(params)`; a row
 * to which none applies is a plain softmax draw over the whole vocabulary, done natively (and
 * batched by the sampler).
 */
import type { ComputeBackend } from '../backend/backend.js';
import type { SamplingParams } from './params.js';
import type { Rng } from './rng.js';
import { drawCandidates, expNeg, nucleus, nucleusOfRow, nucleusScratch, rowMax, selectTopK, TopK, type NucleusScratch } from './selection.js';

/** The distribution a draw picks from, narrowed stage by stage. */
export class Candidates {
  L: Float32Array = new Float32Array(0);
  off = 0;
  readonly V: number;
  invT = 1;
  /** idx[0..n) are the candidates, with weights w[id]; -1 = every id, no weights computed yet. */
  n = -1;
  /** Sum of the candidates' weights when the stage that chose them computed it; NaN otherwise. */
  sum = NaN;
  /** Weights by token id, the candidate ids and top-p's scratch. */
  readonly s: NucleusScratch;
  readonly top = new TopK();

  constructor(
    readonly be: ComputeBackend,
    V: number,
  ) {
    this.V = V;
    this.s = nucleusScratch(V);
  }

  /** Draw a token from row L[off, off + V) (already processed). Returns -1 if every logit is -inf. */
  draw(L: Float32Array, off: number, p: SamplingParams, rng: Rng): number {
    this.L = L;
    this.off = off;
    this.invT = 1 / p.temperature;
    this.n = -1;
    this.sum = NaN;
    let narrowed = false;
    for (const stage of DRAW_STAGES) {
      if (!stage.appliesTo(p, this.V)) continue;
      if (!stage.apply(this, p)) return -1;
      narrowed = true;
    }
    // Plain softmax over the whole vocabulary, drawn in id order: vectorised natively, as it
    // touches every id (exp of 50k-150k logits per token).
    if (!narrowed) return this.be.rowSoftmaxSample(L, off, this.V, this.invT, rng.next());
    return drawCandidates(this.s.idx, this.n, this.s.w, rng.next());
  }
}

export interface DrawStage {
  readonly name: string;
  /** Whether the stage narrows this row's distribution; false → skipped. Cheap. */
  appliesTo(p: SamplingParams, vocabSize: number): boolean;
  /** Narrow `c`; false when nothing can be drawn (every logit is -inf). */
  apply(c: Candidates, p: SamplingParams): boolean;
}

const topK: DrawStage = {
  name: 'top_k',
  appliesTo: (p, V) => p.topK > 0 && p.topK < V,
  apply(c, p) {
    const { L, off, invT } = c;
    const { w, idx } = c.s;
    const n = selectTopK(L, off, c.V, p.topK, idx, c.top, w);
    let max = -Infinity;
    for (let t = 0; t < n; t++) {
      const v = L[off + idx[t]!]!;
      if (v > max) max = v;
    }
    if (max === -Infinity) return false;
    let sum = 0;
    for (let t = 0; t < n; t++) {
      const id = idx[t]!;
      const e = expNeg((L[off + id]! - max) * invT);
      w[id] = e;
      sum += e;
    }
    c.n = n;
    c.sum = sum;
    return true;
  },
};

const topP: DrawStage = {
  name: 'top_p',
  appliesTo: (p) => p.topP < 1,
  apply(c, p) {
    if (c.n >= 0) {
      // vLLM applies top-p to the top-k distribution: the nucleus of the renormalised top k.
      c.n = nucleus(c.s.idx, 0, c.n, c.s.w, p.topP * c.sum);
    } else {
      const max = rowMax(c.L, c.off, c.V);
      if (max === -Infinity) return false;
      c.n = nucleusOfRow(c.be, c.L, c.off, c.V, max, c.invT, p.topP, c.s);
    }
    c.sum = NaN;
    return true;
  },
};

/** Relative to the top token, whose weight is exactly 1, so the bar is the same before or after renormalisation. */
const minP: DrawStage = {
  name: 'min_p',
  appliesTo: (p) => p.minP > 0,
  apply(c, p) {
    const { w, idx } = c.s;
    const minP = p.minP;
    if (c.n >= 0) {
      let m = 0;
      for (let t = 0; t < c.n; t++) {
        const id = idx[t]!;
        if (w[id]! >= minP) idx[m++] = id;
      }
      c.n = m;
    } else {
      // min-p alone: the weights at or above the bar, in one pass over the row.
      const { L, off, V, invT } = c;
      const max = rowMax(L, off, V);
      if (max === -Infinity) return false;
      let n = 0;
      for (let i = 0; i < V; i++) {
        const e = expNeg((L[off + i]! - max) * invT);
        w[i] = e;
        if (e >= minP && e > 0) idx[n++] = i;
      }
      c.n = n;
    }
    c.sum = NaN;
    return true;
  },
};

/** The narrowing stages, in order. */
export const DRAW_STAGES: readonly DrawStage[] = [topK, topP, minP];

/** Whether any narrowing stage applies: if not, the draw is a plain softmax over the whole row. */
export function narrows(p: SamplingParams, V: number): boolean {
  for (const s of DRAW_STAGES) if (s.appliesTo(p, V)) return true;
  return false;
}
