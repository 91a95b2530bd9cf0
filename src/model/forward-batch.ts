/**
 * What one forward pass runs over: the flat varlen batch the ModelRunner builds (all sequences'
 * new tokens in one [T, hidden] matrix) and the paged KV cache the layers read and write.
 */
import type { KvCacheHandle } from '../backend/backend.js';

/** The flat varlen batch of one step (built by the ModelRunner). */
export interface ForwardBatch {
  numTokens: number;
  tokenIds: Int32Array;
  positions: Int32Array;
  numSeqs: number;
  /** [numSeqs + 1] offsets of each sequence's tokens in the batch. */
  queryStartLoc: Int32Array;
  /** [numSeqs] total tokens of each sequence after this step (context + new). */
  seqLens: Int32Array;
  /** Slot mappings and block tables of each KV group (src/kv/kv-layout.ts), in group order. */
  groups: KvGroupBatch[];
  maxBlocksPerSeq: number;
}

/** Where one KV group's layers write and read this step's K/V. */
export interface KvGroupBatch {
  /** Cache slot (block * blockSize + offset) each token's K/V is written to (-1: not written). */
  slotMapping: Int32Array;
  /**
   * [numSeqs * maxBlocksPerSeq] block tables, padded; NO_BLOCK (-1) for blocks a sliding-window
   * group has freed (attention never reads them).
   */
  blockTables: Int32Array;
}

/** One step as the layers see it. */
export interface Step {
  batch: ForwardBatch;
  cache: KvCacheHandle;
  /** Tokens in the batch (= batch.numTokens). */
  T: number;
}
