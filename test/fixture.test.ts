import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { DType } from '../src/backend/backend.js';
import { parseModelConfig } from '../src/config/model-config.js';
import { InvalidRequestError } from '../src/errors.js';
import { buildTokenizer, PRESETS, presetConfigJson, SPECIAL_TOKENS, tensorPlan, writeFixture } from '../src/model/fixture/index.js';
import { normalQuantile, Rng } from '../src/model/fixture/random.js';
import { toFloat32 } from '../src/model/loader/dtype.js';
import { loadModelFiles } from '../src/model/loader/model-dir.js';
import { WeightStore } from '../src/model/loader/weights.js';

const scratch = mkdtempSync(join(tmpdir(), 'pagewise-fixture-'));
after(() => rmSync(scratch, { recursive: true, force: true }));
let n = 0;
const outDir = () => join(scratch, String(n++));

function stats(a: Float32Array): { mean: number; std: number } {
  let s = 0;
  let s2 = 0;
  for (const v of a) {
    s += v;
    s2 += v * v;
  }
  const mean = s / a.length;
  return { mean, std: Math.sqrt(s2 / a.length - mean * mean) };
}

function loadTokenizer(dir: string): Tokenizer {
  const tj = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as object;
  const tc = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')) as object;
  return new Tokenizer(tj, tc);
}

describe('presets', () => {
  test('shapes of the named real models', () => {
    const smol = parseModelConfig(presetConfigJson(PRESETS['smollm-135m']!, 'bfloat16', { bos: 0, eos: 0 }), 'smollm');
    assert.deepEqual(
      [smol.architecture, smol.hiddenSize, smol.numLayers, smol.numHeads, smol.numKvHeads, smol.headDim, smol.intermediateSize, smol.vocabSize],
      ['LlamaForCausalLM', 576, 30, 9, 3, 64, 1536, 49152],
    );
    assert.deepEqual([smol.tieWordEmbeddings, smol.ropeTheta, smol.maxPositionEmbeddings, smol.rmsNormEps], [true, 10000, 2048, 1e-5]);

    const l = parseModelConfig(presetConfigJson(PRESETS['llama-1b']!, 'bfloat16', { bos: 0, eos: 0 }), 'llama-1b');
    assert.deepEqual([l.hiddenSize, l.numLayers, l.numHeads, l.numKvHeads, l.headDim, l.intermediateSize, l.vocabSize], [2048, 16, 32, 8, 64, 8192, 128256]);
    assert.deepEqual([l.tieWordEmbeddings, l.ropeTheta, l.maxPositionEmbeddings], [true, 500000, 131072]);
    assert.deepEqual(l.ropeScaling, { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
    // Parameter counts of the real checkpoints.
    const params = (c: typeof l) => tensorPlan(c).reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
    assert.equal(params(l), 1_235_814_400);
    assert.equal(params(smol), 134_515_008);

    const demo = PRESETS['demo']!;
    assert.deepEqual([demo.hiddenSize, demo.numLayers, demo.numHeads, demo.numKvHeads, demo.intermediateSize, demo.vocabSize, demo.tieWordEmbeddings], [256, 4, 8, 4, 688, 4096, true]);
  });

  test('unknown preset or dtype is a clear error', async () => {
    await assert.rejects(writeFixture('huge', outDir()), (e: unknown) => e instanceof InvalidRequestError && /tiny/.test(e.message) && /llama-1b/.test(e.message));
    await assert.rejects(writeFixture('tiny', outDir(), { dtype: 'int8' as 'float32' }), InvalidRequestError);
  });
});

describe('writeFixture', () => {
  test('tiny round-trips through loadModelFiles + WeightStore with the intended distributions', async () => {
    const dir = outDir();
    await writeFixture('tiny', dir);
    assert.deepEqual(readdirSync(dir).sort(), ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    const { config: c, generationConfig: g } = loadModelFiles(dir);
    const spec = PRESETS['tiny']!;
    assert.deepEqual(
      [c.architecture, c.hiddenSize, c.numLayers, c.numHeads, c.numKvHeads, c.intermediateSize, c.vocabSize, c.tieWordEmbeddings, c.torchDtype],
      [spec.architecture, spec.hiddenSize, spec.numLayers, spec.numHeads, spec.numKvHeads, spec.intermediateSize, spec.vocabSize, spec.tieWordEmbeddings, 'bfloat16'],
    );
    const tok = loadTokenizer(dir);
    const eot = tok.token_to_id('<|endoftext|>')!;
    const imEnd = tok.token_to_id('<|im_end|>')!;
    assert.equal(c.bosTokenId, eot);
    assert.deepEqual(c.eosTokenIds, [eot]);
    assert.deepEqual(g.eosTokenIds, [eot, imEnd]);

    const w = WeightStore.open(dir);
    const plan = tensorPlan(c);
    assert.deepEqual(w.names(), plan.map((t) => t.name).sort());
    assert.ok(w.has('lm_head.weight'));
    for (const t of plan) {
      const got = w.get(t.name, t.shape);
      assert.equal(got.dtype, DType.BF16, t.name);
      const s = stats(toFloat32(got));
      const tol = 4 * t.std / Math.sqrt(got.data.length) + 0.01 * t.std;
      assert.ok(Math.abs(s.mean - t.mean) < tol + 1e-3, `${t.name} mean ${s.mean} vs ${t.mean}`);
      if (got.data.length >= 1024) assert.ok(Math.abs(s.std - t.std) < 0.08 * t.std, `${t.name} std ${s.std} vs ${t.std}`);
    }
    assert.equal(plan.find((t) => t.name.endsWith('q_proj.weight'))!.std, 0.08);
    assert.equal(plan.find((t) => t.name.endsWith('v_proj.weight'))!.std, 0.02);
    assert.equal(plan.find((t) => t.name === 'model.norm.weight')!.mean, 1);
  });

  test('dtype and seed options', async () => {
    const a = outDir();
    const b = outDir();
    const c = outDir();
    await writeFixture('tiny', a, { dtype: 'float32', seed: 1 });
    await writeFixture('tiny', b, { dtype: 'float16', seed: 1 });
    await writeFixture('tiny', c, { dtype: 'float32', seed: 2 });
    const name = 'model.layers.0.mlp.up_proj.weight';
    const shape = [128, 64];
    const wa = WeightStore.open(a).get(name, shape);
    const wb = WeightStore.open(b).get(name, shape);
    const wc = WeightStore.open(c).get(name, shape);
    assert.equal(wa.dtype, DType.F32);
    assert.equal(wb.dtype, DType.F16);
    assert.equal(loadModelFiles(b).config.torchDtype, 'float16');
    // Same seed: the F16 file holds the F32 values rounded; another seed gives other values.
    const fa = toFloat32(wa);
    const fb = toFloat32(wb);
    for (let i = 0; i < 64; i++) assert.ok(Math.abs(fa[i]! - fb[i]!) <= Math.abs(fa[i]!) * 2 ** -11 + 2 ** -25);
    assert.notDeepEqual(Array.from(toFloat32(wc).slice(0, 16)), Array.from(fa.slice(0, 16)));
  });

  test('qwen2-tiny has q/k/v biases; mistral-tiny parses as Mistral without a window', async () => {
    const q = outDir();
    await writeFixture('qwen2-tiny', q);
    const qc = loadModelFiles(q).config;
    assert.equal(qc.architecture, 'Qwen2ForCausalLM');
    assert.equal(qc.attentionBias, true);
    const w = WeightStore.open(q);
    assert.deepEqual(w.get('model.layers.1.self_attn.k_proj.bias', [32]).shape, [32]);
    assert.equal(w.has('model.layers.1.self_attn.o_proj.bias'), false);
    assert.equal(w.has('lm_head.weight'), false);

    const m = outDir();
    await writeFixture('mistral-tiny', m);
    const mc = loadModelFiles(m).config;
    assert.equal(mc.architecture, 'MistralForCausalLM');
    assert.equal(mc.slidingWindow, null);
    assert.equal(WeightStore.open(m).names().length, tensorPlan(mc).length);
  });

  test('the demo preset is deterministic: same bytes twice', async () => {
    const a = outDir();
    const b = outDir();
    await writeFixture('demo', a);
    await writeFixture('demo', b);
    for (const f of readdirSync(a)) assert.ok(readFileSync(join(a, f)).equals(readFileSync(join(b, f))), f);
    // And it is what the docs promise: a Llama with tied embeddings and the preset vocabulary.
    const { config } = loadModelFiles(a);
    assert.equal(config.tieWordEmbeddings, true);
    assert.equal(loadTokenizer(a).get_vocab().size, 4096);
  });
});

describe('generated tokenizer', () => {
  const dir = outDir();
  const ready = writeFixture('demo', dir, { dtype: 'float32' });

  test('loads with @huggingface/tokenizers and covers exactly the model vocabulary', async () => {
    await ready;
    const tok = loadTokenizer(dir);
    const vocab = tok.get_vocab();
    assert.equal(vocab.size, 4096);
    assert.deepEqual([...vocab.values()].sort((x, y) => x - y), Array.from({ length: 4096 }, (_, i) => i));
    SPECIAL_TOKENS.forEach((t, i) => assert.equal(tok.token_to_id(t), 4096 - SPECIAL_TOKENS.length + i));
    const cfg = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(cfg['bos_token'], '<|endoftext|>');
    assert.equal(cfg['eos_token'], '<|endoftext|>');
    assert.equal(cfg['unk_token'], '<unk>');
    assert.equal(typeof cfg['add_bos_token'], 'boolean');
  });

  test('round-trips arbitrary text, Unicode and emoji included', async () => {
    await ready;
    const tok = loadTokenizer(dir);
    const texts = [
      'Hello, world!',
      '  leading and trailing spaces  ',
      'tabs\tand\nnew\r\nlines\n\n',
      'Ünïcödé: café, naïve, Ελληνικά, русский, 日本語のテキスト, 한국어, עברית, العربية',
      'emoji 😀👍🏽👨‍👩‍👧‍👦 🇫🇷 and symbols ∑∫√ ©®™ €',
      "it's they're we've I'm you'll he'd 3.14159 1,000,000",
      '<|im_start|>user\nhi<|im_end|>',
    ];
    // Random strings over a wide range of code points (seeded).
    const rng = new Rng(42);
    for (let k = 0; k < 50; k++) {
      let s = '';
      const len = rng.nextU32() % 40;
      for (let i = 0; i < len; i++) {
        const r = rng.nextU32();
        const pools = [0x20 + (r % 95), 0xa0 + (r % 0x700), 0x4e00 + (r % 0x5000), 0x1f300 + (r % 0x300), 0x0a];
        s += String.fromCodePoint(pools[(r >>> 24) % pools.length]!);
      }
      texts.push(s);
    }
    for (const t of texts) {
      const ids = tok.encode(t).ids;
      if (t.length === 0) continue;
      assert.equal(tok.decode(ids), t, JSON.stringify(t));
    }
  });

  test('English encodes into multi-character tokens; special tokens are single ids', async () => {
    await ready;
    const tok = loadTokenizer(dir);
    const text = 'The girl read the book about the moon and the tide, and then she walked to the library.';
    const enc = tok.encode(text);
    assert.ok(enc.ids.length < text.length / 3, `${enc.ids.length} tokens for ${text.length} characters`);
    assert.ok(enc.tokens.includes('Ġthe'), enc.tokens.join('|'));
    assert.ok(enc.tokens.filter((t: string) => t.length > 2).length > enc.tokens.length / 2);

    const cfg = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')) as { chat_template: string };
    const prompt = new Template(cfg.chat_template).render({ messages: [{ role: 'user', content: 'Hi there' }], add_generation_prompt: true });
    assert.equal(prompt, '<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n');
    const ids = tok.encode(prompt).ids;
    assert.equal(ids[0], tok.token_to_id('<|im_start|>'));
    assert.equal(ids.filter((i: number) => i === tok.token_to_id('<|im_end|>')).length, 1);
    assert.equal(tok.decode(ids, { skip_special_tokens: true }), 'user\nHi there\nassistant\n');
  });

  test('a 128k vocabulary (Llama-3 size) is valid: unique tokens, every merge joins existing tokens', () => {
    const t = buildTokenizer(128256, 131072);
    const model = t.tokenizer['model'] as { vocab: Record<string, number>; merges: string[] };
    const ids = Object.values(model.vocab);
    assert.equal(ids.length, 128256 - SPECIAL_TOKENS.length);
    assert.equal(new Set(ids).size, ids.length);
    for (const m of model.merges) {
      const [a, b] = m.split(' ') as [string, string];
      assert.ok(model.vocab[a]! < model.vocab[a + b]! && model.vocab[b]! < model.vocab[a + b]!, m);
    }
    assert.equal(t.unkId, 128255);
  });
});

describe('random weights', () => {
  test('normal quantiles are accurate', () => {
    // Reference values of Φ⁻¹ (Python statistics.NormalDist().inv_cdf).
    assert.ok(Math.abs(normalQuantile(0.5 / 65536) - -4.324919040826044) < 1e-8);
    assert.ok(Math.abs(normalQuantile(0.01) - -2.3263478740408408) < 1e-8);
    assert.ok(Math.abs(normalQuantile(0.3) - -0.5244005127080407) < 1e-8);
    assert.equal(normalQuantile(0.5), 0);
  });
});
