/**
 * Logits processors: the stages that rewrite a row of logits in place before a token is chosen,
 * greedy or random alike, in vLLM's order:
 *
 *   grammar mask (structured outputs: the ids the row's grammar allows next)
 *   → penalties (repetition over prompt + output, frequency and presence over output)
 *   → allowed_token_ids → logit_bias
 *   → min_tokens (EOS and stop ids suppressed while the output is shorter than min_tokens)
 *
 * Each stage has a cheap `appliesTo(row)` test on the row's own parameters and state. A row for
 * which no stage applies is neither processed nor copied (its raw logits are its processed
 * logits), which is what lets plain rows be drawn together natively.
 *
 * Adding a stage: implement `LogitsProcessor`, give the row what the stage needs (a field on
 * `SamplerRow`, null when the stage does not apply so `appliesTo` is one comparison, as the grammar
 * stage's bitmask), and insert the stage at its place in `logitsProcessors()`. The grammar stage
 * calls `maskByBitmask` with the step's bitmask (32 tokens per 32-bit word, bit j of word i = token
 * 32·i + j: xgrammar's layout), which skips all-ones words, so a permissive mask costs a word test
 * per 32 tokens. Masking commutes with the other stages (they keep -inf at -inf), so it goes first,
 * as vLLM applies it.
 */
import type { SamplerRow } from './sampler.js';

export interface LogitsProcessor {
  /** For messages and tests. */
  readonly name: string;
  /** Whether the stage changes this row; false → skipped. Cheap, and a function of the row only. */
  appliesTo(row: SamplerRow): boolean;
  /** Rewrite logits[off, off + vocabSize) in place. Called only when `appliesTo(row)`. */
  apply(logits: Float32Array, off: number, row: SamplerRow): void;
}

/** The stages, in order, for a vocabulary of V ids (stages own scratch sized V). */
export function logitsProcessors(V: number): LogitsProcessor[] {
  return [grammarMask(V), penalties(V), allowedTokenIds(V), logitBias(V), minTokens(V)];
}

/** Whether any stage applies to the row. */
export function anyApplies(stages: readonly LogitsProcessor[], row: SamplerRow): boolean {
  for (const s of stages) if (s.appliesTo(row)) return true;
  return false;
}

/** Run the stages that apply to the row, in order. */
export function applyProcessors(stages: readonly LogitsProcessor[], logits: Float32Array, off: number, row: SamplerRow): void {
  for (const s of stages) if (s.appliesTo(row)) s.apply(logits, off, row);
}

/** Token bitmask over V ids: bit (id & 31) of word (id >> 5) set = the id is allowed. Ids outside [0, V) are ignored. */
export function tokenBitmask(ids: Iterable<number>, V: number): Uint32Array {
  const mask = new Uint32Array((V + 31) >>> 5);
  for (const id of ids) if (id >= 0 && id < V) mask[id >>> 5]! |= 1 << (id & 31);
  return mask;
}

/** Values of allowed ids inside a masked run, kept while the run is filled (grown as needed). */
let keepIds = new Int32Array(256);
let keepVals = new Float32Array(256);

/**
 * Set logits[off + id] to -inf for every id in [0, V) whose bit in `mask` is clear. All-ones words
 * are skipped; a lone partial word has its clear bits written one by one; a longer run of words
 * that are not all ones is filled at once (natively) after stashing its allowed values. So a sparse
 * mask costs about one fill plus its allowed ids, a dense one a word test per 32 ids.
 */
export function maskByBitmask(logits: Float32Array, off: number, V: number, mask: Uint32Array): void {
  const words = (V + 31) >>> 5;
  if (mask.length < words) throw new RangeError(`token bitmask has ${mask.length} words, expected ${words} for ${V} ids`);
  let w = 0;
  while (w < words) {
    if (fullWord(mask, w, V)) {
      w++;
    } else if (w + 1 >= words || fullWord(mask, w + 1, V)) {
      for (let z = ~mask[w]!; z !== 0; z &= z - 1) {
        const id = (w << 5) + 31 - Math.clz32(z & -z);
        if (id >= V) break; // ids rise with the bit
        logits[off + id] = -Infinity;
      }
      w++;
    } else {
      const start = w;
      let nKeep = 0;
      for (; w < words && !fullWord(mask, w, V); w++) {
        for (let m = mask[w]! | 0; m !== 0; m &= m - 1) {
          const id = (w << 5) + 31 - Math.clz32(m & -m);
          if (id >= V) break;
          if (nKeep === keepIds.length) growKeep();
          keepIds[nKeep] = id;
          keepVals[nKeep++] = logits[off + id]!;
        }
      }
      logits.fill(-Infinity, off + (start << 5), off + Math.min(w << 5, V));
      for (let t = 0; t < nKeep; t++) logits[off + keepIds[t]!] = keepVals[t]!;
    }
  }
}

/** Whether every id of word w is allowed (the last word counts only its ids below V). */
function fullWord(mask: Uint32Array, w: number, V: number): boolean {
  return mask[w] === 0xffffffff && (w << 5) + 32 <= V;
}

function growKeep(): void {
  const ids = new Int32Array(keepIds.length * 2);
  const vals = new Float32Array(keepVals.length * 2);
  ids.set(keepIds);
  vals.set(keepVals);
  keepIds = ids;
  keepVals = vals;
}

// Stages are plain objects of one shape ({ name, appliesTo, apply }), built by the functions below
// over their own scratch: the per-row `appliesTo` calls then load from one hidden class, which
// keeps the check cheap for the rows that skip every stage.

/** Structured outputs: ids the row's grammar does not allow next become -inf. */
function grammarMask(V: number): LogitsProcessor {
  return {
    name: 'grammar',
    appliesTo: (row) => row.grammarMask !== null,
    apply: (L, off, row) => maskByBitmask(L, off, V, row.grammarMask!),
  };
}

/** vLLM/HF rule: seen logits > 0 are divided by the penalty, <= 0 multiplied; then OpenAI's frequency/presence. */
function penalties(V: number): LogitsProcessor {
  // Output-token counts and prompt marks; all zero between rows.
  const counts = new Int32Array(V);
  const seen = new Uint8Array(V);
  const touched = new Int32Array(V);
  return {
    name: 'penalties',
    appliesTo(row) {
      const p = row.params;
      return p.repetitionPenalty !== 1 || p.frequencyPenalty !== 0 || p.presencePenalty !== 0;
    },
    apply(L, off, row) {
      const { repetitionPenalty: rep, frequencyPenalty: freq, presencePenalty: pres } = row.params;
      let nTouched = 0;
      for (const id of row.outputTokenIds) {
        if (id < 0 || id >= V) continue;
        if (counts[id] === 0 && seen[id] === 0) touched[nTouched++] = id;
        counts[id]!++;
      }
      if (rep !== 1) {
        for (const id of row.promptTokenIds) {
          if (id < 0 || id >= V) continue;
          if (counts[id] === 0 && seen[id] === 0) touched[nTouched++] = id;
          seen[id] = 1;
        }
      }
      for (let t = 0; t < nTouched; t++) {
        const id = touched[t]!;
        const c = counts[id]!;
        let x = L[off + id]!;
        if (rep !== 1) x = x > 0 ? x / rep : x * rep;
        if (c > 0) x -= freq * c + pres;
        L[off + id] = x;
        counts[id] = 0;
        seen[id] = 0;
      }
    },
  };
}

/**
 * Every id outside allowed_token_ids becomes -inf. The list is short next to the vocabulary, so
 * stashing its values, filling the row and restoring them beats a bitmask scan over the row.
 */
function allowedTokenIds(V: number): LogitsProcessor {
  const keep = new Float64Array(V);
  return {
    name: 'allowed_token_ids',
    appliesTo: (row) => row.params.allowedTokenIds !== null,
    apply(L, off, row) {
      const allowed = row.params.allowedTokenIds!;
      let n = 0;
      for (const id of allowed) if (id >= 0 && id < V) keep[n++] = L[off + id]!;
      L.fill(-Infinity, off, off + V);
      n = 0;
      for (const id of allowed) if (id >= 0 && id < V) L[off + id] = keep[n++]!;
    },
  };
}

function logitBias(V: number): LogitsProcessor {
  return {
    name: 'logit_bias',
    appliesTo: (row) => row.params.logitBias !== null,
    apply(L, off, row) {
      for (const [id, b] of row.params.logitBias!) if (id >= 0 && id < V) L[off + id] = L[off + id]! + b;
    },
  };
}

/** EOS and stop token ids are -inf while the output is shorter than min_tokens. */
function minTokens(V: number): LogitsProcessor {
  return {
    name: 'min_tokens',
    appliesTo(row) {
      const p = row.params;
      return row.outputTokenIds.length < p.minTokens && (row.eosTokenIds.length > 0 || p.stopTokenIds.length > 0);
    },
    apply(L, off, row) {
      for (const id of row.eosTokenIds) if (id >= 0 && id < V) L[off + id] = -Infinity;
      for (const id of row.params.stopTokenIds) if (id >= 0 && id < V) L[off + id] = -Infinity;
    },
  };
}
