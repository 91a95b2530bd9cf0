/**
 * Test helpers for the HTTP server: a request-parsing context without an engine, a real server on
 * a free port around a started engine, and raw HTTP requests (arbitrary bytes, headers, aborts).
 */
import { copyFileSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AsyncEngine, type EngineStartOptions } from '../../src/engine/async-engine.js';
import type { SamplingParams } from '../../src/sampling/params.js';
import { createServer, type PagewiseServer, type ServerOptions } from '../../src/server/app.js';
import { longestTokenChars, type RequestContext } from '../../src/server/request-context.js';
import type { PagewiseTokenizer } from '../../src/tokenizer/tokenizer.js';
import { fixturePath } from './fixtures.js';

/** ChatML, as Qwen-style models write it. */
export const CHATML =
  "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/**
 * stories260k (a real trained model: sensible text, so stop strings and reproducibility mean
 * something) with a ChatML `chat_template.jinja` added, in a temp dir.
 */
export function storiesWithChatTemplate(): string {
  const src = fixturePath('stories260k');
  const dir = mkdtempSync(join(tmpdir(), 'pagewise-server-'));
  for (const f of readdirSync(src)) if (statSync(join(src, f)).isFile()) copyFileSync(join(src, f), join(dir, f));
  writeFileSync(join(dir, 'chat_template.jinja'), CHATML);
  return dir;
}

export function requestContext(tokenizer: PagewiseTokenizer, over: Partial<RequestContext> = {}): RequestContext {
  return {
    tokenizer,
    vocabSize: tokenizer.vocabSize,
    maxModelLen: 512,
    kvCacheTokens: 4096,
    maxNumSeqs: 8,
    maxPrompts: 64,
    servedModelNames: ['test-model'],
    defaults: {} as Partial<SamplingParams>,
    maxNewTokens: null,
    maxTokenChars: longestTokenChars(tokenizer, tokenizer.vocabSize),
    ...over,
  };
}

export interface TestServer {
  engine: AsyncEngine;
  app: PagewiseServer;
  /** e.g. http://127.0.0.1:41234 */
  url: string;
  /** Lines the server logged. */
  logs: string[];
  close(): Promise<void>;
}

/** Small engine defaults for tests: a 64 MiB KV pool and 2 threads. */
export const TEST_ENGINE: EngineStartOptions = { kvCacheMemory: 64 * 1024 * 1024, threads: 2, log: () => {} };

export async function startServer(engineOpts: EngineStartOptions, serverOpts: ServerOptions = {}): Promise<TestServer> {
  const engine = await AsyncEngine.start({ ...TEST_ENGINE, ...engineOpts });
  const logs: string[] = [];
  let app: PagewiseServer;
  try {
    app = createServer(engine, { log: (level, msg) => logs.push(`${level}: ${msg}`), ...serverOpts });
    await app.listen({ host: '127.0.0.1', port: 0 });
  } catch (err) {
    await engine.shutdown();
    throw err;
  }
  const addr = app.server.address();
  if (addr === null || typeof addr === 'string') throw new Error('server has no TCP address');
  return {
    engine,
    app,
    url: `http://127.0.0.1:${addr.port}`,
    logs,
    async close() {
      await app.close();
      await engine.shutdown();
    },
  };
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json(): unknown;
}

/** Send exactly these bytes (node:http, so malformed bodies and odd headers go out unchanged). */
export function raw(
  url: string,
  opts: { method?: string; path: string; headers?: Record<string, string>; body?: string | Buffer },
): Promise<RawResponse> {
  const u = new URL(opts.path, url);
  return new Promise((resolve, reject) => {
    const body = opts.body === undefined ? undefined : Buffer.isBuffer(opts.body) ? opts.body : Buffer.from(opts.body, 'utf8');
    const req = httpRequest(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        method: opts.method ?? (body ? 'POST' : 'GET'),
        headers: {
          ...(body ? { 'content-type': 'application/json', 'content-length': String(body.length) } : {}),
          connection: 'close',
          ...opts.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text,
            json: () => JSON.parse(text) as unknown,
          });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

/** POST a JSON value. */
export function postJson(url: string, path: string, value: unknown, headers: Record<string, string> = {}): Promise<RawResponse> {
  return raw(url, { path, body: JSON.stringify(value), headers });
}

/** Poll until `cond()` holds or `ms` pass. */
export async function waitFor(cond: () => boolean | Promise<boolean>, ms = 5000, what = 'condition'): Promise<void> {
  const until = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The value of a gauge or counter (no labels filter: sums the series) in Prometheus text. */
export function metricValue(text: string, name: string): number | null {
  let found = false;
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([^\s{]+)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m && m[1] === name) {
      found = true;
      sum += Number(m[3]);
    }
  }
  return found ? sum : null;
}
