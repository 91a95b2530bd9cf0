/**
 * ModelRunner: turns the scheduler's decision into one flat varlen batch (token ids, positions,
 * slot mapping, block tables, query offsets), runs the model over it, and returns the logits of the
 * rows that need them.
 */
import type { ComputeBackend, KvCacheHandle } from '../backend/backend.js';
import type { ScheduledSeq } from '../scheduler/scheduler.js';
import type { ForwardBatch } from './forward-batch.js';
import type { CausalLM } from './model.js';

export interface RunnerConfig {
  blockSize: number;
  /** Max tokens per step (the scheduler's budget). */
  maxTokens: number;
  /** Max sequences per step. */
  maxSeqs: number;
  /** Max blocks one sequence can hold (max model length / block size). */
  maxBlocksPerSeq: number;
}

/** A batch row whose logits the caller asked for. */
export interface LogitsRequest {
  /** Index of the scheduled entry (into the `scheduled` array). */
  entry: number;
  /** Absolute position of the token whose logits are wanted. */
  position: number;
}

export class ModelRunner {
  private readonly batch: ForwardBatch;
  private readonly rows: Int32Array;
  private readonly hidden: Float32Array;
  private readonly logitsBuf: Float32Array;
  /** Rows per call of the output head (bounds the logits buffer for long prompt-logprob requests). */
  readonly maxLogitsRows: number;

  constructor(
    private readonly be: ComputeBackend,
    readonly model: CausalLM,
    readonly cache: KvCacheHandle,
    readonly cfg: RunnerConfig,
  ) {
    const T = cfg.maxTokens;
    const S = cfg.maxSeqs;
    this.batch = {
      numTokens: 0,
      tokenIds: new Int32Array(T),
      positions: new Int32Array(T),
      numSeqs: 0,
      queryStartLoc: new Int32Array(S + 1),
      seqLens: new Int32Array(S),
      groups: model.kvLayout.groups.map(() => ({ slotMapping: new Int32Array(T), blockTables: new Int32Array(S * cfg.maxBlocksPerSeq) })),
      maxBlocksPerSeq: cfg.maxBlocksPerSeq,
    };
    this.rows = new Int32Array(T);
    this.hidden = new Float32Array(T * model.cfg.hiddenSize);
    this.maxLogitsRows = Math.max(S, 64);
    this.logitsBuf = new Float32Array(this.maxLogitsRows * model.cfg.vocabSize);
  }

  /**
   * Run the model over one step's batch: write the new tokens' K/V and keep the final hidden states
   * of the `want` rows for logits(). Block copies (copy-on-write) are performed first.
   */
  forward(scheduled: readonly ScheduledSeq[], copies: ReadonlyArray<[number, number]>, want: readonly LogitsRequest[]): void {
    const be = this.be;
    if (copies.length > 0) {
      be.kvCacheCopyBlocks(this.cache, Int32Array.from(copies, (c) => c[0]), Int32Array.from(copies, (c) => c[1]));
    }
    const b = this.batch;
    const bs = this.cfg.blockSize;
    const mb = this.cfg.maxBlocksPerSeq;
    if (scheduled.length > this.cfg.maxSeqs) throw new Error(`step of ${scheduled.length} sequences exceeds maxSeqs ${this.cfg.maxSeqs}`);
    if (want.length > this.cfg.maxTokens) throw new Error(`asked for ${want.length} logits rows, more than the step's ${this.cfg.maxTokens} tokens`);
    let t = 0;
    const starts: number[] = [];
    for (let s = 0; s < scheduled.length; s++) {
      const { seq, numNewTokens } = scheduled[s]!;
      const start = seq.numComputedTokens;
      const end = start + numNewTokens;
      if (t + numNewTokens > this.cfg.maxTokens) throw new Error(`step of more than ${this.cfg.maxTokens} tokens`);
      if (seq.blockTables.length !== b.groups.length) throw new Error(`sequence has ${seq.blockTables.length} block tables for ${b.groups.length} KV groups`);
      b.queryStartLoc[s] = t;
      starts.push(t);
      for (let g = 0; g < b.groups.length; g++) {
        const table = seq.blockTables[g]!;
        const gb = b.groups[g]!;
        if (table.length > mb) throw new Error(`sequence holds ${table.length} blocks, more than ${mb}`);
        for (let p = start, i = t; p < end; p++, i++) gb.slotMapping[i] = table[Math.floor(p / bs)]! * bs + (p % bs);
        gb.blockTables.set(table, s * mb);
      }
      for (let p = start; p < end; p++, t++) {
        b.tokenIds[t] = seq.tokens[p]!;
        b.positions[t] = p;
      }
      b.seqLens[s] = end;
    }
    b.queryStartLoc[scheduled.length] = t;
    b.numTokens = t;
    b.numSeqs = scheduled.length;

    for (let r = 0; r < want.length; r++) {
      const w = want[r]!;
      const e = scheduled[w.entry]!;
      this.rows[r] = starts[w.entry]! + (w.position - e.seq.numComputedTokens);
    }
    this.model.forward(b, this.cache, this.rows.subarray(0, want.length), this.hidden);
  }

  /**
   * Hand back the resident pages of the step buffers (the model's activations, the final hidden
   * states, the logits): sized for the largest step, a long prompt's chunks fill them, and they
   * would stay resident for the life of the engine. Between steps only; every step writes what it
   * reads. Returns the bytes handed back, the backend's own scratch included.
   */
  releaseWorkingMemory(): number {
    return this.be.releaseWorkingMemory([...this.model.workingArrays(), this.hidden, this.logitsBuf]);
  }

  /**
   * Logits [count, vocab] of rows first..first+count-1 of the last forward's `want` list
   * (count <= maxLogitsRows). The returned buffer is overwritten by the next call.
   */
  logits(first: number, count: number): Float32Array {
    if (count > this.maxLogitsRows) throw new Error(`logits for ${count} rows at once, more than ${this.maxLogitsRows}`);
    const H = this.model.cfg.hiddenSize;
    const out = this.logitsBuf.subarray(0, count * this.model.cfg.vocabSize);
    this.model.logits(this.hidden.subarray(first * H, (first + count) * H), count, out);
    this.be.toHost(out);
    return out;
  }
}
