/**
 * The one place a compute backend is made. The engine worker, the CLI's benchmarks and tests call
 * `createBackend` and hand the result to whatever computes (EngineCore, the model, the runner, the
 * sampler); nothing outside src/backend/ loads the native addon or the WebGPU package.
 */
import type { Device } from '../config/engine-config.js';
import type { ComputeBackend } from './backend.js';
import { createCpuBackend } from './native.js';
import { createWebGpuBackend } from './webgpu/index.js';

export type { BackendDescription, ComputeBackend } from './backend.js';
export { DType, MatmulPrecision } from './backend.js';

export interface BackendOptions {
  /** Compute threads (CPU backend; the WebGPU backend's sampler passes). */
  threads: number;
  /** Default `cpu`. */
  device?: Device;
}

export function createBackend(opts: BackendOptions): ComputeBackend {
  switch (opts.device ?? 'cpu') {
    case 'cpu':
      return createCpuBackend(opts.threads);
    case 'webgpu':
      return createWebGpuBackend(opts.threads);
    default:
      throw new RangeError(`unknown device ${String(opts.device)} (known: cpu, webgpu)`);
  }
}
