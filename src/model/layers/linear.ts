/**
 * Linear layers: weights read from the weight source, converted to what the compute precision
 * wants, and packed once at load for the linear microkernels (ComputeBackend.packLinear). Every
 * pack the model builds goes through {@link Linears}, which also keeps the byte and FLOP accounting
 * and frees the packs with the model.
 */
import { DType, MatmulPrecision, type ComputeBackend, type LinearPart, type PackedLinearHandle, type WeightArray } from '../../backend/backend.js';
import { GGML_TYPES } from '../../backend/quant.js';
import { ModelLoadError } from '../../errors.js';
import { f32ToBf16, toFloat32 } from '../loader/dtype.js';
import type { FloatWeightTensor, WeightTensor } from '../loader/weight-source.js';

/**
 * The tensor as float data, or a clear error: the backend has no kernels for quantized weights
 * yet. This is the one place a quantized tensor meets the model (linear packs, embeddings, norms
 * all come through here), so it is where quantized support plugs in.
 */
export function floatWeight(t: WeightTensor): FloatWeightTensor {
  if (t.kind === 'float') return t;
  const type = GGML_TYPES.get(t.type)?.name ?? `GGML type ${t.type}`;
  throw new ModelLoadError(`${t.source}: tensor "${t.name}" is quantized (${type}); quantized weights are not supported yet`, {
    code: 'unsupported_weight_type',
  });
}

/** A weight matrix ready for packing (Hugging Face layout, out_features × in_features). */
export interface LinearWeight {
  data: WeightArray;
  dtype: DType;
  n: number;
  k: number;
  bias: Float32Array | null;
}

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
  bytesPerElem: number;
}

export class Linears {
  private readonly shapes: LinearShape[] = [];
  private readonly packs: PackedLinearHandle[] = [];

  constructor(
    private readonly be: ComputeBackend,
    readonly precision: MatmulPrecision,
  ) {}

  /** An [n, k] weight (and optional [n] bias) in the dtype the precision multiplies. */
  weight(w: WeightTensor, bias: WeightTensor | null): LinearWeight {
    const t = floatWeight(w);
    const [n, k] = t.shape as [number, number];
    const b = bias ? toFloat32(floatWeight(bias)) : null;
    if (this.precision === MatmulPrecision.BF16) return { data: toBf16(t), dtype: DType.BF16, n, k, bias: b };
    return { data: t.data, dtype: t.dtype, n, k, bias: b };
  }

  /** Several matrices with the same input (e.g. q, k, v) packed together: one pass fills all outputs. */
  pack(ws: LinearWeight[]): PackedLinearHandle {
    ws.forEach((w) => this.account(w));
    const parts: LinearPart[] = ws.map((w) => ({ w: w.data, n: w.n, bias: w.bias }));
    return this.keep(this.be.packLinear(parts, ws[0]!.dtype, ws[0]!.k, this.precision));
  }

  /** A gate/up pair whose packed output is already silu(gate) * up. */
  packGateUp(gate: LinearWeight, up: LinearWeight): PackedLinearHandle {
    this.account(gate);
    this.account(up);
    return this.keep(this.be.packGateUp(gate.data, up.data, gate.dtype, gate.n, gate.k, this.precision));
  }

  /** Bytes of weights one pass over every pack reads. */
  weightBytes(): number {
    return this.shapes.reduce((a, w) => a + w.n * w.k * w.bytesPerElem, 0);
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
    this.shapes.push({ n: w.n, k: w.k, bytesPerElem: w.dtype === DType.F32 ? 4 : 2 });
  }

  private keep(h: PackedLinearHandle): PackedLinearHandle {
    this.packs.push(h);
    return h;
  }
}
