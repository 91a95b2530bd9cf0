/**
 * The `pagewise` command line, run as a child process the way users run it: generate (text, ids,
 * prompts files, the demo model), fixture, and clear errors with exit code 1.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { ggmlRowBytes, GgmlType } from '../src/backend/quant.js';
import { fixturePath, loadGolden, type Golden } from './helpers/fixtures.js';
import { readTestGguf } from './helpers/gguf-test-reader.js';

const root = resolve(import.meta.dirname, '..');
const tmp = mkdtempSync(join(tmpdir(), 'pagewise-cli-'));

async function pagewise(args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  const entry = `import('./src/cli/main.ts').then((m) => m.main(process.argv.slice(1)))`;
  try {
    const r = await promisify(execFile)(process.execPath, ['--import', 'tsx', '-e', entry, '--', ...args], {
      cwd: root,
      env: { ...process.env, PAGEWISE_CACHE: join(tmp, 'cache') },
      maxBuffer: 16 << 20,
    });
    return { ...r, code: 0 };
  } catch (e) {
    const err = e as { stdout: string; stderr: string; code: number };
    return { stdout: err.stdout, stderr: err.stderr, code: err.code };
  }
}

const engineFlags = ['--kv-cache-memory', '32MiB', '--threads', '2'];

describe('pagewise generate', () => {
  test('--prompt-ids --json on a fixture reproduces the golden greedy tokens', async () => {
    const g = loadGolden('llama-tiny').cases[1]!;
    const r = await pagewise([
      'generate', '--model', fixturePath('llama-tiny'), '--prompt-ids', g.prompt_token_ids.join(','),
      '--max-tokens', String(g.greedy.max_tokens), '--temperature', '0', '--json', ...engineFlags,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim()) as { prompt_token_ids: number[]; token_ids: number[]; text: string };
    assert.deepEqual(out.prompt_token_ids, g.prompt_token_ids);
    assert.deepEqual(out.token_ids, g.greedy.token_ids);
    assert.equal(typeof out.text, 'string');
  });

  test('--prompt text on stories260k gives the golden story; --prompts-file keeps input order', async () => {
    const tc = loadGolden('stories260k').text_cases!;
    const one = await pagewise(['generate', '--model', fixturePath('stories260k'), '--prompt', tc[0]!.prompt, '--max-tokens', '200', '--temperature', '0', ...engineFlags]);
    assert.equal(one.code, 0, one.stderr);
    assert.equal(one.stdout, `${tc[0]!.greedy.text_completion}\n`);

    const file = join(tmp, 'prompts.jsonl');
    writeFileSync(file, `${JSON.stringify(tc[1]!.prompt)}\n${JSON.stringify({ prompt_token_ids: tc[2]!.prompt_token_ids })}\n${JSON.stringify(tc[0]!.prompt)}\n`);
    const many = await pagewise(['generate', '--model', fixturePath('stories260k'), '--prompts-file', file, '--max-tokens', '200', '--temperature', '0', '--json', ...engineFlags]);
    assert.equal(many.code, 0, many.stderr);
    const lines = many.stdout.trim().split('\n').map((l) => JSON.parse(l) as { token_ids: number[]; prompt_token_ids: number[] });
    assert.deepEqual(lines.map((l) => l.token_ids), [tc[1]!.greedy.token_ids, tc[2]!.greedy.token_ids, tc[0]!.greedy.token_ids]);
    assert.deepEqual(lines[1]!.prompt_token_ids, tc[2]!.prompt_token_ids);
  });

  test('a GGUF model: the file itself, or --gguf-file inside a directory; a quantized file runs on the integer kernels', async () => {
    const tc = loadGolden('stories260k').text_cases![0]!;
    const gguf = join(fixturePath('gguf'), 'stories260k', 'stories260k.gguf');
    const one = await pagewise(['generate', '--model', gguf, '--prompt', tc.prompt, '--max-tokens', '200', '--temperature', '0', ...engineFlags]);
    assert.equal(one.code, 0, one.stderr);
    assert.equal(one.stdout, `${tc.greedy.text_completion}\n`);

    const g = JSON.parse(readFileSync(join(fixturePath('gguf'), 'llama-q256-Q4_K_M', 'golden.json'), 'utf8')) as Golden;
    const c = g.cases[3]!;
    const q = await pagewise([
      'generate', '--model', join(fixturePath('gguf'), 'llama-q256-Q4_K_M'), '--gguf-file', 'llama-q256-Q4_K_M.gguf',
      '--prompt-ids', c.prompt_token_ids.join(','), '--max-tokens', String(c.greedy.max_tokens), '--temperature', '0', '--json', ...engineFlags,
    ]);
    assert.equal(q.code, 0, q.stderr);
    assert.deepEqual((JSON.parse(q.stdout.trim()) as { token_ids: number[] }).token_ids, c.greedy.token_ids);
    const bad = await pagewise(['generate', '--model', join(fixturePath('gguf'), 'llama-q256-Q4_K_M'), '--gguf-file', '../x.gguf', '--prompt-ids', '1', ...engineFlags]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--gguf-file must name a file inside/);
  });

  test('--logprobs N --prompt-logprobs N --json: per-token and per-prompt-position logprobs match the golden', async () => {
    const g = loadGolden('llama-tiny').cases[1]!;
    const r = await pagewise([
      'generate', '--model', fixturePath('llama-tiny'), '--prompt-ids', g.prompt_token_ids.join(','), '--max-tokens', '6',
      '--temperature', '0', '--json', '--logprobs', '3', '--prompt-logprobs', '2', ...engineFlags,
    ]);
    assert.equal(r.code, 0, r.stderr);
    type Lp = { id: number; logprob: number; rank: number; top_ids: number[]; top_logprobs: number[] };
    const out = JSON.parse(r.stdout.trim()) as { token_ids: number[]; logprobs: Lp[]; prompt_logprobs: Array<Lp | null> };
    const tol = 1e-2; // BF16 weights and KV cache (fixtures README)
    assert.equal(out.logprobs.length, 6);
    out.logprobs.forEach((lp, i) => {
      assert.equal(lp.id, out.token_ids[i]);
      assert.equal(lp.rank, 1); // greedy
      assert.equal(lp.top_ids.length, 3);
      assert.equal(lp.top_ids[0], lp.id);
      assert.equal(lp.top_logprobs[0], lp.logprob);
      assert.ok(lp.top_logprobs[0]! >= lp.top_logprobs[1]! && lp.top_logprobs[1]! >= lp.top_logprobs[2]!);
      assert.ok(Math.abs(lp.logprob - g.greedy.logprobs![i]!) <= tol * Math.max(1, Math.abs(g.greedy.logits![i]!)), `step ${i}`);
    });
    assert.equal(out.prompt_logprobs.length, g.prompt_token_ids.length);
    assert.equal(out.prompt_logprobs[0], null);
    for (let i = 1; i < g.prompt_token_ids.length; i++) {
      const lp = out.prompt_logprobs[i]!;
      assert.equal(lp.id, g.prompt_token_ids[i]);
      assert.equal(lp.top_ids.length, 2);
      const ref = g.prompt_next_logits[i - 1]! - g.logsumexp[i - 1]!;
      const scale = Math.max(1, Math.abs(g.top_k_logits[i - 1]![0]!));
      assert.ok(Math.abs(lp.logprob - ref) <= tol * scale, `prompt position ${i}`);
      assert.ok(Math.abs(lp.top_logprobs[0]! - (g.top_k_logits[i - 1]![0]! - g.logsumexp[i - 1]!)) <= tol * scale, `prompt position ${i} top-1`);
    }
  });

  test('the demo model works with no download and says its weights are random', async () => {
    const r = await pagewise(['generate', '--prompt', 'hi', '--max-tokens', '5', '--seed', '1', '--json', ...engineFlags]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /RANDOM weights/);
    assert.equal((JSON.parse(r.stdout) as { token_ids: number[] }).token_ids.length, 5);
  });

  test('bad input exits 1 with a clear message', async () => {
    for (const [args, msg] of [
      [['generate', '--prompt', 'a', '--prompt-ids', '1'], /exactly one of --prompt, --prompt-ids or --prompts-file/],
      [['generate', '--prompt-ids', '1,x'], /comma-separated non-negative token ids/],
      [['generate', '--prompt', 'a', '--temperature', '-1', ...engineFlags], /temperature/],
      [['generate', '--prompt', 'a', '--bogus'], /unknown option --bogus/],
      [['generate', '--model', join(tmp, 'nope'), '--prompt', 'a'], /nope/],
      [['frobnicate'], /unknown command "frobnicate"/],
      [['generate', '--prompt', 'a', '--logprobs', '2'], /--logprobs and --prompt-logprobs need --json/],
      [['quantize', '--model', fixturePath('llama-tiny'), '--out', join(tmp, 'x.gguf'), '--type', 'q3_k'], /--type must be one of q8_0, q4_0, q4_k_m, q5_k_m, q6_k/],
      [['quantize', '--model', fixturePath('llama-tiny')], /usage: pagewise quantize/],
      [['fixture', '--preset', 'tiny', '--out', join(tmp, 'y.gguf'), '--format', 'gguf'], /--format gguf needs --type/],
    ] as const) {
      const r = await pagewise([...args]);
      assert.equal(r.code, 1, `${args.join(' ')}: expected exit 1`);
      assert.match(r.stderr, msg);
    }
  });
});

test('pagewise fixture writes a loadable model dir', async () => {
  const out = join(tmp, 'tiny');
  const r = await pagewise(['fixture', '--preset', 'tiny', '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { hidden_size: number };
  assert.equal(cfg.hidden_size, 64);
  const g = await pagewise(['generate', '--model', out, '--prompt', 'hello', '--max-tokens', '3', '--temperature', '0', '--json', ...engineFlags]);
  assert.equal(g.code, 0, g.stderr);
});

test('pagewise quantize writes a GGUF file that parses, with the scheme\'s types', async () => {
  const out = join(tmp, 'qwen2-tiny-q5_k_m.gguf');
  const r = await pagewise(['quantize', '--model', fixturePath('qwen2-tiny'), '--out', out, '--type', 'q5_k_m', '--quiet']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /wrote .*q5_k_m/);
  const g = readTestGguf(out, (type, ne) => ggmlRowBytes(type, ne[0]!) * ne.slice(1).reduce((a, b) => a * b, 1));
  assert.equal(g.version, 3);
  assert.equal(g.meta.get('general.architecture')!.value, 'qwen2');
  assert.equal(g.meta.get('general.file_type')!.value, 17);
  const n = g.meta.get('qwen2.block_count')!.value as number;
  assert.equal(g.tensors.length, 1 + n * 12 + 1); // tied: token_embd, 12 per block (3 biases), output_norm
  // qwen2-tiny's 64-wide rows are not whole Q5_K super-blocks: Q5_1 (llama.cpp's fallback).
  assert.equal(g.tensor('blk.0.ffn_up.weight').type, GgmlType.Q5_1);
});
