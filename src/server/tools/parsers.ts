/**
 * Tool-call parsers (`--tool-call-parser`): how a model family writes tool calls in its output,
 * read back into OpenAI's `tool_calls`, and written forward as a grammar when a call is required.
 *
 *   hermes       <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>   (Hermes, Qwen 2.5+)
 *   llama3_json  {"name": "f", "parameters": {...}}; {...}                       (Llama 3.1+ JSON)
 *   mistral      [TOOL_CALLS][{"name": "f", "arguments": {...}}, ...]            (Mistral)
 *   pythonic     [f(a=1, b="x"), g()]                                            (Llama 3.2+/4 pythonic)
 *
 * `parse(text, final)` reads output that may still be growing: the content so far (holding back an
 * end that may be the start of a call marker, until it is known), and the calls seen, the last
 * possibly incomplete. Arguments grow as a prefix of their final text, so a stream can send them
 * in fragments; `final` parses the complete output, where a malformed call turns the whole output
 * into content (the model did not write a valid call).
 */
import type { GrammarSpec } from '../../structured/spec.js';
import { scanCallObject, skipWs } from './json-scan.js';
import { readPythonCalls } from './python-calls.js';

/** A function the client offers (`tools[i].function`). */
export interface ToolDef {
  name: string;
  description?: string;
  /** JSON schema of the arguments object. */
  parameters: Record<string, unknown>;
}

/** A call as parsed so far. */
export interface ParsedCall {
  /** Null until the name is complete. */
  name: string | null;
  /** The arguments' JSON text so far (a prefix of the final text), '' before any. */
  arguments: string;
  done: boolean;
}

export interface ToolParse {
  /** Text that is content (not part of a call). Grows monotonically while the output grows. */
  content: string;
  calls: ParsedCall[];
}

export interface ToolCallParser {
  readonly name: string;
  parse(text: string, final: boolean): ToolParse;
  /** The grammar of a valid call to one of `tools` (several when `parallel`): `tool_choice` required / named. */
  constraint(tools: readonly ToolDef[], parallel: boolean): GrammarSpec;
  /** A fresh tool call id in the form this model family's templates accept. */
  newCallId(): string;
}

const q = (s: string): string => JSON.stringify(s);

function randomId(len: number, alphabet: string): string {
  let s = '';
  for (let i = 0; i < len; i++) s += alphabet[Math.floor(Math.random() * alphabet.length)];
  return s;
}
const ALNUM = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const openAiId = (): string => `call_${randomId(24, ALNUM)}`;

/** The length of the longest suffix of `text` that is a proper prefix of `marker` (held back from content). */
function partialMarker(text: string, marker: string): number {
  for (let n = Math.min(marker.length - 1, text.length); n > 0; n--) if (marker.startsWith(text.slice(text.length - n))) return n;
  return 0;
}

/** Content when no call was found: everything, or (streaming) all but a possible marker start. */
function contentOnly(text: string, final: boolean, marker: string): ToolParse {
  return { content: final ? text : text.slice(0, text.length - partialMarker(text, marker)), calls: [] };
}

/**
 * One `{"name", <argKey>}` object at `at`: the call so far, and where it ended (-1 if it has not).
 * Arguments stream only when they are an object or a list (their prefix is stable); a string
 * (JSON-encoded arguments) or bare value is given once complete.
 */
function callAt(text: string, at: number, argKeys: readonly string[]): { call: ParsedCall; end: number; invalid: boolean } {
  const s = scanCallObject(text, at, argKeys);
  let args = '';
  if (s.argsStart >= 0) {
    const first = text[s.argsStart];
    if (s.argsEnd >= 0) {
      const raw = text.slice(s.argsStart, s.argsEnd);
      args = first === '"' ? (JSON.parse(raw) as string) : raw;
    } else if (first === '{' || first === '[') args = text.slice(s.argsStart);
  }
  const done = s.end >= 0;
  // A complete call without arguments has empty ones.
  if (done && s.argsStart < 0) args = '{}';
  return { call: { name: s.name, arguments: args, done }, end: s.end, invalid: s.invalid || (done && s.name === null) };
}

/** Whether every call parsed and its arguments are a JSON object. */
function wellFormed(calls: readonly ParsedCall[]): boolean {
  return calls.every((c) => {
    if (!c.done || c.name === null) return false;
    try {
      const v: unknown = JSON.parse(c.arguments);
      return typeof v === 'object' && v !== null && !Array.isArray(v);
    } catch {
      return false;
    }
  });
}

/** A final parse that found calls keeps them only when all are well formed; else all is content. */
function finalize(text: string, p: ToolParse, final: boolean): ToolParse {
  if (!final || p.calls.length === 0) return p;
  return wellFormed(p.calls) ? p : { content: text, calls: [] };
}

function tagsWithSeparator(tags: unknown[], separator: string, parallel: boolean): Record<string, unknown> {
  return { type: 'tags_with_separator', tags, separator, at_least_one: true, stop_after_first: !parallel };
}

/**
 * A list of tags between fixed strings. As a tag, not a sequence: the xgrammar build we load fails
 * (an internal error) on tags_with_separator inside a sequence, and compiles it as a tag's content.
 */
function bracketed(begin: string, content: Record<string, unknown>, end: string): Record<string, unknown> {
  return { type: 'tag', begin, content, end };
}

// ---------------------------------------------------------------------------------------------

const HERMES_OPEN = '<tool_call>';
const HERMES_CLOSE = '</tool_call>';

const hermes: ToolCallParser = {
  name: 'hermes',
  parse(text, final) {
    const first = text.indexOf(HERMES_OPEN);
    if (first < 0) return contentOnly(text, final, HERMES_OPEN);
    const calls: ParsedCall[] = [];
    let at = first;
    let invalid = false;
    while (at >= 0) {
      const body = skipWs(text, at + HERMES_OPEN.length);
      if (body >= text.length) break;
      const r = callAt(text, body, ['arguments', 'parameters']);
      calls.push(r.call);
      if (r.invalid) invalid = true;
      if (r.end < 0 || r.invalid) break;
      const close = text.indexOf(HERMES_CLOSE, r.end);
      if (close < 0) break;
      at = text.indexOf(HERMES_OPEN, close + HERMES_CLOSE.length);
    }
    const p = { content: text.slice(0, first), calls };
    if (final && invalid) return { content: text, calls: [] };
    return finalize(text, p, final);
  },
  constraint(tools, parallel) {
    const tags = tools.map((t) => ({
      type: 'tag',
      begin: `${HERMES_OPEN}\n{"name": ${q(t.name)}, "arguments": `,
      content: { type: 'json_schema', json_schema: t.parameters },
      end: `}\n${HERMES_CLOSE}`,
    }));
    return { kind: 'structural_tag', format: tagsWithSeparator(tags, '\n', parallel) };
  },
  newCallId: openAiId,
};

// ---------------------------------------------------------------------------------------------

const PYTHON_TAG = '<|python_tag|>';

const llama3Json: ToolCallParser = {
  name: 'llama3_json',
  parse(text, final) {
    let start = skipWs(text, 0);
    if (text.startsWith(PYTHON_TAG, start)) start = skipWs(text, start + PYTHON_TAG.length);
    else if (start < text.length && PYTHON_TAG.startsWith(text.slice(start)) && !final) return { content: '', calls: [] };
    // Until the first character is known, nothing can be said; a text not starting with `{` is content.
    if (start >= text.length) return final ? { content: text, calls: [] } : { content: '', calls: [] };
    if (text[start] !== '{') return { content: text, calls: [] };
    const calls: ParsedCall[] = [];
    let at = start;
    for (;;) {
      const r = callAt(text, at, ['parameters', 'arguments']);
      calls.push(r.call);
      if (r.invalid) return final ? { content: text, calls: [] } : { content: '', calls };
      if (r.end < 0) break;
      const next = skipWs(text, r.end);
      if (text[next] !== ';') break;
      at = skipWs(text, next + 1);
      if (at >= text.length || text[at] !== '{') break;
    }
    return finalize(text, { content: '', calls }, final);
  },
  constraint(tools, parallel) {
    const tags = tools.map((t) => ({
      type: 'tag',
      begin: `{"name": ${q(t.name)}, "parameters": `,
      content: { type: 'json_schema', json_schema: t.parameters },
      end: '}',
    }));
    return { kind: 'structural_tag', format: tagsWithSeparator(tags, '; ', parallel) };
  },
  newCallId: openAiId,
};

// ---------------------------------------------------------------------------------------------

const MISTRAL_MARK = '[TOOL_CALLS]';
/** A call list with its marker gone: `[TOOL_CALLS]` is a special token in Mistral's vocabularies, dropped from text by skip_special_tokens. */
const BARE_LIST = /^\[\s*\{\s*"name"/;
/** What may still become BARE_LIST. */
const BARE_LIST_PREFIX = /^\[\s*(\{\s*("(n(a(m(e)?)?)?)?)?)?$/;

const mistral: ToolCallParser = {
  name: 'mistral',
  parse(text, final) {
    let mark = text.indexOf(MISTRAL_MARK);
    let listAt: number;
    if (mark >= 0) listAt = skipWs(text, mark + MISTRAL_MARK.length);
    else {
      const start = skipWs(text, 0);
      const rest = text.slice(start);
      if (!final && BARE_LIST_PREFIX.test(rest)) return { content: '', calls: [] };
      if (!BARE_LIST.test(rest)) return contentOnly(text, final, MISTRAL_MARK);
      mark = 0;
      listAt = start;
    }
    const content = text.slice(0, mark);
    const calls: ParsedCall[] = [];
    let at = listAt;
    if (at < text.length && text[at] !== '[') return final ? { content: text, calls: [] } : { content, calls };
    at = skipWs(text, at + 1);
    while (at < text.length) {
      const r = callAt(text, at, ['arguments', 'parameters']);
      calls.push(r.call);
      if (r.invalid) return final ? { content: text, calls: [] } : { content, calls };
      if (r.end < 0) break;
      const next = skipWs(text, r.end);
      if (text[next] !== ',') break;
      at = skipWs(text, next + 1);
    }
    return finalize(text, { content, calls }, final);
  },
  constraint(tools, parallel) {
    const tags = tools.map((t) => ({
      type: 'tag',
      begin: `{"name": ${q(t.name)}, "arguments": `,
      content: { type: 'json_schema', json_schema: t.parameters },
      end: '}',
    }));
    return {
      kind: 'structural_tag',
      format: bracketed(`${MISTRAL_MARK}[`, tagsWithSeparator(tags, ', ', parallel), ']'),
    };
  },
  // Mistral's templates require ids of nine letters and digits.
  newCallId: () => randomId(9, ALNUM),
};

// ---------------------------------------------------------------------------------------------

/** A property schema that Python writes differently from JSON. */
function pythonValue(schema: unknown, defs: Record<string, unknown>): Record<string, unknown> {
  const s = (typeof schema === 'object' && schema !== null ? schema : {}) as Record<string, unknown>;
  if (s['type'] === 'boolean') return { type: 'or', elements: [{ type: 'const_string', value: 'True' }, { type: 'const_string', value: 'False' }] };
  if (s['type'] === 'null') return { type: 'const_string', value: 'None' };
  return { type: 'json_schema', json_schema: { ...defs, ...s } };
}

const pythonic: ToolCallParser = {
  name: 'pythonic',
  parse(text, final) {
    const start = skipWs(text, 0);
    if (start >= text.length) return final ? { content: text, calls: [] } : { content: '', calls: [] };
    if (text[start] !== '[') return { content: text, calls: [] };
    const r = readPythonCalls(text, start);
    // Not a call list (e.g. "[1] ..."): content. While it may still become one, hold it.
    if (r.invalid) return { content: text, calls: [] };
    const calls: ParsedCall[] = r.calls.map((c) => ({ name: c.name, arguments: JSON.stringify(c.args), done: true }));
    if (r.pendingName !== null) calls.push({ name: r.pendingName, arguments: '', done: false });
    if (final && (r.end < 0 || calls.length === 0)) return { content: text, calls: [] };
    return { content: '', calls };
  },
  constraint(tools, parallel) {
    const tags = tools.map((t) => {
      const params = t.parameters;
      const props = (params['properties'] ?? {}) as Record<string, unknown>;
      const required = Array.isArray(params['required']) ? (params['required'] as string[]).filter((k) => Object.hasOwn(props, k)) : [];
      // Definitions travel with each property, so its $refs still resolve.
      const defs: Record<string, unknown> = {};
      for (const k of ['$defs', 'definitions']) if (params[k] !== undefined) defs[k] = params[k];
      if (required.length === 0) return { type: 'tag', begin: t.name, content: { type: 'const_string', value: '(' }, end: ')' };
      const elements: unknown[] = [];
      required.forEach((k, i) => {
        if (i > 0) elements.push({ type: 'const_string', value: `, ${k}=` });
        elements.push(pythonValue(props[k], defs));
      });
      return { type: 'tag', begin: `${t.name}(${required[0]}=`, content: { type: 'sequence', elements }, end: ')' };
    });
    return {
      kind: 'structural_tag',
      format: bracketed('[', tagsWithSeparator(tags, ', ', parallel), ']'),
    };
  },
  newCallId: openAiId,
};

export const TOOL_CALL_PARSERS: Readonly<Record<string, ToolCallParser>> = {
  hermes,
  llama3_json: llama3Json,
  mistral,
  pythonic,
};

/** The format forced calls are written in when the server has no --tool-call-parser. */
export const DEFAULT_FORCED_FORMAT = llama3Json;

export function toolCallParser(name: string): ToolCallParser | undefined {
  return Object.hasOwn(TOOL_CALL_PARSERS, name) ? TOOL_CALL_PARSERS[name] : undefined;
}
