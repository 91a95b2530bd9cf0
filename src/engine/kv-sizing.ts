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

/** `slots`: layers whose K/V one block holds (the KV layout's group size; all layers without windows). */
export function sizeKvCache(be: ComputeBackend, mc: ModelConfig, cfg: EngineConfig, kvDtype: 'float32' | 'bfloat16', slots: number): KvSizing {
  const maxModelLen = servedModelLen(mc, cfg);
  const dtype = kvDtype === 'bfloat16' ? DType.BF16 : DType.F32;
  const blockBytes = be.kvCacheBlockBytes(slots, cfg.blockSize, mc.numKvHeads, mc.headDim, dtype);
  const budget = cfg.kvCacheMemory ?? defaultKvCacheBytes();
  const numBlocks = Math.floor(budget / blockBytes);
  if (numBlocks < 1) {
    throw new ModelLoadError(`KV cache memory ${budget} bytes is smaller than one block (${blockBytes} bytes); raise --kv-cache-memory`);
  }
  return { maxModelLen, numBlocks, blockBytes, dtype };
}
