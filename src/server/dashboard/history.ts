/**
 * The dashboard's memory of the last minutes: one point per second (tokens computed and generated,
 * requests finished and their latencies, the queues and KV usage at the second's end), fed by the
 * same engine events as /metrics. It records from server start, so a dashboard opened later still
 * shows what happened before.
 */
import type { RequestOutput } from '../../engine/output-processor.js';
import type { EngineStats } from '../../engine/protocol.js';

/** One second of the engine's life. Sums, not means, so the page can average over any window. */
export interface HistoryPoint {
  /** Epoch second the point covers. */
  t: number;
  /** Prompt tokens computed and tokens generated in this second. */
  prompt: number;
  gen: number;
  /** Requests finished in this second (any reason), the sum of their end-to-end latencies (ms). */
  done: number;
  e2eMs: number;
  /** Of those, the ones that produced a token, and the sum of their times to first token (ms). */
  ttftN: number;
  ttftMs: number;
  /** Queues and KV usage (0..1) as the last step of this second left them. */
  running: number;
  waiting: number;
  kv: number;
}

/** Cumulative totals since the server started (the dashboard's counters beside the rates). */
export interface HistoryTotals {
  /** Requests finished, any reason (aborted ones included). */
  finished: number;
}

const HISTORY_SECONDS = 300;

export class DashboardHistory {
  private readonly points: HistoryPoint[] = [];
  private current: HistoryPoint;
  /** Last cumulative token counters seen, so each second gets the growth. */
  private lastPrompt: number;
  private lastGen: number;
  readonly totals: HistoryTotals = { finished: 0 };

  /** `stats`: the engine's latest stats when the server starts (counters before it are not ours). */
  constructor(
    stats: EngineStats | null,
    nowMs: number,
    private readonly seconds = HISTORY_SECONDS,
  ) {
    this.lastPrompt = stats?.promptTokensTotal ?? 0;
    this.lastGen = stats?.generationTokensTotal ?? 0;
    this.current = blank(Math.floor(nowMs / 1000), stats?.running ?? 0, stats?.waiting ?? 0, stats?.kvUsage ?? 0);
  }

  onStats(s: EngineStats, nowMs: number): void {
    const p = this.at(nowMs);
    p.prompt += Math.max(0, s.promptTokensTotal - this.lastPrompt);
    p.gen += Math.max(0, s.generationTokensTotal - this.lastGen);
    this.lastPrompt = s.promptTokensTotal;
    this.lastGen = s.generationTokensTotal;
    p.running = s.running;
    p.waiting = s.waiting;
    p.kv = s.kvUsage;
  }

  onFinished(o: RequestOutput, nowMs: number): void {
    const p = this.at(nowMs);
    const m = o.metrics;
    p.done++;
    this.totals.finished++;
    p.e2eMs += Math.max(0, (m.finishedTime ?? nowMs) - m.arrivalTime);
    if (m.firstTokenTime !== null) {
      p.ttftN++;
      p.ttftMs += Math.max(0, m.firstTokenTime - m.arrivalTime);
    }
  }

  /** The completed seconds of the window, oldest first (the second in progress is not included). */
  completed(nowMs: number): HistoryPoint[] {
    this.at(nowMs);
    return this.points.slice();
  }

  /** The current point for `nowMs`, closing the seconds before it (idle seconds become points too). */
  private at(nowMs: number): HistoryPoint {
    const sec = Math.floor(nowMs / 1000);
    if (sec <= this.current.t) return this.current;
    const prev = this.current;
    this.push(prev);
    // Seconds without events carry the queues and KV usage the last step left.
    const idle = (t: number): HistoryPoint => blank(t, prev.running, prev.waiting, prev.kv);
    // After a long idle stretch only the window's worth of empty seconds matters.
    for (let t = Math.max(prev.t, sec - this.seconds - 1) + 1; t < sec; t++) this.push(idle(t));
    this.current = idle(sec);
    return this.current;
  }

  private push(p: HistoryPoint): void {
    this.points.push(p);
    if (this.points.length > this.seconds) this.points.splice(0, this.points.length - this.seconds);
  }
}

function blank(t: number, running: number, waiting: number, kv: number): HistoryPoint {
  return { t, prompt: 0, gen: 0, done: 0, e2eMs: 0, ttftN: 0, ttftMs: 0, running, waiting, kv };
}
