/**
 * The fixture goldens (every architecture's fixture) through `--device webgpu` (float32 weights and KV cache): prompt logits of
 * every position within the fixtures README's float32 tolerance, exact greedy continuations
 * through the engine (all cases batched) with their log-probs, batched output equal to a case run
 * alone bit for bit, and chunked prefill / decode equal to one-shot prefill bit for bit. The
 * same rules as test/golden.test.ts, on the GPU. Skips with a message where no adapter exists
 * (fails instead under PAGEWISE_REQUIRE_WEBGPU=1; see helpers/webgpu.ts).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { LLM } from '../src/engine/llm.js';
import { FIXTURES, fixturePath, loadGolden, type Golden } from './helpers/fixtures.js';
import { ModelHarness } from './helpers/model-harness.js';
import { postJson, startServer } from './helpers/server.js';
import { webGpuForTests } from './helpers/webgpu.js';

const { gpu, skip } = webGpuForTests();
const TOL = 1e-4;

function logsumexp(row: Float32Array): number {
  let m = -Infinity;
  for (const v of row) m = Math.max(m, v);
  let s = 0;
  for (const v of row) s += Math.exp(v - m);
  return m + Math.log(s);
}

/** The README's rules 2 and 3 over every position of one case. */
function checkLogits(golden: Golden, caseIdx: number, logits: Float32Array, V: number, label: string, tol = TOL): void {
  const c = golden.cases[caseIdx]!;
  for (let i = 0; i < c.prompt_token_ids.length; i++) {
    const row = logits.subarray(i * V, (i + 1) * V);
    const ids = c.top_k_ids[i]!;
    const gl = c.top_k_logits[i]!;
    const bound = tol * Math.max(1, Math.abs(gl[0]!));
    ids.forEach((id, j) => {
      const d = Math.abs(row[id]! - gl[j]!);
      assert.ok(d <= bound, `${label} pos ${i} id ${id}: |${row[id]} - ${gl[j]}| = ${d} > ${bound}`);
    });
    const dl = Math.abs(logsumexp(row) - c.logsumexp[i]!);
    assert.ok(dl <= bound, `${label} pos ${i}: logsumexp off by ${dl} > ${bound}`);
    if (gl[0]! - gl[1]! > 2 * bound) {
      let arg = 0;
      for (let v = 1; v < V; v++) if (row[v]! > row[arg]!) arg = v;
      assert.equal(arg, ids[0], `${label} pos ${i}: top-1`);
    }
  }
}

describe('webgpu goldens', { skip }, () => {
  for (const name of FIXTURES) {
    describe(name, () => {
      const golden = loadGolden(name);
      const dir = fixturePath(name);

      test(`${name}: prompt logits within ${TOL}; chunked prefill and decode equal one-shot prefill bit for bit`, () => {
        const h = new ModelHarness(dir, { precision: 'float32', kvDtype: 'float32', blockSize: 16, backend: gpu! });
        let oneShot: Float32Array[];
        try {
          oneShot = golden.cases.map((c, i) => {
            const logits = h.logitsOf(c.prompt_token_ids);
            checkLogits(golden, i, logits, h.vocab, `${name} ${c.name}`);
            return logits;
          });
        } finally {
          h.close();
        }
        // Chunks of 17 over the longest prompt; chunks of 1 (a step per token, as decode runs) over
        // the shortest that crosses two block boundaries: SwiftShader takes ~0.1-0.4 s a step, and a
        // token per step over the longest prompt was a third of this file's time.
        const lengths = golden.cases.map((c) => c.prompt_token_ids.length);
        const longest = lengths.indexOf(Math.max(...lengths));
        const crossing = lengths.indexOf(Math.min(...lengths.filter((n) => n > 32)));
        for (const [chunk, k] of [[17, longest], [1, crossing]] as const) {
          const hc = new ModelHarness(dir, { precision: 'float32', kvDtype: 'float32', blockSize: 16, chunk, backend: gpu! });
          const got = hc.logitsOf(golden.cases[k]!.prompt_token_ids);
          hc.close();
          assert.ok(
            got.every((v, i) => Object.is(v, oneShot[k]![i])),
            `chunks of ${chunk} over ${lengths[k]} tokens: logits differ from one-shot prefill`,
          );
        }
      });

      test(`${name}: greedy continuations through the engine on webgpu, batched and alone, equal the goldens`, async () => {
        const llm = new LLM({ model: dir, device: 'webgpu', dtype: 'float32', kvCacheDtype: 'float32', kvCacheMemory: 16 * 1024 ** 2, enablePrefixCaching: false, threads: 1, log: () => {} });
        after(() => llm.close());
        const cases = [
          ...golden.cases.map((c) => ({ ids: c.prompt_token_ids, greedy: c.greedy, name: c.name })),
          ...(golden.text_cases ?? []).map((c) => ({ ids: c.prompt_token_ids, greedy: c.greedy, name: c.prompt })),
        ];
        const run = (c: (typeof cases)[number]) =>
          llm.generate({ promptTokenIds: c.ids }, { temperature: 0, maxTokens: c.greedy.max_tokens, logprobs: 0 }).then((o) => o[0]!.outputs[0]!);
        const batched = await Promise.all(cases.map(run));
        const lengths = golden.cases.map((c) => c.prompt_token_ids.length);
        const aloneLongest = lengths.indexOf(Math.max(...lengths));
        for (const [k, c] of cases.entries()) {
          const out = batched[k]!;
          assert.deepEqual(out.tokenIds, c.greedy.token_ids, `${name} ${c.name}: greedy tokens`);
          if (c.greedy.logprobs) {
            out.logprobs!.forEach((lp, i) => {
              const bound = TOL * Math.max(1, Math.abs(c.greedy.logits![i]!));
              const d = Math.abs(lp.token.logprob - c.greedy.logprobs![i]!);
              assert.ok(d <= bound, `${name} ${c.name} step ${i}: logprob off by ${d} > ${bound}`);
            });
          }
          if (c.greedy.text_completion !== undefined) assert.equal(out.text, c.greedy.text_completion, `${name} ${c.name}: text`);
          // Alone: the same tokens and the same log-prob bits as in the batch, for the one-token
          // prompt and the longest (every case alone took as many steps as the rest of the file,
          // on SwiftShader; the CPU backend's suites run every case alone). The 200-token stories
          // only batched.
          if (k !== 0 && k !== aloneLongest) continue;
          const alone = await run(c);
          assert.deepEqual(alone.tokenIds, out.tokenIds, `${name} ${c.name}: alone vs batched tokens`);
          assert.deepEqual(
            alone.logprobs!.map((lp) => lp.token.logprob),
            out.logprobs!.map((lp) => lp.token.logprob),
            `${name} ${c.name}: alone vs batched log-probs`,
          );
        }
      });
    });
  }

  test('llama-tiny in bfloat16 (what --dtype auto picks for its BF16 weights), BF16 KV: prompt logits within 1e-2', () => {
    const golden = loadGolden('llama-tiny');
    const h = new ModelHarness(fixturePath('llama-tiny'), { precision: 'bfloat16', kvDtype: 'bfloat16', blockSize: 16, backend: gpu! });
    try {
      golden.cases.forEach((c, i) => checkLogits(golden, i, h.logitsOf(c.prompt_token_ids), h.vocab, `llama-tiny bf16 ${c.name}`, 1e-2));
    } finally {
      h.close();
    }
  });

  test('the CLI: pagewise generate --device webgpu reproduces a golden greedy continuation', async () => {
    const g = loadGolden('llama-tiny').cases[1]!;
    const entry = `import('./src/cli/main.ts').then((m) => m.main(process.argv.slice(1)))`;
    const args = [
      'generate', '--device', 'webgpu', '--model', fixturePath('llama-tiny'), '--prompt-ids', g.prompt_token_ids.join(','),
      '--max-tokens', String(g.greedy.max_tokens), '--temperature', '0', '--dtype', 'float32', '--kv-cache-dtype', 'float32',
      '--kv-cache-memory', '16MiB', '--threads', '1', '--json',
    ];
    const r = await promisify(execFile)(process.execPath, ['--import', 'tsx', '-e', entry, '--', ...args], { cwd: resolve(import.meta.dirname, '..') });
    const out = JSON.parse(r.stdout.trim()) as { token_ids: number[] };
    assert.deepEqual(out.token_ids, g.greedy.token_ids);
    // It ran on the adapter (the start-up line names it), not on the CPU.
    assert.ok(r.stderr.includes(gpu!.describe().kernels), r.stderr);
  });

  test('pagewise bench latency and throughput --device webgpu: the adapter with its limits under the same keys', async () => {
    const entry = `import('./src/cli/main.ts').then((m) => m.main(process.argv.slice(1)))`;
    const common = ['--device', 'webgpu', '--model', fixturePath('stories260k'), '--dtype', 'float32', '--kv-cache-dtype', 'float32', '--kv-cache-memory', '16MiB', '--threads', '1', '--input-len', '8', '--output-len', '4', '--json'];
    const run = async (args: string[]): Promise<Record<string, unknown>> => {
      const r = await promisify(execFile)(process.execPath, ['--import', 'tsx', '-e', entry, '--', 'bench', ...args, ...common], { cwd: resolve(import.meta.dirname, '..') });
      return JSON.parse(r.stdout.trim()) as Record<string, unknown>;
    };
    const latency = await run(['latency', '--batch-size', '2', '--iters', '1']);
    const throughput = await run(['throughput', '--num-prompts', '3']);
    const want = gpu!.describe();
    for (const [name, out] of [['latency', latency], ['throughput', throughput]] as const) {
      assert.equal(out['device'], 'webgpu', name);
      assert.equal(out['isa'], want.kernels, name);
      const adapter = out['adapter'] as { kernels: string; limits: Record<string, number>; features: string[] };
      assert.equal(adapter.kernels, want.kernels, name);
      assert.deepEqual(adapter.limits, want.limits, `${name}: limits`);
      assert.deepEqual(adapter.features, want.features, `${name}: features`);
    }
    assert.equal(throughput['output_tokens'], 12);
    assert.ok((latency['decode_weight_gbs'] as number) > 0);
  });

  test('the server: /v1/completions with --device webgpu continues a story as the golden does', async () => {
    const story = loadGolden('stories260k').text_cases![0]!;
    const s = await startServer(
      { model: fixturePath('stories260k'), device: 'webgpu', dtype: 'float32', kvCacheDtype: 'float32', kvCacheMemory: 16 * 1024 ** 2, threads: 1 },
      { servedModelName: 'stories' },
    );
    try {
      assert.equal(s.engine.info.isa, gpu!.describe().kernels, 'the engine runs on the adapter');
      const r = await postJson(s.url, '/v1/completions', { prompt: story.prompt, max_tokens: 40, temperature: 0 });
      assert.equal(r.status, 200, r.text);
      const text = (r.json() as { choices: Array<{ text: string }> }).choices[0]!.text;
      assert.ok(text.length > 0 && story.greedy.text_completion!.startsWith(text), `${JSON.stringify(text)} is not how the golden story goes on`);
    } finally {
      await s.close();
    }
  });
});
