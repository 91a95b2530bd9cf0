/**
 * A strict GGUF parser over bytes already in memory (a memory mapping). Every read is bounds-checked
 * and every inconsistency is a ModelLoadError naming the file and what is wrong.
 *
 * Why not `@huggingface/gguf`: it is built around async range fetches (URLs, Blob reads), is lenient
 * by design (it tolerates what it does not know so the Hub can display any file), and exposes no
 * synchronous API over a buffer we already mapped. A loader must refuse bad files before a kernel
 * reads them, and the worker wants a synchronous parse over the mapping, so this is a small own one.
 */
import { ModelLoadError } from '../../../errors.js';
import { GGML_TYPES } from '../../../backend/quant.js';
import {
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_KEYS,
  GGUF_MAGIC,
  GGUF_MAX_DIMS,
  GGUF_SCALAR_BYTES,
  GGUF_SUPPORTED_VERSIONS,
  GgufValueType,
  alignUp,
} from './format.js';

export type GgufScalar = number | bigint | boolean | string;
export type GgufValue = GgufScalar | GgufArray;
export interface GgufArray {
  itemType: GgufValueType;
  items: GgufValue[];
}
export interface GgufMetaEntry {
  type: GgufValueType;
  value: GgufValue;
}

export interface GgufTensorInfo {
  name: string;
  /** GGUF order: ne[0] is the innermost (contiguous) dimension. */
  ne: number[];
  type: number;
  /** Offset from the start of the data section. */
  offset: number;
  nbytes: number;
}

export interface GgufHeader {
  version: number;
  metadata: Map<string, GgufMetaEntry>;
  tensors: GgufTensorInfo[];
  alignment: number;
  /** Absolute byte offset of the data section. */
  dataOffset: number;
}

const decoder = new TextDecoder('utf-8', { fatal: true });

class Cursor {
  pos = 0;
  private readonly view: DataView;
  constructor(
    readonly bytes: Uint8Array,
    readonly source: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  fail(what: string, code = 'invalid_gguf'): never {
    throw new ModelLoadError(`${this.source}: ${what}`, { code });
  }
  need(n: number, what: string): void {
    if (n > this.bytes.length - this.pos) this.fail(`truncated file: ${what} at byte ${this.pos} needs ${n} bytes, ${this.bytes.length - this.pos} left`);
  }
  u8(what: string): number {
    this.need(1, what);
    return this.view.getUint8(this.pos++);
  }
  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  /** A u64 that must be a safe integer (counts, sizes, offsets). */
  u64n(what: string): number {
    this.need(8, what);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`${what} ${v} is too large`);
    return Number(v);
  }
  string(what: string): string {
    const len = this.u64n(`${what} length`);
    this.need(len, `${what} (${len} bytes)`);
    const raw = this.bytes.subarray(this.pos, this.pos + len);
    this.pos += len;
    try {
      return decoder.decode(raw);
    } catch {
      return this.fail(`${what} is not valid UTF-8`);
    }
  }
  scalar(type: GgufValueType, what: string): GgufScalar {
    const v = this.view;
    const width = GGUF_SCALAR_BYTES.get(type);
    if (type === GgufValueType.STRING) return this.string(what);
    if (width === undefined) return this.fail(`${what}: unknown metadata value type ${type}`);
    this.need(width, what);
    const p = this.pos;
    this.pos += width;
    switch (type) {
      case GgufValueType.UINT8: return v.getUint8(p);
      case GgufValueType.INT8: return v.getInt8(p);
      case GgufValueType.UINT16: return v.getUint16(p, true);
      case GgufValueType.INT16: return v.getInt16(p, true);
      case GgufValueType.UINT32: return v.getUint32(p, true);
      case GgufValueType.INT32: return v.getInt32(p, true);
      case GgufValueType.FLOAT32: return v.getFloat32(p, true);
      case GgufValueType.FLOAT64: return v.getFloat64(p, true);
      case GgufValueType.BOOL: {
        const b = v.getUint8(p);
        if (b > 1) this.fail(`${what}: bool byte ${b} is neither 0 nor 1`);
        return b === 1;
      }
      case GgufValueType.UINT64: case GgufValueType.INT64: {
        const big = type === GgufValueType.UINT64 ? v.getBigUint64(p, true) : v.getBigInt64(p, true);
        return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
      }
      default: return this.fail(`${what}: unknown metadata value type ${type}`);
    }
  }
  value(type: GgufValueType, what: string, depth: number): GgufValue {
    if (type !== GgufValueType.ARRAY) return this.scalar(type, what);
    if (depth > 8) this.fail(`${what}: arrays nested too deeply`);
    const itemType = this.u32(`${what} array item type`);
    const count = this.u64n(`${what} array length`);
    // Every item takes at least one byte (8 for a string's length, 12 for an array header), so a
    // count beyond the remaining bytes is a lie: refuse it before allocating.
    const minItem = itemType === GgufValueType.STRING ? 8 : itemType === GgufValueType.ARRAY ? 12 : (GGUF_SCALAR_BYTES.get(itemType) ?? 1);
    if (itemType !== GgufValueType.ARRAY && itemType !== GgufValueType.STRING && !GGUF_SCALAR_BYTES.has(itemType)) {
      this.fail(`${what}: unknown array item type ${itemType}`);
    }
    this.need(count * minItem, `${what} (array of ${count} items)`);
    const items: GgufValue[] = new Array<GgufValue>(count);
    for (let i = 0; i < count; i++) items[i] = this.value(itemType, `${what}[${i}]`, depth + 1);
    return { itemType, items };
  }
}

/**
 * Parse a GGUF header (metadata and tensor infos) and validate the tensor table against the file
 * size. `bytes` holds at least the header (it may be a prefix of a file of `fileSize` bytes).
 */
export function parseGgufHeader(bytes: Uint8Array, source: string, fileSize = bytes.length): GgufHeader {
  const c: Cursor = new Cursor(bytes, source);
  if (bytes.length < 4 || c.u32('magic') !== GGUF_MAGIC) c.fail('not a GGUF file (bad magic; expected "GGUF")', 'invalid_gguf_magic');
  const version = c.u32('version');
  if (!GGUF_SUPPORTED_VERSIONS.includes(version)) {
    c.fail(`unsupported GGUF version ${version} (supported: ${GGUF_SUPPORTED_VERSIONS.join(', ')})`, 'unsupported_gguf_version');
  }
  const nTensors = c.u64n('tensor count');
  const nKv = c.u64n('metadata count');
  // Each key/value takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor info at least 8 + 4 + 4 + 8.
  c.need(nKv * 13 + nTensors * 24, `${nKv} metadata entries and ${nTensors} tensor infos`);

  const metadata = new Map<string, GgufMetaEntry>();
  for (let i = 0; i < nKv; i++) {
    const key = c.string(`metadata key #${i}`);
    if (metadata.has(key)) c.fail(`duplicate metadata key "${key}"`);
    const type = c.u32(`type of metadata "${key}"`);
    metadata.set(key, { type, value: c.value(type, `metadata "${key}"`, 0) });
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = metadata.get(GGUF_KEYS.alignment);
  if (al !== undefined) {
    if (al.type !== GgufValueType.UINT32 || typeof al.value !== 'number' || al.value === 0 || (al.value & (al.value - 1)) !== 0) {
      c.fail(`metadata "${GGUF_KEYS.alignment}" must be a u32 power of two`);
    }
    alignment = al.value;
  }

  const tensors: GgufTensorInfo[] = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const name = c.string(`tensor #${i} name`);
    if (names.has(name)) c.fail(`duplicate tensor "${name}"`);
    names.add(name);
    const nDims = c.u32(`tensor "${name}" dimension count`);
    if (nDims < 1 || nDims > GGUF_MAX_DIMS) c.fail(`tensor "${name}" has ${nDims} dimensions (1..${GGUF_MAX_DIMS} allowed)`);
    const ne: number[] = [];
    let elements = 1;
    for (let d = 0; d < nDims; d++) {
      const n = c.u64n(`tensor "${name}" dimension ${d}`);
      if (n === 0) c.fail(`tensor "${name}" has a zero dimension`);
      elements *= n;
      if (elements > Number.MAX_SAFE_INTEGER) c.fail(`tensor "${name}" has too many elements`);
      ne.push(n);
    }
    const type = c.u32(`tensor "${name}" type`);
    const info = GGML_TYPES.get(type);
    if (info === undefined) c.fail(`tensor "${name}" has unknown GGML type ${type}`, 'unsupported_tensor_type');
    if (ne[0]! % info.blockSize !== 0) c.fail(`tensor "${name}": row of ${ne[0]} values is not a whole number of ${info.name} blocks (${info.blockSize})`);
    const offset = c.u64n(`tensor "${name}" offset`);
    if (offset % alignment !== 0) c.fail(`tensor "${name}" offset ${offset} is not a multiple of the alignment ${alignment}`);
    tensors.push({ name, ne, type, offset, nbytes: (elements / info.blockSize) * info.blockBytes });
  }

  const dataOffset = alignUp(c.pos, alignment);
  if (dataOffset > fileSize && nTensors > 0) c.fail(`truncated file: data section starts at byte ${dataOffset}, file has ${fileSize}`);
  const dataSize = fileSize - dataOffset;
  const byOffset = [...tensors].sort((a, b) => a.offset - b.offset);
  let prevEnd = 0;
  let prevName = '';
  for (const t of byOffset) {
    if (t.offset + t.nbytes > dataSize) {
      c.fail(`truncated file: tensor "${t.name}" (${t.nbytes} bytes at data offset ${t.offset}) ends past the data section (${dataSize} bytes)`);
    }
    if (t.offset < prevEnd) c.fail(`tensors "${prevName}" and "${t.name}" overlap`);
    prevEnd = t.offset + t.nbytes;
    prevName = t.name;
  }
  return { version, metadata, tensors, alignment, dataOffset };
}
