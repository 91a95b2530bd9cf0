/**
 * EngineConfig: every engine option, its default, its validation and its command-line flag, in one
 * place. Every command that runs the engine (generate, serve, bench) accepts these flags.
 */
import { availableParallelism, freemem } from 'node:os';
import { intFlag, strFlag } from '../cli/args.js';
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
  /** Requests allowed to wait for admission before new ones are refused (server: 503). */
  maxWaitingRequests: number;
}

export const ENGINE_DEFAULTS: EngineConfig = {
  model: 'demo',
  threads: availableParallelism(),
  dtype: 'auto',
  kvCacheDtype: 'auto',
  kvCacheMemory: null,
  blockSize: 16,
  maxNumBatchedTokens: 2048,
  maxNumSeqs: 256,
  maxModelLen: null,
  scheduler: 'continuous',
  enablePrefixCaching: true,
  maxWaitingRequests: 4096,
};

/** Default KV budget when none is given: 40% of free memory, capped at 4 GiB (vLLM's CPU default). */
export function defaultKvCacheBytes(): number {
  return Math.min(Math.floor(freemem() * 0.4), 4 * 1024 ** 3);
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  kib: 1024,
  m: 1e6,
  mb: 1e6,
  mib: 1024 ** 2,
  g: 1e9,
  gb: 1e9,
  gib: 1024 ** 3,
};

/** Parse a byte size such as `4GiB`, `512MiB`, `1e9`. */
export function parseByteSize(text: string, flag = '--kv-cache-memory'): number {
  const m = /^\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new InvalidRequestError(`${flag}: cannot parse size "${text}" (examples: 4GiB, 512MiB, 2e9)`);
  const bytes = Math.floor(Number(m[1]) * unit);
  if (!(bytes > 0)) throw new InvalidRequestError(`${flag} must be > 0, got "${text}"`);
  return bytes;
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

/** Command-line flags of the engine options (shared by generate, serve and bench). */
export const ENGINE_FLAGS_HELP = `Engine options:
  --model M                    demo (default, random weights), a local HF model dir, or org/name
  --threads N                  native compute threads (default: ${ENGINE_DEFAULTS.threads}, all cores)
  --dtype D                    auto | float32 | bfloat16 (default auto)
  --kv-cache-dtype D           auto | float32 | bfloat16 (default auto: follows --dtype)
  --kv-cache-memory SIZE       KV pool size, e.g. 4GiB (default: 40% of free RAM, at most 4GiB)
  --block-size N               tokens per KV block (default ${ENGINE_DEFAULTS.blockSize})
  --max-num-batched-tokens N   token budget per step (default ${ENGINE_DEFAULTS.maxNumBatchedTokens})
  --max-num-seqs N             sequences running at once (default ${ENGINE_DEFAULTS.maxNumSeqs})
  --max-model-len N            context length cap (default: the model's)
  --scheduler S                continuous | static (default continuous)
  --no-prefix-caching          turn automatic prefix caching off
  --max-waiting-requests N     queue bound before new requests are refused (default ${ENGINE_DEFAULTS.maxWaitingRequests})`;

/**
 * Take the engine flags out of an argument map produced by parseArgs (src/cli/args.ts).
 * Unknown flags are left for the command to handle.
 */
export function engineConfigFromFlags(flags: Map<string, string | true>): Partial<EngineConfig> {
  const kvMem = strFlag(flags, 'kv-cache-memory');
  return {
    model: strFlag(flags, 'model'),
    threads: intFlag(flags, 'threads'),
    dtype: strFlag(flags, 'dtype') as ComputeDtype | undefined,
    kvCacheDtype: strFlag(flags, 'kv-cache-dtype') as KvCacheDtype | undefined,
    kvCacheMemory: kvMem === undefined ? undefined : parseByteSize(kvMem),
    blockSize: intFlag(flags, 'block-size'),
    maxNumBatchedTokens: intFlag(flags, 'max-num-batched-tokens'),
    maxNumSeqs: intFlag(flags, 'max-num-seqs'),
    maxModelLen: intFlag(flags, 'max-model-len'),
    scheduler: strFlag(flags, 'scheduler') as SchedulerKind | undefined,
    enablePrefixCaching: flags.has('no-prefix-caching') ? false : undefined,
    maxWaitingRequests: intFlag(flags, 'max-waiting-requests'),
  };
}

/** The engine flags for parseArgs. */
export const ENGINE_FLAGS = {
  values: [
    'model',
    'threads',
    'dtype',
    'kv-cache-dtype',
    'kv-cache-memory',
    'block-size',
    'max-num-batched-tokens',
    'max-num-seqs',
    'max-model-len',
    'scheduler',
    'max-waiting-requests',
  ],
  booleans: ['no-prefix-caching'],
} as const;
