/**
 * The compact BPE merge table (src/tokenizer/compact-bpe.ts) must encode exactly as
 * @huggingface/tokenizers' own BPE model, which it replaces inside the library's Tokenizer. Random
 * vocabularies and merges over an awkward alphabet (multi-byte and astral characters, characters in
 * no merge, merges whose pieces or result are not in the vocabulary, duplicate merges, an added
 * token that takes over a vocabulary id), every BPE option the library reads, random texts
 * (long single words included), compared id for id; then the real tokenizers of the fixtures.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Tokenizer } from '@huggingface/tokenizers';
import { openGgufModel } from '../src/model/loader/gguf/index.js';
import { CompactBpe, type LibBpe } from '../src/tokenizer/compact-bpe.js';
import { PagewiseTokenizer, readTokenizerFiles, type TokenizerFiles } from '../src/tokenizer/tokenizer.js';
import { fixturePath } from './helpers/fixtures.js';
import { rng } from './reference/ops.js';

const ALPHABET = ['a', 'b', 'c', 'd', 'e', ' ', 'é', '日', '本', '😀', 'Ġ', '▁', 'q', 'z'];
/** In the text, never in a merge or the vocabulary: unknown characters. */
const UNKNOWN = ['q', 'z'];

interface Variant {
  byteFallback: boolean;
  unk: boolean;
  ignoreMerges: boolean;
  fuseUnk: boolean;
  pairs: boolean;
  preTokenizer: boolean;
}

function randomTokenizer(seed: number, v: Variant): { json: Record<string, unknown>; texts: string[] } {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const known = ALPHABET.filter((c) => !UNKNOWN.includes(c));
  const pieces = [...known];
  const merges: Array<[string, string]> = [];
  for (let i = 0; i < 120; i++) {
    const a = pick(pieces);
    const b = pick(pieces);
    merges.push([a, b]);
    pieces.push(a + b);
  }
  // Duplicates (the later rank wins in the library) and merges the vocabulary cannot back.
  for (let i = 0; i < 10; i++) merges.splice(Math.floor(r() * merges.length), 0, pick(merges));
  merges.splice(5, 0, ['x', 'y'], [pick(known), 'ghost']);
  const vocab: Record<string, number> = Object.create(null) as Record<string, number>;
  let id = 0;
  const inVocab = [...new Set(pieces)].filter(() => r() > 0.1);
  for (const c of known) if (!inVocab.includes(c)) inVocab.push(c);
  for (const p of inVocab) vocab[p] = id++;
  if (v.unk) vocab['<unk>'] = id++;
  // Byte fallback pieces for some bytes only, so some unknown text has no fallback.
  for (let b = 0x40; b < 0xf8; b++) if (r() > 0.3) vocab[`<0x${b.toString(16).toUpperCase()}>`] = id++;
  const added = [{ id: 3, content: '<special>', special: true, single_word: false, lstrip: false, rstrip: false, normalized: false }];
  const json = {
    version: '1.0',
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: v.preTokenizer ? { type: 'WhitespaceSplit' } : null,
    post_processor: null,
    decoder: null,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: v.unk ? '<unk>' : null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: v.fuseUnk,
      byte_fallback: v.byteFallback,
      ignore_merges: v.ignoreMerges,
      vocab,
      merges: v.pairs ? merges : merges.map(([a, b]) => `${a} ${b}`),
    },
  };
  const texts: string[] = [];
  for (let i = 0; i < 60; i++) {
    const n = i < 5 ? 400 + Math.floor(r() * 600) : 1 + Math.floor(r() * 40);
    let t = '';
    for (let k = 0; k < n; k++) t += r() < 0.3 ? pick(pieces) : pick(ALPHABET);
    if (i % 7 === 0) t += '<special>' + t;
    texts.push(t);
  }
  return { json, texts };
}

/** The library's tokenizer with its merge step replaced by CompactBpe, as PagewiseTokenizer builds it. */
function compactTokenizer(json: Record<string, unknown>): InstanceType<typeof Tokenizer> {
  const model = json['model'] as Record<string, unknown>;
  const tok = new Tokenizer({ ...json, model: { ...model, vocab: {}, merges: [] } }, {});
  tok.model = new CompactBpe(tok.model as LibBpe, model['vocab'] as Record<string, number>, model['merges'] as string[]);
  return tok;
}

describe('compact BPE encodes exactly as the library', () => {
  let seed = 1;
  for (const byteFallback of [false, true]) {
    for (const unk of [false, true]) {
      for (const ignoreMerges of [false, true]) {
        const v: Variant = { byteFallback, unk, ignoreMerges, fuseUnk: unk && seed % 2 === 0, pairs: seed % 3 === 0, preTokenizer: seed % 2 === 1 };
        const s = seed++;
        test(`random vocabulary ${s}: ${JSON.stringify(v)}`, () => {
          const { json, texts } = randomTokenizer(s * 7919, v);
          const lib = new Tokenizer(json, {});
          const compact = compactTokenizer(json);
          const ours = new PagewiseTokenizer(json, {});
          for (const t of texts) {
            const want = lib.encode(t, { add_special_tokens: false }).ids as number[];
            assert.deepEqual(compact.encode(t, { add_special_tokens: false }).ids, want, JSON.stringify(t));
            assert.deepEqual(ours.encode(t, { addSpecialTokens: false }), want, JSON.stringify(t));
          }
        });
      }
    }
  }

  test('the fixtures\' real tokenizers (SentencePiece BPE from tokenizer.json and from GGUF metadata)', () => {
    const cases: Array<[string, TokenizerFiles]> = [['stories260k', readTokenizerFiles(fixturePath('stories260k'))]];
    for (const g of ['gguf/stories260k/stories260k.gguf', 'gguf/llama-q256-Q4_K_M/llama-q256-Q4_K_M.gguf']) {
      const m = openGgufModel(fixturePath(g));
      cases.push([g, { tokenizerJson: m.tokenizerJson, tokenizerConfig: m.tokenizerConfig }]);
    }
    const texts = [
      'Once upon a time, there was a little girl named Lily. She loved to play outside!',
      '  spaces   and\ttabs\n\nnewlines ',
      '日本語 😀 émoji ﬁ \u200b ǅ',
      'supercalifragilisticexpialidocious'.repeat(30),
    ];
    for (const [name, f] of cases) {
      const json = { ...f.tokenizerJson, added_tokens: f.tokenizerJson['added_tokens'] ?? [] };
      const lib = new Tokenizer(json, f.tokenizerConfig);
      const ours = PagewiseTokenizer.fromFiles(f);
      for (const t of texts) {
        for (const special of [true, false]) assert.deepEqual(ours.encode(t, { addSpecialTokens: special }), lib.encode(t, { add_special_tokens: special }).ids, `${name}: ${t.slice(0, 30)}`);
      }
    }
  });
});
