/**
 * The model's view of a checkpoint: tensors asked for by Hugging Face name and logical layout,
 * whatever file format holds them. The safetensors reader (weights.ts) and the GGUF reader
 * (gguf/) are two implementations; the model code (src/model/layers) reads only this interface.
 */
import type { DType, WeightArray } from '../../backend/backend.js';
import type { GgmlType } from '../../backend/quant.js';
import { ModelLoadError } from '../../errors.js';

/** One tensor, in Hugging Face layout (shape [out, in] for matrices; rows in HF order). */
export type WeightTensor =
  | { name: string; kind: 'float'; dtype: DType; shape: number[]; data: WeightArray; source: string }
  | { name: string; kind: 'quant'; type: GgmlType; shape: number[]; data: Uint8Array; source: string };

export type FloatWeightTensor = Extract<WeightTensor, { kind: 'float' }>;
export type QuantWeightTensor = Extract<WeightTensor, { kind: 'quant' }>;

export interface WeightSource {
  /** What the weights were opened from (file or dir), for messages. */
  readonly description: string;
  has(name: string): boolean;
  names(): string[];
  shapeOf(name: string): number[] | undefined;
  /** The tensor, checked against the expected HF shape; throws ModelLoadError naming tensor and source. */
  get(name: string, shape: number[]): WeightTensor;
}

export function formatShape(s: readonly number[]): string {
  return `[${s.join(', ')}]`;
}

/**
 * The checks every source's get() makes before reading, with the same messages and error codes
 * whatever the format: `actual` is the stored shape (undefined when the tensor is absent) and
 * `where` names the file or directory to blame.
 */
export function checkTensorShape(where: string, name: string, actual: readonly number[] | undefined, expected: readonly number[]): void {
  if (actual === undefined) {
    throw new ModelLoadError(`${where}: missing tensor "${name}" (expected shape ${formatShape(expected)})`, { code: 'tensor_missing' });
  }
  if (actual.length !== expected.length || actual.some((v, i) => v !== expected[i])) {
    throw new ModelLoadError(`${where}: tensor "${name}" has shape ${formatShape(actual)}, expected ${formatShape(expected)}`, {
      code: 'tensor_shape_mismatch',
    });
  }
}

/**
 * `src` reporting how many of its tensors have been read, for a load progress bar: each name
 * counts once, out of every tensor the source holds (a model may read fewer; the end of the load
 * closes the bar).
 */
export function withReadProgress(src: WeightSource, onProgress: (read: number, total: number) => void): WeightSource {
  const seen = new Set<string>();
  const total = src.names().length;
  return {
    description: src.description,
    has: (name) => src.has(name),
    names: () => src.names(),
    shapeOf: (name) => src.shapeOf(name),
    get(name, shape) {
      const t = src.get(name, shape);
      if (!seen.has(name)) {
        seen.add(name);
        onProgress(seen.size, total);
      }
      return t;
    },
  };
}
