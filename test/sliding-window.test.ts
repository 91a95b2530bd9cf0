/**
 * Sliding-window layers on the paged KV cache (src/kv/kv-layout.ts): the layout of the Gemma
 * shapes, windowed groups freeing the blocks that fall out of their window (a long sequence costs
 * fewer blocks), and the engine on the Gemma fixtures staying exact through all of it: greedy
 * goldens batched with small chunks, under preemption, with prefix-cache hits (equal to cold
 * output bit for bit) and forks.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createBackend } from '../src/backend/index.js';
import { parseModelConfig, type ModelConfig } from '../src/config/model-config.js';
import { makeEngineConfig, type EngineConfig } from '../src/config/engine-config.js';
import { EngineCore } from '../src/engine/core.js';
import type { RequestDelta, SeqDelta } from '../src/engine/protocol.js';
import { KVCacheManager, NO_BLOCK, type KvSequence } from '../src/kv/kv-cache-manager.js';
import { blocksForSequence, kvLayout, maxSequenceTokens } from '../src/kv/kv-layout.js';
import { deriveSeed, makeSamplingParams, type SamplingParamsInput } from '../src/sampling/params.js';
import { fixturePath, loadGolden } from './helpers/fixtures.js';

function gemma3Config(numLayers: number, window: number): ModelConfig {
  return parseModelConfig(
    {
      architectures: ['Gemma3ForCausalLM'],
      hidden_size: 64,
      intermediate_size: 128,
      num_hidden_layers: numLayers,
      num_attention_heads: 4,
      num_key_value_heads: 1,
      head_dim: 32,
      vocab_size: 512,
      sliding_window: window,
    },
    'test',
  );
}

describe('KV layout', () => {
  test('groups of equal size: full and sliding layers apart, gcd of their counts', () => {
    // Gemma 3 1B: 26 layers, every 6th global: 22 sliding + 4 full → groups of 2.
    const l = kvLayout(gemma3Config(26, 512));
    assert.equal(l.slots, 2);
    assert.equal(l.groups.length, 13);
    assert.deepEqual(
      l.groups.filter((g) => g.window === null).map((g) => g.layers),
      [
        [5, 11],
        [17, 23],
      ],
    );
    assert.ok(l.groups.every((g) => g.layers.length === 2 && (g.window === null || g.window === 512)));
    // Every layer has exactly one (group, slot), and slots are the positions in the group.
    const seen = new Set<string>();
    l.layerSlot.forEach(({ group, slot }, layer) => {
      assert.equal(l.groups[group]!.layers[slot], layer);
      seen.add(`${group}/${slot}`);
    });
    assert.equal(seen.size, 26);
    // Gemma 3 270M: 18 layers, 3 full → groups of 3.
    assert.equal(kvLayout(gemma3Config(18, 512)).slots, 3);
    // Without the window rule, or without sliding layers: one group of every layer.
    const flat = kvLayout(gemma3Config(26, 512), false);
    assert.deepEqual(flat.groups, [{ window: null, layers: Array.from({ length: 26 }, (_, i) => i) }]);
    const qwen = parseModelConfig({ architectures: ['Qwen3ForCausalLM'], hidden_size: 64, intermediate_size: 64, num_hidden_layers: 3, num_attention_heads: 4, vocab_size: 10 }, 't');
    assert.equal(kvLayout(qwen).groups.length, 1);
  });

  test('a long sequence fits in fewer blocks with windowed groups', () => {
    const cfg = gemma3Config(6, 16);
    const windowed = kvLayout(cfg);
    const flat = kvLayout(cfg, false);
    assert.equal(windowed.slots, 1);
    // 8192 tokens, blocks of 16, chunks of 512: 1 full group of 512 blocks + 5 windows of 34.
    assert.equal(blocksForSequence(windowed, 8192, 16, 512), 512 + 5 * 34);
    // Bytes: windowed blocks hold 1 layer, flat ones 6.
    assert.ok(blocksForSequence(windowed, 8192, 16, 512) * windowed.slots < 0.25 * blocksForSequence(flat, 8192, 16, 512) * flat.slots);
    assert.equal(maxSequenceTokens(flat, 100, 16, 512), 1600);
    const n = maxSequenceTokens(windowed, 600, 16, 512);
    assert.ok(blocksForSequence(windowed, n, 16, 512) <= 600 && blocksForSequence(windowed, n + 1, 16, 512) > 600);
  });
});

const BS = 4;
const seq = (tokens: number[]): KvSequence => ({ tokens, numComputedTokens: 0, blockTables: [], blockHashes: [] });
const range = (n: number, from = 0): number[] => Array.from({ length: n }, (_, i) => from + i);
/** Windows: group 0 full, group 1 window 6. */
const layout = { groups: [{ window: null, layers: [0] }, { window: 6, layers: [1] }] };

function step(kv: KVCacheManager, s: KvSequence, n: number): void {
  assert.ok(kv.allocate(s, n), 'allocation should fit');
  s.numComputedTokens += n;
  kv.commit(s, n);
}

describe('KVCacheManager with a windowed group', () => {
  test('blocks wholly before the window are freed as the sequence grows', () => {
    const kv = new KVCacheManager(64, BS, false, layout);
    const s = seq(range(100));
    step(kv, s, 10); // tokens 0..9: the next query (10) sees 5..10 → block 0 (0..3) is out
    assert.deepEqual(s.blockTables[1]!.slice(0, 1), [NO_BLOCK]);
    assert.ok(s.blockTables[1]![1]! >= 0);
    for (let i = 0; i < 90; i++) step(kv, s, 1); // decode to 100 tokens
    const full = s.blockTables[0]!.filter((b) => b !== NO_BLOCK).length;
    const windowed = s.blockTables[1]!.filter((b) => b !== NO_BLOCK).length;
    assert.equal(full, 25);
    // The next query (100) sees 95..100: blocks 23 (92..95), 24 (96..99) and the one for 100 later.
    assert.equal(windowed, 2);
    assert.equal(kv.pool.numUsed, 27);
    assert.equal(kv.blocksHeld(s), 27);
    kv.free(s);
    assert.equal(kv.pool.numUsed, 0);
  });

  test('a prefix hit needs every full block and the blocks the window reaches; forks share and copy-on-write', () => {
    const kv = new KVCacheManager(64, BS, true, layout);
    const a = seq(range(30));
    step(kv, a, 30);
    kv.free(a);
    const b = seq(range(30));
    // 29 tokens may hit (never the last): 7 full blocks = 28 tokens; the window of query 28 is 23..28.
    assert.equal(kv.takeCachedPrefix(b), 28);
    assert.equal(b.blockTables[0]!.length, 7);
    assert.deepEqual(
      b.blockTables[1]!.map((x) => x === NO_BLOCK),
      [true, true, true, true, true, false, false],
    );
    step(kv, b, 2);
    // Fork mid-block: both share; the child's next write copies the partly filled block in both groups.
    const c = seq(range(30));
    kv.fork(b, c);
    assert.equal(kv.blocksNeeded(c, 1), 2);
    assert.ok(kv.allocate(c, 1));
    assert.equal(kv.takeCopies().length, 2);
    kv.free(b);
    kv.free(c);
    assert.equal(kv.pool.numUsed, 0);
    // A windowed block evicted from the cache spoils the hit back to where the window still is.
    const d = seq(range(30));
    step(kv, d, 30);
    kv.free(d);
    const evictWindow = kv.pool.lookup(`1:${d.blockHashes[6]!}`)!;
    // Reuse the free queue until the windowed block of logical block 6 is taken.
    const taken: number[] = [];
    while (taken[taken.length - 1] !== evictWindow) taken.push(kv.pool.allocate());
    for (const t of taken) kv.pool.release(t);
    const e = seq(range(30));
    const hit = kv.takeCachedPrefix(e);
    assert.ok(hit < 28, `hit ${hit} should stop before block 6`);
    kv.free(e);
  });
});

function core(dir: string, cfg: Partial<EngineConfig>): EngineCore {
  return new EngineCore(createBackend({ threads: 2 }), dir, makeEngineConfig({ model: dir, threads: 2, dtype: 'float32', kvCacheDtype: 'float32', ...cfg }));
}

interface Req {
  id: string;
  prompt: number[];
  params: SamplingParamsInput;
}

/** Run to completion; every request's sequences, and the most blocks the pool held at once. */
function run(c: EngineCore, reqs: Req[]): { out: Map<string, SeqDelta[]>; peakBlocks: number } {
  const out = new Map<string, SeqDelta[]>();
  const V = c.info.model.vocabSize;
  for (const r of reqs) c.addRequest({ requestId: r.id, promptTokenIds: r.prompt, params: makeSamplingParams(r.params, { vocabSize: V }), arrivalTime: 0 });
  const merge = (d: RequestDelta): void => {
    const seqs = out.get(d.requestId) ?? [];
    for (const s of d.seqs) {
      const cur = (seqs[s.index] ??= { ...s, newTokenIds: [], newLogprobs: s.newLogprobs ? [] : null });
      cur.newTokenIds.push(...s.newTokenIds);
      if (s.newLogprobs) cur.newLogprobs!.push(...s.newLogprobs);
      cur.finishReason = s.finishReason;
    }
    out.set(d.requestId, seqs);
  };
  let peakBlocks = 0;
  while (c.hasWork()) {
    for (const d of c.step().deltas) merge(d);
    peakBlocks = Math.max(peakBlocks, c.kv.pool.numUsed);
  }
  assert.equal(c.kv.pool.numUsed, 0, 'every block is free at the end');
  return { out, peakBlocks };
}

const logprobsOf = (s: SeqDelta): number[] => s.newLogprobs!.map((l) => l.token.logprob);

// qwen3-tiny (no window) runs the same engine checks: its q/k norms through batching and sharing.
for (const name of ['qwen3-tiny', 'gemma2-tiny', 'gemma3-tiny'] as const) {
  describe(`${name} through the engine`, () => {
    const dir = fixturePath(name);
    const golden = loadGolden(name);
    const reqs = (): Req[] =>
      golden.cases.map((c) => ({ id: c.name, prompt: c.prompt_token_ids, params: { temperature: 0, maxTokens: c.greedy.max_tokens, logprobs: 0 } }));
    const check = (out: Map<string, SeqDelta[]>, label: string): void => {
      for (const c of golden.cases) assert.deepEqual(out.get(c.name)![0]!.newTokenIds, c.greedy.token_ids, `${label} ${c.name}`);
    };

    test('greedy goldens: batched with chunks of 7 tokens and blocks of 4 equals solo, bit for bit', () => {
      const batched = run(core(dir, { maxNumBatchedTokens: 7, blockSize: 4 }), reqs()).out;
      check(batched, 'batched');
      for (const r of reqs()) {
        const solo = run(core(dir, { blockSize: 4 }), [r]).out.get(r.id)![0]!;
        const b = batched.get(r.id)![0]!;
        assert.deepEqual(solo.newTokenIds, b.newTokenIds, `${r.id}: solo tokens`);
        assert.ok(logprobsOf(solo).every((v, i) => Object.is(v, logprobsOf(b)[i])), `${r.id}: solo logprobs differ from batched`);
      }
    });

    test('greedy goldens under preemption (a KV pool of a few sequences)', () => {
      const probe = core(dir, { maxNumBatchedTokens: 16, blockSize: 4 });
      const blockBytes = probe.info.kvCacheBytes / probe.info.numBlocks;
      const longest = Math.max(...golden.cases.map((c) => c.prompt_token_ids.length + c.greedy.max_tokens));
      const need = blocksForSequence(kvLayout(probe.info.model), longest, 4, 16);
      probe.close();
      const c = core(dir, { maxNumBatchedTokens: 16, blockSize: 4, kvCacheMemory: Math.ceil(need * 1.5) * blockBytes });
      const { out } = run(c, reqs());
      check(out, 'preempted');
      assert.ok(c.stats().numPreemptionsTotal > 0, 'the pool was small enough to preempt');
    });

    test('a long sequence holds fewer blocks than full attention would (windowed models); prefix-cache hits equal cold output', () => {
      const longCase = golden.cases.reduce((a, b) => (b.prompt_token_ids.length > a.prompt_token_ids.length ? b : a));
      const r: Req = { id: 'long', prompt: longCase.prompt_token_ids, params: { temperature: 0, maxTokens: 24, logprobs: 0 } };
      const c = core(dir, { maxNumBatchedTokens: 16, blockSize: 4 });
      const cold = run(c, [r]);
      assert.deepEqual(cold.out.get('long')![0]!.newTokenIds, longCase.greedy.token_ids);
      // Full attention over every layer: ceil(tokens / 4) blocks per layer.
      const tokens = r.prompt.length + 24;
      const layers = c.info.model.numLayers;
      const slots = kvLayout(c.info.model).slots;
      if (c.info.model.slidingWindow !== null) {
        assert.ok(cold.peakBlocks * slots < Math.ceil(tokens / 4) * layers * 0.8, `peak ${cold.peakBlocks} blocks of ${slots} layers`);
      } else {
        // (Peaks are seen between steps: the last step's new block is freed as the sequence ends.)
        assert.ok(cold.peakBlocks * slots >= Math.ceil((tokens - 4) / 4) * layers, `peak ${cold.peakBlocks}: full attention keeps every block`);
      }
      // Same prompt again: served from the prefix cache, the same tokens and log-probs bit for bit.
      const warm = run(c, [{ ...r, id: 'warm' }]);
      assert.ok(c.kv.prefixStats.hits > 0, 'the second run hit the prefix cache');
      const a = cold.out.get('long')![0]!;
      const b = warm.out.get('warm')![0]!;
      assert.deepEqual(b.newTokenIds, a.newTokenIds);
      assert.ok(logprobsOf(a).every((v, i) => Object.is(v, logprobsOf(b)[i])), 'prefix-cache hit differs from cold');
      c.close();
    });

    test('parallel sampling forks (n = 3) equal separate requests seeded seed + i', () => {
      const prompt = golden.cases[golden.cases.length - 1]!.prompt_token_ids;
      const c = core(dir, { maxNumBatchedTokens: 16, blockSize: 4 });
      const forked = run(c, [{ id: 'n3', prompt, params: { temperature: 1, n: 3, seed: 11, maxTokens: 20 } }]).out.get('n3')!;
      for (let i = 0; i < 3; i++) {
        const alone = run(c, [{ id: `s${i}`, prompt, params: { temperature: 1, seed: deriveSeed(11, i), maxTokens: 20 } }]).out.get(`s${i}`)![0]!;
        assert.deepEqual(forked[i]!.newTokenIds, alone.newTokenIds, `sequence ${i}`);
      }
      c.close();
    });
  });
}
