/**
 * The engine's command-line flags (shared by generate, serve and bench): their help text and how
 * they map onto EngineConfig (src/config/engine-config.ts), which validates the values.
 */
import {
  ENGINE_DEFAULTS,
  type ComputeDtype,
  type EngineConfig,
  type KvCacheDtype,
  type SchedulerKind,
} from '../config/engine-config.js';
import { intFlag, strFlag, UsageError } from './args.js';

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
  if (!m || unit === undefined) throw new UsageError(`${flag}: cannot parse size "${text}" (examples: 4GiB, 512MiB, 2e9)`);
  const bytes = Math.floor(Number(m[1]) * unit);
  if (!(bytes > 0)) throw new UsageError(`${flag} must be > 0, got "${text}"`);
  return bytes;
}

/** Command-line flags of the engine options (shared by generate, serve and bench). */
export const ENGINE_FLAGS_HELP = `Engine options:
  --model M                    demo (default, random weights), a local HF model dir, or org/name
  --threads N                  native compute threads (default: ${ENGINE_DEFAULTS.threads}, all cores)
  --dtype D                    auto | float32 | bfloat16 (default auto)
  --kv-cache-dtype D           auto | float32 | bfloat16 (default auto: follows --dtype)
  --gguf-file NAME             a GGUF file inside the --model directory or hub repository
  --revision R                 hub branch, tag or commit of an org/name model (default main)
  --quantization Q             q8_0 | q4_0: quantize a float checkpoint's weight matrices at load
  --kv-cache-memory SIZE       KV pool size, e.g. 4GiB (default: 40% of free RAM, at most 4GiB)
  --block-size N               tokens per KV block (default ${ENGINE_DEFAULTS.blockSize})
  --max-num-batched-tokens N   token budget per step (default ${ENGINE_DEFAULTS.maxNumBatchedTokens})
  --max-num-seqs N             sequences running at once (default ${ENGINE_DEFAULTS.maxNumSeqs})
  --max-model-len N            context length cap (default: the model's)
  --scheduler S                continuous | static (default continuous)
  --no-prefix-caching          turn automatic prefix caching off
  --no-sliding-window-kv       keep every layer's whole context in the KV cache (sliding-window layers too)
  --max-waiting-requests N     queue bound before new requests are refused (default ${ENGINE_DEFAULTS.maxWaitingRequests})`;

/**
 * Take the engine flags out of an argument map produced by parseArgs (args.ts).
 * Unknown flags are left for the command to handle.
 */
export function engineConfigFromFlags(flags: Map<string, string | true>): Partial<EngineConfig> {
  const kvMem = strFlag(flags, 'kv-cache-memory');
  return {
    model: strFlag(flags, 'model'),
    threads: intFlag(flags, 'threads'),
    dtype: strFlag(flags, 'dtype') as ComputeDtype | undefined,
    kvCacheDtype: strFlag(flags, 'kv-cache-dtype') as KvCacheDtype | undefined,
    ggufFile: strFlag(flags, 'gguf-file'),
    revision: strFlag(flags, 'revision'),
    quantization: strFlag(flags, 'quantization') as EngineConfig['quantization'] | undefined,
    kvCacheMemory: kvMem === undefined ? undefined : parseByteSize(kvMem),
    blockSize: intFlag(flags, 'block-size'),
    maxNumBatchedTokens: intFlag(flags, 'max-num-batched-tokens'),
    maxNumSeqs: intFlag(flags, 'max-num-seqs'),
    maxModelLen: intFlag(flags, 'max-model-len'),
    scheduler: strFlag(flags, 'scheduler') as SchedulerKind | undefined,
    enablePrefixCaching: flags.has('no-prefix-caching') ? false : undefined,
    slidingWindowKv: flags.has('no-sliding-window-kv') ? false : undefined,
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
    'quantization',
    'gguf-file',
    'revision',
    'kv-cache-memory',
    'block-size',
    'max-num-batched-tokens',
    'max-num-seqs',
    'max-model-len',
    'scheduler',
    'max-waiting-requests',
  ],
  booleans: ['no-prefix-caching', 'no-sliding-window-kv'],
} as const;
