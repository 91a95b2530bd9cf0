/**
 * Linear layers: weights read from the weight source, converted to what the compute precision
 * wants, and packed once at load for the linear microkernels (ComputeBackend.packLinear). Every
 * pack the model builds goes through {@link Linears}, which also keeps the byte and FLOP accounting
 * and frees the packs with the model.
 */
import { DType, MatmulPrecision, type ComputeBackend, type LinearPart, type PackedLinearHandle, type WeightArray } from '../../backend/backend.js';
import { GGML_TYPES, ggmlRowBytes, ggmlTypeName, SUPPORTED_QUANT_TYPES, type GgmlType } from '../../backend/quant.js';
import { ModelLoadError } from '../../errors.js';
import { f32ToBf16, toFloat32 } from '../loader/dtype.js';
import type { FloatWeightTensor, WeightTensor } from '../loader/weight-source.js';

/**
 * The tensor as float data, or a clear error: norms, biases and other vectors are always float (a
 * GGUF file stores them F32); only matrices may be quantized (see {@link Linears.weight}).
 */
export function floatWeight(t: WeightTensor): FloatWeightTensor {
  if (t.kind === 'float') return t;
  throw new ModelLoadError(`${t.source}: tensor "${t.name}" is quantized (${ggmlTypeName(t.type)}), which is supported for weight matrices only`, {
    code: 'unsupported_weight_type',
  });
}

/** A quantized tensor of a type the backend has no kernels for (e.g. on --device webgpu) gets a clear load error. */
export function checkQuantOnDevice(be: ComputeBackend, t: Extract<WeightTensor, { kind: 'quant' }>): void {
  if (be.quantTypes.includes(t.type)) return;
  throw new ModelLoadError(
    `${t.source}: tensor "${t.name}" is ${ggmlTypeName(t.type)}, which --device ${be.describe().device} has no kernels for (it runs ${be.quantTypes.map(ggmlTypeName).join(', ')}); use --device cpu`,
    { code: 'unsupported_weight_type' },
  );
}

/**
 * A weight matrix ready for packing (Hugging Face layout, out_features × in_features): float data
 * in the dtype the precision multiplies, or quantized rows kept as stored (GGML blocks).
 */
export type LinearWeight =
  | { kind: 'float'; data: WeightArray; dtype: DType; n: number; k: number; bias: Float32Array | null }
  | { kind: 'quant'; data: Uint8Array; type: GgmlType; n: number; k: number; bias: Float32Array | null };

/** BF16 copy of an F32/F16 tensor (BF16 tensors are used as they are, e.g. straight from the mmap). */
function toBf16(t: FloatWeightTensor): Uint16Array {
  if (t.dtype === DType.BF16) return t.data as Uint16Array;
  const f = toFloat32(t);
  const out = new Uint16Array(f.length);
  for (let i = 0; i < f.length; i++) out[i] = f32ToBf16(f[i]!);
  return out;
}

/** Shape of one linear layer (for byte and FLOP accounting). */
interface LinearShape {
  n: number;
  k: number;
  /** Bytes of one row of k weights as the kernels stream them. */
  rowBytes: number;
}

export class Linears {
  private readonly shapes: LinearShape[] = [];
  private readonly packs: PackedLinearHandle[] = [];

  constructor(
    private readonly be: ComputeBackend,
    readonly precision: MatmulPrecision,
  ) {}

  /**
   * An [n, k] weight (and optional [n] bias): a float tensor in the dtype the precision multiplies,
   * a quantized one as it is (the integer kernels read GGML blocks; no dequantized copy).
   */
  weight(w: WeightTensor, bias: WeightTensor | null): LinearWeight {
    const [n, k] = w.shape as [number, number];
    const b = bias ? toFloat32(floatWeight(bias)) : null;
    if (w.kind === 'quant') {
      const info = GGML_TYPES.get(w.type);
      if (!SUPPORTED_QUANT_TYPES.includes(w.type) || !info || k % info.blockSize !== 0) {
        const why = !SUPPORTED_QUANT_TYPES.includes(w.type) || !info ? 'a type Pagewise has no kernels for' : `rows of ${k} values are not whole ${info.name} blocks of ${info.blockSize}`;
        throw new ModelLoadError(`${w.source}: tensor "${w.name}" is ${ggmlTypeName(w.type)}: ${why}`, { code: 'unsupported_weight_type' });
      }
      checkQuantOnDevice(this.be, w);
      return { kind: 'quant', data: w.data, type: w.type, n, k, bias: b };
    }
    if (this.precision === MatmulPrecision.BF16) return { kind: 'float', data: toBf16(w), dtype: DType.BF16, n, k, bias: b };
    return { kind: 'float', data: w.data, dtype: w.dtype, n, k, bias: b };
  }

  /** Several matrices with the same input (e.g. q, k, v) packed together: one pass fills all outputs. */
  pack(ws: LinearWeight[]): PackedLinearHandle {
    ws.forEach((w) => this.account(w));
    const K = ws[0]!.k;
    const quant = quantParts(ws);
    if (quant) return this.keep(this.be.packLinearQuant(quant.map((w) => ({ w: w.data, type: w.type, n: w.n, bias: w.bias })), K));
    const float = ws as Extract<LinearWeight, { kind: 'float' }>[];
    const parts: LinearPart[] = float.map((w) => ({ w: w.data, n: w.n, bias: w.bias }));
    return this.keep(this.be.packLinear(parts, float[0]!.dtype, K, this.precision));
  }

  /** A gate/up pair whose packed output is already silu(gate) * up. */
  packGateUp(gate: LinearWeight, up: LinearWeight): PackedLinearHandle {
    this.account(gate);
    this.account(up);
    const quant = quantParts([gate, up]);
    if (quant) return this.keep(this.be.packGateUpQuant(quant[0]!.data, quant[0]!.type, quant[1]!.data, quant[1]!.type, gate.n, gate.k));
    const [g, u] = [gate, up] as Extract<LinearWeight, { kind: 'float' }>[];
    return this.keep(this.be.packGateUp(g!.data, u!.data, g!.dtype, gate.n, gate.k, this.precision));
  }

  /** Bytes of weights one pass over every pack reads. */
  weightBytes(): number {
    return this.shapes.reduce((a, w) => a + w.n * w.rowBytes, 0);
  }

  /** Matmul FLOPs of one row through every pack (2 per weight). */
  flopsPerRow(): number {
    return this.shapes.reduce((a, w) => a + 2 * w.n * w.k, 0);
  }

  /** Free every pack's native memory now. */
  dispose(): void {
    for (const p of this.packs) this.be.packedLinearFree(p);
  }

  private account(w: LinearWeight): void {
    const rowBytes = w.kind === 'quant' ? ggmlRowBytes(w.type, w.k) : w.k * (w.dtype === DType.F32 ? 4 : 2);
    this.shapes.push({ n: w.n, k: w.k, rowBytes });
  }

  private keep(h: PackedLinearHandle): PackedLinearHandle {
    this.packs.push(h);
    return h;
  }
}

/**
 * The parts of a pack when they are all quantized, null when all are float. One pack multiplies
 * one way; a pack mixing float and quantized matrices (no common file does that) is refused.
 */
function quantParts(ws: LinearWeight[]): Extract<LinearWeight, { kind: 'quant' }>[] | null {
  const q = ws.filter((w): w is Extract<LinearWeight, { kind: 'quant' }> => w.kind === 'quant');
  if (q.length === 0) return null;
  if (q.length !== ws.length) {
    throw new ModelLoadError('a layer mixes float and quantized weight matrices that share an input (e.g. q/k/v); quantize them alike', {
      code: 'unsupported_weight_type',
    });
  }
  return q;
}
