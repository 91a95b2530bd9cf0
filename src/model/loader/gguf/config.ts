/**
 * ModelConfig and GenerationConfig from GGUF metadata (`general.architecture` and `{arch}.*` keys),
 * filled the way parseModelConfig fills them from config.json.
 */
import type { Architecture, GenerationConfig, LayerType, ModelConfig, RopeScaling, TorchDtype } from '../../../config/model-config.js';
import { llama3RopeFactors } from '../../layers/rotary.js';
import { GgmlType } from '../../../backend/quant.js';
import { ModelLoadError } from '../../../errors.js';
import { GGUF_KEYS, archKey } from './format.js';
import type { GgufFile } from './file.js';

/** GGUF architecture → the HF architecture the engine runs. Mistral models usually say `llama`. */
const ARCHITECTURES: Readonly<Record<string, { architecture: Architecture; modelType: string }>> = {
  llama: { architecture: 'LlamaForCausalLM', modelType: 'llama' },
  mistral: { architecture: 'MistralForCausalLM', modelType: 'mistral' },
  qwen2: { architecture: 'Qwen2ForCausalLM', modelType: 'qwen2' },
  qwen3: { architecture: 'Qwen3ForCausalLM', modelType: 'qwen3' },
  gemma2: { architecture: 'Gemma2ForCausalLM', modelType: 'gemma2' },
  gemma3: { architecture: 'Gemma3ForCausalLM', modelType: 'gemma3_text' },
};

/**
 * What llama.cpp's Gemma files leave implicit, as llama.cpp reads them: the sliding-window layer
 * pattern (every `swaPattern`-th layer global, Gemma 2 from layer 0 sliding), the tanh-GELU, the
 * local RoPE base of Gemma 3 (10000), and the attention scale: query_pre_attn_scalar is not
 * stored; it equals head_dim in every released model but the 27B ones (46 / 62 layers), whose
 * scalar is hidden / heads.
 */
const GEMMA: Readonly<Record<string, { swaPattern: number; ropeLocalTheta: number | null; layers27b: number }>> = {
  gemma2: { swaPattern: 2, ropeLocalTheta: null, layers27b: 46 },
  gemma3: { swaPattern: 6, ropeLocalTheta: 10000, layers27b: 62 },
};
export const SUPPORTED_GGUF_ARCHITECTURES: readonly string[] = Object.keys(ARCHITECTURES);

export function ggufArchitecture(f: GgufFile): string {
  const arch = f.string(GGUF_KEYS.architecture);
  if (arch === undefined) f.fail(GGUF_KEYS.architecture, 'is missing');
  if (!(arch in ARCHITECTURES)) {
    throw new ModelLoadError(
      `${f.description}: unsupported GGUF architecture "${arch}" (supported: ${SUPPORTED_GGUF_ARCHITECTURES.join(', ')})`,
      { code: 'unsupported_architecture' },
    );
  }
  return arch;
}

function dim(f: GgufFile, key: string, fallback?: number): number {
  const v = f.int(key) ?? fallback;
  if (v === undefined) f.fail(key, 'is missing');
  if (!Number.isInteger(v) || v <= 0) f.fail(key, `must be a positive integer, got ${v}`);
  return v;
}

function tokenId(f: GgufFile, key: string, vocabSize: number): number | null {
  const v = f.int(key);
  // 0xFFFFFFFF (and -1) is the "none" that llama.cpp writes.
  if (v === undefined || v === 0xffffffff || v === -1) return null;
  if (!Number.isInteger(v) || v < 0 || v >= vocabSize) f.fail(key, `token id ${v} is outside the vocabulary (${vocabSize})`);
  return v;
}

/**
 * Llama 3.1+ files store their RoPE rule only as per-frequency divisors (`rope_freqs.weight`),
 * which llama.cpp's converter computes from transformers' `rope_scaling`. The engine's rule takes
 * the parameters, so find the standard ones (low/high frequency factors 1 and 4, factor = the
 * largest divisor, the original context among the published ones) that reproduce the divisors.
 */
function llama3Scaling(f: GgufFile, theta: number, headDim: number): RopeScaling {
  const t = f.tensor('rope_freqs.weight');
  if (t === undefined) return { type: 'default' };
  if (t.type !== GgmlType.F32 || t.ne.length !== 1 || t.ne[0] !== headDim / 2) {
    throw new ModelLoadError(`${f.description}: tensor "rope_freqs.weight" must be F32 [${headDim / 2}]`, { code: 'invalid_gguf' });
  }
  const stored = new Float32Array(t.bytes.slice().buffer);
  const factor = Math.max(...stored);
  for (const original of [8192, 4096, 2048, 16384, 32768, 131072]) {
    const scaling: RopeScaling = { type: 'llama3', factor, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: original };
    const want = llama3RopeFactors(headDim, theta, scaling);
    if (want.every((v, i) => Math.abs(v - stored[i]!) <= 1e-6 * Math.abs(v))) return scaling;
  }
  throw new ModelLoadError(`${f.description}: "rope_freqs.weight" matches no Llama 3 RoPE scaling with the standard parameters`, { code: 'unsupported_model' });
}

export function ggufModelConfig(f: GgufFile): { config: ModelConfig; generationConfig: GenerationConfig } {
  const arch = ggufArchitecture(f);
  const { architecture, modelType } = ARCHITECTURES[arch]!;
  const tokens = f.stringArray(GGUF_KEYS.tokens);
  if (tokens === undefined || tokens.length === 0) f.fail(GGUF_KEYS.tokens, 'is missing or empty');
  const vocabSize = tokens.length;
  const declared = f.int(archKey(arch, 'vocabSize'));
  if (declared !== undefined && declared !== vocabSize) f.fail(archKey(arch, 'vocabSize'), `is ${declared} but the token list has ${vocabSize} tokens`);

  const hiddenSize = dim(f, archKey(arch, 'embeddingLength'));
  const numHeads = dim(f, archKey(arch, 'headCount'));
  const numKvHeads = dim(f, archKey(arch, 'headCountKv'), numHeads);
  if (numHeads % numKvHeads !== 0) f.fail(archKey(arch, 'headCountKv'), `head_count (${numHeads}) must be a multiple of head_count_kv (${numKvHeads})`);
  const headDimDefault = hiddenSize % numHeads === 0 ? hiddenSize / numHeads : undefined;
  const headDim = dim(f, archKey(arch, 'keyLength'), headDimDefault);
  const valueLength = f.int(archKey(arch, 'valueLength'));
  if (valueLength !== undefined && valueLength !== headDim) f.fail(archKey(arch, 'valueLength'), `(${valueLength}) differs from key_length (${headDim}); not supported`);
  if (headDim % 2 !== 0) f.fail(archKey(arch, 'keyLength'), `head dimension must be even for rotary embeddings, got ${headDim}`);
  const ropeDims = f.int(archKey(arch, 'ropeDimensionCount'));
  if (ropeDims !== undefined && ropeDims !== headDim) {
    f.fail(archKey(arch, 'ropeDimensionCount'), `(${ropeDims}) differs from the head dimension (${headDim}): partial rotary embeddings are not supported`);
  }

  const scalingType = f.string(archKey(arch, 'ropeScalingType'));
  if (scalingType !== undefined && scalingType !== 'none' && scalingType !== 'linear') {
    f.fail(archKey(arch, 'ropeScalingType'), `"${scalingType}" is not supported (supported: none, linear)`);
  }
  const factor = f.float(archKey(arch, 'ropeScalingFactor'));
  const linear = scalingType === 'linear';
  if (linear && !(factor !== undefined && factor > 0)) f.fail(archKey(arch, 'ropeScalingFactor'), `must be positive for linear scaling, got ${factor}`);
  if (!linear && factor !== undefined && factor !== 0 && factor !== 1) f.fail(archKey(arch, 'ropeScalingFactor'), `${factor} is not supported without a scaling type`);
  const ropeTheta = f.float(archKey(arch, 'ropeFreqBase')) ?? 10000;
  if (!(ropeTheta > 0)) f.fail(archKey(arch, 'ropeFreqBase'), `must be positive, got ${ropeTheta}`);
  const maxPositionEmbeddings = dim(f, archKey(arch, 'contextLength'), 2048);
  const ropeScaling: RopeScaling = linear ? { type: 'linear', factor: factor! } : llama3Scaling(f, ropeTheta, headDim);
  const rmsNormEps = f.float(archKey(arch, 'rmsEps'));
  if (rmsNormEps === undefined) f.fail(archKey(arch, 'rmsEps'), 'is missing');
  if (!(rmsNormEps > 0)) f.fail(archKey(arch, 'rmsEps'), `must be positive, got ${rmsNormEps}`);
  const slidingWindow = f.int(archKey(arch, 'slidingWindow')) ?? null;
  const numLayers = dim(f, archKey(arch, 'blockCount'));
  const gemma = GEMMA[arch];
  // A window applies to every layer (Mistral's rule), or to Gemma's local layers.
  const layerTypes = Array.from({ length: numLayers }, (_, i): LayerType =>
    slidingWindow === null || (gemma !== undefined && (i + 1) % gemma.swaPattern === 0) ? 'full_attention' : 'sliding_attention',
  );
  const softcap = (key: 'attnLogitSoftcapping' | 'finalLogitSoftcapping'): number | null => {
    const v = f.float(archKey(arch, key));
    if (v === undefined || v === 0) return null;
    if (!(v > 0)) f.fail(archKey(arch, key), `must be positive, got ${v}`);
    return v;
  };

  const embd = f.tensor('token_embd.weight');
  const torchDtype: TorchDtype | null =
    embd?.type === GgmlType.F32 ? 'float32' : embd?.type === GgmlType.F16 ? 'float16' : embd?.type === GgmlType.BF16 ? 'bfloat16' : null;

  const bosTokenId = tokenId(f, GGUF_KEYS.bosId, vocabSize);
  const eosTokenIds: number[] = [];
  for (const key of [GGUF_KEYS.eosId, GGUF_KEYS.eotId, GGUF_KEYS.eomId]) {
    const id = tokenId(f, key, vocabSize);
    if (id !== null && !eosTokenIds.includes(id)) eosTokenIds.push(id);
  }

  const config: ModelConfig = {
    architecture,
    modelType,
    hiddenSize,
    intermediateSize: dim(f, archKey(arch, 'feedForwardLength')),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize,
    maxPositionEmbeddings,
    rmsNormEps,
    ropeTheta,
    ropeScaling,
    attentionBias: architecture === 'Qwen2ForCausalLM' || f.tensor('blk.0.attn_q.bias') !== undefined,
    tieWordEmbeddings: f.tensor('output.weight') === undefined,
    torchDtype,
    slidingWindow,
    layerTypes,
    hiddenAct: gemma ? 'gelu_pytorch_tanh' : 'silu',
    queryPreAttnScalar: gemma && numLayers === gemma.layers27b ? hiddenSize / numHeads : headDim,
    attnLogitSoftcapping: softcap('attnLogitSoftcapping'),
    finalLogitSoftcapping: softcap('finalLogitSoftcapping'),
    ropeLocalTheta: gemma?.ropeLocalTheta ?? null,
    bosTokenId,
    eosTokenIds,
  };
  return { config, generationConfig: { eosTokenIds: [...eosTokenIds], bosTokenId } };
}
