/**
 * Where the shared model fixtures are. PAGEWISE_FIXTURES (set by .ci/run) names the folder; when it
 * is set and the folder is missing, tests must FAIL, not skip, so a broken CI set-up is loud.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export function fixturesDir(): string {
  const env = process.env['PAGEWISE_FIXTURES'];
  const dir = env ? resolve(repoRoot, env) : resolve(repoRoot, '..', 'shared', 'fixtures');
  if (!existsSync(dir)) {
    throw new Error(`model fixtures not found at ${dir}${env ? ' (PAGEWISE_FIXTURES is set)' : ''}`);
  }
  return dir;
}

export function fixturePath(name: string): string {
  return join(fixturesDir(), name);
}

export interface GoldenGreedy {
  max_tokens: number;
  token_ids: number[];
  logits?: number[];
  logprobs?: number[];
  margins: number[];
  text_full?: string;
  text_completion?: string;
}

export interface GoldenCase {
  name: string;
  prompt_token_ids: number[];
  top_k_ids: number[][];
  top_k_logits: number[][];
  logsumexp: number[];
  prompt_next_logits: number[];
  greedy: GoldenGreedy;
  chat?: { messages: Array<{ role: string; content: string }>; rendered: string; [k: string]: unknown };
}

export interface Golden {
  fixture: string;
  weights_dtype: string;
  eos_token_ids: number[];
  cases: GoldenCase[];
  text_cases?: Array<{ prompt: string; prompt_token_ids: number[]; greedy: GoldenGreedy }>;
}

export function loadGolden(name: string): Golden {
  return JSON.parse(readFileSync(join(fixturePath(name), 'golden.json'), 'utf8')) as Golden;
}

export const FIXTURES = ['stories260k', 'llama-tiny', 'qwen2-tiny', 'qwen3-tiny', 'gemma2-tiny', 'gemma3-tiny'] as const;
