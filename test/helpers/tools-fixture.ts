/**
 * A tools-capable model for tests: llama-tiny (random weights) in a temp dir with a chat template of
 * our own that renders the offered tools, an assistant's tool calls in a given parser's format, and
 * tool results — the shape of the Hermes / Llama 3 / Mistral / pythonic templates.
 */
import { copyFileSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixturePath } from './fixtures.js';

export type ToolFormat = 'hermes' | 'llama3_json' | 'mistral' | 'pythonic';

/** How each format writes the calls of `m.tool_calls` (arguments are objects for the template). */
const CALLS: Record<ToolFormat, string> = {
  hermes:
    '{%- for c in m.tool_calls %}<tool_call>\n{"name": {{ c.function.name | tojson }}, "arguments": {{ c.function.arguments | tojson }}}\n</tool_call>{% endfor %}',
  llama3_json:
    '{%- for c in m.tool_calls %}{% if not loop.first %}; {% endif %}{"name": {{ c.function.name | tojson }}, "parameters": {{ c.function.arguments | tojson }}}{% endfor %}',
  mistral:
    '[TOOL_CALLS][{%- for c in m.tool_calls %}{% if not loop.first %}, {% endif %}{"name": {{ c.function.name | tojson }}, "arguments": {{ c.function.arguments | tojson }}, "id": {{ c.id | tojson }}}{% endfor %}]',
  pythonic:
    '[{%- for c in m.tool_calls %}{% if not loop.first %}, {% endif %}{{ c.function.name }}({% for k, v in c.function.arguments | items %}{% if not loop.first %}, {% endif %}{{ k }}={{ v | tojson }}{% endfor %}){% endfor %}]',
};

export function toolTemplate(format: ToolFormat): string {
  return (
    // Tool names only: llama-tiny's context is 512 tokens of a 512-token vocabulary.
    '{%- if tools %}<|system|>\nYou can call: {% for t in tools %}{{ t.function.name }}{% if not loop.last %}, {% endif %}{% endfor %}<|end|>\n{% endif %}' +
    '{%- for m in messages %}' +
    "{%- if m.role == 'assistant' and m.tool_calls %}<|assistant|>\n" +
    CALLS[format] +
    '<|end|>\n' +
    "{%- elif m.role == 'tool' %}<|tool|>\n[{{ m.tool_call_id }}] {{ m.content }}<|end|>\n" +
    '{%- else %}<|{{ m.role }}|>\n{{ m.content }}<|end|>\n{% endif %}' +
    '{%- endfor %}' +
    '{%- if add_generation_prompt %}<|assistant|>\n{% endif %}'
  );
}

/** llama-tiny with the tool template of `format`, in a temp dir. */
export function toolsModel(format: ToolFormat): string {
  const src = fixturePath('llama-tiny');
  const dir = mkdtempSync(join(tmpdir(), `pagewise-tools-${format}-`));
  for (const f of readdirSync(src)) if (statSync(join(src, f)).isFile()) copyFileSync(join(src, f), join(dir, f));
  writeFileSync(join(dir, 'chat_template.jinja'), toolTemplate(format));
  return dir;
}
