/**
 * Every error the server answers with goes through `toHttpError`: it maps our one error hierarchy
 * (src/errors.ts) and the errors fastify raises itself (bad JSON, body too large, ...) to a status
 * and OpenAI's JSON error shape, so there is exactly one place that decides what a client sees.
 */
import { PagewiseError, PayloadTooLargeError } from '../errors.js';

/** OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`. */
export interface ErrorBody {
  error: {
    message: string;
    type: string;
    param: string | null;
    code: string | null;
  };
}

export interface HttpError {
  status: number;
  body: ErrorBody;
}

export function errorBody(message: string, type: string, param: string | null = null, code: string | null = null): ErrorBody {
  return { error: { message, type, param, code } };
}

const TYPE_BY_STATUS: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  404: 'not_found_error',
  405: 'invalid_request_error',
  415: 'invalid_request_error',
  429: 'rate_limit_error',
  503: 'service_unavailable_error',
};

/** The code fastify's errors carry (FST_ERR_...), or ''. */
function fastifyCode(err: unknown): string {
  const code = err instanceof Error ? (err as Error & { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : '';
}

/** fastify's own request errors that our hierarchy has a class for. */
function fromFastify(code: string): PagewiseError | null {
  // Raised by fastify's bodyLimit, from Content-Length or while reading the body.
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new PayloadTooLargeError('Request body is too large');
  return null;
}

/** Messages for fastify's other request errors that say what to do rather than what fastify is. */
function fastifyMessage(code: string, fallback: string): string {
  switch (code) {
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return 'Request body is empty; expected a JSON object';
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return 'Request body size did not match Content-Length';
    case 'FST_ERR_BAD_URL':
      return 'Malformed request URL';
    default:
      return fallback;
  }
}

/**
 * Map anything thrown while serving a request to a status and body. Unknown (non-Pagewise,
 * non-HTTP) errors become 500 with their message: they are bugs, and the log has the stack.
 */
export function toHttpError(err: unknown): HttpError {
  const code = err instanceof PagewiseError ? '' : fastifyCode(err);
  err = fromFastify(code) ?? err;
  if (err instanceof PagewiseError) {
    return { status: err.status, body: errorBody(err.message, err.type, err.param, err.code) };
  }
  if (err instanceof Error) {
    const e = err as Error & { statusCode?: unknown };
    const status = typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 600 ? e.statusCode : 500;
    if (status < 500) {
      return { status, body: errorBody(fastifyMessage(code, e.message), TYPE_BY_STATUS[status] ?? 'invalid_request_error') };
    }
    return { status, body: errorBody(`Internal server error: ${e.message}`, 'internal_error') };
  }
  return { status: 500, body: errorBody(`Internal server error: ${String(err)}`, 'internal_error') };
}
