/**
 * The machine's limits, measured on the machine the benchmark runs on (never hard-coded): memory
 * read bandwidth with all threads, and peak FLOP/s of float32 FMA and of the BF16 dot product.
 */
import { native } from '../backend/native.js';

export interface MachinePeaks {
  threads: number;
  memory_bandwidth_gbs: number;
  f32_fma_gflops: number;
  bf16_dot_gflops: number;
}

let cached: MachinePeaks | undefined;

export function measureMachinePeaks(): MachinePeaks {
  if (cached && cached.threads === native().getThreads()) return cached;
  const be = native();
  // 512 MiB: far beyond any cache, so this is DRAM bandwidth.
  const bw = be.benchMemoryBandwidth(512 * 1024 * 1024, 5);
  const f = be.benchPeakFlops();
  cached = { threads: be.getThreads(), memory_bandwidth_gbs: bw, f32_fma_gflops: f.f32Gflops, bf16_dot_gflops: f.bf16Gflops };
  return cached;
}
