/**
 * A/B of two builds' batch-1 decode, end to end, in one process:
 *
 *   node --import tsx scripts/decode-ab.ts A_CHECKOUT B_CHECKOUT --model PATH [--threads 2]
 *       [--context 128] [--steps 8] [--pairs 15] [--kv-cache-mib 256]
 *
 * kernel-ab.ts's method for whole decode steps: each checkout (with its own built addon) loads
 * the model into its own engine, both prefill the same random prompt of --context tokens, then
 * turns of --steps greedy decode steps alternate A, B, A, B… for --pairs pairs. On a host whose
 * whole-process runs swing by 1.5x within minutes (other tenants' memory traffic), the median of
 * the pairwise ratios still resolves a few per cent. Prints one JSON line: both engines' median
 * step time, the median speed-up (time A / time B: above 1, B is faster), and whether both
 * generated the same tokens (they must where the numerics did not change).
 *
 * Memory: two copies of the model's weights, and two KV pools of --kv-cache-mib (default 256).
 */
import { parseArgs } from 'node:util';
import { median } from '../src/benchmarks/stats.js';

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    model: { type: 'string' },
    threads: { type: 'string', default: '2' },
    context: { type: 'string', default: '128' },
    steps: { type: 'string', default: '8' },
    pairs: { type: 'string', default: '15' },
    'kv-cache-mib': { type: 'string', default: '256' },
  },
});
const [dirA, dirB] = positionals;
if (!dirA || !dirB || !opts.model) {
  console.error('usage: decode-ab.ts A_CHECKOUT B_CHECKOUT --model PATH [options]; see the header');
  process.exit(2);
}
const pairs = Number(opts.pairs);
const steps = Number(opts.steps);
const context = Number(opts.context);
// Steps before the timed turns: the prefill and the first decode steps (buffers sized, code warm).
const WARM_STEPS = 4;

type Engine = { core: any; tokens: number[] }; // each checkout's own EngineCore (types may differ)

async function load(dir: string): Promise<Engine> {
  const { makeEngineConfig } = await import(`${dir}/src/config/engine-config.ts`);
  const { resolveModel } = await import(`${dir}/src/model/loader/resolve.ts`);
  const { createBackend } = await import(`${dir}/src/backend/index.ts`);
  const { EngineCore } = await import(`${dir}/src/engine/core.ts`);
  const { makeSamplingParams } = await import(`${dir}/src/sampling/params.ts`);
  const cfg = makeEngineConfig({ model: opts.model, threads: Number(opts.threads), kvCacheMemory: Number(opts['kv-cache-mib']) * 2 ** 20 });
  const core = new EngineCore(createBackend({ threads: cfg.threads, device: 'cpu' }), await resolveModel(cfg.model), cfg);
  const V = core.info.model.vocabSize;
  // The same prompt for both (a fixed LCG); the request outlasts every step this engine runs.
  let x = 12345;
  const prompt = Array.from({ length: context }, () => (x = (x * 1103515245 + 12345) % 2 ** 31) % V);
  const maxTokens = WARM_STEPS + pairs * steps + 8;
  core.commitKvCache(Math.ceil((context + maxTokens) / core.info.config.blockSize + 1) * (core.info.kvCacheBytes / core.info.numBlocks));
  core.addRequest({
    requestId: 'ab',
    promptTokenIds: prompt,
    params: makeSamplingParams({ temperature: 0, ignoreEos: true, maxTokens }, { vocabSize: V }),
    arrivalTime: Date.now(),
  });
  return { core, tokens: [] };
}

function step(e: Engine): void {
  const { deltas } = e.core.step();
  for (const d of deltas) for (const s of d.seqs) e.tokens.push(...s.newTokenIds);
}

const engines = [await load(dirA), await load(dirB)];
for (const e of engines) for (let i = 0; i < WARM_STEPS; i++) step(e);
const t: number[][] = [[], []];
for (let p = 0; p < pairs; p++)
  for (let j = 0; j < 2; j++) {
    const t0 = performance.now();
    for (let s = 0; s < steps; s++) step(engines[j]!);
    t[j]!.push((performance.now() - t0) / steps);
  }
const [a, b] = engines as [Engine, Engine];
const n = Math.min(a.tokens.length, b.tokens.length);
console.log(
  JSON.stringify({
    model: opts.model,
    context,
    steps_per_turn: steps,
    pairs,
    step_ms_a: +median(t[0]!).toFixed(2),
    step_ms_b: +median(t[1]!).toFixed(2),
    speedup_b_over_a: +median(t[0]!.map((v, i) => v / t[1]![i]!)).toFixed(3),
    same_tokens: a.tokens.slice(0, n).every((v, i) => v === b.tokens[i]),
  }),
);
for (const e of engines) e.core.close();
