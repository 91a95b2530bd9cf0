/**
 * Sequence: one token stream the scheduler runs (a request with n > 1 owns several).
 * Lives in the engine worker; the main thread only sees its outputs.
 */
import type { KvSequence } from '../kv/kv-cache-manager.js';
import type { SamplingParams } from '../sampling/params.js';
import type { Rng } from '../sampling/rng.js';
import type { GrammarMatcher } from '../structured/matcher.js';
import type { FinishReason } from './protocol.js';

export type SequenceStatus = 'waiting' | 'running' | 'finished';

export class Sequence implements KvSequence {
  /** Prompt ids followed by generated ids. */
  readonly tokens: number[];
  readonly promptTokenIds: readonly number[];
  readonly outputTokenIds: number[] = [];
  numComputedTokens = 0;
  /** One block table per KV group (filled by the KV manager). */
  blockTables: number[][] = [];
  blockHashes: string[] = [];
  status: SequenceStatus = 'waiting';
  finishReason: FinishReason | null = null;
  /** The stop token id that ended the sequence (OpenAI/vLLM `stop_reason`). */
  stopReason: number | null = null;
  numPreemptions = 0;
  /** Cumulative logprob of the generated tokens (raw distribution). */
  cumulativeLogprob = 0;
  /** Structured outputs: where the output stands in its grammar (null = unconstrained). */
  grammar: GrammarMatcher | null = null;

  constructor(
    /** Engine-wide unique id (orders admission: larger = admitted later). */
    readonly id: number,
    readonly requestId: string,
    /** Index of this sequence within its request (0 … n-1). */
    readonly index: number,
    promptTokenIds: readonly number[],
    readonly params: SamplingParams,
    readonly rng: Rng,
    readonly eosTokenIds: readonly number[],
    readonly arrivalTime: number,
  ) {
    this.promptTokenIds = promptTokenIds.slice();
    this.tokens = promptTokenIds.slice();
  }

  get promptLen(): number {
    return this.promptTokenIds.length;
  }

  appendToken(id: number): void {
    this.tokens.push(id);
    this.outputTokenIds.push(id);
  }

  /**
   * Advance the grammar by a token just appended. The sampler only draws what the mask allows, so
   * a refusal is a bug; a terminated grammar (the output is complete) ignores what follows, which
   * is only ever a stop token repeated under ignore_eos.
   */
  acceptGrammarToken(id: number): void {
    const g = this.grammar;
    if (g === null || g.isTerminated()) return;
    if (!g.acceptToken(id)) throw new Error(`sequence ${this.requestId}/${this.index}: its grammar refused sampled token ${id}`);
  }

  /** Free the grammar state (the sequence ended). */
  releaseGrammar(): void {
    this.grammar?.dispose();
    this.grammar = null;
  }

  /** Tokens not yet in the KV cache (the rest of the prompt, or the last sampled token). */
  get numUncomputed(): number {
    return this.tokens.length - this.numComputedTokens;
  }

  get isFinished(): boolean {
    return this.status === 'finished';
  }
}
