/**
 * What parsing a request needs to know about the served model (the routes' RequestContext).
 */
import type { SamplingParams } from '../sampling/params.js';
import type { PagewiseTokenizer } from '../tokenizer/tokenizer.js';
import type { ToolConfig } from './tools/request.js';

/** What request parsing needs to know about the served model. */
export interface RequestContext {
  tokenizer: PagewiseTokenizer;
  /** Logits width: valid token ids are 0..vocabSize-1. */
  vocabSize: number;
  maxModelLen: number;
  /** Token slots in the whole KV pool: no single request can be longer. */
  kvCacheTokens: number;
  /** Most sequences the engine runs at once; bounds n and best_of. */
  maxNumSeqs: number;
  /** Most prompts one completions request may carry (a bigger batch could never be queued whole). */
  maxPrompts: number;
  /** Names the `model` field may take; the first is reported in responses. */
  servedModelNames: readonly string[];
  /** Model defaults (generation_config.json) for fields the request leaves unset. */
  defaults: Partial<SamplingParams>;
  /** generation_config.json `max_new_tokens`, if any: caps the default max_tokens. */
  maxNewTokens: number | null;
  /** Longest token string in the vocabulary (see longestTokenChars): bounds text before tokenizing. */
  maxTokenChars: number;
  /** Tool calling (--tool-call-parser, --enable-auto-tool-choice); absent = neither. */
  tools?: ToolConfig;
}

/**
 * The longest token string in the vocabulary. No token covers more characters of input text than
 * its own string has (byte-level and SentencePiece vocabularies spell tokens with at least one
 * character per input character), so a text of L characters has at least L / this many tokens.
 * That lets a prompt far too long for the context be refused without tokenizing it: tokenization
 * runs on the event loop, and megabytes of text would stall every other request.
 */
export function longestTokenChars(tokenizer: PagewiseTokenizer, vocabSize: number): number {
  let max = 1;
  for (let id = 0; id < vocabSize; id++) {
    const t = tokenizer.idToToken(id);
    if (t !== null && t.length > max) max = t.length;
  }
  return max;
}
