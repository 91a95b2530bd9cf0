/**
 * `pagewise bench kernels`: the linear op the models run (weights pre-packed, BF16, `vdpbf16ps`
 * where the CPU has it) at M = 1, 16, 64, 256, 1024 activation rows for the per-layer shapes of
 * smollm-135m and llama-1b, in GFLOP/s and weight GB/s, next to the limits this same program
 * measures on this machine: memory read bandwidth, float32 FMA and BF16 dot-product peaks, and the
 * peaks against the number of independent accumulator chains per thread.
 *
 * Each measurement rotates through enough copies of the packed weights (>= 512 MiB in all) that a
 * call's weights come from memory, not from a cache the previous call warmed, which is what a
 * decode step sees.
 *
 * With --compare-unpacked each shape is also timed through `linear()` on the Hugging Face layout
 * (q, k, v as three calls; gate and up as two plus `siluMul`): what the model ran before packing,
 * measured in the same run (`unpacked_us_per_call`, `speedup`).
 *
 * With --weights TYPE (a GGML quantized type: Q4_K, Q6_K, Q8_0, ...) the packs hold quantized weights
 * (packLinearQuant / packGateUpQuant) instead of BF16; weight_gbs then counts the quantized bytes.
 *
 * Flags: [--models smollm-135m,llama-1b] [--m 1,16,64,256,1024] [--threads N] [--min-ms 300]
 * [--compare-unpacked] [--weights bf16|TYPE] [--json]
 */
import { DType, MatmulPrecision, type PackedLinearHandle } from '../backend/backend.js';
import { Isa, cpuBackend } from '../backend/native.js';
import { GgmlType, SUPPORTED_QUANT_TYPES, ggmlRowBytes, ggmlTypeName } from '../backend/quant.js';
import { intFlag, parseArgs, strFlag, UsageError } from '../cli/args.js';
import { PRESETS, type PresetSpec } from '../model/fixture/presets.js';
import { gitCommit, machineInfo } from './machine.js';
import { bestPeaks, measureMachinePeaks, measurePeakSweep } from './peaks.js';
import { median } from './stats.js';

export interface KernelResult {
  model: string;
  /** qkv (fused q/k/v), o, gate_up (fused, silu(gate) * up epilogue), down, lm_head */
  op: string;
  /** Output columns of the weight matrix (gate_up: gate + up) and inner dimension. */
  n: number;
  k: number;
  m: number;
  us_per_call: number;
  gflops: number;
  /** Weight bytes / time: what bounds small M. */
  weight_gbs: number;
  fraction_of_bf16_peak: number;
  fraction_of_bandwidth: number;
  /** --compare-unpacked: the same products through linear() on unpacked weights, and the ratio. */
  unpacked_us_per_call?: number;
  speedup?: number;
}

interface Shape {
  op: string;
  n: number;
  k: number;
  /** Largest M worth measuring (the output head runs on at most a batch of sequences). */
  maxM: number;
  pack: (w: Uint16Array) => PackedLinearHandle;
  /** The same parts as quantized weights of one type (w: every part's rows, in order). */
  packQuant: (w: Uint8Array, type: GgmlType) => PackedLinearHandle;
  outs: (m: number) => Float32Array[];
  /** The same products with linear() on the Hugging Face layout (what the model did before). */
  unpacked: (w: Uint16Array, x: Float32Array, m: number, scratch: Float32Array) => void;
}

function shapesOf(p: PresetSpec): Shape[] {
  const be = cpuBackend();
  const H = p.hiddenSize;
  const hd = p.headDim ?? H / p.numHeads;
  const q = p.numHeads * hd;
  const kv = p.numKvHeads * hd;
  const I = p.intermediateSize;
  const bf = (w: Uint16Array, widths: number[], K: number): PackedLinearHandle => {
    let off = 0;
    const parts = widths.map((n) => {
      const part = { w: w.subarray(off, off + n * K), n };
      off += n * K;
      return part;
    });
    return be.packLinear(parts, DType.BF16, K, MatmulPrecision.BF16);
  };
  const qz = (w: Uint8Array, type: GgmlType, widths: number[], K: number): PackedLinearHandle => {
    let off = 0;
    const parts = widths.map((n) => {
      const bytes = ggmlRowBytes(type, K) * n;
      const part = { w: w.subarray(off, off + bytes), type, n };
      off += bytes;
      return part;
    });
    return be.packLinearQuant(parts, K);
  };
  // Row-major [n, K] slices of one weight buffer, as the checkpoint stores them.
  const lin = (out: Float32Array, x: Float32Array, w: Uint16Array, off: number, n: number, K: number, m: number): void =>
    be.linear(out, x, w.subarray(off * K, (off + n) * K), DType.BF16, null, m, n, K, MatmulPrecision.BF16);
  return [
    {
      op: 'qkv',
      n: q + 2 * kv,
      k: H,
      maxM: Infinity,
      pack: (w) => bf(w, [q, kv, kv], H),
      packQuant: (w, t) => qz(w, t, [q, kv, kv], H),
      outs: (m) => [new Float32Array(m * q), new Float32Array(m * kv), new Float32Array(m * kv)],
      unpacked: (w, x, m, s) => {
        lin(s, x, w, 0, q, H, m);
        lin(s, x, w, q, kv, H, m);
        lin(s, x, w, q + kv, kv, H, m);
      },
    },
    { op: 'o', n: H, k: q, maxM: Infinity, pack: (w) => bf(w, [H], q), packQuant: (w, t) => qz(w, t, [H], q), outs: (m) => [new Float32Array(m * H)], unpacked: (w, x, m, s) => lin(s, x, w, 0, H, q, m) },
    {
      op: 'gate_up',
      n: 2 * I,
      k: H,
      maxM: Infinity,
      pack: (w) => be.packGateUp(w.subarray(0, I * H), w.subarray(I * H, 2 * I * H), DType.BF16, I, H, MatmulPrecision.BF16),
      packQuant: (w, t) => {
        const half = ggmlRowBytes(t, H) * I;
        return be.packGateUpQuant(w.subarray(0, half), t, w.subarray(half, 2 * half), t, I, H);
      },
      outs: (m) => [new Float32Array(m * I)],
      unpacked: (w, x, m, s) => {
        const g = s.subarray(0, m * I);
        const u = s.subarray(m * I, 2 * m * I);
        lin(g, x, w, 0, I, H, m);
        lin(u, x, w, I, I, H, m);
        be.siluMul(g, g, u, m, I, I, I);
      },
    },
    { op: 'down', n: H, k: I, maxM: Infinity, pack: (w) => bf(w, [H], I), packQuant: (w, t) => qz(w, t, [H], I), outs: (m) => [new Float32Array(m * H)], unpacked: (w, x, m, s) => lin(s, x, w, 0, H, I, m) },
    {
      op: 'lm_head',
      n: p.vocabSize,
      k: H,
      maxM: 64,
      pack: (w) => bf(w, [p.vocabSize], H),
      packQuant: (w, t) => qz(w, t, [p.vocabSize], H),
      outs: (m) => [new Float32Array(m * p.vocabSize)],
      unpacked: (w, x, m, s) => lin(s, x, w, 0, p.vocabSize, H, m),
    },
  ];
}

/** Random bf16 weights of magnitude ~0.02 (what the presets draw); the kernels' speed does not depend on values. */
function randomBf16(n: number, seed: number): Uint16Array {
  const out = new Uint16Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    // Exponents around 2^-6 .. 2^-7, random mantissa and sign.
    out[i] = (s >>> 31 ? 0x8000 : 0) | (0x3c00 + ((s >>> 8) & 0xff)) | ((s >>> 20) & 1 ? 0x80 : 0);
  }
  return out;
}

/**
 * Random quantized blocks valid for every type without knowing its layout: bytes in [0x10, 0x77]
 * make every half-precision scale finite and normal (exponent 4..29), and any byte is a valid
 * payload. Speed does not depend on the values.
 */
function randomQuantBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = 0x10 + ((s >>> 24) % 0x68);
  }
  return out;
}

export async function benchKernels(argv: string[]): Promise<void> {
  const flags = parseArgs(argv, { values: ['models', 'm', 'threads', 'min-ms', 'weights'], booleans: ['json', 'compare-unpacked'] });
  const compare = flags.has('compare-unpacked');
  const be = cpuBackend();
  const threads = intFlag(flags, 'threads');
  if (threads !== undefined) be.setThreads(threads);
  const models = (strFlag(flags, 'models') ?? 'smollm-135m,llama-1b').split(',').filter(Boolean);
  for (const m of models) if (!PRESETS[m]) throw new UsageError(`unknown model preset "${m}"; one of ${Object.keys(PRESETS).join(', ')}`);
  const ms = (strFlag(flags, 'm') ?? '1,16,64,256,1024').split(',').map((s) => Number(s));
  if (ms.some((m) => !Number.isInteger(m) || m < 1)) throw new UsageError('--m takes positive integers, comma separated');
  const minMs = intFlag(flags, 'min-ms') ?? 300;
  const weights = strFlag(flags, 'weights') ?? 'bf16';
  const qtype = weights.toLowerCase() === 'bf16' ? undefined : SUPPORTED_QUANT_TYPES.find((t) => ggmlTypeName(t) === weights.toUpperCase());
  if (weights.toLowerCase() !== 'bf16' && qtype === undefined) {
    throw new UsageError(`--weights takes bf16 or one of ${SUPPORTED_QUANT_TYPES.map(ggmlTypeName).join(', ')}`);
  }
  if (qtype !== undefined && compare) throw new UsageError('--compare-unpacked applies to bf16 weights only');

  const peaksBefore = measureMachinePeaks();
  const sweep = measurePeakSweep();
  // Timings first; the fractions come at the end, against the best peaks of the run.
  const timed: Omit<KernelResult, 'fraction_of_bf16_peak' | 'fraction_of_bandwidth'>[] = [];
  for (const model of models) {
    for (const shape of shapesOf(PRESETS[model]!)) {
      const elems = shape.n * shape.k;
      const bytes = qtype === undefined ? elems * 2 : ggmlRowBytes(qtype, shape.k) * shape.n;
      const copies = Math.max(1, Math.min(512, Math.ceil((512 * 2 ** 20) / bytes)));
      const source = qtype === undefined ? randomBf16(elems, shape.n * 31 + shape.k) : undefined;
      const qsource = qtype !== undefined ? randomQuantBytes(bytes, shape.n * 31 + shape.k) : undefined;
      const packs = Array.from({ length: copies }, () => (qsource && qtype !== undefined ? shape.packQuant(qsource, qtype) : shape.pack(source!)));
      // Unpacked copies for --compare-unpacked (as many, so they also come from memory).
      const sources = compare && source ? Array.from({ length: copies }, () => source.slice()) : [];
      // Median over 3 batches of calls of the time per call, rotating through the copies.
      const time = (call: (copy: number) => void, n: number): number => {
        for (let c = 0; c < n; c++) call(c); // warm-up: code, scratch, pages
        const perCall: number[] = [];
        for (let rep = 0; rep < 3; rep++) {
          let calls = 0;
          const t0 = performance.now();
          let t = t0;
          while (calls < 3 || t - t0 < minMs / 3) {
            call(calls % n);
            calls++;
            t = performance.now();
          }
          perCall.push((t - t0) / calls);
        }
        return median(perCall);
      };
      for (const m of ms) {
        if (m > shape.maxM) continue;
        const x = new Float32Array(m * shape.k);
        for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.37) * 2;
        const outs = shape.outs(m);
        const ms1 = time((c) => be.linearPacked(packs[c]!, x, m, outs, false), copies);
        let unpacked: number | undefined;
        if (compare) {
          const scratch = new Float32Array(m * shape.n);
          unpacked = time((c) => shape.unpacked(sources[c]!, x, m, scratch), copies);
        }
        const gflops = (2 * m * elems) / (ms1 / 1000) / 1e9;
        const gbs = bytes / (ms1 / 1000) / 1e9;
        timed.push({
          model,
          op: shape.op,
          n: shape.n,
          k: shape.k,
          m,
          us_per_call: ms1 * 1000,
          gflops,
          weight_gbs: gbs,
          ...(unpacked !== undefined ? { unpacked_us_per_call: unpacked * 1000, speedup: unpacked / ms1 } : {}),
        });
      }
      for (const p of packs) be.packedLinearFree(p);
    }
  }
  const info = be.cpuInfo();
  const peaks = bestPeaks(peaksBefore, measureMachinePeaks());
  const results: KernelResult[] = timed.map((r) => ({
    ...r,
    fraction_of_bf16_peak: peaks.bf16_dot_gflops > 0 ? r.gflops / peaks.bf16_dot_gflops : 0,
    fraction_of_bandwidth: r.weight_gbs / peaks.memory_bandwidth_gbs,
  }));
  const out = {
    bench: 'kernels',
    machine: machineInfo(),
    git_commit: gitCommit(),
    threads: be.getThreads(),
    isa: Isa[info.activeIsa],
    precision: qtype === undefined ? 'bfloat16' : 'quantized weights, 14-bit integer activations',
    weights: qtype === undefined ? 'BF16' : ggmlTypeName(qtype),
    ...(qtype !== undefined ? { quant_amx: be.quantAmx() } : {}),
    machine_peaks: peaks,
    peak_accumulator_sweep: sweep,
    results,
  };
  process.stdout.write(`${JSON.stringify(out, null, flags.has('json') ? undefined : 2)}\n`);
}
