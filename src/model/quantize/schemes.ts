/**
 * Quantization schemes (`pagewise quantize --type`) and the per-tensor type each one gives: the
 * mixtures of llama.cpp's `llama-quantize` without an importance matrix, so that a file we write
 * has the tensor types a llama.cpp user expects from the same name.
 */
import { GgmlType, GGML_TYPES } from '../../backend/quant.js';

export type QuantScheme = 'q8_0' | 'q4_0' | 'q4_k_m' | 'q5_k_m' | 'q6_k';

export interface SchemeInfo {
  /** The type most matrices get. */
  baseType: GgmlType;
  /** `general.file_type` (llama.cpp's LLAMA_FTYPE_MOSTLY_*). */
  fileType: number;
}

export const QUANT_SCHEMES: Readonly<Record<QuantScheme, SchemeInfo>> = {
  q8_0: { baseType: GgmlType.Q8_0, fileType: 7 },
  q4_0: { baseType: GgmlType.Q4_0, fileType: 2 },
  q4_k_m: { baseType: GgmlType.Q4_K, fileType: 15 },
  q5_k_m: { baseType: GgmlType.Q5_K, fileType: 17 },
  q6_k: { baseType: GgmlType.Q6_K, fileType: 18 },
};

export function parseQuantScheme(s: string): QuantScheme | undefined {
  return Object.hasOwn(QUANT_SCHEMES, s) ? (s as QuantScheme) : undefined;
}

/** What the type rule needs to know about a tensor. */
export interface TensorRole {
  /** GGUF name, e.g. `blk.3.attn_v.weight`. */
  name: string;
  /** GGUF dimensions (ne[0] = row length). */
  ne: readonly number[];
  /** Number of transformer blocks. */
  numLayers: number;
  /** Whether the file has a separate `output.weight` (else `token_embd` is also the head). */
  hasOutput: boolean;
}

/**
 * llama.cpp's `use_more_bits`: the first and last eighth of the layers and every third one in
 * between get more bits in the _M mixtures.
 */
export function useMoreBits(layer: number, numLayers: number): boolean {
  return layer < Math.floor(numLayers / 8) || layer >= Math.floor((7 * numLayers) / 8) || (layer - Math.floor(numLayers / 8)) % 3 === 2;
}

function blockSize(t: GgmlType): number {
  return GGML_TYPES.get(t)!.blockSize;
}

/**
 * The GGML type a tensor gets under a scheme:
 * - 1-D tensors (norm weights, biases) stay F32;
 * - the head (`output.weight`, or `token_embd.weight` when embeddings are tied) gets Q6_K, except
 *   in q8_0 files (Q8_0), and Q8_0 when its rows are not whole blocks of the base type;
 * - q4_k_m / q5_k_m give Q6_K to `attn_v` and `ffn_down` of the layers {@link useMoreBits} picks;
 * - a row length that is not a multiple of the chosen type's block falls back as llama.cpp does:
 *   Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, and to F16 if that still does not divide the row.
 */
export function tensorType(scheme: QuantScheme, t: TensorRole): GgmlType {
  if (t.ne.length < 2) return GgmlType.F32;
  const base = QUANT_SCHEMES[scheme].baseType;
  const rowLen = t.ne[0]!;
  let type = base;
  const isHead = t.name === 'output.weight' || (!t.hasOutput && t.name === 'token_embd.weight');
  const mixture = scheme === 'q4_k_m' || scheme === 'q5_k_m';
  const layer = /^blk\.(\d+)\./.exec(t.name);
  if (isHead) {
    if (rowLen % blockSize(base) !== 0) type = GgmlType.Q8_0;
    else if (base !== GgmlType.Q8_0) type = GgmlType.Q6_K;
  } else if (mixture && layer && (t.name.endsWith('.attn_v.weight') || t.name.endsWith('.ffn_down.weight'))) {
    if (useMoreBits(Number(layer[1]), t.numLayers)) type = GgmlType.Q6_K;
  }
  if (rowLen % blockSize(type) !== 0) {
    const fallback: Partial<Record<GgmlType, GgmlType>> = {
      [GgmlType.Q4_K]: GgmlType.Q5_0,
      [GgmlType.Q5_K]: GgmlType.Q5_1,
      [GgmlType.Q6_K]: GgmlType.Q8_0,
    };
    type = fallback[type] ?? type;
    if (rowLen % blockSize(type) !== 0) type = GgmlType.F16;
  }
  return type;
}
