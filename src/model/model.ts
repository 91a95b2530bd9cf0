/**
 * The model the runner drives: a decoder-only causal LM composed by its architecture module
 * (src/model/architectures, looked up in the registry) from the shared pieces of src/model/layers.
 * It runs the flat varlen batch of a step through embedding → layers → final norm, reading and
 * writing K/V only through the paged cache, and computes logits for the rows that need them.
 */
import { DType, type ComputeBackend, type KvCacheHandle } from '../backend/backend.js';
import type { ModelConfig } from '../config/model-config.js';
import { kvLayout, type KvLayout } from '../kv/kv-layout.js';
import type { ModelParts } from './architectures/architecture.js';
import { architectureFor } from './architectures/registry.js';
import type { ForwardBatch, Step } from './forward-batch.js';
import { ModelBuilder, type Precision } from './layers/builder.js';
import type { Linears } from './layers/linear.js';
import type { Rotary } from './layers/rotary.js';
import { EMBED_TOKENS } from './layers/embedding.js';
import type { WeightSource } from './loader/weight-source.js';

export type { Precision } from './layers/builder.js';

export interface ModelOptions {
  precision: Precision;
  /** Largest batch (tokens) a forward pass takes; activation buffers are sized for it. */
  maxTokens: number;
  /**
   * Sliding-window layers in KV groups of their own that free out-of-window blocks (default
   * true); false keeps one group of all layers (the baseline for the window rule's capacity gain).
   */
  windowGroups?: boolean;
}

export class CausalLM {
  /** How the layers share the paged KV cache (the engine sizes and manages the cache by it). */
  readonly kvLayout: KvLayout;
  private readonly parts: ModelParts;
  private readonly linears: Linears;
  private readonly rotaries: Rotary[];
  private readonly x: Float32Array;
  private readonly maxTokens: number;
  private readonly scratch: Float32Array[];

  constructor(
    private readonly be: ComputeBackend,
    readonly cfg: ModelConfig,
    weights: WeightSource,
    readonly opts: ModelOptions,
  ) {
    const arch = architectureFor(cfg.architecture);
    this.kvLayout = kvLayout(cfg, opts.windowGroups ?? true);
    const b = new ModelBuilder(be, cfg, weights, arch.tensors(cfg), opts.precision, opts.maxTokens, this.kvLayout);
    this.parts = arch.build(b);
    this.linears = b.linears;
    this.rotaries = b.rotaries;
    this.maxTokens = opts.maxTokens;
    this.x = b.scratch('residual', cfg.hiddenSize);
    this.scratch = b.scratchBuffers();
  }

  get precision(): Precision {
    return this.opts.precision;
  }

  /**
   * Run all layers over the batch, writing K/V into the cache, and return the final-normed hidden
   * states of the rows in `rows` (indices into the batch) as [rows.length, hidden].
   */
  forward(batch: ForwardBatch, cache: KvCacheHandle, rows: Int32Array, out: Float32Array): void {
    const T = batch.numTokens;
    if (T > this.maxTokens) throw new Error(`batch of ${T} tokens exceeds the model's buffers (${this.maxTokens})`);
    const H = this.cfg.hiddenSize;
    const x = this.x.subarray(0, T * H);
    const step: Step = { batch, cache, T };
    this.parts.embedding.forward(x, batch.tokenIds, T);
    for (const r of this.rotaries) r.prepare(batch.positions, T);
    for (const layer of this.parts.layers) layer.forward(x, step);
    const R = rows.length;
    const sel = out.subarray(0, R * H);
    this.be.gatherRows(sel, x, rows, R, H);
    this.parts.finalNorm.apply(sel, sel, R);
  }

  /**
   * The activation buffers, sized for maxTokens rows: every forward writes what it reads of them,
   * so their pages can be handed back between steps (ComputeBackend.releaseWorkingMemory).
   */
  workingArrays(): Float32Array[] {
    return this.scratch;
  }

  /** logits[r, :] = head(hidden[r, :]) for R rows. */
  logits(hidden: Float32Array, R: number, out: Float32Array): void {
    this.parts.head.forward(hidden, R, out);
  }

  /** Bytes of weights a decode step reads (every linear layer and the output head once). */
  weightBytesPerStep(): number {
    return this.linears.weightBytes();
  }

  /** Matmul FLOPs per token (2 per weight; attention's context-dependent share not included). */
  flopsPerToken(): number {
    return this.linears.flopsPerRow();
  }

  /**
   * FLOPs a prefill of one `promptLen`-token prompt executes: every layer's matmuls for each
   * token, the output head for the last token only (the one whose logits are sampled), and causal
   * attention (q.k and p.v: 4 per head dimension per query-key pair).
   */
  prefillFlops(promptLen: number): number {
    const { cfg } = this;
    const head = 2 * cfg.vocabSize * cfg.hiddenSize;
    // Query-key pairs per layer: all causal pairs, or those inside the window.
    let pairs = 0;
    for (const t of cfg.layerTypes) {
      const w = t === 'sliding_attention' && cfg.slidingWindow !== null ? cfg.slidingWindow : promptLen;
      pairs += promptLen <= w ? (promptLen * (promptLen + 1)) / 2 : (w * (w + 1)) / 2 + (promptLen - w) * w;
    }
    const attention = 4 * cfg.numHeads * cfg.headDim * pairs;
    return promptLen * (this.flopsPerToken() - head) + head + attention;
  }

  /** Free the packed weights' native memory now (the model must not be used afterwards). */
  dispose(): void {
    this.linears.dispose();
  }
}

/**
 * The compute precision for `auto`: BF16 checkpoints compute in bfloat16, float32 and float16
 * ones exactly in float32 (judged by the embedding table, which every architecture has).
 */
export function autoPrecision(cfg: ModelConfig, weights: WeightSource): Precision {
  const t = weights.get(EMBED_TOKENS, [cfg.vocabSize, cfg.hiddenSize]);
  return t.kind === 'float' && t.dtype === DType.BF16 ? 'bfloat16' : 'float32';
}

/**
 * The KV cache dtype for `auto`: the compute precision, except that a quantized checkpoint (its
 * embedding table quantized, as in every common GGUF type, or quantized at load) keeps bfloat16
 * keys and values where the backend stores those in half the bytes (the CPU; the WebGPU pool
 * holds float32 either way), as llama.cpp keeps f16 ones: twice the tokens in the same pool, and
 * 32-sequence decode steps of smollm-135m Q4_K_M 1.1-1.29x faster (docs/PERFORMANCE.md). Its
 * distance from the float64 reference on the GGUF fixtures stays 5-8x below llama.cpp's
 * (test/gguf-accuracy.test.ts); float checkpoints keep a float32 cache, whose error bfloat16
 * would raise above llama.cpp's on the F32 / F16 fixtures.
 */
export function autoKvDtype(be: ComputeBackend, cfg: ModelConfig, weights: WeightSource, precision: Precision, quantizedAtLoad: boolean): Precision {
  if (precision === 'bfloat16') return 'bfloat16';
  const halves = be.kvCacheBlockBytes(1, 1, 1, 1, DType.BF16) < be.kvCacheBlockBytes(1, 1, 1, 1, DType.F32);
  if (!halves) return 'float32';
  return quantizedAtLoad || weights.get(EMBED_TOKENS, [cfg.vocabSize, cfg.hiddenSize]).kind === 'quant' ? 'bfloat16' : 'float32';
}
