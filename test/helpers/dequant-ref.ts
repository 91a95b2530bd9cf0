/**
 * Test-only dequantizers of the GGML block formats, written from the format definitions (block
 * layouts as in ggml-common.h), to check the quantizers' round trip independently of the engine's
 * kernels.
 */
import { GgmlType } from '../../src/backend/quant.js';

function f16(dv: DataView, at: number): number {
  const h = dv.getUint16(at, true);
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 31;
  const m = h & 1023;
  if (e === 31) return m ? NaN : s * Infinity;
  return e === 0 ? s * m * 2 ** -24 : s * (1 + m / 1024) * 2 ** (e - 15);
}

/** (scale, min) index j of a Q4_K / Q5_K super-block's 12 packed bytes at `at`. */
function scaleMin(q: Uint8Array, at: number, j: number): [number, number] {
  if (j < 4) return [q[at + j]! & 63, q[at + j + 4]! & 63];
  return [(q[at + j + 4]! & 0xf) | ((q[at + j - 4]! >> 6) << 4), (q[at + j + 4]! >> 4) | ((q[at + j]! >> 6) << 4)];
}

/** Dequantize `n` values (whole blocks) of `type` from `q`. */
export function dequantize(type: GgmlType, q: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  const dv = new DataView(q.buffer, q.byteOffset, q.byteLength);
  switch (type) {
    case GgmlType.Q8_0:
      for (let b = 0; b < n / 32; b++) {
        const d = f16(dv, b * 34);
        for (let j = 0; j < 32; j++) out[b * 32 + j] = d * dv.getInt8(b * 34 + 2 + j);
      }
      break;
    case GgmlType.Q4_0:
      for (let b = 0; b < n / 32; b++) {
        const d = f16(dv, b * 18);
        for (let j = 0; j < 16; j++) {
          const x = q[b * 18 + 2 + j]!;
          out[b * 32 + j] = d * ((x & 15) - 8);
          out[b * 32 + j + 16] = d * ((x >> 4) - 8);
        }
      }
      break;
    case GgmlType.Q5_0:
    case GgmlType.Q5_1: {
      const bb = type === GgmlType.Q5_0 ? 22 : 24;
      for (let b = 0; b < n / 32; b++) {
        const o = b * bb;
        const d = f16(dv, o);
        const m = type === GgmlType.Q5_1 ? f16(dv, o + 2) : 0;
        const qhAt = type === GgmlType.Q5_0 ? o + 2 : o + 4;
        const qh = dv.getUint32(qhAt, true);
        for (let j = 0; j < 16; j++) {
          const x = q[qhAt + 4 + j]!;
          const lo = (x & 15) | (((qh >>> j) & 1) << 4);
          const hi = (x >> 4) | (((qh >>> (j + 16)) & 1) << 4);
          out[b * 32 + j] = type === GgmlType.Q5_0 ? d * (lo - 16) : d * lo + m;
          out[b * 32 + j + 16] = type === GgmlType.Q5_0 ? d * (hi - 16) : d * hi + m;
        }
      }
      break;
    }
    case GgmlType.Q4_K:
    case GgmlType.Q5_K: {
      const five = type === GgmlType.Q5_K;
      const bb = five ? 176 : 144;
      for (let b = 0; b < n / 256; b++) {
        const o = b * bb;
        const d = f16(dv, o);
        const dmin = f16(dv, o + 2);
        const qs = o + (five ? 48 : 16);
        for (let c = 0; c < 4; c++) {
          const [s0, m0] = scaleMin(q, o + 4, 2 * c);
          const [s1, m1] = scaleMin(q, o + 4, 2 * c + 1);
          for (let l = 0; l < 32; l++) {
            const x = q[qs + 32 * c + l]!;
            let lo = x & 15;
            let hi = x >> 4;
            if (five) {
              const h = q[o + 16 + l]!;
              lo |= ((h >> (2 * c)) & 1) << 4;
              hi |= ((h >> (2 * c + 1)) & 1) << 4;
            }
            out[b * 256 + 64 * c + l] = d * s0 * lo - dmin * m0;
            out[b * 256 + 64 * c + 32 + l] = d * s1 * hi - dmin * m1;
          }
        }
      }
      break;
    }
    case GgmlType.Q6_K:
      for (let b = 0; b < n / 256; b++) {
        const o = b * 210;
        const d = f16(dv, o + 208);
        for (let half = 0; half < 2; half++) {
          const ql = o + 64 * half;
          const qh = o + 128 + 32 * half;
          for (let l = 0; l < 32; l++) {
            const h = q[qh + l]!;
            const v = [
              ((q[ql + l]! & 15) | (((h >> 0) & 3) << 4)) - 32,
              ((q[ql + l + 32]! & 15) | (((h >> 2) & 3) << 4)) - 32,
              ((q[ql + l]! >> 4) | (((h >> 4) & 3) << 4)) - 32,
              ((q[ql + l + 32]! >> 4) | (((h >> 6) & 3) << 4)) - 32,
            ];
            for (let k = 0; k < 4; k++) {
              const idx = 128 * half + 32 * k + l;
              out[b * 256 + idx] = d * dv.getInt8(o + 192 + (idx >> 4)) * v[k]!;
            }
          }
        }
      }
      break;
    default:
      throw new Error(`no test dequantizer for type ${type}`);
  }
  return out;
}
