/**
 * Quantized GGUF models through `--device webgpu`: the weights stay in their GGML blocks on the GPU
 * and the kernels decode them (src/backend/webgpu/quant-kernels.ts).
 *
 * On the quantized GGUF fixtures (../shared/fixtures/gguf: Q8_0, Q6_K, Q4_K_M = Q4_K + Q6_K, Q4_0
 * with a Q6_K head) the criterion of test/gguf-accuracy.test.ts: at least as close to the float64
 * reference on the file's own dequantized weights as llama.cpp (top-1 agreement, mean |Δ logprob|
 * of the reference's top-1 token), greedy tokens equal to the reference's wherever llama.cpp's
 * are; and (Q4_K_M) every case run alone equals the batch bit for bit (tokens and log-probs).
 * A tied, biased model (qwen2-tiny as Q8_0 and as Q5_K_M, the embedding table and the head one
 * quantized tensor) must pick the CPU backend's token at every greedy step, or one within 1e-3 of
 * the CPU's best log-prob (the two backends round differently: the CPU multiplies 14-bit integer
 * activations). A type a backend has no kernels for is refused at load, naming the tensor and type.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { GgmlType } from '../src/backend/quant.js';
import { LLM } from '../src/engine/llm.js';
import { ModelLoadError } from '../src/errors.js';
import { writeGgufFixture } from '../src/model/fixture/index.js';
import { openModelPackage } from '../src/model/loader/package.js';
import { CausalLM } from '../src/model/model.js';
import { fixturePath } from './helpers/fixtures.js';
import { distance, llamaCppGreedyMatches, readGgufFixture, runCase } from './helpers/reference-distance.js';
import { webGpuForTests } from './helpers/webgpu.js';

const { gpu, skip } = webGpuForTests();
const QUANTIZED = ['llama-q256-Q8_0', 'llama-q256-Q6_K', 'llama-q256-Q4_K_M', 'llama-q256-Q4_0'];
/**
 * The file whose cases also run alone (both K-quant kernels in one model): its shortest and longest
 * (SwiftShader takes ~0.2 s a step; the CPU's quantized tests run every case alone).
 */
const ALONE = 'llama-q256-Q4_K_M';

const gpuLlm = (model: string): LLM => new LLM({ model, device: 'webgpu', kvCacheMemory: 16 * 1024 ** 2, threads: 1, log: () => {} });

describe('webgpu: quantized GGUF weights', { skip }, () => {
  for (const name of QUANTIZED) {
    test(`${name}: at least as close to the float64 reference as llama.cpp, greedy equal wherever llama.cpp's is${name === ALONE ? '; alone = batched' : ''}`, async () => {
      const f = readGgufFixture(join(fixturePath('gguf'), name));
      const { golden, peer } = f;
      const llm = gpuLlm(f.gguf);
      after(() => llm.close());
      const outs = await Promise.all(golden.cases.map((c) => runCase(llm, c)));
      for (const [k, c] of golden.cases.entries()) {
        const out = outs[k]!;
        if (llamaCppGreedyMatches(f, c.name)) {
          assert.deepEqual(out.outputs[0]!.tokenIds, c.greedy.token_ids, `${c.name}: greedy tokens (llama.cpp's match the reference)`);
        }
        if (name !== ALONE || (k !== 0 && k !== golden.cases.length - 1)) continue;
        const alone = await runCase(llm, c);
        assert.deepEqual(alone.outputs[0]!.tokenIds, out.outputs[0]!.tokenIds, `${c.name}: alone vs batched tokens`);
        assert.deepEqual(
          alone.outputs[0]!.logprobs!.map((lp) => lp.token.logprob),
          out.outputs[0]!.logprobs!.map((lp) => lp.token.logprob),
          `${c.name}: alone vs batched log-probs`,
        );
      }
      const { rows, agree, mean } = distance(golden, outs);
      const ref = peer.vs_reference.prompt_rows;
      assert.equal(rows, ref.count);
      const msg = `${name} on webgpu: top-1 agree ${agree}/${rows} (llama.cpp ${ref.top1_agree}), mean |Δ logprob| ${mean.toExponential(2)} (llama.cpp ${ref.ref_top1_logprob_abs_diff.mean.toExponential(2)})`;
      console.log(msg);
      assert.ok(agree >= ref.top1_agree, msg);
      assert.ok(mean <= ref.ref_top1_logprob_abs_diff.mean, msg);
    });
  }

  describe('generated GGUF files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pagewise-webgpu-gguf-'));
    after(() => rmSync(dir, { recursive: true, force: true }));

    // qwen2-tiny (hidden 64): Q8_0, and the Q5_K_M mixture, whose short rows fall back to Q5_1
    // (Q5_K needs 256-value rows) next to a Q8_0 head.
    for (const scheme of ['q8_0', 'q5_k_m'] as const) {
      test(`qwen2-tiny as ${scheme} (tied quantized embedding and head, q/k/v biases): every greedy step is the CPU backend's choice`, async () => {
        const file = join(dir, `qwen2-tiny-${scheme}.gguf`);
        await writeGgufFixture('qwen2-tiny', file, scheme, { seed: 3 });
        const onGpu = gpuLlm(file);
        const onCpu = new LLM({ model: file, kvCacheMemory: 16 * 1024 ** 2, threads: 1, log: () => {} });
        after(() => {
          onGpu.close();
          onCpu.close();
        });
        const prompts = [[1, 17, 900, 5], [1], Array.from({ length: 40 }, (_, i) => (i * 37 + 11) % 1024)];
        for (const p of prompts) {
          const [g] = await onGpu.generate({ promptTokenIds: p }, { temperature: 0, maxTokens: 16, ignoreEos: true });
          const tokens = g!.outputs[0]!.tokenIds;
          // The CPU's distribution at every step of the GPU's continuation (teacher forcing).
          const [c] = await onCpu.generate({ promptTokenIds: [...p, ...tokens] }, { temperature: 0, maxTokens: 1, promptLogprobs: 1, ignoreEos: true });
          tokens.forEach((t, j) => {
            const row = c!.promptLogprobs![p.length + j]!;
            const best = row.top![0]!;
            assert.ok(
              best.tokenId === t || best.logprob - row.token.logprob <= 1e-3,
              `prompt of ${p.length} step ${j}: webgpu chose ${t} (CPU log-prob ${row.token.logprob}), the CPU ${best.tokenId} (${best.logprob})`,
            );
          });
        }
      });
    }

    test('a type the backend has no kernels for is refused at load, naming the tensor and the type', () => {
      // The GPU runs every type the CPU does; a backend claiming Q8_0 alone stands in for a future
      // type the GPU lacks.
      const q8Only = Object.create(gpu!, { quantTypes: { value: [GgmlType.Q8_0] } }) as typeof gpu;
      const { config, weights } = openModelPackage(join(fixturePath('gguf'), 'llama-q256-Q4_K_M', 'llama-q256-Q4_K_M.gguf'));
      assert.throws(
        () => new CausalLM(q8Only!, config, weights, { precision: 'float32', maxTokens: 4 }),
        (e: unknown) => e instanceof ModelLoadError && /tensor "[^"]+" is Q[46]_K, which --device webgpu has no kernels for \(it runs Q8_0\)/.test(e.message),
      );
    });
  });
});
