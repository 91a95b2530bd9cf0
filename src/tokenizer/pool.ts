/**
 * A small pool of worker threads that tokenize and render chat templates, so a long input never
 * holds the event loop: a tokenizer without a pre-tokenizer runs a few tens of thousands of tokens
 * per second, and while it runs no other stream could be written and /health could not answer.
 *
 * Each worker builds its own tokenizer from the same packed TokenizerFiles the main thread's was
 * built from (a GGUF model's tokenizer exists only as those files, converted from its metadata), so
 * both encode alike. Short jobs run inline: a trip to a worker costs more than they do.
 *
 * Workers cost memory: each holds a whole tokenizer (~90 MB of RSS for a 128k-entry vocabulary, about
 * as much as the rest of the server's JavaScript). So they start when a long job first needs one and
 * exit after a while without work: an idle server holds none. A worker starts in a few hundred
 * milliseconds, on its own thread; the job that started it waits that long, the event loop does not.
 * The files reach the workers as the process's one serialized copy in shared memory, not as an
 * object graph cloned into each. On Linux the workers run at a lower CPU priority than the event loop
 * and the engine (thread-priority.ts): on a machine with few cores they take what those leave.
 */
import type { Worker } from 'node:worker_threads';
import { deserializeError, PagewiseError, type SerializedError } from '../errors.js';
import { startModuleWorker } from '../shared/worker-thread.js';
import { jobSize, runJob, type TokenizerJob, type WithTokenizer } from './jobs.js';
import type { PackedTokenizerFiles, PagewiseTokenizer } from './tokenizer.js';

export interface TokenizerPoolOptions {
  /** Most worker threads at once (default 2; 0: every job runs on the calling thread). */
  workers?: number;
  /** Jobs reading fewer characters than this run inline (default 512). */
  inlineChars?: number;
  /** A worker without a job for this long exits (default 30 s); the next long job starts one. */
  idleMs?: number;
  /**
   * Called once a worker idle past idleMs has exited: the server then has the engine return the
   * memory the worker's thread freed (its allocator arena stays resident otherwise).
   */
  onWorkerExit?: () => void;
}

export const DEFAULT_TOKENIZER_WORKERS = 2;
/**
 * A tokenizer without a pre-tokenizer encodes a 2,000-character text in ~0.1 s on a busy machine
 * (stories260k's; BPE over the whole text), so little is worth running inline; a trip to a worker
 * costs well under a millisecond.
 */
const DEFAULT_INLINE_CHARS = 512;
/** Long enough that a stream of long prompts keeps its workers, short next to a server's idle hours. */
const DEFAULT_IDLE_MS = 30_000;

/** What a pool worker is started with: the packed files, shared by all workers. */
export interface PoolWorkerData {
  files: PackedTokenizerFiles;
}

/** What a pool worker answers: the job's result (token ids travel as transferred Uint32Arrays). */
export type PoolReply = { id: number; ok: true; ids?: Uint32Array[]; text?: string } | { id: number; ok: false; error: SerializedError };

interface Task {
  id: number;
  job: TokenizerJob;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

interface Slot {
  worker: Worker;
  task: Task | null;
  /** Ends the worker once it has been idle for idleMs (set while it has no task). */
  idleTimer: NodeJS.Timeout | null;
}

export class TokenizerPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Task[] = [];
  private readonly size: number;
  private readonly inlineChars: number;
  private readonly idleMs: number;
  private readonly onWorkerExit: (() => void) | undefined;
  private nextId = 1;
  private closed = false;
  /** Workers that died in a row without answering anything; past a few, jobs run inline. */
  private failures = 0;
  private static readonly MAX_FAILURES = 3;

  /**
   * @param files what the workers build their tokenizers from (packTokenizerFiles: shared memory)
   * @param local the calling thread's tokenizer (built from the same files), for short jobs
   */
  constructor(
    private readonly files: PackedTokenizerFiles,
    private readonly local: PagewiseTokenizer,
    opts: TokenizerPoolOptions = {},
  ) {
    this.size = opts.workers ?? DEFAULT_TOKENIZER_WORKERS;
    if (!Number.isInteger(this.size) || this.size < 0) throw new RangeError(`tokenizer workers must be an integer >= 0, got ${this.size}`);
    this.inlineChars = opts.inlineChars ?? DEFAULT_INLINE_CHARS;
    this.idleMs = opts.idleMs ?? DEFAULT_IDLE_MS;
    if (!(this.idleMs >= 0)) throw new RangeError(`tokenizer worker idle time must be >= 0 ms, got ${this.idleMs}`);
    this.onWorkerExit = opts.onWorkerExit;
  }

  /** Worker threads running now (they start on demand and exit when idle). */
  get liveWorkers(): number {
    return this.slots.length;
  }

  /** Run a computation, its long jobs on the workers. A job's error is thrown into it. */
  async run<T>(g: WithTokenizer<T>): Promise<T> {
    let step = g.next();
    while (!step.done) {
      let result: unknown;
      try {
        result = await this.job(step.value);
      } catch (err) {
        step = g.throw(err);
        continue;
      }
      step = g.next(result);
    }
    return step.value;
  }

  /** Stop the workers; jobs still queued or running fail. */
  async close(): Promise<void> {
    this.closed = true;
    const slots = this.slots.splice(0);
    const running = slots.flatMap((s) => (s.task ? [s.task] : []));
    for (const t of [...this.queue.splice(0), ...running]) t.reject(new PagewiseError('the tokenizer pool is closed'));
    await Promise.all(slots.map((s) => this.stop(s)));
  }

  private job(job: TokenizerJob): unknown {
    // Inline when short, when there are no workers, or when they keep dying (never a respawn loop).
    if (this.size === 0 || this.failures > TokenizerPool.MAX_FAILURES || jobSize(job) < this.inlineChars) return runJob(this.local, job);
    // Several long texts (a batch of prompts) spread over the workers.
    if (job.op === 'encode' && job.texts.length > 1) {
      return Promise.all(job.texts.map((t) => this.job({ op: 'encode', texts: [t], addSpecialTokens: job.addSpecialTokens }) as Promise<number[][]> | number[][])).then((parts) =>
        parts.flat(),
      );
    }
    if (this.closed) return Promise.reject(new PagewiseError('the tokenizer pool is closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ id: this.nextId++, job, resolve, reject });
      this.dispatch();
    });
  }

  /** Hand queued jobs to idle workers, starting workers (up to the pool's size) for the rest. */
  private dispatch(): void {
    for (const slot of this.slots) {
      if (this.queue.length === 0) return;
      if (slot.task === null) this.assign(slot, this.queue.shift()!);
    }
    while (this.queue.length > 0 && this.slots.length < this.size) {
      const slot = this.spawn();
      this.slots.push(slot);
      this.assign(slot, this.queue.shift()!);
    }
  }

  private assign(slot: Slot, task: Task): void {
    if (slot.idleTimer !== null) clearTimeout(slot.idleTimer);
    slot.idleTimer = null;
    slot.task = task;
    // A new worker gets the message once it has built its tokenizer and listens.
    slot.worker.postMessage({ id: task.id, job: task.job });
  }

  /** Take a worker out of the pool and end it (its 'exit' then finds no slot and is ignored). */
  private stop(slot: Slot): Promise<number> {
    const i = this.slots.indexOf(slot);
    if (i >= 0) this.slots.splice(i, 1);
    if (slot.idleTimer !== null) clearTimeout(slot.idleTimer);
    slot.idleTimer = null;
    return slot.worker.terminate();
  }

  private spawn(): Slot {
    const data: PoolWorkerData = { files: this.files };
    const worker = startModuleWorker(new URL('./pool-worker.js', import.meta.url), data);
    // Idle workers must not keep a process alive that is otherwise done.
    worker.unref();
    const slot: Slot = { worker, task: null, idleTimer: null };
    worker.on('message', (m: PoolReply) => {
      const task = slot.task;
      if (task === null || task.id !== m.id) return;
      slot.task = null;
      this.failures = 0;
      if (m.ok) task.resolve(m.ids !== undefined ? m.ids.map((a) => Array.from(a)) : m.text);
      else task.reject(deserializeError(m.error));
      this.dispatch();
      if (slot.task === null && this.slots.includes(slot)) {
        slot.idleTimer = setTimeout(() => {
          void this.stop(slot).then(() => {
            if (!this.closed) this.onWorkerExit?.();
          });
        }, this.idleMs);
        slot.idleTimer.unref();
      }
    });
    const fail = (why: string): void => {
      const i = this.slots.indexOf(slot);
      if (i < 0) return;
      this.slots.splice(i, 1);
      if (slot.idleTimer !== null) clearTimeout(slot.idleTimer);
      slot.task?.reject(new PagewiseError(`a tokenizer worker failed: ${why}`));
      slot.task = null;
      if (this.closed) return;
      if (++this.failures > TokenizerPool.MAX_FAILURES) {
        // Jobs from now on run inline; the ones waiting for a worker run there too.
        for (const t of this.queue.splice(0)) {
          try {
            t.resolve(runJob(this.local, t.job));
          } catch (err) {
            t.reject(err);
          }
        }
        return;
      }
      // Waiting jobs get a fresh worker.
      this.dispatch();
    };
    worker.on('error', (err) => fail(err.message));
    worker.on('exit', (code) => fail(`exited with code ${code}`));
    return slot;
  }
}
