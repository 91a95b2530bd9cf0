/**
 * Soak: two rounds of a few hundred requests in all against one real server, 64 at a time, a fifth
 * of them hung up on mid-stream, the rest mixing endpoints, streaming and sampling settings
 * (greedy, seeded top-p, top-k with penalties, n = 2 with min-p, logprobs with a stop string).
 * After each round: no request failed, greedy answers equal the solo answer, every hang-up ended
 * the request (counted as an abort) unless it came after the last token, nothing is running or
 * waiting and no KV block is in use; and the process's
 * resident memory did not grow from the first round to the second beyond a small bound. Bounded:
 * the whole file runs in well under a minute.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { metricValue, raw, startServer, storiesWithChatTemplate, waitFor, type TestServer } from './helpers/server.js';

const ROUND = 160;
const CONCURRENCY = 64;
/**
 * Resident memory may grow this much from the end of round 1 to the end of round 2 (it moves by a
 * few MiB between two reads, and the engine worker's heap is collected on its own schedule), and
 * the main thread's live JavaScript heap this much.
 */
const RSS_GROWTH_BOUND = 32 * 1024 * 1024;
const HEAP_GROWTH_BOUND = 8 * 1024 * 1024;

// A full collection before each measurement, so the bound is about what is kept, not garbage.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const PROMPTS = [
  'Once upon a time, there was a little girl named Lily.',
  'Tom and his dog went to the park. They',
  'One day, a big red ball',
  'The sun was shining and the birds were singing. Sue wanted to',
];
const GREEDY = { prompt: 'Once upon a time, there was a little boy named Tim. He', max_tokens: 24, temperature: 0 };
/** The requests hung up on ask for this many tokens (no other request asks for more than 48). */
const HANG_UP_TOKENS = 400;

interface Outcome {
  ok: boolean;
  aborted: boolean;
  detail: string;
  greedyText?: string;
}

/** The `data:` payloads of a server-sent event stream. */
function events(text: string): string[] {
  return text
    .split('\n\n')
    .map((b) => b.trim())
    .filter((b) => b.startsWith('data: '))
    .map((b) => b.slice(6));
}

/** Check every choice 0..n-1 ended with stop or length (streamed chunks or one JSON body). */
function finishedChoices(reasons: Map<number, string>, n: number): string | null {
  for (let i = 0; i < n; i++) {
    const r = reasons.get(i);
    if (r !== 'stop' && r !== 'length') return `choice ${i} finished with ${String(r)}`;
  }
  return reasons.size === n ? null : `${reasons.size} choices for n=${n}`;
}

describe('soak', () => {
  let s: TestServer;
  let solo: string;
  before(async () => {
    // A pool small enough that the load preempts now and then (about 400 blocks of 16 tokens).
    s = await startServer({ model: storiesWithChatTemplate(), kvCacheMemory: 16 * 1024 * 1024 }, { servedModelName: 'stories' });
    const r = await raw(s.url, { path: '/v1/completions', body: JSON.stringify({ model: 'stories', ...GREEDY }) });
    assert.equal(r.status, 200);
    solo = (r.json() as { choices: Array<{ text: string }> }).choices[0]!.text;
  });
  after(async () => {
    await s?.close();
  });

  /** One request of the mix; `i % 5 === 0` hangs up after its first tokens arrive. */
  async function one(i: number): Promise<Outcome> {
    const chat = i % 3 === 1;
    const path = chat ? '/v1/chat/completions' : '/v1/completions';
    const prompt = PROMPTS[i % PROMPTS.length]!;
    const input = chat ? { messages: [{ role: 'user', content: prompt }] } : { prompt };
    if (i % 5 === 0) {
      const ac = new AbortController();
      const res = await fetch(`${s.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'stories', ...input, max_tokens: HANG_UP_TOKENS, ignore_eos: true, temperature: 1, seed: i, stream: true }),
        signal: ac.signal,
      });
      if (res.status !== 200) return { ok: false, aborted: false, detail: `hang-up request: ${res.status} ${await res.text()}` };
      const reader = res.body!.getReader();
      let text = '';
      while (events(text).filter((e) => !e.includes('"role"')).length < 1) {
        const { value, done } = await reader.read();
        if (done) break;
        text += Buffer.from(value).toString('utf8');
      }
      ac.abort();
      await reader.read().catch(() => {});
      return { ok: true, aborted: true, detail: '' };
    }
    const stream = i % 2 === 1;
    const v = i % 10;
    const greedy = !chat && (v === 2 || v === 6);
    const sampling = greedy
      ? GREEDY
      : [
          { temperature: 0.9, top_p: 0.9, seed: i },
          { temperature: 1.1, top_k: 20, presence_penalty: 0.5, frequency_penalty: 0.3, repetition_penalty: 1.1 },
          { n: 2, temperature: 0.8, min_p: 0.05, seed: i },
          { temperature: 0.7, stop: ['.'], ...(chat ? { logprobs: true, top_logprobs: 2 } : { logprobs: 2 }) },
        ][i % 4]!;
    const n = ('n' in sampling ? sampling.n : undefined) ?? 1;
    const body = { model: 'stories', ...input, max_tokens: 8 + (i % 41), ...sampling, stream };
    const res = await fetch(`${s.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const text = await res.text();
    const what = `${path} ${JSON.stringify(body)}`;
    if (res.status !== 200) return { ok: false, aborted: false, detail: `${what}: ${res.status} ${text.slice(0, 300)}` };
    const reasons = new Map<number, string>();
    let out = '';
    if (stream) {
      const ev = events(text);
      if (ev.at(-1) !== '[DONE]') return { ok: false, aborted: false, detail: `${what}: the stream did not end with [DONE]` };
      for (const e of ev.slice(0, -1)) {
        const chunk = JSON.parse(e) as { choices: Array<{ index: number; finish_reason: string | null; text?: string; delta?: { content?: string } }> };
        for (const c of chunk.choices) {
          out += c.text ?? c.delta?.content ?? '';
          if (c.finish_reason) reasons.set(c.index, c.finish_reason);
        }
      }
    } else {
      const json = JSON.parse(text) as { choices: Array<{ index: number; finish_reason: string; text?: string; logprobs?: unknown }> };
      for (const c of json.choices) {
        reasons.set(c.index, c.finish_reason);
        out += c.text ?? '';
        if ('logprobs' in sampling && (c.logprobs === null || c.logprobs === undefined)) return { ok: false, aborted: false, detail: `${what}: no logprobs` };
      }
    }
    const bad = finishedChoices(reasons, n);
    if (bad) return { ok: false, aborted: false, detail: `${what}: ${bad}` };
    return { ok: true, aborted: false, detail: '', ...(greedy ? { greedyText: out } : {}) };
  }

  async function round(first: number): Promise<Outcome[]> {
    const outcomes: Outcome[] = new Array(ROUND);
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        for (let k = next++; k < ROUND; k = next++) {
          outcomes[k] = await one(first + k).catch((err: unknown) => ({ ok: false, aborted: false, detail: `request ${first + k}: ${String(err)}` }));
        }
      }),
    );
    return outcomes;
  }

  const metrics = async (): Promise<string> => (await raw(s.url, { path: '/metrics' })).text;
  const aborts = (text: string): number => {
    const m = /pagewise:request_success_total\{[^}]*finished_reason="abort"[^}]*\} (\d+)/.exec(text);
    return m ? Number(m[1]) : 0;
  };

  /** Run a round and check what every round must leave behind; returns the memory after it. */
  async function checkedRound(first: number): Promise<{ rss: number; heap: number; aborted: number }> {
    const abortsBefore = aborts(await metrics());
    // How the engine ended each request: only hang-ups end in abort or run to HANG_UP_TOKENS.
    const ends = { abort: 0, full: 0 };
    const off = s.engine.on('finished', (o) => {
      if (o.outputs[0]!.finishReason === 'abort') ends.abort++;
      else if (o.outputs[0]!.tokenIds.length === HANG_UP_TOKENS) ends.full++;
    });
    const outcomes = await round(first);
    assert.deepEqual(
      outcomes.filter((o) => !o.ok).map((o) => o.detail),
      [],
      'no request failed',
    );
    const greedy = outcomes.filter((o) => o.greedyText !== undefined);
    assert.ok(greedy.length >= ROUND / 10);
    for (const g of greedy) assert.equal(g.greedyText, solo, 'a greedy answer under load equals the solo answer');
    await waitFor(() => s.engine.numInFlight === 0, 10_000, 'every request to end');
    off();
    await waitFor(async () => {
      const m = await metrics();
      return metricValue(m, 'pagewise:num_requests_running') === 0 && metricValue(m, 'pagewise:num_requests_waiting') === 0 && metricValue(m, 'pagewise:kv_cache_usage_perc') === 0;
    }, 5000, '/metrics to show nothing running or waiting and no KV block in use');
    const m = await metrics();
    const hangUps = outcomes.filter((o) => o.aborted).length;
    assert.equal(hangUps, ROUND / 5);
    // The client shares this process with the server: when it falls behind, a request may have
    // produced its last token before the hang-up. Every other hang-up aborted its request.
    assert.equal(ends.abort + ends.full, hangUps, `every hang-up aborted its request or came after its last token (${ends.abort} aborted, ${ends.full} complete)`);
    assert.ok(ends.abort >= hangUps / 4, `a good part of the hang-ups came mid-stream (${ends.abort} of ${hangUps})`);
    assert.equal(aborts(m) - abortsBefore, ends.abort, '/metrics counted every abort');
    assert.equal(s.engine.lastStats!.blocksUsed, 0);
    assert.deepEqual(
      s.logs.filter((l) => l.startsWith('error')),
      [],
      'the server logged no error',
    );
    // Let the worker's idle work (committing the KV pool's pages) finish, collect, and take the
    // least of a few reads.
    await new Promise((r) => setTimeout(r, 300));
    gc();
    const heap = process.memoryUsage().heapUsed;
    let rss = Infinity;
    for (let k = 0; k < 5; k++) {
      await new Promise((r) => setTimeout(r, 50));
      rss = Math.min(rss, process.memoryUsage.rss());
    }
    return { rss, heap, aborted: ends.abort };
  }

  test(`two rounds of ${ROUND} requests, ${CONCURRENCY} at a time, a fifth hung up on mid-stream`, { timeout: 60_000 }, async (t) => {
    const t0 = Date.now();
    const m1 = await checkedRound(0);
    const m2 = await checkedRound(ROUND);
    const mib = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`;
    t.diagnostic(`2 × ${ROUND} requests in ${((Date.now() - t0) / 1000).toFixed(1)} s, ${m1.aborted} + ${m2.aborted} aborted mid-stream; resident memory ${mib(m1.rss)} → ${mib(m2.rss)}, heap ${mib(m1.heap)} → ${mib(m2.heap)}`);
    assert.ok(m2.rss - m1.rss < RSS_GROWTH_BOUND, `resident memory grew ${mib(m2.rss - m1.rss)} from round 1 to round 2 (bound ${mib(RSS_GROWTH_BOUND)})`);
    assert.ok(m2.heap - m1.heap < HEAP_GROWTH_BOUND, `the heap grew ${mib(m2.heap - m1.heap)} from round 1 to round 2 (bound ${mib(HEAP_GROWTH_BOUND)})`);
  });
});
