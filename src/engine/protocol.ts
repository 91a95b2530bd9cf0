/**
 * What the main thread and the engine worker say to each other, and the wire types both use.
 * Both sides import this module, so it imports types only, and nothing of the worker's side
 * (test/thread-boundary.test.ts checks). Everything here is structured-clone friendly (plain
 * objects, arrays, Maps).
 */
import type { EngineConfig } from '../config/engine-config.js';
import type { GenerationConfig, ModelConfig } from '../config/model-config.js';
import type { SerializedError } from '../errors.js';
import type { SamplingParams } from '../sampling/params.js';
import type { PackedTokenizerFiles } from '../tokenizer/tokenizer.js';

/** Why a sequence ended. */
export type FinishReason = 'stop' | 'length' | 'abort' | 'error';

/** A token's logprob in the raw distribution and its rank there (1 = most likely). */
export interface TokenLogprob {
  tokenId: number;
  logprob: number;
  rank: number;
}

/** A request as the engine core sees it: token ids and validated sampling parameters. */
export interface EngineRequest {
  requestId: string;
  promptTokenIds: number[];
  params: SamplingParams;
  /** Epoch milliseconds when the request arrived (for queue-time metrics). */
  arrivalTime: number;
}

/** Per generated token: its logprob in the raw distribution, its rank, and the top alternatives. */
export interface TokenLogprobs {
  token: TokenLogprob;
  top: TokenLogprob[] | null;
}

/** New work of one sequence of a request in one step. */
export interface SeqDelta {
  index: number;
  newTokenIds: number[];
  /** Present when the request asked for logprobs. */
  newLogprobs: TokenLogprobs[] | null;
  cumulativeLogprob: number;
  finishReason: FinishReason | null;
  /** Stop token id that finished the sequence, if any. */
  stopReason: number | null;
}

/** One request's news from one step. */
export interface RequestDelta {
  requestId: string;
  seqs: SeqDelta[];
  /** Prompt logprobs (first entry null: the first prompt token has none), sent once, when complete. */
  promptLogprobs: Array<TokenLogprobs | null> | null;
  /** Epoch ms when the request was first scheduled (sent once). */
  firstScheduledTime: number | null;
  finished: boolean;
  error: SerializedError | null;
}

/** Counters and gauges after a step (for logs, benchmarks and /metrics). */
export interface EngineStats {
  running: number;
  waiting: number;
  /** Preemptions in this step and since start. */
  preemptedThisStep: number;
  numPreemptionsTotal: number;
  scheduledTokens: number;
  /** Cumulative prompt tokens computed (prefill, incl. recomputation) and tokens generated. */
  promptTokensTotal: number;
  generationTokensTotal: number;
  blocksTotal: number;
  blocksUsed: number;
  blocksFree: number;
  /** Fraction of the pool in use, 0..1. */
  kvUsage: number;
  /** (allocated token slots − stored tokens) / allocated slots over used blocks. */
  kvWaste: number;
  /** Waste a contiguous reservation of (prompt + max_tokens) per running request would have. */
  kvWasteContiguous: number;
  prefixCacheQueries: number;
  prefixCacheHits: number;
  stepMs: number;
}

/** Facts about the loaded engine, sent once when the worker is ready. */
export interface EngineInfo {
  modelDir: string;
  model: ModelConfig;
  config: EngineConfig;
  precision: 'float32' | 'bfloat16';
  kvCacheDtype: 'float32' | 'bfloat16';
  numBlocks: number;
  blockSize: number;
  kvCacheBytes: number;
  /** Most tokens one sequence can hold in the whole pool (sliding-window groups hold only their windows). */
  kvSequenceTokens: number;
  maxModelLen: number;
  eosTokenIds: number[];
  threads: number;
  isa: string;
  /**
   * What the backend runs on, for reports: its BackendDescription (src/backend/backend.ts; the
   * main thread may not import the worker's modules, so the wire shape is spelled here).
   */
  backend: { device: string; threads: number; kernels: string; limits?: Record<string, number>; features?: string[] };
  /** The model's generation config (sampling defaults, stop ids), whatever format it came in. */
  generationConfig: GenerationConfig;
}

export type ToWorker =
  | { type: 'add'; request: EngineRequest }
  | { type: 'abort'; requestIds: string[] }
  | { type: 'stopSeq'; requestId: string; index: number }
  /** Ask for the KV pool's state map (answered between steps by a 'blockMap' message). */
  | { type: 'blockMap' }
  /** A worker thread of the main side has exited, or the server has gone quiet: return freed memory. */
  | { type: 'releaseFreeMemory' }
  | { type: 'shutdown' };

export type FromWorker =
  /** Model loading: tensors read so far, of the checkpoint's total. */
  | { type: 'loading'; read: number; total: number }
  /**
   * The model is loaded. `tokenizer`: the model's tokenizer files, read by the worker from whatever
   * format the model is in, packed in shared memory (the worker's grammars keep the same bytes).
   */
  | { type: 'ready'; info: EngineInfo; tokenizer: PackedTokenizerFiles }
  | { type: 'outputs'; deltas: RequestDelta[]; stats: EngineStats | null }
  | { type: 'rejected'; requestId: string; error: SerializedError }
  /** One BlockState code (src/shared/block-map.ts) per KV block, in block id order. */
  | { type: 'blockMap'; states: Uint8Array }
  /** Idle after steps, the worker handed back their working memory (bytes of step buffers and scratch). */
  | { type: 'released'; bytes: number }
  | { type: 'fatal'; error: SerializedError; stack: string | null };
