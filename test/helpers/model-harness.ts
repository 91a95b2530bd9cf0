/**
 * Runs a model's forward pass directly (no engine, no sampler) to read raw logits of every prompt
 * position: what the fixture goldens pin. The prompt can be fed in chunks to exercise prefill with
 * cached context and decode.
 */
import { DType, type KvCacheHandle } from '../../src/backend/backend.js';
import { cpuBackend } from '../../src/backend/native.js';
import type { Sequence } from '../../src/engine/sequence.js';
import { KVCacheManager, type KvSequence } from '../../src/kv/kv-cache-manager.js';
import { openModelPackage } from '../../src/model/loader/package.js';
import { CausalLM, type Precision } from '../../src/model/model.js';
import { ModelRunner, type LogitsRequest } from '../../src/model/runner.js';

export interface HarnessOptions {
  precision: Precision;
  kvDtype: 'float32' | 'bfloat16';
  blockSize?: number;
  /** Tokens per forward call (default: the whole prompt at once). */
  chunk?: number;
  numBlocks?: number;
  maxTokens?: number;
}

export class ModelHarness {
  readonly model: CausalLM;
  readonly kv: KVCacheManager;
  readonly runner: ModelRunner;
  readonly cache: KvCacheHandle;
  readonly vocab: number;

  constructor(dir: string, readonly opts: HarnessOptions) {
    const { config: cfg, weights } = openModelPackage(dir);
    const bs = opts.blockSize ?? 16;
    const maxTokens = opts.maxTokens ?? 512;
    const numBlocks = opts.numBlocks ?? Math.ceil(1024 / bs) * 4;
    this.model = new CausalLM(cpuBackend(), cfg, weights, { precision: opts.precision, maxTokens });
    const dt = opts.kvDtype === 'bfloat16' ? DType.BF16 : DType.F32;
    const layout = this.model.kvLayout;
    this.cache = cpuBackend().kvCacheCreate(layout.slots, numBlocks, bs, cfg.numKvHeads, cfg.headDim, dt);
    this.kv = new KVCacheManager(numBlocks, bs, false, layout);
    this.runner = new ModelRunner(cpuBackend(), this.model, this.cache, { blockSize: bs, maxTokens, maxSeqs: 8, maxBlocksPerSeq: Math.ceil(4096 / bs) });
    this.vocab = cfg.vocabSize;
  }

  /** Raw logits [tokens.length, vocab] of every position of `tokens`, fed in chunks. */
  logitsOf(tokens: readonly number[]): Float32Array {
    const seq: KvSequence = { tokens, numComputedTokens: 0, blockTables: [], blockHashes: [] };
    const V = this.vocab;
    const out = new Float32Array(tokens.length * V);
    const chunk = this.opts.chunk ?? tokens.length;
    while (seq.numComputedTokens < tokens.length) {
      const n = Math.min(chunk, tokens.length - seq.numComputedTokens);
      if (!this.kv.allocate(seq, n)) throw new Error('harness KV pool too small');
      const want: LogitsRequest[] = [];
      for (let p = seq.numComputedTokens; p < seq.numComputedTokens + n; p++) want.push({ entry: 0, position: p });
      const sched = [{ seq: seq as unknown as Sequence, numNewTokens: n, sample: false }];
      this.runner.forward(sched, [], want);
      for (let first = 0; first < n; first += this.runner.maxLogitsRows) {
        const count = Math.min(this.runner.maxLogitsRows, n - first);
        out.set(this.runner.logits(first, count), (seq.numComputedTokens + first) * V);
      }
      seq.numComputedTokens += n;
      this.kv.commit(seq, n);
    }
    this.kv.free(seq);
    return out;
  }

  close(): void {
    cpuBackend().kvCacheFree(this.cache);
  }
}
