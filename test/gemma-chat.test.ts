/**
 * Gemma 3's instruction template (gemma3-tiny carries it verbatim from google/gemma-3-*-it) renders
 * through the tokenizer's @huggingface/jinja path exactly as transformers' apply_chat_template does:
 * the BOS written by the template, the system message folded into the first user turn, `assistant`
 * shown as `model`, and the golden chat prompts' token ids.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PagewiseTokenizer } from '../src/tokenizer/tokenizer.js';
import { fixturePath, loadGolden } from './helpers/fixtures.js';

test('gemma3-tiny chat cases: rendered text and token ids equal the goldens', () => {
  const tok = PagewiseTokenizer.fromDir(fixturePath('gemma3-tiny'));
  const chats = loadGolden('gemma3-tiny').cases.filter((c) => c.chat);
  assert.ok(chats.length >= 2, 'the fixture has chat cases');
  for (const c of chats) {
    const messages = c.chat!.messages.map((m) => ({ role: m.role, content: m.content }));
    const rendered = tok.applyChatTemplate(messages, { addGenerationPrompt: true });
    assert.equal(rendered, c.chat!.rendered, c.name);
    assert.deepEqual(tok.encode(rendered, { addSpecialTokens: false }), c.prompt_token_ids, `${c.name}: token ids`);
  }
});
