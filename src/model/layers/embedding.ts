/** Token embedding and the output head. */
import type { ComputeBackend, DType, PackedLinearHandle, WeightArray } from '../../backend/backend.js';
import type { GgmlType } from '../../backend/quant.js';
import { ModelLoadError } from '../../errors.js';
import type { WeightTensor } from '../loader/weight-source.js';
import type { ModelBuilder } from './builder.js';

export const EMBED_TOKENS = 'model.embed_tokens.weight';
export const LM_HEAD = 'lm_head';

/** The [vocab, hidden] token embedding table, kept in its stored dtype (often a view of the mapped file). */
export class Embedding {
  private readonly be: ComputeBackend;
  /** Float table (stored dtype) or quantized rows. */
  private readonly table: { kind: 'float'; data: WeightArray; dtype: DType } | { kind: 'quant'; data: Uint8Array; type: GgmlType };
  private readonly hidden: number;
  /** The table as read, for a head tied to it. */
  readonly tensor: WeightTensor;

  constructor(b: ModelBuilder) {
    const { vocabSize, hiddenSize } = b.cfg;
    this.be = b.be;
    this.hidden = hiddenSize;
    this.tensor = b.tensor(EMBED_TOKENS, [vocabSize, hiddenSize]);
    const t = this.tensor;
    this.table = t.kind === 'quant' ? { kind: 'quant', data: t.data, type: t.type } : { kind: 'float', data: t.data, dtype: t.dtype };
  }

  /** x[t, :] = table[ids[t], :] for the first T ids. */
  forward(x: Float32Array, ids: Int32Array, T: number): void {
    const t = this.table;
    if (t.kind === 'quant') this.be.embeddingQuant(x, t.data, t.type, ids.subarray(0, T), this.hidden);
    else this.be.embedding(x, t.data, t.dtype, ids.subarray(0, T), this.hidden);
  }
}

/** The output head: logits = hidden · W^T, W being `lm_head.weight` or, when tied, the embedding. */
export class LmHead {
  private readonly be: ComputeBackend;
  private readonly pack: PackedLinearHandle;

  constructor(b: ModelBuilder, embedding: Embedding) {
    const { vocabSize, hiddenSize, tieWordEmbeddings } = b.cfg;
    this.be = b.be;
    if (tieWordEmbeddings) {
      this.pack = b.linears.pack([b.linears.weight(embedding.tensor, null)]);
    } else {
      if (!b.has(`${LM_HEAD}.weight`)) throw new ModelLoadError(`${LM_HEAD}.weight is missing and tie_word_embeddings is false`, { code: 'tensor_missing' });
      this.pack = b.linears.pack([b.linear(LM_HEAD, vocabSize, hiddenSize, false)]);
    }
  }

  /** logits[r, :] = head(hidden[r, :]) for R rows. */
  forward(hidden: Float32Array, R: number, out: Float32Array): void {
    this.be.linearPacked(this.pack, hidden, R, [out], false);
  }
}
