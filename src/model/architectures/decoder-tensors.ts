/**
 * The tensor list of a decoder-only checkpoint in Hugging Face names, one source for every
 * architecture: the embedding, per layer the attention projections, the MLP and the layer's
 * norms, the final norm, and the output head unless tied. Families differ only in the options.
 */
import type { ModelConfig } from '../../config/model-config.js';
import type { TensorDecl } from '../layers/builder.js';
import { EMBED_TOKENS, LM_HEAD } from '../layers/embedding.js';

/** Which attention projections carry a bias. */
export interface AttentionBiases {
  qkv: boolean;
  o: boolean;
}

export interface DecoderTensorOptions {
  /** How the checkpoint's RMSNorm weights apply: x·w ('norm') or x·(1 + w) ('norm-offset', Gemma). */
  norm: 'norm' | 'norm-offset';
  bias: AttentionBiases;
  /** Per-head RMSNorm of q and k (`self_attn.q_norm` / `k_norm`, [headDim] weights). */
  qkNorm: boolean;
  /** Layer norms after the input and post-attention ones (Gemma's pre / post feed-forward norms). */
  moreLayerNorms?: readonly string[];
}

export function decoderTensors(cfg: ModelConfig, o: DecoderTensorOptions): TensorDecl[] {
  const H = cfg.hiddenSize;
  const I = cfg.intermediateSize;
  const qDim = cfg.numHeads * cfg.headDim;
  const kvDim = cfg.numKvHeads * cfg.headDim;
  const norm = (name: string, size = H): TensorDecl => ({ name, shape: [size], role: o.norm });
  const out: TensorDecl[] = [{ name: EMBED_TOKENS, shape: [cfg.vocabSize, H], role: 'embedding' }];
  for (let l = 0; l < cfg.numLayers; l++) {
    const p = `model.layers.${l}`;
    out.push(
      norm(`${p}.input_layernorm.weight`),
      { name: `${p}.self_attn.q_proj.weight`, shape: [qDim, H], role: 'query-key' },
      { name: `${p}.self_attn.k_proj.weight`, shape: [kvDim, H], role: 'query-key' },
      { name: `${p}.self_attn.v_proj.weight`, shape: [kvDim, H], role: 'linear' },
      { name: `${p}.self_attn.o_proj.weight`, shape: [H, qDim], role: 'linear' },
      norm(`${p}.post_attention_layernorm.weight`),
      ...(o.moreLayerNorms ?? []).map((n) => norm(`${p}.${n}.weight`)),
      { name: `${p}.mlp.gate_proj.weight`, shape: [I, H], role: 'linear' },
      { name: `${p}.mlp.up_proj.weight`, shape: [I, H], role: 'linear' },
      { name: `${p}.mlp.down_proj.weight`, shape: [H, I], role: 'linear' },
    );
    if (o.bias.qkv) {
      out.push(
        { name: `${p}.self_attn.q_proj.bias`, shape: [qDim], role: 'bias' },
        { name: `${p}.self_attn.k_proj.bias`, shape: [kvDim], role: 'bias' },
        { name: `${p}.self_attn.v_proj.bias`, shape: [kvDim], role: 'bias' },
      );
    }
    if (o.bias.o) out.push({ name: `${p}.self_attn.o_proj.bias`, shape: [H], role: 'bias' });
    if (o.qkNorm) out.push(norm(`${p}.self_attn.q_norm.weight`, cfg.headDim), norm(`${p}.self_attn.k_norm.weight`, cfg.headDim));
  }
  out.push(norm('model.norm.weight'));
  if (!cfg.tieWordEmbeddings) out.push({ name: `${LM_HEAD}.weight`, shape: [cfg.vocabSize, H], role: 'head' });
  return out;
}
