/**
 * Qwen3ForCausalLM: Llama with a per-head RMSNorm on q and k before RoPE (`q_norm`, `k_norm`),
 * an explicit head_dim, and `attention_bias` on q, k, v and o alike (false in every released model).
 */
import type { Architecture } from './architecture.js';
import { llamaFamily } from './llama.js';

export const qwen3: Architecture = llamaFamily('Qwen3ForCausalLM', (cfg) => ({ qkv: cfg.attentionBias, o: cfg.attentionBias }), { qkNorm: true });
