/**
 * The reduction order of the float linear kernels (kernels.ts), and the WGSL that sums an output's
 * lanes in that order, through subgroup shuffles where they give the same bits.
 *
 * The order, for one output (m, n) = sum over k of x[m, k] w[n, k]: K is cut into chunks of
 * {@link CHUNK} consecutive values (chunk c: k = 4c .. 4c + 3) dealt round-robin to {@link LANES}
 * lanes (lane l: chunks l, l + 16, l + 32, ... that start below K). Each lane is one float32
 * accumulator starting at 0 that takes its chunks in order, one fused multiply-add per value, k
 * ascending (a chunk crossing K adds x = w = 0 for its missing values). The 16 lane sums then meet
 * in a fixed tree of adjacent pairs: stride 1 (lane l += lane l + 1 for even l), then 2, 4, 8;
 * lane 0 holds the sum. Then bias, then the accumulate add. All of it depends on K alone, never
 * on M or on which kernel ran.
 *
 * Why this order: it serves both shapes of the product on a real GPU. Decode (a few rows) is bound
 * by reading the weights once: its kernel gives each output column 16 invocations, and at each step
 * they read 16 consecutive chunks of the column's row, 64 consecutive values (256 bytes of float32,
 * 128 of 16-bit weights), whole memory sectors per step instead of one value per invocation from
 * rows K apart; and 16 times the invocations of one per column, so the loads in flight can cover
 * the memory latency. Prefill is bound by arithmetic: its tiled kernel stages a tile of 64 k (one
 * chunk per lane) in workgroup memory and each invocation runs one lane of a block of outputs,
 * reusing every staged value across that block; the lane order costs it only the tree at the end.
 * Adjacent pairs first keep the tree's small strides inside a subgroup, where shuffles replace
 * workgroup memory and barriers. Three kernels run the order (kernels.ts: decode by cooperating
 * lanes, decode serially on a fallback adapter, tiled) and the tests hold every output of them to
 * an exact emulation of it; the quantized kernels' lanes (quant-kernels.ts) meet in the same tree.
 */

/** Lanes per output (a power of two: the tree is binary). */
export const LANES = 16;
/** Consecutive values per chunk of a lane (a 16-byte load of float32); the WGSL spells it 4. */
export const CHUNK = 4;

/** The WGSL that the subgroup-using kernels need, or its stand-ins when subgroups are off. */
export interface SubgroupWgsl {
  /** The directive at the top of the module. */
  enable: string;
  /** Extra entry-point parameters (after local_invocation_index `li`). */
  params: string;
  /**
   * Expression (at the top of `main`, in uniform control flow) for the subgroup size below which
   * tree levels may shuffle in this workgroup: 0 when they may not.
   */
  limit: string;
  /** Module-scope declarations behind `limit`. */
  decls: string;
}

/**
 * Subgroups (the `subgroups` feature) where the device has them. WGSL fixes neither which
 * invocations form a subgroup nor its size (SwiftShader: 4, NVIDIA: 32, AMD: 32 or 64), and a
 * shuffle gives the tree's bits only where lane l of an output sits at subgroup position
 * l mod size, i.e. where subgroups are aligned runs of consecutive local invocation indices. Each
 * subgroup checks that of itself (its ids are its indices minus its lowest, it spans exactly
 * `size` indices starting at a multiple of `size`), and the workgroup takes the smallest size of
 * subgroups that pass, or 0 if any fails: a workgroup-uniform value, so the barriers of the levels
 * left to workgroup memory stay in uniform control flow.
 */
export function subgroupWgsl(on: boolean): SubgroupWgsl {
  if (!on) return { enable: '', params: '', limit: '0u', decls: '' };
  return {
    enable: 'enable subgroups;\n',
    params: ', @builtin(subgroup_invocation_id) sgId: u32, @builtin(subgroup_size) sgSize: u32',
    limit: 'shuffleLimit(li, sgId, sgSize)',
    decls: /* wgsl */ `
// 256 - the smallest subgroup size of the workgroup (sizes are at most 128), 256 if a subgroup is not an aligned run.
var<workgroup> sgSpan: atomic<u32>;
fn shuffleLimit(li: u32, id: u32, size: u32) -> u32 {
  let lo = subgroupMin(li);
  let hi = subgroupMax(li);
  let aligned = id == li - lo && hi - lo + 1u == size && lo % size == 0u && (size & (size - 1u)) == 0u;
  atomicMax(&sgSpan, select(256u, 256u - size, aligned));
  return 256u - workgroupUniformLoad(&sgSpan);
}`,
  };
}

/**
 * WGSL `fn laneTree(acc: ptr<function, array<f32, r>>, li: u32, lim: u32, lanes: u32)`: for each
 * of the r values of an invocation, the tree of adjacent pairs over the `lanes` lanes of its
 * output (a power of two; invocations li - li % lanes .. + lanes - 1), handing each finished sum
 * to the module's `fn finish(i: u32, v: f32)` (i: which of the r values) on one lane of the
 * output. Levels whose stride is below `lim` shuffle (the same additions of the same operands:
 * the same bits). The levels left go through the module's workgroup array `red` (at least
 * wg * rr floats), in rounds of rr values: every lane stores its partials, one barrier, then lane
 * j finishes values j, j + lanes, ... alone, taking the remaining levels in the same pairs and
 * order. One barrier per round instead of one per level (and per level on a GPU with small
 * subgroups, such as SwiftShader's 4), and the serial additions are spread over the lanes.
 * Must be called in uniform control flow by the whole workgroup, `lanes` uniform. The float
 * linear kernels sum 16 lanes with it, the quantized ones (quant-kernels.ts) their L.
 */
export function laneTreeWgsl(subgroups: boolean, wg: number, r: number, rr: number): string {
  if (r % rr !== 0) throw new RangeError('laneTreeWgsl: rounds must divide the values');
  const shuffles = subgroups
    ? /* wgsl */ `
  for (; s0 < lanes && s0 < lim; s0 <<= 1u) {
    for (var r = 0u; r < ${r}u; r++) { (*acc)[r] = (*acc)[r] + subgroupShuffleDown((*acc)[r], s0); }
  }`
    : '';
  return /* wgsl */ `
fn laneTree(acc: ptr<function, array<f32, ${r}>>, li: u32, lim: u32, lanes: u32) {
  var s0 = 1u;${shuffles}
  let lane = li % lanes;
  if (s0 >= lanes) {
    if (lane == 0u) {
      for (var r = 0u; r < ${r}u; r++) { finish(r, (*acc)[r]); }
    }
    return;
  }
  let base = li - lane;
  for (var r0 = 0u; r0 < ${r}u; r0 += ${rr}u) {
    // The previous round's lanes have read their sums.
    if (r0 > 0u) { workgroupBarrier(); }
    for (var r = 0u; r < ${rr}u; r++) { red[r * ${wg}u + li] = (*acc)[r0 + r]; }
    workgroupBarrier();
    for (var r = lane; r < ${rr}u; r += lanes) {
      let o = r * ${wg}u + base;
      for (var s = s0; s < lanes; s <<= 1u) {
        for (var j = 0u; j < lanes; j += 2u * s) { red[o + j] = red[o + j] + red[o + j + s]; }
      }
      finish(r0 + r, red[o]);
    }
  }
}`;
}
