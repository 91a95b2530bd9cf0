/**
 * Native backend ops (everything but attention) against the TypeScript references in
 * test/reference/ops.ts, on every kernel family this CPU supports, plus the bit-for-bit batch
 * and thread invariance of linear, and argument validation.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { DType, MatmulPrecision } from '../src/backend/backend.js';
import { Isa, cpuBackend } from '../src/backend/native.js';
import {
  bitEqual,
  bf16ToF32,
  closeTo,
  embeddingRef,
  f16ToF32,
  linearRef,
  randomF32,
  randomWeights,
  rmsnormRef,
  rng,
  ropeRef,
  siluMulRef,
} from './reference/ops.js';
import { detectedIsa, forEachIsa } from './helpers/isa.js';

const nb = cpuBackend();
const initialThreads = nb.getThreads();

after(() => {
  nb.setIsa(detectedIsa);
  nb.setThreads(initialThreads);
});

describe('runtime', () => {
  test('cpuInfo reports features and the active ISA; setIsa lowers it and refuses what the CPU lacks', () => {
    const info = nb.cpuInfo();
    for (const key of ['avx2', 'fma', 'f16c', 'avx512f', 'avx512bw', 'avx512bf16', 'amxBf16'] as const) assert.equal(typeof info[key], 'boolean');
    // PAGEWISE_ISA (native/common.h) may start a process on a lower family.
    if (!process.env['PAGEWISE_ISA']) assert.equal(info.activeIsa, info.detectedIsa);
    if (info.avx512bf16 && info.avx512bw) assert.equal(info.detectedIsa, info.amxBf16 ? Isa.AmxBf16 : Isa.Avx512Bf16);
    nb.setIsa(Isa.Scalar);
    assert.equal(nb.cpuInfo().activeIsa, Isa.Scalar);
    nb.setIsa(detectedIsa);
    if (detectedIsa < Isa.AmxBf16) assert.throws(() => nb.setIsa(detectedIsa + 1), RangeError);
    assert.throws(() => nb.setIsa(7 as Isa), RangeError);
    assert.throws(() => nb.setIsa(-1 as Isa), RangeError);
  });

  test('PAGEWISE_ISA caps the family a process starts with; an unknown name is reported and ignored', () => {
    const backend = fileURLToPath(new URL('../src/backend/native.ts', import.meta.url));
    const activeIn = (value: string): { isa: number; stderr: string } => {
      const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', `import(${JSON.stringify(backend)}).then((m) => console.log(m.cpuBackend().cpuInfo().activeIsa))`], {
        env: { ...process.env, PAGEWISE_ISA: value },
        encoding: 'utf8',
      });
      assert.equal(r.status, 0, r.stderr);
      return { isa: Number(r.stdout.trim()), stderr: r.stderr };
    };
    assert.equal(activeIn('scalar').isa, Isa.Scalar);
    assert.equal(activeIn('amxbf16').isa, detectedIsa, 'never above what the CPU has');
    if (detectedIsa === Isa.Avx512Bf16 || detectedIsa === Isa.AmxBf16) assert.equal(activeIn('avx512bf16').isa, Isa.Avx512Bf16);
    const bad = activeIn('avx9000');
    assert.equal(bad.isa, detectedIsa);
    assert.match(bad.stderr, /PAGEWISE_ISA=avx9000 is not a kernel family/);
  });

  test('setThreads / getThreads', () => {
    assert.ok(nb.getThreads() >= 1);
    nb.setThreads(3);
    assert.equal(nb.getThreads(), 3);
    nb.setThreads(1);
    assert.equal(nb.getThreads(), 1);
    nb.setThreads(initialThreads);
    assert.throws(() => nb.setThreads(0), RangeError);
    assert.throws(() => nb.setThreads(1.5), TypeError);
  });

  test('mmapFile maps a file read-only; empty file gives an empty buffer; errors name the path', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pagewise-mmap-'));
    try {
      const bytes = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7) & 255);
      writeFileSync(join(dir, 'a.bin'), bytes);
      writeFileSync(join(dir, 'empty.bin'), new Uint8Array(0));
      const ab = nb.mmapFile(join(dir, 'a.bin'));
      assert.equal(ab.byteLength, 1000);
      assert.deepEqual(new Uint8Array(ab), bytes);
      // Typed views at odd offsets work (safetensors data need not be aligned).
      assert.equal(new Uint16Array(ab, 2, 3)[0], bytes[2] | (bytes[3] << 8));
      assert.equal(nb.mmapFile(join(dir, 'empty.bin')).byteLength, 0);
      const missing = join(dir, 'missing.bin');
      assert.throws(() => nb.mmapFile(missing), (e: Error) => e.message.includes(missing));
      assert.throws(() => nb.mmapFile(dir), /not a regular file/);
      assert.throws(() => (nb.mmapFile as unknown as (p: unknown) => void)(42), TypeError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('releaseFreeMemory returns what an exited thread freed to the OS (glibc keeps its arena resident)', async () => {
    const rssMiB = (): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) / 1024;
    // ~60 MB of small typed arrays (below malloc's mmap threshold: they live in the thread's arena).
    const w = new Worker(
      `const keep = [];
       for (let i = 0; i < 4000; i++) { const b = new Uint8Array(16000 + (i % 7) * 1000); b.fill(1); keep.push(b); }
       require('node:worker_threads').parentPort.postMessage(keep.length);`,
      { eval: true },
    );
    await new Promise((r) => w.once('message', r));
    await w.terminate();
    const glibc = Boolean((process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime);
    const before = glibc ? rssMiB() : 0; // glibc: Linux, with /proc
    assert.equal(nb.releaseFreeMemory(), glibc);
    // Measured: 60-64 MiB released of the worker's ~60 MB; without the call none of it goes.
    if (glibc) assert.ok(before - rssMiB() > 30, `released ${(before - rssMiB()).toFixed(1)} MiB`);
  });

  test('releaseMappedPages drops file pages without changing what a mapping reads; other memory is untouched', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pagewise-mmap-'));
    try {
      const bytes = Uint8Array.from({ length: 3 * 4096 + 17 }, (_, i) => (i * 13 + 5) & 255);
      writeFileSync(join(dir, 'w.bin'), bytes);
      const mapped = new Uint8Array(nb.mmapFile(join(dir, 'w.bin')));
      assert.deepEqual(mapped, bytes); // every page resident now
      const heap = nb.allocAligned(8192);
      new Uint8Array(heap).fill(7);
      assert.ok(nb.releaseMappedPages() >= bytes.length);
      assert.deepEqual(mapped, bytes); // faulted back in from the file
      assert.ok(new Uint8Array(heap).every((b) => b === 7)); // not a file mapping: never advised
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('releaseWorkingMemory drops the pages of working arrays and of the ops scratch; ops give the same bits after', () => {
    const rand = rng(9);
    // BF16 precision rounds the activations into a scratch of M * K values (2 MiB here, on every
    // family that rounds: the AMX one tiles them into its own).
    const [M, N, K] = [512, 48, 2048];
    const x = randomF32(M * K, rand);
    const w = randomWeights(N * K, DType.BF16, rand);
    const linear = (): Float32Array => {
      const out = new Float32Array(M * N);
      nb.linear(out, x, w, DType.BF16, null, M, N, K, MatmulPrecision.BF16);
      return out;
    };
    const before = linear();
    const work = new Float32Array(16 * 1024).fill(1);
    const released = nb.releaseWorkingMemory([work]);
    const linux = process.platform === 'linux';
    if (linux) {
      // The array's whole pages read zeros; the scratch's 2 MiB was advised too.
      assert.ok(released >= 2 * 1024 * 1024 + 14 * 4096, `released ${released} bytes`);
      const zeros = work.reduce((n, v) => n + (v === 0 ? 1 : 0), 0);
      assert.ok(zeros >= 14 * 1024 && zeros % 1024 === 0, `${zeros} zeroed values`);
    } else {
      assert.equal(released, 0);
    }
    assert.ok(bitEqual(linear(), before));
    assert.throws(() => nb.releaseWorkingMemory([work, [1, 2]] as unknown as Float32Array[]), /element 1/);
  });

  test('allocAligned returns zeroed memory', () => {
    const small = nb.allocAligned(100);
    assert.equal(small.byteLength, 100);
    assert.ok(new Uint8Array(small).every((b) => b === 0));
    const big = nb.allocAligned(3 << 20);
    assert.equal(big.byteLength, 3 << 20);
    const f = new Float32Array(big);
    assert.ok(f.every((x) => x === 0));
    f[f.length - 1] = 1;
    assert.equal(nb.allocAligned(0).byteLength, 0);
    assert.throws(() => nb.allocAligned(-1), RangeError);
  });
});

describe('machine limits', () => {
  test('benchMemoryBandwidth and benchPeakFlops return plausible numbers', () => {
    const bw = nb.benchMemoryBandwidth(16 << 20, 1);
    assert.ok(Number.isFinite(bw) && bw > 0.1, `bandwidth ${bw}`);
    const f = nb.benchPeakFlops();
    assert.ok(Number.isFinite(f.f32Gflops) && f.f32Gflops > 0.1, `f32 ${f.f32Gflops}`);
    if (nb.cpuInfo().avx512bf16) assert.ok(f.bf16Gflops > f.f32Gflops / 4, `bf16 ${f.bf16Gflops}`);
    else assert.equal(f.bf16Gflops, 0);
    const f8 = nb.benchPeakFlops(8);
    assert.ok(Number.isFinite(f8.f32Gflops) && f8.f32Gflops > 0.1, `f32 with 8 accumulators ${f8.f32Gflops}`);
    assert.throws(() => nb.benchPeakFlops(3), RangeError);
    assert.throws(() => nb.benchPeakFlops(1.5), TypeError);
    assert.throws(() => nb.benchMemoryBandwidth(-5, 1), RangeError);
    assert.throws(() => nb.benchMemoryBandwidth(1 << 20, 0), RangeError);
  });
});

describe('embedding', () => {
  test('widens F32 / F16 / BF16 rows exactly', () => {
    const rand = rng(1);
    forEachIsa((isa) => {
      for (const dtype of [DType.F32, DType.F16, DType.BF16]) {
        for (const hidden of [1, 17, 64, 100]) {
          const vocab = 11;
          const table = randomWeights(vocab * hidden, dtype, rand, 3);
          const ids = Int32Array.from({ length: 7 }, () => Math.floor(rand() * vocab));
          const out = new Float32Array(ids.length * hidden);
          nb.embedding(out, table, dtype, ids, hidden);
          assert.equal(closeTo(out, embeddingRef(table, dtype, ids, hidden), 0), null, `isa=${Isa[isa]} ${DType[dtype]} hidden=${hidden}`);
        }
      }
    });
  });

  test('every F16 and BF16 bit pattern widens like the reference (subnormals, inf, NaN)', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const ids = Int32Array.from({ length: 65536 }, (_, i) => i);
    forEachIsa((isa) => {
      for (const dtype of [DType.F16, DType.BF16]) {
        const out = new Float32Array(65536);
        nb.embedding(out, all, dtype, ids, 1);
        for (let i = 0; i < 65536; i++) {
          const want = dtype === DType.F16 ? f16ToF32(i) : bf16ToF32(i);
          if (Number.isNaN(want)) assert.ok(Number.isNaN(out[i]), `isa=${Isa[isa]} ${DType[dtype]} ${i}`);
          else assert.ok(Object.is(out[i], Math.fround(want)), `isa=${Isa[isa]} ${DType[dtype]} 0x${i.toString(16)}: ${out[i]} vs ${want}`);
        }
      }
    });
  });

  test('embeddingPacked: rows of a one-part float pack are embedding()\'s rows of its table, bit for bit', () => {
    // Rows around the 4-row groups and 16-row superpanels, K around the 16- and 32-element k blocks.
    const rand = rng(5);
    forEachIsa((isa) => {
      for (const [dtype, precision] of [[DType.F32, MatmulPrecision.F32], [DType.F16, MatmulPrecision.F32], [DType.BF16, MatmulPrecision.F32], [DType.BF16, MatmulPrecision.BF16]] as const) {
        for (const [vocab, hidden] of [[1, 1], [5, 17], [37, 64], [70, 100]]) {
          const table = randomWeights(vocab * hidden, dtype, rand, 3);
          const h = nb.packLinear([{ w: table, n: vocab }], dtype, hidden, precision);
          const ids = Int32Array.from({ length: 9 }, (_, i) => (i === 0 ? vocab - 1 : Math.floor(rand() * vocab)));
          const want = new Float32Array(ids.length * hidden);
          nb.embedding(want, table, dtype, ids, hidden);
          const got = new Float32Array(ids.length * hidden);
          nb.embeddingPacked(got, h, ids);
          assert.ok(
            got.every((v, i) => Object.is(v, want[i])),
            `isa=${Isa[isa]} ${DType[dtype]}/${MatmulPrecision[precision]} ${vocab} x ${hidden}`,
          );
          nb.packedLinearFree(h);
        }
      }
    });
  });

  test('embeddingPacked rejects packs of several parts or gate/up, freed packs, bad ids and a short out', () => {
    const K = 8, w = new Float32Array(4 * K);
    const h = nb.packLinear([{ w, n: 4 }], DType.F32, K, MatmulPrecision.F32);
    const out = new Float32Array(2 * K);
    assert.throws(() => nb.embeddingPacked(out, h, new Int32Array([4])), RangeError);
    assert.throws(() => nb.embeddingPacked(out, h, new Int32Array([-1])), RangeError);
    assert.throws(() => nb.embeddingPacked(out, h, new Int32Array([0, 1, 2])), RangeError);
    const two = nb.packLinear([{ w, n: 4 }, { w, n: 4 }], DType.F32, K, MatmulPrecision.F32);
    assert.throws(() => nb.embeddingPacked(out, two, new Int32Array([0])), /one part/);
    const gu = nb.packGateUp(w, w, DType.F32, 4, K, MatmulPrecision.F32);
    assert.throws(() => nb.embeddingPacked(out, gu, new Int32Array([0])), /one part/);
    assert.throws(() => nb.embeddingPacked(out, {} as never, new Int32Array([0])), TypeError);
    for (const p of [h, two, gu]) nb.packedLinearFree(p);
    assert.throws(() => nb.embeddingPacked(out, h, new Int32Array([0])), /freed/);
  });

  test('rejects bad ids, lengths and dtypes', () => {
    const table = new Float32Array(4 * 8);
    const out = new Float32Array(2 * 8);
    assert.throws(() => nb.embedding(out, table, DType.F32, new Int32Array([0, 4]), 8), RangeError);
    assert.throws(() => nb.embedding(out, table, DType.F32, new Int32Array([-1, 0]), 8), RangeError);
    assert.throws(() => nb.embedding(out, table, DType.F32, new Int32Array([0, 1, 2]), 8), RangeError); // out short
    assert.throws(() => nb.embedding(out, table, DType.F32, new Int32Array([0]), 7), RangeError); // not a multiple
    assert.throws(() => nb.embedding(out, table, DType.BF16, new Int32Array([0]), 8), TypeError); // needs Uint16Array
    assert.throws(() => nb.embedding(out, table, 5 as DType, new Int32Array([0]), 8), RangeError);
  });
});

describe('linear', () => {
  const shapes: Array<[number, number, number]> = [
    [1, 1, 1],
    [1, 7, 17],
    [1, 31, 33],
    [3, 5, 63],
    [5, 9, 100],
    [4, 16, 32],
    [17, 13, 48],
    [2, 3, 1000],
  ];
  const combos: Array<[DType, MatmulPrecision]> = [
    [DType.F32, MatmulPrecision.F32],
    [DType.F16, MatmulPrecision.F32],
    [DType.BF16, MatmulPrecision.F32],
    [DType.BF16, MatmulPrecision.BF16],
  ];

  test('matches the float64 reference (BF16 precision: reference rounds activations to bf16)', () => {
    const rand = rng(2);
    forEachIsa((isa) => {
      for (const [M, N, K] of shapes) {
        for (const [dtype, precision] of combos) {
          for (const withBias of [false, true]) {
            const x = randomF32(M * K, rand);
            const w = randomWeights(N * K, dtype, rand);
            const bias = withBias ? randomF32(N, rand) : null;
            const out = new Float32Array(M * N);
            nb.linear(out, x, w, dtype, bias, M, N, K, precision);
            const ref = linearRef(x, w, dtype, bias, M, N, K, precision);
            // float32 accumulation: error bounded relative to sum |x*w|.
            const err = closeTo(out, ref.out, 1e-5, 1e-30, ref.absSum);
            assert.equal(err, null, `isa=${Isa[isa]} M=${M} N=${N} K=${K} ${DType[dtype]}/${MatmulPrecision[precision]} bias=${withBias}: ${err}`);
          }
        }
      }
    });
  });

  test('batch invariance: every row of an M=64 batch equals the M=1 result bit for bit; threads do not matter', () => {
    const rand = rng(3);
    forEachIsa((isa) => {
      for (const [N, K] of [[37, 100], [64, 576], [5, 33]]) {
        for (const [dtype, precision] of combos) {
          const M = 64;
          const x = randomF32(M * K, rand);
          const w = randomWeights(N * K, dtype, rand);
          const bias = randomF32(N, rand);
          const batch = new Float32Array(M * N);
          nb.linear(batch, x, w, dtype, bias, M, N, K, precision);
          const label = `isa=${Isa[isa]} N=${N} K=${K} ${DType[dtype]}/${MatmulPrecision[precision]}`;
          for (let m = 0; m < M; m++) {
            const one = new Float32Array(N);
            nb.linear(one, x.subarray(m * K, (m + 1) * K), w, dtype, bias, 1, N, K, precision);
            assert.ok(bitEqual(one, batch.subarray(m * N, (m + 1) * N), N), `${label}: row ${m} differs from M=1`);
          }
          // A different batch size and different neighbours.
          const part = new Float32Array(7 * N);
          nb.linear(part, x.subarray(20 * K, 27 * K), w, dtype, bias, 7, N, K, precision);
          assert.ok(bitEqual(part, batch.subarray(20 * N, 27 * N), 7 * N), `${label}: M=7 slice differs`);
          nb.setThreads(1);
          const single = new Float32Array(M * N);
          nb.linear(single, x, w, dtype, bias, M, N, K, precision);
          nb.setThreads(2);
          const two = new Float32Array(M * N);
          nb.linear(two, x, w, dtype, bias, M, N, K, precision);
          nb.setThreads(initialThreads);
          assert.ok(bitEqual(single, batch) && bitEqual(two, batch), `${label}: thread count changes results`);
        }
      }
    });
  });

  test('weights at unaligned addresses (mmapped safetensors) give the same bits', () => {
    const rand = rng(4);
    const [M, N, K] = [3, 9, 40];
    const x = randomF32(M * K, rand);
    forEachIsa((isa) => {
      for (const [dtype, precision] of combos) {
        const w = randomWeights(N * K, dtype, rand);
        const elem = w.BYTES_PER_ELEMENT;
        // Shift by one element: 4-byte (F32) or 2-byte (F16/BF16) aligned, never 64-byte aligned.
        const buf = new ArrayBuffer((N * K + 1) * elem);
        const shifted = dtype === DType.F32 ? new Float32Array(buf, elem, N * K) : new Uint16Array(buf, elem, N * K);
        shifted.set(w);
        const a = new Float32Array(M * N);
        const b = new Float32Array(M * N);
        nb.linear(a, x, w, dtype, null, M, N, K, precision);
        nb.linear(b, x, shifted, dtype, null, M, N, K, precision);
        assert.ok(bitEqual(a, b), `isa=${Isa[isa]} ${DType[dtype]}`);
      }
    });
  });

  test('large enough to use every thread and tile edge', () => {
    const rand = rng(5);
    const [M, N, K] = [23, 301, 129];
    const x = randomF32(M * K, rand);
    const w = randomWeights(N * K, DType.BF16, rand);
    forEachIsa((isa) => {
      for (const precision of [MatmulPrecision.F32, MatmulPrecision.BF16]) {
        const out = new Float32Array(M * N);
        nb.linear(out, x, w, DType.BF16, null, M, N, K, precision);
        const ref = linearRef(x, w, DType.BF16, null, M, N, K, precision);
        assert.equal(closeTo(out, ref.out, 1e-5, 1e-30, ref.absSum), null, `isa=${Isa[isa]} ${MatmulPrecision[precision]}`);
      }
    });
  });

  test('rejects bad arguments', () => {
    const x = new Float32Array(2 * 8);
    const w = new Float32Array(3 * 8);
    const wb = new Uint16Array(3 * 8);
    const out = new Float32Array(2 * 3);
    nb.linear(out, x, w, DType.F32, null, 2, 3, 8, MatmulPrecision.F32);
    assert.throws(() => nb.linear(out, x, w, DType.F32, null, 3, 3, 8, MatmulPrecision.F32), RangeError); // x short
    assert.throws(() => nb.linear(out.subarray(1), x, w, DType.F32, null, 2, 3, 8, MatmulPrecision.F32), RangeError);
    assert.throws(() => nb.linear(out, x, w, DType.F32, null, 2, 4, 8, MatmulPrecision.F32), RangeError); // w size
    assert.throws(() => nb.linear(out, x, w, DType.F32, new Float32Array(2), 2, 3, 8, MatmulPrecision.F32), RangeError);
    assert.throws(() => nb.linear(out, x, w, DType.BF16, null, 2, 3, 8, MatmulPrecision.F32), TypeError); // dtype vs array
    assert.throws(() => nb.linear(out, x, wb, DType.F32, null, 2, 3, 8, MatmulPrecision.F32), TypeError);
    assert.throws(() => nb.linear(out, x, wb, DType.F16, null, 2, 3, 8, MatmulPrecision.BF16), RangeError); // BF16 needs BF16
    assert.throws(() => nb.linear(out, x, wb, 3 as DType, null, 2, 3, 8, MatmulPrecision.F32), RangeError);
    assert.throws(() => nb.linear(out, x, wb, DType.BF16, null, 2, 3, 8, 2 as MatmulPrecision), RangeError);
    assert.throws(() => nb.linear(out, x, w, DType.F32, null, -1, 3, 8, MatmulPrecision.F32), RangeError);
    assert.throws(() => nb.linear(out, x, w, DType.F32, null, 2.5, 3, 8, MatmulPrecision.F32), TypeError);
    assert.throws(() => nb.linear(x, x, w, DType.F32, null, 2, 3, 8, MatmulPrecision.F32), RangeError); // out aliases x
    assert.throws(() => (nb.linear as unknown as (...a: unknown[]) => void)(out, [1, 2], w, DType.F32, null, 1, 3, 8, 0), TypeError);
  });
});

describe('linearPacked (pre-packed weights)', () => {
  const combos: Array<[DType, MatmulPrecision]> = [
    [DType.F32, MatmulPrecision.F32],
    [DType.F16, MatmulPrecision.F32],
    [DType.BF16, MatmulPrecision.F32],
    [DType.BF16, MatmulPrecision.BF16],
  ];
  const label = (isa: Isa, dtype: DType, precision: MatmulPrecision): string => `isa=${Isa[isa]} ${DType[dtype]}/${MatmulPrecision[precision]}`;
  const linearOf = (x: Float32Array, w: Float32Array | Uint16Array, dtype: DType, bias: Float32Array | null, M: number, N: number, K: number, precision: MatmulPrecision): Float32Array => {
    const out = new Float32Array(M * N);
    nb.linear(out, x, w, dtype, bias, M, N, K, precision);
    return out;
  };

  test('equals linear() bit for bit (and so the float64 reference); several parts per pack, bias, tails of N and K', () => {
    const rand = rng(21);
    // [M, K, part widths]: widths not multiples of 4 or 16, K off the 16/32 blocks, one-column parts,
    // M around the tile heights (1 row, 2-6, 7, 13, 25) and above a row block (300).
    const shapes: Array<[number, number, number[]]> = [
      [1, 1, [1]],
      [1, 17, [7, 16, 33]],
      [2, 63, [31]],
      [5, 100, [9, 1, 40]],
      [6, 48, [64, 32]],
      [7, 33, [17, 50]],
      [13, 129, [5, 3]],
      [25, 1000, [3, 70]],
      [300, 40, [21]],
    ];
    forEachIsa((isa) => {
      for (const [M, K, widths] of shapes) {
        for (const [dtype, precision] of combos) {
          const x = randomF32(M * K, rand);
          const parts = widths.map((n, i) => ({ w: randomWeights(n * K, dtype, rand), n, bias: i % 2 === 0 ? randomF32(n, rand) : null }));
          const packed = nb.packLinear(parts, dtype, K, precision);
          const outs = widths.map((n) => new Float32Array(M * n));
          nb.linearPacked(packed, x, M, outs, false);
          parts.forEach((p, i) => {
            const tag = `${label(isa, dtype, precision)} M=${M} K=${K} part ${i} (n=${p.n})`;
            assert.ok(bitEqual(outs[i]!, linearOf(x, p.w, dtype, p.bias, M, p.n, K, precision)), `${tag}: differs from linear()`);
            if (M <= 25) {
              const ref = linearRef(x, p.w, dtype, p.bias, M, p.n, K, precision);
              assert.equal(closeTo(outs[i]!, ref.out, 1e-5, 1e-30, ref.absSum), null, tag);
            }
          });
          nb.packedLinearFree(packed);
        }
      }
    });
  });

  test('batch invariance: every row of an M=64 batch equals M=1 bit for bit; other M, neighbours and thread counts do not matter', () => {
    const rand = rng(22);
    forEachIsa((isa) => {
      for (const [K, widths] of [[100, [37]], [576, [64, 32, 32]], [33, [5, 20]]] as Array<[number, number[]]>) {
        for (const [dtype, precision] of combos) {
          const M = 64;
          const x = randomF32(M * K, rand);
          const parts = widths.map((n) => ({ w: randomWeights(n * K, dtype, rand), n, bias: randomF32(n, rand) }));
          const packed = nb.packLinear(parts, dtype, K, precision);
          const run = (rows: Float32Array, m: number): Float32Array[] => {
            const outs = widths.map((n) => new Float32Array(m * n));
            nb.linearPacked(packed, rows, m, outs, false);
            return outs;
          };
          const batch = run(x, M);
          const tag = `${label(isa, dtype, precision)} K=${K}`;
          for (let m = 0; m < M; m++) {
            const one = run(x.subarray(m * K, (m + 1) * K), 1);
            widths.forEach((n, i) => assert.ok(bitEqual(one[i]!, batch[i]!.subarray(m * n, (m + 1) * n), n), `${tag}: part ${i} row ${m} differs from M=1`));
          }
          for (const [a, b] of [[20, 27], [5, 18], [3, 64]]) {
            const part = run(x.subarray(a * K, b * K), b - a);
            widths.forEach((n, i) => assert.ok(bitEqual(part[i]!, batch[i]!.subarray(a * n, b * n), (b - a) * n), `${tag}: rows ${a}..${b} differ`));
          }
          for (const threads of [1, 2, 3]) {
            nb.setThreads(threads);
            const t = run(x, M);
            nb.setThreads(initialThreads);
            widths.forEach((_, i) => assert.ok(bitEqual(t[i]!, batch[i]!), `${tag}: ${threads} threads change part ${i}`));
          }
          nb.packedLinearFree(packed);
        }
      }
    });
  });

  test('gate/up pack: silu(gate) * up, bit for bit linear() twice + siluMul, for every M', () => {
    const rand = rng(24);
    forEachIsa((isa) => {
      for (const [M, K, I] of [[1, 64, 16], [7, 100, 40], [30, 48, 96], [64, 33, 1], [9, 576, 37], [1, 200, 7], [150, 64, 300]]) {
        for (const [dtype, precision] of combos) {
          const x = randomF32(M * K, rand);
          const gate = randomWeights(I * K, dtype, rand);
          const up = randomWeights(I * K, dtype, rand);
          const gu = nb.packGateUp(gate, up, dtype, I, K, precision);
          const out = new Float32Array(M * I);
          nb.linearPacked(gu, x, M, [out], false);
          const want = new Float32Array(M * I);
          nb.siluMul(want, linearOf(x, gate, dtype, null, M, I, K, precision), linearOf(x, up, dtype, null, M, I, K, precision), M, I, I, I);
          const tag = `${label(isa, dtype, precision)} M=${M} K=${K} I=${I}`;
          assert.ok(bitEqual(out, want), `${tag}: differs from linear + siluMul`);
          for (let m = 0; m < M; m++) {
            const one = new Float32Array(I);
            nb.linearPacked(gu, x.subarray(m * K, (m + 1) * K), 1, [one], false);
            assert.ok(bitEqual(one, out.subarray(m * I, (m + 1) * I), I), `${tag}: row ${m} differs from M=1`);
          }
          for (const threads of [1, 3]) {
            nb.setThreads(threads);
            const t = new Float32Array(M * I);
            nb.linearPacked(gu, x, M, [t], false);
            nb.setThreads(initialThreads);
            assert.ok(bitEqual(t, out), `${tag}: ${threads} threads change the result`);
          }
          nb.packedLinearFree(gu);
        }
      }
    });
  });

  test('accumulate adds into the output: the same bits as linear() then add', () => {
    const rand = rng(25);
    forEachIsa((isa) => {
      for (const [M, K, N] of [[9, 80, 50], [1, 576, 64]]) {
        for (const [dtype, precision] of combos) {
          const x = randomF32(M * K, rand);
          const w = randomWeights(N * K, dtype, rand);
          const bias = randomF32(N, rand);
          const packed = nb.packLinear([{ w, n: N, bias }], dtype, K, precision);
          const resid = randomF32(M * N, rand, 4);
          const want = new Float32Array(M * N);
          nb.add(want, resid, linearOf(x, w, dtype, bias, M, N, K, precision), M * N);
          const got = resid.slice();
          nb.linearPacked(packed, x, M, [got], true);
          assert.ok(bitEqual(got, want), `${label(isa, dtype, precision)} M=${M}`);
          nb.packedLinearFree(packed);
        }
      }
    });
  });

  test('M = 0 is a no-op; rejects bad arguments; a freed pack cannot be used', () => {
    const w = new Float32Array(3 * 8);
    const wb = new Uint16Array(3 * 8);
    const p = nb.packLinear([{ w, n: 3 }], DType.F32, 8, MatmulPrecision.F32);
    const x = new Float32Array(2 * 8);
    const out = new Float32Array(2 * 3);
    nb.linearPacked(p, x, 0, [new Float32Array(0)], false);
    nb.linearPacked(p, x, 2, [out], false);
    assert.throws(() => nb.linearPacked(p, x, 3, [out], false), RangeError); // x short
    assert.throws(() => nb.linearPacked(p, x, 2, [out.subarray(1)], false), RangeError); // out short
    assert.throws(() => nb.linearPacked(p, x, 2, [out, out], false), RangeError); // output count
    assert.throws(() => nb.linearPacked(p, x, 2, [x], false), RangeError); // out overlaps x
    assert.throws(() => nb.linearPacked(p, x, 2, [out], 1 as unknown as boolean), TypeError);
    assert.throws(() => nb.linearPacked({} as never, x, 2, [out], false), TypeError);
    assert.throws(() => nb.packLinear([{ w, n: 4 }], DType.F32, 8, MatmulPrecision.F32), RangeError); // w size
    assert.throws(() => nb.packLinear([{ w, n: 3, bias: new Float32Array(2) }], DType.F32, 8, MatmulPrecision.F32), RangeError);
    assert.throws(() => nb.packLinear([{ w: wb, n: 3 }], DType.F32, 8, MatmulPrecision.F32), TypeError); // dtype vs array
    assert.throws(() => nb.packLinear([{ w: wb, n: 3 }], DType.F16, 8, MatmulPrecision.BF16), RangeError); // BF16 needs BF16
    assert.throws(() => nb.packLinear([], DType.F32, 8, MatmulPrecision.F32), RangeError);
    assert.throws(() => nb.packGateUp(wb, wb.subarray(1), DType.BF16, 3, 8, MatmulPrecision.BF16), RangeError);
    const q = nb.packLinear([{ w, n: 3 }, { w, n: 3 }], DType.F32, 8, MatmulPrecision.F32);
    const o2 = new Float32Array(12);
    assert.throws(() => nb.linearPacked(q, x, 2, [o2.subarray(0, 6), o2.subarray(3)], false), RangeError); // outputs overlap
    nb.packedLinearFree(p);
    nb.packedLinearFree(p);
    assert.throws(() => nb.linearPacked(p, x, 2, [out], false), /freed/);
  });
});

describe('AMX-BF16 family (BF16 linear on tiles)', () => {
  // Other machines report the skip: these tests cannot run without AMX-BF16 and the tile state.
  const amx = nb.cpuInfo().amxBf16 && detectedIsa >= Isa.AmxBf16;
  const skip = amx ? false : 'this CPU or OS offers no AMX-BF16 tiles: the AmxBf16 family could not be run here';
  const bf16 = (n: number, rand: () => number): Uint16Array => randomWeights(n, DType.BF16, rand) as Uint16Array;
  const plain = (x: Float32Array, w: Uint16Array, bias: Float32Array | null, M: number, N: number, K: number): Float32Array => {
    const out = new Float32Array(M * N);
    nb.linear(out, x, w, DType.BF16, bias, M, N, K, MatmulPrecision.BF16);
    return out;
  };
  /** Runs fn on the AMX family, then returns to the family the file runs on. */
  const onAmx = (fn: () => void): void => {
    nb.setIsa(Isa.AmxBf16);
    try {
      fn();
    } finally {
      nb.setIsa(detectedIsa);
      nb.setThreads(initialThreads);
    }
  };
  // M around the 16-row tiles; N and K off the 16-output panels and 32-k steps; K one step (32) and less.
  const Ms = [1, 3, 15, 16, 17, 64, 100];
  const NKs: Array<[number, number]> = [[1, 1], [7, 17], [37, 100], [16, 32], [50, 32], [33, 31], [19, 63], [96, 576]];

  test('linear and linearPacked match the float64 reference; plain = packed = every row alone, bit for bit', { skip }, () => {
    const rand = rng(31);
    onAmx(() => {
      for (const [N, K] of NKs) {
        for (const M of Ms) {
          const x = randomF32(M * K, rand);
          const w = bf16(N * K, rand);
          const bias = M % 2 === 1 ? randomF32(N, rand) : null;
          const tag = `M=${M} N=${N} K=${K} bias=${bias !== null}`;
          const out = plain(x, w, bias, M, N, K);
          const ref = linearRef(x, w, DType.BF16, bias, M, N, K, MatmulPrecision.BF16);
          assert.equal(closeTo(out, ref.out, 1e-5, 1e-30, ref.absSum), null, tag);
          // The same weights as two packed parts (one panel boundary inside the second part).
          const n1 = Math.max(1, N >> 1);
          const parts = [{ w: w.subarray(0, n1 * K), n: n1, bias: bias?.subarray(0, n1) ?? null }];
          if (N > n1) parts.push({ w: w.subarray(n1 * K), n: N - n1, bias: bias?.subarray(n1) ?? null });
          const packed = nb.packLinear(parts, DType.BF16, K, MatmulPrecision.BF16);
          const outs = parts.map((p) => new Float32Array(M * p.n));
          nb.linearPacked(packed, x, M, outs, false);
          parts.forEach((p, i) => {
            const want = plain(x, p.w, p.bias, M, p.n, K);
            assert.ok(bitEqual(outs[i]!, want), `${tag}: packed part ${i} differs from linear()`);
          });
          for (let m = 0; m < M; m++) {
            const row = x.subarray(m * K, (m + 1) * K);
            assert.ok(bitEqual(plain(row, w, bias, 1, N, K), out.subarray(m * N, (m + 1) * N), N), `${tag}: row ${m} alone differs`);
            if (m % 7 === 0 || m === M - 1) {
              const one = parts.map((p) => new Float32Array(p.n));
              nb.linearPacked(packed, row, 1, one, false);
              parts.forEach((p, i) => assert.ok(bitEqual(one[i]!, outs[i]!.subarray(m * p.n, (m + 1) * p.n), p.n), `${tag}: packed row ${m} alone differs`));
            }
          }
          nb.packedLinearFree(packed);
        }
      }
    });
  });

  test('thread counts and batch neighbours do not change a bit; gate/up pack = linear() twice + siluMul; accumulate = linear() + add', { skip }, () => {
    const rand = rng(32);
    onAmx(() => {
      for (const [M, N, K] of [[100, 70, 200], [33, 40, 576], [5, 300, 64]]) {
        const x = randomF32(M * K, rand);
        const w = bf16(N * K, rand);
        const bias = randomF32(N, rand);
        const tag = `M=${M} N=${N} K=${K}`;
        const want = plain(x, w, bias, M, N, K);
        for (const threads of [1, 3]) {
          nb.setThreads(threads);
          assert.ok(bitEqual(plain(x, w, bias, M, N, K), want), `${tag}: ${threads} threads`);
          nb.setThreads(initialThreads);
        }
        const [a, b] = [2, Math.min(M, 19)];
        const mid = plain(x.subarray(a * K, b * K), w, bias, b - a, N, K);
        assert.ok(bitEqual(mid, want.subarray(a * N, b * N)), `${tag}: rows ${a}..${b} as a batch of their own`);

        const gate = bf16(N * K, rand);
        const up = bf16(N * K, rand);
        const gu = nb.packGateUp(gate, up, DType.BF16, N, K, MatmulPrecision.BF16);
        const act = new Float32Array(M * N);
        nb.linearPacked(gu, x, M, [act], false);
        const fused = new Float32Array(M * N);
        nb.siluMul(fused, plain(x, gate, null, M, N, K), plain(x, up, null, M, N, K), M, N, N, N);
        assert.ok(bitEqual(act, fused), `${tag}: gate/up differs from linear + siluMul`);
        const g1 = new Float32Array(N);
        nb.linearPacked(gu, x.subarray((M - 1) * K), 1, [g1], false);
        assert.ok(bitEqual(g1, act.subarray((M - 1) * N)), `${tag}: gate/up last row alone differs`);
        nb.packedLinearFree(gu);

        const packed = nb.packLinear([{ w, n: N, bias }], DType.BF16, K, MatmulPrecision.BF16);
        const resid = randomF32(M * N, rand, 4);
        const acc = Float32Array.from(resid);
        nb.linearPacked(packed, x, M, [acc], true);
        const sum = new Float32Array(M * N);
        nb.add(sum, resid, want, M * N);
        assert.ok(bitEqual(acc, sum), `${tag}: accumulate differs from linear + add`);
        nb.packedLinearFree(packed);
      }
    });
  });

  test('setIsa switches between the AMX and AVX512_BF16 families (their accumulation orders differ in the last bits)', { skip }, () => {
    const rand = rng(33);
    const [M, N, K] = [16, 64, 576];
    const x = randomF32(M * K, rand);
    const w = bf16(N * K, rand);
    let a: Float32Array = new Float32Array(0);
    onAmx(() => {
      a = plain(x, w, null, M, N, K);
    });
    nb.setIsa(Isa.Avx512Bf16);
    const b = plain(x, w, null, M, N, K);
    nb.setIsa(detectedIsa);
    assert.ok(!bitEqual(a, b), 'the AmxBf16 and Avx512Bf16 results are identical: the AMX kernels did not run');
    assert.equal(closeTo(a, b, 1e-4, 1e-5), null);
  });
});

describe('rmsnorm', () => {
  test('matches the reference, in place too', () => {
    const rand = rng(6);
    forEachIsa((isa) => {
      for (const [M, H] of [[1, 1], [3, 17], [2, 576], [5, 100]]) {
        const x = randomF32(M * H, rand, 3);
        const w = randomF32(H, rand);
        const out = new Float32Array(M * H);
        nb.rmsnorm(out, x, w, M, H, 1e-5);
        const ref = rmsnormRef(x, w, M, H, 1e-5);
        assert.equal(closeTo(out, ref, 2e-6, 1e-7), null, `isa=${Isa[isa]} M=${M} H=${H}`);
        const inPlace = x.slice();
        nb.rmsnorm(inPlace, inPlace, w, M, H, 1e-5);
        assert.ok(bitEqual(inPlace, out), 'in place differs');
        const row = new Float32Array(H);
        nb.rmsnorm(row, x.subarray((M - 1) * H), w, 1, H, 1e-5);
        assert.ok(bitEqual(row, out.subarray((M - 1) * H), H), 'row depends on the batch');
      }
    });
  });

  test('rejects bad arguments', () => {
    const x = new Float32Array(8);
    assert.throws(() => nb.rmsnorm(x, x, new Float32Array(3), 2, 4, 1e-6), RangeError);
    assert.throws(() => nb.rmsnorm(x, x, new Float32Array(4), 3, 4, 1e-6), RangeError);
    assert.throws(() => nb.rmsnorm(x.subarray(1), x, new Float32Array(4), 1, 4, 1e-6), RangeError); // partial overlap
    assert.throws(() => nb.rmsnorm(x, x, new Float32Array(4), 2, 4, NaN), RangeError);
  });
});

describe('rope', () => {
  test('HF rotate_half with angles in double precision, the same bits on every kernel family', () => {
    const rand = rng(7);
    for (const [T, nH, nKv, hd] of [[1, 1, 1, 2], [5, 9, 3, 64], [3, 4, 1, 80], [2, 2, 2, 128], [4, 3, 1, 40]]) {
      const q0 = randomF32(T * nH * hd, rand);
      const k0 = randomF32(T * nKv * hd, rand);
      const positions = Int32Array.from({ length: T }, () => Math.floor(rand() * 5000));
      const invFreq = Float32Array.from({ length: hd / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / hd));
      const rq = ropeRef(q0, positions, T, nH, hd, invFreq);
      const rk = ropeRef(k0, positions, T, nKv, hd, invFreq);
      // A longer table than needed is fine (a step's buffer is sized for the largest batch).
      const cosSin = new Float32Array((T + 3) * hd).fill(NaN);
      nb.ropeTable(cosSin, positions, T, invFreq);
      // cos and sin of the double-precision angle, rounded to float (within an ulp of JS's libm).
      for (let t = 0; t < T; t++) {
        for (let i = 0; i < hd / 2; i++) {
          const angle = positions[t] * invFreq[i];
          assert.ok(Math.abs(cosSin[t * hd + i] - Math.cos(angle)) < 1.2e-7, `cos t=${t} i=${i}`);
          assert.ok(Math.abs(cosSin[t * hd + hd / 2 + i] - Math.sin(angle)) < 1.2e-7, `sin t=${t} i=${i}`);
        }
      }
      assert.ok(Number.isNaN(cosSin[T * hd]), 'ropeTable wrote past T rows');
      const results: Float32Array[] = [];
      forEachIsa((isa) => {
        const q = q0.slice();
        const k = k0.slice();
        nb.rope(q, k, cosSin, T, nH, nKv, hd);
        assert.equal(closeTo(q, rq, 1e-6, 1e-6), null, `isa=${Isa[isa]} q T=${T} hd=${hd}`);
        assert.equal(closeTo(k, rk, 1e-6, 1e-6), null, `isa=${Isa[isa]} k T=${T} hd=${hd}`);
        results.push(q, k);
      });
      for (let i = 2; i < results.length; i++) assert.ok(bitEqual(results[i], results[i % 2]), `hd=${hd}: kernel families differ`);
    }
  });

  test('rejects bad arguments', () => {
    const q = new Float32Array(2 * 8);
    const k = new Float32Array(2 * 8);
    const cs = new Float32Array(2 * 8);
    const inv = new Float32Array(4);
    assert.throws(() => nb.ropeTable(cs, new Int32Array(1), 2, inv), RangeError); // positions short
    assert.throws(() => nb.ropeTable(cs.subarray(1), new Int32Array(2), 2, inv), RangeError); // table short
    assert.throws(() => nb.ropeTable(cs, new Int32Array(2), 2, new Float32Array(0)), RangeError);
    assert.throws(() => nb.ropeTable(cs, new Int32Array(2), 2.5, inv), TypeError);
    assert.throws(() => nb.rope(q, k, cs.subarray(1), 2, 1, 1, 8), RangeError); // table short
    assert.throws(() => nb.rope(q, k, cs, 2, 2, 1, 8), RangeError); // q short
    assert.throws(() => nb.rope(q, k, cs, 2, 1, 1, 7), RangeError); // odd headDim
    assert.throws(() => nb.rope(q, q, cs, 2, 1, 1, 8), RangeError); // q aliases k
  });
});

describe('siluMul and add', () => {
  test('siluMul matches the reference with strided gate/up (fused gate_up layout)', () => {
    const rand = rng(8);
    forEachIsa((isa) => {
      for (const [M, I] of [[1, 1], [3, 17], [2, 1536], [4, 100]]) {
        const fused = randomF32(M * 2 * I, rand, 6);
        const gate = fused;
        const up = fused.subarray(I);
        const out = new Float32Array(M * I);
        nb.siluMul(out, gate, up, M, I, 2 * I, 2 * I);
        const ref = siluMulRef(gate, up, M, I, 2 * I, 2 * I);
        assert.equal(closeTo(out, ref, 2e-6, 1e-7), null, `isa=${Isa[isa]} M=${M} I=${I}`);
      }
      // Extreme gates: silu(-100) ~ -0, silu(100) = 100; no NaN.
      const g = new Float32Array([-100, -20, 0, 20, 100, 88.8, -88.8]);
      const u = new Float32Array(g.length).fill(1);
      const o = new Float32Array(g.length);
      nb.siluMul(o, g, u, 1, g.length, g.length, g.length);
      assert.equal(closeTo(o, siluMulRef(g, u, 1, g.length, g.length, g.length), 2e-6, 1e-30), null, `isa=${Isa[isa]} extremes`);
    });
  });

  test('add, in place too', () => {
    const rand = rng(9);
    forEachIsa(() => {
      for (const n of [0, 1, 33, 100_000]) {
        const a = randomF32(n, rand);
        const b = randomF32(n, rand);
        const out = new Float32Array(n);
        nb.add(out, a, b, n);
        for (let i = 0; i < n; i++) assert.equal(out[i], Math.fround(a[i] + b[i]));
        nb.add(a, a, b, n);
        assert.ok(bitEqual(a, out));
      }
    });
  });

  test('SharedArrayBuffer-backed and offset views work; detached buffers are rejected', () => {
    const sab = new SharedArrayBuffer(64 * 4);
    const a = new Float32Array(sab, 16, 8).fill(1);
    const b = new Float32Array(sab, 64, 8).fill(2);
    const o = new Float32Array(sab, 128, 8);
    nb.add(o, a, b, 8);
    assert.deepEqual(Array.from(o), new Array(8).fill(3));
    const ab = new ArrayBuffer(32);
    const t = new Float32Array(ab);
    structuredClone(ab, { transfer: [ab] }); // detaches ab
    assert.throws(() => nb.add(t, t, t, 1), RangeError);
  });

  test('reject bad arguments', () => {
    const a = new Float32Array(8);
    assert.throws(() => nb.add(a, a, new Float32Array(4), 8), RangeError);
    assert.throws(() => nb.add(a, a, a, 9), RangeError);
    assert.throws(() => nb.siluMul(a, a, a, 2, 4, 3, 4), RangeError); // stride < I
    assert.throws(() => nb.siluMul(a, a, a, 2, 4, 4, 5), RangeError); // up too short
    assert.throws(() => nb.siluMul(a.subarray(2), a, a.subarray(4), 1, 4, 4, 4), RangeError); // out partly overlaps gate
    nb.siluMul(a, a, a.subarray(4), 1, 4, 4, 4); // exact alias is fine
  });
});

describe('thread safety', () => {
  test('ops called from a worker thread and the main thread at once stay correct', async () => {
    const rand = rng(10);
    const [M, N, K] = [8, 512, 256];
    const x = randomF32(M * K, rand);
    const w = randomWeights(N * K, DType.BF16, rand) as Uint16Array;
    const expected = new Float32Array(M * N);
    nb.linear(expected, x, w, DType.BF16, null, M, N, K, MatmulPrecision.BF16);
    const addon = new URL('../build/Release/pagewise.node', import.meta.url).pathname;
    const worker = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       const nb = require(workerData.addon);
       const { x, w, M, N, K, expected } = workerData;
       let ok = true;
       for (let i = 0; i < 150; i++) {
         const out = new Float32Array(M * N);
         nb.linear(out, x, w, 2, null, M, N, K, 1);
         for (let j = 0; j < out.length; j++) if (out[j] !== expected[j]) ok = false;
       }
       parentPort.postMessage(ok);`,
      { eval: true, workerData: { addon, x, w, M, N, K, expected } },
    );
    const done = new Promise<boolean>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    let mainOk = true;
    for (let i = 0; i < 150; i++) {
      const out = new Float32Array(M * N);
      nb.linear(out, x, w, DType.BF16, null, M, N, K, MatmulPrecision.BF16);
      if (!bitEqual(out, expected)) mainOk = false;
      if (i % 10 === 0) await new Promise((r) => setImmediate(r));
    }
    assert.ok(mainOk, 'main thread results changed under concurrency');
    assert.ok(await done, 'worker results changed under concurrency');
    await worker.terminate();
  });
});
