/**
 * Beam search over sequences that share KV blocks.
 *
 * Each step every live beam proposes its 2·W most likely next tokens (W = beam width = best_of);
 * the W best unfinished proposals by cumulative logprob become the next beams. A beam chosen by
 * several proposals forks (the copies share its blocks, copy-on-write for the partly filled last
 * one); a beam chosen by none dies and frees its blocks. Proposals that end in EOS become finished
 * hypotheses, of which the W best by length-penalized score are kept. This is vLLM v0's in-engine
 * beam search (`_process_sequence_group_outputs`, `_check_beam_search_early_stopping`).
 *
 * Score of a hypothesis: cumulative_logprob / len ** length_penalty, where len counts the prompt
 * and the generated tokens but not a final EOS (vLLM's get_beam_search_score).
 */
import type { SamplingParams } from '../sampling/params.js';
import { topKIds } from '../sampling/selection.js';

export interface TokenProposal {
  tokenId: number;
  /** Logprob of the token in the beam's (processed) distribution. */
  logprob: number;
}

export interface Hypothesis {
  outputTokenIds: number[];
  cumulativeLogprob: number;
  score: number;
  finishReason: 'stop' | 'length';
}

/** What the beams look like to the search: their output so far and cumulative logprob. */
export interface Beam {
  readonly outputTokenIds: readonly number[];
  cumulativeLogprob: number;
}

export interface BeamExtension<B extends Beam> {
  parent: B;
  tokenId: number;
  logprob: number;
}

export interface BeamStepResult<B extends Beam> {
  /** The next live beams, as (parent, token) pairs; a parent may appear several times (fork). */
  extend: Array<BeamExtension<B>>;
  /** Live beams chosen by no proposal: they die. */
  die: B[];
  /** The search is over: every beam in `extend` is also done (already recorded as hypotheses). */
  done: boolean;
}

export function beamScore(totalLen: number, cumulativeLogprob: number, lengthPenalty: number): number {
  return cumulativeLogprob / totalLen ** lengthPenalty;
}

/** The 2·width best next tokens of one row of processed logits, with their logprobs. */
export function proposeTokens(logits: Float32Array, width: number): TokenProposal[] {
  let m = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > m) m = logits[i]!;
  let s = 0;
  for (let i = 0; i < logits.length; i++) s += Math.exp(logits[i]! - m);
  const lse = m + Math.log(s);
  return topKIds(logits, 2 * width).map((tokenId) => ({ tokenId, logprob: logits[tokenId]! - lse }));
}

export class BeamGroup<B extends Beam> {
  readonly width: number;
  readonly finished: Hypothesis[] = [];
  private readonly proposals = new Map<B, TokenProposal[]>();

  constructor(
    private readonly params: SamplingParams,
    private readonly promptLen: number,
    private readonly eosTokenIds: readonly number[],
    /** Longest output the search may produce (max_tokens, capped by the model's context). */
    private readonly maxOutput: number,
    public live: B[],
  ) {
    this.width = params.bestOf;
  }

  /** Record a live beam's proposals; true once every live beam has proposed. */
  offer(beam: B, proposals: TokenProposal[]): boolean {
    this.proposals.set(beam, proposals);
    return this.live.every((b) => this.proposals.has(b));
  }

  /** Choose the next beams from all proposals. */
  step(): BeamStepResult<B> {
    const W = this.width;
    const candidates: Array<BeamExtension<B> & { cum: number }> = [];
    for (const parent of this.live) {
      for (const p of this.proposals.get(parent) ?? []) {
        candidates.push({ parent, tokenId: p.tokenId, logprob: p.logprob, cum: parent.cumulativeLogprob + p.logprob });
      }
    }
    this.proposals.clear();
    // Stable sort: equal cumulative logprobs keep parent order, then token order.
    candidates.sort((a, b) => b.cum - a.cum);

    const isEos = (t: number): boolean => !this.params.ignoreEos && this.eosTokenIds.includes(t);
    const next: Array<BeamExtension<B> & { cum: number }> = [];
    for (const c of candidates) {
      const outLen = c.parent.outputTokenIds.length + 1;
      if (isEos(c.tokenId) && outLen >= this.params.minTokens) {
        this.addFinished([...c.parent.outputTokenIds, c.tokenId], c.cum, 'stop');
      } else if (next.length < W && !isEos(c.tokenId)) {
        next.push(c);
      }
    }

    const chosen = new Set(next.map((c) => c.parent));
    const die = this.live.filter((b) => !chosen.has(b));
    const reachedMax = next.length > 0 && next[0]!.parent.outputTokenIds.length + 1 >= this.maxOutput;
    const done = next.length === 0 || reachedMax || this.shouldStopEarly(next);
    if (reachedMax) for (const c of next) this.addFinished([...c.parent.outputTokenIds, c.tokenId], c.cum, 'length');
    return { extend: next.map(({ parent, tokenId, logprob }) => ({ parent, tokenId, logprob })), die, done };
  }

  /** The n best hypotheses, best first. */
  results(n: number): Hypothesis[] {
    return this.finished.slice(0, n);
  }

  private addFinished(outputTokenIds: number[], cum: number, finishReason: 'stop' | 'length'): void {
    const len = this.promptLen + outputTokenIds.length - (finishReason === 'stop' ? 1 : 0);
    const h: Hypothesis = { outputTokenIds, cumulativeLogprob: cum, score: beamScore(len, cum, this.params.lengthPenalty), finishReason };
    // Keep the W best, ordered by score (stable: earlier hypotheses win ties).
    let i = this.finished.length;
    while (i > 0 && this.finished[i - 1]!.score < h.score) i--;
    this.finished.splice(i, 0, h);
    if (this.finished.length > this.width) this.finished.pop();
  }

  /** vLLM v0's early-stopping rule, checked once W hypotheses are finished. */
  private shouldStopEarly(next: Array<{ parent: B; cum: number }>): boolean {
    if (this.finished.length < this.width) return false;
    const es = this.params.earlyStopping;
    if (es === true) return true;
    const worst = this.finished[this.finished.length - 1]!.score;
    const best = next[0]!;
    const curLen = this.promptLen + best.parent.outputTokenIds.length + 1;
    const lp = this.params.lengthPenalty;
    let attainable: number;
    if (es === false) attainable = beamScore(curLen, best.cum, lp);
    else {
      // 'never': the best this beam could still reach, at the longest allowed length when a
      // positive length penalty rewards length.
      const maxLen = this.promptLen + this.maxOutput;
      attainable = lp > 0 ? beamScore(maxLen, best.cum, lp) : beamScore(curLen, best.cum, lp);
    }
    return worst >= attainable;
  }
}
