/**
 * Grouped-query self-attention over the paged KV cache: q/k/v projections (one pack), optional
 * per-head q/k RMSNorm, rotary embedding, the cache write of this step's K/V, paged attention over
 * each sequence's context (optionally windowed and soft-capped), and the output projection.
 */
import type { ComputeBackend, PackedLinearHandle } from '../../backend/backend.js';
import type { Norm } from '../architectures/architecture.js';
import type { Step } from '../forward-batch.js';
import type { ModelBuilder } from './builder.js';
import type { Rotary } from './rotary.js';

export interface AttentionOptions {
  /** Index of the layer in the model (its KV group and cache slot come from the layout). */
  layer: number;
  /** Hugging Face prefix of the projections, e.g. `model.layers.3.self_attn`. */
  prefix: string;
  rotary: Rotary;
  /** Whether q/k/v and o_proj carry biases (an architecture fact, see its module). */
  qkvBias: boolean;
  oBias: boolean;
  /** Per-head RMSNorm of q and k ([headDim] weights), applied before RoPE (Qwen3, Gemma 3). */
  qkNorm?: { q: Norm; k: Norm };
  /** Scores are q·k times this (default headDim^-0.5). */
  scale?: number;
  /** Keys a query sees, itself included (sliding-window layers); 0 for full causal attention. */
  window?: number;
  /** Tanh soft-cap of the scores (Gemma 2), 0 for none. */
  softcap?: number;
}

export class Attention {
  private readonly be: ComputeBackend;
  private readonly slot: number;
  private readonly group: number;
  private readonly rotary: Rotary;
  private readonly qkv: PackedLinearHandle;
  private readonly o: PackedLinearHandle;
  private readonly qkNorm: { q: Norm; k: Norm } | null;
  private readonly nHeads: number;
  private readonly nKvHeads: number;
  private readonly headDim: number;
  private readonly scale: number;
  private readonly window: number;
  private readonly softcap: number;
  private readonly q: Float32Array;
  private readonly k: Float32Array;
  private readonly v: Float32Array;
  private readonly attn: Float32Array;

  constructor(b: ModelBuilder, opts: AttentionOptions) {
    const { cfg } = b;
    const H = cfg.hiddenSize;
    this.be = b.be;
    const kv = b.kvLayout.layerSlot[opts.layer]!;
    this.group = kv.group;
    this.slot = kv.slot;
    this.rotary = opts.rotary;
    this.qkNorm = opts.qkNorm ?? null;
    this.nHeads = cfg.numHeads;
    this.nKvHeads = cfg.numKvHeads;
    this.headDim = cfg.headDim;
    this.scale = opts.scale ?? 1 / Math.sqrt(cfg.headDim);
    this.window = opts.window ?? 0;
    this.softcap = opts.softcap ?? 0;
    const qDim = cfg.numHeads * cfg.headDim;
    const kvDim = cfg.numKvHeads * cfg.headDim;
    const p = opts.prefix;
    this.qkv = b.linears.pack([
      b.linear(`${p}.q_proj`, qDim, H, opts.qkvBias),
      b.linear(`${p}.k_proj`, kvDim, H, opts.qkvBias),
      b.linear(`${p}.v_proj`, kvDim, H, opts.qkvBias),
    ]);
    this.o = b.linears.pack([b.linear(`${p}.o_proj`, H, qDim, opts.oBias)]);
    this.q = b.scratch('attention.q', qDim);
    this.k = b.scratch('attention.k', kvDim);
    this.v = b.scratch('attention.v', kvDim);
    this.attn = b.scratch('attention.out', qDim);
  }

  /**
   * out = o_proj(attention(h)) for the step's T rows of h (the normed input); with `accumulate`,
   * out += that instead (a residual add fused into the store). Writes the step's K/V to the cache.
   */
  forward(h: Float32Array, out: Float32Array, accumulate: boolean, s: Step): void {
    const { be, nHeads, nKvHeads, headDim } = this;
    const { batch: b, T } = s;
    const kv = b.groups[this.group]!;
    const q = this.q.subarray(0, T * nHeads * headDim);
    const k = this.k.subarray(0, T * nKvHeads * headDim);
    const v = this.v.subarray(0, T * nKvHeads * headDim);
    const attn = this.attn.subarray(0, T * nHeads * headDim);
    be.linearPacked(this.qkv, h, T, [q, k, v], false);
    if (this.qkNorm) {
      this.qkNorm.q.apply(q, q, T * nHeads);
      this.qkNorm.k.apply(k, k, T * nKvHeads);
    }
    this.rotary.apply(q, k, T, nHeads, nKvHeads);
    be.kvCacheWrite(s.cache, this.slot, k, v, kv.slotMapping.subarray(0, T), T);
    be.pagedAttention(
      attn,
      q,
      s.cache,
      this.slot,
      kv.blockTables,
      b.maxBlocksPerSeq,
      b.queryStartLoc,
      b.seqLens,
      b.numSeqs,
      nHeads,
      nKvHeads,
      headDim,
      this.scale,
      this.window,
      this.softcap,
    );
    be.linearPacked(this.o, attn, T, [out], accumulate);
  }
}
