/**
 * The Llama family forward pass (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM): pre-norm
 * decoder layers of GQA attention with rotate_half RoPE and a SiLU-gated MLP. Qwen2 adds q/k/v
 * biases; tied models reuse the embedding as the output head.
 *
 * The model composes backend ops over a flat varlen batch (all sequences' new tokens in one
 * [T, hidden] matrix) and reads/writes K/V only through the paged cache.
 */
import {
  DType,
  MatmulPrecision,
  type ComputeBackend,
  type KvCacheHandle,
  type LinearPart,
  type PackedLinearHandle,
  type WeightArray,
} from '../../backend/backend.js';
import { ropeInvFreq, type ModelConfig } from '../../config/model-config.js';
import { ModelLoadError } from '../../errors.js';
import { f32ToBf16, toFloat32 } from '../loader/dtype.js';
import type { Tensor, WeightStore } from '../loader/weights.js';

/** A weight matrix ready for packing (Hugging Face layout, out_features × in_features). */
export interface LinearWeight {
  data: WeightArray;
  dtype: DType;
  n: number;
  k: number;
  bias: Float32Array | null;
}

/**
 * Weights packed once at load for the linear microkernels (see NativeBackend.packLinear): q/k/v
 * share one pack (one pass over the normed activations fills all three), gate/up share one whose
 * output is already silu(gate) * up.
 */
interface LayerWeights {
  inputNorm: Float32Array;
  qkv: PackedLinearHandle;
  o: PackedLinearHandle;
  postNorm: Float32Array;
  gateUp: PackedLinearHandle;
  down: PackedLinearHandle;
}

/** Shape of one linear layer (for byte and FLOP accounting). */
interface LinearShape {
  n: number;
  k: number;
  bytesPerElem: number;
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
  private readonly mp: MatmulPrecision;
  private readonly embed: { data: WeightArray; dtype: DType };
  private readonly layers: LayerWeights[] = [];
  private readonly finalNorm: Float32Array;
  private readonly lmHead: PackedLinearHandle;
  private readonly shapes: LinearShape[] = [];
  private readonly packs: PackedLinearHandle[] = [];
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
  /** silu(gate) * up, [T, intermediate] */
  private readonly act: Float32Array;
  /** The step's rotary angles, [T, headDim] (cos then sin), shared by every layer. */
  private readonly cosSin: Float32Array;

  constructor(
    private readonly be: ComputeBackend,
    cfg: ModelConfig,
    weights: WeightStore,
    opts: { precision: Precision; maxTokens: number },
  ) {
    this.cfg = cfg;
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
    const account = (w: LinearWeight): void => {
      this.shapes.push({ n: w.n, k: w.k, bytesPerElem: w.dtype === DType.F32 ? 4 : 2 });
    };
    const pack = (ws: LinearWeight[]): PackedLinearHandle => {
      ws.forEach(account);
      const parts: LinearPart[] = ws.map((w) => ({ w: w.data, n: w.n, bias: w.bias }));
      const h = this.be.packLinear(parts, ws[0]!.dtype, ws[0]!.k, this.mp);
      this.packs.push(h);
      return h;
    };
    const packGateUp = (gate: LinearWeight, up: LinearWeight): PackedLinearHandle => {
      account(gate);
      account(up);
      const h = this.be.packGateUp(gate.data, up.data, gate.dtype, gate.n, gate.k, this.mp);
      this.packs.push(h);
      return h;
    };

    const emb = weights.get('model.embed_tokens.weight', [cfg.vocabSize, H]);
    this.embed = { data: emb.data, dtype: emb.dtype };
    for (let l = 0; l < cfg.numLayers; l++) {
      const p = `model.layers.${l}`;
      this.layers.push({
        inputNorm: norm(`${p}.input_layernorm.weight`),
        qkv: pack([
          lin(`${p}.self_attn.q_proj`, qDim, H, cfg.attentionBias),
          lin(`${p}.self_attn.k_proj`, kvDim, H, cfg.attentionBias),
          lin(`${p}.self_attn.v_proj`, kvDim, H, cfg.attentionBias),
        ]),
        // Llama's attention_bias also covers o_proj; Qwen2 has q/k/v biases only.
        o: pack([lin(`${p}.self_attn.o_proj`, H, qDim, cfg.attentionBias && cfg.architecture !== 'Qwen2ForCausalLM')]),
        postNorm: norm(`${p}.post_attention_layernorm.weight`),
        gateUp: packGateUp(lin(`${p}.mlp.gate_proj`, I, H, false), lin(`${p}.mlp.up_proj`, I, H, false)),
        down: pack([lin(`${p}.mlp.down_proj`, H, I, false)]),
      });
    }
    this.finalNorm = norm('model.norm.weight');
    if (cfg.tieWordEmbeddings || !weights.has('lm_head.weight')) {
      if (!cfg.tieWordEmbeddings) {
        throw new ModelLoadError('lm_head.weight is missing and tie_word_embeddings is false');
      }
      const t = emb;
      this.lmHead = pack([
        this.mp === MatmulPrecision.BF16
          ? { data: toBf16(t), dtype: DType.BF16, n: cfg.vocabSize, k: H, bias: null }
          : { data: t.data, dtype: t.dtype, n: cfg.vocabSize, k: H, bias: null },
      ]);
    } else {
      this.lmHead = pack([lin('lm_head', cfg.vocabSize, H, false)]);
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
    this.act = new Float32Array(T * I);
    this.cosSin = new Float32Array(T * hd);
  }

  /**
   * Run all layers over the batch, writing K/V into the cache, and return the final-normed hidden
   * states of the rows in `rows` (indices into the batch) as [rows.length, hidden].
   */
  forward(b: ForwardBatch, cache: KvCacheHandle, rows: Int32Array, out: Float32Array): void {
    const { be, cfg } = this;
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
    const act = this.act.subarray(0, T * I);
    const qkvOut = [q, k, v];
    const xOut = [x];
    const actOut = [act];

    be.embedding(x, this.embed.data, this.embed.dtype, b.tokenIds.subarray(0, T), H);
    be.ropeTable(this.cosSin, b.positions, T, this.invFreq);
    for (let l = 0; l < this.layers.length; l++) {
      const L = this.layers[l]!;
      be.rmsnorm(h, x, L.inputNorm, T, H, cfg.rmsNormEps);
      be.linearPacked(L.qkv, h, T, qkvOut, false);
      be.rope(q, k, this.cosSin, T, cfg.numHeads, cfg.numKvHeads, hd);
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
      // Residual adds fused into the stores: x += o(attn), x += down(silu(gate) * up).
      be.linearPacked(L.o, attn, T, xOut, true);
      be.rmsnorm(h, x, L.postNorm, T, H, cfg.rmsNormEps);
      be.linearPacked(L.gateUp, h, T, actOut, false);
      be.linearPacked(L.down, act, T, xOut, true);
    }
    const R = rows.length;
    const sel = out.subarray(0, R * H);
    for (let r = 0; r < R; r++) sel.set(x.subarray(rows[r]! * H, rows[r]! * H + H), r * H);
    be.rmsnorm(sel, sel, this.finalNorm, R, H, cfg.rmsNormEps);
  }

  /** Bytes of weights a decode step reads (every linear layer and the output head once). */
  weightBytesPerStep(): number {
    return this.shapes.reduce((a, w) => a + w.n * w.k * w.bytesPerElem, 0);
  }

  /** Matmul FLOPs per token (2 per weight; attention's context-dependent share not included). */
  flopsPerToken(): number {
    return this.shapes.reduce((a, w) => a + 2 * w.n * w.k, 0);
  }

  /**
   * FLOPs a prefill of one `promptLen`-token prompt executes: every layer's matmuls for each
   * token, the output head for the last token only (the one whose logits are sampled), and causal
   * attention (q.k and p.v: 4 per head dimension per query-key pair).
   */
  prefillFlops(promptLen: number): number {
    const { cfg } = this;
    const head = 2 * cfg.vocabSize * cfg.hiddenSize;
    const attention = 4 * cfg.numLayers * cfg.numHeads * cfg.headDim * ((promptLen * (promptLen + 1)) / 2);
    return promptLen * (this.flopsPerToken() - head) + head + attention;
  }

  /** logits[r, :] = head(hidden[r, :]) for R rows. */
  logits(hidden: Float32Array, R: number, out: Float32Array): void {
    this.be.linearPacked(this.lmHead, hidden, R, [out], false);
  }

  /** Free the packed weights' native memory now (the model must not be used afterwards). */
  dispose(): void {
    for (const p of this.packs) this.be.packedLinearFree(p);
  }
}

/** Pick the compute precision for `auto`: BF16 checkpoints compute in bfloat16, others exactly in float32. */
export function autoPrecision(cfg: ModelConfig, weights: WeightStore): Precision {
  const t = weights.get('model.embed_tokens.weight', [cfg.vocabSize, cfg.hiddenSize]);
  return t.dtype === DType.BF16 ? 'bfloat16' : 'float32';
}
