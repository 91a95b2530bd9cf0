/**
 * Scheduler: decides, every step, which sequences run and how many of their tokens.
 *
 * Continuous batching (vLLM v1 style, no prefill/decode phases): each step has a token budget.
 * Running decodes are served first, then running prefills continue chunk by chunk, then waiting
 * sequences are admitted while budget, sequence slots and KV blocks last. When a sequence needs a
 * block and none is free, the most recently admitted running sequence is preempted: its blocks are
 * freed and it goes back to the front of the queue to be recomputed later.
 *
 * `static` is the baseline a plain generate() loop gives: a batch is admitted only when the previous
 * one has completely finished.
 */
import type { SchedulerKind } from '../config/engine-config.js';
import type { KVCacheManager } from '../kv/kv-cache-manager.js';
import type { Sequence } from '../engine/sequence.js';

export interface ScheduledSeq {
  seq: Sequence;
  /** Tokens of this sequence computed this step (starting at seq.numComputedTokens). */
  numNewTokens: number;
  /** The step reaches the last known token, so its logits are sampled. */
  sample: boolean;
}

export interface SchedulerOutput {
  scheduled: ScheduledSeq[];
  /** Sequences preempted this step (blocks freed, back in the waiting queue). */
  preempted: Sequence[];
  numBatchedTokens: number;
}

export interface SchedulerConfig {
  maxNumBatchedTokens: number;
  maxNumSeqs: number;
  kind: SchedulerKind;
}

/**
 * How many times a waiting sequence that cannot get blocks lets later (smaller) ones go ahead before
 * it holds the queue until it fits, so that nothing starves.
 */
const MAX_SKIPS = 8;

/** Sequences a waiting sequence will become: its request's width before it forks, else 1. */
export function fanOut(seq: Sequence): number {
  if (seq.index !== 0 || seq.outputTokenIds.length > 0) return 1;
  return requestWidth(seq.params);
}

/** Sequences a request runs at once: best_of for beam search, max(n, best_of) for sampling. */
export function requestWidth(p: { n: number; bestOf: number; useBeamSearch: boolean }): number {
  return p.useBeamSearch ? p.bestOf : Math.max(p.n, p.bestOf);
}

export class Scheduler {
  readonly waiting: Sequence[] = [];
  readonly running: Sequence[] = [];
  /** Preemptions since start (for metrics). */
  numPreemptions = 0;
  private readonly skips = new Map<Sequence, number>();

  constructor(
    private readonly cfg: SchedulerConfig,
    private readonly kv: KVCacheManager,
  ) {}

  add(seq: Sequence): void {
    seq.status = 'waiting';
    this.waiting.push(seq);
  }

  hasWork(): boolean {
    return this.waiting.length > 0 || this.running.length > 0;
  }

  schedule(): SchedulerOutput {
    let budget = this.cfg.maxNumBatchedTokens;
    const scheduled: ScheduledSeq[] = [];
    const done = new Set<Sequence>();
    const preempted: Sequence[] = [];

    const take = (seq: Sequence, n: number): void => {
      scheduled.push({ seq, numNewTokens: n, sample: seq.numComputedTokens + n === seq.tokens.length });
      done.add(seq);
      budget -= n;
    };

    // Decodes first, then prefills that are already running, both in admission order.
    for (const decoding of [true, false]) {
      for (const seq of this.running.slice()) {
        if (budget <= 0 || scheduled.length >= this.cfg.maxNumSeqs) break;
        // A beam that has proposed its next tokens waits (nothing uncomputed) for its siblings.
        if (done.has(seq) || seq.status !== 'running' || seq.numUncomputed === 0 || (seq.numUncomputed === 1) !== decoding) continue;
        const n = Math.min(seq.numUncomputed, budget);
        if (this.allocateOrPreempt(seq, n, done, preempted)) take(seq, n);
      }
    }

    // Admit waiting sequences (not in a step that had to preempt: the pool is under pressure).
    const isStatic = this.cfg.kind === 'static';
    const mayAdmit = isStatic ? this.running.length === 0 : preempted.length === 0;
    if (mayAdmit) {
      // A static batch takes up to max_num_seqs requests at once even when their prompts exceed one
      // step's token budget: those beyond it join now and prefill in the next steps.
      for (let i = 0; i < this.waiting.length && (budget > 0 || isStatic) && this.running.length < this.cfg.maxNumSeqs; ) {
        const seq = this.waiting[i]!;
        // A request that will fork (n > 1, best_of, beam search) needs room for all its sequences.
        if (this.running.length + fanOut(seq) > this.cfg.maxNumSeqs) break;
        if (budget <= 0) {
          this.waiting.splice(i, 1);
          seq.status = 'running';
          this.running.push(seq);
          continue;
        }
        // Prompt logprobs need every prompt position computed, so such requests skip the cache (as vLLM).
        const hit = seq.params.promptLogprobs === null ? this.kv.takeCachedPrefix(seq) : 0;
        const n = Math.min(seq.numUncomputed, budget);
        if (!this.kv.allocate(seq, n)) {
          this.kv.free(seq);
          const skips = this.skips.get(seq) ?? 0;
          if (skips >= MAX_SKIPS) break;
          this.skips.set(seq, skips + 1);
          i++;
          continue;
        }
        this.kv.countPrefixQuery(seq.tokens.length, hit);
        this.skips.delete(seq);
        this.waiting.splice(i, 1);
        seq.status = 'running';
        this.running.push(seq);
        take(seq, n);
      }
    }

    return { scheduled, preempted, numBatchedTokens: this.cfg.maxNumBatchedTokens - budget };
  }

  /** Remove a finished or aborted sequence from the queues and free its blocks. */
  remove(seq: Sequence): void {
    const r = this.running.indexOf(seq);
    if (r >= 0) this.running.splice(r, 1);
    const w = this.waiting.indexOf(seq);
    if (w >= 0) this.waiting.splice(w, 1);
    this.skips.delete(seq);
    this.kv.free(seq);
  }

  /**
   * Allocate blocks for n tokens of seq, preempting the most recently admitted running sequences
   * not yet scheduled this step until it fits. Returns false if seq itself had to be preempted.
   */
  private allocateOrPreempt(seq: Sequence, n: number, done: Set<Sequence>, preempted: Sequence[]): boolean {
    while (!this.kv.allocate(seq, n)) {
      let victim: Sequence | undefined;
      for (let i = this.running.length - 1; i >= 0; i--) {
        const cand = this.running[i]!;
        if (!done.has(cand)) {
          victim = cand;
          break;
        }
      }
      if (victim === undefined) return false;
      this.preempt(victim);
      preempted.push(victim);
      if (victim === seq) return false;
    }
    return true;
  }

  private preempt(seq: Sequence): void {
    const r = this.running.indexOf(seq);
    if (r >= 0) this.running.splice(r, 1);
    this.kv.free(seq);
    seq.status = 'waiting';
    seq.numPreemptions++;
    this.numPreemptions++;
    this.waiting.unshift(seq);
  }
}
