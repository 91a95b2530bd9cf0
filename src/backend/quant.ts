/**
 * Quantized weight types: the GGML/GGUF type ids (the numbers GGUF files store), with their block
 * geometry. One source of truth for the GGUF reader and writer, the weight sources, the model and
 * the backends; the native kernels use the same ids (native/quant/).
 *
 * A quantized matrix is stored row by row (each row of K values on its own), each row as K /
 * blockSize blocks of blockBytes bytes.
 */
export enum GgmlType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
}

export interface GgmlTypeInfo {
  name: string;
  /** Values per block. */
  blockSize: number;
  /** Bytes per block. */
  blockBytes: number;
}

/** Block geometry of every type a GGUF file may declare (so sizes can be checked even for types we do not run). */
export const GGML_TYPES: ReadonlyMap<number, GgmlTypeInfo> = new Map<number, GgmlTypeInfo>([
  [GgmlType.F32, { name: 'F32', blockSize: 1, blockBytes: 4 }],
  [GgmlType.F16, { name: 'F16', blockSize: 1, blockBytes: 2 }],
  [GgmlType.Q4_0, { name: 'Q4_0', blockSize: 32, blockBytes: 18 }],
  [GgmlType.Q4_1, { name: 'Q4_1', blockSize: 32, blockBytes: 20 }],
  [GgmlType.Q5_0, { name: 'Q5_0', blockSize: 32, blockBytes: 22 }],
  [GgmlType.Q5_1, { name: 'Q5_1', blockSize: 32, blockBytes: 24 }],
  [GgmlType.Q8_0, { name: 'Q8_0', blockSize: 32, blockBytes: 34 }],
  [GgmlType.Q8_1, { name: 'Q8_1', blockSize: 32, blockBytes: 36 }],
  [GgmlType.Q2_K, { name: 'Q2_K', blockSize: 256, blockBytes: 84 }],
  [GgmlType.Q3_K, { name: 'Q3_K', blockSize: 256, blockBytes: 110 }],
  [GgmlType.Q4_K, { name: 'Q4_K', blockSize: 256, blockBytes: 144 }],
  [GgmlType.Q5_K, { name: 'Q5_K', blockSize: 256, blockBytes: 176 }],
  [GgmlType.Q6_K, { name: 'Q6_K', blockSize: 256, blockBytes: 210 }],
  [GgmlType.Q8_K, { name: 'Q8_K', blockSize: 256, blockBytes: 292 }],
  [GgmlType.IQ2_XXS, { name: 'IQ2_XXS', blockSize: 256, blockBytes: 66 }],
  [GgmlType.IQ2_XS, { name: 'IQ2_XS', blockSize: 256, blockBytes: 74 }],
  [GgmlType.IQ3_XXS, { name: 'IQ3_XXS', blockSize: 256, blockBytes: 98 }],
  [GgmlType.IQ1_S, { name: 'IQ1_S', blockSize: 256, blockBytes: 50 }],
  [GgmlType.IQ4_NL, { name: 'IQ4_NL', blockSize: 32, blockBytes: 18 }],
  [GgmlType.IQ3_S, { name: 'IQ3_S', blockSize: 256, blockBytes: 110 }],
  [GgmlType.IQ2_S, { name: 'IQ2_S', blockSize: 256, blockBytes: 82 }],
  [GgmlType.IQ4_XS, { name: 'IQ4_XS', blockSize: 256, blockBytes: 136 }],
  [GgmlType.I8, { name: 'I8', blockSize: 1, blockBytes: 1 }],
  [GgmlType.I16, { name: 'I16', blockSize: 1, blockBytes: 2 }],
  [GgmlType.I32, { name: 'I32', blockSize: 1, blockBytes: 4 }],
  [GgmlType.I64, { name: 'I64', blockSize: 1, blockBytes: 8 }],
  [GgmlType.F64, { name: 'F64', blockSize: 1, blockBytes: 8 }],
  [GgmlType.IQ1_M, { name: 'IQ1_M', blockSize: 256, blockBytes: 56 }],
  [GgmlType.BF16, { name: 'BF16', blockSize: 1, blockBytes: 2 }],
  [GgmlType.TQ1_0, { name: 'TQ1_0', blockSize: 256, blockBytes: 54 }],
  [GgmlType.TQ2_0, { name: 'TQ2_0', blockSize: 256, blockBytes: 66 }],
  [GgmlType.MXFP4, { name: 'MXFP4', blockSize: 32, blockBytes: 17 }],
]);

/** The quantized types Pagewise runs (kept quantized in memory; integer kernels in native/quant/). */
export const SUPPORTED_QUANT_TYPES: readonly GgmlType[] = [
  GgmlType.Q8_0,
  GgmlType.Q4_0,
  GgmlType.Q4_1,
  GgmlType.Q5_0,
  GgmlType.Q5_1,
  GgmlType.Q2_K,
  GgmlType.Q3_K,
  GgmlType.Q4_K,
  GgmlType.Q5_K,
  GgmlType.Q6_K,
  GgmlType.IQ4_NL,
  GgmlType.IQ4_XS,
];

/** Bytes of one row of `k` values of a type (k must be a multiple of the block size). */
export function ggmlRowBytes(type: GgmlType, k: number): number {
  const info = GGML_TYPES.get(type);
  if (!info) throw new RangeError(`unknown GGML type ${type}`);
  if (k % info.blockSize !== 0) throw new RangeError(`a row of ${k} values is not a whole number of ${info.name} blocks (${info.blockSize})`);
  return (k / info.blockSize) * info.blockBytes;
}

export function ggmlTypeName(type: number): string {
  return GGML_TYPES.get(type)?.name ?? `unknown type ${type}`;
}
