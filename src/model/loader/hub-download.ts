/**
 * Download the files a model needs from the Hugging Face Hub into the shared hub cache layout
 * (see hf-cache.ts), speaking the Hub's file API as huggingface_hub does:
 *
 * - `HEAD {endpoint}/{repo}/resolve/{revision}/{path}` gives a file's commit (`X-Repo-Commit`), its
 *   ETag (`X-Linked-Etag` for LFS files, else `ETag`: the blob's name in the cache) and its size
 *   (`X-Linked-Size`, else `Content-Length`). Relative redirects (a renamed repository) are
 *   followed; an absolute one is where an LFS file's bytes live (a CDN), and the metadata is on the
 *   redirect itself.
 * - The revision is pinned to the commit of the first file, and every other file is asked for at
 *   that commit, so a push during the download cannot mix two versions.
 * - `GET` fetches the bytes into `blobs/<etag>.incomplete`; an interrupted download resumes from
 *   there with a `Range` request. The token (HF_TOKEN) goes to the Hub only, never to another
 *   origin a redirect leads to. Sizes are checked, and LFS files against their sha256.
 *
 * Only what the engine reads is fetched: configs, tokenizer files and the safetensors weights (never
 * .bin / .pth / .gguf copies of the same weights), or with `ggufFile` that GGUF file (all parts of a
 * split one) and the configs and tokenizer files the repository has.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { TtyProgressBar } from '../../shared/progress-bar.js';
import { COMMIT_HASH, ggufSplitParts, repoCacheDir } from './hf-cache.js';

/** Byte progress of a download, across all files of the model. */
export interface DownloadProgress {
  repo: string;
  /** File being downloaded now. */
  file: string;
  fileIndex: number;
  fileCount: number;
  loadedBytes: number;
  totalBytes: number;
}

export interface HubDownloadOptions {
  cacheDir: string;
  revision: string;
  /** A GGUF file of the repository: the model is that file (and its split parts). */
  ggufFile?: string;
  onProgress?: (p: DownloadProgress) => void;
}

/** Files read beside the weights when the repository has them. */
const CONFIG_FILES = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'chat_template.jinja',
  'chat_template.json',
];

const DEFAULT_ENDPOINT = 'https://huggingface.co';
const MAX_REDIRECTS = 5;

/** A failure the Hub reported, with its status and reason (`X-Error-Code`). */
export class HubError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** The token, as huggingface_hub finds it: HF_TOKEN, else the file `huggingface-cli login` wrote. */
function hubToken(): string | null {
  const env = process.env['HF_TOKEN'] ?? process.env['HUGGING_FACE_HUB_TOKEN'];
  if (env) return env.trim();
  const home = process.env['HF_HOME'] ?? join(process.env['XDG_CACHE_HOME'] || join(homedir(), '.cache'), 'huggingface');
  const file = process.env['HF_TOKEN_PATH'] ?? join(home, 'token');
  try {
    return readFileSync(file, 'utf8').trim() || null;
  } catch {
    return null;
  }
}

interface Hub {
  endpoint: string;
  token: string | null;
}

/** What the Hub says about one file at one revision. */
interface FileMeta {
  path: string;
  commit: string | null;
  etag: string;
  size: number;
}

/** `W/"abc"` → `abc`. */
function normalizeEtag(v: string | null): string | null {
  if (v === null) return null;
  const e = v.replace(/^W\//, '').replace(/^"|"$/g, '');
  return e.length > 0 ? e : null;
}

function resolveUrl(hub: Hub, repo: string, revision: string, path: string): string {
  return `${hub.endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${path.split('/').map(encodeURIComponent).join('/')}`;
}

/** The Authorization header for `url`: only for the Hub's own origin. */
function authFor(hub: Hub, url: string): Record<string, string> {
  return hub.token !== null && new URL(url).origin === new URL(hub.endpoint).origin ? { authorization: `Bearer ${hub.token}` } : {};
}

/** A readable error out of an error status. */
function hubError(res: Response, repo: string, revision: string, path: string): HubError {
  const code = res.headers.get('x-error-code');
  const what = `${repo}@${revision}/${path}`;
  if (res.status === 401 || (res.status === 404 && code === 'RepoNotFound')) {
    return new HubError(`HTTP ${res.status}: repository ${repo} not found, or it is private and needs a token (set HF_TOKEN)`, res.status);
  }
  if (res.status === 403) return new HubError(`HTTP 403: no access to ${repo}${code === 'GatedRepo' ? ' (a gated model: ask for access on its Hub page, then set HF_TOKEN)' : ''}`, 403);
  if (res.status === 404 && code === 'RevisionNotFound') return new HubError(`HTTP 404: ${repo} has no revision "${revision}"`, 404);
  return new HubError(`HTTP ${res.status} ${res.statusText} for ${what}`, res.status);
}

/**
 * Request `url` following redirects by hand: relative ones (same Hub) always, absolute ones only
 * when `followAbsolute` (GET: the CDN holding an LFS file; HEAD stops there, the metadata is on the
 * redirect). The token is sent to the Hub's origin only.
 */
async function request(hub: Hub, url: string, init: { method: 'HEAD' | 'GET'; headers?: Record<string, string>; followAbsolute: boolean }): Promise<Response> {
  let current = url;
  for (let hop = 0; ; hop++) {
    // identity: sizes and byte ranges are of the file itself, never of a compressed transfer.
    const headers = { 'accept-encoding': 'identity', ...init.headers, ...authFor(hub, current) };
    const res = await fetch(current, { method: init.method, redirect: 'manual', headers });
    const location = res.headers.get('location');
    if (res.status < 300 || res.status >= 400 || location === null) return res;
    const relativeLocation = !/^[a-z][a-z0-9+.-]*:/i.test(location) && !location.startsWith('//');
    if (!relativeLocation && !init.followAbsolute) return res;
    if (hop === MAX_REDIRECTS) throw new HubError(`too many redirects from ${url}`, res.status);
    await res.body?.cancel();
    current = new URL(location, current).href;
  }
}

/** HEAD a file: its metadata, or null when the repository has no such file. */
async function headFile(hub: Hub, repo: string, revision: string, path: string): Promise<FileMeta | null> {
  const res = await request(hub, resolveUrl(hub, repo, revision, path), { method: 'HEAD', followAbsolute: false });
  if (res.status === 404 && res.headers.get('x-error-code') === 'EntryNotFound') return null;
  if (res.status >= 400) throw hubError(res, repo, revision, path);
  const etag = normalizeEtag(res.headers.get('x-linked-etag') ?? res.headers.get('etag'));
  const size = Number(res.headers.get('x-linked-size') ?? res.headers.get('content-length'));
  if (etag === null || !Number.isSafeInteger(size) || size < 0) throw new HubError(`the Hub sent no ETag or size for ${repo}@${revision}/${path}`, res.status);
  return { path, commit: res.headers.get('x-repo-commit'), etag, size };
}

/**
 * Another process downloading the same blob holds `<blob>.lock` (created exclusively, holding its
 * pid); we wait for it, or take over a lock whose process is gone.
 */
async function withBlobLock<T>(blob: string, fn: () => Promise<T>): Promise<T> {
  const lock = `${blob}.lock`;
  for (;;) {
    try {
      const h = await open(lock, 'wx');
      await h.writeFile(String(process.pid));
      await h.close();
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number((await readFile(lock, 'utf8').catch(() => '')).trim());
      let alive = false;
      if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid) {
        try {
          process.kill(pid, 0);
          alive = true;
        } catch (err) {
          alive = (err as NodeJS.ErrnoException).code === 'EPERM';
        }
      }
      if (alive) await sleep(200);
      else await rm(lock, { force: true });
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { force: true });
  }
}

/** sha256 of a file's first bytes (what a resumed download already has). */
async function hashPrefix(path: string, h: Hash): Promise<void> {
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
}

/**
 * Fetch one file's bytes into `blob` (resuming `<blob>.incomplete`), checking its size and, for LFS
 * files (named by their sha256), its hash.
 */
async function fetchBlob(hub: Hub, repo: string, commit: string, meta: FileMeta, blob: string, onBytes: (n: number) => void): Promise<void> {
  const partial = `${blob}.incomplete`;
  let have = existsSync(partial) ? statSync(partial).size : 0;
  if (have > meta.size) {
    await rm(partial, { force: true });
    have = 0;
  }
  const url = resolveUrl(hub, repo, commit, meta.path);
  const res = await request(hub, url, { method: 'GET', followAbsolute: true, headers: have > 0 ? { range: `bytes=${have}-` } : {} });
  if (res.status !== 200 && res.status !== 206) throw hubError(res, repo, commit, meta.path);
  if (res.status === 200 && have > 0) have = 0; // the server sent it all again: start over
  if (!res.body) throw new HubError(`no body for ${url}`, res.status);
  const isSha256 = /^[0-9a-f]{64}$/.test(meta.etag);
  const hash = isSha256 ? createHash('sha256') : null;
  if (hash && have > 0) await hashPrefix(partial, hash);
  onBytes(have);
  let received = have;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      received += chunk.byteLength;
      hash?.update(chunk);
      onBytes(chunk.byteLength);
      cb(null, chunk);
    },
  });
  await pipeline(Readable.fromWeb(res.body as Parameters<typeof Readable.fromWeb>[0]), counter, createWriteStream(partial, { flags: have > 0 ? 'a' : 'w' }));
  if (received !== meta.size) throw new HubError(`${meta.path}: received ${received} bytes, the Hub lists ${meta.size}`, res.status);
  if (hash) {
    const got = hash.digest('hex');
    if (got !== meta.etag) {
      await rm(partial, { force: true });
      throw new HubError(`${meta.path}: sha256 ${got} does not match the Hub's ${meta.etag}`, res.status);
    }
  }
  await rename(partial, blob);
}

/** Which files to fetch: the metadata of each, the revision pinned to one commit. */
async function plan(hub: Hub, repo: string, revision: string, ggufFile: string | undefined): Promise<{ commit: string; files: FileMeta[] }> {
  // The first file pins the commit; everything else is asked for at that commit.
  const first = ggufFile ?? 'config.json';
  const head = await headFile(hub, repo, revision, first);
  if (head === null) {
    throw new HubError(
      ggufFile !== undefined
        ? `${repo}@${revision} has no file ${ggufFile} (--gguf-file)`
        : `${repo}@${revision} has no config.json (is it a transformers model? for a GGUF repository pass --gguf-file)`,
      404,
    );
  }
  const commit = head.commit ?? (COMMIT_HASH.test(revision) ? revision : null);
  if (commit === null || !COMMIT_HASH.test(commit)) throw new HubError(`the Hub gave no commit hash for ${repo}@${revision}`, 200);
  const at = (path: string) => headFile(hub, repo, commit, path);
  const optional = (await Promise.all(CONFIG_FILES.filter((p) => p !== first).map(at))).filter((m): m is FileMeta => m !== null);
  if (ggufFile !== undefined) {
    const parts = await Promise.all(ggufSplitParts(ggufFile).filter((p) => p !== ggufFile).map(async (p) => (await at(p)) ?? Promise.reject(new HubError(`${repo} has no ${p} (a part of ${ggufFile})`, 404))));
    return { commit, files: [head, ...parts, ...optional] };
  }
  const index = await at('model.safetensors.index.json');
  if (index === null) {
    const single = await at('model.safetensors');
    if (single === null) {
      throw new HubError(`${repo} has no model.safetensors or model.safetensors.index.json (Pagewise loads safetensors weights; for a GGUF file pass --gguf-file)`, 404);
    }
    return { commit, files: [head, ...optional, single] };
  }
  return { commit, files: [head, ...optional, index] };
}

/**
 * Download `repoId` at `opts.revision` into the cache and return its snapshot directory.
 * Throws whatever the network or the Hub throws; the caller wraps it in a user-facing error.
 */
export async function downloadToHubCache(repoId: string, opts: HubDownloadOptions): Promise<string> {
  const hub: Hub = { endpoint: (process.env['HF_ENDPOINT'] || DEFAULT_ENDPOINT).replace(/\/+$/, ''), token: hubToken() };
  const { commit, files } = await plan(hub, repoId, opts.revision, opts.ggufFile);
  const repoDir = repoCacheDir(opts.cacheDir, repoId);
  const snapshot = join(repoDir, 'snapshots', commit);
  await mkdir(join(repoDir, 'blobs'), { recursive: true });

  /** Put one file into the cache (its blob, unless already there) and link it into the snapshot. */
  const store = async (meta: FileMeta, onBytes: (n: number) => void): Promise<void> => {
    const blob = join(repoDir, 'blobs', meta.etag);
    if (!existsSync(blob)) {
      await withBlobLock(blob, async () => {
        // Another process may have finished it while we waited.
        if (!existsSync(blob)) await fetchBlob(hub, repoId, commit, meta, blob, onBytes);
      });
    }
    const pointer = join(snapshot, meta.path);
    await mkdir(dirname(pointer), { recursive: true });
    await rm(pointer, { force: true });
    // Relative links, as huggingface_hub makes them, keep the cache movable.
    await symlink(relative(dirname(pointer), blob), pointer);
  };

  // A sharded checkpoint: the index (small, fetched first) names the shards.
  let all = files;
  const indexMeta = files.find((f) => f.path === 'model.safetensors.index.json');
  if (indexMeta) {
    await store(indexMeta, () => undefined);
    const index = JSON.parse(await readFile(join(snapshot, indexMeta.path), 'utf8')) as { weight_map?: Record<string, string> };
    const shards = await Promise.all(
      [...new Set(Object.values(index.weight_map ?? {}))].map(
        async (p) => (await headFile(hub, repoId, commit, p)) ?? Promise.reject(new HubError(`${repoId} has no ${p} (named by model.safetensors.index.json)`, 404)),
      ),
    );
    all = [...files, ...shards];
  }

  const progress: DownloadProgress = {
    repo: repoId,
    file: '',
    fileIndex: 0,
    fileCount: all.length,
    loadedBytes: 0,
    totalBytes: all.reduce((s, f) => s + f.size, 0),
  };
  const report = (): void => opts.onProgress?.({ ...progress });
  for (const meta of all) {
    progress.file = meta.path;
    report();
    const before = progress.loadedBytes;
    await store(meta, (n) => {
      progress.loadedBytes += n;
      report();
    });
    // Files already in the cache count as loaded at once.
    progress.loadedBytes = before + meta.size;
    progress.fileIndex++;
    report();
  }
  if (!COMMIT_HASH.test(opts.revision)) {
    // A branch name may hold slashes (refs/feature/x), as in huggingface_hub's cache.
    const ref = join(repoDir, 'refs', opts.revision);
    await mkdir(dirname(ref), { recursive: true });
    await writeFile(ref, commit);
  }
  return snapshot;
}

function fmtBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  return `${(n / 1e3).toFixed(0)} kB`;
}

/** Download progress on stderr: a bar redrawn in place on a terminal, one line per file otherwise. */
export function stderrProgressBar(): (p: DownloadProgress) => void {
  let bar: TtyProgressBar | null = null;
  let lastFile = -1;
  return (p) => {
    bar ??= new TtyProgressBar(`downloading ${p.repo}`);
    const done = p.fileIndex === p.fileCount;
    if (bar.enabled) {
      const detail = `${fmtBytes(p.loadedBytes)}/${fmtBytes(p.totalBytes)}${done ? '' : ` ${p.file}`}`;
      if (done) bar.finish(detail);
      else bar.update(p.totalBytes > 0 ? p.loadedBytes / p.totalBytes : 0, detail);
    } else if (p.fileIndex !== lastFile && !done) {
      lastFile = p.fileIndex;
      process.stderr.write(`downloading ${p.repo}: ${p.file} (${p.fileIndex + 1}/${p.fileCount})\n`);
    }
  };
}
