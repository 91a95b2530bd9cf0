/**
 * What a request constrains its output to, in one normalized form whatever API field it came from
 * (`response_format`, vLLM's `structured_outputs` / `guided_*`), and how each kind becomes an
 * xgrammar grammar.
 */
import { GrammarError } from '../errors.js';
import { assertAsciiClasses } from './char-classes.js';
import { fixSchema } from './schema-fixes.js';
import type { NativeCompiledGrammar, NativeCompiler, XGrammarBinding } from './xgrammar.js';

export type GrammarSpec =
  /** `response_format: {type: "json_object"}`: any JSON object. */
  | { kind: 'json_object'; compact?: boolean }
  /**
   * A JSON schema (object or its JSON text). `strict` (default true, as vLLM) forbids properties
   * and items the schema does not list unless it allows them explicitly; false follows plain JSON
   * Schema semantics (extra properties allowed unless `additionalProperties: false`).
   */
  | { kind: 'json_schema'; schema: unknown; strict?: boolean; compact?: boolean }
  /** The whole output matches this regex. */
  | { kind: 'regex'; pattern: string }
  /** The whole output is exactly one of these strings. */
  | { kind: 'choice'; choices: readonly string[] }
  /** An EBNF grammar in xgrammar's (GBNF-like) syntax, root rule `root`. */
  | { kind: 'grammar'; ebnf: string }
  /**
   * An xgrammar structural-tag format (sequences of constant strings, JSON schemas, tags, ...):
   * what tool calls are constrained with (src/server/tools). Not a client-facing field.
   */
  | { kind: 'structural_tag'; format: Record<string, unknown> };

export interface GrammarFormatOptions {
  /** Allow any whitespace between JSON tokens (default true); false: xgrammar's compact layout. */
  anyWhitespace?: boolean;
  /** Cap on consecutive whitespace characters between JSON tokens (default: no cap). */
  maxWhitespace?: number;
}

/** A spec with its text fixed: the cache key, and what the native side receives. */
export interface NormalizedSpec {
  kind: GrammarSpec['kind'];
  /** Schema JSON, regex, choices as JSON, EBNF text, or '' for json_object. */
  text: string;
  strict: boolean;
  /**
   * JSON kinds: no whitespace between JSON tokens (vLLM's `disable_any_whitespace`), whatever the
   * compiler's GrammarFormatOptions say. Deterministic decoding can otherwise fall into whitespace
   * that the grammar allows forever.
   */
  compact: boolean;
  key: string;
}

/** What `param` a GrammarError names. */
const PARAM = 'response_format';

export function normalizeSpec(spec: GrammarSpec): NormalizedSpec {
  let text: string;
  let strict = true;
  const compact = (spec.kind === 'json_object' || spec.kind === 'json_schema') && spec.compact === true;
  switch (spec.kind) {
    case 'json_object':
      text = '';
      break;
    case 'json_schema': {
      let schema = spec.schema;
      if (typeof schema === 'string') {
        try {
          schema = JSON.parse(schema);
        } catch (err) {
          throw new GrammarError(`JSON schema is not valid JSON: ${(err as Error).message}`, { param: PARAM });
        }
      }
      if (typeof schema !== 'boolean' && (typeof schema !== 'object' || schema === null || Array.isArray(schema))) {
        throw new GrammarError('JSON schema must be an object or a boolean', { param: PARAM });
      }
      // Around the loaded xgrammar build's bugs; narrows only (see schema-fixes.ts).
      text = JSON.stringify(fixSchema(schema));
      strict = spec.strict ?? true;
      break;
    }
    case 'regex':
      if (typeof spec.pattern !== 'string' || spec.pattern === '') throw new GrammarError('regex must be a non-empty string', { param: PARAM });
      assertAsciiClasses(spec.pattern, `regex ${JSON.stringify(spec.pattern)}`);
      text = spec.pattern;
      break;
    case 'choice':
      if (!Array.isArray(spec.choices) || spec.choices.length === 0 || !spec.choices.every((c) => typeof c === 'string' && c !== '')) {
        throw new GrammarError('choice must be a non-empty list of non-empty strings', { param: PARAM });
      }
      text = JSON.stringify(spec.choices);
      break;
    case 'grammar':
      if (typeof spec.ebnf !== 'string' || spec.ebnf.trim() === '') throw new GrammarError('grammar must be a non-empty EBNF string', { param: PARAM });
      assertAsciiClasses(spec.ebnf, 'EBNF grammar', { ebnf: true });
      text = spec.ebnf;
      break;
    case 'structural_tag':
      if (typeof spec.format !== 'object' || spec.format === null || Array.isArray(spec.format)) throw new GrammarError('structural tag format must be an object', { param: PARAM });
      text = JSON.stringify({ type: 'structural_tag', format: fixFormat(spec.format) });
      break;
    default:
      throw new GrammarError(`unknown structured output kind ${JSON.stringify((spec as { kind: unknown }).kind)}`, { param: PARAM });
  }
  return { kind: spec.kind, text, strict, compact, key: `${spec.kind}\u0000${strict ? 1 : 0}${compact ? 'c' : ''}\u0000${text}` };
}

/**
 * A structural-tag format with the same care as the top-level kinds: every embedded JSON schema
 * gets the schema fixes, every regex and grammar the character-class check.
 */
function fixFormat(format: unknown): unknown {
  if (Array.isArray(format)) return format.map(fixFormat);
  if (typeof format !== 'object' || format === null) return format;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(format)) {
    if (k === 'json_schema') out[k] = fixSchema(v);
    else if (k === 'pattern' && typeof v === 'string') {
      assertAsciiClasses(v, `regex ${JSON.stringify(v)}`);
      out[k] = v;
    } else if (k === 'grammar' && typeof v === 'string') {
      assertAsciiClasses(v, 'EBNF grammar', { ebnf: true });
      out[k] = v;
    } else out[k] = fixFormat(v);
  }
  return out;
}

/** json_object is the schema "any object", so it also rejects top-level arrays and scalars. */
const ANY_OBJECT_SCHEMA = '{"type":"object"}';

/** regex and choice go through xgrammar's structural-tag formats, its only entry for them on the web build. */
function structuralTag(spec: NormalizedSpec): string {
  const format =
    spec.kind === 'regex'
      ? { type: 'regex', pattern: spec.text }
      : { type: 'or', elements: (JSON.parse(spec.text) as string[]).map((value) => ({ type: 'const_string', value })) };
  return JSON.stringify({ type: 'structural_tag', format });
}

/** What the failure is about, for the error message. */
export function describe(spec: NormalizedSpec): string {
  switch (spec.kind) {
    case 'json_object':
      return 'JSON object grammar';
    case 'json_schema':
      return 'JSON schema';
    case 'regex':
      return 'regex';
    case 'choice':
      return 'choice list';
    case 'grammar':
      return 'EBNF grammar';
    case 'structural_tag':
      return 'tool call grammar';
  }
}

/** Compile the spec against the compiler's vocabulary (builds the token-mask cache). */
export function compileSpec(b: XGrammarBinding, compiler: NativeCompiler, spec: NormalizedSpec, fmt: GrammarFormatOptions): NativeCompiledGrammar {
  const anyWs = !spec.compact && (fmt.anyWhitespace ?? true);
  switch (spec.kind) {
    case 'json_object':
      return compiler.CompileJSONSchema(ANY_OBJECT_SCHEMA, anyWs, undefined, undefined, false, fmt.maxWhitespace);
    case 'json_schema':
      return compiler.CompileJSONSchema(spec.text, anyWs, undefined, undefined, spec.strict, fmt.maxWhitespace);
    case 'regex':
    case 'choice':
      return compiler.CompileStructuralTag(structuralTag(spec));
    case 'structural_tag':
      return compiler.CompileStructuralTag(spec.text);
    case 'grammar': {
      const g = b.Grammar.FromEBNF(spec.text, 'root');
      try {
        return compiler.CompileGrammar(g);
      } finally {
        g.delete();
      }
    }
  }
}
