/**
 * The architecture registry: Hugging Face `architectures` name → the module that builds it.
 * Adding an architecture: write its module (architecture.ts says what it provides), add it here,
 * and teach src/config/model-config.ts its config.json keys (the `Architecture` union makes this
 * table fail to compile until every configured architecture has a module).
 */
import type { Architecture as ArchitectureName } from '../../config/model-config.js';
import { ModelLoadError } from '../../errors.js';
import type { Architecture } from './architecture.js';
import { llama } from './llama.js';
import { gemma2, gemma3 } from './gemma.js';
import { mistral } from './mistral.js';
import { qwen2 } from './qwen2.js';
import { qwen3 } from './qwen3.js';

const REGISTRY: Readonly<Record<ArchitectureName, Architecture>> = {
  LlamaForCausalLM: llama,
  MistralForCausalLM: mistral,
  Qwen2ForCausalLM: qwen2,
  Qwen3ForCausalLM: qwen3,
  Gemma2ForCausalLM: gemma2,
  Gemma3ForCausalLM: gemma3,
};

/** Names the registry serves. */
export function registeredArchitectures(): string[] {
  return Object.keys(REGISTRY);
}

/** The module of architecture `name`; a ModelLoadError listing the supported ones when there is none. */
export function architectureFor(name: string): Architecture {
  const a = Object.hasOwn(REGISTRY, name) ? REGISTRY[name as ArchitectureName] : undefined;
  if (!a) {
    throw new ModelLoadError(`unsupported architecture "${name}" (supported: ${registeredArchitectures().join(', ')})`, {
      code: 'unsupported_architecture',
    });
  }
  return a;
}
