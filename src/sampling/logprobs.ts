/**
 * Logprobs of raw logits: a token's log-probability and rank, the top N, and prompt logprobs.
 *
 * They come from the RAW logits (before any processing, vLLM's default `raw_logprobs`), with
 * log-softmax accumulated in float64; rank = 1 + the number of ids whose raw logit is strictly
 * larger.
 */
import type { ComputeBackend } from '../backend/backend.js';
import { bestFirst, heapTopK, TopK } from './selection.js';

import type { TokenLogprob } from '../engine/protocol.js';

export type { TokenLogprob };

export interface RowLogprobs {
  token: TokenLogprob;
  /** The k most likely tokens, best first; ties share the first tied rank. */
  top: TokenLogprob[];
}

/** Log-softmax stats of one raw row L[off, off + V): the token's logprob/rank and the top k (k <= V). */
export function rowLogprobs(be: ComputeBackend, L: Float32Array, off: number, V: number, tokenId: number, k: number, topK: TopK): RowLogprobs {
  topK.reserve(k);
  const size = k > 0 ? heapTopK(L, off, V, k, topK.ids, topK.vals) : 0;
  const x = L[off + tokenId]!;
  // The two full passes over the vocabulary run natively (vectorised).
  const lse = be.rowLogSumExp(L, off, V);
  const greater = be.rowCountGreater(L, off, V, x);
  const token: TokenLogprob = { tokenId, logprob: x - lse, rank: greater + 1 };

  const { ids, vals } = topK;
  const order = bestFirst(ids, vals, size);
  const top: TokenLogprob[] = [];
  for (let t = 0; t < size; t++) {
    const v = vals[order[t]!]!;
    // Every id with a larger value is earlier in this list, so ties share the first tied rank.
    const rank = t > 0 && v === vals[order[t - 1]!]! ? top[t - 1]!.rank : t + 1;
    top.push({ tokenId: ids[order[t]!]!, logprob: v - lse, rank });
  }
  return { token, top };
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
): RowLogprobs[] {
  if (nextTokenIds.length < numRows) throw new RangeError(`nextTokenIds has ${nextTokenIds.length} ids for ${numRows} rows`);
  if (logits.length < numRows * vocabSize) throw new RangeError(`logits has ${logits.length} values, expected ${numRows} x ${vocabSize}`);
  const kk = Math.max(0, Math.min(k, vocabSize));
  const topK = new TopK();
  const out = new Array<RowLogprobs>(numRows);
  for (let r = 0; r < numRows; r++) out[r] = rowLogprobs(be, logits, r * vocabSize, vocabSize, nextTokenIds[r]!, kk, topK);
  return out;
}
