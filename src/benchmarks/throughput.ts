/**
 * `pagewise bench throughput`: offline throughput, all requests submitted at once (vLLM's
 * benchmark_throughput), with KV-waste sampling every step and an optional static-batching run on
 * the same workload; `--structured json-schema` also runs it with every request constrained to a
 * JSON schema (structured.ts).
 */
import { AsyncEngine } from '../engine/async-engine.js';
import { type EngineConfig } from '../config/engine-config.js';
import { ENGINE_FLAGS, engineConfigFromFlags } from '../cli/engine-flags.js';
import { intFlag, parseArgs, strFlag } from '../cli/args.js';
import { makeSamplingParams } from '../sampling/params.js';
import type { EngineStats } from '../engine/protocol.js';
import { isRandomDataset, makeWorkload, randomTokenRange, type WorkItem } from './workload.js';
import { benchHeader } from './header.js';
import { mean } from './stats.js';
import { openModelPackage } from '../model/loader/package.js';
import { resolveModel } from '../model/loader/resolve.js';
import { blocksForSequence, kvLayout } from '../kv/kv-layout.js';
import type { GrammarSpec } from '../structured/spec.js';
import { UsageError } from '../cli/args.js';
import { benchSpec, compileTimes, STRUCTURED_MODES, structuredTtft, type StructuredMode } from './structured.js';

export interface ThroughputResult {
  num_prompts: number;
  elapsed_s: number;
  requests_per_s: number;
  input_tokens_per_s: number;
  output_tokens_per_s: number;
  total_tokens_per_s: number;
  input_tokens: number;
  output_tokens: number;
  kv_waste_mean: number;
  kv_waste_peak: number;
  kv_waste_contiguous_mean: number;
  kv_usage_peak: number;
  num_preemptions: number;
  /** Prompt tokens found in the prefix cache / prompt tokens looked up. */
  prefix_cache_hit_rate: number;
  steps: number;
  /** With a grammar: generated tokens before each output's first EOS (the grammar's active part). */
  tokens_before_eos: number;
}

function hitRate(s: EngineStats | null): number {
  return s && s.prefixCacheQueries > 0 ? s.prefixCacheHits / s.prefixCacheQueries : 0;
}

/**
 * Run one workload on a fresh engine and measure it. With `structured`, every request is
 * constrained to that grammar, compiled (once, cached) before the timed run; `before(engine)`
 * runs first, untimed.
 */
export async function runThroughput(
  cfg: Partial<EngineConfig>,
  work: WorkItem[],
  seed: number,
  structured: GrammarSpec | null = null,
  before?: (engine: AsyncEngine) => Promise<void>,
): Promise<ThroughputResult & { engine: AsyncEngine['info'] }> {
  const engine = await AsyncEngine.start({ ...cfg, log: () => {} });
  try {
    await before?.(engine);
    const V0 = engine.info.model.vocabSize;
    // Compile before timing: the throughput measured is the steady state's.
    if (structured) await engine.generate({ promptTokenIds: work[0]!.promptTokenIds, params: makeSamplingParams({ maxTokens: 1, structuredOutputs: structured }, { vocabSize: V0 }) }).final();
    const waste: number[] = [];
    const contiguous: number[] = [];
    let usagePeak = 0;
    let last: EngineStats | null = null;
    let steps = 0;
    engine.on('stats', (s) => {
      if (s.scheduledTokens === 0) return;
      steps++;
      waste.push(s.kvWaste);
      contiguous.push(s.kvWasteContiguous);
      usagePeak = Math.max(usagePeak, s.kvUsage);
      last = s;
    });
    const V = engine.info.model.vocabSize;
    const t0 = performance.now();
    const streams = work.map((w, i) =>
      engine.generate({
        promptTokenIds: w.promptTokenIds,
        // vLLM's throughput benchmark: temperature 1, top_p 1, ignore_eos, exact output lengths.
        // With a grammar too: after the output completes, EOS is all it allows, so lengths stay exact.
        params: makeSamplingParams({ temperature: 1, topP: 1, ignoreEos: true, maxTokens: w.outputLen, seed: seed + i, structuredOutputs: structured }, { vocabSize: V }),
      }),
    );
    const outs = await Promise.all(streams.map((s) => s.final()));
    const elapsed = (performance.now() - t0) / 1000;
    const input = work.reduce((a, w) => a + w.promptTokenIds.length, 0);
    const output = outs.reduce((a, o) => a + o.outputs.reduce((b, c) => b + c.tokenIds.length, 0), 0);
    const eos = new Set(engine.info.eosTokenIds);
    const beforeEos = outs.reduce((a, o) => a + o.outputs.reduce((b, c) => b + (c.tokenIds.findIndex((t) => eos.has(t)) + 1 || c.tokenIds.length), 0), 0);
    return {
      engine: engine.info,
      num_prompts: work.length,
      elapsed_s: elapsed,
      requests_per_s: work.length / elapsed,
      input_tokens_per_s: input / elapsed,
      output_tokens_per_s: output / elapsed,
      total_tokens_per_s: (input + output) / elapsed,
      input_tokens: input,
      output_tokens: output,
      kv_waste_mean: mean(waste) ?? 0,
      kv_waste_peak: waste.length === 0 ? 0 : Math.max(...waste),
      kv_waste_contiguous_mean: mean(contiguous) ?? 0,
      kv_usage_peak: usagePeak,
      num_preemptions: (last as EngineStats | null)?.numPreemptionsTotal ?? 0,
      prefix_cache_hit_rate: hitRate(last),
      steps,
      tokens_before_eos: beforeEos,
    };
  } finally {
    await engine.shutdown();
  }
}

/**
 * What one sequence of `tokens` tokens costs in the engine's KV pool (every layer's window or whole
 * context), and how many such sequences the pool holds at once.
 */
export function kvCapacity(info: AsyncEngine['info'], tokens: number): { kv_bytes_per_sequence: number; max_concurrent_sequences: number } {
  const layout = kvLayout(info.model, info.config.slidingWindowKv);
  const blocks = blocksForSequence(layout, tokens, info.blockSize, info.config.maxNumBatchedTokens);
  return { kv_bytes_per_sequence: blocks * (info.kvCacheBytes / info.numBlocks), max_concurrent_sequences: Math.floor(info.numBlocks / blocks) };
}

export async function benchThroughput(argv: string[]): Promise<void> {
  const flags = parseArgs(argv, {
    values: [...ENGINE_FLAGS.values, 'num-prompts', 'input-len', 'output-len', 'dataset', 'seed', 'structured'],
    booleans: [...ENGINE_FLAGS.booleans, 'json', 'compare-static', 'compare-prefix-caching', 'compare-sliding-window-kv'],
  });
  const cfg = engineConfigFromFlags(flags);
  const seed = intFlag(flags, 'seed') ?? 0;
  const numPrompts = intFlag(flags, 'num-prompts') ?? 256;
  const dataset = strFlag(flags, 'dataset') ?? 'fixed';
  // Random prompt ids stay inside the model's vocabulary, whatever its format (a GGUF file too).
  const vocabSize = openModelPackage(await resolveModel(cfg.model ?? 'demo', { ggufFile: cfg.ggufFile, revision: cfg.revision })).config.vocabSize;
  const tokenIdRange = isRandomDataset(dataset) ? randomTokenRange(vocabSize) : null;
  if (tokenIdRange) process.stderr.write(`bench throughput: random prompt token ids from [${tokenIdRange.join(', ')}) (the model's vocabulary: ${vocabSize} ids)\n`);
  const work = makeWorkload({
    numPrompts,
    dataset,
    inputLen: intFlag(flags, 'input-len') ?? 128,
    outputLen: intFlag(flags, 'output-len') ?? 128,
    seed,
    vocabSize,
  });
  const structured = strFlag(flags, 'structured');
  if (structured !== undefined && !(STRUCTURED_MODES as readonly string[]).includes(structured)) {
    throw new UsageError(`--structured must be one of ${STRUCTURED_MODES.join(', ')}, got "${structured}"`);
  }
  const { engine, ...res } = await runThroughput(cfg, work, seed);
  const longest = Math.max(...work.map((w) => w.promptTokenIds.length + w.outputLen));
  const out: Record<string, unknown> = { bench: 'throughput', ...benchHeader(engine), dataset, seed, token_id_range: tokenIdRange, ...res, ...kvCapacity(engine, longest) };
  if (flags.has('compare-sliding-window-kv')) {
    // The same workload with every layer keeping its whole context (the window rule off).
    const full = await runThroughput({ ...cfg, slidingWindowKv: false }, work, seed);
    const cap = kvCapacity(full.engine, longest);
    out['no_sliding_window_kv_bytes_per_sequence'] = cap.kv_bytes_per_sequence;
    out['no_sliding_window_kv_max_concurrent_sequences'] = cap.max_concurrent_sequences;
    out['no_sliding_window_kv_total_tokens_per_s'] = full.total_tokens_per_s;
    out['no_sliding_window_kv_num_preemptions'] = full.num_preemptions;
  }
  if (structured !== undefined) {
    const mode = structured as StructuredMode;
    const spec = benchSpec(mode);
    let extra: Record<string, number> = {};
    const st = await runThroughput(cfg, work, seed, spec, async (e) => {
      extra = { ...(await compileTimes(e, spec)), ...(await structuredTtft(e, work[0]!.promptTokenIds, mode, seed)) };
    });
    out['structured'] = {
      mode,
      output_tokens_per_s: st.output_tokens_per_s,
      elapsed_s: st.elapsed_s,
      output_tokens: st.output_tokens,
      tokens_before_eos: st.tokens_before_eos,
      output_tokens_per_s_ratio: st.output_tokens_per_s / res.output_tokens_per_s,
      ...extra,
    };
  }
  if (flags.has('compare-static')) {
    const st = await runThroughput({ ...cfg, scheduler: 'static' }, work, seed);
    out['static_output_tokens_per_s'] = st.output_tokens_per_s;
    out['static_total_tokens_per_s'] = st.total_tokens_per_s;
    out['static_elapsed_s'] = st.elapsed_s;
    out['continuous_over_static'] = res.output_tokens_per_s / st.output_tokens_per_s;
  }
  if (flags.has('compare-prefix-caching')) {
    // The same workload with prefix caching off (on is the default run above, unless disabled).
    const off = await runThroughput({ ...cfg, enablePrefixCaching: false }, work, seed);
    out['no_prefix_caching_total_tokens_per_s'] = off.total_tokens_per_s;
    out['no_prefix_caching_elapsed_s'] = off.elapsed_s;
    out['prefix_caching_speedup'] = res.total_tokens_per_s / off.total_tokens_per_s;
    out['prefix_cache_hit_rate'] = res.prefix_cache_hit_rate;
  }
  if (flags.has('json')) process.stdout.write(`${JSON.stringify(out)}\n`);
  else process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}
