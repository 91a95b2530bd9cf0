/**
 * What every route handler shares: the engine, the request-parsing context, metrics, the log, and
 * whether the server is still taking work.
 */
import { randomUUID } from 'node:crypto';
import type { AsyncEngine } from '../engine/async-engine.js';
import { ServiceUnavailableError } from '../errors.js';
import type { ServerMetrics } from './metrics.js';
import type { RequestContext } from './request-context.js';
import type { ServerLog } from './log.js';
import type { TokenizerPool } from '../tokenizer/pool.js';

export type { LogLevel, ServerLog } from './log.js';

export interface ServeContext {
  engine: AsyncEngine;
  req: RequestContext;
  /** Runs request parsing with long tokenizer work off the event loop. */
  tokens: TokenizerPool;
  metrics: ServerMetrics;
  log: ServerLog;
  /** Set when shutdown begins: new work is refused with 503 and /health reports 503. */
  closing: boolean;
  /** HTTP handlers still producing a response (graceful shutdown waits for them). */
  inFlight: number;
}

/** Refuse new generation work while shutting down or after the engine died. */
export function checkAccepting(sc: ServeContext): void {
  if (sc.closing) throw new ServiceUnavailableError('The server is shutting down');
}

/** A response id: `<prefix>-<client request_id>` or `<prefix>-<random hex>` (vLLM's form). */
export function responseId(prefix: string, clientId: string | null): string {
  return `${prefix}-${clientId ?? randomUUID().replaceAll('-', '')}`;
}

export function warnIgnored(sc: ServeContext, route: string, fields: readonly string[]): void {
  if (fields.length === 0) return;
  const shown = fields.slice(0, 20).map((f) => JSON.stringify(f.length > 64 ? `${f.slice(0, 64)}…` : f));
  sc.log('warn', `${route}: ignoring unknown request fields ${shown.join(', ')}${fields.length > 20 ? ` and ${fields.length - 20} more` : ''}`);
}

