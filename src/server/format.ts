/**
 * Response pieces in OpenAI's wire format: usage, the legacy completions logprobs object and the
 * chat logprobs object. Routes assemble whole responses and chunks from these.
 */
import type { TokenLogprobs } from '../engine/protocol.js';
import type { PagewiseTokenizer } from '../tokenizer/tokenizer.js';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function usage(promptTokens: number, completionTokens: number): Usage {
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

/** Legacy completions logprobs (one entry per token). */
export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: Array<number | null>;
  top_logprobs: Array<Record<string, number> | null>;
  text_offset: number[];
}

export interface ChatTopLogprob {
  token: string;
  logprob: number;
  bytes: number[] | null;
}

export interface ChatLogprob extends ChatTopLogprob {
  top_logprobs: ChatTopLogprob[];
}

/** JSON has no -Infinity; vLLM clamps to -9999 the same way. */
function lp(x: number): number {
  return Number.isFinite(x) ? x : x > 0 ? Number.MAX_VALUE : -9999;
}

/**
 * Token id → the text that stands for it in logprobs: the token decoded alone, special tokens kept
 * (vLLM), or `token_id:N` when the client asked for `return_tokens_as_token_ids`.
 */
export class TokenStrings {
  private readonly cache = new Map<number, string>();

  constructor(
    private readonly tok: PagewiseTokenizer,
    private readonly asIds: boolean,
  ) {}

  get(id: number): string {
    if (this.asIds) return `token_id:${id}`;
    let s = this.cache.get(id);
    if (s === undefined) {
      s = this.tok.decode([id], { skipSpecialTokens: false });
      if (this.cache.size < 65536) this.cache.set(id, s);
    }
    return s;
  }
}

/**
 * The legacy format for `ids[i]` with `entries[i]` (null = no logprob, e.g. the first prompt token).
 * Each top_logprobs dict has the `num` most likely tokens plus the chosen one (as vLLM returns).
 */
export function completionLogprobs(
  ids: readonly number[],
  entries: ReadonlyArray<TokenLogprobs | null>,
  num: number,
  textOffset: number,
  strs: TokenStrings,
): CompletionLogprobs {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  let offset = textOffset;
  const count = Math.min(ids.length, entries.length);
  for (let i = 0; i < count; i++) {
    const s = strs.get(ids[i]!);
    out.tokens.push(s);
    out.text_offset.push(offset);
    offset += s.length;
    const e = entries[i];
    if (!e) {
      out.token_logprobs.push(null);
      out.top_logprobs.push(null);
      continue;
    }
    out.token_logprobs.push(lp(e.token.logprob));
    // A null-prototype object: a token spelled "__proto__" must stay an ordinary key.
    const top = Object.create(null) as Record<string, number>;
    for (const t of (e.top ?? []).slice(0, num)) top[strs.get(t.tokenId)] = lp(t.logprob);
    if (!(s in top)) top[s] = lp(e.token.logprob);
    out.top_logprobs.push(top);
  }
  return out;
}

/** Append `b` to `a` (streamed chunks are built piecewise; the prompt part comes first with echo). */
export function concatCompletionLogprobs(a: CompletionLogprobs, b: CompletionLogprobs): CompletionLogprobs {
  return {
    tokens: [...a.tokens, ...b.tokens],
    token_logprobs: [...a.token_logprobs, ...b.token_logprobs],
    top_logprobs: [...a.top_logprobs, ...b.top_logprobs],
    text_offset: [...a.text_offset, ...b.text_offset],
  };
}

function utf8Bytes(s: string): number[] {
  return Array.from(Buffer.from(s, 'utf8'));
}

/** Chat format: `{content: [{token, logprob, bytes, top_logprobs: [...]}]}` entries. */
export function chatLogprobs(ids: readonly number[], entries: ReadonlyArray<TokenLogprobs>, num: number, strs: TokenStrings): ChatLogprob[] {
  const out: ChatLogprob[] = [];
  const count = Math.min(ids.length, entries.length);
  for (let i = 0; i < count; i++) {
    const e = entries[i]!;
    const s = strs.get(ids[i]!);
    out.push({
      token: s,
      logprob: lp(e.token.logprob),
      bytes: utf8Bytes(s),
      top_logprobs: (e.top ?? []).slice(0, num).map((t) => {
        const ts = strs.get(t.tokenId);
        return { token: ts, logprob: lp(t.logprob), bytes: utf8Bytes(ts) };
      }),
    });
  }
  return out;
}

/** vLLM's prompt_logprobs shape: per prompt token `{id: {logprob, rank, decoded_token}}`, first null. */
export function promptLogprobsOut(
  ids: readonly number[],
  entries: ReadonlyArray<TokenLogprobs | null> | null,
  strs: TokenStrings,
): Array<Record<string, { logprob: number; rank: number; decoded_token: string }> | null> | null {
  if (entries === null) return null;
  return ids.map((id, i) => {
    const e = entries[i];
    if (!e) return null;
    const d: Record<string, { logprob: number; rank: number; decoded_token: string }> = {};
    d[String(id)] = { logprob: lp(e.token.logprob), rank: e.token.rank, decoded_token: strs.get(id) };
    for (const t of e.top ?? []) {
      d[String(t.tokenId)] ??= { logprob: lp(t.logprob), rank: t.rank, decoded_token: strs.get(t.tokenId) };
    }
    return d;
  });
}
