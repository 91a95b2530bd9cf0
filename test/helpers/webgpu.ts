/**
 * The WebGPU backend for tests, or why there is none. Without an adapter (or without the optional
 * `webgpu` package) the GPU tests skip with the reason, except where PAGEWISE_REQUIRE_WEBGPU=1
 * (.ci/run sets it after making SwiftShader available): there they fail, so a broken CI set-up
 * is loud instead of silently skipped.
 */
import { createWebGpuBackend, type WebGpuBackend } from '../../src/backend/webgpu/index.js';

export interface WebGpuForTests {
  gpu: WebGpuBackend | null;
  /** false when the backend is available, else the reason to skip. */
  skip: string | false;
}

let cached: WebGpuForTests | undefined;

export function webGpuForTests(): WebGpuForTests {
  if (cached) return cached;
  try {
    cached = { gpu: createWebGpuBackend(2), skip: false };
  } catch (err) {
    if (process.env['PAGEWISE_REQUIRE_WEBGPU'] === '1') throw err;
    const why = `no WebGPU backend here (${(err as Error).message.split('\n')[0]}); set PAGEWISE_REQUIRE_WEBGPU=1 to make this a failure`;
    process.stderr.write(`# skipping WebGPU tests: ${why}\n`);
    cached = { gpu: null, skip: why };
  }
  return cached;
}
