/**
 * KVCacheManager: gives sequences their block tables out of the BlockPool, shares blocks between
 * sequences (prefix caching, forks), copies a shared block before it is written (copy-on-write),
 * and frees blocks the step a sequence finishes or is preempted.
 */
import { createHash } from 'node:crypto';
import { BlockPool } from './block-pool.js';

/** What the manager needs to know about a sequence; the engine's Sequence implements it. */
export interface KvSequence {
  /** Prompt ids followed by generated ids. */
  readonly tokens: readonly number[];
  /** Tokens whose K/V are already in the cache. */
  numComputedTokens: number;
  /** Logical block i → physical block id. */
  blockTable: number[];
  /** Content hashes of the leading full blocks (chain: each covers all tokens before it). */
  blockHashes: string[];
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
  /** Block copies (src → dst) decided this step; the model runner performs them before the forward pass. */
  private copies: Array<[number, number]> = [];

  constructor(numBlocks: number, blockSize: number, enablePrefixCaching: boolean) {
    this.pool = new BlockPool(numBlocks);
    this.blockSize = blockSize;
    this.enablePrefixCaching = enablePrefixCaching;
  }

  blocksFor(tokens: number): number {
    return Math.ceil(tokens / this.blockSize);
  }

  /**
   * For a sequence about to start (no blocks yet): take the longest chain of cached full blocks that
   * matches its tokens, never covering the last token (its logits must be computed). Sets
   * numComputedTokens to the tokens found and returns it.
   */
  takeCachedPrefix(seq: KvSequence): number {
    if (seq.blockTable.length !== 0) throw new Error('takeCachedPrefix on a sequence that already has blocks');
    if (!this.enablePrefixCaching) return 0;
    const n = seq.tokens.length;
    const maxBlocks = Math.floor((n - 1) / this.blockSize);
    let parent: string | null = null;
    for (let i = 0; i < maxBlocks; i++) {
      const h: string = seq.blockHashes[i] ?? blockHash(parent, seq.tokens, i * this.blockSize, (i + 1) * this.blockSize);
      seq.blockHashes[i] = h;
      const b = this.pool.lookup(h);
      if (b === undefined) break;
      this.pool.acquire(b);
      seq.blockTable.push(b);
      parent = h;
    }
    const hit = seq.blockTable.length * this.blockSize;
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
   * Number of blocks allocate() would take from the pool for numNewTokens more tokens
   * (new blocks plus a copy of a shared partly filled block).
   */
  blocksNeeded(seq: KvSequence, numNewTokens: number): number {
    const needed = this.blocksFor(seq.numComputedTokens + numNewTokens) - seq.blockTable.length;
    return Math.max(0, needed) + (this.sharedWriteBlock(seq) >= 0 ? 1 : 0);
  }

  /**
   * Make room for numNewTokens more tokens of K/V. Returns false (and changes nothing) when the
   * pool has too few free blocks.
   */
  allocate(seq: KvSequence, numNewTokens: number): boolean {
    if (this.blocksNeeded(seq, numNewTokens) > this.pool.numFree) return false;
    const shared = this.sharedWriteBlock(seq);
    if (shared >= 0) {
      // Copy-on-write: the block the next token lands in is shared with another sequence.
      const idx = Math.floor(seq.numComputedTokens / this.blockSize);
      const fresh = this.pool.allocate();
      this.copies.push([shared, fresh]);
      this.pool.setFill(fresh, seq.numComputedTokens - idx * this.blockSize);
      this.pool.release(shared);
      seq.blockTable[idx] = fresh;
      // The copy is ours alone; drop any hash claim on the partial block.
    }
    const target = this.blocksFor(seq.numComputedTokens + numNewTokens);
    while (seq.blockTable.length < target) seq.blockTable.push(this.pool.allocate());
    return true;
  }

  /**
   * After a step has written K/V for its numNewTokens tokens (seq.numComputedTokens already
   * advanced): record block fill and make newly full blocks findable by content.
   */
  commit(seq: KvSequence, numNewTokens: number): void {
    const bs = this.blockSize;
    const computed = seq.numComputedTokens;
    const first = Math.floor((computed - numNewTokens) / bs);
    const last = Math.ceil(computed / bs) - 1;
    for (let i = first; i <= last; i++) this.pool.setFill(seq.blockTable[i]!, Math.min(bs, computed - i * bs));
    if (!this.enablePrefixCaching) return;
    const full = Math.floor(computed / bs);
    for (let i = first; i < full; i++) {
      if (seq.blockHashes[i] === undefined) {
        seq.blockHashes[i] = blockHash(i === 0 ? null : seq.blockHashes[i - 1]!, seq.tokens, i * bs, (i + 1) * bs);
      }
      this.pool.registerHash(seq.blockTable[i]!, seq.blockHashes[i]!);
    }
  }

  /** Share all of parent's blocks with child (parallel sampling, beam search). */
  fork(parent: KvSequence, child: KvSequence): void {
    if (child.blockTable.length !== 0) throw new Error('fork into a sequence that already has blocks');
    for (const b of parent.blockTable) this.pool.acquire(b);
    child.blockTable = parent.blockTable.slice();
    child.blockHashes = parent.blockHashes.slice();
    child.numComputedTokens = parent.numComputedTokens;
  }

  /** Release all of a sequence's blocks, last block first so that prefix blocks are evicted last. */
  free(seq: KvSequence): void {
    for (let i = seq.blockTable.length - 1; i >= 0; i--) this.pool.release(seq.blockTable[i]!);
    seq.blockTable = [];
    seq.numComputedTokens = 0;
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

  /** The shared, partly filled block the sequence's next token would be written into, or -1. */
  private sharedWriteBlock(seq: KvSequence): number {
    const off = seq.numComputedTokens % this.blockSize;
    if (off === 0) return -1;
    const b = seq.blockTable[Math.floor(seq.numComputedTokens / this.blockSize)];
    return b !== undefined && this.pool.refs(b) > 1 ? b : -1;
  }
}
