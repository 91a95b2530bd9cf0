/**
 * The Llama family forward pass (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM): pre-norm
 * decoder layers of GQA attention with rotate_half RoPE and a SiLU-gated MLP. Qwen2 adds q/k/v
 * biases; tied models reuse the embedding as the output head.
 *
 * The model composes backend ops over a flat varlen batch (all sequences' new tokens in one
 * [T, hidden] matrix) and reads/writes K/V only through the paged cache.
 */
import { DType, MatmulPrecision, native, type KvCacheHandle, type NativeBackend, type WeightArray } from '../../backend/native.js';
import { ropeInvFreq, type ModelConfig } from '../../config/model-config.js';
import { ModelLoadError } from '../../errors.js';
import { f32ToBf16, toFloat32 } from '../loader/dtype.js';
import type { Tensor, WeightStore } from '../loader/weights.js';

/** A weight matrix ready for the linear op. */
export interface LinearWeight {
  data: WeightArray;
  dtype: DType;
  /** out_features × in_features */
  n: number;
  k: number;
  bias: Float32Array | null;
}

interface LayerWeights {
  inputNorm: Float32Array;
  q: LinearWeight;
  k: LinearWeight;
  v: LinearWeight;
  o: LinearWeight;
  postNorm: Float32Array;
  gate: LinearWeight;
  up: LinearWeight;
  down: LinearWeight;
}

/** The flat varlen batch of one step (built by the ModelRunner). */
export interface ForwardBatch {
  numTokens: number;
  tokenIds: Int32Array;
  positions: Int32Array;
  /** Cache slot (block * blockSize + offset) each token's K/V is written to. */
  slotMapping: Int32Array;
  numSeqs: number;
  /** [numSeqs + 1] offsets of each sequence's tokens in the batch. */
  queryStartLoc: Int32Array;
  /** [numSeqs] total tokens of each sequence after this step (context + new). */
  seqLens: Int32Array;
  /** [numSeqs * maxBlocksPerSeq] block tables, padded. */
  blockTables: Int32Array;
  maxBlocksPerSeq: number;
}

export type Precision = 'float32' | 'bfloat16';

/** BF16 copy of an F32/F16 tensor (BF16 tensors are used as they are, e.g. straight from the mmap). */
function toBf16(t: Tensor): Uint16Array {
  if (t.dtype === DType.BF16) return t.data as Uint16Array;
  const f = toFloat32(t);
  const out = new Uint16Array(f.length);
  for (let i = 0; i < f.length; i++) out[i] = f32ToBf16(f[i]!);
  return out;
}

export class LlamaModel {
  readonly cfg: ModelConfig;
  readonly precision: Precision;
  private readonly be: NativeBackend;
  private readonly mp: MatmulPrecision;
  private readonly embed: { data: WeightArray; dtype: DType };
  private readonly layers: LayerWeights[] = [];
  private readonly finalNorm: Float32Array;
  private readonly lmHead: LinearWeight;
  private readonly invFreq: Float32Array;
  private readonly scale: number;
  private readonly maxTokens: number;
  // Activation buffers sized for maxTokens rows, reused every step.
  private readonly x: Float32Array;
  private readonly h: Float32Array;
  private readonly q: Float32Array;
  private readonly k: Float32Array;
  private readonly v: Float32Array;
  private readonly attn: Float32Array;
  private readonly gate: Float32Array;
  private readonly up: Float32Array;

  constructor(cfg: ModelConfig, weights: WeightStore, opts: { precision: Precision; maxTokens: number }) {
    this.cfg = cfg;
    this.be = native();
    this.precision = opts.precision;
    this.mp = opts.precision === 'bfloat16' ? MatmulPrecision.BF16 : MatmulPrecision.F32;
    this.maxTokens = opts.maxTokens;
    const H = cfg.hiddenSize;
    const hd = cfg.headDim;
    const qDim = cfg.numHeads * hd;
    const kvDim = cfg.numKvHeads * hd;
    const I = cfg.intermediateSize;

    const lin = (name: string, n: number, k: number, bias: boolean): LinearWeight => {
      const t = weights.get(`${name}.weight`, [n, k]);
      const b = bias ? toFloat32(weights.get(`${name}.bias`, [n])) : null;
      if (this.mp === MatmulPrecision.BF16) return { data: toBf16(t), dtype: DType.BF16, n, k, bias: b };
      return { data: t.data, dtype: t.dtype, n, k, bias: b };
    };
    const norm = (name: string): Float32Array => toFloat32(weights.get(name, [H]));

    const emb = weights.get('model.embed_tokens.weight', [cfg.vocabSize, H]);
    this.embed = { data: emb.data, dtype: emb.dtype };
    for (let l = 0; l < cfg.numLayers; l++) {
      const p = `model.layers.${l}`;
      this.layers.push({
        inputNorm: norm(`${p}.input_layernorm.weight`),
        q: lin(`${p}.self_attn.q_proj`, qDim, H, cfg.attentionBias),
        k: lin(`${p}.self_attn.k_proj`, kvDim, H, cfg.attentionBias),
        v: lin(`${p}.self_attn.v_proj`, kvDim, H, cfg.attentionBias),
        // Llama's attention_bias also covers o_proj; Qwen2 has q/k/v biases only.
        o: lin(`${p}.self_attn.o_proj`, H, qDim, cfg.attentionBias && cfg.architecture !== 'Qwen2ForCausalLM'),
        postNorm: norm(`${p}.post_attention_layernorm.weight`),
        gate: lin(`${p}.mlp.gate_proj`, I, H, false),
        up: lin(`${p}.mlp.up_proj`, I, H, false),
        down: lin(`${p}.mlp.down_proj`, H, I, false),
      });
    }
    this.finalNorm = norm('model.norm.weight');
    if (cfg.tieWordEmbeddings || !weights.has('lm_head.weight')) {
      if (!cfg.tieWordEmbeddings) {
        throw new ModelLoadError('lm_head.weight is missing and tie_word_embeddings is false');
      }
      const t = emb;
      this.lmHead =
        this.mp === MatmulPrecision.BF16
          ? { data: toBf16(t), dtype: DType.BF16, n: cfg.vocabSize, k: H, bias: null }
          : { data: t.data, dtype: t.dtype, n: cfg.vocabSize, k: H, bias: null };
    } else {
      this.lmHead = lin('lm_head', cfg.vocabSize, H, false);
    }
    this.invFreq = ropeInvFreq(cfg);
    this.scale = 1 / Math.sqrt(hd);

    const T = opts.maxTokens;
    this.x = new Float32Array(T * H);
    this.h = new Float32Array(T * H);
    this.q = new Float32Array(T * qDim);
    this.k = new Float32Array(T * kvDim);
    this.v = new Float32Array(T * kvDim);
    this.attn = new Float32Array(T * qDim);
    this.gate = new Float32Array(T * I);
    this.up = new Float32Array(T * I);
  }

  /**
   * Run all layers over the batch, writing K/V into the cache, and return the final-normed hidden
   * states of the rows in `rows` (indices into the batch) as [rows.length, hidden].
   */
  forward(b: ForwardBatch, cache: KvCacheHandle, rows: Int32Array, out: Float32Array): void {
    const { be, cfg, mp } = this;
    const T = b.numTokens;
    if (T > this.maxTokens) throw new Error(`batch of ${T} tokens exceeds the model's buffers (${this.maxTokens})`);
    const H = cfg.hiddenSize;
    const hd = cfg.headDim;
    const qDim = cfg.numHeads * hd;
    const kvDim = cfg.numKvHeads * hd;
    const I = cfg.intermediateSize;
    const x = this.x.subarray(0, T * H);
    const h = this.h.subarray(0, T * H);
    const q = this.q.subarray(0, T * qDim);
    const k = this.k.subarray(0, T * kvDim);
    const v = this.v.subarray(0, T * kvDim);
    const attn = this.attn.subarray(0, T * qDim);
    const gate = this.gate.subarray(0, T * I);
    const up = this.up.subarray(0, T * I);
    const linear = (y: Float32Array, inp: Float32Array, w: LinearWeight, m: number): void =>
      be.linear(y, inp, w.data, w.dtype, w.bias, m, w.n, w.k, mp);

    be.embedding(x, this.embed.data, this.embed.dtype, b.tokenIds.subarray(0, T), H);
    for (let l = 0; l < this.layers.length; l++) {
      const L = this.layers[l]!;
      be.rmsnorm(h, x, L.inputNorm, T, H, cfg.rmsNormEps);
      linear(q, h, L.q, T);
      linear(k, h, L.k, T);
      linear(v, h, L.v, T);
      be.rope(q, k, b.positions.subarray(0, T), T, cfg.numHeads, cfg.numKvHeads, hd, this.invFreq);
      be.kvCacheWrite(cache, l, k, v, b.slotMapping.subarray(0, T), T);
      be.pagedAttention(
        attn,
        q,
        cache,
        l,
        b.blockTables,
        b.maxBlocksPerSeq,
        b.queryStartLoc,
        b.seqLens,
        b.numSeqs,
        cfg.numHeads,
        cfg.numKvHeads,
        hd,
        this.scale,
      );
      linear(h, attn, L.o, T);
      be.add(x, x, h, T * H);
      be.rmsnorm(h, x, L.postNorm, T, H, cfg.rmsNormEps);
      linear(gate, h, L.gate, T);
      linear(up, h, L.up, T);
      be.siluMul(gate, gate, up, T, I, I, I);
      linear(h, gate, L.down, T);
      be.add(x, x, h, T * H);
    }
    const R = rows.length;
    const sel = out.subarray(0, R * H);
    for (let r = 0; r < R; r++) sel.set(x.subarray(rows[r]! * H, rows[r]! * H + H), r * H);
    be.rmsnorm(sel, sel, this.finalNorm, R, H, cfg.rmsNormEps);
  }

  private linears(): LinearWeight[] {
    return [...this.layers.flatMap((L) => [L.q, L.k, L.v, L.o, L.gate, L.up, L.down]), this.lmHead];
  }

  /** Bytes of weights a decode step reads (every linear layer and the output head once). */
  weightBytesPerStep(): number {
    return this.linears().reduce((a, w) => a + w.data.byteLength, 0);
  }

  /** Matmul FLOPs per token (2 per weight; attention's context-dependent share not included). */
  flopsPerToken(): number {
    return this.linears().reduce((a, w) => a + 2 * w.n * w.k, 0);
  }

  /** logits[r, :] = head(hidden[r, :]) for R rows. */
  logits(hidden: Float32Array, R: number, out: Float32Array): void {
    const w = this.lmHead;
    this.be.linear(out, hidden, w.data, w.dtype, null, R, w.n, w.k, this.mp);
  }
}

/** Pick the compute precision for `auto`: BF16 checkpoints compute in bfloat16, others exactly in float32. */
export function autoPrecision(cfg: ModelConfig, weights: WeightStore): Precision {
  const t = weights.get('model.embed_tokens.weight', [cfg.vocabSize, cfg.hiddenSize]);
  return t.dtype === DType.BF16 ? 'bfloat16' : 'float32';
}
