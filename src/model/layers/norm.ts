/** Normalization layers. */
import type { ComputeBackend } from '../../backend/backend.js';
import type { ModelBuilder } from './builder.js';

/**
 * RMSNorm with a [size] weight: out = x / rms(x) * weight (Llama style), or with `offset` 1
 * x / rms(x) * (1 + weight) (Gemma, whose checkpoints store the weight minus one). 1 + w is
 * formed once in float32, exactly for the BF16 / F16 weights checkpoints store (|w| < 1: the sum
 * needs at most 8 + 16 significant bits).
 */
export class RmsNorm {
  private readonly be: ComputeBackend;
  private readonly weight: Float32Array;
  private readonly eps: number;

  /** `name` is the weight's full Hugging Face name (e.g. `model.norm.weight`). */
  constructor(b: ModelBuilder, name: string, readonly size: number, offset: 0 | 1 = 0) {
    this.be = b.be;
    this.weight = b.vector(name, size);
    if (offset !== 0) for (let i = 0; i < size; i++) this.weight[i] = Math.fround(this.weight[i]! + offset);
    this.eps = b.cfg.rmsNormEps;
  }

  /** out[m, :] = norm(x[m, :]) for `rows` rows; out may alias x. */
  apply(out: Float32Array, x: Float32Array, rows: number): void {
    this.be.rmsnorm(out, x, this.weight, rows, this.size, this.eps);
  }
}
