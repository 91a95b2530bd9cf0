/**
 * Quantizers and the GGUF writer against llama.cpp's own files: quantizing the F32 fixture's
 * tensors must give `llama-quantize`'s bytes exactly, and `quantizeModel` on an HF checkpoint of
 * the same weights must reproduce those files tensor for tensor (names, q/k row order, per-tensor
 * types of each mixture, bytes) with the same metadata.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { DType } from '../src/backend/backend.js';
import { GgmlType, ggmlRowBytes } from '../src/backend/quant.js';
import { f16ToF32, f32ToF16 } from '../src/model/loader/dtype.js';
import { writeSafetensors } from '../src/model/loader/safetensors.js';
import { WeightStore } from '../src/model/loader/weights.js';
import { GgufValueType } from '../src/model/loader/gguf/format.js';
import { writeGguf } from '../src/model/loader/gguf/writer.js';
import { writeFixture, writeGgufFixture } from '../src/model/fixture/index.js';
import { qkRowOrder, quantizeModel } from '../src/model/quantize/hf-to-gguf.js';
import { quantizeRows, quantizeWeight } from '../src/model/quantize/quantize.js';
import { tensorType, useMoreBits, type QuantScheme } from '../src/model/quantize/schemes.js';
import { preTokenizerName, tokenizerMetadata } from '../src/model/quantize/gguf-tokenizer.js';
import { fixturePath } from './helpers/fixtures.js';
import { readTestGguf, type TestGguf } from './helpers/gguf-test-reader.js';
import { dequantize } from './helpers/dequant-ref.js';

const tensorBytes = (type: number, ne: number[]) => ggmlRowBytes(type, ne[0]!) * ne.slice(1).reduce((a, b) => a * b, 1);
const read = (path: string) => readTestGguf(path, tensorBytes);
const ggufFixture = (name: string) => join(fixturePath('gguf'), name, `${name}.gguf`);
const tmp = mkdtempSync(join(tmpdir(), 'pagewise-quantize-'));

const f32Of = (t: { bytes: Uint8Array }) => new Float32Array(t.bytes.slice().buffer);
const FILES: Array<[QuantScheme, string]> = [
  ['q8_0', 'llama-q256-Q8_0'],
  ['q4_0', 'llama-q256-Q4_0'],
  ['q6_k', 'llama-q256-Q6_K'],
  ['q4_k_m', 'llama-q256-Q4_K_M'],
];

describe('quantizers reproduce llama-quantize bit for bit', () => {
  const src = read(ggufFixture('llama-q256-F32'));
  for (const [, file] of FILES) {
    test(file, () => {
      const q = read(ggufFixture(file));
      let checked = 0;
      for (const t of q.tensors) {
        if (t.type === GgmlType.F32) continue;
        const s = src.tensor(t.name);
        const rows = t.ne.slice(1).reduce((a, b) => a * b, 1);
        const out = quantizeRows(t.type, f32Of(s), rows, t.ne[0]!);
        assert.ok(Buffer.from(out).equals(Buffer.from(t.bytes)), `${t.name} (type ${t.type}) differs`);
        checked++;
      }
      assert.equal(checked, 16);
    });
  }
});

/** An HF checkpoint (F32 safetensors) of the llama-q256 weights, q/k rows back in HF order. */
async function hfDirOfF32Fixture(): Promise<string> {
  const dir = join(tmp, 'llama-q256');
  mkdirSync(dir, { recursive: true });
  const g = read(ggufFixture('llama-q256-F32'));
  const hfName = (n: string): string => {
    const fixed: Record<string, string> = { 'token_embd.weight': 'model.embed_tokens.weight', 'output_norm.weight': 'model.norm.weight', 'output.weight': 'lm_head.weight' };
    if (fixed[n]) return fixed[n]!;
    const m = /^blk\.(\d+)\.(.+)$/.exec(n)!;
    const inner: Record<string, string> = {
      'attn_norm.weight': 'input_layernorm.weight', 'attn_q.weight': 'self_attn.q_proj.weight', 'attn_k.weight': 'self_attn.k_proj.weight',
      'attn_v.weight': 'self_attn.v_proj.weight', 'attn_output.weight': 'self_attn.o_proj.weight', 'ffn_norm.weight': 'post_attention_layernorm.weight',
      'ffn_gate.weight': 'mlp.gate_proj.weight', 'ffn_up.weight': 'mlp.up_proj.weight', 'ffn_down.weight': 'mlp.down_proj.weight',
    };
    return `model.layers.${m[1]}.${inner[m[2]!]!}`;
  };
  const tensors = g.tensors.map((t) => {
    let data = f32Of(t);
    if (/attn_[qk]\.weight$/.test(t.name)) {
      const k = t.ne[0]!;
      const order = qkRowOrder(64);
      const hf = new Float32Array(data.length);
      for (let i = 0; i < t.ne[1]!; i++) hf.set(data.subarray(i * k, (i + 1) * k), order(i) * k);
      data = hf;
    }
    return { name: hfName(t.name), dtype: DType.F32, shape: [...t.ne].reverse(), data };
  });
  await writeSafetensors(join(dir, 'model.safetensors'), tensors);
  const config = {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 256, intermediate_size: 768, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 512, max_position_embeddings: 512, rms_norm_eps: 1e-5,
    rope_theta: 10000, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2, torch_dtype: 'float32',
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  // The fixtures' tokenizer is stories260k's (same 512 tokens, same order).
  copyFileSync(join(fixturePath('stories260k'), 'tokenizer.json'), join(dir, 'tokenizer.json'));
  copyFileSync(join(fixturePath('stories260k'), 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
  return dir;
}

function assertSameMeta(mine: TestGguf, ref: TestGguf): void {
  for (const key of ref.keys) {
    const a = mine.meta.get(key);
    const b = ref.meta.get(key)!;
    assert.ok(a, `metadata ${key} missing`);
    assert.equal(a.type, b.type, `metadata ${key}: type`);
    assert.deepEqual(a.value, b.value, `metadata ${key}: value`);
  }
  const extra = mine.keys.filter((k) => !ref.meta.has(k));
  assert.deepEqual(extra, [], 'metadata keys llama.cpp did not write');
}

describe('quantizeModel on an HF checkpoint reproduces the llama-quantize files', () => {
  let dir: Promise<string> | undefined;
  for (const [scheme, file] of FILES) {
    test(`${scheme} = ${file}`, async () => {
      dir ??= hfDirOfF32Fixture();
      const out = join(tmp, `${file}.gguf`);
      quantizeModel(await dir, out, scheme);
      const mine = read(out);
      const ref = read(ggufFixture(file));
      assert.equal(mine.version, 3);
      assert.deepEqual(mine.tensors.map((t) => t.name).sort(), ref.tensors.map((t) => t.name).sort());
      for (const r of ref.tensors) {
        const t = mine.tensor(r.name);
        assert.equal(t.type, r.type, `${r.name}: type`);
        assert.deepEqual(t.ne, r.ne, `${r.name}: ne`);
        assert.ok(Buffer.from(t.bytes).equals(Buffer.from(r.bytes)), `${r.name}: bytes differ`);
        assert.equal(t.offset % 32, 0);
      }
      assertSameMeta(mine, ref);
    });
  }
});

describe('quantizeModel on the shared HF fixtures', () => {
  test('stories260k (tied, 5 layers): q/k rows in the order of the real GGUF file; head is token_embd; 172-wide rows fall back to F16', () => {
    const out = join(tmp, 'stories-q8.gguf');
    quantizeModel(fixturePath('stories260k'), out, 'q8_0');
    const g = read(out);
    const ref = read(join(fixturePath('gguf'), 'stories260k', 'stories260k.gguf'));
    assert.equal(g.meta.get('general.architecture')!.value, 'llama');
    assert.equal(g.meta.get('llama.block_count')!.value, 5);
    assert.equal(g.meta.get('tokenizer.ggml.model')!.value, 'llama');
    assert.deepEqual(g.meta.get('tokenizer.ggml.tokens')!.value, ref.meta.get('tokenizer.ggml.tokens')!.value);
    assert.deepEqual(g.meta.get('tokenizer.ggml.token_type')!.value, ref.meta.get('tokenizer.ggml.token_type')!.value);
    assert.equal(g.meta.get('tokenizer.ggml.add_bos_token')!.value, true);
    assert.throws(() => g.tensor('output.weight'));
    for (const r of ref.tensors) {
      if (r.name === 'output.weight') continue;
      const t = g.tensor(r.name);
      assert.deepEqual(t.ne, r.ne, r.name);
      if (r.ne.length === 1) {
        assert.equal(t.type, GgmlType.F32);
        assert.ok(Buffer.from(t.bytes).equals(Buffer.from(r.bytes)), r.name);
      } else {
        // ffn_down's rows of 172 values are not whole Q8_0 blocks: F16, as llama-quantize does.
        const type = r.ne[0]! % 32 === 0 ? GgmlType.Q8_0 : GgmlType.F16;
        assert.equal(t.type, type, r.name);
        const expect = quantizeRows(type, f32Of(r), r.ne[1]!, r.ne[0]!);
        assert.ok(Buffer.from(t.bytes).equals(Buffer.from(expect)), `${r.name}: not the quantized rows of the real GGUF file`);
      }
    }
  });

  test('qwen2-tiny: biases F32, no q/k permutation, fallbacks for rows that are not whole K-quant blocks', () => {
    const out = join(tmp, 'qwen2-q4km.gguf');
    quantizeModel(fixturePath('qwen2-tiny'), out, 'q4_k_m');
    const g = read(out);
    const store = WeightStore.open(fixturePath('qwen2-tiny'));
    assert.equal(g.meta.get('general.architecture')!.value, 'qwen2');
    assert.equal(g.meta.get('general.file_type')!.value, 15);
    assert.equal(g.meta.get('general.quantization_version')!.value, 2);
    const hidden = g.meta.get('qwen2.embedding_length')!.value as number;
    assert.ok(hidden % 256 !== 0, 'fixture rows are not whole super-blocks');
    for (const b of ['attn_q', 'attn_k', 'attn_v']) assert.equal(g.tensor(`blk.0.${b}.bias`).type, GgmlType.F32);
    // Q4_K falls back to Q5_0, Q6_K to Q8_0; the tied head (token_embd) is Q8_0.
    assert.equal(g.tensor('blk.0.attn_q.weight').type, GgmlType.Q5_0);
    assert.equal(g.tensor('token_embd.weight').type, GgmlType.Q8_0);
    const q = store.get('model.layers.0.self_attn.q_proj.weight', store.shapeOf('model.layers.0.self_attn.q_proj.weight')!);
    assert.ok(Buffer.from(g.tensor('blk.0.attn_q.weight').bytes).equals(Buffer.from(quantizeWeight(q, GgmlType.Q5_0))));
  });
});

describe('tensor type rules', () => {
  test("llama.cpp's use_more_bits and the _M mixtures", () => {
    // 16 layers (Llama-3.2-1B): layers 0, 1, 14, 15 and every third from 4.
    assert.deepEqual([...Array(16).keys()].filter((l) => useMoreBits(l, 16)), [0, 1, 4, 7, 10, 13, 14, 15]);
    const role = (name: string, ne: number[], hasOutput = true) => ({ name, ne, numLayers: 16, hasOutput });
    assert.equal(tensorType('q4_k_m', role('blk.4.attn_v.weight', [2048, 512])), GgmlType.Q6_K);
    assert.equal(tensorType('q4_k_m', role('blk.5.ffn_down.weight', [8192, 2048])), GgmlType.Q4_K);
    assert.equal(tensorType('q5_k_m', role('blk.0.ffn_down.weight', [8192, 2048])), GgmlType.Q6_K);
    assert.equal(tensorType('q4_0', role('token_embd.weight', [2048, 128256], false)), GgmlType.Q6_K);
    assert.equal(tensorType('q8_0', role('output.weight', [2048, 128256])), GgmlType.Q8_0);
    assert.equal(tensorType('q6_k', role('blk.0.attn_norm.weight', [2048])), GgmlType.F32);
    // smollm-135m's 576-wide rows: K-quants fall back, the head to Q8_0.
    assert.equal(tensorType('q4_k_m', role('blk.2.attn_q.weight', [576, 576])), GgmlType.Q5_0);
    assert.equal(tensorType('q5_k_m', role('blk.2.attn_q.weight', [576, 576])), GgmlType.Q5_1);
    assert.equal(tensorType('q6_k', role('blk.2.attn_q.weight', [576, 576])), GgmlType.Q8_0);
    assert.equal(tensorType('q4_k_m', role('token_embd.weight', [576, 49152], false)), GgmlType.Q8_0);
    // Not even a multiple of 32: F16.
    assert.equal(tensorType('q4_0', role('blk.0.ffn_down.weight', [172, 64])), GgmlType.F16);
  });
});

describe('GGUF writer', () => {
  test('round trip: every metadata type, shapes, bytes, 32-byte alignment', () => {
    const path = join(tmp, 'rt.gguf');
    const q = quantizeRows(GgmlType.Q4_K, Float32Array.from({ length: 512 }, (_, i) => Math.sin(i)), 2, 256);
    writeGguf(
      path,
      [
        ['a.u8', { type: GgufValueType.UINT8, value: 200 }],
        ['a.i8', { type: GgufValueType.INT8, value: -5 }],
        ['a.u16', { type: GgufValueType.UINT16, value: 60000 }],
        ['a.i16', { type: GgufValueType.INT16, value: -300 }],
        ['a.u32', { type: GgufValueType.UINT32, value: 4000000000 }],
        ['a.i32', { type: GgufValueType.INT32, value: -7 }],
        ['a.f32', { type: GgufValueType.FLOAT32, value: 0.5 }],
        ['a.bool', { type: GgufValueType.BOOL, value: true }],
        ['a.str', { type: GgufValueType.STRING, value: 'héllo ▁' }],
        ['a.u64', { type: GgufValueType.UINT64, value: 2n ** 40n }],
        ['a.i64', { type: GgufValueType.INT64, value: -3n }],
        ['a.f64', { type: GgufValueType.FLOAT64, value: 1e-300 }],
        ['a.arr', { type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, values: ['x', '', 'y z'] }],
      ],
      [
        { name: 'v', ne: [3], type: GgmlType.F32, data: () => [new Uint8Array(new Float32Array([1, 2, 3]).buffer)] },
        { name: 'm', ne: [256, 2], type: GgmlType.Q4_K, data: () => [q.subarray(0, 100), q.subarray(100)] },
      ],
    );
    const g = read(path);
    assert.deepEqual(
      g.keys.map((k) => [k, g.meta.get(k)!.value]),
      [['a.u8', 200], ['a.i8', -5], ['a.u16', 60000], ['a.i16', -300], ['a.u32', 4000000000], ['a.i32', -7], ['a.f32', 0.5], ['a.bool', true],
        ['a.str', 'héllo ▁'], ['a.u64', 2n ** 40n], ['a.i64', -3n], ['a.f64', 1e-300], ['a.arr', ['x', '', 'y z']]],
    );
    assert.deepEqual(g.tensors.map((t) => [t.name, t.ne, t.type, t.offset]), [['v', [3], 0, 0], ['m', [256, 2], GgmlType.Q4_K, 32]]);
    assert.deepEqual([...f32Of(g.tensor('v'))], [1, 2, 3]);
    assert.ok(Buffer.from(g.tensor('m').bytes).equals(Buffer.from(q)));
  });

  test('bad input: clear errors, no file content guessed', () => {
    const path = join(tmp, 'bad.gguf');
    const v = (data: Uint8Array) => [{ name: 'v', ne: [4], type: GgmlType.F32, data: () => [data] }];
    assert.throws(() => writeGguf(path, [], v(new Uint8Array(12))), /does not have the 16 bytes/);
    assert.ok(!existsSync(path) && !existsSync(`${path}.partial`), 'no file left behind');
    assert.throws(() => writeGguf(path, [['k', { type: GgufValueType.UINT8, value: 300 }]], []), /"k": 300 is not a valid UINT8/);
    assert.throws(() => writeGguf(path, [['k', { type: GgufValueType.STRING, value: 'a' }], ['k', { type: GgufValueType.STRING, value: 'b' }]], []), /given twice/);
    assert.throws(() => writeGguf(path, [], [{ name: 'q', ne: [100, 2], type: GgmlType.Q4_K, data: () => [] }]), /not a whole number of Q4_K blocks/);
    assert.throws(() => quantizeRows(GgmlType.Q4_K, new Float32Array(100), 1, 100), /not whole Q4_K blocks/);
    assert.throws(() => quantizeRows(GgmlType.IQ4_XS, new Float32Array(256), 1, 256), /no quantizer for GGML type IQ4_XS/);
  });
});

describe('quantize at load time', () => {
  test('q8_0 / q4_0 of a BF16 weight: row bytes, and dequantized values within the format bound', () => {
    const rows = 3;
    const k = 96;
    const bits = new Uint16Array(rows * k);
    const values = new Float32Array(rows * k);
    for (let i = 0; i < bits.length; i++) {
      values[i] = Math.fround(Math.sin(i * 0.37) * 0.05);
      bits[i] = new Uint32Array(new Float32Array([values[i]!]).buffer)[0]! >>> 16;
      values[i] = new Float32Array(new Uint32Array([bits[i]! << 16]).buffer)[0]!;
    }
    for (const [type, levels] of [[GgmlType.Q8_0, 127], [GgmlType.Q4_0, 8]] as const) {
      const q = quantizeWeight({ dtype: DType.BF16, shape: [rows, k], data: bits }, type);
      assert.equal(q.length, rows * ggmlRowBytes(type, k));
      assert.ok(Buffer.from(q).equals(Buffer.from(quantizeRows(type, values, rows, k))));
      // F16 and F32 sources of the same values give the same bytes.
      const half = Uint16Array.from(values, (v) => f32ToF16(v));
      const halfValues = Float32Array.from(half, (h) => f16ToF32(h));
      assert.ok(Buffer.from(quantizeWeight({ dtype: DType.F16, shape: [rows, k], data: half }, type)).equals(Buffer.from(quantizeRows(type, halfValues, rows, k))));
      assert.ok(Buffer.from(quantizeWeight({ dtype: DType.F32, shape: [rows, k], data: values }, type)).equals(Buffer.from(q)));
      // Dequantize block by block: |x - d q| <= d / 2 (plus the fp16 rounding of d).
      const bb = type === GgmlType.Q8_0 ? 34 : 18;
      const dv = new DataView(q.buffer, q.byteOffset);
      for (let b = 0; b < (rows * k) / 32; b++) {
        const d = halfToFloat(dv.getUint16(b * bb, true));
        let amax = 0;
        for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(values[b * 32 + j]!));
        assert.ok(Math.abs(Math.abs(d) - amax / levels) <= (amax / levels) * 1e-3, 'scale');
        for (let j = 0; j < 32; j++) {
          const qv = type === GgmlType.Q8_0 ? dv.getInt8(b * bb + 2 + j) : ((q[b * bb + 2 + (j % 16)]! >> (j < 16 ? 0 : 4)) & 15) - 8;
          // Q8_0 rounds to the nearest level; Q4_0 has 7 levels on the side opposite the extreme
          // (which can lose up to a whole step). Both also carry d's rounding to fp16.
          const step = type === GgmlType.Q8_0 ? 0.5 : 1;
          assert.ok(Math.abs(values[b * 32 + j]! - d * qv) <= Math.abs(d) * (step + levels * 2 ** -11) + 1e-9, `block ${b} value ${j}`);
        }
      }
    }
  });
});

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 31;
  const m = h & 1023;
  return e === 0 ? s * m * 2 ** -24 : s * (1 + m / 1024) * 2 ** (e - 15);
}

test('fixture --format gguf: a byte-level BPE preset as a Q4_0 GGUF with gpt2 tokenizer and merges', async () => {
  const out = join(tmp, 'tiny-q4_0.gguf');
  await writeGgufFixture('tiny', out, 'q4_0');
  const g = read(out);
  assert.equal(g.meta.get('tokenizer.ggml.model')!.value, 'gpt2');
  assert.equal(g.meta.get('tokenizer.ggml.pre')!.value, 'gpt-2');
  assert.ok((g.meta.get('tokenizer.ggml.merges')!.value as string[]).length > 500);
  assert.equal((g.meta.get('tokenizer.ggml.tokens')!.value as string[]).length, 1024);
  assert.equal(typeof g.meta.get('tokenizer.chat_template')!.value, 'string');
  assert.equal(g.meta.get('general.name')!.value, 'tiny');
  assert.equal(g.tensor('blk.1.ffn_up.weight').type, GgmlType.Q4_0);
  assert.equal(g.tensor('output.weight').type, GgmlType.Q8_0); // 64-wide rows: the head cannot be Q6_K
  assert.equal(g.tensor('blk.0.attn_norm.weight').type, GgmlType.F32);
});

describe('round trip through an independent dequantizer', () => {
  /** Normal values with heavy outliers and special blocks (zeros, constant, one spike). */
  function testData(n: number, seed: number): Float32Array {
    let s = seed >>> 0;
    const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
    const x = Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()) * 0.02);
    for (let i = 0; i < n; i += 97) x[i]! *= 8; // outliers
    x.fill(0, 0, 256); // an all-zero super-block
    x.fill(0.01, 256, 288); // a constant block
    x.fill(0, 512, 768);
    x[600] = -0.3; // a lone spike
    return x;
  }
  // About 1.25x the measured errors on this (fixed) data, whose outliers inflate the block
  // scales; a wrong block layout gives errors of order 1.
  const bounds: Array<[GgmlType, number]> = [
    [GgmlType.Q8_0, 0.011],
    [GgmlType.Q6_K, 0.033],
    [GgmlType.Q5_1, 0.056],
    [GgmlType.Q5_0, 0.083],
    [GgmlType.Q5_K, 0.055],
    [GgmlType.Q4_K, 0.11],
    [GgmlType.Q4_0, 0.17],
  ];
  const x = testData(256 * 24, 11);
  const rel: Record<number, number> = {};
  for (const [type, bound] of bounds) {
    test(`${GgmlType[type]}: relative RMS error < ${bound}, zero blocks exact`, () => {
      const k = 768;
      const y = dequantize(type, quantizeRows(type, x, x.length / k, k), x.length);
      let err = 0;
      let sum = 0;
      for (let i = 0; i < x.length; i++) {
        err += (x[i]! - y[i]!) ** 2;
        sum += x[i]! ** 2;
      }
      rel[type] = Math.sqrt(err / sum);
      assert.ok(rel[type]! < bound, `relative RMS error ${rel[type]}`);
      for (let i = 0; i < 256; i++) assert.ok(y[i] === 0, `zero block value ${i}: ${y[i]}`); // -0 allowed
      for (let i = 512; i < 768; i++) if (i !== 600) assert.ok(Math.abs(y[i]!) <= 0.3 / 8, `value ${i} next to the spike: ${y[i]}`);
      assert.ok(Math.abs(y[600]! + 0.3) < 0.3 * 0.1, `spike ${y[600]}`);
    });
  }
  test('more bits, less error', () => {
    assert.ok(rel[GgmlType.Q8_0]! < rel[GgmlType.Q6_K]! && rel[GgmlType.Q6_K]! < rel[GgmlType.Q5_K]! && rel[GgmlType.Q5_K]! < rel[GgmlType.Q4_K]!);
  });
  test('the dequantizer agrees with the bit-exact fixture files (Q4_K, Q6_K of llama-q256-Q4_K_M)', () => {
    const src = read(ggufFixture('llama-q256-F32'));
    const q = read(ggufFixture('llama-q256-Q4_K_M'));
    for (const name of ['blk.0.attn_q.weight', 'blk.1.ffn_down.weight']) {
      const t = q.tensor(name);
      const n = t.ne[0]! * t.ne[1]!;
      const y = dequantize(t.type, t.bytes, n);
      const xs = f32Of(src.tensor(name));
      let err = 0;
      let sum = 0;
      for (let i = 0; i < n; i++) {
        err += (xs[i]! - y[i]!) ** 2;
        sum += xs[i]! ** 2;
      }
      assert.ok(Math.sqrt(err / sum) < (t.type === GgmlType.Q6_K ? 0.02 : 0.09), name); // measured 0.0713 (Q4_K)
    }
  });
});

test("tokenizer.ggml.pre: llama.cpp's names for the common byte-level pre-tokenizers", () => {
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const split = (regex: string) => ({ type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false }, { ...byteLevel, use_regex: false }] });
  const llama3 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  const qwen2 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  assert.equal(preTokenizerName(byteLevel), 'gpt-2');
  assert.equal(preTokenizerName({ type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, byteLevel] }), 'smollm');
  assert.equal(preTokenizerName(split(llama3)), 'llama-bpe');
  assert.equal(preTokenizerName(split(qwen2)), 'qwen2');
  assert.equal(preTokenizerName(split('\\w+|[^\\w\\s]+')), 'default');
});

test('SentencePiece-style tokenizer without a space prefix: add_space_prefix false; bad tokenizers are named', () => {
  const model = { type: 'BPE', byte_fallback: true, unk_token: '<unk>', vocab: { '<unk>': 0, '<s>': 1, '▁': 2, a: 3, '▁a': 4 }, merges: ['▁ a'] };
  const base = { model, added_tokens: [{ id: 1, content: '<s>', special: true }], decoder: { type: 'ByteFallback' } };
  const meta = (tj: unknown) => new Map<string, { value?: unknown; values?: unknown }>(tokenizerMetadata({ tokenizerJson: tj, tokenizerConfig: {}, vocabSize: 6, bosTokenId: 1, eosTokenId: null, source: 'x' }));
  const never = meta({ ...base, pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'never', split: false } });
  assert.equal(never.get('tokenizer.ggml.add_space_prefix')?.value, false);
  assert.deepEqual(never.get('tokenizer.ggml.tokens')?.values, ['<unk>', '<s>', '▁', 'a', '▁a', '[PAD5]']);
  assert.deepEqual(never.get('tokenizer.ggml.token_type')?.values, [2, 3, 1, 1, 1, 5]);
  assert.equal(meta({ ...base, pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first' } }).has('tokenizer.ggml.add_space_prefix'), false);
  assert.throws(() => meta({ model: { ...model, type: 'Unigram' } }), /x: tokenizer model Unigram cannot be written to GGUF/);
  assert.throws(() => meta({ model: { type: 'BPE', vocab: { a: 0 }, merges: [] } }), /neither byte-level/);
  assert.throws(() => tokenizerMetadata({ tokenizerJson: base, tokenizerConfig: {}, vocabSize: 3, bosTokenId: 1, eosTokenId: null, source: 'x' }), /token id 4, beyond the model's vocabulary of 3/);
});

test('llama3 RoPE scaling: a rope_freqs.weight tensor of per-frequency divisors, as llama.cpp converts it', () => {
  const dir = join(tmp, 'llama-tiny-rope3');
  mkdirSync(dir, { recursive: true });
  const src = fixturePath('llama-tiny');
  for (const f of ['model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(src, f), join(dir, f));
  const cfg = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8')) as Record<string, unknown>;
  // With head_dim 16 and an original context of 64, the low, smoothed and high bands all occur.
  cfg['rope_scaling'] = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
  const out = join(tmp, 'rope3.gguf');
  quantizeModel(dir, out, 'q8_0');
  const t = read(out).tensor('rope_freqs.weight');
  assert.equal(t.type, GgmlType.F32);
  assert.deepEqual(t.ne, [8]);
  const f = [...f32Of(t)];
  // inv_freq_i = 10000^(-2i/16); wavelength 2π/inv_freq: < 16 → 1, > 64 → 8, else smoothed.
  const expected = f.map((_, i) => {
    const wavelen = (2 * Math.PI) / Math.fround(1 / Math.fround(10000 ** ((2 * i) / 16)));
    if (wavelen < 16) return 1;
    if (wavelen > 64) return 8;
    const smooth = (64 / wavelen - 1) / 3;
    return Math.fround(1 / ((1 - smooth) / 8 + smooth));
  });
  assert.deepEqual(f, expected);
  assert.ok(f.includes(1) && f.includes(8) && f.some((v) => v > 1 && v < 8), f.join(','));
});

test('mistral preset: written as llama.cpp writes Mistral (architecture llama, q/k rows permuted)', async () => {
  const hfDir = join(tmp, 'mistral-tiny');
  await writeFixture('mistral-tiny', hfDir);
  const out = join(tmp, 'mistral-q8_0.gguf');
  quantizeModel(hfDir, out, 'q8_0');
  const g = read(out);
  assert.equal(g.meta.get('general.architecture')!.value, 'llama');
  assert.equal(g.meta.get('llama.attention.head_count_kv')!.value, 2);
  const store = WeightStore.open(hfDir);
  const name = 'model.layers.1.self_attn.k_proj.weight';
  const w = store.get(name, store.shapeOf(name)!);
  const [rows, k] = w.shape as [number, number];
  const order = qkRowOrder(16);
  const hf = new Float32Array(new Uint32Array(Array.from(w.data as Uint16Array, (b) => b << 16)).buffer);
  const permuted = new Float32Array(rows * k);
  for (let i = 0; i < rows; i++) permuted.set(hf.subarray(order(i) * k, (order(i) + 1) * k), i * k);
  assert.ok(Buffer.from(g.tensor('blk.1.attn_k.weight').bytes).equals(Buffer.from(quantizeRows(GgmlType.Q8_0, permuted, rows, k))));
});

test('a 200k-token byte-level vocabulary (Llama-3-sized and beyond) converts', () => {
  const vocab: Record<string, number> = {};
  for (let i = 0; i < 200000; i++) vocab[`t${i}`] = i;
  const meta = new Map(tokenizerMetadata({
    tokenizerJson: { model: { type: 'BPE', vocab, merges: ['t 1'] }, pre_tokenizer: { type: 'ByteLevel' }, added_tokens: [{ id: 199999, content: 't199999', special: true }] },
    tokenizerConfig: {}, vocabSize: 200064, bosTokenId: null, eosTokenId: 199999, source: 'big',
  }));
  const tokens = meta.get('tokenizer.ggml.tokens') as { values: readonly string[] };
  assert.equal(tokens.values.length, 200064);
  assert.equal(tokens.values[200063], '[PAD200063]');
  assert.equal((meta.get('tokenizer.ggml.eos_token_id') as { value: number }).value, 199999);
});
