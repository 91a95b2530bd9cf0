/**
 * What an architecture composes its model with: the weight source (read by Hugging Face name,
 * checked against the tensors the architecture declares), the linear packs, the shared activation
 * buffers and the rotary tables of a step.
 */
import { MatmulPrecision, type ComputeBackend } from '../../backend/backend.js';
import type { ModelConfig } from '../../config/model-config.js';
import type { KvLayout } from '../../kv/kv-layout.js';
import { toFloat32 } from '../loader/dtype.js';
import { formatShape, type WeightSource, type WeightTensor } from '../loader/weight-source.js';
import { floatWeight, Linears, type LinearWeight } from './linear.js';
import { Rotary } from './rotary.js';

export type Precision = 'float32' | 'bfloat16';

/** What a declared tensor is, so fixture generation can draw it from a fitting distribution. */
export type TensorRole = 'embedding' | 'norm' | 'norm-offset' | 'query-key' | 'linear' | 'bias' | 'head';

/** A tensor an architecture reads for a given config (Hugging Face name and shape). */
export interface TensorDecl {
  name: string;
  shape: number[];
  role: TensorRole;
}

export class ModelBuilder {
  readonly linears: Linears;
  readonly rotaries: Rotary[] = [];
  private readonly declared: Map<string, number[]>;
  private readonly buffers = new Map<string, Float32Array>();

  constructor(
    readonly be: ComputeBackend,
    readonly cfg: ModelConfig,
    private readonly weights: WeightSource,
    tensors: readonly TensorDecl[],
    readonly precision: Precision,
    /** Rows of the largest batch (activation buffers are sized for it). */
    readonly maxTokens: number,
    /** Which KV group and cache slot each layer uses. */
    readonly kvLayout: KvLayout,
  ) {
    this.linears = new Linears(be, precision === 'bfloat16' ? MatmulPrecision.BF16 : MatmulPrecision.F32);
    this.declared = new Map(tensors.map((t) => [t.name, t.shape]));
  }

  /**
   * A tensor the architecture declared (in `tensors(cfg)`), read from the source. Reading an
   * undeclared tensor, or at another shape, is a bug in the architecture module: the declaration
   * is what fixtures are generated from, so it must match what the model reads.
   */
  tensor(name: string, shape: number[]): WeightTensor {
    const d = this.declared.get(name);
    if (!d || formatShape(d) !== formatShape(shape)) {
      throw new Error(`${this.cfg.architecture} reads tensor "${name}" ${formatShape(shape)} but does not declare it so`);
    }
    return this.weights.get(name, shape);
  }

  has(name: string): boolean {
    return this.weights.has(name);
  }

  /** A float32 copy of an [n] vector (norm weights). */
  vector(name: string, n: number): Float32Array {
    return toFloat32(floatWeight(this.tensor(name, [n])));
  }

  /** The linear layer `name` ([n, k] `name.weight`, with `name.bias` when `bias`). */
  linear(name: string, n: number, k: number, bias: boolean): LinearWeight {
    return this.linears.weight(this.tensor(`${name}.weight`, [n, k]), bias ? this.tensor(`${name}.bias`, [n]) : null);
  }

  /**
   * A [maxTokens, width] activation buffer. Buffers are shared by name: every layer's attention
   * uses the same q buffer, since layers run one after the other.
   */
  scratch(name: string, width: number): Float32Array {
    let b = this.buffers.get(name);
    if (!b) {
      b = new Float32Array(this.maxTokens * width);
      this.buffers.set(name, b);
    } else if (b.length !== this.maxTokens * width) {
      throw new Error(`scratch buffer "${name}" requested with widths ${b.length / this.maxTokens} and ${width}`);
    }
    return b;
  }

  /** Every activation buffer handed out so far (their memory is given back while the engine idles). */
  scratchBuffers(): Float32Array[] {
    return [...this.buffers.values()];
  }

  /** A rotary table over `invFreq`, filled once per step for every layer that uses it. */
  rotary(invFreq: Float32Array): Rotary {
    const r = new Rotary(this.be, invFreq, this.cfg.headDim, this.maxTokens);
    this.rotaries.push(r);
    return r;
  }
}
