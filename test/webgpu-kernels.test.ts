/**
 * Every kernel of the WebGPU backend against the CPU backend and the float64 references, on
 * awkward sizes (one row, odd widths, sizes around the kernels' tiles of 16, 64 and 256, block
 * boundaries), plus the invariances the engine relies on: a row of a batch equals the same row
 * alone bit for bit, physical blocks and chunking change nothing, copied blocks read alike; the
 * float linear kernels follow the order of lanes.ts exactly, and every variant of a kernel (decode
 * or tiled, serial or cooperating lanes, subgroups on or off) gives the same bits.
 * Runs on any adapter (SwiftShader in CI); skips with a message where there is none (see
 * helpers/webgpu.ts).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DType, MatmulPrecision, type KvCacheHandle } from '../src/backend/backend.js';
import { cpuBackend } from '../src/backend/native.js';
import { attentionRef, bitEqual, closeTo, embeddingRef, linearRef, randomF32, randomWeights, rmsnormRef, rng, roundBf16, siluMulRef, widen } from './reference/ops.js';
import { webGpuForTests } from './helpers/webgpu.js';
import { createWebGpuBackend } from '../src/backend/webgpu/index.js';
import { LINEAR_ROWS_MAX, LINEAR_TILE } from '../src/backend/webgpu/kernels.js';
import { CHUNK, LANES } from '../src/backend/webgpu/lanes.js';
import { GgmlType, ggmlTypeName, SUPPORTED_QUANT_TYPES } from '../src/backend/quant.js';
import { GPU_QUANT_TYPES } from '../src/backend/webgpu/quant-kernels.js';
import { defaultKvBudget } from '../src/engine/kv-sizing.js';
import { dequantizeRef, matmulF64, randomQuant, typeInfo } from './reference/ggml-quant.js';

const { gpu, skip } = webGpuForTests();
const cpu = cpuBackend();

/** Run an op of a GPU backend into a fresh output and read it back. */
function onGpuOf(be: NonNullable<typeof gpu>, n: number, op: (out: Float32Array) => void): Float32Array {
  const out = new Float32Array(n).fill(NaN);
  op(out);
  be.toHost(out);
  return out;
}
const onGpu = (n: number, op: (out: Float32Array) => void): Float32Array => onGpuOf(gpu!, n, op);

describe('webgpu kernels', { skip }, () => {
  test('adapter report: name and limits', () => {
    const d = gpu!.describe();
    assert.equal(d.device, 'webgpu');
    assert.ok(d.kernels.length > 0);
    assert.ok(gpu!.adapter.limits['maxStorageBufferBindingSize']! >= 128 * 1024 * 1024);
  });

  test('embedding (F32, F16, BF16 tables, and from a float pack) and row gather equal the CPU exactly', () => {
    const rand = rng(1);
    for (const dtype of [DType.F32, DType.F16, DType.BF16]) {
      for (const [vocab, hidden] of [[37, 19], [5, 1], [300, 65]] as const) {
        const table = randomWeights(vocab * hidden, dtype, rand);
        const ids = Int32Array.from({ length: 7 }, () => Math.floor(rand() * vocab));
        const got = onGpu(ids.length * hidden, (o) => gpu!.embedding(o, table, dtype, ids, hidden));
        const want = new Float32Array(ids.length * hidden);
        cpu.embedding(want, table, dtype, ids, hidden);
        assert.ok(bitEqual(got, want), `embedding dtype ${dtype} ${vocab}x${hidden}`);
        // The same rows looked up in a float pack of the table (a tied head's).
        const pack = gpu!.packLinear([{ w: table, n: vocab }], dtype, hidden, MatmulPrecision.F32);
        const fromPack = onGpu(ids.length * hidden, (o) => gpu!.embeddingPacked(o, pack, ids));
        assert.ok(bitEqual(fromPack, want), `embeddingPacked dtype ${dtype} ${vocab}x${hidden}`);
        assert.throws(() => gpu!.embeddingPacked(new Float32Array(hidden), pack, Int32Array.of(vocab)), /outside the pack's rows/);
        gpu!.packedLinearFree(pack);
        assert.equal(closeTo(got, embeddingRef(table, dtype, ids, hidden), 0), null);
      }
    }
    const x = randomF32(11 * 13, rand);
    const rows = Int32Array.from([10, 0, 3, 3]);
    const got = onGpu(4 * 13, (o) => gpu!.gatherRows(o, x, rows, 4, 13));
    const want = new Float32Array(4 * 13);
    cpu.gatherRows(want, x, rows, 4, 13);
    assert.ok(bitEqual(got, want));
    assert.throws(() => gpu!.embedding(new Float32Array(19), randomF32(37 * 19, rand), DType.F32, Int32Array.of(37), 19), RangeError);
  });

  test('rmsnorm: widths around the workgroup of 256, in place, one row alone = in a batch', () => {
    const rand = rng(2);
    for (const H of [1, 7, 64, 255, 256, 257, 700]) {
      const M = 5;
      const x = randomF32(M * H, rand, 3);
      const w = randomF32(H, rand);
      const got = onGpu(M * H, (o) => gpu!.rmsnorm(o, x, w, M, H, 1e-5));
      assert.equal(closeTo(got, rmsnormRef(x, w, M, H, 1e-5), 2e-6, 1e-7), null, `H=${H}`);
      const alone = onGpu(H, (o) => gpu!.rmsnorm(o, x.subarray(3 * H, 4 * H), w, 1, H, 1e-5));
      assert.ok(bitEqual(alone, got.subarray(3 * H, 4 * H)), `H=${H}: row alone differs`);
      // In place: the output overwrites its input.
      const inPlace = Float32Array.from(x);
      gpu!.rmsnorm(inPlace, inPlace, w, M, H, 1e-5);
      gpu!.toHost(inPlace);
      assert.ok(bitEqual(inPlace, got), `H=${H}: in place differs`);
    }
  });

  test('ropeTable + rope (rotate_half): GQA heads, large positions, against the CPU', () => {
    const rand = rng(3);
    for (const [nH, nKv, D] of [[4, 2, 6], [3, 3, 64], [8, 1, 128]] as const) {
      const T = 9;
      const positions = Int32Array.from({ length: T }, (_, t) => (t === 0 ? 0 : Math.floor(rand() * 5000)));
      const invFreq = Float32Array.from({ length: D / 2 }, (_, i) => Math.pow(10000, (-2 * i) / D));
      const q = randomF32(T * nH * D, rand);
      const k = randomF32(T * nKv * D, rand);
      const csCpu = new Float32Array(T * D);
      cpu.ropeTable(csCpu, positions, T, invFreq);
      const qc = Float32Array.from(q);
      const kc = Float32Array.from(k);
      cpu.rope(qc, kc, csCpu, T, nH, nKv, D);
      const cs = new Float32Array(T * D);
      gpu!.ropeTable(cs, positions, T, invFreq);
      assert.equal(closeTo(cs, csCpu, 0, 1e-7), null, 'angle table');
      const qg = Float32Array.from(q);
      const kg = Float32Array.from(k);
      gpu!.rope(qg, kg, cs, T, nH, nKv, D);
      gpu!.toHost(qg);
      gpu!.toHost(kg);
      assert.equal(closeTo(qg, qc, 0, 1e-6), null, `q ${nH}/${nKv}/${D}`);
      assert.equal(closeTo(kg, kc, 0, 1e-6), null, `k ${nH}/${nKv}/${D}`);
    }
  });

  test('geluTanhMul, softcap and scale against the CPU, in place too', () => {
    const rand = rng(7);
    const [M, I, gs, us] = [3, 45, 50, 45];
    const g = randomF32(M * gs, rand, 6);
    const u = randomF32(M * us, rand, 2);
    const got = onGpu(M * I, (o) => gpu!.geluTanhMul(o, g, u, M, I, gs, us));
    const want = new Float32Array(M * I);
    cpu.geluTanhMul(want, g, u, M, I, gs, us);
    assert.equal(closeTo(got, want, 2e-6, 1e-7), null, 'geluTanhMul');
    const x = randomF32(777, rand, 40);
    const capped = onGpu(777, (o) => gpu!.softcap(o, x, 777, 1.5));
    const cappedCpu = new Float32Array(777);
    cpu.softcap(cappedCpu, x, 777, 1.5);
    assert.equal(closeTo(capped, cappedCpu, 1e-6, 1e-7), null, 'softcap');
    const scaled = Float32Array.from(x);
    gpu!.scale(scaled, scaled, 777, 8);
    gpu!.toHost(scaled);
    const scaledCpu = new Float32Array(777);
    cpu.scale(scaledCpu, x, 777, 8);
    assert.ok(bitEqual(scaled, scaledCpu), 'scale');
  });

  test('siluMul with row strides, and add', () => {
    const rand = rng(4);
    const [M, I, gs, us] = [6, 67, 70, 67];
    const g = randomF32(M * gs, rand, 4);
    const u = randomF32(M * us, rand, 2);
    const got = onGpu(M * I, (o) => gpu!.siluMul(o, g, u, M, I, gs, us));
    assert.equal(closeTo(got, siluMulRef(g, u, M, I, gs, us), 1e-6, 1e-7), null);
    const a = randomF32(1001, rand);
    const b = randomF32(1001, rand);
    const sum = onGpu(1001, (o) => gpu!.add(o, a, b, 1001));
    const want = new Float32Array(1001);
    cpu.add(want, a, b, 1001);
    assert.ok(bitEqual(sum, want));
  });

  test('linear: tiles cut anywhere, bias, accumulate, F32/F16/BF16 weights, BF16 precision; rows alone = batched', () => {
    const rand = rng(5);
    const cases: Array<[number, number, number, DType, MatmulPrecision]> = [
      [1, 1, 1, DType.F32, MatmulPrecision.F32],
      [3, 5, 7, DType.F32, MatmulPrecision.F32],
      [17, 33, 16, DType.F16, MatmulPrecision.F32],
      [16, 16, 45, DType.BF16, MatmulPrecision.F32],
      [19, 40, 96, DType.BF16, MatmulPrecision.BF16],
      [2, 300, 64, DType.F32, MatmulPrecision.F32],
    ];
    for (const [M, N, K, dtype, precision] of cases) {
      const label = `M${M} N${N} K${K} dtype ${dtype} precision ${precision}`;
      const w = randomWeights(N * K, dtype, rand);
      const w2 = randomWeights(3 * K, dtype, rand);
      const bias = randomF32(N, rand);
      const x = randomF32(M * K, rand);
      const pack = gpu!.packLinear([{ w, n: N, bias }, { w: w2, n: 3 }], dtype, K, precision);
      const out = new Float32Array(M * N);
      const out2 = new Float32Array(M * 3);
      gpu!.linearPacked(pack, x, M, [out, out2], false);
      gpu!.toHost(out);
      gpu!.toHost(out2);
      const ref = linearRef(x, w, dtype, bias, M, N, K, precision);
      assert.equal(closeTo(out, ref.out, 1, 0, Float64Array.from(ref.absSum, (a) => a * 2e-6 + 1e-7)), null, label);
      const ref2 = linearRef(x, w2, dtype, null, M, 3, K, precision);
      assert.equal(closeTo(out2, ref2.out, 1, 0, Float64Array.from(ref2.absSum, (a) => a * 2e-6 + 1e-7)), null, `${label} second part`);
      // Accumulate: out += x . w^T + bias, the same bits as linear then add.
      const acc = randomF32(M * N, rand);
      const accGpu = Float32Array.from(acc);
      gpu!.linearPacked(pack, x, M, [accGpu, new Float32Array(M * 3)], true);
      gpu!.toHost(accGpu);
      const sum = new Float32Array(M * N);
      for (let i = 0; i < M * N; i++) sum[i] = acc[i]! + out[i]!;
      assert.ok(bitEqual(accGpu, sum), `${label}: accumulate`);
      for (const m of [0, M - 1]) {
        const alone = new Float32Array(N);
        gpu!.linearPacked(pack, x.subarray(m * K, (m + 1) * K), 1, [alone, new Float32Array(3)], false);
        gpu!.toHost(alone);
        assert.ok(bitEqual(alone, out.subarray(m * N, (m + 1) * N)), `${label}: row ${m} alone differs`);
      }
      if (dtype !== DType.F32) {
        // 16-bit weights stay 16-bit on the GPU and widen exactly: the bits of a float32 pack of
        // the widened values (BF16 precision rounds x alike in both).
        const wide = Float32Array.from(widen(w, dtype));
        const widePack = precision === MatmulPrecision.BF16 ? null : gpu!.packLinear([{ w: wide, n: N, bias }, { w: Float32Array.from(widen(w2, dtype)), n: 3 }], DType.F32, K, precision);
        if (widePack) {
          const same = onGpu(M * N, (o) => gpu!.linearPacked(widePack, x, M, [o, new Float32Array(M * 3)], false));
          assert.ok(bitEqual(same, out), `${label}: 16-bit storage vs widened float32`);
          gpu!.packedLinearFree(widePack);
        }
      }
      if (dtype === DType.F16) {
        // F16 subnormals are normal float32 values: widened exactly, not flushed.
        const subnormal = Uint16Array.of(0x0001, 0x83ff, 0x3c00, 0x0200);
        const tiny = onGpu(1, (o) => gpu!.linearPacked(gpu!.packLinear([{ w: subnormal, n: 1 }], dtype, 4, MatmulPrecision.F32), Float32Array.of(2 ** 20, 2 ** 20, 0, 2 ** 20), 1, [o], false));
        const wf = widen(subnormal, dtype);
        assert.equal(tiny[0], Math.fround(Math.fround(wf[0]! * 2 ** 20 + wf[1]! * 2 ** 20) + wf[3]! * 2 ** 20), `${label}: subnormal F16 weights widen exactly`);
      }
      gpu!.packedLinearFree(pack);
      gpu!.packedLinearFree(pack);
    }
  });

  test('gate/up pack: silu(x . gate) * (x . up), the bits of two packs + siluMul', () => {
    const rand = rng(6);
    const [M, I, K] = [5, 37, 29];
    const gate = randomWeights(I * K, DType.F32, rand);
    const up = randomWeights(I * K, DType.F32, rand);
    const x = randomF32(M * K, rand);
    const fused = onGpu(M * I, (o) => gpu!.linearPacked(gpu!.packGateUp(gate, up, DType.F32, I, K, MatmulPrecision.F32), x, M, [o], false));
    const g = onGpu(M * I, (o) => gpu!.linearPacked(gpu!.packLinear([{ w: gate, n: I }], DType.F32, K, MatmulPrecision.F32), x, M, [o], false));
    const u = onGpu(M * I, (o) => gpu!.linearPacked(gpu!.packLinear([{ w: up, n: I }], DType.F32, K, MatmulPrecision.F32), x, M, [o], false));
    const two = onGpu(M * I, (o) => gpu!.siluMul(o, g, u, M, I, I, I));
    assert.ok(bitEqual(fused, two));
    const want = new Float32Array(M * I);
    cpu.linearPacked(cpu.packGateUp(gate, up, DType.F32, I, K, MatmulPrecision.F32), x, M, [want], false);
    assert.equal(closeTo(fused, want, 1e-5, 1e-6), null);
  });

  describe('float linear kernels: the lane order of lanes.ts, decode kernel = tiled kernel', () => {
    const f32 = new Float32Array(1);
    const u32 = new Uint32Array(f32.buffer);
    /** The float32 next to x (a float32) toward +infinity (up) or -infinity. */
    const nextF32 = (x: number, up: boolean): number => {
      if (x === 0) return up ? 2 ** -149 : -(2 ** -149);
      f32[0] = x;
      u32[0] += (x > 0) === up ? 1 : -1;
      return f32[0]!;
    };
    /**
     * Float32 a * b + c rounded once (a fused multiply-add). The product is exact in float64; the
     * sum's float64 rounding error comes back exactly (two-sum) and decides the one case where
     * rounding the float64 sum to float32 would round twice: a sum exactly halfway between two
     * float32 values.
     */
    const fmaFused = (a: number, b: number, c: number): number => {
      const p = a * b;
      const s = p + c;
      const bb = s - p;
      const err = p - (s - bb) + (c - bb);
      const r = Math.fround(s);
      if (err === 0 || r === s) return r;
      const other = nextF32(r, s > r);
      if (s !== (r + other) / 2) return r;
      return (err > 0) === (other > r) ? other : r;
    };
    /** WGSL lets fma round the product first: the unfused form. */
    const fmaUnfused = (a: number, b: number, c: number): number => Math.fround(Math.fround(a * b) + c);
    /** out = the lanes.ts order over float32 x and widened weights, with fma as given. */
    const laneOrder = (fma: typeof fmaFused, x: Float32Array, wf: Float64Array, bias: Float32Array | null, acc: Float32Array | null, M: number, N: number, K: number): Float32Array => {
      const out = new Float32Array(M * N);
      const chunks = Math.ceil(K / CHUNK);
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < N; n++) {
          const lanes = new Float64Array(LANES);
          for (let l = 0; l < LANES; l++) {
            let a = 0;
            for (let c = l; c < chunks; c += LANES) {
              for (let k = c * CHUNK; k < (c + 1) * CHUNK; k++) a = k < K ? fma(x[m * K + k]!, wf[n * K + k]!, a) : fma(0, 0, a);
            }
            lanes[l] = a;
          }
          for (let s = 1; s < LANES; s *= 2) for (let l = 0; l < LANES; l += 2 * s) lanes[l] = Math.fround(lanes[l]! + lanes[l + s]!);
          let r = lanes[0]!;
          if (bias) r = Math.fround(r + bias[n]!);
          if (acc) r = Math.fround(acc[m * N + n]! + r);
          out[m * N + n] = r;
        }
      }
      return out;
    };

    // K: below one chunk, odd, around the tiled kernel's step of 64 (odd multiples, one past);
    // N: one, below and past the decode kernel's 16 columns and the tile's 32; M: one, the last
    // decode size, the first tiled, the tile's 16 rows and past them.
    const shapes: Array<[number, number, number, DType]> = [
      [1, 1, 1, DType.F32],
      [LINEAR_ROWS_MAX, 17, 3, DType.F32],
      [LINEAR_ROWS_MAX + 1, 33, 63, DType.F16],
      [LINEAR_TILE.rows, 15, 64, DType.BF16],
      [LINEAR_TILE.rows + 1, 50, 65, DType.F32],
      [3, 31, 3 * 64, DType.F16],
      [2 * LINEAR_TILE.rows + 1, 5, 5 * 64 + 2, DType.F32],
      [LINEAR_ROWS_MAX + 3, 40, 449, DType.BF16],
    ];
    const sizes = (M: number, N: number, K: number, dtype: DType): string => `M${M} N${N} K${K} dtype ${dtype}`;

    test('every output is the lane order exactly (fused or unfused fma throughout), bias and accumulate included', () => {
      const rand = rng(31);
      for (const [M, N, K, dtype] of shapes) {
        const w = randomWeights(N * K, dtype, rand);
        const wf = widen(w, dtype);
        const x = randomF32(M * K, rand);
        const bias = randomF32(N, rand);
        const acc = randomF32(M * N, rand);
        const pack = gpu!.packLinear([{ w, n: N, bias }], dtype, K, MatmulPrecision.F32);
        const got = Float32Array.from(acc);
        gpu!.linearPacked(pack, x, M, [got], true);
        gpu!.toHost(got);
        const fused = laneOrder(fmaFused, x, wf, bias, acc, M, N, K);
        const unfused = laneOrder(fmaUnfused, x, wf, bias, acc, M, N, K);
        assert.ok(bitEqual(got, fused) || bitEqual(got, unfused), `${sizes(M, N, K, dtype)}: not the lane order (${closeTo(got, fused, 0)})`);
        // And the order is a good float32 sum: near the float64 product.
        const ref = linearRef(x, w, dtype, bias, M, N, K, MatmulPrecision.F32);
        const want = Float64Array.from(ref.out, (v, i) => v + acc[i]!);
        assert.equal(closeTo(got, want, 1, 0, Float64Array.from(ref.absSum, (a, i) => (a + Math.abs(acc[i]!)) * 2e-6 + 1e-7)), null, sizes(M, N, K, dtype));
        gpu!.packedLinearFree(pack);
      }
    });

    test('the decode kernel (up to LINEAR_ROWS_MAX rows) gives the tiled kernel\'s bits on the same rows', () => {
      const rand = rng(32);
      for (const [M0, N, K, dtype] of shapes) {
        // At least one tiled batch, then the same rows through the decode kernel in pieces of
        // 1 and of LINEAR_ROWS_MAX, from the same input arrays (views).
        const M = Math.max(M0, LINEAR_ROWS_MAX + 1);
        // (BF16 precision, which rounds x to BF16 as it is read, takes BF16 weights.)
        for (const precision of dtype === DType.BF16 ? [MatmulPrecision.F32, MatmulPrecision.BF16] : [MatmulPrecision.F32]) {
          const label = `${sizes(M, N, K, dtype)} precision ${precision}`;
          const pack = gpu!.packLinear([{ w: randomWeights(N * K, dtype, rand), n: N, bias: randomF32(N, rand) }], dtype, K, precision);
          const x = randomF32(M * K, rand, 3);
          const tiled = onGpu(M * N, (o) => gpu!.linearPacked(pack, x, M, [o], false));
          for (const piece of [1, LINEAR_ROWS_MAX]) {
            for (let m = 0; m < M; m += piece) {
              const rows = Math.min(piece, M - m);
              const got = onGpu(rows * N, (o) => gpu!.linearPacked(pack, x.subarray(m * K, (m + rows) * K), rows, [o], false));
              assert.ok(bitEqual(got, tiled.subarray(m * N, (m + rows) * N)), `${label}: rows ${m}..${m + rows - 1} through the decode kernel differ from the tiled kernel`);
            }
          }
          gpu!.packedLinearFree(pack);
        }
      }
    });

    test('every kernel variant gives the same bits: float linear and RMSNorm serial, or by cooperating lanes (decode), tiles (prefill) and a workgroup per row; lane trees shuffled within subgroups or through workgroup memory (float and quantized)', () => {
      if (gpu!.adapter.features.includes('subgroups')) assert.equal(gpu!.adapter.subgroups, true, 'the adapter has subgroups but the kernels do not use them');
      // The shared backend's float linear ops and RMSNorm run serially on a fallback adapter
      // (SwiftShader), by lanes, tiles and workgroups elsewhere: a second one takes the other
      // kernels, a third the lanes without subgroups.
      const variants = [
        { name: 'default', be: gpu! },
        { name: `serial ${!gpu!.adapter.fallback}`, be: createWebGpuBackend(2, { serial: !gpu!.adapter.fallback }) },
        { name: 'lanes without subgroups', be: createWebGpuBackend(2, { serial: false, subgroups: false }) },
      ];
      assert.equal(variants[2]!.be.adapter.subgroups, false);
      const rand = rng(33);
      const same = (label: string, run: (be: NonNullable<typeof gpu>) => Float32Array): void => {
        const want = run(variants[0]!.be);
        for (const v of variants.slice(1)) assert.ok(bitEqual(run(v.be), want), `${label}: ${v.name} differs from the default kernels`);
      };
      for (const [M, N, K, dtype] of [...shapes, [1, 300, 2 * 64 * LANES + 3, DType.F32] as const]) {
        const w = randomWeights(N * K, dtype, rand);
        const x = randomF32(M * K, rand);
        same(sizes(M, N, K, dtype), (be) => {
          const pack = be.packLinear([{ w, n: N }], dtype, K, MatmulPrecision.F32);
          const out = onGpuOf(be, M * N, (o) => be.linearPacked(pack, x, M, [o], false));
          be.packedLinearFree(pack);
          return out;
        });
      }
      // RMSNorm: one workgroup per row, or one invocation (serial); rows shorter and longer than 256.
      for (const [M, H] of [[1, 64], [70, 96], [3, 1000]] as const) {
        const x = randomF32(M * H, rand);
        const weight = randomF32(H, rand);
        same(`rmsnorm M${M} H${H}`, (be) => onGpuOf(be, M * H, (o) => be.rmsnorm(o, x, weight, M, H, 1e-5)));
      }
      // Quantized: 2 and 64 lanes (K = 64, 2304), the decode tile and the prefill tile.
      for (const [type, K] of [[GgmlType.Q8_0, 64], [GgmlType.Q4_K, 2304], [GgmlType.Q6_K, 256]] as const) {
        for (const [M, N] of [[1, 37], [LINEAR_ROWS_MAX + 1, 19], [33, 3]] as const) {
          const w = randomQuant(type, N, K, type * 100 + M);
          const x = randomF32(M * K, rand);
          same(`${ggmlTypeName(type)} M${M} N${N} K${K}`, (be) => {
            const pack = be.packLinearQuant([{ w, type, n: N }], K);
            const out = onGpuOf(be, M * N, (o) => be.linearPacked(pack, x, M, [o], false));
            be.packedLinearFree(pack);
            return out;
          });
        }
      }
    });
  });

  describe('paged KV cache and attention', () => {
    // A backend with the serial kernels where the shared one has the others, and the reverse.
    let otherBackend: NonNullable<typeof gpu> | null = null;
    const otherKernels = (): NonNullable<typeof gpu> => (otherBackend ??= createWebGpuBackend(2, { serial: !gpu!.adapter.fallback }));
    interface Shape {
      nH: number;
      nKv: number;
      D: number;
      bs: number;
      dtype: DType;
      window?: number;
      softcap?: number;
    }
    const shapes: Array<Shape & { name: string }> = [
      { name: 'GQA 4/2 hd8 bs4 f32', nH: 4, nKv: 2, D: 8, bs: 4, dtype: DType.F32 },
      { name: 'MQA 6/1 hd40 bs1 f32', nH: 6, nKv: 1, D: 40, bs: 1, dtype: DType.F32 },
      { name: 'MHA 2/2 hd130 bs16 bf16', nH: 2, nKv: 2, D: 130, bs: 16, dtype: DType.BF16 },
      { name: 'GQA 8/2 hd64 bs16 f32', nH: 8, nKv: 2, D: 64, bs: 16, dtype: DType.F32 },
      { name: 'GQA 4/2 hd24 bs4 window 8 softcap 1.5', nH: 4, nKv: 2, D: 24, bs: 4, dtype: DType.F32, window: 8, softcap: 1.5 },
      { name: 'MQA 4/1 hd32 bs16 window 70 (across tiles)', nH: 4, nKv: 1, D: 32, bs: 16, dtype: DType.F32, window: 70 },
    ];
    for (const s of shapes) {
      test(`${s.name}: prefill, chunked prefill and decode against the reference and the CPU; batched = solo; shuffled blocks; copied blocks`, () => {
        const rand = rng(s.D * 7 + s.bs);
        const kvw = s.nKv * s.D;
        const qw = s.nH * s.D;
        // Lengths: one token, a block boundary, across the attention kernel's tiles of 64.
        const lens = [1, 2 * s.bs, 65, 130 + 1];
        const seqs = lens.map((len) => ({ len, k: randomF32(len * kvw, rand), v: randomF32(len * kvw, rand), q: randomF32(len * qw, rand, 2) }));
        const perSeq = lens.map((l) => Math.ceil(l / s.bs));
        const numBlocks = perSeq.reduce((a, b) => a + b, 0) + 4;
        const maxBlocks = Math.max(...perSeq) + 1;
        // Shuffled physical blocks.
        const ids = Array.from({ length: numBlocks }, (_, i) => i).sort(() => rand() - 0.5);
        const tables = new Int32Array(lens.length * maxBlocks).fill(-3);
        let next = 0;
        lens.forEach((_, si) => {
          for (let b = 0; b < perSeq[si]!; b++) tables[si * maxBlocks + b] = ids[next++]!;
        });
        const make = (be: typeof cpu | NonNullable<typeof gpu>): KvCacheHandle => {
          const cache = be.kvCacheCreate(2, numBlocks, s.bs, s.nKv, s.D, s.dtype);
          seqs.forEach((sq, si) => {
            // Write in two uneven pieces, with a skipped slot.
            for (const [a, b] of [[0, Math.ceil(sq.len / 3)], [Math.ceil(sq.len / 3), sq.len]] as const) {
              const n = b - a;
              const slots = new Int32Array(n + 1).fill(-1);
              const k = new Float32Array((n + 1) * kvw).fill(1e30);
              const v = new Float32Array((n + 1) * kvw).fill(1e30);
              for (let i = 0; i < n; i++) {
                const p = a + i;
                slots[i + 1] = tables[si * maxBlocks + Math.floor(p / s.bs)]! * s.bs + (p % s.bs);
                k.set(sq.k.subarray(p * kvw, (p + 1) * kvw), (i + 1) * kvw);
                v.set(sq.v.subarray(p * kvw, (p + 1) * kvw), (i + 1) * kvw);
              }
              be.kvCacheWrite(cache, 1, k, v, slots, n + 1);
            }
          });
          return cache;
        };
        const attend = (be: typeof cpu | NonNullable<typeof gpu>, cache: KvCacheHandle, which: number[], qLens: number[], tbl = tables): Float32Array => {
          const total = qLens.reduce((a, b) => a + b, 0);
          const q = new Float32Array(total * qw);
          const qsl = new Int32Array(which.length + 1);
          const sl = new Int32Array(which.length);
          const t = new Int32Array(which.length * maxBlocks);
          let off = 0;
          which.forEach((si, i) => {
            const sq = seqs[si]!;
            q.set(sq.q.subarray((sq.len - qLens[i]!) * qw, sq.len * qw), off * qw);
            qsl[i] = off;
            off += qLens[i]!;
            sl[i] = sq.len;
            t.set(tbl.subarray(si * maxBlocks, (si + 1) * maxBlocks), i * maxBlocks);
          });
          qsl[which.length] = off;
          const out = new Float32Array(total * qw).fill(NaN);
          be.pagedAttention(out, q, cache, 1, t, maxBlocks, qsl, sl, which.length, s.nH, s.nKv, s.D, 1 / Math.sqrt(s.D), s.window ?? 0, s.softcap ?? 0);
          be.toHost(out);
          return out;
        };
        const all = lens.map((_, i) => i);
        const gCache = make(gpu!);
        const cCache = make(cpu);
        const full = attend(gpu!, gCache, all, lens);
        const fullCpu = attend(cpu, cCache, all, lens);
        const round = (a: Float32Array): Float32Array | Float64Array => (s.dtype === DType.BF16 ? Float64Array.from(a, roundBf16) : a);
        let off = 0;
        // The float64 reference knows no window or soft-capping; the CPU backend (tested against it) does.
        if (!s.window && !s.softcap) seqs.forEach((sq, i) => {
          const ref = attentionRef(sq.q, round(sq.k), round(sq.v), sq.len, sq.len, s.nH, s.nKv, s.D, 1 / Math.sqrt(s.D));
          assert.equal(closeTo(full.subarray(off * qw, (off + sq.len) * qw), ref, 1e-4, 2e-5), null, `seq ${i} vs reference`);
          off += sq.len;
        });
        assert.equal(closeTo(full, fullCpu, 1e-4, 2e-5), null, 'vs CPU');
        // The other kernel (one workgroup per row, or serial on a fallback adapter): the same bits.
        const other = otherKernels();
        const oCache = make(other);
        assert.ok(bitEqual(attend(other, oCache, all, lens), full), `the ${gpu!.adapter.fallback ? 'workgroup' : 'serial'} attention kernel`);
        other.kvCacheFree(oCache);

        const offsets = [0];
        for (const l of lens) offsets.push(offsets[offsets.length - 1]! + l);
        const rows = (i: number, n: number): Float32Array => full.subarray((offsets[i + 1]! - n) * qw, offsets[i + 1]! * qw);
        // Each sequence alone, a reversed batch, chunked prefill (last 40%), decode: the same bits.
        all.forEach((i) => assert.ok(bitEqual(attend(gpu!, gCache, [i], [lens[i]!]), rows(i, lens[i]!)), `seq ${i} alone`));
        const rev = attend(gpu!, gCache, [3, 2, 1, 0], [lens[3]!, lens[2]!, lens[1]!, lens[0]!]);
        assert.ok(bitEqual(rev.subarray(0, lens[3]! * qw), rows(3, lens[3]!)), 'reversed batch');
        const tails = lens.map((l) => Math.max(1, Math.ceil(l * 0.4)));
        const chunked = attend(gpu!, gCache, all, tails);
        let o = 0;
        all.forEach((i) => {
          assert.ok(bitEqual(chunked.subarray(o * qw, (o + tails[i]!) * qw), rows(i, tails[i]!)), `chunked prefill seq ${i}`);
          o += tails[i]!;
        });
        const decode = attend(gpu!, gCache, all, lens.map(() => 1));
        all.forEach((i) => assert.ok(bitEqual(decode.subarray(i * qw, (i + 1) * qw), rows(i, 1)), `decode seq ${i}`));

        // Copy-on-write: copy sequence 3's blocks to the spare blocks and read through the copies.
        const spare = ids.slice(next, next + Math.min(4, perSeq[3]!));
        const src = Int32Array.from(spare, (_, b) => tables[3 * maxBlocks + b]!);
        gpu!.kvCacheCopyBlocks(gCache, src, Int32Array.from(spare));
        const moved = Int32Array.from(tables);
        spare.forEach((blk, b) => (moved[3 * maxBlocks + b] = blk));
        assert.ok(bitEqual(attend(gpu!, gCache, [3], [lens[3]!], moved), rows(3, lens[3]!)), 'copied blocks');
        assert.throws(() => gpu!.kvCacheCopyBlocks(gCache, Int32Array.of(numBlocks), Int32Array.of(0)), RangeError);
        assert.throws(() => gpu!.kvCacheWrite(gCache, 0, new Float32Array(kvw), new Float32Array(kvw), Int32Array.of(numBlocks * s.bs), 1), RangeError);
        gpu!.kvCacheFree(gCache);
        cpu.kvCacheFree(cCache);
      });
    }
  });

  test('the default KV pool: the CPU default, capped so each slot (one GPU buffer) fits the largest binding', () => {
    const lim = Math.min(gpu!.adapter.limits['maxStorageBufferBindingSize']!, gpu!.adapter.limits['maxBufferSize']!);
    for (const slots of [1, 3]) {
      const blockBytes = gpu!.kvCacheBlockBytes(slots, 16, 8, 96, DType.F32);
      const perSlot = blockBytes / slots;
      const capped = defaultKvBudget(gpu!, blockBytes, slots, 1e15);
      assert.equal(capped, Math.floor(lim / perSlot) * blockBytes, `${slots} slots`);
      // What that budget allocates binds: a slot's buffer is at most the limit, one block more is not.
      assert.ok((capped / blockBytes) * perSlot <= lim && (capped / blockBytes + 1) * perSlot > lim);
      assert.equal(defaultKvBudget(gpu!, blockBytes, slots, 1 << 20), 1 << 20, 'a smaller CPU default stays');
      assert.equal(defaultKvBudget(cpu, blockBytes, slots, 1e15), 1e15, 'no cap on the CPU');
    }
  });

  describe('quantized GGML weights, decoded inside the kernels', () => {
    // Row lengths: one unit of 32, fewer units than the kernel's 64 lanes, more (lanes wrap).
    const kFor = (type: GgmlType): number[] => (typeInfo(type).blockSize === 32 ? [32, 96, 2080] : [256, 768, 2304]);
    for (const type of GPU_QUANT_TYPES) {
      const name = ggmlTypeName(type);
      test(`${name}: linear against the float64 product of the dequantized weights; bias, accumulate; rows alone = batched; lookup = dequantized rows`, () => {
        for (const [ki, K] of kFor(type).entries()) {
          // Rows: one (the decode tile of 8), 9 and 17 (the prefill tile of 32), 33 (two of those);
          // columns: one, odd, past 64.
          for (const [M, N] of [[1, 1], [9, 67], [17, 5], [33, 3]] as const) {
            const seed = type * 1000 + ki * 10 + M;
            const label = `${name} M${M} N${N} K${K}`;
            const w = randomQuant(type, N, K, seed);
            const wf = dequantizeRef(type, w, N, K);
            const rand = rng(seed);
            const x = randomF32(M * K, rand);
            const bias = randomF32(N, rand);
            const pack = gpu!.packLinearQuant([{ w, type, n: N, bias }], K);
            const out = onGpu(M * N, (o) => gpu!.linearPacked(pack, x, M, [o], false));
            const ref = matmulF64(wf, x, M, N, K);
            const absSum = new Float64Array(M * N);
            for (let m = 0; m < M; m++) {
              for (let n = 0; n < N; n++) {
                ref[m * N + n] += bias[n]!;
                let a = Math.abs(bias[n]!);
                for (let k = 0; k < K; k++) a += Math.abs(wf[n * K + k]! * x[m * K + k]!);
                absSum[m * N + n] = a;
              }
            }
            assert.equal(closeTo(out, ref, 1, 0, Float64Array.from(absSum, (a) => a * 4e-6 + 1e-30)), null, label);
            const acc = randomF32(M * N, rand);
            const accGpu = Float32Array.from(acc);
            gpu!.linearPacked(pack, x, M, [accGpu], true);
            gpu!.toHost(accGpu);
            assert.ok(bitEqual(accGpu, Float32Array.from(acc, (a, i) => a + out[i]!)), `${label}: accumulate`);
            for (const m of new Set([0, M - 1, Math.min(M - 1, 8), Math.min(M - 1, 32)])) {
              const alone = onGpu(N, (o) => gpu!.linearPacked(pack, x.subarray(m * K, (m + 1) * K), 1, [o], false));
              assert.ok(bitEqual(alone, out.subarray(m * N, (m + 1) * N)), `${label}: row ${m} alone differs from the batch`);
            }
            gpu!.packedLinearFree(pack);
          }
          // The lookup decodes as ggml does (float32 a * q - m; a GPU may fuse that into one fma:
          // half an ulp of a * q at most).
          const vocab = 13;
          const table = randomQuant(type, vocab, K, type + K);
          const ids = Int32Array.of(12, 0, 5, 5);
          const got = onGpu(ids.length * K, (o) => gpu!.embeddingQuant(o, table, type, ids, K));
          const deq = cpu.dequantizeRows(type, table, vocab, K);
          ids.forEach((id, t) => {
            const row = deq.subarray(id * K, (id + 1) * K);
            const tol = Math.max(...Array.from(row, Math.abs)) * 2 ** -22;
            assert.equal(closeTo(got.subarray(t * K, (t + 1) * K), row, 0, tol), null, `${name} K${K}: row ${id}`);
          });
          // The same rows from a one-part pack of the table (a tied head's): the same bits.
          const tablePack = gpu!.packLinearQuant([{ w: table, type, n: vocab }], K);
          const fromPack = onGpu(ids.length * K, (o) => gpu!.embeddingPacked(o, tablePack, ids));
          assert.ok(bitEqual(fromPack, got), `${name} K${K}: embeddingPacked`);
          assert.throws(() => gpu!.embeddingPacked(new Float32Array(K), tablePack, Int32Array.of(vocab)), /outside the pack's rows/);
          gpu!.packedLinearFree(tablePack);
        }
      });
    }

    test('a Q4_K_M-style pack (Q4_K and Q6_K parts) and a quantized gate/up pair: the bits of separate packs + siluMul', () => {
      const [M, I, K] = [3, 21, 512];
      const rand = rng(77);
      const x = randomF32(M * K, rand);
      const gate = randomQuant(GgmlType.Q4_K, I, K, 1);
      const up = randomQuant(GgmlType.Q6_K, I, K, 2);
      const mixed = gpu!.packLinearQuant([{ w: gate, type: GgmlType.Q4_K, n: I }, { w: up, type: GgmlType.Q6_K, n: I }], K);
      const g = new Float32Array(M * I);
      const u = new Float32Array(M * I);
      gpu!.linearPacked(mixed, x, M, [g, u], false);
      gpu!.toHost(g);
      gpu!.toHost(u);
      const alone = (w: Uint8Array, type: GgmlType): Float32Array => onGpu(M * I, (o) => gpu!.linearPacked(gpu!.packLinearQuant([{ w, type, n: I }], K), x, M, [o], false));
      assert.ok(bitEqual(g, alone(gate, GgmlType.Q4_K)) && bitEqual(u, alone(up, GgmlType.Q6_K)), 'a part of a mixed pack differs from its own pack');
      const fused = onGpu(M * I, (o) => gpu!.linearPacked(gpu!.packGateUpQuant(gate, GgmlType.Q4_K, up, GgmlType.Q6_K, I, K), x, M, [o], false));
      const two = onGpu(M * I, (o) => gpu!.siluMul(o, g, u, M, I, I, I));
      assert.ok(bitEqual(fused, two), 'gate/up pack vs two packs + siluMul');
      // And near the CPU's integer kernels (activations rounded to 14 bits there; random blocks
      // make large weights whose products cancel, so the bound is relative to the largest output).
      const want = new Float32Array(M * I);
      cpu.linearPacked(cpu.packGateUpQuant(gate, GgmlType.Q4_K, up, GgmlType.Q6_K, I, K), x, M, [want], false);
      assert.equal(closeTo(fused, want, 0, 1e-3 * Math.max(...Array.from(want, Math.abs))), null);
    });

    test('types without GPU kernels and malformed blocks are refused with a clear error', () => {
      // Every type the CPU runs has GPU kernels; IQ2_XXS has none anywhere.
      assert.deepEqual([...GPU_QUANT_TYPES].sort(), [...SUPPORTED_QUANT_TYPES].sort());
      const iq2 = new Uint8Array(66);
      assert.throws(() => gpu!.packLinearQuant([{ w: iq2, type: GgmlType.IQ2_XXS, n: 1 }], 256), /no kernels for IQ2_XXS weights \(it runs Q4_0, Q4_1, /);
      assert.throws(() => gpu!.embeddingQuant(new Float32Array(256), iq2, GgmlType.IQ2_XXS, Int32Array.of(0), 256), /no kernels for IQ2_XXS/);
      assert.throws(() => gpu!.packLinearQuant([{ w: new Uint8Array(33), type: GgmlType.Q8_0, n: 1 }], 32), /33 bytes/);
      assert.throws(() => gpu!.packLinearQuant([{ w: new Uint8Array(34), type: GgmlType.Q8_0, n: 1 }], 48), /not a multiple/);
      assert.throws(() => gpu!.embeddingQuant(new Float32Array(32), new Uint8Array(34), GgmlType.Q8_0, Int32Array.of(1), 32), /outside the vocabulary/);
    });
  });
});
