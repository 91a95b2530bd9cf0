/**
 * The KV block pool's state map: one code per physical block, as the dashboard draws it. The
 * worker's BlockPool writes it (one byte per block across the thread boundary); the server packs it
 * to two bits per block for the browser. Both sides read the codes from here.
 */
export const BlockState = {
  /** No reference and no content worth keeping: the next allocation may take it. */
  free: 0,
  /** No reference, but it still holds a prefix-cache block a new request can take back. */
  cached: 1,
  /** Referenced by one sequence. */
  used: 2,
  /** Referenced by several sequences (a shared prompt prefix, n > 1 forks, beams). */
  shared: 3,
} as const;

export type BlockStateName = keyof typeof BlockState;

/** The state names in code order (index = code). */
export const BLOCK_STATE_NAMES: readonly BlockStateName[] = (Object.keys(BlockState) as BlockStateName[]).sort((a, b) => BlockState[a] - BlockState[b]);

/** How many blocks are in each state. */
export function countBlockStates(states: Uint8Array): Record<BlockStateName, number> {
  const n = [0, 0, 0, 0];
  for (let i = 0; i < states.length; i++) n[states[i]!]!++;
  return { free: n[BlockState.free]!, cached: n[BlockState.cached]!, used: n[BlockState.used]!, shared: n[BlockState.shared]! };
}

/**
 * Pack a state map four blocks to a byte (block i in bits 2·(i mod 4) and up of byte ⌊i/4⌋), as
 * base64: a 100,000-block pool is 33 kB of text per update.
 */
export function packBlockStates(states: Uint8Array): string {
  const out = new Uint8Array(Math.ceil(states.length / 4));
  for (let i = 0; i < states.length; i++) out[i >> 2]! |= (states[i]! & 3) << ((i & 3) * 2);
  return Buffer.from(out.buffer, out.byteOffset, out.byteLength).toString('base64');
}
