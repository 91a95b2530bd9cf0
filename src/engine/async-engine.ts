/**
 * AsyncEngine (main thread): starts the engine worker, sends it requests and aborts, and turns its
 * per-step outputs into one async iterable per request. It never runs model code itself, so the
 * event loop (HTTP, tokenization) stays responsive while the worker computes.
 */
import { randomUUID } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { makeEngineConfig, type EngineConfig } from '../config/engine-config.js';
import { deserializeError, EngineDeadError, InvalidRequestError, PagewiseError, ServiceUnavailableError } from '../errors.js';
import { resolveModel, type DownloadProgress } from '../model/loader/resolve.js';
import { TtyProgressBar } from '../shared/progress-bar.js';
import type { SamplingParams } from '../sampling/params.js';
import { PagewiseTokenizer, unpackTokenizerFiles, type PackedTokenizerFiles } from '../tokenizer/tokenizer.js';
import { checkRequestFits, engineLimits } from '../shared/request-limits.js';
import { startModuleWorker } from '../shared/worker-thread.js';
import { RequestTracker, type RequestOutput } from './output-processor.js';
import type { EngineInfo, EngineStats, FromWorker, RequestDelta, ToWorker } from './protocol.js';

export interface EngineStartOptions extends Partial<EngineConfig> {
  /** Where progress and start-up facts are logged (default: stderr). */
  log?: (line: string) => void;
  /**
   * Where the engine's failure is reported once it is running: a dead worker, and the core's
   * stack when it failed (default: text lines on stderr).
   */
  logError?: (message: string, stack?: string) => void;
  /** Progress of a hub download (default: a progress bar on a terminal, a line per file otherwise). */
  onDownloadProgress?: (p: DownloadProgress) => void;
  /** Progress of loading the model: tensors read, of the checkpoint's total (default: a bar on a terminal). */
  onLoadProgress?: (read: number, total: number) => void;
}

export interface GenerateRequest {
  requestId?: string;
  promptTokenIds: number[];
  params: SamplingParams;
}

/**
 * A request's outputs as they come. Iterating yields cumulative snapshots; when the consumer is
 * slower than the engine, intermediate snapshots are merged (the latest one carries everything).
 */
export class RequestStream implements AsyncIterable<RequestOutput> {
  private dirty = false;
  private error: PagewiseError | null = null;
  private wake: (() => void) | null = null;

  constructor(
    readonly requestId: string,
    readonly tracker: RequestTracker,
    private readonly onAbort: (id: string) => void,
  ) {}

  get output(): RequestOutput {
    return this.tracker.output;
  }

  /** Called by the engine when the tracker changed. */
  notify(): void {
    this.dirty = true;
    this.wake?.();
  }

  fail(err: PagewiseError): void {
    this.error = err;
    this.wake?.();
  }

  /** Stop generating for this request and free its KV blocks. */
  abort(): void {
    this.onAbort(this.requestId);
  }

  /** Wait for the end and return the final output (throws if the request failed). */
  async final(): Promise<RequestOutput> {
    let last = this.output;
    for await (const o of this) last = o;
    return last;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<RequestOutput> {
    for (;;) {
      if (this.error) throw this.error;
      if (this.dirty) {
        this.dirty = false;
        yield this.output;
        if (this.output.finished) return;
        continue;
      }
      if (this.output.finished) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = null;
    }
  }
}

/** Start the engine worker (worker.ts). */
function startWorker(workerData: unknown): Worker {
  return startModuleWorker(new URL('./worker.js', import.meta.url), workerData);
}

export class AsyncEngine {
  /** Latest stats from the worker (null before the first step). */
  lastStats: EngineStats | null = null;
  private readonly listeners = { stats: new Set<(s: EngineStats) => void>(), finished: new Set<(o: RequestOutput) => void>() };
  private readonly streams = new Map<string, RequestStream>();
  /** Requests sent but not yet scheduled (bounded by maxWaitingRequests). */
  private readonly unscheduled = new Set<string>();
  /** Callers waiting for the block map the worker was asked for (one question in flight at a time). */
  private blockMapWaiters: Array<(states: Uint8Array | null) => void> = [];
  private dead: PagewiseError | null = null;
  private closing = false;
  private releasedBytes = 0;

  private constructor(
    private readonly worker: Worker,
    readonly info: EngineInfo,
    readonly tokenizer: PagewiseTokenizer,
    /** What `tokenizer` was built from, packed in shared memory (for the tokenizer pool's workers). */
    readonly tokenizerFiles: PackedTokenizerFiles,
    private readonly logError: (message: string, stack?: string) => void,
  ) {
    worker.on('message', (m: FromWorker) => this.onMessage(m));
    worker.on('error', (err) => this.die(new EngineDeadError(`engine worker crashed: ${err.message}`, { cause: err }), err.stack));
    worker.on('exit', (code) => {
      if (!this.closing) this.die(new EngineDeadError(`engine worker exited unexpectedly (code ${code})`));
    });
  }

  /** Resolve the model, start the worker, wait until the model is loaded, then build its tokenizer. */
  static async start(opts: EngineStartOptions = {}): Promise<AsyncEngine> {
    const {
      log = (l: string) => process.stderr.write(`${l}\n`),
      logError = (message: string, stack?: string) => process.stderr.write(`pagewise: ${message}\n${stack ? `${stack}\n` : ''}`),
      onDownloadProgress: _download,
      onLoadProgress: _load,
      ...rest
    } = opts;
    const config = makeEngineConfig(rest);
    const modelDir = await resolveModel(config.model, { ggufFile: config.ggufFile, revision: config.revision, onProgress: opts.onDownloadProgress, log });
    const worker = startWorker({ modelDir, config });
    const bar = new TtyProgressBar(`loading ${config.model}`);
    const onLoad = opts.onLoadProgress ?? ((read: number, total: number): void => bar.update(read / total, `${read}/${total} tensors`));
    // Remove only our own start-up listeners: Worker.removeAllListeners() also drops Node's internal
    // 'newListener' hook that starts the message port, after which no message is ever delivered.
    let onMsg: (m: FromWorker) => void = () => {};
    let onError: (err: Error) => void = () => {};
    let onExit: (code: number) => void = () => {};
    const { info, tokenizer: tokenizerFiles } = await new Promise<{ info: EngineInfo; tokenizer: PackedTokenizerFiles }>((resolve, reject) => {
      onMsg = (m: FromWorker): void => {
        if (m.type === 'loading') onLoad(m.read, m.total);
        else if (m.type === 'ready') resolve(m);
        else if (m.type === 'fatal') reject(deserializeError(m.error));
      };
      onError = reject;
      onExit = (code) => reject(new EngineDeadError(`engine worker exited during start-up (code ${code})`));
      worker.on('message', onMsg);
      worker.once('error', onError);
      worker.once('exit', onExit);
    }).finally(() => {
      bar.finish();
      worker.off('message', onMsg);
      worker.off('error', onError);
      worker.off('exit', onExit);
    });
    let tokenizer: PagewiseTokenizer;
    try {
      tokenizer = PagewiseTokenizer.fromFiles(unpackTokenizerFiles(tokenizerFiles));
    } catch (err) {
      await worker.terminate();
      throw err;
    }
    const gib = (b: number): string => `${(b / 1024 ** 3).toFixed(2)} GiB`;
    log(
      `pagewise: model ${modelDir} (${info.model.architecture}, ${info.model.numLayers} layers, hidden ${info.model.hiddenSize}), ` +
        `${info.precision} compute on ${info.threads} threads (${info.isa}); KV cache ${info.kvCacheDtype}: ` +
        `${info.numBlocks} blocks × ${info.blockSize} tokens = ${info.numBlocks * info.blockSize} tokens in ${gib(info.kvCacheBytes)}; ` +
        `max model len ${info.maxModelLen}`,
    );
    return new AsyncEngine(worker, info, tokenizer, tokenizerFiles, logError);
  }

  /** True while the worker is alive and accepting work. */
  get healthy(): boolean {
    return this.dead === null && !this.closing;
  }

  get numInFlight(): number {
    return this.streams.size;
  }

  /**
   * Bytes of working memory the engine has handed back so far: once idle for a moment after steps,
   * its worker drops the pages of the step buffers and kernel scratch that a long prompt grew.
   */
  get workingMemoryReleased(): number {
    return this.releasedBytes;
  }

  /**
   * Submit a request (prompt already tokenized, params already validated). Throws at once if it can
   * never run, if the waiting queue is full, or if the engine is dead or shutting down.
   */
  generate(req: GenerateRequest): RequestStream {
    if (this.dead) throw new ServiceUnavailableError(`the engine is not running: ${this.dead.message}`);
    if (this.closing) throw new ServiceUnavailableError('the server is shutting down');
    if (this.unscheduled.size >= this.info.config.maxWaitingRequests) {
      throw new ServiceUnavailableError(
        `too many requests waiting (${this.unscheduled.size}, limit --max-waiting-requests ${this.info.config.maxWaitingRequests}); retry later`,
      );
    }
    checkRequestFits(engineLimits(this.info), req.promptTokenIds, req.params);
    const requestId = req.requestId ?? randomUUID();
    if (this.streams.has(requestId)) throw new InvalidRequestError(`request id ${requestId} is already in use`);
    const arrivalTime = performance.timeOrigin + performance.now();
    const tracker = new RequestTracker(this.tokenizer, requestId, req.promptTokenIds.slice(), req.params, arrivalTime);
    const stream = new RequestStream(requestId, tracker, (id) => this.abort(id));
    this.streams.set(requestId, stream);
    this.unscheduled.add(requestId);
    this.send({ type: 'add', request: { requestId, promptTokenIds: req.promptTokenIds, params: req.params, arrivalTime } });
    return stream;
  }

  /** Abort a request: the worker frees its blocks; its stream ends with finish reason `abort`. */
  abort(requestId: string): void {
    const s = this.streams.get(requestId);
    if (!s || s.output.finished) return;
    this.send({ type: 'abort', requestIds: [requestId] });
  }

  /**
   * Stop accepting requests, give in-flight ones up to `graceMs` to finish, abort the rest, and stop
   * the worker.
   */
  async shutdown(graceMs = 0): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const deadline = Date.now() + graceMs;
    while (this.streams.size > 0 && Date.now() < deadline && !this.dead) await new Promise((r) => setTimeout(r, 20));
    if (this.streams.size > 0 && !this.dead) {
      this.send({ type: 'abort', requestIds: [...this.streams.keys()] });
      const until = Date.now() + 2000;
      while (this.streams.size > 0 && Date.now() < until && !this.dead) await new Promise((r) => setTimeout(r, 10));
    }
    for (const s of this.streams.values()) {
      s.tracker.finish(Date.now());
      s.notify();
    }
    this.streams.clear();
    if (!this.dead) this.send({ type: 'shutdown' });
    await this.worker.terminate();
    this.answerBlockMap(null);
  }

  /**
   * Has the worker return the C allocator's free pages to the OS (process-wide: every thread's
   * arena). For the server, after one of its own worker threads has exited or once it is quiet.
   */
  releaseFreeMemory(): void {
    if (!this.dead && !this.closing) this.send({ type: 'releaseFreeMemory' });
  }

  /**
   * The KV pool's state map: a BlockState code (src/shared/block-map.ts) per block, as the worker
   * saw it between two steps; null when the engine is not running. Callers that ask while a
   * question is in flight share its answer, so any number of watchers costs one round trip.
   */
  blockMap(): Promise<Uint8Array | null> {
    if (this.dead || this.closing) return Promise.resolve(null);
    return new Promise((resolve) => {
      if (this.blockMapWaiters.push(resolve) === 1) this.send({ type: 'blockMap' });
    });
  }

  private answerBlockMap(states: Uint8Array | null): void {
    const waiters = this.blockMapWaiters;
    this.blockMapWaiters = [];
    for (const w of waiters) w(states);
  }

  private send(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  /**
   * Subscribe to every engine step's stats, or to every request that finishes (its final output):
   * any number of subscribers (the server's metrics, a benchmark), called in subscription order.
   * Returns the function that unsubscribes (a function subscribed twice is called once).
   */
  on(event: 'stats', fn: (s: EngineStats) => void): () => void;
  on(event: 'finished', fn: (o: RequestOutput) => void): () => void;
  on(event: 'stats' | 'finished', fn: ((s: EngineStats) => void) | ((o: RequestOutput) => void)): () => void {
    const set = this.listeners[event] as Set<typeof fn>;
    set.add(fn);
    return () => void set.delete(fn);
  }

  private onMessage(m: FromWorker): void {
    switch (m.type) {
      case 'outputs': {
        const now = performance.timeOrigin + performance.now();
        for (const d of m.deltas) this.onDelta(d, now);
        if (m.stats) {
          this.lastStats = m.stats;
          for (const fn of this.listeners.stats) fn(m.stats);
        }
        break;
      }
      case 'rejected': {
        const s = this.streams.get(m.requestId);
        this.streams.delete(m.requestId);
        this.unscheduled.delete(m.requestId);
        s?.fail(deserializeError(m.error));
        break;
      }
      case 'blockMap':
        this.answerBlockMap(m.states);
        break;
      case 'released':
        this.releasedBytes += m.bytes;
        break;
      case 'fatal':
        this.die(new EngineDeadError(`engine core failed: ${m.error.message}`), m.stack ?? undefined);
        break;
      case 'loading':
      case 'ready':
        break;
    }
  }

  private onDelta(d: RequestDelta, now: number): void {
    const s = this.streams.get(d.requestId);
    if (!s) return;
    if (d.firstScheduledTime !== null) this.unscheduled.delete(d.requestId);
    const stopped = s.tracker.apply(d, now);
    for (const index of stopped) this.send({ type: 'stopSeq', requestId: d.requestId, index });
    if (d.finished || s.tracker.allSeqsDone) {
      // All sequences done on our side (a stop string may end them before the worker hears of it).
      if (!d.finished) s.tracker.finish(now);
      this.streams.delete(d.requestId);
      this.unscheduled.delete(d.requestId);
      for (const fn of this.listeners.finished) fn(s.output);
    }
    s.notify();
  }

  private die(err: PagewiseError, stack?: string): void {
    if (this.dead) return;
    this.dead = err;
    this.logError(err.message, stack);
    for (const s of this.streams.values()) s.fail(err);
    this.streams.clear();
    this.unscheduled.clear();
    this.answerBlockMap(null);
  }
}
