/**
 * SequenceGroup: the sequences of one request and how they multiply. Parallel sampling (n > 1,
 * best_of) creates its candidates up front; the first prefills the prompt and the others fork from
 * it when it samples its first token, sharing its blocks (copy-on-write later) and sampling the
 * same logits row with their own RNG streams. Beam search starts from one sequence; each step the
 * BeamGroup (beam-search.ts) chooses the next beams and this module forks, extends and ends them.
 * Every queue change goes through the scheduler (fork, finish).
 */
import type { FinishReason, EngineRequest } from './protocol.js';
import { deriveSeed } from '../sampling/params.js';
import { Rng } from '../sampling/rng.js';
import type { Scheduler } from '../scheduler/scheduler.js';
import { initialSequences } from '../shared/fan-out.js';
import { BeamGroup, type Hypothesis, type TokenProposal } from './beam-search.js';
import { Sequence } from './sequence.js';
import type { CompiledGrammar } from '../structured/compiler.js';

export class SequenceGroup {
  readonly seqs: Sequence[] = [];
  /** Beam search's beams and finished hypotheses (null when sampling). */
  readonly beam: BeamGroup<Sequence> | null;
  /** Sampling candidates 1.. that wait for the first one to prefill the prompt. */
  private pendingForks: Sequence[];

  constructor(
    req: EngineRequest,
    eosTokenIds: readonly number[],
    maxModelLen: number,
    /** Engine-wide sequence ids (larger = admitted later, which orders preemption). */
    private readonly nextSeqId: () => number,
    /** Structured outputs: the request's compiled grammar; every sequence gets its own matcher. */
    grammar: CompiledGrammar | null = null,
  ) {
    const { promptTokenIds: prompt, params } = req;
    const baseSeed = params.seed ?? Rng.randomSeed();
    for (let i = 0; i < initialSequences(params); i++) {
      const rng = new Rng(deriveSeed(baseSeed, i));
      const seq = new Sequence(nextSeqId(), req.requestId, i, prompt, params, rng, eosTokenIds, req.arrivalTime);
      seq.grammar = grammar?.createMatcher() ?? null;
      this.seqs.push(seq);
    }
    this.pendingForks = this.seqs.slice(1);
    this.beam = params.useBeamSearch
      ? new BeamGroup(params, prompt.length, eosTokenIds, Math.min(params.maxTokens, maxModelLen - prompt.length), [this.seqs[0]!])
      : null;
  }

  /** The sequence the scheduler starts with. */
  get first(): Sequence {
    return this.seqs[0]!;
  }

  /** Every sampling sequence has finished (beam search ends by its own rule instead). */
  get allFinished(): boolean {
    return !this.beam && this.pendingForks.length === 0 && this.seqs.every((s) => s.status === 'finished');
  }

  /**
   * The sequences that sample the logits row `seq` just produced: `seq` itself and, when it is the
   * first candidate finishing the prompt, its siblings, forked from it now.
   */
  samplersOf(seq: Sequence, scheduler: Scheduler): Sequence[] {
    if (seq.index !== 0 || this.pendingForks.length === 0) return [seq];
    for (const child of this.pendingForks) scheduler.fork(seq, child);
    const out = [seq, ...this.pendingForks];
    this.pendingForks = [];
    return out;
  }

  /** Record a beam's proposals; true once every live beam has proposed (time for a beam step). */
  propose(seq: Sequence, proposals: TokenProposal[]): boolean {
    return this.beam!.offer(seq, proposals);
  }

  /**
   * One beam-search step: extend, fork and kill beams. Returns the n best hypotheses when the
   * search is over (every beam has then finished), else null.
   */
  beamStep(scheduler: Scheduler): Hypothesis[] | null {
    const beam = this.beam!;
    const res = beam.step();
    for (const b of res.die) {
      scheduler.finish(b, 'stop');
      b.releaseGrammar();
    }
    const live: Sequence[] = [];
    const byParent = new Map<Sequence, Array<{ tokenId: number; logprob: number }>>();
    for (const e of res.extend) {
      const list = byParent.get(e.parent) ?? [];
      list.push(e);
      byParent.set(e.parent, list);
    }
    for (const [parent, exts] of byParent) {
      // Forks first: they must share the parent's blocks before its new token is appended.
      for (const e of exts.slice(1)) {
        const child = new Sequence(this.nextSeqId(), parent.requestId, this.seqs.length, parent.promptTokenIds, parent.params, parent.rng, parent.eosTokenIds, parent.arrivalTime);
        for (const t of parent.outputTokenIds) child.appendToken(t);
        child.cumulativeLogprob = parent.cumulativeLogprob + e.logprob;
        child.grammar = parent.grammar?.fork() ?? null;
        child.appendToken(e.tokenId);
        child.acceptGrammarToken(e.tokenId);
        scheduler.fork(parent, child);
        this.seqs.push(child);
        live.push(child);
      }
      parent.cumulativeLogprob += exts[0]!.logprob;
      parent.appendToken(exts[0]!.tokenId);
      parent.acceptGrammarToken(exts[0]!.tokenId);
      live.push(parent);
    }
    beam.live = live;
    if (!res.done) return null;
    for (const b of live) scheduler.finish(b, 'length');
    return beam.results(this.first.params.n);
  }

  /** Free every sequence's grammar state (the request is over). */
  releaseGrammars(): void {
    for (const s of this.seqs) s.releaseGrammar();
  }

  /**
   * End every unfinished sequence (abort) or one of them (a stop string the main thread found).
   * Returns the sequences ended now.
   */
  finish(scheduler: Scheduler, reason: FinishReason, index?: number): Sequence[] {
    if (reason === 'abort') this.pendingForks = [];
    const ended: Sequence[] = [];
    for (const s of this.seqs) {
      if (s.status === 'finished' || (index !== undefined && s.index !== index)) continue;
      scheduler.finish(s, reason);
      ended.push(s);
    }
    return ended;
  }
}
