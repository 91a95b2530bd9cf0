/**
 * The Gemma-family ops of the native backend (geluTanhMul, softcap, scale) against float64
 * references on every kernel family this CPU supports, on awkward sizes, with the bit-for-bit
 * invariances the engine relies on (a row alone equals its row in a batch, thread count, aliasing).
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Isa, cpuBackend } from '../src/backend/native.js';
import { detectedIsa, forEachIsa } from './helpers/isa.js';
import { bitEqual, closeTo, geluTanhMulRef, randomF32, rng } from './reference/ops.js';

const nb = cpuBackend();
const initialThreads = nb.getThreads();

after(() => {
  nb.setIsa(detectedIsa);
  nb.setThreads(initialThreads);
});

describe('geluTanhMul', () => {
  test('matches gelu_pytorch_tanh(gate) * up; rows alone equal the batch; threads and aliasing change nothing', () => {
    const rand = rng(91);
    forEachIsa((isa) => {
      for (const [M, I, gs, us] of [[1, 1, 1, 1], [3, 17, 20, 17], [7, 40, 40, 45], [64, 129, 129, 129], [2, 5000, 5001, 5000]] as const) {
        // Gates over [-12, 12]: GELU's tails (exp overflow on the negative side) and its bend.
        const gate = randomF32((M - 1) * gs + I, rand, 12);
        const up = randomF32((M - 1) * us + I, rand, 2);
        const out = new Float32Array(M * I);
        nb.geluTanhMul(out, gate, up, M, I, gs, us);
        const tag = `isa=${Isa[isa]} M=${M} I=${I}`;
        const ref = geluTanhMulRef(gate, up, M, I, gs, us);
        assert.equal(closeTo(out, ref, 2e-6, 1e-7), null, `${tag}: ${closeTo(out, ref, 2e-6, 1e-7)}`);
        for (let m = 0; m < M; m++) {
          const one = new Float32Array(I);
          nb.geluTanhMul(one, gate.subarray(m * gs), up.subarray(m * us), 1, I, gs, us);
          assert.ok(bitEqual(one, out.subarray(m * I, (m + 1) * I), I), `${tag}: row ${m} alone differs`);
        }
        nb.setThreads(1);
        const single = new Float32Array(M * I);
        nb.geluTanhMul(single, gate, up, M, I, gs, us);
        nb.setThreads(initialThreads);
        assert.ok(bitEqual(single, out), `${tag}: thread count changes results`);
        if (gs === I) {
          const g = gate.slice();
          nb.geluTanhMul(g, g, up, M, I, I, us);
          assert.ok(bitEqual(g.subarray(0, M * I), out), `${tag}: out === gate differs`);
        }
      }
    });
  });

  test('exact zeros and signs at the tails', () => {
    forEachIsa((isa) => {
      const gate = Float32Array.from([0, -0, -100, 100, -20, 20, 1e-30]);
      const up = new Float32Array(gate.length).fill(1);
      const out = new Float32Array(gate.length);
      nb.geluTanhMul(out, gate, up, 1, gate.length, gate.length, gate.length);
      assert.equal(out[0], 0, `isa=${Isa[isa]}`);
      assert.ok(out[2] === 0 && out[4]! <= 0 && out[4]! > -1e-30, `isa=${Isa[isa]}: negative tail ${out[2]} ${out[4]}`);
      assert.equal(out[3], 100);
      assert.equal(out[5], 20);
      assert.ok(Math.abs(out[6]! - 5e-31) < 1e-36, `isa=${Isa[isa]}: tiny gate ${out[6]}`);
    });
  });

  test('invalid arguments throw', () => {
    const g = new Float32Array(8);
    assert.throws(() => nb.geluTanhMul(new Float32Array(3), g, g, 1, 4, 4, 4), RangeError);
    assert.throws(() => nb.geluTanhMul(new Float32Array(8), g, g, 2, 4, 3, 4), RangeError);
    assert.throws(() => nb.geluTanhMul(g.subarray(1), g, new Float32Array(8), 1, 4, 4, 4), RangeError); // partial overlap
    assert.throws(() => nb.geluTanhMul(new Float32Array(8), g, g, 1.5, 4, 4, 4), TypeError);
  });
});

describe('softcap and scale', () => {
  test('softcap matches cap * tanh(x / cap) on every family, in place or not, any length', () => {
    const rand = rng(5);
    forEachIsa((isa) => {
      for (const n of [1, 7, 16, 33, 100_003]) {
        for (const cap of [0.5, 2, 30]) {
          const x = randomF32(n, rand, 4 * cap);
          x[0] = n > 1 ? -1e30 : 1e30;
          const out = new Float32Array(n);
          nb.softcap(out, x, n, cap);
          const ref = Float64Array.from(x, (v) => cap * Math.tanh(v / cap));
          // About one float32 ulp of the cap (the exp-based tanh near 0 is absolute-accurate).
          const err = closeTo(out, ref, 1e-6, 2e-7 * cap);
          assert.equal(err, null, `isa=${Isa[isa]} n=${n} cap=${cap}: ${err}`);
          assert.ok(out.every((v) => Math.abs(v) <= cap), `isa=${Isa[isa]}: |softcap| exceeds the cap`);
          const inPlace = x.slice();
          nb.softcap(inPlace, inPlace, n, cap);
          assert.ok(bitEqual(inPlace, out), `isa=${Isa[isa]} n=${n}: in place differs`);
        }
      }
    });
    assert.throws(() => nb.softcap(new Float32Array(4), new Float32Array(4), 4, 0), RangeError);
    assert.throws(() => nb.softcap(new Float32Array(4), new Float32Array(4), 5, 1), RangeError);
    const a = new Float32Array(8);
    assert.throws(() => nb.softcap(a.subarray(1), a, 4, 1), RangeError);
  });

  test('scale is the float32 product', () => {
    const rand = rng(6);
    const x = randomF32(10_001, rand, 3);
    const out = new Float32Array(x.length);
    nb.scale(out, x, x.length, 25.25);
    assert.ok(out.every((v, i) => v === Math.fround(x[i]! * 25.25)));
    nb.scale(x, x, x.length, 25.25);
    assert.ok(bitEqual(x, out));
    assert.throws(() => nb.scale(out, x, x.length, NaN), RangeError);
  });
});
