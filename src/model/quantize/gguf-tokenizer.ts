/**
 * A Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) as GGUF `tokenizer.ggml.*`
 * metadata, the way llama.cpp's converter writes it:
 * - byte-level BPE (GPT-2 style) → model `gpt2`: tokens, token types and the merges;
 * - SentencePiece-style BPE (byte fallback, `▁` for spaces) → model `llama`: tokens, token types
 *   and scores (see {@link sentencePieceScores}).
 */
import { ModelLoadError } from '../../errors.js';
import { GgufValueType } from '../loader/gguf/format.js';
import { type GgufMetaValue } from '../loader/gguf/writer.js';

/** llama.cpp's token types. */
export enum GgufTokenType {
  NORMAL = 1,
  UNKNOWN = 2,
  CONTROL = 3,
  USER_DEFINED = 4,
  UNUSED = 5,
  BYTE = 6,
}

export interface GgufTokenizerInput {
  tokenizerJson: unknown;
  tokenizerConfig: unknown;
  /** The model's vocabulary size (embedding rows): the token list is padded to it. */
  vocabSize: number;
  bosTokenId: number | null;
  eosTokenId: number | null;
  source: string;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Every object of a tokenizers component tree (Sequence nesting included) with its `type`. */
function componentTypes(c: unknown): string[] {
  if (!isObj(c)) return [];
  const inner = [c['pretokenizers'], c['decoders'], c['normalizers'], c['processors']].flatMap((l) => (Array.isArray(l) ? l.flatMap(componentTypes) : []));
  return [String(c['type']), ...inner];
}

/** The regex of the first Split pre-tokenizer, if any. */
function splitPattern(pre: unknown): string | undefined {
  if (!isObj(pre)) return undefined;
  if (pre['type'] === 'Split' && isObj(pre['pattern']) && typeof pre['pattern']['Regex'] === 'string') return pre['pattern']['Regex'];
  const list = pre['pretokenizers'];
  if (Array.isArray(list)) for (const p of list) {
    const r = splitPattern(p);
    if (r !== undefined) return r;
  }
  return undefined;
}

/**
 * llama.cpp's name for a byte-level pre-tokenizer (`tokenizer.ggml.pre`), recognized by its split
 * regex (Llama 3's, Qwen2's), or its absence (`gpt-2`: ByteLevel's own regex; `smollm`: with
 * single digits split first); `default` when unknown (llama.cpp then warns and uses GPT-2's).
 */
export function preTokenizerName(pre: unknown): string {
  const pattern = splitPattern(pre);
  if (pattern === undefined) {
    // SmolLM's: single digits split off, then GPT-2's regex (llama.cpp's `smollm` rule).
    const digits = isObj(pre) && Array.isArray(pre['pretokenizers']) && pre['pretokenizers'].some((p) => isObj(p) && p['type'] === 'Digits' && p['individual_digits'] === true);
    return digits ? 'smollm' : 'gpt-2';
  }
  if (pattern.includes('\\p{N}{1,3}') && pattern.includes("(?i:'s|'t|'re|'ve|'m|'ll|'d)")) return 'llama-bpe';
  if (pattern.includes('\\p{N}') && pattern.includes("(?i:'s|'t|'re|'ve|'m|'ll|'d)") && !pattern.includes('{1,3}')) return 'qwen2';
  return 'default';
}

/** Whether the post-processor puts a special token first (what add_bos_token means in GGUF). */
function templateAddsFirst(post: unknown, first: boolean): boolean {
  if (!isObj(post)) return false;
  if (post['type'] === 'Sequence' && Array.isArray(post['processors'])) return post['processors'].some((p) => templateAddsFirst(p, first));
  if (post['type'] !== 'TemplateProcessing' || !Array.isArray(post['single'])) return false;
  const single = post['single'] as unknown[];
  const item = first ? single[0] : single[single.length - 1];
  return isObj(item) && 'SpecialToken' in item;
}

/**
 * Scores for llama.cpp's SentencePiece tokenizer, which merges the adjacent pair whose result has
 * the highest score: the order of the scores among merged tokens must be the order of HF's merge
 * ranks. A tokenizer converted from SentencePiece lists its pieces by descending score, so when the
 * merge results come in id order, each normal token gets −(its index among the normal tokens), the
 * scores SentencePiece itself stores for such a vocabulary; otherwise a merged token gets −(its
 * merge rank) and other normal tokens 0. Control, byte and unknown tokens get 0, padding −1000.
 */
export function sentencePieceScores(tokens: readonly string[], types: readonly number[], merges: readonly string[], vocab: Obj): number[] {
  const mergedIds: number[] = [];
  const seen = new Set<number>();
  for (const m of merges) {
    const id = vocab[m.replace(' ', '')];
    if (typeof id === 'number' && !seen.has(id)) {
      seen.add(id);
      mergedIds.push(id);
    }
  }
  const idOrder = mergedIds.every((id, i) => i === 0 || id > mergedIds[i - 1]!);
  const scores = tokens.map((_, id): number => (types[id] === GgufTokenType.UNUSED ? -1000 : 0));
  if (idOrder) {
    let n = 0;
    types.forEach((t, id) => {
      if (t === GgufTokenType.NORMAL) scores[id] = -n++;
    });
  } else mergedIds.forEach((id, rank) => (scores[id] = -rank));
  return scores;
}

/** Whether a SentencePiece-style tokenizer.json puts "▁" before the text (llama.cpp's default: yes). */
function addsSpacePrefix(tj: Obj): boolean {
  const all = (c: unknown): Obj[] => {
    if (!isObj(c)) return [];
    const inner = [c['pretokenizers'], c['normalizers']].flatMap((l) => (Array.isArray(l) ? l.flatMap(all) : []));
    return [c, ...inner];
  };
  if (all(tj['normalizer']).some((n) => n['type'] === 'Prepend')) return true;
  const meta = all(tj['pre_tokenizer']).find((p) => p['type'] === 'Metaspace');
  if (!meta) return true;
  return !(meta['prepend_scheme'] === 'never' || meta['add_prefix_space'] === false);
}

export function tokenizerMetadata(input: GgufTokenizerInput): Array<[string, GgufMetaValue]> {
  const { tokenizerJson: tj, source } = input;
  const cfg = isObj(input.tokenizerConfig) ? input.tokenizerConfig : {};
  const bad = (m: string) => new ModelLoadError(`${source}: ${m}`, { code: 'invalid_tokenizer' });
  if (!isObj(tj) || !isObj(tj['model'])) throw bad('tokenizer.json has no "model" object');
  const model = tj['model'];
  if (model['type'] !== 'BPE') throw bad(`tokenizer model ${String(model['type'])} cannot be written to GGUF (only BPE: byte-level or SentencePiece-style)`);
  if (!isObj(model['vocab'])) throw bad('tokenizer.json model has no vocab');
  const kinds = [...componentTypes(tj['pre_tokenizer']), ...componentTypes(tj['decoder']), ...componentTypes(tj['normalizer'])];
  const sentencePiece = model['byte_fallback'] === true || kinds.includes('ByteFallback') || kinds.includes('Metaspace');
  const byteLevel = kinds.includes('ByteLevel');
  if (!sentencePiece && !byteLevel) throw bad('BPE tokenizer is neither byte-level (GPT-2 style) nor SentencePiece-style (byte fallback)');

  // Tokens by id: the vocab, then added tokens (which may also be in the vocab).
  const byId = new Map<number, string>();
  for (const [tok, id] of Object.entries(model['vocab'])) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) throw bad(`vocab entry ${JSON.stringify(tok)} has invalid id ${String(id)}`);
    byId.set(id, tok);
  }
  const added = new Map<number, boolean>(); // id -> special
  for (const a of Array.isArray(tj['added_tokens']) ? tj['added_tokens'] : []) {
    if (!isObj(a) || typeof a['id'] !== 'number' || typeof a['content'] !== 'string') continue;
    byId.set(a['id'], a['content']);
    added.set(a['id'], a['special'] === true);
  }
  let maxId = -1; // (no spread: real vocabularies overflow the argument stack)
  for (const id of byId.keys()) if (id > maxId) maxId = id;
  const n = Math.max(input.vocabSize, maxId + 1);
  if (maxId + 1 > input.vocabSize) throw bad(`tokenizer has token id ${maxId}, beyond the model's vocabulary of ${input.vocabSize}`);
  const tokens: string[] = [];
  const types: number[] = [];
  const unk = typeof model['unk_token'] === 'string' ? model['unk_token'] : undefined;
  for (let id = 0; id < n; id++) {
    const tok = byId.get(id);
    if (tok === undefined) {
      tokens.push(`[PAD${id}]`);
      types.push(GgufTokenType.UNUSED);
      continue;
    }
    tokens.push(tok);
    if (added.has(id)) types.push(added.get(id) ? (tok === unk ? GgufTokenType.UNKNOWN : GgufTokenType.CONTROL) : GgufTokenType.USER_DEFINED);
    else if (tok === unk) types.push(GgufTokenType.UNKNOWN);
    else if (sentencePiece && /^<0x[0-9A-Fa-f]{2}>$/.test(tok)) types.push(GgufTokenType.BYTE);
    else types.push(GgufTokenType.NORMAL);
  }

  const merges: string[] = [];
  for (const m of Array.isArray(model['merges']) ? model['merges'] : []) {
    if (typeof m === 'string') merges.push(m);
    else if (Array.isArray(m) && m.length === 2 && m.every((s) => typeof s === 'string')) merges.push(`${m[0]} ${m[1]}`);
    else throw bad('tokenizer.json has a merge that is neither "a b" nor ["a", "b"]');
  }

  const meta: Array<[string, GgufMetaValue]> = [];
  const str = (v: string): GgufMetaValue => ({ type: GgufValueType.STRING, value: v });
  const u32 = (v: number): GgufMetaValue => ({ type: GgufValueType.UINT32, value: v });
  const bool = (v: boolean): GgufMetaValue => ({ type: GgufValueType.BOOL, value: v });
  if (sentencePiece) {
    const scores = sentencePieceScores(tokens, types, merges, model['vocab'] as Obj);
    meta.push(['tokenizer.ggml.model', str('llama')], ['tokenizer.ggml.pre', str('default')]);
    meta.push(['tokenizer.ggml.tokens', { type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, values: tokens }]);
    meta.push(['tokenizer.ggml.scores', { type: GgufValueType.ARRAY, itemType: GgufValueType.FLOAT32, values: scores }]);
    meta.push(['tokenizer.ggml.token_type', { type: GgufValueType.ARRAY, itemType: GgufValueType.INT32, values: types }]);
    // llama.cpp prepends "▁" to SentencePiece input unless told not to; HF says so with a
    // Metaspace pre-tokenizer that never prepends (and no Prepend normalizer).
    if (!addsSpacePrefix(tj)) meta.push(['tokenizer.ggml.add_space_prefix', bool(false)]);
  } else {
    meta.push(['tokenizer.ggml.model', str('gpt2')], ['tokenizer.ggml.pre', str(preTokenizerName(tj['pre_tokenizer']))]);
    meta.push(['tokenizer.ggml.tokens', { type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, values: tokens }]);
    meta.push(['tokenizer.ggml.token_type', { type: GgufValueType.ARRAY, itemType: GgufValueType.INT32, values: types }]);
    meta.push(['tokenizer.ggml.merges', { type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, values: merges }]);
  }

  const idOf = (v: unknown): number | undefined => {
    const s = typeof v === 'string' ? v : isObj(v) && typeof v['content'] === 'string' ? v['content'] : undefined;
    if (s === undefined) return undefined;
    const i = tokens.indexOf(s);
    return i >= 0 ? i : undefined;
  };
  const bos = input.bosTokenId ?? idOf(cfg['bos_token']);
  const eos = input.eosTokenId ?? idOf(cfg['eos_token']);
  const unkId = unk !== undefined ? idOf(unk) : undefined;
  const pad = idOf(cfg['pad_token']);
  if (bos !== undefined && bos !== null) meta.push(['tokenizer.ggml.bos_token_id', u32(bos)]);
  if (eos !== undefined && eos !== null) meta.push(['tokenizer.ggml.eos_token_id', u32(eos)]);
  if (unkId !== undefined) meta.push(['tokenizer.ggml.unknown_token_id', u32(unkId)]);
  if (pad !== undefined) meta.push(['tokenizer.ggml.padding_token_id', u32(pad)]);
  const addBos = typeof cfg['add_bos_token'] === 'boolean' ? cfg['add_bos_token'] : templateAddsFirst(tj['post_processor'], true);
  const addEos = typeof cfg['add_eos_token'] === 'boolean' ? cfg['add_eos_token'] : false;
  meta.push(['tokenizer.ggml.add_bos_token', bool(addBos)], ['tokenizer.ggml.add_eos_token', bool(addEos)]);
  if (typeof cfg['chat_template'] === 'string') meta.push(['tokenizer.chat_template', str(cfg['chat_template'])]);
  return meta;
}
