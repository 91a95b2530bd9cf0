/**
 * Paged KV cache and PagedAttention of the native backend, against the contiguous-attention
 * reference (test/reference/ops.ts), on every kernel family this CPU supports, plus the
 * bit-for-bit invariances the engine relies on (physical blocks, chunked prefill, decode vs
 * prefill, batch composition, thread count).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DType, type KvCacheHandle } from '../src/backend/backend.js';
import { Isa, cpuBackend } from '../src/backend/native.js';
import { attentionRef, bitEqual, closeTo, randomF32, rng, roundBf16 } from './reference/ops.js';
import { detectedIsa, forEachIsa } from './helpers/isa.js';

const nb = cpuBackend();
const initialThreads = nb.getThreads();

after(() => {
  nb.setIsa(detectedIsa);
  nb.setThreads(initialThreads);
});

interface Shape {
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  blockSize: number;
  dtype: DType;
  /** Sliding window (0/absent: full causal attention) and score soft-cap (0/absent: none). */
  window?: number;
  softcap?: number;
}

/** One sequence: its full K/V ([len, nKv*hd]) and the queries of its last qLen tokens. */
interface Seq {
  len: number;
  qLen: number;
  k: Float32Array;
  v: Float32Array;
  q: Float32Array;
}

function makeSeq(s: Shape, len: number, qLen: number, rand: () => number): Seq {
  const kvw = s.nKvHeads * s.headDim;
  return {
    len,
    qLen,
    k: randomF32(len * kvw, rand),
    v: randomF32(len * kvw, rand),
    q: randomF32(qLen * s.nHeads * s.headDim, rand, 2),
  };
}

interface Paged {
  cache: KvCacheHandle;
  tables: Int32Array;
  maxBlocks: number;
  numBlocks: number;
}

/**
 * Allocates a cache, assigns each sequence's logical blocks to physical ids (in order, or
 * shuffled), and writes all K/V through kvCacheWrite in a few uneven pieces.
 */
function buildCache(s: Shape, seqs: Seq[], shuffle: boolean, rand: () => number, spare = 3): Paged {
  const perSeq = seqs.map((q) => Math.ceil(q.len / s.blockSize));
  const total = perSeq.reduce((a, b) => a + b, 0);
  const numBlocks = total + spare;
  const ids = Array.from({ length: numBlocks }, (_, i) => i);
  if (shuffle) {
    for (let i = ids.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [ids[i], ids[j]] = [ids[j], ids[i]];
    }
  }
  const maxBlocks = Math.max(1, ...perSeq) + 1;
  const tables = new Int32Array(seqs.length * maxBlocks).fill(-7); // unused entries must not be read
  const cache = nb.kvCacheCreate(2, numBlocks, s.blockSize, s.nKvHeads, s.headDim, s.dtype);
  let next = 0;
  const kvw = s.nKvHeads * s.headDim;
  seqs.forEach((q, si) => {
    for (let b = 0; b < perSeq[si]; b++) tables[si * maxBlocks + b] = ids[next++];
    // Write in pieces of varying size, with a skipped slot (-1) in the middle of each piece.
    let t = 0;
    while (t < q.len) {
      const n = Math.min(q.len - t, 1 + Math.floor(rand() * 40));
      const slots = new Int32Array(n + 1);
      const k = new Float32Array((n + 1) * kvw);
      const v = new Float32Array((n + 1) * kvw);
      const skipAt = Math.floor(rand() * (n + 1));
      let src = t;
      for (let i = 0; i <= n; i++) {
        if (i === skipAt) {
          slots[i] = -1;
          k.fill(1e30, i * kvw, (i + 1) * kvw);
          continue;
        }
        const pos = src++;
        slots[i] = tables[si * maxBlocks + Math.floor(pos / s.blockSize)] * s.blockSize + (pos % s.blockSize);
        k.set(q.k.subarray(pos * kvw, (pos + 1) * kvw), i * kvw);
        v.set(q.v.subarray(pos * kvw, (pos + 1) * kvw), i * kvw);
      }
      nb.kvCacheWrite(cache, 1, k, v, slots, n + 1);
      t += n;
    }
  });
  return { cache, tables, maxBlocks, numBlocks };
}

/** Attention of the given sequences, each querying its last `qLens[i]` tokens. */
function attend(s: Shape, p: Paged, seqs: Seq[], qLens = seqs.map((q) => q.qLen), seqIdx = seqs.map((_, i) => i)): Float32Array {
  const w = s.nHeads * s.headDim;
  const total = qLens.reduce((a, b) => a + b, 0);
  const q = new Float32Array(total * w);
  const qsl = new Int32Array(seqIdx.length + 1);
  const lens = new Int32Array(seqIdx.length);
  const tables = new Int32Array(seqIdx.length * p.maxBlocks);
  let off = 0;
  seqIdx.forEach((si, i) => {
    const sq = seqs[si];
    const n = qLens[i];
    // The queries of the last n tokens are the last n rows of sq.q.
    q.set(sq.q.subarray((sq.qLen - n) * w, sq.qLen * w), off * w);
    qsl[i] = off;
    off += n;
    lens[i] = sq.len;
    tables.set(p.tables.subarray(si * p.maxBlocks, (si + 1) * p.maxBlocks), i * p.maxBlocks);
  });
  qsl[seqIdx.length] = off;
  const out = new Float32Array(total * w).fill(NaN);
  nb.pagedAttention(out, q, p.cache, 1, tables, p.maxBlocks, qsl, lens, seqIdx.length, s.nHeads, s.nKvHeads, s.headDim, 1 / Math.sqrt(s.headDim), s.window ?? 0, s.softcap ?? 0);
  return out;
}

function reference(s: Shape, sq: Seq): Float64Array {
  const round = (a: Float32Array) => (s.dtype === DType.BF16 ? Float64Array.from(a, roundBf16) : a);
  return attentionRef(sq.q, round(sq.k), round(sq.v), sq.qLen, sq.len, s.nHeads, s.nKvHeads, s.headDim, 1 / Math.sqrt(s.headDim), s.window ?? 0, s.softcap ?? 0);
}

function checkAgainstReference(s: Shape, seqs: Seq[], out: Float32Array, label: string): void {
  const w = s.nHeads * s.headDim;
  let off = 0;
  for (const sq of seqs) {
    const ref = reference(s, sq);
    const got = out.subarray(off * w, (off + sq.qLen) * w);
    const err = closeTo(got, ref, 1e-4, 2e-5);
    assert.equal(err, null, `${label}: ${err}`);
    off += sq.qLen;
  }
}

const shapes: Array<Shape & { name: string }> = [
  // Decode items (at most 4 rows, head dims 32/64/80/96/128) read the pool in place, float32 or
  // bf16; prefill items stage chunks. Decode must equal the last row of the staged prefill.
  { name: 'GQA 9/3 hd64 bs16 f32', nHeads: 9, nKvHeads: 3, headDim: 64, blockSize: 16, dtype: DType.F32 },
  { name: 'GQA 9/3 hd64 bs16 bf16', nHeads: 9, nKvHeads: 3, headDim: 64, blockSize: 16, dtype: DType.BF16 },
  { name: 'MHA 4/4 hd80 bs32 bf16', nHeads: 4, nKvHeads: 4, headDim: 80, blockSize: 32, dtype: DType.BF16 },
  { name: 'MQA 6/1 hd8 bs1 f32', nHeads: 6, nKvHeads: 1, headDim: 8, blockSize: 1, dtype: DType.F32 },
  { name: 'GQA 4/2 hd128 bs16 bf16', nHeads: 4, nKvHeads: 2, headDim: 128, blockSize: 16, dtype: DType.BF16 },
  // Sliding windows that start mid-chunk and mid-block, soft-capped scores, odd head dims.
  { name: 'window 37 GQA 9/3 hd64 bs16 f32', nHeads: 9, nKvHeads: 3, headDim: 64, blockSize: 16, dtype: DType.F32, window: 37 },
  { name: 'window 8 softcap 1.5 GQA 4/2 hd24 bs4 f32', nHeads: 4, nKvHeads: 2, headDim: 24, blockSize: 4, dtype: DType.F32, window: 8, softcap: 1.5 },
  { name: 'window 16 MQA 4/1 hd32 bs16 bf16', nHeads: 4, nKvHeads: 1, headDim: 32, blockSize: 16, dtype: DType.BF16, window: 16 },
  { name: 'window 1 MHA 2/2 hd16 bs1 bf16', nHeads: 2, nKvHeads: 2, headDim: 16, blockSize: 1, dtype: DType.BF16, window: 1 },
  { name: 'softcap 2 GQA 6/2 hd80 bs32 bf16', nHeads: 6, nKvHeads: 2, headDim: 80, blockSize: 32, dtype: DType.BF16, softcap: 2 },
  { name: 'window 50 softcap 0.7 GQA 8/2 hd96 bs16 f32', nHeads: 8, nKvHeads: 2, headDim: 96, blockSize: 16, dtype: DType.F32, window: 50, softcap: 0.7 },
];

describe('pagedAttention', () => {
  for (const shape of shapes) {
    test(`${shape.name}: matches contiguous attention; invariant to blocks, chunking, batch, threads`, () => {
      const rand = rng(shape.headDim * 131 + shape.blockSize);
      const bs = shape.blockSize;
      // Lengths: exactly N full blocks, N blocks + 1 token, one token, a long one.
      const lens = [3 * bs, 2 * bs + 1, 1, Math.max(70, 5 * bs) + 3];
      const seqs = lens.map((len) => makeSeq(shape, len, len, rand)); // full prefill: every token queries
      forEachIsa((isa) => {
        const label = `${shape.name} isa=${Isa[isa]}`;
        const ordered = buildCache(shape, seqs, false, rand);
        const shuffled = buildCache(shape, seqs, true, rand);
        try {
          const full = attend(shape, ordered, seqs);
          checkAgainstReference(shape, seqs, full, label);

          // Physical block ids never change a bit.
          assert.ok(bitEqual(attend(shape, shuffled, seqs), full), `${label}: shuffled blocks differ`);

          // Each sequence alone equals its rows of the batch; batch order does not matter either.
          const w = shape.nHeads * shape.headDim;
          const offsets = [0];
          for (const sq of seqs) offsets.push(offsets[offsets.length - 1] + sq.qLen);
          seqs.forEach((sq, i) => {
            const alone = attend(shape, shuffled, seqs, [sq.qLen], [i]);
            assert.ok(bitEqual(alone, full.subarray(offsets[i] * w, offsets[i + 1] * w)), `${label}: seq ${i} alone differs`);
          });
          const rev = attend(shape, ordered, seqs, [...seqs].reverse().map((q) => q.qLen), [3, 2, 1, 0]);
          assert.ok(bitEqual(rev.subarray(0, seqs[3].qLen * w), full.subarray(offsets[3] * w, offsets[4] * w)), `${label}: reordered batch differs`);

          // Prefill with cached context: query only the last T-P tokens of each sequence.
          const tails = seqs.map((q) => Math.max(1, q.len - Math.floor(q.len * 0.6)));
          const chunked = attend(shape, shuffled, seqs, tails);
          let off = 0;
          seqs.forEach((sq, i) => {
            const want = full.subarray((offsets[i + 1] - tails[i]) * w, offsets[i + 1] * w);
            assert.ok(bitEqual(chunked.subarray(off * w, (off + tails[i]) * w), want), `${label}: chunked prefill of seq ${i} differs`);
            off += tails[i];
          });

          // Decode (one query token) equals the last row of the full prefill.
          const decode = attend(shape, shuffled, seqs, seqs.map(() => 1));
          seqs.forEach((_, i) => {
            assert.ok(bitEqual(decode.subarray(i * w, (i + 1) * w), full.subarray((offsets[i + 1] - 1) * w, offsets[i + 1] * w)), `${label}: decode of seq ${i} differs`);
          });

          // With a window, blocks wholly before each sequence's first query's window are never
          // read: marking them freed (-1) changes nothing (decode and chunked prefill).
          if (shape.window) {
            for (const [qLens, want] of [
              [tails, chunked],
              [seqs.map(() => 1), decode],
            ] as const) {
              const freed = { ...shuffled, tables: shuffled.tables.slice() };
              seqs.forEach((sq, i) => {
                const firstKey = Math.max(0, sq.len - qLens[i]! - shape.window! + 1);
                for (let b = 0; b < Math.floor(firstKey / bs); b++) freed.tables[i * shuffled.maxBlocks + b] = -1;
              });
              assert.ok(bitEqual(attend(shape, freed, seqs, [...qLens]), want), `${label}: freed out-of-window blocks change results`);
            }
          }

          // Thread count never changes a bit.
          nb.setThreads(1);
          const one = attend(shape, shuffled, seqs);
          nb.setThreads(2);
          const two = attend(shape, shuffled, seqs);
          nb.setThreads(initialThreads);
          assert.ok(bitEqual(one, full) && bitEqual(two, full), `${label}: thread count changes results`);
        } finally {
          nb.kvCacheFree(ordered.cache);
          nb.kvCacheFree(shuffled.cache);
        }
      });
    });
  }

  test('decode of a large batch (one item per sequence for all KV heads) equals each sequence alone', () => {
    // Enough sequences that decode items take every KV head at once (>= 4 per thread), with
    // lengths around chunk and block boundaries so the next-chunk prefetch sees every case.
    const rand = rng(23);
    const threads = nb.getThreads();
    for (const shape of shapes.filter((s) => s.nKvHeads > 1)) {
      const n = 4 * threads + 3;
      const lens = Array.from({ length: n }, (_, i) => [1, 31, 32, 33, 64, 65, 97, 150][i % 8] + (i >> 3));
      const seqs = lens.map((len) => makeSeq(shape, len, 1, rand));
      const w = shape.nHeads * shape.headDim;
      forEachIsa((isa) => {
        const p = buildCache(shape, seqs, true, rand);
        try {
          const batch = attend(shape, p, seqs);
          checkAgainstReference(shape, seqs, batch, `${shape.name} isa=${Isa[isa]}`);
          seqs.forEach((sq, i) => {
            const alone = attend(shape, p, seqs, [1], [i]);
            assert.ok(bitEqual(alone, batch.subarray(i * w, (i + 1) * w)), `${shape.name} isa=${Isa[isa]}: seq ${i} alone differs`);
          });
        } finally {
          nb.kvCacheFree(p.cache);
        }
      });
    }
  });

  test('block size does not change results (keys are consumed in fixed absolute chunks)', () => {
    const rand = rng(7);
    const base = { nHeads: 8, nKvHeads: 2, headDim: 64, dtype: DType.F32 };
    const seqs = [makeSeq({ ...base, blockSize: 1 }, 77, 77, rand), makeSeq({ ...base, blockSize: 1 }, 33, 5, rand)];
    forEachIsa((isa) => {
      const outs = [1, 16, 32].map((blockSize) => {
        const shape = { ...base, blockSize };
        const p = buildCache(shape, seqs, true, rand);
        try {
          return attend(shape, p, seqs);
        } finally {
          nb.kvCacheFree(p.cache);
        }
      });
      assert.ok(bitEqual(outs[0], outs[1]) && bitEqual(outs[0], outs[2]), `isa=${Isa[isa]}: block size changes results`);
    });
  });

  test('bf16 cache stays close to the f32 cache', () => {
    const rand = rng(11);
    const f32Shape: Shape = { nHeads: 4, nKvHeads: 2, headDim: 64, blockSize: 16, dtype: DType.F32 };
    const bfShape: Shape = { ...f32Shape, dtype: DType.BF16 };
    const seqs = [makeSeq(f32Shape, 50, 50, rand)];
    const a = buildCache(f32Shape, seqs, false, rand);
    const b = buildCache(bfShape, seqs, false, rand);
    try {
      const err = closeTo(attend(bfShape, b, seqs), attend(f32Shape, a, seqs), 0, 2e-2);
      assert.equal(err, null, `bf16 vs f32: ${err}`);
    } finally {
      nb.kvCacheFree(a.cache);
      nb.kvCacheFree(b.cache);
    }
  });
});

describe('KV cache', () => {
  test('kvCacheBlockBytes counts K and V of every layer', () => {
    assert.equal(nb.kvCacheBlockBytes(30, 16, 3, 64, DType.BF16), 30 * 2 * 16 * 3 * 64 * 2);
    assert.equal(nb.kvCacheBlockBytes(2, 32, 8, 128, DType.F32), 2 * 2 * 32 * 8 * 128 * 4);
  });

  test('write / read slot round-trips (bf16 rounds to nearest even), slot -1 is skipped', () => {
    for (const dtype of [DType.F32, DType.BF16]) {
      const rand = rng(3);
      const c = nb.kvCacheCreate(3, 5, 4, 2, 6, dtype);
      const k = randomF32(3 * 12, rand);
      const v = randomF32(3 * 12, rand);
      nb.kvCacheWrite(c, 2, k, v, new Int32Array([19, -1, 0]), 3);
      const round = (x: number) => (dtype === DType.BF16 ? roundBf16(x) : Math.fround(x));
      assert.deepEqual(Array.from(nb.kvCacheReadSlot(c, 2, 'k', 19)), Array.from(k.subarray(0, 12), round));
      assert.deepEqual(Array.from(nb.kvCacheReadSlot(c, 2, 'v', 0)), Array.from(v.subarray(24, 36), round));
      // Untouched slots and other layers stay zero.
      assert.deepEqual(Array.from(nb.kvCacheReadSlot(c, 2, 'k', 1)), new Array(12).fill(0));
      assert.deepEqual(Array.from(nb.kvCacheReadSlot(c, 1, 'k', 19)), new Array(12).fill(0));
      nb.kvCacheFree(c);
    }
  });

  test('kvCacheCommit commits blocks in id order without changing what they hold', () => {
    // 2 layers x 128 blocks of 16 KiB (K + V): 2 MiB pools, page-backed, committed in 4 slices.
    const c = nb.kvCacheCreate(2, 128, 16, 2, 64, DType.F32);
    const rand = rng(5);
    const k = randomF32(2 * 128, rand);
    const v = randomF32(2 * 128, rand);
    const slots = new Int32Array([7, 1000]); // one block the first slice commits, one the last
    nb.kvCacheWrite(c, 1, k, v, slots, 2);
    const slice = nb.kvCacheBlockBytes(2, 16, 2, 64, DType.F32) * 32;
    assert.deepEqual([1, 2, 3, 4].map(() => nb.kvCacheCommit(c, slice)), [true, true, true, false]);
    assert.equal(nb.kvCacheCommit(c, slice), false);
    for (const [i, s] of [...slots].entries()) {
      assert.deepEqual(nb.kvCacheReadSlot(c, 1, 'k', s), k.subarray(i * 128, (i + 1) * 128));
      assert.deepEqual(nb.kvCacheReadSlot(c, 1, 'v', s), v.subarray(i * 128, (i + 1) * 128));
    }
    assert.deepEqual(Array.from(nb.kvCacheReadSlot(c, 0, 'k', 500)), new Array(128).fill(0));
    nb.kvCacheFree(c);
    // A small (heap) cache is committed from the start.
    const small = nb.kvCacheCreate(1, 2, 4, 1, 8, DType.BF16);
    assert.equal(nb.kvCacheCommit(small, 1), false);
    nb.kvCacheFree(small);
  });

  test('bf16 writes round like f32ToBf16 on every kernel family (ties, NaN, inf, subnormals), large T split over threads, duplicate slots keep the last', () => {
    const hd = 37; // 2 vectors of 16 + a tail
    const T = 600; // enough for the threaded path
    const special = [0, -0, 1.00390625, 1.01171875, -1.00390625, 3.4e38, -3.4e38, Infinity, -Infinity, NaN, 1e-40, -1e-45, 65504.5, 1 + 2 ** -8, 1 + 3 * 2 ** -9];
    const rand = rng(11);
    const k = randomF32(T * 2 * hd, rand, 100);
    const v = randomF32(T * 2 * hd, rand, 1e-3);
    for (let i = 0; i < k.length; i += 7) k[i] = special[(i / 7) % special.length]!;
    for (let i = 3; i < v.length; i += 5) v[i] = special[((i - 3) / 5) % special.length]!;
    // Token t goes to slot t, except the last token, which overwrites slot 5.
    const slots = Int32Array.from({ length: T }, (_, t) => (t === T - 1 ? 5 : t));
    const bits = (x: number): number => {
      const r = roundBf16(x);
      return Number.isNaN(r) ? NaN : r;
    };
    forEachIsa((isa) => {
      const c = nb.kvCacheCreate(1, Math.ceil(T / 16), 16, 2, hd, DType.BF16);
      nb.kvCacheWrite(c, 0, k, v, slots, T);
      for (const t of [0, 1, 5, 77, 300, T - 2]) {
        const src = t === 5 ? T - 1 : t;
        for (const [which, arr] of [['k', k], ['v', v]] as const) {
          const got = Array.from(nb.kvCacheReadSlot(c, 0, which, t));
          const want = Array.from(arr.subarray(src * 2 * hd, (src + 1) * 2 * hd), bits);
          got.forEach((g, i) => {
            if (Number.isNaN(want[i]!)) assert.ok(Number.isNaN(g), `isa=${Isa[isa]} ${which} slot ${t} [${i}]: ${g} is not NaN`);
            else assert.ok(Object.is(g, want[i]), `isa=${Isa[isa]} ${which} slot ${t} [${i}]: ${g} vs ${want[i]} (from ${arr[src * 2 * hd + i]})`);
          });
        }
      }
      nb.kvCacheFree(c);
    });
  });

  test('kvCacheCopyBlocks copies whole blocks of every layer', () => {
    const rand = rng(5);
    const c = nb.kvCacheCreate(2, 4, 3, 1, 5, DType.BF16);
    for (let layer = 0; layer < 2; layer++) {
      nb.kvCacheWrite(c, layer, randomF32(3 * 5, rand), randomF32(3 * 5, rand), new Int32Array([3, 4, 5]), 3);
    }
    nb.kvCacheCopyBlocks(c, new Int32Array([1, 1]), new Int32Array([3, 0]));
    for (let layer = 0; layer < 2; layer++) {
      for (const which of ['k', 'v'] as const) {
        for (let off = 0; off < 3; off++) {
          const src = Array.from(nb.kvCacheReadSlot(c, layer, which, 3 + off));
          assert.deepEqual(Array.from(nb.kvCacheReadSlot(c, layer, which, 9 + off)), src);
          assert.deepEqual(Array.from(nb.kvCacheReadSlot(c, layer, which, off)), src);
        }
      }
    }
    nb.kvCacheFree(c);
  });

  test('attention through copied (copy-on-write) blocks equals the original', () => {
    const rand = rng(9);
    const shape: Shape = { nHeads: 4, nKvHeads: 2, headDim: 32, blockSize: 8, dtype: DType.F32 };
    const seqs = [makeSeq(shape, 21, 21, rand)];
    const p = buildCache(shape, seqs, false, rand, 3);
    try {
      const before = attend(shape, p, seqs);
      // Blocks 0..2 hold the sequence; copy them to the spare blocks 3..5 and point the table there.
      nb.kvCacheCopyBlocks(p.cache, new Int32Array([0, 1, 2]), new Int32Array([3, 4, 5]));
      const moved: Paged = { ...p, tables: Int32Array.from(p.tables, (b) => (b >= 0 ? b + 3 : b)) };
      assert.ok(bitEqual(attend(shape, moved, seqs), before));
    } finally {
      nb.kvCacheFree(p.cache);
    }
  });

  test('a freed cache throws instead of crashing; freeing twice is harmless', () => {
    const c = nb.kvCacheCreate(1, 2, 4, 1, 4, DType.F32);
    nb.kvCacheFree(c);
    nb.kvCacheFree(c);
    assert.throws(() => nb.kvCacheReadSlot(c, 0, 'k', 0), /freed/);
    assert.throws(() => nb.kvCacheWrite(c, 0, new Float32Array(4), new Float32Array(4), new Int32Array([0]), 1), /freed/);
  });
});

describe('invalid arguments throw', () => {
  const c = nb.kvCacheCreate(2, 4, 4, 2, 8, DType.F32);
  after(() => nb.kvCacheFree(c));
  const kv = new Float32Array(2 * 16);

  test('kvCacheCreate', () => {
    assert.throws(() => nb.kvCacheCreate(1, 4, 4, 2, 8, DType.F16), RangeError);
    assert.throws(() => nb.kvCacheCreate(1, 4, 4, 2, 8, 9 as DType), RangeError);
    assert.throws(() => nb.kvCacheCreate(0, 4, 4, 2, 8, DType.F32), RangeError);
    assert.throws(() => nb.kvCacheCreate(1, 1.5, 4, 2, 8, DType.F32), TypeError);
    assert.throws(() => nb.kvCacheCreate(1, 2 ** 30, 4, 2, 8, DType.F32), RangeError); // slots past Int32
  });

  test('kvCacheWrite / kvCacheCopyBlocks / kvCacheReadSlot', () => {
    const bad = {} as KvCacheHandle;
    assert.throws(() => nb.kvCacheWrite(bad, 0, kv, kv, new Int32Array([0, 1]), 2), TypeError);
    assert.throws(() => nb.kvCacheWrite(c, 2, kv, kv, new Int32Array([0, 1]), 2), RangeError); // layer
    assert.throws(() => nb.kvCacheWrite(c, 0, kv.subarray(1), kv, new Int32Array([0, 1]), 2), RangeError); // k short
    assert.throws(() => nb.kvCacheWrite(c, 0, kv, kv, new Int32Array([0, 16]), 2), RangeError); // slot
    assert.throws(() => nb.kvCacheWrite(c, 0, kv, kv, new Int32Array([0, -2]), 2), RangeError);
    assert.throws(() => nb.kvCacheWrite(c, 0, kv, kv, new Int32Array([0]), 2), RangeError); // slots short
    assert.throws(() => nb.kvCacheWrite(c, 0, kv, kv, new Float32Array([0, 1]) as unknown as Int32Array, 2), TypeError);
    assert.throws(() => nb.kvCacheCopyBlocks(c, new Int32Array([0]), new Int32Array([4])), RangeError);
    assert.throws(() => nb.kvCacheCopyBlocks(c, new Int32Array([-1]), new Int32Array([0])), RangeError);
    assert.throws(() => nb.kvCacheCopyBlocks(c, new Int32Array([0, 1]), new Int32Array([2])), RangeError);
    assert.throws(() => nb.kvCacheReadSlot(c, 0, 'x' as 'k', 0), RangeError);
    assert.throws(() => nb.kvCacheReadSlot(c, 0, 'k', 16), RangeError);
    assert.throws(() => nb.kvCacheCommit(bad, 1), TypeError);
    assert.throws(() => nb.kvCacheCommit(c, 0), RangeError);
    assert.throws(() => nb.kvCacheCommit(c, 1.5), TypeError);
  });

  test('pagedAttention', () => {
    const q = new Float32Array(3 * 4 * 8);
    const out = new Float32Array(3 * 4 * 8);
    const qsl = new Int32Array([0, 3]);
    const lens = new Int32Array([5]);
    const tables = new Int32Array([2, 1]);
    const call = (o: Partial<{ out: Float32Array; q: Float32Array; tables: Int32Array; mb: number; qsl: Int32Array; lens: Int32Array; nh: number; nkv: number; hd: number; layer: number; window: number; softcap: number }>) =>
      nb.pagedAttention(o.out ?? out, o.q ?? q, c, o.layer ?? 0, o.tables ?? tables, o.mb ?? 2, o.qsl ?? qsl, o.lens ?? lens, 1, o.nh ?? 4, o.nkv ?? 2, o.hd ?? 8, 0.35, o.window ?? 0, o.softcap ?? 0);
    call({}); // valid
    assert.throws(() => call({ tables: new Int32Array([2, 4]) }), RangeError); // block id out of range
    assert.throws(() => call({ tables: new Int32Array([-1, 1]) }), RangeError);
    assert.throws(() => call({ lens: new Int32Array([9]), mb: 2 }), RangeError); // needs 3 blocks
    assert.throws(() => call({ lens: new Int32Array([2]) }), RangeError); // fewer tokens than queries
    assert.throws(() => call({ qsl: new Int32Array([0, 4]) }), RangeError); // q too short
    assert.throws(() => call({ qsl: new Int32Array([2, 1]) }), RangeError);
    assert.throws(() => call({ q: q.subarray(1) }), RangeError);
    assert.throws(() => call({ out: out.subarray(8) }), RangeError);
    assert.throws(() => call({ out: q }), RangeError); // aliasing
    assert.throws(() => call({ nh: 3, nkv: 2 }), RangeError); // not a multiple
    assert.throws(() => call({ nkv: 1, nh: 4 }), RangeError); // cache has 2 kv heads
    assert.throws(() => call({ hd: 16 }), RangeError);
    assert.throws(() => call({ layer: 2 }), RangeError);
    assert.throws(() => call({ tables: new Int32Array([0]) }), RangeError); // table shorter than numSeqs*maxBlocks
    assert.throws(() => nb.pagedAttention(out, q, c, 0, tables, 2, qsl, lens, 1, 4, 2, 8, NaN, 0, 0), RangeError);
    // With a window, blocks wholly before the first query's window are never read: they may be -1.
    const freed = { tables: new Int32Array([-1, 1, 2]), mb: 3, lens: new Int32Array([9]) };
    call({ ...freed, window: 2 }); // queries at 6..8 see keys from 5 on: block 0 is not needed
    assert.throws(() => call(freed), RangeError);
    assert.throws(() => call({ ...freed, window: 4 }), RangeError); // key 3 is in block 0
    assert.throws(() => call({ softcap: -1 }), RangeError);
    assert.throws(() => call({ softcap: Infinity }), RangeError);
    assert.throws(() => call({ window: -1 }), RangeError);
    assert.throws(() => call({ window: 1.5 }), TypeError);
    assert.throws(() => (nb.pagedAttention as unknown as (...a: unknown[]) => void)(out, q, c), TypeError);
  });
});
