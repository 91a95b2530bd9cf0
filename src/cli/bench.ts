/**
 * `pagewise bench <kind>`: benchmark programs that print JSON (never pass/fail on timings).
 */
import { UsageError } from './args.js';

const KINDS: Record<string, { help: string; run: (argv: string[]) => Promise<void> }> = {
  throughput: {
    help: 'offline throughput: --model M --num-prompts N --input-len L --output-len O [--dataset fixed|random|shared-prefix|FILE.jsonl] [--seed S] [--compare-static] [--compare-prefix-caching] [--structured json-schema] [--json]',
    run: async (a) => (await import('../benchmarks/throughput.js')).benchThroughput(a),
  },
  latency: {
    help: 'one batch: --model M --batch-size B --input-len L --output-len O [--iters N] [--json]',
    run: async (a) => (await import('../benchmarks/latency.js')).benchLatency(a),
  },
  sharing: {
    help: 'memory sharing on one long prompt: --model M [--input-len 1024] [--output-len 128] [--json]',
    run: async (a) => (await import('../benchmarks/sharing.js')).benchSharing(a),
  },
  kernels: {
    help: 'linear op GFLOP/s and GB/s at M = 1..1024 for the smollm-135m / llama-1b shapes, next to the measured machine peaks: [--models smollm-135m,llama-1b] [--m 1,16,64,256,1024] [--threads N] [--min-ms 300] [--json]',
    run: async (a) => (await import('../benchmarks/kernels.js')).benchKernels(a),
  },
  sampler: {
    help: 'sampler cost per row on random logits: [--vocab-size 49152] [--batch 8] [--iters 50] [--json]',
    run: async (a) => (await import('../benchmarks/sampler.js')).benchSamplerCommand(a),
  },
  serve: {
    help: 'load generator against any OpenAI-compatible server: --base-url URL --model NAME [--num-prompts N] [--request-rate R|inf] [--max-concurrency C] [--input-len L --output-len O | --dataset FILE] [--json]',
    run: async (a) => (await import('../benchmarks/serve.js')).benchServe(a),
  },
};

export async function benchCommand(argv: string[]): Promise<void> {
  const [kind, ...rest] = argv;
  const k = kind === undefined ? undefined : KINDS[kind];
  if (!k) {
    const list = Object.entries(KINDS)
      .map(([n, v]) => `  pagewise bench ${n} ${v.help}`)
      .join('\n');
    if (kind === undefined || kind === '--help') {
      process.stdout.write(`${list}\n`);
      return;
    }
    throw new UsageError(`unknown bench "${kind}"; one of:\n${list}`);
  }
  await k.run(rest);
}
