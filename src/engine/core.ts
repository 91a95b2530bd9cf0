/**
 * EngineCore (worker): owns the model, the KV cache, the scheduler and the sampler, and runs the
 * step loop: schedule → execute → sample → scheduler.update. It is a plain class so tests can drive
 * it directly; in production it lives in a worker thread (worker.ts) and talks to the main thread
 * by messages. How a request's sequences multiply (parallel sampling, beam search) is
 * sequence-group.ts; its reporting is request-state.ts; prompt logprobs, stats and KV sizing have
 * their own modules.
 */
import type { ComputeBackend, KvCacheHandle } from '../backend/backend.js';
import { nativeHost } from '../backend/native.js';
import type { EngineConfig } from '../config/engine-config.js';
import { InvalidRequestError } from '../errors.js';
import { KVCacheManager } from '../kv/kv-cache-manager.js';
import { maxSequenceTokens } from '../kv/kv-layout.js';
import { openModelPackage, readPackageTokenizer } from '../model/loader/package.js';
import { withReadProgress } from '../model/loader/weight-source.js';
import { QuantizingSource } from '../model/quantize/quantizing-source.js';
import { autoKvDtype, autoPrecision, CausalLM, type Precision } from '../model/model.js';
import { ModelRunner, type LogitsRequest } from '../model/runner.js';
import { Sampler, type SamplerRow } from '../sampling/sampler.js';
import { Scheduler, type SchedulerOutput } from '../scheduler/scheduler.js';
import type { CompiledGrammar } from '../structured/compiler.js';
import { EngineGrammars } from '../structured/engine-grammars.js';
import { packTokenizerFiles, type PackedTokenizerFiles } from '../tokenizer/tokenizer.js';
import { checkRequestFits, engineLimits, type RequestLimits } from '../shared/request-limits.js';
import { proposeTokens } from './beam-search.js';
import { EngineCounters } from './engine-stats.js';
import { sizeKvCache } from './kv-sizing.js';
import { computePromptLogprobs, planPromptLogprobRows } from './prompt-logprobs.js';
import type { EngineInfo, EngineRequest, EngineStats, RequestDelta } from './protocol.js';
import { RequestState } from './request-state.js';
import { SequenceGroup } from './sequence-group.js';
import type { Sequence } from './sequence.js';

const samplerRow = (s: Sequence, grammarMask: Uint32Array | null): SamplerRow => ({
  params: s.params,
  rng: s.rng,
  promptTokenIds: s.promptTokenIds,
  outputTokenIds: s.outputTokenIds,
  eosTokenIds: s.eosTokenIds,
  grammarMask,
});

/** What the core reports outside its step: requests whose grammar compile finished. */
export interface EngineCoreEvents {
  /** Requests were admitted after their grammar compiled: there is work to step. */
  admitted(): void;
  /** A request was refused after `addRequest` returned (its grammar failed to compile). */
  rejected(requestId: string, err: unknown): void;
}

export class EngineCore {
  readonly info: EngineInfo;
  /** The model's tokenizer files, packed once (for the main thread, and the grammars' vocabulary). */
  readonly tokenizerFiles: PackedTokenizerFiles;
  readonly scheduler: Scheduler;
  readonly kv: KVCacheManager;
  private readonly limits: RequestLimits;
  private readonly runner: ModelRunner;
  private readonly sampler: Sampler;
  private readonly cache: KvCacheHandle;
  private readonly requests = new Map<string, RequestState>();
  private readonly counters = new EngineCounters();
  private nextSeqId = 0;
  /** Structured outputs: the compiler for this vocabulary and the step's masks. */
  private readonly grammars: EngineGrammars;
  /** Requests waiting for their grammar to compile (not yet in the scheduler). */
  private readonly compiling = new Map<string, EngineRequest>();
  private closed = false;
  /** Set by the host (worker.ts) to hear of admissions and refusals that happen between steps. */
  events: EngineCoreEvents = { admitted: () => {}, rejected: () => {} };

  constructor(
    private readonly be: ComputeBackend,
    modelDir: string,
    cfg: EngineConfig,
    /** Load progress: tensors read so far, of the checkpoint's total. */
    onLoadProgress?: (read: number, total: number) => void,
  ) {
    const files = openModelPackage(modelDir);
    const mc = files.config;
    const source = onLoadProgress ? withReadProgress(files.weights, onLoadProgress) : files.weights;
    const weights = cfg.quantization ? new QuantizingSource(source, cfg.quantization) : source;
    const precision: Precision = cfg.dtype === 'auto' ? autoPrecision(mc, weights) : cfg.dtype;
    const kvDtype = cfg.kvCacheDtype === 'auto' ? autoKvDtype(be, mc, weights, precision, cfg.quantization !== null) : cfg.kvCacheDtype;
    const model = new CausalLM(be, mc, weights, { precision, maxTokens: cfg.maxNumBatchedTokens, windowGroups: cfg.slidingWindowKv });
    const layout = model.kvLayout;
    const { maxModelLen, numBlocks, blockBytes, dtype } = sizeKvCache(be, mc, cfg, kvDtype, layout.slots);

    // One cache "layer" per slot of the layout's blocks (every layer without sliding windows).
    this.cache = be.kvCacheCreate(layout.slots, numBlocks, cfg.blockSize, mc.numKvHeads, mc.headDim, dtype);
    this.kv = new KVCacheManager(numBlocks, cfg.blockSize, cfg.enablePrefixCaching, layout);
    this.scheduler = new Scheduler(
      { maxNumBatchedTokens: cfg.maxNumBatchedTokens, maxNumSeqs: cfg.maxNumSeqs, kind: cfg.scheduler, maxModelLen },
      this.kv,
    );
    this.runner = new ModelRunner(be, model, this.cache, {
      blockSize: cfg.blockSize,
      maxTokens: cfg.maxNumBatchedTokens,
      maxSeqs: cfg.maxNumSeqs,
      maxBlocksPerSeq: Math.ceil(maxModelLen / cfg.blockSize),
    });
    // The model has packed its weights into its own memory: the file's pages that loading read
    // would otherwise stay resident too (a GGUF model counted twice). Tensors still used from
    // the mapping fault back in from the page cache when read.
    nativeHost().releaseMappedPages();
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
      kvSequenceTokens: maxSequenceTokens(layout, numBlocks, cfg.blockSize, cfg.maxNumBatchedTokens),
      maxModelLen,
      eosTokenIds: [...new Set(eos)],
      threads: be.describe().threads,
      isa: be.describe().kernels,
      backend: be.describe(),
      generationConfig: files.generationConfig,
    };
    this.limits = engineLimits(this.info);
    // Packed, not kept as objects: the parsed files (and a GGUF file's metadata they come from)
    // are garbage once the constructor returns.
    this.tokenizerFiles = packTokenizerFiles(readPackageTokenizer(files.tokenizer));
    this.grammars = new EngineGrammars(this.tokenizerFiles, mc.vocabSize, this.info.eosTokenIds);
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

  /**
   * Hand back the working memory the steps grew: the step buffers and the backend's scratch (sized
   * by the largest step: a long prompt's 2048-token chunks leave ~0.2 GB of a 1B model's), the
   * file-mapped weights' pages read since load (the GGUF embedding rows looked up), and the C
   * allocator's free pages. For idle time, between steps; the next steps fault back what they
   * touch. Returns the bytes handed back from the step buffers and scratch.
   */
  releaseWorkingMemory(): number {
    const bytes = this.runner.releaseWorkingMemory();
    nativeHost().releaseMappedPages();
    nativeHost().releaseFreeMemory();
    return bytes;
  }

  /**
   * Admit a request; throws a clear error if it can never run (too long for the model or the pool).
   * A request with structured outputs whose grammar is not compiled yet waits outside the scheduler
   * while it compiles (other requests keep stepping), then is admitted (`events.admitted`) or
   * refused (`events.rejected`).
   */
  addRequest(req: EngineRequest): void {
    if (this.requests.has(req.requestId) || this.compiling.has(req.requestId)) throw new InvalidRequestError(`request id ${req.requestId} is already in use`);
    checkRequestFits(this.limits, req.promptTokenIds, req.params);
    const spec = req.params.structuredOutputs;
    const hit = spec === null ? null : this.grammars.cached(spec);
    if (spec === null || hit) {
      this.admit(req, hit ?? null);
      return;
    }
    this.compiling.set(req.requestId, req);
    this.grammars.compile(spec).then(
      (g) => {
        if (!this.compiling.delete(req.requestId) || this.closed) return;
        // A grammar evicted from the cache between its compile and now is compiled again.
        if (g.released) this.addRequest(req);
        else this.admit(req, g);
        this.events.admitted();
      },
      (err: unknown) => {
        if (this.compiling.delete(req.requestId)) this.events.rejected(req.requestId, err);
      },
    );
  }

  /** Requests waiting for a grammar compile. */
  get numCompiling(): number {
    return this.compiling.size;
  }

  private admit(req: EngineRequest, grammar: CompiledGrammar | null): void {
    const group = new SequenceGroup(req, this.info.eosTokenIds, this.info.maxModelLen, () => this.nextSeqId++, grammar);
    this.requests.set(req.requestId, new RequestState(req, group));
    this.scheduler.add(group.first);
  }

  /** Abort requests wherever they are; their blocks are freed now. Unknown ids are ignored. */
  abort(requestIds: readonly string[]): RequestDelta[] {
    const out: RequestDelta[] = [];
    for (const id of requestIds) {
      if (this.compiling.delete(id)) {
        out.push({ requestId: id, seqs: [], promptLogprobs: null, firstScheduledTime: null, finished: true, error: null });
        continue;
      }
      const st = this.requests.get(id);
      if (!st) continue;
      for (const s of st.group.finish(this.scheduler, 'abort')) st.addFinish(s);
      st.end();
      out.push(st.collect(true));
      this.end(st);
    }
    return out;
  }

  /**
   * Finish one sequence of a request now (the main thread found a stop string in its text).
   * Its blocks are freed; the request finishes when its last sequence does.
   */
  stopSequence(requestId: string, index: number): RequestDelta[] {
    const st = this.requests.get(requestId);
    const seq = st?.group.seqs[index];
    if (!st || !seq || seq.status === 'finished' || st.group.beam) return [];
    for (const s of st.group.finish(this.scheduler, 'stop', index)) st.addFinish(s);
    if (!st.done) return [];
    this.end(st);
    return [st.collect(true)];
  }

  /** One engine step. Returns the news of every request that has some, and the stats. */
  step(): { deltas: RequestDelta[]; stats: EngineStats } {
    const t0 = performance.now();
    const sched = this.scheduler.schedule();
    const now = performance.timeOrigin + performance.now();
    const touched = new Set<RequestState>();
    for (const e of sched.scheduled) {
      const st = this.state(e.seq.requestId);
      st.markScheduled(now);
      touched.add(st);
    }

    if (sched.scheduled.length > 0) this.execute(sched);

    const deltas: RequestDelta[] = [];
    for (const st of touched) {
      const finished = st.done;
      // Beam search reports its start, then only its final hypotheses.
      if (st.group.beam && !finished && st.startReported) continue;
      deltas.push(st.collect(finished));
      if (finished) this.end(st);
    }
    const stats = this.stats(sched.preempted.length, sched.numBatchedTokens, performance.now() - t0);
    return { deltas, stats };
  }

  stats(preempted = 0, scheduledTokens = 0, stepMs = 0): EngineStats {
    return this.counters.snapshot(this.scheduler, this.kv, preempted, scheduledTokens, stepMs);
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
    this.closed = true;
    this.compiling.clear();
    for (const st of this.requests.values()) st.group.releaseGrammars();
    this.grammars.dispose();
    this.be.kvCacheFree(this.cache);
    // Packed weights live in native memory; free them now rather than at garbage collection.
    this.runner.model.dispose();
  }

  private state(requestId: string): RequestState {
    return this.requests.get(requestId)!;
  }

  /** The request is over: forget it and free its grammar state. */
  private end(st: RequestState): void {
    this.requests.delete(st.req.requestId);
    st.group.releaseGrammars();
  }

  /** Run the model on the scheduled tokens, then sample where a sequence reached its last token. */
  private execute(sched: SchedulerOutput): void {
    const { scheduled } = sched;
    // Rows whose logits we need: the last token of each sampling entry, then prompt-logprob rows.
    const want: LogitsRequest[] = [];
    const samplers: Sequence[] = [];
    for (let i = 0; i < scheduled.length; i++) {
      const { seq, numNewTokens, sample } = scheduled[i]!;
      if (!sample) continue;
      want.push({ entry: i, position: seq.numComputedTokens + numNewTokens - 1 });
      samplers.push(seq);
    }
    const promptRows = planPromptLogprobRows(scheduled, (id) => this.state(id), want);

    this.runner.forward(scheduled, this.kv.takeCopies(), want);
    this.counters.countScheduled(sched);
    this.scheduler.markComputed(sched);

    const nSample = samplers.length;
    computePromptLogprobs(this.be, promptRows, this.info.model.vocabSize, this.runner.maxLogitsRows, (first, count) =>
      this.runner.logits(nSample + first, count),
    );
    if (nSample > 0) this.sample(samplers, this.runner.logits(0, nSample));
  }

  /**
   * Sample one token for each sequence whose step reached its last known token (a first candidate
   * that finished the prompt brings its forked siblings, which sample the same row), feed beams'
   * proposals to their searches, and hand the tokens to the scheduler's stop rules.
   */
  private sample(samplers: Sequence[], logits: Float32Array): void {
    const V = this.info.model.vocabSize;
    const group: Sequence[] = [];
    const rowOf: number[] = [];
    const beamSteps = new Set<RequestState>();
    for (let r = 0; r < samplers.length; r++) {
      const seq = samplers[r]!;
      const st = this.state(seq.requestId);
      if (st.group.beam) {
        // The beam's proposals come from its processed logits (a copy: the row stays raw); a
        // token its grammar forbids (-inf) is no proposal.
        const row = Float32Array.from(logits.subarray(r * V, (r + 1) * V));
        this.sampler.process(row, [samplerRow(seq, this.grammars.masksFor([seq.grammar])[0]!)]);
        const proposals = proposeTokens(row, st.group.beam.width).filter((p) => p.logprob > -Infinity);
        if (st.group.propose(seq, proposals)) beamSteps.add(st);
        continue;
      }
      for (const s of st.group.samplersOf(seq, this.scheduler)) {
        group.push(s);
        rowOf.push(r);
      }
    }
    for (const st of beamSteps) {
      const hyps = st.group.beamStep(this.scheduler);
      if (hyps) st.addHypotheses(hyps);
    }
    if (group.length === 0) return;
    // The sampler modifies rows in place, so every sequence gets its own copy of its row (also
    // whenever rows are not in sampler order: forks share a row, beam rows are skipped).
    let rows = logits;
    if (group.length !== samplers.length || beamSteps.size > 0 || rowOf.some((r, i) => r !== i)) {
      rows = new Float32Array(group.length * V);
      for (let i = 0; i < group.length; i++) rows.set(logits.subarray(rowOf[i]! * V, (rowOf[i]! + 1) * V), i * V);
    }
    // Structured outputs: a row whose draw is one pass over its raw logits draws first without its
    // mask (llama.cpp's order): when its grammar accepts the token, no mask was needed; when not,
    // it draws again with the mask (a second random number), which together give exactly the
    // masked distribution (greedy: the same argmax). Other constrained rows are masked first.
    const speculative = group.map((s) => s.grammar !== null && !s.grammar.isTerminated() && this.sampler.drawsFromRawRow(samplerRow(s, null)));
    const masks = this.grammars.masksFor(group.map((s, i) => (speculative[i] ? null : s.grammar)));
    const results = this.sampler.sample(rows, group.map((s, i) => samplerRow(s, masks[i]!)));
    for (let i = 0; i < group.length; i++) {
      const s = group[i]!;
      if (speculative[i] && !s.grammar!.acceptToken(results[i]!.tokenId)) {
        // The row is untouched (no stage applied): draw again from it, masked.
        const mask = this.grammars.masksFor([s.grammar])[0]!;
        results[i] = this.sampler.sample(rows.subarray(i * V, (i + 1) * V), [samplerRow(s, mask)])[0]!;
        s.acceptGrammarToken(results[i]!.tokenId);
      } else if (!speculative[i]) s.acceptGrammarToken(results[i]!.tokenId);
    }
    const finished = this.scheduler.update(group.map((seq, i) => ({ seq, tokenId: results[i]!.tokenId, logprob: results[i]!.logprob })));
    this.counters.countGenerated(group.length);
    for (let i = 0; i < group.length; i++) {
      const s = group[i]!;
      const res = results[i]!;
      this.state(s.requestId).addToken(s, res.tokenId, { token: { tokenId: res.tokenId, logprob: res.logprob, rank: res.rank }, top: res.topLogprobs });
    }
    for (const s of finished) this.state(s.requestId).addFinish(s);
  }
}
