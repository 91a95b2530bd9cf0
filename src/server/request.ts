/**
 * OpenAI request → what the engine runs: prompt token ids and validated SamplingParams.
 * The field readers are in request-fields.ts, prompt building (chat template, tokenizing,
 * truncation) in prompt.ts; this module holds each route's request shape and its rules.
 *
 * Parsing is written as generators that yield their tokenizer work (src/tokenizer/jobs.ts): the
 * server runs them on its tokenizer pool, so long inputs are tokenized off the event loop; the
 * `parse*Request` functions run them inline.
 *
 * Everything a client sends is checked here, before anything reaches the engine, and every problem
 * is an InvalidRequestError naming the field (OpenAI's `param`). Request bodies come from JSON, so
 * every field is read as `unknown` and checked for its type; nothing here trusts a static type.
 *
 * Behaviour follows vLLM's OpenAI server (entrypoints/openai/protocol.py, serving_*.py):
 * - Completions: `max_tokens` absent → 16 (OpenAI's and vLLM's default); `null` → the rest of the
 *   context. Chat: `max_completion_tokens` or `max_tokens`, absent or null → the rest of the context.
 *   "The rest of the context" is max_model_len (capped by the KV pool size) − prompt length, and
 *   further capped by the model's generation_config `max_new_tokens` when it has one.
 * - Fields the request leaves unset take the model's generation_config defaults (temperature,
 *   top_p, top_k, repetition_penalty), as vLLM's `--generation-config auto` (its default) does.
 * - Beam search is vLLM's legacy form: `use_beam_search` with `best_of` as the beam width,
 *   `temperature` 0 and `n` hypotheses returned (all reported when the search ends).
 * - Structured outputs (response_format, structured_outputs, guided_*) are read by
 *   structured-fields.ts into `SamplingParams.structuredOutputs`; the route checks that the grammar
 *   compiles (checkGrammar) before submitting.
 * - Unknown fields are ignored (and reported so the route can log a warning); fields we know but
 *   cannot honour (suffix, per-request templates) are rejected rather than silently ignored,
 *   because ignoring them would change the output.
 */
import { ContextLengthError } from '../errors.js';
import { makeSamplingParams, MAX_LOGPROBS, type SamplingParams, type SamplingParamsInput } from '../sampling/params.js';
import { checkTextFits, completionPrompts, parseMessages, parsePromptField, renderChat, truncate, truncation, type PreparedPrompt } from './prompt.js';
import type { RequestContext } from './request-context.js';
import { encodeTexts, runInline, type WithTokenizer } from '../tokenizer/jobs.js';
import { asBody, checkText, describe, fail, get, optBool, optInt, optString, resolveModelName, tokenIds, unknownFields, type Body } from './request-fields.js';
import { hasExtraCandidates } from '../shared/fan-out.js';
import { parseStructuredField } from './structured-fields.js';
import { parseToolRequest, type ToolRequest } from './tools/request.js';
import { checkWidth, maxRequestTokens } from '../shared/request-limits.js';

interface CommonRequest {
  /** The served model name to report back. */
  model: string;
  stream: boolean;
  includeUsage: boolean;
  continuousUsage: boolean;
  /** Client-chosen request id (vLLM's `request_id`), if any. */
  requestId: string | null;
  returnTokenIds: boolean;
  returnTokensAsTokenIds: boolean;
  /** Top-level fields the request sent that this server does not know (logged, then ignored). */
  ignoredFields: string[];
  /** The field the structured-output constraint came from (errors name it), null when none. */
  grammarParam: string | null;
}

export interface CompletionRequest extends CommonRequest {
  prompts: PreparedPrompt[];
  /** Per prompt (max_tokens defaults depend on the prompt's length). */
  params: SamplingParams[];
  /** Choices returned per prompt. */
  n: number;
  echo: boolean;
  /** `echo` with `max_tokens: 0`: return the prompt only (one token is generated and dropped). */
  echoOnly: boolean;
  /** Logprobs the client asked for (the engine may compute more, e.g. for best_of ranking). */
  logprobs: number | null;
  promptLogprobs: number | null;
}

export interface ChatRequest extends CommonRequest {
  /** The rendered chat and its token ids. */
  prompt: { tokenIds: number[]; text: string };
  params: SamplingParams;
  n: number;
  /** Chat logprobs: null = off, else the number of top alternatives per token. */
  topLogprobs: number | null;
  promptLogprobs: number | null;
  /** With `echo`, the final assistant message's content, which the response starts with. */
  echoText: string | null;
  /** The tools offered and how calls are chosen and parsed; null without tools. */
  tools: ToolRequest | null;
}

export interface TokenizeRequest {
  tokenIds: number[];
  returnTokenStrs: boolean;
  ignoredFields: string[];
}

export interface DetokenizeRequest {
  tokenIds: number[];
  ignoredFields: string[];
}

// ---------------------------------------------------------------------------------------------
// Shared pieces

/** snake_case request field → SamplingParams field, for the fields passed through unchanged. */
const SAMPLING_FIELDS: ReadonlyArray<readonly [string, keyof SamplingParamsInput]> = [
  ['n', 'n'],
  ['best_of', 'bestOf'],
  ['temperature', 'temperature'],
  ['top_p', 'topP'],
  ['top_k', 'topK'],
  ['min_p', 'minP'],
  ['presence_penalty', 'presencePenalty'],
  ['frequency_penalty', 'frequencyPenalty'],
  ['repetition_penalty', 'repetitionPenalty'],
  ['seed', 'seed'],
  ['stop', 'stop'],
  ['stop_token_ids', 'stopTokenIds'],
  ['include_stop_str_in_output', 'includeStopStrInOutput'],
  ['ignore_eos', 'ignoreEos'],
  ['min_tokens', 'minTokens'],
  ['logit_bias', 'logitBias'],
  ['allowed_token_ids', 'allowedTokenIds'],
  ['skip_special_tokens', 'skipSpecialTokens'],
  ['spaces_between_special_tokens', 'spacesBetweenSpecialTokens'],
  ['length_penalty', 'lengthPenalty'],
  ['early_stopping', 'earlyStopping'],
  ['use_beam_search', 'useBeamSearch'],
];

/** Fields known to both endpoints and accepted without effect (as vLLM does). */
const ACCEPTED_NOOP = ['user', 'metadata', 'store', 'service_tier', 'cache_salt', 'kv_transfer_params', 'vllm_xargs', 'priority'];

const COMMON_FIELDS = [
  'model',
  'stream',
  'stream_options',
  'max_tokens',
  'logprobs',
  'prompt_logprobs',
  'request_id',
  'return_token_ids',
  'return_tokens_as_token_ids',
  'truncate_prompt_tokens',
  'add_special_tokens',
  'response_format',
  'structured_outputs',
  'guided_json',
  'guided_regex',
  'guided_choice',
  'guided_grammar',
  'guided_decoding_backend',
  'guided_whitespace_pattern',
  'logits_processors',
  'echo',
  ...ACCEPTED_NOOP,
  ...SAMPLING_FIELDS.map(([k]) => k),
];

const COMPLETION_FIELDS = new Set([...COMMON_FIELDS, 'prompt', 'suffix', 'prompt_embeds']);
const CHAT_FIELDS = new Set([
  ...COMMON_FIELDS,
  'messages',
  'max_completion_tokens',
  'top_logprobs',
  'tools',
  'tool_choice',
  'parallel_tool_calls',
  'add_generation_prompt',
  'continue_final_message',
  'chat_template',
  'chat_template_kwargs',
  'documents',
  'reasoning_effort',
]);

/** Reject fields we know but cannot honour: ignoring them would silently change the output. */
function rejectUnsupported(body: Body): void {
  const lp = get(body, 'logits_processors');
  if (lp !== undefined && !(Array.isArray(lp) && lp.length === 0)) fail('logits_processors', 'logits_processors is not supported by this server');
  const prio = get(body, 'priority');
  if (prio !== undefined && prio !== 0) fail('priority', `priority must be 0 (this server does not use priority scheduling), got ${describe(prio)}`);
  const salt = get(body, 'cache_salt');
  if (salt !== undefined && (typeof salt !== 'string' || salt.length === 0)) fail('cache_salt', 'cache_salt must be a non-empty string');
}

function parseStreamOptions(body: Body): { stream: boolean; includeUsage: boolean; continuousUsage: boolean } {
  const stream = optBool(body, 'stream', false);
  const so = get(body, 'stream_options');
  if (so === undefined) return { stream, includeUsage: false, continuousUsage: false };
  if (typeof so !== 'object' || Array.isArray(so)) fail('stream_options', `stream_options must be an object, got ${describe(so)}`);
  if (!stream) fail('stream_options', 'stream_options can only be given when stream is true');
  const o = so as Body;
  return {
    stream,
    includeUsage: optBool(o, 'include_usage', false),
    continuousUsage: optBool(o, 'continuous_usage_stats', false),
  };
}

function parseCommon(body: Body, ctx: RequestContext, known: ReadonlySet<string>): Omit<CommonRequest, 'grammarParam'> {
  const model = resolveModelName(body, ctx);
  rejectUnsupported(body);
  const s = parseStreamOptions(body);
  const requestId = optString(body, 'request_id') ?? null;
  if (requestId !== null && (requestId.length === 0 || requestId.length > 256 || !/^[\x21-\x7e]+$/.test(requestId))) {
    fail('request_id', 'request_id must be 1 to 256 printable ASCII characters without spaces');
  }
  return {
    model,
    ...s,
    requestId,
    returnTokenIds: optBool(body, 'return_token_ids', false),
    returnTokensAsTokenIds: optBool(body, 'return_tokens_as_token_ids', false),
    ignoredFields: unknownFields(body, known),
  };
}

/** The SamplingParams input of the pass-through fields (types are checked by makeSamplingParams). */
function samplingInput(body: Body): SamplingParamsInput {
  const input: Record<string, unknown> = {};
  for (const [snake, camel] of SAMPLING_FIELDS) {
    const v = get(body, snake);
    if (v !== undefined) input[camel] = v;
  }
  if (typeof input['stop'] === 'string') checkText('stop', input['stop']);
  else if (Array.isArray(input['stop'])) for (const s of input['stop']) if (typeof s === 'string') checkText('stop', s);
  return input as SamplingParamsInput;
}

function makeParams(input: SamplingParamsInput, ctx: RequestContext): SamplingParams {
  const p = makeSamplingParams(input, { vocabSize: ctx.vocabSize, maxModelLen: ctx.maxModelLen, maxLogprobs: MAX_LOGPROBS, defaults: ctx.defaults });
  checkWidth(p, ctx.maxNumSeqs);
  return p;
}

/**
 * max_tokens for one prompt. `requested` undefined means "use the default": what is left of the
 * context after the prompt (vLLM), capped by generation_config's max_new_tokens.
 */
function resolveMaxTokens(requested: number | undefined, promptLen: number, ctx: RequestContext, promptParam: string): number {
  if (requested !== undefined) return requested;
  const limit = maxRequestTokens(ctx);
  const room = limit - promptLen;
  if (room < 1) {
    throw new ContextLengthError(
      `This model's maximum context length is ${limit} tokens. However, your request has ${promptLen} input tokens. Please reduce the length of the input.`,
      { param: promptParam, code: 'context_length_exceeded' },
    );
  }
  return ctx.maxNewTokens !== null ? Math.min(room, ctx.maxNewTokens) : room;
}

// ---------------------------------------------------------------------------------------------
// /v1/completions

export function* parseCompletion(raw: unknown, ctx: RequestContext): WithTokenizer<CompletionRequest> {
  const body = asBody(raw);
  const common = parseCommon(body, ctx, COMPLETION_FIELDS);
  const suffix = get(body, 'suffix');
  if (suffix !== undefined && suffix !== '') fail('suffix', 'suffix is not supported: this server does not do fill-in-the-middle completion');

  const echo = optBool(body, 'echo', false);
  const logprobs = optInt(body, 'logprobs', 0, MAX_LOGPROBS) ?? null;
  const promptLogprobs = optInt(body, 'prompt_logprobs', 0, MAX_LOGPROBS) ?? null;
  if (common.stream && promptLogprobs !== null) fail('prompt_logprobs', 'prompt_logprobs are not available when stream is true');
  const addSpecialTokens = optBool(body, 'add_special_tokens', true);

  // max_tokens: absent → 16, null → the rest of the context, 0 → echo only (vLLM).
  const mt = body['max_tokens'];
  let maxTokens: number | undefined;
  let echoOnly = false;
  if (mt === undefined) maxTokens = 16;
  else if (mt === null) maxTokens = undefined;
  else if (mt === 0 && echo) {
    echoOnly = true;
    maxTokens = 1;
  } else if (typeof mt !== 'number') fail('max_tokens', `max_tokens must be an integer, got ${describe(mt)}`);
  else maxTokens = mt;

  const input = samplingInput(body);
  const structured = parseStructuredField(body);
  input.structuredOutputs = structured?.spec ?? null;
  // Ranking best_of candidates needs their cumulative logprobs, which the sampler computes only
  // when logprobs are requested; ask for the chosen token's (0 alternatives) when the client did not.
  const wantsBestOf = typeof input.bestOf === 'number' && hasExtraCandidates({ n: (input.n as number | undefined) ?? 1, bestOf: input.bestOf });
  input.logprobs = logprobs ?? (wantsBestOf ? 0 : null);
  // With echo, the prompt's logprobs are part of the returned logprobs (vLLM).
  input.promptLogprobs = promptLogprobs ?? (echo && logprobs !== null ? logprobs : null);
  // Validate everything except the prompt-dependent max_tokens before tokenizing.
  const base = makeParams({ ...input, maxTokens: maxTokens ?? ctx.maxModelLen }, ctx);
  if (common.stream && base.bestOf !== base.n && !base.useBeamSearch) fail('best_of', 'best_of must equal n when stream is true (except with beam search)');

  const k = truncation(body, ctx);
  const raws = parsePromptField(body, ctx.vocabSize);
  if (raws.length > ctx.maxPrompts) fail('prompt', `a request may carry at most ${ctx.maxPrompts} prompts (--max-waiting-requests), got ${raws.length}`);
  const prompts = yield* completionPrompts(raws, k, addSpecialTokens, ctx);
  const params = prompts.map((p) => {
    if (p.tokenIds.length === 0) fail('prompt', 'prompt is empty after tokenization');
    const m = resolveMaxTokens(maxTokens, p.tokenIds.length, ctx, 'prompt');
    return m === base.maxTokens ? base : makeParams({ ...input, maxTokens: m }, ctx);
  });
  return { ...common, grammarParam: structured?.param ?? null, prompts, params, n: base.n, echo, echoOnly, logprobs, promptLogprobs };
}

// ---------------------------------------------------------------------------------------------
// /v1/chat/completions

export function* parseChat(raw: unknown, ctx: RequestContext): WithTokenizer<ChatRequest> {
  const body = asBody(raw);
  const common = parseCommon(body, ctx, CHAT_FIELDS);
  const messages = parseMessages(body['messages']);

  const lp = optBool(body, 'logprobs', false);
  const top = optInt(body, 'top_logprobs', 0, MAX_LOGPROBS);
  if (top !== undefined && top > 0 && !lp) fail('top_logprobs', 'when using top_logprobs, logprobs must be set to true');
  const topLogprobs = lp ? (top ?? 0) : null;
  const promptLogprobs = optInt(body, 'prompt_logprobs', 0, MAX_LOGPROBS) ?? null;
  if (common.stream && promptLogprobs !== null) fail('prompt_logprobs', 'prompt_logprobs are not available when stream is true');
  const echo = optBool(body, 'echo', false);

  const mct = get(body, 'max_completion_tokens');
  const mtRaw = mct !== undefined ? mct : get(body, 'max_tokens');
  const mtParam = mct !== undefined ? 'max_completion_tokens' : 'max_tokens';
  if (mtRaw !== undefined && (typeof mtRaw !== 'number' || !Number.isSafeInteger(mtRaw))) fail(mtParam, `${mtParam} must be an integer, got ${describe(mtRaw)}`);
  if (typeof mtRaw === 'number' && mtRaw < 1) fail(mtParam, `${mtParam} must be >= 1, got ${mtRaw}`);
  const maxTokens = mtRaw as number | undefined;

  const input = samplingInput(body);
  let structured = parseStructuredField(body);
  const tools = parseToolRequest(body, ctx.tools ?? { parser: null, autoToolChoice: false });
  if (tools?.constraint) {
    // A required or named tool call is itself the constraint.
    if (structured) fail('tool_choice', `tool_choice ${JSON.stringify(tools.choice)} constrains the output to tool calls and cannot be combined with ${structured.param}`);
    structured = { spec: tools.constraint, param: 'tool_choice' };
  }
  input.structuredOutputs = structured?.spec ?? null;
  const wantsBestOf = typeof input.bestOf === 'number' && hasExtraCandidates({ n: (input.n as number | undefined) ?? 1, bestOf: input.bestOf });
  input.logprobs = topLogprobs ?? (wantsBestOf ? 0 : null);
  input.promptLogprobs = promptLogprobs;
  const base = makeParams({ ...input, maxTokens: maxTokens ?? ctx.maxModelLen }, ctx);
  if (common.stream && base.bestOf !== base.n && !base.useBeamSearch) fail('best_of', 'best_of must equal n when stream is true (except with beam search)');

  const k = truncation(body, ctx);
  const rendered = yield* renderChat(body, ctx, messages, false, k === null);
  const tokenIdsList = truncate(rendered.tokenIds, k);
  if (tokenIdsList.length === 0) fail('messages', 'the rendered chat prompt is empty');
  const m = resolveMaxTokens(maxTokens, tokenIdsList.length, ctx, 'messages');
  const params = m === base.maxTokens ? base : makeParams({ ...input, maxTokens: m }, ctx);

  const last = messages[messages.length - 1]!;
  const echoText = echo && last.role === 'assistant' ? (typeof last.content === 'string' ? last.content : last.content.map((p) => p.text).join('\n')) : null;
  return { ...common, grammarParam: structured?.param ?? null, prompt: { tokenIds: tokenIdsList, text: rendered.text }, params, n: params.n, topLogprobs, promptLogprobs, echoText, tools };
}

// ---------------------------------------------------------------------------------------------
// /tokenize and /detokenize (vLLM's extensions)

const TOKENIZE_FIELDS = new Set([
  'model',
  'prompt',
  'messages',
  'add_special_tokens',
  'add_generation_prompt',
  'continue_final_message',
  'return_token_strs',
  'chat_template',
  'chat_template_kwargs',
  'documents',
  'tools',
  'tool_choice',
]);

export function* parseTokenize(raw: unknown, ctx: RequestContext): WithTokenizer<TokenizeRequest> {
  const body = asBody(raw);
  resolveModelName(body, ctx);
  const returnTokenStrs = optBool(body, 'return_token_strs', false);
  const ignoredFields = unknownFields(body, TOKENIZE_FIELDS);
  const hasPrompt = get(body, 'prompt') !== undefined;
  const hasMessages = get(body, 'messages') !== undefined;
  if (hasPrompt === hasMessages) fail(hasPrompt ? 'messages' : 'prompt', 'give exactly one of prompt or messages');
  if (hasPrompt) {
    const prompt = get(body, 'prompt');
    if (typeof prompt !== 'string') fail('prompt', `prompt must be a string, got ${describe(prompt)}`);
    const addSpecialTokens = optBool(body, 'add_special_tokens', true);
    checkTextFits('prompt', checkText('prompt', prompt), ctx);
    const [tokenIds] = yield* encodeTexts([prompt], addSpecialTokens);
    return { tokenIds: tokenIds!, returnTokenStrs, ignoredFields };
  }
  const rendered = yield* renderChat(body, ctx, parseMessages(body['messages']), false, true);
  return { tokenIds: rendered.tokenIds, returnTokenStrs, ignoredFields };
}

export function parseDetokenizeRequest(raw: unknown, ctx: RequestContext): DetokenizeRequest {
  const body = asBody(raw);
  resolveModelName(body, ctx);
  const v = get(body, 'tokens');
  if (v === undefined) fail('tokens', 'tokens is required');
  return { tokenIds: tokenIds('tokens', v, ctx.vocabSize, true), ignoredFields: unknownFields(body, new Set(['model', 'tokens'])) };
}

// ---------------------------------------------------------------------------------------------
// The same parsers with the tokenizer run inline, on this thread

export function parseCompletionRequest(raw: unknown, ctx: RequestContext): CompletionRequest {
  return runInline(parseCompletion(raw, ctx), ctx.tokenizer);
}

export function parseChatRequest(raw: unknown, ctx: RequestContext): ChatRequest {
  return runInline(parseChat(raw, ctx), ctx.tokenizer);
}

export function parseTokenizeRequest(raw: unknown, ctx: RequestContext): TokenizeRequest {
  return runInline(parseTokenize(raw, ctx), ctx.tokenizer);
}
