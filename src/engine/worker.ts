/**
 * Engine worker thread: hosts the EngineCore and runs its step loop while there is work, so model
 * execution never blocks the main thread. Between steps it yields to the event loop, which is when
 * new requests and aborts arrive.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { EngineConfig } from '../config/engine-config.js';
import { serializeError } from '../errors.js';
import { EngineCore } from './core.js';
import type { FromWorker, ToWorker } from './protocol.js';
import { createBackend } from '../backend/index.js';
import { nativeHost } from '../backend/native.js';
import { collectGarbageNow } from '../shared/collect-garbage.js';

const port = parentPort;
if (!port) throw new Error('engine worker must run in a worker thread');
const { modelDir, config } = workerData as { modelDir: string; config: EngineConfig };

const post = (m: FromWorker): void => port.postMessage(m);

function fatal(err: unknown): never {
  post({ type: 'fatal', error: serializeError(err), stack: err instanceof Error ? (err.stack ?? null) : null });
  process.exit(1);
}

let core: EngineCore;
try {
  core = new EngineCore(createBackend({ threads: config.threads, device: config.device }), modelDir, config, (read, total) => post({ type: 'loading', read, total }));
} catch (err) {
  fatal(err);
}
post({ type: 'ready', info: core.info, tokenizer: core.tokenizerFiles });
// The load's garbage (GGUF metadata, the tokenizer files' JSON) would stay until the first requests.
setImmediate(() => {
  collectGarbageNow();
  nativeHost().releaseFreeMemory();
});
// Requests whose grammar compiled between steps join the loop; those whose grammar failed are refused.
core.events = {
  admitted: () => kick(),
  rejected: (requestId, err) => post({ type: 'rejected', requestId, error: serializeError(err) }),
};

let looping = false;
let closed = false;
let warming = false;
let stepped = false;
function loop(): void {
  if (closed || !core.hasWork()) {
    looping = false;
    warm();
    releaseWhenQuiet();
    return;
  }
  try {
    const { deltas, stats } = core.step();
    stepped = true;
    post({ type: 'outputs', deltas, stats });
  } catch (err) {
    fatal(err);
  }
  setImmediate(loop);
}

// Once the engine has been idle for a while after steps, it hands back their working memory: a
// long prompt's chunks fill step buffers sized for the largest step (~0.2 GB of a 1B model's),
// which would otherwise stay resident. The next steps fault back only the pages they touch.
const RELEASE_AFTER_MS = 2000;
let releaseTimer: NodeJS.Timeout | null = null;
function releaseWhenQuiet(): void {
  if (!stepped || closed) return;
  if (releaseTimer) clearTimeout(releaseTimer);
  releaseTimer = setTimeout(() => {
    releaseTimer = null;
    if (closed || looping) return;  // busy again: its next idle spell schedules another
    stepped = false;
    post({ type: 'released', bytes: core.releaseWorkingMemory() });
  }, RELEASE_AFTER_MS);
  releaseTimer.unref();
}

// While idle, commit the KV cache's memory a few MiB at a time (a few milliseconds each, then back
// to the event loop, so a new request waits at most one slice).
const WARM_SLICE_BYTES = 8 * 1024 * 1024;
function warm(): void {
  if (warming || closed) return;
  warming = true;
  const slice = (): void => {
    if (!closed && !looping && core.commitKvCache(WARM_SLICE_BYTES)) setImmediate(slice);
    else warming = false;
  };
  setImmediate(slice);
}

function kick(): void {
  if (looping) return;
  looping = true;
  setImmediate(loop);
}

port.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'add':
      try {
        core.addRequest(m.request);
        kick();
      } catch (err) {
        post({ type: 'rejected', requestId: m.request.requestId, error: serializeError(err) });
      }
      break;
    case 'abort':
      post({ type: 'outputs', deltas: core.abort(m.requestIds), stats: core.stats() });
      break;
    case 'stopSeq':
      // Stats too: the stopped sequence's blocks are free now, and no later step may report it.
      post({ type: 'outputs', deltas: core.stopSequence(m.requestId, m.index), stats: core.stats() });
      break;
    case 'blockMap':
      post({ type: 'blockMap', states: core.kv.pool.stateMap() });
      break;
    case 'releaseFreeMemory':
      // Process-wide (every thread's allocator arena), so the main thread's workers count too.
      nativeHost().releaseFreeMemory();
      break;
    case 'shutdown':
      closed = true;
      core.close();
      port.close();
      break;
  }
});

warm();
