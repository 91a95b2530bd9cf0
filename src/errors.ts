/**
 * One error hierarchy for every way a request or the engine can fail. Each class carries the HTTP
 * status and the OpenAI error `type` the server answers with, so the server maps errors in one place.
 */
export class PagewiseError extends Error {
  /** HTTP status the server answers with. */
  readonly status: number = 500;
  /** OpenAI error `type`. */
  readonly type: string = 'internal_error';
  /** The request field the error is about, when there is one (OpenAI's `param`). */
  readonly param: string | null;
  /** OpenAI's `code` (a short machine-readable reason), when there is one. */
  readonly code: string | null;

  constructor(message: string, opts: { param?: string | null; code?: string | null; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.param = opts.param ?? null;
    this.code = opts.code ?? null;
  }
}

/** The request is malformed or names invalid values (400). */
export class InvalidRequestError extends PagewiseError {
  override readonly status: number = 400;
  override readonly type: string = 'invalid_request_error';
}

/**
 * A response format / structured-output constraint that cannot be compiled: an invalid or
 * unsupported JSON schema, a malformed regex or EBNF grammar, an empty choice list (400).
 */
export class GrammarError extends InvalidRequestError {}

/** The prompt plus the requested tokens cannot fit in the model's context or the KV pool (400). */
export class ContextLengthError extends InvalidRequestError {}

/** Missing or wrong API key (401). */
export class AuthenticationError extends PagewiseError {
  override readonly status = 401;
  override readonly type = 'authentication_error';
}

/** Unknown model or route (404). */
export class NotFoundError extends PagewiseError {
  override readonly status = 404;
  override readonly type = 'not_found_error';
}

/** Request body over the size limit (413). */
export class PayloadTooLargeError extends PagewiseError {
  override readonly status = 413;
  override readonly type = 'invalid_request_error';
}

/** The server cannot take more work now: waiting queue full, shutting down, engine dead (503). */
export class ServiceUnavailableError extends PagewiseError {
  override readonly status = 503;
  override readonly type = 'service_unavailable_error';
}

/** Loading a model failed: missing file, unsupported architecture, bad tensor (not a request error). */
export class ModelLoadError extends PagewiseError {}

/** The engine core failed while running a step (500). */
export class EngineDeadError extends PagewiseError {}

/** Serializable form used to pass errors between the engine worker and the main thread. */
export interface SerializedError {
  name: string;
  message: string;
  param: string | null;
  code: string | null;
}

const byName: Record<string, new (message: string, opts?: { param?: string | null; code?: string | null }) => PagewiseError> = {
  PagewiseError,
  InvalidRequestError,
  GrammarError,
  ContextLengthError,
  AuthenticationError,
  NotFoundError,
  PayloadTooLargeError,
  ServiceUnavailableError,
  ModelLoadError,
  EngineDeadError,
};

export function serializeError(err: unknown): SerializedError {
  if (err instanceof PagewiseError) return { name: err.name, message: err.message, param: err.param, code: err.code };
  const message = err instanceof Error ? err.message : String(err);
  return { name: 'PagewiseError', message, param: null, code: null };
}

export function deserializeError(e: SerializedError): PagewiseError {
  const Ctor = byName[e.name] ?? PagewiseError;
  return new Ctor(e.message, { param: e.param, code: e.code });
}
