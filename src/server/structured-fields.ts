/**
 * The structured-output fields of a request, read into one GrammarSpec: OpenAI's `response_format`
 * (`json_object`, `json_schema`), vLLM's `structured_outputs` object (`json`, `regex`, `choice`,
 * `grammar`, `json_object`; `disable_any_whitespace` for compact JSON) and its legacy `guided_json` / `guided_regex` / `guided_choice` /
 * `guided_grammar`. At most one of them may constrain a request. The spec's shape is checked here
 * (sync, while parsing); whether it compiles is checked by `checkGrammar` before the request is
 * submitted, so a bad schema, regex or grammar is a 400 that never reaches the engine.
 */
import { GrammarError } from '../errors.js';
import type { SamplingParams } from '../sampling/params.js';
import { sharedGrammarChecker } from '../structured/checker.js';
import { normalizeSpec, type GrammarSpec } from '../structured/spec.js';
import { describe, fail, get, type Body } from './request-fields.js';

/** A request's constraint and the field it came from (the `param` of its errors). */
export interface StructuredField {
  spec: GrammarSpec;
  param: string;
}

function isObject(v: unknown): v is Body {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A JSON schema given as an object, a boolean or JSON text. */
function schemaValue(param: string, v: unknown): unknown {
  if (typeof v === 'string' || typeof v === 'boolean' || isObject(v)) return v;
  fail(param, `${param} must be a JSON schema (an object, or its JSON text), got ${describe(v)}`);
}

function stringValue(param: string, v: unknown): string {
  if (typeof v !== 'string') fail(param, `${param} must be a string, got ${describe(v)}`);
  return v;
}

function choiceValue(param: string, v: unknown): string[] {
  if (!Array.isArray(v)) fail(param, `${param} must be a list of strings, got ${describe(v)}`);
  return v.map((c) => stringValue(param, c));
}

function responseFormat(v: unknown): GrammarSpec | null {
  const param = 'response_format';
  if (!isObject(v)) fail(param, `response_format must be an object, got ${describe(v)}`);
  switch (v['type']) {
    case 'text':
      return null;
    case 'json_object':
      return { kind: 'json_object' };
    case 'json_schema': {
      const js = v['json_schema'];
      if (!isObject(js)) fail(param, 'response_format json_schema needs a "json_schema" object ({"name", "schema", "strict"})');
      if (js['schema'] === undefined || js['schema'] === null) fail(param, 'response_format json_schema needs json_schema.schema');
      const strict = js['strict'];
      if (strict !== undefined && strict !== null && typeof strict !== 'boolean') fail(param, `response_format json_schema.strict must be a boolean, got ${describe(strict)}`);
      return { kind: 'json_schema', schema: schemaValue(param, js['schema']), strict: typeof strict === 'boolean' ? strict : undefined };
    }
    default:
      fail(param, `response_format type must be "text", "json_object" or "json_schema", got ${describe(v['type'] ?? null)}`);
  }
}

/** vLLM's StructuredOutputsParams: exactly one of its constraint fields. */
const SO_KINDS = ['json', 'regex', 'choice', 'grammar', 'json_object'] as const;
/** Its options we accept at their defaults only (we do not implement them otherwise). */
const SO_DEFAULT_OFF = ['disable_fallback', 'disable_additional_properties'];

function structuredOutputs(v: unknown): GrammarSpec {
  const param = 'structured_outputs';
  if (!isObject(v)) fail(param, `structured_outputs must be an object, got ${describe(v)}`);
  for (const [k, val] of Object.entries(v)) {
    if (val === null || val === undefined) continue;
    if ((SO_KINDS as readonly string[]).includes(k)) continue;
    if (SO_DEFAULT_OFF.includes(k) && val === false) continue;
    if (k === 'backend' && typeof val === 'string') continue;
    if (k === 'disable_any_whitespace' && typeof val === 'boolean') continue;
    fail(param, `structured_outputs.${k} is not supported by this server`);
  }
  const given = SO_KINDS.filter((k) => v[k] !== undefined && v[k] !== null && v[k] !== false);
  if (given.length !== 1) fail(param, `structured_outputs must set exactly one of ${SO_KINDS.join(', ')}${given.length > 1 ? `; got ${given.join(', ')}` : ''}`);
  const k = given[0]!;
  const val = v[k];
  const at = `${param}.${k}`;
  // No whitespace between JSON tokens (JSON kinds only; regexes and grammars say their own).
  const compact = v['disable_any_whitespace'] === true;
  switch (k) {
    case 'json':
      return { kind: 'json_schema', schema: schemaValue(at, val), compact };
    case 'regex':
      return { kind: 'regex', pattern: stringValue(at, val) };
    case 'choice':
      return { kind: 'choice', choices: choiceValue(at, val) };
    case 'grammar':
      return { kind: 'grammar', ebnf: stringValue(at, val) };
    case 'json_object':
      if (val !== true) fail(at, `${at} must be true, got ${describe(val)}`);
      return { kind: 'json_object', compact };
  }
}

const LEGACY: ReadonlyArray<readonly [string, (v: unknown) => GrammarSpec]> = [
  ['guided_json', (v) => ({ kind: 'json_schema', schema: schemaValue('guided_json', v) })],
  ['guided_regex', (v) => ({ kind: 'regex', pattern: stringValue('guided_regex', v) })],
  ['guided_choice', (v) => ({ kind: 'choice', choices: choiceValue('guided_choice', v) })],
  ['guided_grammar', (v) => ({ kind: 'grammar', ebnf: stringValue('guided_grammar', v) })],
];

/** A GrammarError as being about `param`; other errors unchanged. */
function aboutParam(err: unknown, param: string): unknown {
  return err instanceof GrammarError && err.param !== param ? new GrammarError(err.message, { param, cause: err }) : err;
}

function withParam<T>(param: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw aboutParam(err, param);
  }
}

/**
 * The request's structured-output constraint, if any, with its shape validated (GrammarError or
 * InvalidRequestError naming the field). More than one constraining field is an error.
 */
export function parseStructuredField(body: Body): StructuredField | null {
  const found: StructuredField[] = [];
  const rf = get(body, 'response_format');
  if (rf !== undefined) {
    const spec = responseFormat(rf);
    if (spec) found.push({ spec, param: 'response_format' });
  }
  const so = get(body, 'structured_outputs');
  if (so !== undefined) found.push({ spec: structuredOutputs(so), param: 'structured_outputs' });
  for (const [k, read] of LEGACY) {
    const v = get(body, k);
    if (v !== undefined) found.push({ spec: read(v), param: k });
  }
  const backend = get(body, 'guided_decoding_backend');
  if (backend !== undefined && typeof backend !== 'string') fail('guided_decoding_backend', `guided_decoding_backend must be a string, got ${describe(backend)}`);
  const ws = get(body, 'guided_whitespace_pattern');
  if (ws !== undefined && ws !== '') fail('guided_whitespace_pattern', 'guided_whitespace_pattern is not supported by this server');
  if (found.length > 1) fail(found[1]!.param, `give only one structured-output constraint; got ${found.map((f) => f.param).join(' and ')}`);
  const f = found[0];
  if (!f) return null;
  withParam(f.param, () => normalizeSpec(f.spec));
  return f;
}

/**
 * Check that every prompt's constraint compiles (GrammarError, 400, naming the field), before
 * anything is submitted to the engine.
 */
export async function checkGrammar(params: ReadonlyArray<Pick<SamplingParams, 'structuredOutputs'>>, param: string | null): Promise<void> {
  const seen = new Set<GrammarSpec>();
  for (const p of params) {
    const spec = p.structuredOutputs;
    if (spec === null || seen.has(spec)) continue;
    seen.add(spec);
    try {
      await sharedGrammarChecker().check(spec);
    } catch (err) {
      throw param === null ? err : aboutParam(err, param);
    }
  }
}
