/**
 * The WebGPU backend (`--device webgpu`): ComputeBackend on a GPU through Dawn (the optional
 * `webgpu` package), for Vulkan, Metal and Direct3D 12 devices alike.
 *
 * Where data lives: weights and the paged KV pool are uploaded once into GPU buffers. Activation
 * arrays (the model's scratch buffers, the runner's hidden and logits buffers) get a device
 * *mirror* the first time an op writes them; from then on the device copy is the truth, ops read
 * and write the mirrors, and the host copy is refreshed only by {@link WebGpuBackend.toHost} (the
 * runner asks for the logits, the one read back of a step). Per-call host inputs (token ids, slot
 * mappings, block tables) are copied into each batch's upload arena. Parameter arrays (embedding
 * table, norm weights) are uploaded at their first use and must not change afterwards.
 *
 * Ops record commands; the commands of a step go to the GPU thread (gpu-thread.ts) as one batch
 * and one submit. The backend blocks (Atomics.wait) only when it needs data back, so every op stays
 * synchronous as the contract requires. Arguments are validated here, before anything is
 * recorded, with the CPU backend's error classes; a device error is reported by the next read back.
 *
 * The sampler's row passes run on the CPU backend over the read-back logits (as the contract
 * allows). Quantized GGML weights (the types of quant-kernels.ts) are uploaded as their blocks and
 * decoded inside the kernels; other quantized types are refused with an error naming the type.
 */
import type { Worker } from 'node:worker_threads';
import { startModuleWorker } from '../../shared/worker-thread.js';
import {
  DType,
  MatmulPrecision,
  type BackendDescription,
  type ComputeBackend,
  type KvCacheHandle,
  type LinearPart,
  type PackedLinearHandle,
  type QuantLinearPart,
  type WeightArray,
} from '../backend.js';
import { ggmlRowBytes, ggmlTypeName, type GgmlType } from '../quant.js';
import { createCpuBackend } from '../native.js';
import { GATHER_KERNELS, LINEAR_KERNELS, LINEAR_ROWS_MAX, LINEAR_SERIAL_ROWS, LINEAR_TILE, MAX_HEAD_DIM, type KernelName, type WeightStorage } from './kernels.js';
import { LANES } from './lanes.js';
import { GPU_QUANT_TYPES, gpuQuantBlockSize, quantKernelNames, quantLanes, QUANT_TILE, QUANT_WORKGROUP, repackQuant } from './quant-kernels.js';
import { CTRL, TEXT_BYTES, type AdapterReport, type Binding, type Command } from './protocol.js';

/** How long the GPU thread may take to open the device and compile the kernels. */
const INIT_TIMEOUT_MS = 120_000;
/** How long one batch may take (SwiftShader runs a large prefill slowly). */
const BATCH_TIMEOUT_MS = 600_000;
/** Recorded commands after which a batch is posted without waiting (a long run without read back). */
const MAX_PENDING = 4096;
/** GPU-thread scratch slots: gate/up intermediates and copies of aliased inputs. */
const TEMP_GATE = 1;
const TEMP_UP = 2;
const TEMP_ALIAS = 10;

interface PackInfo {
  /** type: the GGML type of a quantized part (quantSrc: its source array), null for float. */
  parts: Array<{ w: number; bias: number | null; n: number; type: GgmlType | null; quantSrc?: Uint8Array }>;
  K: number;
  bf16: boolean;
  /** How float parts' weights are stored (quantized parts: their type decides). */
  storage: WeightStorage;
  gateUp: boolean;
  freed: boolean;
}

interface CacheInfo {
  id: number;
  layers: number;
  numBlocks: number;
  blockSize: number;
  kvHeads: number;
  headDim: number;
  bf16: boolean;
  freed: boolean;
}

/** A view argument of a kernel: its binding and the element offset of the view inside it. */
interface Arg {
  b: Binding;
  off: number;
}

function checkInt(name: string, v: number, min: number): void {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new TypeError(`${name} must be an integer`);
  if (v < min) throw new RangeError(`${name} must be >= ${min}, got ${v}`);
}

function checkArray(name: string, a: unknown, ctor: typeof Float32Array | typeof Int32Array | typeof Uint16Array, min: number): void {
  if (!(a instanceof ctor)) throw new TypeError(`${name} must be a ${ctor.name}`);
  if (a.length < min) throw new RangeError(`${name} has ${a.length} elements, needs at least ${min}`);
}

function checkWeight(name: string, w: unknown, dtype: DType, size: number): void {
  if (dtype === DType.F32) checkArray(name, w, Float32Array, size);
  else if (dtype === DType.F16 || dtype === DType.BF16) checkArray(name, w, Uint16Array, size);
  else throw new RangeError(`${name}: unknown dtype ${String(dtype)}`);
  if ((w as WeightArray).length !== size) throw new RangeError(`${name} has ${(w as WeightArray).length} elements, must have exactly ${size}`);
}

function bytesOf(a: Float32Array | Int32Array, n: number): Uint8Array {
  // A fresh copy: the command is posted (structured clone copies a view's whole buffer).
  return new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + n * 4));
}

/** Kernel arguments: u32 words, floats stored as their bits. */
function args(values: number[], floats: number[] = []): Binding {
  const u = new Uint32Array(values.length);
  const f = new Float32Array(u.buffer);
  values.forEach((v, i) => {
    if (floats.includes(i)) f[i] = v;
    else u[i] = v;
  });
  return { kind: 'data', data: new Uint8Array(u.buffer) };
}

const groups = (n: number, per: number): number => Math.ceil(n / per);

/** Kernel choices of a WebGPU backend that never change a bit (see the constructor). */
export interface WebGpuOptions {
  subgroups?: boolean;
  serial?: boolean;
}

/** How each weight dtype is kept on the GPU (kernels.ts): 16-bit values stay 16-bit. */
const STORAGE: Record<DType, WeightStorage> = { [DType.F32]: 'f32', [DType.F16]: 'f16', [DType.BF16]: 'bf16' };

export class WebGpuBackend implements ComputeBackend {
  readonly adapter: AdapterReport;
  readonly quantTypes = GPU_QUANT_TYPES;
  private readonly worker: Worker;
  private readonly ctrl: Int32Array;
  private readonly text: Uint8Array;
  private readonly cpu: ComputeBackend;
  private seq = 1;
  private cmds: Command[] = [];
  private nextId = 1;
  private reply = new SharedArrayBuffer(0);
  private readonly mirrors = new WeakMap<ArrayBufferLike, number>();
  /** A mirror's device memory is freed once its host buffer is garbage-collected. */
  private readonly mirrorReaper = new FinalizationRegistry<number>((id) => this.cmds.push({ op: 'free', what: 'mirror', id }));
  private readonly paramIds = new WeakMap<object, number>();
  private readonly packs = new WeakMap<object, PackInfo>();
  private readonly caches = new WeakMap<object, CacheInfo>();
  /** Quantized matrices on the device by source array, with how many packs and tables use each. */
  private readonly quantUploads = new WeakMap<Uint8Array, { id: number; refs: number }>();
  /** Quantized embedding tables' device copies. */
  private readonly quantTables = new WeakMap<Uint8Array, number>();

  /** Whether float linear ops, RMSNorm and attention run their serial kernels (kernels.ts): for a fallback adapter. */
  private readonly serial: boolean;

  /**
   * subgroups: false keeps the kernels off subgroups even where the adapter has them; serial picks
   * the float linear, RMSNorm and attention kernels (default: serial on a fallback adapter only).
   * Neither changes a bit: tests set them to compare the kernels.
   */
  constructor(threads: number, options: WebGpuOptions = {}) {
    const ctrl = new SharedArrayBuffer(CTRL.WORDS * 4);
    const text = new SharedArrayBuffer(TEXT_BYTES);
    this.ctrl = new Int32Array(ctrl);
    this.text = new Uint8Array(text);
    this.worker = startModuleWorker(new URL('./gpu-thread.js', import.meta.url), { ctrl, text, subgroups: options.subgroups ?? true });
    // The GPU thread must not keep the process alive; the engine's lifetime decides.
    this.worker.unref();
    try {
      this.wait(1, INIT_TIMEOUT_MS, 'open the WebGPU device');
    } catch (err) {
      void this.worker.terminate();
      throw err;
    }
    this.adapter = JSON.parse(this.readText()) as AdapterReport;
    this.serial = options.serial ?? this.adapter.fallback;
    this.cpu = createCpuBackend(threads);
  }

  describe(): BackendDescription {
    const a = this.adapter;
    const name = [a.vendor, a.device, a.architecture, a.description].filter(Boolean).join(' / ');
    return { device: 'webgpu', threads: 1, kernels: name || 'unnamed adapter', limits: a.limits, features: a.features };
  }

  // ---- batches and waiting ----

  private readText(): string {
    const n = Atomics.load(this.ctrl, CTRL.ERROR_LEN);
    return new TextDecoder().decode(this.text.slice(0, n));
  }

  private wait(seq: number, timeoutMs: number, what: string): void {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const done = Atomics.load(this.ctrl, CTRL.DONE);
      if (done >= seq) break;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`WebGPU backend: the GPU thread did not ${what} within ${timeoutMs / 1000} s`);
      Atomics.wait(this.ctrl, CTRL.DONE, done, Math.min(left, 1000));
    }
    if (Atomics.load(this.ctrl, CTRL.ERROR) !== 0) throw new Error(this.readText());
  }

  /** Post the recorded commands as one batch; returns its sequence number. */
  private post(): number {
    this.seq++;
    this.worker.postMessage({ type: 'batch', seq: this.seq, cmds: this.cmds, reply: this.reply });
    this.cmds = [];
    return this.seq;
  }

  private record(c: Command): void {
    this.cmds.push(c);
    if (this.cmds.length >= MAX_PENDING) this.post();
  }

  /** Run everything recorded so far and wait for it (errors surface here). */
  finish(): void {
    this.wait(this.post(), BATCH_TIMEOUT_MS, 'finish a batch');
  }

  /**
   * Make the host contents of `a` current: copy back what device ops wrote into it. Arrays no
   * device op wrote are already current.
   */
  toHost(a: Float32Array): void {
    if (!(a instanceof Float32Array)) throw new TypeError('toHost takes a Float32Array');
    const id = this.mirrors.get(a.buffer);
    if (id === undefined || a.length === 0) return;
    if (this.reply.byteLength < a.byteLength) this.reply = new SharedArrayBuffer(a.byteLength);
    this.cmds.push({ op: 'read', id, byteOffset: a.byteOffset, byteLength: a.byteLength, replyOffset: 0 });
    this.finish();
    new Uint8Array(a.buffer, a.byteOffset, a.byteLength).set(new Uint8Array(this.reply, 0, a.byteLength));
  }

  /**
   * The host arrays only: the device's working buffers are allocated at load and do not grow. A
   * mirrored array's host copy is stale anyway (toHost refreshes it), and the host-side ops run on
   * the CPU backend, which hands back its own scratch.
   */
  releaseWorkingMemory(arrays: ArrayBufferView[]): number {
    return this.cpu.releaseWorkingMemory(arrays);
  }

  // ---- bindings ----

  /** A view read by a kernel: its mirror when the device owns it, else the first n elements copied. */
  private input(a: Float32Array | Int32Array, n: number): Arg {
    const id = this.mirrors.get(a.buffer);
    if (id !== undefined) return { b: { kind: 'mirror', id }, off: a.byteOffset / 4 };
    return { b: { kind: 'data', data: bytesOf(a, n) }, off: 0 };
  }

  /** A view written by a kernel: its mirror, made (with the host contents) on first write. */
  private output(a: Float32Array): Arg {
    let id = this.mirrors.get(a.buffer);
    if (id === undefined) {
      id = this.nextId++;
      this.mirrors.set(a.buffer, id);
      this.mirrorReaper.register(a.buffer, id);
      this.record({ op: 'mirror', id, init: new Uint8Array(a.buffer.slice(0)) });
    }
    return { b: { kind: 'mirror', id }, off: a.byteOffset / 4 };
  }

  /**
   * An input that may share a buffer with an output of the same kernel (WebGPU forbids binding a
   * buffer writable and readable at once): such an input is copied to a scratch buffer first.
   */
  private inputBeside(a: Float32Array, n: number, outs: Arg[], slot: number): Arg {
    const x = this.input(a, n);
    if (x.b.kind !== 'mirror' || !outs.some((o) => o.b.kind === 'mirror' && o.b.id === (x.b as { id: number }).id)) return x;
    const tmp: Binding = { kind: 'temp', slot, bytes: n * 4 };
    if (n > 0) this.record({ op: 'copy', from: x.b, fromOffset: x.off * 4, to: tmp, toOffset: 0, bytes: n * 4 });
    return { b: tmp, off: 0 };
  }

  /** A parameter array (a norm weight; an embedding table in its storage) uploaded once, keyed by the array object. */
  private param(a: WeightArray, dtype: DType): number {
    let id = this.paramIds.get(a);
    if (id === undefined) {
      id = this.uploadWeight(a, dtype);
      this.paramIds.set(a, id);
    }
    return id;
  }

  /** Weights as the GPU keeps them: 16-bit checkpoints as they are (a copy), float32 as float32. */
  private uploadWeight(w: WeightArray, dtype: DType): number {
    return this.upload(dtype === DType.F32 ? Float32Array.from(w as Float32Array) : Uint16Array.from(w as Uint16Array));
  }

  private upload(f: Float32Array | Uint32Array | Uint16Array): number {
    const id = this.nextId++;
    this.record({ op: 'param', id, data: new Uint8Array(f.buffer, f.byteOffset, f.byteLength) });
    return id;
  }

  private dispatch(kernel: KernelName, g: [number, number, number], bindings: Binding[]): void {
    const lim = this.adapter.limits.maxComputeWorkgroupsPerDimension!;
    if (g.some((n) => n > lim)) throw new RangeError(`${kernel}: ${g.join(' x ')} workgroups exceed the adapter's ${lim} per dimension (lower --max-num-batched-tokens)`);
    if (g.some((n) => n === 0)) return;
    this.record({ op: 'dispatch', kernel, groups: g, bindings });
  }

  // ---- the ops ----

  embedding(out: Float32Array, table: WeightArray, tableDtype: DType, ids: Int32Array, hidden: number): void {
    checkInt('hidden', hidden, 1);
    checkArray('ids', ids, Int32Array, 0);
    const T = ids.length;
    checkArray('out', out, Float32Array, T * hidden);
    if (!(table instanceof Float32Array || table instanceof Uint16Array) || table.length % hidden !== 0) throw new RangeError('table must be [vocab, hidden]');
    checkWeight('table', table, tableDtype, table.length);
    const vocab = table.length / hidden;
    for (let t = 0; t < T; t++) if (!(ids[t]! >= 0 && ids[t]! < vocab)) throw new RangeError(`ids[${t}] = ${ids[t]} is outside the vocabulary [0, ${vocab})`);
    if (T === 0) return;
    this.floatRows(out, STORAGE[tableDtype], this.param(table, tableDtype), ids, hidden);
  }

  /** out[t, :] = row ids[t] of the uploaded float table `table` (checked by the caller), widened. */
  private floatRows(out: Float32Array, storage: WeightStorage, table: number, ids: Int32Array, hidden: number): void {
    const T = ids.length;
    const o = this.output(out);
    this.dispatch(GATHER_KERNELS[storage], [groups(hidden, 64), T, 1], [args([T, hidden, o.off, 0]), { kind: 'data', data: bytesOf(ids, T) }, { kind: 'param', id: table }, o.b]);
  }

  gatherRows(out: Float32Array, x: Float32Array, rows: Int32Array, R: number, H: number): void {
    checkInt('R', R, 0);
    checkInt('H', H, 1);
    checkArray('rows', rows, Int32Array, R);
    checkArray('x', x, Float32Array, 0);
    checkArray('out', out, Float32Array, R * H);
    const xRows = Math.floor(x.length / H);
    for (let r = 0; r < R; r++) if (!(rows[r]! >= 0 && rows[r]! < xRows)) throw new RangeError(`rows[${r}] = ${rows[r]} is outside [0, ${xRows})`);
    if (R === 0) return;
    const o = this.output(out);
    const xi = this.inputBeside(x, xRows * H, [o], TEMP_ALIAS);
    this.dispatch('gatherRows', [groups(H, 64), R, 1], [args([R, H, o.off, xi.off]), { kind: 'data', data: bytesOf(rows, R) }, xi.b, o.b]);
  }

  rmsnorm(out: Float32Array, x: Float32Array, weight: Float32Array, M: number, H: number, eps: number): void {
    checkInt('M', M, 0);
    checkInt('H', H, 1);
    checkArray('x', x, Float32Array, M * H);
    checkArray('out', out, Float32Array, M * H);
    checkWeight('weight', weight, DType.F32, H);
    if (!(eps >= 0)) throw new RangeError(`eps must be >= 0, got ${eps}`);
    if (M === 0) return;
    const o = this.output(out);
    const xi = this.inputBeside(x, M * H, [o], TEMP_ALIAS);
    const b: Binding[] = [args([H, xi.off, o.off, eps, M], [3]), xi.b, { kind: 'param', id: this.param(weight, DType.F32) }, o.b];
    // The same bits either way: the choice is speed only.
    if (this.serial) this.dispatch('rmsnormSerial', [groups(M, 64), 1, 1], b);
    else this.dispatch('rmsnorm', [M, 1, 1], b);
  }

  ropeTable(cosSin: Float32Array, positions: Int32Array, T: number, invFreq: Float32Array): void {
    checkInt('T', T, 0);
    checkArray('positions', positions, Int32Array, T);
    checkArray('invFreq', invFreq, Float32Array, 1);
    const half = invFreq.length;
    const D = 2 * half;
    checkArray('cosSin', cosSin, Float32Array, T * D);
    // Angles in double precision on the host (WGSL has no float64), then one upload per step.
    for (let t = 0; t < T; t++) {
      for (let i = 0; i < half; i++) {
        const a = positions[t]! * invFreq[i]!;
        cosSin[t * D + i] = Math.cos(a);
        cosSin[t * D + half + i] = Math.sin(a);
      }
    }
    if (T === 0) return;
    const id = this.mirrors.get(cosSin.buffer);
    if (id === undefined) this.output(cosSin);
    else this.record({ op: 'copy', from: { kind: 'data', data: bytesOf(cosSin, T * D) }, fromOffset: 0, to: { kind: 'mirror', id }, toOffset: cosSin.byteOffset, bytes: T * D * 4 });
  }

  rope(q: Float32Array, k: Float32Array, cosSin: Float32Array, T: number, nHeads: number, nKvHeads: number, headDim: number): void {
    checkInt('T', T, 0);
    checkInt('nHeads', nHeads, 1);
    checkInt('nKvHeads', nKvHeads, 1);
    checkInt('headDim', headDim, 2);
    if (headDim % 2 !== 0) throw new RangeError(`headDim must be even, got ${headDim}`);
    checkArray('q', q, Float32Array, T * nHeads * headDim);
    checkArray('k', k, Float32Array, T * nKvHeads * headDim);
    checkArray('cosSin', cosSin, Float32Array, T * headDim);
    if (q.buffer === k.buffer) throw new RangeError('rope on webgpu: q and k must be separate buffers');
    if (T === 0) return;
    const qo = this.output(q);
    const ko = this.output(k);
    const cs = this.inputBeside(cosSin, T * headDim, [qo, ko], TEMP_ALIAS);
    this.dispatch('rope', [groups(((nHeads + nKvHeads) * headDim) / 2, 64), T, 1], [args([T, nHeads, nKvHeads, headDim, qo.off, ko.off, cs.off]), cs.b, qo.b, ko.b]);
  }

  siluMul(out: Float32Array, gate: Float32Array, up: Float32Array, M: number, I: number, gateStride: number, upStride: number): void {
    this.gatedMul('siluMul', out, gate, up, M, I, gateStride, upStride);
  }

  private gatedMul(kernel: 'siluMul' | 'geluTanhMul', out: Float32Array, gate: Float32Array, up: Float32Array, M: number, I: number, gateStride: number, upStride: number): void {
    checkInt('M', M, 0);
    checkInt('I', I, 1);
    checkInt('gateStride', gateStride, I);
    checkInt('upStride', upStride, I);
    const span = (stride: number): number => (M === 0 ? 0 : (M - 1) * stride + I);
    checkArray('gate', gate, Float32Array, span(gateStride));
    checkArray('up', up, Float32Array, span(upStride));
    checkArray('out', out, Float32Array, M * I);
    if (M === 0) return;
    const o = this.output(out);
    const g = this.inputBeside(gate, span(gateStride), [o], TEMP_ALIAS);
    const u = this.inputBeside(up, span(upStride), [o], TEMP_ALIAS + 1);
    this.dispatch(kernel, [groups(I, 64), M, 1], [args([M, I, g.off, u.off, o.off, gateStride, upStride]), g.b, u.b, o.b]);
  }

  geluTanhMul(out: Float32Array, gate: Float32Array, up: Float32Array, M: number, I: number, gateStride: number, upStride: number): void {
    this.gatedMul('geluTanhMul', out, gate, up, M, I, gateStride, upStride);
  }

  softcap(out: Float32Array, x: Float32Array, n: number, cap: number): void {
    if (!(cap > 0 && Number.isFinite(cap))) throw new RangeError(`cap must be > 0, got ${cap}`);
    this.map(out, x, n, 1, cap);
  }

  scale(out: Float32Array, x: Float32Array, n: number, s: number): void {
    if (!Number.isFinite(s)) throw new RangeError(`s must be finite, got ${s}`);
    this.map(out, x, n, 0, s);
  }

  private map(out: Float32Array, x: Float32Array, n: number, mode: number, c: number): void {
    checkInt('n', n, 0);
    checkArray('x', x, Float32Array, n);
    checkArray('out', out, Float32Array, n);
    if (n === 0) return;
    const o = this.output(out);
    const xi = this.inputBeside(x, n, [o], TEMP_ALIAS);
    this.dispatch('map', [groups(n, 256), 1, 1], [args([n, xi.off, o.off, mode, c], [4]), xi.b, o.b]);
  }

  add(out: Float32Array, a: Float32Array, b: Float32Array, n: number): void {
    checkInt('n', n, 0);
    checkArray('a', a, Float32Array, n);
    checkArray('b', b, Float32Array, n);
    checkArray('out', out, Float32Array, n);
    if (n === 0) return;
    const o = this.output(out);
    const ai = this.inputBeside(a, n, [o], TEMP_ALIAS);
    const bi = this.inputBeside(b, n, [o], TEMP_ALIAS + 1);
    this.dispatch('add', [groups(n, 256), 1, 1], [args([n, ai.off, bi.off, o.off]), ai.b, bi.b, o.b]);
  }

  // ---- linear layers ----

  private newPack(info: Omit<PackInfo, 'freed'>): PackedLinearHandle {
    const h = Object.freeze({}) as PackedLinearHandle;
    this.packs.set(h, { ...info, freed: false });
    // Weights can be large: hand them to the GPU thread now rather than holding copies.
    if (this.cmds.length > 0) this.post();
    return h;
  }

  private checkPrecision(wDtype: DType, precision: MatmulPrecision): boolean {
    if (precision !== MatmulPrecision.F32 && precision !== MatmulPrecision.BF16) throw new RangeError(`unknown precision ${String(precision)}`);
    if (precision === MatmulPrecision.BF16 && wDtype !== DType.BF16) throw new RangeError('BF16 precision needs BF16 weights');
    return precision === MatmulPrecision.BF16;
  }

  packLinear(parts: LinearPart[], wDtype: DType, K: number, precision: MatmulPrecision): PackedLinearHandle {
    checkInt('K', K, 1);
    const bf16 = this.checkPrecision(wDtype, precision);
    if (!Array.isArray(parts) || parts.length === 0) throw new RangeError('packLinear needs at least one part');
    for (const [i, p] of parts.entries()) {
      checkInt(`parts[${i}].n`, p.n, 1);
      checkWeight(`parts[${i}].w`, p.w, wDtype, p.n * K);
      if (p.bias) checkWeight(`parts[${i}].bias`, p.bias, DType.F32, p.n);
    }
    const ids = parts.map((p) => ({ w: this.uploadWeight(p.w, wDtype), bias: p.bias ? this.upload(Float32Array.from(p.bias)) : null, n: p.n, type: null }));
    return this.newPack({ parts: ids, K, bf16, storage: STORAGE[wDtype], gateUp: false });
  }

  packGateUp(gate: WeightArray, up: WeightArray, wDtype: DType, I: number, K: number, precision: MatmulPrecision): PackedLinearHandle {
    checkInt('I', I, 1);
    checkInt('K', K, 1);
    const bf16 = this.checkPrecision(wDtype, precision);
    checkWeight('gate', gate, wDtype, I * K);
    checkWeight('up', up, wDtype, I * K);
    const parts = [gate, up].map((w) => ({ w: this.uploadWeight(w, wDtype), bias: null, n: I, type: null }));
    return this.newPack({ parts, K, bf16, storage: STORAGE[wDtype], gateUp: true });
  }

  /**
   * The device copy of quantized rows (quant-kernels.ts layout), uploaded once per source array
   * and shared by its users (a tied output head and the embedding table are one tensor).
   */
  private quantUpload(w: Uint8Array, type: GgmlType, rows: number, k: number): number {
    let u = this.quantUploads.get(w);
    if (!u) {
      const words = repackQuant(type, w, rows, k);
      const lim = Math.min(this.adapter.limits.maxStorageBufferBindingSize!, this.adapter.limits.maxBufferSize!);
      if (words.byteLength > lim) throw new RangeError(`a ${ggmlTypeName(type)} matrix of ${rows} x ${k} takes ${words.byteLength} bytes on the GPU, more than the adapter binds in one buffer (${lim})`);
      u = { id: this.upload(words), refs: 0 };
      this.quantUploads.set(w, u);
    }
    u.refs++;
    return u.id;
  }

  private checkQuant(name: string, w: unknown, type: GgmlType, n: number, K: number): void {
    if (!(w instanceof Uint8Array)) throw new TypeError(`${name} must be a Uint8Array of GGML blocks`);
    const block = gpuQuantBlockSize(type);
    if (K % block !== 0) throw new RangeError(`${name}: K = ${K} is not a multiple of the ${ggmlTypeName(type)} block of ${block}`);
    const bytes = n * ggmlRowBytes(type, K);
    if (w.byteLength !== bytes) throw new RangeError(`${name} has ${w.byteLength} bytes, ${n} rows of ${K} ${ggmlTypeName(type)} values take ${bytes}`);
  }

  packLinearQuant(parts: QuantLinearPart[], K: number): PackedLinearHandle {
    checkInt('K', K, 1);
    if (!Array.isArray(parts) || parts.length === 0) throw new RangeError('packLinearQuant needs at least one part');
    for (const [i, p] of parts.entries()) {
      checkInt(`parts[${i}].n`, p.n, 1);
      this.checkQuant(`parts[${i}].w`, p.w, p.type, p.n, K);
      if (p.bias) checkWeight(`parts[${i}].bias`, p.bias, DType.F32, p.n);
    }
    const ids = parts.map((p) => ({ w: this.quantUpload(p.w, p.type, p.n, K), bias: p.bias ? this.upload(Float32Array.from(p.bias)) : null, n: p.n, type: p.type, quantSrc: p.w }));
    return this.newPack({ parts: ids, K, bf16: false, storage: 'f32', gateUp: false });
  }

  packGateUpQuant(gate: Uint8Array, gateType: GgmlType, up: Uint8Array, upType: GgmlType, I: number, K: number): PackedLinearHandle {
    checkInt('I', I, 1);
    checkInt('K', K, 1);
    this.checkQuant('gate', gate, gateType, I, K);
    this.checkQuant('up', up, upType, I, K);
    const parts = ([[gate, gateType], [up, upType]] as const).map(([w, type]) => ({ w: this.quantUpload(w, type, I, K), bias: null, n: I, type, quantSrc: w }));
    return this.newPack({ parts, K, bf16: false, storage: 'f32', gateUp: true });
  }

  embeddingQuant(out: Float32Array, table: Uint8Array, type: GgmlType, ids: Int32Array, hidden: number): void {
    checkInt('hidden', hidden, 1);
    checkArray('ids', ids, Int32Array, 0);
    const T = ids.length;
    checkArray('out', out, Float32Array, T * hidden);
    if (!(table instanceof Uint8Array)) throw new TypeError('table must be a Uint8Array of GGML blocks');
    gpuQuantBlockSize(type);
    const rowBytes = ggmlRowBytes(type, hidden);
    if (table.byteLength % rowBytes !== 0) throw new RangeError(`table of ${table.byteLength} bytes is not whole rows of ${hidden} ${ggmlTypeName(type)} values`);
    const vocab = table.byteLength / rowBytes;
    for (let t = 0; t < T; t++) if (!(ids[t]! >= 0 && ids[t]! < vocab)) throw new RangeError(`ids[${t}] = ${ids[t]} is outside the vocabulary [0, ${vocab})`);
    if (T === 0) return;
    // The lookup holds the table for the backend's life, as the float tables' parameters are.
    let id = this.quantTables.get(table);
    if (id === undefined) {
      id = this.quantUpload(table, type, vocab, hidden);
      this.quantTables.set(table, id);
    }
    this.quantRows(out, type, id, ids, hidden);
  }

  /** out[t, :] = dequantized row ids[t] of the uploaded quantized table `table` (checked by the caller). */
  private quantRows(out: Float32Array, type: GgmlType, table: number, ids: Int32Array, hidden: number): void {
    const T = ids.length;
    const o = this.output(out);
    this.dispatch(quantKernelNames(type).embedding, [groups(hidden / 32, 64), T, 1], [args([T, hidden, o.off]), { kind: 'data', data: bytesOf(ids, T) }, { kind: 'param', id: table }, o.b]);
  }

  embeddingPacked(out: Float32Array, w: PackedLinearHandle, ids: Int32Array): void {
    const p = this.packs.get(w);
    if (!p) throw new TypeError('not a pack of this backend');
    if (p.freed) throw new RangeError('pack was freed');
    const part = p.parts[0]!;
    if (p.gateUp || p.parts.length !== 1) throw new RangeError(`embeddingPacked needs a pack of one part, not ${p.parts.length}${p.gateUp ? ' (gate/up)' : ''}`);
    checkArray('ids', ids, Int32Array, 0);
    const T = ids.length;
    checkArray('out', out, Float32Array, T * p.K);
    for (let t = 0; t < T; t++) if (!(ids[t]! >= 0 && ids[t]! < part.n)) throw new RangeError(`ids[${t}] = ${ids[t]} is outside the pack's rows [0, ${part.n})`);
    if (T === 0) return;
    // The pack's upload is the table embeddingQuant or embedding would upload (quantUpload or
    // uploadWeight: the same layout).
    if (part.type !== null) this.quantRows(out, part.type, part.w, ids, p.K);
    else this.floatRows(out, p.storage, part.w, ids, p.K);
  }

  packedLinearFree(w: PackedLinearHandle): void {
    const p = this.packs.get(w);
    if (!p) throw new TypeError('not a pack of this backend');
    if (p.freed) return;
    p.freed = true;
    for (const part of p.parts) {
      if (part.quantSrc) {
        const u = this.quantUploads.get(part.quantSrc)!;
        if (--u.refs === 0) {
          this.quantUploads.delete(part.quantSrc);
          this.record({ op: 'free', what: 'param', id: part.w });
        }
      } else {
        this.record({ op: 'free', what: 'param', id: part.w });
      }
      if (part.bias !== null) this.record({ op: 'free', what: 'param', id: part.bias });
    }
  }

  /** One part: out[m, :] (+)= x[m, :] . w^T (+ bias). */
  private linearPart(part: PackInfo['parts'][number], p: PackInfo, x: Arg, M: number, out: Arg, accumulate: boolean): void {
    const K = p.K;
    const flags = (part.bias !== null ? 1 : 0) | (accumulate ? 2 : 0) | (p.bf16 ? 4 : 0);
    const w: Binding = { kind: 'param', id: part.w };
    const bias: Binding = part.bias !== null ? { kind: 'param', id: part.bias } : w;
    if (part.type !== null) {
      // Workgroups of 64 / L columns, folded into z past the grid's x limit, and a tile of rows
      // (both tiles give the same bits: the choice is speed only).
      const lanes = quantLanes(K);
      const wgs = groups(part.n * lanes, QUANT_WORKGROUP);
      const gx = Math.min(wgs, this.adapter.limits.maxComputeWorkgroupsPerDimension!);
      const b = [args([M, part.n, K, x.off, out.off, flags, gx, lanes]), x.b, w, bias, out.b];
      const names = quantKernelNames(part.type);
      const tall = M > QUANT_TILE.short;
      this.dispatch(tall ? names.linearTall : names.linear, [gx, groups(M, tall ? QUANT_TILE.tall : QUANT_TILE.short), groups(wgs, gx)], b);
      return;
    }
    const b = [args([M, part.n, K, x.off, out.off, flags]), x.b, w, bias, out.b];
    // The kernels give the same bits (the order of lanes.ts): the choice is speed only.
    if (this.serial) this.dispatch(LINEAR_KERNELS[p.storage].serial, [groups(part.n, 64), groups(M, LINEAR_SERIAL_ROWS), 1], b);
    else if (M <= LINEAR_ROWS_MAX) this.dispatch(LINEAR_KERNELS[p.storage].rows, [groups(part.n, 256 / LANES), 1, 1], b);
    else this.dispatch(LINEAR_KERNELS[p.storage].tiled, [groups(part.n, LINEAR_TILE.cols), groups(M, LINEAR_TILE.rows), 1], b);
  }

  linearPacked(w: PackedLinearHandle, x: Float32Array, M: number, outs: Float32Array[], accumulate: boolean): void {
    const p = this.packs.get(w);
    if (!p) throw new TypeError('not a pack of this backend');
    if (p.freed) throw new RangeError('pack was freed');
    checkInt('M', M, 0);
    checkArray('x', x, Float32Array, M * p.K);
    const nOuts = p.gateUp ? 1 : p.parts.length;
    if (!Array.isArray(outs) || outs.length !== nOuts) throw new RangeError(`linearPacked: ${nOuts} outputs expected`);
    outs.forEach((o, i) => checkArray(`outs[${i}]`, o, Float32Array, M * p.parts[p.gateUp ? 0 : i]!.n));
    if (M === 0) return;
    if (p.gateUp) {
      if (accumulate) throw new RangeError('linearPacked: a gate/up pack does not accumulate on webgpu');
      const I = p.parts[0]!.n;
      const o = this.output(outs[0]!);
      const xi = this.inputBeside(x, M * p.K, [o], TEMP_ALIAS);
      const gate: Arg = { b: { kind: 'temp', slot: TEMP_GATE, bytes: M * I * 4 }, off: 0 };
      const upT: Arg = { b: { kind: 'temp', slot: TEMP_UP, bytes: M * I * 4 }, off: 0 };
      this.linearPart(p.parts[0]!, p, xi, M, gate, false);
      this.linearPart(p.parts[1]!, p, xi, M, upT, false);
      this.dispatch('siluMul', [groups(I, 64), M, 1], [args([M, I, 0, 0, o.off, I, I]), gate.b, upT.b, o.b]);
      return;
    }
    const os = outs.map((o) => this.output(o));
    const xi = this.inputBeside(x, M * p.K, os, TEMP_ALIAS);
    p.parts.forEach((part, s) => this.linearPart(part, p, xi, M, os[s]!, accumulate));
  }

  // ---- the paged KV cache and attention ----

  kvCacheBlockBytes(numLayers: number, blockSize: number, kvHeads: number, headDim: number, dtype: DType): number {
    checkInt('numLayers', numLayers, 1);
    checkInt('blockSize', blockSize, 1);
    checkInt('kvHeads', kvHeads, 1);
    checkInt('headDim', headDim, 1);
    if (dtype !== DType.F32 && dtype !== DType.BF16) throw new RangeError('KV cache dtype must be F32 or BF16');
    // Stored as float32 either way (BF16 values are rounded on write): what the device holds.
    return numLayers * 2 * blockSize * kvHeads * headDim * 4;
  }

  kvCacheCreate(numLayers: number, numBlocks: number, blockSize: number, kvHeads: number, headDim: number, dtype: DType): KvCacheHandle {
    checkInt('numBlocks', numBlocks, 1);
    const layerBytes = (this.kvCacheBlockBytes(numLayers, blockSize, kvHeads, headDim, dtype) / numLayers) * numBlocks;
    if (headDim > MAX_HEAD_DIM) throw new RangeError(`headDim ${headDim} exceeds the WebGPU attention kernel's ${MAX_HEAD_DIM}`);
    if (numBlocks * blockSize > 0x7fffffff) throw new RangeError('numBlocks * blockSize must fit an Int32 slot index');
    const lim = Math.min(this.adapter.limits.maxStorageBufferBindingSize!, this.adapter.limits.maxBufferSize!);
    if (layerBytes > lim) {
      throw new RangeError(
        `the KV pool needs ${layerBytes} bytes per layer, more than the adapter binds in one buffer (${lim}); lower --kv-cache-memory to at most ${Math.floor(lim / layerBytes * numBlocks) * (layerBytes / numBlocks) * numLayers} bytes`,
      );
    }
    const id = this.nextId++;
    this.record({ op: 'kv', id, layers: numLayers, layerBytes });
    // Surface an out-of-memory error here, at creation, rather than at the first step.
    this.finish();
    const h = Object.freeze({}) as KvCacheHandle;
    this.caches.set(h, { id, layers: numLayers, numBlocks, blockSize, kvHeads, headDim, bf16: dtype === DType.BF16, freed: false });
    return h;
  }

  private cacheInfo(cache: KvCacheHandle): CacheInfo {
    const c = this.caches.get(cache);
    if (!c) throw new TypeError('not a KV cache of this backend');
    if (c.freed) throw new RangeError('KV cache was freed');
    return c;
  }

  kvCacheFree(cache: KvCacheHandle): void {
    const c = this.cacheInfo(cache);
    c.freed = true;
    this.record({ op: 'free', what: 'kv', id: c.id });
  }

  kvCacheCommit(cache: KvCacheHandle, _maxBytes: number): boolean {
    this.cacheInfo(cache);
    // GPU memory is allocated whole at creation: nothing to commit ahead.
    return false;
  }

  kvCacheWrite(cache: KvCacheHandle, layer: number, k: Float32Array, v: Float32Array, slotMapping: Int32Array, T: number): void {
    const c = this.cacheInfo(cache);
    checkInt('layer', layer, 0);
    if (layer >= c.layers) throw new RangeError(`layer ${layer} >= ${c.layers}`);
    checkInt('T', T, 0);
    const kvDim = c.kvHeads * c.headDim;
    checkArray('k', k, Float32Array, T * kvDim);
    checkArray('v', v, Float32Array, T * kvDim);
    checkArray('slotMapping', slotMapping, Int32Array, T);
    const slots = c.numBlocks * c.blockSize;
    for (let t = 0; t < T; t++) if (!(slotMapping[t]! >= -1 && slotMapping[t]! < slots)) throw new RangeError(`slotMapping[${t}] = ${slotMapping[t]} is outside [-1, ${slots})`);
    if (T === 0) return;
    const ki = this.input(k, T * kvDim);
    const vi = this.input(v, T * kvDim);
    this.dispatch('kvWrite', [groups(kvDim, 64), T, 1], [
      args([T, kvDim, c.headDim, c.blockSize, ki.off, vi.off, c.bf16 ? 1 : 0]),
      ki.b,
      vi.b,
      { kind: 'data', data: bytesOf(slotMapping, T) },
      { kind: 'kv', id: c.id, layer },
    ]);
  }

  kvCacheCopyBlocks(cache: KvCacheHandle, src: Int32Array, dst: Int32Array): void {
    const c = this.cacheInfo(cache);
    checkArray('src', src, Int32Array, 0);
    checkArray('dst', dst, Int32Array, src.length);
    if (dst.length !== src.length) throw new RangeError('src and dst must have the same length');
    const n = src.length;
    const pairs = new Int32Array(2 * n);
    for (let i = 0; i < n; i++) {
      for (const [name, b] of [['src', src[i]!], ['dst', dst[i]!]] as const) {
        if (!(b >= 0 && b < c.numBlocks)) throw new RangeError(`${name}[${i}] = ${b} is outside [0, ${c.numBlocks})`);
      }
      pairs[2 * i] = src[i]!;
      pairs[2 * i + 1] = dst[i]!;
    }
    if (n === 0) return;
    const words = 2 * c.blockSize * c.kvHeads * c.headDim;
    const data: Binding = { kind: 'data', data: new Uint8Array(pairs.buffer) };
    for (let l = 0; l < c.layers; l++) this.dispatch('copyBlocks', [groups(words, 256), n, 1], [args([n, words]), data, { kind: 'kv', id: c.id, layer: l }]);
  }

  pagedAttention(
    out: Float32Array,
    q: Float32Array,
    cache: KvCacheHandle,
    layer: number,
    blockTables: Int32Array,
    maxBlocksPerSeq: number,
    queryStartLoc: Int32Array,
    seqLens: Int32Array,
    numSeqs: number,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    scale: number,
    slidingWindow: number,
    softcap: number,
  ): void {
    const c = this.cacheInfo(cache);
    checkInt('slidingWindow', slidingWindow, 0);
    if (!(softcap >= 0 && Number.isFinite(softcap))) throw new RangeError(`softcap must be >= 0, got ${softcap}`);
    checkInt('layer', layer, 0);
    if (layer >= c.layers) throw new RangeError(`layer ${layer} >= ${c.layers}`);
    checkInt('numSeqs', numSeqs, 0);
    checkInt('maxBlocksPerSeq', maxBlocksPerSeq, 1);
    checkInt('nHeads', nHeads, 1);
    checkInt('nKvHeads', nKvHeads, 1);
    if (nHeads % nKvHeads !== 0) throw new RangeError(`nHeads ${nHeads} is not a multiple of nKvHeads ${nKvHeads}`);
    if (nKvHeads !== c.kvHeads || headDim !== c.headDim) throw new RangeError('nKvHeads/headDim do not match the cache');
    if (!Number.isFinite(scale)) throw new RangeError('scale must be finite');
    checkArray('queryStartLoc', queryStartLoc, Int32Array, numSeqs + 1);
    checkArray('seqLens', seqLens, Int32Array, numSeqs);
    checkArray('blockTables', blockTables, Int32Array, numSeqs * maxBlocksPerSeq);
    if (queryStartLoc[0] !== 0) throw new RangeError('queryStartLoc[0] must be 0');
    const T = queryStartLoc[numSeqs]!;
    const qDim = nHeads * headDim;
    checkArray('q', q, Float32Array, T * qDim);
    checkArray('out', out, Float32Array, T * qDim);
    // Each query token's sequence and absolute position, for the kernel.
    const info = new Int32Array(2 * T);
    for (let s = 0; s < numSeqs; s++) {
      const a = queryStartLoc[s]!;
      const b = queryStartLoc[s + 1]!;
      const len = seqLens[s]!;
      if (!(b >= a && b <= T)) throw new RangeError(`queryStartLoc is not non-decreasing at ${s}`);
      if (!(len >= b - a)) throw new RangeError(`seqLens[${s}] = ${len} is shorter than its ${b - a} query tokens`);
      const blocks = Math.ceil(len / c.blockSize);
      if (blocks > maxBlocksPerSeq) throw new RangeError(`sequence ${s} needs ${blocks} blocks, more than maxBlocksPerSeq ${maxBlocksPerSeq}`);
      // Blocks wholly before the window of the first query token are never read (they may be freed).
      const firstKey = slidingWindow > 0 ? Math.max(0, len - (b - a) + 1 - slidingWindow) : 0;
      for (let i = Math.floor(firstKey / c.blockSize); i < blocks; i++) {
        const blk = blockTables[s * maxBlocksPerSeq + i]!;
        if (!(blk >= 0 && blk < c.numBlocks)) throw new RangeError(`blockTables[${s}][${i}] = ${blk} is outside [0, ${c.numBlocks})`);
      }
      for (let t = a; t < b; t++) {
        info[2 * t] = s;
        info[2 * t + 1] = len - (b - t);
      }
    }
    if (T === 0) return;
    const o = this.output(out);
    const qi = this.inputBeside(q, T * qDim, [o], TEMP_ALIAS);
    // The same bits either way: the choice is speed only.
    this.dispatch(this.serial ? 'attentionSerial' : 'attention', this.serial ? [groups(nHeads * T, 64), 1, 1] : [nHeads, T, 1], [
      args([nHeads, nKvHeads, headDim, c.blockSize, maxBlocksPerSeq, qi.off, o.off, scale, slidingWindow, softcap, T], [7, 9]),
      qi.b,
      { kind: 'kv', id: c.id, layer },
      { kind: 'data', data: bytesOf(blockTables, numSeqs * maxBlocksPerSeq) },
      { kind: 'data', data: new Uint8Array(info.buffer) },
      o.b,
    ]);
  }

  // ---- the sampler's row passes: on the CPU, over read-back logits ----

  rowArgmax(logits: Float32Array, offset: number, n: number): number {
    return this.cpu.rowArgmax(logits, offset, n);
  }

  rowSoftmaxSample(logits: Float32Array, offset: number, n: number, invTemperature: number, u: number): number {
    return this.cpu.rowSoftmaxSample(logits, offset, n, invTemperature, u);
  }

  drawRows(logits: Float32Array, n: number, rows: Int32Array, invTemperature: Float64Array, u: Float64Array, out: Int32Array): void {
    this.cpu.drawRows(logits, n, rows, invTemperature, u, out);
  }

  rowLogSumExp(logits: Float32Array, offset: number, n: number): number {
    return this.cpu.rowLogSumExp(logits, offset, n);
  }

  rowCountGreater(logits: Float32Array, offset: number, n: number, value: number): number {
    return this.cpu.rowCountGreater(logits, offset, n, value);
  }

  rowNucleusWeights(
    logits: Float32Array,
    offset: number,
    n: number,
    max: number,
    invTemperature: number,
    w: Float64Array,
    bucket: Uint16Array,
    hist: Float64Array,
    bucketsPerNat: number,
  ): number {
    return this.cpu.rowNucleusWeights(logits, offset, n, max, invTemperature, w, bucket, hist, bucketsPerNat);
  }
}
