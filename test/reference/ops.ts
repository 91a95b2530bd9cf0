/**
 * Plain, obviously-correct TypeScript references of the native backend's ops, used by the tests.
 * Float64 math unless the op's contract fixes a rounding (bf16 activations, bf16 KV caches).
 * The attention reference works on contiguous K/V per sequence ("contiguous attention").
 */
import { DType, MatmulPrecision } from '../../src/backend/backend.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function bf16ToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0];
}

/** float32 -> bf16 bits, round to nearest even; NaN stays NaN. */
export function f32ToBf16(x: number): number {
  f32[0] = x;
  const u = u32[0];
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  const rounded = (u + 0x7fff + ((u >>> 16) & 1)) >>> 0;
  return (rounded >>> 16) & 0xffff;
}

/** x rounded to bf16 and back (as a float32 value). */
export function roundBf16(x: number): number {
  return bf16ToF32(f32ToBf16(x));
}

export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** float -> f16 bits by exhaustive nearest search over the ordered encodings (ties to even). */
export function f32ToF16(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00;
  // Binary search on magnitudes 0..0x7bff (monotonic in the encoding).
  let lo = 0;
  let hi = 0x7bff;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (f16ToF32(mid) <= a) lo = mid;
    else hi = mid - 1;
  }
  if (lo < 0x7bff) {
    const below = f16ToF32(lo);
    const above = f16ToF32(lo + 1);
    if (a - below > above - a || (a - below === above - a && (lo & 1) === 1)) lo += 1;
  }
  return sign | lo;
}

export function widen(w: Float32Array | Uint16Array, dtype: DType): Float64Array {
  const out = new Float64Array(w.length);
  for (let i = 0; i < w.length; i++) {
    out[i] = dtype === DType.F32 ? w[i] : dtype === DType.F16 ? f16ToF32(w[i]) : bf16ToF32(w[i]);
  }
  return out;
}

export function embeddingRef(table: Float32Array | Uint16Array, dtype: DType, ids: Int32Array, hidden: number): Float64Array {
  const t = widen(table, dtype);
  const out = new Float64Array(ids.length * hidden);
  for (let i = 0; i < ids.length; i++) out.set(t.subarray(ids[i] * hidden, (ids[i] + 1) * hidden), i * hidden);
  return out;
}

export interface LinearRef {
  out: Float64Array;
  /** sum_k |x[m,k] * w[n,k]|: scales the tolerance of a float32 accumulation. */
  absSum: Float64Array;
}

export function linearRef(
  x: Float32Array,
  w: Float32Array | Uint16Array,
  dtype: DType,
  bias: Float32Array | null,
  M: number,
  N: number,
  K: number,
  precision: MatmulPrecision,
): LinearRef {
  const wf = widen(w, dtype);
  const xs = new Float64Array(M * K);
  for (let i = 0; i < M * K; i++) xs[i] = precision === MatmulPrecision.BF16 ? roundBf16(x[i]) : x[i];
  const out = new Float64Array(M * N);
  const absSum = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      let a = 0;
      for (let k = 0; k < K; k++) {
        const p = xs[m * K + k] * wf[n * K + k];
        s += p;
        a += Math.abs(p);
      }
      out[m * N + n] = s + (bias ? bias[n] : 0);
      absSum[m * N + n] = a + (bias ? Math.abs(bias[n]) : 0);
    }
  }
  return { out, absSum };
}

export function rmsnormRef(x: Float32Array, weight: Float32Array, M: number, H: number, eps: number): Float64Array {
  const out = new Float64Array(M * H);
  for (let m = 0; m < M; m++) {
    let ss = 0;
    for (let i = 0; i < H; i++) ss += x[m * H + i] ** 2;
    const r = 1 / Math.sqrt(ss / H + eps);
    for (let i = 0; i < H; i++) out[m * H + i] = x[m * H + i] * r * weight[i];
  }
  return out;
}

/** Rotary embedding (HF rotate_half) of one [T, heads*headDim] array, returned as float64. */
export function ropeRef(x: Float32Array, positions: Int32Array, T: number, heads: number, headDim: number, invFreq: Float32Array): Float64Array {
  const out = Float64Array.from(x.subarray(0, T * heads * headDim));
  const half = headDim / 2;
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < heads; h++) {
      const base = (t * heads + h) * headDim;
      for (let i = 0; i < half; i++) {
        const angle = positions[t] * invFreq[i];
        const c = Math.fround(Math.cos(angle));
        const s = Math.fround(Math.sin(angle));
        const x1 = x[base + i];
        const x2 = x[base + i + half];
        out[base + i] = x1 * c - x2 * s;
        out[base + i + half] = x2 * c + x1 * s;
      }
    }
  }
  return out;
}

export function siluMulRef(gate: Float32Array, up: Float32Array, M: number, I: number, gateStride: number, upStride: number): Float64Array {
  const out = new Float64Array(M * I);
  for (let m = 0; m < M; m++) {
    for (let i = 0; i < I; i++) {
      const g = gate[m * gateStride + i];
      out[m * I + i] = (g / (1 + Math.exp(-g))) * up[m * upStride + i];
    }
  }
  return out;
}

/** transformers' gelu_pytorch_tanh(gate) * up, as written there: 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))). */
export function geluTanhMulRef(gate: Float32Array, up: Float32Array, M: number, I: number, gateStride: number, upStride: number): Float64Array {
  const out = new Float64Array(M * I);
  for (let m = 0; m < M; m++) {
    for (let i = 0; i < I; i++) {
      const x = gate[m * gateStride + i];
      out[m * I + i] = 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x))) * up[m * upStride + i];
    }
  }
  return out;
}

/**
 * Contiguous causal attention of one sequence: k, v are [seqLen, nKvHeads*headDim] (already
 * rounded to the cache dtype by the caller); q holds the LAST qLen tokens, [qLen, nHeads*headDim].
 * `window` > 0: a query at p sees keys p - window < j <= p only; `softcap` > 0: scores become
 * softcap * tanh(score / softcap).
 */
export function attentionRef(
  q: Float32Array,
  k: Float64Array | Float32Array,
  v: Float64Array | Float32Array,
  qLen: number,
  seqLen: number,
  nHeads: number,
  nKvHeads: number,
  headDim: number,
  scale: number,
  window = 0,
  softcap = 0,
): Float64Array {
  const out = new Float64Array(qLen * nHeads * headDim);
  const group = nHeads / nKvHeads;
  const scores = new Float64Array(seqLen);
  for (let t = 0; t < qLen; t++) {
    const pos = seqLen - qLen + t;
    const first = window > 0 ? Math.max(0, pos - window + 1) : 0;
    for (let h = 0; h < nHeads; h++) {
      const g = Math.floor(h / group);
      const qo = (t * nHeads + h) * headDim;
      let max = -Infinity;
      for (let j = first; j <= pos; j++) {
        let s = 0;
        const ko = (j * nKvHeads + g) * headDim;
        for (let d = 0; d < headDim; d++) s += q[qo + d] * k[ko + d];
        scores[j] = s * scale;
        if (softcap > 0) scores[j] = softcap * Math.tanh(scores[j] / softcap);
        if (scores[j] > max) max = scores[j];
      }
      let sum = 0;
      for (let j = first; j <= pos; j++) {
        scores[j] = Math.exp(scores[j] - max);
        sum += scores[j];
      }
      for (let j = first; j <= pos; j++) {
        const p = scores[j] / sum;
        const vo = (j * nKvHeads + g) * headDim;
        for (let d = 0; d < headDim; d++) out[qo + d] += p * v[vo + d];
      }
    }
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// Test data helpers

/** Small deterministic PRNG (mulberry32) so failures reproduce. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomF32(n: number, rand: () => number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rand() * 2 - 1) * scale;
  return a;
}

/** Random weights of a dtype, as raw element bits. */
export function randomWeights(n: number, dtype: DType, rand: () => number, scale = 1): Float32Array | Uint16Array {
  const f = randomF32(n, rand, scale);
  if (dtype === DType.F32) return f;
  const u = new Uint16Array(n);
  for (let i = 0; i < n; i++) u[i] = dtype === DType.BF16 ? f32ToBf16(f[i]) : f32ToF16(f[i]);
  return u;
}

/**
 * Element-wise |actual - expected| <= atol + rtol * scale[i] (scale defaults to |expected|).
 * Returns null when all pass, else a message about the worst element.
 */
export function closeTo(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  rtol: number,
  atol = 0,
  scale?: ArrayLike<number>,
): string | null {
  if (actual.length < expected.length) return `length ${actual.length} < ${expected.length}`;
  let worst = -1;
  let worstRatio = 0;
  for (let i = 0; i < expected.length; i++) {
    const tol = atol + rtol * (scale ? scale[i] : Math.abs(expected[i]));
    const err = Math.abs(actual[i] - expected[i]);
    if (!(err <= tol)) {
      const ratio = tol > 0 ? err / tol : Infinity;
      if (Number.isNaN(err) || ratio > worstRatio || worst < 0) {
        worst = i;
        worstRatio = Number.isNaN(err) ? Infinity : ratio;
      }
    }
  }
  if (worst < 0) return null;
  return `element ${worst}: got ${actual[worst]}, expected ${expected[worst]} (error ${worstRatio.toPrecision(3)}x the tolerance)`;
}

/** True when both arrays hold the same float32 bits over the first n elements. */
export function bitEqual(a: Float32Array, b: Float32Array, n = Math.max(a.length, b.length)): boolean {
  if (a.length < n || b.length < n) return false;
  const ua = new Uint32Array(a.buffer, a.byteOffset, n);
  const ub = new Uint32Array(b.buffer, b.byteOffset, n);
  for (let i = 0; i < n; i++) if (ua[i] !== ub[i]) return false;
  return true;
}
