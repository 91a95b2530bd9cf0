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
import type { ComputeBackend } from '../backend/backend.js';
import type { TokenLogprob } from '../engine/protocol.js';
import { ranksByLogprob } from '../shared/fan-out.js';
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

// The wire type, defined with the other main-thread/worker messages.
export type { TokenLogprob } from '../engine/protocol.js';

export interface SampleResult {
  tokenId: number;
  /**
   * Raw-logit log-probability of the chosen token. Computed when `params.logprobs` is not null or
   * the request ranks sequences by it (best_of > n, beam search); otherwise NaN, which keeps
   * greedy decoding a single argmax pass.
   */
  logprob: number;
  /** Rank of the chosen token among the raw logits (1 = largest); 0 when `logprob` is NaN. */
  rank: number;
  /** The `params.logprobs` most likely tokens (raw), best first; [] for logprobs 0, null when not requested. */
  topLogprobs: TokenLogprob[] | null;
}

/** Heap top-k below this size; above it a quickselect over all ids is cheaper. */
const HEAP_TOP_K_LIMIT = 1024;
/** Top-p histogram resolution: buckets per nat of log-weight, and how many (128 nats). */
const BUCKETS_PER_NAT = 16;
const NUM_BUCKETS = 2048;
/** Ranges this small are finished by insertion sort in the selections. */
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
function expNeg(x: number): number {
  if (!(x >= -708)) return 0;
  const k = x * EXP_INV_STEP + ROUND_MAGIC - ROUND_MAGIC;
  const ki = k | 0;
  const r = x - k * EXP_STEP_HI - k * EXP_STEP_LO;
  const p = 1 + r * (1 + r * (0.5 + r * (1 / 6 + r * (1 / 24))));
  return p * EXP_FRAC[ki & 31]! * EXP_POW2[(ki >> 5) + EXP_POW2_BIAS]!;
}

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
  /** Top-p scratch: second id list, log-weight bucket per id, mass per bucket. */
  private readonly idx2: Int32Array;
  private readonly bucket: Uint16Array;
  private readonly hist = new Float64Array(NUM_BUCKETS);
  private heapIds = new Int32Array(64);
  private heapVals = new Float64Array(64);

  constructor(
    private readonly be: ComputeBackend,
    vocabSize: number,
  ) {
    if (!Number.isInteger(vocabSize) || vocabSize < 1) throw new RangeError(`vocabSize must be a positive integer, got ${vocabSize}`);
    this.V = vocabSize;
    this.w = new Float64Array(vocabSize);
    this.idx = new Int32Array(vocabSize);
    this.raw = new Float32Array(vocabSize);
    this.counts = new Int32Array(vocabSize);
    this.seen = new Uint8Array(vocabSize);
    this.touched = new Int32Array(vocabSize);
    this.idx2 = new Int32Array(vocabSize);
    this.bucket = new Uint16Array(vocabSize);
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
    const n = rows.length;
    const out: SampleResult[] = new Array(n);
    // Rows whose token is one full-vocabulary pass (greedy argmax, or a softmax draw at a
    // temperature) are drawn together on the thread pool; the rest (top-k / top-p / min-p, or a
    // processed row whose raw logprobs are wanted) one by one. Each row's result is the same
    // either way: the same kernels, and its own random number drawn in the same place.
    const batch = new Int32Array(n);
    const invT = new Float64Array(n);
    const u = new Float64Array(n);
    const wantLogprob = new Uint8Array(n);
    let nb = 0;
    for (let r = 0; r < n; r++) {
      const row = rows[r]!;
      const p = row.params;
      const f = this.flags(row);
      const greedy = p.temperature < SAMPLING_EPS;
      const plain = greedy || ((p.topK <= 0 || p.topK >= V) && p.topP >= 1 && p.minP <= 0);
      if (!plain || (f.wantLogprob && f.processed)) {
        out[r] = this.sampleRow(logits, r * V, row);
        continue;
      }
      if (f.processed) this.processRow(logits, r * V, row);
      batch[nb] = r;
      wantLogprob[nb] = f.wantLogprob ? 1 : 0;
      invT[nb] = greedy ? 0 : 1 / p.temperature;
      u[nb] = greedy ? 0 : row.rng.next();
      nb++;
    }
    if (nb > 0) {
      const ids = new Int32Array(nb);
      this.be.drawRows(logits, V, batch.subarray(0, nb), invT.subarray(0, nb), u.subarray(0, nb), ids);
      for (let i = 0; i < nb; i++) {
        const r = batch[i]!;
        out[r] = this.finish(logits, r * V, rows[r]!, ids[i]!, wantLogprob[i] === 1);
      }
    }
    return out;
  }

  /**
   * Apply only the logits processors (penalties, logit_bias, allowed_token_ids, min_tokens) to
   * each row in place, without sampling: what `sample` feeds to its argmax / temperature stage.
   */
  process(logits: Float32Array, rows: readonly SamplerRow[]): void {
    const V = this.V;
    if (logits.length < rows.length * V) {
      throw new RangeError(`logits has ${logits.length} values, expected ${rows.length} x ${V}`);
    }
    for (let r = 0; r < rows.length; r++) this.processRow(logits, r * V, rows[r]!);
  }

  /** Whether a row's logits get processed before sampling, and whether its logprob is needed. */
  private flags(row: SamplerRow): { processed: boolean; wantLogprob: boolean } {
    const p = row.params;
    const minTokensActive = row.outputTokenIds.length < p.minTokens && (row.eosTokenIds.length > 0 || p.stopTokenIds.length > 0);
    const penalties = p.repetitionPenalty !== 1 || p.frequencyPenalty !== 0 || p.presencePenalty !== 0;
    return {
      processed: penalties || p.logitBias !== null || p.allowedTokenIds !== null || minTokensActive,
      // best_of > n and beam search rank sequences by cumulative logprob, so they need the chosen
      // token's logprob even when the client asked for none.
      wantLogprob: p.logprobs !== null || ranksByLogprob(p),
    };
  }

  private sampleRow(L: Float32Array, off: number, row: SamplerRow): SampleResult {
    const V = this.V;
    const p = row.params;
    const { processed, wantLogprob } = this.flags(row);
    // Logprobs are defined on the raw row; keep a copy before we change it in place.
    let rawArr = L;
    let rawOff = off;
    if (wantLogprob && processed) {
      this.raw.set(L.subarray(off, off + V));
      rawArr = this.raw;
      rawOff = 0;
    }

    if (processed) this.processRow(L, off, row);

    let tokenId: number;
    if (p.temperature < SAMPLING_EPS) {
      tokenId = this.be.rowArgmax(L, off, V);
    } else {
      tokenId = this.sampleRandom(L, off, p, row.rng);
    }
    return this.finish(rawArr, rawOff, row, tokenId, wantLogprob);
  }

  /** The result for a drawn token: a fallback when every id was masked, and raw logprobs. */
  private finish(raw: Float32Array, rawOff: number, row: SamplerRow, drawn: number, wantLogprob: boolean): SampleResult {
    const p = row.params;
    let tokenId = drawn;
    if (tokenId < 0) {
      // Everything was masked (allowed_token_ids ⊆ stop ids while min_tokens is active): choose the
      // least surprising id rather than fail the whole batch.
      tokenId = p.allowedTokenIds?.[0] ?? row.eosTokenIds[0] ?? 0;
    }
    if (!wantLogprob) return { tokenId, logprob: NaN, rank: 0, topLogprobs: null };
    const lp = this.logprobsOf(raw, rawOff, tokenId, p.logprobs ?? 0);
    return { tokenId, logprob: lp.token.logprob, rank: lp.token.rank, topLogprobs: p.logprobs === null ? null : lp.top };
  }

  private processRow(L: Float32Array, off: number, row: SamplerRow): void {
    const V = this.V;
    const p = row.params;
    if (p.repetitionPenalty !== 1 || p.frequencyPenalty !== 0 || p.presencePenalty !== 0) this.applyPenalties(L, off, row);
    if (p.allowedTokenIds !== null) this.applyAllowed(L, off, p.allowedTokenIds);
    if (p.logitBias !== null) {
      for (const [id, b] of p.logitBias) if (id >= 0 && id < V) L[off + id] = L[off + id]! + b;
    }
    if (row.outputTokenIds.length < p.minTokens) {
      for (const id of row.eosTokenIds) if (id >= 0 && id < V) L[off + id] = -Infinity;
      for (const id of p.stopTokenIds) if (id >= 0 && id < V) L[off + id] = -Infinity;
    }
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
      // Plain softmax over the whole vocabulary, drawn in id order: vectorised natively, as it
      // touches every id (exp of 50k-150k logits per token).
      return this.be.rowSoftmaxSample(L, off, V, invT, rng.next());
    }

    let n: number; // the candidates are idx[0..n)
    let minPDone = false;
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
        const e = expNeg((L[off + id]! - max) * invT);
        w[id] = e;
        sum += e;
      }
      // vLLM applies top-p to the top-k distribution: the nucleus of the renormalised top k.
      if (topP < 1) n = nucleus(idx, 0, n, w, topP * sum);
    } else {
      const max = rowMax(L, off, V);
      if (max === -Infinity) return -1;
      if (topP < 1) {
        n = this.nucleusOfRow(L, off, max, invT, topP);
      } else {
        // min-p alone: the weights at or above the bar (the top weight is exactly 1).
        n = 0;
        for (let i = 0; i < V; i++) {
          const e = expNeg((L[off + i]! - max) * invT);
          w[i] = e;
          if (e >= minP && e > 0) idx[n++] = i;
        }
        minPDone = true;
      }
    }

    // min-p last (vLLM v0 order): relative to the top token, whose weight is exactly 1, so it is
    // the same bar before or after renormalisation.
    if (minP > 0 && !minPDone) {
      let m = 0;
      for (let t = 0; t < n; t++) {
        const id = idx[t]!;
        if (w[id]! >= minP) idx[m++] = id;
      }
      n = m;
    }

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
   * Top-p over the whole vocabulary without sorting it. Returns n with the nucleus in idx[0..n).
   *
   * While computing the weights we histogram their mass by log-weight bucket (BUCKETS_PER_NAT per
   * nat below the max). The buckets above the one where the running mass reaches p · sum lie wholly
   * inside the nucleus; only that edge bucket needs an exact (weighted quickselect) cut, and it is
   * small. The weight pass is branch-free on purpose: a data-dependent branch there mispredicts on
   * about half the ids and costs more than histogramming everything.
   */
  private nucleusOfRow(L: Float32Array, off: number, max: number, invT: number, topP: number): number {
    const V = this.V;
    const w = this.w;
    const idx = this.idx;
    const bucket = this.bucket;
    const hist = this.hist;
    hist.fill(0);
    // The pass over the whole vocabulary (exp, bucket, histogram) runs natively.
    const sum = this.be.rowNucleusWeights(L, off, V, max, invT, w, bucket, hist, BUCKETS_PER_NAT);
    const target = topP * sum;
    let cum = 0;
    let edge = 0;
    for (; edge < NUM_BUCKETS - 1; edge++) {
      if (cum + hist[edge]! >= target) break;
      cum += hist[edge]!;
    }
    let nIn = 0;
    let nEdge = 0;
    const edgeIds = this.idx2;
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
    return rowLogprobs(this.be, arr, off, this.V, tokenId, kk, this.heapIds, this.heapVals);
  }
}

/**
 * Prompt logprobs: row i of `logits` predicts prompt token i + 1, so `nextTokenIds[i]` is scored
 * against row i. Returns the token's raw logprob and rank, and the k most likely tokens (best first).
 */
export function promptLogprobs(
  be: ComputeBackend,
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
  for (let r = 0; r < numRows; r++) out[r] = rowLogprobs(be, logits, r * vocabSize, vocabSize, nextTokenIds[r]!, kk, heapIds, heapVals);
  return out;
}

/** Log-softmax stats of one raw row: the token's logprob/rank and the top k, float64 accumulation. */
function rowLogprobs(
  be: ComputeBackend,
  arr: Float32Array,
  off: number,
  V: number,
  tokenId: number,
  k: number,
  heapIds: Int32Array,
  heapVals: Float64Array,
): { token: TokenLogprob; top: TokenLogprob[] } {
  const size = k > 0 ? heapTopK(arr, off, V, k, heapIds, heapVals) : 0;
  const x = arr[off + tokenId]!;
  // The two full passes over the vocabulary run natively (vectorised).
  const lse = be.rowLogSumExp(arr, off, V);
  const greater = be.rowCountGreater(arr, off, V, x);
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

// The scans below keep four independent lanes: V8 does not vectorise, but independent
// comparisons pipeline about 1.5x better than one dependent chain.

function rowMax(L: Float32Array, off: number, V: number): number {
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
 * Top-p nucleus by mass-weighted quickselect: rearranges idx[start..end) so that the smallest
 * prefix of the (weight desc, id asc) order whose weight reaches `target` is idx[start..m)
 * (unordered); returns m. Equivalent to vLLM's rule (sort, cumulative sum, drop ids whose preceding mass is already
 * >= p) without sorting the vocabulary.
 */
function nucleus(idx: Int32Array, start: number, end: number, w: Float64Array, target: number): number {
  let lo = start;
  let hi = end;
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
