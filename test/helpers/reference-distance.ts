/**
 * The GGUF fixtures' accuracy measure (../shared/fixtures/gguf/README.md): a file's distance from
 * the float64 reference on its own dequantized weights, over every prompt row of its cases — top-1
 * agreement and the mean |Δ logprob| of the reference's top-1 token — next to llama.cpp's on the
 * same rows (peer_llamacpp.json). Row i is the next-token distribution after prompt[0..i]: vLLM-style
 * prompt logprobs report it at position i + 1 (i < len - 1); the last row is the one the first
 * generated token is drawn from. Used by the accuracy tests (CPU and WebGPU) and by
 * scripts/gguf-accuracy.ts.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LLM } from '../../src/engine/llm.js';
import type { RequestOutput } from '../../src/engine/output-processor.js';
import type { TokenLogprobs } from '../../src/engine/protocol.js';
import type { Golden } from './fixtures.js';

/** Top log-probs asked for per row: the reference's top-1 token must be among them. */
export const TOP_N = 20;

export interface Peer {
  cases: Array<{ name: string; greedy: { token_ids: number[] } }>;
  vs_reference: { prompt_rows: { count: number; top1_agree: number; ref_top1_logprob_abs_diff: { mean: number } } };
}

/** One fixture directory: its .gguf file, the reference (golden.json) and llama.cpp's run. */
export interface GgufFixture {
  gguf: string;
  golden: Golden;
  peer: Peer;
}

export function readGgufFixture(dir: string): GgufFixture {
  const file = readdirSync(dir).find((f) => f.endsWith('.gguf'));
  if (!file) throw new Error(`no .gguf file in ${dir}`);
  return {
    gguf: join(dir, file),
    golden: JSON.parse(readFileSync(join(dir, 'golden.json'), 'utf8')) as Golden,
    peer: JSON.parse(readFileSync(join(dir, 'peer_llamacpp.json'), 'utf8')) as Peer,
  };
}

/** One case's greedy run with the log-probs the measure reads. */
export function runCase(llm: LLM, c: Golden['cases'][number]): Promise<RequestOutput> {
  return llm
    .generate({ promptTokenIds: c.prompt_token_ids }, { temperature: 0, maxTokens: c.greedy.max_tokens, logprobs: TOP_N, promptLogprobs: TOP_N, ignoreEos: true })
    .then((o) => o[0]!);
}

export interface Distance {
  rows: number;
  /** Rows whose top-1 token is the reference's. */
  agree: number;
  /** Mean |our logprob - the reference's| of the reference's top-1 token. */
  mean: number;
}

/** The measure over `outs` (one output per golden case, in order). Throws if a row lacks the reference's top-1 token. */
export function distance(golden: Golden, outs: readonly RequestOutput[]): Distance {
  let rows = 0;
  let agree = 0;
  let sumAbs = 0;
  golden.cases.forEach((c, k) => {
    const out = outs[k]!;
    const L = c.prompt_token_ids.length;
    for (let i = 0; i < L; i++) {
      const row = i < L - 1 ? out.promptLogprobs![i + 1]! : out.outputs[0]!.logprobs![0]!;
      const refTop = c.top_k_ids[i]![0]!;
      sumAbs += Math.abs(logprobOf(row, refTop, `${c.name} row ${i}`) - (c.top_k_logits[i]![0]! - c.logsumexp[i]!));
      if (row.top![0]!.tokenId === refTop) agree++;
      rows++;
    }
  });
  return { rows, agree, mean: sumAbs / rows };
}

/** Whether llama.cpp's greedy tokens equal the reference's, for case `name`. */
export function llamaCppGreedyMatches(f: GgufFixture, name: string): boolean {
  const ref = f.golden.cases.find((c) => c.name === name)!.greedy.token_ids;
  return f.peer.cases.find((p) => p.name === name)!.greedy.token_ids.every((t, j) => t === ref[j]);
}

/** Our logprob of `id` in a reported distribution (the chosen token or one of the top N). */
function logprobOf(row: TokenLogprobs, id: number, where: string): number {
  if (row.token.tokenId === id) return row.token.logprob;
  const hit = row.top?.find((t) => t.tokenId === id);
  if (!hit) throw new Error(`${where}: the reference's top-1 token ${id} is not in our top ${TOP_N}`);
  return hit.logprob;
}
