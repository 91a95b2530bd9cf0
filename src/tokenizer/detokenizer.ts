/**
 * Incremental detokenization: turn a growing list of generated ids into text deltas, decoding only a
 * short window per step (vLLM's prefix/read offsets).
 *
 * Decoding a token alone is wrong for most tokenizers: SentencePiece decoders strip the leading space
 * of the first piece, and byte-fallback / byte-level tokens may carry only part of a UTF-8 character.
 * So every step decodes the window `ids[prefixOffset:]` and subtracts the text of
 * `ids[prefixOffset:readOffset]` (the same window without the new tokens): whatever the decoder does
 * at the window's start happens identically in both, and the difference is exactly the new text.
 * When the new text ends in U+FFFD (an incomplete UTF-8 sequence) or is empty, nothing is emitted
 * and the offsets stay put, so the next step retries with the longer window.
 */
import type { PagewiseTokenizer } from './tokenizer.js';

/** How many prompt tokens before the first generated one seed the window (vLLM uses 5). */
const INITIAL_PREFIX_TOKENS = 5;
const REPLACEMENT_CHAR = '\uFFFD';

export interface DetokenizerOptions {
  skipSpecialTokens: boolean;
  spacesBetweenSpecialTokens: boolean;
}

export class IncrementalDetokenizer {
  private readonly ids: number[];
  private prefixOffset: number;
  private readOffset: number;
  private readonly promptLen: number;
  private out = '';

  constructor(
    private readonly tok: PagewiseTokenizer,
    promptIds: readonly number[],
    private readonly opts: DetokenizerOptions,
  ) {
    // Only the prompt's tail is ever decoded, so keep just that: the window starts inside it.
    const tail = promptIds.slice(Math.max(0, promptIds.length - INITIAL_PREFIX_TOKENS));
    this.ids = tail;
    this.prefixOffset = 0;
    this.readOffset = tail.length;
    this.promptLen = tail.length;
  }

  /** All text emitted so far (the concatenation of every `push` result and `flush`). */
  get text(): string {
    return this.out;
  }

  /** The generated ids pushed so far. */
  get outputTokenIds(): readonly number[] {
    return this.ids.slice(this.promptLen);
  }

  /**
   * Append generated ids and return the text they complete. Text that is not final yet (an
   * incomplete UTF-8 sequence) is held back and returned by a later call.
   */
  push(ids: readonly number[]): string {
    let delta = '';
    // One id at a time, like vLLM: a multi-token push (speculative decoding, a flushed backlog)
    // must split exactly where single pushes would.
    for (const id of ids) {
      this.ids.push(id);
      delta += this.step();
    }
    this.out += delta;
    return delta;
  }

  /**
   * End of generation: release whatever is still held back (for example a byte sequence that never
   * completed, which then decodes to U+FFFD as in a one-shot decode).
   */
  flush(): string {
    if (this.readOffset >= this.ids.length) return '';
    const prefixText = this.decodeWindow(this.prefixOffset, this.readOffset);
    const fullText = this.decodeWindow(this.prefixOffset, this.ids.length);
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    const delta = fullText.length > prefixText.length ? fullText.slice(prefixText.length) : '';
    this.out += delta;
    return delta;
  }

  private step(): string {
    const prefixText = this.decodeWindow(this.prefixOffset, this.readOffset);
    const newText = this.decodeWindow(this.prefixOffset, this.ids.length);
    if (newText.length <= prefixText.length || newText.endsWith(REPLACEMENT_CHAR)) return '';
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    return newText.slice(prefixText.length);
  }

  private decodeWindow(from: number, to: number): string {
    if (to <= from) return '';
    return this.tok.decode(this.ids.slice(from, to), this.opts);
  }
}
