/**
 * Choosing token ids from a row: the k largest logits, the top-p nucleus, an inverse-CDF draw over
 * candidates. Used by the sampler's draw stages, by logprobs (top-N) and by beam search.
 *
 * Speed (vocabularies of 50k–150k): nothing sorts the vocabulary. Top-k uses a size-k heap (or a
 * quickselect for large k); top-p finds the nucleus with a mass-weighted quickselect after a
 * prefilter that provably keeps the nucleus.
 *
 * Ties: every ordering is by value descending, then token id ascending. Top-k keeps exactly k ids
 * (vLLM keeps every id tied with the k-th value; the two differ only on exact float ties).
 */
import type { ComputeBackend } from '../backend/backend.js';

/** Heap top-k below this size; above it a quickselect over all ids is cheaper. */
const HEAP_TOP_K_LIMIT = 1024;
/** Top-p histogram resolution: buckets per nat of log-weight, and how many (128 nats). */
const BUCKETS_PER_NAT = 16;
export const NUM_BUCKETS = 2048;
/** Ranges this small are finished by insertion sort in the quickselect. */
const SMALL_RANGE = 16;

// exp(x) for x <= 0, relative error < 2e-12: x = (k/32)·ln2 + r with |r| <= ln2/64, then
// 2^(k>>5) · 2^((k&31)/32) · (degree-4 Taylor of e^r). V8's Math.exp costs ~4x more per call and
// the sampler evaluates one exp per vocabulary entry; vLLM's own float32 softmax is far less exact.
const EXP_POW2_BIAS = 1100;
const EXP_POW2 = new Float64Array(2 * EXP_POW2_BIAS);
for (let k = -EXP_POW2_BIAS; k < EXP_POW2_BIAS; k++) EXP_POW2[k + EXP_POW2_BIAS] = Math.pow(2, k);
const EXP_FRAC = new Float64Array(32);
for (let j = 0; j < 32; j++) EXP_FRAC[j] = Math.pow(2, j / 32);
const EXP_INV_STEP = 32 / Math.LN2;
const EXP_STEP_HI = 0.6931471803691238 / 32; // ln2 split so k·STEP_HI is exact
const EXP_STEP_LO = 1.9082149292705877e-10 / 32;
const ROUND_MAGIC = 6755399441055744; // 1.5·2^52: adding it rounds a double to an integer

/** e^x for x <= 0 (NaN and x < -708 give 0: below 1e-307 of the largest weight). */
export function expNeg(x: number): number {
  if (!(x >= -708)) return 0;
  const k = x * EXP_INV_STEP + ROUND_MAGIC - ROUND_MAGIC;
  const ki = k | 0;
  const r = x - k * EXP_STEP_HI - k * EXP_STEP_LO;
  const p = 1 + r * (1 + r * (0.5 + r * (1 / 6 + r * (1 / 24))));
  return p * EXP_FRAC[ki & 31]! * EXP_POW2[(ki >> 5) + EXP_POW2_BIAS]!;
}

/**
 * The max of a row. Four independent lanes: V8 does not vectorise, but independent comparisons
 * pipeline about 1.5x better than one dependent chain.
 */
export function rowMax(L: Float32Array, off: number, V: number): number {
  let m0 = -Infinity, m1 = -Infinity, m2 = -Infinity, m3 = -Infinity;
  let i = 0;
  for (; i + 3 < V; i += 4) {
    const a = L[off + i]!, b = L[off + i + 1]!, c = L[off + i + 2]!, d = L[off + i + 3]!;
    if (a > m0) m0 = a;
    if (b > m1) m1 = b;
    if (c > m2) m2 = c;
    if (d > m3) m3 = d;
  }
  for (; i < V; i++) {
    const v = L[off + i]!;
    if (v > m0) m0 = v;
  }
  if (m1 > m0) m0 = m1;
  if (m3 > m2) m2 = m3;
  return m2 > m0 ? m2 : m0;
}

/** Buffers for `heapTopK`, grown as needed. */
export class TopK {
  ids = new Int32Array(64);
  vals = new Float64Array(64);

  reserve(k: number): void {
    if (this.ids.length < k) {
      this.ids = new Int32Array(k);
      this.vals = new Float64Array(k);
    }
  }
}

/** Positions 0..size-1 of heapTopK's output, ordered best first (value desc, id asc). */
export function bestFirst(ids: Int32Array, vals: Float64Array, size: number): number[] {
  const order: number[] = [];
  for (let t = 0; t < size; t++) order.push(t);
  return order.sort((a, b) => vals[b]! - vals[a]! || ids[a]! - ids[b]!);
}

/** Ids of the k largest values of a row (ties: lower id first), best first. */
export function topKIds(row: Float32Array, k: number): number[] {
  const top = new TopK();
  top.reserve(k);
  const size = heapTopK(row, 0, row.length, k, top.ids, top.vals);
  return bestFirst(top.ids, top.vals, size).map((t) => top.ids[t]!);
}

/**
 * The k largest values of row L[off, off + V) (ties → lower id) into ids/vals (at least k long),
 * unordered; returns the count, min(k, V).
 * A min-heap of the current best k, rooted at the worst: most ids cost one comparison.
 */
export function heapTopK(L: Float32Array, off: number, V: number, k: number, ids: Int32Array, vals: Float64Array): number {
  let size = 0;
  for (let i = 0; i < V; i++) {
    const v = L[off + i]!;
    if (size < k) {
      // Sift up. Ids arrive in increasing order, so on a value tie the new id is the worse one.
      let c = size++;
      while (c > 0) {
        const parent = (c - 1) >> 1;
        if (v <= vals[parent]!) {
          vals[c] = vals[parent]!;
          ids[c] = ids[parent]!;
          c = parent;
        } else break;
      }
      vals[c] = v;
      ids[c] = i;
    } else if (v > vals[0]!) {
      // Replace the worst and sift down; "worse" = smaller value, or equal value and larger id.
      let c = 0;
      for (;;) {
        const l = 2 * c + 1;
        if (l >= size) break;
        const r = l + 1;
        let m = l;
        if (r < size && (vals[r]! < vals[l]! || (vals[r] === vals[l] && ids[r]! > ids[l]!))) m = r;
        if (vals[m]! < v || (vals[m] === v && ids[m]! > i)) {
          vals[c] = vals[m]!;
          ids[c] = ids[m]!;
          c = m;
        } else break;
      }
      vals[c] = v;
      ids[c] = i;
    }
  }
  return size;
}

/**
 * Put the ids of the k largest logits of row L[off, off + V) (ties → lower id) in idx[0..k), in no
 * particular order; returns k (< V). `key` (V values) is scratch for large k, overwritten.
 */
export function selectTopK(L: Float32Array, off: number, V: number, k: number, idx: Int32Array, top: TopK, key: Float64Array): number {
  if (k <= HEAP_TOP_K_LIMIT) {
    top.reserve(k);
    const size = heapTopK(L, off, V, k, top.ids, top.vals);
    for (let t = 0; t < size; t++) idx[t] = top.ids[t]!;
    return size;
  }
  // The quickselect reads its keys from a float64 copy (exact), so that it only ever sees one
  // array type, as it does for top-p.
  key.set(L.subarray(off, off + V));
  for (let i = 0; i < V; i++) idx[i] = i;
  return selectPrefix(key, idx, 0, V, false, k);
}

/**
 * Top-p nucleus of candidates: rearranges idx[start..end) so that the smallest prefix of the
 * (weight desc, id asc) order whose weight w reaches `target` is idx[start..m) (unordered);
 * returns m. vLLM's rule (sort, cumulate, drop ids whose preceding mass is already >= p) without
 * sorting.
 */
export function nucleus(idx: Int32Array, start: number, end: number, w: Float64Array, target: number): number {
  return selectPrefix(w, idx, start, end, true, target);
}

/** Whether id a comes before id b in (key desc, id asc) order. */
function before(key: Float64Array, a: number, b: number): boolean {
  const va = key[a]!;
  const vb = key[b]!;
  return va > vb || (va === vb && a < b);
}

/**
 * Quickselect over idx[start..end) in (key[id] desc, id asc) order, leaving a prefix of that order
 * in idx[start..m) (unordered) and returning m. The prefix ends where `need` is met:
 * - by count: it holds `need` ids (top-k); the search stops as soon as a pivot lands there;
 * - by mass: it is the shortest whose sum of keys reaches `need` (top-p, keys = weights).
 */
function selectPrefix(key: Float64Array, idx: Int32Array, start: number, end: number, byMass: boolean, need: number): number {
  let lo = start;
  let hi = end;
  while (hi - lo > SMALL_RANGE) {
    const mid = (lo + hi) >> 1;
    // Median of three as pivot, moved to hi - 1.
    let a = idx[lo]!, b = idx[mid]!, c = idx[hi - 1]!;
    if (before(key, b, a)) [a, b] = [b, a];
    if (before(key, c, b)) {
      [b, c] = [c, b];
      if (before(key, b, a)) [a, b] = [b, a];
    }
    idx[lo] = a;
    idx[mid] = c;
    idx[hi - 1] = b;
    const pivot = b;
    let store = lo;
    let ahead = 0;
    for (let t = lo; t < hi - 1; t++) {
      const id = idx[t]!;
      if (before(key, id, pivot)) {
        if (byMass) ahead += key[id]!;
        idx[t] = idx[store]!;
        idx[store++] = id;
      }
    }
    idx[hi - 1] = idx[store]!;
    idx[store] = pivot;
    if (!byMass) ahead = store - lo;
    const pivotMass = byMass ? key[pivot]! : 1;
    if (ahead >= need) {
      if (!byMass && ahead === need) return store; // the k-th id is just before the pivot
      hi = store; // the prefix ends before the pivot
    } else if (ahead + pivotMass >= need) {
      return store + 1; // ... exactly at the pivot
    } else {
      need -= ahead + pivotMass;
      lo = store + 1;
    }
  }
  // Insertion sort the small remainder, then take what it still needs.
  for (let t = lo + 1; t < hi; t++) {
    const id = idx[t]!;
    let s = t - 1;
    while (s >= lo && before(key, id, idx[s]!)) {
      idx[s + 1] = idx[s]!;
      s--;
    }
    idx[s + 1] = id;
  }
  let acc = 0;
  for (let t = lo; t < hi; t++) {
    acc += byMass ? key[idx[t]!]! : 1;
    if (acc >= need) return t + 1;
  }
  return hi;
}

/** Scratch for `nucleusOfRow`, allocated once per vocabulary size. */
export interface NucleusScratch {
  /** Weights by token id (written). */
  w: Float64Array;
  /** The nucleus ids (written to [0..n)). */
  idx: Int32Array;
  idx2: Int32Array;
  bucket: Uint16Array;
  hist: Float64Array;
}

export function nucleusScratch(V: number): NucleusScratch {
  return { w: new Float64Array(V), idx: new Int32Array(V), idx2: new Int32Array(V), bucket: new Uint16Array(V), hist: new Float64Array(NUM_BUCKETS) };
}

/**
 * Top-p over a whole row of logits without sorting it: computes every weight
 * w[i] = exp((L[i] - max) · invT) and returns n with the nucleus in idx[0..n).
 *
 * While computing the weights we histogram their mass by log-weight bucket (BUCKETS_PER_NAT per
 * nat below the max). The buckets above the one where the running mass reaches p · sum lie wholly
 * inside the nucleus; only that edge bucket needs an exact (weighted quickselect) cut, and it is
 * small. The weight pass is branch-free on purpose: a data-dependent branch there mispredicts on
 * about half the ids and costs more than histogramming everything.
 */
export function nucleusOfRow(be: ComputeBackend, L: Float32Array, off: number, V: number, max: number, invT: number, topP: number, s: NucleusScratch): number {
  const { w, idx, bucket, hist } = s;
  hist.fill(0);
  // The pass over the whole vocabulary (exp, bucket, histogram) runs natively.
  const sum = be.rowNucleusWeights(L, off, V, max, invT, w, bucket, hist, BUCKETS_PER_NAT);
  const target = topP * sum;
  let cum = 0;
  let edge = 0;
  for (; edge < NUM_BUCKETS - 1; edge++) {
    if (cum + hist[edge]! >= target) break;
    cum += hist[edge]!;
  }
  let nIn = 0;
  let nEdge = 0;
  const edgeIds = s.idx2;
  for (let i = 0; i < V; i++) {
    const b = bucket[i]!;
    if (b <= edge) {
      if (b < edge) idx[nIn++] = i;
      else edgeIds[nEdge++] = i;
    }
  }
  for (let t = 0; t < nEdge; t++) idx[nIn + t] = edgeIds[t]!;
  return nucleus(idx, nIn, nIn + nEdge, w, target - cum);
}

/**
 * Inverse-CDF draw over candidates idx[0..n) with weights w[id], in idx order; u in [0, 1).
 * Returns -1 when no candidate has a positive weight.
 */
export function drawCandidates(idx: Int32Array, n: number, w: Float64Array, u01: number): number {
  let sum = 0;
  for (let t = 0; t < n; t++) sum += w[idx[t]!]!;
  const u = u01 * sum;
  let acc = 0;
  let last = -1;
  for (let t = 0; t < n; t++) {
    const id = idx[t]!;
    const e = w[id]!;
    if (e > 0) {
      acc += e;
      last = id;
      if (acc > u) return id;
    }
  }
  return last;
}
