/**
 * SamplingParams: the one validated description of how a request samples and stops.
 *
 * Semantics follow vLLM's `SamplingParams` (and the OpenAI API it mirrors). Every rule is checked
 * here, before the request reaches the engine, and every violation is an `InvalidRequestError` whose
 * `param` is the OpenAI/vLLM field name (snake_case) and whose message names the rule and the value.
 *
 * Choices where vLLM versions differ or the brief asked us to decide:
 * - Greedy means `temperature < SAMPLING_EPS` (1e-5), as vLLM. We do not raise tiny positive
 *   temperatures to 1e-2 as recent vLLM does; the sampler works in float64 and divides safely.
 * - Greedy requests reset top_p/top_k/min_p to "off" (they cannot change an argmax).
 * - Greedy requests must have n == 1 and best_of == 1 (vLLM rejects them: the copies would be
 *   identical). Beam search is the way to get several deterministic outputs.
 * - Beam search (vLLM's legacy `use_beam_search`) needs temperature 0 (given explicitly), best_of
 *   (beam width) > 1, top_p 1 and top_k off. Without beam search, length_penalty must be 1 and
 *   early_stopping false.
 * - logit_bias values outside [-100, 100] are rejected (OpenAI's documented range; vLLM clamps).
 * - top_k: -1 and 0 both mean "off" and are stored as -1.
 * - seed: any safe integer; -1 means "no seed" (vLLM). The sequence `i` of an n > 1 request uses
 *   `deriveSeed(seed, i)`.
 * - max_tokens null/absent: the `defaults.maxTokens`, else `ctx.maxModelLen`, else 16 (vLLM's
 *   default). The engine still caps it at what is left of the context after the prompt.
 */
import { InvalidRequestError } from '../errors.js';
import { normalizeSpec, type GrammarSpec } from '../structured/spec.js';

export interface SamplingParams {
  /** Outputs to return. */
  n: number;
  /** Sequences to generate, of which the `n` best (cumulative logprob) are returned; >= n. */
  bestOf: number;
  /** 0 (or < SAMPLING_EPS) = greedy. */
  temperature: number;
  /** Nucleus mass in (0, 1]; 1 = off. */
  topP: number;
  /** -1 = off (0 on input also means off). */
  topK: number;
  /** Minimum probability relative to the most likely token, in [0, 1]; 0 = off. */
  minP: number;
  presencePenalty: number;
  frequencyPenalty: number;
  /** Multiplicative penalty on tokens seen in prompt or output; 1 = off. */
  repetitionPenalty: number;
  /** null = a random seed is drawn when the sequence starts. */
  seed: number | null;
  stop: string[];
  stopTokenIds: number[];
  includeStopStrInOutput: boolean;
  ignoreEos: boolean;
  maxTokens: number;
  minTokens: number;
  /** Top alternatives to return per generated token; null = no logprobs, 0 = only the chosen token's. */
  logprobs: number | null;
  promptLogprobs: number | null;
  logitBias: Map<number, number> | null;
  allowedTokenIds: number[] | null;
  skipSpecialTokens: boolean;
  spacesBetweenSpecialTokens: boolean;
  useBeamSearch: boolean;
  lengthPenalty: number;
  earlyStopping: boolean | 'never';
  /**
   * Structured outputs: the grammar every sequence's output must match (a JSON schema, any JSON
   * object, a regex, a choice, an EBNF grammar); null = unconstrained. Its shape is checked here;
   * whether it compiles is checked asynchronously before submission (GrammarChecker).
   */
  structuredOutputs: GrammarSpec | null;
}

export type SamplingParamsInput = Partial<
  Omit<SamplingParams, 'logitBias' | 'stop' | 'maxTokens'> & {
    logitBias: Record<string, number> | Map<number, number> | null;
    stop: string | string[] | null;
    maxTokens: number | null;
  }
>;

export interface SamplingParamsContext {
  /** Number of token ids the model can produce (logits width). */
  vocabSize: number;
  /** Upper bound for logprobs / prompt_logprobs (default MAX_LOGPROBS). */
  maxLogprobs?: number;
  /** The model's context length; the default for max_tokens when the request gives none. */
  maxModelLen?: number;
  /** Model defaults (from generation_config.json), used for fields the request leaves unset. */
  defaults?: Partial<SamplingParams>;
}

/** Below this temperature sampling is greedy (vLLM's _SAMPLING_EPS). */
export const SAMPLING_EPS = 1e-5;
/** Default cap on logprobs / prompt_logprobs (vLLM's max_logprobs default). */
export const MAX_LOGPROBS = 20;
/** Most stop strings one request may give (keeps the per-token stop check cheap). */
export const MAX_STOP_STRINGS = 16;

/** Whether these params sample greedily (argmax, no random draw). */
export function isGreedy(p: Pick<SamplingParams, 'temperature'>): boolean {
  return p.temperature < SAMPLING_EPS;
}

/**
 * Seed of the `index`-th sequence (0-based) of a request with `n > 1` / `best_of > 1`:
 * `seed + index`, as vLLM seeds its child requests. Sequence 0 therefore uses the request's seed,
 * so `n=1, seed=s` and the first output of `n=4, seed=s` are the same. Exact for
 * |seed + index| < 2^53.
 */
export function deriveSeed(seed: number, index: number): number {
  return seed + index;
}

const BUILTIN: SamplingParams = {
  n: 1,
  bestOf: 1,
  temperature: 1,
  topP: 1,
  topK: -1,
  minP: 0,
  presencePenalty: 0,
  frequencyPenalty: 0,
  repetitionPenalty: 1,
  seed: null,
  stop: [],
  stopTokenIds: [],
  includeStopStrInOutput: false,
  ignoreEos: false,
  maxTokens: 16,
  minTokens: 0,
  logprobs: null,
  promptLogprobs: null,
  logitBias: null,
  allowedTokenIds: null,
  skipSpecialTokens: true,
  spacesBetweenSpecialTokens: true,
  useBeamSearch: false,
  lengthPenalty: 1,
  earlyStopping: false,
  structuredOutputs: null,
};

function fail(param: string, message: string): never {
  throw new InvalidRequestError(message, { param });
}

/** A value for an error message: short, and safe on hostile input (huge or deeply nested values). */
function show(v: unknown): string {
  if (typeof v === 'number') return String(v);
  let text: string;
  try {
    text = JSON.stringify(v) ?? String(v);
  } catch {
    // Too deep or cyclic for JSON (String() would recurse just as deep).
    text = `<${Array.isArray(v) ? 'array' : typeof v}>`;
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function num(param: string, v: unknown): number {
  if (typeof v !== 'number') fail(param, `${param} must be a number, got ${v === null ? 'null' : typeof v} ${show(v)}`);
  if (!Number.isFinite(v)) fail(param, `${param} must be a finite number, got ${v}`);
  return v;
}

function int(param: string, v: unknown): number {
  const x = num(param, v);
  if (!Number.isSafeInteger(x)) fail(param, `${param} must be an integer, got ${x}`);
  return x;
}

function bool(param: string, v: unknown): boolean {
  if (typeof v !== 'boolean') fail(param, `${param} must be a boolean, got ${show(v)}`);
  return v;
}

function tokenIdList(param: string, v: unknown, vocabSize: number): number[] {
  if (!Array.isArray(v)) fail(param, `${param} must be a list of token ids, got ${show(v)}`);
  return v.map((x: unknown) => {
    const id = int(param, x);
    if (id < 0 || id >= vocabSize) fail(param, `${param} contains out-of-vocab token id ${id} (valid ids are 0..${vocabSize - 1})`);
    return id;
  });
}

/**
 * Validate a request's sampling fields and fill in defaults. Fields that are `undefined` or `null`
 * take the model default (`ctx.defaults`) and then vLLM's default.
 */
export function makeSamplingParams(input: SamplingParamsInput, ctx: SamplingParamsContext): SamplingParams {
  const vocabSize = ctx.vocabSize;
  const maxLogprobs = ctx.maxLogprobs ?? MAX_LOGPROBS;
  const defaults = ctx.defaults ?? {};
  // Read through `unknown`: requests come from JSON and the static types cannot be trusted.
  const raw = input as Record<string, unknown>;
  const dflt = defaults as Record<string, unknown>;
  const pick = (key: keyof SamplingParams): unknown => {
    const v = raw[key];
    if (v !== undefined && v !== null) return v;
    const d = dflt[key];
    if (d !== undefined) return d;
    return (BUILTIN as unknown as Record<string, unknown>)[key];
  };

  // --- numbers of sequences
  const n = int('n', pick('n'));
  if (n < 1) fail('n', `n must be >= 1, got ${n}`);
  const bestOfRaw = raw['bestOf'];
  const bestOf = bestOfRaw === undefined || bestOfRaw === null ? n : int('best_of', bestOfRaw);
  if (bestOf < n) fail('best_of', `best_of must be >= n (n=${n}), got ${bestOf}`);

  // --- distribution shaping
  const temperature = num('temperature', pick('temperature'));
  if (temperature < 0) fail('temperature', `temperature must be >= 0, got ${temperature}`);
  let topP = num('top_p', pick('topP'));
  if (!(topP > 0 && topP <= 1)) fail('top_p', `top_p must be in (0, 1], got ${topP}`);
  let topK = int('top_k', pick('topK'));
  if (topK < -1) fail('top_k', `top_k must be -1 or 0 (disabled) or >= 1, got ${topK}`);
  if (topK === 0) topK = -1;
  let minP = num('min_p', pick('minP'));
  if (!(minP >= 0 && minP <= 1)) fail('min_p', `min_p must be in [0, 1], got ${minP}`);

  const presencePenalty = num('presence_penalty', pick('presencePenalty'));
  if (presencePenalty < -2 || presencePenalty > 2) fail('presence_penalty', `presence_penalty must be in [-2, 2], got ${presencePenalty}`);
  const frequencyPenalty = num('frequency_penalty', pick('frequencyPenalty'));
  if (frequencyPenalty < -2 || frequencyPenalty > 2) fail('frequency_penalty', `frequency_penalty must be in [-2, 2], got ${frequencyPenalty}`);
  const repetitionPenalty = num('repetition_penalty', pick('repetitionPenalty'));
  if (!(repetitionPenalty > 0)) fail('repetition_penalty', `repetition_penalty must be > 0, got ${repetitionPenalty}`);

  // --- seed
  const seedRaw = pick('seed');
  let seed: number | null = null;
  if (seedRaw !== null) {
    seed = int('seed', seedRaw);
    if (seed === -1) seed = null;
  }

  // --- lengths
  const maxTokens = int('max_tokens', raw['maxTokens'] ?? dflt['maxTokens'] ?? ctx.maxModelLen ?? BUILTIN.maxTokens);
  if (maxTokens < 1) fail('max_tokens', `max_tokens must be >= 1, got ${maxTokens}`);
  const minTokens = int('min_tokens', pick('minTokens'));
  if (minTokens < 0) fail('min_tokens', `min_tokens must be >= 0, got ${minTokens}`);
  if (minTokens > maxTokens) fail('min_tokens', `min_tokens must be <= max_tokens (${maxTokens}), got ${minTokens}`);

  // --- logprobs
  const logprobsOf = (param: string, v: unknown): number | null => {
    if (v === null) return null;
    // OpenAI's chat API sends `logprobs: true`; the server maps it, but accept the boolean here too.
    if (v === true) return 0;
    if (v === false) return null;
    const k = int(param, v);
    if (k < 0 || k > maxLogprobs) fail(param, `${param} must be in [0, ${maxLogprobs}], got ${k}`);
    return k;
  };
  const logprobs = logprobsOf('logprobs', pick('logprobs'));
  const promptLogprobs = logprobsOf('prompt_logprobs', pick('promptLogprobs'));

  // --- token constraints
  const logitBias = parseLogitBias(pick('logitBias'), vocabSize);
  const allowedRaw = pick('allowedTokenIds');
  let allowedTokenIds: number[] | null = null;
  if (allowedRaw !== null) {
    allowedTokenIds = tokenIdList('allowed_token_ids', allowedRaw, vocabSize);
    if (allowedTokenIds.length === 0) fail('allowed_token_ids', 'allowed_token_ids must not be empty');
  }
  const stopTokenIds = [...new Set(tokenIdList('stop_token_ids', pick('stopTokenIds'), vocabSize))];

  // --- stop strings
  const stopRaw = pick('stop');
  let stop: string[];
  if (typeof stopRaw === 'string') stop = [stopRaw];
  else if (Array.isArray(stopRaw)) stop = stopRaw as string[];
  else fail('stop', `stop must be a string or a list of strings, got ${show(stopRaw)}`);
  for (const s of stop) {
    if (typeof s !== 'string') fail('stop', `stop must contain only strings, got ${show(s)}`);
    if (s.length === 0) fail('stop', 'stop must not contain an empty string');
  }
  stop = [...new Set(stop)];
  if (stop.length > MAX_STOP_STRINGS) fail('stop', `stop may contain at most ${MAX_STOP_STRINGS} strings, got ${stop.length}`);

  const includeStopStrInOutput = bool('include_stop_str_in_output', pick('includeStopStrInOutput'));
  const ignoreEos = bool('ignore_eos', pick('ignoreEos'));
  const skipSpecialTokens = bool('skip_special_tokens', pick('skipSpecialTokens'));
  const spacesBetweenSpecialTokens = bool('spaces_between_special_tokens', pick('spacesBetweenSpecialTokens'));

  // --- beam search
  const useBeamSearch = bool('use_beam_search', pick('useBeamSearch'));
  const lengthPenalty = num('length_penalty', pick('lengthPenalty'));
  const es = pick('earlyStopping');
  if (es !== true && es !== false && es !== 'never') fail('early_stopping', `early_stopping must be true, false or "never", got ${show(es)}`);
  const earlyStopping: boolean | 'never' = es;

  // --- structured outputs (GrammarError, a 400, names what is wrong with the spec)
  const so = raw['structuredOutputs'];
  let structuredOutputs: GrammarSpec | null = null;
  if (so !== undefined && so !== null) {
    if (typeof so !== 'object' || Array.isArray(so)) fail('structured_outputs', `structured_outputs must be an object, got ${show(so)}`);
    normalizeSpec(so as GrammarSpec);
    structuredOutputs = so as GrammarSpec;
    // Their intersection with a grammar's mask could be empty, leaving no token to sample.
    if (allowedTokenIds !== null) fail('allowed_token_ids', 'allowed_token_ids cannot be combined with structured outputs (the grammar decides which tokens are allowed)');
  }

  const greedy = temperature < SAMPLING_EPS;
  if (useBeamSearch) {
    if (bestOf <= 1) fail('best_of', `best_of (the beam width) must be > 1 when using beam search, got ${bestOf}`);
    if (!greedy) fail('temperature', `temperature must be 0 when using beam search, got ${temperature}`);
    if (topP < 1) fail('top_p', `top_p must be 1 when using beam search, got ${topP}`);
    if (topK !== -1) fail('top_k', `top_k must be -1 (disabled) when using beam search, got ${topK}`);
    if (minP > 0) fail('min_p', `min_p must be 0 when using beam search, got ${minP}`);
  } else {
    if (earlyStopping !== false) fail('early_stopping', `early_stopping is only used by beam search and must be false, got ${show(earlyStopping)}`);
    if (Math.abs(lengthPenalty - 1) > SAMPLING_EPS) fail('length_penalty', `length_penalty is only used by beam search and must be 1, got ${lengthPenalty}`);
    if (greedy) {
      if (n > 1) fail('n', `n must be 1 when using greedy sampling (temperature 0), got ${n}`);
      if (bestOf > 1) fail('best_of', `best_of must be 1 when using greedy sampling (temperature 0), got ${bestOf}`);
    }
  }
  if (greedy) {
    // These cannot change an argmax; resetting them keeps the sampler on its single-pass path.
    topP = 1;
    topK = -1;
    minP = 0;
  }

  return {
    n,
    bestOf,
    temperature,
    topP,
    topK,
    minP,
    presencePenalty,
    frequencyPenalty,
    repetitionPenalty,
    seed,
    stop,
    stopTokenIds,
    includeStopStrInOutput,
    ignoreEos,
    maxTokens,
    minTokens,
    logprobs,
    promptLogprobs,
    logitBias,
    allowedTokenIds,
    skipSpecialTokens,
    spacesBetweenSpecialTokens,
    useBeamSearch,
    lengthPenalty,
    earlyStopping,
    structuredOutputs,
  };
}

function parseLogitBias(v: unknown, vocabSize: number): Map<number, number> | null {
  if (v === null) return null;
  const entries: Array<[unknown, unknown]> =
    v instanceof Map ? [...(v as Map<unknown, unknown>).entries()] : typeof v === 'object' && !Array.isArray(v) ? Object.entries(v as object) : fail('logit_bias', `logit_bias must be an object mapping token ids to biases, got ${show(v)}`);
  const out = new Map<number, number>();
  for (const [k, b] of entries) {
    // JSON keys are strings; accept only canonical non-negative integers ("12", not "1e1" or " 12").
    const id = typeof k === 'number' ? k : typeof k === 'string' && /^(0|[1-9][0-9]*)$/.test(k) ? Number(k) : NaN;
    if (!Number.isSafeInteger(id)) fail('logit_bias', `logit_bias keys must be token ids, got ${show(k)}`);
    if (id < 0 || id >= vocabSize) fail('logit_bias', `logit_bias contains out-of-vocab token id ${id} (valid ids are 0..${vocabSize - 1})`);
    if (typeof b !== 'number' || !Number.isFinite(b)) fail('logit_bias', `logit_bias value for token ${id} must be a finite number, got ${show(b)}`);
    if (b < -100 || b > 100) fail('logit_bias', `logit_bias value for token ${id} must be in [-100, 100], got ${b}`);
    out.set(id, b);
  }
  return out;
}
