/**
 * createServer(engine, opts): the OpenAI-compatible HTTP server around a running AsyncEngine, as a
 * fastify instance (not listening yet). The engine is the caller's: closing the server does not
 * stop it; `shutdownGracefully` does both, in the order a SIGTERM needs.
 *
 * Routes: POST /v1/completions, POST /v1/chat/completions, GET /v1/models (and /v1/models/:id),
 * POST /tokenize, POST /detokenize, GET /health, GET /version, GET /metrics, GET /dashboard.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { AsyncEngine } from '../engine/async-engine.js';
import { AuthenticationError, InvalidRequestError, NotFoundError, PagewiseError, ServiceUnavailableError } from '../errors.js';
import { chatHandler } from './chat.js';
import { basicAsBearer, DASHBOARD_CHALLENGE, isDashboardPath, registerDashboard } from './dashboard/index.js';
import { completionsHandler } from './completions.js';
import { generationDefaults } from '../config/generation-defaults.js';
import { warnIgnored, type ServeContext } from './context.js';
import { createLogger, withRequestIds, type ServerLog } from './log.js';
import { trackRequests } from './request-log.js';
import { discardBody, DISCARD_LIMIT_FACTOR } from './body-limit.js';
import { errorBody, toHttpError } from './errors.js';
import { ServerMetrics } from './metrics.js';
import { parseDetokenizeRequest, parseTokenize } from './request.js';
import { TokenizerPool } from '../tokenizer/pool.js';
import { longestTokenChars, type RequestContext } from './request-context.js';
import type { ToolConfig } from './tools/request.js';

export interface ServerOptions {
  /** Names clients use in `model` (default: the engine's --model value). The first is reported. */
  servedModelName?: string | readonly string[];
  /** When set, every route except /health and /metrics needs `Authorization: Bearer <key>`. */
  apiKey?: string | null;
  /** Largest request body in bytes (default 16 MiB); larger ones get 413. */
  bodyLimit?: number;
  /** `auto` (default): the model's generation_config.json sampling defaults apply; `vllm`: vLLM's built-ins. */
  generationConfig?: 'auto' | 'vllm';
  /** Tool calling: --tool-call-parser (hermes, llama3_json, mistral, pythonic) and --enable-auto-tool-choice. */
  tools?: ToolConfig;
  /** Where warnings, errors and the access lines go (default: text lines on stderr, level info). */
  log?: ServerLog;
  /** Log one line per HTTP request: status, tokens, time to first token, total time (default true). */
  accessLog?: boolean;
  /** Threads that tokenize long inputs off the event loop (default 2; 0: on the event loop). */
  tokenizerWorkers?: number;
  /** Serve the live dashboard at /dashboard (default true; `--no-dashboard` turns it off). */
  dashboard?: boolean;
}

/** Server state the CLI and tests reach through `app.pagewise`. */
export interface PagewiseServerState {
  readonly metrics: ServerMetrics;
  readonly servedModelNames: readonly string[];
  /** True once shutdown has begun. */
  readonly closing: boolean;
  /** Refuse new work from now on (503) and report /health 503. */
  beginShutdown(): void;
  /** HTTP requests still being answered. */
  readonly inFlight: number;
}

export type PagewiseServer = FastifyInstance & { readonly pagewise: PagewiseServerState };

export const DEFAULT_BODY_LIMIT = 16 * 1024 * 1024;

/** Paths that stay open when an API key is set (probes and scrapers carry no key). */
const OPEN_PATHS = new Set(['/health', '/metrics']);

function readVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

const VERSION = readVersion();

/**
 * No OpenAI request nests anywhere near this deep. Refusing deeper bodies up front means no later
 * code (validation messages that stringify a value, templates) can recurse its way to a stack
 * overflow on hostile input.
 */
const MAX_JSON_DEPTH = 64;

/** Whether a parsed JSON value nests deeper than `max` (iterative: deep input cannot overflow it). */
export function tooDeep(value: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (d >= max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (typeof child === 'object' && child !== null) stack.push([child, d + 1]);
    }
  }
  return false;
}

/** Constant-time key check: both sides are hashed first, so lengths never leak either. */
function keyMatches(header: string | undefined, keyDigest: Buffer): boolean {
  if (typeof header !== 'string') return false;
  const m = /^Bearer\s+(.+)$/i.exec(header.trim());
  const given = createHash('sha256').update(m ? m[1]! : '', 'utf8').digest();
  return timingSafeEqual(given, keyDigest) && m !== null;
}

export function createServer(engine: AsyncEngine, opts: ServerOptions = {}): PagewiseServer {
  const info = engine.info;
  const names = opts.servedModelName === undefined ? [info.config.model] : typeof opts.servedModelName === 'string' ? [opts.servedModelName] : [...opts.servedModelName];
  if (names.length === 0 || names.some((n) => typeof n !== 'string' || n.length === 0)) throw new InvalidRequestError('served model names must be non-empty strings');
  // Every line logged while a request is handled carries its id (log.ts).
  const log = withRequestIds(opts.log ?? createLogger());
  const bodyLimit = opts.bodyLimit ?? DEFAULT_BODY_LIMIT;
  const gen = generationDefaults(info.generationConfig, opts.generationConfig ?? 'auto');
  if (gen.applied.length > 0) log('info', `default sampling parameters from the model's generation_config.json: ${gen.applied.join(', ')} (--generation-config vllm to ignore them)`);

  const reqCtx: RequestContext = {
    tokenizer: engine.tokenizer,
    vocabSize: info.model.vocabSize,
    maxModelLen: info.maxModelLen,
    kvCacheTokens: info.numBlocks * info.blockSize,
    maxNumSeqs: info.config.maxNumSeqs,
    maxPrompts: info.config.maxWaitingRequests,
    servedModelNames: names,
    defaults: gen.defaults,
    maxNewTokens: gen.maxNewTokens,
    maxTokenChars: longestTokenChars(engine.tokenizer, info.model.vocabSize),
    tools: opts.tools,
  };
  const metrics = new ServerMetrics(names[0]!, info);
  const tokens = new TokenizerPool(engine.tokenizerFiles, engine.tokenizer, {
    workers: opts.tokenizerWorkers,
    onWorkerExit: () => engine.releaseFreeMemory(),
  });
  const sc: ServeContext = { engine, req: reqCtx, tokens, metrics, log, closing: false, inFlight: 0 };

  // The metrics follow the engine's events until the server closes.
  const unsubscribe = [engine.on('stats', (s) => metrics.onStats(s)), engine.on('finished', (o) => metrics.onFinished(o))];

  const app = Fastify({
    logger: false,
    bodyLimit,
    // Idle keep-alive sockets would otherwise keep close() (and test runners) waiting.
    forceCloseConnections: true,
    // Our own 503 with OpenAI's error shape is sent while draining.
    return503OnClosing: false,
    // Malformed URLs and the like: answered in OpenAI's shape like every other error.
    frameworkErrors: (err, _request, reply) => {
      const e = toHttpError(err);
      void (reply as unknown as FastifyReply).code(e.status).send(e.body);
    },
  });

  const state: PagewiseServerState = {
    metrics,
    servedModelNames: names,
    get closing() {
      return sc.closing;
    },
    get inFlight() {
      return sc.inFlight;
    },
    beginShutdown() {
      sc.closing = true;
    },
  };
  app.decorate('pagewise', state);

  // Bodies: JSON whatever the Content-Type says (curl -d sends form-encoded), strict UTF-8, and a
  // clear 400 for anything that does not parse, so malformed input never reaches a handler.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit }, (_req, body, done) => {
    const buf = body as Buffer;
    if (buf.length === 0) return done(null, undefined);
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(buf);
    } catch {
      return done(new InvalidRequestError('Request body is not valid UTF-8'), undefined);
    }
    let value: unknown;
    try {
      value = JSON.parse(text) as unknown;
    } catch (err) {
      const why = err instanceof RangeError ? 'it is nested too deeply' : (err as Error).message;
      return done(new InvalidRequestError(`Request body is not valid JSON: ${why}`), undefined);
    }
    if (tooDeep(value, MAX_JSON_DEPTH)) return done(new InvalidRequestError(`Request body is nested more than ${MAX_JSON_DEPTH} levels deep`), undefined);
    done(null, value);
  });

  // Every request: an id on all its log lines, and an access line at its end.
  const inRequest = trackRequests(app, log, opts.accessLog ?? true);

  app.setErrorHandler(async (err, request, reply) => {
    const e = toHttpError(err);
    if (e.status === 413) await discardBody(request.raw, bodyLimit * DISCARD_LIMIT_FACTOR);
    if (e.status >= 500) {
      const cause = err instanceof Error && err.cause instanceof Error ? ` (cause: ${err.cause.message})` : '';
      // Errors outside our hierarchy are bugs: their stack is what someone will need.
      const stack = !(err instanceof PagewiseError) && err instanceof Error && err.stack ? `\n${err.stack}` : '';
      inRequest(request, () => log('error', `${request.method} ${request.url.split('?')[0]}: ${e.body.error.message}${cause}${stack}`));
    }
    if (e.status === 401 && !reply.hasHeader('www-authenticate')) void reply.header('www-authenticate', 'Bearer');
    return reply.code(e.status).send(e.body);
  });
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]!;
    return reply.code(404).send(errorBody(`Not found: ${request.method} ${path.length > 200 ? `${path.slice(0, 200)}…` : path}`, 'not_found_error'));
  });

  const dashboard = opts.dashboard ?? true;
  if (opts.apiKey) {
    const digest = createHash('sha256').update(opts.apiKey, 'utf8').digest();
    app.addHook('onRequest', async (request, reply) => {
      const path = request.url.split('?')[0]!;
      if (OPEN_PATHS.has(path)) return;
      // Browsers send the dashboard's key as Basic credentials (src/server/dashboard/index.ts).
      if (dashboard && isDashboardPath(path)) {
        if (keyMatches(basicAsBearer(request.headers.authorization), digest)) return;
        void reply.header('www-authenticate', DASHBOARD_CHALLENGE);
      }
      if (!keyMatches(request.headers.authorization, digest)) throw new AuthenticationError('Invalid or missing API key: send it as "Authorization: Bearer <key>"', { code: 'invalid_api_key' });
    });
  }

  /** Count in-flight generation handlers, for graceful shutdown. */
  const tracked =
    (handler: (sc: ServeContext, request: FastifyRequest, reply: FastifyReply) => Promise<unknown>) =>
    async (request: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
      sc.inFlight++;
      try {
        return await handler(sc, request, reply);
      } finally {
        sc.inFlight--;
      }
    };

  app.post('/v1/completions', tracked(completionsHandler));
  app.post('/v1/chat/completions', tracked(chatHandler));

  const modelCard = (name: string): Record<string, unknown> => ({
    id: name,
    object: 'model',
    created: startedAt,
    owned_by: 'pagewise',
    root: info.modelDir,
    parent: null,
    max_model_len: info.maxModelLen,
    // Token ids a prompt may hold are 0..vocab_size-1 (`bench serve` draws its random prompts there).
    vocab_size: info.model.vocabSize,
  });
  const startedAt = Math.floor(Date.now() / 1000);
  app.get('/v1/models', async () => ({ object: 'list', data: names.map(modelCard) }));
  app.get<{ Params: { model: string } }>('/v1/models/*', async (request) => {
    const name = (request.params as Record<string, string>)['*'] ?? '';
    if (!names.includes(name)) throw new NotFoundError(`The model \`${name.slice(0, 200)}\` does not exist.`, { param: 'model', code: 'model_not_found' });
    return modelCard(name);
  });

  app.post('/tokenize', async (request) => {
    const r = await tokens.run(parseTokenize(request.body, reqCtx));
    warnIgnored(sc, 'POST /tokenize', r.ignoredFields);
    const body: Record<string, unknown> = { count: r.tokenIds.length, max_model_len: info.maxModelLen, tokens: r.tokenIds };
    if (r.returnTokenStrs) body['token_strs'] = r.tokenIds.map((id) => engine.tokenizer.idToToken(id) ?? '');
    return body;
  });
  app.post('/detokenize', async (request) => {
    const r = parseDetokenizeRequest(request.body, reqCtx);
    warnIgnored(sc, 'POST /detokenize', r.ignoredFields);
    return { prompt: engine.tokenizer.decode(r.tokenIds) };
  });

  app.get('/health', async (_request, reply) => {
    if (sc.closing) throw new ServiceUnavailableError('The server is shutting down');
    if (!engine.healthy) throw new ServiceUnavailableError('The engine is not running');
    return reply.code(200).send();
  });
  app.get('/version', async () => ({ version: VERSION }));
  app.get('/metrics', async (_request, reply) => {
    const text = await metrics.text();
    return reply.header('content-type', metrics.contentType).send(text);
  });

  if (dashboard) registerDashboard(app, engine, names[0]!);

  app.addHook('onClose', async () => {
    for (const off of unsubscribe) off();
    await tokens.close();
  });

  return app as unknown as PagewiseServer;
}

/**
 * SIGTERM/SIGINT: stop accepting connections, refuse new work with 503, give in-flight requests up
 * to `graceMs` to finish (then abort them — their responses end with finish_reason "abort"), stop
 * the engine and close the server.
 */
export async function shutdownGracefully(app: PagewiseServer, engine: AsyncEngine, graceMs: number): Promise<void> {
  app.pagewise.beginShutdown();
  // No new connections; requests on open keep-alive connections get 503 from the routes.
  if (app.server.listening) app.server.close();
  await engine.shutdown(graceMs);
  // Let the handlers write the last chunks of aborted streams.
  const until = Date.now() + 2000;
  while (app.pagewise.inFlight > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  await app.close();
}
