/**
 * Hub downloads against a local server, started here, that speaks the Hugging Face Hub's file API
 * the way huggingface.co does: `resolve/<revision>/<path>` with `X-Repo-Commit`, ETags
 * (`X-Linked-Etag` / `X-Linked-Size` on LFS files, which redirect to a CDN on another origin),
 * relative redirects for renamed repositories, 401 / 404 with `X-Error-Code`, and Range requests.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { parseArgs } from '../src/cli/args.js';
import { ENGINE_FLAGS, engineConfigFromFlags } from '../src/cli/engine-flags.js';
import { AsyncEngine } from '../src/engine/async-engine.js';
import { ModelLoadError } from '../src/errors.js';
import { tensorPlan } from '../src/model/fixture/weights-gen.js';
import { writeFixture } from '../src/model/fixture/write-fixture.js';
import { loadModelFiles } from '../src/model/loader/model-dir.js';
import { resolveModel, type DownloadProgress } from '../src/model/loader/resolve.js';
import { WeightStore } from '../src/model/loader/weights.js';

const scratch = mkdtempSync(join(tmpdir(), 'pagewise-hub-'));
let n = 0;
const tempDir = (): string => mkdtempSync(join(scratch, `${n++}-`));
after(() => rmSync(scratch, { recursive: true, force: true }));

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const gitOid = (b: Buffer): string => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
const isLfs = (path: string): boolean => /\.(safetensors|gguf)$/.test(path);
const TOKEN = 'hf_test_token';

interface Repo {
  private?: boolean;
  /** branch or tag → commit */
  refs: Record<string, string>;
  /** commit → files */
  commits: Record<string, Record<string, Buffer>>;
}

interface Seen {
  method: string;
  path: string;
  range: string | null;
  auth: boolean;
}

/** The Hub's file API on 127.0.0.1, its "CDN" on localhost (another origin). */
class FakeHub {
  readonly repos = new Map<string, Repo>();
  seen: Seen[] = [];
  /** LFS blobs (by sha256) whose next download is cut halfway. */
  readonly cutOnce = new Set<string>();
  /** LFS blobs (by sha256) served with wrong bytes. */
  readonly corrupt = new Set<string>();
  private server: Server = createServer((req, res) => this.handle(req, res));
  port = 0;

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    await new Promise<void>((ok) => this.server.listen(0, '127.0.0.1', ok));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((ok) => this.server.close(ok));
  }

  private blobs(): Map<string, Buffer> {
    const m = new Map<string, Buffer>();
    for (const r of this.repos.values()) for (const files of Object.values(r.commits)) for (const [p, b] of Object.entries(files)) if (isLfs(p)) m.set(sha256(b), b);
    return m;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    this.seen.push({ method: req.method ?? '', path: decodeURIComponent(url.pathname), range: req.headers.range ?? null, auth: req.headers.authorization !== undefined });
    // Sizes are the files' own: a client must not ask for a compressed transfer.
    // (fetch adds its own "identity" to a Range request: "identity, identity".)
    if (!(req.headers['accept-encoding'] ?? '').split(',').every((t) => t.trim() === 'identity')) {
      res.writeHead(400);
      return void res.end('accept-encoding must be identity');
    }
    const fail = (status: number, code: string): void => {
      res.writeHead(status, { 'x-error-code': code, 'content-type': 'application/json' });
      res.end(req.method === 'HEAD' ? undefined : JSON.stringify({ error: code }));
    };
    const cdn = /^\/cdn\/([0-9a-f]{64})$/.exec(url.pathname);
    if (cdn) return this.cdn(req, res, cdn[1]!);
    const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (!m) return fail(404, 'NotFound');
    const [repoId, rev, path] = [m[1]!, decodeURIComponent(m[2]!), m[3]!.split('/').map(decodeURIComponent).join('/')];
    // A renamed repository: the Hub redirects its old name with a relative Location.
    if (repoId === 'old-org/name') {
      res.writeHead(307, { location: `/org/name/resolve/${m[2]}/${m[3]}` });
      return void res.end();
    }
    const repo = this.repos.get(repoId);
    const authorized = req.headers.authorization === `Bearer ${TOKEN}`;
    if (!repo || (repo.private && !authorized)) return fail(authorized ? 404 : 401, 'RepoNotFound');
    const commit = repo.refs[rev] ?? (repo.commits[rev] ? rev : undefined);
    if (commit === undefined) return fail(404, 'RevisionNotFound');
    const body = repo.commits[commit]![path];
    if (!body) return fail(404, 'EntryNotFound');
    if (isLfs(path)) {
      const sha = sha256(body);
      res.writeHead(302, {
        location: `http://localhost:${this.port}/cdn/${sha}`,
        'x-repo-commit': commit,
        'x-linked-etag': `"${sha}"`,
        'x-linked-size': String(body.length),
        etag: `"${gitOid(Buffer.from(`pointer ${sha}`))}"`,
      });
      return void res.end();
    }
    res.writeHead(200, { 'x-repo-commit': commit, etag: `W/"${gitOid(body)}"`, 'content-length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  private cdn(req: IncomingMessage, res: ServerResponse, sha: string): void {
    let body = this.blobs().get(sha);
    if (!body) {
      res.writeHead(404);
      return void res.end();
    }
    if (this.corrupt.has(sha)) body = Buffer.from(body.map((x) => x ^ 1));
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const from = range ? Number(range[1]) : 0;
    const part = body.subarray(from);
    res.writeHead(range ? 206 : 200, { 'content-length': part.length, ...(range ? { 'content-range': `bytes ${from}-${body.length - 1}/${body.length}` } : {}) });
    if (this.cutOnce.delete(sha)) {
      res.write(part.subarray(0, part.length >> 1), () => setTimeout(() => res.destroy(), 20));
      return;
    }
    res.end(part);
  }
}

async function rejectsLoad(p: Promise<unknown>, ...fragments: string[]): Promise<ModelLoadError> {
  let caught: unknown;
  await assert.rejects(p, (e: unknown) => {
    caught = e;
    return true;
  });
  assert.ok(caught instanceof ModelLoadError, `expected ModelLoadError, got ${String(caught)}`);
  for (const f of fragments) assert.ok(caught.message.includes(f), `message "${caught.message}" lacks "${f}"`);
  return caught;
}

const ENV_KEYS = ['HF_ENDPOINT', 'HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_HUB_OFFLINE', 'HF_HOME', 'HF_HUB_CACHE', 'HF_TOKEN_PATH'];

describe('hub downloads', () => {
  const hub = new FakeHub();
  const saved = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
  const commitA = 'a'.repeat(40);
  const commitB = 'b'.repeat(40);
  let model: Record<string, Buffer> = {};
  const quiet = (): void => undefined;

  before(async () => {
    const src = tempDir();
    await writeFixture('tiny', src);
    for (const f of readdirSync(src)) model[f] = readFileSync(join(src, f));
    const extras = { 'README.md': Buffer.from('# card'), 'pytorch_model.bin': Buffer.from('pickled weights: never fetched'), 'original/consolidated.pth': Buffer.from('neither') };
    // v1.0 (commit A) and main (commit B) differ in their config.
    const oldConfig = Buffer.from(JSON.stringify({ ...JSON.parse(model['config.json']!.toString()), max_position_embeddings: 64 }));
    hub.repos.set('org/name', { refs: { main: commitB, 'v1.0': commitA }, commits: { [commitA]: { ...model, ...extras, 'config.json': oldConfig }, [commitB]: { ...model, ...extras } } });
    hub.repos.set('org/private', { private: true, refs: { main: commitA }, commits: { [commitA]: model } });
    const gguf = (tag: string): Buffer => Buffer.from(`GGUF ${tag} `.repeat(1000));
    hub.repos.set('org/gguf', {
      refs: { main: commitA },
      commits: {
        [commitA]: {
          'm-Q4_K_M.gguf': gguf('q4'),
          'm-Q8_0.gguf': gguf('q8'),
          's-00001-of-00002.gguf': gguf('s1'),
          's-00002-of-00002.gguf': gguf('s2'),
          'tokenizer_config.json': Buffer.from('{}'),
          'README.md': Buffer.from('# gguf'),
        },
      },
    });
    await hub.start();
    process.env['HF_ENDPOINT'] = hub.endpoint;
    for (const k of ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_HUB_OFFLINE', 'HF_HUB_CACHE']) delete process.env[k];
    // No token file from this machine's own login.
    process.env['HF_TOKEN_PATH'] = join(scratch, 'no-token');
  });
  afterEach(() => {
    delete process.env['HF_TOKEN'];
    delete process.env['HF_HUB_OFFLINE'];
  });
  after(async () => {
    await hub.stop();
    for (const k of ENV_KEYS) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  });

  test('org/name@main lands in the Hugging Face cache layout, pinned to its commit; then the cache answers alone', async () => {
    const cache = tempDir();
    hub.seen = [];
    const progress: DownloadProgress[] = [];
    const dir = await resolveModel('org/name', { cacheDir: cache, onProgress: (p) => progress.push(p) });
    const repoDir = join(cache, 'models--org--name');
    assert.equal(dir, join(repoDir, 'snapshots', commitB));
    assert.equal(readFileSync(join(repoDir, 'refs', 'main'), 'utf8'), commitB);
    // Relative links to blobs named by their ETag: the sha256 of LFS files, the git oid of others.
    assert.equal(readlinkSync(join(dir, 'model.safetensors')), join('..', '..', 'blobs', sha256(model['model.safetensors']!)));
    assert.equal(readlinkSync(join(dir, 'config.json')), join('..', '..', 'blobs', gitOid(model['config.json']!)));
    const { config } = loadModelFiles(dir);
    assert.equal(WeightStore.open(dir).names().length, tensorPlan(config).length);
    // Only what the engine reads; every file after the first asked for at the pinned commit.
    assert.ok(!hub.seen.some((s) => /pytorch_model|README|original/.test(s.path)), hub.seen.map((s) => s.path).join('\n'));
    const resolves = hub.seen.filter((s) => s.path.includes('/resolve/'));
    assert.ok(resolves[0]!.path.includes('/resolve/main/config.json'));
    assert.ok(resolves.slice(1).every((s) => s.path.includes(`/resolve/${commitB}/`)));
    // The token never went to the CDN, and LFS bytes came from it.
    assert.ok(hub.seen.some((s) => s.path.startsWith('/cdn/') && s.method === 'GET'));
    assert.ok(hub.seen.filter((s) => s.path.startsWith('/cdn/')).every((s) => !s.auth));
    const last = progress.at(-1)!;
    assert.equal(last.loadedBytes, last.totalBytes);
    assert.equal(last.fileIndex, last.fileCount);
    assert.ok(progress.some((p) => p.file === 'model.safetensors' && p.loadedBytes < p.totalBytes));

    hub.seen = [];
    assert.equal(await resolveModel('org/name', { cacheDir: cache, onProgress: quiet }), dir);
    process.env['HF_HUB_OFFLINE'] = '1';
    assert.equal(await resolveModel('org/name', { cacheDir: cache }), dir);
    assert.deepEqual(hub.seen, [], 'a complete snapshot needs no request');
  });

  test('--revision: a tag and a commit hash get their own snapshots; blobs are shared', async () => {
    const cache = tempDir();
    await resolveModel('org/name', { cacheDir: cache, onProgress: quiet });
    const tagged = await resolveModel('org/name', { cacheDir: cache, revision: 'v1.0', onProgress: quiet });
    const repoDir = join(cache, 'models--org--name');
    assert.equal(tagged, join(repoDir, 'snapshots', commitA));
    assert.equal(readFileSync(join(repoDir, 'refs', 'v1.0'), 'utf8'), commitA);
    assert.equal(loadModelFiles(tagged).config.maxPositionEmbeddings, 64);
    // Same weights in both commits: one blob.
    assert.equal(readdirSync(join(repoDir, 'blobs')).filter((b) => b === sha256(model['model.safetensors']!)).length, 1);
    hub.seen = [];
    assert.equal(await resolveModel('org/name', { cacheDir: cache, revision: commitA, onProgress: quiet }), tagged);
    assert.deepEqual(hub.seen, []);
    await rejectsLoad(resolveModel('org/name', { cacheDir: cache, revision: 'nope', onProgress: quiet }), 'has no revision "nope"');
    await rejectsLoad(resolveModel('org/name', { cacheDir: cache, revision: '../x' }), '--revision must be');
  });

  test('an interrupted download resumes where it stopped (Range), and the file is checked', async () => {
    const cache = tempDir();
    const sha = sha256(model['model.safetensors']!);
    hub.cutOnce.add(sha);
    await rejectsLoad(resolveModel('org/name', { cacheDir: cache, onProgress: quiet }), 'could not download org/name');
    const partial = join(cache, 'models--org--name', 'blobs', `${sha}.incomplete`);
    const have = statSync(partial).size;
    assert.ok(have > 0 && have < model['model.safetensors']!.length, `partial file of ${have} bytes`);
    hub.seen = [];
    const progress: DownloadProgress[] = [];
    const dir = await resolveModel('org/name', { cacheDir: cache, onProgress: (p) => progress.push(p) });
    const gets = hub.seen.filter((s) => s.path === `/cdn/${sha}`);
    assert.deepEqual(gets.map((s) => s.range), [`bytes=${have}-`]);
    assert.ok(readFileSync(join(dir, 'model.safetensors')).equals(model['model.safetensors']!));
    assert.ok(!existsSync(partial));
    assert.equal(progress.at(-1)!.loadedBytes, progress.at(-1)!.totalBytes);

    // Bytes that do not hash to the ETag never become a blob.
    const other = tempDir();
    hub.corrupt.add(sha);
    try {
      await rejectsLoad(resolveModel('org/name', { cacheDir: other, onProgress: quiet }), 'does not match');
    } finally {
      hub.corrupt.delete(sha);
    }
    assert.ok(!readdirSync(join(other, 'models--org--name', 'blobs')).some((b) => b.startsWith(sha)));
  });

  test('HF_TOKEN opens a private repository and goes to the Hub only; 401 and 404 are clear errors', async () => {
    const cache = tempDir();
    const e = await rejectsLoad(resolveModel('org/private', { cacheDir: cache, onProgress: quiet }), 'HTTP 401', 'HF_TOKEN');
    assert.ok(!e.message.includes(TOKEN));
    process.env['HF_TOKEN'] = TOKEN;
    hub.seen = [];
    const dir = await resolveModel('org/private', { cacheDir: cache, onProgress: quiet });
    assert.ok(existsSync(join(dir, 'model.safetensors')));
    assert.ok(hub.seen.filter((s) => s.path.includes('/resolve/')).every((s) => s.auth));
    assert.ok(hub.seen.filter((s) => s.path.startsWith('/cdn/')).every((s) => !s.auth));
    await rejectsLoad(resolveModel('org/missing', { cacheDir: cache, onProgress: quiet }), 'could not download org/missing', 'HTTP 404', 'not found');
    delete process.env['HF_TOKEN'];
    await rejectsLoad(resolveModel('org/missing', { cacheDir: cache, onProgress: quiet }), 'HTTP 401');
    // The token file huggingface-cli login writes works too.
    const home = tempDir();
    process.env['HF_TOKEN_PATH'] = join(home, 'token');
    writeFileSync(join(home, 'token'), `${TOKEN}\n`);
    try {
      assert.equal(await resolveModel('org/private', { cacheDir: tempDir(), onProgress: quiet }).then((d) => existsSync(join(d, 'config.json'))), true);
    } finally {
      process.env['HF_TOKEN_PATH'] = join(scratch, 'no-token');
    }
  });

  test('the engine starts from org/name at --revision (flags → EngineConfig → download → load)', async () => {
    const cfg = engineConfigFromFlags(parseArgs(['--model', 'org/name', '--revision', 'v1.0', '--threads', '1', '--kv-cache-memory', '8MiB'], ENGINE_FLAGS));
    assert.equal(cfg.revision, 'v1.0');
    process.env['HF_HUB_CACHE'] = tempDir();
    const progress: DownloadProgress[] = [];
    try {
      const engine = await AsyncEngine.start({ ...cfg, log: () => undefined, onDownloadProgress: (p) => progress.push(p), onLoadProgress: () => undefined });
      try {
        assert.equal(engine.info.modelDir, join(process.env['HF_HUB_CACHE']!, 'models--org--name', 'snapshots', commitA));
        assert.equal(engine.info.maxModelLen, 64, "v1.0's config");
        assert.ok(progress.length > 0);
      } finally {
        await engine.shutdown();
      }
    } finally {
      delete process.env['HF_HUB_CACHE'];
    }
  });

  test('a renamed repository: the relative redirect is followed', async () => {
    const cache = tempDir();
    const dir = await resolveModel('old-org/name', { cacheDir: cache, onProgress: quiet });
    assert.equal(dir, join(cache, 'models--old-org--name', 'snapshots', commitB));
    assert.ok(existsSync(join(dir, 'model.safetensors')));
  });

  test('--gguf-file: only that file (every part of a split one) and the config files the repository has', async () => {
    const cache = tempDir();
    hub.seen = [];
    const file = await resolveModel('org/gguf', { cacheDir: cache, ggufFile: 'm-Q4_K_M.gguf', onProgress: quiet });
    const snapshot = join(cache, 'models--org--gguf', 'snapshots', commitA);
    assert.equal(file, join(snapshot, 'm-Q4_K_M.gguf'));
    assert.ok(readFileSync(file).equals(hub.repos.get('org/gguf')!.commits[commitA]!['m-Q4_K_M.gguf']!));
    assert.deepEqual(readdirSync(snapshot).sort(), ['m-Q4_K_M.gguf', 'tokenizer_config.json']);
    assert.ok(!hub.seen.some((s) => /Q8_0|README|safetensors/.test(s.path)));

    const split = await resolveModel('org/gguf', { cacheDir: cache, ggufFile: 's-00001-of-00002.gguf', onProgress: quiet });
    assert.equal(split, join(snapshot, 's-00001-of-00002.gguf'));
    assert.ok(existsSync(join(snapshot, 's-00002-of-00002.gguf')));
    process.env['HF_HUB_OFFLINE'] = '1';
    hub.seen = [];
    assert.equal(await resolveModel('org/gguf', { cacheDir: cache, ggufFile: 'm-Q4_K_M.gguf' }), file);
    await rejectsLoad(resolveModel('org/gguf', { cacheDir: cache, ggufFile: 'm-Q8_0.gguf' }), 'offline', 'm-Q8_0.gguf');
    assert.deepEqual(hub.seen, []);
    delete process.env['HF_HUB_OFFLINE'];
    await rejectsLoad(resolveModel('org/gguf', { cacheDir: cache, ggufFile: 'nope.gguf', onProgress: quiet }), 'has no file nope.gguf');
    await rejectsLoad(resolveModel('org/gguf', { cacheDir: cache, ggufFile: '../x.gguf' }), '--gguf-file must name a file inside');
    // Without --gguf-file a GGUF repository is refused with the hint.
    await rejectsLoad(resolveModel('org/gguf', { cacheDir: cache, onProgress: quiet }), 'no config.json', '--gguf-file');
  });
});
