/**
 * BlockPool: the physical KV blocks, their reference counts, and the prefix-cache index.
 *
 * Free blocks sit in one LRU queue (a doubly linked list over block ids, O(1) push/pop/remove).
 * A freed block that holds cached content keeps its hash, so a later request with the same prefix
 * can take it back out of the queue; the hash is forgotten only when the block is reused for
 * something else (popped from the head). This is vLLM v1's design: eviction = reuse of the least
 * recently freed block.
 */
import { BlockState } from '../shared/block-map.js';

export class BlockPool {
  readonly numBlocks: number;
  private readonly refCount: Int32Array;
  /** Tokens of the block whose K/V are written (for waste accounting). */
  private readonly fill: Int32Array;
  private readonly hashOf: (string | null)[];
  private readonly byHash = new Map<string, number>();
  // Free queue: prev/next links, -1 terminated. inFree marks membership.
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  private readonly inFree: Uint8Array;
  private head = -1;
  private tail = -1;
  private free = 0;
  /** Used blocks (refCount > 0) and the tokens stored in them. */
  private used = 0;
  private storedTokens = 0;

  constructor(numBlocks: number) {
    if (!Number.isInteger(numBlocks) || numBlocks < 1) throw new Error(`BlockPool needs at least one block, got ${numBlocks}`);
    this.numBlocks = numBlocks;
    this.refCount = new Int32Array(numBlocks);
    this.fill = new Int32Array(numBlocks);
    this.hashOf = new Array<string | null>(numBlocks).fill(null);
    this.prev = new Int32Array(numBlocks);
    this.next = new Int32Array(numBlocks);
    this.inFree = new Uint8Array(numBlocks);
    for (let b = 0; b < numBlocks; b++) this.pushTail(b);
  }

  get numFree(): number {
    return this.free;
  }

  get numUsed(): number {
    return this.used;
  }

  /** Tokens whose K/V are stored in used blocks. */
  get numStoredTokens(): number {
    return this.storedTokens;
  }

  /** Number of blocks holding prefix-cache content (used or free). */
  get numCached(): number {
    return this.byHash.size;
  }

  refs(block: number): number {
    return this.refCount[block]!;
  }

  /** Every block's state (a BlockState code per block id), for a live view of the pool. */
  stateMap(): Uint8Array {
    const out = new Uint8Array(this.numBlocks);
    for (let b = 0; b < this.numBlocks; b++) {
      const r = this.refCount[b]!;
      out[b] = r > 1 ? BlockState.shared : r === 1 ? BlockState.used : this.hashOf[b] !== null ? BlockState.cached : BlockState.free;
    }
    return out;
  }

  /** Take the least recently freed block; its cached content (if any) is forgotten. */
  allocate(): number {
    const b = this.head;
    if (b < 0) throw new Error('BlockPool.allocate: no free block (callers check numFree first)');
    this.unlink(b);
    const h = this.hashOf[b];
    if (h !== null) {
      this.byHash.delete(h);
      this.hashOf[b] = null;
    }
    this.fill[b] = 0;
    this.refCount[b] = 1;
    this.used++;
    return b;
  }

  /** Add a reference to a block (sharing, or a prefix-cache hit that takes it out of the free queue). */
  acquire(block: number): void {
    if (this.refCount[block] === 0) {
      this.unlink(block);
      this.used++;
      this.storedTokens += this.fill[block]!;
    }
    this.refCount[block]!++;
  }

  /** Drop a reference; at zero the block joins the free queue's tail (its cached content stays findable). */
  release(block: number): void {
    const r = this.refCount[block]!;
    if (r <= 0) throw new Error(`BlockPool.release: block ${block} is not in use`);
    this.refCount[block] = r - 1;
    if (r === 1) {
      this.used--;
      this.storedTokens -= this.fill[block]!;
      if (this.hashOf[block] === null) this.fill[block] = 0;
      this.pushTail(block);
    }
  }

  /** Record that the first `tokens` slots of a used block hold K/V. */
  setFill(block: number, tokens: number): void {
    const old = this.fill[block]!;
    if (tokens > old) {
      this.fill[block] = tokens;
      this.storedTokens += tokens - old;
    }
  }

  /** The block caching content `hash`, if any. */
  lookup(hash: string): number | undefined {
    return this.byHash.get(hash);
  }

  /** Make a full, computed block findable by its content hash (first writer wins). */
  registerHash(block: number, hash: string): void {
    if (this.hashOf[block] !== null || this.byHash.has(hash)) return;
    this.hashOf[block] = hash;
    this.byHash.set(hash, block);
  }

  /** Forget every cached hash of free blocks (used by tests and when prefix caching is reset). */
  resetCache(): void {
    for (let b = this.head; b >= 0; b = this.next[b]!) {
      const h = this.hashOf[b];
      if (h !== null) {
        this.byHash.delete(h);
        this.hashOf[b] = null;
        this.fill[b] = 0;
      }
    }
  }

  private pushTail(b: number): void {
    this.prev[b] = this.tail;
    this.next[b] = -1;
    if (this.tail >= 0) this.next[this.tail] = b;
    else this.head = b;
    this.tail = b;
    this.inFree[b] = 1;
    this.free++;
  }

  private unlink(b: number): void {
    if (!this.inFree[b]) throw new Error(`BlockPool: block ${b} is not free`);
    const p = this.prev[b]!;
    const n = this.next[b]!;
    if (p >= 0) this.next[p] = n;
    else this.head = n;
    if (n >= 0) this.prev[n] = p;
    else this.tail = p;
    this.inFree[b] = 0;
    this.free--;
  }
}
