/**
 * Scheduler alone, on a real KVCacheManager and no model (vLLM's tests/v1/core/test_scheduler.py
 * does the same): admission under the token budget, chunked prefill, decodes first, preemption
 * order, static vs continuous batching, max_num_seqs with forking requests, the waiting queue's
 * skip limit, forks, and the stop rules of update().
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { SchedulerKind } from '../src/config/engine-config.js';
import { Sequence } from '../src/engine/sequence.js';
import { KVCacheManager } from '../src/kv/kv-cache-manager.js';
import { makeSamplingParams, type SamplingParamsInput } from '../src/sampling/params.js';
import { Rng } from '../src/sampling/rng.js';
import { Scheduler, stopCheck, type SchedulerOutput } from '../src/scheduler/scheduler.js';

const V = 100;
const EOS = 2;
const BS = 4;
let nextId = 0;

function mkSeq(promptLen: number, params: SamplingParamsInput = {}, index = 0, requestId?: string): Sequence {
  const id = nextId++;
  const prompt = Array.from({ length: promptLen }, (_, i) => 10 + ((id * 7 + i) % 50));
  const p = makeSamplingParams({ maxTokens: 16, ...params }, { vocabSize: V });
  return new Sequence(id, requestId ?? `r${id}`, index, prompt, p, new Rng(id), [EOS], 0);
}

interface Opts {
  budget?: number;
  maxNumSeqs?: number;
  blocks?: number;
  kind?: SchedulerKind;
  maxModelLen?: number;
}

function setup(o: Opts = {}): { s: Scheduler; kv: KVCacheManager } {
  const kv = new KVCacheManager(o.blocks ?? 64, BS, false);
  const s = new Scheduler(
    { maxNumBatchedTokens: o.budget ?? 64, maxNumSeqs: o.maxNumSeqs ?? 8, kind: o.kind ?? 'continuous', maxModelLen: o.maxModelLen ?? 1000 },
    kv,
  );
  return { s, kv };
}

/** One step as the engine runs it: schedule, "compute", and give every sampling sequence `token`. */
function step(s: Scheduler, token = 50): SchedulerOutput {
  const out = s.schedule();
  s.markComputed(out);
  s.update(out.scheduled.filter((e) => e.sample).map((e) => ({ seq: e.seq, tokenId: token, logprob: -1 })));
  return out;
}

const plan = (out: SchedulerOutput): Array<[number, number, boolean]> => out.scheduled.map((e) => [e.seq.id, e.numNewTokens, e.sample]);

describe('Scheduler', () => {
  test('admits waiting prompts while the token budget lasts; the last one is chunked', () => {
    const { s } = setup({ budget: 10 });
    const [a, b, c] = [mkSeq(4), mkSeq(4), mkSeq(4)];
    for (const x of [a, b, c]) s.add(x);
    const out = step(s);
    assert.deepEqual(plan(out), [
      [a.id, 4, true],
      [b.id, 4, true],
      [c.id, 2, false],
    ]);
    assert.equal(out.numBatchedTokens, 10);
    assert.equal(s.numRunning, 3);
    assert.equal(s.numWaiting, 0);
  });

  test('decodes first, then running prefills, then new admissions, in admission order', () => {
    const { s } = setup({ budget: 10 });
    const [a, b] = [mkSeq(4), mkSeq(25)];
    s.add(a);
    s.add(b);
    assert.deepEqual(plan(step(s)), [
      [a.id, 4, true],
      [b.id, 6, false],
    ]);
    const c = mkSeq(3);
    s.add(c);
    // a decodes (1), b continues its prefill (9 of the 10), c waits for budget.
    assert.deepEqual(plan(step(s)), [
      [a.id, 1, true],
      [b.id, 9, false],
    ]);
    assert.deepEqual(plan(step(s)), [
      [a.id, 1, true],
      [b.id, 9, false],
    ]);
    // b's last prompt token: sampled; c is admitted with the rest of the budget.
    assert.deepEqual(plan(step(s)), [
      [a.id, 1, true],
      [b.id, 1, true],
      [c.id, 3, true],
    ]);
    assert.equal(b.numComputedTokens, 25);
  });

  test('max_num_seqs bounds the running set, counting the sequences a request will fork into', () => {
    const { s } = setup({ maxNumSeqs: 4 });
    const a = mkSeq(4);
    const wide = mkSeq(4, { n: 3, temperature: 1 });
    const b = mkSeq(4);
    for (const x of [a, wide, b]) s.add(x);
    // a (1) + wide (3) = 4: both admitted; b waits although budget is left.
    assert.deepEqual(
      plan(s.schedule()).map((e) => e[0]),
      [a.id, wide.id],
    );
    assert.equal(s.numWaiting, 1);

    const { s: s2 } = setup({ maxNumSeqs: 3 });
    const [x, y, z] = [mkSeq(4), mkSeq(4, { n: 3, temperature: 1 }), mkSeq(4)];
    for (const q of [x, y, z]) s2.add(q);
    // x + y's three would be 4 > 3: y holds the queue (z behind it does not jump ahead).
    assert.deepEqual(
      plan(s2.schedule()).map((e) => e[0]),
      [x.id],
    );
  });

  test('static batching admits a new batch only when the running one has finished', () => {
    const { s } = setup({ kind: 'static', budget: 8 });
    const [a, b] = [mkSeq(4, { maxTokens: 2 }), mkSeq(4, { maxTokens: 2 })];
    s.add(a);
    s.add(b);
    step(s); // both prefill and sample their first token
    const c = mkSeq(4, { maxTokens: 2 });
    s.add(c);
    const out = step(s); // a and b decode their second (last) token; c must not join
    assert.deepEqual(
      out.scheduled.map((e) => e.seq.id),
      [a.id, b.id],
    );
    assert.equal(a.status, 'finished');
    assert.equal(b.status, 'finished');
    assert.deepEqual(
      step(s).scheduled.map((e) => e.seq.id),
      [c.id],
    );
  });

  test('continuous batching admits into a running batch', () => {
    const { s } = setup({ budget: 8 });
    const a = mkSeq(4, { maxTokens: 5 });
    s.add(a);
    step(s);
    const c = mkSeq(4);
    s.add(c);
    assert.deepEqual(
      step(s).scheduled.map((e) => e.seq.id),
      [a.id, c.id],
    );
  });

  test('a static batch takes max_num_seqs requests even beyond one step of tokens', () => {
    const { s } = setup({ kind: 'static', budget: 8, maxNumSeqs: 3 });
    const xs = [mkSeq(6), mkSeq(6), mkSeq(6), mkSeq(6)];
    for (const x of xs) s.add(x);
    const out = s.schedule();
    assert.deepEqual(plan(out), [
      [xs[0]!.id, 6, true],
      [xs[1]!.id, 2, false],
    ]);
    assert.equal(s.numRunning, 3, 'the third joined the batch without tokens this step');
    assert.equal(s.numWaiting, 1);
  });

  test('when blocks run out the most recently admitted sequence is preempted and requeued first', () => {
    // 6 blocks of 4: a, b, c hold 2 blocks each after their 8-token prompts; a's next token needs a 3rd.
    const { s, kv } = setup({ blocks: 6, budget: 64 });
    const [a, b, c] = [mkSeq(8), mkSeq(8), mkSeq(8)];
    for (const x of [a, b, c]) s.add(x);
    step(s);
    assert.equal(kv.pool.numFree, 0);
    const out = step(s);
    assert.deepEqual(
      out.preempted.map((x) => x.id),
      [c.id],
    );
    assert.deepEqual(
      out.scheduled.map((e) => e.seq.id),
      [a.id, b.id],
    );
    assert.equal(c.status, 'waiting');
    assert.equal(c.numComputedTokens, 0);
    assert.deepEqual(c.blockTables[0]!, []);
    assert.equal(c.numPreemptions, 1);
    assert.equal(s.stats().numPreemptions, 1);
    // c keeps its generated token and will recompute prompt + output; nothing else is admitted
    // in a step that had to preempt.
    assert.equal(c.tokens.length, 9);
    const d = mkSeq(1);
    s.add(d);
    assert.equal(s.numWaiting, 2);
  });

  test('a preempted sequence waits at the front of the queue', () => {
    const { s } = setup({ blocks: 6, budget: 64 });
    const [a, b, c] = [mkSeq(8), mkSeq(8), mkSeq(8)];
    for (const x of [a, b, c]) s.add(x);
    step(s);
    const late = mkSeq(1);
    s.add(late);
    step(s); // preempts c
    // Free room by finishing a and b: c (front of the queue) is admitted before `late`.
    s.finish(a, 'stop');
    s.finish(b, 'stop');
    const out = s.schedule();
    assert.deepEqual(
      out.scheduled.map((e) => e.seq.id),
      [c.id, late.id],
    );
    assert.equal(out.scheduled[0]!.numNewTokens, 9, 'prompt and generated token are recomputed');
  });

  test('a waiting sequence that does not fit lets smaller ones pass a bounded number of times', () => {
    // 4 blocks; `big` needs all 4 while a small sequence keeps one busy.
    const { s } = setup({ blocks: 4, budget: 64 });
    const holder = mkSeq(3, { maxTokens: 100 });
    s.add(holder);
    step(s);
    const big = mkSeq(16);
    s.add(big);
    const passed: number[] = [];
    for (let i = 0; i < 12; i++) {
      const small = mkSeq(1, { maxTokens: 1 });
      s.add(small);
      const out = step(s);
      if (out.scheduled.some((e) => e.seq === small)) passed.push(i);
      assert.equal(big.status, 'waiting');
    }
    // Eight skips (the limit), then big holds the queue: no later sequence passes it.
    assert.deepEqual(passed, [0, 1, 2, 3, 4, 5, 6, 7]);
  });

  test('fork: a running parent shares its blocks with a child that runs at once', () => {
    const { s, kv } = setup();
    const parent = mkSeq(6, { n: 2, temperature: 1 }, 0, 'req');
    s.add(parent);
    s.markComputed(s.schedule());
    const child = mkSeq(6, { n: 2, temperature: 1 }, 1, 'req');
    s.fork(parent, child);
    assert.equal(child.status, 'running');
    assert.deepEqual(child.blockTables[0]!, parent.blockTables[0]!);
    for (const b of parent.blockTables[0]!) assert.equal(kv.pool.refs(b), 2);
    assert.equal(s.numRunning, 2);
    assert.equal(s.stats().runningRequests, 1, 'one request, two sequences');
    // A parent that is not running (preempted) queues its child instead.
    const idle = mkSeq(6);
    const idleChild = mkSeq(6);
    s.fork(idle, idleChild);
    assert.equal(idleChild.status, 'waiting');
    assert.equal(s.numWaiting, 1);
  });

  test('finish frees the blocks of running and waiting sequences alike', () => {
    const { s, kv } = setup();
    const a = mkSeq(6);
    const b = mkSeq(6);
    s.add(a);
    s.schedule();
    s.add(b);
    s.finish(a, 'abort');
    s.finish(b, 'abort');
    assert.equal(a.finishReason, 'abort');
    assert.equal(s.hasWork(), false);
    assert.equal(kv.pool.numUsed, 0);
  });

  test('update appends tokens, adds logprobs and finishes sequences by the stop rules', () => {
    const { s, kv } = setup();
    const a = mkSeq(4, { maxTokens: 3 });
    const b = mkSeq(4, { stopTokenIds: [77] });
    s.add(a);
    s.add(b);
    const out = s.schedule();
    s.markComputed(out);
    let done = s.update([
      { seq: a, tokenId: 40, logprob: -0.5 },
      { seq: b, tokenId: 77, logprob: Number.NaN },
    ]);
    assert.deepEqual(done, [b]);
    assert.equal(b.finishReason, 'stop');
    assert.equal(b.stopReason, 77);
    assert.equal(a.cumulativeLogprob, -0.5);
    assert.equal(b.cumulativeLogprob, 0, 'a NaN logprob (not computed) adds nothing');
    step(s);
    s.markComputed(s.schedule());
    done = s.update([{ seq: a, tokenId: 41, logprob: -1 }]);
    assert.deepEqual(done, [a]);
    assert.equal(a.finishReason, 'length');
    assert.deepEqual(a.outputTokenIds, [40, 50, 41]);
    assert.equal(kv.pool.numUsed, 0);
    assert.equal(s.hasWork(), false);
  });

  test('stop rules: EOS, stop token ids, min_tokens, ignore_eos, max_tokens, the model context', () => {
    const grow = (q: Sequence, ...ids: number[]): Sequence => {
      for (const t of ids) q.appendToken(t);
      return q;
    };
    assert.deepEqual(stopCheck(grow(mkSeq(3), EOS), 100), { reason: 'stop', stopTokenId: null });
    assert.deepEqual(stopCheck(grow(mkSeq(3, { stopTokenIds: [9] }), 9), 100), { reason: 'stop', stopTokenId: 9 });
    assert.equal(stopCheck(grow(mkSeq(3, { minTokens: 2 }), EOS), 100), null, 'EOS before min_tokens does not stop');
    assert.deepEqual(stopCheck(grow(mkSeq(3, { minTokens: 2 }), 5, EOS), 100), { reason: 'stop', stopTokenId: null });
    assert.equal(stopCheck(grow(mkSeq(3, { ignoreEos: true }), EOS), 100), null);
    assert.deepEqual(stopCheck(grow(mkSeq(3, { maxTokens: 2 }), 5, 6), 100), { reason: 'length', stopTokenId: null });
    assert.deepEqual(stopCheck(grow(mkSeq(3), 5, 6), 5), { reason: 'length', stopTokenId: null });
    assert.equal(stopCheck(grow(mkSeq(3), 5), 5), null);
  });
});
