import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ModelLoadError } from '../src/errors.js';
import { GgmlType, ggmlTypeName } from '../src/backend/quant.js';
import { DType } from '../src/backend/backend.js';
import { parseModelConfig } from '../src/config/model-config.js';
import { PagewiseTokenizer } from '../src/tokenizer/tokenizer.js';
import { SafetensorsFile } from '../src/model/loader/safetensors.js';
import { GgufFile, parseGgufShard } from '../src/model/loader/gguf/file.js';
import { ggufModelFromFile, openGgufModel } from '../src/model/loader/gguf/index.js';
import { GgufValueType } from '../src/model/loader/gguf/format.js';
import { ggufToHfName, hfToGgufName, permuteQkRows, unpermuteQkRows } from '../src/model/loader/gguf/names.js';
import { fixturePath } from './helpers/fixtures.js';
import { arr, bool, buildGguf, f32, str, u32, type BuilderTensor, type BuilderValue } from './helpers/gguf-builder.js';

const GGUF_FIXTURES: Record<string, { fileType: number | undefined }> = {
  stories260k: { fileType: undefined },
  'llama-q256-F32': { fileType: 0 },
  'llama-q256-F16': { fileType: 1 },
  'llama-q256-Q8_0': { fileType: 7 },
  'llama-q256-Q6_K': { fileType: 18 },
  'llama-q256-Q4_K_M': { fileType: 15 },
  'llama-q256-Q4_0': { fileType: 2 },
};
const ggufPath = (name: string): string => join(fixturePath('gguf'), name, `${name}.gguf`);

function fromBytes(bytes: Uint8Array, name = 'synthetic.gguf'): GgufFile {
  return new GgufFile(name, [parseGgufShard(bytes.buffer, name, bytes.byteOffset, bytes.byteLength)]);
}

test('every GGUF fixture parses with the metadata and tensor types its golden lists', () => {
  for (const [name, { fileType }] of Object.entries(GGUF_FIXTURES)) {
    const golden = JSON.parse(readFileSync(join(fixturePath('gguf'), name, 'golden.json'), 'utf8')) as {
      gguf: { tensor_types: Record<string, string> };
    };
    const m = openGgufModel(ggufPath(name));
    assert.equal(m.file.version, 3);
    assert.equal(m.file.string('general.architecture'), 'llama');
    assert.equal(m.file.int('general.file_type'), fileType, name);
    assert.equal(m.file.string('tokenizer.ggml.model'), 'llama');
    const types = Object.fromEntries(m.file.tensorNames().map((t) => [t, ggmlTypeName(m.file.tensor(t)!.type)]));
    assert.deepEqual(types, golden.gguf.tensor_types, name);
    if (name === 'stories260k') {
      assert.equal(m.file.tensorNames().length, 48);
      assert.equal(m.file.int('tokenizer.ggml.seperator_token_id'), 4294967295);
    } else {
      assert.equal(m.file.string('general.name'), 'llama-q256');
      assert.equal(m.file.int('llama.vocab_size'), 512);
      assert.equal(m.config.hiddenSize, 256);
      assert.equal(m.config.numLayers, 2);
      assert.equal(m.config.numHeads, 4);
      assert.equal(m.config.numKvHeads, 2);
      assert.equal(m.config.headDim, 64);
      assert.equal(m.config.intermediateSize, 768);
      assert.equal(m.config.maxPositionEmbeddings, 512);
      assert.equal(m.config.rmsNormEps, 1e-5);
      assert.equal(m.config.tieWordEmbeddings, false);
      // Every tensor is offered under its HF name in HF shape, floats as views, quants as blocks.
      const q = m.weights.get('model.layers.1.self_attn.k_proj.weight', [128, 256]);
      const want = golden.gguf.tensor_types['blk.1.attn_k.weight'];
      if (want === 'F32' || want === 'F16') assert.equal(q.kind, 'float');
      else assert.ok(q.kind === 'quant' && ggmlTypeName(q.type) === want);
      assert.deepEqual(m.weights.shapeOf('lm_head.weight'), [512, 256]);
    }
    assert.equal(m.weights.names().length, m.file.tensorNames().length);
  }
});

test('stories260k.gguf tensors equal model.safetensors bit for bit after un-permuting q/k', () => {
  const m = openGgufModel(ggufPath('stories260k'));
  const st = SafetensorsFile.open(join(fixturePath('stories260k'), 'model.safetensors'));
  let compared = 0;
  for (const name of st.names()) {
    const ref = st.tensor(name);
    const got = m.weights.get(name, ref.shape);
    assert.ok(got.kind === 'float' && got.dtype === DType.F32 && ref.dtype === DType.F32, name);
    const a = new Uint32Array(got.data.buffer, got.data.byteOffset, got.data.length);
    const b = new Uint32Array(ref.data.buffer, ref.data.byteOffset, ref.data.length);
    assert.ok(a.length === b.length && a.every((v, i) => v === b[i]), `${name} differs`);
    compared++;
  }
  assert.ok(compared >= 47);
  // The file stores the tied head as a copy of the embedding.
  const head = m.weights.get('lm_head.weight', [512, 64]).data;
  const embd = m.weights.get('model.embed_tokens.weight', [512, 64]).data;
  assert.deepEqual(new Uint32Array(head.buffer, head.byteOffset, head.length), new Uint32Array(embd.buffer, embd.byteOffset, embd.length));
});

test('GGUF config of stories260k matches its config.json', () => {
  const m = openGgufModel(ggufPath('stories260k'));
  const hf = parseModelConfig(JSON.parse(readFileSync(join(fixturePath('stories260k'), 'config.json'), 'utf8')), 'config.json');
  for (const k of ['architecture', 'hiddenSize', 'intermediateSize', 'numLayers', 'numHeads', 'numKvHeads', 'headDim', 'vocabSize', 'rmsNormEps', 'ropeTheta', 'ropeScaling', 'attentionBias', 'slidingWindow', 'bosTokenId', 'eosTokenIds'] as const) {
    assert.deepEqual(m.config[k], hf[k], k);
  }
  assert.equal(m.config.maxPositionEmbeddings, 2048);
  assert.deepEqual(m.generationConfig, { eosTokenIds: [2], bosTokenId: 1 });
});

function randomText(rand: () => number): string {
  const pieces = [' ', '  ', 'Once', ' upon', ' a time', 'the', 'ing', '\n', '\t', 'é', '中文', '🙂', '<s>', '</s>', '<unk>', 'Lily', '!', '?', '12', 'x', '\u0000', 'ÿ', ' .', 'zz'];
  let s = '';
  const n = Math.floor(rand() * 12);
  for (let i = 0; i < n; i++) {
    s += rand() < 0.8 ? pieces[Math.floor(rand() * pieces.length)] : String.fromCodePoint(32 + Math.floor(rand() * 0x2000));
  }
  return s;
}

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

test('the stories260k GGUF tokenizer encodes and decodes like its tokenizer.json', () => {
  const m = openGgufModel(ggufPath('stories260k'));
  const dir = fixturePath('stories260k');
  const ref = new PagewiseTokenizer(JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')), JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')));
  const tok = new PagewiseTokenizer(m.tokenizerJson, m.tokenizerConfig, m.chatTemplate ?? undefined);
  assert.deepEqual(tok.encode('Once upon a time'), [1, 403, 407, 261, 378]);
  assert.equal(tok.bosTokenId, 1);
  assert.equal(tok.eosTokenId, 2);
  assert.deepEqual(tok.encode('a</s>b', { addSpecialTokens: false }), ref.encode('a</s>b', { addSpecialTokens: false }));
  assert.ok(tok.encode('x</s>').includes(2));
  const rand = lcg(14);
  for (let i = 0; i < 400; i++) {
    const s = randomText(rand);
    const ids = tok.encode(s);
    assert.deepEqual(ids, ref.encode(s), JSON.stringify(s));
    assert.equal(tok.decode(ids), ref.decode(ids), JSON.stringify(s));
    assert.equal(tok.decode(ids, { skipSpecialTokens: true }), ref.decode(ids, { skipSpecialTokens: true }));
  }
  const randIds = Array.from({ length: 300 }, () => Math.floor(rand() * 512));
  assert.equal(tok.decode(randIds), ref.decode(randIds));
});

// GPT-2's byte → printable character table (bytes that are printable map to themselves).
function byteChars(): string[] {
  const keep = (b: number): boolean => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const out: string[] = [];
  let n = 0;
  for (let b = 0; b < 256; b++) out.push(String.fromCodePoint(keep(b) ? b : 256 + n++));
  return out;
}

function gpt2Gguf(pre: string | null, extra: Array<[string, BuilderValue]> = []): Uint8Array {
  const merges = ['h e', 'l l', 'll o', 'Ġ w', 'he llo', 'o r', 'Ġw or', '1 2'];
  const tokens = [...byteChars(), 'he', 'll', 'llo', 'Ġw', 'hello', 'or', 'Ġwor', '12', '<|endoftext|>', '<|im_start|>'];
  const types = tokens.map((_, i) => (i >= tokens.length - 2 ? 3 : 1));
  return buildGguf({
    metadata: [
      ['general.architecture', str('qwen2')],
      ['qwen2.block_count', u32(1)],
      ['qwen2.embedding_length', u32(8)],
      ['qwen2.feed_forward_length', u32(16)],
      ['qwen2.attention.head_count', u32(2)],
      ['qwen2.attention.head_count_kv', u32(1)],
      ['qwen2.attention.layer_norm_rms_epsilon', f32(1e-6)],
      ['qwen2.rope.freq_base', f32(1000000)],
      ['qwen2.context_length', u32(32768)],
      ['tokenizer.ggml.model', str('gpt2')],
      ...(pre === null ? [] : [['tokenizer.ggml.pre', str(pre)] as [string, BuilderValue]]),
      ['tokenizer.ggml.tokens', arr(GgufValueType.STRING, tokens)],
      ['tokenizer.ggml.token_type', arr(GgufValueType.INT32, types)],
      ['tokenizer.ggml.merges', arr(GgufValueType.STRING, merges)],
      ['tokenizer.ggml.eos_token_id', u32(tokens.length - 2)],
      ['tokenizer.ggml.bos_token_id', u32(tokens.length - 2)],
      ['tokenizer.chat_template', str('{% for m in messages %}<|im_start|>{{ m.content }}{% endfor %}')],
      ...extra,
    ],
    tensors: [{ name: 'token_embd.weight', ne: [8, tokens.length], type: GgmlType.F32, data: new Uint8Array(8 * tokens.length * 4) }],
  });
}

test('a gpt2 (byte-level BPE) GGUF tokenizer: merges, pre-tokenizers, special tokens, chat template', () => {
  for (const pre of [null, 'default', 'gpt2', 'qwen2', 'llama-bpe', 'llama3', 'smollm']) {
    const m = ggufModelFromFile(fromBytes(gpt2Gguf(pre)));
    const tok = new PagewiseTokenizer(m.tokenizerJson, m.tokenizerConfig, m.chatTemplate ?? undefined);
    const id = (t: string): number => tok.tokenToId(t)!;
    // No BOS by default for a gpt2 vocabulary.
    assert.deepEqual(tok.encode('hello world'), [id('hello'), id('Ġwor'), id('l'), id('d')], String(pre));
    assert.deepEqual(tok.encode('hello<|endoftext|>'), [id('hello'), id('<|endoftext|>')]);
    assert.equal(tok.decode(tok.encode('héllo wörld 🙂\n')), 'héllo wörld 🙂\n');
    // "12" is one token unless the pre-tokenizer splits digits.
    const twelve = tok.encode('12');
    assert.deepEqual(twelve, pre === 'smollm' || pre === 'qwen2' ? [id('1'), id('2')] : [id('12')], String(pre));
    assert.ok(tok.isSpecial(id('<|im_start|>')));
    assert.equal(m.chatTemplate, '{% for m in messages %}<|im_start|>{{ m.content }}{% endfor %}');
    assert.equal(m.config.architecture, 'Qwen2ForCausalLM');
    assert.equal(m.config.attentionBias, true);
    assert.equal(m.config.ropeTheta, 1000000);
    assert.equal(m.config.tieWordEmbeddings, true);
    assert.equal(m.weights.has('lm_head.weight'), false);
    assert.equal(m.weights.has('model.embed_tokens.weight'), true);
  }
  const withBos = ggufModelFromFile(fromBytes(gpt2Gguf('qwen2', [['tokenizer.ggml.add_bos_token', bool(true)]])));
  const tok = new PagewiseTokenizer(withBos.tokenizerJson, withBos.tokenizerConfig);
  assert.equal(tok.encode('he')[0], tok.tokenToId('<|endoftext|>'));
  assert.throws(() => ggufModelFromFile(fromBytes(gpt2Gguf('weird-pre'))), (e: unknown) => e instanceof ModelLoadError && /pre-tokenizer "weird-pre"/.test(e.message));
});

test('GGUF ↔ HF names round-trip and the q/k permutation inverts', () => {
  for (const g of ['token_embd.weight', 'output.weight', 'output_norm.weight', 'blk.3.attn_q.weight', 'blk.0.ffn_down.weight', 'blk.7.attn_k.bias', 'blk.1.attn_q_norm.weight']) {
    const hf = ggufToHfName(g)!;
    assert.ok(hf, g);
    assert.equal(hfToGgufName(hf), g);
  }
  assert.equal(ggufToHfName('blk.0.ffn_norm.weight', 'gemma2'), 'model.layers.0.pre_feedforward_layernorm.weight');
  assert.equal(hfToGgufName('model.layers.0.post_attention_layernorm.weight', 'gemma2'), 'blk.0.post_attention_norm.weight');
  assert.equal(ggufToHfName('rope_freqs.weight'), undefined);
  const rand = lcg(3);
  for (const [rows, heads, rowBytes] of [[8, 1, 3], [12, 3, 18], [256, 4, 144]] as const) {
    const src = Uint8Array.from({ length: rows * rowBytes }, () => Math.floor(rand() * 256));
    assert.deepEqual(unpermuteQkRows(permuteQkRows(src, rowBytes, heads), rowBytes, heads), src);
    // GGUF row 2j of head h is HF row j; GGUF row 2j+1 is HF row j + d/2.
    const hf = unpermuteQkRows(src, rowBytes, heads);
    const d = rows / heads;
    assert.deepEqual(hf.subarray((d + 1) * rowBytes, (d + 2) * rowBytes), src.subarray((d + 2) * rowBytes, (d + 3) * rowBytes));
    assert.deepEqual(hf.subarray((d + d / 2) * rowBytes, (d + d / 2 + 1) * rowBytes), src.subarray((d + 1) * rowBytes, (d + 2) * rowBytes));
  }
});

function expectLoadError(bytes: Uint8Array, re: RegExp): void {
  assert.throws(() => ggufModelFromFile(fromBytes(bytes)), (e: unknown) => e instanceof ModelLoadError && re.test(e.message), String(re));
}

test('bad GGUF files give a ModelLoadError naming the problem', () => {
  const good = gpt2Gguf('qwen2');
  const bad = good.slice();
  bad[0] = 0x47 + 1;
  expectLoadError(bad, /bad magic/);
  const v = good.slice();
  new DataView(v.buffer).setUint32(4, 7, true);
  expectLoadError(v, /unsupported GGUF version 7/);
  expectLoadError(good.subarray(0, 200), /truncated/);
  expectLoadError(good.subarray(0, good.length - 1), /truncated file: tensor "token_embd.weight"/);
  const meta = (extra: Array<[string, BuilderValue]>, tensors?: BuilderTensor[]): Uint8Array =>
    buildGguf({ metadata: [['general.architecture', str('llama')], ...extra], ...(tensors ? { tensors } : {}) });
  const tokens = arr(GgufValueType.STRING, ['a']);
  const base: Array<[string, BuilderValue]> = [
    ['llama.block_count', u32(1)], ['llama.embedding_length', u32(256)], ['llama.feed_forward_length', u32(256)],
    ['llama.attention.head_count', u32(4)], ['llama.attention.layer_norm_rms_epsilon', f32(1e-5)],
    ['tokenizer.ggml.model', str('llama')], ['tokenizer.ggml.tokens', tokens], ['tokenizer.ggml.scores', arr(GgufValueType.FLOAT32, [0])],
  ];
  expectLoadError(meta([...base.filter(([k]) => k !== 'llama.block_count'), ['llama.block_count', str('two')]]), /"llama.block_count" has type STRING, expected an integer/);
  expectLoadError(buildGguf({ metadata: [['general.architecture', str('gptneox')]] }), /unsupported GGUF architecture "gptneox" \(supported: llama, mistral, qwen2, qwen3, gemma2, gemma3\)/);
  expectLoadError(meta([['general.alignment', u32(3)]]), /power of two/);
  expectLoadError(meta([['x', str('a')], ['x', str('b')]]), /duplicate metadata key "x"/);
  const t = (name: string, type: number, ne = [32], offset?: number): BuilderTensor => ({
    name, ne, type, data: new Uint8Array(32 * 4), ...(offset === undefined ? {} : { offset }),
  });
  expectLoadError(meta([], [t('a', 0), t('a', 0)]), /duplicate tensor "a"/);
  expectLoadError(meta([], [t('a', 0), t('b', 0, [32], 0)]), /overlap/);
  expectLoadError(meta([], [t('a', 99)]), /tensor "a" has unknown GGML type 99/);
  expectLoadError(meta([], [t('a', 0, [2 ** 40, 2 ** 40])]), /too many elements/);
  expectLoadError(meta([], [t('a', 0, [33], 1)]), /not a multiple of the alignment/);
  expectLoadError(meta([], [t('a', GgmlType.Q4_0, [33])]), /not a whole number of Q4_0 blocks/);
  // A type the engine does not run is refused by name before anything runs.
  expectLoadError(meta(base, [{ name: 'blk.0.attn_q.weight', ne: [256, 1], type: GgmlType.IQ2_XXS, data: new Uint8Array(66) }]), /tensor "blk.0.attn_q.weight" has type IQ2_XXS, which Pagewise cannot run/);
  expectLoadError(meta([...base.filter(([k]) => k !== 'tokenizer.ggml.model'), ['tokenizer.ggml.model', str('bert')]]), /unsupported tokenizer model "bert"/);
  expectLoadError(meta([...base, ['tokenizer.ggml.bos_token_id', u32(5)]]), /token id 5 is outside the vocabulary/);
  // A string length past the end of the file.
  const s = buildGguf({ metadata: [['general.architecture', str('llama')]] });
  new DataView(s.buffer).setUint32(24 + 8 + 20 + 4, 1000, true);
  expectLoadError(s, /truncated/);
  // Nested arrays parse.
  const nested = fromBytes(buildGguf({ metadata: [['n', { type: GgufValueType.ARRAY, itemType: GgufValueType.ARRAY, items: [arr(GgufValueType.UINT8, [1, 2]), arr(GgufValueType.UINT8, [])] }]] }));
  assert.deepEqual(nested.metadata.get('n')!.value, { itemType: GgufValueType.ARRAY, items: [{ itemType: 0, items: [1, 2] }, { itemType: 0, items: [] }] });
  assert.throws(() => GgufFile.open('/nonexistent/x.gguf'), ModelLoadError);
});

test('fuzz: mutated and truncated fixture headers only ever throw ModelLoadError (bounded to ~4 s)', () => {
  const files = [readFileSync(ggufPath('stories260k')), readFileSync(ggufPath('llama-q256-Q4_K_M'))].map((b) => new Uint8Array(b));
  const rand = lcg(2024);
  const deadline = Date.now() + 4000;
  let runs = 0;
  let failures = 0;
  while (Date.now() < deadline) {
    const src = files[runs % files.length]!;
    const headerEnd = parseGgufShard(src.buffer, 'x', src.byteOffset, src.byteLength).header.dataOffset;
    let bytes: Uint8Array;
    if (rand() < 0.2) bytes = src.slice(0, Math.floor(rand() * headerEnd * 1.2));
    else {
      bytes = src.slice();
      const n = 1 + Math.floor(rand() * 4);
      for (let i = 0; i < n; i++) {
        // Mostly the first bytes (counts, key lengths, types), sometimes anywhere in the header.
        const at = rand() < 0.5 ? Math.floor(rand() * 64) : Math.floor(rand() * headerEnd);
        bytes[at] = rand() < 0.5 ? Math.floor(rand() * 256) : [0, 0xff, 1, 0x7f][Math.floor(rand() * 4)]!;
      }
    }
    try {
      const m = ggufModelFromFile(fromBytes(bytes, 'fuzz.gguf'));
      for (const name of m.weights.names()) m.weights.get(name, m.weights.shapeOf(name)!);
    } catch (e) {
      if (!(e instanceof ModelLoadError)) throw new Error(`run ${runs}: ${(e as Error).stack}`);
      failures++;
    }
    runs++;
  }
  assert.ok(runs > 50 && failures > 0, `${runs} runs, ${failures} rejected`);
});

test('split GGUF sets: shards are found from any one of them, checked, and their tensor tables merged', async () => {
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'gguf-split-'));
  try {
    const u16 = (value: number): BuilderValue => ({ type: GgufValueType.UINT16, value });
    const shard = (no: number, count: number, name: string, extra: Array<[string, BuilderValue]> = []): Uint8Array =>
      buildGguf({
        metadata: [['split.no', u16(no)], ['split.count', u16(count)], ...extra],
        tensors: [{ name, ne: [4], type: GgmlType.F32, data: new Uint8Array(Float32Array.from([no, no, no, no]).buffer) }],
      });
    writeFileSync(join(dir, 'm-00001-of-00002.gguf'), shard(0, 2, 'a', [['general.architecture', str('llama')]]));
    writeFileSync(join(dir, 'm-00002-of-00002.gguf'), shard(1, 2, 'b'));
    const f = GgufFile.open(join(dir, 'm-00002-of-00002.gguf'));
    assert.deepEqual(f.tensorNames(), ['a', 'b']);
    assert.equal(f.string('general.architecture'), 'llama');
    assert.deepEqual(Array.from(new Float32Array(f.tensor('b')!.bytes.slice().buffer)), [1, 1, 1, 1]);
    writeFileSync(join(dir, 'm-00002-of-00002.gguf'), shard(1, 2, 'a'));
    assert.throws(() => GgufFile.open(join(dir, 'm-00001-of-00002.gguf')), /tensor "a" appears in more than one shard/);
    writeFileSync(join(dir, 'm-00002-of-00002.gguf'), shard(0, 2, 'b'));
    assert.throws(() => GgufFile.open(join(dir, 'm-00001-of-00002.gguf')), /split metadata says shard 1 of 2, the file name says 2 of 2/);
    rmSync(join(dir, 'm-00002-of-00002.gguf'));
    assert.throws(() => GgufFile.open(join(dir, 'm-00001-of-00002.gguf')), (e: unknown) => e instanceof ModelLoadError && /not found/.test(e.message));
    writeFileSync(join(dir, 'lonely.gguf'), shard(0, 2, 'a'));
    assert.throws(() => GgufFile.open(join(dir, 'lonely.gguf')), /one shard of a split model/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('quantized q/k rows come back in HF order too (Q8_0 file dequantized vs the F32 file)', async () => {
  const { f16ToF32 } = await import('../src/model/loader/dtype.js');
  const q8 = openGgufModel(ggufPath('llama-q256-Q8_0')).weights;
  const ref = openGgufModel(ggufPath('llama-q256-F32')).weights;
  for (const [name, shape] of [['model.layers.0.self_attn.q_proj.weight', [256, 256]], ['model.layers.1.self_attn.k_proj.weight', [128, 256]]] as const) {
    const q = q8.get(name, [...shape]);
    const r = ref.get(name, [...shape]);
    assert.ok(q.kind === 'quant' && q.type === GgmlType.Q8_0 && r.kind === 'float');
    const view = new DataView(q.data.buffer, q.data.byteOffset, q.data.byteLength);
    let worst = 0;
    // Q8_0 block: f16 scale, then 32 int8 values; value = scale * q.
    for (let b = 0; b < q.data.length / 34; b++) {
      const d = f16ToF32(view.getUint16(b * 34, true));
      for (let j = 0; j < 32; j++) {
        const err = Math.abs(d * view.getInt8(b * 34 + 2 + j) - r.data[b * 32 + j]!);
        worst = Math.max(worst, err / Math.max(d, 1e-12));
      }
    }
    // Within half a step plus the f16 rounding of the scale (127 · 2^-11 ≈ 0.062 steps) everywhere;
    // rows out of order would be off by tens of steps.
    assert.ok(worst <= 0.5 + 127 * 2 ** -11, `${name}: worst error ${worst} quantization steps`);
  }
});

test('Llama 3 RoPE scaling survives HF → GGUF (rope_freqs.weight) → config', async () => {
  const { cpSync, mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { quantizeModel } = await import('../src/model/quantize/hf-to-gguf.js');
  const tmp = mkdtempSync(join(tmpdir(), 'pw-rope-'));
  try {
    const dir = join(tmp, 'hf');
    cpSync(fixturePath('stories260k'), dir, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    cfg['rope_scaling'] = { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
    cfg['rope_theta'] = 500000;
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    const out = join(tmp, 'm.gguf');
    quantizeModel(dir, out, 'q8_0');
    const m = openGgufModel(out);
    assert.deepEqual(m.config.ropeScaling, { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
    assert.equal(m.config.ropeTheta, 500000);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('every pre-tokenizer name `pagewise quantize` writes is one the reader takes: a byte-level BPE model round-trips through GGUF and encodes alike', async () => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { quantizeModel } = await import('../src/model/quantize/hf-to-gguf.js');
  const { writeFixture } = await import('../src/model/fixture/write-fixture.js');
  const tmp = mkdtempSync(join(tmpdir(), 'pw-pre-'));
  try {
    for (const preset of ['tiny', 'qwen2-tiny']) {
      const dir = join(tmp, preset);
      await writeFixture(preset, dir);
      const out = join(tmp, `${preset}.gguf`);
      quantizeModel(dir, out, 'q8_0');
      const m = openGgufModel(out);
      const fromGguf = new PagewiseTokenizer(m.tokenizerJson, m.tokenizerConfig, m.chatTemplate ?? undefined);
      const hf = PagewiseTokenizer.fromDir(dir);
      for (const text of ['Hello world', '  two  spaces and 12345 digits', 'naïve café — 😀', 'line\nbreak\ttab']) {
        assert.deepEqual(fromGguf.encode(text), hf.encode(text), `${preset}: ${JSON.stringify(text)}`);
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
