/**
 * OpenAI request → what the engine runs: prompt token ids and validated SamplingParams.
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
 * - Unknown fields are ignored (and reported so the route can log a warning); fields we know but
 *   cannot honour (suffix, structured output, tool calling, per-request templates)
 *   are rejected rather than silently ignored, because ignoring them would change the output.
 */
import { ContextLengthError, InvalidRequestError, NotFoundError } from '../errors.js';
import { makeSamplingParams, MAX_LOGPROBS, type SamplingParams, type SamplingParamsInput } from '../sampling/params.js';
import { hasExtraCandidates } from '../shared/fan-out.js';
import { checkTokenId, checkWidth, maxRequestTokens } from '../shared/request-limits.js';
import type { ChatMessage, PagewiseTokenizer } from '../tokenizer/tokenizer.js';

/** What request parsing needs to know about the served model. */
export interface RequestContext {
  tokenizer: PagewiseTokenizer;
  /** Logits width: valid token ids are 0..vocabSize-1. */
  vocabSize: number;
  maxModelLen: number;
  /** Token slots in the whole KV pool: no single request can be longer. */
  kvCacheTokens: number;
  /** Most sequences the engine runs at once; bounds n and best_of. */
  maxNumSeqs: number;
  /** Most prompts one completions request may carry (a bigger batch could never be queued whole). */
  maxPrompts: number;
  /** Names the `model` field may take; the first is reported in responses. */
  servedModelNames: readonly string[];
  /** Model defaults (generation_config.json) for fields the request leaves unset. */
  defaults: Partial<SamplingParams>;
  /** generation_config.json `max_new_tokens`, if any: caps the default max_tokens. */
  maxNewTokens: number | null;
  /** Longest token string in the vocabulary (see longestTokenChars): bounds text before tokenizing. */
  maxTokenChars: number;
}

/**
 * The longest token string in the vocabulary. No token covers more characters of input text than
 * its own string has (byte-level and SentencePiece vocabularies spell tokens with at least one
 * character per input character), so a text of L characters has at least L / this many tokens.
 * That lets a prompt far too long for the context be refused without tokenizing it: tokenization
 * runs on the event loop, and megabytes of text would stall every other request.
 */
export function longestTokenChars(tokenizer: PagewiseTokenizer, vocabSize: number): number {
  let max = 1;
  for (let id = 0; id < vocabSize; id++) {
    const t = tokenizer.idToToken(id);
    if (t !== null && t.length > max) max = t.length;
  }
  return max;
}

/** Refuse text that cannot possibly fit in the context, before spending time tokenizing it. */
function checkTextFits(param: string, text: string, ctx: RequestContext): void {
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
// Field readers

type Body = Record<string, unknown>;

function fail(param: string, message: string): never {
  throw new InvalidRequestError(message, { param });
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'string') return v.length > 40 ? `a string` : `"${v}"`;
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

/** The body as an object, or a clear error. */
export function asBody(raw: unknown): Body {
  if (raw === undefined) throw new InvalidRequestError('Request body is empty; expected a JSON object');
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new InvalidRequestError(`Request body must be a JSON object, got ${describe(raw)}`);
  }
  return raw as Body;
}

/** A field's value, with JSON null treated as absent (as pydantic's Optional fields do). */
function get(body: Body, key: string): unknown {
  if (!Object.hasOwn(body, key)) return undefined;
  const v = body[key];
  return v === null ? undefined : v;
}

function optBool(body: Body, key: string, dflt: boolean): boolean {
  const v = get(body, key);
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') fail(key, `${key} must be a boolean, got ${describe(v)}`);
  return v;
}

function optString(body: Body, key: string): string | undefined {
  const v = get(body, key);
  if (v === undefined) return undefined;
  if (typeof v !== 'string') fail(key, `${key} must be a string, got ${describe(v)}`);
  return v;
}

function optInt(body: Body, key: string, min: number, max: number): number | undefined {
  const v = get(body, key);
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) fail(key, `${key} must be an integer, got ${describe(v)}`);
  if (v < min || v > max) fail(key, `${key} must be in [${min}, ${max}], got ${v}`);
  return v;
}

/** Lone UTF-16 surrogates: JSON can carry them ("\ud800"), text cannot. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function checkText(param: string, s: string): string {
  if (LONE_SURROGATE.test(s)) fail(param, `${param} contains invalid Unicode (an unpaired surrogate)`);
  return s;
}

function tokenIds(param: string, v: unknown, vocabSize: number, allowEmpty = false): number[] {
  if (!Array.isArray(v)) fail(param, `${param} must be a list of token ids, got ${describe(v)}`);
  if (v.length === 0 && !allowEmpty) fail(param, `${param} must not be empty`);
  for (const x of v) {
    if (typeof x !== 'number' || !Number.isSafeInteger(x)) fail(param, `${param} must contain only integer token ids, got ${describe(x)}`);
    checkTokenId(param, x, vocabSize);
  }
  return v as number[];
}

/** Report fields this endpoint does not know. */
function unknownFields(body: Body, known: ReadonlySet<string>): string[] {
  return Object.keys(body).filter((k) => !known.has(k));
}

// ---------------------------------------------------------------------------------------------
// Shared pieces

/** Resolve the `model` field against the served names (absent → the default model). */
export function resolveModelName(body: Body, ctx: Pick<RequestContext, 'servedModelNames'>): string {
  const v = get(body, 'model');
  const dflt = ctx.servedModelNames[0]!;
  if (v === undefined) return dflt;
  if (typeof v !== 'string') fail('model', `model must be a string, got ${describe(v)}`);
  if (!ctx.servedModelNames.includes(v)) {
    throw new NotFoundError(`The model \`${v.length > 200 ? `${v.slice(0, 200)}…` : v}\` does not exist.`, { param: 'model', code: 'model_not_found' });
  }
  return v;
}

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
  const rf = get(body, 'response_format');
  if (rf !== undefined) {
    const type = typeof rf === 'object' && !Array.isArray(rf) ? (rf as Body)['type'] : undefined;
    if (type !== 'text') fail('response_format', `response_format ${JSON.stringify(type ?? null)} is not supported (structured output is not implemented); only {"type": "text"}`);
  }
  for (const k of ['structured_outputs', 'guided_json', 'guided_regex', 'guided_choice', 'guided_grammar']) {
    if (get(body, k) !== undefined) fail(k, `${k} is not supported (structured output is not implemented)`);
  }
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

function parseCommon(body: Body, ctx: RequestContext, known: ReadonlySet<string>): CommonRequest {
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

/** vLLM's truncate_prompt_tokens: keep the last k tokens (-1: the model's context length). */
function truncation(body: Body, ctx: RequestContext): number | null {
  const k = optInt(body, 'truncate_prompt_tokens', -1, Number.MAX_SAFE_INTEGER);
  if (k === undefined) return null;
  if (k === 0) fail('truncate_prompt_tokens', 'truncate_prompt_tokens must be -1 or >= 1, got 0');
  return k === -1 ? ctx.maxModelLen : k;
}

function truncate(ids: number[], k: number | null): number[] {
  return k !== null && ids.length > k ? ids.slice(ids.length - k) : ids;
}

// ---------------------------------------------------------------------------------------------
// /v1/completions

type RawPrompt = { text: string } | { ids: number[] };

function parsePromptField(body: Body, vocabSize: number): RawPrompt[] {
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

export function parseCompletionRequest(raw: unknown, ctx: RequestContext): CompletionRequest {
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
  // With truncation the text may be long on purpose; without, a hopeless prompt is refused untokenized.
  if (k === null) for (const p of raws) if ('text' in p) checkTextFits('prompt', p.text, ctx);
  const prompts: PreparedPrompt[] = raws.map((p) =>
    'text' in p ? { tokenIds: truncate(ctx.tokenizer.encode(p.text, { addSpecialTokens }), k), text: p.text } : { tokenIds: truncate(p.ids, k), text: null },
  );
  const params = prompts.map((p) => {
    if (p.tokenIds.length === 0) fail('prompt', 'prompt is empty after tokenization');
    const m = resolveMaxTokens(maxTokens, p.tokenIds.length, ctx, 'prompt');
    return m === base.maxTokens ? base : makeParams({ ...input, maxTokens: m }, ctx);
  });
  return { ...common, prompts, params, n: base.n, echo, echoOnly, logprobs, promptLogprobs };
}

// ---------------------------------------------------------------------------------------------
// /v1/chat/completions

/** Parse `messages` into the tokenizer's ChatMessage list. Only text content is supported. */
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
    const name = msg['name'];
    if (name !== undefined && name !== null) {
      if (typeof name !== 'string') fail('messages', `${at}.name must be a string, got ${describe(name)}`);
      out.name = checkText('messages', name);
    }
    return out;
  });
}

interface RenderedChat {
  text: string;
  tokenIds: number[];
}

/** Render messages with the model's template and tokenize them (no second BOS, see encodeChatPrompt). */
function renderChat(body: Body, ctx: RequestContext, messages: ChatMessage[], defaultAddSpecial: boolean, boundText: boolean): RenderedChat {
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
  const tools = get(body, 'tools');
  const toolChoice = get(body, 'tool_choice');
  if (tools !== undefined) {
    if (!Array.isArray(tools) || tools.some((t) => typeof t !== 'object' || t === null || Array.isArray(t))) fail('tools', 'tools must be a list of tool objects');
    if (tools.length > 0 && toolChoice !== 'none') {
      fail('tool_choice', 'tool calling is not supported by this server (tool calls are not parsed from the output); send tool_choice "none" to only render the tools into the prompt');
    }
  } else if (toolChoice !== undefined && toolChoice !== 'none') {
    fail('tool_choice', 'tool_choice needs tools, and tool calling is not supported by this server');
  }

  let text = ctx.tokenizer.applyChatTemplate(messages, { addGenerationPrompt: addGen, tools: tools ?? undefined, extra });
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
  const tokenIds = addSpecialTokens ? ctx.tokenizer.encode(text, { addSpecialTokens: true }) : ctx.tokenizer.encodeChatPrompt(text);
  return { text, tokenIds };
}

export function parseChatRequest(raw: unknown, ctx: RequestContext): ChatRequest {
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
  const wantsBestOf = typeof input.bestOf === 'number' && hasExtraCandidates({ n: (input.n as number | undefined) ?? 1, bestOf: input.bestOf });
  input.logprobs = topLogprobs ?? (wantsBestOf ? 0 : null);
  input.promptLogprobs = promptLogprobs;
  const base = makeParams({ ...input, maxTokens: maxTokens ?? ctx.maxModelLen }, ctx);
  if (common.stream && base.bestOf !== base.n && !base.useBeamSearch) fail('best_of', 'best_of must equal n when stream is true (except with beam search)');

  const k = truncation(body, ctx);
  const rendered = renderChat(body, ctx, messages, false, k === null);
  const tokenIdsList = truncate(rendered.tokenIds, k);
  if (tokenIdsList.length === 0) fail('messages', 'the rendered chat prompt is empty');
  const m = resolveMaxTokens(maxTokens, tokenIdsList.length, ctx, 'messages');
  const params = m === base.maxTokens ? base : makeParams({ ...input, maxTokens: m }, ctx);

  const last = messages[messages.length - 1]!;
  const echoText = echo && last.role === 'assistant' ? (typeof last.content === 'string' ? last.content : last.content.map((p) => p.text).join('\n')) : null;
  return { ...common, prompt: { tokenIds: tokenIdsList, text: rendered.text }, params, n: params.n, topLogprobs, promptLogprobs, echoText };
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

export function parseTokenizeRequest(raw: unknown, ctx: RequestContext): TokenizeRequest {
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
    return { tokenIds: ctx.tokenizer.encode(prompt, { addSpecialTokens }), returnTokenStrs, ignoredFields };
  }
  const rendered = renderChat(body, ctx, parseMessages(body['messages']), false, true);
  return { tokenIds: rendered.tokenIds, returnTokenStrs, ignoredFields };
}

export function parseDetokenizeRequest(raw: unknown, ctx: RequestContext): DetokenizeRequest {
  const body = asBody(raw);
  resolveModelName(body, ctx);
  const v = get(body, 'tokens');
  if (v === undefined) fail('tokens', 'tokens is required');
  return { tokenIds: tokenIds('tokens', v, ctx.vocabSize, true), ignoredFields: unknownFields(body, new Set(['model', 'tokens'])) };
}
