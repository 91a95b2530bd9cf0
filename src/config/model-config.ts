/**
 * Hugging Face `config.json` / `generation_config.json` → typed, validated model configuration.
 *
 * This is the one place that knows HF key names and their defaults; the rest of the engine reads
 * only {@link ModelConfig}. Keys that transformers' config classes give a default are optional here
 * with the same default (so any config transformers loads, we load); the shape keys without a
 * meaningful default are required.
 */
import { ModelLoadError } from '../errors.js';

/**
 * The architectures whose config.json this module reads (CONFIG_RULES below); each has a model
 * module in the registry of src/model/architectures, which must list exactly these.
 */
export type Architecture =
  | 'LlamaForCausalLM'
  | 'MistralForCausalLM'
  | 'Qwen2ForCausalLM'
  | 'Qwen3ForCausalLM'
  | 'Gemma2ForCausalLM'
  | 'Gemma3ForCausalLM';

/** A layer's attention (transformers' `layer_types` values). */
export type LayerType = 'full_attention' | 'sliding_attention';

/** The MLP's gate activation: SiLU, or transformers' `gelu_pytorch_tanh` (tanh-approximated GELU). */
export type Activation = 'silu' | 'gelu_pytorch_tanh';

/** RoPE frequency rule (transformers' `rope_scaling.rope_type`). */
export type RopeScaling =
  | { type: 'default' }
  | { type: 'linear'; factor: number }
  | {
      type: 'llama3';
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositionEmbeddings: number;
    };

export type TorchDtype = 'float32' | 'float16' | 'bfloat16';

export interface ModelConfig {
  /** Selects the model module (src/model/architectures/registry.ts). */
  architecture: Architecture;
  modelType: string;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  /** Explicit `head_dim` when the config has one, else hiddenSize / numHeads. */
  headDim: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  /**
   * Whether q/k/v projections carry a bias. Qwen2: always true. Llama: `attention_bias` (which in
   * transformers also puts a bias on o_proj). Mistral: false.
   */
  attentionBias: boolean;
  tieWordEmbeddings: boolean;
  torchDtype: TorchDtype | null;
  /**
   * Attention window in tokens of the `sliding_attention` layers (a query sees itself and the
   * slidingWindow - 1 tokens before it), or null when no layer has one. Qwen2/Qwen3 report null
   * unless `use_sliding_window` is true.
   */
  slidingWindow: number | null;
  /** Each layer's attention, numLayers entries; all `full_attention` when slidingWindow is null. */
  layerTypes: LayerType[];
  hiddenAct: Activation;
  /** Attention scores are scaled by queryPreAttnScalar^-0.5 (Gemma's `query_pre_attn_scalar`; else headDim). */
  queryPreAttnScalar: number;
  /** Tanh soft-cap of attention scores (Gemma 2 `attn_logit_softcapping`), null for none. */
  attnLogitSoftcapping: number | null;
  /** Tanh soft-cap of the output logits (Gemma 2 `final_logit_softcapping`), null for none. */
  finalLogitSoftcapping: number | null;
  /**
   * RoPE base of the sliding-window layers when it differs from the global one (Gemma 3's
   * `rope_local_base_freq`, used without rope scaling); null: every layer uses ropeTheta and ropeScaling.
   */
  ropeLocalTheta: number | null;
  bosTokenId: number | null;
  /** `eos_token_id` of config.json (int or list in HF); empty when absent. */
  eosTokenIds: number[];
}

export interface GenerationConfig {
  eosTokenIds: number[];
  bosTokenId: number | null;
  temperature?: number;
  topP?: number;
  topK?: number;
  repetitionPenalty?: number;
  doSample?: boolean;
  maxNewTokens?: number;
}

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Typed reads of one JSON object whose errors name the file and the key. */
class Fields {
  constructor(
    private readonly obj: JsonObject,
    readonly source: string,
  ) {}

  fail(key: string, problem: string): never {
    throw new ModelLoadError(`${this.source}: ${problem} (key "${key}")`, { code: 'invalid_model_config' });
  }

  /** Present and not null. */
  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }

  raw(key: string): unknown {
    return this.obj[key];
  }

  number(key: string): number;
  number(key: string, fallback: number): number;
  number(key: string, fallback?: number): number {
    const v = this.obj[key];
    if (v === undefined || v === null) {
      if (fallback === undefined) this.fail(key, 'missing required value');
      return fallback;
    }
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(key, `expected a number, got ${JSON.stringify(v)}`);
    return v;
  }

  positive(key: string, fallback?: number): number {
    const v = fallback === undefined ? this.number(key) : this.number(key, fallback);
    if (!(v > 0)) this.fail(key, `expected a positive number, got ${v}`);
    return v;
  }

  /** A positive integer (dimensions, counts). */
  dim(key: string, fallback?: number): number {
    const v = this.positive(key, fallback);
    if (!Number.isInteger(v)) this.fail(key, `expected a positive integer, got ${v}`);
    return v;
  }

  boolean(key: string, fallback: boolean): boolean {
    const v = this.obj[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') this.fail(key, `expected true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  string(key: string): string | null {
    const v = this.obj[key];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'string') this.fail(key, `expected a string, got ${JSON.stringify(v)}`);
    return v;
  }

  tokenId(key: string): number | null {
    const v = this.obj[key];
    if (v === undefined || v === null) return null;
    if (!isTokenId(v)) this.fail(key, `expected a token id (non-negative integer), got ${JSON.stringify(v)}`);
    return v;
  }

  /** HF writes `eos_token_id` as an int or a list of ints. */
  tokenIds(key: string): number[] {
    const v = this.obj[key];
    if (v === undefined || v === null) return [];
    if (isTokenId(v)) return [v];
    if (Array.isArray(v) && v.every(isTokenId)) return [...new Set(v as number[])];
    this.fail(key, `expected a token id or a list of token ids, got ${JSON.stringify(v)}`);
  }
}

function isTokenId(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0;
}

/**
 * How one architecture's config.json is read: transformers' config-class defaults for keys a
 * config may omit, and the keys whose meaning differs between architectures. (Which tensors and
 * layers an architecture has is its model module's business: src/model/architectures.)
 */
interface ConfigRules {
  modelType: string;
  maxPositionEmbeddings: number;
  rmsNormEps: number;
  ropeTheta: number;
  /** `head_dim` when the config has none (else hidden / heads); `tie_word_embeddings` default. */
  headDim?: number;
  tieWordEmbeddings: boolean;
  /** Which key names the MLP activation (Gemma: `hidden_activation`), and its default. */
  activation: { key: string; fallback: Activation };
  /** Whether q/k/v carry biases, given the config. */
  attentionBias(f: Fields): boolean;
  /**
   * When `sliding_window` applies: always (Mistral), only with `use_sliding_window: true` (Qwen2),
   * or never (Llama); `slidingWindow` is the transformers default for an absent key.
   */
  window: { rule: 'always' | 'opt-in' | 'never'; slidingWindow: number | null };
  /** Layer i's type when a windowed config has no `layer_types` (transformers' derivation). */
  layerType(i: number, f: Fields): LayerType;
  /** Gemma's extras: scale, soft-caps and local RoPE base (absent: headDim, none, none). */
  gemma?: { queryPreAttnScalar: number; attnSoftcap: number | null; finalSoftcap: number | null; ropeLocalTheta: number | null };
}

const SILU = { key: 'hidden_act', fallback: 'silu' } as const;
const GEMMA_ACT = { key: 'hidden_activation', fallback: 'gelu_pytorch_tanh' } as const;
/** Qwen2 / Qwen3: layers from `max_window_layers` on use the window. */
const qwenLayerType = (i: number, f: Fields): LayerType => (i >= f.number('max_window_layers', 28) ? 'sliding_attention' : 'full_attention');

const CONFIG_RULES: Record<Architecture, ConfigRules> = {
  LlamaForCausalLM: {
    modelType: 'llama',
    maxPositionEmbeddings: 2048,
    rmsNormEps: 1e-6,
    ropeTheta: 10000,
    tieWordEmbeddings: false,
    activation: SILU,
    attentionBias: (f) => f.boolean('attention_bias', false),
    window: { rule: 'never', slidingWindow: null },
    layerType: () => 'full_attention',
  },
  MistralForCausalLM: {
    modelType: 'mistral',
    maxPositionEmbeddings: 4096 * 32,
    rmsNormEps: 1e-6,
    ropeTheta: 10000,
    tieWordEmbeddings: false,
    activation: SILU,
    attentionBias: () => false,
    window: { rule: 'always', slidingWindow: 4096 },
    layerType: () => 'sliding_attention',
  },
  Qwen2ForCausalLM: {
    modelType: 'qwen2',
    maxPositionEmbeddings: 32768,
    rmsNormEps: 1e-6,
    ropeTheta: 10000,
    tieWordEmbeddings: false,
    activation: SILU,
    attentionBias: () => true,
    window: { rule: 'opt-in', slidingWindow: 4096 },
    layerType: qwenLayerType,
  },
  Qwen3ForCausalLM: {
    modelType: 'qwen3',
    maxPositionEmbeddings: 32768,
    rmsNormEps: 1e-6,
    ropeTheta: 10000,
    tieWordEmbeddings: false,
    activation: SILU,
    attentionBias: (f) => f.boolean('attention_bias', false),
    window: { rule: 'opt-in', slidingWindow: 4096 },
    layerType: qwenLayerType,
  },
  Gemma2ForCausalLM: {
    modelType: 'gemma2',
    maxPositionEmbeddings: 8192,
    rmsNormEps: 1e-6,
    ropeTheta: 10000,
    headDim: 256,
    tieWordEmbeddings: true,
    activation: GEMMA_ACT,
    attentionBias: (f) => f.boolean('attention_bias', false),
    window: { rule: 'always', slidingWindow: 4096 },
    // Even layers slide, odd ones are global.
    layerType: (i) => (i % 2 === 0 ? 'sliding_attention' : 'full_attention'),
    gemma: { queryPreAttnScalar: 256, attnSoftcap: 50, finalSoftcap: 30, ropeLocalTheta: null },
  },
  Gemma3ForCausalLM: {
    modelType: 'gemma3_text',
    maxPositionEmbeddings: 131072,
    rmsNormEps: 1e-6,
    ropeTheta: 1_000_000,
    headDim: 256,
    tieWordEmbeddings: true,
    activation: GEMMA_ACT,
    attentionBias: (f) => f.boolean('attention_bias', false),
    window: { rule: 'always', slidingWindow: 4096 },
    // Every `sliding_window_pattern`-th layer is global.
    layerType: (i, f) => ((i + 1) % f.dim('sliding_window_pattern', 6) === 0 ? 'full_attention' : 'sliding_attention'),
    gemma: { queryPreAttnScalar: 256, attnSoftcap: null, finalSoftcap: null, ropeLocalTheta: 10000 },
  },
};

export const SUPPORTED_ARCHITECTURES = Object.keys(CONFIG_RULES) as readonly Architecture[];

function parseArchitecture(f: Fields): Architecture {
  const archs = f.raw('architectures');
  const supported = SUPPORTED_ARCHITECTURES.join(', ');
  if (!Array.isArray(archs) || archs.length === 0 || !archs.every((a) => typeof a === 'string')) {
    f.fail('architectures', `expected a non-empty list of architecture names (supported: ${supported})`);
  }
  const found = (archs as string[]).find((a): a is Architecture => (SUPPORTED_ARCHITECTURES as readonly string[]).includes(a));
  if (!found) {
    throw new ModelLoadError(
      `${f.source}: unsupported architecture ${(archs as string[]).join(', ')} (supported: ${supported})`,
      { code: 'unsupported_architecture' },
    );
  }
  return found;
}

/**
 * RoPE settings. Older configs carry `rope_theta` + `rope_scaling` ({type|rope_type, ...});
 * transformers v5 moved both into `rope_parameters` ({rope_type, rope_theta, ...}).
 */
function parseRope(f: Fields, fallbackTheta: number, source: string): { ropeTheta: number; ropeScaling: RopeScaling } {
  const params = f.raw('rope_parameters');
  const scalingKey = f.has('rope_scaling') ? 'rope_scaling' : isObject(params) ? 'rope_parameters' : null;
  let ropeTheta = f.positive('rope_theta', fallbackTheta);
  if (!f.has('rope_theta') && isObject(params) && params['rope_theta'] !== undefined) {
    ropeTheta = new Fields(params, `${source} rope_parameters`).positive('rope_theta');
  }
  if (scalingKey === null) return { ropeTheta, ropeScaling: { type: 'default' } };
  const scaling = f.raw(scalingKey);
  if (!isObject(scaling)) f.fail(scalingKey, `expected an object or null, got ${JSON.stringify(scaling)}`);
  const s = new Fields(scaling, `${source} ${scalingKey}`);
  const type = s.string('rope_type') ?? s.string('type') ?? 'default';
  if (type === 'default') return { ropeTheta, ropeScaling: { type: 'default' } };
  if (type === 'linear') return { ropeTheta, ropeScaling: { type: 'linear', factor: s.positive('factor') } };
  if (type === 'llama3') {
    const ropeScaling: RopeScaling = {
      type: 'llama3',
      factor: s.positive('factor'),
      lowFreqFactor: s.positive('low_freq_factor'),
      highFreqFactor: s.positive('high_freq_factor'),
      originalMaxPositionEmbeddings: s.dim('original_max_position_embeddings'),
    };
    if (ropeScaling.highFreqFactor <= ropeScaling.lowFreqFactor) {
      s.fail('high_freq_factor', 'must be greater than low_freq_factor');
    }
    return { ropeTheta, ropeScaling };
  }
  throw new ModelLoadError(`${source}: unsupported rope scaling type "${type}" (key "${scalingKey}"; supported: default, linear, llama3)`, {
    code: 'invalid_model_config',
  });
}

function parseTorchDtype(f: Fields): TorchDtype | null {
  // transformers v5 renamed `torch_dtype` to `dtype`.
  const key = f.has('torch_dtype') ? 'torch_dtype' : 'dtype';
  const v = f.string(key);
  if (v === null) return null;
  if (v === 'float32' || v === 'float16' || v === 'bfloat16') return v;
  f.fail(key, `unsupported dtype "${v}" (supported: float32, float16, bfloat16)`);
}

/**
 * Each layer's attention: `layer_types` when the config has it (as recent transformers write it),
 * else the architecture's derivation; all full attention without a window.
 */
function parseLayerTypes(f: Fields, numLayers: number, slidingWindow: number | null, rules: ConfigRules): LayerType[] {
  if (slidingWindow === null) return new Array<LayerType>(numLayers).fill('full_attention');
  const raw = f.raw('layer_types');
  if (raw === undefined || raw === null) return Array.from({ length: numLayers }, (_, i) => rules.layerType(i, f));
  if (!Array.isArray(raw) || raw.length !== numLayers || !raw.every((t) => t === 'full_attention' || t === 'sliding_attention')) {
    f.fail('layer_types', `expected ${numLayers} entries of "full_attention" or "sliding_attention", got ${JSON.stringify(raw)}`);
  }
  return raw as LayerType[];
}

/**
 * Parse a Hugging Face `config.json` object. `source` names the file in error messages.
 * Throws {@link ModelLoadError} naming the file and key for a missing or invalid value, and for an
 * unsupported architecture (listing the supported ones).
 */
export function parseModelConfig(json: unknown, source: string): ModelConfig {
  if (!isObject(json)) throw new ModelLoadError(`${source}: expected a JSON object`, { code: 'invalid_model_config' });
  const f = new Fields(json, source);
  const architecture = parseArchitecture(f);
  const rules = CONFIG_RULES[architecture];

  const hiddenSize = f.dim('hidden_size');
  const numHeads = f.dim('num_attention_heads');
  const numKvHeads = f.dim('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) {
    f.fail('num_key_value_heads', `num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`);
  }
  let headDim: number;
  if (f.has('head_dim') || rules.headDim !== undefined) {
    headDim = f.dim('head_dim', rules.headDim);
  } else {
    if (hiddenSize % numHeads !== 0) {
      f.fail('hidden_size', `hidden_size (${hiddenSize}) is not a multiple of num_attention_heads (${numHeads}) and no head_dim is given`);
    }
    headDim = hiddenSize / numHeads;
  }
  // rotate_half RoPE pairs element i with i + headDim/2.
  if (headDim % 2 !== 0) f.fail('head_dim', `head dimension must be even for rotary embeddings, got ${headDim}`);

  const { ropeTheta, ropeScaling } = parseRope(f, rules.ropeTheta, source);

  // Only the activations, MLP shape and attention direction the engine implements; a config asking
  // for another must fail here rather than run and produce garbage.
  const act: string = f.string(rules.activation.key) ?? rules.activation.fallback;
  if (act !== 'silu' && act !== 'gelu_pytorch_tanh') f.fail(rules.activation.key, `unsupported activation "${act}" (supported: silu, gelu_pytorch_tanh)`);
  if (f.boolean('mlp_bias', false)) f.fail('mlp_bias', 'MLP biases are not supported');
  // Gemma 3 embedding models (EmbeddingGemma) attend both ways: not a causal LM.
  if (f.boolean('use_bidirectional_attention', false)) f.fail('use_bidirectional_attention', 'bidirectional attention is not supported (causal language models only)');

  // An absent `sliding_window` takes the transformers default, an explicit null means none.
  const { rule } = rules.window;
  const useSlidingWindow = rule !== 'never' && f.boolean('use_sliding_window', rule === 'always');
  let slidingWindow: number | null = null;
  if (useSlidingWindow) {
    const raw = f.raw('sliding_window');
    slidingWindow = raw === undefined ? rules.window.slidingWindow : raw === null ? null : f.dim('sliding_window');
  }
  const numLayers = f.dim('num_hidden_layers');
  const layerTypes = parseLayerTypes(f, numLayers, slidingWindow, rules);
  if (!layerTypes.includes('sliding_attention')) slidingWindow = null;
  const g = rules.gemma;
  const softcap = (key: string, fallback: number | null): number | null => (f.raw(key) === undefined ? fallback : f.has(key) ? f.positive(key) : null);

  return {
    architecture,
    modelType: f.string('model_type') ?? rules.modelType,
    hiddenSize,
    intermediateSize: f.dim('intermediate_size'),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: f.dim('vocab_size'),
    maxPositionEmbeddings: f.dim('max_position_embeddings', rules.maxPositionEmbeddings),
    rmsNormEps: f.positive('rms_norm_eps', rules.rmsNormEps),
    ropeTheta,
    ropeScaling,
    attentionBias: rules.attentionBias(f),
    tieWordEmbeddings: f.boolean('tie_word_embeddings', rules.tieWordEmbeddings),
    torchDtype: parseTorchDtype(f),
    slidingWindow,
    layerTypes,
    hiddenAct: act as Activation, // checked above
    queryPreAttnScalar: g ? f.positive('query_pre_attn_scalar', g.queryPreAttnScalar) : headDim,
    attnLogitSoftcapping: g ? softcap('attn_logit_softcapping', g.attnSoftcap) : null,
    finalLogitSoftcapping: g ? softcap('final_logit_softcapping', g.finalSoftcap) : null,
    ropeLocalTheta: g?.ropeLocalTheta != null ? f.positive('rope_local_base_freq', g.ropeLocalTheta) : null,
    bosTokenId: f.tokenId('bos_token_id'),
    eosTokenIds: f.tokenIds('eos_token_id'),
  };
}

/**
 * Parse a Hugging Face `generation_config.json` object (sampling defaults and stop ids).
 * `eos_token_id` may be an int or a list. Unknown keys are ignored.
 */
export function parseGenerationConfig(json: unknown, source: string): GenerationConfig {
  if (!isObject(json)) throw new ModelLoadError(`${source}: expected a JSON object`, { code: 'invalid_model_config' });
  const f = new Fields(json, source);
  const out: GenerationConfig = { eosTokenIds: f.tokenIds('eos_token_id'), bosTokenId: f.tokenId('bos_token_id') };
  if (f.has('temperature')) {
    out.temperature = f.number('temperature');
    if (out.temperature < 0) f.fail('temperature', `expected a non-negative number, got ${out.temperature}`);
  }
  if (f.has('top_p')) {
    out.topP = f.number('top_p');
    if (!(out.topP > 0 && out.topP <= 1)) f.fail('top_p', `expected a number in (0, 1], got ${out.topP}`);
  }
  if (f.has('top_k')) {
    out.topK = f.number('top_k');
    if (!Number.isInteger(out.topK) || out.topK < 0) f.fail('top_k', `expected a non-negative integer, got ${out.topK}`);
  }
  if (f.has('repetition_penalty')) out.repetitionPenalty = f.positive('repetition_penalty');
  if (f.has('do_sample')) out.doSample = f.boolean('do_sample', false);
  if (f.has('max_new_tokens')) out.maxNewTokens = f.dim('max_new_tokens');
  return out;
}
