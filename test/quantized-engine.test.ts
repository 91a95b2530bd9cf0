/**
 * Quantized weights through the whole engine: a float checkpoint quantized at load
 * (`--quantization`) runs on the integer kernels, and batching never changes a request's output —
 * every request submitted together with others, or with prefill cut into small chunks, gives
 * exactly its solo tokens and logprobs.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LLM } from '../src/engine/llm.js';
import type { RequestOutput } from '../src/engine/output-processor.js';
import { Rng } from '../src/sampling/rng.js';
import { fixturePath } from './helpers/fixtures.js';

const model = fixturePath('stories260k');

interface Req {
  ids: number[];
  temperature: number;
  seed: number;
  maxTokens: number;
}

function requests(n: number): Req[] {
  const rng = new Rng(11);
  return Array.from({ length: n }, (_, i) => ({
    ids: [1, ...Array.from({ length: 1 + Math.floor(rng.next() * 90) }, () => 3 + Math.floor(rng.next() * 509))],
    temperature: i % 3 === 0 ? 0 : 0.9,
    seed: 100 + i,
    maxTokens: 4 + Math.floor(rng.next() * 28),
  }));
}

async function run(llm: LLM, reqs: Req[]): Promise<RequestOutput[]> {
  return Promise.all(
    reqs.map((r) =>
      llm.generate({ promptTokenIds: r.ids }, { temperature: r.temperature, seed: r.seed, maxTokens: r.maxTokens, logprobs: 2, ignoreEos: true }).then((o) => o[0]!),
    ),
  );
}

const key = (o: RequestOutput): string => JSON.stringify([o.outputs[0]!.tokenIds, o.outputs[0]!.logprobs]);

for (const quantization of ['q8_0', 'q4_0'] as const) {
  describe(`--quantization ${quantization}`, () => {
    test('batched and chunked outputs equal solo outputs bit for bit', async () => {
      const reqs = requests(16);
      const opts = { model, quantization, threads: 2, kvCacheMemory: 16 * 1024 ** 2, log: () => {} };
      const solo = new LLM(opts);
      const alone: string[] = [];
      try {
        for (const r of reqs) alone.push(key((await run(solo, [r]))[0]!));
      } finally {
        await solo.close();
      }
      for (const extra of [{}, { maxNumBatchedTokens: 13 }]) {
        const llm = new LLM({ ...opts, ...extra });
        try {
          const outs = await run(llm, reqs);
          outs.forEach((o, i) => assert.equal(key(o), alone[i], `request ${i} (${JSON.stringify(extra)}) differs from its solo run`));
        } finally {
          await llm.close();
        }
      }
    });
  });
}
