/**
 * Opening a GGUF model: the one entry point the engine uses for `.gguf` files.
 */
import type { GenerationConfig, ModelConfig } from '../../../config/model-config.js';
import type { WeightSource } from '../weight-source.js';
import { ggufArchitecture, ggufModelConfig } from './config.js';
import { GgufFile } from './file.js';
import { ggufTokenizer } from './tokenizer.js';
import { GgufWeightSource } from './weights.js';

export interface GgufModel {
  file: GgufFile;
  config: ModelConfig;
  generationConfig: GenerationConfig;
  weights: WeightSource;
  /** For `new PagewiseTokenizer(tokenizerJson, tokenizerConfig, chatTemplate ?? undefined)`. */
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
  chatTemplate: string | null;
}

/** Everything needed to run a GGUF file (or split set); throws ModelLoadError on any bad input. */
export function openGgufModel(path: string): GgufModel {
  return ggufModelFromFile(GgufFile.open(path));
}

export function ggufModelFromFile(file: GgufFile): GgufModel {
  const arch = ggufArchitecture(file);
  const { config, generationConfig } = ggufModelConfig(file);
  const weights = new GgufWeightSource(file, arch, config);
  const tok = ggufTokenizer(file);
  return { file, config, generationConfig, weights, ...tok };
}

export { GgufFile } from './file.js';
