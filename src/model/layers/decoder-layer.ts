/** Decoder layers: how a layer's attention, MLP and norms are wired around the residual stream. */
import type { ComputeBackend } from '../../backend/backend.js';
import type { Norm } from '../architectures/architecture.js';
import type { Step } from '../forward-batch.js';
import type { Attention } from './attention.js';
import type { ModelBuilder } from './builder.js';
import type { GatedMlp } from './mlp.js';

/** One layer of the stack: updates the residual stream x ([T, hidden]) in place. */
export interface DecoderLayer {
  forward(x: Float32Array, s: Step): void;
}

/**
 * The pre-norm layer of Llama and its descendants:
 *   x += attention(inputNorm(x));  x += mlp(postAttentionNorm(x))
 * with both residual adds fused into the output projections' stores.
 */
export class PreNormDecoderLayer implements DecoderLayer {
  private readonly h: Float32Array;
  private readonly hidden: number;

  constructor(
    b: ModelBuilder,
    private readonly inputNorm: Norm,
    private readonly attention: Attention,
    private readonly postAttentionNorm: Norm,
    private readonly mlp: GatedMlp,
  ) {
    this.hidden = b.cfg.hiddenSize;
    this.h = b.scratch('decoder.normed', this.hidden);
  }

  forward(x: Float32Array, s: Step): void {
    const h = this.h.subarray(0, s.T * this.hidden);
    this.inputNorm.apply(h, x, s.T);
    this.attention.forward(h, x, true, s);
    this.postAttentionNorm.apply(h, x, s.T);
    this.mlp.forward(h, x, true, s);
  }
}

/** The four norms of a Gemma layer (transformers' names). */
export interface SandwichNorms {
  input: Norm;
  postAttention: Norm;
  preFeedforward: Norm;
  postFeedforward: Norm;
}

/**
 * The Gemma 2 / Gemma 3 layer, each branch normed before and after:
 *   x += postAttentionNorm(attention(inputNorm(x)));  x += postFeedforwardNorm(mlp(preFeedforwardNorm(x)))
 * The output norms sit between each branch and its residual add, so the adds are separate ops.
 */
export class SandwichDecoderLayer implements DecoderLayer {
  private readonly be: ComputeBackend;
  private readonly h: Float32Array;
  private readonly branch: Float32Array;
  private readonly hidden: number;

  constructor(
    b: ModelBuilder,
    private readonly norms: SandwichNorms,
    private readonly attention: Attention,
    private readonly mlp: GatedMlp,
  ) {
    this.be = b.be;
    this.hidden = b.cfg.hiddenSize;
    this.h = b.scratch('decoder.normed', this.hidden);
    this.branch = b.scratch('decoder.branch', this.hidden);
  }

  forward(x: Float32Array, s: Step): void {
    const n = s.T * this.hidden;
    const h = this.h.subarray(0, n);
    const branch = this.branch.subarray(0, n);
    this.norms.input.apply(h, x, s.T);
    this.attention.forward(h, branch, false, s);
    this.norms.postAttention.apply(branch, branch, s.T);
    this.be.add(x, x, branch, n);
    this.norms.preFeedforward.apply(h, x, s.T);
    this.mlp.forward(h, branch, false, s);
    this.norms.postFeedforward.apply(branch, branch, s.T);
    this.be.add(x, x, branch, n);
  }
}
