/** Feed-forward blocks. */
import type { ComputeBackend, PackedLinearHandle } from '../../backend/backend.js';
import type { Step } from '../forward-batch.js';
import type { ModelBuilder } from './builder.js';

/**
 * SiLU-gated MLP without biases: down(silu(gate(h)) * up(h)). gate and up share one pack whose
 * output is already silu(gate) * up.
 */
export class GatedMlp {
  private readonly be: ComputeBackend;
  private readonly gateUp: PackedLinearHandle;
  private readonly down: PackedLinearHandle;
  private readonly act: Float32Array;
  private readonly intermediate: number;

  /** `prefix` is the Hugging Face prefix, e.g. `model.layers.3.mlp`. */
  constructor(b: ModelBuilder, prefix: string) {
    const H = b.cfg.hiddenSize;
    const I = b.cfg.intermediateSize;
    this.be = b.be;
    this.intermediate = I;
    this.gateUp = b.linears.packGateUp(b.linear(`${prefix}.gate_proj`, I, H, false), b.linear(`${prefix}.up_proj`, I, H, false));
    this.down = b.linears.pack([b.linear(`${prefix}.down_proj`, H, I, false)]);
    this.act = b.scratch('mlp.act', I);
  }

  /** out = mlp(h) for T rows; with `accumulate`, out += mlp(h) (residual add fused into the store). */
  forward(h: Float32Array, out: Float32Array, accumulate: boolean, s: Step): void {
    const act = this.act.subarray(0, s.T * this.intermediate);
    this.be.linearPacked(this.gateUp, h, s.T, [act], false);
    this.be.linearPacked(this.down, act, s.T, [out], accumulate);
  }
}
