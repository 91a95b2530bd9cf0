/**
 * A UTF-8 validity mask, ANDed into every grammar mask. The xgrammar build lets single bytes of
 * invalid UTF-8 through its negated character classes (so through every JSON string): a sampled
 * stray continuation byte decodes to U+FFFD and counts against length limits. Tracking where the
 * output stands inside a UTF-8 sequence, and allowing only tokens whose bytes continue it validly,
 * closes that gap for the cost of one AND per mask word.
 *
 * States: 0 = at a character boundary; the others = inside a sequence, with the bytes still due
 * and the range the next byte must fall in (RFC 3629: no overlongs, no surrogates, ≤ U+10FFFF).
 */
import { byteToUnicode } from '../model/fixture/tokenizer-gen.js';
import type { GrammarVocab } from './vocab.js';

const STATES = 8;
/** For states 1..7: [low, high] of the next byte, and the state after it. */
const CONT: ReadonlyArray<readonly [number, number, number]> = [
  [0, 0, 0], // state 0: unused
  [0x80, 0xbf, 0], // 1: one continuation byte due
  [0x80, 0xbf, 1], // 2: two due
  [0x80, 0xbf, 2], // 3: three due
  [0xa0, 0xbf, 1], // 4: after E0 (no overlong)
  [0x80, 0x9f, 1], // 5: after ED (no surrogate)
  [0x90, 0xbf, 2], // 6: after F0 (no overlong)
  [0x80, 0x8f, 2], // 7: after F4 (≤ U+10FFFF)
];

/** The state after `byte` in `state`, or -1 when the byte breaks UTF-8. */
export function utf8Next(state: number, byte: number): number {
  if (state !== 0) {
    const [lo, hi, next] = CONT[state]!;
    return byte >= lo && byte <= hi ? next : -1;
  }
  if (byte < 0x80) return 0;
  if (byte >= 0xc2 && byte <= 0xdf) return 1;
  if (byte === 0xe0) return 4;
  if (byte === 0xed) return 5;
  if (byte >= 0xe1 && byte <= 0xef) return 2;
  if (byte === 0xf0) return 6;
  if (byte >= 0xf1 && byte <= 0xf3) return 3;
  if (byte === 0xf4) return 7;
  return -1;
}

/** The state after `bytes` from `state`, or -1. */
export function utf8Run(state: number, bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length && state >= 0; i++) state = utf8Next(state, bytes[i]!);
  return state;
}

const utf8 = new TextEncoder();

/** The bytes each token id stands for, decoded as xgrammar decodes the vocab type. */
export function tokenBytes(vocab: GrammarVocab): Uint8Array[] {
  const out = new Array<Uint8Array>(vocab.encodedVocab.length);
  if (vocab.vocabType === 'byte_level') {
    const toByte = new Map(byteToUnicode().map((ch, b) => [ch, b]));
    vocab.encodedVocab.forEach((tok, id) => {
      const chars = [...tok];
      // Like xgrammar: a token with a character outside the table (an added token) is raw text.
      out[id] = chars.every((c) => toByte.has(c)) ? Uint8Array.from(chars, (c) => toByte.get(c)!) : utf8.encode(tok);
    });
  } else if (vocab.vocabType === 'byte_fallback') {
    vocab.encodedVocab.forEach((tok, id) => {
      const m = /^<0x([0-9A-F]{2})>$/.exec(tok);
      out[id] = m ? Uint8Array.of(parseInt(m[1]!, 16)) : utf8.encode(tok.replaceAll('\u2581', ' '));
    });
  } else {
    vocab.encodedVocab.forEach((tok, id) => (out[id] = utf8.encode(tok)));
  }
  return out;
}

/** Per state, the ids whose bytes continue valid UTF-8 from it (bitmask rows, xgrammar layout). */
export class Utf8Masks {
  readonly words: number;
  /** STATES rows of `words` int32 words. */
  private readonly masks: Int32Array;

  constructor(
    private readonly bytes: readonly Uint8Array[],
    vocabSize: number,
  ) {
    this.words = Math.ceil(vocabSize / 32);
    this.masks = new Int32Array(STATES * this.words);
    for (let s = 0; s < STATES; s++) {
      const row = s * this.words;
      for (let id = 0; id < bytes.length; id++) {
        const b = bytes[id]!;
        // Byte-less tokens (specials, stop ids) only at a character boundary.
        const ok = b.length === 0 ? s === 0 : utf8Run(s, b) >= 0;
        if (ok) this.masks[row + (id >> 5)]! |= 1 << (id & 31);
      }
      // Ids past the vocabulary (logits padding) stay 0: no grammar allows them either.
    }
  }

  /** `out[offset ..] &= the row of state`. */
  and(state: number, out: Int32Array, offset: number): void {
    const row = state * this.words;
    for (let w = 0; w < this.words; w++) out[offset + w]! &= this.masks[row + w]!;
  }

  /** Whether `id` may follow in `state`. */
  allows(state: number, id: number): boolean {
    return ((this.masks[state * this.words + (id >> 5)]! >>> (id & 31)) & 1) === 1;
  }

  /** The state after token `id` (which `allows`). */
  next(state: number, id: number): number {
    const b = this.bytes[id];
    return b === undefined ? state : utf8Run(state, b);
  }
}
