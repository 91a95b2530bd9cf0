/**
 * A model package: everything the engine needs to build a model, from one path, whatever the
 * format: the hyperparameters, the generation defaults, the weights and where the tokenizer comes
 * from. A Hugging Face directory spreads these over config.json, generation_config.json,
 * *.safetensors and tokenizer.json; a GGUF file holds them all. Each format is one entry of
 * FORMATS.
 */
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import type { GenerationConfig, ModelConfig } from '../../config/model-config.js';
import { ModelLoadError } from '../../errors.js';
import { loadModelFiles } from './model-dir.js';
import type { WeightSource } from './weight-source.js';
import { WeightStore } from './weights.js';
import { openGgufModel } from './gguf/index.js';
import { readTokenizerFiles, type TokenizerFiles } from '../../tokenizer/tokenizer.js';

/** Where the tokenizer is read from. */
export type TokenizerSource =
  /** tokenizer.json and tokenizer_config.json of a Hugging Face directory (src/tokenizer). */
  | { kind: 'huggingface'; dir: string }
  /** Already converted (a GGUF file's tokenizer metadata, src/model/loader/gguf/tokenizer.ts). */
  | { kind: 'files'; files: TokenizerFiles };

export interface ModelPackage {
  /** What the model was opened from (directory or file), for messages. */
  path: string;
  /** Name of the format that opened it (an entry of FORMATS). */
  format: string;
  config: ModelConfig;
  /** Stop and start ids are filled from the model config when the generation config lacks them. */
  generationConfig: GenerationConfig;
  weights: WeightSource;
  tokenizer: TokenizerSource;
}

/** One on-disk model format. */
export interface ModelFormat {
  name: string;
  /** What `path` must be, for the error listing the formats. */
  expects: string;
  /** Whether `path` is in this format (cheap: a stat, an extension, a magic number). */
  detect(path: string): boolean;
  open(path: string): ModelPackage;
}

const huggingfaceDir: ModelFormat = {
  name: 'huggingface',
  expects: 'a Hugging Face model directory (config.json and *.safetensors)',
  detect: (path) => statSync(path).isDirectory(),
  open(path) {
    const files = loadModelFiles(path);
    return {
      path,
      format: 'huggingface',
      config: files.config,
      generationConfig: files.generationConfig,
      weights: WeightStore.open(path),
      tokenizer: { kind: 'huggingface', dir: path },
    };
  },
};

const GGUF_MAGIC = 0x46554747; // "GGUF", little-endian

/** A GGUF file (llama.cpp's format): one file, or any part of a split set, holds everything. */
const ggufFile: ModelFormat = {
  name: 'gguf',
  expects: 'a GGUF file',
  detect(path) {
    if (!statSync(path).isFile()) return false;
    if (path.endsWith('.gguf')) return true;
    const head = Buffer.alloc(4);
    const fd = openSync(path, 'r');
    try {
      return readSync(fd, head, 0, 4, 0) === 4 && head.readUInt32LE(0) === GGUF_MAGIC;
    } finally {
      closeSync(fd);
    }
  },
  open(path) {
    const m = openGgufModel(path);
    return {
      path,
      format: 'gguf',
      config: m.config,
      generationConfig: m.generationConfig,
      weights: m.weights,
      tokenizer: { kind: 'files', files: { tokenizerJson: m.tokenizerJson, tokenizerConfig: m.tokenizerConfig, chatTemplate: m.chatTemplate ?? undefined } },
    };
  },
};

const FORMATS: readonly ModelFormat[] = [huggingfaceDir, ggufFile];

/**
 * Open the model at `path` (a local directory or file; hub ids are resolved to one before, by
 * resolve.ts) in whichever format it is. Throws ModelLoadError naming the path, and listing the
 * formats when none fits.
 */
export function openModelPackage(path: string): ModelPackage {
  if (!existsSync(path)) throw new ModelLoadError(`model path ${path} does not exist`, { code: 'model_file_missing' });
  const format = FORMATS.find((f) => f.detect(path));
  if (!format) {
    throw new ModelLoadError(`${path}: not a model in a supported format (expected ${FORMATS.map((f) => f.expects).join(', or ')})`, {
      code: 'model_file_missing',
    });
  }
  return format.open(path);
}

/** The tokenizer a package names, as plain data (the worker sends it to the main thread). */
export function readPackageTokenizer(source: TokenizerSource): TokenizerFiles {
  switch (source.kind) {
    case 'huggingface':
      return readTokenizerFiles(source.dir);
    case 'files':
      return source.files;
  }
}
