/**
 * `pagewise bench serve` against a fake OpenAI-compatible SSE server started here on 127.0.0.1:
 * counts, token accounting, failure handling, the ignore_eos fallback, and the JSON shape.
 * No assertion is about how fast anything is.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  SseParser,
  benchServe,
  buildPrompts,
  parseServeArgs,
  runServeBench,
  SERVE_DEFAULTS,
  type ServeBenchResult,
} from '../src/benchmarks/serve.js';
import { parseResults, renderMarkdown, renderSvg, type Result } from '../scripts/benchmark-report.js';
import { fixturePath } from './helpers/fixtures.js';
import { startServer, type TestServer } from './helpers/server.js';

interface Seen {
  path: string;
  body: Record<string, unknown>;
}

/**
 * Routes (a path prefix picks the behaviour, the rest is /v1/completions):
 *   /              streams max_tokens chunks, then a usage chunk, then [DONE]
 *   /flaky         every third request answers 500
 *   /strict        rejects ignore_eos with 400 like OpenAI does for unknown fields
 *   /nousage       no usage chunk (tokens must be counted from chunks)
 *   /broken        two chunks, then the connection is cut
 *   /hang          never answers (for timeouts)
 *   /split         every event written in two pieces, CRLF line ends, ping comments
 */
class FakeServer {
  server = http.createServer((req, res) => void this.handle(req, res));
  seen: Seen[] = [];
  inFlight = 0;
  maxInFlight = 0;
  private counters = new Map<string, number>();
  url = '';

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  reset(): void {
    this.seen = [];
    this.maxInFlight = 0;
    this.counters.clear();
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    if (req.method === 'GET' && url === '/v1/models') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ object: 'list', data: [{ id: 'fake-model', object: 'model' }] }));
      return;
    }
    const m = /^(\/[a-z]+)?\/v1\/completions$/.exec(url);
    if (req.method !== 'POST' || !m) {
      res.writeHead(404).end('{"error":{"message":"no such route"}}');
      return;
    }
    const variant = m[1] ?? '/';
    let raw = '';
    for await (const chunk of req) raw += chunk;
    const body = JSON.parse(raw) as Record<string, unknown>;
    this.seen.push({ path: url, body });
    const n = (this.counters.get(variant) ?? 0) + 1;
    this.counters.set(variant, n);

    if (variant === '/hang') return; // the client's timeout must end it
    if (variant === '/flaky' && n % 3 === 0) {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end('{"error":{"message":"engine exploded","type":"internal_error"}}');
      return;
    }
    if (variant === '/strict' && body['ignore_eos'] !== undefined) {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end('{"error":{"message":"Unrecognized request argument supplied: ignore_eos"}}');
      return;
    }

    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    res.on('close', () => this.inFlight--);
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const maxTokens = body['max_tokens'] as number;
    const prompt = body['prompt'];
    const promptTokens = Array.isArray(prompt) ? prompt.length : String(prompt).split(' ').length;
    const send = async (obj: unknown): Promise<void> => {
      const text = `data: ${typeof obj === 'string' ? obj : JSON.stringify(obj)}`;
      if (variant === '/split') {
        const half = Math.floor(text.length / 2);
        res.write(': ping\r\n\r\n');
        res.write(text.slice(0, half));
        await delay(1);
        res.write(`${text.slice(half)}\r\n\r\n`);
      } else {
        res.write(`${text}\n\n`);
      }
    };
    for (let i = 0; i < maxTokens; i++) {
      await delay(2);
      if (variant === '/broken' && i === 2) {
        res.destroy();
        return;
      }
      await send({
        id: 'cmpl-1',
        object: 'text_completion',
        model: body['model'],
        choices: [{ index: 0, text: ` t${i}`, finish_reason: i === maxTokens - 1 ? 'length' : null }],
      });
    }
    const opts = body['stream_options'] as { include_usage?: boolean } | undefined;
    if (variant !== '/nousage' && opts?.include_usage) {
      await send({
        id: 'cmpl-1',
        object: 'text_completion',
        choices: [],
        usage: { prompt_tokens: promptTokens, completion_tokens: maxTokens, total_tokens: promptTokens + maxTokens },
      });
    }
    await send('[DONE]');
    res.end();
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

const fake = new FakeServer();
before(() => fake.start());
after(() => fake.stop());

const quiet = { out: () => undefined, err: () => undefined };

async function runJson(args: string[]): Promise<ServeBenchResult> {
  let out = '';
  await benchServe([...args, '--json'], { out: (s) => void (out += s), err: () => undefined });
  const lines = out.trim().split('\n');
  assert.equal(lines.length, 1, 'exactly one JSON object on stdout');
  return JSON.parse(lines[0]!) as ServeBenchResult;
}

function assertPlausible(r: ServeBenchResult): void {
  for (const k of ['ttft_ms', 'tpot_ms', 'itl_ms', 'e2el_ms'] as const) {
    const s = r[k];
    assert.ok(s, `${k} present`);
    for (const v of [s.mean, s.p50, s.p90, s.p99]) assert.ok(Number.isFinite(v) && v >= 0, `${k} non-negative`);
    assert.ok(s.p50 <= s.p90 && s.p90 <= s.p99, `${k} percentiles ordered`);
  }
  assert.ok(r.ttft_ms!.p50 <= r.e2el_ms!.p50 && r.ttft_ms!.mean <= r.e2el_ms!.mean, 'ttft <= e2el');
  assert.ok(r.duration_s > 0);
}

describe('bench serve against a fake server', () => {
  test('all requests complete; tokens from usage; request body follows the field', async () => {
    fake.reset();
    const r = await runJson([
      '--base-url', fake.url, '--model', 'm', '--num-prompts', '6', '--input-len', '12', '--output-len', '5',
      '--max-concurrency', '3', '--seed', '7',
    ]);
    assert.equal(r.completed, 6);
    assert.equal(r.failed, 0);
    assert.equal(r.output_tokens, 30);
    assert.equal(r.input_tokens, 72);
    assert.equal(r.ignore_eos, true);
    assert.deepEqual(r.errors, []);
    assertPlausible(r);
    assert.ok(r.peak_concurrency >= 1 && r.peak_concurrency <= 3);
    assert.ok(fake.maxInFlight <= 3, 'never more than --max-concurrency in flight');
    assert.equal(fake.seen.length, 6);
    for (const { body } of fake.seen) {
      assert.equal(body['model'], 'm');
      assert.equal(body['stream'], true);
      assert.deepEqual(body['stream_options'], { include_usage: true });
      assert.equal(body['max_tokens'], 5);
      assert.equal(body['temperature'], 0);
      assert.equal(body['ignore_eos'], true);
      const ids = body['prompt'] as number[];
      assert.equal(ids.length, 12);
      assert.ok(ids.every((x) => Number.isInteger(x) && x >= 100 && x < 1000));
    }
    for (const key of [
      'bench', 'completed', 'failed', 'duration_s', 'request_throughput', 'output_tokens_per_s', 'total_tokens_per_s',
      'input_tokens', 'output_tokens', 'ttft_ms', 'tpot_ms', 'itl_ms', 'e2el_ms', 'max_concurrency', 'request_rate',
      'num_prompts', 'machine', 'git_commit', 'base_url', 'model', 'errors', 'peak_concurrency',
    ]) {
      assert.ok(key in r, `JSON has ${key}`);
    }
    assert.equal(r.bench, 'serve');
    assert.equal(r.max_concurrency, 3);
    assert.equal(r.request_rate, 'inf');
    assert.equal(r.num_prompts, 6);
    assert.equal(r.model, 'm');
    assert.equal(r.base_url, fake.url);
    assert.ok(r.machine.threads >= 1 && r.machine.cores >= 1 && typeof r.machine.cpu_model === 'string');
    assert.ok(r.goodput === undefined);
  });

  test('prompts are reproducible from the seed', () => {
    const o = { ...SERVE_DEFAULTS, numPrompts: 3, inputLen: 4, tokenIdRange: [100, 1000] as [number, number] };
    assert.deepEqual(buildPrompts({ ...o, seed: 1 }), buildPrompts({ ...o, seed: 1 }));
    assert.notDeepEqual(buildPrompts({ ...o, seed: 1 }), buildPrompts({ ...o, seed: 2 }));
  });

  test('server errors are counted, not thrown; the first messages are reported', async () => {
    fake.reset();
    const r = await runJson(['--base-url', `${fake.url}/flaky`, '--model', 'm', '--num-prompts', '9', '--input-len', '4', '--output-len', '3']);
    assert.equal(r.completed, 6);
    assert.equal(r.failed, 3);
    assert.equal(r.output_tokens, 18);
    assert.equal(r.errors.length, 3);
    assert.match(r.errors[0]!, /HTTP 500.*engine exploded/);
    assertPlausible(r);
  });

  test('a finite request rate and goodput SLOs', async () => {
    fake.reset();
    const r = await runJson([
      '--base-url', fake.url, '--model', 'm', '--num-prompts', '5', '--input-len', '3', '--output-len', '4',
      '--request-rate', '500', '--goodput', 'ttft:60000', 'e2el:60000',
    ]);
    assert.equal(r.completed, 5);
    assert.equal(r.request_rate, 500);
    assert.ok(r.goodput);
    assert.deepEqual(r.goodput.slo, { ttft_ms: 60000, e2el_ms: 60000 });
    assert.equal(r.goodput.good_requests, 5, 'a minute-long SLO is met by every request');
    const none = await runJson([
      '--base-url', fake.url, '--model', 'm', '--num-prompts', '2', '--input-len', '3', '--output-len', '4',
      '--goodput', 'e2el:0',
    ]);
    assert.equal(none.goodput?.good_requests, 0, 'no request ends in 0 ms');
    assert.equal(none.goodput?.request_goodput, 0);
  });

  test('a server that rejects ignore_eos gets one retry without it, then never sees it again', async () => {
    fake.reset();
    const r = await runJson(['--base-url', `${fake.url}/strict`, '--model', 'm', '--num-prompts', '4', '--input-len', '2', '--output-len', '3', '--max-concurrency', '1']);
    assert.equal(r.completed, 4);
    assert.equal(r.failed, 0);
    assert.equal(r.ignore_eos, false);
    const withFlag = fake.seen.filter((s) => s.body['ignore_eos'] !== undefined).length;
    assert.equal(withFlag, 1, 'only the first request carried ignore_eos');
    assert.equal(fake.seen.length, 5);
  });

  test('without a usage chunk, tokens are counted from chunks', async () => {
    fake.reset();
    const r = await runJson(['--base-url', `${fake.url}/nousage`, '--model', 'm', '--num-prompts', '3', '--input-len', '5', '--output-len', '4']);
    assert.equal(r.completed, 3);
    assert.equal(r.output_tokens, 12);
    assert.equal(r.input_tokens, 15, 'prompt tokens from the id list when the server gives no usage');
    assertPlausible(r);
  });

  test('split events, CRLF and ping comments parse the same', async () => {
    fake.reset();
    const r = await runJson(['--base-url', `${fake.url}/split`, '--model', 'm', '--num-prompts', '2', '--input-len', '5', '--output-len', '3']);
    assert.equal(r.completed, 2);
    assert.equal(r.output_tokens, 6);
  });

  test('a broken stream and a timeout are failures with a reason', async () => {
    fake.reset();
    const broken = await runJson(['--base-url', `${fake.url}/broken`, '--model', 'm', '--num-prompts', '2', '--input-len', '2', '--output-len', '6']);
    assert.equal(broken.completed, 0);
    assert.equal(broken.failed, 2);
    assert.equal(broken.errors.length, 2);
    assert.equal(broken.ttft_ms, null);
    assert.equal(broken.output_tokens, 0);
    process.exitCode = 0; // benchServe flags a run where nothing completed; not this test's concern
    const hang = await runServeBench({
      ...SERVE_DEFAULTS,
      baseUrl: `${fake.url}/hang`,
      model: 'm',
      numPrompts: 2,
      inputLen: 2,
      outputLen: 2,
      timeoutS: 0.2,
    });
    assert.equal(hang.failed, 2);
    assert.match(hang.errors[0]!, /timed out/);
  });

  test('the overall cap stops the run by itself', async () => {
    fake.reset();
    const r = await runServeBench({
      ...SERVE_DEFAULTS,
      baseUrl: `${fake.url}/hang`,
      model: 'm',
      numPrompts: 4,
      inputLen: 2,
      outputLen: 2,
      maxConcurrency: 1,
      maxDurationS: 0.2,
    });
    assert.equal(r.completed, 0);
    assert.equal(r.failed, 4);
    assert.equal(r.capped, true);
    assert.equal(fake.seen.length, 1, 'queued requests were never sent');
  });

  test('the model defaults to the first one the server lists; dataset prompts', async () => {
    fake.reset();
    const dir = mkdtempSync(path.join(tmpdir(), 'pagewise-bench-'));
    try {
      const file = path.join(dir, 'prompts.jsonl');
      writeFileSync(file, '{"prompt": "hello there world", "output_len": 2}\n\n{"prompt_token_ids": [5, 6, 7, 8], "output_len": 3}\n');
      const r = await runJson(['--base-url', fake.url, '--dataset', file, '--num-prompts', '3']);
      assert.equal(r.model, 'fake-model');
      assert.equal(r.completed, 3);
      assert.equal(r.output_tokens, 2 + 3 + 2, 'lines are cycled');
      assert.equal(r.input_tokens, 3 + 4 + 3);
      assert.equal(r.input_len, null);
      assert.equal(r.dataset, file);
      const prompts = fake.seen.map((s) => s.body['prompt']);
      assert.ok(prompts.some((p) => p === 'hello there world'));
      assert.ok(prompts.some((p) => Array.isArray(p) && p.join(',') === '5,6,7,8'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the readable table', async () => {
    let out = '';
    await benchServe(['--base-url', fake.url, '--model', 'm', '--num-prompts', '2', '--input-len', '2', '--output-len', '2'], {
      out: (s) => void (out += s),
      err: () => undefined,
    });
    assert.match(out, /Successful requests:\s+2/);
    assert.match(out, /Median TTFT \(ms\):/);
    assert.match(out, /P99 ITL \(ms\):/);
  });
});

describe('bench serve flags', () => {
  test('defaults and parsing', () => {
    const o = parseServeArgs([]);
    assert.equal(o.numPrompts, 64);
    assert.equal(o.requestRate, Infinity);
    assert.equal(o.maxConcurrency, null);
    assert.equal(o.timeoutS, 600);
    assert.equal(o.tokenIdRange, null, 'by default: inside the model\'s vocabulary');
    assert.equal(o.ignoreEos, true);
    const p = parseServeArgs([
      '--request-rate', '2.5', '--max-concurrency', '4', '--goodput', 'ttft:500', 'tpot:50', '--json',
      '--token-id-range', '1000:20000', '--no-ignore-eos',
    ]);
    assert.equal(p.requestRate, 2.5);
    assert.equal(p.maxConcurrency, 4);
    assert.deepEqual(p.goodput, { ttft_ms: 500, tpot_ms: 50 });
    assert.equal(p.json, true);
    assert.deepEqual(p.tokenIdRange, [1000, 20000]);
    assert.equal(p.ignoreEos, false);
    assert.deepEqual(parseServeArgs(['--goodput=e2el:900,ttft:100']).goodput, { e2el_ms: 900, ttft_ms: 100 });
  });

  test('bad values are clear errors', () => {
    assert.throws(() => parseServeArgs(['--request-rate', '0']), /request-rate/);
    assert.throws(() => parseServeArgs(['--request-rate', 'fast']), /request-rate/);
    assert.throws(() => parseServeArgs(['--max-concurrency', '0']), /max-concurrency/);
    assert.throws(() => parseServeArgs(['--token-id-range', '9:3']), /token-id-range/);
    assert.throws(() => parseServeArgs(['--goodput', 'latency:5']), /goodput/);
    assert.throws(() => parseServeArgs(['--goodput']), /goodput/);
    assert.throws(() => parseServeArgs(['--dataset', 'x.jsonl', '--input-len', '4']), /exclude/);
    assert.throws(() => parseServeArgs(['--base-url', 'localhost:8000']), /base-url/);
    assert.throws(() => parseServeArgs(['--bogus']), /unknown option/);
  });

  test('--help prints usage', async () => {
    let out = '';
    await benchServe(['--help'], { ...quiet, out: (s) => void (out += s) });
    assert.match(out, /--max-concurrency/);
  });
});

describe('bench serve against Pagewise', () => {
  // stories260k has a 512-token vocabulary: ids drawn from a fixed 100..1000 would all be refused.
  let s: TestServer;
  before(async () => {
    s = await startServer({ model: fixturePath('stories260k'), maxModelLen: 256 });
  });
  after(async () => {
    await s.close();
  });

  test('random prompt ids come from the vocabulary the server reports, and the run says so', async () => {
    const notes: string[] = [];
    let out = '';
    await benchServe(['--base-url', s.url, '--num-prompts', '24', '--input-len', '16', '--output-len', '2', '--max-concurrency', '8', '--json'], {
      out: (x) => void (out += x),
      err: (x) => void notes.push(x),
    });
    const r = JSON.parse(out) as ServeBenchResult;
    assert.equal(r.completed, 24, `failures: ${r.errors.join('; ')}`);
    assert.deepEqual(r.token_id_range, [16, 512]);
    assert.ok(notes.some((n) => /random prompt token ids from \[16, 512\) \(a vocabulary of 512 ids, from the server's vocab_size\)/.test(n)), notes.join(''));
  });

  test('--tokenizer bounds the ids; a --token-id-range past the vocabulary is a clear error', async () => {
    const notes: string[] = [];
    const r = await runServeBench(
      { ...parseServeArgs(['--base-url', s.url, '--num-prompts', '2', '--input-len', '4', '--output-len', '1', '--tokenizer', fixturePath('stories260k')]) },
      (n) => notes.push(n),
    );
    assert.equal(r.completed, 2);
    assert.deepEqual(r.token_id_range, [16, 512]);
    assert.match(notes.join('\n'), /from --tokenizer/);
    await assert.rejects(runServeBench(parseServeArgs(['--base-url', s.url, '--num-prompts', '1', '--token-id-range', '100:1000'])), /--token-id-range 100:1000 reaches past the model's vocabulary \(512 ids/);
    const inRange = await runServeBench(parseServeArgs(['--base-url', s.url, '--num-prompts', '2', '--input-len', '4', '--output-len', '1', '--token-id-range', '300:512']));
    assert.equal(inRange.completed, 2);
    assert.deepEqual(inRange.token_id_range, [300, 512]);
  });
});

describe('SseParser', () => {
  test('events split across reads, CRLF, comments, multi-line data, unterminated tail', () => {
    const p = new SseParser();
    assert.deepEqual(p.push('data: {"a"'), []);
    assert.deepEqual(p.push(':1}\r\n\r\n: ping\n\ndata: x\ndata: y\n'), ['{"a":1}']);
    assert.deepEqual(p.push('\nevent: foo\ndata:[DONE]\n\ndata: tail'), ['x\ny', '[DONE]']);
    assert.deepEqual(p.end(), ['tail']);
  });
});

describe('scripts/benchmark-report.ts', () => {
  const serve = (c: number | null, tok: number, itl99: number | undefined): Result => ({
    bench: 'serve',
    model: 'm',
    max_concurrency: c,
    request_rate: 'inf',
    completed: 4,
    failed: 0,
    output_tokens_per_s: tok,
    total_tokens_per_s: tok * 2,
    ttft_ms: { mean: 1, p50: 1, p90: 2, p99: 3 },
    itl_ms: itl99 === undefined ? null : { mean: 1, p50: 1, p90: 1, p99: itl99 },
    git_commit: '0123456789abcdef0123456789abcdef01234567',
  });

  test('tables per kind, robust to missing keys; JSON lines and arrays', () => {
    const lines = [serve(4, 300.5, 9), serve(1, 100, 5), serve(null, 400, undefined)].map((r) => JSON.stringify(r)).join('\n');
    const warnings: string[] = [];
    const rs = [
      ...parseResults(`${lines}\nnot json\n`, 'a.jsonl', (m) => warnings.push(m)),
      ...parseResults(JSON.stringify([{ bench: 'throughput', output_tokens_per_s: 12.25, num_prompts: 8 }]), 'b.json'),
      ...parseResults(JSON.stringify({ bench: 'latency', results: { p50_ms: 3 } }), 'c.json'),
      ...parseResults('{}', 'd.json'),
    ];
    assert.equal(rs.length, 6);
    assert.equal(warnings.length, 1);
    const md = renderMarkdown(rs);
    assert.match(md, /## serve/);
    assert.match(md, /## throughput/);
    assert.match(md, /## latency/);
    assert.match(md, /## unknown/);
    const serveRows = md.split('\n').filter((l) => /^\| (1|4|∞) \|/.test(l));
    assert.deepEqual(serveRows.map((l) => l.split(' | ')[0]), ['| 1', '| 4', '| ∞'], 'rows ordered by concurrency');
    assert.match(serveRows[2]!, /–/, 'a missing ITL shows as a dash');
    assert.match(md, /results\.p50_ms \| 3/);
    assert.match(md, /12\.25/);
  });

  test('SVG of output tok/s and p99 ITL against concurrency', () => {
    const svg = renderSvg([serve(1, 100, 5), serve(2, 180, 6), serve(4, 300, undefined), { bench: 'throughput' }]);
    assert.ok(svg !== null);
    assert.match(svg, /^<svg[^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    assert.match(svg, /<\/svg>\n$/);
    assert.equal((svg.match(/<polyline/g) ?? []).length, 2, 'one line per panel');
    assert.equal((svg.match(/<circle/g) ?? []).length, 5, '3 throughput points + 2 ITL points');
    assert.equal(renderSvg([{ bench: 'throughput' }]), null);
  });
});
