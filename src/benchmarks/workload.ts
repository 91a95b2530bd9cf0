/**
 * Benchmark workloads: seeded random prompts (token ids) and output lengths, so every engine and
 * every run sees the same work.
 */
import { readFileSync } from 'node:fs';
import { UsageError } from '../cli/args.js';
import { Rng } from '../sampling/rng.js';

export interface WorkItem {
  promptTokenIds: number[];
  outputLen: number;
}

export interface WorkloadSpec {
  numPrompts: number;
  /**
   * 'random' (mixed lengths), 'fixed' (inputLen/outputLen), 'shared-prefix' (fixed lengths, the
   * first half of every prompt identical: a system prompt), or a JSONL file path.
   */
  dataset: string;
  inputLen: number;
  outputLen: number;
  seed: number;
  vocabSize: number;
}

/** Mixed-length ranges of `--dataset random` (prompt 32–1024, output 16–512 tokens). */
export const RANDOM_PROMPT_LEN: [number, number] = [32, 1024];
export const RANDOM_OUTPUT_LEN: [number, number] = [16, 512];

function uniformInt(rng: Rng, lo: number, hi: number): number {
  return lo + Math.floor(rng.next() * (hi - lo + 1));
}

/**
 * The ids random prompts are drawn from, [lo, hi), for a model of `vocabSize` ids: the whole
 * vocabulary but its first ids, which are special tokens in most vocabularies.
 */
export function randomTokenRange(vocabSize: number): [number, number] {
  if (!Number.isSafeInteger(vocabSize) || vocabSize < 2) throw new UsageError(`cannot draw random prompts from a vocabulary of ${vocabSize} ids`);
  return [Math.min(16, vocabSize - 1), vocabSize];
}

function randomIds(rng: Rng, n: number, vocab: number): number[] {
  const [lo, hi] = randomTokenRange(vocab);
  return Array.from({ length: n }, () => uniformInt(rng, lo, hi - 1));
}

/** Whether a dataset name means random token ids (not a JSONL file). */
export function isRandomDataset(dataset: string): boolean {
  return dataset === 'random' || dataset === 'fixed' || dataset === 'shared-prefix';
}

export function makeWorkload(s: WorkloadSpec): WorkItem[] {
  const rng = new Rng(s.seed);
  if (s.dataset === 'random') {
    return Array.from({ length: s.numPrompts }, () => {
      const inLen = uniformInt(rng, ...RANDOM_PROMPT_LEN);
      const outLen = uniformInt(rng, ...RANDOM_OUTPUT_LEN);
      return { promptTokenIds: randomIds(rng, inLen, s.vocabSize), outputLen: outLen };
    });
  }
  if (s.dataset === 'fixed') {
    return Array.from({ length: s.numPrompts }, () => ({ promptTokenIds: randomIds(rng, s.inputLen, s.vocabSize), outputLen: s.outputLen }));
  }
  if (s.dataset === 'shared-prefix') {
    const prefix = randomIds(rng, Math.floor(s.inputLen / 2), s.vocabSize);
    return Array.from({ length: s.numPrompts }, () => ({
      promptTokenIds: [...prefix, ...randomIds(rng, s.inputLen - prefix.length, s.vocabSize)],
      outputLen: s.outputLen,
    }));
  }
  const lines = readFileSync(s.dataset, 'utf8').split('\n').filter((l) => l.trim() !== '');
  const items = lines.map((l, i) => {
    const v = JSON.parse(l) as { prompt_token_ids?: unknown; output_len?: unknown };
    if (!Array.isArray(v.prompt_token_ids) || !Number.isInteger(v.output_len)) {
      throw new UsageError(`${s.dataset}:${i + 1}: expected {"prompt_token_ids": [...], "output_len": N}`);
    }
    return { promptTokenIds: v.prompt_token_ids as number[], outputLen: v.output_len as number };
  });
  return items.slice(0, s.numPrompts);
}
