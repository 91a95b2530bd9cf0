/**
 * `pagewise` command line: generate | serve | bench | fixture | quantize.
 */
import { ENGINE_FLAGS_HELP } from './engine-flags.js';
import { UsageError } from './args.js';

const USAGE = `pagewise — LLM inference and serving engine for Node.js

Usage:
  pagewise serve    [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--served-model-name NAME] [engine options]
  pagewise generate (--prompt TEXT | --prompt-ids 1,2,3 | --prompts-file F.jsonl) [--max-tokens N]
                    [--temperature T] [--top-p P] [--top-k K] [--seed S] [--ignore-eos] [--json]
                    [--logprobs N] [--prompt-logprobs N] (with --json) [engine options]
  pagewise bench    throughput|latency|serve|kernels|sampler|sharing [options]   (pagewise bench --help)
  pagewise fixture  --preset NAME --out DIR [--seed S] [--dtype bfloat16|float32|float16] [--format gguf --type T]
  pagewise quantize --model HF_DIR_OR_ID --out FILE.gguf --type q8_0|q4_0|q4_k_m|q5_k_m|q6_k

The default model, "demo", is built on first use with RANDOM weights: it shows the machinery
working, its text is nonsense. Point --model at a Hugging Face model directory for real output.

${ENGINE_FLAGS_HELP}
`;

export async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'generate':
        await (await import('./generate.js')).generateCommand(rest);
        break;
      case 'serve':
        await (await import('./serve.js')).serveCommand(rest);
        break;
      case 'bench':
        await (await import('./bench.js')).benchCommand(rest);
        break;
      case 'fixture':
        await (await import('./fixture.js')).fixtureCommand(rest);
        break;
      case 'quantize':
        await (await import('./quantize.js')).quantizeCommand(rest);
        break;
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        break;
      default:
        throw new UsageError(`unknown command "${cmd}"\n\n${USAGE}`);
    }
  } catch (err) {
    process.stderr.write(`pagewise: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}
