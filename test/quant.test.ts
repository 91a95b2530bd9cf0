/**
 * Quantized-weight ops (native/quant/) against the TypeScript reference (test/reference/
 * ggml-quant.ts) on every kernel family (and, on AVX-512, with the blocked path on VNNI and on
 * AMX where the CPU has it): exact dequantization, the linear op within a justified bound of the
 * float64 product, bit-for-bit batch / thread / family invariance, mixed-type packs, gate/up,
 * bias, accumulate, quantized embeddings, and argument validation.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DType, MatmulPrecision, type PackedLinearHandle } from '../src/backend/backend.js';
import { Isa, cpuBackend } from '../src/backend/native.js';
import { GgmlType, SUPPORTED_QUANT_TYPES, ggmlRowBytes, ggmlTypeName } from '../src/backend/quant.js';
import { dequantizeRef, matmulF64, randomQuant, rng, typeInfo } from './reference/ggml-quant.js';
import { detectedIsa, forEachIsa } from './helpers/isa.js';

const nb = cpuBackend();
const initialThreads = nb.getThreads();
const initialAmx = nb.quantAmx();
after(() => {
  nb.setIsa(detectedIsa);
  nb.setThreads(initialThreads);
  nb.quantAmx(initialAmx);
});

/** The CPU lists AMX-INT8 (Linux): then the AMX path must run. */
const cpuHasAmx = (() => {
  try {
    const flags = readFileSync('/proc/cpuinfo', 'utf8');
    return /\bamx_tile\b/.test(flags) && /\bamx_int8\b/.test(flags);
  } catch {
    return false;
  }
})();

/**
 * Runs fn on every kernel family; the AVX-512 ones once with the VNNI blocked path and, where the
 * CPU has AMX, once more with the AMX one.
 */
function forEachPath(fn: (path: string, isa: Isa) => void): void {
  try {
    forEachIsa((isa) => {
      nb.quantAmx(false);
      fn(`isa ${isa}`, isa);
      if (isa >= Isa.Avx512 && nb.quantAmx(true)) fn(`isa ${isa} amx`, isa);
    });
  } finally {
    nb.quantAmx(initialAmx);
  }
}

function randomX(M: number, K: number, seed: number): Float32Array {
  const r = rng(seed);
  const x = new Float32Array(M * K);
  for (let i = 0; i < x.length; i++) {
    // Mostly N(0, 1)-ish with a few large outliers (what real activations look like).
    const g = (r() + r() + r() + r() - 2) * 1.7;
    x[i] = r() < 0.01 ? g * 20 : g;
  }
  return x;
}

function bitsEqual(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, what);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length), ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < a.length; i++) if (ua[i] !== ub[i]) assert.fail(`${what}: element ${i}: ${a[i]} != ${b[i]}`);
}

/**
 * The error bound of an output, from the scheme (act_quant.h): each activation group g (256 values
 * where K allows, else 32) is rounded to steps of amax_g / 8191, so |x - x~| <= amax_g / 16382 per
 * value, and the product's error is at most sum_g (amax_g / 16382) sum_{k in g} |w_k|; the float32
 * steps (a * I or the block's S, the block sum, s * t, the running sum) add at most a few ulps of
 * each block's |w|·|x| and one rounding of the running sum per block: (K / 32 + 8) · 2^-23 · sum |w x|.
 */
function bound(w: Float32Array, x: Float32Array, r: number, m: number, K: number): number {
  let e = 0, mag = 0;
  const G = K % 256 === 0 ? 256 : 32;
  for (let b = 0; b < K; b += G) {
    let amax = 0, ws = 0;
    for (let j = 0; j < G; j++) amax = Math.max(amax, Math.abs(x[m * K + b + j]));
    for (let j = 0; j < G; j++) {
      ws += Math.abs(w[r * K + b + j]);
      mag += Math.abs(w[r * K + b + j] * x[m * K + b + j]) + Math.abs(w[r * K + b + j]) * amax / 8191;
    }
    e += (amax / 16382) * ws;
  }
  return e * 1.0001 + (K / 32 + 8) * 2 ** -23 * mag + 1e-30;
}

function pack1(type: GgmlType, w: Uint8Array, n: number, K: number, bias?: Float32Array): PackedLinearHandle {
  return nb.packLinearQuant([{ w, type, n, bias }], K);
}

function run(h: PackedLinearHandle, x: Float32Array, M: number, n: number): Float32Array {
  const out = new Float32Array(M * n);
  nb.linearPacked(h, x, M, [out], false);
  return out;
}

describe('dequantizeRows', () => {
  for (const type of SUPPORTED_QUANT_TYPES) {
    test(`${ggmlTypeName(type)}: bit for bit the reference`, () => {
      const { blockSize } = typeInfo(type);
      for (const [rows, k, seed] of [[1, blockSize, 1], [3, blockSize * 4, 2], [5, 512, 3]] as const) {
        const kk = Math.max(k, blockSize);
        const src = randomQuant(type, rows, kk, seed * 7 + type);
        bitsEqual(nb.dequantizeRows(type, src, rows, kk), dequantizeRef(type, src, rows, kk), `${ggmlTypeName(type)} ${rows}x${kk}`);
      }
    });
  }
});

describe('linearPacked on quantized packs', () => {
  // 200 rows at K = 768 span two of the AVX-512 kernel's activation chunks (168 rows).
  const Ms = [1, 2, 3, 7, 17, 64, 130, 200];
  for (const type of SUPPORTED_QUANT_TYPES) {
    test(`${ggmlTypeName(type)}: within the bound of float64, batch = solo, every family and thread count alike`, () => {
      const { blockSize } = typeInfo(type);
      // 32-value types: 544 = 17 blocks, two of the AMX kernel's 8-block passes and a 1-block one.
      const Ks = blockSize === 32 ? [96, 544] : [256, 768];
      for (const K of Ks) {
        const N = 37;
        const wq = randomQuant(type, N, K, 100 + K + type);
        const w = dequantizeRef(type, wq, N, K);
        const Mmax = Ms[Ms.length - 1];
        const x = randomX(Mmax, K, 5 + K);
        const ref = matmulF64(w, x, Mmax, N, K);
        const h = pack1(type, wq, N, K);
        let scalarFull: Float32Array | undefined;
        forEachPath((path, isa) => {
          for (const threads of [1, 2]) {
            nb.setThreads(threads);
            const full = run(h, x, Mmax, N);
            if (isa === Isa.Scalar && threads === 1) {
              scalarFull = full;
              for (let m = 0; m < Mmax; m++)
                for (let r = 0; r < N; r++) {
                  const got = full[m * N + r], want = ref[m * N + r];
                  const b = bound(w, x, r, m, K);
                  if (!(Math.abs(got - want) <= b)) assert.fail(`${ggmlTypeName(type)} K=${K} (${m}, ${r}): ${got} vs ${want}, bound ${b}`);
                }
            } else {
              bitsEqual(full, scalarFull!, `${ggmlTypeName(type)} K=${K} ${path} threads ${threads} vs scalar`);
            }
            for (const M of Ms) {
              const part = run(h, x.subarray(0, M * K), M, N);
              bitsEqual(part, full.subarray(0, M * N), `${ggmlTypeName(type)} K=${K} M=${M} ${path}`);
            }
            const solo = run(h, x.subarray(17 * K, 18 * K), 1, N);
            bitsEqual(solo, full.subarray(17 * N, 18 * N), `${ggmlTypeName(type)} row 17 solo`);
          }
        });
        nb.setThreads(initialThreads);
        nb.packedLinearFree(h);
      }
    });
  }

  test('zero activation blocks, zero rows and zero-scale weight blocks: every family gives the same bits, batch = solo', () => {
    const K = 512, N = 21, M = 20; // 20 rows: the AMX path too
    const x = randomX(M, K, 31);
    x.fill(0, 0, K); // row 0 all zero
    for (let m = 1; m < M; m++) x.fill(0, m * K + 32 * (m % 14), m * K + 32 * (m % 14) + 64); // zero blocks
    for (const type of [GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.Q8_0, GgmlType.Q4_1, GgmlType.Q2_K, GgmlType.IQ4_XS]) {
      const w = randomQuant(type, N, K, 3, 0.01);
      const bytes = typeInfo(type).blockBytes;
      w.fill(0, 0, bytes); // a block of zeros: zero scales
      w.fill(0, ggmlRowBytes(type, K) * 5, ggmlRowBytes(type, K) * 6); // row 5 all zero
      const h = pack1(type, w, N, K);
      let first: Float32Array | undefined;
      forEachPath((path) => {
        const full = run(h, x, M, N);
        for (let m = 0; m < M; m++) bitsEqual(run(h, x.subarray(m * K, (m + 1) * K), 1, N), full.subarray(m * N, (m + 1) * N), `${ggmlTypeName(type)} ${path} row ${m}`);
        if (first) bitsEqual(full, first, `${ggmlTypeName(type)} ${path} vs scalar`);
        else first = full;
        for (let r = 0; r < N; r++) assert.ok(Object.is(full[r], 0), 'zero row of x gives +0');
      });
      nb.packedLinearFree(h);
    }
  });

  // Activation rows at the quantizer's extremes (v = 256 hi + lo): each 256-value group's first
  // value is +-amax, the rest the pattern's last entry.
  const amax = 3.5;
  const extremeRows: number[][] = [
    [-amax], // v = -8191: hi = -32, lo = 1
    [amax], // v = 8191: hi = 32, lo = -1
    [-amax, (-7808 / 8191) * amax], // v = -7808: hi = -30, lo = -128
    [amax, (7807 / 8191) * amax], // v = 7807: hi = 30, lo = 127
  ];
  // Packs w and checks, on every path, the scalar path's bits, each row solo and rows 1, 2 as a pair.
  function extremesOnEveryPath(type: GgmlType, w: Uint8Array, N: number, K: number): void {
    const M = extremeRows.length;
    const x = new Float32Array(M * K);
    extremeRows.forEach((pat, m) => {
      for (let k = 0; k < K; k++) x[m * K + k] = k % 256 === 0 ? pat[0]! : pat[pat.length - 1]!;
    });
    const h = pack1(type, w, N, K);
    const name = ggmlTypeName(type);
    let first: Float32Array | undefined;
    forEachPath((path) => {
      const full = run(h, x, M, N);
      if (first) bitsEqual(full, first, `${name} ${path} vs scalar`);
      else first = full;
      for (let m = 0; m < M; m++) bitsEqual(run(h, x.subarray(m * K, (m + 1) * K), 1, N), full.subarray(m * N, (m + 1) * N), `${name} ${path} row ${m} solo`);
      bitsEqual(run(h, x.subarray(K, 3 * K), 2, N), full.subarray(N, 3 * N), `${name} ${path} rows 1, 2 as a pair`);
    });
    nb.packedLinearFree(h);
  }

  test('Q6_K at its integer bounds (q = -32 or 31, scales -128 or 127, hi = +-32, lo = -128 or 127): every path gives the scalar bits', () => {
    // These inputs reach the largest sums the kernels' int32 batches allow (kernels.h, k_batch):
    // the VNNI kernels' byte halves, the AVX2 kernel's isc * q words (rows_fast.cc, widen).
    const K = 512, N = 37, type = GgmlType.Q6_K;
    const w = randomQuant(type, N, K, 5, 0.01);
    const { blockBytes } = typeInfo(type); // ql[128], qh[64], scales[16], d (f16)
    for (let b = 0; b < w.length / blockBytes; b++) {
      const o = b * blockBytes;
      const kind = b % 4; // q = -32 (u = 0) or 31 (u = 63), scales -128 or 127
      w.fill(kind & 1 ? 0xff : 0, o, o + 192);
      w.fill(kind & 2 ? 0x7f : 0x80, o + 192, o + 208);
    }
    extremesOnEveryPath(type, w, N, K);
  });

  test('the other 256-value types at their largest |isc · q| against activations of +-8191: every path gives the scalar bits', () => {
    // Each type's payload set to the extreme its int32 batch was sized for (k_batch: batch * max
    // |isc · q| * values * 8191 < 2^31): Q4_K sc = 63, q = 15 (a whole block a batch); Q5_K sc = 63,
    // q = 31 (4 sub-blocks); IQ4_XS isc = -32, q = -127 (2 sub-blocks); Q3_K isc = -32, q = -4.
    // The half-precision fields keep randomQuant's values.
    const K = 512, N = 37;
    const cases: [GgmlType, number, number[]][] = [
      [GgmlType.Q4_K, 0xff, [0, 1, 2, 3]],
      [GgmlType.Q5_K, 0xff, [0, 1, 2, 3]],
      [GgmlType.IQ4_XS, 0, [0, 1]],
      [GgmlType.Q3_K, 0, [108, 109]],
    ];
    for (const [type, fill, halfBytes] of cases) {
      const w = randomQuant(type, N, K, 6, 0.01);
      const { blockBytes } = typeInfo(type);
      const keep = new Set(halfBytes);
      for (let b = 0; b < w.length / blockBytes; b++)
        for (let i = 0; i < blockBytes; i++) if (!keep.has(i)) w[b * blockBytes + i] = fill;
      extremesOnEveryPath(type, w, N, K);
    }
  });

  test('mixed-type parts with bias, accumulate, and a gate/up pair equal their separate parts', () => {
    const K = 512, M = 9;
    const x = randomX(M, K, 77);
    const a = randomQuant(GgmlType.Q4_K, 40, K, 1), b = randomQuant(GgmlType.Q6_K, 24, K, 2), c = randomQuant(GgmlType.Q8_0, 8, K, 3);
    const bias = new Float32Array(24).map((_, i) => i * 0.25 - 3);
    forEachPath(() => {
      const h = nb.packLinearQuant([{ w: a, type: GgmlType.Q4_K, n: 40 }, { w: b, type: GgmlType.Q6_K, n: 24, bias }, { w: c, type: GgmlType.Q8_0, n: 8 }], K);
      const oa = new Float32Array(M * 40), ob = new Float32Array(M * 24), oc = new Float32Array(M * 8);
      nb.linearPacked(h, x, M, [oa, ob, oc], false);
      bitsEqual(oa, run(pack1(GgmlType.Q4_K, a, 40, K), x, M, 40), 'part a');
      bitsEqual(oc, run(pack1(GgmlType.Q8_0, c, 8, K), x, M, 8), 'part c');
      const plain = run(pack1(GgmlType.Q6_K, b, 24, K), x, M, 24);
      const withBias = plain.map((v, i) => Math.fround(v + bias[i % 24]));
      bitsEqual(ob, withBias, 'part b + bias');
      // accumulate: out + result
      const acc = new Float32Array(M * 40).fill(0.5);
      const o2 = new Float32Array(M * 24), o3 = new Float32Array(M * 8);
      nb.linearPacked(h, x, M, [acc, o2, o3], true);
      bitsEqual(acc, oa.map((v) => Math.fround(0.5 + v)), 'accumulate');
      nb.packedLinearFree(h);
      nb.packedLinearFree(h);  // idempotent

      // gate/up = silu(gate) * up through siluMul
      const I = 24;
      const g = randomQuant(GgmlType.Q4_K, I, K, 4), u = randomQuant(GgmlType.Q6_K, I, K, 5);
      const gu = nb.packGateUpQuant(g, GgmlType.Q4_K, u, GgmlType.Q6_K, I, K);
      const out = new Float32Array(M * I);
      nb.linearPacked(gu, x, M, [out], false);
      const og = run(pack1(GgmlType.Q4_K, g, I, K), x, M, I), ou = run(pack1(GgmlType.Q6_K, u, I, K), x, M, I);
      const want = new Float32Array(M * I);
      nb.siluMul(want, og, ou, M, I, I, I);
      bitsEqual(out, want, 'gate/up');
      const accOut = new Float32Array(M * I).fill(-0.75);
      nb.linearPacked(gu, x, M, [accOut], true);
      bitsEqual(accOut, want.map((v) => Math.fround(-0.75 + v)), 'gate/up accumulate');
      const solo = new Float32Array(I);
      nb.linearPacked(gu, x.subarray(4 * K, 5 * K), 1, [solo], false);
      bitsEqual(solo, out.subarray(4 * I, 5 * I), 'gate/up solo');
    });
  });

  test('more rows than one slice of the native op (M = 1100): the bits of smaller calls, with parts, bias, accumulate and gate/up', () => {
    const K = 256, M = 1100, step = 100;
    const x = randomX(M, K, 91);
    const a = randomQuant(GgmlType.Q4_K, 20, K, 11), c = randomQuant(GgmlType.Q8_0, 16, K, 12);
    const bias = new Float32Array(16).map((_, i) => 0.5 - i * 0.125);
    const g = randomQuant(GgmlType.Q4_K, 24, K, 13), u = randomQuant(GgmlType.Q6_K, 24, K, 14);
    forEachPath((path) => {
      const h = nb.packLinearQuant([{ w: a, type: GgmlType.Q4_K, n: 20 }, { w: c, type: GgmlType.Q8_0, n: 16, bias }], K);
      const gu = nb.packGateUpQuant(g, GgmlType.Q4_K, u, GgmlType.Q6_K, 24, K);
      const outs = (n: number) => [new Float32Array(n * 20).fill(0.25), new Float32Array(n * 16).fill(-1), new Float32Array(n * 24).fill(2)];
      const [oa, oc, og] = outs(M);
      nb.linearPacked(h, x, M, [oa!, oc!], true);
      nb.linearPacked(gu, x, M, [og!], true);
      for (let m0 = 0; m0 < M; m0 += step) {
        const xs = x.subarray(m0 * K, (m0 + step) * K);
        const [pa, pc, pg] = outs(step);
        // The scratch's pages handed back (ComputeBackend.releaseWorkingMemory) change no bit.
        if (m0 % 200 === 0) nb.releaseWorkingMemory([]);
        nb.linearPacked(h, xs, step, [pa!, pc!], true);
        nb.linearPacked(gu, xs, step, [pg!], true);
        bitsEqual(oa!.subarray(m0 * 20, (m0 + step) * 20), pa!, `${path} part a, rows from ${m0}`);
        bitsEqual(oc!.subarray(m0 * 16, (m0 + step) * 16), pc!, `${path} part c + bias, rows from ${m0}`);
        bitsEqual(og!.subarray(m0 * 24, (m0 + step) * 24), pg!, `${path} gate/up, rows from ${m0}`);
      }
      nb.packedLinearFree(h);
      nb.packedLinearFree(gu);
    });
  });
});

describe('the AMX blocked path', () => {
  test('runs wherever the CPU lists AMX-INT8, and can be switched off and on', () => {
    try {
      assert.equal(nb.quantAmx(true), cpuHasAmx);
      assert.equal(nb.quantAmx(), cpuHasAmx);
      assert.equal(nb.quantAmx(false), false);
      assert.equal(nb.quantAmx(), false);
      assert.throws(() => nb.quantAmx(1 as unknown as boolean), TypeError);
    } finally {
      nb.quantAmx(initialAmx);
    }
  });

  test('PAGEWISE_QUANT_AMX=0 switches it off at start-up, 1 or unset leaves it on', () => {
    const addon = fileURLToPath(new URL('../build/Release/pagewise.node', import.meta.url));
    const ask = (value: string | undefined): string => {
      const env = { ...process.env };
      if (value === undefined) delete env.PAGEWISE_QUANT_AMX;
      else env.PAGEWISE_QUANT_AMX = value;
      const r = spawnSync(process.execPath, ['-e', `process.stdout.write(String(require(${JSON.stringify(addon)}).quantAmx()))`], { env, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout;
    };
    assert.equal(ask('0'), 'false');
    assert.equal(ask('1'), String(cpuHasAmx));
    assert.equal(ask(undefined), String(cpuHasAmx));
  });

  test('BF16 tile kernels and quantized tile kernels take turns on the same threads (each loads and releases its tiles)', () => {
    // A BF16-precision linear on the AMX family releases the tiles after each work item; the
    // quantized kernel once kept its tile configuration per thread and hit SIGILL after it.
    const K = 512, N = 64, M = 32;
    const wq = randomQuant(GgmlType.Q4_K, N, K, 77);
    const hq = pack1(GgmlType.Q4_K, wq, N, K);
    const r = rng(78);
    const wb = new Uint16Array(N * K).map(() => 0x3c00 + Math.floor(r() * 64));
    const hb = nb.packLinear([{ w: wb, n: N, bias: null }], DType.BF16, K, MatmulPrecision.BF16);
    const x = randomX(M, K, 79);
    try {
      nb.quantAmx(true);
      const want = run(hq, x, M, N);
      for (let i = 0; i < 4; i++) {
        nb.linearPacked(hb, x, M, [new Float32Array(M * N)], false);
        bitsEqual(run(hq, x, M, N), want, `round ${i}: quantized after BF16`);
      }
    } finally {
      nb.quantAmx(initialAmx);
      nb.packedLinearFree(hq);
      nb.packedLinearFree(hb);
    }
  });

  // Activation rows around the 16-row tiles and the AMX thresholds (10 rows for the 256-value
  // types, 11 for the others; M below 4 runs the streaming paths, in pairs and a lone row), weight
  // rows not a multiple of 16, K one block and a few.
  const Ms = [1, 2, 3, 9, 10, 11, 15, 16, 17, 33, 100];
  for (const type of SUPPORTED_QUANT_TYPES) {
    test(`${ggmlTypeName(type)}: every path gives the scalar bits at awkward sizes, batch = solo`, () => {
      const { blockSize } = typeInfo(type);
      for (const [K, N] of [[blockSize, 37], [blockSize * 3, 21]]) {
        const wq = randomQuant(type, N, K, 300 + K + type);
        const Mmax = Ms[Ms.length - 1];
        const x = randomX(Mmax, K, 11 + K);
        const h = pack1(type, wq, N, K);
        let scalar: Float32Array | undefined;
        forEachPath((path) => {
          const full = run(h, x, Mmax, N);
          if (scalar) bitsEqual(full, scalar, `${ggmlTypeName(type)} K=${K} ${path} vs scalar`);
          else scalar = full;
          for (const M of Ms) bitsEqual(run(h, x.subarray(0, M * K), M, N), full.subarray(0, M * N), `${ggmlTypeName(type)} K=${K} M=${M} ${path}`);
          for (const m of [0, 15, 16, 99]) bitsEqual(run(h, x.subarray(m * K, (m + 1) * K), 1, N), full.subarray(m * N, (m + 1) * N), `${path} row ${m} solo`);
        });
        nb.packedLinearFree(h);
      }
    });
  }

  test('two activation chunks (K = 8192) and mixed sub-block sizes in one pack: the scalar bits', () => {
    const K = 8192, M = 100;
    const x = randomX(M, K, 41);
    const parts = [
      { w: randomQuant(GgmlType.Q4_K, 19, K, 6), type: GgmlType.Q4_K, n: 19 },
      { w: randomQuant(GgmlType.Q6_K, 16, K, 7), type: GgmlType.Q6_K, n: 16 },
      { w: randomQuant(GgmlType.Q8_0, 5, K, 8), type: GgmlType.Q8_0, n: 5 },
    ];
    const h = nb.packLinearQuant(parts, K);
    let first: Float32Array[] | undefined;
    forEachPath((path) => {
      for (const threads of [1, 2]) {
        nb.setThreads(threads);
        const outs = parts.map((p) => new Float32Array(M * p.n));
        nb.linearPacked(h, x, M, outs, false);
        if (!first) first = outs;
        else outs.forEach((o, i) => bitsEqual(o, first![i], `part ${i} ${path} threads ${threads} vs scalar`));
      }
    });
    nb.setThreads(initialThreads);
    nb.packedLinearFree(h);
  });
});

describe('embeddingQuant', () => {
  test('rows are the dequantized table rows', () => {
    for (const type of [GgmlType.Q4_K, GgmlType.Q8_0, GgmlType.Q6_K, GgmlType.IQ4_NL]) {
      const hidden = 256, vocab = 11;
      const t = randomQuant(type, vocab, hidden, 9);
      const deq = dequantizeRef(type, t, vocab, hidden);
      const ids = new Int32Array([3, 0, 10, 3]);
      const out = new Float32Array(ids.length * hidden);
      nb.embeddingQuant(out, t, type, ids, hidden);
      for (let i = 0; i < ids.length; i++) bitsEqual(out.subarray(i * hidden, (i + 1) * hidden), deq.subarray(ids[i] * hidden, (ids[i] + 1) * hidden), `row ${i}`);
    }
  });
});

describe('embeddingPacked', () => {
  test('rows of a one-part pack are embeddingQuant\'s rows of its table, bit for bit, every type', () => {
    // 37 rows: two whole groups of 16 and a partial one; two blocks a row.
    for (const type of SUPPORTED_QUANT_TYPES) {
      const hidden = 2 * typeInfo(type).blockSize, vocab = 37;
      const t = randomQuant(type, vocab, hidden, 13);
      const h = pack1(type, t, vocab, hidden);
      const ids = new Int32Array([36, 0, 15, 16, 31, 32, 5, 36]);
      const want = new Float32Array(ids.length * hidden);
      const got = new Float32Array(ids.length * hidden);
      nb.embeddingQuant(want, t, type, ids, hidden);
      nb.embeddingPacked(got, h, ids);
      bitsEqual(got, want, ggmlTypeName(type));
      nb.packedLinearFree(h);
    }
  });
  test('checks the pack, ids and out', () => {
    const K = 256;
    const w = randomQuant(GgmlType.Q4_K, 4, K, 1);
    const h = pack1(GgmlType.Q4_K, w, 4, K);
    const out = new Float32Array(2 * K);
    assert.throws(() => nb.embeddingPacked(out, h, new Int32Array([4])), RangeError);
    assert.throws(() => nb.embeddingPacked(out, h, new Int32Array([-1])), RangeError);
    assert.throws(() => nb.embeddingPacked(out, h, new Int32Array([0, 1, 2])), RangeError);
    const two = nb.packLinearQuant([{ w, type: GgmlType.Q4_K, n: 4 }, { w, type: GgmlType.Q4_K, n: 4 }], K);
    assert.throws(() => nb.embeddingPacked(out, two, new Int32Array([0])), /one part/);
    const gu = nb.packGateUpQuant(w, GgmlType.Q4_K, w, GgmlType.Q4_K, 4, K);
    assert.throws(() => nb.embeddingPacked(out, gu, new Int32Array([0])), /one part/);
    for (const p of [two, gu]) nb.packedLinearFree(p);
    nb.packedLinearFree(h);
    assert.throws(() => nb.embeddingPacked(out, h, new Int32Array([0])), /freed/);
  });
});

describe('argument validation', () => {
  const K = 256;
  const w = randomQuant(GgmlType.Q4_K, 4, K, 1);
  test('packLinearQuant / packGateUpQuant reject bad types, sizes and K', () => {
    assert.throws(() => nb.packLinearQuant([{ w, type: 99 as GgmlType, n: 4 }], K), RangeError);
    assert.throws(() => nb.packLinearQuant([{ w, type: GgmlType.F32, n: 4 }], K), RangeError);
    assert.throws(() => nb.packLinearQuant([{ w, type: GgmlType.Q4_K, n: 5 }], K), RangeError);
    assert.throws(() => nb.packLinearQuant([{ w, type: GgmlType.Q4_K, n: 4 }], 128), RangeError);
    assert.throws(() => nb.packLinearQuant([{ w: new Float32Array(4) as unknown as Uint8Array, type: GgmlType.Q4_K, n: 4 }], K), TypeError);
    assert.throws(() => nb.packLinearQuant([{ w, type: GgmlType.Q4_K, n: 4, bias: new Float32Array(3) }], K), RangeError);
    assert.throws(() => nb.packLinearQuant([], K), RangeError);
    assert.throws(() => nb.packLinearQuant([{ w, type: GgmlType.Q4_K, n: 4 }], 1.5), TypeError);
    assert.throws(() => nb.packGateUpQuant(w, GgmlType.Q4_K, w, GgmlType.Q4_K, 3, K), RangeError);
    assert.throws(() => nb.packGateUpQuant(w, GgmlType.Q4_K, w, 77 as GgmlType, 4, K), RangeError);
    assert.equal(ggmlRowBytes(GgmlType.Q4_K, K) * 4, w.length);
  });
  test('linearPacked checks x, outs and freed handles', () => {
    const h = pack1(GgmlType.Q4_K, w, 4, K);
    const x = new Float32Array(2 * K);
    assert.throws(() => nb.linearPacked(h, x, 3, [new Float32Array(12)], false), RangeError);
    assert.throws(() => nb.linearPacked(h, x, 2, [new Float32Array(7)], false), RangeError);
    assert.throws(() => nb.linearPacked(h, x, 2, [new Float32Array(8), new Float32Array(8)], false), RangeError);
    assert.throws(() => nb.linearPacked(h, x, 2, [new Float64Array(8) as unknown as Float32Array], false), TypeError);
    assert.throws(() => nb.linearPacked(h, x, 2, [x.subarray(0, 8)], false), RangeError);
    assert.throws(() => nb.linearPacked(h, x, 2, [new Float32Array(8)], 1 as unknown as boolean), TypeError);
    nb.packedLinearFree(h);
    assert.throws(() => nb.linearPacked(h, x, 2, [new Float32Array(8)], false), /freed/);
    assert.throws(() => nb.linearPacked({} as PackedLinearHandle, x, 2, [new Float32Array(8)], false), TypeError);
  });
  test('embeddingQuant and dequantizeRows check ids, sizes and types', () => {
    const out = new Float32Array(2 * K);
    assert.throws(() => nb.embeddingQuant(out, w, GgmlType.Q4_K, new Int32Array([4]), K), RangeError);
    assert.throws(() => nb.embeddingQuant(out, w, GgmlType.Q4_K, new Int32Array([-1]), K), RangeError);
    assert.throws(() => nb.embeddingQuant(out, w, GgmlType.Q4_K, new Int32Array([0, 1, 2]), K), RangeError);
    assert.throws(() => nb.embeddingQuant(out, w, GgmlType.Q4_K, new Int32Array([0]), 100), RangeError);
    assert.throws(() => nb.dequantizeRows(GgmlType.Q4_K, w, 3, K), RangeError);
    assert.throws(() => nb.dequantizeRows(GgmlType.BF16, w, 4, K), RangeError);
    assert.throws(() => nb.dequantizeRows(GgmlType.Q4_K, w as unknown as Uint8Array, 4, 100), RangeError);
  });
});
