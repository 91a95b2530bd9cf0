/**
 * Test reference for the GGML quantized formats: plain dequantization of each block type, written
 * from the format (llama.cpp's ggml-common.h layouts), float64 dot products, random valid blocks,
 * and an emulation of llama.cpp's int8 activation quantization (Q8_0 / Q8_K) for the accuracy
 * comparison. Float32 arithmetic is emulated with Math.fround where the format's dequantization
 * computes in float32 (so the values equal ggml's bit for bit).
 */
import { GGML_TYPES, GgmlType } from '../../src/backend/quant.js';
import { rng } from './ops.js';

export { rng };

const f = Math.fround;

export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** float32 -> IEEE half bits, round to nearest even (finite, normal-range inputs suffice here). */
export function f32ToF16(v: number): number {
  const buf = new DataView(new ArrayBuffer(4));
  buf.setFloat32(0, v);
  const x = buf.getUint32(0);
  const sign = (x >>> 16) & 0x8000;
  let e = ((x >>> 23) & 0xff) - 127 + 15;
  let m = x & 0x7fffff;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    m |= 0x800000;
    const shift = 14 - e;
    let r = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && r & 1)) r++;
    return sign | r;
  }
  let r = (e << 10) | (m >>> 13);
  const rem = m & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) r++;
  return sign | r;
}

const IQ4 = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

function h(b: Uint8Array, o: number): number {
  return f16ToF32(b[o] | (b[o + 1] << 8));
}

/** Dequantizes one block at b[o..] into y[yo..] (float32 values as numbers). */
function dequantBlock(type: GgmlType, b: Uint8Array, o: number, y: Float32Array, yo: number): void {
  switch (type) {
    case GgmlType.Q8_0: {
      const d = h(b, o);
      for (let j = 0; j < 32; j++) y[yo + j] = f(((b[o + 2 + j] << 24) >> 24) * d);
      return;
    }
    case GgmlType.Q4_0:
    case GgmlType.IQ4_NL: {
      const d = h(b, o);
      for (let j = 0; j < 16; j++) {
        const byte = b[o + 2 + j];
        const lo = type === GgmlType.Q4_0 ? (byte & 15) - 8 : IQ4[byte & 15];
        const hi = type === GgmlType.Q4_0 ? (byte >> 4) - 8 : IQ4[byte >> 4];
        y[yo + j] = f(lo * d);
        y[yo + j + 16] = f(hi * d);
      }
      return;
    }
    case GgmlType.Q4_1: {
      const d = h(b, o), m = h(b, o + 2);
      for (let j = 0; j < 16; j++) {
        const byte = b[o + 4 + j];
        y[yo + j] = f(f((byte & 15) * d) + m);
        y[yo + j + 16] = f(f((byte >> 4) * d) + m);
      }
      return;
    }
    case GgmlType.Q5_0:
    case GgmlType.Q5_1: {
      const one = type === GgmlType.Q5_1;
      const d = h(b, o), m = one ? h(b, o + 2) : 0;
      const p = o + (one ? 4 : 2);
      const qh = (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;
      for (let j = 0; j < 16; j++) {
        const byte = b[p + 4 + j];
        const v0 = (byte & 15) | (((qh >>> j) & 1) << 4);
        const v1 = (byte >> 4) | (((qh >>> (j + 16)) & 1) << 4);
        if (one) {
          y[yo + j] = f(f(v0 * d) + m);
          y[yo + j + 16] = f(f(v1 * d) + m);
        } else {
          y[yo + j] = f((v0 - 16) * d);
          y[yo + j + 16] = f((v1 - 16) * d);
        }
      }
      return;
    }
    case GgmlType.Q2_K: {
      // scales[16] qs[64] d dmin. Value i (0..255): half n = i >> 7, within it 4 shifts of 32 values,
      // each 32 = two sub-blocks of 16 over qs bytes [32n + l] and [32n + 16 + l].
      const d = h(b, o + 80), dmin = h(b, o + 82);
      for (let i = 0; i < 256; i++) {
        const n = i >> 7, r = i & 127, shift = 2 * (r >> 5), l = r & 31;
        const sub = i >> 4;
        const sc = b[o + sub];
        const q = (b[o + 16 + 32 * n + l] >> shift) & 3;
        y[yo + i] = f(f(f(d * (sc & 15)) * q) - f(dmin * (sc >> 4)));
      }
      return;
    }
    case GgmlType.Q3_K: {
      // hmask[32] qs[64] scales[12] d. 16 six-bit scales: low 4 bits from bytes 0..7 (nibbles),
      // high 2 bits from bytes 8..11.
      const d = h(b, o + 108);
      const s = (j: number): number => {
        const low = j < 8 ? b[o + 96 + j] & 15 : b[o + 96 + j - 8] >> 4;
        const high = (b[o + 104 + (j & 3)] >> (2 * (j >> 2))) & 3;
        return (low | (high << 4)) - 32;
      };
      for (let i = 0; i < 256; i++) {
        const n = i >> 7, r = i & 127, j = r >> 5, l = r & 31;
        const q = (b[o + 32 + 32 * n + l] >> (2 * j)) & 3;
        const hbit = (b[o + l] >> (4 * n + j)) & 1;
        y[yo + i] = f(f(d * s(i >> 4)) * (q - (hbit ? 0 : 4)));
      }
      return;
    }
    case GgmlType.Q4_K:
    case GgmlType.Q5_K: {
      const five = type === GgmlType.Q5_K;
      const d = h(b, o), dmin = h(b, o + 2);
      const sc = (j: number): [number, number] => {
        const q = o + 4;
        if (j < 4) return [b[q + j] & 63, b[q + j + 4] & 63];
        return [(b[q + j + 4] & 15) | ((b[q + j - 4] >> 6) << 4), (b[q + j + 4] >> 4) | ((b[q + j] >> 6) << 4)];
      };
      const qs = o + (five ? 48 : 16);
      for (let i = 0; i < 256; i++) {
        const sub = i >> 5, l = i & 31, pair = sub >> 1;
        const byte = b[qs + 32 * pair + l];
        let q = sub & 1 ? byte >> 4 : byte & 15;
        if (five) q += ((b[o + 16 + l] >> sub) & 1) << 4;
        const [s, m] = sc(sub);
        y[yo + i] = f(f(f(d * s) * q) - f(dmin * m));
      }
      return;
    }
    case GgmlType.Q6_K: {
      // ql[128] qh[64] scales[16] d. Value i: half n, within it position r = 32 * quarter + l.
      const d = h(b, o + 208);
      for (let i = 0; i < 256; i++) {
        const n = i >> 7, r = i & 127, quarter = r >> 5, l = r & 31;
        const lowByte = b[o + 64 * n + l + (quarter & 1 ? 32 : 0)];
        const low = quarter < 2 ? lowByte & 15 : lowByte >> 4;
        const high = (b[o + 128 + 32 * n + l] >> (2 * quarter)) & 3;
        const q = (low | (high << 4)) - 32;
        const sc = (b[o + 192 + (i >> 4)] << 24) >> 24;
        y[yo + i] = f(f(d * sc) * q);
      }
      return;
    }
    case GgmlType.IQ4_XS: {
      const d = h(b, o);
      const sh = b[o + 2] | (b[o + 3] << 8);
      for (let i = 0; i < 256; i++) {
        const ib = i >> 5, l = i & 31;
        const ls = ((b[o + 4 + (ib >> 1)] >> (4 * (ib & 1))) & 15) | (((sh >> (2 * ib)) & 3) << 4);
        const byte = b[o + 8 + 16 * ib + (l & 15)];
        y[yo + i] = f(f(d * (ls - 32)) * IQ4[l < 16 ? byte & 15 : byte >> 4]);
      }
      return;
    }
    default:
      throw new RangeError(`no reference for type ${type}`);
  }
}

export function typeInfo(type: GgmlType): { name: string; blockSize: number; blockBytes: number } {
  const t = GGML_TYPES.get(type);
  if (!t) throw new RangeError(`unknown type ${type}`);
  return t;
}

/** rows x k values of `type` to float32. */
export function dequantizeRef(type: GgmlType, src: Uint8Array, rows: number, k: number): Float32Array {
  const { blockSize, blockBytes } = typeInfo(type);
  const nb = (rows * k) / blockSize;
  const y = new Float32Array(rows * k);
  for (let i = 0; i < nb; i++) dequantBlock(type, src, i * blockBytes, y, i * blockSize);
  return y;
}

/** Offsets of the fp16 fields (scales) of each type's block, which random bytes must not fill. */
const HALF_FIELDS: Partial<Record<GgmlType, number[]>> = {
  [GgmlType.Q8_0]: [0], [GgmlType.Q4_0]: [0], [GgmlType.Q4_1]: [0, 2], [GgmlType.Q5_0]: [0], [GgmlType.Q5_1]: [0, 2],
  [GgmlType.Q2_K]: [80, 82], [GgmlType.Q3_K]: [108], [GgmlType.Q4_K]: [0, 2], [GgmlType.Q5_K]: [0, 2],
  [GgmlType.Q6_K]: [208], [GgmlType.IQ4_NL]: [0], [GgmlType.IQ4_XS]: [0],
};


/** Random valid blocks: random payload bytes, scales fp16 of magnitude ~ `scale` (either sign). */
export function randomQuant(type: GgmlType, rows: number, k: number, seed: number, scale = 0.01): Uint8Array {
  const { blockSize, blockBytes } = typeInfo(type);
  const r = rng(seed);
  const nb = (rows * k) / blockSize;
  const out = new Uint8Array(nb * blockBytes);
  for (let i = 0; i < out.length; i++) out[i] = Math.floor(r() * 256);
  const fields = HALF_FIELDS[type] ?? [];
  for (let i = 0; i < nb; i++) {
    for (const off of fields) {
      const v = (r() < 0.5 ? -1 : 1) * scale * (0.25 + r());
      const hb = f32ToF16(v);
      out[i * blockBytes + off] = hb & 255;
      out[i * blockBytes + off + 1] = hb >> 8;
    }
  }
  return out;
}

/** float64 y[m, r] = sum_k w[r, k] x[m, k]. */
export function matmulF64(w: Float32Array, x: Float32Array, M: number, N: number, K: number): Float64Array {
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let r = 0; r < N; r++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += w[r * K + k] * x[m * K + k];
      y[m * N + r] = s;
    }
  return y;
}

/**
 * llama.cpp's activation rounding, emulated: Q8_0 (32-blocks, d = amax/127 stored as fp16, q =
 * round(x / d)) for 32-block weight types, Q8_K (256-blocks, float32 scale from the signed
 * extreme, q = round(-127/max · x)) for the K-quants and IQ4_XS. Returns the dequantized
 * activations; the dot with the weights is then exact (float64), so the emulation measures the
 * activation rounding error alone (llama.cpp's dominant one).
 */
export function llamaQ8Activations(x: Float32Array, blockSize: number): Float64Array {
  const y = new Float64Array(x.length);
  const rne = (v: number): number => {
    const r = Math.round(v);
    return Math.abs(v - Math.trunc(v)) === 0.5 ? 2 * Math.round(v / 2) : r;
  };
  for (let b = 0; b < x.length; b += blockSize) {
    if (blockSize === 32) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b + j]));
      const d = f16ToF32(f32ToF16(f(amax / 127)));
      const id = d ? f(1 / d) : 0;
      for (let j = 0; j < 32; j++) y[b + j] = rne(f(x[b + j] * id)) * d;
    } else {
      let max = 0, amax = 0;
      for (let j = 0; j < blockSize; j++) if (Math.abs(x[b + j]) > amax) { amax = Math.abs(x[b + j]); max = x[b + j]; }
      if (amax === 0) continue;
      const iscale = f(-127 / max);
      const d = f(1 / iscale);
      for (let j = 0; j < blockSize; j++) y[b + j] = Math.min(127, rne(f(iscale * x[b + j]))) * d;
    }
  }
  return y;
}
