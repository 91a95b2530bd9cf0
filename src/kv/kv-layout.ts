/**
 * How a model's layers share the paged KV cache (vLLM's hybrid KV cache, in spirit).
 *
 * Layers are split into KV groups of equal size S: full-attention layers in groups of their own,
 * sliding-window layers in groups of their own. Each sequence holds one block table per group, and
 * every group draws its blocks from the one BlockPool: a physical block holds the K/V of S layers
 * (cache slot i of a block belongs to the i-th layer of whichever group owns the block), so the
 * native cache is created with S "layers" and all groups' blocks are interchangeable. A
 * sliding-window group frees the blocks that fall wholly before its window (they are never read
 * again), so a long sequence costs full-attention groups their whole context but windowed groups
 * only about a window each. S is the greatest common divisor of the two layer counts, so no slot
 * is wasted (Gemma 3 1B: 22 sliding + 4 full layers, S = 2: 11 + 2 groups).
 *
 * Without sliding layers (or with `windowGroups` off) there is one group of every layer: the
 * layout of a plain model, block tables exactly as before.
 */
import type { ModelConfig } from '../config/model-config.js';

export interface KvGroup {
  /** Window of the group's layers (tokens a query sees, itself included), null for full attention. */
  window: number | null;
  /** Model layers of the group, in order; layer i of the list uses cache slot i. */
  layers: number[];
}

export interface KvLayout {
  groups: KvGroup[];
  /** Layers per group: the cache slots of one physical block. */
  slots: number;
  /** Model layer → its group and cache slot. */
  layerSlot: ReadonlyArray<{ group: number; slot: number }>;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/**
 * The layout of a model. `windowGroups` false keeps every layer in one group that never frees
 * blocks (the attention still applies each layer's window): the baseline the window rule's
 * capacity gain is measured against.
 */
export function kvLayout(cfg: Pick<ModelConfig, 'numLayers' | 'layerTypes' | 'slidingWindow'>, windowGroups = true): KvLayout {
  const all = Array.from({ length: cfg.numLayers }, (_, l) => l);
  const sliding = all.filter((l) => cfg.layerTypes[l] === 'sliding_attention');
  const full = all.filter((l) => cfg.layerTypes[l] !== 'sliding_attention');
  let groups: KvGroup[];
  if (!windowGroups || cfg.slidingWindow === null || sliding.length === 0) {
    groups = [{ window: null, layers: all }];
  } else {
    const size = gcd(full.length, sliding.length);
    groups = [];
    for (let i = 0; i < full.length; i += size) groups.push({ window: null, layers: full.slice(i, i + size) });
    for (let i = 0; i < sliding.length; i += size) groups.push({ window: cfg.slidingWindow, layers: sliding.slice(i, i + size) });
  }
  const layerSlot = new Array<{ group: number; slot: number }>(cfg.numLayers);
  groups.forEach((g, gi) => g.layers.forEach((l, slot) => (layerSlot[l] = { group: gi, slot })));
  return { groups, slots: groups[0]!.layers.length, layerSlot };
}

/**
 * The first logical block a group still needs once `computed` tokens are in the cache: the next
 * query (position `computed`) sees keys from computed - window + 1 on; later ones see less.
 */
export function firstNeededBlock(window: number | null, computed: number, blockSize: number): number {
  if (window === null) return 0;
  return Math.floor(Math.max(0, computed - window + 1) / blockSize);
}

/**
 * Blocks one sequence of `tokens` tokens holds at most across all groups, prefilled in chunks of
 * at most `maxChunk` tokens: a full group holds every block; a windowed one, during a step, the
 * window before the chunk plus the chunk.
 */
export function blocksForSequence(layout: KvLayout, tokens: number, blockSize: number, maxChunk: number): number {
  const all = Math.ceil(tokens / blockSize);
  let n = 0;
  for (const g of layout.groups) n += g.window === null ? all : Math.min(all, Math.ceil((g.window - 1 + maxChunk) / blockSize) + 1);
  return n;
}

/** The longest sequence (tokens) that fits in `numBlocks` blocks alone (see blocksForSequence). */
export function maxSequenceTokens(layout: KvLayout, numBlocks: number, blockSize: number, maxChunk: number): number {
  let lo = 0;
  let hi = numBlocks * blockSize;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (blocksForSequence(layout, mid, blockSize, maxChunk) <= numBlocks) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
