/**
 * `pagewise bench latency`: one batch of B requests run to completion in-process (no worker, so
 * step times are exact), reporting prefill time and per-step decode time, next to the memory-
 * bandwidth bound of a decode step (bytes of weights read / measured bandwidth).
 */
import { makeEngineConfig } from '../config/engine-config.js';
import { ENGINE_FLAGS, engineConfigFromFlags } from '../cli/engine-flags.js';
import { intFlag, parseArgs } from '../cli/args.js';
import { EngineCore } from '../engine/core.js';
import { resolveModel } from '../model/loader/resolve.js';
import { makeSamplingParams } from '../sampling/params.js';
import { benchHeader } from './header.js';
import { makeWorkload } from './workload.js';
import { bestPeaks, measureMachinePeaks } from './peaks.js';
import { median } from './stats.js';
import { createBackend } from '../backend/index.js';

export async function benchLatency(argv: string[]): Promise<void> {
  const flags = parseArgs(argv, {
    values: [...ENGINE_FLAGS.values, 'batch-size', 'input-len', 'output-len', 'iters', 'seed'],
    booleans: [...ENGINE_FLAGS.booleans, 'json'],
  });
  const B = intFlag(flags, 'batch-size') ?? 1;
  const inputLen = intFlag(flags, 'input-len') ?? 512;
  const outputLen = intFlag(flags, 'output-len') ?? 128;
  const iters = intFlag(flags, 'iters') ?? 3;
  const cfg = makeEngineConfig({ maxNumBatchedTokens: Math.max(2048, B * inputLen), ...engineConfigFromFlags(flags) });
  const dir = await resolveModel(cfg.model, cfg.ggufFile === null ? {} : { ggufFile: cfg.ggufFile });
  const be = createBackend({ threads: cfg.threads, device: cfg.device });
  const core = new EngineCore(be, dir, cfg);
  // The CPU's bandwidth and FLOP peaks bound a CPU run only; a GPU run reports its adapter instead.
  const cpuPeaks = cfg.device === 'cpu';
  try {
    // Every iteration takes fresh blocks; commit their memory now, as a server does while idle, so
    // the steps measure the model, not first touches of fresh memory (on a VM ~8 us per 4 KiB
    // page: ~10% of a 512-token smollm prefill).
    const blocks = (iters + 1) * B * Math.ceil((inputLen + outputLen) / core.info.config.blockSize);
    core.commitKvCache(blocks * (core.info.kvCacheBytes / core.info.numBlocks));
    const peaksBefore = cpuPeaks ? measureMachinePeaks() : null;
    const V = core.info.model.vocabSize;
    const prefillMs: number[] = [];
    const decodeMs: number[] = [];
    for (let it = 0; it <= iters; it++) {
      const work = makeWorkload({ numPrompts: B, dataset: 'fixed', inputLen, outputLen, seed: it, vocabSize: V });
      work.forEach((w, i) =>
        core.addRequest({
          requestId: `lat-${it}-${i}`,
          promptTokenIds: w.promptTokenIds,
          params: makeSamplingParams({ temperature: 0, ignoreEos: true, maxTokens: w.outputLen }, { vocabSize: V }),
          arrivalTime: Date.now(),
        }),
      );
      let prefill = 0;
      const decode: number[] = [];
      let promptTokens = core.stats().promptTokensTotal;
      while (core.hasWork()) {
        const t0 = performance.now();
        const { stats } = core.step();
        const ms = performance.now() - t0;
        // A step that computed prompt tokens is prefill (it also samples each request's first
        // token); the rest are decode steps.
        if (stats.promptTokensTotal > promptTokens) prefill += ms;
        else decode.push(ms);
        promptTokens = stats.promptTokensTotal;
      }
      if (it === 0) continue; // warm-up: page in weights, size buffers
      prefillMs.push(prefill);
      decodeMs.push(median(decode));
    }
    const peaks = peaksBefore ? bestPeaks(peaksBefore, measureMachinePeaks()) : null;
    const stepBytes = core.weightBytesPerStep();
    const boundMs = peaks ? (stepBytes / (peaks.memory_bandwidth_gbs * 1e9)) * 1000 : null;
    const dMs = median(decodeMs);
    const out = {
      bench: 'latency',
      ...benchHeader(core.info),
      batch_size: B,
      input_len: inputLen,
      output_len: outputLen,
      iters,
      prefill_ms: median(prefillMs),
      prefill_tokens_per_s: (B * inputLen) / (median(prefillMs) / 1000),
      decode_step_ms: dMs,
      decode_tokens_per_s: B / (dMs / 1000),
      weight_bytes_per_step: stepBytes,
      // Weights streamed per second by a decode step (the memory-bound measure on any device).
      decode_weight_gbs: stepBytes / (dMs / 1000) / 1e9,
      machine_peaks: peaks,
      decode_bandwidth_bound_ms: boundMs,
      decode_bandwidth_bound_tokens_per_s: boundMs === null ? null : B / (boundMs / 1000),
      decode_fraction_of_bandwidth_bound: boundMs === null ? null : boundMs / dMs,
      // Model FLOPs (2 per parameter per prompt token, the output head included: the usual
      // accounting, and the performance issue's), and the FLOPs the prefill actually executes
      // (the head for the last token only, causal attention added).
      prefill_gflops: (core.flopsPerToken() * B * inputLen) / (median(prefillMs) / 1000) / 1e9,
      prefill_executed_gflops: (core.prefillFlops(inputLen) * B) / (median(prefillMs) / 1000) / 1e9,
    };
    process.stdout.write(`${JSON.stringify(out, null, flags.has('json') ? undefined : 2)}\n`);
  } finally {
    core.close();
  }
}
