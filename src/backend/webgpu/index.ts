/**
 * The WebGPU backend's entry: `createWebGpuBackend` opens the device (on the backend's GPU thread,
 * which loads the optional `webgpu` package only now) and throws a clear error when the package
 * or an adapter is missing.
 */
import type { ComputeBackend } from '../backend.js';
import { WebGpuBackend, type WebGpuOptions } from './webgpu-backend.js';

export type { AdapterReport } from './protocol.js';
export { WebGpuBackend } from './webgpu-backend.js';

/**
 * A WebGPU backend; `threads` sizes the CPU pool of the sampler's row passes. The options pick
 * among kernels that give the same bits (tests compare them; see WebGpuBackend's constructor).
 */
export function createWebGpuBackend(threads: number, options: WebGpuOptions = {}): ComputeBackend & WebGpuBackend {
  return new WebGpuBackend(threads, options);
}
