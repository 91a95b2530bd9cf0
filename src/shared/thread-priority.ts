/**
 * Lowering the calling thread's CPU priority, for background worker threads (the tokenizer pool).
 *
 * On a machine with few cores, a worker tokenizing a long prompt competes for a core with the
 * server's event loop and the engine's threads. At equal priority the scheduler shares the cores
 * out evenly, so every other stream slows while the prompt is tokenized: on a 2-core host (one
 * compute thread, a 200,000-character prompt, test/server-production.test.ts) the other stream
 * got 0.17-0.33 chunks per ms during the tokenization at nice 0 and 0.28-0.58 at nice 10 (three
 * of four runs 0.50 or more), four runs each, interleaved. The price is the long prompt's own
 * wait on a busy machine (its request took 0.38-0.59 s at nice 0, 0.41-0.81 s at nice 10); on
 * idle cores nothing changes.
 *
 * Linux only: there a nice value belongs to a thread (setpriority with a thread id), found through
 * /proc/thread-self. Elsewhere setpriority would lower the whole process, so nothing is done.
 */
import { readlinkSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

export const BACKGROUND_NICE = 10;

/**
 * Lowers this thread's priority to nice `nice`, or leaves it where a server started at a higher
 * nice value already put it (never raises it above the event loop's). Returns whether it could.
 * Never throws.
 */
export function lowerThreadPriority(nice = BACKGROUND_NICE): boolean {
  if (process.platform !== 'linux') return false;
  try {
    // "PID/task/TID"
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (!Number.isInteger(tid) || tid <= 0) return false;
    setPriority(tid, Math.max(getPriority(tid), nice));
    return true;
  } catch {
    return false;
  }
}
