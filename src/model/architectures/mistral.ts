/** MistralForCausalLM: Llama without attention biases (its sliding window is a config value, see model-config.ts). */
import type { Architecture } from './architecture.js';
import { llamaFamily } from './llama.js';

export const mistral: Architecture = llamaFamily('MistralForCausalLM', () => ({ qkv: false, o: false }));
