/**
 * KVCacheManager: gives sequences their block tables out of the BlockPool (one per KV group of the
 * layout, kv-layout.ts), shares blocks between sequences (prefix caching, forks), copies a shared
 * block before it is written (copy-on-write), frees the blocks a sliding-window group no longer
 * reaches, and frees everything the step a sequence finishes or is preempted.
 */
import { createHash } from 'node:crypto';
import { BlockPool } from './block-pool.js';
import { firstNeededBlock, type KvLayout } from './kv-layout.js';

/** What the manager needs to know about a sequence; the engine's Sequence implements it. */
export interface KvSequence {
  /** Prompt ids followed by generated ids. */
  readonly tokens: readonly number[];
  /** Tokens whose K/V are already in the cache. */
  numComputedTokens: number;
  /**
   * One block table per KV group (kv-layout.ts): logical block i → physical block id, or
   * NO_BLOCK for a block a sliding-window group has freed (wholly before its window).
   */
  blockTables: number[][];
  /** Content hashes of the leading full blocks (chain: each covers all tokens before it). */
  blockHashes: string[];
}

/** A table entry whose block was freed (out of a sliding window): never read again. */
export const NO_BLOCK = -1;

/** Empty block tables for a layout of `groups` groups. */
export function emptyTables(groups: number): number[][] {
  return Array.from({ length: groups }, () => []);
}

export interface PrefixCacheStats {
  /** Prompt tokens looked up in the prefix cache. */
  queries: number;
  /** Of those, tokens found cached. */
  hits: number;
}

/** Hash of a full block: its parent's hash and its token ids (so equal hashes mean equal prefixes). */
export function blockHash(parent: string | null, tokens: readonly number[], start: number, end: number): string {
  const h = createHash('sha256');
  if (parent !== null) h.update(parent);
  h.update(new Uint8Array(Int32Array.from(tokens.slice(start, end)).buffer));
  return h.digest('base64');
}

export class KVCacheManager {
  readonly pool: BlockPool;
  readonly blockSize: number;
  readonly enablePrefixCaching: boolean;
  readonly prefixStats: PrefixCacheStats = { queries: 0, hits: 0 };
  /** Window of each KV group (null: full attention), from the layout. */
  readonly windows: readonly (number | null)[];
  /** Block copies (src → dst) decided this step; the model runner performs them before the forward pass. */
  private copies: Array<[number, number]> = [];

  constructor(numBlocks: number, blockSize: number, enablePrefixCaching: boolean, layout: Pick<KvLayout, 'groups'> = { groups: [{ window: null, layers: [] }] }) {
    this.pool = new BlockPool(numBlocks);
    this.blockSize = blockSize;
    this.enablePrefixCaching = enablePrefixCaching;
    this.windows = layout.groups.map((g) => g.window);
  }

  get numGroups(): number {
    return this.windows.length;
  }

  blocksFor(tokens: number): number {
    return Math.ceil(tokens / this.blockSize);
  }

  /**
   * For a sequence about to start (no blocks yet): take the longest chain of cached full blocks that
   * matches its tokens, never covering the last token (its logits must be computed). A hit of k
   * blocks needs all of them in every full-attention group, and in a windowed group the ones the
   * next query's window reaches. Sets numComputedTokens to the tokens found and returns it.
   */
  takeCachedPrefix(seq: KvSequence): number {
    if (seq.blockTables.some((t) => t.length !== 0)) throw new Error('takeCachedPrefix on a sequence that already has blocks');
    seq.blockTables = emptyTables(this.numGroups);
    if (!this.enablePrefixCaching) return 0;
    const bs = this.blockSize;
    const maxBlocks = Math.floor((seq.tokens.length - 1) / bs);
    let parent: string | null = null;
    for (let i = 0; i < maxBlocks; i++) {
      const h: string = seq.blockHashes[i] ?? blockHash(parent, seq.tokens, i * bs, (i + 1) * bs);
      seq.blockHashes[i] = h;
      parent = h;
    }
    const cached = (g: number, i: number): number | undefined => this.pool.lookup(cacheKey(g, seq.blockHashes[i]!));
    // Longest run of hits from block 0 in every full group (windowed groups: unbounded here).
    let k = maxBlocks;
    this.windows.forEach((w, g) => {
      if (w !== null) return;
      let n = 0;
      while (n < k && cached(g, n) !== undefined) n++;
      k = n;
    });
    // Shrink until every windowed group holds the blocks its window needs after the hit.
    const windowHit = (k: number): boolean =>
      this.windows.every((w, g) => {
        if (w === null) return true;
        for (let i = firstNeededBlock(w, k * bs, bs); i < k; i++) if (cached(g, i) === undefined) return false;
        return true;
      });
    while (k > 0 && !windowHit(k)) k--;
    this.windows.forEach((w, g) => {
      const first = firstNeededBlock(w, k * bs, bs);
      const table = seq.blockTables[g]!;
      for (let i = 0; i < k; i++) {
        if (i < first) {
          table.push(NO_BLOCK);
          continue;
        }
        const b = cached(g, i)!;
        this.pool.acquire(b);
        table.push(b);
      }
    });
    const hit = k * bs;
    seq.numComputedTokens = hit;
    return hit;
  }

  /** Count an admitted sequence's prefix-cache lookup (tokens looked up, tokens found). */
  countPrefixQuery(tokens: number, hits: number): void {
    if (!this.enablePrefixCaching) return;
    this.prefixStats.queries += tokens;
    this.prefixStats.hits += hits;
  }

  /**
   * Number of blocks allocate() would take from the pool for numNewTokens more tokens, over all
   * groups (new blocks plus copies of shared partly filled blocks).
   */
  blocksNeeded(seq: KvSequence, numNewTokens: number): number {
    const target = this.blocksFor(seq.numComputedTokens + numNewTokens);
    let n = 0;
    for (let g = 0; g < this.numGroups; g++) {
      const table = seq.blockTables[g] ?? [];
      n += Math.max(0, target - table.length) + (this.sharedWriteBlock(seq, table) >= 0 ? 1 : 0);
    }
    return n;
  }

  /**
   * Make room for numNewTokens more tokens of K/V in every group. Returns false (and changes
   * nothing) when the pool has too few free blocks.
   */
  allocate(seq: KvSequence, numNewTokens: number): boolean {
    if (this.blocksNeeded(seq, numNewTokens) > this.pool.numFree) return false;
    if (seq.blockTables.length !== this.numGroups) seq.blockTables = emptyTables(this.numGroups);
    const target = this.blocksFor(seq.numComputedTokens + numNewTokens);
    for (const table of seq.blockTables) {
      const shared = this.sharedWriteBlock(seq, table);
      if (shared >= 0) {
        // Copy-on-write: the block the next token lands in is shared with another sequence.
        const idx = Math.floor(seq.numComputedTokens / this.blockSize);
        const fresh = this.pool.allocate();
        this.copies.push([shared, fresh]);
        this.pool.setFill(fresh, seq.numComputedTokens - idx * this.blockSize);
        this.pool.release(shared);
        table[idx] = fresh;
        // The copy is ours alone; drop any hash claim on the partial block.
      }
      while (table.length < target) table.push(this.pool.allocate());
    }
    return true;
  }

  /**
   * After a step has written K/V for its numNewTokens tokens (seq.numComputedTokens already
   * advanced): record block fill, make newly full blocks findable by content, and free the blocks
   * that have fallen out of a windowed group's window.
   */
  commit(seq: KvSequence, numNewTokens: number): void {
    const bs = this.blockSize;
    const computed = seq.numComputedTokens;
    const first = Math.floor((computed - numNewTokens) / bs);
    const last = Math.ceil(computed / bs) - 1;
    const full = Math.floor(computed / bs);
    if (this.enablePrefixCaching) {
      for (let i = first; i < full; i++) {
        seq.blockHashes[i] ??= blockHash(i === 0 ? null : seq.blockHashes[i - 1]!, seq.tokens, i * bs, (i + 1) * bs);
      }
    }
    seq.blockTables.forEach((table, g) => {
      for (let i = first; i <= last; i++) if (table[i]! !== NO_BLOCK) this.pool.setFill(table[i]!, Math.min(bs, computed - i * bs));
      if (this.enablePrefixCaching) {
        for (let i = first; i < full; i++) if (table[i]! !== NO_BLOCK) this.pool.registerHash(table[i]!, cacheKey(g, seq.blockHashes[i]!));
      }
      const w = this.windows[g]!;
      if (w === null) return;
      const need = firstNeededBlock(w, computed, bs);
      for (let i = 0; i < need && i < table.length; i++) {
        if (table[i] === NO_BLOCK) continue;
        this.pool.release(table[i]!);
        table[i] = NO_BLOCK;
      }
    });
  }

  /** Share all of parent's blocks with child (parallel sampling, beam search). */
  fork(parent: KvSequence, child: KvSequence): void {
    if (child.blockTables.some((t) => t.length !== 0)) throw new Error('fork into a sequence that already has blocks');
    for (const table of parent.blockTables) for (const b of table) if (b !== NO_BLOCK) this.pool.acquire(b);
    child.blockTables = parent.blockTables.map((t) => t.slice());
    child.blockHashes = parent.blockHashes.slice();
    child.numComputedTokens = parent.numComputedTokens;
  }

  /** Release all of a sequence's blocks, last block first so that prefix blocks are evicted last. */
  free(seq: KvSequence): void {
    for (const table of seq.blockTables) {
      for (let i = table.length - 1; i >= 0; i--) if (table[i] !== NO_BLOCK) this.pool.release(table[i]!);
    }
    seq.blockTables = emptyTables(this.numGroups);
    seq.numComputedTokens = 0;
  }

  /** Blocks the sequence holds now, over all groups (shared ones counted too). */
  blocksHeld(seq: KvSequence): number {
    let n = 0;
    for (const table of seq.blockTables) for (const b of table) if (b !== NO_BLOCK) n++;
    return n;
  }

  /** Block copies decided since the last call (src, dst pairs). */
  takeCopies(): Array<[number, number]> {
    const c = this.copies;
    this.copies = [];
    return c;
  }

  /** Fraction of used blocks' slots that hold no token. */
  waste(): number {
    const slots = this.pool.numUsed * this.blockSize;
    return slots === 0 ? 0 : (slots - this.pool.numStoredTokens) / slots;
  }

  usage(): number {
    return this.pool.numUsed / this.pool.numBlocks;
  }

  /** The shared, partly filled block of `table` the sequence's next token would be written into, or -1. */
  private sharedWriteBlock(seq: KvSequence, table: readonly number[]): number {
    const off = seq.numComputedTokens % this.blockSize;
    if (off === 0) return -1;
    const b = table[Math.floor(seq.numComputedTokens / this.blockSize)];
    return b !== undefined && b !== NO_BLOCK && this.pool.refs(b) > 1 ? b : -1;
  }
}

/** The prefix-cache key of group g's block with content hash h (group 0 uses the hash itself). */
function cacheKey(g: number, h: string): string {
  return g === 0 ? h : `${g}:${h}`;
}
