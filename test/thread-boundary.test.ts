/**
 * The thread boundary, checked mechanically: the main thread (the server, AsyncEngine, the LLM
 * class and the package entry) must not depend on modules that belong to the engine worker (the
 * core and its step modules, scheduler, KV cache, model execution, sampler implementation, compute
 * backend). What both sides need lives in shared modules: src/shared/ (rules and limits) and
 * src/engine/protocol.ts (the messages and wire types).
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chain, importSpecifiers, reachable } from './helpers/import-graph.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

const MAIN_THREAD_ENTRIES = [
  'src/index.ts',
  'src/engine/async-engine.ts',
  'src/engine/llm.ts',
  ...readdirSync(join(ROOT, 'src/server'))
    .filter((f) => f.endsWith('.ts'))
    .map((f) => `src/server/${f}`),
];

/**
 * The folders of the engine worker's side. New modules in them are worker-side unless listed in
 * MAIN_THREAD_OK, so the check fails closed: a module the main thread needs must be named there.
 */
const WORKER_SIDE = ['src/engine/', 'src/scheduler/', 'src/kv/', 'src/model/', 'src/sampling/', 'src/backend/'];

/** Modules inside those folders that the main thread may import. */
const MAIN_THREAD_OK = [
  // The main thread's engine side, and the messages both sides exchange.
  'src/engine/async-engine.ts',
  'src/engine/llm.ts',
  'src/engine/output-processor.ts',
  'src/engine/protocol.ts',
  'src/engine/stop-strings.ts',
  // Request validation, the model's generation defaults, stop strings on detokenized text.
  'src/sampling/params.ts',
  // Finding a model and reading its config files (the tokenizer and the defaults need them).
  'src/model/loader/resolve.ts',
  'src/model/loader/hf-cache.ts',
  'src/model/loader/hub-download.ts',
  'src/model/loader/model-dir.ts',
];

const isIn = (file: string, list: readonly string[]): boolean => list.some((p) => (p.endsWith('/') ? file.startsWith(p) : file === p));

describe('thread boundary', () => {
  test('the import scanner sees static, type-only, re-export, bare and dynamic imports, not comments', () => {
    const src = [
      "import { a } from './a.js';",
      "import type { B } from '../b.js';",
      'import {',
      '  c,',
      '  type D,',
      "} from './c.js';",
      "export { e } from './e.js';",
      "export type { F } from './f.js';",
      "import './side-effect.js';",
      "const g = await import('./g.js');",
      "import { x } from 'node:fs';",
      " * import { y } from './in-a-comment.js';",
    ].join('\n');
    assert.deepEqual(importSpecifiers(src).sort(), ['../b.js', './a.js', './c.js', './e.js', './f.js', './g.js', './side-effect.js']);
  });

  test('the walk reaches the worker side from the worker (the check can fail)', () => {
    const fromWorker = reachable(ROOT, ['src/engine/worker.ts']);
    for (const f of ['src/engine/core.ts', 'src/scheduler/scheduler.ts', 'src/kv/block-pool.ts', 'src/sampling/sampler.ts', 'src/backend/index.ts', 'src/model/runner.ts']) {
      assert.ok(fromWorker.has(f), `worker.ts should reach ${f}`);
    }
  });

  test('the main thread imports nothing from the worker side', () => {
    const seen = reachable(ROOT, MAIN_THREAD_ENTRIES);
    const leaks = [...seen.keys()].filter((f) => isIn(f, WORKER_SIDE) && !isIn(f, MAIN_THREAD_OK)).map((f) => chain(seen, f));
    assert.deepEqual(leaks, [], `main-thread modules reach worker-side modules:\n${leaks.join('\n')}`);
  });

  test('the shared modules import only shared modules', () => {
    const seen = reachable(ROOT, ['src/shared/fan-out.ts', 'src/shared/request-limits.ts', 'src/engine/protocol.ts']);
    const bad = [...seen.keys()].filter((f) => isIn(f, WORKER_SIDE) && !isIn(f, MAIN_THREAD_OK)).map((f) => chain(seen, f));
    assert.deepEqual(bad, []);
  });
});
