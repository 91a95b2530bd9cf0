/**
 * EngineConfig: every engine option, its default and its validation, in one place. The command
 * line maps its flags onto it (src/cli/engine-flags.ts); this module knows nothing of argv.
 */
import { availableParallelism, freemem } from 'node:os';
import { InvalidRequestError } from '../errors.js';

export type ComputeDtype = 'auto' | 'float32' | 'bfloat16';
export type KvCacheDtype = 'auto' | 'float32' | 'bfloat16';
export type SchedulerKind = 'continuous' | 'static';

export interface EngineConfig {
  /** Model: 'demo', a local directory, or a Hugging Face id `org/name`. */
  model: string;
  /** Threads of the native pool (default: all cores). */
  threads: number;
  /**
   * Compute precision. `float32`: weights widened exactly, float32 activations. `bfloat16`:
   * BF16 weights and BF16-rounded matmul inputs with float32 accumulation. `auto`: bfloat16 for
   * BF16 checkpoints, float32 otherwise (exact for F32/F16 weights).
   */
  dtype: ComputeDtype;
  /** KV cache element type; `auto` follows the compute dtype. */
  kvCacheDtype: KvCacheDtype;
  /** A GGUF file inside the model directory or repository (`--gguf-file`); null: the model path is the model. */
  ggufFile: string | null;
  /** Hub branch, tag or commit of an `org/name` model (`--revision`); null: main. */
  revision: string | null;
  /** Quantize a float checkpoint's weight matrices at load (`q8_0`, `q4_0`); null keeps them as stored. */
  quantization: 'q8_0' | 'q4_0' | null;
  /** Bytes of the KV pool; null = a share of free memory (see kvCacheBytes()). */
  kvCacheMemory: number | null;
  /** Tokens per KV block. */
  blockSize: number;
  /** Token budget of one engine step (prefill chunks + decodes). */
  maxNumBatchedTokens: number;
  /** Sequences running at once. */
  maxNumSeqs: number;
  /** Context length cap; null = the model's max_position_embeddings. */
  maxModelLen: number | null;
  scheduler: SchedulerKind;
  enablePrefixCaching: boolean;
  /**
   * Sliding-window layers keep only their window in the KV cache (their own KV groups free the
   * blocks that fall out of it; src/kv/kv-layout.ts). false: one group of every layer, each
   * sequence holding its whole context in every layer (`--no-sliding-window-kv`, for comparison).
   */
  slidingWindowKv: boolean;
  /** Requests allowed to wait for admission before new ones are refused (server: 503). */
  maxWaitingRequests: number;
}

export const ENGINE_DEFAULTS: EngineConfig = {
  model: 'demo',
  threads: availableParallelism(),
  dtype: 'auto',
  kvCacheDtype: 'auto',
  quantization: null,
  ggufFile: null,
  revision: null,
  kvCacheMemory: null,
  blockSize: 16,
  maxNumBatchedTokens: 2048,
  maxNumSeqs: 256,
  maxModelLen: null,
  scheduler: 'continuous',
  enablePrefixCaching: true,
  slidingWindowKv: true,
  maxWaitingRequests: 4096,
};

/** Default KV budget when none is given: 40% of free memory, capped at 4 GiB (vLLM's CPU default). */
export function defaultKvCacheBytes(): number {
  return Math.min(Math.floor(freemem() * 0.4), 4 * 1024 ** 3);
}

function checkInt(name: string, v: number, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new InvalidRequestError(`${name} must be an integer in [${min}, ${max}], got ${v}`, { param: name });
  }
}

/** Fill defaults and validate; throws InvalidRequestError naming the option. */
export function makeEngineConfig(input: Partial<EngineConfig> = {}): EngineConfig {
  const defined = Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined)) as Partial<EngineConfig>;
  const c: EngineConfig = { ...ENGINE_DEFAULTS, ...defined };
  if (typeof c.model !== 'string' || c.model.length === 0) throw new InvalidRequestError('model must be a non-empty string', { param: 'model' });
  checkInt('threads', c.threads, 1, 1024);
  if (!['auto', 'float32', 'bfloat16'].includes(c.dtype)) throw new InvalidRequestError(`dtype must be auto, float32 or bfloat16, got ${c.dtype}`, { param: 'dtype' });
  if (c.quantization !== null && c.quantization !== 'q8_0' && c.quantization !== 'q4_0') {
    throw new InvalidRequestError(`quantization must be q8_0 or q4_0, got ${String(c.quantization)}`, { param: 'quantization' });
  }
  if (!['auto', 'float32', 'bfloat16'].includes(c.kvCacheDtype)) {
    throw new InvalidRequestError(`kv-cache-dtype must be auto, float32 or bfloat16, got ${c.kvCacheDtype}`, { param: 'kvCacheDtype' });
  }
  if (c.kvCacheMemory !== null && !(Number.isFinite(c.kvCacheMemory) && c.kvCacheMemory > 0)) {
    throw new InvalidRequestError(`kv-cache-memory must be a positive number of bytes, got ${c.kvCacheMemory}`, { param: 'kvCacheMemory' });
  }
  checkInt('block-size', c.blockSize, 1, 1024);
  checkInt('max-num-batched-tokens', c.maxNumBatchedTokens, 1, 1 << 20);
  checkInt('max-num-seqs', c.maxNumSeqs, 1, 1 << 16);
  if (c.maxModelLen !== null) checkInt('max-model-len', c.maxModelLen, 1);
  if (c.scheduler !== 'continuous' && c.scheduler !== 'static') {
    throw new InvalidRequestError(`scheduler must be continuous or static, got ${c.scheduler}`, { param: 'scheduler' });
  }
  checkInt('max-waiting-requests', c.maxWaitingRequests, 1);
  return c;
}
