/**
 * Tool calling: the four output parsers (hermes, llama3_json, mistral, pythonic) on texts and on
 * every split of them into stream deltas, and full round trips through the server with the openai
 * client (a call forced by tool_choice, the tool's result, the answer), streamed and not, on a
 * random-weight model whose chat template renders tools, calls and results.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Ajv } from 'ajv';
import OpenAI from 'openai';
import { TOOL_CALL_PARSERS, type ToolCallParser } from '../src/server/tools/parsers.js';
import { extractToolCalls, ToolCallStream } from '../src/server/tools/stream.js';
import { readPythonCalls } from '../src/server/tools/python-calls.js';
import { parseToolRequest } from '../src/server/tools/request.js';
import { InvalidRequestError } from '../src/errors.js';
import { serveCommand } from '../src/cli/serve.js';
import { UsageError } from '../src/cli/args.js';
import { postJson, startServer, type TestServer } from './helpers/server.js';
import { toolsModel, type ToolFormat } from './helpers/tools-fixture.js';

const FORMATS: ToolFormat[] = ['hermes', 'llama3_json', 'mistral', 'pythonic'];

/** Two calls with awkward arguments (nesting, escapes, non-ASCII), written in each format. */
const CALLS = [
  { name: 'get_weather', args: { city: 'São Paulo', days: 3, opts: { unit: 'c', tags: ['a"b', 'x\\y'] } } },
  { name: 'add', args: { a: 1, b: -2.5, ok: true, none: null } },
];

function written(format: ToolFormat): { text: string; content: string | null } {
  const j = (v: unknown): string => JSON.stringify(v);
  switch (format) {
    case 'hermes':
      return { text: `Let me check.\n${CALLS.map((c) => `<tool_call>\n{"name": ${j(c.name)}, "arguments": ${j(c.args)}}\n</tool_call>`).join('\n')}`, content: 'Let me check.\n' };
    case 'llama3_json':
      return { text: `  ${CALLS.map((c) => `{"name": ${j(c.name)}, "parameters": ${j(c.args)}}`).join('; ')}`, content: null };
    case 'mistral':
      return { text: `Sure[TOOL_CALLS][${CALLS.map((c) => `{"name": ${j(c.name)}, "arguments": ${j(c.args)}}`).join(', ')}]`, content: 'Sure' };
    case 'pythonic': {
      const py = (v: unknown): string => (v === true ? 'True' : v === false ? 'False' : v === null ? 'None' : typeof v === 'object' && !Array.isArray(v) ? `{${Object.entries(v as object).map(([k, x]) => `${j(k)}: ${py(x)}`).join(', ')}}` : Array.isArray(v) ? `[${v.map(py).join(', ')}]` : j(v));
      return { text: `[${CALLS.map((c) => `${c.name}(${Object.entries(c.args).map(([k, v]) => `${k}=${py(v)}`).join(', ')})`).join(', ')}]`, content: null };
    }
  }
}

/** Feed `text` to a stream in the given pieces; returns the accumulated content and calls. */
function streamed(parser: ToolCallParser, pieces: string[]): { content: string; calls: Array<{ id: string; name: string; args: string }>; order: string[] } {
  const s = new ToolCallStream(parser, true);
  let text = '';
  let content = '';
  const calls: Array<{ id: string; name: string; args: string }> = [];
  const order: string[] = [];
  pieces.forEach((p, i) => {
    text += p;
    const u = s.update(text, i === pieces.length - 1);
    content += u.content;
    for (const d of u.toolCalls as Array<{ index: number; id?: string; function: { name?: string; arguments: string } }>) {
      if (d.id !== undefined) {
        assert.equal(d.index, calls.length, 'a new call gets the next index');
        assert.equal(typeof d.function.name, 'string', 'the first delta of a call names it');
        calls.push({ id: d.id, name: d.function.name!, args: d.function.arguments });
        order.push(`name:${d.index}`);
      } else {
        assert.ok(calls[d.index], 'arguments come after the name');
        assert.equal(d.function.name, undefined);
        calls[d.index]!.args += d.function.arguments;
        order.push(`args:${d.index}`);
      }
    }
  });
  return { content, calls, order };
}

describe('tool-call parsers', () => {
  for (const format of FORMATS) {
    test(`${format}: calls and content, whole and streamed in every split`, () => {
      const parser = TOOL_CALL_PARSERS[format]!;
      const { text, content } = written(format);
      const whole = extractToolCalls(parser, text, true);
      assert.equal(whole.content, content);
      assert.deepEqual(
        whole.toolCalls.map((c) => ({ name: c.function.name, args: JSON.parse(c.function.arguments) as unknown })),
        CALLS.map((c) => ({ name: c.name, args: c.args })),
      );
      if (format === 'mistral') for (const c of whole.toolCalls) assert.match(c.id, /^[A-Za-z0-9]{9}$/);
      // One character at a time, and two random splits: the same calls; content never holds a marker piece.
      const splits = [[...text], [text.slice(0, 7), text.slice(7, 30), text.slice(30)], [text]];
      for (const pieces of splits) {
        const st = streamed(parser, pieces);
        assert.equal(st.content, content ?? '', `content streamed in ${pieces.length} pieces`);
        assert.deepEqual(
          st.calls.map((c) => ({ name: c.name, args: c.args })),
          whole.toolCalls.map((c) => ({ name: c.function.name, args: c.function.arguments })),
        );
      }
      // parallel_tool_calls false keeps the first call.
      assert.equal(extractToolCalls(parser, text, false).toolCalls.length, 1);
    });
  }

  test('text without calls is content; a malformed call turns the output into content', () => {
    for (const format of FORMATS) {
      const parser = TOOL_CALL_PARSERS[format]!;
      for (const text of ['Hello there, no calls [1] {x}.', '']) {
        const r = extractToolCalls(parser, text, true);
        assert.deepEqual(r, { content: text, toolCalls: [] }, `${format}: ${text}`);
        assert.equal(streamed(parser, [...text]).content, text, `${format} streamed: ${text}`);
      }
    }
    const broken: Record<ToolFormat, string> = {
      hermes: '<tool_call>\n{"name": "f", "arguments": {"a": }\n</tool_call>',
      llama3_json: '{"name": "f", "parameters": [1, }',
      mistral: '[TOOL_CALLS][{"name": "f", "arguments": 5}]',
      pythonic: '[f(a=1, b=)]',
    };
    for (const format of FORMATS) assert.deepEqual(extractToolCalls(TOOL_CALL_PARSERS[format]!, broken[format], true).toolCalls, [], format);
  });

  test('a partial marker is held back from streamed content until it is known', () => {
    const p = TOOL_CALL_PARSERS['hermes']!;
    assert.equal(p.parse('Hi <tool', false).content, 'Hi ');
    assert.equal(p.parse('Hi <tool', true).content, 'Hi <tool');
    assert.equal(p.parse('Hi <tab>', false).content, 'Hi <tab>');
    assert.equal(TOOL_CALL_PARSERS['mistral']!.parse('x [TOOL_', false).content, 'x ');
  });

  test('mistral: a call list whose [TOOL_CALLS] special token was dropped from the text still parses', () => {
    const m = TOOL_CALL_PARSERS['mistral']!;
    const r = extractToolCalls(m, ' [{"name": "f", "arguments": {"a": 1}}]', true);
    assert.deepEqual(r.toolCalls.map((c) => [c.function.name, c.function.arguments]), [['f', '{"a": 1}']]);
    assert.equal(m.parse('[{"na', false).content, '');
    assert.equal(m.parse('[1, 2]', false).content, '[1, 2]');
  });

  test('python literals: quotes, escapes, nesting, JSON literals; incomplete text is not invalid', () => {
    const r = readPythonCalls(`[f(a='it\\'s', b=(1, 2), c={'k': [True, None, false]}, d=-1.5e3)]`, 0);
    assert.equal(r.invalid, false);
    assert.deepEqual(r.calls, [{ name: 'f', args: { a: "it's", b: [1, 2], c: { k: [true, null, false] }, d: -1500 } }]);
    const partial = readPythonCalls('[f(a=1), g(b="x', 0);
    assert.deepEqual([partial.calls.length, partial.pendingName, partial.invalid, partial.end], [1, 'g', false, -1]);
  });
});

describe('tool request fields', () => {
  test('serve flags: --tool-call-parser names a parser; --enable-auto-tool-choice needs one', async () => {
    await assert.rejects(serveCommand(['--tool-call-parser', 'bogus']), (e: unknown) => e instanceof UsageError && /hermes, llama3_json, mistral, pythonic/.test(e.message));
    await assert.rejects(serveCommand(['--enable-auto-tool-choice']), (e: unknown) => e instanceof UsageError && /needs --tool-call-parser/.test(e.message));
  });

  const tools = [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { a: { type: 'integer' } }, required: ['a'] } } }];
  const hermes = TOOL_CALL_PARSERS['hermes']!;
  const refuses = (body: Record<string, unknown>, cfg: Parameters<typeof parseToolRequest>[1], param: string, message: RegExp): void => {
    assert.throws(() => parseToolRequest(body, cfg), (e: unknown) => e instanceof InvalidRequestError && e.param === param && message.test(e.message), JSON.stringify(body));
  };

  test('tool_choice defaults and rules (as vLLM)', () => {
    const off = { parser: null, autoToolChoice: false };
    const on = { parser: hermes, autoToolChoice: true };
    assert.equal(parseToolRequest({}, on), null);
    assert.equal(parseToolRequest({ tools }, off)!.choice, 'none');
    assert.equal(parseToolRequest({ tools }, off)!.parser, null);
    assert.equal(parseToolRequest({ tools }, on)!.choice, 'auto');
    assert.equal(parseToolRequest({ tools }, on)!.parser, hermes);
    assert.equal(parseToolRequest({ tools }, on)!.constraint, null);
    const req = parseToolRequest({ tools, tool_choice: 'required', parallel_tool_calls: false }, off)!;
    assert.equal(req.parser, TOOL_CALL_PARSERS['llama3_json'], 'forced calls without a parser use the JSON format');
    assert.equal(req.constraint?.kind, 'structural_tag');
    assert.equal(req.parallel, false);
    const named = parseToolRequest({ tools, tool_choice: { type: 'function', function: { name: 'f' } } }, on)!;
    assert.deepEqual(named.choice, { name: 'f' });
    assert.equal(named.constraint?.kind, 'structural_tag');
    refuses({ tools, tool_choice: 'auto' }, off, 'tool_choice', /--enable-auto-tool-choice/);
    refuses({ tool_choice: 'required' }, on, 'tool_choice', /needs tools/);
    refuses({ tools, tool_choice: { type: 'function', function: { name: 'g' } } }, on, 'tool_choice', /not in tools/);
    refuses({ tools, tool_choice: 'sometimes' }, on, 'tool_choice', /must be/);
    refuses({ tools: [{ type: 'function', function: { name: 'a b' } }] }, on, 'tools', /name/);
    refuses({ tools: [tools[0], tools[0]] }, on, 'tools', /twice/);
    refuses({ tools, parallel_tool_calls: 'no' }, on, 'parallel_tool_calls', /boolean/);
  });
});

const TOOLS = [
  {
    type: 'function' as const,
    function: {
      name: 'get_weather',
      description: 'The weather in a city',
      parameters: {
        type: 'object',
        properties: { city: { enum: ['Paris', 'Tokyo', 'Lima'] }, days: { type: 'integer', minimum: 1, maximum: 7 }, metric: { type: 'boolean' } },
        required: ['city', 'days', 'metric'],
        additionalProperties: false,
      },
    },
  },
  {
    type: 'function' as const,
    function: {
      name: 'add',
      parameters: { type: 'object', properties: { a: { type: 'integer', minimum: 0, maximum: 99 }, b: { type: 'integer', minimum: 0, maximum: 99 } }, required: ['a', 'b'], additionalProperties: false },
    },
  },
];

const ajv = new Ajv({ strict: false });
const validators = new Map(TOOLS.map((t) => [t.function.name, ajv.compile(t.function.parameters)]));

function checkCall(c: { id: string; type?: string; function: { name: string; arguments: string } }, format: ToolFormat): void {
  const validate = validators.get(c.function.name);
  assert.ok(validate, `unknown tool ${c.function.name}`);
  const args: unknown = JSON.parse(c.function.arguments);
  assert.ok(validate(args), `${c.function.arguments}: ${ajv.errorsText(validate.errors)}`);
  assert.ok(c.id.length > 0);
  if (format === 'mistral') assert.match(c.id, /^[A-Za-z0-9]{9}$/);
}

/** llama-tiny's EOS is id 2. */
const EOS_BIAS = { '2': 4 };

const MARKERS: Record<ToolFormat, string> = { hermes: '<tool_call>', llama3_json: '"parameters"', mistral: '[TOOL_CALLS]', pythonic: 'get_weather(' };

for (const format of FORMATS) {
  describe(`tool round trip through the server: --tool-call-parser ${format}`, () => {
    let s: TestServer;
    let client: OpenAI;
    const model = 'tools';
    const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Weather in Lima, and 2 + 3?' }];

    before(async () => {
      s = await startServer({ model: toolsModel(format) }, { servedModelName: model, tools: { parser: TOOL_CALL_PARSERS[format]!, autoToolChoice: true } });
      client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    });
    after(async () => {
      await s?.close();
    });

    test('call (tool_choice required), streamed and not, then the tool result and the answer', async () => {
      // A bias on EOS (allowed only where the calls can end) keeps a random model from chaining calls
      // to the length limit; in the list formats a chain ends at "]", not at EOS, so one call there.
      const list = format === 'mistral' || format === 'pythonic';
      const body = { model, messages, tools: TOOLS, tool_choice: 'required' as const, parallel_tool_calls: !list, seed: 11, max_tokens: 300, logit_bias: EOS_BIAS };
      const r = await client.chat.completions.create(body);
      const choice = r.choices[0]!;
      assert.equal(choice.finish_reason, 'tool_calls', JSON.stringify(choice.message));
      const calls = choice.message.tool_calls ?? [];
      assert.ok(calls.length >= 1);
      for (const c of calls) {
        assert.equal(c.type, 'function');
        checkCall(c as OpenAI.ChatCompletionMessageFunctionToolCall, format);
      }
      assert.equal(choice.message.content, null);

      // Streamed with the same seed: the same calls, as deltas (name first, then arguments).
      const acc: Array<{ id: string; name: string; args: string }> = [];
      let finish: string | null = null;
      let content = '';
      for await (const chunk of await client.chat.completions.create({ ...body, stream: true })) {
        for (const c of chunk.choices) {
          content += c.delta.content ?? '';
          finish = c.finish_reason ?? finish;
          for (const d of c.delta.tool_calls ?? []) {
            if (d.id) acc[d.index] = { id: d.id, name: d.function!.name!, args: d.function?.arguments ?? '' };
            else acc[d.index]!.args += d.function?.arguments ?? '';
          }
        }
      }
      assert.equal(finish, 'tool_calls');
      assert.equal(content, '');
      assert.deepEqual(
        acc.map((c) => [c.name, c.args]),
        calls.map((c) => [(c as OpenAI.ChatCompletionMessageFunctionToolCall).function.name, (c as OpenAI.ChatCompletionMessageFunctionToolCall).function.arguments]),
      );

      // The tool results go back; the conversation renders the calls in the model's format.
      const followUp: OpenAI.ChatCompletionMessageParam[] = [
        ...messages,
        { role: 'assistant', content: null, tool_calls: calls },
        ...calls.map((c, i): OpenAI.ChatCompletionMessageParam => ({ role: 'tool', tool_call_id: c.id, content: `result ${i}` })),
      ];
      const tok = (await postJson(s.url, '/tokenize', { model, messages: followUp, tools: TOOLS })).json() as { tokens: number[] };
      const rendered = ((await postJson(s.url, '/detokenize', { model, tokens: tok.tokens })).json() as { prompt: string }).prompt;
      assert.ok(rendered.includes(MARKERS[format]), rendered);
      assert.ok(rendered.includes(`[${calls[0]!.id}] result 0`), rendered);
      const answer = await client.chat.completions.create({ model, messages: followUp, tools: TOOLS, tool_choice: 'none', seed: 3, max_tokens: 12 });
      const a = answer.choices[0]!;
      assert.equal(a.message.tool_calls, undefined);
      assert.equal(typeof a.message.content, 'string');
      assert.ok(a.finish_reason === 'stop' || a.finish_reason === 'length');
    });

    test('a named tool_choice calls that tool once; parallel_tool_calls false gives one call', async () => {
      const named = await client.chat.completions.create({ model, messages, tools: TOOLS, tool_choice: { type: 'function', function: { name: 'add' } }, seed: 5, max_tokens: 200, logit_bias: EOS_BIAS });
      const calls = named.choices[0]!.message.tool_calls ?? [];
      assert.equal(calls.length, 1);
      assert.equal((calls[0] as OpenAI.ChatCompletionMessageFunctionToolCall).function.name, 'add');
      checkCall(calls[0] as OpenAI.ChatCompletionMessageFunctionToolCall, format);
      for (const seed of [1, 2]) {
        const single = await client.chat.completions.create({ model, messages, tools: TOOLS, tool_choice: 'required', parallel_tool_calls: false, seed, max_tokens: 200 });
        assert.equal(single.choices[0]!.message.tool_calls?.length, 1);
      }
    });

    test('n = 2, streamed: each choice gets its own calls, the same as without streaming', async () => {
      // One call each: in the list formats (mistral, pythonic) the EOS bias cannot end a chain of calls early.
      const body = { model, messages, tools: TOOLS, tool_choice: 'required' as const, parallel_tool_calls: false, n: 2, seed: 21, max_tokens: 300, logit_bias: EOS_BIAS };
      const whole = await client.chat.completions.create(body);
      const acc: Array<Array<{ name: string; args: string }>> = [[], []];
      const finish: Array<string | null> = [null, null];
      for await (const chunk of await client.chat.completions.create({ ...body, stream: true })) {
        for (const c of chunk.choices) {
          finish[c.index] = c.finish_reason ?? finish[c.index]!;
          for (const d of c.delta.tool_calls ?? []) {
            if (d.id) acc[c.index]![d.index] = { name: d.function!.name!, args: d.function?.arguments ?? '' };
            else acc[c.index]![d.index]!.args += d.function?.arguments ?? '';
          }
        }
      }
      for (const [i, choice] of whole.choices.entries()) {
        assert.equal(choice.finish_reason, 'tool_calls');
        assert.equal(finish[i], 'tool_calls');
        const calls = (choice.message.tool_calls ?? []) as OpenAI.ChatCompletionMessageFunctionToolCall[];
        assert.deepEqual(acc[i], calls.map((c) => ({ name: c.function.name, args: c.function.arguments })));
        for (const c of calls) checkCall(c, format);
      }
    });

    test('tool_choice auto: the output is parsed (this random model writes no calls, so content)', async () => {
      const r = await client.chat.completions.create({ model, messages, tools: TOOLS, seed: 4, max_tokens: 10 });
      const c = r.choices[0]!;
      assert.ok(c.finish_reason === 'stop' || c.finish_reason === 'length' || c.finish_reason === 'tool_calls');
      if (c.finish_reason !== 'tool_calls') assert.equal(typeof c.message.content, 'string');
    });
  });
}
