/**
 * The WebGPU backend's entry: `createWebGpuBackend` opens the device (on the backend's GPU thread,
 * which loads the optional `webgpu` package only now) and throws a clear error when the package
 * or an adapter is missing.
 */
import type { ComputeBackend } from '../backend.js';
import { WebGpuBackend } from './webgpu-backend.js';

export type { AdapterReport } from './protocol.js';
export { WebGpuBackend } from './webgpu-backend.js';

/**
 * A WebGPU backend; `threads` sizes the CPU pool of the sampler's row passes. `subgroups: false`
 * keeps the kernels off subgroups where the adapter has them (the same bits: tests compare both).
 */
export function createWebGpuBackend(threads: number, options: { subgroups?: boolean } = {}): ComputeBackend & WebGpuBackend {
  return new WebGpuBackend(threads, options);
}
