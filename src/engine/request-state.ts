/**
 * RequestState (worker): one request in the engine core: its sequence group and the news not yet
 * reported to the main thread (new tokens and logprobs, finish reasons, prompt logprobs once
 * complete, the time it was first scheduled).
 */
import type { EngineRequest, RequestDelta, SeqDelta, TokenLogprobs } from './protocol.js';
import type { Hypothesis } from './beam-search.js';
import type { Sequence } from './sequence.js';
import type { SequenceGroup } from './sequence-group.js';

export class RequestState {
  /** Prompt logprobs so far (first entry null: the first prompt token has none). */
  readonly promptLogprobs: Array<TokenLogprobs | null>;
  private promptLogprobsSent = false;
  private firstScheduledTime: number | null = null;
  private firstScheduledSent = false;
  /** Per sequence index: what it produced since the last report. */
  private readonly pending = new Map<number, SeqDelta>();
  /** The request is over (every sequence finished, or the beam search ended). */
  private over = false;

  constructor(
    readonly req: EngineRequest,
    readonly group: SequenceGroup,
  ) {
    this.promptLogprobs = req.params.promptLogprobs !== null ? [null] : [];
  }

  /** Prompt logprobs are wanted and not all computed yet. */
  get wantsPromptLogprobs(): boolean {
    return this.req.params.promptLogprobs !== null && !this.promptLogprobsSent;
  }

  markScheduled(now: number): void {
    this.firstScheduledTime ??= now;
  }

  /** Whether the request is over; marks it so once every sampling sequence has finished. */
  get done(): boolean {
    if (!this.over && this.group.allFinished) this.over = true;
    return this.over;
  }

  /** A sequence's new token (and its logprobs, when asked for). */
  addToken(s: Sequence, tokenId: number, logprobs: TokenLogprobs): void {
    const d = this.delta(s);
    d.newTokenIds.push(tokenId);
    d.newLogprobs?.push(logprobs);
    d.cumulativeLogprob = s.cumulativeLogprob;
  }

  /** A sequence finished (its reason and stop token are on it). */
  addFinish(s: Sequence): void {
    const d = this.delta(s);
    d.finishReason = s.finishReason;
    d.stopReason = s.stopReason;
  }

  /** The beam search ended: report its hypotheses as sequences 0..n-1, and the request is over. */
  addHypotheses(hyps: readonly Hypothesis[]): void {
    hyps.forEach((h, index) => {
      this.pending.set(index, {
        index,
        newTokenIds: h.outputTokenIds,
        newLogprobs: null,
        cumulativeLogprob: h.cumulativeLogprob,
        finishReason: h.finishReason,
        stopReason: null,
      });
    });
    this.over = true;
  }

  /** End the request now (abort). */
  end(): void {
    this.over = true;
  }

  /** The news since the last call, as one delta. */
  collect(finished: boolean): RequestDelta {
    const seqs = [...this.pending.values()].sort((a, b) => a.index - b.index);
    this.pending.clear();
    let promptLogprobs: RequestDelta['promptLogprobs'] = null;
    if (this.wantsPromptLogprobs && this.promptLogprobs.length >= this.req.promptTokenIds.length) {
      promptLogprobs = this.promptLogprobs;
      this.promptLogprobsSent = true;
    }
    let firstScheduledTime: number | null = null;
    if (!this.firstScheduledSent && this.firstScheduledTime !== null) {
      firstScheduledTime = this.firstScheduledTime;
      this.firstScheduledSent = true;
    }
    return { requestId: this.req.requestId, seqs, promptLogprobs, firstScheduledTime, finished, error: null };
  }

  /** Whether a report has gone out since the request was first scheduled (beam search reports once then, and at the end). */
  get startReported(): boolean {
    return this.firstScheduledSent;
  }

  private delta(s: Sequence): SeqDelta {
    let d = this.pending.get(s.index);
    if (!d) {
      d = {
        index: s.index,
        newTokenIds: [],
        newLogprobs: s.params.logprobs !== null ? [] : null,
        cumulativeLogprob: s.cumulativeLogprob,
        finishReason: null,
        stopReason: null,
      };
      this.pending.set(s.index, d);
    }
    return d;
  }
}
