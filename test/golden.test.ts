/**
 * The fixture goldens (golden.json in each ../shared/fixtures model dir, computed by an independent float64
 * reference): raw logits of every prompt position within tolerance, exact greedy continuations
 * through the full engine, and the log-probs of every generated token (the decode path).
 * Tolerances and rules are the fixtures README's.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { LLM } from '../src/engine/llm.js';
import { FIXTURES, fixturePath, loadGolden, type Golden } from './helpers/fixtures.js';
import { ModelHarness } from './helpers/model-harness.js';

type Mode = { precision: 'float32' | 'bfloat16'; kvDtype: 'float32' | 'bfloat16' };
const MODES: Mode[] = [
  { precision: 'float32', kvDtype: 'float32' },
  { precision: 'bfloat16', kvDtype: 'bfloat16' },
];

/** The fixtures README's tolerances (Gemma's post-branch norms pass BF16 rounding on undamped). */
function tolerance(fixture: string, mode: Mode): number {
  if (mode.precision === 'float32' && mode.kvDtype === 'float32') return 1e-4;
  return fixture === 'stories260k' || fixture.startsWith('gemma') ? 3e-2 : 1e-2;
}

function logsumexp(row: Float32Array): number {
  let m = -Infinity;
  for (const v of row) m = Math.max(m, v);
  let s = 0;
  for (const v of row) s += Math.exp(v - m);
  return m + Math.log(s);
}

/** README rules 2 and 3 for every position of one case. */
function checkLogits(golden: Golden, caseIdx: number, logits: Float32Array, V: number, tol: number, label: string): void {
  const c = golden.cases[caseIdx]!;
  for (let i = 0; i < c.prompt_token_ids.length; i++) {
    const row = logits.subarray(i * V, (i + 1) * V);
    const ids = c.top_k_ids[i]!;
    const gl = c.top_k_logits[i]!;
    const bound = tol * Math.max(1, Math.abs(gl[0]!));
    for (let j = 0; j < ids.length; j++) {
      const d = Math.abs(row[ids[j]!]! - gl[j]!);
      assert.ok(d <= bound, `${label} pos ${i} id ${ids[j]}: |${row[ids[j]!]} - ${gl[j]}| = ${d} > ${bound}`);
    }
    const dl = Math.abs(logsumexp(row) - c.logsumexp[i]!);
    assert.ok(dl <= bound, `${label} pos ${i} logsumexp off by ${dl} > ${bound}`);
    if (gl[0]! - gl[1]! > 2 * bound) {
      let arg = 0;
      for (let v = 1; v < V; v++) if (row[v]! > row[arg]!) arg = v;
      assert.equal(arg, ids[0], `${label} pos ${i}: top-1`);
    }
  }
}

for (const name of FIXTURES) {
  describe(`golden ${name}`, () => {
    const golden = loadGolden(name);
    const dir = fixturePath(name);
    for (const mode of MODES) {
      const tol = tolerance(name, mode);
      const label = `${name} ${mode.precision}/${mode.kvDtype} kv`;

      test(`${label}: prompt logits within ${tol}`, () => {
        const h = new ModelHarness(dir, { ...mode, blockSize: 16 });
        try {
          golden.cases.forEach((c, i) => checkLogits(golden, i, h.logitsOf(c.prompt_token_ids), h.vocab, tol, `${label} ${c.name}`));
        } finally {
          h.close();
        }
      });

      test(`${label}: greedy continuations and their logprobs through the engine (all cases batched)`, async () => {
        const llm = new LLM({ model: dir, dtype: mode.precision, kvCacheDtype: mode.kvDtype, kvCacheMemory: 32 * 1024 ** 2, threads: 2, log: () => {} });
        after(() => llm.close());
        const cases = [
          ...golden.cases.map((c) => ({ ids: c.prompt_token_ids, greedy: c.greedy, name: c.name })),
          ...(golden.text_cases ?? []).map((c) => ({ ids: c.prompt_token_ids, greedy: c.greedy, name: c.prompt })),
        ];
        const engine = await llm.engine();
        const outs = await Promise.all(
          cases.map((c) =>
            llm.generate({ promptTokenIds: c.ids }, { temperature: 0, maxTokens: c.greedy.max_tokens, logprobs: 0 }).then((o) => o[0]!),
          ),
        );
        void engine;
        outs.forEach((o, k) => {
          const c = cases[k]!;
          const out = o.outputs[0]!;
          assert.deepEqual(out.tokenIds, c.greedy.token_ids, `${label} ${c.name}: greedy tokens`);
          if (c.greedy.logprobs) {
            out.logprobs!.forEach((lp, i) => {
              const bound = tol * Math.max(1, Math.abs(c.greedy.logits![i]!));
              const d = Math.abs(lp.token.logprob - c.greedy.logprobs![i]!);
              assert.ok(d <= bound, `${label} ${c.name} step ${i}: logprob off by ${d} > ${bound}`);
            });
          }
          if (c.greedy.text_completion !== undefined) assert.equal(out.text, c.greedy.text_completion, `${label} ${c.name}: text`);
        });
      });
    }

    test(`${name}: chunked prefill and decode equal one-shot prefill bit for bit, block sizes 1/16/32 (float32)`, () => {
      const ci = golden.cases.findIndex((c) => c.prompt_token_ids.length === Math.max(...golden.cases.map((x) => x.prompt_token_ids.length)));
      const prompt = golden.cases[ci]!.prompt_token_ids;
      for (const blockSize of [1, 16, 32]) {
        const ref = new ModelHarness(dir, { precision: 'float32', kvDtype: 'float32', blockSize });
        const want = ref.logitsOf(prompt);
        ref.close();
        checkLogits(golden, ci, want, ref.vocab, 1e-4, `${name} block size ${blockSize}`);
        for (const chunk of [1, 7, blockSize + 1]) {
          const h = new ModelHarness(dir, { precision: 'float32', kvDtype: 'float32', blockSize, chunk });
          const got = h.logitsOf(prompt);
          h.close();
          assert.ok(
            got.every((v, i) => Object.is(v, want[i])),
            `block size ${blockSize}, chunks of ${chunk}: logits differ from one-shot prefill`,
          );
        }
      }
    });
  });
}
