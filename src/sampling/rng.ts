/**
 * Per-sequence random streams.
 *
 * Each sequence owns one `Rng`; it advances only when that sequence draws, so a request's samples
 * depend on its seed and its own history only — never on which other requests share the batch
 * (DESIGN.md, batch invariance).
 *
 * Generator: xoshiro128** (Blackman & Vigna), 128-bit state, 32-bit integer ops only (fast in JS
 * via Math.imul and >>> 0). State is initialised from the seed with splitmix32 so nearby seeds
 * (42, 43, ...) give unrelated streams.
 */
import { randomBytes } from 'node:crypto';

const TWO_POW_32 = 4294967296;

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** splitmix32 step: a well-mixed 32-bit value from a counter. */
function mix32(z: number): number {
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  /** The seed the stream started from (a random one for unseeded requests). */
  readonly seed: number;

  /**
   * @param seed any integer with |seed| <= 2^53 - 1. Its low and high 32-bit words (two's
   *   complement) both feed the state, so seeds that differ only above bit 32 still differ.
   */
  constructor(seed: number) {
    if (!Number.isInteger(seed)) throw new RangeError(`Rng seed must be an integer, got ${seed}`);
    this.seed = seed;
    const lo = seed >>> 0; // ToUint32 is the exact value mod 2^32, negatives included
    const hi = Math.floor(seed / TWO_POW_32) >>> 0;
    let c = (lo ^ Math.imul(hi, 0x9e3779b9)) >>> 0;
    const next = (): number => {
      c = (c + 0x9e3779b9) >>> 0;
      return mix32(c ^ hi);
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    // An all-zero state would be a fixed point of xoshiro.
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** A stream from a seed, or from a fresh random seed when `seed` is null. */
  static create(seed: number | null): Rng {
    return new Rng(seed ?? Rng.randomSeed());
  }

  /** A random 53-bit non-negative seed from the OS (for unseeded requests). */
  static randomSeed(): number {
    const b = randomBytes(8);
    return (b.readUInt32LE(0) & 0x1fffff) * TWO_POW_32 + b.readUInt32LE(4);
  }

  /** Next 32-bit unsigned integer. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 = (this.s2 ^ this.s0) >>> 0;
    this.s3 = (this.s3 ^ this.s1) >>> 0;
    this.s1 = (this.s1 ^ this.s2) >>> 0;
    this.s0 = (this.s0 ^ this.s3) >>> 0;
    this.s2 = (this.s2 ^ t) >>> 0;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform double in [0, 1) with 53 random bits (two 32-bit draws). */
  next(): number {
    const a = this.nextUint32() >>> 5; // 27 bits
    const b = this.nextUint32() >>> 6; // 26 bits
    return (a * 67108864 + b) / 9007199254740992;
  }

  /** An independent copy at the same position (beam search forks, tests). */
  clone(): Rng {
    const r = Object.create(Rng.prototype) as Rng;
    Object.assign(r, { seed: this.seed, s0: this.s0, s1: this.s1, s2: this.s2, s3: this.s3 });
    return r;
  }

  /** The generator state, to carry a stream across a process or thread boundary. */
  getState(): [number, number, number, number] {
    return [this.s0, this.s1, this.s2, this.s3];
  }

  setState(state: readonly [number, number, number, number]): void {
    [this.s0, this.s1, this.s2, this.s3] = state.map((x) => x >>> 0) as [number, number, number, number];
  }
}
