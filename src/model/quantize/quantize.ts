/**
 * Float weights → GGML quantized bytes, row by row (each row of a matrix is encoded on its own, in
 * blocks along the row). The native quantizers (native/quant/quantize.cc) give the same bytes as
 * llama.cpp's reference quantizers.
 *
 * Used by the GGUF writer (`pagewise quantize`) and for quantizing safetensors weights at load
 * time (`--quantization q8_0|q4_0`).
 */
import { DType, type WeightArray } from '../../backend/backend.js';
import { nativeHost } from '../../backend/native.js';
import { GGML_TYPES, ggmlRowBytes, ggmlTypeName, GgmlType } from '../../backend/quant.js';
import { f16ToF32 } from '../loader/dtype.js';

/** Types the native quantizer writes. */
export const QUANTIZER_TYPES: readonly GgmlType[] = [
  GgmlType.F32,
  GgmlType.F16,
  GgmlType.BF16,
  GgmlType.Q4_0,
  GgmlType.Q5_0,
  GgmlType.Q5_1,
  GgmlType.Q8_0,
  GgmlType.Q4_K,
  GgmlType.Q5_K,
  GgmlType.Q6_K,
];

/** `--quantization` values: the types safetensors weights can be quantized to at load time. */
export const LOAD_QUANTIZATIONS = { q8_0: GgmlType.Q8_0, q4_0: GgmlType.Q4_0 } as const;
export type LoadQuantization = keyof typeof LOAD_QUANTIZATIONS;

export function parseLoadQuantization(s: string): LoadQuantization | undefined {
  return Object.hasOwn(LOAD_QUANTIZATIONS, s) ? (s as LoadQuantization) : undefined;
}

/** A weight as the safetensors loader gives it: raw F32/F16/BF16 bits, PyTorch [out, in] shape. */
export interface FloatWeight {
  dtype: DType;
  shape: readonly number[];
  data: WeightArray;
}

/** Rows quantized per native call: bounds the float32 staging copy to 16 MB. */
const CHUNK_VALUES = 1 << 22;

function checkType(type: GgmlType, rowLen: number, what: string): void {
  if (!QUANTIZER_TYPES.includes(type)) throw new RangeError(`${what}: no quantizer for GGML type ${ggmlTypeName(type)}`);
  const bs = GGML_TYPES.get(type)!.blockSize;
  if (rowLen % bs !== 0) throw new RangeError(`${what}: rows of ${rowLen} values are not whole ${ggmlTypeName(type)} blocks of ${bs}`);
}

/** Quantize `rows` rows of `k` float32 values. */
export function quantizeRows(type: GgmlType, values: Float32Array, rows: number, k: number): Uint8Array {
  checkType(type, k, 'quantizeRows');
  return nativeHost().quantizeRows(type, values, rows, k);
}

/** Widen row `r` of a 2-D weight into `out` (float32). */
function widenRow(w: FloatWeight, r: number, k: number, out: Float32Array, at: number): void {
  const src = w.data;
  const base = r * k;
  if (w.dtype === DType.F32) {
    out.set((src as Float32Array).subarray(base, base + k), at);
  } else if (w.dtype === DType.BF16) {
    const bits = new Uint32Array(out.buffer, out.byteOffset + at * 4, k);
    const s = src as Uint16Array;
    for (let i = 0; i < k; i++) bits[i] = s[base + i]! << 16;
  } else {
    const s = src as Uint16Array;
    const table = f16Table();
    for (let i = 0; i < k; i++) out[at + i] = table[s[base + i]!]!;
  }
}

let f16Values: Float32Array | undefined;
/** Every half value widened, indexed by its bits (256 KB, built once). */
function f16Table(): Float32Array {
  f16Values ??= Float32Array.from({ length: 65536 }, (_, h) => f16ToF32(h));
  return f16Values;
}

/**
 * The bytes of a weight quantized to `type`, in chunks of whole rows. The weight is read as
 * rows of its last dimension (a 1-D weight is one row); `rowOrder(i)`, when given, names the source
 * row stored as row i (the q/k permutation of GGUF files).
 */
export function* quantizeWeightChunks(w: FloatWeight, type: GgmlType, rowOrder?: (i: number) => number, what = 'weight'): Iterable<Uint8Array> {
  const k = w.shape[w.shape.length - 1]!;
  const rows = w.shape.slice(0, -1).reduce((a, b) => a * b, 1);
  checkType(type, k, what);
  if (w.data.length !== rows * k) throw new RangeError(`${what}: ${w.data.length} values for shape [${w.shape.join(', ')}]`);
  const rowsPerChunk = Math.max(1, Math.floor(CHUNK_VALUES / k));
  const staging = new Float32Array(Math.min(rows, rowsPerChunk) * k);
  const host = nativeHost();
  for (let r0 = 0; r0 < rows; r0 += rowsPerChunk) {
    const n = Math.min(rowsPerChunk, rows - r0);
    for (let i = 0; i < n; i++) widenRow(w, rowOrder ? rowOrder(r0 + i) : r0 + i, k, staging, i * k);
    yield host.quantizeRows(type, n === rowsPerChunk ? staging : staging.subarray(0, n * k), n, k);
  }
}

/**
 * Quantize a whole float weight (F32/F16/BF16, PyTorch [out, in]) to `type`: `out` rows of
 * ggmlRowBytes(type, in) bytes. The load-time path of `--quantization q8_0|q4_0`.
 */
export function quantizeWeight(w: FloatWeight, type: GgmlType, what = 'weight'): Uint8Array {
  const k = w.shape[w.shape.length - 1]!;
  const rows = w.shape.slice(0, -1).reduce((a, b) => a * b, 1);
  checkType(type, k, what);
  const out = new Uint8Array(rows * ggmlRowBytes(type, k));
  let at = 0;
  for (const chunk of quantizeWeightChunks(w, type, undefined, what)) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}
