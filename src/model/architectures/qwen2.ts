/** Qwen2ForCausalLM: Llama with biases on q, k and v (never on o_proj), whatever the config says. */
import type { Architecture } from './architecture.js';
import { llamaFamily } from './llama.js';

export const qwen2: Architecture = llamaFamily('Qwen2ForCausalLM', () => ({ qkv: true, o: false }));
