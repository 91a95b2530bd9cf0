/** Feed-forward blocks. */
import type { ComputeBackend, PackedLinearHandle } from '../../backend/backend.js';
import type { Activation } from '../../config/model-config.js';
import type { Step } from '../forward-batch.js';
import type { ModelBuilder } from './builder.js';

/**
 * Gated MLP without biases: down(act(gate(h)) * up(h)). With SiLU, gate and up share one pack
 * whose output is already silu(gate) * up; with tanh-GELU (Gemma's GeGLU) one pack fills gate and
 * up and geluTanhMul combines them.
 */
export class GatedMlp {
  private readonly be: ComputeBackend;
  private readonly gateUp: PackedLinearHandle;
  private readonly down: PackedLinearHandle;
  private readonly act: Float32Array;
  /** GeGLU only: the up projection's output. */
  private readonly up: Float32Array | null;
  private readonly intermediate: number;

  /** `prefix` is the Hugging Face prefix, e.g. `model.layers.3.mlp`. */
  constructor(b: ModelBuilder, prefix: string, activation: Activation = 'silu') {
    const H = b.cfg.hiddenSize;
    const I = b.cfg.intermediateSize;
    this.be = b.be;
    this.intermediate = I;
    const gate = b.linear(`${prefix}.gate_proj`, I, H, false);
    const up = b.linear(`${prefix}.up_proj`, I, H, false);
    this.gateUp = activation === 'silu' ? b.linears.packGateUp(gate, up) : b.linears.pack([gate, up]);
    this.up = activation === 'silu' ? null : b.scratch('mlp.up', I);
    this.down = b.linears.pack([b.linear(`${prefix}.down_proj`, H, I, false)]);
    this.act = b.scratch('mlp.act', I);
  }

  /** out = mlp(h) for T rows; with `accumulate`, out += mlp(h) (residual add fused into the store). */
  forward(h: Float32Array, out: Float32Array, accumulate: boolean, s: Step): void {
    const I = this.intermediate;
    const act = this.act.subarray(0, s.T * I);
    if (this.up) {
      const up = this.up.subarray(0, s.T * I);
      this.be.linearPacked(this.gateUp, h, s.T, [act, up], false);
      this.be.geluTanhMul(act, act, up, s.T, I, I, I);
    } else {
      this.be.linearPacked(this.gateUp, h, s.T, [act], false);
    }
    this.be.linearPacked(this.down, act, s.T, [out], accumulate);
  }
}
