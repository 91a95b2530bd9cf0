/**
 * The streaming half of the generation routes (chat and completions): wait for the first output
 * (so that a request the engine refuses late still gets a proper error status), then answer 200
 * with server-sent events, one chunk per changed choice, an optional usage chunk, and `[DONE]`.
 * A failure mid-stream becomes an error event; the client leaving stops the loop. The routes only
 * say what their chunks and choices look like.
 */
import type { FastifyReply } from 'fastify';
import type { RequestOutput } from '../engine/output-processor.js';
import type { ServeContext } from './context.js';
import { toHttpError } from './errors.js';
import type { Usage } from './format.js';
import type { Generation } from './generation.js';
import { SseWriter } from './sse.js';

export interface StreamFormat {
  /** The route, for the log. */
  route: string;
  /** The response id, for the log. */
  id: string;
  /** The chunk object that carries `choices` (and `usage` when given). */
  chunk(choices: unknown[], usage?: Usage): Record<string, unknown>;
  /** Choices sent before any output (the chat role), each in its own chunk. */
  preamble?(): Iterable<unknown>;
  /**
   * The choices that prompt `promptIndex`'s new snapshot adds since the last call, each sent in its
   * own chunk. Generated lazily: each choice is built after the previous one was written.
   */
  choices(promptIndex: number, output: RequestOutput): Iterable<unknown>;
  /** Token counts so far, over every prompt. */
  usage(): Usage;
  /** stream_options.continuous_usage_stats: every chunk carries the usage so far. */
  continuousUsage: boolean;
  /** stream_options.include_usage: a last chunk with no choices carries the final usage. */
  includeUsage: boolean;
}

export async function streamGeneration(sc: ServeContext, gen: Generation, reply: FastifyReply, f: StreamFormat): Promise<void> {
  const outputs = gen.outputs();
  let first: IteratorResult<[number, RequestOutput]>;
  try {
    first = await outputs.next();
  } catch (err) {
    gen.abort();
    throw err;
  }
  reply.hijack();
  const sse = new SseWriter(reply.raw);
  sse.open();
  const sendAll = async (choices: Iterable<unknown>): Promise<void> => {
    for (const choice of choices) await sse.send(f.chunk([choice], f.continuousUsage ? f.usage() : undefined));
  };
  try {
    if (f.preamble) await sendAll(f.preamble());
    if (!first.done) await sendAll(f.choices(...first.value));
    for await (const [pi, o] of outputs) {
      if (sse.closed) break;
      await sendAll(f.choices(pi, o));
    }
    if (f.includeUsage) await sse.send(f.chunk([], f.usage()));
  } catch (err) {
    gen.abort();
    const e = toHttpError(err);
    if (e.status >= 500) sc.log('error', `${f.route} ${f.id} failed mid-stream: ${e.body.error.message}`);
    await sse.send(e.body);
  } finally {
    await sse.done();
  }
}
