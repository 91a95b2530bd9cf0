/** Token embedding and the output head. */
import type { ComputeBackend, DType, PackedLinearHandle, WeightArray } from '../../backend/backend.js';
import type { GgmlType } from '../../backend/quant.js';
import { ModelLoadError } from '../../errors.js';
import type { ModelBuilder } from './builder.js';
import { checkQuantOnDevice } from './linear.js';

export const EMBED_TOKENS = 'model.embed_tokens.weight';
export const LM_HEAD = 'lm_head';

/**
 * The [vocab, hidden] token embedding table, kept in its stored dtype (often a view of the mapped
 * file); with `scale`, looked-up rows are multiplied by it (Gemma's √hidden; a head tied to the
 * table still sees the unscaled matrix). A table with a head tied to it is packed once, here, for
 * that head, and the rows are looked up in the pack wherever it holds the table's own values
 * (quantized blocks, or floats in the table's dtype; not a float table the head's precision
 * converts): the file's copy is never read again, so its pages, released after loading, do not come
 * back into the process's memory row by row.
 */
export class Embedding {
  private readonly be: ComputeBackend;
  private readonly scale: number | null;
  /** Float table (stored dtype), quantized rows, or the tied head's pack of them. */
  private readonly table:
    | { kind: 'float'; data: WeightArray; dtype: DType }
    | { kind: 'quant'; data: Uint8Array; type: GgmlType }
    | { kind: 'packed'; pack: PackedLinearHandle };
  private readonly hidden: number;
  /** The table packed for a tied head (which then uses this pack); null when the head is not tied. */
  readonly headPack: PackedLinearHandle | null = null;

  constructor(b: ModelBuilder, scale: number | null = null) {
    const { vocabSize, hiddenSize, tieWordEmbeddings } = b.cfg;
    this.be = b.be;
    this.scale = scale;
    this.hidden = hiddenSize;
    const t = b.tensor(EMBED_TOKENS, [vocabSize, hiddenSize]);
    if (t.kind === 'quant') checkQuantOnDevice(b.be, t);
    if (tieWordEmbeddings) {
      const w = b.linears.weight(t, null);
      const pack = b.linears.pack([w]);
      this.headPack = pack;
      if (w.kind === 'quant' || (t.kind === 'float' && w.dtype === t.dtype)) {
        this.table = { kind: 'packed', pack };
        return;
      }
    }
    this.table = t.kind === 'quant' ? { kind: 'quant', data: t.data, type: t.type } : { kind: 'float', data: t.data, dtype: t.dtype };
  }

  /** x[t, :] = table[ids[t], :] for the first T ids. */
  forward(x: Float32Array, ids: Int32Array, T: number): void {
    const t = this.table;
    if (t.kind === 'packed') this.be.embeddingPacked(x, t.pack, ids.subarray(0, T));
    else if (t.kind === 'quant') this.be.embeddingQuant(x, t.data, t.type, ids.subarray(0, T), this.hidden);
    else this.be.embedding(x, t.data, t.dtype, ids.subarray(0, T), this.hidden);
    if (this.scale !== null) this.be.scale(x, x, T * this.hidden, this.scale);
  }
}

/**
 * The output head: logits = hidden · W^T, W being `lm_head.weight` or, when tied, the embedding;
 * with `softcap`, logits = softcap · tanh(logits / softcap) (Gemma 2's final soft-capping).
 */
export class LmHead {
  private readonly be: ComputeBackend;
  private readonly pack: PackedLinearHandle;
  private readonly vocab: number;

  constructor(
    b: ModelBuilder,
    embedding: Embedding,
    private readonly softcap: number | null = null,
  ) {
    const { vocabSize, hiddenSize } = b.cfg;
    this.be = b.be;
    this.vocab = vocabSize;
    if (embedding.headPack) {
      this.pack = embedding.headPack; // tied
    } else {
      if (!b.has(`${LM_HEAD}.weight`)) throw new ModelLoadError(`${LM_HEAD}.weight is missing and tie_word_embeddings is false`, { code: 'tensor_missing' });
      this.pack = b.linears.pack([b.linear(LM_HEAD, vocabSize, hiddenSize, false)]);
    }
  }

  /** logits[r, :] = head(hidden[r, :]) for R rows. */
  forward(hidden: Float32Array, R: number, out: Float32Array): void {
    this.be.linearPacked(this.pack, hidden, R, [out], false);
    if (this.softcap !== null) this.be.softcap(out, out, R * this.vocab, this.softcap);
  }
}
