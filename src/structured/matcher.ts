/**
 * The per-sequence grammar state: the next-token bitmask, accepting sampled tokens, termination,
 * rollback and forks (n > 1, beam search). Everything here is synchronous: it runs inside a step.
 *
 * Bitmask layout (xgrammar's): token i is allowed iff bit (i & 31) of word (i >> 5) is set; a row
 * is ceil(vocabSize / 32) int32 words.
 *
 * Every mask is also ANDed with a UTF-8 validity mask (utf8.ts): the output stays valid UTF-8.
 *
 * Every precondition the native matcher would abort on (a mask after termination, a token out of
 * range, rolling back past the start) is checked here first: see xgrammar.ts for why an abort must
 * never happen on the engine's instance.
 */
import type { CompiledGrammar, GrammarCompiler } from './compiler.js';
import type { NativeMatcher } from './xgrammar.js';

export class GrammarMatcher {
  private native: NativeMatcher | null;
  /** Accepted tokens, oldest first: the state a fork replays. */
  private readonly history: number[] = [];
  /** The UTF-8 state before each accepted token (for rollback), and now. */
  private readonly utf8States: number[] = [];
  private utf8State = 0;
  private terminated = false;

  /** @internal use CompiledGrammar.createMatcher() */
  constructor(
    private readonly compiler: GrammarCompiler,
    readonly grammar: CompiledGrammar,
  ) {
    grammar.retain();
    try {
      // No stop override (the vocab's stop ids apply); terminate only on a stop token; unlimited rollback.
      this.native = compiler.instance.call('matcher', (b) => new b.GrammarMatcher(grammar.native(), undefined, false, -1));
    } catch (err) {
      grammar.release();
      throw err;
    }
  }

  /** Tokens accepted so far. */
  get numAccepted(): number {
    return this.history.length;
  }

  /** Whether a stop token was accepted: the output is complete. */
  isTerminated(): boolean {
    return this.terminated;
  }

  /**
   * Write the allowed-token mask into `out[offset .. offset + bitmaskWords)`. After termination
   * only the stop tokens are allowed (a sequence that ignores EOS keeps producing them).
   */
  fillNextTokenBitmask(out: Int32Array, offset = 0): void {
    const words = this.compiler.bitmaskWords;
    if (offset < 0 || offset + words > out.length) throw new RangeError(`bitmask row [${offset}, ${offset + words}) is outside an array of ${out.length}`);
    const m = this.live();
    if (this.terminated) {
      out.fill(0, offset, offset + words);
      for (const id of this.compiler.stopTokenIds) out[offset + (id >> 5)]! |= 1 << (id & 31);
      return;
    }
    this.compiler.instance.call('mask', (b) => {
      const vec = m.GetNextTokenBitmask(this.compiler.vocabSize);
      try {
        out.set(b.vecIntToView(vec).subarray(0, words), offset);
      } finally {
        vec.delete();
      }
    });
    this.compiler.utf8.and(this.utf8State, out, offset);
  }

  /**
   * Advance by one sampled token. Returns false, leaving the state unchanged, when the grammar does
   * not allow it (or the matcher has terminated).
   */
  acceptToken(id: number): boolean {
    const m = this.live();
    if (this.terminated || !Number.isInteger(id) || id < 0 || id >= this.compiler.vocabSize) return false;
    const { utf8 } = this.compiler;
    if (!utf8.allows(this.utf8State, id)) return false;
    const ok = this.compiler.instance.call('accept', () => m.AcceptToken(id, false));
    if (ok) {
      this.history.push(id);
      this.utf8States.push(this.utf8State);
      this.utf8State = utf8.next(this.utf8State, id);
      this.terminated = m.IsTerminated();
    }
    return ok;
  }

  /** Undo the last `n` accepted tokens (speculative decoding, beam candidates). */
  rollback(n: number): void {
    const m = this.live();
    if (!Number.isInteger(n) || n < 0 || n > this.history.length) throw new RangeError(`cannot roll back ${n} of ${this.history.length} accepted tokens`);
    if (n === 0) return;
    this.compiler.instance.call('rollback', () => m.Rollback(n));
    this.history.length -= n;
    this.utf8State = this.utf8States[this.history.length]!;
    this.utf8States.length = this.history.length;
    this.terminated = m.IsTerminated();
  }

  /**
   * An independent copy of this state (for n > 1 forks and beam search). The web build cannot copy
   * a native matcher, so the copy replays the accepted tokens: O(numAccepted).
   */
  fork(): GrammarMatcher {
    this.live();
    const copy = this.grammar.createMatcher();
    for (const id of this.history) {
      if (!copy.acceptToken(id)) throw new Error(`grammar matcher fork: replaying token ${id} failed`);
    }
    return copy;
  }

  /** Back to the start of the grammar. */
  reset(): void {
    const m = this.live();
    this.compiler.instance.call('reset', () => m.Reset());
    this.history.length = 0;
    this.utf8States.length = 0;
    this.utf8State = 0;
    this.terminated = false;
  }

  /** Free the native matcher and its reference on the grammar. Idempotent. */
  dispose(): void {
    if (this.native === null) return;
    this.native.delete();
    this.native = null;
    this.grammar.release();
  }

  private live(): NativeMatcher {
    if (this.native === null) throw new Error('GrammarMatcher used after dispose()');
    return this.native;
  }
}

/** Int32 words in one bitmask row for a vocabulary of `vocabSize` ids. */
export function bitmaskWords(vocabSize: number): number {
  return Math.ceil(vocabSize / 32);
}

/**
 * Set `logits[i] = -Infinity` for every id i < logits.length whose bit is clear in the mask row at
 * `mask[offset ..]`. Words that are all ones (most of a JSON string's mask) cost one compare; runs
 * of all-zero words (most of a structural position's mask) become one fill.
 */
export function applyTokenBitmask(logits: Float32Array, mask: Int32Array, offset = 0): void {
  const n = logits.length;
  const words = (n + 31) >>> 5;
  if (offset < 0 || offset + words > mask.length) throw new RangeError(`bitmask row [${offset}, ${offset + words}) is outside an array of ${mask.length}`);
  let zeroRun = -1; // first word of the current run of all-zero words, or -1
  for (let w = 0; w < words; w++) {
    const bits = mask[offset + w]!;
    if (bits === 0) {
      if (zeroRun < 0) zeroRun = w;
      continue;
    }
    if (zeroRun >= 0) {
      logits.fill(-Infinity, zeroRun << 5, w << 5);
      zeroRun = -1;
    }
    if (bits === -1) continue;
    const base = w << 5;
    const end = Math.min(32, n - base);
    for (let j = 0; j < end; j++) if (((bits >>> j) & 1) === 0) logits[base + j] = -Infinity;
  }
  if (zeroRun >= 0) logits.fill(-Infinity, zeroRun << 5, n);
}
