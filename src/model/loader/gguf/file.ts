/**
 * A GGUF model opened from disk: one file or a split set (`NAME-00001-of-0000N.gguf`), memory-mapped,
 * with typed metadata access and tensor bytes as views into the mapping (no copies).
 */
import { statSync } from 'node:fs';
import { basename } from 'node:path';
import { nativeHost } from '../../../backend/native.js';
import { ModelLoadError } from '../../../errors.js';
import { GGUF_KEYS, GgufValueType } from './format.js';
import { parseGgufHeader, type GgufArray, type GgufHeader, type GgufMetaEntry, type GgufTensorInfo, type GgufValue } from './parse.js';

const SPLIT_RE = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/;

const INTEGER_TYPES: ReadonlySet<GgufValueType> = new Set([
  GgufValueType.UINT8, GgufValueType.INT8, GgufValueType.UINT16, GgufValueType.INT16,
  GgufValueType.UINT32, GgufValueType.INT32, GgufValueType.UINT64, GgufValueType.INT64,
]);
const FLOAT_TYPES: ReadonlySet<GgufValueType> = new Set([GgufValueType.FLOAT32, GgufValueType.FLOAT64]);

export interface GgufTensorEntry extends GgufTensorInfo {
  /** The shard holding it. */
  file: string;
  /** The tensor's bytes: a view into the mapping. */
  bytes: Uint8Array;
}

/** A parsed GGUF header with the memory holding the file (one shard). */
export interface GgufShard {
  path: string;
  header: GgufHeader;
  buffer: ArrayBufferLike;
  /** Where the file starts in `buffer`. */
  byteOffset: number;
}

// One typed array over a multi-GB mapping can exceed V8's limit: the header is parsed from a
// bounded prefix and each tensor gets its own view.
const MAX_HEADER_VIEW = 2 ** 31 - 1;

/** Parse one in-memory GGUF image (a mapping or, in tests, a buffer). */
export function parseGgufShard(buffer: ArrayBufferLike, path: string, byteOffset = 0, byteLength = buffer.byteLength - byteOffset): GgufShard {
  const head = new Uint8Array(buffer, byteOffset, Math.min(byteLength, MAX_HEADER_VIEW));
  return { path, header: parseGgufHeader(head, path, byteLength), buffer, byteOffset };
}

export class GgufFile {
  readonly metadata: ReadonlyMap<string, GgufMetaEntry>;
  readonly version: number;
  private readonly tensorMap = new Map<string, GgufTensorEntry>();

  /** Shards in order; metadata comes from the first (llama.cpp's gguf-split puts it there). */
  constructor(
    readonly description: string,
    shards: GgufShard[],
  ) {
    const first = shards[0];
    if (!first) throw new ModelLoadError(`${description}: no GGUF shards`, { code: 'invalid_gguf' });
    this.metadata = first.header.metadata;
    this.version = first.header.version;
    for (const s of shards) {
      for (const t of s.header.tensors) {
        if (this.tensorMap.has(t.name)) {
          throw new ModelLoadError(`${description}: tensor "${t.name}" appears in more than one shard (${basename(s.path)})`, { code: 'invalid_gguf' });
        }
        const start = s.header.dataOffset + t.offset;
        this.tensorMap.set(t.name, { ...t, file: s.path, bytes: new Uint8Array(s.buffer, s.byteOffset + start, t.nbytes) });
      }
    }
  }

  /** Open a file, or every shard of a split set when `path` is one of them. */
  static open(path: string): GgufFile {
    const m = SPLIT_RE.exec(path);
    const map = (p: string): GgufShard => {
      let size: number;
      try {
        size = statSync(p).size;
      } catch (e) {
        throw new ModelLoadError(`GGUF file not found: ${p}`, { code: 'model_file_missing', cause: e });
      }
      // mmap of an empty file fails with an unhelpful errno; report the truncation it is.
      if (size < 24) throw new ModelLoadError(`${p}: truncated file (${size} bytes is smaller than a GGUF header)`, { code: 'invalid_gguf' });
      let buf: ArrayBuffer;
      try {
        buf = nativeHost().mmapFile(p);
      } catch (e) {
        throw new ModelLoadError(`${p}: cannot map the file: ${(e as Error).message}`, { code: 'invalid_gguf', cause: e });
      }
      return parseGgufShard(buf, p);
    };
    if (!m) {
      const shard = map(path);
      if (shard.header.metadata.has(GGUF_KEYS.splitCount) && splitField(shard, GGUF_KEYS.splitCount) > 1) {
        throw new ModelLoadError(`${path}: this file is one shard of a split model but its name does not follow NAME-00001-of-0000N.gguf`, { code: 'invalid_gguf' });
      }
      return new GgufFile(path, [shard]);
    }
    const count = Number(m[3]);
    if (count < 1) throw new ModelLoadError(`${path}: split count 0 in the file name`, { code: 'invalid_gguf' });
    const shards: GgufShard[] = [];
    for (let i = 1; i <= count; i++) {
      const p = `${m[1]}-${String(i).padStart(5, '0')}-of-${m[3]}.gguf`;
      const shard = map(p);
      const no = splitField(shard, GGUF_KEYS.splitNo);
      const cnt = splitField(shard, GGUF_KEYS.splitCount);
      // llama.cpp's split.no is 0-based.
      if (cnt !== count || no !== i - 1) {
        throw new ModelLoadError(`${p}: split metadata says shard ${no + 1} of ${cnt}, the file name says ${i} of ${count}`, { code: 'invalid_gguf' });
      }
      shards.push(shard);
    }
    return new GgufFile(`${m[1]}-*-of-${m[3]}.gguf`, shards);
  }

  tensorNames(): string[] {
    return [...this.tensorMap.keys()];
  }
  tensor(name: string): GgufTensorEntry | undefined {
    return this.tensorMap.get(name);
  }

  has(key: string): boolean {
    return this.metadata.has(key);
  }
  private entry(key: string, want: string, ok: (t: GgufValueType) => boolean): GgufMetaEntry | undefined {
    const e = this.metadata.get(key);
    if (e !== undefined && !ok(e.type)) {
      throw new ModelLoadError(`${this.description}: metadata "${key}" has type ${GgufValueType[e.type] ?? e.type}, expected ${want}`, { code: 'invalid_gguf_metadata' });
    }
    return e;
  }
  fail(key: string, why: string): never {
    throw new ModelLoadError(`${this.description}: metadata "${key}" ${why}`, { code: 'invalid_gguf_metadata' });
  }
  /** An integer key (any integer type); undefined when absent. */
  int(key: string): number | undefined {
    const e = this.entry(key, 'an integer', (t) => INTEGER_TYPES.has(t));
    if (e === undefined) return undefined;
    if (typeof e.value !== 'number') this.fail(key, `value ${String(e.value)} is out of range`);
    return e.value;
  }
  /** A float key (f32/f64; integers accepted since some writers store e.g. freq_base as one). */
  float(key: string): number | undefined {
    const e = this.entry(key, 'a number', (t) => FLOAT_TYPES.has(t) || INTEGER_TYPES.has(t));
    if (e === undefined) return undefined;
    if (typeof e.value !== 'number') this.fail(key, `value ${String(e.value)} is out of range`);
    return e.type === GgufValueType.FLOAT32 ? shortestF32Decimal(e.value) : e.value;
  }
  bool(key: string): boolean | undefined {
    return this.entry(key, 'bool', (t) => t === GgufValueType.BOOL)?.value as boolean | undefined;
  }
  string(key: string): string | undefined {
    return this.entry(key, 'string', (t) => t === GgufValueType.STRING)?.value as string | undefined;
  }
  /** An array whose items all have one of the given types. */
  array(key: string, itemTypes: ReadonlySet<GgufValueType>, want: string): GgufValue[] | undefined {
    const e = this.entry(key, `array of ${want}`, (t) => t === GgufValueType.ARRAY);
    if (e === undefined) return undefined;
    const arr = e.value as GgufArray;
    if (!itemTypes.has(arr.itemType)) this.fail(key, `is an array of ${GgufValueType[arr.itemType] ?? arr.itemType}, expected ${want}`);
    return arr.items;
  }
  stringArray(key: string): string[] | undefined {
    return this.array(key, new Set([GgufValueType.STRING]), 'strings') as string[] | undefined;
  }
  numberArray(key: string): number[] | undefined {
    const items = this.array(key, new Set([...INTEGER_TYPES, ...FLOAT_TYPES]), 'numbers');
    if (items === undefined) return undefined;
    if (items.some((v) => typeof v !== 'number')) this.fail(key, 'holds values out of range');
    return items as number[];
  }
}

function splitField(shard: GgufShard, key: string): number {
  const e = shard.header.metadata.get(key);
  if (e === undefined || !INTEGER_TYPES.has(e.type) || typeof e.value !== 'number') {
    throw new ModelLoadError(`${shard.path}: split shard without an integer "${key}"`, { code: 'invalid_gguf' });
  }
  return e.value;
}

/**
 * The shortest decimal that rounds to this float32 (9.99999975e-06 → 1e-5): what the value was
 * written from, and what config.json would say, so configs from GGUF and from HF compare equal.
 */
function shortestF32Decimal(v: number): number {
  if (!Number.isFinite(v)) return v;
  for (let p = 1; p <= 9; p++) {
    const x = Number(v.toPrecision(p));
    if (Math.fround(x) === v) return x;
  }
  return v;
}
