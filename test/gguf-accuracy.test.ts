/**
 * Accuracy on the GGUF fixtures (../shared/fixtures/gguf, README there): for every file, Pagewise's
 * distance from the float64 reference on the file's own (dequantized) weights must be at least as
 * good as llama.cpp's on the same rows — top-1 agreement ≥ llama.cpp's, mean |Δ logprob| of the
 * reference's top-1 token ≤ llama.cpp's — and the greedy continuation must equal the reference's in
 * every case where llama.cpp's does. Run through the offline API (the engine the server uses), with
 * the engine's default precision for the file.
 *
 * Row i is the next-token distribution after prompt[0..i]: vLLM-style prompt logprobs report it at
 * position i + 1 (i < len - 1); the last row is the one the first generated token is drawn from.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { LLM } from '../src/engine/llm.js';
import type { TokenLogprobs } from '../src/engine/protocol.js';
import { fixturePath, loadGolden, type Golden } from './helpers/fixtures.js';

interface Peer {
  cases: Array<{ name: string; greedy: { token_ids: number[] } }>;
  vs_reference: { prompt_rows: { count: number; top1_agree: number; ref_top1_logprob_abs_diff: { mean: number } } };
}

const TOP_N = 20;
const dir = fixturePath('gguf');
const files = readdirSync(dir, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort();

/** Our logprob of `id` in a reported distribution (the chosen token or one of the top N). */
function logprobOf(row: TokenLogprobs, id: number, where: string): number {
  if (row.token.tokenId === id) return row.token.logprob;
  const hit = row.top?.find((t) => t.tokenId === id);
  assert.ok(hit, `${where}: the reference's top-1 token ${id} is not in our top ${TOP_N}`);
  return hit.logprob;
}

test('every GGUF fixture dir is covered', () => {
  assert.ok(files.length >= 7, `expected the 7 GGUF fixture dirs, found ${files.join(', ')}`);
});

for (const name of files) {
  describe(`GGUF accuracy ${name}`, () => {
    const sub = join(dir, name);
    const gguf = readdirSync(sub).find((f) => f.endsWith('.gguf'))!;
    const golden = JSON.parse(readFileSync(join(sub, 'golden.json'), 'utf8')) as Golden;
    const peer = JSON.parse(readFileSync(join(sub, 'peer_llamacpp.json'), 'utf8')) as Peer;

    test(`${name}: at least as close to the float64 reference as llama.cpp, greedy equal wherever llama.cpp's is`, async () => {
      const llm = new LLM({ model: join(sub, gguf), kvCacheMemory: 64 * 1024 ** 2, threads: 2, log: () => {} });
      after(() => llm.close());
      const outs = await Promise.all(
        golden.cases.map((c) =>
          llm
            .generate({ promptTokenIds: c.prompt_token_ids }, { temperature: 0, maxTokens: c.greedy.max_tokens, logprobs: TOP_N, promptLogprobs: TOP_N, ignoreEos: true })
            .then((o) => o[0]!),
        ),
      );
      let rows = 0;
      let agree = 0;
      let sumAbs = 0;
      golden.cases.forEach((c, k) => {
        const out = outs[k]!;
        const L = c.prompt_token_ids.length;
        for (let i = 0; i < L; i++) {
          const row = i < L - 1 ? out.promptLogprobs![i + 1]! : out.outputs[0]!.logprobs![0]!;
          const where = `${c.name} row ${i}`;
          const refTop = c.top_k_ids[i]![0]!;
          const refLp = c.top_k_logits[i]![0]! - c.logsumexp[i]!;
          sumAbs += Math.abs(logprobOf(row, refTop, where) - refLp);
          const ours = row.top![0]!;
          if (ours.tokenId === refTop) agree++;
          rows++;
        }
        const peerGreedy = peer.cases.find((p) => p.name === c.name)!.greedy.token_ids;
        const llamaCppMatches = peerGreedy.every((t, j) => t === c.greedy.token_ids[j]);
        if (llamaCppMatches) assert.deepEqual(out.outputs[0]!.tokenIds, c.greedy.token_ids, `${c.name}: greedy tokens (llama.cpp's match the reference)`);
      });
      const ref = peer.vs_reference.prompt_rows;
      assert.equal(rows, ref.count);
      const mean = sumAbs / rows;
      const msg = `${name}: top-1 agree ${agree}/${rows} (llama.cpp ${ref.top1_agree}), mean |Δ logprob| ${mean.toExponential(2)} (llama.cpp ${ref.ref_top1_logprob_abs_diff.mean.toExponential(2)})`;
      console.log(msg);
      assert.ok(agree >= ref.top1_agree, msg);
      assert.ok(mean <= ref.ref_top1_logprob_abs_diff.mean, msg);
    });

    if (golden.text_cases?.length) {
      test(`${name}: the GGUF's tokenizer and weights write the same stories as the Hugging Face model (text prompts, 200 greedy tokens)`, async () => {
        const hf = loadGolden('stories260k');
        const llm = new LLM({ model: join(sub, gguf), kvCacheMemory: 64 * 1024 ** 2, threads: 2, log: () => {} });
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
