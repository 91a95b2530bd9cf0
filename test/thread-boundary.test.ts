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

/** Modules that belong to the engine worker (folders end with '/'). */
const WORKER_SIDE = [
  'src/engine/worker.ts',
  'src/engine/core.ts',
  'src/engine/sequence.ts',
  'src/engine/sequence-group.ts',
  'src/engine/beam-search.ts',
  'src/engine/request-state.ts',
  'src/engine/prompt-logprobs.ts',
  'src/engine/engine-stats.ts',
  'src/engine/kv-sizing.ts',
  'src/scheduler/',
  'src/kv/',
  'src/model/architectures/',
  'src/model/runner.ts',
  'src/model/loader/weights.ts',
  'src/sampling/sampler.ts',
  'src/sampling/rng.ts',
  'src/backend/',
];

/**
 * Known exception, to be removed: the `demo` model is generated on the main thread (model/loader/
 * resolve.ts → model/fixture/write-fixture.ts), whose safetensors writer shares a module with the
 * reader, which maps files through the CPU backend's host services. Only that path may reach the
 * backend, and only these modules of it.
 */
const FIXTURE_WRITER_PATH = ['src/model/fixture/', 'src/model/loader/safetensors.ts', 'src/model/loader/dtype.ts'];
const FIXTURE_WRITER_REACHES = new Set(['src/backend/backend.ts', 'src/backend/native.ts']);

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
    for (const f of ['src/engine/core.ts', 'src/scheduler/scheduler.ts', 'src/kv/block-pool.ts', 'src/sampling/sampler.ts', 'src/backend/index.ts']) {
      assert.ok(fromWorker.has(f), `worker.ts should reach ${f}`);
    }
  });

  test('the main thread imports nothing from the worker side', () => {
    // The one known edge into the backend, from the fixture writer, is not followed.
    const fixtureEdge = (from: string, to: string): boolean => isIn(from, FIXTURE_WRITER_PATH) && FIXTURE_WRITER_REACHES.has(to);
    const seen = reachable(ROOT, MAIN_THREAD_ENTRIES, fixtureEdge);
    const leaks = [...seen.keys()].filter((f) => isIn(f, WORKER_SIDE)).map((f) => chain(seen, f));
    assert.deepEqual(leaks, [], `main-thread modules reach worker-side modules:\n${leaks.join('\n')}`);
  });

  test('the shared modules import only shared modules', () => {
    const seen = reachable(ROOT, ['src/shared/fan-out.ts', 'src/shared/request-limits.ts', 'src/engine/protocol.ts']);
    const bad = [...seen.keys()].filter((f) => isIn(f, WORKER_SIDE)).map((f) => chain(seen, f));
    assert.deepEqual(bad, []);
  });
});
