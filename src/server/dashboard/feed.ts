/**
 * The dashboard's live feed: server-sent events to every open dashboard. While at least one is
 * open, a timer asks the engine for its block map a few times a second (one round trip to the
 * worker whatever the number of viewers) and sends each viewer a frame: the engine's latest stats,
 * the block map when it changed since that viewer's last frame, and the history seconds it has not
 * seen. With no viewer, nothing runs.
 *
 * Events: `init` once (the pool's shape, the state names, the history so far), then `frame`.
 */
import type { ServerResponse } from 'node:http';
import type { AsyncEngine } from '../../engine/async-engine.js';
import type { EngineStats } from '../../engine/protocol.js';
import { BLOCK_STATE_NAMES, countBlockStates, packBlockStates, type BlockStateName } from '../../shared/block-map.js';
import type { DashboardHistory, HistoryPoint } from './history.js';

/** How often viewers get a frame: fast enough to watch blocks come and go, cheap for the worker. */
const FRAME_INTERVAL_MS = 250;

export interface DashboardInit {
  model: string;
  numBlocks: number;
  blockSize: number;
  /** Block state names, index = the code in the packed map. */
  states: readonly BlockStateName[];
  history: HistoryPoint[];
}

export interface DashboardFrame {
  /** Epoch ms the frame was made. */
  t: number;
  /** The engine's stats after its latest step (the numbers /metrics reports); null before any. */
  stats: EngineStats | null;
  /** Requests finished since the server started. */
  finished: number;
  /** Blocks per state in the map; null when the engine is not running. */
  counts: Record<BlockStateName, number> | null;
  /** The map, two bits per block (packBlockStates), present when it changed for this viewer. */
  blocks?: string;
  /** History seconds completed since this viewer's last frame. */
  points: HistoryPoint[];
}

interface Viewer {
  res: ServerResponse;
  /** The packed map this viewer last got. */
  blocks: string | null;
  /** The last history second it got. */
  lastT: number;
}

function writeEvent(res: ServerResponse, event: string, data: unknown): void {
  res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

export class DashboardFeed {
  private readonly viewers = new Set<Viewer>();
  private timer: NodeJS.Timeout | null = null;
  private ticking = false;

  constructor(
    private readonly engine: AsyncEngine,
    private readonly history: DashboardHistory,
    private readonly model: string,
  ) {}

  /** Start streaming to a response (the route has taken it over from fastify). */
  add(res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
    const history = this.history.completed(Date.now());
    const init: DashboardInit = {
      model: this.model,
      numBlocks: this.engine.info.numBlocks,
      blockSize: this.engine.info.blockSize,
      states: BLOCK_STATE_NAMES,
      history,
    };
    writeEvent(res, 'init', init);
    const viewer: Viewer = { res, blocks: null, lastT: history.at(-1)?.t ?? 0 };
    this.viewers.add(viewer);
    res.on('close', () => {
      this.viewers.delete(viewer);
      if (this.viewers.size === 0) this.stop();
    });
    if (this.timer === null) this.timer = setInterval(() => void this.tick(), FRAME_INTERVAL_MS);
    // The first frame now, not an interval later.
    void this.tick();
  }

  /** End every stream and stop the timer (the server is closing). */
  close(): void {
    this.stop();
    for (const v of this.viewers) v.res.end();
    this.viewers.clear();
  }

  private stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private async tick(): Promise<void> {
    // A slow worker answer must not pile up questions: one tick at a time.
    if (this.ticking) return;
    this.ticking = true;
    try {
      const states = await this.engine.blockMap();
      const now = Date.now();
      const points = this.history.completed(now);
      const packed = states === null ? null : packBlockStates(states);
      const frame: DashboardFrame = {
        t: now,
        stats: this.engine.lastStats,
        finished: this.history.totals.finished,
        counts: states === null ? null : countBlockStates(states),
        points: [],
      };
      for (const v of this.viewers) {
        // A viewer that has not read the last frame yet skips this one rather than queueing it.
        if (v.res.writableNeedDrain || v.res.destroyed) continue;
        const fresh = points.filter((p) => p.t > v.lastT);
        writeEvent(v.res, 'frame', { ...frame, points: fresh, ...(packed !== null && packed !== v.blocks ? { blocks: packed } : {}) });
        v.blocks = packed;
        v.lastT = fresh.at(-1)?.t ?? v.lastT;
      }
    } finally {
      this.ticking = false;
    }
  }
}
