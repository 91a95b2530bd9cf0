/** The fields every `pagewise bench` JSON result starts with: what ran, where (device, a GPU's adapter), on which commit. */
import type { EngineInfo } from '../engine/protocol.js';
import { gitCommit, machineInfo } from './machine.js';

export function benchHeader(info: EngineInfo): Record<string, unknown> {
  return {
    machine: machineInfo(),
    git_commit: gitCommit(),
    model: info.config.model,
    model_dir: info.modelDir,
    architecture: info.model.architecture,
    dtype: info.precision,
    kv_cache_dtype: info.kvCacheDtype,
    threads: info.threads,
    isa: info.isa,
    device: info.backend.device,
    // A GPU run names its adapter, with its limits and features (the CPU's are in `machine`).
    ...(info.backend.device === 'cpu' ? {} : { adapter: info.backend }),
    block_size: info.blockSize,
    kv_blocks: info.numBlocks,
    max_num_seqs: info.config.maxNumSeqs,
    max_num_batched_tokens: info.config.maxNumBatchedTokens,
    scheduler: info.config.scheduler,
    prefix_caching: info.config.enablePrefixCaching,
  };
}
