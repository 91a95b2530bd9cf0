/**
 * The merge step of a BPE tokenizer with its merge table in typed arrays.
 *
 * @huggingface/tokenizers keeps a BPE model's merges as an array of string pairs plus a Map keyed by
 * each pair's JSON: ~20 MB of heap for Llama 3's 128k merges, in every thread that holds the
 * tokenizer, the largest part of a server's JavaScript memory. Here a merge is two symbol ids (the
 * pieces' vocabulary ids) in an open-addressing table, with its rank and the merged piece's id:
 * 16 bytes a slot, at most half full.
 *
 * It replaces the library's BPE model inside its Tokenizer (whose public `model` it is), taking over
 * that model's vocabulary Map and array, so normalizers, pre-tokenizers, added tokens, the
 * post-processor and the decoders stay the library's. It computes what the library's BPE does, to
 * the token: the adjacent pair of lowest rank merges first, the leftmost of equal ranks, one merge
 * at a time; unknown pieces fall back to bytes or the unknown token the same way.
 */
import * as tokenizers from '@huggingface/tokenizers';

/**
 * What we use of the library's model classes. (Its type declarations import extensionless paths,
 * which do not resolve under NodeNext, so they are stated here.)
 */
interface LibModel {
  config: Record<string, unknown>;
  vocab: string[];
  /** Read only through `get` and `has` once the model is built. */
  tokens_to_ids: Pick<Map<string, number>, 'get' | 'has'>;
  unk_token?: string;
  unk_token_id?: number;
  fuse_unk: boolean;
}
/** The library's BPE model. */
export interface LibBpe extends LibModel {
  tokens_to_ids: Map<string, number>;
  byte_fallback: boolean;
  ignore_merges: boolean;
}
/** The library's base class of models: a callable object whose call runs `encode` (and fuses unknowns). */
const Model = (tokenizers as unknown as { Model: new (config: Record<string, unknown>) => LibModel }).Model;

/** A piece that is in no merge and not in the vocabulary: it stays as it is. */
const NO_SYMBOL = -1;
/** Words this long or longer are not cached (the library's limit). */
const MAX_CACHED_CHARS = 256;
const CACHE_CAPACITY = 10_000;

export class CompactBpe extends Model {
  private readonly byteFallback: boolean;
  private readonly ignoreMerges: boolean;
  /** Pieces of merges that are not vocabulary entries: symbol ids from `vocab.length` up. */
  private readonly extraPieces: string[] = [];
  private readonly extraIds = new Map<string, number>();
  private readonly firstExtra: number;
  /** Open-addressing merge table: left and right symbol (-1: empty), rank, merged symbol. */
  private readonly left: Int32Array;
  private readonly right: Int32Array;
  private readonly rank: Int32Array;
  private readonly merged: Int32Array;
  private readonly mask: number;
  /** Recent words and their pieces (insertion order = recency). */
  private readonly cache = new Map<string, string[]>();
  private readonly textEncoder = new TextEncoder();

  /**
   * Whether this model can stand in for `model` (the library's BPE built without merges): the
   * suffix variants of BPE (end-of-word and continuing-subword suffixes) stay with the library.
   */
  static supports(model: { config: Record<string, unknown> }): boolean {
    const c = model.config;
    return c['type'] === 'BPE' && !c['end_of_word_suffix'] && !c['continuing_subword_suffix'];
  }

  /**
   * @param model the library's BPE model, built with no vocabulary and no merges, after its
   *   Tokenizer has added the added tokens to it (its settings and added tokens are taken over)
   * @param vocab the model's vocabulary (tokenizer.json's `model.vocab`: piece -> id)
   * @param merges the model's merges: "left right" strings or [left, right] pairs, in rank order
   */
  constructor(model: LibBpe, vocab: Readonly<Record<string, number>>, merges: ReadonlyArray<string | readonly [string, string]>) {
    super(model.config);
    // The vocabulary as the library's BPE builds it (a Map, and the pieces by id), then the added
    // tokens over it as its Tokenizer puts them; built here rather than by the library, whose
    // Object.entries over the whole vocabulary leaves its temporaries' memory in the thread's malloc
    // arena for good (~12 MB for 128k entries, measured in a worker: 2.5 MB with this loop).
    const ids = new Map<string, number>();
    for (const piece in vocab) ids.set(piece, vocab[piece]!);
    // As the library: the unknown token's id is looked up before the added tokens go in.
    this.unk_token = model.unk_token;
    this.unk_token_id = model.unk_token == null ? undefined : ids.get(model.unk_token);
    const pieces = new Array<string>(ids.size);
    for (const [piece, id] of ids) pieces[id] = piece;
    for (const [piece, id] of model.tokens_to_ids) ids.set(piece, id);
    model.vocab.forEach((piece, id) => (pieces[id] = piece));
    this.vocab = pieces;
    this.tokens_to_ids = new PieceIds(pieces, ids);
    this.fuse_unk = model.fuse_unk;
    this.byteFallback = model.byte_fallback;
    this.ignoreMerges = model.ignore_merges;
    this.firstExtra = this.vocab.length;

    const slots = 2 ** Math.ceil(Math.log2(Math.max(2 * merges.length, 16)));
    this.mask = slots - 1;
    this.left = new Int32Array(slots).fill(NO_SYMBOL);
    this.right = new Int32Array(slots);
    this.rank = new Int32Array(slots);
    this.merged = new Int32Array(slots);
    merges.forEach((m, r) => {
      // The library splits on the first two spaces' worth ("a b c" is the pair "a", "b").
      const [a, b] = typeof m === 'string' ? m.split(' ', 2) : m;
      // A later duplicate of a pair overrides the earlier one's rank, as in the library's Map.
      this.insert(this.symbolOf(a ?? '', true), this.symbolOf(b ?? '', true), r, this.symbolOf(`${a ?? ''}${b ?? ''}`, true));
    });
  }

  encode(tokens: string[]): string[] {
    const out: string[] = [];
    for (const token of tokens) {
      if (this.ignoreMerges && this.tokens_to_ids.has(token)) {
        out.push(token);
        continue;
      }
      for (const t of this.bpe(token)) {
        if (this.tokens_to_ids.has(t)) out.push(t);
        else if (this.byteFallback) {
          const bytes = Array.from(this.textEncoder.encode(t), (x) => `<0x${x.toString(16).toUpperCase().padStart(2, '0')}>`);
          if (bytes.every((x) => this.tokens_to_ids.has(x))) out.push(...bytes);
          else if (this.unk_token != null) out.push(this.unk_token);
        } else if (this.unk_token != null) out.push(this.unk_token);
      }
    }
    return out;
  }

  /** The pieces one word merges into. */
  private bpe(word: string): string[] {
    if (word.length === 0) return [];
    const hit = this.cache.get(word);
    if (hit !== undefined) {
      this.cache.delete(word);
      this.cache.set(word, hit);
      return hit;
    }
    const chars = Array.from(word);
    const result = chars.length > 1 ? this.merge(chars) : chars;
    if (word.length < MAX_CACHED_CHARS) {
      this.cache.set(word, result);
      if (this.cache.size > CACHE_CAPACITY) this.cache.delete(this.cache.keys().next().value!);
    }
    return result;
  }

  /**
   * Merge the characters of a word. Nodes are the characters' positions, linked left to right; a
   * merge keeps the left node (so a node's position orders equal ranks, as the library's bias does)
   * and drops the right one. The heap holds candidate pairs; a stale one (either node merged since)
   * no longer matches the nodes' symbols or adjacency and is skipped.
   */
  private merge(chars: string[]): string[] {
    const n = chars.length;
    const sym = new Int32Array(n);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    /** The text of nodes whose symbol is NO_SYMBOL (a character in no merge and not in the vocabulary). */
    const text: Array<string | undefined> = new Array(n);
    for (let i = 0; i < n; i++) {
      sym[i] = this.symbolOf(chars[i]!, false);
      if (sym[i] === NO_SYMBOL) text[i] = chars[i];
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const heap = new PairHeap();
    const consider = (l: number): void => {
      const r = next[l]!;
      if (r < 0 || sym[l] === NO_SYMBOL || sym[r] === NO_SYMBOL) return;
      const slot = this.find(sym[l]!, sym[r]!);
      if (slot >= 0) heap.push(this.rank[slot]!, l, sym[l]!, sym[r]!, r);
    };
    for (let i = 0; i + 1 < n; i++) consider(i);
    while (heap.size > 0) {
      const { l, ls, rs, r } = heap.pop();
      if (sym[l] !== ls || next[l] !== r || sym[r] !== rs) continue;
      sym[l] = this.merged[this.find(ls, rs)]!;
      const after = next[r]!;
      next[l] = after;
      if (after >= 0) prev[after] = l;
      sym[r] = NO_SYMBOL - 1; // dropped: matches no heap entry
      if (prev[l]! >= 0) consider(prev[l]!);
      consider(l);
    }
    const out: string[] = [];
    for (let i = 0; i >= 0; i = next[i]!) out.push(sym[i] === NO_SYMBOL ? text[i]! : this.pieceOf(sym[i]!));
    return out;
  }

  /** A piece's symbol: its vocabulary id, else an extra id (created while building), else NO_SYMBOL. */
  private symbolOf(piece: string, create: boolean): number {
    const id = this.tokens_to_ids.get(piece);
    // An added token can overwrite a vocabulary entry's text; then the id no longer names the piece.
    if (id !== undefined && this.vocab[id] === piece) return id;
    const extra = this.extraIds.get(piece);
    if (extra !== undefined) return extra;
    if (!create) return NO_SYMBOL;
    const e = this.firstExtra + this.extraPieces.length;
    this.extraPieces.push(piece);
    this.extraIds.set(piece, e);
    return e;
  }

  private pieceOf(symbol: number): string {
    return symbol >= this.firstExtra ? this.extraPieces[symbol - this.firstExtra]! : this.vocab[symbol]!;
  }

  private slotOf(l: number, r: number): number {
    return Math.imul(l ^ Math.imul(r, 0x9e3779b1), 0x85ebca6b) >>> 0;
  }

  private insert(l: number, r: number, rank: number, merged: number): void {
    for (let s = this.slotOf(l, r) & this.mask; ; s = (s + 1) & this.mask) {
      if (this.left[s] === NO_SYMBOL || (this.left[s] === l && this.right[s] === r)) {
        this.left[s] = l;
        this.right[s] = r;
        this.rank[s] = rank;
        this.merged[s] = merged;
        return;
      }
    }
  }

  /** The slot of the merge (l, r), or -1. */
  private find(l: number, r: number): number {
    for (let s = this.slotOf(l, r) & this.mask; ; s = (s + 1) & this.mask) {
      const k = this.left[s]!;
      if (k === NO_SYMBOL) return -1;
      if (k === l && this.right[s] === r) return s;
    }
  }
}

/**
 * The vocabulary's piece -> id lookup in place of a Map: ids in an open-addressing Int32Array keyed
 * by a hash of the piece, whose text is the vocabulary array's own string. 4 bytes a slot, at most
 * half full (1 MB outside the heap for Llama 3's 128k pieces), where the Map took 3.7 MB of heap in
 * every thread holding the tokenizer. A piece whose id holds another text (an added token took that
 * id over) stays in a small Map.
 */
class PieceIds {
  private readonly slots: Int32Array;
  private readonly mask: number;
  private readonly others = new Map<string, number>();

  constructor(
    private readonly pieces: ReadonlyArray<string | undefined>,
    ids: ReadonlyMap<string, number>,
  ) {
    const n = 2 ** Math.ceil(Math.log2(Math.max(2 * ids.size, 16)));
    this.mask = n - 1;
    this.slots = new Int32Array(n).fill(-1);
    for (const [piece, id] of ids) {
      // Only one piece can equal pieces[id], so each id takes at most one slot.
      if (pieces[id] !== piece) {
        this.others.set(piece, id);
        continue;
      }
      let s = hashPiece(piece) & this.mask;
      while (this.slots[s] !== -1) s = (s + 1) & this.mask;
      this.slots[s] = id;
    }
  }

  get(piece: string): number | undefined {
    for (let s = hashPiece(piece) & this.mask; ; s = (s + 1) & this.mask) {
      const id = this.slots[s]!;
      if (id < 0) return this.others.get(piece);
      if (this.pieces[id] === piece) return id;
    }
  }

  has(piece: string): boolean {
    return this.get(piece) !== undefined;
  }
}

/** FNV-1a over the UTF-16 code units. */
function hashPiece(piece: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < piece.length; i++) h = Math.imul(h ^ piece.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** A binary min-heap of candidate merges, ordered by rank, then by the left node's position. */
class PairHeap {
  private readonly items: Array<{ rank: number; l: number; ls: number; rs: number; r: number }> = [];

  get size(): number {
    return this.items.length;
  }

  push(rank: number, l: number, ls: number, rs: number, r: number): void {
    const a = this.items;
    a.push({ rank, l, ls, rs, r });
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }

  pop(): { rank: number; l: number; ls: number; rs: number; r: number } {
    const a = this.items;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.less(a[l]!, a[m]!)) m = l;
        if (r < a.length && this.less(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }

  private less(x: { rank: number; l: number }, y: { rank: number; l: number }): boolean {
    return x.rank < y.rank || (x.rank === y.rank && x.l < y.l);
  }
}
