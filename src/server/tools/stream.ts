/**
 * Tool calls in responses: the whole output read at once (`extractToolCalls`, for a non-streamed
 * message) or as it grows (`ToolCallStream`, OpenAI's streamed deltas: a call's id, type and name
 * first, then its arguments in fragments, and never a partial call marker in `content`).
 */
import type { ParsedCall, ToolCallParser } from './parsers.js';

export interface ToolCallOut {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export interface ExtractedToolCalls {
  /** Content besides the calls; null when there are calls and no other text. */
  content: string | null;
  toolCalls: ToolCallOut[];
}

/** `parallel_tool_calls: false` keeps the first call only. */
function keep(calls: readonly ParsedCall[], parallel: boolean): readonly ParsedCall[] {
  return parallel ? calls : calls.slice(0, 1);
}

export function extractToolCalls(parser: ToolCallParser, text: string, parallel: boolean): ExtractedToolCalls {
  const p = parser.parse(text, true);
  const calls = keep(p.calls, parallel);
  if (calls.length === 0) return { content: text, toolCalls: [] };
  return {
    content: p.content.trim() === '' ? null : p.content,
    toolCalls: calls.map((c) => ({ id: parser.newCallId(), type: 'function', function: { name: c.name!, arguments: c.arguments } })),
  };
}

/** What one choice's new snapshot adds: content and tool-call deltas (either may be empty). */
export interface ToolDelta {
  content: string;
  toolCalls: Array<Record<string, unknown>>;
}

export class ToolCallStream {
  private sentContent = 0;
  /** Per call: its id (once its name was sent) and the argument characters sent. */
  private readonly sent: Array<{ id: string; args: number }> = [];

  constructor(
    private readonly parser: ToolCallParser,
    private readonly parallel: boolean,
  ) {}

  /** Whether any call has been streamed. */
  get called(): boolean {
    return this.sent.length > 0;
  }

  /** The deltas for the output text so far; `final` once it is complete. */
  update(text: string, final: boolean): ToolDelta {
    const p = this.parser.parse(text, final);
    const content = p.content.length > this.sentContent ? p.content.slice(this.sentContent) : '';
    this.sentContent = Math.max(this.sentContent, p.content.length);
    const toolCalls: Array<Record<string, unknown>> = [];
    keep(p.calls, this.parallel).forEach((c, index) => {
      if (c.name === null) return;
      let s = this.sent[index];
      if (!s) {
        s = { id: this.parser.newCallId(), args: 0 };
        this.sent[index] = s;
        toolCalls.push({ index, id: s.id, type: 'function', function: { name: c.name, arguments: '' } });
      }
      if (c.arguments.length > s.args) {
        toolCalls.push({ index, function: { arguments: c.arguments.slice(s.args) } });
        s.args = c.arguments.length;
      }
    });
    return { content, toolCalls };
  }
}
