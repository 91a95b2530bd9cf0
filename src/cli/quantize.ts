/**
 * `pagewise quantize --model HF_DIR_OR_ID --out FILE.gguf --type q8_0|q4_0|q4_k_m|q5_k_m|q6_k`:
 * write a BF16/F16/F32 safetensors checkpoint as a quantized GGUF file (llama.cpp's format).
 */
import { ggmlTypeName } from '../backend/quant.js';
import { InvalidRequestError } from '../errors.js';
import { resolveModel } from '../model/loader/resolve.js';
import { quantizeModel } from '../model/quantize/hf-to-gguf.js';
import { parseQuantScheme, QUANT_SCHEMES } from '../model/quantize/schemes.js';
import { parseArgs, strFlag } from './args.js';

export const QUANTIZE_USAGE = `pagewise quantize --model HF_DIR_OR_ID --out FILE.gguf --type ${Object.keys(QUANT_SCHEMES).join('|')} [--quiet]`;

export async function quantizeCommand(argv: string[]): Promise<void> {
  const flags = parseArgs(argv, { values: ['model', 'out', 'type'], booleans: ['quiet'] });
  const model = strFlag(flags, 'model');
  const out = strFlag(flags, 'out');
  const typeName = strFlag(flags, 'type');
  if (!model || !out || !typeName) throw new InvalidRequestError(`usage: ${QUANTIZE_USAGE}`);
  const scheme = parseQuantScheme(typeName.toLowerCase());
  if (!scheme) throw new InvalidRequestError(`--type must be one of ${Object.keys(QUANT_SCHEMES).join(', ')}, got "${typeName}"`, { param: 'type' });
  const dir = await resolveModel(model);
  const t0 = Date.now();
  const quiet = flags.has('quiet');
  const result = quantizeModel(dir, out, scheme, {
    onTensor: quiet ? undefined : (name, type, i, n) => process.stderr.write(`[${i + 1}/${n}] ${name} ${ggmlTypeName(type)}\n`),
  });
  process.stderr.write(`pagewise: wrote ${out} (${scheme}, ${result.tensors.length} tensors) in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
}
