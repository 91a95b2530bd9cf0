/**
 * The tokenizer pool's workers live only while there is long work: none at start, started by the
 * first long job (never more than the pool's size), gone after the idle time, started again by the
 * next long job, and encoding exactly as the main thread's tokenizer every time. (What they are for,
 * a long prompt not stalling other streams, is tested in server-production.test.ts.)
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { encodeTexts } from '../src/tokenizer/jobs.js';
import { TokenizerPool } from '../src/tokenizer/pool.js';
import { packTokenizerFiles, PagewiseTokenizer, readTokenizerFiles } from '../src/tokenizer/tokenizer.js';
import { fixturePath } from './helpers/fixtures.js';

const files = readTokenizerFiles(fixturePath('stories260k'));
const tok = PagewiseTokenizer.fromFiles(files);
const text = (n: number, seed: number): string => Array.from({ length: n }, (_, i) => ['Lily', 'saw', 'a', 'big', 'dog', 'and', 'smiled'][(i * seed) % 7]).join(' ');

async function until(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('tokenizer pool workers start on demand and exit when idle', () => {
  let exits = 0; // onWorkerExit calls: the server then has the engine return the worker's freed memory
  const pool = new TokenizerPool(packTokenizerFiles(files), tok, { workers: 2, inlineChars: 100, idleMs: 300, onWorkerExit: () => exits++ });
  after(async () => pool.close());

  test('no worker until a long job; short jobs never start one', async () => {
    assert.equal(pool.liveWorkers, 0);
    assert.deepEqual(await pool.run(encodeTexts(['Hi there'], true)), [tok.encode('Hi there')]);
    assert.equal(pool.liveWorkers, 0);
  });

  test('three long texts at once start two workers (the pool size) and encode as the main thread does', async () => {
    const texts = [text(400, 3), text(500, 5), text(300, 2)];
    const run = pool.run(encodeTexts(texts, true));
    assert.equal(pool.liveWorkers, 2);
    assert.deepEqual(await run, texts.map((t) => tok.encode(t)));
    assert.equal(pool.liveWorkers, 2);
  });

  test('idle workers exit, and the next long job starts one again with the same answers', async () => {
    await until(() => pool.liveWorkers === 0, 5000);
    await until(() => exits === 2, 5000);
    const t = text(700, 4);
    assert.deepEqual(await pool.run(encodeTexts([t], false)), [tok.encode(t, { addSpecialTokens: false })]);
    assert.equal(pool.liveWorkers, 1);
    await until(() => pool.liveWorkers === 0, 5000);
    await until(() => exits === 3, 5000);
  });

  test('a pool of size 0 never starts a worker', async () => {
    const p = new TokenizerPool(packTokenizerFiles(files), tok, { workers: 0, inlineChars: 0 });
    const t = text(200, 3);
    assert.deepEqual(await p.run(encodeTexts([t], true)), [tok.encode(t)]);
    assert.equal(p.liveWorkers, 0);
    await p.close();
  });
});
