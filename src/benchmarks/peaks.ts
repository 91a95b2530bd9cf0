/**
 * The machine's limits, measured on the machine the benchmark runs on (never hard-coded): memory
 * read bandwidth with all threads, and peak FLOP/s of float32 FMA and of the BF16 dot product the
 * active kernel family runs (AMX-BF16 tiles on the AmxBf16 family, `vdpbf16ps` or BFDOT otherwise).
 */
import { cpuBackend } from '../backend/native.js';

export interface MachinePeaks {
  threads: number;
  memory_bandwidth_gbs: number;
  f32_fma_gflops: number;
  bf16_dot_gflops: number;
}

/** Peak FLOP/s for one number of independent accumulator chains per thread. */
export interface PeakSweepPoint {
  accumulators: number;
  f32_fma_gflops: number;
  bf16_dot_gflops: number;
}

export function measureMachinePeaks(): MachinePeaks {
  const be = cpuBackend();
  // 512 MiB: far beyond any cache, so this is DRAM bandwidth.
  const bw = be.benchMemoryBandwidth(512 * 1024 * 1024, 5);
  // 16 chains per thread: more than latency x throughput of FMA and vdpbf16ps on current cores
  // (the sweep below shows where each saturates).
  const f = be.benchPeakFlops(16);
  return { threads: be.getThreads(), memory_bandwidth_gbs: bw, f32_fma_gflops: f.f32Gflops, bf16_dot_gflops: f.bf16Gflops };
}

/**
 * The best of several measurements, field by field. The machine is shared: what other tenants
 * take swings from moment to moment (memory bandwidth read 38 to 86 GB/s within minutes), so a
 * benchmark measures before and after its run and reports against the best its machine showed.
 */
export function bestPeaks(...ps: MachinePeaks[]): MachinePeaks {
  return {
    threads: ps[0]!.threads,
    memory_bandwidth_gbs: Math.max(...ps.map((p) => p.memory_bandwidth_gbs)),
    f32_fma_gflops: Math.max(...ps.map((p) => p.f32_fma_gflops)),
    bf16_dot_gflops: Math.max(...ps.map((p) => p.bf16_dot_gflops)),
  };
}

/**
 * Peak FLOP/s against the number of independent chains each thread runs: it rises until the chains
 * cover the instruction's latency, then stays flat at the machine's real peak.
 */
export function measurePeakSweep(counts: readonly number[] = [1, 2, 4, 8, 12, 16, 24]): PeakSweepPoint[] {
  const be = cpuBackend();
  return counts.map((accumulators) => {
    const f = be.benchPeakFlops(accumulators);
    return { accumulators, f32_fma_gflops: f.f32Gflops, bf16_dot_gflops: f.bf16Gflops };
  });
}
