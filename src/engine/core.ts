/**
 * EngineCore: owns the model, the KV cache, the scheduler and the sampler, and runs steps:
 * schedule → execute → sample → update. It is a plain class so tests can drive it directly; in
 * production it lives in a worker thread (worker.ts) and talks to the main thread by messages.
 */
import { DType, type ComputeBackend, type KvCacheHandle } from '../backend/backend.js';
import { defaultKvCacheBytes, type EngineConfig } from '../config/engine-config.js';
import { ContextLengthError, InvalidRequestError, ModelLoadError } from '../errors.js';
import { KVCacheManager } from '../kv/kv-cache-manager.js';
import { openModelPackage } from '../model/loader/package.js';
import { autoPrecision, CausalLM, type Precision } from '../model/model.js';
import { ModelRunner, type LogitsRequest } from '../model/runner.js';
import { deriveSeed, type SamplingParams } from '../sampling/params.js';
import { Rng } from '../sampling/rng.js';
import { promptLogprobs } from '../sampling/logprobs.js';
import { Sampler, type SamplerRow } from '../sampling/sampler.js';
import { requestWidth, Scheduler, type ScheduledSeq } from '../scheduler/scheduler.js';
import { BeamGroup, proposeTokens } from './beam-search.js';
import type { EngineInfo, EngineRequest, EngineStats, RequestDelta, SeqDelta, TokenLogprobs } from './protocol.js';
import { Sequence } from './sequence.js';

/** Engine-side state of one request: its sequences and what has not been reported yet. */
interface RequestState {
  req: EngineRequest;
  seqs: Sequence[];
  /** Sequences 1..n-1 wait here until sequence 0 has prefilled the prompt, then fork from it. */
  pendingForks: Sequence[];
  promptLogprobs: Array<TokenLogprobs | null>;
  promptLogprobsSent: boolean;
  firstScheduledTime: number | null;
  firstScheduledSent: boolean;
  /** Per sequence index: tokens/logprobs produced since the last report. */
  pending: Map<number, SeqDelta>;
  /** Beam-search requests: the beams and finished hypotheses (null otherwise). */
  beam: BeamGroup<Sequence> | null;
  /** The request is over (every sequence finished, or the beam search ended). */
  done: boolean;
}

/**
 * Reject a request that can never run: empty prompt, token ids outside the vocabulary, or more
 * tokens than the model's context or the whole KV pool holds. Called on the main thread before a
 * request is sent and again by the core.
 */
export function checkRequestFits(info: EngineInfo, prompt: readonly number[], params: SamplingParams): void {
  const V = info.model.vocabSize;
  if (prompt.length === 0) throw new InvalidRequestError('the prompt is empty: at least one token is needed', { param: 'prompt' });
  for (const id of prompt) {
    if (!Number.isInteger(id) || id < 0 || id >= V) {
      throw new InvalidRequestError(`prompt token id ${id} is out of range for a vocabulary of ${V} tokens`, { param: 'prompt' });
    }
  }
  const width = requestWidth(params);
  if (width > info.config.maxNumSeqs) {
    throw new InvalidRequestError(
      `the request runs ${width} sequences at once (n/best_of) but the engine runs at most ${info.config.maxNumSeqs} (--max-num-seqs)`,
      { param: params.bestOf > params.n ? 'best_of' : 'n' },
    );
  }
  const total = prompt.length + params.maxTokens;
  const maxLen = info.maxModelLen;
  if (total > maxLen) {
    throw new ContextLengthError(
      `This model's maximum context length is ${maxLen} tokens. However, you requested ${total} tokens ` +
        `(${prompt.length} in the prompt, ${params.maxTokens} for the completion). Reduce the prompt or max_tokens.`,
      { param: 'max_tokens', code: 'context_length_exceeded' },
    );
  }
  const blocks = Math.ceil(total / info.blockSize);
  if (blocks > info.numBlocks) {
    throw new ContextLengthError(
      `the request needs ${blocks} KV blocks (${total} tokens) but the KV cache has only ${info.numBlocks} ` +
        `(${info.numBlocks * info.blockSize} tokens); raise --kv-cache-memory or shorten the request`,
      { param: 'max_tokens', code: 'context_length_exceeded' },
    );
  }
}


export class EngineCore {
  readonly info: EngineInfo;
  readonly scheduler: Scheduler;
  readonly kv: KVCacheManager;
  private readonly runner: ModelRunner;
  private readonly sampler: Sampler;
  private readonly cache: KvCacheHandle;
  private readonly requests = new Map<string, RequestState>();
  private nextSeqId = 0;
  private promptTokensTotal = 0;
  private generationTokensTotal = 0;

  constructor(
    private readonly be: ComputeBackend,
    modelDir: string,
    cfg: EngineConfig,
  ) {
    const files = openModelPackage(modelDir);
    const mc = files.config;
    const weights = files.weights;
    const precision: Precision = cfg.dtype === 'auto' ? autoPrecision(mc, weights) : cfg.dtype;
    const kvDtype = cfg.kvCacheDtype === 'auto' ? precision : cfg.kvCacheDtype;

    let maxModelLen = mc.maxPositionEmbeddings;
    // Sliding-window attention is not implemented: cap the context where it would start to matter.
    if (mc.slidingWindow !== null && mc.slidingWindow < maxModelLen) maxModelLen = mc.slidingWindow;
    if (cfg.maxModelLen !== null) {
      if (cfg.maxModelLen > maxModelLen) {
        throw new InvalidRequestError(`--max-model-len ${cfg.maxModelLen} exceeds the model's limit of ${maxModelLen} tokens`);
      }
      maxModelLen = cfg.maxModelLen;
    }

    const dt = kvDtype === 'bfloat16' ? DType.BF16 : DType.F32;
    const blockBytes = be.kvCacheBlockBytes(mc.numLayers, cfg.blockSize, mc.numKvHeads, mc.headDim, dt);
    const budget = cfg.kvCacheMemory ?? defaultKvCacheBytes();
    const numBlocks = Math.floor(budget / blockBytes);
    if (numBlocks < 1) {
      throw new ModelLoadError(`KV cache memory ${budget} bytes is smaller than one block (${blockBytes} bytes); raise --kv-cache-memory`);
    }
    this.cache = be.kvCacheCreate(mc.numLayers, numBlocks, cfg.blockSize, mc.numKvHeads, mc.headDim, dt);
    this.kv = new KVCacheManager(numBlocks, cfg.blockSize, cfg.enablePrefixCaching);
    this.scheduler = new Scheduler({ maxNumBatchedTokens: cfg.maxNumBatchedTokens, maxNumSeqs: cfg.maxNumSeqs, kind: cfg.scheduler }, this.kv);
    const model = new CausalLM(be, mc, weights, { precision, maxTokens: cfg.maxNumBatchedTokens });
    this.runner = new ModelRunner(be, model, this.cache, {
      blockSize: cfg.blockSize,
      maxTokens: cfg.maxNumBatchedTokens,
      maxSeqs: cfg.maxNumSeqs,
      maxBlocksPerSeq: Math.ceil(maxModelLen / cfg.blockSize),
    });
    this.sampler = new Sampler(be, mc.vocabSize);
    const eos = files.generationConfig.eosTokenIds.length > 0 ? files.generationConfig.eosTokenIds : mc.eosTokenIds;
    this.info = {
      modelDir,
      model: mc,
      config: cfg,
      precision,
      kvCacheDtype: kvDtype,
      numBlocks,
      blockSize: cfg.blockSize,
      kvCacheBytes: numBlocks * blockBytes,
      maxModelLen,
      eosTokenIds: [...new Set(eos)],
      threads: be.describe().threads,
      isa: be.describe().kernels,
    };
  }

  hasWork(): boolean {
    return this.scheduler.hasWork();
  }

  /**
   * Commit the memory of about `maxBytes` more of the KV cache, in the order the block pool hands
   * blocks out, so steps do not pay a page fault at each new block's first write. For idle time
   * (the worker calls it while there is no work). Returns true while there is more to commit.
   */
  commitKvCache(maxBytes: number): boolean {
    return this.be.kvCacheCommit(this.cache, maxBytes);
  }

  /** Admit a request; throws a clear error if it can never run (too long for the model or the pool). */
  addRequest(req: EngineRequest): void {
    if (this.requests.has(req.requestId)) throw new InvalidRequestError(`request id ${req.requestId} is already in use`);
    checkRequestFits(this.info, req.promptTokenIds, req.params);
    const { promptTokenIds: prompt, params } = req;
    // Beam search starts from one sequence and forks as beams are chosen.
    const n = params.useBeamSearch ? 1 : Math.max(params.n, params.bestOf);
    const baseSeed = params.seed ?? Rng.randomSeed();
    const seqs: Sequence[] = [];
    for (let i = 0; i < n; i++) {
      const rng = new Rng(deriveSeed(baseSeed, i));
      seqs.push(new Sequence(this.nextSeqId++, req.requestId, i, prompt, params, rng, this.info.eosTokenIds, req.arrivalTime));
    }
    this.requests.set(req.requestId, {
      req,
      seqs,
      pendingForks: seqs.slice(1),
      promptLogprobs: params.promptLogprobs !== null ? [null] : [],
      promptLogprobsSent: false,
      firstScheduledTime: null,
      firstScheduledSent: false,
      pending: new Map(),
      beam: params.useBeamSearch
        ? new BeamGroup(params, prompt.length, this.info.eosTokenIds, Math.min(params.maxTokens, this.info.maxModelLen - prompt.length), [seqs[0]!])
        : null,
      done: false,
    });
    this.scheduler.add(seqs[0]!);
  }

  /** Abort requests wherever they are; their blocks are freed now. Unknown ids are ignored. */
  abort(requestIds: readonly string[]): RequestDelta[] {
    const out: RequestDelta[] = [];
    for (const id of requestIds) {
      const st = this.requests.get(id);
      if (!st) continue;
      for (const seq of st.seqs) {
        if (seq.status !== 'finished') this.finishSeq(st, seq, 'abort');
      }
      st.done = true;
      out.push(this.collect(st, true));
      this.requests.delete(id);
    }
    return out;
  }

  /**
   * Finish one sequence of a request now (the main thread found a stop string in its text).
   * Its blocks are freed; the request finishes when its last sequence does.
   */
  stopSequence(requestId: string, index: number): RequestDelta[] {
    const st = this.requests.get(requestId);
    const seq = st?.seqs[index];
    if (!st || !seq || seq.status === 'finished' || st.beam) return [];
    this.finishSeq(st, seq, 'stop');
    if (!this.updateDone(st)) return [];
    this.requests.delete(requestId);
    return [this.collect(st, true)];
  }

  /** One engine step. Returns the news of every request that has some, and the stats. */
  step(): { deltas: RequestDelta[]; stats: EngineStats } {
    const t0 = performance.now();
    const sched = this.scheduler.schedule();
    const now = performance.timeOrigin + performance.now();
    const touched = new Set<RequestState>();
    for (const e of sched.scheduled) {
      const st = this.requests.get(e.seq.requestId)!;
      if (st.firstScheduledTime === null) st.firstScheduledTime = now;
      touched.add(st);
    }

    if (sched.scheduled.length > 0) this.execute(sched.scheduled, touched);

    const deltas: RequestDelta[] = [];
    for (const st of touched) {
      const finished = this.updateDone(st);
      // Beam search reports only its final hypotheses.
      if (st.beam && !finished && st.firstScheduledSent) continue;
      const d = this.collect(st, finished);
      if (finished) this.requests.delete(st.req.requestId);
      deltas.push(d);
    }
    const stats = this.stats(sched.preempted.length, sched.numBatchedTokens, performance.now() - t0);
    return { deltas, stats };
  }

  stats(preempted = 0, scheduledTokens = 0, stepMs = 0): EngineStats {
    const pool = this.kv.pool;
    let reserved = 0;
    for (const s of this.scheduler.running) reserved += s.promptLen + s.params.maxTokens;
    const stored = pool.numStoredTokens;
    // Requests, not sequences (a request with n > 1 counts once), as vLLM reports them.
    const requestsIn = (q: readonly Sequence[]): number => new Set(q.map((s) => s.requestId)).size;
    return {
      running: requestsIn(this.scheduler.running),
      waiting: requestsIn(this.scheduler.waiting),
      preemptedThisStep: preempted,
      numPreemptionsTotal: this.scheduler.numPreemptions,
      scheduledTokens,
      promptTokensTotal: this.promptTokensTotal,
      generationTokensTotal: this.generationTokensTotal,
      blocksTotal: pool.numBlocks,
      blocksUsed: pool.numUsed,
      blocksFree: pool.numFree,
      kvUsage: this.kv.usage(),
      kvWaste: this.kv.waste(),
      kvWasteContiguous: reserved === 0 ? 0 : Math.max(0, reserved - stored) / reserved,
      prefixCacheQueries: this.kv.prefixStats.queries,
      prefixCacheHits: this.kv.prefixStats.hits,
      stepMs,
    };
  }

  /** Bytes of weights one decode step reads (for bandwidth-bound reporting). */
  weightBytesPerStep(): number {
    return this.runner.model.weightBytesPerStep();
  }

  flopsPerToken(): number {
    return this.runner.model.flopsPerToken();
  }

  /** FLOPs one prefill of a `promptLen`-token prompt executes (see CausalLM.prefillFlops). */
  prefillFlops(promptLen: number): number {
    return this.runner.model.prefillFlops(promptLen);
  }

  /** Free the KV cache's native memory. The core must not be used afterwards. */
  close(): void {
    this.be.kvCacheFree(this.cache);
    // Packed weights live in native memory; free them now rather than at garbage collection.
    this.runner.model.dispose();
  }

  private execute(scheduled: ScheduledSeq[], touched: Set<RequestState>): void {
    // Rows whose logits we need: the last token of each sampling entry, then prompt-logprob rows.
    const want: LogitsRequest[] = [];
    const samplers: Sequence[] = [];
    for (let i = 0; i < scheduled.length; i++) {
      const { seq, numNewTokens, sample } = scheduled[i]!;
      if (!sample) continue;
      want.push({ entry: i, position: seq.numComputedTokens + numNewTokens - 1 });
      samplers.push(seq);
    }
    const promptRows: Array<{ st: RequestState; position: number }> = [];
    for (let i = 0; i < scheduled.length; i++) {
      const { seq, numNewTokens } = scheduled[i]!;
      const st = this.requests.get(seq.requestId)!;
      if (seq.params.promptLogprobs === null || st.promptLogprobsSent || seq.index !== 0) continue;
      // Position p's logits predict prompt token p + 1; recomputation after preemption skips rows already done.
      const end = Math.min(seq.numComputedTokens + numNewTokens, seq.promptLen - 1);
      for (let p = Math.max(seq.numComputedTokens, st.promptLogprobs.length - 1); p < end; p++) {
        want.push({ entry: i, position: p });
        promptRows.push({ st, position: p });
      }
    }

    this.runner.forward(scheduled, this.kv.takeCopies(), want);
    for (const { seq, numNewTokens } of scheduled) {
      if (seq.numComputedTokens < seq.promptLen) this.promptTokensTotal += Math.min(numNewTokens, seq.promptLen - seq.numComputedTokens);
      seq.numComputedTokens += numNewTokens;
      this.kv.commit(seq, numNewTokens);
    }

    const V = this.info.model.vocabSize;
    const nSample = samplers.length;
    const chunk = this.runner.maxLogitsRows;
    for (let first = nSample; first < want.length; first += chunk) {
      const count = Math.min(chunk, want.length - first);
      const logits = this.runner.logits(first, count);
      for (let r = 0; r < count; r++) {
        const pr = promptRows[first - nSample + r]!;
        const seq = pr.st.seqs[0]!;
        const [lp] = promptLogprobs(this.be, logits.subarray(r * V, (r + 1) * V), 1, V, [seq.tokens[pr.position + 1]!], seq.params.promptLogprobs!);
        pr.st.promptLogprobs.push(lp!);
      }
    }
    if (nSample > 0) this.sample(samplers, this.runner.logits(0, nSample));
    for (const st of touched) this.checkStops(st);
  }

  /**
   * Sample one token for each sequence whose step reached its last known token. A request's first
   * sequence that just finished the prompt forks its n-1 siblings first: they share its blocks by
   * reference (copy-on-write later) and sample the same logits row with their own RNG streams.
   */
  private sample(samplers: Sequence[], logits: Float32Array): void {
    const V = this.info.model.vocabSize;
    const group: Sequence[] = [];
    const rowOf: number[] = [];
    const beamSteps = new Set<RequestState>();
    for (let r = 0; r < samplers.length; r++) {
      const seq = samplers[r]!;
      const st = this.requests.get(seq.requestId)!;
      if (st.beam) {
        if (this.propose(st, seq, logits.subarray(r * V, (r + 1) * V))) beamSteps.add(st);
        continue;
      }
      group.push(seq);
      rowOf.push(r);
      if (seq.index !== 0 || st.pendingForks.length === 0) continue;
      for (const child of st.pendingForks) {
        this.kv.fork(seq, child);
        child.status = 'running';
        this.scheduler.running.push(child);
        group.push(child);
        rowOf.push(r);
      }
      st.pendingForks = [];
    }
    for (const st of beamSteps) this.beamStep(st);
    if (group.length === 0) return;
    // The sampler modifies rows in place, so every sequence gets its own copy of its row.
    let rows = logits;
    if (group.length !== samplers.length || beamSteps.size > 0) {
      rows = new Float32Array(group.length * V);
      for (let i = 0; i < group.length; i++) rows.set(logits.subarray(rowOf[i]! * V, (rowOf[i]! + 1) * V), i * V);
    }
    const samplerRows: SamplerRow[] = group.map((s) => ({
      params: s.params,
      rng: s.rng,
      promptTokenIds: s.promptTokenIds,
      outputTokenIds: s.outputTokenIds,
      eosTokenIds: s.eosTokenIds,
    }));
    const results = this.sampler.sample(rows, samplerRows);
    for (let i = 0; i < group.length; i++) {
      const s = group[i]!;
      const res = results[i]!;
      const st = this.requests.get(s.requestId)!;
      s.appendToken(res.tokenId);
      // The sampler computes logprobs only when something needs them (NaN otherwise).
      if (!Number.isNaN(res.logprob)) s.cumulativeLogprob += res.logprob;
      this.generationTokensTotal++;
      const d = this.pendingDelta(st, s);
      d.newTokenIds.push(res.tokenId);
      d.newLogprobs?.push({ token: { tokenId: res.tokenId, logprob: res.logprob, rank: res.rank }, top: res.topLogprobs });
      d.cumulativeLogprob = s.cumulativeLogprob;
    }
  }

  /** A beam's proposals from its (processed) logits row; true when all live beams have proposed. */
  private propose(st: RequestState, seq: Sequence, row: Float32Array): boolean {
    const copy = Float32Array.from(row);
    this.sampler.process(copy, [
      { params: seq.params, rng: seq.rng, promptTokenIds: seq.promptTokenIds, outputTokenIds: seq.outputTokenIds, eosTokenIds: seq.eosTokenIds },
    ]);
    return st.beam!.offer(seq, proposeTokens(copy, st.beam!.width));
  }

  /** Apply one beam-search step: extend, fork and kill beams; report the hypotheses when done. */
  private beamStep(st: RequestState): void {
    const beam = st.beam!;
    const res = beam.step();
    for (const b of res.die) this.finishSeq(st, b, 'stop', false);
    const live: Sequence[] = [];
    const byParent = new Map<Sequence, Array<{ tokenId: number; logprob: number }>>();
    for (const e of res.extend) {
      const list = byParent.get(e.parent) ?? [];
      list.push(e);
      byParent.set(e.parent, list);
    }
    for (const [parent, exts] of byParent) {
      // Forks first: they must share the parent's blocks before its new token is appended.
      for (const e of exts.slice(1)) {
        const child = new Sequence(this.nextSeqId++, st.req.requestId, st.seqs.length, parent.promptTokenIds, parent.params, parent.rng, parent.eosTokenIds, parent.arrivalTime);
        for (const t of parent.outputTokenIds) child.appendToken(t);
        child.cumulativeLogprob = parent.cumulativeLogprob + e.logprob;
        child.appendToken(e.tokenId);
        if (parent.status === 'running') {
          this.kv.fork(parent, child);
          child.status = 'running';
          this.scheduler.running.push(child);
        } else {
          this.scheduler.add(child);
        }
        st.seqs.push(child);
        live.push(child);
      }
      parent.cumulativeLogprob += exts[0]!.logprob;
      parent.appendToken(exts[0]!.tokenId);
      live.push(parent);
    }
    beam.live = live;
    if (!res.done) return;
    for (const b of live) this.finishSeq(st, b, 'length', false);
    beam.results(st.req.params.n).forEach((h, index) => {
      st.pending.set(index, {
        index,
        newTokenIds: h.outputTokenIds,
        newLogprobs: null,
        cumulativeLogprob: h.cumulativeLogprob,
        finishReason: h.finishReason,
        stopReason: null,
      });
    });
    st.done = true;
  }

  /** Whether the request is over; marks it so. */
  private updateDone(st: RequestState): boolean {
    if (!st.done && !st.beam && st.pendingForks.length === 0 && st.seqs.every((s) => s.status === 'finished')) st.done = true;
    return st.done;
  }

  private pendingDelta(st: RequestState, s: Sequence): SeqDelta {
    let d = st.pending.get(s.index);
    if (!d) {
      d = {
        index: s.index,
        newTokenIds: [],
        newLogprobs: s.params.logprobs !== null ? [] : null,
        cumulativeLogprob: s.cumulativeLogprob,
        finishReason: null,
        stopReason: null,
      };
      st.pending.set(s.index, d);
    }
    return d;
  }

  /** Finish sequences that produced a stop token or reached their length limit this step. */
  private checkStops(st: RequestState): void {
    if (st.beam) return;
    const maxLen = this.info.maxModelLen;
    for (const s of st.seqs) {
      if (s.status !== 'running') continue;
      const d = st.pending.get(s.index);
      if (!d || d.newTokenIds.length === 0) continue;
      const last = s.tokens[s.tokens.length - 1]!;
      const p = s.params;
      if (s.outputTokenIds.length >= p.minTokens) {
        if (!p.ignoreEos && s.eosTokenIds.includes(last)) {
          this.finishSeq(st, s, 'stop');
          continue;
        }
        if (p.stopTokenIds.includes(last)) {
          s.stopReason = last;
          this.finishSeq(st, s, 'stop');
          continue;
        }
      }
      if (s.outputTokenIds.length >= p.maxTokens || s.tokens.length >= maxLen) this.finishSeq(st, s, 'length');
    }
  }

  /** Finish a sequence and free its blocks; `report` = tell the client (beams that die are not reported). */
  private finishSeq(st: RequestState, s: Sequence, reason: 'stop' | 'length' | 'abort', report = true): void {
    s.finishReason = reason;
    if (s.status !== 'finished') this.scheduler.remove(s);
    s.status = 'finished';
    if (reason === 'abort') st.pendingForks = [];
    if (!report || (st.beam && reason !== 'abort')) return;
    const d = this.pendingDelta(st, s);
    d.finishReason = reason;
    d.stopReason = s.stopReason;
  }

  private collect(st: RequestState, finished: boolean): RequestDelta {
    const seqs = [...st.pending.values()].sort((a, b) => a.index - b.index);
    st.pending.clear();
    let promptLogprobs: RequestDelta['promptLogprobs'] = null;
    if (st.req.params.promptLogprobs !== null && !st.promptLogprobsSent && st.promptLogprobs.length >= st.req.promptTokenIds.length) {
      promptLogprobs = st.promptLogprobs;
      st.promptLogprobsSent = true;
    }
    let firstScheduledTime: number | null = null;
    if (!st.firstScheduledSent && st.firstScheduledTime !== null) {
      firstScheduledTime = st.firstScheduledTime;
      st.firstScheduledSent = true;
    }
    return { requestId: st.req.requestId, seqs, promptLogprobs, firstScheduledTime, finished, error: null };
  }
}
