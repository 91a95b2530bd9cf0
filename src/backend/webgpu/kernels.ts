/**
 * The WGSL compute kernels of the WebGPU backend, float32 throughout (the kernels of quantized
 * weights, which decode GGML blocks, are in quant-kernels.ts). Every kernel reads its scalar
 * arguments from a small read-only storage array `P` (binding 0; float arguments as their bits) and
 * addresses its arrays with element offsets from `P`, so the host can pass views into larger
 * buffers (the activation mirrors) without binding-offset alignment rules.
 *
 * Batch invariance: each output element is computed by one invocation (or one workgroup for a
 * row reduction, or 16 lanes for a linear output: lanes.ts) in an order fixed by the element's own
 * coordinates and the problem's fixed sizes (K, H, head dim), never by the number of rows in the
 * batch: no atomics, no split of a reduction chosen by batch size. Batched rows therefore equal
 * solo rows bit for bit.
 */
import { quantKernels, type QuantKernelName } from './quant-kernels.js';
import { F16_TO_F32 } from './wgsl-f16.js';
import { CHUNK, LANES, laneTreeWgsl, subgroupWgsl, type SubgroupWgsl } from './lanes.js';

/** Shared prelude: the argument array and the bfloat16 rounding used by BF16 precision and BF16 KV. */
const PRELUDE = /* wgsl */ `
@group(0) @binding(0) var<storage, read> P: array<u32>;
fn pf(i: u32) -> f32 { return bitcast<f32>(P[i]); }
// Round a float32 to the nearest bfloat16 (ties to even), kept in a float32.
fn bf16(x: f32) -> f32 {
  let b = bitcast<u32>(x);
  return bitcast<f32>((b + 0x7fffu + ((b >> 16u) & 1u)) & 0xffff0000u);
}
`;

/**
 * out[t, i] = table[ids[t], i] (an embedding table of any {@link WeightStorage}).  P: T, H,
 * outOffset, tableOffset.  Dispatch (ceil(H / 64), T). The float32 one is also the row gather of
 * the final hidden states (ids = row indices into a [rows, H] matrix).
 */
const gatherRowsKernel = (w: WeightStorage): string => /* wgsl */ `${PRELUDE}${WEIGHT_LOAD[w]}
@group(0) @binding(1) var<storage, read> IDS: array<i32>;
@group(0) @binding(3) var<storage, read_write> OUT: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let H = P[1];
  let i = g.x;
  let t = g.y;
  if (i >= H || t >= P[0]) { return; }
  OUT[P[2] + t * H + i] = wload(P[3] + u32(IDS[t]) * H + i);
}
`;

/** The RMSNorm kernels' bindings (both run the same arithmetic). */
const RMSNORM_IO = /* wgsl */ `${PRELUDE}
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> WT: array<f32>;
@group(0) @binding(3) var<storage, read_write> OUT: array<f32>;
`;

/**
 * out[m, :] = x[m, :] / sqrt(mean(x[m, :]^2) + eps) * w.  P: H, xOffset, outOffset, eps, M.
 * One workgroup per row: strided partial sums of squares, then a fixed tree. Dispatch (M).
 */
const rmsnorm = /* wgsl */ `${RMSNORM_IO}
var<workgroup> red: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let H = P[0];
  let xb = P[1] + wg.x * H;
  let ob = P[2] + wg.x * H;
  var s = 0.0;
  for (var i = lid.x; i < H; i += 256u) { let v = X[xb + i]; s = fma(v, v, s); }
  red[lid.x] = s;
  workgroupBarrier();
  for (var w = 128u; w > 0u; w >>= 1u) {
    if (lid.x < w) { red[lid.x] = red[lid.x] + red[lid.x + w]; }
    workgroupBarrier();
  }
  let r = 1.0 / sqrt(red[0] / f32(H) + pf(3));
  for (var i = lid.x; i < H; i += 256u) { OUT[ob + i] = X[xb + i] * r * WT[i]; }
}
`;

/**
 * {@link rmsnorm}'s arithmetic for a fallback adapter (a CPU implementation such as SwiftShader):
 * one invocation per row runs the 256 strided partial sums and the tree itself, with no workgroup
 * memory or barriers (there a workgroup of 256 and its 9 barriers per row took ~0.6 ms, most of a
 * small model's prefill). P: as rmsnorm. Dispatch (ceil(M / 64)).
 */
const rmsnormSerial = /* wgsl */ `${RMSNORM_IO}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let H = P[0];
  if (g.x >= P[4]) { return; }
  let xb = P[1] + g.x * H;
  let ob = P[2] + g.x * H;
  var red: array<f32, 256>;
  for (var l = 0u; l < 256u; l++) {
    var s = 0.0;
    for (var i = l; i < H; i += 256u) { let v = X[xb + i]; s = fma(v, v, s); }
    red[l] = s;
  }
  for (var w = 128u; w > 0u; w >>= 1u) {
    for (var l = 0u; l < w; l++) { red[l] = red[l] + red[l + w]; }
  }
  let r = 1.0 / sqrt(red[0] / f32(H) + pf(3));
  for (var i = 0u; i < H; i++) { OUT[ob + i] = X[xb + i] * r * WT[i]; }
}
`;

/**
 * Rotary embedding (rotate_half) in place on q [T, nH*D] and k [T, nKv*D] with the step's angle
 * table cs [T, D] (cos half, sin half).  P: T, nH, nKv, D, qOffset, kOffset, csOffset.
 * Dispatch (ceil((nH + nKv) * D/2 / 64), T).
 */
const rope = /* wgsl */ `${PRELUDE}
@group(0) @binding(1) var<storage, read> CS: array<f32>;
@group(0) @binding(2) var<storage, read_write> Q: array<f32>;
@group(0) @binding(3) var<storage, read_write> K: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let nH = P[1];
  let nKv = P[2];
  let D = P[3];
  let half = D / 2u;
  let t = g.y;
  if (g.x >= (nH + nKv) * half || t >= P[0]) { return; }
  let h = g.x / half;
  let i = g.x % half;
  let c = CS[P[6] + t * D + i];
  let s = CS[P[6] + t * D + half + i];
  if (h < nH) {
    let b = P[4] + (t * nH + h) * D;
    let x1 = Q[b + i];
    let x2 = Q[b + i + half];
    Q[b + i] = x1 * c - x2 * s;
    Q[b + i + half] = x2 * c + x1 * s;
  } else {
    let b = P[5] + (t * nKv + h - nH) * D;
    let x1 = K[b + i];
    let x2 = K[b + i + half];
    K[b + i] = x1 * c - x2 * s;
    K[b + i + half] = x2 * c + x1 * s;
  }
}
`;

/** A gated activation: out[m, i] = act(gate[m, i]) * up[m, i], `act` a WGSL expression of x. */
const gatedMul = (act: string): string => /* wgsl */ `${PRELUDE}
@group(0) @binding(1) var<storage, read> G: array<f32>;
@group(0) @binding(2) var<storage, read> U: array<f32>;
@group(0) @binding(3) var<storage, read_write> OUT: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let I = P[1];
  let i = g.x;
  let m = g.y;
  if (i >= I || m >= P[0]) { return; }
  let x = G[P[2] + m * P[5] + i];
  OUT[P[4] + m * I + i] = ${act} * U[P[3] + m * P[6] + i];
}
`;

/**
 * out[m, i] = silu(gate[m, i]) * up[m, i].  P: M, I, gateOffset, upOffset, outOffset,
 * gateStride, upStride.  Dispatch (ceil(I / 64), M).
 */
const siluMul = gatedMul('x / (1.0 + exp(-x))');

/**
 * out[m, i] = gelu_tanh(gate[m, i]) * up[m, i] (GeGLU, transformers' gelu_pytorch_tanh); arguments
 * as siluMul. 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)), u = √(2/π) (x + 0.044715 x³): no
 * cancellation where tanh(u) is near -1.
 */
const geluTanhMul = gatedMul('x / (1.0 + exp(-2.0 * (0.7978845608028654 * (x + 0.044715 * x * x * x))))');

/**
 * Element-wise maps: out[i] = x[i] * s (mode 0) or cap * tanh(x[i] / cap) (mode 1, soft-capping).
 * P: n, xOffset, outOffset, mode, s or cap.  Dispatch (ceil(n / 256)).
 */
const map = /* wgsl */ `${PRELUDE}
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> OUT: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x >= P[0]) { return; }
  let x = X[P[1] + g.x];
  let c = pf(4);
  var r = x * c;
  if (P[3] == 1u) { r = c * tanh(clamp(x / c, -15.0, 15.0)); }
  OUT[P[2] + g.x] = r;
}
`;

/** out[i] = a[i] + b[i].  P: n, aOffset, bOffset, outOffset.  Dispatch (ceil(n / 256)). */
const add = /* wgsl */ `${PRELUDE}
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> OUT: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x >= P[0]) { return; }
  OUT[P[3] + g.x] = A[P[1] + g.x] + B[P[2] + g.x];
}
`;

/**
 * How a linear layer's weights or an embedding table are stored on the GPU: float32, or the checkpoint's 16-bit values
 * (F16, BF16) two to a u32 word, half the memory and bandwidth. `wload(i)` widens element i
 * exactly (BF16: a shift; F16: bit manipulation, subnormals included), so a 16-bit layer gives
 * the bits of its float32-widened copy. Needs no optional feature (shader-f16 is not used:
 * arithmetic stays float32).
 */
export type WeightStorage = 'f32' | 'f16' | 'bf16';
const WEIGHT_LOAD: Record<WeightStorage, string> = {
  f32: /* wgsl */ `
@group(0) @binding(2) var<storage, read> W: array<f32>;
fn wload(i: u32) -> f32 { return W[i]; }`,
  f16: /* wgsl */ `
@group(0) @binding(2) var<storage, read> W: array<u32>;
${F16_TO_F32}
fn wload(i: u32) -> f32 { return f16((W[i / 2u] >> (16u * (i % 2u))) & 0xffffu); }`,
  bf16: /* wgsl */ `
@group(0) @binding(2) var<storage, read> W: array<u32>;
fn wload(i: u32) -> f32 { return bitcast<f32>(((W[i / 2u] >> (16u * (i % 2u))) & 0xffffu) << 16u); }`,
};

/** Up to this many rows a linear layer runs {@link linearRowsKernel}, above it {@link linearKernel}. */
export const LINEAR_ROWS_MAX = 8;
/** Rows and columns of one workgroup's tile of outputs in the tiled linear kernel. */
export const LINEAR_TILE = { rows: 16, cols: 32 } as const;

/**
 * The WGSL shared by the float linear kernels: arguments, weights, x (rounded to BF16 under flag
 * 4), and the store of a finished output (bias, then the accumulate add).
 */
const linearIo = (w: WeightStorage, enable = ''): string => /* wgsl */ `${enable}${PRELUDE}${WEIGHT_LOAD[w]}
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read> BIAS: array<f32>;
@group(0) @binding(4) var<storage, read_write> OUT: array<f32>;
const LANES: u32 = ${LANES}u;
// x[m, k] of the product (the row stride is K).
fn xload(m: u32, k: u32) -> f32 {
  let v = X[P[3] + m * P[2] + k];
  if ((P[5] & 4u) != 0u) { return bf16(v); }
  return v;
}
fn store(m: u32, n: u32, v: f32) {
  var r = v;
  if ((P[5] & 1u) != 0u) { r = r + BIAS[n]; }
  let o = P[4] + m * P[1] + n;
  if ((P[5] & 2u) != 0u) { r = OUT[o] + r; }
  OUT[o] = r;
}
`;

/**
 * {@link linearIo} and, for kernels whose lanes are invocations of a workgroup of `wg`, the
 * subgroup check and the lane tree (lanes.ts) for `r` values per invocation in rounds of `rr`.
 */
const linearCommon = (w: WeightStorage, sg: SubgroupWgsl, subgroups: boolean, wg: number, r: number, rr: number): string => /* wgsl */ `${linearIo(w, sg.enable)}
const WG: u32 = ${wg}u;
${sg.decls}
${laneTreeWgsl(subgroups, wg, r, rr)}
`;

/**
 * out[m, n] (+)= sum_k x[m, k] w[n, k] (+ bias[n]), w [N, K] row-major (Hugging Face layout), in
 * the order of lanes.ts, for a few rows (decode; up to {@link LINEAR_ROWS_MAX}).
 * P: M, N, K, xOffset, outOffset, flags (1: bias, 2: accumulate into out, 4: round x to BF16).
 * A workgroup of 256 takes 16 columns, 16 lanes each (lane = local index % 16, so a column's lanes
 * are consecutive invocations); a lane reads each weight chunk once and applies it to every row,
 * so a step reads the weights once, 64 consecutive values per column at a time.
 * Dispatch (ceil(N / 16)).
 */
const linearRowsKernel = (w: WeightStorage, subgroups: boolean): string => {
  const sg = subgroupWgsl(subgroups);
  return /* wgsl */ `${linearCommon(w, sg, subgroups, 256, LINEAR_ROWS_MAX, LINEAR_ROWS_MAX)}
const TM: u32 = ${LINEAR_ROWS_MAX}u;
var<workgroup> red: array<f32, ${256 * LINEAR_ROWS_MAX}>;
// This invocation's column and the batch's rows, for finish.
var<private> col: u32;
var<private> rowCount: u32;
fn finish(r: u32, v: f32) {
  if (col < P[1] && r < rowCount) { store(r, col, v); }
}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32${sg.params}) {
  let lim = ${sg.limit};
  let N = P[1];
  let K = P[2];
  let rows = min(P[0], TM);
  let lane = li % LANES;
  let n = wg.x * (WG / LANES) + li / LANES;
  // A column past N computes nothing but still meets the tree's barriers.
  let whole = select(0u, K / 4u, n < N);
  let wb = n * K;
  col = n;
  rowCount = rows;
  var acc = array<f32, ${LINEAR_ROWS_MAX}>();
  for (var c = lane; c < whole; c += LANES) {
    let k = 4u * c;
    let wv = vec4<f32>(wload(wb + k), wload(wb + k + 1u), wload(wb + k + 2u), wload(wb + k + 3u));
    // A constant trip count (unrollable, accumulators in registers); rows past M are skipped.
    for (var r = 0u; r < TM; r++) {
      if (r < rows) {
        var a = acc[r];
        a = fma(xload(r, k), wv.x, a);
        a = fma(xload(r, k + 1u), wv.y, a);
        a = fma(xload(r, k + 2u), wv.z, a);
        a = fma(xload(r, k + 3u), wv.w, a);
        acc[r] = a;
      }
    }
  }
  // The chunk crossing K (K not a multiple of 4), on its lane: zeros for the values past K.
  if (n < N && K % 4u != 0u && lane == (K / 4u) % LANES) {
    let k = K - K % 4u;
    for (var r = 0u; r < rows; r++) {
      var a = acc[r];
      for (var j = 0u; j < 4u; j++) {
        var xv = 0.0;
        var wv = 0.0;
        if (k + j < K) { xv = xload(r, k + j); wv = wload(wb + k + j); }
        a = fma(xv, wv, a);
      }
      acc[r] = a;
    }
  }
  laneTree(&acc, li, lim, LANES);
}
`;
};

/** Rows one invocation of {@link linearSerialKernel} takes (a workgroup row of the grid). */
export const LINEAR_SERIAL_ROWS = 16;

/**
 * The product of {@link linearRowsKernel} and {@link linearKernel}, their bits, for a fallback
 * adapter (a CPU implementation such as SwiftShader), for any number of rows: one invocation per
 * column and {@link LINEAR_SERIAL_ROWS} rows holds an output's 16 lane accumulators and runs the
 * tree itself, with no workgroup memory or barriers. On a CPU each invocation and each barrier
 * costs far more than a GPU's, and memory coalescing means nothing, so this is the fast kernel
 * there (16 cooperating invocations and a barrier per column took ~10 times as long on SwiftShader
 * at decode; the tiled kernel's staging and barriers, 2-3 times at 128 rows); on a GPU it would
 * read rows K apart and is not used.
 * P: as {@link linearRowsKernel}. Dispatch (ceil(N / 64), ceil(M / LINEAR_SERIAL_ROWS)).
 */
const linearSerialKernel = (w: WeightStorage): string => /* wgsl */ `${linearIo(w)}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let N = P[1];
  let K = P[2];
  let n = g.x;
  if (n >= N) { return; }
  let chunks = (K + 3u) / 4u;
  let mEnd = min(P[0], (g.y + 1u) * ${LINEAR_SERIAL_ROWS}u);
  for (var m = g.y * ${LINEAR_SERIAL_ROWS}u; m < mEnd; m++) {
    var acc = array<f32, ${LANES}>();
    for (var c0 = 0u; c0 < chunks; c0 += LANES) {
      for (var l = 0u; l < LANES; l++) {
        let c = c0 + l;
        if (c < chunks) {
          var a = acc[l];
          for (var j = 0u; j < 4u; j++) {
            let k = 4u * c + j;
            var xv = 0.0;
            var wv = 0.0;
            if (k < K) { xv = xload(m, k); wv = wload(n * K + k); }
            a = fma(xv, wv, a);
          }
          acc[l] = a;
        }
      }
    }
    for (var s = 1u; s < LANES; s <<= 1u) {
      for (var l = 0u; l < LANES; l += 2u * s) { acc[l] = acc[l] + acc[l + s]; }
    }
    store(m, n, acc[0]);
  }
}
`;

/**
 * The same product as {@link linearRowsKernel} for many rows (prefill), a tiled GEMM in the same
 * order. A workgroup of 256 takes a tile of 16 rows x 32 columns: invocation li runs lane li % 16
 * of a block of 4 rows x 8 columns (block li / 16 of the 4 x 4 blocks). Per step, the tile's x
 * [16 x 64] and w [32 x 64] (64 k: one chunk per lane) are staged in workgroup memory with
 * consecutive invocations reading consecutive k (stored chunk-major, see RS); each lane then
 * applies its chunk's 4 values to its 32 outputs, each staged value reused 4 or 8 times from a
 * register. A lane skips the chunks
 * that start at or past K, as the decode kernel's lanes never reach them, and a chunk crossing K
 * is staged with zeros: the same fused multiply-adds in the same order per output, so which
 * kernel ran never changes a bit. The 32 lane sums of an invocation then go through the tree.
 * P: as {@link linearRowsKernel}. Dispatch (ceil(N / 32), ceil(M / 16)).
 */
const linearKernel = (w: WeightStorage, subgroups: boolean): string => {
  const sg = subgroupWgsl(subgroups);
  const { rows: tm, cols: tn } = LINEAR_TILE;
  const kt = LANES * CHUNK;
  return /* wgsl */ `${linearCommon(w, sg, subgroups, 256, 32, 8)}
const TM: u32 = ${tm}u;
const TN: u32 = ${tn}u;
const KT: u32 = ${kt}u;
// Words per staged row: its KT values chunk-major (value j of lane l's chunk at j * 16 + l, so the 16
// lanes read 16 consecutive words, free of bank conflicts on the usual 32 banks) and 2 of padding
// (the two blocks of a 32-wide subgroup read w rows 8 apart: a stride of 66 puts them 16 banks apart).
const RS: u32 = ${kt + 2}u;
// The staged tiles, x rows at [0, TM * RS) and w rows after them; reused by the lane tree once the sums are done.
var<workgroup> red: array<f32, ${(tm + tn) * (kt + 2)}>;
// The first row and column of this invocation's block, for finish (value i: row i / 8, column i % 8).
var<private> at: vec2<u32>;
fn finish(i: u32, v: f32) {
  let m = at.x + i / 8u;
  let n = at.y + i % 8u;
  if (m < P[0] && n < P[1]) { store(m, n, v); }
}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32${sg.params}) {
  let lim = ${sg.limit};
  let M = P[0];
  let N = P[1];
  let K = P[2];
  let lane = li % LANES;
  let blk = li / LANES;
  let bm = (blk / 4u) * 4u;
  let bn = (blk % 4u) * 8u;
  let m0 = wg.y * TM;
  let n0 = wg.x * TN;
  at = vec2<u32>(m0 + bm, n0 + bn);
  var acc = array<f32, 32>();
  for (var k0 = 0u; k0 < K; k0 += KT) {
    for (var e = li; e < TM * KT; e += WG) {
      let m = m0 + e / KT;
      let k = k0 + e % KT;
      var v = 0.0;
      if (m < M && k < K) { v = xload(m, k); }
      red[(e / KT) * RS + (e % 4u) * LANES + (e % KT) / 4u] = v;
    }
    for (var e = li; e < TN * KT; e += WG) {
      let n = n0 + e / KT;
      let k = k0 + e % KT;
      var v = 0.0;
      if (n < N && k < K) { v = wload(n * K + k); }
      red[TM * RS + (e / KT) * RS + (e % 4u) * LANES + (e % KT) / 4u] = v;
    }
    workgroupBarrier();
    if (k0 + 4u * lane < K) {
      for (var j = 0u; j < 4u; j++) {
        var xv: array<f32, 4>;
        for (var i = 0u; i < 4u; i++) { xv[i] = red[(bm + i) * RS + j * LANES + lane]; }
        for (var c = 0u; c < 8u; c++) {
          let wv = red[TM * RS + (bn + c) * RS + j * LANES + lane];
          for (var i = 0u; i < 4u; i++) { acc[i * 8u + c] = fma(xv[i], wv, acc[i * 8u + c]); }
        }
      }
    }
    workgroupBarrier();
  }
  laneTree(&acc, li, lim, LANES);
}
`;
};

/**
 * Store K/V rows of T tokens into one layer's cache. Layer layout: per block [K, V], each
 * [kvHeads, blockSize, headDim].  P: T, kvDim, D, blockSize, kOffset, vOffset, flags (1: round
 * to BF16). Slot -1 skips the token. Dispatch (ceil(kvDim / 64), T).
 */
const kvWrite = /* wgsl */ `${PRELUDE}
@group(0) @binding(1) var<storage, read> KIN: array<f32>;
@group(0) @binding(2) var<storage, read> VIN: array<f32>;
@group(0) @binding(3) var<storage, read> SLOTS: array<i32>;
@group(0) @binding(4) var<storage, read_write> CACHE: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let kvDim = P[1];
  let D = P[2];
  let bs = P[3];
  let j = g.x;
  let t = g.y;
  if (j >= kvDim || t >= P[0]) { return; }
  let slot = SLOTS[t];
  if (slot < 0) { return; }
  let blk = u32(slot) / bs;
  let off = u32(slot) % bs;
  let at = blk * 2u * kvDim * bs + ((j / D) * bs + off) * D + j % D;
  var k = KIN[P[4] + t * kvDim + j];
  var v = VIN[P[5] + t * kvDim + j];
  if ((P[6] & 1u) != 0u) { k = bf16(k); v = bf16(v); }
  CACHE[at] = k;
  CACHE[at + kvDim * bs] = v;
}
`;

/** Copy whole blocks of one layer: pairs [src0, dst0, src1, dst1, ...].  P: pairs, blockWords.  Dispatch (ceil(words / 256), pairs). */
const copyBlocks = /* wgsl */ `${PRELUDE}
@group(0) @binding(1) var<storage, read> PAIRS: array<i32>;
@group(0) @binding(2) var<storage, read_write> CACHE: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let words = P[1];
  if (g.x >= words || g.y >= P[0]) { return; }
  let src = u32(PAIRS[2u * g.y]);
  let dst = u32(PAIRS[2u * g.y + 1u]);
  CACHE[dst * words + g.x] = CACHE[src * words + g.x];
}
`;

/** The attention kernels' bindings (both run the same arithmetic). */
const ATTENTION_IO = /* wgsl */ `${PRELUDE}
@group(0) @binding(1) var<storage, read> Q: array<f32>;
@group(0) @binding(2) var<storage, read> CACHE: array<f32>;
@group(0) @binding(3) var<storage, read> TABLES: array<i32>;
@group(0) @binding(4) var<storage, read> INFO: array<i32>;
@group(0) @binding(5) var<storage, read_write> OUT: array<f32>;
const WG: u32 = 64u;
`;
/** The attention kernels' parameters (P, below). */
const ATTENTION_PARAMS = /* wgsl */ `  let nH = P[0];
  let nKv = P[1];
  let D = P[2];
  let bs = P[3];
  let mb = P[4];
  let scale = pf(7);`;
/** The keys a query at position p sees: the window's first key jLo, and its tiles first .. tiles - 1. */
const ATTENTION_WINDOW = /* wgsl */ `  let window = P[8];
  let cap = pf(9);
  var jLo = 0u;
  if (window > 0u && p + 1u > window) { jLo = p + 1u - window; }
  let first = jLo / WG;
  let tiles = p / WG + 1u;`;

/**
 * Paged attention, one workgroup of 64 per (query head, query token). INFO holds each token's
 * [sequence, absolute position]; keys 0..position are read through the sequence's block table.
 * Keys are consumed in tiles of 64 absolute positions (an online softmax across tiles; within a
 * tile every invocation reads the same scores in the same order), so a row's arithmetic depends
 * only on its own context, never on the batch, the chunking or the physical blocks.
 * A sliding window (P[8] > 0) keeps keys p - window < j <= p; the tiles stay at absolute
 * positions, so a windowed row is computed alike whatever the batch too. Soft-capping (P[9] > 0)
 * maps each scaled score to cap * tanh(score / cap).
 * P: nH, nKv, D (<= 256), blockSize, maxBlocksPerSeq, qOffset, outOffset, scale, window, softcap, T.
 * Dispatch (nH, T).
 */
const attention = /* wgsl */ `${ATTENTION_IO}
var<workgroup> qs: array<f32, 256>;
var<workgroup> sc: array<f32, 64>;
var<workgroup> pw: array<f32, 64>;
var<workgroup> vb: array<u32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
${ATTENTION_PARAMS}
  let h = wg.x;
  let t = wg.y;
  let tid = lid.x;
  let s = u32(INFO[2u * t]);
  let p = u32(INFO[2u * t + 1u]);
  let kvh = h / (nH / nKv);
  let kvDim = nKv * D;
  let blockStride = 2u * kvDim * bs;
  for (var d = tid; d < D; d += WG) { qs[d] = Q[P[5] + (t * nH + h) * D + d]; }
  workgroupBarrier();
  var m = 0.0;
  var l = 0.0;
  var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
${ATTENTION_WINDOW}
  for (var tile = first; tile < tiles; tile++) {
    let j0 = tile * WG;
    let j = j0 + tid;
    // Valid keys of this tile: i in [lo, cnt).
    var lo = 0u;
    if (jLo > j0) { lo = jLo - j0; }
    var score = 0.0;
    if (j <= p && j >= jLo) {
      let blk = u32(TABLES[s * mb + j / bs]);
      let kb = blk * blockStride + (kvh * bs + j % bs) * D;
      var dot = 0.0;
      for (var d = 0u; d < D; d++) { dot = fma(qs[d], CACHE[kb + d], dot); }
      score = dot * scale;
      if (cap > 0.0) { score = cap * tanh(clamp(score / cap, -15.0, 15.0)); }
      vb[tid] = kb + kvDim * bs;
    }
    sc[tid] = score;
    workgroupBarrier();
    let cnt = min(WG, p + 1u - j0);
    var mNew = sc[lo];
    for (var i = lo + 1u; i < cnt; i++) { mNew = max(mNew, sc[i]); }
    if (tile > first) { mNew = max(m, mNew); }
    var corr = 0.0;
    if (tile > first) { corr = exp(m - mNew); }
    if (j <= p && j >= jLo) { pw[tid] = exp(score - mNew); }
    workgroupBarrier();
    var sum = 0.0;
    for (var i = lo; i < cnt; i++) { sum = sum + pw[i]; }
    l = l * corr + sum;
    for (var c = 0u; c < 4u; c++) {
      let d = tid + c * WG;
      if (d < D) {
        var a = acc[c] * corr;
        for (var i = lo; i < cnt; i++) { a = fma(pw[i], CACHE[vb[i] + d], a); }
        acc[c] = a;
      }
    }
    m = mNew;
    workgroupBarrier();
  }
  for (var c = 0u; c < 4u; c++) {
    let d = tid + c * WG;
    if (d < D) { OUT[P[6] + (t * nH + h) * D + d] = acc[c] / l; }
  }
}
`;

/**
 * {@link attention}'s arithmetic for a fallback adapter (a CPU implementation such as SwiftShader):
 * one invocation per (query head, query token) runs a tile's scores, its max, its weights' sum and
 * the output dims itself, in the workgroup kernel's order, with no workgroup memory or barriers
 * (there a workgroup of 64 and its barriers per tile took ~0.3 ms a row). The same bits.
 * P: as attention. Dispatch (ceil(nH * T / 64)).
 */
const attentionSerial = /* wgsl */ `${ATTENTION_IO}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
${ATTENTION_PARAMS}
  if (gid.x >= nH * P[10]) { return; }
  let h = gid.x % nH;
  let t = gid.x / nH;
  let s = u32(INFO[2u * t]);
  let p = u32(INFO[2u * t + 1u]);
  let kvh = h / (nH / nKv);
  let kvDim = nKv * D;
  let blockStride = 2u * kvDim * bs;
  let qb = P[5] + (t * nH + h) * D;
  var sc: array<f32, 64>;
  var vb: array<u32, 64>;
  var acc: array<f32, 256>;
  var m = 0.0;
  var l = 0.0;
${ATTENTION_WINDOW}
  for (var tile = first; tile < tiles; tile++) {
    let j0 = tile * WG;
    var lo = 0u;
    if (jLo > j0) { lo = jLo - j0; }
    let cnt = min(WG, p + 1u - j0);
    for (var i = lo; i < cnt; i++) {
      let j = j0 + i;
      let blk = u32(TABLES[s * mb + j / bs]);
      let kb = blk * blockStride + (kvh * bs + j % bs) * D;
      var dot = 0.0;
      for (var d = 0u; d < D; d++) { dot = fma(Q[qb + d], CACHE[kb + d], dot); }
      var score = dot * scale;
      if (cap > 0.0) { score = cap * tanh(clamp(score / cap, -15.0, 15.0)); }
      sc[i] = score;
      vb[i] = kb + kvDim * bs;
    }
    var mNew = sc[lo];
    for (var i = lo + 1u; i < cnt; i++) { mNew = max(mNew, sc[i]); }
    if (tile > first) { mNew = max(m, mNew); }
    var corr = 0.0;
    if (tile > first) { corr = exp(m - mNew); }
    for (var i = lo; i < cnt; i++) { sc[i] = exp(sc[i] - mNew); }
    var sum = 0.0;
    for (var i = lo; i < cnt; i++) { sum = sum + sc[i]; }
    l = l * corr + sum;
    for (var d = 0u; d < D; d++) {
      var a = acc[d] * corr;
      for (var i = lo; i < cnt; i++) { a = fma(sc[i], CACHE[vb[i] + d], a); }
      acc[d] = a;
    }
    m = mNew;
  }
  for (var d = 0u; d < D; d++) { OUT[P[6] + (t * nH + h) * D + d] = acc[d] / l; }
}
`;

export const KERNELS = {
  gatherRows: gatherRowsKernel('f32'),
  gatherRowsF16: gatherRowsKernel('f16'),
  gatherRowsBf16: gatherRowsKernel('bf16'),
  rmsnorm,
  rmsnormSerial,
  rope,
  siluMul,
  geluTanhMul,
  map,
  add,
  kvWrite,
  copyBlocks,
  attention,
  attentionSerial,
} as const;

/** The embedding lookup of each table storage. */
export const GATHER_KERNELS: Record<WeightStorage, KernelName> = { f32: 'gatherRows', f16: 'gatherRowsF16', bf16: 'gatherRowsBf16' };

/** The tiled and the few-rows linear kernels (lanes cooperating), and the serial one a fallback adapter runs for any rows, of each weight storage. */
export const LINEAR_KERNELS = {
  f32: { tiled: 'linear', rows: 'linearRows', serial: 'linearSerial' },
  f16: { tiled: 'linearF16', rows: 'linearRowsF16', serial: 'linearSerialF16' },
  bf16: { tiled: 'linearBf16', rows: 'linearRowsBf16', serial: 'linearSerialBf16' },
} as const satisfies Record<WeightStorage, { tiled: string; rows: string; serial: string }>;
type LinearKernelName = (typeof LINEAR_KERNELS)[WeightStorage]['tiled' | 'rows' | 'serial'];
export type KernelName = keyof typeof KERNELS | LinearKernelName | QuantKernelName;

/**
 * Every kernel's WGSL by name: the float kernels above and the quantized ones (quant-kernels.ts).
 * The linear kernels shuffle within subgroups when the device was opened with the `subgroups`
 * feature (lanes.ts); their bits are the same either way.
 */
export function allKernels(subgroups: boolean): ReadonlyMap<KernelName, string> {
  const linear = (Object.keys(LINEAR_KERNELS) as WeightStorage[]).flatMap((w): Array<[KernelName, string]> => [
    [LINEAR_KERNELS[w].tiled, linearKernel(w, subgroups)],
    [LINEAR_KERNELS[w].rows, linearRowsKernel(w, subgroups)],
    [LINEAR_KERNELS[w].serial, linearSerialKernel(w)],
  ]);
  return new Map<KernelName, string>([
    ...(Object.entries(KERNELS) as Array<[KernelName, string]>),
    ...linear,
    ...quantKernels(subgroups),
  ]);
}

/** Largest head dimension the attention kernel takes (4 output dims per invocation of 64). */
export const MAX_HEAD_DIM = 256;
