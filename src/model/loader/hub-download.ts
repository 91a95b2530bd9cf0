/**
 * Download the files a model needs from the Hugging Face Hub into the shared hub cache layout
 * (see hf-cache.ts), with progress. Only what the engine reads is fetched: configs, tokenizer
 * files and the safetensors weights (never .bin / .pth / .gguf copies of the same weights).
 */
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { HUB_URL, listFiles, modelInfo, type ListFileEntry } from '@huggingface/hub';
import { COMMIT_HASH, repoCacheDir } from './hf-cache.js';

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
  onProgress?: (p: DownloadProgress) => void;
}

const CONFIG_FILES = new Set([
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'chat_template.jinja',
  'chat_template.json',
]);

function credentials(): { hubUrl: string; accessToken?: string } {
  const token = process.env['HF_TOKEN'] ?? process.env['HUGGING_FACE_HUB_TOKEN'];
  return { hubUrl: process.env['HF_ENDPOINT'] ?? HUB_URL, ...(token ? { accessToken: token } : {}) };
}

/** Cache key of a file, as huggingface_hub names blobs: the LFS sha256 for large files, else the git oid. */
function etagOf(f: ListFileEntry): string {
  const etag = f.lfs?.oid ?? f.xetHash ?? f.oid;
  if (!etag) throw new Error(`the Hub listing gives no hash for ${f.path}`);
  return etag;
}

/** Which of the repo's top-level files to fetch (the index, when present, names the shards). */
function chooseFiles(files: Map<string, ListFileEntry>, index: { weight_map?: Record<string, string> } | null): string[] {
  const chosen = [...files.keys()].filter((p) => CONFIG_FILES.has(p));
  if (index) {
    chosen.push('model.safetensors.index.json', ...new Set(Object.values(index.weight_map ?? {})));
  } else if (files.has('model.safetensors')) {
    chosen.push('model.safetensors');
  }
  return chosen;
}

/**
 * Download `repoId` at `opts.revision` into the cache and return its snapshot directory.
 * Throws whatever the network or the Hub throws; the caller wraps it in a user-facing error.
 */
export async function downloadToHubCache(repoId: string, opts: HubDownloadOptions): Promise<string> {
  const { hubUrl, accessToken } = credentials();
  const cred = { hubUrl, ...(accessToken ? { accessToken } : {}) };
  // Pin the revision to a commit first so every file comes from the same one.
  const commit = COMMIT_HASH.test(opts.revision)
    ? opts.revision
    : (await modelInfo({ name: repoId, revision: opts.revision, additionalFields: ['sha'], ...cred })).sha;
  if (typeof commit !== 'string' || !COMMIT_HASH.test(commit)) throw new Error(`the Hub gave no commit hash for revision "${opts.revision}"`);

  const files = new Map<string, ListFileEntry>();
  for await (const f of listFiles({ repo: repoId, revision: commit, ...cred })) if (f.type === 'file') files.set(f.path, f);
  if (!files.has('config.json')) throw new Error(`the repository has no config.json (is it a transformers model?)`);
  if (!files.has('model.safetensors') && !files.has('model.safetensors.index.json')) {
    throw new Error('the repository has no model.safetensors or model.safetensors.index.json (Pagewise loads safetensors weights only)');
  }

  const repoDir = repoCacheDir(opts.cacheDir, repoId);
  const snapshot = join(repoDir, 'snapshots', commit);
  const fetchOne = async (path: string, onBytes: (n: number) => void): Promise<void> => {
    const entry = files.get(path);
    if (!entry) throw new Error(`the repository lists no ${path}`);
    const blob = join(repoDir, 'blobs', etagOf(entry));
    const pointer = join(snapshot, path);
    await mkdir(dirname(blob), { recursive: true });
    await mkdir(dirname(pointer), { recursive: true });
    if (!existsSync(blob)) {
      // A plain fetch of the resolve URL (the Hub redirects LFS/xet files to its CDN): the hub
      // library's blob stream never ends when the server answers an error status.
      const url = `${hubUrl}/${repoId}/resolve/${commit}/${path.split('/').map(encodeURIComponent).join('/')}`;
      const resp = await fetch(url, accessToken ? { headers: { Authorization: `Bearer ${accessToken}` } } : {});
      if (!resp.ok || !resp.body) throw new Error(`HTTP ${resp.status} ${resp.statusText} for ${url}`);
      // A per-process temp name: two processes fetching the same blob must not interleave writes.
      const partial = `${blob}.${process.pid}.incomplete`;
      let received = 0;
      const counter = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          received += chunk.byteLength;
          onBytes(chunk.byteLength);
          cb(null, chunk);
        },
      });
      try {
        await pipeline(Readable.fromWeb(resp.body as Parameters<typeof Readable.fromWeb>[0]), counter, createWriteStream(partial));
        if (received !== entry.size) throw new Error(`${path}: received ${received} bytes, the Hub lists ${entry.size}`);
        await rename(partial, blob);
      } finally {
        await rm(partial, { force: true });
      }
    }
    await rm(pointer, { force: true });
    // Relative links, as huggingface_hub makes them, keep the cache movable.
    await symlink(relative(dirname(pointer), blob), pointer);
  };

  const progress = { repo: repoId, file: '', fileIndex: 0, fileCount: 0, loadedBytes: 0, totalBytes: 0 };
  const report = () => opts.onProgress?.({ ...progress });
  // The index must be local before we know which shards to fetch.
  let index: { weight_map?: Record<string, string> } | null = null;
  if (files.has('model.safetensors.index.json')) {
    await fetchOne('model.safetensors.index.json', () => undefined);
    index = JSON.parse(await readFile(join(snapshot, 'model.safetensors.index.json'), 'utf8')) as { weight_map?: Record<string, string> };
  }
  const todo = chooseFiles(files, index);
  progress.fileCount = todo.length;
  progress.totalBytes = todo.reduce((s, p) => s + (files.get(p)?.size ?? 0), 0);
  for (const [i, path] of todo.entries()) {
    progress.file = path;
    progress.fileIndex = i;
    report();
    const before = progress.loadedBytes;
    if (path === 'model.safetensors.index.json') progress.loadedBytes += files.get(path)?.size ?? 0;
    else
      await fetchOne(path, (n) => {
        progress.loadedBytes += n;
        report();
      });
    // Files already in the cache count as loaded at once.
    progress.loadedBytes = before + (files.get(path)?.size ?? 0);
  }
  report();
  if (!COMMIT_HASH.test(opts.revision)) {
    await mkdir(join(repoDir, 'refs'), { recursive: true });
    await writeFile(join(repoDir, 'refs', opts.revision), commit);
  }
  return snapshot;
}

function fmtBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  return `${(n / 1e3).toFixed(0)} kB`;
}

/** A progress bar on stderr: redrawn in place on a terminal, one line per file otherwise. */
export function stderrProgressBar(): (p: DownloadProgress) => void {
  const tty = process.stderr.isTTY === true;
  let lastDraw = 0;
  let lastFile = -1;
  let finished = false;
  return (p) => {
    const done = p.loadedBytes >= p.totalBytes && p.fileIndex === p.fileCount - 1;
    if (finished) return;
    finished = done;
    if (!tty) {
      if (p.fileIndex !== lastFile) {
        lastFile = p.fileIndex;
        process.stderr.write(`downloading ${p.repo}: ${p.file} (${p.fileIndex + 1}/${p.fileCount})\n`);
      }
      return;
    }
    const now = Date.now();
    if (!done && now - lastDraw < 100) return;
    lastDraw = now;
    const frac = p.totalBytes > 0 ? Math.min(1, p.loadedBytes / p.totalBytes) : 1;
    const width = 30;
    const filled = Math.round(frac * width);
    const bar = '='.repeat(filled) + ' '.repeat(width - filled);
    process.stderr.write(
      `\r${p.repo} [${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${fmtBytes(p.loadedBytes)}/${fmtBytes(p.totalBytes)} ${p.file}\x1b[K` +
        (done ? '\n' : ''),
    );
  };
}
