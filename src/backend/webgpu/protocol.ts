/**
 * Messages between the WebGPU backend (on the engine's thread, synchronous like every backend) and
 * its GPU thread (which owns the WebGPU device and awaits the API's promises). The backend records
 * commands and posts them in batches; it waits for a batch only when it needs data back (the
 * logits), blocking on a shared counter with Atomics.wait while the GPU thread runs it.
 */
import type { KernelName } from './kernels.js';

/** What a kernel binding refers to. */
export type Binding =
  /** The device mirror of a host ArrayBuffer (activations: whole buffer, element offsets in P). */
  | { kind: 'mirror'; id: number }
  /** Host data copied into the batch's upload arena (per-call inputs: ids, tables, P itself). */
  | { kind: 'data'; data: Uint8Array }
  /** An uploaded parameter (weights, norm vectors, biases). */
  | { kind: 'param'; id: number }
  /** One layer of a KV cache. */
  | { kind: 'kv'; id: number; layer: number }
  /** A scratch buffer of the GPU thread (at least `bytes`), e.g. a gate/up intermediate. */
  | { kind: 'temp'; slot: number; bytes: number };

export type Command =
  /** Create the mirror of a host buffer, initialised with its contents. */
  | { op: 'mirror'; id: number; init: Uint8Array }
  | { op: 'param'; id: number; data: Uint8Array }
  | { op: 'kv'; id: number; layers: number; layerBytes: number }
  | { op: 'free'; what: 'param' | 'kv' | 'mirror'; id: number }
  | { op: 'dispatch'; kernel: KernelName; groups: [number, number, number]; bindings: Binding[] }
  | { op: 'copy'; from: Binding; fromOffset: number; to: Binding; toOffset: number; bytes: number }
  /** Copy bytes of a mirror into the reply buffer at replyOffset. */
  | { op: 'read'; id: number; byteOffset: number; byteLength: number; replyOffset: number };

export interface BatchMessage {
  type: 'batch';
  seq: number;
  cmds: Command[];
  /** Where 'read' commands land (shared with the waiting thread); null when the batch reads nothing. */
  reply: SharedArrayBuffer | null;
}

/** Layout of the shared control words. */
export const CTRL = {
  /** Sequence number of the last batch finished (init is batch 1). */
  DONE: 0,
  /** Set when an error text waits in the error buffer. */
  ERROR: 1,
  /** Byte length of the error text. */
  ERROR_LEN: 2,
  WORDS: 4,
} as const;

/** Bytes of the shared error / init-reply text buffer. */
export const TEXT_BYTES = 64 * 1024;

/** What the GPU thread starts with. */
export interface GpuThreadData {
  ctrl: SharedArrayBuffer;
  text: SharedArrayBuffer;
  /** Whether the kernels may use subgroups where the adapter has them (lanes.ts). */
  subgroups: boolean;
}

/** The adapter the GPU thread opened (sent back as JSON through the text buffer). */
export interface AdapterReport {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  features: string[];
  limits: Record<string, number>;
  /** Whether the device was opened with `subgroups` and the linear kernels shuffle within them. */
  subgroups: boolean;
  /** A fallback adapter: a software implementation on the CPU (SwiftShader). */
  fallback: boolean;
}
