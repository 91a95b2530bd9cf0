/**
 * The sampler: one token per row of logits, in vLLM's order of logits processing.
 *
 *   penalties (repetition over prompt + output, frequency and presence over output)
 *   → logit_bias / allowed_token_ids
 *   → min_tokens (EOS and stop ids suppressed while the output is shorter than min_tokens)
 *   → greedy: argmax (ties → lowest id), no random draw
 *   → otherwise temperature → top-k → top-p → min-p → one draw from the row's own Rng
 *     (inverse CDF over the surviving candidates)
 *
 * Logprobs and ranks come from the RAW logits (before any processing, vLLM's default
 * `raw_logprobs`), with log-softmax accumulated in float64; rank = 1 + the number of ids whose raw
 * logit is strictly larger.
 *
 * Speed (vocabularies of 50k–150k): nothing sorts the vocabulary. Top-k uses a size-k heap (or a
 * quickselect for large k); top-p finds the nucleus with a mass-weighted quickselect after a
 * prefilter that provably keeps the nucleus; scratch buffers are allocated once per Sampler.
 * Each row is processed on its own, in an order fixed by that row's data only, so a row's result
 * does not depend on the other rows of the batch.
 *
 * Ties: every ordering is by value descending, then token id ascending. top_k keeps exactly k ids
 * (vLLM keeps every id tied with the k-th value; the two differ only on exact float ties).
 */
import type { SamplingParams } from './params.js';
import { SAMPLING_EPS } from './params.js';
import type { Rng } from './rng.js';

export interface SamplerRow {
  params: SamplingParams;
  /** The sequence's own stream; advanced once per non-greedy sample. */
  rng: Rng;
  promptTokenIds: readonly number[];
  /** Generated so far (penalties, min_tokens). */
  outputTokenIds: readonly number[];
  /** Suppressed (with params.stopTokenIds) while outputTokenIds.length < params.minTokens. */
  eosTokenIds: readonly number[];
}

export interface TokenLogprob {
  tokenId: number;
  logprob: number;
  rank: number;
}

export interface SampleResult {
  tokenId: number;
  /** Raw-logit log-probability of the chosen token; NaN when `params.logprobs` is null (not computed). */
  logprob: number;
  /** Rank of the chosen token among the raw logits (1 = largest); 0 when `params.logprobs` is null. */
  rank: number;
  /** The `params.logprobs` most likely tokens (raw), best first; [] for logprobs 0, null when not requested. */
  topLogprobs: TokenLogprob[] | null;
}

/** Heap top-k below this size; above it a quickselect over all ids is cheaper. */
const HEAP_TOP_K_LIMIT = 1024;
/** Ranges this small are finished by insertion sort in the selections. */
const SMALL_RANGE = 16;

export class Sampler {
  private readonly V: number;
  /** Unnormalised probabilities (exp((logit - max) / T)), indexed by token id. */
  private readonly w: Float64Array;
  /** Candidate token ids. */
  private readonly idx: Int32Array;
  /** Copy of a raw row, kept when processing changes the row and logprobs are wanted. */
  private readonly raw: Float32Array;
  /** Output-token counts and prompt marks for penalties; all zero between rows. */
  private readonly counts: Int32Array;
  private readonly seen: Uint8Array;
  private readonly touched: Int32Array;
  private heapIds = new Int32Array(64);
  private heapVals = new Float64Array(64);

  constructor(vocabSize: number) {
    if (!Number.isInteger(vocabSize) || vocabSize < 1) throw new RangeError(`vocabSize must be a positive integer, got ${vocabSize}`);
    this.V = vocabSize;
    this.w = new Float64Array(vocabSize);
    this.idx = new Int32Array(vocabSize);
    this.raw = new Float32Array(vocabSize);
    this.counts = new Int32Array(vocabSize);
    this.seen = new Uint8Array(vocabSize);
    this.touched = new Int32Array(vocabSize);
  }

  get vocabSize(): number {
    return this.V;
  }

  /** logits: [rows.length, vocabSize] float32, row-major; rows are modified in place. */
  sample(logits: Float32Array, rows: readonly SamplerRow[]): SampleResult[] {
    const V = this.V;
    if (logits.length < rows.length * V) {
      throw new RangeError(`logits has ${logits.length} values, expected ${rows.length} x ${V}`);
    }
    const out: SampleResult[] = new Array(rows.length);
    for (let r = 0; r < rows.length; r++) out[r] = this.sampleRow(logits, r * V, rows[r]!);
    return out;
  }

  private sampleRow(L: Float32Array, off: number, row: SamplerRow): SampleResult {
    const V = this.V;
    const p = row.params;
    const minTokensActive = row.outputTokenIds.length < p.minTokens && (row.eosTokenIds.length > 0 || p.stopTokenIds.length > 0);
    const penalties = p.repetitionPenalty !== 1 || p.frequencyPenalty !== 0 || p.presencePenalty !== 0;
    const processed = penalties || p.logitBias !== null || p.allowedTokenIds !== null || minTokensActive;

    // Logprobs are defined on the raw row; keep a copy before we change it in place.
    let rawArr = L;
    let rawOff = off;
    if (p.logprobs !== null && processed) {
      this.raw.set(L.subarray(off, off + V));
      rawArr = this.raw;
      rawOff = 0;
    }

    if (penalties) this.applyPenalties(L, off, row);
    if (p.allowedTokenIds !== null) this.applyAllowed(L, off, p.allowedTokenIds);
    if (p.logitBias !== null) {
      for (const [id, b] of p.logitBias) if (id >= 0 && id < V) L[off + id] = L[off + id]! + b;
    }
    if (minTokensActive) {
      for (const id of row.eosTokenIds) if (id >= 0 && id < V) L[off + id] = -Infinity;
      for (const id of p.stopTokenIds) if (id >= 0 && id < V) L[off + id] = -Infinity;
    }

    let tokenId: number;
    if (p.temperature < SAMPLING_EPS) {
      tokenId = argmax(L, off, V);
    } else {
      tokenId = this.sampleRandom(L, off, p, row.rng);
    }
    if (tokenId < 0) {
      // Everything was masked (allowed_token_ids ⊆ stop ids while min_tokens is active): choose the
      // least surprising id rather than fail the whole batch.
      tokenId = p.allowedTokenIds?.[0] ?? row.eosTokenIds[0] ?? 0;
    }

    if (p.logprobs === null) return { tokenId, logprob: NaN, rank: 0, topLogprobs: null };
    const lp = this.logprobsOf(rawArr, rawOff, tokenId, p.logprobs);
    return { tokenId, logprob: lp.token.logprob, rank: lp.token.rank, topLogprobs: lp.top };
  }

  /** vLLM/HF rule: seen logits > 0 are divided by the penalty, <= 0 multiplied; then OpenAI's frequency/presence. */
  private applyPenalties(L: Float32Array, off: number, row: SamplerRow): void {
    const V = this.V;
    const { repetitionPenalty: rep, frequencyPenalty: freq, presencePenalty: pres } = row.params;
    const counts = this.counts;
    const seen = this.seen;
    const touched = this.touched;
    let nTouched = 0;
    for (const id of row.outputTokenIds) {
      if (id < 0 || id >= V) continue;
      if (counts[id] === 0 && seen[id] === 0) touched[nTouched++] = id;
      counts[id]!++;
    }
    if (rep !== 1) {
      for (const id of row.promptTokenIds) {
        if (id < 0 || id >= V) continue;
        if (counts[id] === 0 && seen[id] === 0) touched[nTouched++] = id;
        seen[id] = 1;
      }
    }
    for (let t = 0; t < nTouched; t++) {
      const id = touched[t]!;
      const c = counts[id]!;
      let x = L[off + id]!;
      if (rep !== 1) x = x > 0 ? x / rep : x * rep;
      if (c > 0) x -= freq * c + pres;
      L[off + id] = x;
      counts[id] = 0;
      seen[id] = 0;
    }
  }

  private applyAllowed(L: Float32Array, off: number, allowed: readonly number[]): void {
    const V = this.V;
    const keep = this.w; // free at this point; reused as a small stash
    let n = 0;
    for (const id of allowed) if (id >= 0 && id < V) keep[n++] = L[off + id]!;
    L.fill(-Infinity, off, off + V);
    n = 0;
    for (const id of allowed) if (id >= 0 && id < V) L[off + id] = keep[n++]!;
  }

  /** temperature → top-k → top-p → min-p → inverse-CDF draw. Returns -1 if every logit is -inf. */
  private sampleRandom(L: Float32Array, off: number, p: SamplingParams, rng: Rng): number {
    const V = this.V;
    const w = this.w;
    const idx = this.idx;
    const invT = 1 / p.temperature;
    const topK = p.topK > 0 && p.topK < V ? p.topK : 0;
    const topP = p.topP;
    const minP = p.minP;

    if (topK === 0 && topP >= 1 && minP <= 0) {
      // Plain softmax over the whole vocabulary.
      const max = rowMax(L, off, V);
      if (max === -Infinity) return -1;
      let sum = 0;
      for (let i = 0; i < V; i++) {
        const e = Math.exp((L[off + i]! - max) * invT);
        w[i] = e;
        sum += e;
      }
      const u = rng.next() * sum;
      let acc = 0;
      let last = -1;
      for (let i = 0; i < V; i++) {
        const e = w[i]!;
        if (e > 0) {
          acc += e;
          last = i;
          if (acc > u) return i;
        }
      }
      return last;
    }

    let n: number; // candidates are idx[0..n)
    let target: number; // top-p mass the nucleus must reach (0 = no top-p)
    if (topK > 0) {
      n = this.selectTopK(L, off, topK);
      let max = -Infinity;
      for (let t = 0; t < n; t++) {
        const v = L[off + idx[t]!]!;
        if (v > max) max = v;
      }
      if (max === -Infinity) return -1;
      let sum = 0;
      for (let t = 0; t < n; t++) {
        const id = idx[t]!;
        const e = Math.exp((L[off + id]! - max) * invT);
        w[id] = e;
        sum += e;
      }
      target = topP < 1 ? topP * sum : 0;
      if (minP > 0) {
        // Keep the candidates at or above the min-p bar in place; the nucleus is computed on the
        // full top-k mass, and its intersection with this prefix is what survives (see below).
        n = this.filterByWeight(n, minP, target);
        if (n < 0) {
          n = -n;
          target = 0;
        }
      }
    } else {
      const max = rowMax(L, off, V);
      if (max === -Infinity) return -1;
      let sum = 0;
      for (let i = 0; i < V; i++) {
        const e = Math.exp((L[off + i]! - max) * invT);
        w[i] = e;
        sum += e;
      }
      target = topP < 1 ? topP * sum : 0;
      // Any id with weight < (1 - p) * sum / V is outside the nucleus: all such ids together weigh
      // less than (1 - p) * sum, so the ids above the bar already hold at least p * sum.
      const topPBar = topP < 1 ? ((1 - topP) * sum) / V : 0;
      const bar = minP > topPBar ? minP : topPBar;
      n = 0;
      let kept = 0;
      for (let i = 0; i < V; i++) {
        const e = w[i]!;
        if (e >= bar) {
          idx[n++] = i;
          kept += e;
        }
      }
      // When the min-p bar is the higher one, the kept prefix may hold less than the nucleus; then
      // the min-p set is the answer. (Under the top-p bar alone it holds enough by construction.)
      if (minP > topPBar && kept < target) target = 0;
    }

    if (target > 0) n = nucleus(idx, n, w, target);

    let sum = 0;
    for (let t = 0; t < n; t++) sum += w[idx[t]!]!;
    const u = rng.next() * sum;
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

  /**
   * Keep idx[0..n) entries with weight >= minP (the top weight is 1). If the kept ones hold less
   * than `target` (the nucleus is larger than the min-p set), returns -(kept count) to say that
   * top-p no longer cuts anything; otherwise the kept count.
   */
  private filterByWeight(n: number, minP: number, target: number): number {
    const idx = this.idx;
    const w = this.w;
    let m = 0;
    let kept = 0;
    for (let t = 0; t < n; t++) {
      const id = idx[t]!;
      if (w[id]! >= minP) {
        idx[m++] = id;
        kept += w[id]!;
      }
    }
    return target > 0 && kept < target ? -m : m;
  }

  /** Put the k largest logits' ids (ties → lower id) in idx[0..k); returns k. */
  private selectTopK(L: Float32Array, off: number, k: number): number {
    const V = this.V;
    const idx = this.idx;
    if (k <= HEAP_TOP_K_LIMIT) {
      this.ensureHeap(k);
      const size = heapTopK(L, off, V, k, this.heapIds, this.heapVals);
      for (let t = 0; t < size; t++) idx[t] = this.heapIds[t]!;
      return size;
    }
    for (let i = 0; i < V; i++) idx[i] = i;
    selectByLogit(L, off, idx, V, k);
    return k;
  }

  private ensureHeap(k: number): void {
    if (this.heapIds.length < k) {
      this.heapIds = new Int32Array(k);
      this.heapVals = new Float64Array(k);
    }
  }

  private logprobsOf(arr: Float32Array, off: number, tokenId: number, k: number): { token: TokenLogprob; top: TokenLogprob[] } {
    const kk = Math.min(k, this.V);
    this.ensureHeap(Math.max(kk, 1));
    return rowLogprobs(arr, off, this.V, tokenId, kk, this.heapIds, this.heapVals);
  }
}

/**
 * Prompt logprobs: row i of `logits` predicts prompt token i + 1, so `nextTokenIds[i]` is scored
 * against row i. Returns the token's raw logprob and rank, and the k most likely tokens (best first).
 */
export function promptLogprobs(
  logits: Float32Array,
  numRows: number,
  vocabSize: number,
  nextTokenIds: readonly number[],
  k: number,
): Array<{ token: TokenLogprob; top: TokenLogprob[] }> {
  if (nextTokenIds.length < numRows) throw new RangeError(`nextTokenIds has ${nextTokenIds.length} ids for ${numRows} rows`);
  if (logits.length < numRows * vocabSize) throw new RangeError(`logits has ${logits.length} values, expected ${numRows} x ${vocabSize}`);
  const kk = Math.max(0, Math.min(k, vocabSize));
  const heapIds = new Int32Array(Math.max(kk, 1));
  const heapVals = new Float64Array(Math.max(kk, 1));
  const out = new Array<{ token: TokenLogprob; top: TokenLogprob[] }>(numRows);
  for (let r = 0; r < numRows; r++) out[r] = rowLogprobs(logits, r * vocabSize, vocabSize, nextTokenIds[r]!, kk, heapIds, heapVals);
  return out;
}

/** Log-softmax stats of one raw row: the token's logprob/rank and the top k, float64 accumulation. */
function rowLogprobs(
  arr: Float32Array,
  off: number,
  V: number,
  tokenId: number,
  k: number,
  heapIds: Int32Array,
  heapVals: Float64Array,
): { token: TokenLogprob; top: TokenLogprob[] } {
  const size = k > 0 ? heapTopK(arr, off, V, k, heapIds, heapVals) : 0;
  const max = rowMax(arr, off, V);
  const x = arr[off + tokenId]!;
  let sum = 0;
  let greater = 0;
  for (let i = 0; i < V; i++) {
    const v = arr[off + i]!;
    sum += Math.exp(v - max);
    if (v > x) greater++;
  }
  const lse = max + Math.log(sum);
  const token: TokenLogprob = { tokenId, logprob: x - lse, rank: greater + 1 };

  const order: number[] = [];
  for (let t = 0; t < size; t++) order.push(t);
  order.sort((a, b) => heapVals[b]! - heapVals[a]! || heapIds[a]! - heapIds[b]!);
  const top: TokenLogprob[] = [];
  for (let t = 0; t < order.length; t++) {
    const v = heapVals[order[t]!]!;
    // Every id with a larger value is earlier in this list, so ties share the first tied rank.
    const rank = t > 0 && v === heapVals[order[t - 1]!]! ? top[t - 1]!.rank : t + 1;
    top.push({ tokenId: heapIds[order[t]!]!, logprob: v - lse, rank });
  }
  return { token, top };
}

function rowMax(L: Float32Array, off: number, V: number): number {
  let max = -Infinity;
  for (let i = 0; i < V; i++) {
    const v = L[off + i]!;
    if (v > max) max = v;
  }
  return max;
}

/** Index of the largest logit, lowest id on ties; -1 if all are -inf (or NaN). */
function argmax(L: Float32Array, off: number, V: number): number {
  let best = -1;
  let max = -Infinity;
  for (let i = 0; i < V; i++) {
    const v = L[off + i]!;
    if (v > max) {
      max = v;
      best = i;
    }
  }
  return best;
}

/**
 * The k largest values of a row (ties → lower id) into heap arrays (unordered); returns the count.
 * A min-heap of the current best k, rooted at the worst: most ids cost one comparison.
 */
function heapTopK(L: Float32Array, off: number, V: number, k: number, ids: Int32Array, vals: Float64Array): number {
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

/** Whether id a comes before id b in (logit desc, id asc) order. */
function beforeByLogit(L: Float32Array, off: number, a: number, b: number): boolean {
  const va = L[off + a]!;
  const vb = L[off + b]!;
  return va > vb || (va === vb && a < b);
}

/** Quickselect: rearrange idx[0..n) so that idx[0..k) hold the k ids first in (logit desc, id asc) order. */
function selectByLogit(L: Float32Array, off: number, idx: Int32Array, n: number, k: number): void {
  let lo = 0;
  let hi = n;
  while (hi - lo > SMALL_RANGE) {
    const mid = (lo + hi) >> 1;
    // Median of three as pivot, moved to hi - 1.
    let a = idx[lo]!, b = idx[mid]!, c = idx[hi - 1]!;
    if (beforeByLogit(L, off, b, a)) [a, b] = [b, a];
    if (beforeByLogit(L, off, c, b)) {
      [b, c] = [c, b];
      if (beforeByLogit(L, off, b, a)) [a, b] = [b, a];
    }
    idx[lo] = a;
    idx[mid] = c;
    idx[hi - 1] = b;
    const pivot = b;
    let store = lo;
    for (let t = lo; t < hi - 1; t++) {
      const id = idx[t]!;
      if (beforeByLogit(L, off, id, pivot)) {
        idx[t] = idx[store]!;
        idx[store++] = id;
      }
    }
    idx[hi - 1] = idx[store]!;
    idx[store] = pivot;
    if (store + 1 === k || store === k) return;
    if (store > k) hi = store;
    else lo = store + 1;
  }
  // Insertion sort the small remainder so its first part is in order.
  for (let t = lo + 1; t < hi; t++) {
    const id = idx[t]!;
    let s = t - 1;
    while (s >= lo && beforeByLogit(L, off, id, idx[s]!)) {
      idx[s + 1] = idx[s]!;
      s--;
    }
    idx[s + 1] = id;
  }
}

/** Whether id a comes before id b in (weight desc, id asc) order. */
function beforeByWeight(w: Float64Array, a: number, b: number): boolean {
  const wa = w[a]!;
  const wb = w[b]!;
  return wa > wb || (wa === wb && a < b);
}

/**
 * Top-p nucleus by mass-weighted quickselect: rearranges idx[0..n) so that the smallest prefix of
 * the (weight desc, id asc) order whose weight reaches `target` is idx[0..m) (unordered); returns
 * m. Equivalent to vLLM's rule (sort, cumulative sum, drop ids whose preceding mass is already
 * >= p) without sorting the vocabulary.
 */
function nucleus(idx: Int32Array, n: number, w: Float64Array, target: number): number {
  let lo = 0;
  let hi = n;
  let need = target;
  while (hi - lo > SMALL_RANGE) {
    const mid = (lo + hi) >> 1;
    let a = idx[lo]!, b = idx[mid]!, c = idx[hi - 1]!;
    if (beforeByWeight(w, b, a)) [a, b] = [b, a];
    if (beforeByWeight(w, c, b)) {
      [b, c] = [c, b];
      if (beforeByWeight(w, b, a)) [a, b] = [b, a];
    }
    idx[lo] = a;
    idx[mid] = c;
    idx[hi - 1] = b;
    const pivot = b;
    let store = lo;
    let massBefore = 0;
    for (let t = lo; t < hi - 1; t++) {
      const id = idx[t]!;
      if (beforeByWeight(w, id, pivot)) {
        massBefore += w[id]!;
        idx[t] = idx[store]!;
        idx[store++] = id;
      }
    }
    idx[hi - 1] = idx[store]!;
    idx[store] = pivot;
    if (massBefore >= need) {
      hi = store; // the nucleus ends before the pivot
    } else if (massBefore + w[pivot]! >= need) {
      return store + 1; // ... exactly at the pivot
    } else {
      need -= massBefore + w[pivot]!;
      lo = store + 1;
    }
  }
  for (let t = lo + 1; t < hi; t++) {
    const id = idx[t]!;
    let s = t - 1;
    while (s >= lo && beforeByWeight(w, id, idx[s]!)) {
      idx[s + 1] = idx[s]!;
      s--;
    }
    idx[s + 1] = id;
  }
  let acc = 0;
  for (let t = lo; t < hi; t++) {
    acc += w[idx[t]!]!;
    if (acc >= need) return t + 1;
  }
  return hi;
}
