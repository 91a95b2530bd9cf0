/**
 * Engine stats (worker): the token counters the core keeps across steps, and the EngineStats a
 * step reports from them, the scheduler's queues and the KV cache.
 */
import type { KVCacheManager } from '../kv/kv-cache-manager.js';
import type { Scheduler, SchedulerOutput } from '../scheduler/scheduler.js';
import type { EngineStats } from './protocol.js';

export class EngineCounters {
  /** Prompt tokens computed (prefill, recomputation after preemption included). */
  private promptTokensTotal = 0;
  private generationTokensTotal = 0;

  /** Count the prompt tokens of a step (before the sequences are advanced past them). */
  countScheduled(out: SchedulerOutput): void {
    for (const { seq, numNewTokens } of out.scheduled) {
      if (seq.numComputedTokens < seq.promptLen) this.promptTokensTotal += Math.min(numNewTokens, seq.promptLen - seq.numComputedTokens);
    }
  }

  countGenerated(tokens: number): void {
    this.generationTokensTotal += tokens;
  }

  snapshot(scheduler: Scheduler, kv: KVCacheManager, preempted: number, scheduledTokens: number, stepMs: number): EngineStats {
    const pool = kv.pool;
    const q = scheduler.stats();
    const stored = pool.numStoredTokens;
    return {
      running: q.runningRequests,
      waiting: q.waitingRequests,
      preemptedThisStep: preempted,
      numPreemptionsTotal: q.numPreemptions,
      scheduledTokens,
      promptTokensTotal: this.promptTokensTotal,
      generationTokensTotal: this.generationTokensTotal,
      blocksTotal: pool.numBlocks,
      blocksUsed: pool.numUsed,
      blocksFree: pool.numFree,
      kvUsage: kv.usage(),
      kvWaste: kv.waste(),
      kvWasteContiguous: q.reservedTokens === 0 ? 0 : Math.max(0, q.reservedTokens - stored) / q.reservedTokens,
      prefixCacheQueries: kv.prefixStats.queries,
      prefixCacheHits: kv.prefixStats.hits,
      stepMs,
    };
  }
}
