/**
 * The part of the WebGPU API the GPU thread uses, typed here so the project typechecks without the
 * optional `webgpu` package (whose types come from `@webgpu/types`). Names and members follow the
 * WebGPU specification.
 */

export interface GpuSupportedLimits {
  readonly maxStorageBufferBindingSize: number;
  readonly maxBufferSize: number;
  readonly maxComputeWorkgroupsPerDimension: number;
  readonly maxComputeInvocationsPerWorkgroup: number;
  readonly maxComputeWorkgroupStorageSize: number;
  readonly maxStorageBuffersPerShaderStage: number;
  readonly minStorageBufferOffsetAlignment: number;
}

export interface GpuAdapterInfo {
  readonly vendor: string;
  readonly architecture: string;
  readonly device: string;
  readonly description: string;
  /** A software (CPU) implementation, e.g. SwiftShader; absent in older Dawn builds. */
  readonly isFallbackAdapter?: boolean;
}

export interface GpuAdapter {
  readonly features: ReadonlySet<string>;
  readonly limits: GpuSupportedLimits;
  readonly info: GpuAdapterInfo | undefined;
  requestDevice(desc?: { requiredLimits?: Record<string, number>; requiredFeatures?: string[] }): Promise<GpuDevice>;
}

export interface Gpu {
  requestAdapter(opts?: { powerPreference?: 'high-performance' | 'low-power' }): Promise<GpuAdapter | null>;
}

export interface GpuBuffer {
  readonly size: number;
  mapAsync(mode: number, offset?: number, size?: number): Promise<void>;
  getMappedRange(offset?: number, size?: number): ArrayBuffer;
  unmap(): void;
  destroy(): void;
}

export interface GpuBindGroupLayout {
  readonly __brand: 'GPUBindGroupLayout';
}

export interface GpuBindGroup {
  readonly __brand: 'GPUBindGroup';
}

export interface GpuComputePipeline {
  getBindGroupLayout(index: number): GpuBindGroupLayout;
}

export interface GpuShaderModule {
  getCompilationInfo(): Promise<{ messages: ReadonlyArray<{ type: string; message: string; lineNum: number }> }>;
}

export interface GpuComputePass {
  setPipeline(p: GpuComputePipeline): void;
  setBindGroup(index: number, g: GpuBindGroup): void;
  dispatchWorkgroups(x: number, y?: number, z?: number): void;
  end(): void;
}

export interface GpuCommandEncoder {
  beginComputePass(): GpuComputePass;
  copyBufferToBuffer(src: GpuBuffer, srcOffset: number, dst: GpuBuffer, dstOffset: number, size: number): void;
  finish(): GpuCommandBuffer;
}

export interface GpuCommandBuffer {
  readonly __brand: 'GPUCommandBuffer';
}

export interface GpuQueue {
  writeBuffer(buffer: GpuBuffer, offset: number, data: ArrayBufferView | ArrayBuffer, dataOffset?: number, size?: number): void;
  submit(buffers: GpuCommandBuffer[]): void;
  onSubmittedWorkDone(): Promise<void>;
}

export interface GpuBufferBinding {
  buffer: GpuBuffer;
  offset?: number;
  size?: number;
}

export interface GpuDevice {
  readonly limits: GpuSupportedLimits;
  readonly features: ReadonlySet<string>;
  readonly queue: GpuQueue;
  readonly lost: Promise<{ reason: string; message: string }>;
  createBuffer(desc: { size: number; usage: number; mappedAtCreation?: boolean }): GpuBuffer;
  createShaderModule(desc: { code: string }): GpuShaderModule;
  createComputePipeline(desc: { layout: 'auto'; compute: { module: GpuShaderModule; entryPoint: string } }): GpuComputePipeline;
  createBindGroup(desc: { layout: GpuBindGroupLayout; entries: Array<{ binding: number; resource: GpuBufferBinding }> }): GpuBindGroup;
  createCommandEncoder(): GpuCommandEncoder;
  pushErrorScope(filter: 'validation' | 'out-of-memory' | 'internal'): void;
  popErrorScope(): Promise<{ message: string } | null>;
  destroy(): void;
}

/** What `import('webgpu')` provides (dawn.node). */
export interface WebGpuModule {
  create(options: string[]): Gpu;
  globals: Record<string, unknown>;
}

/** GPUBufferUsage flags (WebGPU specification). */
export const BufferUsage = {
  MAP_READ: 0x0001,
  COPY_SRC: 0x0004,
  COPY_DST: 0x0008,
  STORAGE: 0x0080,
} as const;

/** GPUMapMode.READ. */
export const MAP_READ = 0x0001;
