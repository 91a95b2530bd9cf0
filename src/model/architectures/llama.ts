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
import { Embedding, LmHead } from '../layers/embedding.js';
import { GatedMlp } from '../layers/mlp.js';
import { RmsNorm } from '../layers/norm.js';
import { ropeInvFreq } from '../layers/rotary.js';
import type { Architecture } from './architecture.js';
import { decoderTensors, type AttentionBiases } from './decoder-tensors.js';

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
      return decoderTensors(cfg, { norm: 'norm', bias: biases(cfg), qkNorm: variant.qkNorm ?? false });
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
