/**
 * BlockPool alone: reference counts, the LRU free queue, the prefix-cache hash index and the
 * eviction of cached blocks (vLLM's tests/v1/core/test_prefix_caching.py covers the same ground).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BlockPool } from '../src/kv/block-pool.js';
import { Rng } from '../src/sampling/rng.js';

describe('BlockPool', () => {
  test('rejects a pool without blocks', () => {
    assert.throws(() => new BlockPool(0), /at least one block/);
    assert.throws(() => new BlockPool(1.5), /at least one block/);
  });

  test('a fresh pool hands blocks out in id order, then refuses', () => {
    const p = new BlockPool(4);
    assert.equal(p.numFree, 4);
    assert.deepEqual([p.allocate(), p.allocate(), p.allocate(), p.allocate()], [0, 1, 2, 3]);
    assert.equal(p.numFree, 0);
    assert.equal(p.numUsed, 4);
    assert.throws(() => p.allocate(), /no free block/);
  });

  test('reference counts: shared blocks return to the free queue only at zero', () => {
    const p = new BlockPool(3);
    const b = p.allocate();
    assert.equal(p.refs(b), 1);
    p.acquire(b);
    assert.equal(p.refs(b), 2);
    p.release(b);
    assert.equal(p.refs(b), 1);
    assert.equal(p.numFree, 2);
    p.release(b);
    assert.equal(p.refs(b), 0);
    assert.equal(p.numFree, 3);
    assert.equal(p.numUsed, 0);
    assert.throws(() => p.release(b), /not in use/);
  });

  test('the free queue is least recently freed first', () => {
    const p = new BlockPool(4);
    const [a, b, c, d] = [p.allocate(), p.allocate(), p.allocate(), p.allocate()];
    for (const x of [c, a, d, b]) p.release(x!);
    assert.deepEqual([p.allocate(), p.allocate(), p.allocate(), p.allocate()], [c, a, d, b]);
  });

  test('hash index: a registered block is findable, the first writer wins', () => {
    const p = new BlockPool(4);
    const a = p.allocate();
    const b = p.allocate();
    p.registerHash(a, 'h1');
    p.registerHash(b, 'h1'); // the same content computed twice: the first block keeps the hash
    p.registerHash(a, 'h2'); // a block keeps its first hash
    assert.equal(p.lookup('h1'), a);
    assert.equal(p.lookup('h2'), undefined);
    assert.equal(p.numCached, 1);
  });

  test('a freed cached block stays findable and a hit takes it back out of the free queue', () => {
    const p = new BlockPool(3);
    const a = p.allocate();
    p.setFill(a, 16);
    p.registerHash(a, 'h');
    assert.equal(p.numStoredTokens, 16);
    p.release(a);
    assert.equal(p.numStoredTokens, 0);
    assert.equal(p.lookup('h'), a);
    p.acquire(a);
    assert.equal(p.refs(a), 1);
    assert.equal(p.numFree, 2);
    assert.equal(p.numStoredTokens, 16, 'the cached content counts again');
    // The hit left the free queue: the next allocations are the other two blocks.
    assert.deepEqual([p.allocate(), p.allocate()].sort(), [1, 2]);
  });

  test('eviction: reusing a cached block forgets its hash, least recently freed first', () => {
    const p = new BlockPool(3);
    const blocks = [p.allocate(), p.allocate(), p.allocate()];
    blocks.forEach((b, i) => {
      p.setFill(b, 4);
      p.registerHash(b, `h${i}`);
    });
    // Freed in the order 2, 0, 1: block 2 is evicted first, then 0.
    for (const b of [2, 0, 1]) p.release(b);
    assert.equal(p.numCached, 3);
    assert.equal(p.allocate(), 2);
    assert.equal(p.lookup('h2'), undefined);
    assert.equal(p.lookup('h0'), 0);
    assert.equal(p.allocate(), 0);
    assert.equal(p.lookup('h0'), undefined);
    assert.equal(p.lookup('h1'), 1);
    assert.equal(p.numCached, 1);
  });

  test('fill only grows while a block is used; an uncached block forgets it when freed', () => {
    const p = new BlockPool(2);
    const a = p.allocate();
    p.setFill(a, 5);
    p.setFill(a, 3);
    assert.equal(p.numStoredTokens, 5);
    p.release(a);
    p.acquire(a); // uncached: back in use with nothing stored
    assert.equal(p.numStoredTokens, 0);
  });

  test('resetCache forgets the hashes of free blocks only', () => {
    const p = new BlockPool(2);
    const a = p.allocate();
    const b = p.allocate();
    p.registerHash(a, 'ha');
    p.registerHash(b, 'hb');
    p.release(a);
    p.resetCache();
    assert.equal(p.lookup('ha'), undefined);
    assert.equal(p.lookup('hb'), b);
  });

  test('random operations agree with a plain array model', () => {
    const N = 13;
    const rng = new Rng(2024);
    const p = new BlockPool(N);
    // Reference: ref counts, a free list in queue order, and the hash of each block.
    const refs = new Array<number>(N).fill(0);
    let free = Array.from({ length: N }, (_, i) => i);
    const hashOf = new Array<string | null>(N).fill(null);
    const pick = <T>(xs: T[]): T => xs[Math.floor(rng.next() * xs.length)]!;
    for (let step = 0; step < 4000; step++) {
      const used = refs.flatMap((r, b) => (r > 0 ? [b] : []));
      const op = Math.floor(rng.next() * 5);
      if (op === 0 && free.length > 0) {
        const want = free.shift()!;
        if (hashOf[want] !== null) hashOf[want] = null;
        refs[want] = 1;
        assert.equal(p.allocate(), want);
      } else if (op === 1 && used.length > 0) {
        const b = pick(used);
        refs[b]!++;
        p.acquire(b);
      } else if (op === 2 && used.length > 0) {
        const b = pick(used);
        if (--refs[b]! === 0) free.push(b);
        p.release(b);
      } else if (op === 3 && used.length > 0) {
        const b = pick(used);
        const h = `h${Math.floor(rng.next() * 20)}`;
        if (hashOf[b] === null && !hashOf.includes(h)) hashOf[b] = h;
        p.registerHash(b, h);
      } else if (op === 4) {
        // A prefix-cache hit on a free cached block.
        const cached = free.filter((b) => hashOf[b] !== null);
        if (cached.length === 0) continue;
        const b = pick(cached);
        assert.equal(p.lookup(hashOf[b]!), b);
        free = free.filter((x) => x !== b);
        refs[b] = 1;
        p.acquire(b);
      }
      assert.equal(p.numFree, free.length);
      assert.equal(p.numUsed, N - free.length);
      assert.equal(p.numCached, hashOf.filter((h) => h !== null).length);
      for (let b = 0; b < N; b++) assert.equal(p.refs(b), refs[b]);
    }
  });
});
