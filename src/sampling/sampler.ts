/**
 * The sampler: one token per row of logits.
 *
 *   logits processors (logits-processors.ts: grammar → penalties → allowed_token_ids → logit_bias → min_tokens)
 *   → greedy: argmax (ties → lowest id), no random draw
 *   → otherwise a random draw (random-draw.ts: temperature → top-k → top-p → min-p → inverse CDF)
 *
 * plus the chosen token's raw logprob, rank and top-N when wanted (logprobs.ts).
 *
 * Each row is processed on its own, in an order fixed by that row's data only, so a row's result
 * does not depend on the other rows of the batch. Scratch buffers are allocated once per Sampler.
 */
import type { ComputeBackend } from '../backend/backend.js';
import { anyApplies, applyProcessors, logitsProcessors, type LogitsProcessor } from './logits-processors.js';
import { rowLogprobs } from './logprobs.js';
import type { TokenLogprob } from '../engine/protocol.js';
import { ranksByLogprob } from '../shared/fan-out.js';
import type { SamplingParams } from './params.js';
import { SAMPLING_EPS } from './params.js';
import { Candidates, narrows } from './random-draw.js';
import type { Rng } from './rng.js';
import { TopK } from './selection.js';

export interface SamplerRow {
  params: SamplingParams;
  /** The sequence's own stream; advanced once per non-greedy sample. */
  rng: Rng;
  promptTokenIds: readonly number[];
  /** Generated so far (penalties, min_tokens). */
  outputTokenIds: readonly number[];
  /** Suppressed (with params.stopTokenIds) while outputTokenIds.length < params.minTokens. */
  eosTokenIds: readonly number[];
  /**
   * Structured outputs: this step's allowed-token bitmask (ceil(V / 32) words, xgrammar's layout),
   * or null for an unconstrained row, which the grammar stage then skips.
   */
  grammarMask: Uint32Array | null;
}

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

export class Sampler {
  private readonly V: number;
  private readonly processors: readonly LogitsProcessor[];
  private readonly candidates: Candidates;
  /** Copy of a raw row, kept when processing changes the row and logprobs are wanted. */
  private readonly raw: Float32Array;
  private readonly topK = new TopK();

  constructor(
    private readonly be: ComputeBackend,
    vocabSize: number,
  ) {
    if (!Number.isInteger(vocabSize) || vocabSize < 1) throw new RangeError(`vocabSize must be a positive integer, got ${vocabSize}`);
    this.V = vocabSize;
    this.processors = logitsProcessors(vocabSize);
    this.candidates = new Candidates(be, vocabSize);
    this.raw = new Float32Array(vocabSize);
  }

  get vocabSize(): number {
    return this.V;
  }

  /** logits: [rows.length, vocabSize] float32, row-major; rows are modified in place. */
  sample(logits: Float32Array, rows: readonly SamplerRow[]): SampleResult[] {
    const V = this.V;
    this.checkShape(logits, rows.length);
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
      const plain = greedy || !narrows(p, V);
      if (!plain || (f.wantLogprob && f.processed)) {
        out[r] = this.sampleRow(logits, r * V, row);
        continue;
      }
      if (f.processed) applyProcessors(this.processors, logits, r * V, row);
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
   * Whether the row's token is one pass over its raw logits (greedy argmax, or a softmax draw at a
   * temperature) with no stage changing them. For such a row a grammar's mask can be tried after
   * the draw instead of before: an allowed token is what the masked greedy pass picks, and drawing
   * unmasked, then again with the mask when the token is refused, gives exactly the masked
   * distribution (see EngineCore.sample).
   */
  drawsFromRawRow(row: SamplerRow): boolean {
    const p = row.params;
    return !anyApplies(this.processors, row) && (p.temperature < SAMPLING_EPS || !narrows(p, this.V));
  }

  /**
   * Apply only the logits processors to each row in place, without sampling: what `sample` feeds
   * to its argmax / random draw (beam search proposes tokens from these rows).
   */
  process(logits: Float32Array, rows: readonly SamplerRow[]): void {
    this.checkShape(logits, rows.length);
    for (let r = 0; r < rows.length; r++) applyProcessors(this.processors, logits, r * this.V, rows[r]!);
  }

  private checkShape(logits: Float32Array, numRows: number): void {
    if (logits.length < numRows * this.V) {
      throw new RangeError(`logits has ${logits.length} values, expected ${numRows} x ${this.V}`);
    }
  }

  /** Whether a row's logits get processed before sampling, and whether its logprob is needed. */
  private flags(row: SamplerRow): { processed: boolean; wantLogprob: boolean } {
    const p = row.params;
    return {
      processed: anyApplies(this.processors, row),
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

    if (processed) applyProcessors(this.processors, L, off, row);

    let tokenId: number;
    if (p.temperature < SAMPLING_EPS) {
      tokenId = this.be.rowArgmax(L, off, V);
    } else {
      tokenId = this.candidates.draw(L, off, p, row.rng);
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
    const lp = rowLogprobs(this.be, raw, rawOff, this.V, tokenId, Math.min(p.logprobs ?? 0, this.V), this.topK);
    return { tokenId, logprob: lp.token.logprob, rank: lp.token.rank, topLogprobs: p.logprobs === null ? null : lp.top };
  }
}
