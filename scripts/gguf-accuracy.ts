/**
 * The GGUF fixtures' accuracy measure (test/helpers/reference-distance.ts) for one fixture with any
 * engine options, next to llama.cpp's: what test/gguf-accuracy.test.ts asserts for the defaults,
 * printed for experiments (another compute precision, KV dtype or device).
 *
 *   node --import tsx scripts/gguf-accuracy.ts FIXTURE_DIR [--dtype auto|float32|bfloat16]
 *       [--kv-cache-dtype auto|float32|bfloat16] [--device cpu|webgpu] [--threads 2]
 *
 * FIXTURE_DIR: a directory of ../shared/fixtures/gguf (a .gguf file, golden.json, peer_llamacpp.json).
 * Prints one JSON line: rows, top-1 agreement, mean |Δ logprob|, and whether each case's greedy
 * tokens equal the reference's, with llama.cpp's numbers.
 */
import { parseArgs } from 'node:util';
import { LLM } from '../src/engine/llm.js';
import { distance, llamaCppGreedyMatches, readGgufFixture, runCase } from '../test/helpers/reference-distance.js';

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    dtype: { type: 'string', default: 'auto' },
    'kv-cache-dtype': { type: 'string', default: 'auto' },
    device: { type: 'string', default: 'cpu' },
    threads: { type: 'string', default: '2' },
  },
});
const dir = positionals[0];
if (!dir) {
  console.error('usage: gguf-accuracy.ts FIXTURE_DIR [--dtype D] [--kv-cache-dtype D] [--device cpu|webgpu] [--threads N]');
  process.exit(2);
}
const f = readGgufFixture(dir);
const llm = new LLM({
  model: f.gguf,
  dtype: opts.dtype as 'auto',
  kvCacheDtype: opts['kv-cache-dtype'] as 'auto',
  device: opts.device as 'cpu',
  threads: Number(opts.threads),
  kvCacheMemory: 64 * 1024 ** 2,
  log: () => {},
});
try {
  const outs = await Promise.all(f.golden.cases.map((c) => runCase(llm, c)));
  const d = distance(f.golden, outs);
  const ref = f.peer.vs_reference.prompt_rows;
  const greedy = f.golden.cases.map((c, k) => ({
    case: c.name,
    equal: outs[k]!.outputs[0]!.tokenIds.every((t, j) => t === c.greedy.token_ids[j]),
    llamacpp_equal: llamaCppGreedyMatches(f, c.name),
  }));
  console.log(
    JSON.stringify({
      file: f.gguf,
      dtype: opts.dtype,
      kv_cache_dtype: opts['kv-cache-dtype'],
      device: opts.device,
      rows: d.rows,
      top1_agree: d.agree,
      mean_abs_logprob_diff: d.mean,
      greedy,
      llamacpp: { top1_agree: ref.top1_agree, mean_abs_logprob_diff: ref.ref_top1_logprob_abs_diff.mean },
    }),
  );
} finally {
  await llm.close();
}
