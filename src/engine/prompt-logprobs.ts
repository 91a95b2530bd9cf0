/**
 * Prompt logprobs (worker): which prompt positions of a step need their logits kept, and the
 * logprobs computed from them. Position p's logits predict prompt token p + 1; a request's first
 * sequence computes them while it prefills (recomputation after preemption skips rows already
 * done), and the request reports them once, complete.
 */
import type { ComputeBackend } from '../backend/backend.js';
import type { LogitsRequest } from '../model/runner.js';
import { promptLogprobs } from '../sampling/logprobs.js';
import type { ScheduledSeq } from '../scheduler/scheduler.js';
import type { RequestState } from './request-state.js';

export interface PromptLogprobRow {
  st: RequestState;
  /** The prompt position whose logits score prompt token position + 1. */
  position: number;
}

/**
 * The prompt-logprob rows of a step, appended to `want` (after the sampling rows) in the same
 * order as the returned list.
 */
export function planPromptLogprobRows(
  scheduled: readonly ScheduledSeq[],
  stateOf: (requestId: string) => RequestState,
  want: LogitsRequest[],
): PromptLogprobRow[] {
  const rows: PromptLogprobRow[] = [];
  for (let i = 0; i < scheduled.length; i++) {
    const { seq, numNewTokens } = scheduled[i]!;
    if (seq.index !== 0) continue;
    const st = stateOf(seq.requestId);
    if (!st.wantsPromptLogprobs) continue;
    const end = Math.min(seq.numComputedTokens + numNewTokens, seq.promptLen - 1);
    for (let p = Math.max(seq.numComputedTokens, st.promptLogprobs.length - 1); p < end; p++) {
      want.push({ entry: i, position: p });
      rows.push({ st, position: p });
    }
  }
  return rows;
}

/**
 * Score the rows: `logitsOf(first, count)` returns the raw logits of `count` consecutive rows
 * starting at index `first` of `rows`, at most `chunk` rows at a time.
 */
export function computePromptLogprobs(
  be: ComputeBackend,
  rows: readonly PromptLogprobRow[],
  vocabSize: number,
  chunk: number,
  logitsOf: (first: number, count: number) => Float32Array,
): void {
  const V = vocabSize;
  for (let first = 0; first < rows.length; first += chunk) {
    const count = Math.min(chunk, rows.length - first);
    const logits = logitsOf(first, count);
    for (let r = 0; r < count; r++) {
      const { st, position } = rows[first + r]!;
      const seq = st.group.first;
      const k = seq.params.promptLogprobs!;
      const [lp] = promptLogprobs(be, logits.subarray(r * V, (r + 1) * V), 1, V, [seq.tokens[position + 1]!], k);
      st.promptLogprobs.push(lp!);
    }
  }
}
