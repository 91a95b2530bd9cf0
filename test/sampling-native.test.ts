/**
 * The native sampling helpers against plain float64 references, on every kernel family the CPU
 * has: argmax (ties, -inf, NaN, odd lengths, offsets) and the softmax inverse-CDF draw.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Isa, cpuBackend } from '../src/backend/native.js';
import { Rng } from '../src/sampling/rng.js';
import { detectedIsa, forEachIsa, isas } from './helpers/isa.js';

const be = cpuBackend();
after(() => be.setIsa(detectedIsa));

function refArgmax(x: Float32Array, off: number, n: number): number {
  let best = -1;
  let m = -Infinity;
  for (let i = 0; i < n; i++) if (x[off + i]! > m) ((m = x[off + i]!), (best = i));
  return best;
}

/** Inverse CDF in float64; also returns how close u·sum is to the nearest bucket boundary. */
function refSample(x: Float32Array, off: number, n: number, invT: number, u: number): { id: number; margin: number } {
  let m = -Infinity;
  for (let i = 0; i < n; i++) m = Math.max(m, x[off + i]!);
  if (m === -Infinity) return { id: -1, margin: Infinity };
  const w = Array.from({ length: n }, (_, i) => Math.exp((x[off + i]! - m) * invT));
  const sum = w.reduce((a, b) => a + b, 0);
  const target = u * sum;
  let acc = 0;
  for (let i = 0; i < n; i++) {
    if (w[i]! <= 0) continue;
    const next = acc + w[i]!;
    if (next > target) return { id: i, margin: Math.min(target - acc, next - target) / sum };
    acc = next;
  }
  return { id: n - 1, margin: 0 };
}

for (const isa of isas) {
  describe(`native sampling helpers (${Isa[isa]})`, () => {
    test('rowArgmax: random rows of awkward lengths, ties to the lowest id, -inf and NaN', () => {
      be.setIsa(isa);
      const rng = new Rng(11);
      for (const n of [1, 2, 15, 16, 17, 31, 33, 100, 1000, 49157]) {
        const x = new Float32Array(n + 5);
        for (let i = 0; i < x.length; i++) x[i] = Math.round((rng.next() - 0.5) * 40) / 4; // many ties
        assert.equal(be.rowArgmax(x, 3, n), refArgmax(x, 3, n), `n=${n}`);
        x.fill(-Infinity, 3, 3 + n);
        assert.equal(be.rowArgmax(x, 3, n), -1);
        if (n > 3) {
          x[3 + 1] = NaN;
          x[3 + n - 1] = -5;
          assert.equal(be.rowArgmax(x, 3, n), n - 1);
        }
      }
    });

    test('rowSoftmaxSample: the inverse-CDF index of a float64 reference, at any temperature', () => {
      be.setIsa(isa);
      const rng = new Rng(12);
      for (const n of [1, 7, 16, 17, 63, 1000, 49157]) {
        const x = new Float32Array(n);
        for (let i = 0; i < n; i++) x[i] = (rng.next() - 0.5) * 12;
        if (n > 10) x.fill(-Infinity, 3, 9);
        for (const invT of [0.5, 1, 1 / 0.7, 50]) {
          for (let k = 0; k < 40; k++) {
            const u = rng.next();
            const want = refSample(x, 0, n, invT, u);
            const got = be.rowSoftmaxSample(x, 0, n, invT, u);
            // float32 weights: allow a different bucket only right at a boundary.
            if (want.margin > 1e-5) assert.equal(got, want.id, `n=${n} invT=${invT} u=${u}`);
            assert.ok(got < 3 || got >= 9 || n <= 10, 'a -inf id is never drawn');
          }
        }
      }
      assert.equal(be.rowSoftmaxSample(new Float32Array([-Infinity, -Infinity]), 0, 2, 1, 0.5), -1);
    });

    test('rowLogSumExp and rowCountGreater match float64 references', () => {
      be.setIsa(isa);
      const rng = new Rng(13);
      for (const n of [1, 16, 17, 999, 49157]) {
        const x = new Float32Array(n + 2);
        for (let i = 0; i < x.length; i++) x[i] = Math.round((rng.next() - 0.5) * 80) / 4;
        let m = -Infinity;
        for (let i = 1; i <= n; i++) m = Math.max(m, x[i]!);
        let sum = 0;
        for (let i = 1; i <= n; i++) sum += Math.exp(x[i]! - m);
        const lse = m + Math.log(sum);
        assert.ok(Math.abs(be.rowLogSumExp(x, 1, n) - lse) <= 1e-6 * Math.max(1, Math.abs(lse)), `n=${n}`);
        const v = x[1 + (n >> 1)]!;
        let greater = 0;
        for (let i = 1; i <= n; i++) greater += x[i]! > v ? 1 : 0;
        assert.equal(be.rowCountGreater(x, 1, n, v), greater);
      }
      assert.equal(be.rowLogSumExp(new Float32Array([-Infinity]), 0, 1), -Infinity);
    });

    test('rowNucleusWeights: weights, buckets and bucket masses of a float64 reference', () => {
      be.setIsa(isa);
      const rng = new Rng(14);
      for (const n of [1, 8, 9, 1001]) {
        const x = new Float32Array(n);
        for (let i = 0; i < n; i++) x[i] = (rng.next() - 0.5) * 30;
        if (n > 5) x[3] = -Infinity;
        const max = Math.max(...x);
        const invT = 1 / 0.7;
        const w = new Float64Array(n);
        const bucket = new Uint16Array(n);
        const hist = new Float64Array(64);
        const sum = be.rowNucleusWeights(x, 0, n, max, invT, w, bucket, hist, 4);
        const wantHist = new Float64Array(64);
        let wantSum = 0;
        for (let i = 0; i < n; i++) {
          const v = (x[i]! - max) * invT;
          const e = Math.exp(v);
          const b = Math.min(Math.floor(-v * 4), 63) + 0; // + 0: -0 is bucket 0
          assert.ok(Math.abs(w[i]! - e) <= 1e-14 * Math.max(e, 1e-300), `w[${i}]`);
          assert.equal(bucket[i], b, `bucket[${i}] of v=${v}`);
          wantHist[b] += e;
          wantSum += e;
        }
        hist.forEach((h, b) => assert.ok(Math.abs(h - wantHist[b]!) <= 1e-12 * wantSum, `hist[${b}]`));
        assert.ok(Math.abs(sum - wantSum) <= 1e-12 * wantSum);
      }
    });
  });
}

test('drawRows gives each row what the one-row ops give, on every kernel family', () => {
  const n = 4099;
  const rng = new Rng(15);
  const logits = new Float32Array(7 * n);
  for (let i = 0; i < logits.length; i++) logits[i] = Math.round((rng.next() - 0.5) * 60) / 4;
  logits.fill(-Infinity, 5 * n, 6 * n); // an all -inf row draws -1 either way
  const rows = Int32Array.from([3, 0, 6, 5, 1, 3, 2]);
  const invT = Float64Array.from([0, 1, 1 / 0.7, 1, 0, 2.5, 0]);
  const u = Float64Array.from(rows, () => rng.next());
  forEachIsa((isa) => {
    const out = new Int32Array(rows.length).fill(-7);
    be.drawRows(logits, n, rows, invT, u, out);
    rows.forEach((r, i) => {
      const want = invT[i] === 0 ? be.rowArgmax(logits, r * n, n) : be.rowSoftmaxSample(logits, r * n, n, invT[i]!, u[i]!);
      assert.equal(out[i], want, `isa=${Isa[isa]} entry ${i} (row ${r})`);
    });
  });
  const out = new Int32Array(1);
  const one = (r: number, t: number, uu: number): void => be.drawRows(logits, n, Int32Array.of(r), Float64Array.of(t), Float64Array.of(uu), out);
  assert.throws(() => one(7, 0, 0), RangeError); // no row 7
  assert.throws(() => one(-1, 0, 0), RangeError);
  assert.throws(() => one(0, -1, 0.5), RangeError);
  assert.throws(() => one(0, 1, 1), RangeError);
  assert.throws(() => one(0, NaN, 0.5), RangeError);
  assert.throws(() => be.drawRows(logits, n, Int32Array.of(0, 1), Float64Array.of(0), Float64Array.of(0), out), RangeError);
  assert.throws(() => be.drawRows(logits, 0, Int32Array.of(0), Float64Array.of(0), Float64Array.of(0), out), RangeError);
  assert.throws(() => be.drawRows(logits, n, Float64Array.of(0) as unknown as Int32Array, Float64Array.of(0), Float64Array.of(0), out), TypeError);
});

test('sampling helpers reject bad arguments instead of reading out of bounds', () => {
  const x = new Float32Array(8);
  assert.throws(() => be.rowArgmax(x, 4, 5), RangeError);
  assert.throws(() => be.rowArgmax(x, -1, 2), RangeError);
  assert.throws(() => be.rowArgmax(x, 0, 0), RangeError);
  assert.throws(() => be.rowArgmax(new Float64Array(8) as unknown as Float32Array, 0, 2), TypeError);
  assert.throws(() => be.rowSoftmaxSample(x, 0, 8, 0, 0.5), RangeError);
  assert.throws(() => be.rowSoftmaxSample(x, 0, 8, 1, 1), RangeError);
  assert.throws(() => be.rowSoftmaxSample(x, 0, 8, Infinity, 0.5), RangeError);
});
