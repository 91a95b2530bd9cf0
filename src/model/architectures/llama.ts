/**
 * The Llama family: pre-norm decoder layers of GQA attention with rotate_half RoPE and a
 * SiLU-gated MLP, RMSNorm, optionally tied output head. Llama itself, and the architectures that
 * differ from it only in which attention projections carry biases (mistral.ts, qwen2.ts) or in
 * per-head q/k norms (qwen3.ts). Layers the config marks `sliding_attention` attend within the
 * window.
 */
import type { Architecture as ArchitectureName, ModelConfig } from '../../config/model-config.js';
import { Attention } from '../layers/attention.js';
import type { TensorDecl } from '../layers/builder.js';
import { PreNormDecoderLayer } from '../layers/decoder-layer.js';
import { Embedding, EMBED_TOKENS, LM_HEAD, LmHead } from '../layers/embedding.js';
import { GatedMlp } from '../layers/mlp.js';
import { RmsNorm } from '../layers/norm.js';
import { ropeInvFreq } from '../layers/rotary.js';
import type { Architecture } from './architecture.js';

/** Which attention projections of a Llama-family model carry a bias. */
export interface AttentionBiases {
  qkv: boolean;
  o: boolean;
}

/** Which pieces a family member adds. */
export interface LlamaVariant {
  /** Per-head RMSNorm of q and k before RoPE (`self_attn.q_norm` / `k_norm`, [headDim] weights). */
  qkNorm?: boolean;
}

/** A Llama-family architecture, given its bias rule. */
export function llamaFamily(name: ArchitectureName, biases: (cfg: ModelConfig) => AttentionBiases, variant: LlamaVariant = {}): Architecture {
  return {
    name,

    tensors(cfg: ModelConfig): TensorDecl[] {
      const H = cfg.hiddenSize;
      const I = cfg.intermediateSize;
      const qDim = cfg.numHeads * cfg.headDim;
      const kvDim = cfg.numKvHeads * cfg.headDim;
      const bias = biases(cfg);
      const out: TensorDecl[] = [{ name: EMBED_TOKENS, shape: [cfg.vocabSize, H], role: 'embedding' }];
      for (let l = 0; l < cfg.numLayers; l++) {
        const p = `model.layers.${l}`;
        out.push(
          { name: `${p}.input_layernorm.weight`, shape: [H], role: 'norm' },
          { name: `${p}.self_attn.q_proj.weight`, shape: [qDim, H], role: 'query-key' },
          { name: `${p}.self_attn.k_proj.weight`, shape: [kvDim, H], role: 'query-key' },
          { name: `${p}.self_attn.v_proj.weight`, shape: [kvDim, H], role: 'linear' },
          { name: `${p}.self_attn.o_proj.weight`, shape: [H, qDim], role: 'linear' },
          { name: `${p}.post_attention_layernorm.weight`, shape: [H], role: 'norm' },
          { name: `${p}.mlp.gate_proj.weight`, shape: [I, H], role: 'linear' },
          { name: `${p}.mlp.up_proj.weight`, shape: [I, H], role: 'linear' },
          { name: `${p}.mlp.down_proj.weight`, shape: [H, I], role: 'linear' },
        );
        if (bias.qkv) {
          out.push(
            { name: `${p}.self_attn.q_proj.bias`, shape: [qDim], role: 'bias' },
            { name: `${p}.self_attn.k_proj.bias`, shape: [kvDim], role: 'bias' },
            { name: `${p}.self_attn.v_proj.bias`, shape: [kvDim], role: 'bias' },
          );
        }
        if (bias.o) out.push({ name: `${p}.self_attn.o_proj.bias`, shape: [H], role: 'bias' });
        if (variant.qkNorm) {
          out.push(
            { name: `${p}.self_attn.q_norm.weight`, shape: [cfg.headDim], role: 'norm' },
            { name: `${p}.self_attn.k_norm.weight`, shape: [cfg.headDim], role: 'norm' },
          );
        }
      }
      out.push({ name: 'model.norm.weight', shape: [H], role: 'norm' });
      if (!cfg.tieWordEmbeddings) out.push({ name: `${LM_HEAD}.weight`, shape: [cfg.vocabSize, H], role: 'head' });
      return out;
    },

    build(b) {
      const { cfg } = b;
      const H = cfg.hiddenSize;
      const bias = biases(cfg);
      const embedding = new Embedding(b);
      const rotary = b.rotary(ropeInvFreq(cfg));
      const layers = [];
      for (let l = 0; l < cfg.numLayers; l++) {
        const p = `model.layers.${l}`;
        const a = `${p}.self_attn`;
        const qkNorm = variant.qkNorm ? { q: new RmsNorm(b, `${a}.q_norm.weight`, cfg.headDim), k: new RmsNorm(b, `${a}.k_norm.weight`, cfg.headDim) } : undefined;
        const window = cfg.layerTypes[l] === 'sliding_attention' ? (cfg.slidingWindow ?? 0) : 0;
        layers.push(
          new PreNormDecoderLayer(
            b,
            new RmsNorm(b, `${p}.input_layernorm.weight`, H),
            new Attention(b, { layer: l, prefix: a, rotary, qkvBias: bias.qkv, oBias: bias.o, qkNorm, window }),
            new RmsNorm(b, `${p}.post_attention_layernorm.weight`, H),
            new GatedMlp(b, `${p}.mlp`, cfg.hiddenAct),
          ),
        );
      }
      return { embedding, layers, finalNorm: new RmsNorm(b, 'model.norm.weight', H), head: new LmHead(b, embedding) };
    },
  };
}

/** LlamaForCausalLM: `attention_bias` puts a bias on q, k, v and o alike (transformers' LlamaAttention). */
export const llama = llamaFamily('LlamaForCausalLM', (cfg) => ({ qkv: cfg.attentionBias, o: cfg.attentionBias }));
