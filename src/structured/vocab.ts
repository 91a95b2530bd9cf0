/**
 * The vocabulary as xgrammar's TokenizerInfo wants it: every token id's *encoded* string (as in
 * tokenizer.json), how to turn those strings into bytes (the vocab type), the logits width and the
 * stop ids. xgrammar decodes the strings itself:
 * - `byte_fallback` (SentencePiece BPE, Llama 2 / Mistral / Gemma): `▁` → space, `<0xNN>` → byte NN;
 * - `byte_level` (GPT-2-style BPE, Llama 3 / Qwen / SmolLM): each char maps back through GPT-2's
 *   byte ↔ unicode table (`Ġ` → space, `Ċ` → newline, ...);
 * - `raw`: the string's UTF-8 bytes.
 *
 * Special tokens are passed as the empty string, which is how xgrammar marks a token the grammar
 * must never produce (other than the stop ids). Ids past the tokenizer's vocabulary (logits
 * padding) are likewise never allowed.
 */
import type { PagewiseTokenizer } from '../tokenizer/tokenizer.js';

export type VocabType = 'raw' | 'byte_fallback' | 'byte_level';

export interface GrammarVocab {
  /** Encoded token strings by id ('' for special tokens). */
  encodedVocab: string[];
  vocabType: VocabType;
  /** Whether tokenization prepends a space (SentencePiece `▁` prefix); xgrammar metadata. */
  addPrefixSpace: boolean;
  /** Width of a logits row (≥ encodedVocab.length); the bitmask covers this many ids. */
  vocabSize: number;
  /** Ids that end generation: allowed exactly when the grammar can end. */
  stopTokenIds: number[];
}

/** What we need from the tokenizer; PagewiseTokenizer has it. */
export type VocabTokenizer = Pick<PagewiseTokenizer, 'vocabSize' | 'idToToken' | 'isSpecial'>;

export interface GrammarVocabOptions {
  /** Logits width (`config.json` vocab_size); default the tokenizer's vocabulary size. */
  vocabSize?: number;
  /** Stop ids (EOS and generation_config's eos_token_id list). */
  stopTokenIds: readonly number[];
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A component (decoder, normalizer, ...) and, for a `Sequence`, its members. */
function members(component: unknown, listKey: string): Json[] {
  if (!isObject(component)) return [];
  if (component['type'] === 'Sequence' && Array.isArray(component[listKey])) return (component[listKey] as unknown[]).filter(isObject);
  return [component];
}

/**
 * The vocab type from tokenizer.json's decoder, as xgrammar's HF detection does (ByteLevel or
 * ByteFallback anywhere in the decoder). Unlike it, a decoder that only maps `▁` to a space
 * (Metaspace, or Replace `▁` → ' ') also counts as `byte_fallback`, whose decoding does exactly that:
 * `raw` would leave `▁` in the text the grammar sees.
 */
export function detectVocabType(tokenizerJson: Json): VocabType {
  const decoders = members(tokenizerJson['decoder'], 'decoders');
  if (decoders.some((d) => d['type'] === 'ByteLevel')) return 'byte_level';
  if (decoders.some((d) => d['type'] === 'ByteFallback')) return 'byte_fallback';
  const metaspace = decoders.some(
    (d) => d['type'] === 'Metaspace' || (d['type'] === 'Replace' && isObject(d['pattern']) && d['pattern']['String'] === '▁' && d['content'] === ' '),
  );
  return metaspace ? 'byte_fallback' : 'raw';
}

/** A `Prepend ▁` normalizer or a Metaspace pre-tokenizer that prepends (always / first). */
export function detectAddPrefixSpace(tokenizerJson: Json): boolean {
  const prepend = members(tokenizerJson['normalizer'], 'normalizers').some((n) => n['type'] === 'Prepend' && n['prepend'] === '▁');
  const metaspace = members(tokenizerJson['pre_tokenizer'], 'pretokenizers').some(
    (p) => p['type'] === 'Metaspace' && (p['prepend_scheme'] === 'always' || p['prepend_scheme'] === 'first' || p['add_prefix_space'] === true),
  );
  return prepend || metaspace;
}

/** Build the grammar vocabulary of a model from its parsed tokenizer.json and its tokenizer. */
export function grammarVocab(tokenizerJson: Json, tokenizer: VocabTokenizer, opts: GrammarVocabOptions): GrammarVocab {
  const vocabSize = opts.vocabSize ?? tokenizer.vocabSize;
  if (!Number.isInteger(vocabSize) || vocabSize < tokenizer.vocabSize) {
    throw new RangeError(`grammar vocab size ${vocabSize} is smaller than the tokenizer's ${tokenizer.vocabSize}`);
  }
  const stop = new Set(opts.stopTokenIds);
  for (const id of stop) {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new RangeError(`stop token id ${id} is outside the vocabulary (${vocabSize})`);
  }
  const encodedVocab = new Array<string>(tokenizer.vocabSize);
  for (let id = 0; id < tokenizer.vocabSize; id++) {
    encodedVocab[id] = tokenizer.isSpecial(id) && !stop.has(id) ? '' : (tokenizer.idToToken(id) ?? '');
  }
  return {
    encodedVocab,
    vocabType: detectVocabType(tokenizerJson),
    addPrefixSpace: detectAddPrefixSpace(tokenizerJson),
    vocabSize,
    stopTokenIds: [...stop].sort((a, b) => a - b),
  };
}
