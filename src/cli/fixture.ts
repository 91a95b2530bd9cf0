/**
 * `pagewise fixture --preset NAME --out DIR`: write a complete HF-format model dir with seeded
 * random weights (for tests and benchmarks; its text output is nonsense). With `--format gguf
 * --type T` the output is one quantized GGUF file instead.
 */
import { PRESETS, writeFixture } from '../model/fixture/index.js';
import { writeGgufFixture } from '../model/fixture/write-gguf-fixture.js';
import { parseQuantScheme, QUANT_SCHEMES } from '../model/quantize/schemes.js';
import { intFlag, parseArgs, strFlag, UsageError } from './args.js';

export async function fixtureCommand(argv: string[]): Promise<void> {
  const flags = parseArgs(argv, { values: ['preset', 'out', 'seed', 'dtype', 'format', 'type'], booleans: [] });
  const preset = strFlag(flags, 'preset');
  const out = strFlag(flags, 'out');
  if (!preset || !out) throw new UsageError(`usage: pagewise fixture --preset ${Object.keys(PRESETS).join('|')} --out DIR|FILE.gguf [--format safetensors|gguf --type T]`);
  const dtype = strFlag(flags, 'dtype');
  if (dtype !== undefined && !['bfloat16', 'float32', 'float16'].includes(dtype)) {
    throw new UsageError(`--dtype must be bfloat16, float32 or float16, got ${dtype}`);
  }
  const format = strFlag(flags, 'format') ?? 'safetensors';
  if (format !== 'safetensors' && format !== 'gguf') throw new UsageError(`--format must be safetensors or gguf, got ${format}`);
  const typeName = strFlag(flags, 'type');
  if (format === 'safetensors' && typeName !== undefined) throw new UsageError('--type applies to --format gguf');
  const opts = { seed: intFlag(flags, 'seed'), dtype: dtype as 'bfloat16' | 'float32' | 'float16' | undefined };
  const t0 = Date.now();
  if (format === 'gguf') {
    const scheme = typeName === undefined ? undefined : parseQuantScheme(typeName.toLowerCase());
    if (!scheme) throw new UsageError(`--format gguf needs --type ${Object.keys(QUANT_SCHEMES).join('|')}${typeName ? `, got "${typeName}"` : ''}`);
    await writeGgufFixture(preset, out, scheme, opts);
  } else {
    await writeFixture(preset, out, opts);
  }
  process.stderr.write(`pagewise: wrote ${preset} (random weights, ${format}) to ${out} in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
}
