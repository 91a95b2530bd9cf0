/**
 * The CPU backend: C++17 kernels in a node-addon-api addon (native/, built by node-gyp into
 * build/Release/pagewise.node), with run-time ISA dispatch (x86-64: AMX-BF16 / AVX-512 BF16 / AVX-512 /
 * AVX2 / scalar; AArch64: NEON with BFDOT / NEON / scalar; PAGEWISE_ISA=<name> picks the family a
 * process starts with, see native/common.h)
 * and its own thread pool. Besides the compute contract (`backend.ts`) the addon exposes test hooks
 * (kernel family, thread count, a plain unpacked linear, KV slot read-back), machine
 * microbenchmarks, and host services (file mapping, aligned memory).
 *
 * The addon is loaded once per thread. Only modules under src/backend/ load it: the engine and
 * everything else receive a {@link ComputeBackend} (see `createBackend` in `index.ts`).
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SUPPORTED_QUANT_TYPES, type GgmlType } from './quant.js';
import type { ComputeBackend, DType, KvCacheHandle, MatmulPrecision, WeightArray } from './backend.js';

/**
 * Kernel families; values match native/common.h. Each architecture has its own chain, best last:
 * x86-64 Scalar < Avx2 < Avx512 < Avx512Bf16, AArch64 Scalar < Neon < NeonBf16.
 */
export enum Isa {
  Scalar = 0,
  Avx2 = 1,
  Avx512 = 2,
  Avx512Bf16 = 3,
  Neon = 4,
  NeonBf16 = 5,
  /** Avx512Bf16 with BF16-precision linear ops on AMX tiles (needs AMX-BF16 and the OS granting the tile state). */
  AmxBf16 = 6,
}

export interface CpuInfo {
  avx2: boolean;
  fma: boolean;
  f16c: boolean;
  avx512f: boolean;
  avx512bw: boolean;
  avx512bf16: boolean;
  /** AArch64: Advanced SIMD, FEAT_BF16 (BFDOT) and FEAT_DotProd (SDOT, the quantized kernels). */
  neon: boolean;
  bf16: boolean;
  dotprod: boolean;
  /** AMX-TILE and AMX-BF16, with the tile state granted to this process. */
  amxBf16: boolean;
  /** Best kernel family this CPU supports. */
  detectedIsa: Isa;
  /** Kernel family in use now. */
  activeIsa: Isa;
}

/** Hooks tests and benchmarks use to reach inside the CPU backend; the engine never calls them. */
export interface CpuTestHooks {
  cpuInfo(): CpuInfo;
  /** Select the kernel family (tests use this to run every path); throws if the CPU lacks it. */
  setIsa(isa: Isa): void;
  /** Resize the persistent thread pool (n >= 1, counting the calling thread). */
  setThreads(n: number): void;
  getThreads(): number;
  /**
   * out[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]).  x: [M, K] float32, w: [N, K] (Hugging Face
   * layout), out: [M, N]. `precision` BF16 requires wDtype BF16.
   */
  linear(
    out: Float32Array,
    x: Float32Array,
    w: WeightArray,
    wDtype: DType,
    bias: Float32Array | null,
    M: number,
    N: number,
    K: number,
    precision: MatmulPrecision,
  ): void;

  /**
   * rows x k values of a quantized GGML type (k a multiple of its block size) dequantized to
   * float32, bit for bit ggml's own dequantization (what packLinearQuant's weights mean).
   */
  dequantizeRows(type: GgmlType, src: Uint8Array, rows: number, k: number): Float32Array;

  /**
   * The AMX-INT8 path of the quantized linear op's blocked kernel (many activation rows): `on`
   * switches it (default: on unless PAGEWISE_QUANT_AMX=0), no argument only asks. Returns whether
   * it runs now (only where the CPU has AMX and the OS grants it). Every path gives the same bits.
   */
  quantAmx(on?: boolean): boolean;

  /** Read back [kvHeads*headDim] K or V values of one slot as float32 (tests, debugging). */
  kvCacheReadSlot(cache: KvCacheHandle, layer: number, which: 'k' | 'v', slot: number): Float32Array;
}

/** Machine-limit microbenchmarks (native/microbench.cc): what performance numbers are reported against. */
export interface MachineBenchmarks {
  /**
   * Memory read bandwidth in GB/s: all pool threads stream a `bytes`-sized buffer, best of `iters`
   * passes (the machine-limit microbenchmark the performance numbers are reported against).
   */
  benchMemoryBandwidth(bytes: number, iters: number): number;
  /**
   * Peak arithmetic throughput with all pool threads, in GFLOP/s: float32 FMA (2 flops per lane) and
   * the BF16 dot product the active family uses, 2 flops per BF16 pair: AMX-BF16 tiles on the
   * AmxBf16 family (TDPBF16PS into four tiles, whatever `accumulators`), else `vdpbf16ps` (BFDOT
   * on AArch64); 0 where the CPU has neither. Each thread runs `accumulators` independent
   * dependency chains (1, 2, 4, 8, 12, 16 or 24; default 16): fewer than latency x issue width
   * measure the latency, not the peak.
   */
  benchPeakFlops(accumulators?: number): { f32Gflops: number; bf16Gflops: number };
}

/** Host services of the addon, used by the weight loaders. */
export interface NativeHost {
  /**
   * Map a file read-only into memory; the mapping lives as long as the returned buffer. The
   * mapping is private: the file is never written (a stray write from JS lands in a private
   * copy-on-write page instead of crashing). An empty file gives an empty ArrayBuffer; a file
   * that cannot be opened throws an Error naming the path.
   */
  mmapFile(path: string): ArrayBuffer;
  /**
   * Drop the resident pages of every live mmapFile mapping (they stay in the OS page cache; a
   * later read faults them back in). Returns the bytes of mappings advised.
   */
  releaseMappedPages(): number;
  /**
   * Give the C allocator's free pages back to the OS, in every thread's arena (glibc keeps an
   * exited thread's arena with its freed memory resident). False where the C library cannot.
   */
  releaseFreeMemory(): boolean;
  /** Zeroed, 64-byte-aligned native memory exposed without a copy. */
  allocAligned(bytes: number): ArrayBuffer;
  /**
   * Quantize `rows` rows of `k` floats (k a multiple of the type's block size) to a GGML type
   * (F32, F16, BF16, Q4_0, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K): the bytes llama.cpp's reference
   * quantizers give (native/quant/quantize.cc).
   */
  quantizeRows(type: number, src: Float32Array, rows: number, k: number): Uint8Array;
}

/** Everything the addon exports. */
type Addon = Omit<ComputeBackend, 'describe' | 'gatherRows' | 'toHost'> & CpuTestHooks & MachineBenchmarks & NativeHost;

function findAddon(): string {
  // Works from src/backend (tsx) and dist/backend (compiled): walk up to the package root.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    const candidate = join(dir, 'build', 'Release', 'pagewise.node');
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error(
    'Pagewise native addon not found (build/Release/pagewise.node). Run `npm install` (or `npm rebuild`) in the package directory to build it.',
  );
}

let cached: Addon | undefined;

/** The loaded addon (once per thread). */
function addon(): Addon {
  if (!cached) cached = createRequire(import.meta.url)(findAddon()) as Addon;
  return cached;
}

const isaNames: Record<number, string> = {
  [Isa.Scalar]: 'scalar',
  [Isa.Avx2]: 'avx2',
  [Isa.Avx512]: 'avx512',
  [Isa.Avx512Bf16]: 'avx512bf16',
  [Isa.Neon]: 'neon',
  [Isa.NeonBf16]: 'neonbf16',
  [Isa.AmxBf16]: 'amxbf16',
};

/**
 * The CPU compute backend with its thread pool resized to `threads`. The pool and the kernel
 * family are per process thread (the addon's state), so two backends in one thread share them.
 */
export function createCpuBackend(threads: number): ComputeBackend {
  const a = addon();
  a.setThreads(threads);
  return Object.assign(Object.create(a) as Addon, {
    describe: () => ({ device: 'cpu', threads: a.getThreads(), kernels: isaNames[a.cpuInfo().activeIsa] ?? 'unknown' }),
    quantTypes: SUPPORTED_QUANT_TYPES,
    gatherRows,
    // Host memory is where the CPU backend computes: always current.
    toHost: (_a: Float32Array): void => {},
  });
}

/** ComputeBackend.gatherRows on the host (a copy per row; not worth a native call). */
function gatherRows(out: Float32Array, x: Float32Array, rows: Int32Array, R: number, H: number): void {
  if (!(out instanceof Float32Array) || !(x instanceof Float32Array) || !(rows instanceof Int32Array)) throw new TypeError('gatherRows: out and x must be Float32Arrays, rows an Int32Array');
  if (!Number.isInteger(R) || !Number.isInteger(H) || R < 0 || H < 1 || rows.length < R || out.length < R * H) throw new RangeError('gatherRows: bad R, H or array sizes');
  const xRows = Math.floor(x.length / H);
  for (let r = 0; r < R; r++) {
    const i = rows[r]!;
    if (!(i >= 0 && i < xRows)) throw new RangeError(`gatherRows: rows[${r}] = ${i} is outside [0, ${xRows})`);
    out.set(x.subarray(i * H, i * H + H), r * H);
  }
}

/** The CPU backend with its test hooks and microbenchmarks (tests and `pagewise bench kernels`). */
export type CpuBackend = ComputeBackend & CpuTestHooks & MachineBenchmarks & NativeHost;

/** The CPU backend as {@link CpuBackend}, thread pool as it is. */
export function cpuBackend(): CpuBackend {
  return createCpuBackend(addon().getThreads()) as CpuBackend;
}

/** The CPU backend's test hooks. */
export function cpuTestHooks(): CpuTestHooks {
  return addon();
}

/** The machine microbenchmarks. */
export function machineBenchmarks(): MachineBenchmarks {
  return addon();
}

/** File mapping and aligned memory. */
export function nativeHost(): NativeHost {
  return addon();
}

