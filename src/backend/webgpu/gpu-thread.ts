/**
 * The GPU thread of the WebGPU backend: loads the optional `webgpu` package (Dawn), opens an
 * adapter and a device, compiles the kernels, then runs the command batches the backend posts
 * (protocol.ts), in order. Every batch is one command encoder and one submit; its uploads (the
 * kernels' arguments and per-call host inputs) go through one arena buffer written before the
 * submit. Results come back only through 'read' commands, and a batch's end is announced on the
 * shared control words (Atomics.notify) after its reads and error scopes have settled.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { allKernels, type KernelName } from './kernels.js';
import { BufferUsage, MAP_READ, type GpuShaderModule, type GpuBuffer, type GpuComputePass, type GpuComputePipeline, type Gpu, type GpuAdapterInfo, type GpuDevice, type WebGpuModule } from './gpu-types.js';
import { CTRL, type AdapterReport, type BatchMessage, type Binding, type Command, type GpuThreadData } from './protocol.js';

const { ctrl: ctrlBuf, text: textBuf, subgroups: subgroupsAllowed } = workerData as GpuThreadData;
const ctrl = new Int32Array(ctrlBuf);
const text = new Uint8Array(textBuf);
const port = parentPort;
if (!port) throw new Error('the WebGPU GPU thread must run in a worker thread');

/** Storage binding offsets must be multiples of this (the largest value WebGPU allows). */
const ALIGN = 256;
const align = (n: number, a: number): number => Math.ceil(n / a) * a;

function writeText(s: string): void {
  const bytes = new TextEncoder().encode(s).subarray(0, text.length);
  text.set(bytes);
  Atomics.store(ctrl, CTRL.ERROR_LEN, bytes.length);
}

function finish(seq: number, error: string | null): void {
  if (error !== null) {
    writeText(error);
    Atomics.store(ctrl, CTRL.ERROR, 1);
  }
  Atomics.store(ctrl, CTRL.DONE, seq);
  Atomics.notify(ctrl, CTRL.DONE);
}

/** Dawn's instance lives as long as this object is referenced: keep it for the thread's life. */
let gpu: Gpu;
let device: GpuDevice;
/** Every kernel's checked module; its pipeline is made at its first dispatch (see pipeline). */
const modules = new Map<KernelName, GpuShaderModule>();
const pipelines = new Map<KernelName, GpuComputePipeline>();
const mirrors = new Map<number, GpuBuffer>();
const params = new Map<number, GpuBuffer>();
const caches = new Map<number, GpuBuffer[]>();
const temps = new Map<number, GpuBuffer>();
/** Buffers replaced while a batch was being encoded, destroyed after its submit. */
const retired: GpuBuffer[] = [];

const STORAGE = BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST;

function newBuffer(bytes: number, init?: Uint8Array): GpuBuffer {
  const b = device.createBuffer({ size: align(Math.max(bytes, 4), 4), usage: STORAGE });
  if (init && init.byteLength > 0) {
    // writeBuffer wants a multiple of 4 bytes.
    const padded = init.byteLength % 4 === 0 ? init : copyPadded(init);
    device.queue.writeBuffer(b, 0, padded);
  }
  return b;
}

function copyPadded(u: Uint8Array): Uint8Array {
  const p = new Uint8Array(align(u.byteLength, 4));
  p.set(u);
  return p;
}

function temp(slot: number, bytes: number): GpuBuffer {
  let b = temps.get(slot);
  if (!b || b.size < bytes) {
    // Commands of the batch being encoded may still use the old buffer: destroy it after the submit.
    if (b) retired.push(b);
    b = newBuffer(bytes);
    temps.set(slot, b);
  }
  return b;
}

async function init(): Promise<AdapterReport> {
  let mod: WebGpuModule;
  try {
    mod = (await import('webgpu' as string)) as WebGpuModule;
  } catch (err) {
    throw new Error(
      `--device webgpu needs the optional package "webgpu" (Dawn for Node.js), which could not be loaded: ${(err as Error).message}. Install it with \`npm install webgpu\`.`,
    );
  }
  Object.assign(globalThis, mod.globals);
  gpu = mod.create([]);
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error(await noAdapterMessage(mod));
  const l = adapter.limits;
  const wanted = [
    'maxStorageBufferBindingSize',
    'maxBufferSize',
    'maxComputeWorkgroupsPerDimension',
    'maxComputeInvocationsPerWorkgroup',
    'maxComputeWorkgroupStorageSize',
    'maxStorageBuffersPerShaderStage',
  ] as const;
  const requiredLimits: Record<string, number> = {};
  for (const k of wanted) requiredLimits[k] = l[k];
  const subgroups = subgroupsAllowed && adapter.features.has('subgroups');
  device = await adapter.requestDevice({ requiredLimits, requiredFeatures: subgroups ? ['subgroups'] : [] });
  device.lost.then((info) => {
    if (info.reason !== 'destroyed') console.error(`WebGPU device lost: ${info.message}`);
  });
  device.pushErrorScope('validation');
  for (const [name, code] of allKernels(subgroups)) {
    const module = device.createShaderModule({ code });
    const info = await module.getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === 'error');
    if (errors.length > 0) throw new Error(`WGSL kernel ${name} does not compile: ${errors.map((e) => `line ${e.lineNum}: ${e.message}`).join('; ')}`);
    modules.set(name, module);
  }
  const err = await device.popErrorScope();
  if (err) throw new Error(`WebGPU kernels rejected: ${err.message}`);
  // Older Dawn builds lack adapter.info: the report then names no adapter.
  const info: Partial<GpuAdapterInfo> = adapter.info ?? {};
  const limits: Record<string, number> = {};
  for (const k of [...wanted, 'minStorageBufferOffsetAlignment'] as const) limits[k] = device.limits[k];
  return {
    vendor: info.vendor ?? '',
    architecture: info.architecture ?? '',
    device: info.device ?? '',
    description: info.description ?? '',
    features: [...adapter.features].sort(),
    limits,
    subgroups,
    fallback: info.isFallbackAdapter ?? false,
  };
}

/** The error for a machine without a usable adapter, naming what Dawn found. */
async function noAdapterMessage(mod: WebGpuModule): Promise<string> {
  let found = 'Dawn found no adapter at all (no Vulkan loader or driver?).';
  try {
    // Asked for an adapter that does not exist, Dawn refuses with the list of those it has.
    const lister = mod.create(['adapter=pagewise-list-adapters']);
    await lister.requestAdapter();
  } catch (e) {
    found = `Dawn reports: ${(e as Error).message.trim().replace(/\s*\n\s*/g, ' ')}.`;
  }
  const hint =
    'Install a GPU driver with Vulkan (Linux), Metal (macOS) or Direct3D 12 (Windows) support, or for a CPU fallback point VK_ICD_FILENAMES at SwiftShader (scripts/fetch-swiftshader.sh).';
  return `--device webgpu: no WebGPU adapter found. ${found} ${hint}`;
}

async function runBatch(msg: BatchMessage): Promise<void> {
  const { cmds } = msg;
  // The arena: every 'data' binding, at aligned offsets, uploaded with one write.
  const dataOffsets = new Map<Uint8Array, number>();
  let arenaBytes = 0;
  const place = (b: Binding): void => {
    if (b.kind !== 'data' || dataOffsets.has(b.data)) return;
    dataOffsets.set(b.data, arenaBytes);
    arenaBytes = align(arenaBytes + Math.max(b.data.byteLength, 4), ALIGN);
  };
  for (const c of cmds) {
    if (c.op === 'dispatch') c.bindings.forEach(place);
    else if (c.op === 'copy') place(c.from);
  }
  const arenaHost = new Uint8Array(Math.max(arenaBytes, 4));
  for (const [d, off] of dataOffsets) arenaHost.set(d, off);
  const arena = device.createBuffer({ size: arenaHost.byteLength, usage: STORAGE });
  device.queue.writeBuffer(arena, 0, arenaHost);

  const reads = cmds.filter((c): c is Extract<Command, { op: 'read' }> => c.op === 'read');
  const replyBytes = reads.reduce((a, r) => Math.max(a, r.replyOffset + r.byteLength), 0);
  const staging = replyBytes > 0 ? device.createBuffer({ size: align(replyBytes, 8), usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST }) : null;

  const resolve = (b: Binding): { buffer: GpuBuffer; offset?: number; size?: number } => {
    switch (b.kind) {
      case 'mirror':
        return { buffer: need(mirrors.get(b.id), 'mirror', b.id) };
      case 'data':
        return { buffer: arena, offset: dataOffsets.get(b.data)!, size: align(Math.max(b.data.byteLength, 4), 4) };
      case 'param':
        return { buffer: need(params.get(b.id), 'parameter', b.id) };
      case 'kv':
        return { buffer: need(caches.get(b.id), 'KV cache', b.id)[b.layer]! };
      case 'temp':
        return { buffer: temp(b.slot, b.bytes) };
    }
  };

  device.pushErrorScope('out-of-memory');
  device.pushErrorScope('validation');
  const freed: GpuBuffer[] = [];
  const enc = device.createCommandEncoder();
  let pass: GpuComputePass | null = null;
  const endPass = (): void => {
    pass?.end();
    pass = null;
  };
  for (const c of cmds) {
    switch (c.op) {
      case 'mirror':
        mirrors.set(c.id, newBuffer(c.init.byteLength, c.init));
        break;
      case 'param':
        params.set(c.id, newBuffer(c.data.byteLength, c.data));
        break;
      case 'kv':
        caches.set(
          c.id,
          Array.from({ length: c.layers }, () => newBuffer(c.layerBytes)),
        );
        break;
      case 'free': {
        const map = c.what === 'param' ? params : c.what === 'mirror' ? mirrors : caches;
        const b = map.get(c.id);
        map.delete(c.id);
        if (b) freed.push(...(Array.isArray(b) ? b : [b]));
        break;
      }
      case 'dispatch': {
        const pipeline = pipelineOf(c.kernel);
        const group = device.createBindGroup({
          layout: pipeline.getBindGroupLayout(0),
          entries: c.bindings.map((b, i) => ({ binding: i, resource: resolve(b) })),
        });
        pass ??= enc.beginComputePass();
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, group);
        pass.dispatchWorkgroups(...c.groups);
        break;
      }
      case 'copy': {
        endPass();
        const from = resolve(c.from);
        const to = resolve(c.to);
        enc.copyBufferToBuffer(from.buffer, (from.offset ?? 0) + c.fromOffset, to.buffer, (to.offset ?? 0) + c.toOffset, c.bytes);
        break;
      }
      case 'read':
        endPass();
        enc.copyBufferToBuffer(need(mirrors.get(c.id), 'mirror', c.id), c.byteOffset, staging!, c.replyOffset, c.byteLength);
        break;
    }
  }
  endPass();
  device.queue.submit([enc.finish()]);
  arena.destroy();
  for (const b of [...freed, ...retired.splice(0)]) b.destroy();
  const validation = await device.popErrorScope();
  const oom = await device.popErrorScope();
  if (validation || oom) throw new Error(`WebGPU ${validation ? 'validation' : 'out-of-memory'} error: ${(validation ?? oom)!.message}`);
  if (staging) {
    await staging.mapAsync(MAP_READ);
    new Uint8Array(msg.reply!, 0, replyBytes).set(new Uint8Array(staging.getMappedRange(0, align(replyBytes, 4)), 0, replyBytes));
    staging.unmap();
    staging.destroy();
  } else {
    // A batch ends when the GPU has run it (timing and ordering with the host rely on that).
    await device.queue.onSubmittedWorkDone();
  }
}

/**
 * A kernel's pipeline, made at its first dispatch: making one compiles the kernel for the device,
 * which on SwiftShader (a JIT on the CPU) took ~26 s for all of them at start-up, most of which a
 * model never runs. WGSL errors still surface at start-up (init checks every module); a pipeline
 * the device refuses is a validation error of the batch that first uses it.
 */
function pipelineOf(name: KernelName): GpuComputePipeline {
  let p = pipelines.get(name);
  if (!p) {
    p = device.createComputePipeline({ layout: 'auto', compute: { module: need(modules.get(name), 'kernel', name), entryPoint: 'main' } });
    pipelines.set(name, p);
  }
  return p;
}

function need<T>(v: T | undefined, what: string, id: number | string): T {
  if (v === undefined) throw new Error(`WebGPU backend: unknown ${what} ${id}`);
  return v;
}

// Batches run one after the other, in arrival order; the first failure is reported and the
// thread refuses further work (the device state is no longer what the backend believes).
let chain: Promise<void> = Promise.resolve();
let failed: string | null = null;
port.on('message', (msg: BatchMessage) => {
  chain = chain.then(async () => {
    if (failed === null) {
      try {
        await runBatch(msg);
      } catch (err) {
        failed = (err as Error).message;
        finish(msg.seq, failed);
        return;
      }
    }
    finish(msg.seq, failed);
  });
});

init().then(
  (report) => {
    writeText(JSON.stringify(report));
    finish(1, null);
  },
  (err: unknown) => {
    failed = (err as Error).message;
    finish(1, failed);
  },
);
