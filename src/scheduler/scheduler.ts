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
 *
 * The scheduler owns its queues: sequences enter by add() or fork(), leave by finish() or by the
 * stop rules in update(), and nothing else moves them. A step is schedule() → (the model runs) →
 * markComputed() → (the sampler runs) → update(sampled tokens).
 */
import type { SchedulerKind } from '../config/engine-config.js';
import type { KVCacheManager } from '../kv/kv-cache-manager.js';
import type { FinishReason } from '../engine/protocol.js';
import type { Sequence } from '../engine/sequence.js';
import { requestWidth } from '../shared/fan-out.js';

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
  /** The model's context: a sequence that reaches it finishes with reason `length`. */
  maxModelLen: number;
}

/** A token the sampler chose for a sequence this step. */
export interface SampledToken {
  seq: Sequence;
  tokenId: number;
  /** Its logprob in the raw distribution, NaN when the sampler did not compute it. */
  logprob: number;
}

/** Queue gauges for the engine's stats. */
export interface SchedulerStats {
  /** Requests (not sequences: a request with n > 1 counts once, as vLLM reports them). */
  runningRequests: number;
  waitingRequests: number;
  /** Tokens a contiguous reservation of prompt + max_tokens per running sequence would hold. */
  reservedTokens: number;
  /** Blocks in the running sequences' block tables, counting shared ones once per sequence. */
  logicalBlocks: number;
  numPreemptions: number;
}

/**
 * How many times a waiting sequence that cannot get blocks lets later (smaller) ones go ahead before
 * it holds the queue until it fits, so that nothing starves.
 */
const MAX_SKIPS = 8;

/**
 * Seats a sequence holds under max_num_seqs: its request's width until it forks (the first
 * sequence before its first token), else 1. A beam search holds its width from then on as long
 * as it keeps that many beams, which it does unless fewer than `width` non-EOS tokens were proposed.
 */
export function fanOut(seq: Sequence): number {
  if (seq.index !== 0 || seq.outputTokenIds.length > 0) return 1;
  return requestWidth(seq.params);
}

/**
 * Whether the token just appended ends the sequence: EOS (unless ignore_eos) or a stop token id
 * once min_tokens are out, or the length limit (max_tokens, or the model's context).
 */
export function stopCheck(seq: Sequence, maxModelLen: number): { reason: 'stop' | 'length'; stopTokenId: number | null } | null {
  const last = seq.tokens[seq.tokens.length - 1]!;
  const p = seq.params;
  if (seq.outputTokenIds.length >= p.minTokens) {
    if (!p.ignoreEos && seq.eosTokenIds.includes(last)) return { reason: 'stop', stopTokenId: null };
    if (p.stopTokenIds.includes(last)) return { reason: 'stop', stopTokenId: last };
  }
  if (seq.outputTokenIds.length >= p.maxTokens || seq.tokens.length >= maxModelLen) return { reason: 'length', stopTokenId: null };
  return null;
}

export class Scheduler {
  private readonly waiting: Sequence[] = [];
  private readonly running: Sequence[] = [];
  /** Preemptions since start (for metrics). */
  private numPreemptions = 0;
  private readonly skips = new Map<Sequence, number>();

  constructor(
    private readonly cfg: SchedulerConfig,
    private readonly kv: KVCacheManager,
  ) {}

  add(seq: Sequence): void {
    seq.status = 'waiting';
    this.waiting.push(seq);
  }

  /**
   * Start `child` as a copy of `parent` (parallel sampling, beam search). A running parent shares
   * its blocks with the child, which runs at once; otherwise the child queues to be computed.
   */
  fork(parent: Sequence, child: Sequence): void {
    if (parent.status !== 'running') {
      this.add(child);
      return;
    }
    this.kv.fork(parent, child);
    child.status = 'running';
    this.running.push(child);
  }

  /** End a sequence now (stop, abort, a beam that dies): it leaves the queues and frees its blocks. */
  finish(seq: Sequence, reason: FinishReason): void {
    seq.finishReason = reason;
    if (seq.status !== 'finished') this.remove(seq);
    seq.status = 'finished';
  }

  hasWork(): boolean {
    return this.waiting.length > 0 || this.running.length > 0;
  }

  get numRunning(): number {
    return this.running.length;
  }

  get numWaiting(): number {
    return this.waiting.length;
  }

  stats(): SchedulerStats {
    let reservedTokens = 0;
    let logicalBlocks = 0;
    for (const s of this.running) {
      reservedTokens += s.promptLen + s.params.maxTokens;
      logicalBlocks += this.kv.blocksHeld(s);
    }
    const requestsIn = (q: readonly Sequence[]): number => new Set(q.map((s) => s.requestId)).size;
    return {
      runningRequests: requestsIn(this.running),
      waitingRequests: requestsIn(this.waiting),
      reservedTokens,
      logicalBlocks,
      numPreemptions: this.numPreemptions,
    };
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
      // A request that will fork (n > 1, best_of, beam search) needs seats for all its sequences,
      // and a running one that has not forked yet still holds them.
      let seats = 0;
      for (const r of this.running) seats += fanOut(r);
      for (let i = 0; i < this.waiting.length && (budget > 0 || isStatic) && seats < this.cfg.maxNumSeqs; ) {
        const seq = this.waiting[i]!;
        if (seats + fanOut(seq) > this.cfg.maxNumSeqs) break;
        if (budget <= 0) {
          this.waiting.splice(i, 1);
          seq.status = 'running';
          this.running.push(seq);
          seats += fanOut(seq);
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
        seats += fanOut(seq);
        take(seq, n);
      }
    }

    return { scheduled, preempted, numBatchedTokens: this.cfg.maxNumBatchedTokens - budget };
  }

  /**
   * The forward pass wrote K/V for every scheduled token: advance the sequences and let the KV
   * manager record block fill and newly full (cacheable) blocks.
   */
  markComputed(out: SchedulerOutput): void {
    for (const { seq, numNewTokens } of out.scheduled) {
      seq.numComputedTokens += numNewTokens;
      this.kv.commit(seq, numNewTokens);
    }
  }

  /**
   * Append the sampled tokens and apply the stop rules. Returns the sequences that finished, in
   * the order of `sampled`. Beam-search sequences do not come here: the beam search decides their
   * ends.
   */
  update(sampled: readonly SampledToken[]): Sequence[] {
    const finished: Sequence[] = [];
    for (const { seq, tokenId, logprob } of sampled) {
      seq.appendToken(tokenId);
      if (!Number.isNaN(logprob)) seq.cumulativeLogprob += logprob;
    }
    for (const { seq } of sampled) {
      if (seq.status !== 'running') continue;
      const stop = stopCheck(seq, this.cfg.maxModelLen);
      if (stop === null) continue;
      seq.stopReason = stop.stopTokenId;
      this.finish(seq, stop.reason);
      finished.push(seq);
    }
    return finished;
  }

  /** Remove a sequence from the queues and free its blocks. */
  private remove(seq: Sequence): void {
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
