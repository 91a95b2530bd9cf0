/**
 * Qwen3 from GGUF: qwen3-tiny written as a Q8_0 GGUF file (`pagewise quantize`'s writer, llama.cpp's
 * names: `qwen3` architecture, attn_q_norm / attn_k_norm kept F32) loads through the GGUF reader
 * and generates the float64 reference's greedy continuations, its log-probs within the Q8_0 error.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { LLM } from '../src/engine/llm.js';
import { quantizeModel } from '../src/model/quantize/hf-to-gguf.js';
import { fixturePath, loadGolden } from './helpers/fixtures.js';

const tmp = mkdtempSync(join(tmpdir(), 'pagewise-qwen3-gguf-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

test('qwen3-tiny as Q8_0 GGUF: greedy goldens exactly, log-probs within 2e-2', async () => {
  const file = join(tmp, 'qwen3-tiny-Q8_0.gguf');
  quantizeModel(fixturePath('qwen3-tiny'), file, 'q8_0');
  const golden = loadGolden('qwen3-tiny');
  const llm = new LLM({ model: file, dtype: 'float32', kvCacheDtype: 'float32', kvCacheMemory: 16 * 1024 ** 2, threads: 2, log: () => {} });
  after(() => llm.close());
  const outs = await Promise.all(
    golden.cases.map((c) => llm.generate({ promptTokenIds: c.prompt_token_ids }, { temperature: 0, maxTokens: c.greedy.max_tokens, logprobs: 0 }).then((o) => o[0]!)),
  );
  assert.equal((await llm.engine()).info.model.architecture, 'Qwen3ForCausalLM');
  outs.forEach((o, k) => {
    const c = golden.cases[k]!;
    const out = o.outputs[0]!;
    assert.deepEqual(out.tokenIds, c.greedy.token_ids, `${c.name}: greedy tokens`);
    out.logprobs!.forEach((lp, i) => {
      const d = Math.abs(lp.token.logprob - c.greedy.logprobs![i]!);
      assert.ok(d <= 2e-2 * Math.max(1, Math.abs(c.greedy.logits![i]!)), `${c.name} step ${i}: logprob off by ${d}`);
    });
  });
});
