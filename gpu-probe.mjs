// Device probe (not committed): WebGPU backend on a real GPU: adapter, correctness against the CPU
// backend at model sizes, and achieved GB/s (M=1 linear) and GFLOP/s (M=512 linear).
import { createWebGpuBackend } from './dist/backend/webgpu/index.js';
import { cpuBackend } from './dist/backend/native.js';
const t0 = performance.now();
const gpu = createWebGpuBackend(8);
console.log('adapter', JSON.stringify(gpu.adapter), 'open ms', (performance.now() - t0).toFixed(0));
const cpu = cpuBackend();
let seed = 1;
const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
const rnd = (n, s = 1) => Float32Array.from({ length: n }, () => rand() * s);
function maxRel(a, b) { let m = 0, s = 0; for (let i = 0; i < b.length; i++) { m = Math.max(m, Math.abs(a[i] - b[i])); s = Math.max(s, Math.abs(b[i])); } return m / s; }
const N = 4096, K = 4096;
const w = rnd(N * K, 0.02);
const pg = gpu.packLinear([{ w, n: N }], 0, K, 0);
const pc = cpu.packLinear([{ w, n: N }], 0, K, 0);
for (const M of [1, 7, 512]) {
  const x = rnd(M * K);
  const og = new Float32Array(M * N); gpu.linearPacked(pg, x, M, [og], false); gpu.toHost(og);
  const oc = new Float32Array(M * N); cpu.linearPacked(pc, x, M, [oc], false);
  let exact = 0; for (let i = 0; i < oc.length; i++) if (og[i] === oc[i]) exact++;
  console.log(`linear M=${M}: max rel err vs CPU ${maxRel(og, oc).toExponential(2)}, bit-identical ${(100 * exact / oc.length).toFixed(1)}%`);
}
for (const [M, reps] of [[1, 200], [512, 20]]) {
  // x made device-resident first (an op's output), so the loop measures the kernel, not uploads.
  const xh = rnd(M * K); const x = new Float32Array(M * K); gpu.add(x, xh, new Float32Array(M * K), M * K);
  const o = new Float32Array(M * N);
  gpu.linearPacked(pg, x, M, [o], false); gpu.finish();
  const t = performance.now();
  for (let r = 0; r < reps; r++) gpu.linearPacked(pg, x, M, [o], false);
  gpu.finish();
  const s = (performance.now() - t) / 1000 / reps;
  console.log(`linear ${N}x${K} M=${M}: ${(s * 1e3).toFixed(3)} ms, ${(N * K * 4 / s / 1e9).toFixed(1)} GB/s weights, ${(2 * M * N * K / s / 1e9).toFixed(1)} GFLOP/s`);
}
// Attention: 8 sequences of 1000 tokens, GQA 32/8, head dim 128, decode (1 query each) vs CPU.
const nH = 32, nKv = 8, D = 128, bs = 16, L = 1000, S = 8;
const blocks = Math.ceil(L / bs);
const gc = gpu.kvCacheCreate(1, S * blocks, bs, nKv, D, 0);
const cc = cpu.kvCacheCreate(1, S * blocks, bs, nKv, D, 0);
const k = rnd(S * L * nKv * D), v = rnd(S * L * nKv * D);
const slots = Int32Array.from({ length: S * L }, (_, i) => i % L + Math.floor(i / L) * blocks * bs);
gpu.kvCacheWrite(gc, 0, k, v, slots, S * L); cpu.kvCacheWrite(cc, 0, k, v, slots, S * L);
const tables = Int32Array.from({ length: S * blocks }, (_, i) => i);
const qsl = Int32Array.from({ length: S + 1 }, (_, i) => i), lens = new Int32Array(S).fill(L);
const q = rnd(S * nH * D);
const ag = new Float32Array(S * nH * D), ac = new Float32Array(S * nH * D);
gpu.pagedAttention(ag, q, gc, 0, tables, blocks, qsl, lens, S, nH, nKv, D, 1 / Math.sqrt(D)); gpu.toHost(ag);
cpu.pagedAttention(ac, q, cc, 0, tables, blocks, qsl, lens, S, nH, nKv, D, 1 / Math.sqrt(D));
console.log(`attention decode 8x1000 GQA 32/8 hd128: max rel err vs CPU ${maxRel(ag, ac).toExponential(2)}`);
const ta = performance.now();
for (let r = 0; r < 50; r++) gpu.pagedAttention(ag, q, gc, 0, tables, blocks, qsl, lens, S, nH, nKv, D, 1 / Math.sqrt(D));
gpu.finish();
const sa = (performance.now() - ta) / 1000 / 50;
console.log(`attention decode: ${(sa * 1e3).toFixed(3)} ms, ${(2 * S * L * nKv * D * 4 / sa / 1e9).toFixed(1)} GB/s of K/V`);
process.exit(0);
