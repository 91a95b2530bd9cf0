/**
 * What an architecture module provides: the tensors it reads and how it composes the shared
 * pieces of src/model/layers into a model. The registry (registry.ts) maps Hugging Face
 * `architectures` names to these.
 */
import type { Architecture as ArchitectureName, ModelConfig } from '../../config/model-config.js';
import type { ModelBuilder, TensorDecl } from '../layers/builder.js';
import type { DecoderLayer } from '../layers/decoder-layer.js';

/** Token ids → the residual stream [T, hidden]. */
export interface TokenEmbedding {
  forward(x: Float32Array, ids: Int32Array, T: number): void;
}

/** A row-wise normalization; out may alias x. */
export interface Norm {
  apply(out: Float32Array, x: Float32Array, rows: number): void;
}

/** Final hidden states [R, hidden] → logits [R, vocab]. */
export interface OutputHead {
  forward(hidden: Float32Array, R: number, out: Float32Array): void;
}

/** A decoder-only model as the generic CausalLM runs it: embed, layers, final norm, head. */
export interface ModelParts {
  embedding: TokenEmbedding;
  layers: DecoderLayer[];
  finalNorm: Norm;
  head: OutputHead;
}

export interface Architecture {
  /** The Hugging Face `architectures` name this module serves. */
  readonly name: ArchitectureName;
  /**
   * Every tensor the model reads for `cfg` (Hugging Face names and shapes, in checkpoint order).
   * The builder refuses reads of anything else, and fixture generation writes exactly these.
   */
  tensors(cfg: ModelConfig): TensorDecl[];
  /** Compose the model from the shared pieces, reading weights through `b`. */
  build(b: ModelBuilder): ModelParts;
}
