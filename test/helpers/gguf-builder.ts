/**
 * A tiny GGUF writer for tests (synthetic files for tokenizer, config and error cases). It writes
 * exactly what it is told, so tests can also build invalid files.
 */
import { GGUF_MAGIC, GgufValueType } from '../../src/model/loader/gguf/format.js';

type Scalar = number | bigint | boolean | string;
export type BuilderValue =
  | { type: Exclude<GgufValueType, GgufValueType.ARRAY>; value: Scalar }
  | { type: GgufValueType.ARRAY; itemType: GgufValueType; items: Array<Scalar | BuilderValue> };

export interface BuilderTensor {
  name: string;
  ne: number[];
  type: number;
  data: Uint8Array;
  /** Override the computed offset (to build bad files). */
  offset?: number;
}

export const str = (value: string): BuilderValue => ({ type: GgufValueType.STRING, value });
export const u32 = (value: number): BuilderValue => ({ type: GgufValueType.UINT32, value });
export const f32 = (value: number): BuilderValue => ({ type: GgufValueType.FLOAT32, value });
export const bool = (value: boolean): BuilderValue => ({ type: GgufValueType.BOOL, value });
export const arr = (itemType: GgufValueType, items: Array<number | string | boolean | bigint>): BuilderValue => ({ type: GgufValueType.ARRAY, itemType, items });

class Out {
  private chunks: number[] = [];
  u8(v: number): void { this.chunks.push(v & 0xff); }
  bytes(b: Uint8Array): void { for (const x of b) this.chunks.push(x); }
  num(v: number | bigint, width: number, kind: 'u' | 'i' | 'f'): void {
    const dv = new DataView(new ArrayBuffer(width));
    if (kind === 'f') width === 4 ? dv.setFloat32(0, Number(v), true) : dv.setFloat64(0, Number(v), true);
    else if (width === 8) kind === 'u' ? dv.setBigUint64(0, BigInt(v), true) : dv.setBigInt64(0, BigInt(v), true);
    else if (width === 4) kind === 'u' ? dv.setUint32(0, Number(v), true) : dv.setInt32(0, Number(v), true);
    else if (width === 2) kind === 'u' ? dv.setUint16(0, Number(v), true) : dv.setInt16(0, Number(v), true);
    else dv.setUint8(0, Number(v));
    this.bytes(new Uint8Array(dv.buffer));
  }
  str(s: string): void {
    const b = new TextEncoder().encode(s);
    this.num(b.length, 8, 'u');
    this.bytes(b);
  }
  get length(): number { return this.chunks.length; }
  pad(alignment: number): void { while (this.chunks.length % alignment !== 0) this.u8(0); }
  result(): Uint8Array { return Uint8Array.from(this.chunks); }
}

function writeScalar(o: Out, type: GgufValueType, v: unknown): void {
  switch (type) {
    case GgufValueType.UINT8: return o.num(v as number, 1, 'u');
    case GgufValueType.INT8: return o.num(v as number, 1, 'i');
    case GgufValueType.UINT16: return o.num(v as number, 2, 'u');
    case GgufValueType.INT16: return o.num(v as number, 2, 'i');
    case GgufValueType.UINT32: return o.num(v as number, 4, 'u');
    case GgufValueType.INT32: return o.num(v as number, 4, 'i');
    case GgufValueType.FLOAT32: return o.num(v as number, 4, 'f');
    case GgufValueType.FLOAT64: return o.num(v as number, 8, 'f');
    case GgufValueType.UINT64: return o.num(v as number, 8, 'u');
    case GgufValueType.INT64: return o.num(v as number, 8, 'i');
    case GgufValueType.BOOL: return o.u8(v ? 1 : 0);
    case GgufValueType.STRING: return o.str(v as string);
    default: throw new Error(`builder: bad type ${type}`);
  }
}

function writeValue(o: Out, v: BuilderValue): void {
  if (v.type !== GgufValueType.ARRAY) return writeScalar(o, v.type, v.value);
  o.num(v.itemType, 4, 'u');
  o.num(v.items.length, 8, 'u');
  for (const item of v.items) {
    if (v.itemType === GgufValueType.ARRAY) {
      const inner = item as BuilderValue & { type: GgufValueType.ARRAY };
      writeValue(o, inner);
    } else writeScalar(o, v.itemType, item);
  }
}

export function buildGguf(opts: { version?: number; metadata: Array<[string, BuilderValue]>; tensors?: BuilderTensor[]; alignment?: number }): Uint8Array {
  const alignment = opts.alignment ?? 32;
  const tensors = opts.tensors ?? [];
  const o = new Out();
  o.num(GGUF_MAGIC, 4, 'u');
  o.num(opts.version ?? 3, 4, 'u');
  o.num(tensors.length, 8, 'u');
  o.num(opts.metadata.length, 8, 'u');
  for (const [k, v] of opts.metadata) {
    o.str(k);
    o.num(v.type, 4, 'u');
    writeValue(o, v);
  }
  let off = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    offsets.push(t.offset ?? off);
    off = Math.ceil((off + t.data.length) / alignment) * alignment;
  }
  tensors.forEach((t, i) => {
    o.str(t.name);
    o.num(t.ne.length, 4, 'u');
    for (const n of t.ne) o.num(n, 8, 'u');
    o.num(t.type, 4, 'u');
    o.num(offsets[i]!, 8, 'u');
  });
  o.pad(alignment);
  for (const t of tensors) {
    o.bytes(t.data);
    o.pad(alignment);
  }
  return o.result();
}
