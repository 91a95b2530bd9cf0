/**
 * Quantized GGML weights on the GPU, kept quantized: the device layout of each supported type and
 * the WGSL kernels that decode blocks inside the linear layer and the embedding lookup.
 *
 * Layout: a matrix is uploaded as the file's blocks, row after row, each block padded to a whole
 * number of 32-bit words (WGSL reads u32, not bytes) with the padding placed so the packed values
 * start on a word boundary: Q8_0, Q4_0, Q5_0 and IQ4_NL get two zero bytes after their f16 scale
 * (34 -> 36, 18 -> 20, 22 -> 24 bytes per 32 weights), Q6_K and Q3_K two at the end (210 -> 212,
 * 110 -> 112), the other types are already word-sized. So the device holds about the file's bytes
 * (at most +11%), never float copies.
 *
 * Decoding: every type decodes a *unit* of 32 consecutive weights of a row (a 32-value block, a
 * K-quant sub-block of 32 or two of 16) to float32 values a * q - m, the same float32 products as
 * ggml's dequantization (native/quant/decode.cc), with f16 scales widened exactly (wgsl-f16.ts).
 *
 * The linear kernel: L lanes per output column n (L a power of two up to 64, fixed by K: one lane
 * per unit of a short row, 64 for rows of 2048 values and more), a workgroup of 64 taking 64 / L
 * columns and a tile of up to 8 rows m. Lane l takes the units l, l + L, l + 2L, ... of the row in
 * order, decodes each once and accumulates it into each row's float32 accumulator (one fma per
 * weight, k in order within the unit); the L lane sums then meet in the tree of adjacent pairs of
 * lanes.ts, through subgroup shuffles where those give the same bits. Every output's operations
 * depend only on K, never on M, the tile or the other rows: batched rows equal solo rows bit for
 * bit. Each weight is decoded once per tile of 8 rows at decode (one pass over the weights per
 * step), of 32 in a prefill. This is already the decode shape lanes.ts gives the float kernels: a
 * column's lanes are consecutive invocations reading L consecutive units (one contiguous run of
 * the row's blocks) per step, and a row of 2048 values keeps 64 invocations busy.
 */
import { GgmlType, ggmlTypeName } from '../quant.js';
import { F16_TO_F32 } from './wgsl-f16.js';
import { laneTreeWgsl, subgroupWgsl } from './lanes.js';

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
  // d, m (f16), 16 bytes of nibbles: value = d * q + m.
  [GgmlType.Q4_1]: {
    blockSize: 32,
    fileBytes: 20,
    words: 5,
    padAt: -1,
    decode: /* wgsl */ `
  let b = base + u * 5u;
  let d = f16(W[b] & 0xffffu);
  let m = f16(W[b] >> 16u);
  for (var i = 0u; i < 4u; i++) {
    let w = W[b + 1u + i];
    for (var e = 0u; e < 4u; e++) {
      let byte = (w >> (8u * e)) & 0xffu;
      V[4u * i + e] = d * f32(byte & 15u) + m;
      V[16u + 4u * i + e] = d * f32(byte >> 4u) + m;
    }
  }`,
  },
  // d (f16), [padding], qh (32 fifth bits), 16 bytes of nibbles: value = d * (q - 16).
  [GgmlType.Q5_0]: {
    blockSize: 32,
    fileBytes: 22,
    words: 6,
    padAt: 2,
    decode: /* wgsl */ `
  let b = base + u * 6u;
  let d = f16(W[b] & 0xffffu);
  let qh = W[b + 1u];
  for (var i = 0u; i < 4u; i++) {
    let w = W[b + 2u + i];
    for (var e = 0u; e < 4u; e++) {
      let j = 4u * i + e;
      let byte = (w >> (8u * e)) & 0xffu;
      V[j] = d * f32(i32((byte & 15u) | (((qh >> j) << 4u) & 16u)) - 16);
      V[16u + j] = d * f32(i32((byte >> 4u) | ((qh >> (j + 12u)) & 16u)) - 16);
    }
  }`,
  },
  // d, m (f16), qh, 16 bytes of nibbles: value = d * q + m.
  [GgmlType.Q5_1]: {
    blockSize: 32,
    fileBytes: 24,
    words: 6,
    padAt: -1,
    decode: /* wgsl */ `
  let b = base + u * 6u;
  let d = f16(W[b] & 0xffffu);
  let m = f16(W[b] >> 16u);
  let qh = W[b + 1u];
  for (var i = 0u; i < 4u; i++) {
    let w = W[b + 2u + i];
    for (var e = 0u; e < 4u; e++) {
      let j = 4u * i + e;
      let byte = (w >> (8u * e)) & 0xffu;
      V[j] = d * f32((byte & 15u) | (((qh >> j) << 4u) & 16u)) + m;
      V[16u + j] = d * f32((byte >> 4u) | ((qh >> (j + 12u)) & 16u)) + m;
    }
  }`,
  },
  // scales[16] (4-bit scale, 4-bit min), qs[64] (2 bits each), d, dmin (f16); sub-blocks of 16.
  // Unit s: half n = s / 4 of 128 values, bit pair s % 4 of qs[n * 32 ..].
  [GgmlType.Q2_K]: {
    blockSize: 256,
    fileBytes: 84,
    words: 21,
    padAt: -1,
    decode: /* wgsl */ `
  let b = base + (u / 8u) * 21u;
  let s = u % 8u;
  let d = f16(W[b + 20u] & 0xffffu);
  let dmin = f16(W[b + 20u] >> 16u);
  let sc0 = byteAt(b, 2u * s);
  let sc1 = byteAt(b, 2u * s + 1u);
  let a0 = d * f32(sc0 & 15u);
  let m0 = dmin * f32(sc0 >> 4u);
  let a1 = d * f32(sc1 & 15u);
  let m1 = dmin * f32(sc1 >> 4u);
  let q = b + 4u + (s / 4u) * 8u;
  let shift = (s % 4u) * 2u;
  for (var i = 0u; i < 8u; i++) {
    let w = W[q + i] >> shift;
    let a = select(a1, a0, i < 4u);
    let m = select(m1, m0, i < 4u);
    for (var e = 0u; e < 4u; e++) { V[4u * i + e] = a * f32((w >> (8u * e)) & 3u) - m; }
  }`,
  },
  // hmask[32] (third bits), qs[64] (2 bits each), 12 bytes of 6-bit scales, d (f16); sub-blocks of
  // 16: value = d * (scale - 32) * (q - (third bit ? 0 : 4)). Unit s as Q2_K, third bit s of hmask.
  [GgmlType.Q3_K]: {
    blockSize: 256,
    fileBytes: 110,
    words: 28,
    padAt: 110,
    decode: /* wgsl */ `
  let b = base + (u / 8u) * 28u;
  let s = u % 8u;
  let d = f16(W[b + 27u] & 0xffffu);
  let a0 = d * f32(i32(scaleK3(b + 24u, 2u * s)) - 32);
  let a1 = d * f32(i32(scaleK3(b + 24u, 2u * s + 1u)) - 32);
  let q = b + 8u + (s / 4u) * 8u;
  let shift = (s % 4u) * 2u;
  for (var i = 0u; i < 8u; i++) {
    let w = W[q + i] >> shift;
    let h = W[b + i] >> s;
    let a = select(a1, a0, i < 4u);
    for (var e = 0u; e < 4u; e++) {
      let low = i32((w >> (8u * e)) & 3u);
      V[4u * i + e] = a * f32(low - select(4, 0, ((h >> (8u * e)) & 1u) != 0u));
    }
  }`,
  },
  // d, dmin (f16), 12 bytes of 6-bit scales and mins, 128 bytes of nibbles; sub-blocks of 32.
  [GgmlType.Q4_K]: {
    blockSize: 256,
    fileBytes: 144,
    words: 36,
    padAt: -1,
    decode: nibblesK(36, 4, false),
  },
  // d, dmin (f16), 12 bytes of 6-bit scales and mins, qh[32] (fifth bits), 128 bytes of nibbles.
  [GgmlType.Q5_K]: {
    blockSize: 256,
    fileBytes: 176,
    words: 44,
    padAt: -1,
    decode: nibblesK(44, 12, true),
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
  // d (f16), [padding], 16 bytes of nibbles indexing the non-linear grid IQ4.
  [GgmlType.IQ4_NL]: {
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
      V[4u * i + e] = d * IQ4[byte & 15u];
      V[16u + 4u * i + e] = d * IQ4[byte >> 4u];
    }
  }`,
  },
  // d (f16), scales_h (u16), scales_l[4], qs[128] (nibbles into IQ4); sub-blocks of 32 with 6-bit
  // scales: value = d * (scale - 32) * IQ4[nibble].
  [GgmlType.IQ4_XS]: {
    blockSize: 256,
    fileBytes: 136,
    words: 34,
    padAt: -1,
    decode: /* wgsl */ `
  let b = base + (u / 8u) * 34u;
  let s = u % 8u;
  let d = f16(W[b] & 0xffffu);
  let ls = ((byteAt(b + 1u, s / 2u) >> (4u * (s % 2u))) & 15u) | (((W[b] >> (16u + 2u * s)) & 3u) << 4u);
  let a = d * f32(i32(ls) - 32);
  for (var i = 0u; i < 4u; i++) {
    let w = W[b + 2u + 4u * s + i];
    for (var e = 0u; e < 4u; e++) {
      let byte = (w >> (8u * e)) & 0xffu;
      V[4u * i + e] = a * IQ4[byte & 15u];
      V[16u + 4u * i + e] = a * IQ4[byte >> 4u];
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
  // Word-sized blocks are copied as they are, in one piece.
  if (l.padAt < 0) {
    bytes.set(src);
    return out;
  }
  const stride = l.words * 4;
  const at = l.padAt;
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
${F16_TO_F32}
// Byte i of the bytes starting at word w.
fn byteAt(w: u32, i: u32) -> u32 { return (W[w + i / 4u] >> (8u * (i % 4u))) & 0xffu; }
// Sub-block j's scale (x = d * its 6-bit scale) and min (y = dmin * its 6-bit min) of the Q4_K /
// Q5_K block at word b: d, dmin (f16) in word b, the 12 bytes of 6-bit scales and mins after it.
fn scaleMinK(b: u32, j: u32) -> vec2<f32> {
  let w = b + 1u;
  var sm: vec2<u32>;
  if (j < 4u) {
    sm = vec2<u32>(byteAt(w, j) & 63u, byteAt(w, j + 4u) & 63u);
  } else {
    sm = vec2<u32>((byteAt(w, j + 4u) & 15u) | ((byteAt(w, j - 4u) >> 6u) << 4u), (byteAt(w, j + 4u) >> 4u) | ((byteAt(w, j) >> 6u) << 4u));
  }
  return vec2<f32>(f16(W[b] & 0xffffu) * f32(sm.x), f16(W[b] >> 16u) * f32(sm.y));
}
// The 6-bit scale i (0..15) of a Q3_K block's 12 scale bytes at word w: low nibbles from the first
// 8 bytes (low then high halves), the two high bits from the last 4.
fn scaleK3(w: u32, i: u32) -> u32 {
  let which = i / 4u;
  let low = (W[w + which % 2u] >> (4u * (which / 2u))) & 0x0f0f0f0fu;
  let high = ((W[w + 2u] >> (2u * which)) & 0x03030303u) << 4u;
  return ((low | high) >> (8u * (i % 4u))) & 0xffu;
}
// The non-linear 4-bit grid of IQ4_NL and IQ4_XS.
var<private> IQ4: array<f32, 16> = array<f32, 16>(-127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0, 1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0);
var<private> V: array<f32, 32>;
fn unit(base: u32, u: u32) {${LAYOUTS[type].decode}
}
`;

/**
 * Rows of a batch one workgroup of the quantized linear kernel takes: 8 for a decode step, 32 for
 * a prefill (each weight decoded once per tile: a prefill decodes the weights a quarter as often).
 * Both kernels do the same operations per output, so a row's bits do not depend on which ran.
 */
/**
 * The Q4_K / Q5_K decoder of unit u (sub-block s = u % 8 of 32 values): the block's `words` words,
 * its nibbles from word `nibbles` on (sub-blocks 2j and 2j + 1 share 8 words: low nibbles, then
 * high), scale and min by scaleMinK; Q5_K (`fifthBit`) adds bit s of qh (words 4 .. 11) as 16.
 */
function nibblesK(words: number, nibbles: number, fifthBit: boolean): string {
  const q = fifthBit ? '((w >> (8u * e)) & 15u) | (((h >> (8u * e)) & 1u) << 4u)' : '(w >> (8u * e)) & 15u';
  return /* wgsl */ `
  let b = base + (u / 8u) * ${words}u;
  let s = u % 8u;
  let am = scaleMinK(b, s);
  let a = am.x;
  let m = am.y;
  let q = b + ${nibbles}u + (s / 2u) * 8u;
  let shift = (s % 2u) * 4u;
  for (var i = 0u; i < 8u; i++) {
    let w = W[q + i] >> shift;${fifthBit ? '\n    let h = W[b + 4u + i] >> s;' : ''}
    for (var e = 0u; e < 4u; e++) { V[4u * i + e] = a * f32(${q}) - m; }
  }`;
}

export const QUANT_TILE = { short: 8, tall: 32 } as const;
/** Invocations of a workgroup of the quantized linear kernel. */
const QWG = 64;

/**
 * Lanes that share one output column of the quantized linear kernel: enough for the row's units
 * of 32 weights, at most the workgroup (a power of two: the lanes' sums meet in a binary tree).
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
 * up to TM rows ({@link QUANT_TILE}). P: M, N, K, xOffset, outOffset, flags (1: bias, 2: accumulate), gx (workgroups
 * along x: workgroup (x, y, z) takes the columns of group z * gx + x, so a vocabulary of any size
 * fits the grid), L. Dispatch (gx, ceil(M / TM), ceil(ceil(N * L / 64) / gx)).
 */
const linearQuant = (type: GpuQuantType, tm: number, subgroups: boolean): string => {
  const sg = subgroupWgsl(subgroups);
  return /* wgsl */ `${sg.enable}
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> W: array<u32>;
@group(0) @binding(3) var<storage, read> BIAS: array<f32>;
@group(0) @binding(4) var<storage, read_write> OUT: array<f32>;
${prelude(type)}
const WG: u32 = ${QWG}u;
const TM: u32 = ${tm}u;
var<workgroup> red: array<f32, ${tm * QWG}>;
// This invocation's column, first row and the tile's rows, for finish.
var<private> col: u32;
var<private> row0: u32;
var<private> rowCount: u32;
fn finish(r: u32, v: f32) {
  if (col >= P[1] || r >= rowCount) { return; }
  var o = v;
  if ((P[5] & 1u) != 0u) { o = o + BIAS[col]; }
  let at = P[4] + (row0 + r) * P[1] + col;
  if ((P[5] & 2u) != 0u) { o = OUT[at] + o; }
  OUT[at] = o;
}
${sg.decls}
${laneTreeWgsl(subgroups, QWG, tm, tm)}
@compute @workgroup_size(${QWG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32${sg.params}) {
  let lim = ${sg.limit};
  let M = P[0];
  let N = P[1];
  let K = P[2];
  let L = P[7];
  let lane = li % L;
  let n = (wg.z * P[6] + wg.x) * (WG / L) + li / L;
  let m0 = wg.y * TM;
  let rows = min(TM, M - m0);
  // A column past N (the last workgroup's) computes nothing but still meets the barriers.
  let units = select(0u, K / 32u, n < N);
  let base = n * (K / ${LAYOUTS[type].blockSize}u) * ${LAYOUTS[type].words}u;
  var acc = array<f32, ${tm}>();
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
  col = n;
  row0 = m0;
  rowCount = rows;
  laneTree(&acc, li, lim, L);
}
`;
};

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

export type QuantKernelName = `linear_${string}` | `linearTall_${string}` | `embedding_${string}`;

/** Kernel names of a type's linear kernels (tiles of {@link QUANT_TILE} short and tall) and embedding lookup. */
export const quantKernelNames = (type: GgmlType): { linear: QuantKernelName; linearTall: QuantKernelName; embedding: QuantKernelName } => ({
  linear: `linear_${ggmlTypeName(type)}`,
  linearTall: `linearTall_${ggmlTypeName(type)}`,
  embedding: `embedding_${ggmlTypeName(type)}`,
});

/** Every quantized kernel's WGSL by name; the linear ones shuffle within subgroups if `subgroups` (lanes.ts). */
export function quantKernels(subgroups: boolean): Array<[QuantKernelName, string]> {
  return (GPU_QUANT_TYPES as GpuQuantType[]).flatMap((t): Array<[QuantKernelName, string]> => {
    const names = quantKernelNames(t);
    return [
      [names.linear, linearQuant(t, QUANT_TILE.short, subgroups)],
      [names.linearTall, linearQuant(t, QUANT_TILE.tall, subgroups)],
      [names.embedding, embeddingQuant(t)],
    ];
  });
}

/** Invocations per workgroup the backend dispatches with. */
export const QUANT_WORKGROUP = QWG;
