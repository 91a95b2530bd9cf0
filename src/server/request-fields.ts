/**
 * Readers of a JSON request body's fields. Bodies come from JSON, so every field is read as
 * `unknown` and checked for its type; every problem is an InvalidRequestError naming the field
 * (OpenAI's `param`).
 */
import { checkTokenId } from '../shared/request-limits.js';
import { InvalidRequestError, NotFoundError } from '../errors.js';

export type Body = Record<string, unknown>;

export function fail(param: string, message: string): never {
  throw new InvalidRequestError(message, { param });
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'string') return v.length > 40 ? `a string` : `"${v}"`;
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

/** The body as an object, or a clear error. */
export function asBody(raw: unknown): Body {
  if (raw === undefined) throw new InvalidRequestError('Request body is empty; expected a JSON object');
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new InvalidRequestError(`Request body must be a JSON object, got ${describe(raw)}`);
  }
  return raw as Body;
}

/** A field's value, with JSON null treated as absent (as pydantic's Optional fields do). */
export function get(body: Body, key: string): unknown {
  if (!Object.hasOwn(body, key)) return undefined;
  const v = body[key];
  return v === null ? undefined : v;
}

export function optBool(body: Body, key: string, dflt: boolean): boolean {
  const v = get(body, key);
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') fail(key, `${key} must be a boolean, got ${describe(v)}`);
  return v;
}

export function optString(body: Body, key: string): string | undefined {
  const v = get(body, key);
  if (v === undefined) return undefined;
  if (typeof v !== 'string') fail(key, `${key} must be a string, got ${describe(v)}`);
  return v;
}

export function optInt(body: Body, key: string, min: number, max: number): number | undefined {
  const v = get(body, key);
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) fail(key, `${key} must be an integer, got ${describe(v)}`);
  if (v < min || v > max) fail(key, `${key} must be in [${min}, ${max}], got ${v}`);
  return v;
}

/** Lone UTF-16 surrogates: JSON can carry them ("\ud800"), text cannot. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function checkText(param: string, s: string): string {
  if (LONE_SURROGATE.test(s)) fail(param, `${param} contains invalid Unicode (an unpaired surrogate)`);
  return s;
}

export function tokenIds(param: string, v: unknown, vocabSize: number, allowEmpty = false): number[] {
  if (!Array.isArray(v)) fail(param, `${param} must be a list of token ids, got ${describe(v)}`);
  if (v.length === 0 && !allowEmpty) fail(param, `${param} must not be empty`);
  for (const x of v) {
    if (typeof x !== 'number' || !Number.isSafeInteger(x)) fail(param, `${param} must contain only integer token ids, got ${describe(x)}`);
    checkTokenId(param, x, vocabSize);
  }
  return v as number[];
}

/** Report fields this endpoint does not know. */
export function unknownFields(body: Body, known: ReadonlySet<string>): string[] {
  return Object.keys(body).filter((k) => !known.has(k));
}

/** Resolve the `model` field against the served names (absent → the default model). */
export function resolveModelName(body: Body, ctx: { servedModelNames: readonly string[] }): string {
  const v = get(body, 'model');
  const dflt = ctx.servedModelNames[0]!;
  if (v === undefined) return dflt;
  if (typeof v !== 'string') fail('model', `model must be a string, got ${describe(v)}`);
  if (!ctx.servedModelNames.includes(v)) {
    throw new NotFoundError(`The model \`${v.length > 200 ? `${v.slice(0, 200)}…` : v}\` does not exist.`, { param: 'model', code: 'model_not_found' });
  }
  return v;
}
