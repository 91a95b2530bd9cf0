/**
 * Refusing a body over the size limit in a way every HTTP/1.1 client can read. Answering 413 and
 * closing while the client is still sending makes its socket fail mid-upload: curl shows the 413,
 * but Node's fetch (and so the openai client) reports only "fetch failed". So the rest of the body
 * is read and dropped first, up to a bound (a client cannot make the server read without end);
 * past the bound the answer is sent and the connection closed anyway.
 */
import type { IncomingMessage } from 'node:http';

/** How much of an oversized body is read and dropped before answering, in multiples of the limit. */
export const DISCARD_LIMIT_FACTOR = 8;

/** Read and drop what is left of a request body, up to `maxBytes`; resolves when done or past the bound. */
export function discardBody(req: IncomingMessage, maxBytes: number): Promise<void> {
  return new Promise((resolve) => {
    if (req.readableEnded || req.destroyed) return resolve();
    let seen = 0;
    const done = (): void => {
      req.off('data', onData);
      req.off('end', done);
      req.off('error', done);
      req.off('close', done);
      resolve();
    };
    const onData = (chunk: Buffer): void => {
      seen += chunk.length;
      if (seen > maxBytes) done();
    };
    req.on('data', onData);
    req.on('end', done);
    req.on('error', done);
    req.on('close', done);
    req.resume();
  });
}
