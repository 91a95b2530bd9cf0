/**
 * Conversions between float32 and the 16-bit weight formats, on raw bits.
 *
 * The native kernels widen weights themselves; these exist for the TS side: small tensors the
 * backend wants as float32 (norm weights, biases), tests, and the fixture generator.
 */
import { DType, type WeightArray } from '../../backend/backend.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** BF16 bits → float32 (exact: BF16 is the top half of a float32). */
export function bf16ToF32(bits: number): number {
  u32[0] = (bits & 0xffff) << 16;
  return f32[0]!;
}

/** float32 → BF16 bits, round to nearest even (NaN stays NaN). */
export function f32ToBf16(value: number): number {
  f32[0] = value;
  const u = u32[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff; // quiet NaN
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** IEEE half bits → float32 (exact). */
export function f16ToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24; // zero and subnormals
  if (exp === 31) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** float32 → IEEE half bits, round to nearest even; overflow gives ±Infinity. */
export function f32ToF16(value: number): number {
  f32[0] = value;
  const u = u32[0]!;
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half: shift the mantissa (with its implicit 1) right, rounding to nearest even.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let m = mant >>> shift;
    if (rest > half || (rest === half && (m & 1) === 1)) m++;
    return sign | m; // m may carry into the exponent field, which is the right result
  }
  const rest = mant & 0x1fff;
  let h = (e << 10) | (mant >>> 13);
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++; // carry may round up to Infinity: correct
  return sign | h;
}

/** A tensor's values widened to float32 (a copy; F32 data is copied too, so callers may mutate it). */
export function toFloat32(t: { dtype: DType; data: WeightArray }): Float32Array {
  if (t.dtype === DType.F32) return Float32Array.from(t.data as Float32Array);
  const src = t.data as Uint16Array;
  const out = new Float32Array(src.length);
  if (t.dtype === DType.BF16) {
    const outBits = new Uint32Array(out.buffer);
    for (let i = 0; i < src.length; i++) outBits[i] = src[i]! << 16;
  } else {
    for (let i = 0; i < src.length; i++) out[i] = f16ToF32(src[i]!);
  }
  return out;
}
