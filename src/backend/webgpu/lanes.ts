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
 * workgroup memory and barriers.
 */

/** Lanes per output (a power of two: the tree is binary). */
export const LANES = 16;
/** Consecutive values per chunk of a lane (a 16-byte load of float32). */
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
 * WGSL `fn laneTree(acc: ptr<function, array<f32, r>>, li: u32, lim: u32)`: for each of the r
 * values of an invocation, the tree over the 16 lanes of its output (invocations li - li % 16 ..
 * + 15), left in lane 0. Levels whose stride is below `lim` shuffle (the same additions of the same
 * operands: the same bits); the rest go through the module's workgroup array `red` (at least
 * wg * rr floats) in rounds of rr values. Must be called in uniform control flow by the whole
 * workgroup.
 */
export function laneTreeWgsl(subgroups: boolean, wg: number, r: number, rr: number): string {
  if (r % rr !== 0) throw new RangeError('laneTreeWgsl: rounds must divide the values');
  const shuffles = subgroups
    ? /* wgsl */ `
  for (; s0 < ${LANES}u && s0 < lim; s0 <<= 1u) {
    for (var r = 0u; r < ${r}u; r++) { (*acc)[r] = (*acc)[r] + subgroupShuffleDown((*acc)[r], s0); }
  }`
    : '';
  return /* wgsl */ `
fn laneTree(acc: ptr<function, array<f32, ${r}>>, li: u32, lim: u32) {
  var s0 = 1u;${shuffles}
  if (s0 >= ${LANES}u) { return; }
  let lane = li % ${LANES}u;
  for (var r0 = 0u; r0 < ${r}u; r0 += ${rr}u) {
    for (var r = 0u; r < ${rr}u; r++) { red[r * ${wg}u + li] = (*acc)[r0 + r]; }
    workgroupBarrier();
    for (var s = s0; s < ${LANES}u; s <<= 1u) {
      if (lane % (2u * s) == 0u) {
        for (var r = 0u; r < ${rr}u; r++) { red[r * ${wg}u + li] = red[r * ${wg}u + li] + red[r * ${wg}u + li + s]; }
      }
      workgroupBarrier();
    }
    for (var r = 0u; r < ${rr}u; r++) { (*acc)[r0 + r] = red[r * ${wg}u + li]; }
    workgroupBarrier();
  }
}`;
}
