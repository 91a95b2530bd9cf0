/**
 * A WeightSource over a GgufFile: tensors by Hugging Face name, shapes in HF order ([out, in]),
 * llama q/k rows put back in HF order, Gemma norm weights back to HF's w (llama.cpp stores 1 + w).
 * Float tensors are views into the mapping; quantized ones stay quantized (raw blocks).
 */
import { DType, type WeightArray } from '../../../backend/backend.js';
import { GGML_TYPES, GgmlType, SUPPORTED_QUANT_TYPES, ggmlTypeName } from '../../../backend/quant.js';
import { ModelLoadError } from '../../../errors.js';
import { toFloat32 } from '../dtype.js';
import { checkTensorShape, type WeightSource, type WeightTensor } from '../weight-source.js';
import type { GgufFile, GgufTensorEntry } from './file.js';
import { ggufToHfName, qkPermutation, unpermuteQkRows } from './names.js';

/** Architectures whose files store RMSNorm weights as 1 + w (llama.cpp's Gemma converters). */
const NORM_PLUS_ONE_ARCHS: ReadonlySet<string> = new Set(['gemma2', 'gemma3']);

const FLOAT_TYPES: ReadonlyMap<number, DType> = new Map([
  [GgmlType.F32, DType.F32],
  [GgmlType.F16, DType.F16],
  [GgmlType.BF16, DType.BF16],
]);

export class GgufWeightSource implements WeightSource {
  readonly description: string;
  private readonly byHf = new Map<string, GgufTensorEntry>();

  /** `heads`: attention head counts, for un-permuting q (numHeads) and k (numKvHeads) rows. */
  constructor(
    private readonly file: GgufFile,
    private readonly arch: string,
    private readonly heads: { numHeads: number; numKvHeads: number },
  ) {
    this.description = file.description;
    for (const name of file.tensorNames()) {
      const hf = ggufToHfName(name, arch);
      // Tensors the engine has no use for (e.g. rope_freqs) are not offered.
      if (hf === undefined) continue;
      const t = file.tensor(name)!;
      if (!FLOAT_TYPES.has(t.type) && !SUPPORTED_QUANT_TYPES.includes(t.type)) {
        throw new ModelLoadError(`${this.description}: tensor "${name}" has type ${ggmlTypeName(t.type)}, which Pagewise cannot run`, {
          code: 'unsupported_tensor_type',
        });
      }
      this.byHf.set(hf, t);
    }
  }

  has(name: string): boolean {
    return this.byHf.has(name);
  }
  names(): string[] {
    return [...this.byHf.keys()];
  }
  shapeOf(name: string): number[] | undefined {
    const t = this.byHf.get(name);
    return t === undefined ? undefined : [...t.ne].reverse();
  }

  get(name: string, shape: number[]): WeightTensor {
    const t = this.byHf.get(name);
    checkTensorShape(this.description, name, this.shapeOf(name), shape);
    let bytes = t!.bytes;
    const perm = qkPermutation(t!.name, this.arch);
    if (perm !== null) {
      const nHeads = perm === 'q' ? this.heads.numHeads : this.heads.numKvHeads;
      const info = GGML_TYPES.get(t!.type)!;
      if (t!.ne.length === 1 && info.blockSize !== 1) {
        throw new ModelLoadError(`${this.description}: tensor "${t!.name}" is a quantized vector (${info.name}); q/k biases must be float`, {
          code: 'unsupported_tensor_type',
        });
      }
      // A matrix permutes whole rows (ne[0] values each); a bias permutes single values.
      const rowBytes = t!.ne.length === 1 ? info.blockBytes : (t!.ne[0]! / info.blockSize) * info.blockBytes;
      const rows = bytes.length / rowBytes;
      if (rows % nHeads !== 0 || (rows / nHeads) % 2 !== 0) {
        throw new ModelLoadError(`${this.description}: tensor "${t!.name}" has ${rows} rows, not ${nHeads} heads of an even size`, {
          code: 'tensor_shape_mismatch',
        });
      }
      bytes = unpermuteQkRows(bytes, rowBytes, nHeads);
    }
    const dtype = FLOAT_TYPES.get(t!.type);
    if (dtype === undefined) return { name, kind: 'quant', type: t!.type, shape: [...shape], data: bytes, source: t!.file };
    if (NORM_PLUS_ONE_ARCHS.has(this.arch) && name.endsWith('norm.weight')) {
      // 1 + w back to w, in float32 (exact for the weights' range: Sterbenz).
      const w = toFloat32({ dtype, data: floatView(bytes, dtype) });
      for (let i = 0; i < w.length; i++) w[i] = w[i]! - 1;
      return { name, kind: 'float', dtype: DType.F32, shape: [...shape], data: w, source: t!.file };
    }
    return { name, kind: 'float', dtype, shape: [...shape], data: floatView(bytes, dtype), source: t!.file };
  }
}

/** A typed view over the bytes; copied only when the offset is not aligned to the element size. */
function floatView(bytes: Uint8Array, dtype: DType): WeightArray {
  const width = dtype === DType.F32 ? 4 : 2;
  const src = bytes.byteOffset % width === 0 ? bytes : bytes.slice();
  return dtype === DType.F32
    ? new Float32Array(src.buffer, src.byteOffset, src.length / 4)
    : new Uint16Array(src.buffer, src.byteOffset, src.length / 2);
}
