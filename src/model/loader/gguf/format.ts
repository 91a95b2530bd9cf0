/**
 * GGUF format constants (llama.cpp's file format, versions 2 and 3): one source of truth for the
 * GGUF reader and writer. Layout: header (magic, version u32, tensor count u64, metadata count u64),
 * metadata key/value pairs, tensor infos, padding to the alignment, then the data section.
 */

/** "GGUF" as the little-endian u32 at offset 0. */
export const GGUF_MAGIC = 0x46554747;
export const GGUF_MAGIC_BYTES = 'GGUF';
/** Version 1 (u32 counts) is obsolete; 2 and 3 differ only in that 3 may be big-endian (we read little-endian only). */
export const GGUF_SUPPORTED_VERSIONS: readonly number[] = [2, 3];
/** The version a writer produces. */
export const GGUF_WRITE_VERSION = 3;
/** Data section and tensor offsets alignment when `general.alignment` is absent. */
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** ggml's GGML_MAX_DIMS. */
export const GGUF_MAX_DIMS = 4;

/** Metadata value type ids. */
export enum GgufValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** Byte width of each scalar value type (strings and arrays are variable). */
export const GGUF_SCALAR_BYTES: ReadonlyMap<GgufValueType, number> = new Map([
  [GgufValueType.UINT8, 1],
  [GgufValueType.INT8, 1],
  [GgufValueType.UINT16, 2],
  [GgufValueType.INT16, 2],
  [GgufValueType.UINT32, 4],
  [GgufValueType.INT32, 4],
  [GgufValueType.FLOAT32, 4],
  [GgufValueType.BOOL, 1],
  [GgufValueType.UINT64, 8],
  [GgufValueType.INT64, 8],
  [GgufValueType.FLOAT64, 8],
]);

/** llama.cpp's tokenizer.ggml.token_type values. */
export enum GgufTokenType {
  UNDEFINED = 0,
  NORMAL = 1,
  UNKNOWN = 2,
  CONTROL = 3,
  USER_DEFINED = 4,
  UNUSED = 5,
  BYTE = 6,
}

/** Well-known metadata keys. `{arch}` keys are built with archKey(). */
export const GGUF_KEYS = {
  architecture: 'general.architecture',
  name: 'general.name',
  type: 'general.type',
  alignment: 'general.alignment',
  fileType: 'general.file_type',
  quantizationVersion: 'general.quantization_version',
  splitNo: 'split.no',
  splitCount: 'split.count',
  splitTensorsCount: 'split.tensors.count',
  tokenizerModel: 'tokenizer.ggml.model',
  tokenizerPre: 'tokenizer.ggml.pre',
  tokens: 'tokenizer.ggml.tokens',
  scores: 'tokenizer.ggml.scores',
  tokenType: 'tokenizer.ggml.token_type',
  merges: 'tokenizer.ggml.merges',
  bosId: 'tokenizer.ggml.bos_token_id',
  eosId: 'tokenizer.ggml.eos_token_id',
  eotId: 'tokenizer.ggml.eot_token_id',
  eomId: 'tokenizer.ggml.eom_token_id',
  unkId: 'tokenizer.ggml.unknown_token_id',
  padId: 'tokenizer.ggml.padding_token_id',
  sepId: 'tokenizer.ggml.seperator_token_id',
  addBos: 'tokenizer.ggml.add_bos_token',
  addEos: 'tokenizer.ggml.add_eos_token',
  addSpacePrefix: 'tokenizer.ggml.add_space_prefix',
  chatTemplate: 'tokenizer.chat_template',
} as const;

/** Per-architecture keys (`{arch}.` + suffix). */
export const GGUF_ARCH_KEYS = {
  contextLength: 'context_length',
  embeddingLength: 'embedding_length',
  blockCount: 'block_count',
  feedForwardLength: 'feed_forward_length',
  vocabSize: 'vocab_size',
  headCount: 'attention.head_count',
  headCountKv: 'attention.head_count_kv',
  keyLength: 'attention.key_length',
  valueLength: 'attention.value_length',
  rmsEps: 'attention.layer_norm_rms_epsilon',
  slidingWindow: 'attention.sliding_window',
  ropeFreqBase: 'rope.freq_base',
  ropeDimensionCount: 'rope.dimension_count',
  ropeScalingType: 'rope.scaling.type',
  ropeScalingFactor: 'rope.scaling.factor',
  ropeScalingOrigContext: 'rope.scaling.original_context_length',
  attnLogitSoftcapping: 'attn_logit_softcapping',
  finalLogitSoftcapping: 'final_logit_softcapping',
} as const;

export function archKey(arch: string, key: keyof typeof GGUF_ARCH_KEYS): string {
  return `${arch}.${GGUF_ARCH_KEYS[key]}`;
}

/** Round `n` up to a multiple of `alignment`. */
export function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}
