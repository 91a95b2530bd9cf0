/**
 * Gemma 3 from GGUF as llama.cpp's converter writes it: architecture `gemma3`, llama.cpp's tensor
 * names (attn_norm, post_attention_norm, ffn_norm before the MLP, post_ffw_norm, attn_q_norm…),
 * every RMSNorm weight stored as 1 + w, no query_pre_attn_scalar / layer pattern / local RoPE base
 * keys (llama.cpp's fixed values). gemma3-tiny written that way must run exactly like its
 * safetensors checkpoint: the same greedy goldens and the same log-probs, bit for bit.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { GgmlType } from '../src/backend/quant.js';
import { LLM } from '../src/engine/llm.js';
import { toFloat32 } from '../src/model/loader/dtype.js';
import { hfToGgufName } from '../src/model/loader/gguf/names.js';
import { GgufValueType } from '../src/model/loader/gguf/format.js';
import { writeGguf, type GgufMetaValue, type GgufTensorToWrite } from '../src/model/loader/gguf/writer.js';
import { WeightStore } from '../src/model/loader/weights.js';
import { tokenizerMetadata } from '../src/model/quantize/gguf-tokenizer.js';
import { DType } from '../src/backend/backend.js';
import { GgufFile, parseGgufShard } from '../src/model/loader/gguf/file.js';
import { ggufModelConfig } from '../src/model/loader/gguf/config.js';
import { arr, buildGguf, f32 as bf32, str as bstr, u32 as bu32, type BuilderValue } from './helpers/gguf-builder.js';
import { quantizeModel } from '../src/model/quantize/hf-to-gguf.js';
import { fixturePath, loadGolden } from './helpers/fixtures.js';

const tmp = mkdtempSync(join(tmpdir(), 'pagewise-gemma-gguf-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const u32 = (v: number): GgufMetaValue => ({ type: GgufValueType.UINT32, value: v });
const f32 = (v: number): GgufMetaValue => ({ type: GgufValueType.FLOAT32, value: v });
const str = (v: string): GgufMetaValue => ({ type: GgufValueType.STRING, value: v });

/** gemma3-tiny as a llama.cpp-style GGUF file (matrices BF16 as stored, norms F32 as 1 + w). */
function writeGemma3Gguf(out: string): void {
  const dir = fixturePath('gemma3-tiny');
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, number>;
  const a = 'gemma3';
  const meta: Array<[string, GgufMetaValue]> = [
    ['general.architecture', str(a)],
    [`${a}.block_count`, u32(cfg['num_hidden_layers']!)],
    [`${a}.context_length`, u32(cfg['max_position_embeddings']!)],
    [`${a}.embedding_length`, u32(cfg['hidden_size']!)],
    [`${a}.feed_forward_length`, u32(cfg['intermediate_size']!)],
    [`${a}.attention.head_count`, u32(cfg['num_attention_heads']!)],
    [`${a}.attention.head_count_kv`, u32(cfg['num_key_value_heads']!)],
    [`${a}.attention.key_length`, u32(cfg['head_dim']!)],
    [`${a}.attention.value_length`, u32(cfg['head_dim']!)],
    [`${a}.attention.layer_norm_rms_epsilon`, f32(cfg['rms_norm_eps']!)],
    [`${a}.attention.sliding_window`, u32(cfg['sliding_window']!)],
    [`${a}.rope.freq_base`, f32(cfg['rope_theta']!)],
    ...tokenizerMetadata({
      tokenizerJson: JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')),
      tokenizerConfig: JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')),
      vocabSize: cfg['vocab_size']!,
      bosTokenId: 1,
      eosTokenId: 2,
      source: dir,
    }),
  ];
  const store = WeightStore.open(dir);
  const tensors: GgufTensorToWrite[] = store.names().map((hf) => {
    const shape = store.shapeOf(hf)!;
    const t = store.get(hf, shape);
    assert.equal(t.kind, 'float');
    if (t.kind !== 'float') throw new Error('float fixture');
    const name = hfToGgufName(hf, a);
    assert.ok(name, `${hf} has a GGUF name`);
    const ne = [...shape].reverse();
    if (hf.endsWith('norm.weight')) {
      const w = toFloat32(t);
      for (let i = 0; i < w.length; i++) w[i] = w[i]! + 1;
      return { name, ne, type: GgmlType.F32, data: () => [new Uint8Array(w.buffer)] };
    }
    assert.equal(t.dtype, DType.BF16);
    return { name, ne, type: GgmlType.BF16, data: () => [new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)] };
  });
  writeGguf(out, meta, tensors);
}

test('gemma3-tiny as a llama.cpp-style GGUF: the goldens, and log-probs equal to the safetensors run bit for bit', async () => {
  const file = join(tmp, 'gemma3-tiny.gguf');
  writeGemma3Gguf(file);
  const golden = loadGolden('gemma3-tiny');
  const opts = { dtype: 'float32', kvCacheDtype: 'float32', kvCacheMemory: 16 * 1024 ** 2, threads: 2, log: () => {} } as const;
  const gguf = new LLM({ model: file, ...opts });
  const hf = new LLM({ model: fixturePath('gemma3-tiny'), ...opts });
  after(() => Promise.all([gguf.close(), hf.close()]));
  const info = (await gguf.engine()).info.model;
  assert.equal(info.architecture, 'Gemma3ForCausalLM');
  assert.deepEqual(info.layerTypes, (await hf.engine()).info.model.layerTypes);
  assert.equal(info.ropeLocalTheta, 10000);
  const gen = (llm: LLM) =>
    Promise.all(golden.cases.map((c) => llm.generate({ promptTokenIds: c.prompt_token_ids }, { temperature: 0, maxTokens: c.greedy.max_tokens, logprobs: 0 }).then((o) => o[0]!.outputs[0]!)));
  const [fromGguf, fromHf] = await Promise.all([gen(gguf), gen(hf)]);
  golden.cases.forEach((c, k) => {
    assert.deepEqual(fromGguf[k]!.tokenIds, c.greedy.token_ids, `${c.name}: greedy tokens`);
    const a = fromGguf[k]!.logprobs!.map((l) => l.token.logprob);
    const b = fromHf[k]!.logprobs!.map((l) => l.token.logprob);
    assert.ok(a.every((v, i) => Object.is(v, b[i])), `${c.name}: GGUF log-probs differ from safetensors`);
  });
});

test('Gemma 2 GGUF metadata reads as llama.cpp reads it: alternating windows from layer 0, soft-caps, tanh GELU, the 27B scale', () => {
  const meta = (layers: number): Array<[string, BuilderValue]> => [
    ['general.architecture', bstr('gemma2')],
    ['tokenizer.ggml.tokens', arr(GgufValueType.STRING, ['<pad>', '<eos>', '<bos>', 'a'])],
    ['gemma2.block_count', bu32(layers)],
    ['gemma2.context_length', bu32(8192)],
    ['gemma2.embedding_length', bu32(4608)],
    ['gemma2.feed_forward_length', bu32(36864)],
    ['gemma2.attention.head_count', bu32(32)],
    ['gemma2.attention.head_count_kv', bu32(16)],
    ['gemma2.attention.key_length', bu32(128)],
    ['gemma2.attention.value_length', bu32(128)],
    ['gemma2.attention.layer_norm_rms_epsilon', bf32(1e-6)],
    ['gemma2.attention.sliding_window', bu32(4096)],
    ['gemma2.attn_logit_softcapping', bf32(50)],
    ['gemma2.final_logit_softcapping', bf32(30)],
  ];
  const parse = (layers: number) => {
    const bytes = buildGguf({ metadata: meta(layers) });
    return ggufModelConfig(new GgufFile('gemma2.gguf', [parseGgufShard(bytes.buffer as ArrayBuffer, 'gemma2.gguf', bytes.byteOffset, bytes.byteLength)])).config;
  };
  const c = parse(4);
  assert.equal(c.architecture, 'Gemma2ForCausalLM');
  assert.deepEqual(c.layerTypes, ['sliding_attention', 'full_attention', 'sliding_attention', 'full_attention']);
  assert.equal(c.slidingWindow, 4096);
  assert.equal(c.hiddenAct, 'gelu_pytorch_tanh');
  assert.equal(c.attnLogitSoftcapping, 50);
  assert.equal(c.finalLogitSoftcapping, 30);
  assert.equal(c.queryPreAttnScalar, 128);
  assert.equal(c.ropeLocalTheta, null);
  // Gemma 2 27B (46 layers): query_pre_attn_scalar = hidden / heads = 144, as llama.cpp assumes.
  assert.equal(parse(46).queryPreAttnScalar, 144);
});

test('pagewise quantize writes Gemma 3 as llama.cpp does (norms F32 as 1 + w): the Q8_0 file scores the greedy goldens within the Q8_0 error', async () => {
  const golden = loadGolden('gemma3-tiny');
  const file = join(tmp, 'gemma3-tiny-q8_0.gguf');
  const { tensors } = quantizeModel(fixturePath('gemma3-tiny'), file, 'q8_0');
  const norms = tensors.filter((t) => t.name.endsWith('norm.weight'));
  assert.ok(norms.some((t) => t.name === 'blk.0.post_ffw_norm.weight') && norms.every((t) => t.type === GgmlType.F32));
  const llm = new LLM({ model: file, dtype: 'float32', kvCacheDtype: 'float32', kvCacheMemory: 16 * 1024 ** 2, threads: 2, log: () => {} });
  after(() => llm.close());
  assert.equal((await llm.engine()).info.model.architecture, 'Gemma3ForCausalLM');
  // Teacher-forced: the reference's greedy continuation as part of the prompt, so that every step
  // is scored even where Q8_0's error (a few hundredths on this tiny model) flips a near-tie.
  // Where the reference's top two logits are 0.1 or more apart, the top-1 must agree.
  let steps = 0;
  for (const c of golden.cases) {
    const L = c.prompt_token_ids.length;
    const [o] = await llm.generate({ promptTokenIds: [...c.prompt_token_ids, ...c.greedy.token_ids] }, { temperature: 0, maxTokens: 1, promptLogprobs: 1 });
    c.greedy.token_ids.forEach((id, i) => {
      const row = o!.promptLogprobs![L + i]!;
      assert.equal(row.token.tokenId, id);
      const d = Math.abs(row.token.logprob - c.greedy.logprobs![i]!);
      assert.ok(d <= 5e-2, `${c.name} step ${i}: logprob off by ${d}`);
      if (c.greedy.margins![i]! >= 0.1) assert.equal(row.top![0]!.tokenId, id, `${c.name} step ${i}: top-1`);
      steps++;
    });
  }
  assert.ok(steps >= 100, `${steps} steps scored`);
});

test('a Gemma checkpoint whose implicit hyperparameters differ from llama.cpp\'s is refused by name, and no file is left', () => {
  // gemma2-tiny's query_pre_attn_scalar (16) is not its head dimension (24), what llama.cpp's Gemma 2 assumes.
  const file = join(tmp, 'gemma2-tiny-q8_0.gguf');
  assert.throws(() => quantizeModel(fixturePath('gemma2-tiny'), file, 'q8_0'), /cannot be written as GGUF faithfully.*queryPreAttnScalar: the checkpoint has 16, a GGUF reader would take 24/);
  assert.equal(existsSync(file), false);
});
