/**
 * Start a worker thread running one of Pagewise's modules. The published package runs compiled
 * .js; under tsx (tests, development) the sources are .ts, and Node 20 does not apply `--import`
 * loader hooks to a worker's entry file, so a tiny eval'd entry registers tsx first and then
 * imports the module.
 *
 * A worker's module is named by URL, not imported: what it loads never enters the main thread.
 */
import { Worker } from 'node:worker_threads';

/** `moduleUrl` is the module's .js URL relative to the caller (`new URL('./x.js', import.meta.url)`). */
export function startModuleWorker(moduleUrl: URL, workerData: unknown): Worker {
  if (!moduleUrl.href.endsWith('.js')) throw new Error(`worker module ${moduleUrl.href} must be named by its .js URL`);
  if (!import.meta.url.endsWith('.ts')) return new Worker(moduleUrl, { workerData });
  const url = moduleUrl.href.replace(/\.js$/, '.ts');
  const code = `import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(url)}); })`;
  return new Worker(code, { eval: true, workerData });
}
