/**
 * Rewrites of a JSON schema around bugs of the xgrammar build we load (@mlc-ai/web-xgrammar 0.1.27),
 * found by the random-walk tests and checked string by string against its matcher. Each rewrite
 * only narrows what the schema allows, so the output still validates against the original schema;
 * the compilation itself stays xgrammar's.
 *
 * The bugs:
 * - integer with a bound on one side only: `minimum: 3` accepts 1 and 2, `minimum: -5` accepts "-"
 *   and rejects -5..-1, `maximum: -3` accepts -2 (two-sided ranges are right). Fix: give the open
 *   side ±(2^53 − 1), and turn exclusive / fractional bounds into inclusive integer ones.
 * - number with bounds: fractional bounds become "any character" where the decimal point belongs
 *   (`minimum: 0.25` accepts "0x25"), and the upper integer part takes any fraction (`maximum: 2`
 *   accepts 2.5). No rewrite keeps fractions, so a bounded number is narrowed to the integers in
 *   its range; a range holding no integer is refused.
 * - string with minLength / maxLength: its characters are `[^"\\\r\n]`, so raw control characters
 *   (invalid in JSON) pass. Fix: express the lengths as a pattern over JSON-safe characters.
 * - string pattern: the regex is applied to the raw JSON text, so `.`, `\s`, `\S`, `\W`, `\D` and
 *   negated classes can emit a quote, a backslash or a control character. Fix: `.` and negated
 *   classes also exclude what JSON escapes, the shorthands become JSON-safe ASCII subsets; a
 *   pattern that needs an escaped character literally (or in a range of a positive class), or a
 *   class with non-ASCII members (char-classes.ts), is refused.
 *
 * The build's negated classes (its own JSON strings included) also let single bytes of invalid
 * UTF-8 through; that is fixed at the token level by the matcher's UTF-8 mask (utf8.ts).
 */
import { GrammarError } from '../errors.js';
import { assertAsciiClasses } from './char-classes.js';

const PARAM = 'response_format';
const MAX_INT = Number.MAX_SAFE_INTEGER;
/** What a JSON string may not hold unescaped, as the inside of a negated xgrammar class. */
const JSON_UNSAFE = '\\x00-\\x1f"\\\\';
/** One character a JSON string may hold unescaped (a negated class of ASCII members is right here). */
const SAFE_CHAR = `[^${JSON_UNSAFE}]`;
/** Keys whose values are data, not subschemas. */
const DATA_KEYS = new Set(['enum', 'const', 'default', 'examples', 'required']);

type Schema = Record<string, unknown>;

function isObject(v: unknown): v is Schema {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A copy of the schema with the rewrites applied. Throws GrammarError for what cannot be fixed. */
export function fixSchema(schema: unknown, path = '#'): unknown {
  if (Array.isArray(schema)) return schema.map((s, i) => fixSchema(s, `${path}/${i}`));
  if (!isObject(schema)) return schema;
  const out: Schema = {};
  for (const [k, v] of Object.entries(schema)) out[k] = DATA_KEYS.has(k) ? v : fixSchema(v, `${path}/${k}`);
  return fixNode(out, path);
}

const BOUND_KEYS = ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'] as const;

function fixNode(node: Schema, path: string): Schema {
  const type = node['type'];
  const hasBounds = BOUND_KEYS.some((k) => node[k] !== undefined);
  if (hasBounds && Array.isArray(type) && type.some((t) => t === 'number' || t === 'integer')) {
    throw new GrammarError(`JSON schema at ${path}: numeric bounds with a list of types are not supported; use anyOf`, { param: PARAM });
  }
  if (hasBounds && (type === 'integer' || type === 'number')) return integerRange(node, path);
  if (type === 'string' || (type === undefined && (node['pattern'] !== undefined || node['minLength'] !== undefined || node['maxLength'] !== undefined))) {
    return fixString(node, path);
  }
  return node;
}

function num(node: Schema, key: string, path: string): number | undefined {
  const v = node[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new GrammarError(`JSON schema at ${path}: ${key} must be a number`, { param: PARAM });
  return v;
}

/** Integer bounds made inclusive and two-sided; a bounded number narrowed to the integers in range. */
function integerRange(node: Schema, path: string): Schema {
  let lo = -MAX_INT;
  let hi = MAX_INT;
  const min = num(node, 'minimum', path);
  const max = num(node, 'maximum', path);
  const xmin = num(node, 'exclusiveMinimum', path);
  const xmax = num(node, 'exclusiveMaximum', path);
  if (min !== undefined) lo = Math.max(lo, Math.ceil(min));
  if (xmin !== undefined) lo = Math.max(lo, Math.floor(xmin) + 1);
  if (max !== undefined) hi = Math.min(hi, Math.floor(max));
  if (xmax !== undefined) hi = Math.min(hi, Math.ceil(xmax) - 1);
  if (lo > hi) {
    const what = node['type'] === 'number' ? 'no integer lies in the range (bounded numbers are generated as integers)' : 'the range is empty';
    throw new GrammarError(`JSON schema at ${path}: ${what}`, { param: PARAM });
  }
  const out: Schema = { ...node, type: 'integer', minimum: lo, maximum: hi };
  delete out['exclusiveMinimum'];
  delete out['exclusiveMaximum'];
  return out;
}

function fixString(node: Schema, path: string): Schema {
  const pattern = node['pattern'];
  const minLength = num(node, 'minLength', path);
  const maxLength = num(node, 'maxLength', path);
  if (pattern !== undefined) {
    if (typeof pattern !== 'string') throw new GrammarError(`JSON schema at ${path}: pattern must be a string`, { param: PARAM });
    if (minLength !== undefined || maxLength !== undefined) {
      throw new GrammarError(`JSON schema at ${path}: pattern together with minLength/maxLength is not supported; put the length in the pattern`, { param: PARAM });
    }
    return { ...node, pattern: jsonSafePattern(pattern, path) };
  }
  if (minLength === undefined && maxLength === undefined) return node;
  const lo = Math.max(0, Math.ceil(minLength ?? 0));
  const hi = maxLength === undefined ? '' : String(Math.floor(maxLength));
  if (maxLength !== undefined && lo > Math.floor(maxLength)) throw new GrammarError(`JSON schema at ${path}: minLength ${minLength} is greater than maxLength ${maxLength}`, { param: PARAM });
  const out: Schema = { ...node, pattern: `^${SAFE_CHAR}{${lo},${hi}}$` };
  delete out['minLength'];
  delete out['maxLength'];
  return out;
}

/** Escapes (after the backslash) that denote a character JSON must escape. */
const UNSAFE_ESCAPES = new Set(['n', 'r', 't', 'f', 'v', '0', '"', '\\', 'a', 'e']);
/**
 * Shorthand classes, replaced (outside a bracket class) by JSON-safe subsets: \s by a space, the
 * negated ones by their printable ASCII members (classes with non-ASCII members are unreliable in
 * this build, see char-classes.ts). Narrowings: every string they allow still matches.
 */
const SHORTHAND: Record<string, string> = {
  s: '[ ]',
  S: '[!#-\\[\\]-~]',
  W: '[ !#-/:-@\\[\\]^`{-~]',
  D: '[ !#-/:-\\[\\]-~]',
};

function hexEscapeValue(p: string, i: number): number | null {
  // \xHH or \uHHHH at p[i] === 'x' | 'u'
  const m = p[i] === 'x' ? /^x([0-9a-fA-F]{2})/.exec(p.slice(i)) : /^u([0-9a-fA-F]{4})/.exec(p.slice(i));
  return m ? parseInt(m[1]!, 16) : null;
}

/**
 * The pattern with every construct that could match a quote, a backslash or a control character
 * intersected with the JSON-safe characters (a lexical rewrite: groups, quantifiers and
 * alternation pass through untouched).
 */
export function jsonSafePattern(p: string, path = '#'): string {
  const refuse = (what: string): never => {
    throw new GrammarError(`JSON schema at ${path}: pattern ${JSON.stringify(p)} ${what}; such characters cannot be constrained inside a JSON string yet`, { param: PARAM });
  };
  assertAsciiClasses(p, `JSON schema at ${path}: pattern ${JSON.stringify(p)}`);
  let out = '';
  let inClass = false;
  let negated = false;
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c.charCodeAt(0) < 0x20 || c === '"') refuse('contains a quote or a control character');
    if (c === '\\') {
      const e = p[i + 1];
      if (e === undefined) refuse('ends with a lone backslash');
      if (UNSAFE_ESCAPES.has(e!)) refuse(`matches a character JSON escapes (\\${e})`);
      if (e === 'x' || e === 'u') {
        const v = hexEscapeValue(p, i + 1);
        if (v !== null && (v < 0x20 || v === 0x22 || v === 0x5c)) refuse(`matches a character JSON escapes (\\${p.slice(i + 1, i + (e === 'x' ? 4 : 6))})`);
      }
      if (SHORTHAND[e!] !== undefined) {
        if (inClass) {
          if (e === 's') out += ' ';
          else refuse(`uses \\${e} inside a character class`);
        } else out += SHORTHAND[e!];
        i++;
        continue;
      }
      out += c + e;
      i++;
      continue;
    }
    if (inClass) {
      // A range in a class (`!-~`) may span the quote, the backslash or control characters.
      const prev = p[i - 1];
      const next = p[i + 1];
      if (c === '-' && prev !== undefined && prev !== '[' && prev !== '^' && next !== undefined && next !== ']' && next !== '\\' && p[i - 2] !== '\\') {
        const lo = prev.charCodeAt(0);
        const hi = next.charCodeAt(0);
        if ((lo <= 0x22 && hi >= 0x22) || (lo <= 0x5c && hi >= 0x5c) || lo < 0x20) refuse(`has a range ${prev}-${next} that includes a quote, a backslash or a control character`);
      }
      if (c === ']' && !(out.endsWith('[') || out.endsWith('[^'))) {
        if (negated) out += JSON_UNSAFE;
        inClass = false;
      }
      out += c;
      continue;
    }
    if (c === '[') {
      inClass = true;
      negated = p[i + 1] === '^';
      out += negated ? '[^' : '[';
      if (negated) i++;
      continue;
    }
    out += c === '.' ? SAFE_CHAR : c;
  }
  if (inClass) refuse('has an unclosed character class');
  return out;
}
