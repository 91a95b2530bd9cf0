/**
 * `pagewise fixture --preset NAME --out DIR`: write a complete HF-format model dir with seeded
 * random weights (for tests and benchmarks; its text output is nonsense).
 */
import { PRESETS, writeFixture } from '../model/fixture/index.js';
import { intFlag, parseArgs, strFlag, UsageError } from './args.js';

export async function fixtureCommand(argv: string[]): Promise<void> {
  const flags = parseArgs(argv, { values: ['preset', 'out', 'seed', 'dtype'], booleans: [] });
  const preset = strFlag(flags, 'preset');
  const out = strFlag(flags, 'out');
  if (!preset || !out) throw new UsageError(`usage: pagewise fixture --preset ${Object.keys(PRESETS).join('|')} --out DIR`);
  const dtype = strFlag(flags, 'dtype');
  if (dtype !== undefined && !['bfloat16', 'float32', 'float16'].includes(dtype)) {
    throw new UsageError(`--dtype must be bfloat16, float32 or float16, got ${dtype}`);
  }
  const t0 = Date.now();
  await writeFixture(preset, out, { seed: intFlag(flags, 'seed'), dtype: dtype as 'bfloat16' | 'float32' | 'float16' | undefined });
  process.stderr.write(`pagewise: wrote ${preset} (random weights) to ${out} in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
}
