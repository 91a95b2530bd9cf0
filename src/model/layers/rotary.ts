/** Rotary position embedding (Hugging Face `rotate_half` convention). */
import type { ComputeBackend } from '../../backend/backend.js';
import type { ModelConfig, RopeScaling } from '../../config/model-config.js';

/**
 * RoPE inverse frequencies, headDim/2 entries: inv_freq[i] = theta^(-2i/d), adjusted by the
 * `llama3` rule of transformers' `_compute_llama3_parameters` when configured. Computed in float64
 * so the float32 result is the correctly rounded value.
 */
export function ropeInvFreq(cfg: Pick<ModelConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>): Float32Array {
  const d = cfg.headDim;
  const half = d / 2;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) out[i] = scaleFreq(Math.pow(cfg.ropeTheta, -(2 * i) / d), cfg.ropeScaling);
  return out;
}

function scaleFreq(invFreq: number, s: RopeScaling): number {
  // `linear`: positions divided by the factor (transformers' _compute_linear_scaling_rope_parameters).
  if (s.type === 'linear') return invFreq / s.factor;
  if (s.type !== 'llama3') return invFreq;
  // Long wavelengths (low frequencies) are slowed down by `factor`, short ones kept, and the band
  // in between interpolated smoothly, so the model extrapolates beyond its original context.
  const lowFreqWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highFreqWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  const wavelen = (2 * Math.PI) / invFreq;
  if (wavelen > lowFreqWavelen) return invFreq / s.factor;
  if (wavelen < highFreqWavelen) return invFreq;
  const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
  return (1 - smooth) * (invFreq / s.factor) + smooth * invFreq;
}

/**
 * The `llama3` rule as per-frequency divisors (headDim/2 entries: 1 for kept frequencies, `factor`
 * for slowed ones, interpolated between), the form GGUF files store it in (`rope_freqs.weight`),
 * computed the way llama.cpp's converter does (float32 base frequencies).
 */
export function llama3RopeFactors(headDim: number, ropeTheta: number, s: RopeScaling): Float32Array {
  if (s.type !== 'llama3') throw new RangeError('not a llama3 rope scaling');
  const out = new Float32Array(headDim / 2);
  const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  for (let i = 0; i < headDim / 2; i++) {
    const freq = Math.fround(1 / Math.fround(ropeTheta ** Math.fround((2 * i) / headDim)));
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = s.factor;
    else {
      const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      out[i] = 1 / ((1 - smooth) / s.factor + smooth);
    }
  }
  return out;
}

/**
 * One set of rotary frequencies and the step's angle table over them ([T, headDim], cos then sin),
 * computed once per step and shared by every layer using these frequencies (a model with local
 * and global layers of different bases holds one Rotary per base).
 */
export class Rotary {
  private readonly cosSin: Float32Array;

  constructor(
    private readonly be: ComputeBackend,
    readonly invFreq: Float32Array,
    private readonly headDim: number,
    maxTokens: number,
  ) {
    this.cosSin = new Float32Array(maxTokens * headDim);
  }

  /** Fill the angle table for the step's positions. */
  prepare(positions: Int32Array, T: number): void {
    this.be.ropeTable(this.cosSin, positions, T, this.invFreq);
  }

  /** Rotate q [T, nHeads*headDim] and k [T, nKvHeads*headDim] in place. */
  apply(q: Float32Array, k: Float32Array, T: number, nHeads: number, nKvHeads: number): void {
    this.be.rope(q, k, this.cosSin, T, nHeads, nKvHeads, this.headDim);
  }
}
