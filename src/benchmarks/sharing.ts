/**
 * `pagewise bench sharing`: what memory sharing buys on one long prompt.
 * - parallel_n4 / beam4: peak physical KV blocks (shared) against the peak of the blocks the live
 *   sequences' tables name (what they would hold with private copies), and the saving.
 * - prefix_ttft_ms: time to first token of a prompt whose prefix is cached vs not.
 */
import { makeEngineConfig } from '../config/engine-config.js';
import { ENGINE_FLAGS, engineConfigFromFlags } from '../cli/engine-flags.js';
import { intFlag, parseArgs } from '../cli/args.js';
import { EngineCore } from '../engine/core.js';
import { resolveModel } from '../model/loader/resolve.js';
import { makeSamplingParams, type SamplingParamsInput } from '../sampling/params.js';
import { benchHeader } from './header.js';
import { median } from './stats.js';
import { makeWorkload } from './workload.js';
import { createBackend } from '../backend/index.js';

interface Saving {
  blocks_shared: number;
  blocks_unshared: number;
  saving: number;
}

function runPeak(core: EngineCore, prompt: number[], params: SamplingParamsInput, id: string): Saving {
  const V = core.info.model.vocabSize;
  core.addRequest({ requestId: id, promptTokenIds: prompt, params: makeSamplingParams(params, { vocabSize: V }), arrivalTime: Date.now() });
  let shared = 0;
  let unshared = 0;
  while (core.hasWork()) {
    core.step();
    shared = Math.max(shared, core.kv.pool.numUsed);
    const logical = core.scheduler.stats().logicalBlocks;
    unshared = Math.max(unshared, logical);
  }
  return { blocks_shared: shared, blocks_unshared: unshared, saving: unshared === 0 ? 0 : 1 - shared / unshared };
}

function ttftMs(core: EngineCore, prompt: number[], id: string): number {
  const V = core.info.model.vocabSize;
  core.addRequest({ requestId: id, promptTokenIds: prompt, params: makeSamplingParams({ temperature: 0, maxTokens: 1, ignoreEos: true }, { vocabSize: V }), arrivalTime: 0 });
  const t0 = performance.now();
  while (core.hasWork()) core.step();
  return performance.now() - t0;
}


export async function benchSharing(argv: string[]): Promise<void> {
  const flags = parseArgs(argv, {
    values: [...ENGINE_FLAGS.values, 'input-len', 'output-len', 'iters', 'seed'],
    booleans: [...ENGINE_FLAGS.booleans, 'json'],
  });
  const inputLen = intFlag(flags, 'input-len') ?? 1024;
  const outputLen = intFlag(flags, 'output-len') ?? 128;
  const iters = intFlag(flags, 'iters') ?? 3;
  const cfg = makeEngineConfig({ maxNumBatchedTokens: Math.max(2048, inputLen), ...engineConfigFromFlags(flags) });
  const core = new EngineCore(createBackend({ threads: cfg.threads, device: cfg.device }), await resolveModel(cfg.model, cfg.ggufFile === null ? {} : { ggufFile: cfg.ggufFile }), cfg);
  try {
    const V = core.info.model.vocabSize;
    const prompts = makeWorkload({ numPrompts: 2 * iters + 3, dataset: 'fixed', inputLen, outputLen, seed: intFlag(flags, 'seed') ?? 0, vocabSize: V }).map((w) => w.promptTokenIds);
    const parallel = runPeak(core, prompts[0]!, { n: 4, temperature: 1, seed: 1, maxTokens: outputLen, ignoreEos: true }, 'n4');
    const beam = runPeak(core, prompts[1]!, { useBeamSearch: true, temperature: 0, n: 4, bestOf: 4, maxTokens: outputLen, ignoreEos: true }, 'beam4');
    ttftMs(core, prompts[2]!, 'warm-up');
    const uncached: number[] = [];
    const cached: number[] = [];
    for (let i = 0; i < iters; i++) {
      const p = prompts[3 + i]!;
      uncached.push(ttftMs(core, p, `u${i}`));
      cached.push(ttftMs(core, p, `c${i}`));
    }
    const u = median(uncached);
    const c = median(cached);
    const out = {
      bench: 'sharing',
      ...benchHeader(core.info),
      input_len: inputLen,
      output_len: outputLen,
      parallel_n4: parallel,
      beam4: beam,
      prefix_ttft_ms: { cached: c, uncached: u, speedup: u / c },
    };
    process.stdout.write(`${JSON.stringify(out, null, flags.has('json') ? undefined : 2)}\n`);
  } finally {
    core.close();
  }
}
