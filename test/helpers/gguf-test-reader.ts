/**
 * A minimal GGUF reader for tests of the writer and the quantizers (independent of the engine's
 * GGUF loader): header, every metadata value with its type, tensor infos, and each tensor's bytes.
 */
import { readFileSync } from 'node:fs';

export interface TestGgufValue {
  type: number;
  /** Arrays: the item type. */
  itemType?: number;
  value: unknown;
}

export interface TestGgufTensor {
  name: string;
  ne: number[];
  type: number;
  offset: number;
  bytes: Uint8Array;
}

export interface TestGguf {
  version: number;
  meta: Map<string, TestGgufValue>;
  keys: string[];
  tensors: TestGgufTensor[];
  tensor(name: string): TestGgufTensor;
}

const SIZES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

export function readTestGguf(path: string, tensorBytes: (type: number, ne: number[]) => number): TestGguf {
  const buf = readFileSync(path);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let p = 0;
  const u32 = () => ((p += 4), dv.getUint32(p - 4, true));
  const u64 = () => ((p += 8), Number(dv.getBigUint64(p - 8, true)));
  const str = () => {
    const n = u64();
    p += n;
    return buf.subarray(p - n, p).toString('utf8');
  };
  const scalar = (t: number): unknown => {
    const at = p;
    if (t === 8) return str();
    const size = SIZES[t];
    if (size === undefined) throw new Error(`bad GGUF value type ${t} at ${at}`);
    p += size;
    switch (t) {
      case 0: return dv.getUint8(at);
      case 1: return dv.getInt8(at);
      case 2: return dv.getUint16(at, true);
      case 3: return dv.getInt16(at, true);
      case 4: return dv.getUint32(at, true);
      case 5: return dv.getInt32(at, true);
      case 6: return dv.getFloat32(at, true);
      case 7: return dv.getUint8(at) !== 0;
      case 10: return dv.getBigUint64(at, true);
      case 11: return dv.getBigInt64(at, true);
      default: return dv.getFloat64(at, true);
    }
  };
  if (u32() !== 0x46554747) throw new Error('not a GGUF file');
  const version = u32();
  const nTensors = u64();
  const nKv = u64();
  const meta = new Map<string, TestGgufValue>();
  const keys: string[] = [];
  for (let i = 0; i < nKv; i++) {
    const key = str();
    const type = u32();
    keys.push(key);
    if (type === 9) {
      const itemType = u32();
      const n = u64();
      const values: unknown[] = [];
      for (let j = 0; j < n; j++) values.push(scalar(itemType));
      meta.set(key, { type, itemType, value: values });
    } else meta.set(key, { type, value: scalar(type) });
  }
  const infos: Array<Omit<TestGgufTensor, 'bytes'>> = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const nd = u32();
    const ne: number[] = [];
    for (let d = 0; d < nd; d++) ne.push(u64());
    infos.push({ name, ne, type: u32(), offset: u64() });
  }
  const align = (meta.get('general.alignment')?.value as number | undefined) ?? 32;
  const dataStart = Math.ceil(p / align) * align;
  const tensors = infos.map((t) => {
    const start = dataStart + t.offset;
    const n = tensorBytes(t.type, t.ne);
    if (start + n > buf.length) throw new Error(`tensor ${t.name} runs past the end of ${path}`);
    return { ...t, bytes: new Uint8Array(buf.buffer, buf.byteOffset + start, n) };
  });
  return {
    version,
    meta,
    keys,
    tensors,
    tensor(name: string) {
      const t = tensors.find((x) => x.name === name);
      if (!t) throw new Error(`no tensor ${name} in ${path}`);
      return t;
    },
  };
}
