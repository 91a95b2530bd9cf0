import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { PagewiseTokenizer, type DecodeOptions } from '../src/tokenizer/tokenizer.js';
import { IncrementalDetokenizer, type DetokenizerOptions } from '../src/tokenizer/detokenizer.js';
import { Rng } from '../src/sampling/rng.js';
import { fixturePath, loadGolden } from './helpers/fixtures.js';

const tok = PagewiseTokenizer.fromDir(fixturePath('stories260k'));
const SKIP: DetokenizerOptions = { skipSpecialTokens: true, spacesBetweenSpecialTokens: false };
const KEEP: DetokenizerOptions = { skipSpecialTokens: false, spacesBetweenSpecialTokens: false };
const KEEP_SPACED: DetokenizerOptions = { skipSpecialTokens: false, spacesBetweenSpecialTokens: true };

/** Push ids one at a time; returns every delta. */
function stream(promptIds: number[], gen: number[], opts: DetokenizerOptions, t: PagewiseTokenizer = tok): { deltas: string[]; d: IncrementalDetokenizer } {
  const d = new IncrementalDetokenizer(t, promptIds, opts);
  const deltas = gen.map((id) => d.push([id]));
  return { deltas, d };
}

/**
 * What the stream must add up to: the one-shot decode of prompt + generation minus the prompt's
 * text (null in the rare case where the prompt's text is not a prefix, e.g. a prompt cut inside a
 * UTF-8 character).
 */
function expectedOrNull(promptIds: number[], gen: number[], opts: DecodeOptions): string | null {
  const full = tok.decode([...promptIds, ...gen], opts);
  const pre = tok.decode(promptIds, opts);
  return full.startsWith(pre) ? full.slice(pre.length) : null;
}

function expected(promptIds: number[], gen: number[], opts: DecodeOptions): string {
  const e = expectedOrNull(promptIds, gen, opts);
  assert.ok(e !== null);
  return e;
}

describe('IncrementalDetokenizer', () => {
  test('stories260k: streaming the golden generations gives text_completion exactly', () => {
    const golden = loadGolden('stories260k');
    for (const c of golden.text_cases ?? []) {
      const { deltas, d } = stream(c.prompt_token_ids, c.greedy.token_ids, SKIP);
      assert.equal(deltas.join(''), c.greedy.text_completion);
      assert.equal(d.text, c.greedy.text_completion);
      assert.equal(d.flush(), '');
      // Multi-token pushes split the same way.
      const d3 = new IncrementalDetokenizer(tok, c.prompt_token_ids, SKIP);
      let out = '';
      for (let i = 0; i < c.greedy.token_ids.length; i += 3) out += d3.push(c.greedy.token_ids.slice(i, i + 3));
      assert.equal(out, c.greedy.text_completion);
    }
  });

  test('a byte-fallback emoji split over 4 tokens is emitted whole, never as U+FFFD', () => {
    const prompt = tok.encode('Look:');
    // Legacy SentencePiece normalisation prepends "▁": this is " 😀 ok" after the prompt.
    const gen = tok.encode('😀 ok', { addSpecialTokens: false });
    const byteTokens = gen.filter((id) => /^<0x[0-9A-F]{2}>$/.test(tok.idToToken(id) ?? ''));
    assert.equal(byteTokens.length, 4);
    const { deltas } = stream(prompt, gen, SKIP);
    for (const delta of deltas) assert.ok(!delta.includes('\uFFFD'), JSON.stringify(deltas));
    const emojiAt = deltas.findIndex((x) => x.includes('😀'));
    // Nothing appears while the 4 byte tokens arrive, then the whole character at once.
    const firstByte = gen.indexOf(byteTokens[0]!);
    assert.equal(emojiAt, gen.indexOf(byteTokens[3]!));
    for (let i = firstByte; i < emojiAt; i++) assert.equal(deltas[i], '');
    assert.equal(deltas.join(''), expected(prompt, gen, SKIP));
    assert.equal(deltas.join(''), ' 😀 ok');
  });

  test('accented characters and leading-space pieces', () => {
    const prompt = tok.encode('Once');
    const gen = tok.encode('upon a café, naïve élan', { addSpecialTokens: false });
    const { deltas } = stream(prompt, gen, SKIP);
    assert.equal(deltas.join(''), ' upon a café, naïve élan');
    // The first generated piece "▁upon" keeps its space: the prompt gives it context.
    assert.equal(deltas[0], ' upon');
    // Without a prompt the leading space of the first piece is dropped, as a one-shot decode does.
    const bare = stream([], gen, SKIP);
    assert.equal(bare.deltas.join(''), tok.decode(gen));
    assert.equal(bare.deltas[0], 'upon');
  });

  test('special tokens: skipped or kept', () => {
    const prompt = [1];
    const gen = [403, 2, 407, 1, 261];
    assert.deepEqual(stream(prompt, gen, SKIP).deltas, ['Once', '', ' upon', '', ' a']);
    assert.deepEqual(stream(prompt, gen, KEEP).deltas.join(''), expected(prompt, gen, KEEP));
    assert.equal(stream(prompt, gen, KEEP).deltas.join(''), ' Once</s> upon<s> a');
    assert.equal(stream(prompt, gen, KEEP_SPACED).deltas.join(''), expected(prompt, gen, KEEP_SPACED));
    assert.equal(stream(prompt, gen, KEEP_SPACED).deltas.join(''), ' Once</s> upon<s> a');
  });

  test('random id sequences (invalid bytes included): deltas + flush equal the one-shot decode', () => {
    const r = new Rng(11);
    for (let trial = 0; trial < 300; trial++) {
      const prompt = Array.from({ length: Math.floor(r.next() * 9) }, () => Math.floor(r.next() * tok.vocabSize));
      const gen = Array.from({ length: 1 + Math.floor(r.next() * 25) }, () => Math.floor(r.next() * tok.vocabSize));
      for (const opts of [SKIP, KEEP, KEEP_SPACED]) {
        const want = expectedOrNull(prompt, gen, opts);
        if (want === null) continue;
        const { deltas, d } = stream(prompt, gen, opts);
        const tail = d.flush();
        assert.equal(deltas.join('') + tail, want, JSON.stringify({ prompt, gen, opts }));
        assert.equal(d.text, deltas.join('') + tail);
        // Held-back text is never an incomplete character: no delta ends in U+FFFD.
        for (const delta of deltas) assert.ok(!delta.endsWith('\uFFFD'));
      }
    }
  });

  test('random text: streaming equals decoding, with no U+FFFD ever emitted', () => {
    const alphabet = ['a', 'b', ' ', 'the', ' cat', 'é', 'ñ', '😀', '日本', '\n', '!', '🐱', 'ü'];
    const r = new Rng(5);
    for (let trial = 0; trial < 100; trial++) {
      let text = '';
      const parts = 1 + Math.floor(r.next() * 20);
      for (let i = 0; i < parts; i++) text += alphabet[Math.floor(r.next() * alphabet.length)]!;
      const prompt = tok.encode('Story:');
      const gen = tok.encode(text, { addSpecialTokens: false });
      const { deltas, d } = stream(prompt, gen, SKIP);
      for (const delta of deltas) assert.ok(!delta.includes('\uFFFD'));
      assert.equal(deltas.join('') + d.flush(), expected(prompt, gen, SKIP));
    }
  });

  test('each step decodes only a short window, not the whole output', () => {
    let maxWindow = 0;
    let calls = 0;
    class Spy extends PagewiseTokenizer {
      override decode(ids: readonly number[], opts?: DecodeOptions): string {
        maxWindow = Math.max(maxWindow, ids.length);
        calls++;
        return super.decode(ids, opts);
      }
    }
    const spy = Object.setPrototypeOf(PagewiseTokenizer.fromDir(fixturePath('stories260k')), Spy.prototype) as PagewiseTokenizer;
    const golden = loadGolden('stories260k');
    const c = golden.text_cases![0]!;
    const long = [...c.greedy.token_ids, ...c.greedy.token_ids, ...c.greedy.token_ids];
    const { deltas } = stream(Array.from({ length: 300 }, () => 403), long, SKIP, spy);
    assert.ok(deltas.join('').length > 1000);
    assert.ok(maxWindow <= 8, `largest decoded window: ${maxWindow} ids`);
    assert.equal(calls, 2 * long.length);
  });
});
