/**
 * One full garbage collection of this thread's V8 heap, asked for once start-up is over.
 *
 * Loading a model leaves tens of MB of garbage in a heap (parsed tokenizer and GGUF metadata, the
 * files' JSON, the young generation grown by the build) that V8 only collects when the program
 * allocates again: an idle server kept it resident (the main heap held 83 MB right after start and
 * 31 MB after its first request). `gc` is reachable only with --expose-gc; the flag is set for the
 * moment it takes a new context to see the function, then cleared.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export function collectGarbageNow(): void {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as unknown;
  setFlagsFromString('--no-expose-gc');
  if (typeof gc === 'function') {
    (gc as () => void)();
    (gc as () => void)();
  }
}

/**
 * The young generation's semi-spaces, which start-up grows from 1 to 32 MB (the tokenizer's build
 * keeps many objects alive through the scavenges), shrink back only in a collection that comes
 * after a spell of little allocation (V8 measures the allocation rate since its previous
 * collections, over ~5 s). `collectGarbageNow` right after start-up comes too soon for that, and an
 * idle server never collects again: so collect once more `afterMs` later, if `idle()` says the
 * thread has had nothing to do, then run `then` (the server has the engine return the C allocator's
 * free pages). (A busy thread uses its young generation, and V8 sizes it itself.)
 */
export function collectGarbageOnceQuiet(idle: () => boolean, then?: () => void, afterMs = 8000): void {
  setTimeout(() => {
    if (!idle()) return;
    collectGarbageNow();
    then?.();
  }, afterMs).unref();
}
