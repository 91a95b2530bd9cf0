/**
 * OutputProcessor (main thread): turns the engine's per-step token deltas into what users see —
 * incrementally detokenized text with stop strings applied, logprobs, finish reasons, timings.
 */
import { IncrementalDetokenizer } from '../tokenizer/detokenizer.js';
import type { PagewiseTokenizer } from '../tokenizer/tokenizer.js';
import { StopStringMatcher } from './stop-strings.js';
import type { SamplingParams } from '../sampling/params.js';
import { keepBest, reportedSequences } from '../shared/fan-out.js';
import type { FinishReason, RequestDelta, SeqDelta, TokenLogprobs } from './protocol.js';

/** One generated sequence of a request, cumulative so far. */
export interface CompletionOutput {
  index: number;
  /** Text so far (stop strings trimmed unless include_stop_str_in_output). */
  text: string;
  tokenIds: number[];
  /** Per generated token, when logprobs were requested. */
  logprobs: TokenLogprobs[] | null;
  cumulativeLogprob: number;
  finishReason: FinishReason | null;
  /** The stop string or stop token id that ended the sequence, if any. */
  stopReason: string | number | null;
}

export interface RequestMetrics {
  /** Epoch milliseconds. */
  arrivalTime: number;
  firstScheduledTime: number | null;
  firstTokenTime: number | null;
  lastTokenTime: number | null;
  finishedTime: number | null;
}

/** A request's cumulative state; async iterators yield snapshots of it. */
export interface RequestOutput {
  requestId: string;
  promptTokenIds: number[];
  promptLogprobs: Array<TokenLogprobs | null> | null;
  outputs: CompletionOutput[];
  finished: boolean;
  metrics: RequestMetrics;
}

interface SeqState {
  out: CompletionOutput;
  detok: IncrementalDetokenizer;
  stop: StopStringMatcher;
  done: boolean;
}

export class RequestTracker {
  readonly output: RequestOutput;
  private readonly seqs: SeqState[] = [];

  constructor(
    private readonly tok: PagewiseTokenizer,
    requestId: string,
    promptTokenIds: number[],
    private readonly params: SamplingParams,
    arrivalTime: number,
  ) {
    this.output = {
      requestId,
      promptTokenIds,
      promptLogprobs: null,
      outputs: [],
      finished: false,
      metrics: { arrivalTime, firstScheduledTime: null, firstTokenTime: null, lastTokenTime: null, finishedTime: null },
    };
  }

  /**
   * Apply one engine delta. Returns the indices of sequences that a stop string ended just now
   * (the engine must be told to stop them).
   */
  apply(d: RequestDelta, now: number): number[] {
    const o = this.output;
    if (d.firstScheduledTime !== null) o.metrics.firstScheduledTime = d.firstScheduledTime;
    if (d.promptLogprobs !== null) o.promptLogprobs = d.promptLogprobs;
    const stopped: number[] = [];
    for (const sd of d.seqs) {
      if (this.applySeq(this.seq(sd.index), sd, now)) stopped.push(sd.index);
    }
    if (d.finished) this.finish(now);
    return stopped;
  }

  /** Mark everything finished (engine said so, or the request failed or was aborted). */
  finish(now: number, reason: FinishReason = 'abort'): void {
    for (const s of this.seqs) {
      if (s.done) continue;
      s.done = true;
      s.out.finishReason ??= reason;
    }
    this.output.finished = true;
    this.output.metrics.finishedTime = now;
    this.output.outputs = keepBest(this.output.outputs, this.params);
  }

  /** True once every sequence has finished (possibly before the engine reports the request done). */
  get allSeqsDone(): boolean {
    return this.seqs.length === this.expectedSeqs && this.seqs.every((s) => s.done);
  }

  private get expectedSeqs(): number {
    return reportedSequences(this.params);
  }

  private seq(index: number): SeqState {
    while (this.seqs.length <= index) {
      const i = this.seqs.length;
      const out: CompletionOutput = {
        index: i,
        text: '',
        tokenIds: [],
        logprobs: this.params.logprobs !== null ? [] : null,
        cumulativeLogprob: 0,
        finishReason: null,
        stopReason: null,
      };
      this.seqs.push({
        out,
        detok: new IncrementalDetokenizer(this.tok, this.output.promptTokenIds, {
          skipSpecialTokens: this.params.skipSpecialTokens,
          spacesBetweenSpecialTokens: this.params.spacesBetweenSpecialTokens,
        }),
        stop: new StopStringMatcher(this.params.stop, this.params.includeStopStrInOutput),
        done: false,
      });
      this.output.outputs.push(out);
    }
    return this.seqs[index]!;
  }

  /** Returns true when a stop string ended the sequence in this delta. */
  private applySeq(s: SeqState, d: SeqDelta, now: number): boolean {
    if (s.done) return false;
    const o = s.out;
    if (d.newTokenIds.length > 0) {
      this.output.metrics.firstTokenTime ??= now;
      this.output.metrics.lastTokenTime = now;
    }
    o.tokenIds.push(...d.newTokenIds);
    if (d.newLogprobs) o.logprobs?.push(...d.newLogprobs);
    o.cumulativeLogprob = d.cumulativeLogprob;
    let text = s.detok.push(d.newTokenIds);
    if (d.finishReason !== null) text += s.detok.flush();
    // Stop strings count only once min_tokens have been generated (vLLM).
    if (o.tokenIds.length >= this.params.minTokens) {
      const r = s.stop.push(text);
      o.text += r.emit;
      if (r.stopped !== null) {
        s.done = true;
        o.finishReason = 'stop';
        o.stopReason = r.stopped;
        return d.finishReason === null;
      }
    } else {
      o.text += text;
    }
    if (d.finishReason !== null) {
      o.text += s.stop.flush();
      o.finishReason = d.finishReason;
      o.stopReason = d.stopReason;
      s.done = true;
    }
    return false;
  }
}
