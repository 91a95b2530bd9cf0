/**
 * Prometheus metrics with vLLM's names, types, label names, buckets and meanings, under a
 * `pagewise:` prefix instead of `vllm:` (vllm/v1/metrics/loggers.py), so dashboards and routers
 * built for vLLM (e.g. the Gateway API Inference Extension, which reads
 * `num_requests_waiting` and `kv_cache_usage_perc`) work with the prefix swapped.
 *
 * Counters carry the `_total` suffix in their registered name, which is how Python's
 * prometheus_client exposes vLLM's counters (`vllm:prompt_tokens` is scraped as
 * `vllm:prompt_tokens_total`).
 *
 * Sources: engine stats after every step (scheduler gauges, KV usage, cumulative token,
 * preemption and prefix-cache counters) and each finished request's timings (latency histograms).
 * Inter-token latency is observed by the request handlers from the engine's token timestamps.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { RequestOutput } from '../engine/output-processor.js';
import type { EngineInfo, EngineStats } from '../engine/protocol.js';

export const METRIC_PREFIX = 'pagewise:';

type Labels = 'model_name' | 'engine';

/** vLLM's 1-2-5 buckets up to `max` (request token counts). */
export function buckets125(max: number): number[] {
  const out: number[] = [];
  for (let e = 1; ; e *= 10) {
    for (const m of [1, 2, 5]) {
      if (m * e > max) return out;
      out.push(m * e);
    }
  }
}

const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0];
const ITL_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
const LATENCY_BUCKETS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0];

export class ServerMetrics {
  readonly registry = new Registry();
  private readonly labels: Record<Labels, string>;
  private readonly running: Gauge<Labels>;
  private readonly waiting: Gauge<Labels>;
  private readonly kvUsage: Gauge<Labels>;
  private readonly prefixQueries: Counter<Labels>;
  private readonly prefixHits: Counter<Labels>;
  private readonly preemptions: Counter<Labels>;
  private readonly promptTokens: Counter<Labels>;
  private readonly generationTokens: Counter<Labels>;
  private readonly requestSuccess: Counter<Labels | 'finished_reason'>;
  private readonly iterationTokens: Histogram<Labels>;
  private readonly requestPromptTokens: Histogram<Labels>;
  private readonly requestGenerationTokens: Histogram<Labels>;
  private readonly paramsN: Histogram<Labels>;
  private readonly paramsMaxTokens: Histogram<Labels>;
  private readonly ttft: Histogram<Labels>;
  private readonly itl: Histogram<Labels>;
  private readonly tpot: Histogram<Labels>;
  private readonly e2e: Histogram<Labels>;
  private readonly queue: Histogram<Labels>;
  private readonly inference: Histogram<Labels>;
  private readonly prefill: Histogram<Labels>;
  private readonly decode: Histogram<Labels>;
  /** Last cumulative values seen in engine stats (counters are incremented by the difference). */
  private last = { prefixQueries: 0, prefixHits: 0, preemptions: 0, promptTokens: 0, generationTokens: 0 };

  constructor(modelName: string, info: EngineInfo) {
    this.labels = { model_name: modelName, engine: '0' };
    const registers = [this.registry];
    const labelNames: Labels[] = ['model_name', 'engine'];
    const name = (n: string): string => `${METRIC_PREFIX}${n}`;
    const gauge = (n: string, help: string): Gauge<Labels> => new Gauge({ name: name(n), help, labelNames, registers });
    const counter = (n: string, help: string): Counter<Labels> => new Counter({ name: name(n), help, labelNames, registers });
    const histogram = (n: string, help: string, buckets: number[]): Histogram<Labels> => new Histogram({ name: name(n), help, labelNames, buckets, registers });
    const tokenBuckets = buckets125(info.maxModelLen);

    this.running = gauge('num_requests_running', 'Number of requests in model execution batches.');
    this.waiting = gauge('num_requests_waiting', 'Number of requests waiting to be processed.');
    this.kvUsage = gauge('kv_cache_usage_perc', 'KV-cache usage. 1 means 100 percent usage.');
    this.prefixQueries = counter('prefix_cache_queries_total', 'Prefix cache queries, in terms of number of queried tokens.');
    this.prefixHits = counter('prefix_cache_hits_total', 'Prefix cache hits, in terms of number of cached tokens.');
    this.preemptions = counter('num_preemptions_total', 'Cumulative number of preemption from the engine.');
    this.promptTokens = counter('prompt_tokens_total', 'Number of prefill tokens processed.');
    this.generationTokens = counter('generation_tokens_total', 'Number of generation tokens processed.');
    this.requestSuccess = new Counter({
      name: name('request_success_total'),
      help: 'Count of successfully processed requests.',
      labelNames: ['model_name', 'engine', 'finished_reason'],
      registers,
    });
    this.iterationTokens = histogram('iteration_tokens_total', 'Histogram of number of tokens per engine_step.', [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]);
    this.requestPromptTokens = histogram('request_prompt_tokens', 'Number of prefill tokens processed.', tokenBuckets);
    this.requestGenerationTokens = histogram('request_generation_tokens', 'Number of generation tokens processed.', tokenBuckets);
    this.paramsN = histogram('request_params_n', 'Histogram of the n request parameter.', [1, 2, 5, 10, 20]);
    this.paramsMaxTokens = histogram('request_params_max_tokens', 'Histogram of the max_tokens request parameter.', tokenBuckets);
    this.ttft = histogram('time_to_first_token_seconds', 'Histogram of time to first token in seconds.', TTFT_BUCKETS);
    this.itl = histogram('inter_token_latency_seconds', 'Histogram of inter-token latency in seconds.', ITL_BUCKETS);
    this.tpot = histogram('request_time_per_output_token_seconds', 'Histogram of time_per_output_token_seconds per request.', ITL_BUCKETS);
    this.e2e = histogram('e2e_request_latency_seconds', 'Histogram of e2e request latency in seconds.', LATENCY_BUCKETS);
    this.queue = histogram('request_queue_time_seconds', 'Histogram of time spent in WAITING phase for request.', LATENCY_BUCKETS);
    this.inference = histogram('request_inference_time_seconds', 'Histogram of time spent in RUNNING phase for request.', LATENCY_BUCKETS);
    this.prefill = histogram('request_prefill_time_seconds', 'Histogram of time spent in PREFILL phase for request.', LATENCY_BUCKETS);
    this.decode = histogram('request_decode_time_seconds', 'Histogram of time spent in DECODE phase for request.', LATENCY_BUCKETS);

    // vLLM's cache_config_info: an info-style gauge fixed at 1 whose labels describe the KV cache.
    const cacheInfo = new Gauge({
      name: name('cache_config_info'),
      help: 'Information of the LLMEngine CacheConfig',
      labelNames: ['block_size', 'cache_dtype', 'enable_prefix_caching', 'num_gpu_blocks', 'num_cpu_blocks', 'engine'],
      registers,
    });
    cacheInfo.set(
      {
        block_size: String(info.blockSize),
        cache_dtype: info.kvCacheDtype,
        enable_prefix_caching: String(info.config.enablePrefixCaching),
        // vLLM's label name; Pagewise's pool lives in host memory, so the count is reported here too.
        num_gpu_blocks: String(info.numBlocks),
        num_cpu_blocks: String(info.numBlocks),
        engine: '0',
      },
      1,
    );
    for (const g of [this.running, this.waiting, this.kvUsage]) g.set(this.labels, 0);
    for (const c of [this.prefixQueries, this.prefixHits, this.preemptions, this.promptTokens, this.generationTokens]) c.inc(this.labels, 0);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** Engine stats after a step: gauges are set, cumulative counters advanced by their growth. */
  onStats(s: EngineStats): void {
    this.running.set(this.labels, s.running);
    this.waiting.set(this.labels, s.waiting);
    this.kvUsage.set(this.labels, s.kvUsage);
    const grow = (c: Counter<Labels>, key: keyof ServerMetrics['last'], now: number): void => {
      const d = now - this.last[key];
      if (d > 0) c.inc(this.labels, d);
      this.last[key] = now;
    };
    grow(this.prefixQueries, 'prefixQueries', s.prefixCacheQueries);
    grow(this.prefixHits, 'prefixHits', s.prefixCacheHits);
    grow(this.preemptions, 'preemptions', s.numPreemptionsTotal);
    grow(this.promptTokens, 'promptTokens', s.promptTokensTotal);
    grow(this.generationTokens, 'generationTokens', s.generationTokensTotal);
    if (s.scheduledTokens > 0) this.iterationTokens.observe(this.labels, s.scheduledTokens);
  }

  /** A request was admitted with these parameters. */
  onAdmitted(n: number, maxTokens: number): void {
    this.paramsN.observe(this.labels, n);
    this.paramsMaxTokens.observe(this.labels, maxTokens);
  }

  /** One gap between two token arrivals of a request, in milliseconds. */
  onInterTokenGap(ms: number): void {
    if (ms >= 0) this.itl.observe(this.labels, ms / 1000);
  }

  /** A request finished (stopped, hit its length, or was aborted): its timing histograms. */
  onFinished(o: RequestOutput): void {
    const m = o.metrics;
    for (const c of o.outputs) this.requestSuccess.inc({ ...this.labels, finished_reason: c.finishReason ?? 'abort' });
    const s = (ms: number): number => Math.max(0, ms) / 1000;
    const end = m.finishedTime ?? performance.timeOrigin + performance.now();
    this.e2e.observe(this.labels, s(end - m.arrivalTime));
    if (m.firstScheduledTime !== null) {
      this.queue.observe(this.labels, s(m.firstScheduledTime - m.arrivalTime));
      this.inference.observe(this.labels, s(end - m.firstScheduledTime));
    }
    if (m.firstTokenTime !== null) {
      this.ttft.observe(this.labels, s(m.firstTokenTime - m.arrivalTime));
      if (m.firstScheduledTime !== null) this.prefill.observe(this.labels, s(m.firstTokenTime - m.firstScheduledTime));
      if (m.lastTokenTime !== null) {
        const decode = s(m.lastTokenTime - m.firstTokenTime);
        this.decode.observe(this.labels, decode);
        const longest = Math.max(0, ...o.outputs.map((c) => c.tokenIds.length));
        if (longest > 1) this.tpot.observe(this.labels, decode / (longest - 1));
      }
    }
    this.requestPromptTokens.observe(this.labels, o.promptTokenIds.length);
    this.requestGenerationTokens.observe(this.labels, o.outputs.reduce((a, c) => a + c.tokenIds.length, 0));
  }
}

/**
 * Follows one request's snapshots and reports the gaps between token arrivals (the engine stamps
 * each step's tokens as they arrive, so the gaps are the engine's, not the HTTP writer's).
 */
export class TokenGapObserver {
  private lastTokenTime: number | null = null;
  private lastCount = 0;

  constructor(private readonly metrics: ServerMetrics) {}

  observe(o: RequestOutput): void {
    const t = o.metrics.lastTokenTime;
    let count = 0;
    for (const c of o.outputs) count += c.tokenIds.length;
    if (t === null || count === this.lastCount) return;
    if (this.lastTokenTime !== null && t > this.lastTokenTime) this.metrics.onInterTokenGap(t - this.lastTokenTime);
    this.lastTokenTime = t;
    this.lastCount = count;
  }
}
