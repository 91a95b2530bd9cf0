/**
 * A/B of two builds' kernels in one process, for kernel work on a noisy host:
 *
 *   node --import tsx scripts/kernel-ab.ts A_CHECKOUT B_CHECKOUT [linear|attention] [--types Q4_K,Q8_0]
 *       [--m 1,32,512] [--shapes 2048x2048,8192x2048] [--copies 1] [--seqs 32] [--keys 256] [--threads 1] [--pairs 15]
 *       [--amx 1,0]
 *
 * Each checkout must have its own built addon (`node-gyp rebuild` there: a copied build/ compiles
 * the original checkout's sources). Both addons load into this process and the calls alternate
 * A, B, A, B…, so whatever the host does to one (other tenants, the frequency, a noisy sibling
 * core: whole-process runs swung by 2x within minutes on the round-two host) it does to the
 * other. Prints one JSON line per case: both medians, the median of the pairwise speed-ups
 * (time A / time B: above 1, B is faster) and whether the two outputs have the same bits.
 *
 * linear: the quantized linear op (linearPacked) on random weights of each type, N x K shapes, M
 * activation rows; --copies C packs C copies and cycles through them (C x the bytes: enough to leave
 * the L3 cache, as a model's weights do, for decode-sized M). attention: decode attention (one query per sequence, 9 / 3 heads of 64, 16-token
 * blocks, 30 layers per timed call) over float32 and bf16 caches. --amx A,B switches each side's AMX
 * path of the quantized linear op on (1) or off (0): the tile kernel against the VNNI one.
 */
import { parseArgs } from 'node:util';

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    types: { type: 'string', default: 'Q4_K,Q6_K,Q8_0' },
    m: { type: 'string', default: '1,32,512' },
    shapes: { type: 'string', default: '2048x2048,8192x2048,2048x8192' },
    copies: { type: 'string', default: '1' },
    seqs: { type: 'string', default: '32' },
    keys: { type: 'string', default: '256' },
    threads: { type: 'string', default: '1' },
    pairs: { type: 'string', default: '15' },
    amx: { type: 'string', default: '' },
  },
});
const [dirA, dirB, op = 'linear'] = positionals;
if (!dirA || !dirB || (op !== 'linear' && op !== 'attention')) {
  console.error('usage: kernel-ab.ts A_CHECKOUT B_CHECKOUT [linear|attention] [options]; see the header');
  process.exit(2);
}

type Backend = any; // each checkout's own CpuBackend (their types may differ between revisions)
const backs: Backend[] = [];
for (const dir of [dirA, dirB]) backs.push((await import(`${dir}/src/backend/native.ts`)).cpuBackend());
for (const nb of backs) nb.setThreads(Number(opts.threads));
if (opts.amx) opts.amx.split(',').forEach((on, j) => backs[j].quantAmx(on === '1'));
const pairs = Number(opts.pairs);
const median = (a: number[]): number => [...a].sort((x, y) => x - y)[a.length >> 1]!;
const sameBits = (a: Float32Array, b: Float32Array): boolean => a.every((v, i) => Object.is(v, b[i]));

/** Times run(0) and run(1) alternately; returns median ms of each and the median speed-up A / B. */
function alternate(run: (j: number) => void, reps: number): { msA: number; msB: number; speedup: number } {
  const t: number[][] = [[], []];
  for (let p = 0; p < pairs; p++)
    for (let j = 0; j < 2; j++) {
      const t0 = process.hrtime.bigint();
      for (let r = 0; r < reps; r++) run(j);
      t[j]!.push(Number(process.hrtime.bigint() - t0) / 1e6 / reps);
    }
  return { msA: median(t[0]!), msB: median(t[1]!), speedup: median(t[0]!.map((a, i) => a / t[1]![i]!)) };
}

if (op === 'linear') {
  const { GgmlType } = await import(`${dirA}/src/backend/quant.ts`);
  const { randomQuant } = await import(`${dirA}/test/reference/ggml-quant.ts`);
  for (const tn of opts.types.split(',')) {
    const type = (GgmlType as Record<string, number>)[tn];
    if (type === undefined) throw new Error(`unknown type ${tn}`);
    for (const [N, K] of opts.shapes.split(',').map((s) => s.split('x').map(Number) as [number, number])) {
      const w = randomQuant(type, N, K, 7);
      const copies = Number(opts.copies);
      const hs = backs.map((nb) => Array.from({ length: copies }, () => nb.packLinearQuant([{ w, type, n: N }], K)));
      let turn = 0;
      for (const M of opts.m.split(',').map(Number)) {
        const x = new Float32Array(M * K).map((_, i) => Math.sin(i * 0.37) * (i % 97 === 0 ? 20 : 1));
        const outs = backs.map(() => new Float32Array(M * N));
        const run = (j: number): void => backs[j].linearPacked(hs[j][turn++ % copies], x, M, [outs[j]], false);
        run(0);
        run(1);
        const r = alternate(run, Math.max(copies, Math.round(3e8 / (M * N * K))));
        const gops = (ms: number): number => +((2 * M * N * K) / ms / 1e6).toFixed(1);
        console.log(JSON.stringify({ op, type: tn, N, K, M, gops_a: gops(r.msA), gops_b: gops(r.msB), speedup_b_over_a: +r.speedup.toFixed(3), same_bits: sameBits(outs[0]!, outs[1]!) }));
      }
      backs.forEach((nb, j) => hs[j].forEach((h: unknown) => nb.packedLinearFree(h)));
    }
  }
} else {
  const { DType } = await import(`${dirA}/src/backend/backend.ts`);
  const S = Number(opts.seqs), L = Number(opts.keys), H = 9, KH = 3, D = 64, bs = 16, layers = 30;
  const perSeq = Math.ceil(L / bs);
  const tables = new Int32Array(S * perSeq).map((_, i) => i);
  const k = new Float32Array(S * L * KH * D).map((_, i) => Math.sin(i * 0.013));
  const v = new Float32Array(S * L * KH * D).map((_, i) => Math.cos(i * 0.017));
  const slots = new Int32Array(S * L).map((_, i) => Math.floor(i / L) * perSeq * bs + (i % L));
  const q = new Float32Array(S * H * D).map((_, i) => Math.sin(i * 0.11));
  const qsl = new Int32Array(S + 1).map((_, i) => i);
  const lens = new Int32Array(S).fill(L);
  for (const [name, dt] of [['float32', DType.F32], ['bfloat16', DType.BF16]] as const) {
    const caches = backs.map((nb) => {
      const c = nb.kvCacheCreate(layers, S * perSeq, bs, KH, D, dt);
      for (let l = 0; l < layers; l++) nb.kvCacheWrite(c, l, k, v, slots, S * L);
      return c;
    });
    const outs = backs.map(() => new Float32Array(S * H * D));
    const run = (j: number): void => {
      for (let l = 0; l < layers; l++) backs[j].pagedAttention(outs[j], q, caches[j], l, tables, perSeq, qsl, lens, S, H, KH, D, 1 / 8, 0, 0);
    };
    const r = alternate(run, 1);
    console.log(JSON.stringify({ op, cache: name, seqs: S, keys: L, ms_a: +r.msA.toFixed(2), ms_b: +r.msB.toFixed(2), speedup_b_over_a: +r.speedup.toFixed(3), same_bits: sameBits(outs[0]!, outs[1]!) }));
    backs.forEach((nb, j) => nb.kvCacheFree(caches[j]));
  }
}
