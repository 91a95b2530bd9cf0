/**
 * `pagewise bench serve`: an open-loop load generator against any OpenAI-compatible server, measured
 * the way vLLM's `vllm bench serve` measures so the numbers compare with the field's:
 *
 * - requests arrive as a Poisson process at --request-rate (inf: all at once), independent of how
 *   fast the server answers (open loop); at most --max-concurrency are in flight (a client-side
 *   semaphore; a request waiting on it has not started its clock);
 * - every request streams (`stream: true`, usage in the last chunk); TTFT = time to the first chunk
 *   carrying a choice, ITL = gaps between successive such chunks, E2EL = time to the last one,
 *   TPOT = (E2EL − TTFT) / (output tokens − 1);
 * - output tokens come from the final usage chunk when the server sends one, else from the chunk count.
 *
 * Failed requests (HTTP errors, broken streams, timeouts) are counted and reported, never thrown.
 * The run is bounded by --num-prompts, --timeout-s per request and --max-duration-s overall.
 */
import { setMaxListeners } from 'node:events';
import { readFileSync, statSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { intFlag, numFlag, parseArgs, strFlag, UsageError } from '../cli/args.js';
import { PagewiseTokenizer } from '../tokenizer/tokenizer.js';
import { gitCommit, gitDirty, machineInfo, type MachineInfo } from './machine.js';
import { randomTokenRange } from './workload.js';
import {
  arrivalOffsets,
  goodput as computeGoodput,
  parseGoodput,
  peakConcurrency,
  randInt,
  seededRng,
  summarize,
  type Goodput,
  type Slo,
  type Summary,
} from './stats.js';

export interface ServeBenchOptions {
  /** Server root, e.g. http://127.0.0.1:8000 (a trailing /v1 is tolerated). */
  baseUrl: string;
  /** Model name sent with each request; when absent, the first model GET /v1/models lists. */
  model?: string;
  numPrompts: number;
  /** Requests per second of the Poisson arrivals; Infinity sends all at once. */
  requestRate: number;
  /** Most requests in flight; null for no limit. */
  maxConcurrency: number | null;
  /** Prompt length in tokens for random prompts (ignored with a dataset). */
  inputLen: number;
  /** max_tokens of each request (a dataset line's output_len wins). */
  outputLen: number;
  /** JSONL of {"prompt": "..."} or {"prompt_token_ids": [...]}, each with an optional "output_len". */
  dataset?: string;
  seed: number;
  endpoint: string;
  goodput?: Slo;
  timeoutS: number;
  maxDurationS: number;
  /**
   * Random prompt token ids are drawn uniformly from [lo, hi). null: inside the served model's
   * vocabulary (from --tokenizer, else the vocab_size GET /v1/models reports).
   */
  tokenIdRange: [number, number] | null;
  /** A tokenizer.json or model directory whose vocabulary bounds the random prompt ids. */
  tokenizer?: string;
  /** Send vLLM's ignore_eos so every request produces exactly max_tokens. */
  ignoreEos: boolean;
  apiKey?: string;
}

export interface ServeBenchResult {
  bench: 'serve';
  timestamp: string;
  base_url: string;
  endpoint: string;
  model: string;
  num_prompts: number;
  /** "inf" when every request was sent at once (JSON has no Infinity). */
  request_rate: number | 'inf';
  max_concurrency: number | null;
  input_len: number | null;
  output_len: number;
  dataset: string | null;
  seed: number;
  token_id_range: [number, number] | null;
  /** Whether ignore_eos was sent (false when asked not to, or when the server rejected it). */
  ignore_eos: boolean;
  completed: number;
  failed: number;
  duration_s: number;
  request_throughput: number;
  output_tokens_per_s: number;
  total_tokens_per_s: number;
  input_tokens: number;
  output_tokens: number;
  ttft_ms: Summary | null;
  tpot_ms: Summary | null;
  itl_ms: Summary | null;
  e2el_ms: Summary | null;
  goodput?: Goodput;
  /** Most requests the server had in flight at once, measured from the request intervals. */
  peak_concurrency: number;
  /** True when --max-duration-s stopped the run (unsent and aborted requests count as failed). */
  capped: boolean;
  /** The first few error messages of failed requests. */
  errors: string[];
  machine: MachineInfo;
  git_commit: string | null;
  git_dirty: boolean | null;
}

export const SERVE_DEFAULTS = {
  baseUrl: 'http://127.0.0.1:8000',
  numPrompts: 64,
  requestRate: Infinity,
  maxConcurrency: null,
  inputLen: 128,
  outputLen: 128,
  seed: 0,
  endpoint: '/v1/completions',
  timeoutS: 600,
  maxDurationS: 3600,
  tokenIdRange: null,
  ignoreEos: true,
} satisfies Omit<ServeBenchOptions, 'model'>;

const MAX_ERRORS_REPORTED = 5;

export const SERVE_USAGE = `pagewise bench serve — open-loop load test of an OpenAI-compatible server

  --base-url URL          server root (default ${SERVE_DEFAULTS.baseUrl})
  --model NAME            model to request (default: the first one GET /v1/models lists)
  --num-prompts N         requests to send (default ${SERVE_DEFAULTS.numPrompts})
  --request-rate R|inf    Poisson arrivals per second; inf sends all at once (default inf)
  --max-concurrency C     most requests in flight (default: no limit)
  --input-len L           random prompt length in tokens (default ${SERVE_DEFAULTS.inputLen})
  --output-len O          max_tokens per request (default ${SERVE_DEFAULTS.outputLen})
  --dataset FILE.jsonl    prompts instead of random ids: {"prompt": "..."} or {"prompt_token_ids": [...]},
                          each with an optional "output_len"
  --token-id-range A:B    random prompt ids drawn from [A, B) (default: the model's vocabulary, from
                          --tokenizer or the vocab_size GET /v1/models reports; else 100:1000)
  --tokenizer PATH        a tokenizer.json or model directory: random prompt ids stay in its vocabulary
  --seed S                seed of prompts and arrival times (default 0)
  --endpoint PATH         /v1/completions (default) or /v1/chat/completions (text prompts only)
  --goodput ttft:MS tpot:MS e2el:MS
                          SLOs; reports requests/s that met all those given
  --timeout-s T           per-request timeout (default ${SERVE_DEFAULTS.timeoutS})
  --max-duration-s T      cap on the whole run; unsent/aborted requests count as failed (default ${SERVE_DEFAULTS.maxDurationS})
  --no-ignore-eos         do not send vLLM's ignore_eos (outputs may then stop early at EOS)
  --api-key KEY           bearer token (default: $OPENAI_API_KEY)
  --json                  print one JSON object instead of a table
`;

const FLAGS = {
  values: [
    'base-url',
    'model',
    'num-prompts',
    'request-rate',
    'max-concurrency',
    'input-len',
    'output-len',
    'dataset',
    'token-id-range',
    'tokenizer',
    'seed',
    'endpoint',
    'goodput',
    'timeout-s',
    'max-duration-s',
    'api-key',
  ],
  booleans: ['json', 'no-ignore-eos', 'help'],
} as const;

/**
 * `--goodput ttft:500 tpot:50` spreads its SLOs over several argv words (vLLM's spelling); gather
 * them into one value so the strict flag parser sees `--goodput "ttft:500 tpot:50"`.
 */
function gatherGoodput(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a !== '--goodput' && !a.startsWith('--goodput=')) {
      out.push(a);
      continue;
    }
    const parts = a === '--goodput' ? [] : [a.slice('--goodput='.length)];
    while (i + 1 < argv.length && !argv[i + 1]!.startsWith('--')) parts.push(argv[++i]!);
    out.push(parts.length === 0 ? '--goodput' : `--goodput=${parts.join(' ')}`);
  }
  return out;
}

/** Parses and validates the command line into options (throws UsageError with the reason). */
export function parseServeArgs(argv: readonly string[]): ServeBenchOptions & { json: boolean; help: boolean } {
  const f = parseArgs(gatherGoodput(argv), FLAGS);
  const bad = (msg: string): never => {
    throw new UsageError(msg);
  };
  const o: ServeBenchOptions & { json: boolean; help: boolean } = {
    ...SERVE_DEFAULTS,
    json: f.get('json') === true,
    help: f.get('help') === true,
    ignoreEos: f.get('no-ignore-eos') !== true,
  };
  const baseUrl = strFlag(f, 'base-url');
  if (baseUrl !== undefined) {
    if (!/^https?:\/\/[^/]/.test(baseUrl)) bad(`--base-url must be an http(s) URL, got "${baseUrl}"`);
    o.baseUrl = baseUrl;
  }
  const model = strFlag(f, 'model');
  if (model !== undefined) o.model = model;
  const n = intFlag(f, 'num-prompts');
  if (n !== undefined) o.numPrompts = n >= 1 && n <= 1_000_000 ? n : bad('--num-prompts must be in [1, 1000000]');
  const rate = strFlag(f, 'request-rate');
  if (rate !== undefined) {
    const r = rate === 'inf' ? Infinity : numFlag(f, 'request-rate')!;
    o.requestRate = r > 0 ? r : bad('--request-rate must be positive or "inf"');
  }
  const c = intFlag(f, 'max-concurrency');
  if (c !== undefined) o.maxConcurrency = c >= 1 ? c : bad('--max-concurrency must be at least 1');
  const dataset = strFlag(f, 'dataset');
  if (dataset !== undefined) o.dataset = dataset;
  const il = intFlag(f, 'input-len');
  if (il !== undefined) {
    if (dataset !== undefined) bad('--input-len and --dataset exclude each other (the dataset sets the prompts)');
    o.inputLen = il >= 1 ? il : bad('--input-len must be at least 1');
  }
  const ol = intFlag(f, 'output-len');
  if (ol !== undefined) o.outputLen = ol >= 1 ? ol : bad('--output-len must be at least 1');
  const range = strFlag(f, 'token-id-range');
  if (range !== undefined) {
    const m = /^(\d+):(\d+)$/.exec(range);
    const lo = m ? Number(m[1]) : NaN;
    const hi = m ? Number(m[2]) : NaN;
    if (!(lo < hi)) bad(`--token-id-range must be A:B with 0 <= A < B, got "${range}"`);
    o.tokenIdRange = [lo, hi];
  }
  const tokenizer = strFlag(f, 'tokenizer');
  if (tokenizer !== undefined) o.tokenizer = tokenizer;
  const seed = intFlag(f, 'seed');
  if (seed !== undefined) o.seed = seed;
  const endpoint = strFlag(f, 'endpoint');
  if (endpoint !== undefined) o.endpoint = endpoint.startsWith('/') ? endpoint : bad('--endpoint must start with "/"');
  const gp = strFlag(f, 'goodput');
  if (gp !== undefined) {
    try {
      o.goodput = parseGoodput(gp);
    } catch (err) {
      bad((err as Error).message);
    }
  }
  const t = numFlag(f, 'timeout-s');
  if (t !== undefined) o.timeoutS = t > 0 ? t : bad('--timeout-s must be positive');
  const md = numFlag(f, 'max-duration-s');
  if (md !== undefined) o.maxDurationS = md > 0 ? md : bad('--max-duration-s must be positive');
  const key = strFlag(f, 'api-key') ?? process.env['OPENAI_API_KEY'];
  if (key !== undefined && key !== '') o.apiKey = key;
  return o;
}

/** One request to send. */
export interface BenchPrompt {
  prompt: string | number[];
  /** Prompt tokens when known on the client (token-id prompts); the server's usage wins. */
  promptLen: number | null;
  outputLen: number;
}

/** Random token-id prompts, or the dataset's lines (cycled when it has fewer than numPrompts). */
export function buildPrompts(o: ServeBenchOptions): BenchPrompt[] {
  if (o.dataset === undefined) {
    if (o.tokenIdRange === null) throw new Error('random prompts need a token id range (see resolveTokenIdRange)');
    const rng = seededRng(o.seed);
    const [lo, hi] = o.tokenIdRange;
    return Array.from({ length: o.numPrompts }, () => {
      const ids = Array.from({ length: o.inputLen }, () => randInt(rng, lo, hi));
      return { prompt: ids, promptLen: ids.length, outputLen: o.outputLen };
    });
  }
  let text: string;
  try {
    text = readFileSync(o.dataset, 'utf8');
  } catch (err) {
    throw new UsageError(`--dataset: cannot read ${o.dataset}: ${(err as Error).message}`);
  }
  const lines: BenchPrompt[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    const where = `--dataset ${o.dataset}:${i + 1}`;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch {
      throw new UsageError(`${where}: not JSON`);
    }
    if (typeof obj !== 'object' || obj === null) throw new UsageError(`${where}: expected an object`);
    const rec = obj as Record<string, unknown>;
    const out = rec['output_len'] ?? o.outputLen;
    if (!Number.isInteger(out) || (out as number) < 1) throw new UsageError(`${where}: output_len must be a positive integer`);
    const ids = rec['prompt_token_ids'];
    if (Array.isArray(ids)) {
      if (ids.length === 0 || !ids.every((x) => Number.isInteger(x) && x >= 0)) {
        throw new UsageError(`${where}: prompt_token_ids must be a non-empty list of token ids`);
      }
      lines.push({ prompt: ids as number[], promptLen: ids.length, outputLen: out as number });
    } else if (typeof rec['prompt'] === 'string' && rec['prompt'] !== '') {
      lines.push({ prompt: rec['prompt'], promptLen: null, outputLen: out as number });
    } else {
      throw new UsageError(`${where}: needs "prompt" (a string) or "prompt_token_ids" (a list)`);
    }
  });
  if (lines.length === 0) throw new UsageError(`--dataset ${o.dataset}: no prompts`);
  return Array.from({ length: o.numPrompts }, (_, i) => lines[i % lines.length]!);
}

/**
 * Incremental Server-Sent-Events parser: feed decoded text as it arrives, get the `data` payloads
 * of every event completed so far. Handles CRLF, events split across reads, several `data:` lines
 * in one event, and comment lines (`: ping`).
 */
export class SseParser {
  private buf = '';
  private data: string[] = [];

  push(text: string): string[] {
    this.buf += text;
    const out: string[] = [];
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      let line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      if (line.endsWith('\r')) line = line.slice(0, -1);
      this.line(line, out);
    }
    return out;
  }

  /** The stream ended: an event not closed by a blank line still counts. */
  end(): string[] {
    const out: string[] = [];
    if (this.buf !== '') this.line(this.buf.endsWith('\r') ? this.buf.slice(0, -1) : this.buf, out);
    this.buf = '';
    this.line('', out);
    return out;
  }

  private line(line: string, out: string[]): void {
    if (line === '') {
      if (this.data.length > 0) out.push(this.data.join('\n'));
      this.data = [];
      return;
    }
    if (line.startsWith(':')) return;
    const i = line.indexOf(':');
    const field = i < 0 ? line : line.slice(0, i);
    if (field !== 'data') return;
    let value = i < 0 ? '' : line.slice(i + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    this.data.push(value);
  }
}

/** What one request measured; times in ms, start relative to the benchmark start. */
export interface RequestOutcome {
  ok: boolean;
  error: string | null;
  start_ms: number;
  ttft_ms: number;
  e2el_ms: number;
  itl_ms: number[];
  output_tokens: number;
  prompt_tokens: number;
}

interface RunContext {
  url: string;
  model: string;
  chat: boolean;
  headers: Record<string, string>;
  timeoutMs: number;
  /** Aborted when the overall cap is reached. */
  cap: AbortSignal;
  t0: number;
  /** Shared: flips to false for the rest of the run once the server rejects ignore_eos. */
  ignoreEos: boolean;
}

function snippet(s: string, n = 300): string {
  const t = s.replace(/\s+/g, ' ').trim();
  return t.length > n ? `${t.slice(0, n)}…` : t;
}

function describeError(err: unknown, signal: AbortSignal): string {
  if (signal.aborted) {
    const r: unknown = signal.reason;
    return r instanceof Error ? r.message : String(r);
  }
  if (err instanceof Error) {
    const cause = (err as Error & { cause?: unknown }).cause;
    const c = cause instanceof Error ? cause.message : cause === undefined ? '' : String(cause);
    return c !== '' && c !== err.message ? `${err.message}: ${c}` : err.message;
  }
  return String(err);
}

function failed(start: number, error: string): RequestOutcome {
  return { ok: false, error, start_ms: start, ttft_ms: 0, e2el_ms: 0, itl_ms: [], output_tokens: 0, prompt_tokens: 0 };
}

type Attempt = { outcome: RequestOutcome } | { rejectedIgnoreEos: true };

async function attempt(ctx: RunContext, p: BenchPrompt, ignoreEos: boolean): Promise<Attempt> {
  const payload: Record<string, unknown> = {
    model: ctx.model,
    max_tokens: p.outputLen,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  };
  if (ctx.chat) payload['messages'] = [{ role: 'user', content: p.prompt }];
  else payload['prompt'] = p.prompt;
  if (ignoreEos) payload['ignore_eos'] = true;

  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new Error(`timed out after ${ctx.timeoutMs / 1000} s`)), ctx.timeoutMs);
  const onCap = (): void => ac.abort(new Error('aborted: --max-duration-s reached'));
  if (ctx.cap.aborted) onCap();
  else ctx.cap.addEventListener('abort', onCap, { once: true });

  const st = performance.now();
  const start = st - ctx.t0;
  try {
    const res = await fetch(ctx.url, { method: 'POST', headers: ctx.headers, body: JSON.stringify(payload), signal: ac.signal });
    if (res.status !== 200) {
      const body = await res.text().catch(() => '');
      if (ignoreEos && (res.status === 400 || res.status === 422) && body.includes('ignore_eos')) return { rejectedIgnoreEos: true };
      return { outcome: failed(start, `HTTP ${res.status}${body === '' ? '' : `: ${snippet(body)}`}`) };
    }
    if (res.body === null) return { outcome: failed(start, 'HTTP 200 without a body') };
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    const sse = new SseParser();
    let first = -1;
    let last = st;
    const itl: number[] = [];
    let chunks = 0;
    let usageOut: number | null = null;
    let usagePrompt: number | null = null;
    let finished = false;
    let problem: string | null = null;
    const handle = (events: string[], now: number): void => {
      for (const data of events) {
        if (problem !== null) return;
        if (data === '[DONE]') {
          finished = true;
          continue;
        }
        let obj: Record<string, unknown>;
        try {
          obj = JSON.parse(data) as Record<string, unknown>;
        } catch {
          problem = `stream carried non-JSON data: ${snippet(data, 120)}`;
          return;
        }
        if (obj['error'] !== undefined && obj['error'] !== null) {
          const e = obj['error'] as { message?: unknown };
          problem = `error in stream: ${snippet(typeof e.message === 'string' ? e.message : JSON.stringify(obj['error']))}`;
          return;
        }
        const choices = obj['choices'];
        if (Array.isArray(choices) && choices.length > 0) {
          if (first < 0) first = now;
          else itl.push(now - last);
          last = now;
          chunks++;
          const fr = (choices[0] as { finish_reason?: unknown }).finish_reason;
          if (fr !== undefined && fr !== null) finished = true;
        }
        const usage = obj['usage'] as { completion_tokens?: unknown; prompt_tokens?: unknown } | null | undefined;
        if (usage && typeof usage === 'object') {
          if (typeof usage.completion_tokens === 'number') usageOut = usage.completion_tokens;
          if (typeof usage.prompt_tokens === 'number') usagePrompt = usage.prompt_tokens;
        }
      }
    };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      handle(sse.push(decoder.decode(value, { stream: true })), performance.now());
      if (problem !== null) {
        await reader.cancel().catch(() => undefined);
        return { outcome: failed(start, problem) };
      }
    }
    const now = performance.now();
    handle(sse.push(decoder.decode()), now);
    handle(sse.end(), now);
    if (problem !== null) return { outcome: failed(start, problem) };
    if (first < 0) return { outcome: failed(start, 'stream ended without a token chunk (is the endpoint streaming SSE?)') };
    if (!finished) return { outcome: failed(start, 'stream ended before [DONE] or a finish_reason') };
    return {
      outcome: {
        ok: true,
        error: null,
        start_ms: start,
        ttft_ms: first - st,
        e2el_ms: last - st,
        itl_ms: itl,
        output_tokens: usageOut ?? chunks,
        prompt_tokens: usagePrompt ?? p.promptLen ?? 0,
      },
    };
  } catch (err) {
    return { outcome: failed(start, describeError(err, ac.signal)) };
  } finally {
    clearTimeout(timer);
    ctx.cap.removeEventListener('abort', onCap);
    // Releases the connection if we stopped reading early; a no-op after a complete response.
    ac.abort(new Error('done'));
  }
}

async function sendRequest(ctx: RunContext, p: BenchPrompt): Promise<RequestOutcome> {
  const first = await attempt(ctx, p, ctx.ignoreEos);
  if ('outcome' in first) return first.outcome;
  // The server rejects vLLM's ignore_eos extension: stop sending it, and say so in the result.
  ctx.ignoreEos = false;
  const second = await attempt(ctx, p, false);
  return 'outcome' in second ? second.outcome : failed(0, 'server rejected the request without ignore_eos too');
}

/** A counting semaphore whose waiters give up when `signal` aborts (acquire resolves false). */
class Semaphore {
  private waiting: ((ok: boolean) => void)[] = [];
  constructor(private free: number) {}

  acquire(signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) return Promise.resolve(false);
    if (this.free > 0) {
      this.free--;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const onAbort = (): void => {
        this.waiting = this.waiting.filter((w) => w !== wake);
        resolve(false);
      };
      const wake = (ok: boolean): void => {
        signal.removeEventListener('abort', onAbort);
        resolve(ok);
      };
      this.waiting.push(wake);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  release(): void {
    const next = this.waiting.shift();
    if (next) next(true);
    else this.free++;
  }
}

/** A model GET /v1/models lists; `vocabSize` where the server reports it (Pagewise does). */
interface ServedModel {
  id: string;
  vocabSize: number | null;
}

/** The models the server lists at GET /v1/models. */
async function servedModels(root: string, headers: Record<string, string>, timeoutMs: number): Promise<ServedModel[]> {
  const res = await fetch(`${root}/v1/models`, { headers, signal: AbortSignal.timeout(Math.min(timeoutMs, 30_000)) });
  if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
  const body = (await res.json()) as { data?: { id?: unknown; vocab_size?: unknown }[] };
  const models = (body.data ?? []).flatMap((m) =>
    typeof m.id === 'string' ? [{ id: m.id, vocabSize: Number.isSafeInteger(m.vocab_size) && (m.vocab_size as number) > 1 ? (m.vocab_size as number) : null }] : [],
  );
  if (models.length === 0) throw new Error('no models listed');
  return models;
}

/** Random prompt ids when neither the options nor the server say what fits (vLLM reports no vocabulary). */
export const FALLBACK_TOKEN_ID_RANGE: [number, number] = [100, 1000];

/** The number of ids in a tokenizer.json's vocabulary, or in a model directory's tokenizer's. */
function tokenizerVocabSize(path: string): number {
  try {
    if (statSync(path).isDirectory()) return PagewiseTokenizer.fromDir(path).vocabSize;
    return new PagewiseTokenizer(JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>, {}).vocabSize;
  } catch (err) {
    throw new UsageError(`--tokenizer ${path}: ${(err as Error).message}`);
  }
}

/**
 * Where random prompt ids come from: --token-id-range (checked against the vocabulary when it is
 * known), else the vocabulary of --tokenizer or the one the server reports, else the fallback.
 * `note` hears which, so the run says what it sent.
 */
export function resolveTokenIdRange(o: ServeBenchOptions, served: ServedModel | null, note: (s: string) => void): [number, number] {
  const vocab = o.tokenizer !== undefined ? tokenizerVocabSize(o.tokenizer) : (served?.vocabSize ?? null);
  const from = o.tokenizer !== undefined ? `--tokenizer ${o.tokenizer}` : `the server's vocab_size`;
  if (o.tokenIdRange !== null) {
    if (vocab !== null && o.tokenIdRange[1] > vocab) {
      throw new UsageError(`--token-id-range ${o.tokenIdRange.join(':')} reaches past the model's vocabulary (${vocab} ids, from ${from})`);
    }
    note(`random prompt token ids from [${o.tokenIdRange.join(', ')}) (--token-id-range)`);
    return o.tokenIdRange;
  }
  if (vocab !== null) {
    const range = randomTokenRange(vocab);
    note(`random prompt token ids from [${range.join(', ')}) (a vocabulary of ${vocab} ids, from ${from})`);
    return range;
  }
  note(
    `random prompt token ids from [${FALLBACK_TOKEN_ID_RANGE.join(', ')}): the server reports no vocab_size; ` +
      'pass --tokenizer or --token-id-range if that is outside its vocabulary',
  );
  return FALLBACK_TOKEN_ID_RANGE;
}

/**
 * Runs the load test and returns the result; throws only for bad options or an unreachable
 * /v1/models when the model must be read from it. `note` hears what the run chose (the prompt ids).
 */
export async function runServeBench(opts: ServeBenchOptions, note: (s: string) => void = () => undefined): Promise<ServeBenchResult> {
  const chat = /chat\/completions$/.test(opts.endpoint);
  // Accept an OpenAI-style base URL ending in /v1 as well as the server root.
  let root = opts.baseUrl.replace(/\/+$/, '');
  if (root.endsWith('/v1') && opts.endpoint.startsWith('/v1/')) root = root.slice(0, -3);
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'text/event-stream' };
  if (opts.apiKey !== undefined) headers['authorization'] = `Bearer ${opts.apiKey}`;
  const randomPrompts = opts.dataset === undefined;
  // The model list names the model when none was given, and the vocabulary random prompts fit in.
  let served: ServedModel | null = null;
  if (opts.model === undefined || (randomPrompts && opts.tokenizer === undefined)) {
    try {
      const models = await servedModels(root, headers, opts.timeoutS * 1000);
      served = opts.model === undefined ? models[0]! : (models.find((m) => m.id === opts.model) ?? null);
    } catch (err) {
      const msg = err instanceof Error ? describeError(err, new AbortController().signal) : String(err);
      if (opts.model === undefined) throw new UsageError(`no --model given and GET ${root}/v1/models failed (${msg}); is the server up?`);
      note(`GET ${root}/v1/models failed (${msg})`);
    }
  }
  const model = opts.model ?? served!.id;
  const o: ServeBenchOptions = { ...opts, tokenIdRange: randomPrompts ? resolveTokenIdRange(opts, served, note) : opts.tokenIdRange };
  const prompts = buildPrompts(o);
  if (chat && prompts.some((p) => typeof p.prompt !== 'string')) {
    throw new UsageError(`${o.endpoint} takes text prompts: use --dataset with "prompt" strings`);
  }

  // Arrivals use their own stream so changing the rate never changes the prompts.
  const offsets = arrivalOffsets(o.numPrompts, o.requestRate, seededRng(o.seed ^ 0x5bd1e995));
  const capAc = new AbortController();
  // Every request in flight listens on it (and removes its listener when done): at concurrency
  // above 10 Node would warn of a leak that is not one.
  setMaxListeners(0, capAc.signal);
  const ctx: RunContext = {
    url: root + o.endpoint,
    model,
    chat,
    headers,
    timeoutMs: o.timeoutS * 1000,
    cap: capAc.signal,
    t0: performance.now(),
    ignoreEos: o.ignoreEos,
  };
  const capTimer = setTimeout(() => capAc.abort(new Error('--max-duration-s reached')), o.maxDurationS * 1000);
  const sem = o.maxConcurrency === null ? null : new Semaphore(o.maxConcurrency);
  const notSent = (): RequestOutcome => failed(performance.now() - ctx.t0, 'not sent: --max-duration-s reached');

  const limited = async (p: BenchPrompt): Promise<RequestOutcome> => {
    if (sem === null) return sendRequest(ctx, p);
    if (!(await sem.acquire(capAc.signal))) return notSent();
    try {
      return await sendRequest(ctx, p);
    } finally {
      sem.release();
    }
  };

  const tasks: Promise<RequestOutcome>[] = [];
  for (let i = 0; i < prompts.length; i++) {
    const wait = ctx.t0 + offsets[i]! * 1000 - performance.now();
    if (wait > 0 && !capAc.signal.aborted) await sleep(wait, undefined, { signal: capAc.signal }).catch(() => undefined);
    tasks.push(capAc.signal.aborted ? Promise.resolve(notSent()) : limited(prompts[i]!));
  }
  const outcomes = await Promise.all(tasks);
  const durationS = (performance.now() - ctx.t0) / 1000;
  clearTimeout(capTimer);
  return summarizeRun(o, model, ctx.ignoreEos, capAc.signal.aborted, outcomes, durationS);
}

/** Turns per-request outcomes into the reported metrics (vLLM's definitions). Exported for tests. */
export function summarizeRun(
  o: ServeBenchOptions,
  model: string,
  ignoreEosSent: boolean,
  capped: boolean,
  outcomes: readonly RequestOutcome[],
  durationS: number,
): ServeBenchResult {
  const ok = outcomes.filter((r) => r.ok);
  const ttft = ok.map((r) => r.ttft_ms);
  const e2el = ok.map((r) => r.e2el_ms);
  const itl = ok.flatMap((r) => r.itl_ms);
  const tpotOf = (r: RequestOutcome): number | null => (r.output_tokens > 1 ? (r.e2el_ms - r.ttft_ms) / (r.output_tokens - 1) : null);
  const tpot = ok.map(tpotOf).filter((x): x is number => x !== null);
  const inputTokens = ok.reduce((s, r) => s + r.prompt_tokens, 0);
  const outputTokens = ok.reduce((s, r) => s + r.output_tokens, 0);
  const dur = durationS > 0 ? durationS : Number.MIN_VALUE;
  const round = (x: number, d = 3): number => Math.round(x * 10 ** d) / 10 ** d;
  const roundSummary = (s: Summary | null): Summary | null =>
    s === null ? null : { mean: round(s.mean), p50: round(s.p50), p90: round(s.p90), p99: round(s.p99) };
  const errors: string[] = [];
  for (const r of outcomes) {
    if (!r.ok && r.error !== null && errors.length < MAX_ERRORS_REPORTED) errors.push(r.error);
  }
  const result: ServeBenchResult = {
    bench: 'serve',
    timestamp: new Date().toISOString(),
    base_url: o.baseUrl,
    endpoint: o.endpoint,
    model,
    num_prompts: o.numPrompts,
    request_rate: o.requestRate === Infinity ? 'inf' : o.requestRate,
    max_concurrency: o.maxConcurrency,
    input_len: o.dataset === undefined ? o.inputLen : null,
    output_len: o.outputLen,
    dataset: o.dataset ?? null,
    seed: o.seed,
    token_id_range: o.dataset === undefined && o.tokenIdRange !== null ? [...o.tokenIdRange] : null,
    ignore_eos: ignoreEosSent,
    completed: ok.length,
    failed: outcomes.length - ok.length,
    duration_s: round(durationS),
    request_throughput: round(ok.length / dur),
    output_tokens_per_s: round(outputTokens / dur),
    total_tokens_per_s: round((inputTokens + outputTokens) / dur),
    input_tokens: inputTokens,
    output_tokens: outputTokens,
    ttft_ms: roundSummary(summarize(ttft)),
    tpot_ms: roundSummary(summarize(tpot)),
    itl_ms: roundSummary(summarize(itl)),
    e2el_ms: roundSummary(summarize(e2el)),
    peak_concurrency: peakConcurrency(ok.map((r) => ({ start: r.start_ms, end: r.start_ms + r.e2el_ms }))),
    capped,
    errors,
    machine: machineInfo(),
    git_commit: gitCommit(),
    git_dirty: gitDirty(),
  };
  if (o.goodput !== undefined && durationS > 0) {
    const g = computeGoodput(
      ok.map((r) => ({ ttft_ms: r.ttft_ms, tpot_ms: tpotOf(r), e2el_ms: r.e2el_ms })),
      o.goodput,
      durationS,
    );
    result.goodput = { ...g, request_goodput: round(g.request_goodput) };
  }
  return result;
}

/** The human-readable report (vLLM's layout). */
export function formatServeTable(r: ServeBenchResult): string {
  const W = 50;
  const row = (k: string, v: string | number | null): string => `${k.padEnd(W - 10)}${String(v ?? '-').padStart(10)}`;
  const f2 = (x: number | null | undefined): string => (x === null || x === undefined ? '-' : x.toFixed(2));
  const title = (t: string, fill = '-'): string => {
    const pad = Math.max(0, W - t.length - 2);
    return `${fill.repeat(Math.floor(pad / 2))} ${t} ${fill.repeat(Math.ceil(pad / 2))}`;
  };
  const lines = [
    title('Serving Benchmark Result', '='),
    row('Model:', r.model),
    row('Traffic request rate (req/s):', r.request_rate),
    row('Max request concurrency:', r.max_concurrency ?? 'none'),
    ...(r.token_id_range ? [row('Random prompt token ids:', `${r.token_id_range[0]}:${r.token_id_range[1]}`)] : []),
    row('Successful requests:', r.completed),
    row('Failed requests:', r.failed),
    row('Benchmark duration (s):', f2(r.duration_s)),
    row('Total input tokens:', r.input_tokens),
    row('Total generated tokens:', r.output_tokens),
    row('Request throughput (req/s):', f2(r.request_throughput)),
  ];
  if (r.goodput) lines.push(row('Request goodput (req/s):', f2(r.goodput.request_goodput)));
  lines.push(
    row('Output token throughput (tok/s):', f2(r.output_tokens_per_s)),
    row('Total token throughput (tok/s):', f2(r.total_tokens_per_s)),
    row('Peak concurrent requests:', r.peak_concurrency),
  );
  const block = (name: string, key: 'ttft_ms' | 'tpot_ms' | 'itl_ms' | 'e2el_ms', label: string): void => {
    const s = r[key];
    lines.push(title(name));
    lines.push(row(`Mean ${label} (ms):`, f2(s?.mean)));
    lines.push(row(`Median ${label} (ms):`, f2(s?.p50)));
    lines.push(row(`P90 ${label} (ms):`, f2(s?.p90)));
    lines.push(row(`P99 ${label} (ms):`, f2(s?.p99)));
  };
  block('Time to First Token', 'ttft_ms', 'TTFT');
  block('Time per Output Token (excl. 1st token)', 'tpot_ms', 'TPOT');
  block('Inter-token Latency', 'itl_ms', 'ITL');
  block('End-to-end Latency', 'e2el_ms', 'E2EL');
  lines.push('='.repeat(W));
  if (!r.ignore_eos) lines.push('note: ignore_eos was not sent; requests may have stopped before max_tokens');
  if (r.capped) lines.push('note: --max-duration-s stopped the run early');
  for (const e of r.errors) lines.push(`error: ${e}`);
  lines.push(`machine: ${r.machine.cpu_model}, ${r.machine.cores} cores / ${r.machine.threads} threads; commit ${r.git_commit ?? 'unknown'}${r.git_dirty ? ' (dirty)' : ''}`);
  return `${lines.join('\n')}\n`;
}

export interface BenchIo {
  out: (s: string) => void;
  err: (s: string) => void;
}

const stdio: BenchIo = {
  out: (s) => void process.stdout.write(s),
  err: (s) => void process.stderr.write(s),
};

/** `pagewise bench serve ...`: parse flags, run, print JSON (--json) or a table. */
export async function benchServe(argv: string[], io: BenchIo = stdio): Promise<void> {
  const o = parseServeArgs(argv);
  if (o.help) {
    io.out(SERVE_USAGE);
    return;
  }
  const { json, help: _help, ...opts } = o;
  const rate = opts.requestRate === Infinity ? 'inf' : String(opts.requestRate);
  io.err(
    `bench serve: ${opts.numPrompts} requests to ${opts.baseUrl}${opts.endpoint}, rate ${rate} req/s, ` +
      `max concurrency ${opts.maxConcurrency ?? 'none'}\n`,
  );
  const r = await runServeBench(opts, (s) => io.err(`bench serve: ${s}\n`));
  io.out(json ? `${JSON.stringify(r)}\n` : formatServeTable(r));
  if (r.completed === 0) process.exitCode = 1;
}
