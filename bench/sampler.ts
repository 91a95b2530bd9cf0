/**
 * Sampler micro-benchmark: microseconds per row for the common sampling configurations on random
 * logits. Prints JSON when run directly:
 *   node --import tsx bench/sampler.ts [vocabSize] [batch] [iters]
 */
import { fileURLToPath } from 'node:url';
import { Sampler, type SamplerRow } from '../src/sampling/sampler.js';
import { makeSamplingParams, type SamplingParamsInput } from '../src/sampling/params.js';
import { Rng } from '../src/sampling/rng.js';

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
  const sampler = new Sampler(V);
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

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const vocabSize = Number(process.argv[2] ?? 49152);
  const batch = Number(process.argv[3] ?? 8);
  const iters = Number(process.argv[4] ?? 50);
  const us = benchSampler({ vocabSize, batch, iters });
  console.log(JSON.stringify({ bench: 'sampler', unit: 'us_per_row', vocabSize, batch, iters, node: process.version, results: us }, null, 2));
}
