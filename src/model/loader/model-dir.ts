/**
 * The configuration files of a Hugging Face model directory (weights: see weights.ts; tokenizer
 * files are read by src/tokenizer).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  parseGenerationConfig,
  parseModelConfig,
  type GenerationConfig,
  type ModelConfig,
} from '../../config/model-config.js';
import { ModelLoadError } from '../../errors.js';

export interface ModelFiles {
  dir: string;
  config: ModelConfig;
  /**
   * From generation_config.json; without one (or without stop ids in it) the stop and start ids
   * come from config.json, which is what transformers does.
   */
  generationConfig: GenerationConfig;
}

/** Read and parse a JSON file, with errors that name it. */
export function readJsonFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ModelLoadError(`${path}: cannot read file (${(e as Error).message})`, { code: 'model_file_missing', cause: e });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new ModelLoadError(`${path}: invalid JSON (${(e as Error).message})`, { code: 'invalid_model_config', cause: e });
  }
}

/** Load config.json (required) and generation_config.json (optional) of a model directory. */
export function loadModelFiles(dir: string): ModelFiles {
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    // reported below
  }
  if (!isDir) throw new ModelLoadError(`model directory ${dir} does not exist or is not a directory`, { code: 'model_file_missing' });

  const configPath = join(dir, 'config.json');
  if (!existsSync(configPath)) {
    throw new ModelLoadError(`${dir}: missing config.json (not a Hugging Face model directory?)`, { code: 'model_file_missing' });
  }
  const config = parseModelConfig(readJsonFile(configPath), configPath);

  const genPath = join(dir, 'generation_config.json');
  let generationConfig: GenerationConfig = { eosTokenIds: [], bosTokenId: null };
  if (existsSync(genPath)) generationConfig = parseGenerationConfig(readJsonFile(genPath), genPath);
  if (generationConfig.eosTokenIds.length === 0) generationConfig.eosTokenIds = [...config.eosTokenIds];
  if (generationConfig.bosTokenId === null) generationConfig.bosTokenId = config.bosTokenId;
  return { dir, config, generationConfig };
}
