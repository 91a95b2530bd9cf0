/**
 * The native kernel families this CPU supports, and a runner that exercises each: tests check
 * every family gives the same (or the reference's) results, whatever the CI machine has.
 */
import { Isa, cpuBackend } from '../../src/backend/native.js';

/** The best family this CPU has. */
export const detectedIsa: Isa = cpuBackend().cpuInfo().detectedIsa;

const arm = detectedIsa === Isa.Neon || detectedIsa === Isa.NeonBf16;
const chain: Isa[] = arm ? [Isa.Scalar, Isa.Neon, Isa.NeonBf16] : [Isa.Scalar, Isa.Avx2, Isa.Avx512, Isa.Avx512Bf16, Isa.AmxBf16];
/** Every family of this architecture's chain up to the detected one (scalar first). */
export const isas: Isa[] = chain.slice(0, chain.indexOf(detectedIsa) + 1);

/** Runs fn once per supported kernel family, restoring the best one afterwards. */
export function forEachIsa(fn: (isa: Isa) => void): void {
  const nb = cpuBackend();
  try {
    for (const isa of isas) {
      nb.setIsa(isa);
      fn(isa);
    }
  } finally {
    nb.setIsa(detectedIsa);
  }
}
