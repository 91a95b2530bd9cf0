/**
 * GGUF v3 writer (the llama.cpp file format): header, typed metadata, tensor infos, then each
 * tensor's bytes at an offset aligned to 32. Tensor data is pulled one chunk at a time from each
 * tensor's producer, so a multi-GB model streams to disk with one tensor chunk in memory.
 *
 * Layout (little-endian): "GGUF", u32 version 3, u64 tensor count, u64 metadata count; metadata
 * entries (string key, u32 value type, value); tensor infos (string name, u32 n_dims, u64 ne[],
 * u32 GGML type, u64 offset from the data start); zero padding to the alignment; the data.
 * Strings are a u64 byte length and UTF-8 bytes, without terminator.
 */
import { closeSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { GGML_TYPES, ggmlRowBytes, ggmlTypeName, type GgmlType } from '../../../backend/quant.js';
import { GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_WRITE_VERSION, GgufValueType } from './format.js';

export type GgufScalarType = Exclude<GgufValueType, GgufValueType.ARRAY>;

/** One metadata value: a scalar of `type`, or an array of `itemType` scalars. */
export type GgufMetaValue =
  | { type: GgufScalarType; value: number | bigint | boolean | string }
  | { type: GgufValueType.ARRAY; itemType: GgufScalarType; values: ReadonlyArray<number | bigint | boolean | string> };

export interface GgufTensorToWrite {
  name: string;
  /** GGUF dimension order: ne[0] is the contiguous (row) dimension. */
  ne: number[];
  type: GgmlType;
  /** The tensor's bytes, in order, in any number of chunks (their total is checked). */
  data: () => Iterable<Uint8Array>;
}

/** Bytes of a tensor of `type` with dimensions `ne` (ne[0] must be whole blocks). */
export function ggufTensorBytes(type: GgmlType, ne: readonly number[]): number {
  return ggmlRowBytes(type, ne[0]!) * ne.slice(1).reduce((a, b) => a * b, 1);
}

/** A growable little-endian byte buffer for the header. */
class ByteSink {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private static readonly enc = new TextEncoder();

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.length + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number): void {
    this.reserve(1);
    this.view.setUint8(this.length, v);
    this.length += 1;
  }
  i8(v: number): void {
    this.reserve(1);
    this.view.setInt8(this.length, v);
    this.length += 1;
  }
  u16(v: number): void {
    this.reserve(2);
    this.view.setUint16(this.length, v, true);
    this.length += 2;
  }
  i16(v: number): void {
    this.reserve(2);
    this.view.setInt16(this.length, v, true);
    this.length += 2;
  }
  u32(v: number): void {
    this.reserve(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }
  i32(v: number): void {
    this.reserve(4);
    this.view.setInt32(this.length, v, true);
    this.length += 4;
  }
  f32(v: number): void {
    this.reserve(4);
    this.view.setFloat32(this.length, v, true);
    this.length += 4;
  }
  f64(v: number): void {
    this.reserve(8);
    this.view.setFloat64(this.length, v, true);
    this.length += 8;
  }
  u64(v: number | bigint): void {
    this.reserve(8);
    this.view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  i64(v: number | bigint): void {
    this.reserve(8);
    this.view.setBigInt64(this.length, BigInt(v), true);
    this.length += 8;
  }
  str(s: string): void {
    const b = ByteSink.enc.encode(s);
    this.u64(b.length);
    this.reserve(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

function checkNumber(key: string, v: unknown, type: GgufScalarType, min: number, max: number, integer: boolean): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < min || v > max) {
    throw new RangeError(`GGUF metadata "${key}": ${String(v)} is not a valid ${GgufValueType[type]}`);
  }
  return v;
}

function writeScalar(out: ByteSink, key: string, type: GgufScalarType, v: number | bigint | boolean | string): void {
  switch (type) {
    case GgufValueType.UINT8:
      return out.u8(checkNumber(key, v, type, 0, 0xff, true));
    case GgufValueType.INT8:
      return out.i8(checkNumber(key, v, type, -0x80, 0x7f, true));
    case GgufValueType.UINT16:
      return out.u16(checkNumber(key, v, type, 0, 0xffff, true));
    case GgufValueType.INT16:
      return out.i16(checkNumber(key, v, type, -0x8000, 0x7fff, true));
    case GgufValueType.UINT32:
      return out.u32(checkNumber(key, v, type, 0, 0xffffffff, true));
    case GgufValueType.INT32:
      return out.i32(checkNumber(key, v, type, -0x80000000, 0x7fffffff, true));
    case GgufValueType.FLOAT32:
      return out.f32(checkNumber(key, v, type, -Infinity, Infinity, false));
    case GgufValueType.FLOAT64:
      return out.f64(checkNumber(key, v, type, -Infinity, Infinity, false));
    case GgufValueType.UINT64:
    case GgufValueType.INT64: {
      if (typeof v !== 'bigint' && (typeof v !== 'number' || !Number.isSafeInteger(v))) throw new RangeError(`GGUF metadata "${key}": ${String(v)} is not a valid ${GgufValueType[type]}`);
      return type === GgufValueType.UINT64 ? out.u64(v) : out.i64(v);
    }
    case GgufValueType.BOOL:
      if (typeof v !== 'boolean') throw new RangeError(`GGUF metadata "${key}": ${String(v)} is not a boolean`);
      return out.u8(v ? 1 : 0);
    case GgufValueType.STRING:
      if (typeof v !== 'string') throw new RangeError(`GGUF metadata "${key}": ${String(v)} is not a string`);
      return out.str(v);
  }
}

/** The bytes before the tensor data (header, metadata, tensor infos, padding), and each tensor's offset. */
export function ggufHeader(
  metadata: ReadonlyArray<[string, GgufMetaValue]>,
  tensors: ReadonlyArray<Pick<GgufTensorToWrite, 'name' | 'ne' | 'type'>>,
  alignment = GGUF_DEFAULT_ALIGNMENT,
): { header: Uint8Array; offsets: number[]; sizes: number[] } {
  const out = new ByteSink();
  out.u32(GGUF_MAGIC);
  out.u32(GGUF_WRITE_VERSION);
  out.u64(tensors.length);
  out.u64(metadata.length);
  const keys = new Set<string>();
  for (const [key, v] of metadata) {
    if (keys.has(key)) throw new RangeError(`GGUF metadata key "${key}" given twice`);
    keys.add(key);
    out.str(key);
    out.u32(v.type);
    if (v.type === GgufValueType.ARRAY) {
      out.u32(v.itemType);
      out.u64(v.values.length);
      for (const item of v.values) writeScalar(out, key, v.itemType, item);
    } else writeScalar(out, key, v.type, v.value);
  }
  const offsets: number[] = [];
  const sizes: number[] = [];
  const names = new Set<string>();
  let offset = 0;
  for (const t of tensors) {
    if (names.has(t.name)) throw new RangeError(`GGUF tensor "${t.name}" given twice`);
    names.add(t.name);
    if (!GGML_TYPES.has(t.type)) throw new RangeError(`GGUF tensor "${t.name}": unknown GGML type ${t.type}`);
    if (t.ne.length < 1 || t.ne.length > 4 || t.ne.some((d) => !Number.isSafeInteger(d) || d <= 0)) {
      throw new RangeError(`GGUF tensor "${t.name}": invalid dimensions [${t.ne.join(', ')}]`);
    }
    let size: number;
    try {
      size = ggufTensorBytes(t.type, t.ne);
    } catch (e) {
      throw new RangeError(`GGUF tensor "${t.name}" (${ggmlTypeName(t.type)}): ${(e as Error).message}`);
    }
    out.str(t.name);
    out.u32(t.ne.length);
    for (const d of t.ne) out.u64(d);
    out.u32(t.type);
    out.u64(offset);
    offsets.push(offset);
    sizes.push(size);
    offset += Math.ceil(size / alignment) * alignment;
  }
  const pad = (alignment - (out.length % alignment)) % alignment;
  for (let i = 0; i < pad; i++) out.u8(0);
  return { header: out.bytes(), offsets, sizes };
}

/**
 * Write a GGUF v3 file. `general.alignment`, when present in the metadata, must be a UINT32 power
 * of two; it sets the alignment (32 otherwise, as in the format's default).
 */
export function writeGguf(path: string, metadata: ReadonlyArray<[string, GgufMetaValue]>, tensors: readonly GgufTensorToWrite[]): void {
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = metadata.find(([k]) => k === 'general.alignment')?.[1];
  if (al) {
    if (al.type !== GgufValueType.UINT32 || typeof al.value !== 'number' || al.value <= 0 || (al.value & (al.value - 1)) !== 0) {
      throw new RangeError('GGUF metadata "general.alignment" must be a UINT32 power of two');
    }
    alignment = al.value;
  }
  const { header, sizes } = ggufHeader(metadata, tensors, alignment);
  // Written under a temporary name and renamed when complete: a failure never leaves a
  // truncated file under the final name.
  const partial = `${path}.partial`;
  const fd = openSync(partial, 'w');
  let done = false;
  try {
    writeSync(fd, header);
    const zeros = new Uint8Array(alignment);
    tensors.forEach((t, i) => {
      let written = 0;
      for (const chunk of t.data()) {
        if (written + chunk.length > sizes[i]!) break;
        writeSync(fd, chunk);
        written += chunk.length;
      }
      if (written !== sizes[i]) {
        throw new RangeError(`GGUF tensor "${t.name}": its data does not have the ${sizes[i]} bytes of a ${ggmlTypeName(t.type)} [${t.ne.join(', ')}] tensor`);
      }
      const pad = (alignment - (written % alignment)) % alignment;
      if (pad > 0) writeSync(fd, zeros, 0, pad);
    });
    done = true;
  } finally {
    closeSync(fd);
    if (done) renameSync(partial, path);
    else rmSync(partial, { force: true });
  }
}
