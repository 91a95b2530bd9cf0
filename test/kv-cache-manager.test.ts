/**
 * KVCacheManager alone: block tables, prefix-cache hits (never covering the last prompt token),
 * copy-on-write of a shared partly filled block, forks and freeing.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { blockHash, KVCacheManager, type KvSequence } from '../src/kv/kv-cache-manager.js';

const BS = 4;

function seq(tokens: number[]): KvSequence {
  return { tokens, numComputedTokens: 0, blockTables: [], blockHashes: [] };
}

const range = (n: number, from = 0): number[] => Array.from({ length: n }, (_, i) => from + i);

/** Allocate and "compute" the whole uncomputed part of s (what a prefill step does). */
function prefill(kv: KVCacheManager, s: KvSequence): void {
  const n = s.tokens.length - s.numComputedTokens;
  assert.ok(kv.allocate(s, n), 'allocation should fit');
  s.numComputedTokens += n;
  kv.commit(s, n);
}

describe('KVCacheManager', () => {
  test('allocate takes whole blocks, and takes nothing when they do not fit', () => {
    const kv = new KVCacheManager(4, BS, false);
    const a = seq(range(9));
    assert.equal(kv.blocksNeeded(a, 9), 3);
    assert.ok(kv.allocate(a, 9));
    assert.equal(a.blockTables[0]!.length, 3);
    const b = seq(range(8));
    assert.equal(kv.allocate(b, 8), false);
    assert.deepEqual(b.blockTables.flat(), []);
    assert.equal(kv.pool.numFree, 1);
    // Growing into the partly filled last block takes nothing new.
    a.numComputedTokens = 9;
    assert.equal(kv.blocksNeeded(a, 3), 0);
    assert.equal(kv.blocksNeeded(a, 4), 1);
  });

  test('a prefix hit never covers the last prompt token', () => {
    const kv = new KVCacheManager(16, BS, true);
    prefill(kv, seq(range(12)));
    // Same 8 tokens: both blocks are cached, but the last token must be computed, so one block hits.
    const exact = seq(range(8));
    assert.equal(kv.takeCachedPrefix(exact), 4);
    assert.equal(exact.numComputedTokens, 4);
    assert.equal(exact.blockTables[0]!.length, 1);
    // One token more: both blocks hit.
    const longer = seq(range(9));
    assert.equal(kv.takeCachedPrefix(longer), 8);
    assert.equal(longer.blockTables[0]!.length, 2);
  });

  test('hits follow the hash chain: an equal block after a different prefix does not hit', () => {
    const kv = new KVCacheManager(16, BS, true);
    prefill(kv, seq([...range(4), ...range(4, 100), 7]));
    const other = seq([...range(4, 50), ...range(4, 100), 7]);
    assert.equal(kv.takeCachedPrefix(other), 0);
    assert.deepEqual(other.blockTables[0]!, []);
    // The second block's content alone is cached, but under the first prompt's chain.
    const second = range(4, 100);
    assert.notEqual(kv.pool.lookup(blockHash(blockHash(null, range(4), 0, 4), second, 0, 4)), undefined);
    assert.equal(kv.pool.lookup(blockHash(blockHash(null, range(4, 50), 0, 4), second, 0, 4)), undefined);
  });

  test('only committed full blocks are cached, and only with prefix caching on', () => {
    const on = new KVCacheManager(8, BS, true);
    const s = seq(range(7));
    prefill(on, s);
    assert.equal(on.pool.numCached, 1, 'the partly filled second block is not cached');
    const off = new KVCacheManager(8, BS, false);
    prefill(off, seq(range(7)));
    assert.equal(off.pool.numCached, 0);
    assert.equal(off.takeCachedPrefix(seq(range(7))), 0);
  });

  test('cached blocks survive their sequence until reused', () => {
    const kv = new KVCacheManager(3, BS, true);
    const a = seq(range(9));
    prefill(kv, a);
    kv.free(a);
    assert.equal(kv.pool.numFree, 3);
    const b = seq(range(9));
    assert.equal(kv.takeCachedPrefix(b), 8);
    kv.free(b);
    // A different sequence needing all three blocks evicts them.
    prefill(kv, seq(range(12, 500)));
    assert.equal(kv.takeCachedPrefix(seq(range(9))), 0);
  });

  test('fork shares every block; the child copies the shared partly filled block before writing', () => {
    const kv = new KVCacheManager(8, BS, true);
    const parent = seq(range(6));
    prefill(kv, parent);
    const child = seq(range(6));
    kv.fork(parent, child);
    assert.deepEqual(child.blockTables[0]!, parent.blockTables[0]!);
    assert.deepEqual(child.blockHashes, parent.blockHashes);
    assert.equal(child.numComputedTokens, 6);
    for (const b of parent.blockTables[0]!) assert.equal(kv.pool.refs(b), 2);
    assert.throws(() => kv.fork(parent, child), /already has blocks/);

    const [full, partial] = parent.blockTables[0]! as [number, number];
    assert.equal(kv.blocksNeeded(child, 1), 1, 'one block for the copy');
    assert.ok(kv.allocate(child, 1));
    const copies = kv.takeCopies();
    assert.equal(copies.length, 1);
    assert.equal(copies[0]![0], partial);
    assert.equal(child.blockTables[0]![0], full, 'the full block stays shared');
    assert.equal(child.blockTables[0]![1], copies[0]![1]);
    assert.equal(kv.pool.refs(partial), 1);
    assert.equal(kv.pool.refs(full), 2);
    assert.deepEqual(kv.takeCopies(), [], 'copies are handed out once');
    // The parent now owns its partial block alone: no copy.
    assert.ok(kv.allocate(parent, 1));
    assert.deepEqual(kv.takeCopies(), []);
    assert.equal(parent.blockTables[0]![1], partial);
  });

  test('a fork at a block boundary copies nothing', () => {
    const kv = new KVCacheManager(8, BS, false);
    const parent = seq(range(8));
    prefill(kv, parent);
    const child = seq(range(8));
    kv.fork(parent, child);
    assert.ok(kv.allocate(child, 1));
    assert.deepEqual(kv.takeCopies(), []);
    assert.equal(child.blockTables[0]!.length, 3);
    assert.notEqual(child.blockTables[0]![2], parent.blockTables[0]![2]);
  });

  test('free releases the last block first, so prefix blocks are evicted last', () => {
    const kv = new KVCacheManager(3, BS, true);
    const s = seq(range(12));
    prefill(kv, s);
    const table = s.blockTables[0]!.slice();
    kv.free(s);
    assert.deepEqual(s.blockTables[0]!, []);
    assert.equal(s.numComputedTokens, 0);
    assert.deepEqual([kv.pool.allocate(), kv.pool.allocate(), kv.pool.allocate()], table.reverse());
  });

  test('freeing a forked sequence leaves the shared blocks to the other', () => {
    const kv = new KVCacheManager(8, BS, false);
    const parent = seq(range(6));
    prefill(kv, parent);
    const child = seq(range(6));
    kv.fork(parent, child);
    kv.free(parent);
    for (const b of child.blockTables[0]!) assert.equal(kv.pool.refs(b), 1);
    assert.equal(kv.pool.numUsed, 2);
    kv.free(child);
    assert.equal(kv.pool.numUsed, 0);
  });

  test('usage, waste and prefix statistics', () => {
    const kv = new KVCacheManager(4, BS, true);
    prefill(kv, seq(range(5)));
    assert.equal(kv.usage(), 0.5);
    assert.equal(kv.waste(), 3 / 8);
    kv.countPrefixQuery(10, 4);
    assert.deepEqual(kv.prefixStats, { queries: 10, hits: 4 });
  });
});
