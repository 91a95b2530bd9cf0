/**
 * The model's boundaries: the architecture registry, the WeightSource contract (what every weight
 * format must do, and what the model does with what a source returns) and the model package.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { cpuBackend } from '../src/backend/native.js';
import { GgmlType, GGML_TYPES } from '../src/backend/quant.js';
import { SUPPORTED_ARCHITECTURES, type ModelConfig } from '../src/config/model-config.js';
import { ModelLoadError } from '../src/errors.js';
import { architectureFor, registeredArchitectures } from '../src/model/architectures/registry.js';
import { tensorPlan } from '../src/model/fixture/index.js';
import { kvLayout } from '../src/kv/kv-layout.js';
import { ModelBuilder } from '../src/model/layers/builder.js';
import { openModelPackage } from '../src/model/loader/package.js';
import type { WeightSource, WeightTensor } from '../src/model/loader/weight-source.js';
import { WeightStore } from '../src/model/loader/weights.js';
import { CausalLM } from '../src/model/model.js';
import { presetModelDir } from './helpers/tiny-model.js';

const scratch = mkdtempSync(join(tmpdir(), 'pagewise-model-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** Assert `fn` throws a ModelLoadError whose message contains every fragment (and the code, if given). */
function throwsLoad(fn: () => unknown, code: string | null, ...fragments: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ModelLoadError, `expected ModelLoadError, got ${String(e)}`);
    for (const f of fragments) assert.ok(e.message.includes(f), `message "${e.message}" lacks "${f}"`);
    if (code !== null) assert.equal(e.code, code);
    return true;
  });
}

/**
 * A source over a real one that changes what it serves: some tensors hidden, some handed out as
 * quantized blocks of a GGML type (what a GGUF source returns for a quantized tensor).
 */
class AlteredSource implements WeightSource {
  constructor(
    private readonly inner: WeightSource,
    private readonly alter: { hide?: string[]; quant?: Record<string, GgmlType> },
  ) {}
  get description(): string {
    return `altered ${this.inner.description}`;
  }
  has(name: string): boolean {
    return !this.alter.hide?.includes(name) && this.inner.has(name);
  }
  names(): string[] {
    return this.inner.names().filter((n) => this.has(n));
  }
  shapeOf(name: string): number[] | undefined {
    return this.has(name) ? this.inner.shapeOf(name) : undefined;
  }
  get(name: string, shape: number[]): WeightTensor {
    if (!this.has(name)) throw new ModelLoadError(`${this.description}: missing tensor "${name}"`, { code: 'tensor_missing' });
    const t = this.inner.get(name, shape);
    const type = this.alter.quant?.[name];
    if (type === undefined) return t;
    const info = GGML_TYPES.get(type)!;
    const rowBytes = Math.ceil(shape[1]! / info.blockSize) * info.blockBytes;
    return { name, kind: 'quant', type, shape, data: new Uint8Array(shape[0]! * rowBytes), source: 'model.gguf' };
  }
}

describe('architecture registry', () => {
  test('serves exactly the architectures config.json parsing accepts, each under its own name', () => {
    assert.deepEqual([...registeredArchitectures()].sort(), [...SUPPORTED_ARCHITECTURES].sort());
    for (const name of registeredArchitectures()) assert.equal(architectureFor(name).name, name);
  });

  test('an unknown architecture is a clear error listing the supported ones', () => {
    throwsLoad(() => architectureFor('GPT2LMHeadModel'), 'unsupported_architecture', '"GPT2LMHeadModel"', ...SUPPORTED_ARCHITECTURES);
    // Not fooled by names every object has.
    throwsLoad(() => architectureFor('toString'), 'unsupported_architecture', 'LlamaForCausalLM');
  });

  test('a model config naming an unregistered architecture is refused when the model is built', async () => {
    const { config, weights } = openModelPackage(await presetModelDir());
    const cfg = { ...config, architecture: 'FalconForCausalLM' } as unknown as ModelConfig;
    throwsLoad(() => new CausalLM(cpuBackend(), cfg, weights, { precision: 'float32', maxTokens: 4 }), 'unsupported_architecture', 'FalconForCausalLM', 'Qwen2ForCausalLM');
  });

  test('the builder refuses reads of tensors the architecture did not declare', async () => {
    const { config, weights } = openModelPackage(await presetModelDir());
    const b = new ModelBuilder(cpuBackend(), config, weights, tensorPlan(config).map((t) => ({ ...t, role: 'linear' as const })), 'float32', 4, kvLayout(config));
    assert.equal(b.vector('model.norm.weight', config.hiddenSize).length, config.hiddenSize);
    assert.throws(() => b.tensor('model.norm.weight', [config.hiddenSize + 1]), /does not declare/);
    assert.throws(() => b.tensor('model.layers.0.self_attn.q_norm.weight', [config.headDim]), /does not declare/);
  });
});

describe('WeightSource contract (safetensors)', () => {
  test('missing tensor and shape mismatch are ModelLoadErrors naming the tensor and where it came from', async () => {
    const dir = await presetModelDir();
    const { config } = openModelPackage(dir);
    const w: WeightSource = WeightStore.open(dir);
    const H = config.hiddenSize;
    assert.ok(w.description.startsWith(dir));
    assert.deepEqual(w.names(), tensorPlan(config).map((t) => t.name).sort());
    assert.ok(w.has('model.norm.weight'));
    assert.deepEqual(w.shapeOf('model.norm.weight'), [H]);
    const t = w.get('model.norm.weight', [H]);
    assert.equal(t.kind, 'float');
    assert.equal(t.name, 'model.norm.weight');
    assert.deepEqual(t.shape, [H]);
    assert.equal(t.data.length, H);
    assert.ok(t.source.startsWith(dir));

    throwsLoad(() => w.get('model.layers.99.mlp.up_proj.weight', [4, 4]), 'tensor_missing', '"model.layers.99.mlp.up_proj.weight"', dir, '[4, 4]');
    throwsLoad(() => w.get('model.norm.weight', [H, 1]), 'tensor_shape_mismatch', '"model.norm.weight"', `[${H}]`, `[${H}, 1]`, dir);
    throwsLoad(() => w.get('model.norm.weight', [H + 1]), 'tensor_shape_mismatch', `[${H + 1}]`);
    assert.equal(w.shapeOf('nope'), undefined);
    assert.equal(w.has('nope'), false);
  });
});

describe('the model and what a source returns', () => {
  test('quantized matrices the kernels cannot take are refused with their name, type and source; vectors must be float', async () => {
    const { config, weights } = openModelPackage(await presetModelDir());
    const build = (quant: Record<string, GgmlType>) => () =>
      new CausalLM(cpuBackend(), config, new AlteredSource(weights, { quant }), { precision: 'float32', maxTokens: 4 });
    // The preset's rows are 128 values: not whole 256-value K-quant blocks.
    throwsLoad(build({ 'model.layers.1.mlp.down_proj.weight': GgmlType.Q4_K }), 'unsupported_weight_type', '"model.layers.1.mlp.down_proj.weight"', 'Q4_K', 'not whole', 'model.gguf');
    throwsLoad(build({ 'model.layers.0.self_attn.k_proj.weight': GgmlType.IQ2_XXS }), 'unsupported_weight_type', '"model.layers.0.self_attn.k_proj.weight"', 'IQ2_XXS', 'no kernels');
    // q/k/v share one pack: one quantized, the others float, is refused.
    throwsLoad(build({ 'model.layers.0.self_attn.k_proj.weight': GgmlType.Q8_0 }), 'unsupported_weight_type', 'mixes float and quantized');
    throwsLoad(build({ 'model.norm.weight': GgmlType.Q8_0 }), 'unsupported_weight_type', '"model.norm.weight"', 'Q8_0', 'weight matrices only');
  });

  test('a missing tensor is refused by name; an untied model without lm_head says so', async () => {
    const { config, weights } = openModelPackage(await presetModelDir());
    const build = (cfg: ModelConfig, hide: string[]) => () =>
      new CausalLM(cpuBackend(), cfg, new AlteredSource(weights, { hide }), { precision: 'bfloat16', maxTokens: 4 });
    throwsLoad(build(config, ['model.layers.0.post_attention_layernorm.weight']), 'tensor_missing', '"model.layers.0.post_attention_layernorm.weight"');
    const untied = { ...config, tieWordEmbeddings: false };
    throwsLoad(build(untied, ['lm_head.weight']), 'tensor_missing', 'lm_head.weight', 'tie_word_embeddings');
  });
});

describe('openModelPackage', () => {
  test('a Hugging Face directory gives config, generation config, weights and the tokenizer location', async () => {
    const dir = await presetModelDir();
    const p = openModelPackage(dir);
    assert.equal(p.format, 'huggingface');
    assert.equal(p.path, dir);
    assert.equal(p.config.architecture, 'LlamaForCausalLM');
    assert.ok(p.generationConfig.eosTokenIds.length > 0);
    assert.deepEqual(p.tokenizer, { kind: 'huggingface', dir });
    assert.ok(p.weights.has('model.embed_tokens.weight'));
  });

  test('a missing path or a file of no supported format is named, with the formats listed', () => {
    throwsLoad(() => openModelPackage(join(scratch, 'nope')), 'model_file_missing', join(scratch, 'nope'), 'does not exist');
    const file = join(scratch, 'weights.bin');
    writeFileSync(file, 'not a model');
    throwsLoad(() => openModelPackage(file), null, file, 'Hugging Face model directory');
  });
});
