/**
 * Sampling defaults a model ships in generation_config.json, applied to fields a request leaves
 * unset — by the server and the offline API alike.
 */
import type { SamplingParams } from '../sampling/params.js';
import type { GenerationConfig } from './model-config.js';

/**
 * The model's sampling defaults from its generation_config.json (as `loadModelFiles` read it), as
 * vLLM's `--generation-config auto` applies them (temperature, top_p, top_k, repetition_penalty;
 * max_new_tokens caps the default max_tokens). `vllm` ignores the model's file and uses vLLM's
 * built-in defaults.
 */
export function generationDefaults(
  g: GenerationConfig,
  mode: 'auto' | 'vllm',
): { defaults: Partial<SamplingParams>; maxNewTokens: number | null; applied: string[] } {
  if (mode === 'vllm') return { defaults: {}, maxNewTokens: null, applied: [] };
  const defaults: Partial<SamplingParams> = {};
  const applied: string[] = [];
  if (g.temperature !== undefined) {
    defaults.temperature = g.temperature;
    applied.push(`temperature=${g.temperature}`);
  }
  if (g.topP !== undefined) {
    defaults.topP = g.topP;
    applied.push(`top_p=${g.topP}`);
  }
  if (g.topK !== undefined) {
    defaults.topK = g.topK;
    applied.push(`top_k=${g.topK}`);
  }
  if (g.repetitionPenalty !== undefined) {
    defaults.repetitionPenalty = g.repetitionPenalty;
    applied.push(`repetition_penalty=${g.repetitionPenalty}`);
  }
  const maxNewTokens = g.maxNewTokens ?? null;
  if (maxNewTokens !== null) applied.push(`max_tokens<=${maxNewTokens}`);
  return { defaults, maxNewTokens, applied };
}
