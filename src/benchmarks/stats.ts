/**
 * Pure statistics for the benchmarks: percentiles (numpy's default linear interpolation), latency
 * summaries, goodput under SLOs, and seeded Poisson arrivals. No I/O, no clock, no dependencies on
 * the rest of Pagewise, so results are reproducible and the functions are testable on synthetic data.
 */

/** The summary every latency metric is reported as, in the unit of its samples. */
export interface Summary {
  mean: number;
  p50: number;
  p90: number;
  p99: number;
}

/** Arithmetic mean; null for no samples (an empty mean is not zero). */
export function mean(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  let s = 0;
  for (const v of values) s += v;
  return s / values.length;
}

/**
 * The p-th percentile (0..100) by linear interpolation between the closest ranks, the rule of
 * numpy.percentile's default ("linear"): rank = (n − 1)·p/100 on the sorted samples. The input need
 * not be sorted and is not modified. Null for no samples; throws for p outside [0, 100] or NaN samples.
 */
export function percentile(values: readonly number[], p: number): number | null {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be in [0, 100], got ${p}`);
  if (values.length === 0) return null;
  const sorted = sortedCopy(values);
  return percentileSorted(sorted, p);
}

/** The median of a non-empty sample (benchmarks report the median of repeated runs). */
export function median(values: readonly number[]): number {
  const m = percentile(values, 50);
  if (m === null) throw new RangeError('median of no samples');
  return m;
}

function sortedCopy(values: readonly number[]): number[] {
  const sorted = Float64Array.from(values).sort();
  if (Number.isNaN(sorted[sorted.length - 1])) throw new RangeError('percentile of NaN samples');
  return Array.from(sorted);
}

function percentileSorted(sorted: readonly number[], p: number): number {
  const rank = ((sorted.length - 1) * p) / 100;
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  const a = sorted[lo]!;
  const b = sorted[hi]!;
  return a + (b - a) * (rank - lo);
}

/** mean / p50 / p90 / p99 of the samples; null for no samples. */
export function summarize(values: readonly number[]): Summary | null {
  if (values.length === 0) return null;
  const sorted = sortedCopy(values);
  return {
    mean: mean(sorted)!,
    p50: percentileSorted(sorted, 50),
    p90: percentileSorted(sorted, 90),
    p99: percentileSorted(sorted, 99),
  };
}

/** Service-level objectives in milliseconds; a request is good when it meets every one given. */
export interface Slo {
  ttft_ms?: number;
  tpot_ms?: number;
  e2el_ms?: number;
}

const SLO_KEYS: Record<string, keyof Slo> = { ttft: 'ttft_ms', tpot: 'tpot_ms', e2el: 'e2el_ms' };

/**
 * Parses `ttft:MS tpot:MS e2el:MS` (any subset, separated by spaces or commas, values in ms) the way
 * vLLM's --goodput takes them. Throws with a clear message on unknown keys or bad values.
 */
export function parseGoodput(spec: string): Slo {
  const slo: Slo = {};
  const parts = spec.split(/[\s,]+/).filter((s) => s !== '');
  if (parts.length === 0) throw new RangeError('--goodput needs at least one of ttft:MS tpot:MS e2el:MS');
  for (const part of parts) {
    const [key, value, extra] = part.split(':');
    const field = key === undefined ? undefined : SLO_KEYS[key];
    if (field === undefined || value === undefined || extra !== undefined) {
      throw new RangeError(`--goodput: "${part}" is not one of ttft:MS tpot:MS e2el:MS`);
    }
    const ms = Number(value);
    if (value.trim() === '' || !Number.isFinite(ms) || ms < 0) {
      throw new RangeError(`--goodput: "${part}" needs a non-negative number of milliseconds`);
    }
    slo[field] = ms;
  }
  return slo;
}

/** One finished request's latencies in ms, as goodput sees them. */
export interface RequestLatency {
  ttft_ms: number;
  /** Null when the request produced at most one token: such a request meets any TPOT SLO. */
  tpot_ms: number | null;
  e2el_ms: number;
}

export interface Goodput {
  slo: Slo;
  /** Completed requests that met every SLO given. */
  good_requests: number;
  /** Good requests per second of benchmark duration. */
  request_goodput: number;
}

/**
 * Counts the requests meeting every SLO (a metric equal to its SLO meets it) and divides by the
 * benchmark duration. Failed requests are not passed in: they are never good. A request with at most
 * one output token has no TPOT and counts as meeting the TPOT SLO, as in vLLM.
 */
export function goodput(requests: readonly RequestLatency[], slo: Slo, durationS: number): Goodput {
  if (!(durationS > 0)) throw new RangeError(`duration must be positive, got ${durationS}`);
  let good = 0;
  for (const r of requests) {
    if (slo.ttft_ms !== undefined && !(r.ttft_ms <= slo.ttft_ms)) continue;
    if (slo.tpot_ms !== undefined && r.tpot_ms !== null && !(r.tpot_ms <= slo.tpot_ms)) continue;
    if (slo.e2el_ms !== undefined && !(r.e2el_ms <= slo.e2el_ms)) continue;
    good++;
  }
  return { slo: { ...slo }, good_requests: good, request_goodput: good / durationS };
}

/** A uniform generator on [0, 1). */
export type Rng = () => number;

/**
 * mulberry32: a tiny, fast 32-bit seeded PRNG. Plenty for arrival times and random prompt ids, and
 * kept here so benchmark streams never change when the engine's sampler RNG does.
 */
export function seededRng(seed: number): Rng {
  let a = (Math.trunc(seed) ^ 0x9e3779b9) >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer uniform on [lo, hi). */
export function randInt(rng: Rng, lo: number, hi: number): number {
  return lo + Math.floor(rng() * (hi - lo));
}

/**
 * n gaps (seconds) between arrivals of a Poisson process at `rate` per second: exponential with mean
 * 1/rate. An infinite rate gives all zeros (every request at once).
 */
export function poissonIntervals(n: number, rate: number, rng: Rng): number[] {
  if (!(rate > 0)) throw new RangeError(`request rate must be positive, got ${rate}`);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    // 1 − u is in (0, 1], so the log is finite.
    out[i] = rate === Infinity ? 0 : -Math.log(1 - rng()) / rate;
  }
  return out;
}

/**
 * Arrival offsets (seconds from the start) of n requests at `rate`. With `normalize` (vLLM's rule
 * for a fixed rate) the offsets are scaled so the last arrival lands exactly at n/rate: the random
 * sum strays a few percent from it, which would move throughput between seeds for no reason.
 */
export function arrivalOffsets(n: number, rate: number, rng: Rng, normalize = true): number[] {
  const gaps = poissonIntervals(n, rate, rng);
  const out = new Array<number>(n);
  let t = 0;
  for (let i = 0; i < n; i++) {
    t += gaps[i]!;
    out[i] = t;
  }
  if (normalize && n > 0 && t > 0 && rate !== Infinity) {
    const k = n / rate / t;
    for (let i = 0; i < n; i++) out[i] = out[i]! * k;
  }
  return out;
}

/**
 * The most requests in flight at once, from [start, end) intervals (an end at the same instant as a
 * start does not overlap it).
 */
export function peakConcurrency(intervals: readonly { start: number; end: number }[]): number {
  const events: [number, number][] = [];
  for (const { start, end } of intervals) events.push([start, 1], [end, -1]);
  events.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  let cur = 0;
  let peak = 0;
  for (const [, d] of events) {
    cur += d;
    if (cur > peak) peak = cur;
  }
  return peak;
}
