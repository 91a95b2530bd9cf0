/**
 * Sampling defaults a model ships in generation_config.json, applied to fields a request leaves
 * unset — by the server and the offline API alike.
 */
import { loadModelFiles } from '../model/loader/model-dir.js';
import type { SamplingParams } from './params.js';

/**
 * The model's sampling defaults from generation_config.json, as vLLM's `--generation-config auto`
 * applies them (temperature, top_p, top_k, repetition_penalty; max_new_tokens caps the default
 * max_tokens). `vllm` ignores the model's file and uses vLLM's built-in defaults.
 */
export function generationDefaults(
  modelDir: string,
  mode: 'auto' | 'vllm',
): { defaults: Partial<SamplingParams>; maxNewTokens: number | null; applied: string[] } {
  if (mode === 'vllm') return { defaults: {}, maxNewTokens: null, applied: [] };
  const g = loadModelFiles(modelDir).generationConfig;
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
