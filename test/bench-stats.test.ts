/**
 * Benchmark statistics on synthetic numbers with hand-computed answers: numpy-style percentiles,
 * summaries, goodput under SLOs, seeded Poisson arrivals; plus /proc/cpuinfo parsing.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  arrivalOffsets,
  goodput,
  mean,
  parseGoodput,
  peakConcurrency,
  percentile,
  poissonIntervals,
  randInt,
  seededRng,
  summarize,
} from '../src/benchmarks/stats.js';
import { gitCommit, machineInfo, parseCpuinfo } from '../src/benchmarks/machine.js';

const close = (a: number | null | undefined, b: number, eps = 1e-9): void => {
  assert.ok(a !== null && a !== undefined && Math.abs(a - b) <= eps, `${a} ≈ ${b}`);
};

describe('percentile (numpy linear interpolation)', () => {
  test('one sample is every percentile', () => {
    for (const p of [0, 1, 50, 90, 99, 100]) assert.equal(percentile([7], p), 7);
  });

  test('even count: the median is the midpoint of the middle two', () => {
    assert.equal(percentile([1, 2, 3, 4], 50), 2.5);
    // rank = 3 · 0.9 = 2.7 → 3 + 0.7 · (4 − 3)
    close(percentile([1, 2, 3, 4], 90), 3.7);
    close(percentile([1, 2, 3, 4], 99), 3.97);
    assert.equal(percentile([1, 2, 3, 4], 0), 1);
    assert.equal(percentile([1, 2, 3, 4], 100), 4);
  });

  test('unsorted input, left untouched', () => {
    const xs = [40, 10, 30, 20, 50];
    assert.equal(percentile(xs, 50), 30);
    // rank = 4 · 0.9 = 3.6 → 40 + 0.6 · 10
    close(percentile(xs, 90), 46);
    close(percentile(xs, 25), 20);
    assert.deepEqual(xs, [40, 10, 30, 20, 50]);
  });

  test('empty input is null; bad p and NaN samples throw', () => {
    assert.equal(percentile([], 50), null);
    assert.throws(() => percentile([1], 101), RangeError);
    assert.throws(() => percentile([1], -1), RangeError);
    assert.throws(() => percentile([1, NaN], 50), RangeError);
  });

  test('matches numpy on a 0..100 ramp', () => {
    const xs = Array.from({ length: 101 }, (_, i) => 100 - i);
    for (const p of [0, 12.5, 50, 90, 99, 100]) close(percentile(xs, p), p);
  });
});

describe('mean and summarize', () => {
  test('mean', () => {
    assert.equal(mean([]), null);
    assert.equal(mean([5]), 5);
    assert.equal(mean([1, 2, 3, 10]), 4);
  });

  test('summary of ten samples', () => {
    const s = summarize([10, 1, 9, 2, 8, 3, 7, 4, 6, 5]);
    assert.ok(s);
    close(s.mean, 5.5);
    close(s.p50, 5.5);
    close(s.p90, 9.1); // rank 8.1
    close(s.p99, 9.91); // rank 8.91
  });

  test('summary of one sample and of none', () => {
    assert.deepEqual(summarize([3]), { mean: 3, p50: 3, p90: 3, p99: 3 });
    assert.equal(summarize([]), null);
  });
});

describe('goodput', () => {
  const reqs = [
    { ttft_ms: 100, tpot_ms: 20, e2el_ms: 1000 },
    { ttft_ms: 300, tpot_ms: 10, e2el_ms: 900 },
    { ttft_ms: 200, tpot_ms: 40, e2el_ms: 2000 },
    { ttft_ms: 50, tpot_ms: null, e2el_ms: 50 }, // one token: no TPOT
  ];

  test('a request counts when it meets every SLO given; equal meets', () => {
    assert.equal(goodput(reqs, { ttft_ms: 200 }, 2).good_requests, 3);
    assert.equal(goodput(reqs, { ttft_ms: 200, tpot_ms: 20 }, 2).good_requests, 2);
    assert.equal(goodput(reqs, { tpot_ms: 10 }, 2).good_requests, 2);
    assert.equal(goodput(reqs, { e2el_ms: 1000 }, 2).good_requests, 3);
    assert.equal(goodput(reqs, { ttft_ms: 1000, tpot_ms: 100, e2el_ms: 1999 }, 2).good_requests, 3);
    assert.equal(goodput(reqs, {}, 2).good_requests, 4);
    assert.equal(goodput([], { ttft_ms: 1 }, 2).good_requests, 0);
  });

  test('request_goodput is good requests per second', () => {
    const g = goodput(reqs, { ttft_ms: 200, tpot_ms: 20 }, 4);
    assert.deepEqual(g, { slo: { ttft_ms: 200, tpot_ms: 20 }, good_requests: 2, request_goodput: 0.5 });
    assert.throws(() => goodput(reqs, {}, 0), RangeError);
  });

  test('parseGoodput', () => {
    assert.deepEqual(parseGoodput('ttft:500 tpot:50 e2el:3000'), { ttft_ms: 500, tpot_ms: 50, e2el_ms: 3000 });
    assert.deepEqual(parseGoodput('tpot:12.5,e2el:0'), { tpot_ms: 12.5, e2el_ms: 0 });
    assert.throws(() => parseGoodput(''), /at least one/);
    assert.throws(() => parseGoodput('itl:5'), /ttft:MS/);
    assert.throws(() => parseGoodput('ttft:'), /milliseconds/);
    assert.throws(() => parseGoodput('ttft:-1'), /milliseconds/);
    assert.throws(() => parseGoodput('ttft:abc'), /milliseconds/);
    assert.throws(() => parseGoodput('ttft:1:2'), /ttft:MS/);
  });
});

describe('seeded RNG and Poisson arrivals', () => {
  test('the RNG is deterministic per seed, uniform-ish on [0, 1)', () => {
    const a = seededRng(42);
    const b = seededRng(42);
    const c = seededRng(43);
    const xs = Array.from({ length: 5 }, a);
    assert.deepEqual(xs, Array.from({ length: 5 }, b));
    assert.notDeepEqual(xs, Array.from({ length: 5 }, c));
    const r = seededRng(1);
    let sum = 0;
    const n = 100_000;
    for (let i = 0; i < n; i++) {
      const u = r();
      assert.ok(u >= 0 && u < 1);
      sum += u;
    }
    close(sum / n, 0.5, 0.01);
    const ints = seededRng(3);
    for (let i = 0; i < 1000; i++) {
      const k = randInt(ints, 100, 1000);
      assert.ok(Number.isInteger(k) && k >= 100 && k < 1000);
    }
  });

  test('Poisson gaps have mean 1/rate (and the exponential variance 1/rate²)', () => {
    for (const rate of [0.5, 4, 100]) {
      const gaps = poissonIntervals(200_000, rate, seededRng(7));
      assert.ok(gaps.every((g) => g >= 0 && Number.isFinite(g)));
      const m = mean(gaps)!;
      close(m, 1 / rate, 0.02 / rate);
      const v = gaps.reduce((s, g) => s + (g - m) ** 2, 0) / gaps.length;
      close(v, 1 / rate ** 2, 0.05 / rate ** 2);
    }
  });

  test('infinite rate sends everything at once; bad rates throw', () => {
    assert.deepEqual(poissonIntervals(3, Infinity, seededRng(1)), [0, 0, 0]);
    assert.deepEqual(arrivalOffsets(3, Infinity, seededRng(1)), [0, 0, 0]);
    assert.throws(() => poissonIntervals(3, 0, seededRng(1)), RangeError);
    assert.throws(() => poissonIntervals(3, -1, seededRng(1)), RangeError);
  });

  test('arrival offsets increase; normalized, the last lands at n/rate', () => {
    const raw = arrivalOffsets(50, 10, seededRng(5), false);
    const norm = arrivalOffsets(50, 10, seededRng(5));
    for (let i = 1; i < 50; i++) assert.ok(norm[i]! >= norm[i - 1]! && raw[i]! >= raw[i - 1]!);
    close(norm[49], 5, 1e-9);
    close(norm[0]! / raw[0]!, 5 / raw[49]!, 1e-9);
    assert.deepEqual(arrivalOffsets(0, 10, seededRng(5)), []);
  });
});

describe('peak concurrency', () => {
  test('sweep over half-open intervals', () => {
    assert.equal(peakConcurrency([]), 0);
    assert.equal(peakConcurrency([{ start: 0, end: 1 }, { start: 1, end: 2 }]), 1);
    assert.equal(peakConcurrency([{ start: 0, end: 3 }, { start: 1, end: 2 }, { start: 1.5, end: 4 }, { start: 3.5, end: 5 }]), 3);
  });
});

describe('machine info', () => {
  test('parses /proc/cpuinfo: physical cores, model, flags', () => {
    const block = (proc: number, phys: number, core: number): string =>
      `processor\t: ${proc}\nmodel name\t: Test CPU 9000\nphysical id\t: ${phys}\ncore id\t\t: ${core}\nflags\t\t: fpu avx2 fma avx512f avx512_bf16\n`;
    const text = [block(0, 0, 0), block(1, 0, 0), block(2, 0, 1), block(3, 0, 1), block(4, 1, 0)].join('\n');
    const p = parseCpuinfo(text);
    assert.equal(p.cores, 3);
    assert.equal(p.model, 'Test CPU 9000');
    assert.deepEqual(p.flags, ['fpu', 'avx2', 'fma', 'avx512f', 'avx512_bf16']);
    assert.deepEqual(parseCpuinfo(''), { model: '', cores: 0, flags: [] });
  });

  test('machineInfo and gitCommit have the documented shape', () => {
    const m = machineInfo();
    assert.ok(typeof m.cpu_model === 'string' && m.cpu_model !== '');
    assert.ok(Number.isInteger(m.cores) && m.cores >= 1);
    assert.ok(Number.isInteger(m.threads) && m.threads >= m.cores);
    assert.ok(Array.isArray(m.cpu_flags));
    const c = gitCommit();
    assert.ok(c === null || /^[0-9a-f]{40,64}$/.test(c));
  });
});
