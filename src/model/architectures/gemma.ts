/**
 * The Gemma family (transformers' modeling_gemma2 / modeling_gemma3): embeddings scaled by
 * √hidden, RMSNorm as x·(1 + w) everywhere, four norms per layer around the attention and MLP
 * branches (SandwichDecoderLayer), a GeGLU MLP, attention scaled by query_pre_attn_scalar^-0.5,
 * sliding-window and global layers by `layer_types`, a head tied to the unscaled embeddings.
 * Gemma 2 soft-caps attention scores and final logits; Gemma 3 instead normalizes q and k per
 * head and rotates its sliding layers with their own RoPE base (`rope_local_base_freq`, no scaling).
 */
import type { Architecture as ArchitectureName, ModelConfig } from '../../config/model-config.js';
import { bf16ToF32, f32ToBf16 } from '../loader/dtype.js';
import { Attention } from '../layers/attention.js';
import type { TensorDecl } from '../layers/builder.js';
import { SandwichDecoderLayer } from '../layers/decoder-layer.js';
import { Embedding, LmHead } from '../layers/embedding.js';
import { GatedMlp } from '../layers/mlp.js';
import { RmsNorm } from '../layers/norm.js';
import { ropeInvFreq } from '../layers/rotary.js';
import type { Architecture } from './architecture.js';
import { decoderTensors } from './decoder-tensors.js';

/** What distinguishes the generations. */
interface GemmaVariant {
  /** Per-head (1 + w) RMSNorm of q and k before RoPE (Gemma 3). */
  qkNorm: boolean;
}

function gemmaFamily(name: ArchitectureName, variant: GemmaVariant): Architecture {
  return {
    name,

    tensors(cfg: ModelConfig): TensorDecl[] {
      return decoderTensors(cfg, {
        norm: 'norm-offset',
        bias: { qkv: cfg.attentionBias, o: cfg.attentionBias },
        qkNorm: variant.qkNorm,
        moreLayerNorms: ['pre_feedforward_layernorm', 'post_feedforward_layernorm'],
      });
    },

    build(b) {
      const { cfg } = b;
      const H = cfg.hiddenSize;
      // transformers multiplies by √hidden as a tensor of the compute dtype (rounded to it).
      const root = Math.sqrt(H);
      const embedding = new Embedding(b, b.precision === 'bfloat16' ? bf16ToF32(f32ToBf16(root)) : Math.fround(root));
      const global = b.rotary(ropeInvFreq(cfg));
      const local = cfg.ropeLocalTheta === null ? global : b.rotary(ropeInvFreq({ headDim: cfg.headDim, ropeTheta: cfg.ropeLocalTheta, ropeScaling: { type: 'default' } }));
      const norm = (name: string, size = H): RmsNorm => new RmsNorm(b, name, size, 1);
      const layers = [];
      for (let l = 0; l < cfg.numLayers; l++) {
        const p = `model.layers.${l}`;
        const a = `${p}.self_attn`;
        const sliding = cfg.layerTypes[l] === 'sliding_attention';
        const attention = new Attention(b, {
          layer: l,
          prefix: a,
          rotary: sliding ? local : global,
          qkvBias: cfg.attentionBias,
          oBias: cfg.attentionBias,
          qkNorm: variant.qkNorm ? { q: norm(`${a}.q_norm.weight`, cfg.headDim), k: norm(`${a}.k_norm.weight`, cfg.headDim) } : undefined,
          scale: 1 / Math.sqrt(cfg.queryPreAttnScalar),
          window: sliding ? (cfg.slidingWindow ?? 0) : 0,
          softcap: cfg.attnLogitSoftcapping ?? 0,
        });
        const norms = {
          input: norm(`${p}.input_layernorm.weight`),
          postAttention: norm(`${p}.post_attention_layernorm.weight`),
          preFeedforward: norm(`${p}.pre_feedforward_layernorm.weight`),
          postFeedforward: norm(`${p}.post_feedforward_layernorm.weight`),
        };
        layers.push(new SandwichDecoderLayer(b, norms, attention, new GatedMlp(b, `${p}.mlp`, cfg.hiddenAct)));
      }
      return { embedding, layers, finalNorm: norm('model.norm.weight'), head: new LmHead(b, embedding, cfg.finalLogitSoftcapping) };
    },
  };
}

export const gemma2: Architecture = gemmaFamily('Gemma2ForCausalLM', { qkNorm: false });
export const gemma3: Architecture = gemmaFamily('Gemma3ForCausalLM', { qkNorm: true });
