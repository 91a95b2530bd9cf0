import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, copyFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PagewiseTokenizer } from '../src/tokenizer/tokenizer.js';
import { InvalidRequestError, ModelLoadError } from '../src/errors.js';
import { fixturePath, loadGolden } from './helpers/fixtures.js';

// Fixtures come from PAGEWISE_FIXTURES (default ../shared/fixtures); a missing folder fails loudly.
const stories = (): PagewiseTokenizer => PagewiseTokenizer.fromDir(fixturePath('stories260k'));
const qwen = (): PagewiseTokenizer => PagewiseTokenizer.fromDir(fixturePath('qwen2-tiny'));

function tempModelDir(from: string, extra: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'pagewise-tok-'));
  copyFileSync(join(from, 'tokenizer.json'), join(dir, 'tokenizer.json'));
  copyFileSync(join(from, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
  for (const [name, text] of Object.entries(extra)) writeFileSync(join(dir, name), text);
  return dir;
}

describe('PagewiseTokenizer: loading', () => {
  test('facts from tokenizer.json and tokenizer_config.json', () => {
    const t = stories();
    assert.equal(t.vocabSize, 512);
    assert.equal(t.bosTokenId, 1);
    assert.equal(t.eosTokenId, 2);
    assert.equal(t.bosToken, '<s>');
    assert.equal(t.eosToken, '</s>');
    assert.equal(t.addBosToken, true);
    assert.equal(t.chatTemplate, null);
    assert.ok(qwen().chatTemplate?.includes('<|im_start|>'));
  });

  test('a missing directory or file is a ModelLoadError naming the file', () => {
    assert.throws(() => PagewiseTokenizer.fromDir('/nonexistent/model'), (e: unknown) => e instanceof ModelLoadError && /tokenizer\.json not found/.test(e.message));
    const dir = tempModelDir(fixturePath('stories260k'));
    try {
      rmSync(join(dir, 'tokenizer_config.json'));
      assert.throws(() => PagewiseTokenizer.fromDir(dir), (e: unknown) => e instanceof ModelLoadError && /tokenizer_config\.json not found/.test(e.message));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('invalid JSON is a ModelLoadError naming the file', () => {
    const dir = tempModelDir(fixturePath('stories260k'), { 'tokenizer.json': '{ not json' });
    try {
      assert.throws(() => PagewiseTokenizer.fromDir(dir), (e: unknown) => e instanceof ModelLoadError && /tokenizer\.json is not valid JSON/.test(e.message));
      writeFileSync(join(dir, 'tokenizer.json'), '[1, 2]');
      assert.throws(() => PagewiseTokenizer.fromDir(dir), (e: unknown) => e instanceof ModelLoadError && /tokenizer\.json must hold a JSON object/.test(e.message));
      writeFileSync(join(dir, 'tokenizer.json'), '{"version": "1.0"}');
      assert.throws(() => PagewiseTokenizer.fromDir(dir), (e: unknown) => e instanceof ModelLoadError && /tokenizer\.json has no "model"/.test(e.message));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('PagewiseTokenizer: encode / decode', () => {
  test('encode matches the fixture README', () => {
    const t = stories();
    assert.deepEqual(t.encode('Once upon a time'), [1, 403, 407, 261, 378]);
    assert.deepEqual(t.encode('Once upon a time', { addSpecialTokens: false }), [403, 407, 261, 378]);
    // Special tokens written in the text are parsed as special tokens.
    assert.deepEqual(t.encode('<s> hi').slice(0, 2), [1, 1]);
    // Byte fallback: the emoji is 4 byte tokens (<0xF0> <0x9F> <0x98> <0x80>); é is a piece.
    const ids = t.encode('😀 é', { addSpecialTokens: false });
    assert.deepEqual(ids.slice(1, 5).map((id) => t.idToToken(id)), ['<0xF0>', '<0x9F>', '<0x98>', '<0x80>']);
    assert.equal(t.idToToken(ids[ids.length - 1]!), 'é');
    assert.equal(t.decode(ids), '😀 é');
  });

  test('decode: empty list, specials kept or skipped; spacesBetweenSpecialTokens follows tokenizer.json', () => {
    const t = stories();
    assert.equal(t.decode([]), '');
    assert.equal(t.decode([1, 403, 2, 407]), '<s> Once</s> upon');
    assert.equal(t.decode([1, 403, 2, 407], { skipSpecialTokens: true }), 'Once upon');
    // As HF fast tokenizers and vLLM's fast detokenizer: the decoder decides, no extra spaces.
    assert.equal(t.decode([1, 403, 2, 407], { spacesBetweenSpecialTokens: true }), '<s> Once</s> upon');
    assert.equal(t.decode([1, 403, 2, 407], { skipSpecialTokens: true, spacesBetweenSpecialTokens: true }), 'Once upon');
    assert.equal(t.decode([1, 2], { skipSpecialTokens: true }), '');
    // No clean-up of tokenization spaces (" ." stays), as vLLM's output text.
    assert.equal(t.decode(t.encode('a . b', { addSpecialTokens: false })), 'a . b');
  });

  test('isSpecial / idToToken / tokenToId', () => {
    const t = stories();
    assert.ok(t.isSpecial(0) && t.isSpecial(1) && t.isSpecial(2));
    assert.ok(!t.isSpecial(403));
    assert.equal(t.idToToken(403), '▁Once');
    assert.equal(t.idToToken(100000), null);
    assert.equal(t.tokenToId('▁Once'), 403);
    assert.equal(t.tokenToId('no-such-token'), null);
  });

  test('stories260k text cases: text_full is the decode of prompt + generation, specials skipped', () => {
    const t = stories();
    const golden = loadGolden('stories260k');
    assert.ok(golden.text_cases && golden.text_cases.length > 0);
    for (const c of golden.text_cases) {
      assert.deepEqual(t.encode(c.prompt), c.prompt_token_ids);
      const full = t.decode([...c.prompt_token_ids, ...c.greedy.token_ids], { skipSpecialTokens: true });
      assert.equal(full, c.greedy.text_full);
      const prompt = t.decode(c.prompt_token_ids, { skipSpecialTokens: true });
      assert.equal(full.slice(prompt.length), c.greedy.text_completion);
    }
  });

  test('round trip of varied text', () => {
    const t = stories();
    for (const s of ['Hello, world!', '  two  spaces', 'tabs\tand\nnewlines', 'café naïve', '日本語', 'emoji 🎉🐱', '']) {
      assert.equal(t.decode(t.encode(s), { skipSpecialTokens: true }), s);
    }
  });
});

describe('PagewiseTokenizer: chat template', () => {
  test('qwen2-tiny golden chat cases render and tokenize exactly (no BOS added)', () => {
    const t = qwen();
    const golden = loadGolden('qwen2-tiny');
    const chats = golden.cases.filter((c) => c.chat);
    assert.ok(chats.length >= 2);
    for (const c of chats) {
      const chat = c.chat! as { messages: Array<{ role: string; content: string }>; rendered: string; add_generation_prompt?: boolean };
      const rendered = t.applyChatTemplate(chat.messages, { addGenerationPrompt: chat.add_generation_prompt ?? true });
      assert.equal(rendered, chat.rendered);
      assert.deepEqual(t.encodeChatPrompt(rendered), c.prompt_token_ids);
    }
  });

  test('array contents are flattened to their text; add_generation_prompt false omits the header', () => {
    const t = qwen();
    const a = t.applyChatTemplate([{ role: 'user', content: [{ type: 'text', text: 'Hi' }, { type: 'text', text: 'there' }] }], { addGenerationPrompt: false });
    assert.equal(a, '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi\nthere<|im_end|>\n');
  });

  test('no template: InvalidRequestError', () => {
    assert.throws(
      () => stories().applyChatTemplate([{ role: 'user', content: 'hi' }]),
      (e: unknown) => e instanceof InvalidRequestError && /has no chat_template/.test(e.message) && e.status === 400,
    );
  });

  test('chat_template.jinja overrides the config; bos_token, eos_token and extra variables are passed', () => {
    const tpl = "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}{{ flavour }}";
    const dir = tempModelDir(fixturePath('qwen2-tiny'), { 'chat_template.jinja': tpl });
    try {
      const t = PagewiseTokenizer.fromDir(dir);
      assert.equal(t.chatTemplate, tpl);
      const r = t.applyChatTemplate([{ role: 'user', content: 'Once' }], { extra: { flavour: '!' } });
      assert.equal(r, '<s>[user]Once</s>[assistant]!');
      // The rendered text starts with the BOS text: exactly one BOS id, parsed from the text.
      const ids = t.encodeChatPrompt(r);
      assert.equal(ids[0], 1);
      assert.notEqual(ids[1], 1);
      assert.equal(ids.filter((id) => id === 1).length, 1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('chat_template.json and named templates (tool_use chosen when tools are given)', () => {
    const json = JSON.stringify({ chat_template: [{ name: 'default', template: 'D{{ messages | length }}' }, { name: 'tool_use', template: 'T{{ tools | length }}' }] });
    const dir = tempModelDir(fixturePath('stories260k'), { 'chat_template.json': json });
    try {
      const t = PagewiseTokenizer.fromDir(dir);
      assert.equal(t.chatTemplate, 'D{{ messages | length }}');
      assert.equal(t.applyChatTemplate([{ role: 'user', content: 'x' }]), 'D1');
      assert.equal(t.applyChatTemplate([{ role: 'user', content: 'x' }], { tools: [{ a: 1 }, { b: 2 }] }), 'T2');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a template's raise_exception is a request error", () => {
    const dir = tempModelDir(fixturePath('stories260k'), { 'chat_template.jinja': "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first message must be from the user') }}{% endif %}ok" });
    try {
      const t = PagewiseTokenizer.fromDir(dir);
      assert.equal(t.applyChatTemplate([{ role: 'user', content: 'x' }]), 'ok');
      assert.throws(
        () => t.applyChatTemplate([{ role: 'assistant', content: 'x' }]),
        (e: unknown) => e instanceof InvalidRequestError && /first message must be from the user/.test(e.message) && e.param === 'messages',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
