/**
 * Each HTTP request's log identity (log.ts): an id (sent back as `x-request-id`), its work run
 * inside it so every line it logs carries the id, and one access line when its response ends
 * (finished or cut off by the client): status, tokens, time to first token, total time.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { requestIdFrom, runInRequest, type RequestRecord, type ServerLog } from './log.js';

const ms = (x: number): number => Math.round(x * 10) / 10;

/** Install the hooks; returns a way to run code (an error handler's log) inside a request. */
export function trackRequests(app: FastifyInstance, log: ServerLog, accessLog: boolean): (request: FastifyRequest, fn: () => void) => void {
  const records = new WeakMap<FastifyRequest, RequestRecord>();
  app.addHook('onRequest', (request, reply, done) => {
    const record: RequestRecord = { id: requestIdFrom(request.headers['x-request-id']), start: performance.now() };
    records.set(request, record);
    // On the raw response: streamed (hijacked) replies write their own head.
    reply.raw.setHeader('x-request-id', record.id);
    const path = request.url.split('?')[0]!;
    const shown = path.length > 200 ? `${path.slice(0, 200)}…` : path;
    runInRequest(record, () => log('debug', `${request.method} ${shown} received`, { content_length: request.headers['content-length'], remote: request.ip }));
    if (accessLog) {
      reply.raw.once('close', () =>
        runInRequest(record, () =>
          log('info', `${request.method} ${shown}`, {
            status: reply.raw.statusCode,
            // The client left before the whole response was written.
            aborted: reply.raw.writableFinished ? undefined : true,
            response_id: record.responseId,
            prompt_tokens: record.promptTokens,
            completion_tokens: record.completionTokens,
            ttft_ms: record.firstTokenAt === undefined ? undefined : ms(record.firstTokenAt - record.start),
            total_ms: ms(performance.now() - record.start),
            remote: request.ip,
          }),
        ),
      );
    }
    runInRequest(record, done);
  });
  // The body arrives in stream events outside the request's async context: enter it again.
  const inRequest = (request: FastifyRequest, fn: () => void): void => {
    const r = records.get(request);
    if (r) runInRequest(r, fn);
    else fn();
  };
  app.addHook('preHandler', (request, _reply, done) => inRequest(request, done));
  return inRequest;
}
