/**
 * Accuracy on the GGUF fixtures (../shared/fixtures/gguf, README there): for every file, Pagewise's
 * distance from the float64 reference on the file's own (dequantized) weights must be at least as
 * good as llama.cpp's on the same rows — top-1 agreement ≥ llama.cpp's, mean |Δ logprob| of the
 * reference's top-1 token ≤ llama.cpp's — and the greedy continuation must equal the reference's in
 * every case where llama.cpp's does. Run through the offline API (the engine the server uses), with
 * the engine's default precision for the file. The measure: test/helpers/reference-distance.ts.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { LLM } from '../src/engine/llm.js';
import { fixturePath, loadGolden } from './helpers/fixtures.js';
import { distance, llamaCppGreedyMatches, readGgufFixture, runCase } from './helpers/reference-distance.js';

const dir = fixturePath('gguf');
const files = readdirSync(dir, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort();

test('every GGUF fixture dir is covered', () => {
  assert.ok(files.length >= 7, `expected the 7 GGUF fixture dirs, found ${files.join(', ')}`);
});

for (const name of files) {
  describe(`GGUF accuracy ${name}`, () => {
    const f = readGgufFixture(join(dir, name));
    const { gguf, golden, peer } = f;

    test(`${name}: at least as close to the float64 reference as llama.cpp, greedy equal wherever llama.cpp's is`, async () => {
      const llm = new LLM({ model: gguf, kvCacheMemory: 64 * 1024 ** 2, threads: 2, log: () => {} });
      after(() => llm.close());
      const outs = await Promise.all(golden.cases.map((c) => runCase(llm, c)));
      golden.cases.forEach((c, k) => {
        if (llamaCppGreedyMatches(f, c.name)) assert.deepEqual(outs[k]!.outputs[0]!.tokenIds, c.greedy.token_ids, `${c.name}: greedy tokens (llama.cpp's match the reference)`);
      });
      const { rows, agree, mean } = distance(golden, outs);
      const ref = peer.vs_reference.prompt_rows;
      assert.equal(rows, ref.count);
      const msg = `${name}: top-1 agree ${agree}/${rows} (llama.cpp ${ref.top1_agree}), mean |Δ logprob| ${mean.toExponential(2)} (llama.cpp ${ref.ref_top1_logprob_abs_diff.mean.toExponential(2)})`;
      console.log(msg);
      assert.ok(agree >= ref.top1_agree, msg);
      assert.ok(mean <= ref.ref_top1_logprob_abs_diff.mean, msg);
    });

    if (golden.text_cases?.length) {
      test(`${name}: the GGUF's tokenizer and weights write the same stories as the Hugging Face model (text prompts, 200 greedy tokens)`, async () => {
        const hf = loadGolden('stories260k');
        const llm = new LLM({ model: gguf, kvCacheMemory: 64 * 1024 ** 2, threads: 2, log: () => {} });
        after(() => llm.close());
        for (const c of hf.text_cases!) {
          assert.deepEqual(await llm.tokenize(c.prompt), c.prompt_token_ids, `${c.prompt}: tokens`);
          const [out] = await llm.generate(c.prompt, { temperature: 0, maxTokens: c.greedy.max_tokens });
          assert.deepEqual(out!.outputs[0]!.tokenIds, c.greedy.token_ids, `${c.prompt}: greedy tokens`);
          assert.equal(out!.outputs[0]!.text, c.greedy.text_completion, `${c.prompt}: text`);
        }
      });
    }
  });
}
