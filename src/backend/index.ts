/**
 * The one place a compute backend is made. The engine worker, the CLI's benchmarks and tests call
 * `createBackend` and hand the result to whatever computes (EngineCore, the model, the runner, the
 * sampler); nothing outside src/backend/ loads the native addon.
 */
import type { ComputeBackend } from './backend.js';
import { createCpuBackend } from './native.js';

export type { BackendDescription, ComputeBackend } from './backend.js';
export { DType, MatmulPrecision } from './backend.js';

export interface BackendOptions {
  /** Compute threads (CPU backend). */
  threads: number;
}

export function createBackend(opts: BackendOptions): ComputeBackend {
  return createCpuBackend(opts.threads);
}
