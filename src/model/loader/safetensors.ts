/**
 * The safetensors format, read and written without a library.
 *
 * Layout: an 8-byte little-endian header length N, N bytes of JSON
 * (`{"__metadata__": {..}, "<name>": {"dtype", "shape", "data_offsets": [begin, end]}, ...}`),
 * then the tensor bytes; offsets are relative to the end of the header.
 *
 * Reading memory-maps the file through the native addon and hands out typed-array views into the
 * mapping, so loading a model costs no copy and no heap: the OS pages weights in on first use.
 */
import { statSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import { DType, type WeightArray } from '../../backend/backend.js';
import { nativeHost } from '../../backend/native.js';
import { ModelLoadError } from '../../errors.js';

// Typed-array views read the file's little-endian bytes in host order.
if (endianness() !== 'LE') throw new Error('Pagewise reads safetensors files only on little-endian hosts');

/** The safetensors spec caps the header at 100 MB; a larger value means a corrupt or foreign file. */
const MAX_HEADER_BYTES = 100_000_000;

/** Element sizes of every dtype the format defines, so offsets of tensors we cannot use still validate. */
const ELEMENT_BYTES: Record<string, number> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  F8_E8M0: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
};

const SUPPORTED: Record<string, DType> = { F32: DType.F32, F16: DType.F16, BF16: DType.BF16 };

/** The safetensors name of a dtype. */
export function dtypeName(dtype: DType): 'F32' | 'F16' | 'BF16' {
  switch (dtype) {
    case DType.F32:
      return 'F32';
    case DType.F16:
      return 'F16';
    case DType.BF16:
      return 'BF16';
  }
}

/** Bytes per element of a supported dtype. */
export function dtypeBytes(dtype: DType): number {
  return dtype === DType.F32 ? 4 : 2;
}

/** One tensor as described by the header. */
export interface SafetensorsEntry {
  name: string;
  /** Dtype as written in the file (may be one Pagewise cannot use, e.g. "I8"). */
  dtypeName: string;
  shape: number[];
  /** Absolute byte offset of the first element in the file. */
  byteOffset: number;
  byteLength: number;
}

export interface SafetensorsHeader {
  /** Byte offset where tensor data starts (8 + header length). */
  dataStart: number;
  metadata: Record<string, string>;
  entries: Map<string, SafetensorsEntry>;
}

function fail(path: string, problem: string, code = 'invalid_safetensors'): never {
  throw new ModelLoadError(`${path}: ${problem}`, { code });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Parse and validate the header of a safetensors file whose first bytes are `head` (at least
 * the 8-byte length plus the JSON) and whose total size is `fileSize`. `path` names the file in errors.
 */
export function parseSafetensorsHeader(head: Uint8Array, fileSize: number, path: string): SafetensorsHeader {
  if (fileSize < 8 || head.byteLength < 8) fail(path, `file is too small to be safetensors (${fileSize} bytes)`);
  const n = new DataView(head.buffer, head.byteOffset, 8).getBigUint64(0, true);
  if (n < 2n || n > BigInt(MAX_HEADER_BYTES)) fail(path, `implausible header length ${n} (not a safetensors file?)`);
  const headerLength = Number(n);
  const dataStart = 8 + headerLength;
  if (dataStart > fileSize) fail(path, `header length ${headerLength} runs past the end of the file (${fileSize} bytes; truncated?)`);
  if (head.byteLength < dataStart) throw new RangeError('parseSafetensorsHeader: head does not hold the whole header');

  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(head.subarray(8, dataStart)));
  } catch (e) {
    fail(path, `header is not valid JSON (${(e as Error).message})`);
  }
  if (!isObject(json)) fail(path, 'header is not a JSON object');

  const metadata: Record<string, string> = {};
  const entries = new Map<string, SafetensorsEntry>();
  const dataSize = fileSize - dataStart;
  for (const [name, value] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isObject(value)) fail(path, '__metadata__ is not an object');
      for (const [k, v] of Object.entries(value)) {
        if (typeof v !== 'string') fail(path, `__metadata__ value "${k}" is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const where = `tensor "${name}"`;
    if (!isObject(value)) fail(path, `${where}: entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = value;
    if (typeof dtype !== 'string') fail(path, `${where}: dtype is not a string`);
    const elementBytes = ELEMENT_BYTES[dtype];
    if (elementBytes === undefined) fail(path, `${where}: unknown dtype "${dtype}"`, 'unsupported_dtype');
    if (!Array.isArray(shape) || !shape.every(isCount)) fail(path, `${where}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
      fail(path, `${where}: data_offsets ${JSON.stringify(offsets)} is not a [begin, end] pair`);
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin) fail(path, `${where}: data_offsets [${begin}, ${end}] end before they begin`);
    if (end > dataSize) {
      fail(path, `${where}: data_offsets [${begin}, ${end}] run past the end of the file (${dataSize} data bytes; truncated?)`);
    }
    const elements = (shape as number[]).reduce((a, b) => a * b, 1);
    if (!Number.isSafeInteger(elements * elementBytes) || elements * elementBytes !== end - begin) {
      fail(path, `${where}: ${end - begin} bytes stored but shape [${(shape as number[]).join(', ')}] of ${dtype} needs ${elements * elementBytes}`);
    }
    entries.set(name, { name, dtypeName: dtype, shape: shape as number[], byteOffset: dataStart + begin, byteLength: end - begin });
  }
  return { dataStart, metadata, entries };
}

/** A tensor read from a file: raw element bits (Float32Array for F32, Uint16Array for F16/BF16). */
export interface TensorView {
  dtype: DType;
  shape: number[];
  data: WeightArray;
}

/** A memory-mapped safetensors file. The mapping lives as long as any tensor view into it. */
export class SafetensorsFile {
  private constructor(
    readonly path: string,
    private readonly mapping: ArrayBuffer,
    private readonly header: SafetensorsHeader,
  ) {}

  /** Map and validate `path`; throws {@link ModelLoadError} naming the file on any problem. */
  static open(path: string): SafetensorsFile {
    let size: number;
    try {
      const st = statSync(path);
      if (!st.isFile()) fail(path, 'not a regular file');
      size = st.size;
    } catch (e) {
      if (e instanceof ModelLoadError) throw e;
      throw new ModelLoadError(`${path}: cannot read weights file (${(e as Error).message})`, { code: 'model_file_missing', cause: e });
    }
    // mmap of an empty file fails with an unhelpful errno; report it as the truncation it is.
    if (size < 8) fail(path, `file is too small to be safetensors (${size} bytes; truncated?)`);
    let mapping: ArrayBuffer;
    try {
      mapping = nativeHost().mmapFile(path);
    } catch (e) {
      throw new ModelLoadError(`${path}: cannot memory-map weights file (${(e as Error).message})`, { cause: e });
    }
    // View only the header region: one typed array over a multi-GB mapping could exceed V8's limit.
    const head = new Uint8Array(mapping, 0, Math.min(mapping.byteLength, 8 + MAX_HEADER_BYTES));
    const header = parseSafetensorsHeader(head, mapping.byteLength, path);
    return new SafetensorsFile(path, mapping, header);
  }

  get metadata(): Readonly<Record<string, string>> {
    return this.header.metadata;
  }

  names(): string[] {
    return [...this.header.entries.keys()];
  }

  has(name: string): boolean {
    return this.header.entries.has(name);
  }

  entry(name: string): SafetensorsEntry | undefined {
    return this.header.entries.get(name);
  }

  /**
   * The tensor's data as a view into the mapping (zero copy), or a fresh copy when the file places
   * it at an offset that is not a multiple of its element size (typed arrays require alignment).
   */
  tensor(name: string): TensorView {
    const e = this.header.entries.get(name);
    if (!e) fail(this.path, `no tensor "${name}"`, 'tensor_missing');
    const dtype = SUPPORTED[e.dtypeName];
    if (dtype === undefined) {
      fail(this.path, `tensor "${name}" has unsupported dtype ${e.dtypeName} (supported: F32, F16, BF16)`, 'unsupported_dtype');
    }
    const elementBytes = dtypeBytes(dtype);
    const count = e.byteLength / elementBytes;
    const Ctor = dtype === DType.F32 ? Float32Array : Uint16Array;
    let data: WeightArray;
    if (e.byteOffset % elementBytes === 0) {
      data = new Ctor(this.mapping, e.byteOffset, count);
    } else {
      data = new Ctor(count);
      new Uint8Array(data.buffer).set(new Uint8Array(this.mapping, e.byteOffset, e.byteLength));
    }
    return { dtype, shape: [...e.shape], data };
  }
}

/**
 * Tensor contents to write: the whole array, or a function returning its chunks in order (so a
 * generator can produce a multi-GB tensor without holding it in memory). Chunks must have the
 * array type of the dtype and must not be modified after being yielded.
 */
export type TensorSource = WeightArray | (() => Iterable<WeightArray>);

export interface TensorToWrite {
  name: string;
  dtype: DType;
  shape: number[];
  data: TensorSource;
}

function checkChunkType(t: TensorToWrite, chunk: WeightArray, path: string): void {
  const ok = t.dtype === DType.F32 ? chunk instanceof Float32Array : chunk instanceof Uint16Array;
  if (!ok) fail(path, `tensor "${t.name}": ${dtypeName(t.dtype)} data must be a ${t.dtype === DType.F32 ? 'Float32Array' : 'Uint16Array'}`);
}

async function writeAll(fh: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.byteLength - done, position + done);
    done += bytesWritten;
  }
}

/**
 * Write a safetensors file: header padded with spaces to a multiple of 8 bytes (so every tensor is
 * aligned for zero-copy views), tensors sorted by name. Data streams to disk chunk by chunk; while
 * one chunk is being written the next one is produced.
 */
export async function writeSafetensors(path: string, tensors: TensorToWrite[], metadata?: Record<string, string>): Promise<void> {
  const sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (metadata) header['__metadata__'] = metadata;
  let offset = 0;
  for (let i = 0; i < sorted.length; i++) {
    const t = sorted[i]!;
    if (t.name === '__metadata__' || (i > 0 && sorted[i - 1]!.name === t.name)) fail(path, `tensor name "${t.name}" is reserved or repeated`);
    if (!t.shape.every((v) => isCount(v))) fail(path, `tensor "${t.name}": invalid shape [${t.shape.join(', ')}]`);
    const bytes = t.shape.reduce((a, b) => a * b, 1) * dtypeBytes(t.dtype);
    if (typeof t.data !== 'function') {
      checkChunkType(t, t.data, path);
      if (t.data.byteLength !== bytes) fail(path, `tensor "${t.name}": data has ${t.data.byteLength} bytes, shape needs ${bytes}`);
    }
    header[t.name] = { dtype: dtypeName(t.dtype), shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  const jsonBytes = () => Buffer.byteLength(json, 'utf8');
  json += ' '.repeat((8 - (jsonBytes() % 8)) % 8);
  const head = Buffer.alloc(8 + jsonBytes());
  head.writeBigUInt64LE(BigInt(jsonBytes()), 0);
  head.write(json, 8, 'utf8');

  const fh = await open(path, 'w');
  // At most one write in flight: the next chunk is produced while the previous one is written.
  let pending: Promise<void> = writeAll(fh, head, 0);
  try {
    let position = head.byteLength;
    for (const t of sorted) {
      const expected = (header[t.name] as { data_offsets: [number, number] }).data_offsets;
      let written = 0;
      const chunks = typeof t.data === 'function' ? t.data() : [t.data];
      for (const chunk of chunks) {
        checkChunkType(t, chunk, path);
        const bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        await pending;
        pending = writeAll(fh, bytes, position);
        position += bytes.byteLength;
        written += bytes.byteLength;
      }
      if (written !== expected[1] - expected[0]) {
        fail(path, `tensor "${t.name}": chunks held ${written} bytes, shape needs ${expected[1] - expected[0]}`);
      }
    }
    await pending;
  } finally {
    // On an error the in-flight write must settle before the handle closes (and must not go unhandled).
    await pending.catch(() => undefined);
    await fh.close();
  }
}
