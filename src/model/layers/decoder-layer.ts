/** Decoder layers: how a layer's attention, MLP and norms are wired around the residual stream. */
import type { Step } from '../forward-batch.js';
import type { Attention } from './attention.js';
import type { ModelBuilder } from './builder.js';
import type { GatedMlp } from './mlp.js';
import type { RmsNorm } from './norm.js';

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
    private readonly inputNorm: RmsNorm,
    private readonly attention: Attention,
    private readonly postAttentionNorm: RmsNorm,
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
