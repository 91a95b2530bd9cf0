/**
 * Quantized GGML weights on the GPU, kept quantized: the device layout of each supported type and
 * the WGSL kernels that decode blocks inside the linear layer and the embedding lookup.
 *
 * Layout: a matrix is uploaded as the file's blocks, row after row, each block padded to a whole
 * number of 32-bit words (WGSL reads u32, not bytes) with the padding placed so the packed values
 * start on a word boundary: Q8_0 and Q4_0 get two zero bytes after their f16 scale (34 -> 36 and
 * 18 -> 20 bytes per 32 weights), Q6_K two at the end (210 -> 212), Q4_K is already word-sized
 * (144). So the device holds about the file's bytes (at most +11%), never float copies.
 *
 * Decoding: every type decodes a *unit* of 32 consecutive weights of a row (a Q8_0 / Q4_0 block,
 * a Q4_K sub-block, two Q6_K sub-blocks) to float32 values a * q - m, the same float32 products as
 * ggml's dequantization (native/quant/decode.cc), with f16 scales widened by bit manipulation
 * (exact for subnormals too, which unpack2x16float need not be).
 *
 * The linear kernel: L lanes per output column n (L a power of two up to 64, fixed by K: one lane
 * per unit of a short row, 64 for rows of 2048 values and more), a workgroup of 64 taking 64 / L
 * columns and a tile of up to 8 rows m. Lane l takes the units l, l + L, l + 2L, ... of the row in
 * order, decodes each once and accumulates it into each row's float32 accumulator (one fma per
 * weight, k in order within the unit); the L lane sums then meet in a fixed binary tree. Every
 * output's operations depend only on K, never on M, the tile or the other rows: batched rows equal
 * solo rows bit for bit. Decode reads each weight once per tile of 8 rows (one pass over the
 * weights per step at decode).
 */
import { GgmlType, ggmlTypeName } from '../quant.js';

/** Device layout of a quantized type: bytes per padded block, where the two padding bytes go. */
interface QuantLayout {
  blockSize: number;
  fileBytes: number;
  /** Words per padded device block. */
  words: number;
  /** Byte offset in the file block where the padding is inserted (fileBytes: at the end; -1: none). */
  padAt: number;
  /** WGSL body of `fn unit(base: u32, u: u32)`: fill V[0..32) with the values of unit u of the row at word base. */
  decode: string;
}

const LAYOUTS = {
  [GgmlType.Q8_0]: {
    blockSize: 32,
    fileBytes: 34,
    words: 9,
    padAt: 2,
    decode: /* wgsl */ `
  let b = base + u * 9u;
  let d = f16(W[b] & 0xffffu);
  for (var i = 0u; i < 8u; i++) {
    let w = W[b + 1u + i];
    for (var e = 0u; e < 4u; e++) { V[4u * i + e] = d * f32(bitcast<i32>(w << (24u - 8u * e)) >> 24u); }
  }`,
  },
  [GgmlType.Q4_0]: {
    blockSize: 32,
    fileBytes: 18,
    words: 5,
    padAt: 2,
    decode: /* wgsl */ `
  let b = base + u * 5u;
  let d = f16(W[b] & 0xffffu);
  for (var i = 0u; i < 4u; i++) {
    let w = W[b + 1u + i];
    for (var e = 0u; e < 4u; e++) {
      let byte = (w >> (8u * e)) & 0xffu;
      V[4u * i + e] = d * f32(i32(byte & 15u) - 8);
      V[16u + 4u * i + e] = d * f32(i32(byte >> 4u) - 8);
    }
  }`,
  },
  // d, dmin (f16), 12 bytes of 6-bit scales and mins, 128 bytes of nibbles; sub-blocks of 32.
  [GgmlType.Q4_K]: {
    blockSize: 256,
    fileBytes: 144,
    words: 36,
    padAt: -1,
    decode: /* wgsl */ `
  let b = base + (u / 8u) * 36u;
  let s = u % 8u;
  let d = f16(W[b] & 0xffffu);
  let dmin = f16(W[b] >> 16u);
  var sc: u32;
  var mn: u32;
  if (s < 4u) {
    sc = byteAt(b + 1u, s) & 63u;
    mn = byteAt(b + 1u, s + 4u) & 63u;
  } else {
    sc = (byteAt(b + 1u, s + 4u) & 15u) | ((byteAt(b + 1u, s - 4u) >> 6u) << 4u);
    mn = (byteAt(b + 1u, s + 4u) >> 4u) | ((byteAt(b + 1u, s) >> 6u) << 4u);
  }
  let a = d * f32(sc);
  let m = dmin * f32(mn);
  let q = b + 4u + (s / 2u) * 8u;
  let shift = (s % 2u) * 4u;
  for (var i = 0u; i < 8u; i++) {
    let w = W[q + i] >> shift;
    for (var e = 0u; e < 4u; e++) { V[4u * i + e] = a * f32((w >> (8u * e)) & 15u) - m; }
  }`,
  },
  // ql[128] (low nibbles), qh[64] (2 high bits each), 16 int8 scales, d (f16); sub-blocks of 16.
  // Unit s of 32 values: half n = s / 4 of 128, quarter g = s % 4 of it.
  [GgmlType.Q6_K]: {
    blockSize: 256,
    fileBytes: 210,
    words: 53,
    padAt: 210,
    decode: /* wgsl */ `
  let b = base + (u / 8u) * 53u;
  let s = u % 8u;
  let n = s / 4u;
  let g = s % 4u;
  let d = f16(W[b + 52u] & 0xffffu);
  let a0 = d * f32(bitcast<i32>(byteAt(b + 48u, 2u * s) << 24u) >> 24u);
  let a1 = d * f32(bitcast<i32>(byteAt(b + 48u, 2u * s + 1u) << 24u) >> 24u);
  let ql = b + n * 16u + (g % 2u) * 8u;
  let qh = b + 32u + n * 8u;
  let lshift = (g / 2u) * 4u;
  for (var i = 0u; i < 8u; i++) {
    let lw = W[ql + i] >> lshift;
    let hw = W[qh + i] >> (2u * g);
    let a = select(a1, a0, i < 4u);
    for (var e = 0u; e < 4u; e++) {
      let q = ((lw >> (8u * e)) & 15u) | (((hw >> (8u * e)) & 3u) << 4u);
      V[4u * i + e] = a * f32(i32(q) - 32);
    }
  }`,
  },
} satisfies Partial<Record<GgmlType, QuantLayout>>;

export type GpuQuantType = keyof typeof LAYOUTS;

/** The GGML types this backend runs quantized, in type id order. */
export const GPU_QUANT_TYPES: readonly GgmlType[] = (Object.keys(LAYOUTS).map(Number) as GgmlType[]).sort((a, b) => a - b);

function layout(type: GgmlType): QuantLayout {
  const l = (LAYOUTS as Partial<Record<GgmlType, QuantLayout>>)[type];
  if (!l) throw new RangeError(`--device webgpu has no kernels for ${ggmlTypeName(type)} weights (it runs ${GPU_QUANT_TYPES.map(ggmlTypeName).join(', ')}); use --device cpu`);
  return l;
}

/** Values per block of a type the GPU runs (throws the clear error for one it does not). */
export function gpuQuantBlockSize(type: GgmlType): number {
  return layout(type).blockSize;
}

/**
 * The device copy of `rows` rows of `k` values in the file's block format: each block padded to
 * whole words as the layout says (a fresh buffer, posted to the GPU thread).
 */
export function repackQuant(type: GgmlType, src: Uint8Array, rows: number, k: number): Uint32Array {
  const l = layout(type);
  const blocks = (rows * k) / l.blockSize;
  if (!Number.isInteger(blocks) || src.byteLength !== blocks * l.fileBytes) {
    throw new RangeError(`${ggmlTypeName(type)}: ${src.byteLength} bytes are not ${rows} rows of ${k} values`);
  }
  const out = new Uint32Array(blocks * l.words);
  const bytes = new Uint8Array(out.buffer);
  const stride = l.words * 4;
  const at = l.padAt < 0 ? l.fileBytes : l.padAt;
  for (let i = 0; i < blocks; i++) {
    const from = i * l.fileBytes;
    bytes.set(src.subarray(from, from + at), i * stride);
    if (at < l.fileBytes) bytes.set(src.subarray(from + at, from + l.fileBytes), i * stride + at + (stride - l.fileBytes));
  }
  return out;
}

/** Shared by the quantized kernels: arguments, the weight words, the unit decoder of one type. */
const prelude = (type: GpuQuantType): string => /* wgsl */ `
@group(0) @binding(0) var<storage, read> P: array<u32>;
// Exact f16 -> f32 (subnormals included).
fn f16(h: u32) -> f32 {
  let e = (h >> 10u) & 31u;
  let m = h & 1023u;
  if (e == 0u) { return select(1.0, -1.0, (h & 0x8000u) != 0u) * f32(m) * 5.9604644775390625e-8; }
  if (e == 31u) { return bitcast<f32>(((h & 0x8000u) << 16u) | 0x7f800000u | (m << 13u)); }
  return bitcast<f32>(((h & 0x8000u) << 16u) | ((e + 112u) << 23u) | (m << 13u));
}
// Byte i of the bytes starting at word w.
fn byteAt(w: u32, i: u32) -> u32 { return (W[w + i / 4u] >> (8u * (i % 4u))) & 0xffu; }
var<private> V: array<f32, 32>;
fn unit(base: u32, u: u32) {${LAYOUTS[type].decode}
}
`;

/** Rows of a batch one workgroup of the quantized linear kernel takes. */
const QTM = 8;
/** Invocations of a workgroup of the quantized linear kernel. */
const QWG = 64;

/**
 * Lanes that share one output column of the quantized linear kernel: enough for the row's units
 * of 32 weights, at most the workgroup (a power of two, so the lanes' sums meet in a binary tree).
 * A function of K alone: the reduction order of an output never depends on the batch.
 */
export function quantLanes(K: number): number {
  let lanes = 1;
  while (lanes < QWG && lanes * 32 < K) lanes *= 2;
  return lanes;
}

/**
 * out[m, n] (+)= sum_k x[m, k] w[n, k] (+ bias[n]) with w quantized (device layout above).
 * A workgroup of 64 invocations takes 64 / L columns (L = {@link quantLanes}(K) lanes each) and
 * up to 8 rows. P: M, N, K, xOffset, outOffset, flags (1: bias, 2: accumulate), gx (workgroups
 * along x: workgroup (x, y, z) takes the columns of group z * gx + x, so a vocabulary of any size
 * fits the grid), L. Dispatch (gx, ceil(M / 8), ceil(ceil(N * L / 64) / gx)).
 */
const linearQuant = (type: GpuQuantType): string => /* wgsl */ `
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> W: array<u32>;
@group(0) @binding(3) var<storage, read> BIAS: array<f32>;
@group(0) @binding(4) var<storage, read_write> OUT: array<f32>;
${prelude(type)}
const WG: u32 = ${QWG}u;
const TM: u32 = ${QTM}u;
var<workgroup> red: array<f32, ${QTM * QWG}>;
@compute @workgroup_size(${QWG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let M = P[0];
  let N = P[1];
  let K = P[2];
  let flags = P[5];
  let L = P[7];
  let lane = lid.x % L;
  let n = (wg.z * P[6] + wg.x) * (WG / L) + lid.x / L;
  let m0 = wg.y * TM;
  let rows = min(TM, M - m0);
  // A column past N (the last workgroup's) computes nothing but still meets the barriers.
  let units = select(0u, K / 32u, n < N);
  let base = n * (K / ${LAYOUTS[type].blockSize}u) * ${LAYOUTS[type].words}u;
  var acc = array<f32, ${QTM}>();
  for (var u = lane; u < units; u += L) {
    unit(base, u);
    // A constant trip count (unrollable, accumulators in registers); rows past M are skipped.
    for (var r = 0u; r < TM; r++) {
      if (r < rows) {
        let xb = P[3] + (m0 + r) * K + u * 32u;
        var a = acc[r];
        for (var j = 0u; j < 32u; j++) { a = fma(V[j], X[xb + j], a); }
        acc[r] = a;
      }
    }
  }
  for (var r = 0u; r < TM; r++) { red[r * WG + lid.x] = acc[r]; }
  workgroupBarrier();
  for (var w = L / 2u; w > 0u; w >>= 1u) {
    if (lane < w) {
      for (var r = 0u; r < TM; r++) { red[r * WG + lid.x] = red[r * WG + lid.x] + red[r * WG + lid.x + w]; }
    }
    workgroupBarrier();
  }
  if (n < N) {
    for (var r = lane; r < rows; r += L) {
      var v = red[r * WG + lid.x - lane];
      if ((flags & 1u) != 0u) { v = v + BIAS[n]; }
      let o = P[4] + (m0 + r) * N + n;
      if ((flags & 2u) != 0u) { v = OUT[o] + v; }
      OUT[o] = v;
    }
  }
}
`;

/**
 * out[t, :] = dequantized row ids[t] of a quantized [vocab, H] table.  P: T, H, outOffset.
 * One invocation per unit of 32 values.  Dispatch (ceil(H / 32 / 64), T).
 */
const embeddingQuant = (type: GpuQuantType): string => /* wgsl */ `
@group(0) @binding(1) var<storage, read> IDS: array<i32>;
@group(0) @binding(2) var<storage, read> W: array<u32>;
@group(0) @binding(3) var<storage, read_write> OUT: array<f32>;
${prelude(type)}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let H = P[1];
  let u = g.x;
  let t = g.y;
  if (u >= H / 32u || t >= P[0]) { return; }
  unit(u32(IDS[t]) * (H / ${LAYOUTS[type].blockSize}u) * ${LAYOUTS[type].words}u, u);
  let o = P[2] + t * H + u * 32u;
  for (var j = 0u; j < 32u; j++) { OUT[o + j] = V[j]; }
}
`;

export type QuantKernelName = `linear_${string}` | `embedding_${string}`;

/** Kernel names of a type's linear and embedding kernels. */
export const quantKernelNames = (type: GgmlType): { linear: QuantKernelName; embedding: QuantKernelName } => ({
  linear: `linear_${ggmlTypeName(type)}`,
  embedding: `embedding_${ggmlTypeName(type)}`,
});

/** Every quantized kernel's WGSL by name. */
export const QUANT_KERNELS: Readonly<Record<QuantKernelName, string>> = Object.fromEntries(
  (GPU_QUANT_TYPES as GpuQuantType[]).flatMap((t) => {
    const names = quantKernelNames(t);
    return [
      [names.linear, linearQuant(t)],
      [names.embedding, embeddingQuant(t)],
    ];
  }),
);

/** Workgroup geometry the backend dispatches with. */
export const QUANT_ROWS_PER_WORKGROUP = QTM;
export const QUANT_WORKGROUP = QWG;
