/**
 * The n / best_of / beam-width rule: how many sequences a request becomes, how many it reports,
 * and which ones the client gets. Shared by both threads (the scheduler, the engine core, the
 * sampler, the output processor and request parsing all ask here), so it imports nothing.
 *
 * - Sampling: best_of candidates run side by side (best_of >= n once parameters are validated);
 *   the first prefills the prompt and the others fork from it. When best_of > n, the n with the
 *   highest cumulative logprob are returned.
 * - Beam search: best_of is the beam width. It starts from one sequence, forks as beams are chosen,
 *   and reports its n best hypotheses.
 */

/** The fields of SamplingParams the rule reads. */
export interface FanOutParams {
  n: number;
  bestOf: number;
  useBeamSearch: boolean;
}

/** Sequences a request runs at once (what --max-num-seqs bounds). */
export function requestWidth(p: FanOutParams): number {
  return p.useBeamSearch ? p.bestOf : Math.max(p.n, p.bestOf);
}

/** Sequences created when the request is admitted (the rest fork later). */
export function initialSequences(p: FanOutParams): number {
  return p.useBeamSearch ? 1 : requestWidth(p);
}

/** Sequences the engine reports: the n hypotheses of a beam search, every candidate otherwise. */
export function reportedSequences(p: FanOutParams): number {
  return p.useBeamSearch ? p.n : requestWidth(p);
}

/** best_of > n: more candidates run than the client gets back. */
export function hasExtraCandidates(p: { n: number; bestOf: number }): boolean {
  return p.bestOf > p.n;
}

/**
 * Sequences are ranked by cumulative logprob (best_of > n, beam search), so the sampler must
 * compute each chosen token's logprob even when the client asked for none.
 */
export function ranksByLogprob(p: FanOutParams): boolean {
  return hasExtraCandidates(p) || p.useBeamSearch;
}

/**
 * The outputs the client gets: for sampling with best_of > n, the n candidates with the highest
 * cumulative logprob, renumbered 0..n-1 (stable: earlier candidates win ties); otherwise all.
 */
export function keepBest<T extends { index: number; cumulativeLogprob: number }>(outputs: T[], p: FanOutParams): T[] {
  if (p.useBeamSearch || !hasExtraCandidates(p) || outputs.length <= p.n) return outputs;
  const best = [...outputs].sort((a, b) => b.cumulativeLogprob - a.cumulativeLogprob).slice(0, p.n);
  best.forEach((o, i) => (o.index = i));
  return best;
}
