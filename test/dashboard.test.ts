/**
 * The live dashboard. First its parts without a server (the block state map and its packing, the
 * per-second history, the Basic-credentials rewrite); then its routes (on by default, off with
 * `dashboard: false`, behind the API key with Basic or Bearer credentials, the event stream); then
 * the page itself in headless Chromium (Debian's `chromium`, driven by playwright-core) while the
 * server is under load: the block map changes, what the page shows matches /metrics, and a
 * screenshot is written to the test's output.
 *
 * Chromium is required: when it is missing the browser test fails (install Debian's `chromium`, as
 * .ci/run does, or point PAGEWISE_CHROMIUM at a Chromium binary).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { BlockPool } from '../src/kv/block-pool.js';
import type { RequestOutput } from '../src/engine/output-processor.js';
import type { EngineStats } from '../src/engine/protocol.js';
import { basicAsBearer } from '../src/server/dashboard/index.js';
import { DashboardHistory } from '../src/server/dashboard/history.js';
import { BLOCK_STATE_NAMES, BlockState, countBlockStates, packBlockStates } from '../src/shared/block-map.js';
import { fixturePath } from './helpers/fixtures.js';
import { metricValue, raw, startServer, waitFor, type TestServer } from './helpers/server.js';

const CHROMIUM = process.env['PAGEWISE_CHROMIUM'] ?? '/usr/bin/chromium';
/** Where the screenshot goes (printed by the test). */
const OUTPUT_DIR = process.env['PAGEWISE_TEST_OUTPUT'] ?? join(tmpdir(), 'pagewise-test-output');

/** Unpack a packed map the way the page does (two bits per block, four blocks a byte). */
function unpack(b64: string, n: number): number[] {
  const bytes = Buffer.from(b64, 'base64');
  return Array.from({ length: n }, (_, i) => (bytes[i >> 2]! >> ((i & 3) * 2)) & 3);
}

function stats(over: Partial<EngineStats>): EngineStats {
  return {
    running: 0,
    waiting: 0,
    preemptedThisStep: 0,
    numPreemptionsTotal: 0,
    scheduledTokens: 0,
    promptTokensTotal: 0,
    generationTokensTotal: 0,
    blocksTotal: 10,
    blocksUsed: 0,
    blocksFree: 10,
    kvUsage: 0,
    kvWaste: 0,
    kvWasteContiguous: 0,
    prefixCacheQueries: 0,
    prefixCacheHits: 0,
    stepMs: 0,
    ...over,
  };
}

function finished(arrival: number, firstToken: number | null, end: number): RequestOutput {
  return { metrics: { arrivalTime: arrival, firstScheduledTime: arrival, firstTokenTime: firstToken, lastTokenTime: firstToken, finishedTime: end } } as RequestOutput;
}

describe('dashboard parts', () => {
  test("the block pool's state map: free, cached, used, shared", () => {
    const pool = new BlockPool(6);
    const a = pool.allocate();
    const b = pool.allocate();
    const c = pool.allocate();
    pool.acquire(b); // a second sequence shares b
    pool.setFill(c, 16);
    pool.registerHash(c, 'prefix');
    pool.release(c); // free, but its content stays findable
    const states = pool.stateMap();
    assert.equal(states.length, 6);
    assert.equal(states[a], BlockState.used);
    assert.equal(states[b], BlockState.shared);
    assert.equal(states[c], BlockState.cached);
    assert.deepEqual(countBlockStates(states), { free: 3, cached: 1, used: 1, shared: 1 });
    pool.release(b);
    assert.equal(pool.stateMap()[b], BlockState.used, 'one reference left');
    pool.allocate();
    pool.allocate();
    pool.allocate();
    const c2 = pool.allocate(); // the LRU queue reaches the cached block last: its content is dropped
    assert.equal(c2, c);
    assert.equal(pool.stateMap()[c], BlockState.used);
  });

  test('packing two bits a block round-trips at awkward lengths', () => {
    assert.deepEqual(BLOCK_STATE_NAMES, ['free', 'cached', 'used', 'shared']);
    for (const n of [1, 3, 4, 5, 7, 8, 9, 1001]) {
      const states = Uint8Array.from({ length: n }, (_, i) => (i * 7 + (i >> 3)) % 4);
      assert.deepEqual(unpack(packBlockStates(states), n), Array.from(states), `n=${n}`);
      assert.equal(Buffer.from(packBlockStates(states), 'base64').length, Math.ceil(n / 4));
    }
  });

  test('history: one point per second, token growth, latencies, idle seconds, a bounded window', () => {
    const t0 = 1_000_000_000_000;
    const h = new DashboardHistory(stats({ promptTokensTotal: 100, generationTokensTotal: 50 }), t0, 5);
    h.onStats(stats({ promptTokensTotal: 130, generationTokensTotal: 55, running: 2, waiting: 1, kvUsage: 0.5 }), t0 + 100);
    h.onStats(stats({ promptTokensTotal: 130, generationTokensTotal: 60, running: 2, waiting: 0, kvUsage: 0.6 }), t0 + 900);
    h.onFinished(finished(t0 - 500, t0 + 100, t0 + 900), t0 + 900);
    h.onFinished(finished(t0, null, t0 + 950), t0 + 950); // aborted before its first token
    assert.deepEqual(h.completed(t0 + 999), [], 'the second in progress is not reported');
    h.onStats(stats({ promptTokensTotal: 130, generationTokensTotal: 61, running: 1, waiting: 0, kvUsage: 0.1 }), t0 + 3500);
    const pts = h.completed(t0 + 3600);
    assert.deepEqual(
      pts.map((p) => p.t - t0 / 1000),
      [0, 1, 2],
    );
    assert.deepEqual(pts[0], { t: t0 / 1000, prompt: 30, gen: 10, done: 2, e2eMs: 1400 + 950, ttftN: 1, ttftMs: 600, running: 2, waiting: 0, kv: 0.6 });
    assert.deepEqual(pts[1], { t: t0 / 1000 + 1, prompt: 0, gen: 0, done: 0, e2eMs: 0, ttftN: 0, ttftMs: 0, running: 2, waiting: 0, kv: 0.6 }, 'an idle second keeps the queues');
    assert.equal(h.totals.finished, 2);
    const later = h.completed(t0 + 60_000);
    assert.equal(later.length, 5, 'the window keeps its last 5 seconds');
    assert.equal(later.at(-1)!.t, t0 / 1000 + 59);
    assert.equal(later.at(-1)!.running, 1);
  });

  test('Basic credentials become a Bearer header carrying the password', () => {
    const basic = (s: string): string => `Basic ${Buffer.from(s, 'utf8').toString('base64')}`;
    assert.equal(basicAsBearer(basic('anyone:s3cret:with:colons')), 'Bearer s3cret:with:colons');
    assert.equal(basicAsBearer(basic('user:')), 'Bearer ');
    assert.equal(basicAsBearer(basic('no-colon')), undefined);
    assert.equal(basicAsBearer('Bearer k'), 'Bearer k');
    assert.equal(basicAsBearer(undefined), undefined);
  });
});

/** Read a server-sent event stream until `count` events arrived; returns them parsed. */
function readEvents(url: string, count: number, headers: Record<string, string> = {}): Promise<Array<{ event: string; data: Record<string, unknown> }>> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}/dashboard/events`, { headers }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`status ${res.statusCode}`));
      assert.match(String(res.headers['content-type']), /^text\/event-stream/);
      let buf = '';
      const out: Array<{ event: string; data: Record<string, unknown> }> = [];
      res.on('data', (c: Buffer) => {
        buf += c.toString('utf8');
        let end: number;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (data !== undefined) out.push({ event, data: JSON.parse(data) as Record<string, unknown> });
          if (out.length === count) {
            req.destroy();
            resolve(out);
            return;
          }
        }
      });
      res.on('error', () => {});
    });
    req.on('error', (err) => {
      if (!req.destroyed) reject(err);
    });
    req.end();
  });
}

describe('dashboard routes', () => {
  let s: TestServer;
  let off: TestServer;
  before(async () => {
    s = await startServer({ model: fixturePath('stories260k') }, { apiKey: 'k3y' });
    off = await startServer({ model: fixturePath('stories260k') }, { dashboard: false });
  });
  after(async () => {
    await s?.close();
    await off?.close();
  });

  test('behind the API key: Basic (browsers, challenged for) or Bearer credentials', async () => {
    const basic = (user: string, pass: string): string => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
    const none = await raw(s.url, { path: '/dashboard' });
    assert.equal(none.status, 401);
    assert.match(String(none.headers['www-authenticate']), /^Basic realm="pagewise dashboard"/);
    const wrong = await raw(s.url, { path: '/dashboard', headers: { authorization: basic('me', 'nope') } });
    assert.equal(wrong.status, 401);
    for (const authorization of [basic('me', 'k3y'), basic('', 'k3y'), 'Bearer k3y']) {
      const ok = await raw(s.url, { path: '/dashboard', headers: { authorization } });
      assert.equal(ok.status, 200, authorization);
      assert.match(String(ok.headers['content-type']), /^text\/html/);
      assert.match(ok.text, /<canvas id="map">/);
    }
    assert.equal((await raw(s.url, { path: '/dashboard/events' })).status, 401);
    // Basic credentials open the dashboard only; the API keeps its Bearer challenge.
    const api = await raw(s.url, { path: '/v1/models', headers: { authorization: basic('me', 'k3y') } });
    assert.equal(api.status, 401);
    assert.equal(api.headers['www-authenticate'], 'Bearer');
  });

  test('the event stream: init (pool shape, state names, history), then frames with the map and stats', async () => {
    const r = await raw(s.url, { path: '/v1/completions', headers: { authorization: 'Bearer k3y' }, body: JSON.stringify({ prompt: 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park.', max_tokens: 4 }) });
    assert.equal(r.status, 200);
    const [init, frame, next] = await readEvents(s.url, 3, { authorization: 'Bearer k3y' });
    assert.equal(init!.event, 'init');
    assert.equal(init!.data['numBlocks'], s.engine.info.numBlocks);
    assert.equal(init!.data['blockSize'], s.engine.info.blockSize);
    assert.deepEqual(init!.data['states'], ['free', 'cached', 'used', 'shared']);
    assert.ok(Array.isArray(init!.data['history']));
    assert.equal(frame!.event, 'frame');
    const states = unpack(frame!.data['blocks'] as string, s.engine.info.numBlocks);
    const counts = frame!.data['counts'] as Record<string, number>;
    assert.deepEqual(counts, countBlockStates(Uint8Array.from(states)));
    assert.equal(counts['used']! + counts['shared']!, 0, 'idle: no block in use');
    assert.ok(counts['cached']! > 0, "the finished request's prompt blocks stay cached");
    assert.equal((frame!.data['stats'] as EngineStats).generationTokensTotal, s.engine.lastStats!.generationTokensTotal);
    assert.equal(frame!.data['finished'], 1);
    assert.equal(next!.event, 'frame');
    assert.equal(next!.data['blocks'], undefined, 'an unchanged map is not sent again');
  });

  test('off with dashboard: false', async () => {
    assert.equal((await raw(off.url, { path: '/dashboard' })).status, 404);
    assert.equal((await raw(off.url, { path: '/dashboard/events' })).status, 404);
  });

  test('pagewise serve says where the dashboard is; --no-dashboard turns it off', async () => {
    for (const flags of [[], ['--no-dashboard']]) {
      const argv = ['serve', '--model', fixturePath('stories260k'), '--port', '0', '--threads', '1', '--kv-cache-memory', '8MiB', ...flags];
      const code = `import('./src/cli/main.ts').then((m) => m.main(${JSON.stringify(argv)}))`;
      const child = spawn(process.execPath, ['--import', 'tsx', '-e', code], { cwd: new URL('..', import.meta.url), stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
      const exited = new Promise((resolve) => child.on('exit', resolve));
      try {
        await waitFor(() => /serving model .* on http:\/\/127\.0\.0\.1:\d+\/v1/.test(stderr), 20_000, 'the server to listen');
        const url = /on (http:\/\/127\.0\.0\.1:\d+)\/v1/.exec(stderr)![1]!;
        const status = (await raw(url, { path: '/dashboard' })).status;
        if (flags.length === 0) {
          assert.match(stderr, new RegExp(`dashboard at ${url}/dashboard`));
          assert.equal(status, 200);
        } else {
          assert.doesNotMatch(stderr, /dashboard at/);
          assert.equal(status, 404);
        }
      } finally {
        child.kill('SIGKILL');
        await exited;
      }
    }
  });
});

/** What the page shows, read in the browser (a string, so no test-side helper leaks into it). */
const READ_PAGE = `(() => {
  const val = (id) => { const v = document.getElementById(id).dataset.value; return v === undefined || v === '' ? null : Number(v); };
  const ids = ['running', 'waiting', 'kv-usage', 'blocks-used', 'blocks-total', 'gen-tps', 'prompt-tps', 'gen-total', 'prompt-total',
    'ttft', 'e2e', 'prefix-hits', 'prefix-queries', 'preemptions', 'finished'];
  const shown = Object.fromEntries(ids.map((id) => [id, val(id)]));
  const counts = {};
  for (const k of ['free', 'cached', 'used', 'shared']) counts[k] = document.getElementById('count-' + k) ? val('count-' + k) : null;
  // The canvas, cell by cell: each cell's centre pixel, named by the legend swatch of that colour.
  const map = document.getElementById('map');
  const g = { cell: Number(map.dataset.cell), cols: Number(map.dataset.cols), per: Number(map.dataset.per), dpr: Number(map.dataset.dpr) };
  const swatches = {};
  for (const sw of document.querySelectorAll('#legend .sw')) swatches[getComputedStyle(sw).backgroundColor.replace(/\\s/g, '')] = sw.dataset.state;
  const img = map.getContext('2d').getImageData(0, 0, map.width, map.height);
  const cells = Math.ceil(Number(document.getElementById('blocks-total').dataset.value) / g.per);
  const drawn = { free: 0, cached: 0, used: 0, shared: 0, unknown: 0 };
  const cellStates = [];
  const gap = g.cell >= 6 ? 1 : 0;
  for (let c = 0; c < cells; c++) {
    const x = Math.floor(((c % g.cols) * g.cell + (g.cell - gap) / 2) * g.dpr);
    const y = Math.floor((Math.floor(c / g.cols) * g.cell + (g.cell - gap) / 2) * g.dpr);
    const o = (y * img.width + x) * 4;
    const name = swatches['rgb(' + img.data[o] + ',' + img.data[o + 1] + ',' + img.data[o + 2] + ')'];
    drawn[name ?? 'unknown']++;
    cellStates.push(name ?? 'unknown');
  }
  return { shown, counts, drawn, cellStates, redrawn: Number(map.dataset.drawn || 0), per: g.per, frames: Number(document.body.dataset.frames || 0), status: document.getElementById('status').textContent };
})()`;

interface PageView {
  shown: Record<string, number | null>;
  counts: Record<'free' | 'cached' | 'used' | 'shared', number | null>;
  drawn: Record<'free' | 'cached' | 'used' | 'shared' | 'unknown', number>;
  /** Each cell's state, read from its colour. */
  cellStates: string[];
  /** How often the page drew the map: once per frame whose map changed. */
  redrawn: number;
  per: number;
  frames: number;
  status: string;
}

describe('the dashboard in headless Chromium, under load', () => {
  let s: TestServer;
  let browser: Browser;
  let page: Page;
  /** Script errors on the page (none expected). */
  const pageErrors: string[] = [];
  before(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: install Debian's chromium (apt-get install chromium) or set PAGEWISE_CHROMIUM`);
    // A small pool (about 200 blocks of 16 tokens), so the load fills a good part of the map.
    s = await startServer({ model: fixturePath('stories260k'), kvCacheMemory: 8 * 1024 * 1024 });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    page.on('pageerror', (err) => pageErrors.push(err.message));
  });
  after(async () => {
    await browser?.close();
    await s?.close();
  });

  const view = (): Promise<PageView> => page.evaluate(READ_PAGE) as Promise<PageView>;
  const metrics = async (): Promise<string> => (await raw(s.url, { path: '/metrics' })).text;
  // A labelled counter (request_success_total) has no line before its first sample.
  const metric = (text: string, name: string): number => metricValue(text, `pagewise:${name}`) ?? 0;
  /** Wait until the page has taken `n` more frames (each made after this call began). */
  const frameCount = async (): Promise<number> => (await page.evaluate('Number(document.body.dataset.frames || 0)')) as number;
  const frames = async (n: number): Promise<void> => {
    const start = await frameCount();
    await waitFor(async () => (await frameCount()) >= start + n, 5000, `${n} dashboard frames`);
  };

  test('the map changes, the numbers match /metrics, a screenshot is taken', async (t) => {
    await page.goto(`${s.url}/dashboard`);
    await waitFor(async () => (await view()).status === 'live' && (await view()).counts.free !== null, 10_000, 'the page to go live');
    const idleView = await view();
    assert.equal(idleView.counts.free, s.engine.info.numBlocks, 'before any request, every block is free');
    assert.equal(idleView.drawn.free, s.engine.info.numBlocks, 'and drawn free');

    // Load: 24 streams at a time, prompts sharing a three-block prefix (so blocks are shared),
    // long enough answers that a good part of the pool is in use.
    const prefix = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her mom. ';
    let stop = false;
    let sent = 0;
    const failures: string[] = [];
    const client = async (w: number): Promise<void> => {
      for (let i = 0; !stop; i++) {
        const res = await fetch(`${s.url}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ prompt: `${prefix}Day ${w}-${i}:`, max_tokens: 100 + ((w * 37 + i * 11) % 150), ignore_eos: true, temperature: 0.8, seed: w * 1000 + i, stream: true }),
        });
        sent++;
        const text = await res.text();
        if (res.status !== 200 || !text.includes('data: [DONE]')) failures.push(`${res.status} ${text.slice(0, 200)}`);
      }
    };
    const load = Promise.all(Array.from({ length: 24 }, (_, w) => client(w)));
    const loadStart = Date.now();

    const maps = new Set<string>();
    let sawBusy = false;
    let screenshot: string | null = null;
    let redrawn = 0;
    const until = Date.now() + 60_000;
    try {
      while (Date.now() < until && (redrawn < 5 || !sawBusy || screenshot === null)) {
        // Counters only grow: what a frame made after the first scrape shows lies between two scrapes.
        const m0 = await metrics();
        await frames(2);
        const v = await view();
        const m1 = await metrics();
        for (const [id, name] of [
          ['gen-total', 'generation_tokens_total'],
          ['prompt-total', 'prompt_tokens_total'],
          ['prefix-hits', 'prefix_cache_hits_total'],
          ['prefix-queries', 'prefix_cache_queries_total'],
          ['preemptions', 'num_preemptions_total'],
          ['finished', 'request_success_total'],
        ] as const) {
          const shown = v.shown[id]!;
          assert.ok(metric(m0, name) <= shown && shown <= metric(m1, name), `${id} ${shown} lies in [${metric(m0, name)}, ${metric(m1, name)}] of ${name}`);
        }
        // The canvas shows exactly the counts in the legend.
        assert.equal(v.per, 1);
        assert.equal(v.drawn.unknown, 0, 'every cell has a state colour');
        for (const k of ['free', 'cached', 'used', 'shared'] as const) assert.equal(v.drawn[k], v.counts[k], `${k} cells drawn = ${k} blocks counted`);
        maps.add(JSON.stringify(v.counts));
        redrawn = v.redrawn - idleView.redrawn;
        if (v.counts.used! > 0 && v.counts.shared! > 0 && v.shown['running']! > 0 && v.shown['gen-tps']! > 0) {
          sawBusy = true;
          // The screenshot once a few seconds of history fill the charts.
          if (screenshot === null && Date.now() - loadStart > 8000) {
            mkdirSync(OUTPUT_DIR, { recursive: true });
            const path = join(OUTPUT_DIR, 'dashboard-under-load.png');
            await page.screenshot({ path, fullPage: true });
            // Kept when the page was still busy after it (a stalled host can idle the load meanwhile).
            const still = await view();
            if (still.shown['running']! > 0 && still.counts.used! > 0) {
              screenshot = path;
              t.diagnostic(`dashboard screenshot: ${screenshot}`);
            }
          }
        }
      }
    } finally {
      stop = true;
      await load;
    }
    assert.deepEqual(failures, []);
    assert.ok(sawBusy, 'the map showed used and shared blocks while requests ran and tokens flowed');
    assert.ok(redrawn >= 5 && maps.size >= 2, `the map changed under load (redrawn ${redrawn} times, ${maps.size} distinct counts seen)`);
    assert.ok(screenshot !== null && existsSync(screenshot));

    // Idle: every number equals /metrics exactly. A second and a half lets the last second close.
    await waitFor(() => s.engine.numInFlight === 0 && (s.engine.lastStats?.running ?? 1) === 0, 10_000, 'the engine to go idle');
    await new Promise((r) => setTimeout(r, 1500));
    await frames(2);
    const v = await view();
    const m = await metrics();
    assert.equal(v.shown['running'], metric(m, 'num_requests_running'));
    assert.equal(v.shown['running'], 0);
    assert.equal(v.shown['waiting'], metric(m, 'num_requests_waiting'));
    assert.equal(v.shown['kv-usage'], metric(m, 'kv_cache_usage_perc'));
    assert.equal(v.shown['kv-usage'], 0);
    assert.equal(v.shown['blocks-used'], 0);
    assert.equal(v.shown['gen-total'], metric(m, 'generation_tokens_total'));
    assert.equal(v.shown['prompt-total'], metric(m, 'prompt_tokens_total'));
    assert.equal(v.shown['prefix-hits'], metric(m, 'prefix_cache_hits_total'));
    assert.ok(v.shown['prefix-hits']! > 0, 'the shared prefix was found in the cache');
    assert.equal(v.shown['prefix-queries'], metric(m, 'prefix_cache_queries_total'));
    assert.equal(v.shown['preemptions'], metric(m, 'num_preemptions_total'));
    assert.equal(v.shown['finished'], metric(m, 'request_success_total'));
    assert.equal(v.shown['finished'], sent);
    // Every request of this server finished within the last minute: the page's means are /metrics' means.
    const close = (a: number, b: number, what: string): void => assert.ok(Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(b)), `${what}: page ${a}, /metrics ${b}`);
    close(v.shown['ttft']!, (1000 * metric(m, 'time_to_first_token_seconds_sum')) / metric(m, 'time_to_first_token_seconds_count'), 'mean TTFT (ms)');
    close(v.shown['e2e']!, (1000 * metric(m, 'e2e_request_latency_seconds_sum')) / metric(m, 'e2e_request_latency_seconds_count'), 'mean latency (ms)');
    // The map: nothing in use, the prompts' full blocks cached, drawn as counted.
    assert.equal(v.counts.used, 0);
    assert.equal(v.counts.shared, 0);
    assert.ok(v.counts.cached! > 0);
    assert.equal(v.counts.free! + v.counts.cached!, s.engine.info.numBlocks);
    for (const k of ['free', 'cached', 'used', 'shared'] as const) assert.equal(v.drawn[k], v.counts[k]);
    assert.deepEqual(pageErrors, [], 'no script error on the page');
  });

  test('a pool too large to show block by block: each cell shows the most common state of its blocks', async () => {
    // A short window leaves the map little height: about 3,300 blocks need several a cell.
    const big = await startServer({ model: fixturePath('stories260k'), kvCacheMemory: 64 * 1024 * 1024 });
    const p = await browser.newPage({ viewport: { width: 400, height: 90 } });
    try {
      // Cached prefixes of a few lengths, so cells hold mixed states.
      for (const words of [12, 30, 60]) {
        const prompt = Array.from({ length: words }, (_, i) => ['Once', 'upon', 'a', 'time', 'Lily', 'played'][i % 6]).join(' ');
        assert.equal((await raw(big.url, { path: '/v1/completions', body: JSON.stringify({ prompt, max_tokens: 20, ignore_eos: true }) })).status, 200);
      }
      await p.goto(`${big.url}/dashboard`);
      await waitFor(async () => ((await p.evaluate(READ_PAGE)) as PageView).counts.free !== null, 10_000, 'the page to go live');
      const v = (await p.evaluate(READ_PAGE)) as PageView;
      const [, frame] = await readEvents(big.url, 2);
      const states = unpack(frame!.data['blocks'] as string, big.engine.info.numBlocks);
      assert.ok(v.per > 1, `several blocks a cell (${v.per})`);
      assert.equal(v.cellStates.length, Math.ceil(states.length / v.per));
      const names = ['free', 'cached', 'used', 'shared'];
      const expected = v.cellStates.map((_, c) => {
        const n = [0, 0, 0, 0];
        for (const st of states.slice(c * v.per, (c + 1) * v.per)) n[st]!++;
        // The most common state; a tie goes to the busier one (the page's rule).
        let best = 0;
        for (let k = 1; k < 4; k++) if (n[k]! >= n[best]!) best = k;
        return names[best]!;
      });
      assert.deepEqual(v.cellStates, expected);
      assert.ok(v.cellStates.includes('cached') && v.cellStates.includes('free'));
      assert.equal(v.counts.cached, countBlockStates(Uint8Array.from(states)).cached, 'the legend still counts every block');
    } finally {
      await p.close();
      await big.close();
    }
  });

  // (Without credentials the routes answer 401 with a Basic challenge: 'dashboard routes' above.)
  test('behind an API key, a browser logs in with the key as password and the page goes live', async () => {
    const locked = await startServer({ model: fixturePath('stories260k'), kvCacheMemory: 8 * 1024 * 1024 }, { apiKey: 'k3y' });
    const context = await browser.newContext({ httpCredentials: { username: 'me', password: 'k3y' } });
    try {
      const p = await context.newPage();
      const res = await p.goto(`${locked.url}/dashboard`);
      assert.equal(res?.status(), 200);
      await waitFor(async () => (await p.evaluate(READ_PAGE) as PageView).counts.free === locked.engine.info.numBlocks, 10_000, 'the locked page to go live');
    } finally {
      await context.close();
      await locked.close();
    }
  });
});
