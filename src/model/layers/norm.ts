/** Normalization layers. */
import type { ComputeBackend } from '../../backend/backend.js';
import type { ModelBuilder } from './builder.js';

/** RMSNorm with a [hidden] weight: out = x / rms(x) * weight (Llama style). */
export class RmsNorm {
  private readonly be: ComputeBackend;
  private readonly weight: Float32Array;
  private readonly eps: number;

  /** `name` is the weight's full Hugging Face name (e.g. `model.norm.weight`). */
  constructor(b: ModelBuilder, name: string, readonly size: number) {
    this.be = b.be;
    this.weight = b.vector(name, size);
    this.eps = b.cfg.rmsNormEps;
  }

  /** out[m, :] = norm(x[m, :]) for `rows` rows; out may alias x. */
  apply(out: Float32Array, x: Float32Array, rows: number): void {
    this.be.rmsnorm(out, x, this.weight, rows, this.size, this.eps);
  }
}
