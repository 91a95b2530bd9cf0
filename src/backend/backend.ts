/**
 * The compute backend contract: the ops the engine runs for one step (embedding, linear layers,
 * norms, rotary embedding, the paged KV cache and attention, the sampler's full-vocabulary row
 * passes). The engine, the model, the runner and the sampler receive a backend object and call
 * only this interface; a second backend (another device) implements exactly this. Test hooks and
 * machine microbenchmarks of the CPU backend are separate interfaces (`src/backend/native.ts`).
 *
 * All ops are synchronous: the engine calls them from its worker thread, so the main thread never
 * waits on them. Every op writes into a caller-provided output (no allocation on the hot path) and
 * computes each output row in an order that does not depend on the batch size or on how work is
 * split over threads or devices' work groups (batch invariance: docs/ARCHITECTURE.md).
 *
 * Shapes are row-major. "Weight" arrays hold raw element bits: Float32Array for F32,
 * Uint16Array for F16 and BF16.
 *
 * Every call validates its arguments before touching memory and throws a TypeError (wrong type,
 * non-integer) or RangeError (bad value, length, index, dtype) instead of crashing. Parameter
 * arrays (weights, bias, norm weight, invFreq) must have exactly the size of their shape;
 * activation and output arrays must have at least that size (a longer, preallocated workspace is
 * fine: only the leading part is used). Outputs must not overlap inputs unless a doc says so.
 */

/** Element type of weights and KV caches; values match native/common.h. */
export enum DType {
  F32 = 0,
  F16 = 1,
  BF16 = 2,
}

import type { GgmlType } from './quant.js';

export type WeightArray = Float32Array | Uint16Array;

/**
 * How a linear layer multiplies. `F32`: weights of any dtype widened exactly to float32, float32
 * activations, float32 accumulation. `BF16`: BF16 weights only; activations rounded to BF16
 * (round-to-nearest-even), products accumulated in float32 (AVX512_BF16 `vdpbf16ps` where available).
 */
export enum MatmulPrecision {
  F32 = 0,
  BF16 = 1,
}

/** Opaque handle to weights pre-packed for {@link NativeBackend.linearPacked} (native memory). */
export interface PackedLinearHandle {
  readonly __packedLinear: unique symbol;
}

/** One weight matrix of a pack: w is [n, K] in Hugging Face layout, bias (optional) is [n]. */
export interface LinearPart {
  w: WeightArray;
  n: number;
  bias?: Float32Array | null;
}

/**
 * One quantized weight matrix of a pack: w holds n rows of K values in the GGML block format
 * `type` (a GGUF tensor's bytes as stored: each row on its own, K / blockSize blocks of
 * blockBytes bytes; see src/backend/quant.ts), bias (optional) is [n].
 */
export interface QuantLinearPart {
  w: Uint8Array;
  type: GgmlType;
  n: number;
  bias?: Float32Array | null;
}

/** Opaque handle to a paged KV cache allocated in native memory. */
export interface KvCacheHandle {
  readonly __kvCache: unique symbol;
}

/** What a backend runs on, for logs, `/version` and benchmark reports. */
export interface BackendDescription {
  /** `cpu`, `webgpu`, ... */
  device: string;
  /** Worker threads (CPU) or 1. */
  threads: number;
  /** Kernel family or adapter name. */
  kernels: string;
  /** A GPU's reported limits (WebGPU adapter limits such as maxStorageBufferBindingSize), for reports. */
  limits?: Record<string, number>;
  /** A GPU's optional features (WebGPU feature names), for reports. */
  features?: string[];
}

export interface ComputeBackend {
  describe(): BackendDescription;

  /**
   * The GGML types {@link packLinearQuant}, {@link packGateUpQuant} and {@link embeddingQuant}
   * take on this backend (the model checks every quantized tensor against it at load).
   */
  readonly quantTypes: readonly GgmlType[];

  /** out[t, :] = table[ids[t], :] widened to float32. table is [vocab, hidden]. */
  embedding(out: Float32Array, table: WeightArray, tableDtype: DType, ids: Int32Array, hidden: number): void;

  /**
   * Re-lay weights out once (at model load) into the order the linear microkernels stream them,
   * in native memory: columns in vectors of 16, vectors in contiguous panels, k pairs interleaved
   * for BF16 precision (what `vdpbf16ps` reads). Several matrices with the same K (e.g. q, k, v)
   * can share one pack: one pass over the activations fills all their outputs. The source arrays
   * are copied (they may be freed or unmapped afterwards). Same dtype/precision rules as linear().
   */
  packLinear(parts: LinearPart[], wDtype: DType, K: number, precision: MatmulPrecision): PackedLinearHandle;
  /**
   * A gate/up pair packed together: linearPacked then writes out[m, i] = silu(g) * u with
   * g = x[m,:] . gate[i,:], u = x[m,:] . up[i,:] (the same bits as two packs + siluMul).
   * gate and up are [I, K].
   */
  packGateUp(gate: WeightArray, up: WeightArray, wDtype: DType, I: number, K: number, precision: MatmulPrecision): PackedLinearHandle;
  /**
   * outs[s][m, :] = x[m, :] . part_s^T (+ bias_s) for every part of the pack (one output of
   * [M, I] for a gate/up pack); with `accumulate`, outs[s] += that instead (a residual add fused
   * into the store: the same bits as linear then add). x: [M, K] float32.
   *
   * Each output element is one float32 accumulator taking k in order (F32 precision: one fused
   * multiply-add per k; BF16 precision: one bf16 pair dot product per k pair), whatever M, the
   * other rows, the other parts or the thread count: row m of a batch equals the M = 1 result bit
   * for bit, and equals the plain (unpacked) linear of the test hooks bit for bit. Quantized packs
   * ({@link packLinearQuant}, {@link packGateUpQuant}) compute as documented there, with the same
   * batch invariance. Outputs must not overlap x or each other.
   */
  linearPacked(w: PackedLinearHandle, x: Float32Array, M: number, outs: Float32Array[], accumulate: boolean): void;
  /**
   * Quantized weights (GGML types Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
   * IQ4_NL, IQ4_XS) packed for {@link linearPacked}, kept quantized in native memory (the bytes
   * are copied; the sources may be unmapped afterwards). Parts may have different types (a Q4_K_M
   * file mixes Q4_K and Q6_K); K must be a multiple of every part's block size.
   *
   * linearPacked on such a pack computes outs[s][m, r] = sum_k w_s[r, k] x[m, k] (+ bias_s[r])
   * with w the dequantized weights (exactly {@link CpuTestHooks.dequantizeRows}'s values), as
   * integer dot products: each activation row is quantized per group of 256 values (32 where K is
   * not a multiple of 256) to 14-bit integers (scale = group max |x| / 8191, round to nearest even;
   * native/quant/act_quant.h), multiplied with the weights' integers exactly, and the integer sums
   * are scaled in float32 in a fixed order per output (native/quant/kernels.h: per block of 32, or
   * per block of 256 for the K-quants and IQ4_XS). Error against the float64 product of the
   * dequantized weights is about 1e-4 of |w|·|x| per group (llama.cpp's int8 activations: 30-60
   * times more). Each output is computed by the same operations whatever M, the other rows,
   * the other parts or the thread count: row m of a batch equals the M = 1 result bit for bit.
   */
  packLinearQuant(parts: QuantLinearPart[], K: number): PackedLinearHandle;
  /**
   * A quantized gate/up pair (each [I, K] of its own type): linearPacked writes
   * out[m, i] = silu(g) * u, the same bits as packLinearQuant of the two parts followed by siluMul.
   */
  packGateUpQuant(gate: Uint8Array, gateType: GgmlType, up: Uint8Array, upType: GgmlType, I: number, K: number): PackedLinearHandle;
  /**
   * out[t, :] = dequantized row ids[t] of a quantized [vocab, hidden] table (GGML type `type`,
   * hidden a multiple of its block size; vocab = table bytes / row bytes).
   */
  embeddingQuant(out: Float32Array, table: Uint8Array, type: GgmlType, ids: Int32Array, hidden: number): void;
  /**
   * out[t, :] = row ids[t] of a one-part pack: a quantized one ({@link packLinearQuant}) dequantized,
   * the same values as {@link embeddingQuant} over the table it was packed from; a float one
   * ({@link packLinear}) widened, the same values as {@link embedding} over its weights. A head
   * tied to the embedding reads its rows from the pack, so the table is held once (reading them
   * from the mapped file would page the file's copy back in, row by row, over a server's life).
   */
  embeddingPacked(out: Float32Array, w: PackedLinearHandle, ids: Int32Array): void;

  /** Free a pack's native memory now, float or quantized (the handle must not be used afterwards; idempotent). */
  packedLinearFree(w: PackedLinearHandle): void;

  /** out[m, :] = x[m, :] / sqrt(mean(x[m, :]^2) + eps) * weight.  x, out: [M, H]; may alias. */
  rmsnorm(out: Float32Array, x: Float32Array, weight: Float32Array, M: number, H: number, eps: number): void;

  /**
   * The rotary angles of T positions: cosSin[t, i] = cos(positions[t] * invFreq[i]) and
   * cosSin[t, half + i] the sine (half = invFreq.length; angles evaluated in double precision).
   * invFreq has rope_theta and rope_scaling already applied. Computed once per step, used by every
   * layer's {@link rope}.
   */
  ropeTable(cosSin: Float32Array, positions: Int32Array, T: number, invFreq: Float32Array): void;
  /**
   * Rotary embedding in place, Hugging Face `rotate_half` convention, on q [T, nHeads*headDim] and
   * k [T, nKvHeads*headDim], with the angles of {@link ropeTable} ([T, headDim]).
   */
  rope(q: Float32Array, k: Float32Array, cosSin: Float32Array, T: number, nHeads: number, nKvHeads: number, headDim: number): void;

  /**
   * out[m, i] = silu(gate[m, i]) * up[m, i]; gate/up are [M, I] with row strides (elements, >= I).
   * out is [M, I]; it may alias gate or up only exactly (same start, that stride == I).
   */
  siluMul(out: Float32Array, gate: Float32Array, up: Float32Array, M: number, I: number, gateStride: number, upStride: number): void;

  /**
   * out[m, i] = gelu_tanh(gate[m, i]) * up[m, i] (GeGLU, transformers' `gelu_pytorch_tanh`:
   * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))); shapes, strides and aliasing as siluMul.
   */
  geluTanhMul(out: Float32Array, gate: Float32Array, up: Float32Array, M: number, I: number, gateStride: number, upStride: number): void;

  /** out[i] = a[i] + b[i] for i < n; out may alias a or b. */
  add(out: Float32Array, a: Float32Array, b: Float32Array, n: number): void;

  /** out[i] = cap * tanh(x[i] / cap) for i < n (tanh soft-capping, cap > 0); out may alias x. */
  softcap(out: Float32Array, x: Float32Array, n: number, cap: number): void;

  /** out[i] = x[i] * s (float32 product) for i < n; out may alias x. */
  scale(out: Float32Array, x: Float32Array, n: number, s: number): void;

  /** out[r, :] = x[rows[r], :] for r < R; x is [rows, H] (rows = floor(x.length / H)). out must not overlap x. */
  gatherRows(out: Float32Array, x: Float32Array, rows: Int32Array, R: number, H: number): void;

  /**
   * Make the host contents of `a` current. A backend that computes in another memory (a GPU)
   * keeps what its ops write there and copies it back only here: the runner calls it on the
   * logits, the one read back of a step, before the sampler reads them. Host code must not read
   * an op's output without it, nor write into an array ops have written (the device copy is the
   * truth). The CPU backend computes in place: a no-op.
   */
  toHost(a: Float32Array): void;

  /**
   * Hand back the resident memory of working buffers: the pages of `arrays` (host arrays the
   * caller's ops write before they read them within a step: activations, logits) and of the
   * backend's own per-call scratch. Contents are lost. Call only between steps; the engine calls it
   * once it has been idle, so the working memory a long prompt's steps grew is not kept for the
   * life of the server. Returns the bytes handed back.
   */
  releaseWorkingMemory(arrays: ArrayBufferView[]): number;

  /**
   * Allocate a paged KV cache: for each layer, numBlocks blocks each holding K and V of
   * blockSize * kvHeads * headDim elements of `dtype` (F32 or BF16; BF16 stores round to nearest
   * even). The layout inside a block is the backend's (the CPU backend keeps a block's K then its
   * V, each head-major [kvHeads, blockSize, headDim]); kvCacheWrite / kvCacheReadSlot define the
   * semantics.
   * numBlocks * blockSize must fit an Int32 slot index.
   */
  kvCacheCreate(numLayers: number, numBlocks: number, blockSize: number, kvHeads: number, headDim: number, dtype: DType): KvCacheHandle;
  /** Bytes one block takes across all layers, K and V. */
  kvCacheBlockBytes(numLayers: number, blockSize: number, kvHeads: number, headDim: number, dtype: DType): number;
  /** Free the cache's memory now (the handle must not be used afterwards). */
  kvCacheFree(cache: KvCacheHandle): void;
  /**
   * Commit the memory of the next uncommitted blocks, in block id order, about maxBytes in all (at
   * least one block), so their first writes do not fault. Contents are unchanged. Returns true
   * while uncommitted blocks remain (false also where the system cannot commit ahead).
   */
  kvCacheCommit(cache: KvCacheHandle, maxBytes: number): boolean;
  /**
   * Store K/V rows of T new tokens: k, v are [T, kvHeads*headDim] float32; token t goes to slot
   * slotMapping[t] = block * blockSize + offset of the given layer. Slot -1 means skip.
   */
  kvCacheWrite(cache: KvCacheHandle, layer: number, k: Float32Array, v: Float32Array, slotMapping: Int32Array, T: number): void;
  /** For every layer copy block src[i] to block dst[i] (copy-on-write). */
  kvCacheCopyBlocks(cache: KvCacheHandle, src: Int32Array, dst: Int32Array): void;

  /**
   * PagedAttention for a flat varlen batch of numSeqs sequences. Sequence s has query tokens
   * q[queryStartLoc[s] .. queryStartLoc[s+1]) (q: [totalTokens, nHeads*headDim]) which are its
   * LAST qLen tokens of seqLens[s] tokens in total; their K/V are already in the cache. Query token
   * at absolute position p attends causally to keys 0..p, read through
   * blockTables[s * maxBlocksPerSeq + p / blockSize]. Query head h uses KV head
   * h / (nHeads / nKvHeads). Softmax is online (numerically stable); each query row is computed in
   * the same order whatever the batch, the chunking or the physical blocks (the CPU backend
   * consumes keys in fixed chunks of absolute positions, so not even the block size changes it).
   * Only the first ceil(seqLens[s] / blockSize) entries of a sequence's table row are read.
   *
   * `slidingWindow` > 0 restricts a query at position p to keys p - slidingWindow < j <= p
   * (transformers' sliding-window mask: the window counts the query itself); table entries of
   * blocks wholly before the window of the sequence's first query token of this call are then
   * never read (the KV manager frees them; they may hold anything). `softcap` > 0 caps every
   * scaled score as softcap * tanh(score / softcap) before the softmax (Gemma 2). 0 disables each.
   * out: [totalTokens, nHeads*headDim], not overlapping q.
   */
  pagedAttention(
    out: Float32Array,
    q: Float32Array,
    cache: KvCacheHandle,
    layer: number,
    blockTables: Int32Array,
    maxBlocksPerSeq: number,
    queryStartLoc: Int32Array,
    seqLens: Int32Array,
    numSeqs: number,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    scale: number,
    slidingWindow: number,
    softcap: number,
  ): void;

  /**
   * Index of the largest of logits[offset .. offset+n) (ties: the lowest index; NaN never wins);
   * -1 when every value is -Infinity.
   */
  rowArgmax(logits: Float32Array, offset: number, n: number): number;
  /**
   * Draw an index from softmax(row * invTemperature) by inverse CDF in index order: the first index
   * where the cumulative weight exceeds u · total (u in [0, 1)). -1 when every value is -Infinity.
   */
  rowSoftmaxSample(logits: Float32Array, offset: number, n: number, invTemperature: number, u: number): number;
  /**
   * Many rows' draws at once, on the thread pool: out[i] is rowArgmax of row rows[i] (values
   * [rows[i] * n, rows[i] * n + n)) where invTemperature[i] is 0, else rowSoftmaxSample of it with
   * invTemperature[i] and u[i]. Each result is exactly what the one-row op gives.
   */
  drawRows(logits: Float32Array, n: number, rows: Int32Array, invTemperature: Float64Array, u: Float64Array, out: Int32Array): void;
  /** log(sum(exp(row))) (max-shifted, summed in double); -Infinity when every value is -Infinity. */
  rowLogSumExp(logits: Float32Array, offset: number, n: number): number;
  /** How many values of the row are strictly greater than `value` (a token's rank is this + 1). */
  rowCountGreater(logits: Float32Array, offset: number, n: number, value: number): number;
  /**
   * Top-p preparation over a row: w[i] = exp((x[i] - max) · invT) (double), bucket[i] =
   * floor(-(x[i] - max) · invT · bucketsPerNat) clamped to the last bucket of `hist` (-inf ids land
   * there), hist[b] += w[i] (hist zeroed by the caller). Returns the total mass.
   */
  rowNucleusWeights(
    logits: Float32Array,
    offset: number,
    n: number,
    max: number,
    invTemperature: number,
    w: Float64Array,
    bucket: Uint16Array,
    hist: Float64Array,
    bucketsPerNat: number,
  ): number;
}
