// A preload for scripts/measure-memory.sh (HEAP_PROBE=1): in every thread of the process (the main
// thread, the engine worker, tokenizer workers), every 2 s, write that thread's V8 heap statistics
// to $HEAP_PROBE_DIR/heap-PID-THREAD.json, so the resident memory can be split by thread and space.
const { threadId, isMainThread } = require('node:worker_threads');
const v8 = require('node:v8');
const fs = require('node:fs');
const path = require('node:path');
const dir = process.env.HEAP_PROBE_DIR || '/tmp';
const mb = (b) => +(b / 1e6).toFixed(1);
setInterval(() => {
  const h = v8.getHeapStatistics();
  const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, mb(s.physical_space_size)]));
  const line = { thread: threadId, main: isMainThread, used_mb: mb(h.used_heap_size), physical_mb: mb(h.total_physical_size), external_mb: mb(h.external_memory), spaces_physical_mb: spaces };
  fs.writeFileSync(path.join(dir, `heap-${process.pid}-${threadId}.json`), `${JSON.stringify(line)}\n`);
}, 2000).unref();
