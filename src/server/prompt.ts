/**
 * Prompt building: the prompts a request carries (text or token ids, chat messages) turned into
 * what the engine runs — the chat rendered with the model's template, text tokenized, truncated on
 * request — with a bound that refuses hopeless text before tokenizing it.
 */
import { ContextLengthError } from '../errors.js';
import { maxRequestTokens } from '../shared/request-limits.js';
import { encodeTexts, renderChatTemplate, type WithTokenizer } from '../tokenizer/jobs.js';
import type { ChatMessage } from '../tokenizer/tokenizer.js';
import type { RequestContext } from './request-context.js';
import { checkText, describe, fail, get, optBool, optInt, tokenIds, type Body } from './request-fields.js';
import { parseMessageToolCalls, parseToolsList } from './tools/request.js';

/** Refuse text that cannot possibly fit in the context, before spending time tokenizing it. */
export function checkTextFits(param: string, text: string, ctx: RequestContext): void {
  const limit = maxRequestTokens(ctx);
  if (text.length > limit * ctx.maxTokenChars) {
    throw new ContextLengthError(
      `This model's maximum context length is ${limit} tokens, and the ${param} (${text.length} characters) is far longer than that; please reduce the length of the input.`,
      { param, code: 'context_length_exceeded' },
    );
  }
}

/** A prompt as the engine sees it, plus its text when the client sent text (for echo). */
export interface PreparedPrompt {
  tokenIds: number[];
  text: string | null;
}

/** vLLM's truncate_prompt_tokens: keep the last k tokens (-1: the model's context length). */
export function truncation(body: Body, ctx: RequestContext): number | null {
  const k = optInt(body, 'truncate_prompt_tokens', -1, Number.MAX_SAFE_INTEGER);
  if (k === undefined) return null;
  if (k === 0) fail('truncate_prompt_tokens', 'truncate_prompt_tokens must be -1 or >= 1, got 0');
  return k === -1 ? ctx.maxModelLen : k;
}

export function truncate(ids: number[], k: number | null): number[] {
  return k !== null && ids.length > k ? ids.slice(ids.length - k) : ids;
}

// ---------------------------------------------------------------------------------------------
// /v1/completions prompts

export type RawPrompt = { text: string } | { ids: number[] };

export function parsePromptField(body: Body, vocabSize: number): RawPrompt[] {
  const v = get(body, 'prompt');
  const shape = 'prompt must be a string, a list of strings, a list of token ids, or a list of token id lists';
  if (v === undefined) {
    if (get(body, 'prompt_embeds') !== undefined) fail('prompt_embeds', 'prompt_embeds is not supported by this server');
    fail('prompt', 'prompt is required');
  }
  if (typeof v === 'string') {
    if (v.length === 0) fail('prompt', 'prompt must not be empty');
    return [{ text: checkText('prompt', v) }];
  }
  if (!Array.isArray(v)) fail('prompt', `${shape}, got ${describe(v)}`);
  if (v.length === 0) fail('prompt', 'prompt must not be empty');
  if (v.every((x) => typeof x === 'string')) {
    return (v as string[]).map((s, i) => {
      if (s.length === 0) fail('prompt', `prompt[${i}] must not be empty`);
      return { text: checkText('prompt', s) };
    });
  }
  if (v.every((x) => typeof x === 'number')) return [{ ids: tokenIds('prompt', v, vocabSize) }];
  if (v.every((x) => Array.isArray(x))) return (v as unknown[]).map((x, i) => ({ ids: tokenIds(`prompt[${i}]`, x, vocabSize) }));
  fail('prompt', `${shape}; got a list mixing types`);
}

/**
 * Tokenize (text) and truncate (to the last k tokens, when k is set) each prompt. With truncation
 * the text may be long on purpose; without, a hopeless prompt is refused untokenized. Tokenizing
 * is yielded as jobs (tokenizer/jobs.ts): the server runs it off the event loop.
 */
export function* completionPrompts(raws: readonly RawPrompt[], k: number | null, addSpecialTokens: boolean, ctx: RequestContext): WithTokenizer<PreparedPrompt[]> {
  if (k === null) for (const p of raws) if ('text' in p) checkTextFits('prompt', p.text, ctx);
  const texts = raws.flatMap((p) => ('text' in p ? [p.text] : []));
  const encoded = texts.length > 0 ? yield* encodeTexts(texts, addSpecialTokens) : [];
  let next = 0;
  return raws.map((p) => ('text' in p ? { tokenIds: truncate(encoded[next++]!, k), text: p.text } : { tokenIds: truncate(p.ids, k), text: null }));
}

// ---------------------------------------------------------------------------------------------
// Chat messages

/**
 * Parse `messages` into the tokenizer's ChatMessage list. Only text content is supported; an
 * assistant's `tool_calls` and a tool result's `tool_call_id` are kept for the chat template.
 */
export function parseMessages(v: unknown): ChatMessage[] {
  if (v === undefined || v === null) fail('messages', 'messages is required');
  if (!Array.isArray(v)) fail('messages', `messages must be a list of message objects, got ${describe(v)}`);
  if (v.length === 0) fail('messages', 'messages must not be empty');
  return v.map((m: unknown, i): ChatMessage => {
    const at = `messages[${i}]`;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) fail('messages', `${at} must be an object, got ${describe(m)}`);
    const msg = m as Body;
    const role = msg['role'];
    if (typeof role !== 'string' || role.length === 0) fail('messages', `${at}.role must be a non-empty string, got ${describe(role)}`);
    checkText('messages', role);
    const c = msg['content'];
    let content: string;
    if (c === undefined || c === null) content = '';
    else if (typeof c === 'string') content = checkText('messages', c);
    else if (Array.isArray(c)) {
      content = c
        .map((part: unknown, j) => {
          if (typeof part === 'string') return checkText('messages', part);
          if (typeof part !== 'object' || part === null || Array.isArray(part)) fail('messages', `${at}.content[${j}] must be a content part object, got ${describe(part)}`);
          const type = (part as Body)['type'];
          if (type !== 'text') fail('messages', `${at}.content[${j}]: content type ${JSON.stringify(type ?? null)} is not supported (this server handles text only)`);
          const text = (part as Body)['text'];
          if (typeof text !== 'string') fail('messages', `${at}.content[${j}].text must be a string, got ${describe(text)}`);
          return checkText('messages', text);
        })
        .join('\n');
    } else fail('messages', `${at}.content must be a string, a list of content parts, or null, got ${describe(c)}`);
    const out: ChatMessage = { role, content };
    const calls = msg['tool_calls'];
    if (calls !== undefined && calls !== null) out.tool_calls = parseMessageToolCalls(calls, at);
    const callId = msg['tool_call_id'];
    if (callId !== undefined && callId !== null) {
      if (typeof callId !== 'string') fail('messages', `${at}.tool_call_id must be a string, got ${describe(callId)}`);
      out.tool_call_id = checkText('messages', callId);
    }
    const name = msg['name'];
    if (name !== undefined && name !== null) {
      if (typeof name !== 'string') fail('messages', `${at}.name must be a string, got ${describe(name)}`);
      out.name = checkText('messages', name);
    }
    return out;
  });
}

export interface RenderedChat {
  text: string;
  tokenIds: number[];
}

/** Render messages with the model's template and tokenize them (no second BOS, see encodeChatPrompt). */
export function* renderChat(body: Body, ctx: RequestContext, messages: ChatMessage[], defaultAddSpecial: boolean, boundText: boolean): WithTokenizer<RenderedChat> {
  if (get(body, 'chat_template') !== undefined) fail('chat_template', 'chat_template in requests is not supported; the model\'s own template is used');
  const continueFinal = optBool(body, 'continue_final_message', false);
  const addGen = optBool(body, 'add_generation_prompt', !continueFinal);
  if (continueFinal && addGen) fail('continue_final_message', 'Cannot set both continue_final_message and add_generation_prompt to true');
  const addSpecialTokens = optBool(body, 'add_special_tokens', defaultAddSpecial);

  const kw = get(body, 'chat_template_kwargs');
  if (kw !== undefined && (typeof kw !== 'object' || Array.isArray(kw))) fail('chat_template_kwargs', `chat_template_kwargs must be an object, got ${describe(kw)}`);
  const extra: Record<string, unknown> = { ...((kw as Body | undefined) ?? {}) };
  const docs = get(body, 'documents');
  if (docs !== undefined) {
    if (!Array.isArray(docs)) fail('documents', `documents must be a list of objects, got ${describe(docs)}`);
    extra['documents'] = docs;
  }
  // The tools as sent, for the template's `tools` variable (tool_choice is the route's business).
  const toolsRaw = get(body, 'tools');
  const tools = toolsRaw === undefined ? undefined : parseToolsList(toolsRaw).raw;

  let text = yield* renderChatTemplate(messages, { addGenerationPrompt: addGen, tools: tools ?? undefined, extra });
  if (continueFinal) {
    // Leave the final message open: cut the rendering right after its content (as transformers does).
    const last = messages[messages.length - 1]!;
    const content = typeof last.content === 'string' ? last.content : last.content.map((p) => p.text).join('\n');
    const at = content.length > 0 ? text.lastIndexOf(content) : -1;
    if (content.length > 0) {
      if (at < 0) fail('continue_final_message', 'continue_final_message: the final message\'s content does not appear in the rendered prompt');
      text = text.slice(0, at + content.length);
    }
  }
  if (boundText) checkTextFits('messages', text, ctx);
  // add_special_tokens defaults to false here: the template wrote its own BOS (see encodeChatPrompt).
  const [tokenIds] = yield* encodeTexts([text], addSpecialTokens);
  return { text, tokenIds: tokenIds! };
}
