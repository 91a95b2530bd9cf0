/**
 * Running a request's prompts on the engine from an HTTP handler: submit them all (or none),
 * follow their outputs together, and abort them when the client goes away.
 */
import type { ServerResponse } from 'node:http';
import type { FastifyReply } from 'fastify';
import type { AsyncEngine, RequestStream } from '../engine/async-engine.js';
import type { RequestOutput } from '../engine/output-processor.js';
import type { SamplingParams } from '../sampling/params.js';
import { currentRequest, type RequestRecord } from './log.js';
import { TokenGapObserver, type ServerMetrics } from './metrics.js';

/** The engine streams of one HTTP request (one per prompt). */
export class Generation {
  /** The HTTP request's access-log record (log.ts): its tokens and time to first token. */
  private readonly record: RequestRecord | undefined = currentRequest();

  private constructor(
    readonly streams: RequestStream[],
    private readonly gaps: TokenGapObserver[],
  ) {
    if (this.record) {
      this.record.promptTokens = streams.reduce((s, st) => s + st.output.promptTokenIds.length, 0);
      this.record.completionTokens = 0;
    }
  }

  /**
   * Submit every prompt. If one is refused (queue full, too long, engine down), the ones already
   * submitted are aborted and the error is rethrown, so a request runs entirely or not at all.
   */
  static start(engine: AsyncEngine, baseId: string, prompts: ReadonlyArray<{ tokenIds: number[]; params: SamplingParams }>, metrics: ServerMetrics): Generation {
    const streams: RequestStream[] = [];
    try {
      prompts.forEach((p, i) => {
        const requestId = prompts.length === 1 ? baseId : `${baseId}-${i}`;
        streams.push(engine.generate({ requestId, promptTokenIds: p.tokenIds, params: p.params }));
      });
    } catch (err) {
      for (const s of streams) s.abort();
      throw err;
    }
    for (const p of prompts) metrics.onAdmitted(p.params.n, p.params.maxTokens);
    const record = currentRequest();
    if (record) record.responseId = baseId;
    return new Generation(
      streams,
      streams.map(() => new TokenGapObserver(metrics)),
    );
  }

  abort(): void {
    for (const s of this.streams) s.abort();
  }

  /**
   * Abort everything when the client disconnects before the response is complete. Returns a
   * function that stops watching (call it once the response is written).
   */
  abortOnDisconnect(res: ServerResponse): () => void {
    const onClose = (): void => {
      if (!res.writableFinished) this.abort();
    };
    res.on('close', onClose);
    return () => res.off('close', onClose);
  }

  /**
   * Every prompt's outputs as they come, interleaved: yields `[promptIndex, snapshot]`. Snapshots
   * are cumulative (and the same object each time for a given prompt), so a prompt that changed
   * several times while the consumer was busy is yielded once. Throws the first failure.
   */
  async *outputs(): AsyncGenerator<[number, RequestOutput]> {
    // One pump per stream marks its prompt dirty; the consumer drains the dirty set in order.
    // (A Promise.race loop would pile up reactions on long-pending streams.)
    const dirty = new Set<number>();
    const st: { failure: { err: unknown } | null; active: number } = { failure: null, active: this.streams.length };
    let wake: (() => void) | null = null;
    const poke = (): void => {
      const w = wake;
      wake = null;
      w?.();
    };
    this.streams.forEach((stream, i) => {
      void (async () => {
        try {
          for await (const _ of stream) {
            dirty.add(i);
            poke();
          }
        } catch (err) {
          st.failure ??= { err };
        } finally {
          st.active--;
          poke();
        }
      })();
    });
    for (;;) {
      if (st.failure) throw st.failure.err;
      const next = dirty.values().next();
      if (!next.done) {
        const i = next.value;
        dirty.delete(i);
        const o = this.streams[i]!.output;
        this.gaps[i]!.observe(o);
        this.count();
        yield [i, o];
        continue;
      }
      if (st.active === 0) return;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  }

  /** Bring the access-log record's token counts up to date. */
  private count(): void {
    if (!this.record) return;
    let tokens = 0;
    for (const s of this.streams) for (const c of s.output.outputs) tokens += c.tokenIds.length;
    if (tokens > 0) this.record.firstTokenAt ??= performance.now();
    this.record.completionTokens = tokens;
  }

  /** Wait for every prompt to finish; returns the final outputs in prompt order. */
  async finals(): Promise<RequestOutput[]> {
    for await (const _ of this.outputs()) {
      // Only the end matters here; iterating feeds the inter-token-latency observers.
    }
    return this.streams.map((s) => s.output);
  }

  /**
   * Answer the HTTP request: stream it, or wait for every prompt's final output and respond with
   * `respond(finals)`. A client that disconnects (at any point) aborts the generation; when it is
   * gone before the answer is ready, nothing is sent.
   */
  async serve(reply: FastifyReply, stream: boolean, writeStream: () => Promise<void>, respond: (finals: RequestOutput[]) => unknown): Promise<unknown> {
    const unwatch = this.abortOnDisconnect(reply.raw);
    try {
      if (stream) {
        await writeStream();
        return reply;
      }
      let finals: RequestOutput[];
      try {
        finals = await this.finals();
      } catch (err) {
        this.abort();
        throw err;
      }
      if (reply.raw.destroyed) {
        // The client left; its requests were aborted and there is no one to answer.
        reply.hijack();
        return reply;
      }
      return respond(finals);
    } finally {
      unwatch();
    }
  }
}
