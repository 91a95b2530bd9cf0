/**
 * KV sizing (worker, at start-up): the context the engine serves and how many KV blocks fit in
 * the memory budget.
 */
import { DType, type ComputeBackend } from '../backend/backend.js';
import { defaultKvCacheBytes, type EngineConfig } from '../config/engine-config.js';
import type { ModelConfig } from '../config/model-config.js';
import { InvalidRequestError, ModelLoadError } from '../errors.js';

export interface KvSizing {
  maxModelLen: number;
  numBlocks: number;
  blockBytes: number;
  dtype: DType;
}

/** The model's context, capped by --max-model-len. */
export function servedModelLen(mc: ModelConfig, cfg: EngineConfig): number {
  let maxModelLen = mc.maxPositionEmbeddings;
  if (cfg.maxModelLen !== null) {
    if (cfg.maxModelLen > maxModelLen) {
      throw new InvalidRequestError(`--max-model-len ${cfg.maxModelLen} exceeds the model's limit of ${maxModelLen} tokens`);
    }
    maxModelLen = cfg.maxModelLen;
  }
  return maxModelLen;
}

/**
 * The KV budget without --kv-cache-memory. On the CPU: {@link defaultKvCacheBytes} (40% of free
 * memory, at most 4 GiB). A GPU reports no memory size and no free memory through WebGPU, only
 * per-buffer limits, so there the budget is that same default capped by what the adapter can bind:
 * the WebGPU backend keeps each slot (layer) of the pool in one buffer, which may not exceed
 * maxStorageBufferBindingSize or maxBufferSize. The host's free memory stays in the cap because
 * CPU adapters (SwiftShader) and unified-memory GPUs (Apple, integrated) allocate from it; on a
 * large discrete GPU, --kv-cache-memory gives the pool more than 4 GiB.
 */
export function defaultKvBudget(be: ComputeBackend, blockBytes: number, slots: number, base = defaultKvCacheBytes()): number {
  const limits = be.describe().limits;
  if (!limits) return base;
  const perBuffer = Math.min(limits['maxStorageBufferBindingSize'] ?? Infinity, limits['maxBufferSize'] ?? Infinity);
  const bindableBlocks = Math.floor(perBuffer / (blockBytes / slots));
  return Math.min(base, bindableBlocks * blockBytes);
}

/** `slots`: layers whose K/V one block holds (the KV layout's group size; all layers without windows). */
export function sizeKvCache(be: ComputeBackend, mc: ModelConfig, cfg: EngineConfig, kvDtype: 'float32' | 'bfloat16', slots: number): KvSizing {
  const maxModelLen = servedModelLen(mc, cfg);
  const dtype = kvDtype === 'bfloat16' ? DType.BF16 : DType.F32;
  const blockBytes = be.kvCacheBlockBytes(slots, cfg.blockSize, mc.numKvHeads, mc.headDim, dtype);
  const budget = cfg.kvCacheMemory ?? defaultKvBudget(be, blockBytes, slots);
  const numBlocks = Math.floor(budget / blockBytes);
  if (numBlocks < 1) {
    throw new ModelLoadError(`KV cache memory ${budget} bytes is smaller than one block (${blockBytes} bytes); raise --kv-cache-memory`);
  }
  return { maxModelLen, numBlocks, blockBytes, dtype };
}
