/**
 * Sampler micro-benchmark: microseconds per row for the common sampling configurations on random
 * logits: `pagewise bench sampler [--vocab-size V] [--batch B] [--iters N] [--json]`.
 */
import { availableParallelism } from 'node:os';
import { createBackend } from '../backend/index.js';
import { intFlag, parseArgs } from '../cli/args.js';
import { Sampler, type SamplerRow } from '../sampling/sampler.js';
import { makeSamplingParams, type SamplingParamsInput } from '../sampling/params.js';
import { Rng } from '../sampling/rng.js';

export interface BenchSamplerOptions {
  vocabSize: number;
  batch: number;
  iters: number;
}

const CASES: Record<string, SamplingParamsInput> = {
  greedy: { temperature: 0 },
  temperature: { temperature: 0.8 },
  top_k_50: { temperature: 0.8, topK: 50 },
  top_p_0_9: { temperature: 0.8, topP: 0.9 },
  top_p_top_k_min_p: { temperature: 0.8, topP: 0.9, topK: 50, minP: 0.05 },
  logprobs_5: { temperature: 0.8, logprobs: 5 },
  greedy_logprobs_5: { temperature: 0, logprobs: 5 },
  penalties: { temperature: 0.8, repetitionPenalty: 1.1, frequencyPenalty: 0.5, presencePenalty: 0.5 },
};

/** Returns µs per row for each case (lower is better). */
export function benchSampler(opts: BenchSamplerOptions): Record<string, number> {
  const { vocabSize: V, batch, iters } = opts;
  const rng = new Rng(1234);
  // Logits shaped like a model's: N(0, 2.5²) so softmax is neither flat nor one-hot.
  const source = new Float32Array(V * batch);
  for (let i = 0; i < source.length; i++) {
    const u1 = rng.next() || 1e-12;
    const u2 = rng.next();
    source[i] = 2.5 * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }
  const logits = new Float32Array(source.length);
  const sampler = new Sampler(createBackend({ threads: availableParallelism() }), V);
  const prompt = Array.from({ length: 512 }, (_, i) => (i * 7919) % V);
  const output = Array.from({ length: 128 }, (_, i) => (i * 104729) % V);
  const result: Record<string, number> = {};
  for (const [name, input] of Object.entries(CASES)) {
    const params = makeSamplingParams(input, { vocabSize: V });
    const rows: SamplerRow[] = Array.from({ length: batch }, (_, b) => ({
      params,
      rng: new Rng(b),
      promptTokenIds: prompt,
      outputTokenIds: output,
      eosTokenIds: [2 % V],
      grammarMask: null,
    }));
    const run = (): void => {
      logits.set(source);
      sampler.sample(logits, rows);
    };
    for (let i = 0; i < Math.max(3, iters / 10); i++) run(); // warm up the JIT
    // Time the copy separately so it is not billed to the sampler.
    const c0 = process.hrtime.bigint();
    for (let i = 0; i < iters; i++) logits.set(source);
    const copyNs = Number(process.hrtime.bigint() - c0);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iters; i++) run();
    const ns = Number(process.hrtime.bigint() - t0) - copyNs;
    result[name] = Math.round((ns / 1000 / (iters * batch)) * 10) / 10;
  }
  return result;
}

export async function benchSamplerCommand(argv: string[]): Promise<void> {
  const flags = parseArgs(argv, { values: ['vocab-size', 'batch', 'iters'], booleans: ['json'] });
  const vocabSize = intFlag(flags, 'vocab-size') ?? 49152;
  const batch = intFlag(flags, 'batch') ?? 8;
  const iters = intFlag(flags, 'iters') ?? 50;
  const us = benchSampler({ vocabSize, batch, iters });
  const out = { bench: 'sampler', unit: 'us_per_row', vocab_size: vocabSize, batch, iters, node: process.version, results: us };
  process.stdout.write(`${JSON.stringify(out, null, flags.has('json') ? undefined : 2)}\n`);
}
