/**
 * GGUF tensor names ↔ Hugging Face tensor names, and the q/k row permutation between the two
 * orders. Shared by the GGUF reader (GGUF → HF) and the writer (HF → GGUF).
 *
 * Per-layer names are `blk.{i}.{suffix}` in GGUF and `model.layers.{i}.{hf}` in HF. Architectures
 * with extra norms (qwen3's q_norm/k_norm, gemma2/gemma3's post-attention / post-feed-forward
 * norms) only add rows to LAYER_NAMES; which names a model needs is the model's business.
 */

/** Whole-model tensors. */
const GLOBAL_NAMES: ReadonlyArray<readonly [gguf: string, hf: string]> = [
  ['token_embd.weight', 'model.embed_tokens.weight'],
  ['output_norm.weight', 'model.norm.weight'],
  ['output.weight', 'lm_head.weight'],
];

/** Per-layer tensors: GGUF suffix after `blk.{i}.`, HF suffix after `model.layers.{i}.`. */
const LAYER_NAMES: ReadonlyArray<readonly [gguf: string, hf: string]> = [
  ['attn_norm.weight', 'input_layernorm.weight'],
  ['attn_q.weight', 'self_attn.q_proj.weight'],
  ['attn_k.weight', 'self_attn.k_proj.weight'],
  ['attn_v.weight', 'self_attn.v_proj.weight'],
  ['attn_output.weight', 'self_attn.o_proj.weight'],
  ['attn_q.bias', 'self_attn.q_proj.bias'],
  ['attn_k.bias', 'self_attn.k_proj.bias'],
  ['attn_v.bias', 'self_attn.v_proj.bias'],
  ['ffn_norm.weight', 'post_attention_layernorm.weight'],
  ['ffn_gate.weight', 'mlp.gate_proj.weight'],
  ['ffn_up.weight', 'mlp.up_proj.weight'],
  ['ffn_down.weight', 'mlp.down_proj.weight'],
  // qwen3 / gemma3: per-head RMSNorm on q and k.
  ['attn_q_norm.weight', 'self_attn.q_norm.weight'],
  ['attn_k_norm.weight', 'self_attn.k_norm.weight'],
  // gemma2 / gemma3 sandwich norms. NOTE: in gemma2/3 HF `post_attention_layernorm` is the norm
  // after attention and `pre_feedforward_layernorm` the one before the MLP, so for those
  // architectures the ffn_norm row above must map to pre_feedforward_layernorm; add that
  // per-architecture override when gemma is wired (see ggufToHfName's `arch` parameter).
  ['post_attention_norm.weight', 'post_attention_layernorm.weight'],
  ['post_ffw_norm.weight', 'post_feedforward_layernorm.weight'],
];

/** Architectures whose GGUF stores q/k rows in the interleaved (GPT-J, "NORM" rope) order. */
const PERMUTED_QK_ARCHS: ReadonlySet<string> = new Set(['llama', 'mistral']);

/** Per-architecture overrides of LAYER_NAMES (GGUF suffix → HF suffix). */
const ARCH_LAYER_OVERRIDES: Readonly<Record<string, ReadonlyArray<readonly [string, string]>>> = {
  gemma2: [['ffn_norm.weight', 'pre_feedforward_layernorm.weight']],
  gemma3: [['ffn_norm.weight', 'pre_feedforward_layernorm.weight']],
};

function layerTable(arch: string): Array<readonly [string, string]> {
  const overrides = ARCH_LAYER_OVERRIDES[arch] ?? [];
  const overridden = new Set(overrides.map(([g]) => g));
  const taken = new Set(overrides.map(([, h]) => h));
  return [...overrides, ...LAYER_NAMES.filter(([g, h]) => !overridden.has(g) && !taken.has(h))];
}

const LAYER_RE_GGUF = /^blk\.(\d+)\.(.+)$/;
const LAYER_RE_HF = /^model\.layers\.(\d+)\.(.+)$/;

/** The HF name of a GGUF tensor, or undefined when the name is not one we know. */
export function ggufToHfName(gguf: string, arch = 'llama'): string | undefined {
  for (const [g, h] of GLOBAL_NAMES) if (g === gguf) return h;
  const m = LAYER_RE_GGUF.exec(gguf);
  if (!m) return undefined;
  const row = layerTable(arch).find(([g]) => g === m[2]);
  return row ? `model.layers.${m[1]}.${row[1]}` : undefined;
}

/** The GGUF name of an HF tensor, or undefined when the name is not one we know. */
export function hfToGgufName(hf: string, arch = 'llama'): string | undefined {
  for (const [g, h] of GLOBAL_NAMES) if (h === hf) return g;
  const m = LAYER_RE_HF.exec(hf);
  if (!m) return undefined;
  const row = layerTable(arch).find(([, h]) => h === m[2]);
  return row ? `blk.${m[1]}.${row[0]}` : undefined;
}

/**
 * Whether this GGUF tensor's rows are in the interleaved rotary order: llama-architecture files
 * (llama.cpp's converter permutes q_proj/k_proj for its "NORM" rope); qwen2/qwen3/gemma use the
 * NEOX rope and keep HF order. Returns the head count to permute with ('q' or 'kv'), or null.
 */
export function qkPermutation(gguf: string, arch: string): 'q' | 'kv' | null {
  if (!PERMUTED_QK_ARCHS.has(arch)) return null;
  const m = LAYER_RE_GGUF.exec(gguf);
  if (!m) return null;
  if (m[2] === 'attn_q.weight' || m[2] === 'attn_q.bias') return 'q';
  if (m[2] === 'attn_k.weight' || m[2] === 'attn_k.bias') return 'kv';
  return null;
}

function checkPermuteArgs(src: Uint8Array, rowBytes: number, nHeads: number): number {
  if (!Number.isInteger(rowBytes) || rowBytes <= 0 || src.length % rowBytes !== 0) {
    throw new RangeError(`q/k permutation: ${src.length} bytes is not whole rows of ${rowBytes} bytes`);
  }
  const rows = src.length / rowBytes;
  if (!Number.isInteger(nHeads) || nHeads <= 0 || rows % nHeads !== 0 || (rows / nHeads) % 2 !== 0) {
    throw new RangeError(`q/k permutation: ${rows} rows do not split into ${nHeads} heads of an even size`);
  }
  return rows / nHeads;
}

/**
 * GGUF → HF row order. Within each head of d rows, GGUF row 2j is HF row j and GGUF row 2j+1 is
 * HF row j + d/2. Rows are opaque byte strings of `rowBytes` (a float row or a row of quant
 * blocks: quantization is row by row, so the permutation commutes with it). Returns a new buffer.
 */
export function unpermuteQkRows(src: Uint8Array, rowBytes: number, nHeads: number): Uint8Array {
  const d = checkPermuteArgs(src, rowBytes, nHeads);
  const out = new Uint8Array(src.length);
  const half = d / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let j = 0; j < half; j++) {
      const base = h * d;
      out.set(src.subarray((base + 2 * j) * rowBytes, (base + 2 * j + 1) * rowBytes), (base + j) * rowBytes);
      out.set(src.subarray((base + 2 * j + 1) * rowBytes, (base + 2 * j + 2) * rowBytes), (base + j + half) * rowBytes);
    }
  }
  return out;
}

/** HF → GGUF row order (the inverse of unpermuteQkRows). Returns a new buffer. */
export function permuteQkRows(src: Uint8Array, rowBytes: number, nHeads: number): Uint8Array {
  const d = checkPermuteArgs(src, rowBytes, nHeads);
  const out = new Uint8Array(src.length);
  const half = d / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let j = 0; j < half; j++) {
      const base = h * d;
      out.set(src.subarray((base + j) * rowBytes, (base + j + 1) * rowBytes), (base + 2 * j) * rowBytes);
      out.set(src.subarray((base + j + half) * rowBytes, (base + j + half + 1) * rowBytes), (base + 2 * j + 1) * rowBytes);
    }
  }
  return out;
}
