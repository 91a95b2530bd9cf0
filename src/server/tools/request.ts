/**
 * The tool fields of a chat request: `tools`, `tool_choice` (`none`, `auto`, `required`, or a named
 * function), `parallel_tool_calls`, and the tool calls and results inside `messages`.
 *
 * As vLLM: with tools and no tool_choice, the choice is `auto` when the server runs with
 * --enable-auto-tool-choice, else `none`; `auto` needs that flag and a --tool-call-parser. `none`
 * renders the tools into the prompt and parses nothing. `required` and a named function constrain
 * generation (structured outputs) to valid calls in the parser's own format — or, without a
 * parser, to JSON objects `{"name", "parameters"}` — so the calls always parse.
 */
import type { GrammarSpec } from '../../structured/spec.js';
import { describe, fail, get, type Body } from '../request-fields.js';
import { DEFAULT_FORCED_FORMAT, type ToolCallParser, type ToolDef } from './parsers.js';

/** The server's tool-calling configuration (serve flags). */
export interface ToolConfig {
  /** --tool-call-parser (null: none). */
  parser: ToolCallParser | null;
  /** --enable-auto-tool-choice */
  autoToolChoice: boolean;
}

export type ToolChoice = 'none' | 'auto' | 'required' | { name: string };

export interface ToolRequest {
  tools: ToolDef[];
  choice: ToolChoice;
  parallel: boolean;
  /** Reads the output into tool calls; null when calls are not parsed (tool_choice none). */
  parser: ToolCallParser | null;
  /** The grammar of the forced call(s) (required, named), else null. */
  constraint: GrammarSpec | null;
}

function isObject(v: unknown): v is Body {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** OpenAI's rule for function names. */
const NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** Validate `tools`: the list as sent (what the chat template renders) and the functions. */
export function parseToolsList(v: unknown): { raw: Body[]; defs: ToolDef[] } {
  if (!Array.isArray(v)) fail('tools', `tools must be a list of tool objects, got ${describe(v)}`);
  const defs: ToolDef[] = [];
  v.forEach((t: unknown, i) => {
    const at = `tools[${i}]`;
    if (!isObject(t)) fail('tools', `${at} must be an object, got ${describe(t)}`);
    if (t['type'] !== 'function') fail('tools', `${at}.type must be "function", got ${describe(t['type'] ?? null)}`);
    const f = t['function'];
    if (!isObject(f)) fail('tools', `${at}.function must be an object, got ${describe(f ?? null)}`);
    const name = f['name'];
    if (typeof name !== 'string' || !NAME.test(name)) fail('tools', `${at}.function.name must be 1 to 64 letters, digits, underscores or dashes, got ${describe(name ?? null)}`);
    if (defs.some((d) => d.name === name)) fail('tools', `${at}.function.name ${JSON.stringify(name)} is given twice`);
    const desc = f['description'];
    if (desc !== undefined && desc !== null && typeof desc !== 'string') fail('tools', `${at}.function.description must be a string, got ${describe(desc)}`);
    const params = f['parameters'];
    if (params !== undefined && params !== null && !isObject(params)) fail('tools', `${at}.function.parameters must be a JSON schema object, got ${describe(params)}`);
    defs.push({ name, description: typeof desc === 'string' ? desc : undefined, parameters: isObject(params) ? params : { type: 'object', properties: {} } });
  });
  return { raw: v as Body[], defs };
}

function parseChoice(v: unknown, defs: readonly ToolDef[]): ToolChoice | undefined {
  if (v === undefined) return undefined;
  if (v === 'none' || v === 'auto' || v === 'required') return v;
  if (isObject(v) && v['type'] === 'function' && isObject(v['function']) && typeof v['function']['name'] === 'string') {
    const name = v['function']['name'];
    if (!defs.some((d) => d.name === name)) fail('tool_choice', `tool_choice names function ${JSON.stringify(name)}, which is not in tools`);
    return { name };
  }
  fail('tool_choice', `tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}, got ${describe(v)}`);
}

/** The request's tool settings, or null when it offers no tools. */
export function parseToolRequest(body: Body, cfg: ToolConfig): ToolRequest | null {
  const parallelRaw = get(body, 'parallel_tool_calls');
  if (parallelRaw !== undefined && typeof parallelRaw !== 'boolean') fail('parallel_tool_calls', `parallel_tool_calls must be a boolean, got ${describe(parallelRaw)}`);
  const parallel = parallelRaw ?? true;
  const toolsRaw = get(body, 'tools');
  const defs = toolsRaw === undefined ? [] : parseToolsList(toolsRaw).defs;
  const choice = parseChoice(get(body, 'tool_choice'), defs);
  if (defs.length === 0) {
    if (choice !== undefined && choice !== 'none') fail('tool_choice', 'tool_choice needs tools');
    return null;
  }
  const effective = choice ?? (cfg.autoToolChoice ? 'auto' : 'none');
  if (effective === 'none') return { tools: defs, choice: 'none', parallel, parser: null, constraint: null };
  if (effective === 'auto') {
    if (!cfg.autoToolChoice || cfg.parser === null) fail('tool_choice', '"auto" tool choice requires the server to run with --enable-auto-tool-choice and --tool-call-parser');
    return { tools: defs, choice: 'auto', parallel, parser: cfg.parser, constraint: null };
  }
  const parser = cfg.parser ?? DEFAULT_FORCED_FORMAT;
  const offered = effective === 'required' ? defs : defs.filter((d) => d.name === effective.name);
  return { tools: defs, choice: effective, parallel, parser, constraint: parser.constraint(offered, parallel && effective === 'required') };
}

/**
 * An assistant message's `tool_calls`, checked, with each call's arguments (a JSON string on the
 * wire) parsed into an object, as chat templates expect to render them.
 */
export function parseMessageToolCalls(v: unknown, at: string): Body[] {
  if (!Array.isArray(v)) fail('messages', `${at}.tool_calls must be a list, got ${describe(v)}`);
  return v.map((c: unknown, j) => {
    const cat = `${at}.tool_calls[${j}]`;
    if (!isObject(c)) fail('messages', `${cat} must be an object, got ${describe(c)}`);
    const f = c['function'];
    if (!isObject(f) || typeof f['name'] !== 'string') fail('messages', `${cat}.function must be an object with a name`);
    const id = c['id'];
    if (id !== undefined && id !== null && typeof id !== 'string') fail('messages', `${cat}.id must be a string, got ${describe(id)}`);
    let args: unknown = f['arguments'] ?? {};
    if (typeof args === 'string') {
      try {
        args = JSON.parse(args === '' ? '{}' : args);
      } catch {
        fail('messages', `${cat}.function.arguments must be a JSON object (as text), got ${describe(f['arguments'])}`);
      }
    }
    if (!isObject(args)) fail('messages', `${cat}.function.arguments must be a JSON object, got ${describe(args)}`);
    return { ...c, id, type: 'function', function: { name: f['name'], arguments: args } };
  });
}
