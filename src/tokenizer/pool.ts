/**
 * A small pool of worker threads that tokenize and render chat templates, so a long input never
 * holds the event loop: a tokenizer without a pre-tokenizer runs a few tens of thousands of tokens
 * per second, and while it runs no other stream could be written and /health could not answer.
 *
 * Each worker builds its own tokenizer from the same TokenizerFiles the main thread's was built
 * from (a GGUF model's tokenizer exists only as those files, converted from its metadata), so both
 * encode alike. Short jobs run inline: a trip to a worker costs more than they do.
 */
import type { Worker } from 'node:worker_threads';
import { deserializeError, PagewiseError, type SerializedError } from '../errors.js';
import { startModuleWorker } from '../shared/worker-thread.js';
import { jobSize, runJob, type TokenizerJob, type WithTokenizer } from './jobs.js';
import type { PagewiseTokenizer, TokenizerFiles } from './tokenizer.js';

export interface TokenizerPoolOptions {
  /** Worker threads (default 2; 0: every job runs on the calling thread). */
  workers?: number;
  /** Jobs reading fewer characters than this run inline (default 512). */
  inlineChars?: number;
}

export const DEFAULT_TOKENIZER_WORKERS = 2;
/**
 * A tokenizer without a pre-tokenizer encodes a 2,000-character text in ~0.1 s on a busy machine
 * (stories260k's; BPE over the whole text), so little is worth running inline; a trip to a worker
 * costs well under a millisecond.
 */
const DEFAULT_INLINE_CHARS = 512;

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
}

export class TokenizerPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Task[] = [];
  private readonly size: number;
  private readonly inlineChars: number;
  private nextId = 1;
  private closed = false;
  /** Workers that died in a row without answering anything; past a few, jobs run inline. */
  private failures = 0;
  private static readonly MAX_FAILURES = 3;

  /**
   * @param files what the workers build their tokenizers from
   * @param local the calling thread's tokenizer (built from the same files), for short jobs
   */
  constructor(
    private readonly files: TokenizerFiles,
    private readonly local: PagewiseTokenizer,
    opts: TokenizerPoolOptions = {},
  ) {
    this.size = opts.workers ?? DEFAULT_TOKENIZER_WORKERS;
    if (!Number.isInteger(this.size) || this.size < 0) throw new RangeError(`tokenizer workers must be an integer >= 0, got ${this.size}`);
    this.inlineChars = opts.inlineChars ?? DEFAULT_INLINE_CHARS;
    // Started now, while nothing waits on them: a worker's start-up (copying the files, building
    // its tokenizer) is paid before the first long request, not by it.
    for (let i = 0; i < this.size; i++) this.slots.push(this.spawn());
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
    await Promise.all(slots.map((s) => s.worker.terminate()));
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

  private dispatch(): void {
    for (const slot of this.slots) {
      if (this.queue.length === 0) return;
      if (slot.task !== null) continue;
      const task = this.queue.shift()!;
      slot.task = task;
      slot.worker.postMessage({ id: task.id, job: task.job });
    }
  }

  private spawn(): Slot {
    const worker = startModuleWorker(new URL('./pool-worker.js', import.meta.url), { files: this.files });
    // Idle workers must not keep a process alive that is otherwise done.
    worker.unref();
    const slot: Slot = { worker, task: null };
    worker.on('message', (m: PoolReply) => {
      const task = slot.task;
      if (task === null || task.id !== m.id) return;
      slot.task = null;
      this.failures = 0;
      if (m.ok) task.resolve(m.ids !== undefined ? m.ids.map((a) => Array.from(a)) : m.text);
      else task.reject(deserializeError(m.error));
      this.dispatch();
    });
    const replace = (why: string): void => {
      const i = this.slots.indexOf(slot);
      if (i < 0) return;
      slot.task?.reject(new PagewiseError(`a tokenizer worker failed: ${why}`));
      slot.task = null;
      if (this.closed) return;
      if (++this.failures > TokenizerPool.MAX_FAILURES) {
        // Jobs from now on run inline; the ones waiting for a worker run there too.
        this.slots.splice(i, 1);
        for (const t of this.queue.splice(0)) {
          try {
            t.resolve(runJob(this.local, t.job));
          } catch (err) {
            t.reject(err);
          }
        }
        return;
      }
      this.slots[i] = this.spawn();
      this.dispatch();
    };
    worker.on('error', (err) => replace(err.message));
    worker.on('exit', (code) => replace(`exited with code ${code}`));
    return slot;
  }
}
