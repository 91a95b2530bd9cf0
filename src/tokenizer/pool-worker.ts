/**
 * A tokenizer pool worker (see pool.ts): builds the model's tokenizer from the files it is given,
 * then does one job per message.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { serializeError } from '../errors.js';
import { runJob, type TokenizerJob } from './jobs.js';
import type { PoolReply } from './pool.js';
import { PagewiseTokenizer, type TokenizerFiles } from './tokenizer.js';

const port = parentPort;
if (!port) throw new Error('the tokenizer pool worker must run in a worker thread');
const tok = PagewiseTokenizer.fromFiles((workerData as { files: TokenizerFiles }).files);

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
