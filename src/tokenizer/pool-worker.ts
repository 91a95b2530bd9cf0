/**
 * A tokenizer pool worker (see pool.ts): builds the model's tokenizer from the files it is given,
 * then does one job per message.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { serializeError } from '../errors.js';
import { lowerThreadPriority } from '../shared/thread-priority.js';
import { runJob, type TokenizerJob } from './jobs.js';
import type { PoolReply, PoolWorkerData } from './pool.js';
import { PagewiseTokenizer, unpackTokenizerFiles } from './tokenizer.js';

const port = parentPort;
if (!port) throw new Error('the tokenizer pool worker must run in a worker thread');
// Background work: the event loop and the engine come first (see thread-priority.ts).
lowerThreadPriority();
// The files are read from the shared bytes; what the tokenizer does not keep of them is garbage.
const tok = PagewiseTokenizer.fromFiles(unpackTokenizerFiles((workerData as PoolWorkerData).files));

port.on('message', ({ id, job }: { id: number; job: TokenizerJob }) => {
  let reply: PoolReply;
  const transfer: ArrayBuffer[] = [];
  try {
    const out = runJob(tok, job);
    if (typeof out === 'string') reply = { id, ok: true, text: out };
    else {
      const ids = out.map((l) => Uint32Array.from(l));
      transfer.push(...ids.map((a) => a.buffer as ArrayBuffer));
      reply = { id, ok: true, ids };
    }
  } catch (err) {
    reply = { id, ok: false, error: serializeError(err) };
  }
  port.postMessage(reply, transfer);
});
