/**
 * The tokenizer of a GGUF file as the `tokenizer.json` / `tokenizer_config.json` objects that
 * PagewiseTokenizer takes, built from `tokenizer.ggml.*` metadata:
 * - `llama`: SentencePiece BPE with byte fallback. GGUF stores no merges for it, only piece scores;
 *   SentencePiece merges the adjacent pair whose merged piece scores highest, which an HF BPE model
 *   reproduces with merges ranked by the merged piece's score (ties: left piece id, right piece id).
 * - `gpt2`: byte-level BPE with the file's merges, pre-tokenized by the regex `tokenizer.ggml.pre` names.
 */
import { ModelLoadError } from '../../../errors.js';
import { GGUF_KEYS, GgufTokenType } from './format.js';
import type { GgufFile } from './file.js';

type Json = Record<string, unknown>;

export interface GgufTokenizer {
  tokenizerJson: Json;
  tokenizerConfig: Json;
  chatTemplate: string | null;
}

export const SUPPORTED_GGUF_TOKENIZERS: readonly string[] = ['llama', 'gpt2'];

// The GPT-2 family of split regexes (the contraction part spelled case-insensitively by hand
// because the regex engine under the tokenizer library has no inline flags).
const CONTRACTIONS = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
const LLAMA3_SPLIT = `${CONTRACTIONS}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`;
const QWEN2_SPLIT = `${CONTRACTIONS}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`;

const byteLevel = (useRegex: boolean): Json => ({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: useRegex });
const splitThenBytes = (regex: string): Json => ({
  type: 'Sequence',
  pretokenizers: [{ type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false }, byteLevel(false)],
});

/** `tokenizer.ggml.pre` → pre-tokenizer, normalizer, and whether merges are skipped for whole-word vocab hits. */
const GPT2_PRE: Readonly<Record<string, { preTokenizer: Json; normalizer: Json | null; ignoreMerges: boolean }>> = {
  default: { preTokenizer: byteLevel(true), normalizer: null, ignoreMerges: false },
  gpt2: { preTokenizer: byteLevel(true), normalizer: null, ignoreMerges: false },
  // llama.cpp's own name for GPT-2's rule (what its converter and `pagewise quantize` write).
  'gpt-2': { preTokenizer: byteLevel(true), normalizer: null, ignoreMerges: false },
  'llama-bpe': { preTokenizer: splitThenBytes(LLAMA3_SPLIT), normalizer: null, ignoreMerges: true },
  llama3: { preTokenizer: splitThenBytes(LLAMA3_SPLIT), normalizer: null, ignoreMerges: true },
  smollm: {
    preTokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, byteLevel(true)] },
    normalizer: null,
    ignoreMerges: false,
  },
  qwen2: { preTokenizer: splitThenBytes(QWEN2_SPLIT), normalizer: { type: 'NFC' }, ignoreMerges: false },
};

export function ggufTokenizer(f: GgufFile): GgufTokenizer {
  const model = f.string(GGUF_KEYS.tokenizerModel);
  if (model === undefined) f.fail(GGUF_KEYS.tokenizerModel, 'is missing');
  if (!SUPPORTED_GGUF_TOKENIZERS.includes(model)) {
    throw new ModelLoadError(`${f.description}: unsupported tokenizer model "${model}" (supported: ${SUPPORTED_GGUF_TOKENIZERS.join(', ')})`, {
      code: 'unsupported_tokenizer',
    });
  }
  const tokens = f.stringArray(GGUF_KEYS.tokens);
  if (tokens === undefined || tokens.length === 0) f.fail(GGUF_KEYS.tokens, 'is missing or empty');
  const n = tokens.length;
  const types = f.numberArray(GGUF_KEYS.tokenType) ?? new Array<number>(n).fill(GgufTokenType.NORMAL);
  if (types.length !== n) f.fail(GGUF_KEYS.tokenType, `has ${types.length} entries for ${n} tokens`);
  const idOf = (key: string): number | null => {
    const v = f.int(key);
    if (v === undefined || v === 0xffffffff || v === -1) return null;
    if (v < 0 || v >= n) f.fail(key, `token id ${v} is outside the vocabulary (${n})`);
    return v;
  };
  const bos = idOf(GGUF_KEYS.bosId);
  const eos = idOf(GGUF_KEYS.eosId);
  const unk = idOf(GGUF_KEYS.unkId);
  const pad = idOf(GGUF_KEYS.padId);
  // llama.cpp's defaults: SentencePiece vocabularies add BOS, byte-level BPE ones do not.
  const addBos = (f.bool(GGUF_KEYS.addBos) ?? model === 'llama') && bos !== null;
  const addEos = (f.bool(GGUF_KEYS.addEos) ?? false) && eos !== null;

  // No prototype: a vocabulary may well hold "constructor" or "__proto__".
  const vocab: Record<string, number> = Object.create(null) as Record<string, number>;
  // A piece may be listed twice (Gemma 3's vocabulary holds "//", "<?" and "#" twice): text maps to
  // the later id, as llama.cpp's token_to_id does, so both engines encode alike.
  for (let i = 0; i < n; i++) vocab[tokens[i]!] = i;
  const addedTokens: Json[] = [];
  const addedDecoder: Record<string, Json> = {};
  for (let i = 0; i < n; i++) {
    const t = types[i];
    if (t !== GgufTokenType.CONTROL && t !== GgufTokenType.USER_DEFINED && t !== GgufTokenType.UNKNOWN) continue;
    const special = t !== GgufTokenType.USER_DEFINED;
    const entry = { content: tokens[i]!, single_word: false, lstrip: false, rstrip: false, normalized: false, special };
    addedTokens.push({ id: i, ...entry });
    addedDecoder[String(i)] = entry;
  }

  let modelJson: Json;
  let normalizer: Json | null;
  let preTokenizer: Json | null;
  let decoder: Json;
  if (model === 'llama') {
    const scores = f.numberArray(GGUF_KEYS.scores);
    if (scores === undefined || scores.length !== n) f.fail(GGUF_KEYS.scores, `must hold one score per token (${n})`);
    const spacePrefix = f.bool(GGUF_KEYS.addSpacePrefix) ?? true;
    modelJson = {
      type: 'BPE', dropout: null, unk_token: unk === null ? null : tokens[unk], continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges: scoreMerges(tokens, scores, types),
    };
    const replace = { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' };
    normalizer = spacePrefix ? { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '\u2581' }, replace] } : replace;
    preTokenizer = null;
    decoder = {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        ...(spacePrefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
      ],
    };
  } else {
    const pre = f.string(GGUF_KEYS.tokenizerPre) ?? 'default';
    const p = GPT2_PRE[pre];
    if (p === undefined) {
      throw new ModelLoadError(`${f.description}: unsupported pre-tokenizer "${pre}" (supported: ${Object.keys(GPT2_PRE).join(', ')})`, {
        code: 'unsupported_tokenizer',
      });
    }
    const merges = f.stringArray(GGUF_KEYS.merges);
    if (merges === undefined) f.fail(GGUF_KEYS.merges, 'is missing (a gpt2 tokenizer needs its merges)');
    for (const m of merges) if (m.split(' ').length !== 2) f.fail(GGUF_KEYS.merges, `entry "${m}" is not two pieces separated by one space`);
    modelJson = {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: p.ignoreMerges, vocab, merges,
    };
    normalizer = p.normalizer;
    preTokenizer = p.preTokenizer;
    decoder = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true };
  }

  const tokenizerJson: Json = {
    version: '1.0', truncation: null, padding: null, added_tokens: addedTokens, normalizer, pre_tokenizer: preTokenizer,
    post_processor: postProcessor(addBos ? tokens[bos!]! : null, bos, addEos ? tokens[eos!]! : null, eos),
    decoder, model: modelJson,
  };
  const chatTemplate = f.string(GGUF_KEYS.chatTemplate) ?? null;
  const tokenizerConfig: Json = {
    add_bos_token: addBos,
    add_eos_token: addEos,
    added_tokens_decoder: addedDecoder,
    bos_token: bos === null ? null : tokens[bos],
    eos_token: eos === null ? null : tokens[eos],
    unk_token: unk === null ? null : tokens[unk],
    pad_token: pad === null ? null : tokens[pad],
    clean_up_tokenization_spaces: false,
    ...(chatTemplate === null ? {} : { chat_template: chatTemplate }),
  };
  return { tokenizerJson, tokenizerConfig, chatTemplate };
}

function postProcessor(bosTok: string | null, bosId: number | null, eosTok: string | null, eosId: number | null): Json | null {
  if (bosTok === null && eosTok === null) return null;
  const seq = (id: string, typeId: number): Json[] => [
    ...(bosTok === null ? [] : [{ SpecialToken: { id: bosTok, type_id: typeId } }]),
    { Sequence: { id, type_id: typeId } },
    ...(eosTok === null ? [] : [{ SpecialToken: { id: eosTok, type_id: typeId } }]),
  ];
  const special: Json = {};
  if (bosTok !== null) special[bosTok] = { id: bosTok, ids: [bosId], tokens: [bosTok] };
  if (eosTok !== null) special[eosTok] = { id: eosTok, ids: [eosId], tokens: [eosTok] };
  return { type: 'TemplateProcessing', single: seq('A', 0), pair: [...seq('A', 0), ...seq('B', 1)], special_tokens: special };
}

/**
 * BPE merges equivalent to SentencePiece's score-driven merging: every split of a normal piece into
 * two normal pieces is a merge, ranked by the merged piece's score (higher first).
 */
export function scoreMerges(tokens: readonly string[], scores: readonly number[], types: readonly number[]): string[] {
  const normal = new Map<string, number>();
  // A piece holding a plain space can never match (the normalizer turns spaces into ▁) and would
  // not fit the "left right" merge notation.
  for (let i = 0; i < tokens.length; i++) if (types[i] === GgufTokenType.NORMAL && !tokens[i]!.includes(' ')) normal.set(tokens[i]!, i);
  const found: Array<{ merge: string; score: number; l: number; r: number }> = [];
  for (const [piece, id] of normal) {
    const chars = Array.from(piece);
    for (let k = 1; k < chars.length; k++) {
      const left = chars.slice(0, k).join('');
      const right = chars.slice(k).join('');
      const l = normal.get(left);
      const r = normal.get(right);
      if (l !== undefined && r !== undefined) found.push({ merge: `${left} ${right}`, score: scores[id]!, l, r });
    }
  }
  found.sort((a, b) => b.score - a.score || a.l - b.l || a.r - b.r);
  return found.map((m) => m.merge);
}
