/**
 * The server's log: levels, text or JSON lines, and the request each line belongs to.
 *
 * Every HTTP request gets an id (the client's `x-request-id` when it sends a usable one, else a
 * random one; echoed in the response's `x-request-id`). The id travels with the request's async
 * work (AsyncLocalStorage), so any line logged while handling it carries it, whichever module
 * logs, and one access line per request ends it: status, tokens, time to first token, total time.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFormat = 'text' | 'json';
/** Structured facts of a line (JSON keys; `key=value` pairs in text). */
export type LogFields = Record<string, string | number | boolean | null | undefined>;
export type ServerLog = (level: LogLevel, message: string, fields?: LogFields) => void;

export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];
export const LOG_FORMATS: readonly LogFormat[] = ['text', 'json'];

export interface LoggerOptions {
  format?: LogFormat;
  /** Lines below this level are dropped (default info). */
  level?: LogLevel;
  /** Where lines go (default stderr). */
  write?: (line: string) => void;
}

function textValue(v: string | number | boolean | null): string {
  return typeof v === 'string' && /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
}

/** A ServerLog that writes one line per call: `pagewise: warn: [id] message k=v` or a JSON object. */
export function createLogger(opts: LoggerOptions = {}): ServerLog {
  const format = opts.format ?? 'text';
  const min = LOG_LEVELS.indexOf(opts.level ?? 'info');
  const write = opts.write ?? ((line: string) => void process.stderr.write(line));
  return (level, message, fields = {}) => {
    if (LOG_LEVELS.indexOf(level) < min) return;
    const defined = Object.entries(fields).filter((e): e is [string, string | number | boolean | null] => e[1] !== undefined);
    if (format === 'json') {
      write(`${JSON.stringify({ time: new Date().toISOString(), level, msg: message, ...Object.fromEntries(defined) })}\n`);
      return;
    }
    const id = defined.find(([k]) => k === 'request_id');
    const rest = defined.filter(([k]) => k !== 'request_id').map(([k, v]) => ` ${k}=${textValue(v)}`);
    write(`pagewise: ${level === 'info' ? '' : `${level}: `}${id ? `[${String(id[1])}] ` : ''}${message}${rest.join('')}\n`);
  };
}

/** What the access line of one HTTP request reports; generation fills in the tokens. */
export interface RequestRecord {
  readonly id: string;
  /** performance.now() when the request arrived. */
  readonly start: number;
  /** The response id of a generation (cmpl-…, chatcmpl-…). */
  responseId?: string;
  promptTokens?: number;
  completionTokens?: number;
  /** performance.now() when the first generated token was out. */
  firstTokenAt?: number;
}

const current = new AsyncLocalStorage<RequestRecord>();

/** The record of the request whose work is running now, if any. */
export function currentRequest(): RequestRecord | undefined {
  return current.getStore();
}

/** Run `fn` (and the async work it starts) as part of request `record`. */
export function runInRequest<T>(record: RequestRecord, fn: () => T): T {
  return current.run(record, fn);
}

/** The client's x-request-id when it is a sane token (1-128 printable ASCII, no spaces), else a new id. */
export function requestIdFrom(header: string | string[] | undefined): string {
  if (typeof header === 'string' && /^[\x21-\x7e]{1,128}$/.test(header)) return header;
  return randomBytes(8).toString('hex');
}

/** A ServerLog that adds the current request's id to every line, then hands it to `log`. */
export function withRequestIds(log: ServerLog): ServerLog {
  return (level, message, fields) => {
    const r = current.getStore();
    log(level, message, r ? { request_id: r.id, ...fields } : fields);
  };
}
