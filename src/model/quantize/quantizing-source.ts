/**
 * `--quantization q8_0|q4_0`: a float checkpoint quantized as it loads, for users who keep Hugging
 * Face weights. A WeightSource over another that hands out every weight matrix whose rows are
 * whole blocks quantized (the same quantizers `pagewise quantize` writes files with); vectors and
 * matrices of other widths stay float. The model then runs it exactly as it runs a GGUF file of
 * that type.
 */
import { GGML_TYPES, type GgmlType } from '../../backend/quant.js';
import type { WeightSource, WeightTensor } from '../loader/weight-source.js';
import { LOAD_QUANTIZATIONS, quantizeWeight, type LoadQuantization } from './quantize.js';

export class QuantizingSource implements WeightSource {
  readonly description: string;
  private readonly type: GgmlType;

  constructor(
    private readonly inner: WeightSource,
    quantization: LoadQuantization,
  ) {
    this.type = LOAD_QUANTIZATIONS[quantization];
    this.description = `${inner.description} (quantized to ${quantization} at load)`;
  }

  has(name: string): boolean {
    return this.inner.has(name);
  }

  names(): string[] {
    return this.inner.names();
  }

  shapeOf(name: string): number[] | undefined {
    return this.inner.shapeOf(name);
  }

  get(name: string, shape: number[]): WeightTensor {
    const t = this.inner.get(name, shape);
    const blockSize = GGML_TYPES.get(this.type)!.blockSize;
    if (t.kind !== 'float' || t.shape.length !== 2 || t.shape[1]! % blockSize !== 0) return t;
    return { name, kind: 'quant', type: this.type, shape: t.shape, data: quantizeWeight(t, this.type, name), source: this.description };
  }
}
