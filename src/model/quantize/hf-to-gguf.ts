/**
 * A Hugging Face checkpoint (BF16/F16/F32 safetensors: Llama, Mistral, Qwen2, Qwen3, Gemma 2,
 * Gemma 3) as a standard GGUF file, as llama.cpp's `convert_hf_to_gguf.py` + `llama-quantize`
 * would write it: llama.cpp's tensor names (names.ts, shared with the reader), Llama q/k rows in
 * GGUF order, Gemma's RMSNorm weights stored as 1 + w, the `{arch}.*` hyperparameters, the
 * tokenizer, and each matrix quantized by the scheme's per-tensor rule (schemes.ts).
 */
import { readFileSync, existsSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import { GgmlType, ggmlTypeName } from '../../backend/quant.js';
import type { ModelConfig } from '../../config/model-config.js';
import { ModelLoadError } from '../../errors.js';
import { GgufValueType } from '../loader/gguf/format.js';
import { writeGguf, type GgufMetaValue, type GgufTensorToWrite } from '../loader/gguf/writer.js';
import { ggufModelConfig } from '../loader/gguf/config.js';
import { GgufFile } from '../loader/gguf/file.js';
import { hfToGgufName } from '../loader/gguf/names.js';
import { toFloat32 } from '../loader/dtype.js';
import { loadModelFiles } from '../loader/model-dir.js';
import { WeightStore } from '../loader/weights.js';
import { tokenizerMetadata } from './gguf-tokenizer.js';
import { quantizeWeightChunks, type FloatWeight } from './quantize.js';
import { llama3RopeFactors } from '../layers/rotary.js';
import { QUANT_SCHEMES, tensorType, type QuantScheme } from './schemes.js';

type GgufArch = 'llama' | 'qwen2' | 'qwen3' | 'gemma2' | 'gemma3';

/** llama.cpp's architecture name: Mistral is written as `llama`, as llama.cpp's converter does. */
function ggufArch(cfg: ModelConfig): GgufArch {
  switch (cfg.architecture) {
    case 'LlamaForCausalLM':
    case 'MistralForCausalLM':
      return 'llama';
    case 'Qwen2ForCausalLM':
      return 'qwen2';
    case 'Qwen3ForCausalLM':
      return 'qwen3';
    case 'Gemma2ForCausalLM':
      return 'gemma2';
    case 'Gemma3ForCausalLM':
      return 'gemma3';
    default:
      throw new ModelLoadError(`${cfg.architecture} cannot be written as GGUF (supported: Llama, Mistral, Qwen2, Qwen3, Gemma 2, Gemma 3)`, {
        code: 'unsupported_architecture',
      });
  }
}

const isGemma = (arch: GgufArch): boolean => arch === 'gemma2' || arch === 'gemma3';

/** llama.cpp's name of an HF tensor; null for tensors GGUF files do not store (rotary inv_freq). */
export function ggufTensorName(hf: string, arch: GgufArch = 'llama'): string | null {
  if (hf.endsWith('rotary_emb.inv_freq')) return null;
  const name = hfToGgufName(hf, arch);
  if (name === undefined) throw new ModelLoadError(`tensor "${hf}" has no GGUF name for architecture ${arch}`, { code: 'tensor_unexpected' });
  return name;
}

/**
 * The GGUF position of each HF row of a Llama q/k projection: within each head of d rows, GGUF row
 * 2j is HF row j and 2j+1 is HF row j + d/2 (llama.cpp rotates adjacent pairs, HF first/second halves).
 */
export function qkRowOrder(headDim: number): (ggufRow: number) => number {
  const half = headDim / 2;
  return (i) => {
    const h = Math.floor(i / headDim);
    const w = i % headDim;
    return h * headDim + (w & 1) * half + (w >> 1);
  };
}

/**
 * The bytes of a 1-D weight as F32, elements reordered by `order` when given; plusOne: Gemma's
 * RMSNorm weights, which HF stores as w (the norm scales by 1 + w) and llama.cpp as 1 + w.
 */
function f32Vector(t: FloatWeight, order?: (i: number) => number, plusOne = false): Uint8Array {
  const values = toFloat32(t);
  const out = order ? Float32Array.from(values, (_, i) => values[order(i)]!) : values;
  if (plusOne) for (let i = 0; i < out.length; i++) out[i] = out[i]! + 1;
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/**
 * The hyperparameters a GGUF reader infers (as llama.cpp does) that differ from the checkpoint's:
 * a Gemma whose layer pattern, local RoPE base or attention scale is not llama.cpp's fixed one
 * cannot be written faithfully.
 */
function readBackDiffers(cfg: ModelConfig, path: string): string[] {
  const got = ggufModelConfig(GgufFile.open(path)).config;
  const out: string[] = [];
  const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);
  for (const k of ['layerTypes', 'slidingWindow', 'queryPreAttnScalar', 'ropeLocalTheta', 'hiddenAct', 'attnLogitSoftcapping', 'finalLogitSoftcapping'] as const) {
    if (!same(got[k], cfg[k])) out.push(`${k}: the checkpoint has ${JSON.stringify(cfg[k])}, a GGUF reader would take ${JSON.stringify(got[k])}`);
  }
  return out;
}

export interface QuantizeModelOptions {
  /** `general.name` (default: the directory's name). */
  name?: string;
  /** Progress lines (one per tensor), e.g. to stderr. */
  onTensor?: (name: string, type: GgmlType, index: number, count: number) => void;
}

export interface QuantizeModelResult {
  tensors: Array<{ name: string; type: GgmlType; ne: number[] }>;
}

const readJson = (path: string): unknown => (existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as unknown) : undefined);

/** Write the model directory `dir` as a GGUF file of `scheme` at `outPath`. */
export function quantizeModel(dir: string, outPath: string, scheme: QuantScheme, opts: QuantizeModelOptions = {}): QuantizeModelResult {
  const files = loadModelFiles(dir);
  const cfg = files.config;
  const arch = ggufArch(cfg);
  const store = WeightStore.open(dir);
  const tokPath = join(dir, 'tokenizer.json');
  if (!existsSync(tokPath)) throw new ModelLoadError(`${dir}: missing tokenizer.json (needed for the GGUF tokenizer)`, { code: 'model_file_missing' });

  const meta: Array<[string, GgufMetaValue]> = [];
  const u32 = (v: number): GgufMetaValue => ({ type: GgufValueType.UINT32, value: v });
  const f32 = (v: number): GgufMetaValue => ({ type: GgufValueType.FLOAT32, value: v });
  const str = (v: string): GgufMetaValue => ({ type: GgufValueType.STRING, value: v });
  meta.push(['general.architecture', str(arch)], ['general.type', str('model')], ['general.name', str(opts.name ?? basename(dir))]);
  meta.push(
    [`${arch}.block_count`, u32(cfg.numLayers)],
    [`${arch}.context_length`, u32(cfg.maxPositionEmbeddings)],
    [`${arch}.embedding_length`, u32(cfg.hiddenSize)],
    [`${arch}.feed_forward_length`, u32(cfg.intermediateSize)],
    [`${arch}.attention.head_count`, u32(cfg.numHeads)],
    [`${arch}.attention.head_count_kv`, u32(cfg.numKvHeads)],
    [`${arch}.rope.freq_base`, f32(cfg.ropeTheta)],
    [`${arch}.attention.layer_norm_rms_epsilon`, f32(cfg.rmsNormEps)],
    [`${arch}.vocab_size`, u32(cfg.vocabSize)],
    [`${arch}.rope.dimension_count`, u32(cfg.headDim)],
  );
  if (cfg.ropeScaling.type === 'linear') {
    meta.push([`${arch}.rope.scaling.type`, str('linear')], [`${arch}.rope.scaling.factor`, f32(cfg.ropeScaling.factor)]);
  }
  if (cfg.headDim * cfg.numHeads !== cfg.hiddenSize || isGemma(arch)) {
    meta.push([`${arch}.attention.key_length`, u32(cfg.headDim)], [`${arch}.attention.value_length`, u32(cfg.headDim)]);
  }
  if (isGemma(arch)) {
    // What llama.cpp leaves implicit (the layer pattern, the local RoPE base, the attention scale,
    // the activation) is checked after writing: readBackDiffers.
    if (cfg.slidingWindow !== null) meta.push([`${arch}.attention.sliding_window`, u32(cfg.slidingWindow)]);
    if (cfg.attnLogitSoftcapping !== null) meta.push([`${arch}.attn_logit_softcapping`, f32(cfg.attnLogitSoftcapping)]);
    if (cfg.finalLogitSoftcapping !== null) meta.push([`${arch}.final_logit_softcapping`, f32(cfg.finalLogitSoftcapping)]);
  } else if (cfg.slidingWindow !== null) {
    throw new ModelLoadError(`${dir}: a sliding window on ${cfg.architecture} cannot be written as GGUF`, { code: 'unsupported_architecture' });
  }
  meta.push(['general.file_type', u32(QUANT_SCHEMES[scheme].fileType)], ['general.quantization_version', u32(2)]);
  meta.push(
    ...tokenizerMetadata({
      tokenizerJson: readJson(tokPath),
      tokenizerConfig: readJson(join(dir, 'tokenizer_config.json')),
      vocabSize: cfg.vocabSize,
      bosTokenId: files.generationConfig.bosTokenId,
      eosTokenId: files.generationConfig.eosTokenIds[0] ?? null,
      source: dir,
    }),
  );

  // Tensors in llama.cpp's converter order: rope factors, embeddings, blocks, final norm, head.
  const hfNames = store.names().filter((n) => ggufTensorName(n, arch) !== null && !(cfg.tieWordEmbeddings && n === 'lm_head.weight'));
  const layerOf = (n: string) => Number(/^model\.layers\.(\d+)\./.exec(n)?.[1] ?? -1);
  const rank = (n: string) => (n === 'model.embed_tokens.weight' ? -2 : n === 'model.norm.weight' ? 1e9 : n === 'lm_head.weight' ? 1e9 + 1 : layerOf(n));
  hfNames.sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
  const hasOutput = hfNames.includes('lm_head.weight');

  const tensors: GgufTensorToWrite[] = [];
  if (cfg.ropeScaling.type === 'llama3') {
    const factors = llama3RopeFactors(cfg.headDim, cfg.ropeTheta, cfg.ropeScaling);
    tensors.push({ name: 'rope_freqs.weight', ne: [factors.length], type: GgmlType.F32, data: () => [new Uint8Array(factors.buffer)] });
  }
  const qkDim = cfg.headDim;
  for (const hf of hfNames) {
    const name = ggufTensorName(hf, arch)!;
    const shape = store.shapeOf(hf)!;
    if (shape.length < 1 || shape.length > 2) throw new ModelLoadError(`${dir}: tensor "${hf}" has ${shape.length} dimensions`, { code: 'tensor_shape_mismatch' });
    const ne = [...shape].reverse();
    const permute = arch === 'llama' && /\.attn_[qk]\.(weight|bias)$/.test(name);
    if (permute && shape[0]! % qkDim !== 0) throw new ModelLoadError(`${dir}: "${hf}" has ${shape[0]} rows, not whole heads of ${qkDim}`, { code: 'tensor_shape_mismatch' });
    const order = permute ? qkRowOrder(qkDim) : undefined;
    const type = tensorType(scheme, { name, ne, numLayers: cfg.numLayers, hasOutput });
    const load = () => store.get(hf, shape);
    tensors.push({
      name,
      ne,
      type,
      data: () =>
        shape.length === 1
          ? [f32Vector(load(), order, isGemma(arch) && name.endsWith('norm.weight'))]
          : quantizeWeightChunks(load(), type, order, `${hf} → ${name} (${ggmlTypeName(type)})`),
    });
  }
  const count = tensors.length;
  const reported = tensors.map((t, i) => ({
    ...t,
    data: () => {
      opts.onTensor?.(t.name, t.type, i, count);
      return t.data();
    },
  }));
  writeGguf(outPath, meta, reported);
  const differs = isGemma(arch) ? readBackDiffers(cfg, outPath) : [];
  if (differs.length > 0) {
    rmSync(outPath, { force: true });
    throw new ModelLoadError(`${dir}: cannot be written as GGUF faithfully (llama.cpp's ${arch} files leave these implicit): ${differs.join('; ')}`, {
      code: 'unsupported_architecture',
    });
  }
  return { tensors: tensors.map((t) => ({ name: t.name, type: t.type, ne: t.ne })) };
}
