/**
 * Log-probabilities as `pagewise generate --json` prints them: one entry per token, the chosen id
 * with its logprob and rank, and the top-N alternatives (ids and logprobs, most probable first).
 */
import type { TokenLogprobs } from '../engine/protocol.js';

export interface TokenLogprobsJson {
  id: number;
  logprob: number;
  rank: number;
  top_ids: number[];
  top_logprobs: number[];
}

export function tokenLogprobsJson(t: TokenLogprobs): TokenLogprobsJson {
  const top = t.top ?? [];
  return { id: t.token.tokenId, logprob: t.token.logprob, rank: t.token.rank, top_ids: top.map((x) => x.tokenId), top_logprobs: top.map((x) => x.logprob) };
}

/** Prompt logprobs: null for the first position (nothing predicts it), as the engine gives them. */
export function promptLogprobsJson(p: ReadonlyArray<TokenLogprobs | null>): Array<TokenLogprobsJson | null> {
  return p.map((t) => (t ? tokenLogprobsJson(t) : null));
}
