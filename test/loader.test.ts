import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DType } from '../src/backend/backend.js';
import { parseGenerationConfig, parseModelConfig, type ModelConfig } from '../src/config/model-config.js';
import { ModelLoadError } from '../src/errors.js';
import { openModelPackage } from '../src/model/loader/package.js';
import { tensorPlan } from '../src/model/fixture/weights-gen.js';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, toFloat32 } from '../src/model/loader/dtype.js';
import { loadModelFiles } from '../src/model/loader/model-dir.js';
import { demoModelDir, resolveModel } from '../src/model/loader/resolve.js';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../src/model/loader/safetensors.js';
import { WeightStore } from '../src/model/loader/weights.js';
import { ropeInvFreq } from '../src/model/layers/rotary.js';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const fixturesEnv = process.env['PAGEWISE_FIXTURES'];
const fixturesDir = resolve(repoRoot, fixturesEnv ?? '../shared/fixtures');
// An explicitly configured fixtures folder must exist (tests fail); the default one may be absent (tests skip).
const fixturesSkip = !fixturesEnv && !existsSync(fixturesDir) ? `no fixtures at ${fixturesDir} (set PAGEWISE_FIXTURES)` : false;
function fixture(name: string): string {
  const dir = join(fixturesDir, name);
  assert.ok(existsSync(dir), `fixture directory ${dir} is missing (PAGEWISE_FIXTURES=${fixturesEnv ?? ''})`);
  return dir;
}

const scratch = mkdtempSync(join(tmpdir(), 'pagewise-loader-'));
after(() => rmSync(scratch, { recursive: true, force: true }));
let scratchCount = 0;
function tempDir(): string {
  const d = join(scratch, String(scratchCount++));
  mkdirSync(d, { recursive: true });
  return d;
}

/** Assert `fn` throws a ModelLoadError whose message contains every fragment. */
function throwsLoad(fn: () => unknown, ...fragments: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ModelLoadError, `expected ModelLoadError, got ${String(e)}`);
    for (const f of fragments) assert.ok(e.message.includes(f), `message "${e.message}" lacks "${f}"`);
    return true;
  });
}
async function rejectsLoad(p: Promise<unknown>, ...fragments: string[]): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof ModelLoadError, `expected ModelLoadError, got ${String(e)}`);
    for (const f of fragments) assert.ok(e.message.includes(f), `message "${e.message}" lacks "${f}"`);
    return true;
  });
}

/** Independent reading of a safetensors file: header JSON and the raw bytes of one tensor. */
function rawTensorBytes(path: string, name: string): { dtype: string; bytes: Buffer } {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const e = header[name]!;
  return { dtype: e.dtype, bytes: buf.subarray(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1]) };
}

/** BF16 / F16 decoded by the textbook formulas, independent of src/model/loader/dtype.ts. */
function manualBf16(lo: number, hi: number): number {
  const b = Buffer.alloc(4);
  b[2] = lo;
  b[3] = hi;
  return b.readFloatLE(0);
}
function manualF16(lo: number, hi: number): number {
  const bits = lo | (hi << 8);
  const s = bits >> 15 ? -1 : 1;
  const e = (bits >> 10) & 31;
  const m = bits & 1023;
  return e === 0 ? s * 2 ** -14 * (m / 1024) : s * 2 ** (e - 15) * (1 + m / 1024);
}

describe('model config', () => {
  const base = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: 64,
    intermediate_size: 128,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    vocab_size: 100,
  };

  test('defaults follow transformers for omitted keys', () => {
    const c = parseModelConfig(base, 'x/config.json');
    assert.equal(c.headDim, 16);
    assert.equal(c.maxPositionEmbeddings, 2048);
    assert.equal(c.rmsNormEps, 1e-6);
    assert.equal(c.ropeTheta, 10000);
    assert.deepEqual(c.ropeScaling, { type: 'default' });
    assert.equal(c.tieWordEmbeddings, false);
    assert.equal(c.attentionBias, false);
    assert.equal(c.torchDtype, null);
    assert.equal(c.slidingWindow, null);
    assert.equal(c.bosTokenId, null);
    assert.deepEqual(c.eosTokenIds, []);
    assert.equal(parseModelConfig({ ...base, num_key_value_heads: undefined }, 's').numKvHeads, 4);
  });

  test('explicit head_dim, eos list, llama attention_bias, v5 dtype key', () => {
    const c = parseModelConfig({ ...base, head_dim: 32, eos_token_id: [7, 9, 7], bos_token_id: 3, attention_bias: true, dtype: 'bfloat16' }, 's');
    assert.equal(c.headDim, 32);
    assert.deepEqual(c.eosTokenIds, [7, 9]);
    assert.equal(c.bosTokenId, 3);
    assert.equal(c.attentionBias, true);
    assert.equal(c.torchDtype, 'bfloat16');
  });

  test('Qwen2 always has q/k/v bias and a window only with use_sliding_window', () => {
    const q = { ...base, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', sliding_window: 4096 };
    assert.equal(parseModelConfig(q, 's').attentionBias, true);
    assert.equal(parseModelConfig({ ...q, use_sliding_window: false }, 's').slidingWindow, null);
    // The window applies to layers from max_window_layers (default 28) on: none of these 2 layers.
    assert.equal(parseModelConfig({ ...q, use_sliding_window: true }, 's').slidingWindow, null);
    const w = parseModelConfig({ ...q, use_sliding_window: true, max_window_layers: 1 }, 's');
    assert.equal(w.slidingWindow, 4096);
    assert.deepEqual(w.layerTypes, ['full_attention', 'sliding_attention']);
  });

  test('Qwen3: explicit head_dim, q/k/v/o bias from attention_bias, opt-in window, layer_types', () => {
    const q = { ...base, architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', head_dim: 32 };
    const c = parseModelConfig(q, 's');
    assert.equal(c.headDim, 32);
    assert.equal(c.attentionBias, false);
    assert.equal(c.maxPositionEmbeddings, 32768);
    assert.equal(c.hiddenAct, 'silu');
    assert.deepEqual(c.layerTypes, ['full_attention', 'full_attention']);
    assert.equal(c.queryPreAttnScalar, 32);
    const lt = parseModelConfig({ ...q, use_sliding_window: true, sliding_window: 8, layer_types: ['sliding_attention', 'full_attention'] }, 's');
    assert.deepEqual(lt.layerTypes, ['sliding_attention', 'full_attention']);
    assert.equal(lt.slidingWindow, 8);
    throwsLoad(() => parseModelConfig({ ...q, use_sliding_window: true, layer_types: ['sliding_attention'] }, '/m/config.json'), 'layer_types');
  });

  test('Gemma 2: tanh GELU, scale, soft-caps (defaults, explicit, null), alternating layers, tied head', () => {
    const g = { ...base, architectures: ['Gemma2ForCausalLM'], model_type: 'gemma2', num_hidden_layers: 4 };
    const c = parseModelConfig(g, 's');
    assert.equal(c.headDim, 256);
    assert.equal(c.hiddenAct, 'gelu_pytorch_tanh');
    assert.equal(c.queryPreAttnScalar, 256);
    assert.equal(c.attnLogitSoftcapping, 50);
    assert.equal(c.finalLogitSoftcapping, 30);
    assert.equal(c.slidingWindow, 4096);
    assert.equal(c.tieWordEmbeddings, true);
    assert.equal(c.ropeLocalTheta, null);
    assert.deepEqual(c.layerTypes, ['sliding_attention', 'full_attention', 'sliding_attention', 'full_attention']);
    const d = parseModelConfig({ ...g, head_dim: 16, query_pre_attn_scalar: 16, attn_logit_softcapping: null, final_logit_softcapping: 2, sliding_window: 8 }, 's');
    assert.equal(d.attnLogitSoftcapping, null);
    assert.equal(d.finalLogitSoftcapping, 2);
    assert.equal(d.queryPreAttnScalar, 16);
    assert.equal(d.slidingWindow, 8);
    throwsLoad(() => parseModelConfig({ ...g, hidden_activation: 'gelu' }, '/m/config.json'), 'hidden_activation', 'gelu');
  });

  test('Gemma 3: 5:1 pattern from sliding_window_pattern, local RoPE base, linear rope scaling', () => {
    const g = { ...base, architectures: ['Gemma3ForCausalLM'], model_type: 'gemma3_text', num_hidden_layers: 7, head_dim: 16 };
    const c = parseModelConfig(g, 's');
    assert.deepEqual(
      c.layerTypes.map((t) => t[0]),
      ['s', 's', 's', 's', 's', 'f', 's'],
    );
    assert.equal(c.ropeTheta, 1_000_000);
    assert.equal(c.ropeLocalTheta, 10000);
    assert.equal(c.attnLogitSoftcapping, null);
    assert.equal(c.finalLogitSoftcapping, null);
    const d = parseModelConfig({ ...g, sliding_window_pattern: 2, rope_local_base_freq: 500, rope_scaling: { rope_type: 'linear', factor: 8 } }, 's');
    assert.deepEqual(d.layerTypes.map((t) => t[0]), ['s', 'f', 's', 'f', 's', 'f', 's']);
    assert.equal(d.ropeLocalTheta, 500);
    assert.deepEqual(d.ropeScaling, { type: 'linear', factor: 8 });
    assert.equal(parseModelConfig({ ...g, sliding_window: null }, 's').layerTypes.every((t) => t === 'full_attention'), true);
  });

  test('Mistral sliding_window: value, explicit null, transformers default', () => {
    const m = { ...base, architectures: ['MistralForCausalLM'], model_type: 'mistral' };
    assert.equal(parseModelConfig({ ...m, sliding_window: 4096 }, 's').slidingWindow, 4096);
    assert.equal(parseModelConfig({ ...m, sliding_window: null }, 's').slidingWindow, null);
    assert.equal(parseModelConfig(m, 's').slidingWindow, 4096);
    assert.equal(parseModelConfig(m, 's').attentionBias, false);
  });

  test('llama3 rope_scaling and the transformers v5 rope_parameters form', () => {
    const scaling = { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
    const expected = { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };
    assert.deepEqual(parseModelConfig({ ...base, rope_theta: 500000, rope_scaling: scaling }, 's').ropeScaling, expected);
    const v5 = parseModelConfig({ ...base, rope_parameters: { ...scaling, rope_theta: 500000 } }, 's');
    assert.deepEqual(v5.ropeScaling, expected);
    assert.equal(v5.ropeTheta, 500000);
    assert.deepEqual(parseModelConfig({ ...base, rope_scaling: { type: 'default' } }, 's').ropeScaling, { type: 'default' });
  });

  test('errors name the file and the key', () => {
    const { hidden_size: _h, ...noHidden } = base;
    throwsLoad(() => parseModelConfig(noHidden, '/m/config.json'), '/m/config.json', 'hidden_size', 'missing');
    throwsLoad(() => parseModelConfig({ ...base, num_hidden_layers: '2' }, '/m/config.json'), '/m/config.json', 'num_hidden_layers');
    throwsLoad(() => parseModelConfig({ ...base, vocab_size: 10.5 }, '/m/config.json'), 'vocab_size');
    throwsLoad(() => parseModelConfig({ ...base, num_key_value_heads: 3 }, '/m/config.json'), 'num_key_value_heads');
    throwsLoad(() => parseModelConfig({ ...base, eos_token_id: 'x' }, '/m/config.json'), 'eos_token_id');
    throwsLoad(() => parseModelConfig({ ...base, rope_scaling: { rope_type: 'yarn', factor: 4 } }, '/m/config.json'), '/m/config.json', 'yarn', 'rope_scaling');
    throwsLoad(() => parseModelConfig({ ...base, rope_scaling: { rope_type: 'llama3', factor: 8 } }, '/m/config.json'), 'low_freq_factor');
    throwsLoad(() => parseModelConfig({ ...base, torch_dtype: 'float64' }, '/m/config.json'), 'torch_dtype', 'float64');
    throwsLoad(() => parseModelConfig([], '/m/config.json'), '/m/config.json');
    throwsLoad(() => parseModelConfig({ ...base, hidden_act: 'gelu' }, '/m/config.json'), 'hidden_act', 'gelu');
    throwsLoad(() => parseModelConfig({ ...base, mlp_bias: true }, '/m/config.json'), 'mlp_bias');
  });

  test('unsupported architecture lists the supported ones', () => {
    throwsLoad(
      () => parseModelConfig({ ...base, architectures: ['GPT2LMHeadModel'] }, '/m/config.json'),
      '/m/config.json',
      'GPT2LMHeadModel',
      'LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM',
    );
    throwsLoad(() => parseModelConfig({ ...base, architectures: undefined }, '/m/config.json'), 'architectures');
  });

  test('generation config: eos int or list, sampling defaults, invalid values', () => {
    assert.deepEqual(parseGenerationConfig({ eos_token_id: 2, bos_token_id: 1 }, 's'), { eosTokenIds: [2], bosTokenId: 1 });
    assert.deepEqual(
      parseGenerationConfig(
        { eos_token_id: [2, 5], do_sample: true, temperature: 0.7, top_p: 0.8, top_k: 20, repetition_penalty: 1.1, max_new_tokens: 64, transformers_version: '4' },
        's',
      ),
      { eosTokenIds: [2, 5], bosTokenId: null, doSample: true, temperature: 0.7, topP: 0.8, topK: 20, repetitionPenalty: 1.1, maxNewTokens: 64 },
    );
    throwsLoad(() => parseGenerationConfig({ eos_token_id: [2, -1] }, '/m/generation_config.json'), '/m/generation_config.json', 'eos_token_id');
    throwsLoad(() => parseGenerationConfig({ top_p: 2 }, '/m/generation_config.json'), 'top_p');
  });
});

describe('ropeInvFreq', () => {
  const cfg = (over: Partial<ModelConfig>): ModelConfig => ({ ...parseModelConfig({ architectures: ['LlamaForCausalLM'], hidden_size: 8, intermediate_size: 8, num_hidden_layers: 1, num_attention_heads: 1, vocab_size: 8 }, 's'), ...over });

  test('default: theta^(-2i/d)', () => {
    const f = ropeInvFreq(cfg({ headDim: 8, ropeTheta: 10000 }));
    assert.ok(f instanceof Float32Array);
    assert.deepEqual(Array.from(f), [1, 0.1, 0.01, 0.001].map(Math.fround));
  });

  test('llama3 rule (Llama-3.2-1B settings) against hand-computed values', () => {
    const f = ropeInvFreq(
      cfg({ headDim: 64, ropeTheta: 500000, ropeScaling: { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } }),
    );
    assert.equal(f.length, 32);
    // i: expected. 0..14 short wavelengths (unchanged), 15..17 interpolated band, 18.. divided by 32.
    const expected: Record<number, number> = {
      0: 1,
      14: 0.0032114459947525913,
      15: 0.001290547928209264,
      16: 0.00042955679655936815,
      17: 9.70828780262767e-5,
      18: 1.9461638184831125e-5,
      31: 9.418306725434909e-8,
    };
    for (const [i, v] of Object.entries(expected)) {
      const got = f[Number(i)]!;
      assert.ok(Math.abs(got - v) <= 1e-6 * v, `inv_freq[${i}] = ${got}, expected ${v}`);
    }
  });
});

describe('dtype conversions', () => {
  test('BF16 and F16 encode/decode round-trip and round to nearest even', () => {
    // Values exact in F16 (incl. the largest normal and a subnormal) survive the round trip.
    for (const v of [0, 1, -2.5, 65504, -(2 ** -15), 2 ** -24]) assert.equal(f16ToF32(f32ToF16(v)), v);
    assert.equal(f32ToF16(-(2 ** -15)), 0x8200);
    assert.equal(f32ToF16(2 ** -26), 0); // below half the smallest subnormal
    assert.equal(f32ToF16(1 + 2 ** -11), 0x3c00); // tie → even
    assert.equal(f32ToF16(1 + 3 * 2 ** -11), 0x3c02);
    assert.equal(f32ToF16(70000), 0x7c00);
    assert.equal(f32ToF16(2 ** -24), 0x0001);
    assert.equal(f32ToBf16(1), 0x3f80);
    assert.equal(bf16ToF32(0x3f80), 1);
    assert.equal(f32ToBf16(1 + 2 ** -8), 0x3f80); // tie → even
    assert.equal(f32ToBf16(1 + 3 * 2 ** -8), 0x3f82);
    assert.ok(Number.isNaN(bf16ToF32(f32ToBf16(NaN))));
  });
});

describe('shared fixtures', { skip: fixturesSkip }, () => {
  test('stories260k: config, F32 weights, tied embeddings', () => {
    const dir = fixture('stories260k');
    const { config: c, generationConfig: g } = loadModelFiles(dir);
    assert.equal(c.architecture, 'LlamaForCausalLM');
    assert.deepEqual(
      [c.hiddenSize, c.numLayers, c.numHeads, c.numKvHeads, c.headDim, c.intermediateSize, c.vocabSize, c.maxPositionEmbeddings],
      [64, 5, 8, 4, 8, 172, 512, 512],
    );
    assert.equal(c.tieWordEmbeddings, true);
    assert.equal(c.rmsNormEps, 1e-5);
    assert.equal(c.ropeTheta, 10000);
    assert.equal(c.torchDtype, 'float32');
    assert.deepEqual(g, { eosTokenIds: [2], bosTokenId: 1 });
    const w = WeightStore.open(dir);
    assert.equal(w.has('lm_head.weight'), false);
    const e = w.get('model.embed_tokens.weight', [512, 64]);
    assert.equal(e.dtype, DType.F32);
    assert.ok(e.data instanceof Float32Array);
    assert.equal(e.source, join(dir, 'model.safetensors'));
    // Zero copy: the view's buffer is the whole mapped file.
    assert.equal(e.data.buffer.byteLength, statSync(e.source).size);
    const raw = rawTensorBytes(e.source, 'model.embed_tokens.weight');
    for (const i of [0, 1, 777, 512 * 64 - 1]) assert.equal(e.data[i], raw.bytes.readFloatLE(4 * i));
  });

  test('llama-tiny: BF16 weights with a separate lm_head', () => {
    const dir = fixture('llama-tiny');
    const { config: c } = loadModelFiles(dir);
    assert.deepEqual([c.hiddenSize, c.numLayers, c.numHeads, c.numKvHeads, c.intermediateSize], [64, 2, 4, 2, 160]);
    assert.equal(c.tieWordEmbeddings, false);
    assert.equal(c.torchDtype, 'bfloat16');
    const w = WeightStore.open(dir);
    const head = w.get('lm_head.weight', [512, 64]);
    assert.equal(head.dtype, DType.BF16);
    assert.ok(head.data instanceof Uint16Array);
    const q = w.get('model.layers.1.self_attn.q_proj.weight', [64, 64]);
    const wide = toFloat32(q);
    const raw = rawTensorBytes(q.source, q.name);
    assert.equal(raw.dtype, 'BF16');
    for (const i of [0, 5, 1000, 4095]) assert.equal(wide[i], manualBf16(raw.bytes[2 * i]!, raw.bytes[2 * i + 1]!));
  });

  test('qwen2-tiny: F16 weights, q/k/v biases, list eos and sampling defaults', () => {
    const dir = fixture('qwen2-tiny');
    const { config: c, generationConfig: g } = loadModelFiles(dir);
    assert.equal(c.architecture, 'Qwen2ForCausalLM');
    assert.deepEqual([c.hiddenSize, c.numLayers, c.numHeads, c.numKvHeads, c.intermediateSize], [96, 3, 6, 2, 256]);
    assert.equal(c.attentionBias, true);
    assert.equal(c.rmsNormEps, 1e-6);
    assert.equal(c.ropeTheta, 1e6);
    assert.equal(c.tieWordEmbeddings, true);
    assert.equal(c.slidingWindow, null);
    assert.deepEqual(g, { eosTokenIds: [2], bosTokenId: 1, doSample: true, temperature: 0.7, topP: 0.8, topK: 20 });
    const w = WeightStore.open(dir);
    const bias = w.get('model.layers.2.self_attn.k_proj.bias', [32]);
    assert.equal(bias.dtype, DType.F16);
    const wide = toFloat32(bias);
    const raw = rawTensorBytes(bias.source, bias.name);
    for (let i = 0; i < 32; i++) assert.equal(wide[i], manualF16(raw.bytes[2 * i]!, raw.bytes[2 * i + 1]!));
  });

  test('every fixture stores exactly the tensors of its architecture, with the config dtype', () => {
    const dtypeOf = { float32: DType.F32, float16: DType.F16, bfloat16: DType.BF16 } as const;
    for (const name of ['stories260k', 'llama-tiny', 'qwen2-tiny']) {
      const dir = fixture(name);
      const { config } = loadModelFiles(dir);
      const w = WeightStore.open(dir);
      const plan = tensorPlan(config);
      assert.deepEqual(w.names(), plan.map((t) => t.name).sort(), name);
      for (const t of plan) assert.equal(w.get(t.name, t.shape).dtype, dtypeOf[config.torchDtype!], `${name} ${t.name}`);
    }
  });

  test('loader ignores the original/ folder of stories260k', () => {
    assert.ok(WeightStore.open(fixture('stories260k')).names().every((n) => n.startsWith('model.')));
  });
});

/** A small model directory written with writeSafetensors. */
async function writeModel(dir: string, tensors: TensorToWrite[], file = 'model.safetensors'): Promise<string> {
  const path = join(dir, file);
  await writeSafetensors(path, tensors, { format: 'pt' });
  return path;
}

const f32 = (name: string, shape: number[], start = 0): TensorToWrite => ({
  name,
  dtype: DType.F32,
  shape,
  data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => start + i),
});

describe('safetensors', () => {
  test('writer: sorted names, header padded to 8 with spaces, metadata; reader round-trips all dtypes', async () => {
    const dir = tempDir();
    const path = join(dir, 'a.safetensors');
    const bf = Uint16Array.from([0x3f80, 0xc020, 0x0000]);
    const hf = Uint16Array.from([0x3c00, 0xc100]);
    await writeSafetensors(
      path,
      [
        { name: 'z', dtype: DType.BF16, shape: [3], data: bf },
        f32('a', [2, 3]),
        { name: 'm', dtype: DType.F16, shape: [2, 1], data: hf },
        { name: 'chunked', dtype: DType.F32, shape: [5], data: () => [Float32Array.of(1, 2), Float32Array.of(3, 4, 5)] },
      ],
      { format: 'pt', note: 'x' },
    );
    const buf = readFileSync(path);
    const n = Number(buf.readBigUInt64LE(0));
    assert.equal(n % 8, 0);
    const headerText = buf.subarray(8, 8 + n).toString('utf8');
    assert.match(headerText, / *$/);
    const header = JSON.parse(headerText) as Record<string, unknown>;
    assert.deepEqual(Object.keys(header), ['__metadata__', 'a', 'chunked', 'm', 'z']);
    const f = SafetensorsFile.open(path);
    assert.deepEqual(f.metadata, { format: 'pt', note: 'x' });
    assert.deepEqual(Array.from(f.tensor('a').data), [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(f.tensor('a').shape, [2, 3]);
    assert.deepEqual(Array.from(f.tensor('chunked').data), [1, 2, 3, 4, 5]);
    assert.deepEqual(Array.from(toFloat32(f.tensor('z'))), [1, -2.5, 0]);
    assert.deepEqual(Array.from(toFloat32(f.tensor('m'))), [1, -2.5]);
    assert.equal(f.tensor('m').dtype, DType.F16);
  });

  test('writer rejects data that does not match the shape', async () => {
    const dir = tempDir();
    await rejectsLoad(writeSafetensors(join(dir, 'x.safetensors'), [{ name: 't', dtype: DType.F32, shape: [3], data: new Float32Array(2) }]), 't', '8 bytes');
    await rejectsLoad(writeSafetensors(join(dir, 'y.safetensors'), [{ name: 't', dtype: DType.BF16, shape: [2], data: new Float32Array(1) }]), 'Uint16Array');
    await rejectsLoad(writeSafetensors(join(dir, 'z.safetensors'), [{ name: 't', dtype: DType.F32, shape: [3], data: () => [new Float32Array(2)] }]), 't', 'chunks');
    // A producer failing mid-stream fails the write cleanly (no unhandled in-flight write).
    const failing = function* (): Iterable<Float32Array> {
      yield new Float32Array(2);
      throw new Error('generator failed');
    };
    await assert.rejects(writeSafetensors(join(dir, 'w.safetensors'), [{ name: 't', dtype: DType.F32, shape: [4], data: failing }]), /generator failed/);
  });

  /** A file whose header we write by hand (to produce what the writer never would). */
  function handWritten(dir: string, header: object, dataBytes: number, name = 'h.safetensors'): string {
    const json = Buffer.from(JSON.stringify(header));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    const data = Buffer.alloc(dataBytes);
    for (let i = 0; i < dataBytes; i++) data[i] = (i * 37) & 0xff;
    const path = join(dir, name);
    writeFileSync(path, Buffer.concat([len, json, data]));
    return path;
  }

  test('a tensor at a misaligned offset is copied into an aligned array', () => {
    const dir = tempDir();
    // The header length (unpadded JSON) and a 2-byte tensor in front make the F32 tensor misaligned.
    const path = handWritten(dir, { h: { dtype: 'F16', shape: [1], data_offsets: [0, 2] }, w: { dtype: 'F32', shape: [2], data_offsets: [2, 10] } }, 10);
    const f = SafetensorsFile.open(path);
    const w = f.tensor('w');
    assert.equal(f.entry('w')!.byteOffset % 4 === 0, false, 'test setup: offset must be misaligned');
    const raw = readFileSync(path).subarray(f.entry('w')!.byteOffset, f.entry('w')!.byteOffset + 8);
    assert.deepEqual(Array.from(w.data), [raw.readFloatLE(0), raw.readFloatLE(4)]);
    assert.notEqual(w.data.buffer.byteLength, statSync(path).size);
  });

  test('unsupported dtype names the file, the tensor and the dtype', () => {
    const dir = tempDir();
    const path = handWritten(dir, { q8: { dtype: 'I8', shape: [4], data_offsets: [0, 4] } }, 4);
    const f = SafetensorsFile.open(path); // other tensors of the file stay usable
    throwsLoad(() => f.tensor('q8'), path, '"q8"', 'I8');
    const bad = handWritten(dir, { x: { dtype: 'Q4_K', shape: [4], data_offsets: [0, 4] } }, 4, 'b.safetensors');
    throwsLoad(() => SafetensorsFile.open(bad), bad, '"x"', 'Q4_K');
  });

  test('corrupt files: truncation, header length, JSON, sizes', async () => {
    const dir = tempDir();
    const path = await writeModel(dir, [f32('a.weight', [4, 4]), f32('b.weight', [8, 8])]);
    truncateSync(path, statSync(path).size - 10);
    throwsLoad(() => SafetensorsFile.open(path), path, '"b.weight"', 'truncated');

    const tiny = join(dir, 'tiny.safetensors');
    writeFileSync(tiny, Buffer.from([1, 2, 3]));
    throwsLoad(() => SafetensorsFile.open(tiny), tiny, 'too small');

    const huge = join(dir, 'huge.safetensors');
    const b = Buffer.alloc(16);
    b.writeBigUInt64LE(1n << 40n);
    writeFileSync(huge, b);
    throwsLoad(() => SafetensorsFile.open(huge), huge, 'header length');

    const past = join(dir, 'past.safetensors');
    b.writeBigUInt64LE(1000n);
    writeFileSync(past, b);
    throwsLoad(() => SafetensorsFile.open(past), past, 'past the end');

    const notJson = join(dir, 'nj.safetensors');
    const j = Buffer.alloc(12);
    j.writeBigUInt64LE(4n);
    j.write('{"a"', 8);
    writeFileSync(notJson, j);
    throwsLoad(() => SafetensorsFile.open(notJson), notJson, 'JSON');

    const size = handWritten(dir, { s: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8, 's.safetensors');
    throwsLoad(() => SafetensorsFile.open(size), size, '"s"', 'needs 12');

    const order = handWritten(dir, { s: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }, 8, 'o.safetensors');
    throwsLoad(() => SafetensorsFile.open(order), order, '"s"');
    throwsLoad(() => SafetensorsFile.open(join(dir, 'missing.safetensors')), 'missing.safetensors');
  });
});

describe('WeightStore', () => {
  test('missing tensor and shape mismatch name the file and the tensor', async () => {
    const dir = tempDir();
    const path = await writeModel(dir, [f32('model.norm.weight', [4])]);
    const w = WeightStore.open(dir);
    throwsLoad(() => w.get('lm_head.weight', [4, 4]), path, '"lm_head.weight"', 'missing');
    throwsLoad(() => w.get('model.norm.weight', [8]), path, '"model.norm.weight"', '[4]', '[8]');
    assert.deepEqual(w.shapeOf('model.norm.weight'), [4]);
    assert.equal(w.shapeOf('nope'), undefined);
  });

  test('sharded directory via model.safetensors.index.json', async () => {
    const dir = tempDir();
    await writeModel(dir, [f32('model.embed_tokens.weight', [4, 2]), f32('model.layers.0.w', [2, 2], 100)], 'model-00001-of-00002.safetensors');
    await writeModel(dir, [f32('model.layers.1.w', [2, 2], 200), f32('model.norm.weight', [2], 300)], 'model-00002-of-00002.safetensors');
    const index = {
      metadata: { total_size: 64 },
      weight_map: {
        'model.embed_tokens.weight': 'model-00001-of-00002.safetensors',
        'model.layers.0.w': 'model-00001-of-00002.safetensors',
        'model.layers.1.w': 'model-00002-of-00002.safetensors',
        'model.norm.weight': 'model-00002-of-00002.safetensors',
      },
    };
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
    const w = WeightStore.open(dir);
    assert.deepEqual(w.names(), ['model.embed_tokens.weight', 'model.layers.0.w', 'model.layers.1.w', 'model.norm.weight']);
    const t = w.get('model.layers.1.w', [2, 2]);
    assert.equal(t.source, join(dir, 'model-00002-of-00002.safetensors'));
    assert.deepEqual(Array.from(t.data), [200, 201, 202, 203]);
    assert.deepEqual(Array.from(w.get('model.norm.weight', [2]).data), [300, 301]);
    throwsLoad(() => w.get('model.layers.2.w', [2, 2]), 'model.safetensors.index.json', '"model.layers.2.w"');

    // An index naming a shard that is not there, or a tensor its shard lacks.
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { ...index.weight_map, extra: 'model-00003-of-00003.safetensors' } }));
    throwsLoad(() => WeightStore.open(dir), 'model-00003-of-00003.safetensors', '"extra"');
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { ...index.weight_map, extra: 'model-00001-of-00002.safetensors' } }));
    throwsLoad(() => WeightStore.open(dir), 'model-00001-of-00002.safetensors', '"extra"');
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { x: '../evil.safetensors' } }));
    throwsLoad(() => WeightStore.open(dir), 'invalid shard');
    writeFileSync(join(dir, 'model.safetensors.index.json'), '{');
    throwsLoad(() => WeightStore.open(dir), 'model.safetensors.index.json');
  });

  test('without index or model.safetensors, all *.safetensors files; duplicates and empty dirs rejected', async () => {
    const dir = tempDir();
    await writeModel(dir, [f32('a', [1])], 'part-a.safetensors');
    await writeModel(dir, [f32('b', [1])], 'part-b.safetensors');
    assert.deepEqual(WeightStore.open(dir).names(), ['a', 'b']);
    await writeModel(dir, [f32('a', [1])], 'part-c.safetensors');
    throwsLoad(() => WeightStore.open(dir), '"a"', 'part-a.safetensors', 'part-c.safetensors');
    throwsLoad(() => WeightStore.open(tempDir()), 'no weights');
  });
});

describe('loadModelFiles', () => {
  const config = { architectures: ['LlamaForCausalLM'], hidden_size: 8, intermediate_size: 8, num_hidden_layers: 1, num_attention_heads: 2, vocab_size: 8, eos_token_id: 3, bos_token_id: 1 };

  test('missing config.json is named; missing generation_config.json falls back to config ids', () => {
    const dir = tempDir();
    throwsLoad(() => loadModelFiles(dir), dir, 'config.json');
    throwsLoad(() => loadModelFiles(join(dir, 'nope')), 'nope', 'does not exist');
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    const m = loadModelFiles(dir);
    assert.equal(m.dir, dir);
    assert.deepEqual(m.generationConfig, { eosTokenIds: [3], bosTokenId: 1 });
    writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [3, 4], temperature: 0.6 }));
    assert.deepEqual(loadModelFiles(dir).generationConfig, { eosTokenIds: [3, 4], bosTokenId: 1, temperature: 0.6 });
    writeFileSync(join(dir, 'generation_config.json'), '{oops');
    throwsLoad(() => loadModelFiles(dir), join(dir, 'generation_config.json'), 'invalid JSON');
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, architectures: ['BertModel'] }));
    throwsLoad(() => loadModelFiles(dir), join(dir, 'config.json'), 'BertModel');
  });
});

describe('resolveModel', () => {
  const savedEnv = { ...process.env };
  after(() => {
    for (const k of ['HF_ENDPOINT', 'HF_HUB_CACHE', 'HF_HOME', 'HF_HUB_OFFLINE', 'PAGEWISE_CACHE']) {
      if (savedEnv[k] === undefined) delete process.env[k];
      else process.env[k] = savedEnv[k];
    }
  });
  const commit = 'a'.repeat(40);

  /** A Hugging Face cache holding org/name at `commit`, files linked to blobs as huggingface_hub does. */
  function fakeHubCache(files: Record<string, string>): { cache: string; snapshot: string } {
    const cache = tempDir();
    const repo = join(cache, 'models--org--name');
    const snapshot = join(repo, 'snapshots', commit);
    mkdirSync(join(repo, 'refs'), { recursive: true });
    mkdirSync(join(repo, 'blobs'), { recursive: true });
    mkdirSync(snapshot, { recursive: true });
    writeFileSync(join(repo, 'refs', 'main'), commit);
    for (const [name, content] of Object.entries(files)) {
      const blob = join(repo, 'blobs', `blob-${name}`);
      writeFileSync(blob, content);
      symlinkSync(join('..', '..', 'blobs', `blob-${name}`), join(snapshot, name));
    }
    return { cache, snapshot };
  }

  test('an existing local directory or file resolves to its absolute path (the package loader tells the format); a missing path is an error', async () => {
    const dir = tempDir();
    assert.equal(await resolveModel(dir), dir);
    const rel = './test';
    const cwd = process.cwd();
    process.chdir(repoRoot);
    try {
      assert.equal(await resolveModel(rel), join(repoRoot, 'test'));
    } finally {
      process.chdir(cwd);
    }
    writeFileSync(join(dir, 'f'), 'x');
    assert.equal(await resolveModel(join(dir, 'f')), join(dir, 'f'));
    assert.throws(() => openModelPackage(join(dir, 'f')), (e: unknown) => e instanceof ModelLoadError && /not a model in a supported format/.test(e.message));
    await rejectsLoad(resolveModel(join(dir, 'missing')), 'does not exist');
    await rejectsLoad(resolveModel('not a model'), '"not a model"', 'org/name');
  });

  test('org/name resolves to a complete snapshot of the hub cache (option, HF_HUB_CACHE, HF_HOME)', async () => {
    const { cache, snapshot } = fakeHubCache({ 'config.json': '{}', 'tokenizer.json': '{}', 'model.safetensors': 'x' });
    assert.equal(await resolveModel('org/name', { cacheDir: cache }), snapshot);
    assert.equal(await resolveModel('org/name', { cacheDir: cache, revision: commit }), snapshot);
    process.env['HF_HUB_CACHE'] = cache;
    assert.equal(await resolveModel('org/name'), snapshot);
    delete process.env['HF_HUB_CACHE'];
    const home = tempDir();
    symlinkSync(cache, join(home, 'hub'));
    process.env['HF_HOME'] = home;
    assert.equal(await resolveModel('org/name'), join(home, 'hub', 'models--org--name', 'snapshots', commit));
    delete process.env['HF_HOME'];
  });

  test('a sharded snapshot is complete only with every shard of its index', async () => {
    const index = JSON.stringify({ weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' } });
    const { cache } = fakeHubCache({ 'config.json': '{}', 'tokenizer.json': '{}', 'model.safetensors.index.json': index, 'model-00001-of-00002.safetensors': 'x' });
    await rejectsLoad(resolveModel('org/name', { cacheDir: cache, offline: true }), 'org/name', 'offline', 'model-00002-of-00002.safetensors');
    writeFileSync(join(cache, 'models--org--name', 'blobs', 'late'), 'x');
    symlinkSync(join('..', '..', 'blobs', 'late'), join(cache, 'models--org--name', 'snapshots', commit, 'model-00002-of-00002.safetensors'));
    assert.ok((await resolveModel('org/name', { cacheDir: cache, offline: true })).endsWith(commit));
  });

  test('not cached and the Hub unreachable: a clear error suggesting a local dir or the cache', async () => {
    const { cache } = fakeHubCache({ 'config.json': '{}' }); // incomplete: no weights, no tokenizer
    process.env['HF_ENDPOINT'] = 'http://127.0.0.1:9';
    const quiet = () => undefined;
    await rejectsLoad(
      resolveModel('org/name', { cacheDir: cache, onProgress: quiet }),
      'could not download org/name from the Hugging Face Hub (',
      'pass a local directory or pre-populate the HF cache',
    );
    await rejectsLoad(resolveModel('org/other', { cacheDir: cache, onProgress: quiet }), 'could not download org/other');
    process.env['HF_HUB_OFFLINE'] = '1';
    await rejectsLoad(resolveModel('org/name', { cacheDir: cache }), 'offline', 'tokenizer.json');
    delete process.env['HF_HUB_OFFLINE'];
    delete process.env['HF_ENDPOINT'];
  });

  test('demo builds once into $PAGEWISE_CACHE, concurrently safe, with one warning', async () => {
    process.env['PAGEWISE_CACHE'] = tempDir();
    const writes: string[] = [];
    const orig = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string | Uint8Array) => {
      writes.push(String(chunk));
      return true;
    }) as typeof process.stderr.write;
    let dirs: string[];
    try {
      dirs = await Promise.all([resolveModel('demo'), resolveModel('demo')]);
      dirs.push(await resolveModel('demo'));
    } finally {
      process.stderr.write = orig;
    }
    assert.deepEqual(dirs, [demoModelDir(), demoModelDir(), demoModelDir()]);
    assert.ok(demoModelDir().startsWith(process.env['PAGEWISE_CACHE']!));
    assert.equal(writes.filter((w) => w.includes('RANDOM weights')).length, 1);
    const { config } = loadModelFiles(dirs[0]!);
    assert.equal(config.hiddenSize, 256);
    assert.equal(WeightStore.open(dirs[0]!).names().length, tensorPlan(config).length);
    // No temp directories left behind by the losing builder.
    assert.deepEqual(readdirSync(join(process.env['PAGEWISE_CACHE']!, 'models')), ['demo-v1']);
    delete process.env['PAGEWISE_CACHE'];
  });
});
