/**
 * Model spec → local model directory. A spec is `demo` (a generated random-weight model), a local
 * directory, or a Hugging Face repo id `org/name` (found in the hub cache or downloaded into it).
 */
import { existsSync, statSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve as resolvePath } from 'node:path';
import { ModelLoadError } from '../../errors.js';
import { startModuleWorker } from '../../shared/worker-thread.js';
import { findCachedSnapshot, hfHubCacheDir, isRepoId } from './hf-cache.js';
import { downloadToHubCache, stderrProgressBar, type DownloadProgress } from './hub-download.js';

export type { DownloadProgress } from './hub-download.js';

export interface ResolveOptions {
  /** Hugging Face hub cache directory (default: HF_HUB_CACHE, HF_HOME/hub or ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /** Hub branch, tag or commit hash (default, or null: "main"). */
  revision?: string | null;
  /** Download progress; without it a progress bar is drawn on stderr. */
  onProgress?: (p: DownloadProgress) => void;
  /** Where a warning line goes (default: stderr). */
  log?: (line: string) => void;
  /** Never touch the network (default: true when HF_HUB_OFFLINE is set). */
  offline?: boolean;
  /**
   * A GGUF file inside the model directory or hub repository (`--gguf-file`): the model is that
   * file (the first part of a split file names the rest). From the hub only that file (its parts)
   * and the repository's config and tokenizer files are downloaded. null: none.
   */
  ggufFile?: string | null;
}

/**
 * Version of the generated demo model. Bump it whenever the fixture generator's output changes,
 * so caches built by older versions are not reused.
 */
export const DEMO_MODEL_VERSION = 'demo-v1';

/** Pagewise's own cache: $PAGEWISE_CACHE, else ~/.cache/pagewise. */
export function pagewiseCacheDir(): string {
  return process.env['PAGEWISE_CACHE'] || join(process.env['XDG_CACHE_HOME'] || join(homedir(), '.cache'), 'pagewise');
}

export function demoModelDir(): string {
  return join(pagewiseCacheDir(), 'models', DEMO_MODEL_VERSION);
}

let warnedDemo = false;

/**
 * Build the demo model once. It is generated into a private temp directory and renamed into place:
 * the final directory appears complete or not at all, so concurrent processes are safe (the loser
 * of the rename discards its copy; the contents are identical).
 */
/** Write a fixture preset into `dir` on a worker thread (see fixture/demo-worker.ts). */
function buildInWorker(preset: string, dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const w = startModuleWorker(new URL('../fixture/demo-worker.js', import.meta.url), { preset, dir });
    w.once('message', (m: { ok: boolean; message?: string }) => (m.ok ? resolve() : reject(new Error(m.message))));
    w.once('error', reject);
    w.once('exit', (code) => reject(new Error(`the model generator exited (code ${code})`)));
  });
}

export async function ensureDemoModel(log: (line: string) => void = (l) => void process.stderr.write(`${l}\n`)): Promise<string> {
  if (!warnedDemo) {
    warnedDemo = true;
    log('pagewise: the "demo" model has RANDOM weights and produces nonsense text; it exists to try the engine without a download.');
  }
  const dir = demoModelDir();
  if (existsSync(join(dir, 'config.json'))) return dir;
  await mkdir(dirname(dir), { recursive: true });
  const tmp = await mkdtemp(join(dirname(dir), `.${DEMO_MODEL_VERSION}.tmp-`));
  try {
    await buildInWorker('demo', tmp);
    await chmod(tmp, 0o755); // mkdtemp makes it private; the model itself is not secret
    try {
      await rename(tmp, dir);
    } catch (e) {
      // Another process finished first (Linux reports ENOTEMPTY, others EEXIST): use its copy.
      const code = (e as NodeJS.ErrnoException).code;
      if (!((code === 'ENOTEMPTY' || code === 'EEXIST') && existsSync(join(dir, 'config.json')))) throw e;
    }
  } catch (e) {
    throw new ModelLoadError(`could not build the demo model in ${dir} (${(e as Error).message})`, { cause: e });
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return dir;
}

function envFlag(name: string): boolean {
  return ['1', 'true', 'yes', 'on'].includes((process.env[name] ?? '').toLowerCase());
}

/** A readable reason out of a fetch failure ("fetch failed" alone hides ECONNREFUSED & co.). */
function describeCause(e: unknown): string {
  const parts: string[] = [];
  for (let cur: unknown = e, depth = 0; cur instanceof Error && depth < 4; cur = cur.cause, depth++) {
    const code = (cur as NodeJS.ErrnoException).code;
    const status = (cur as { statusCode?: unknown }).statusCode;
    parts.push(`${typeof status === 'number' ? `HTTP ${status}: ` : ''}${cur.message}${code && !cur.message.includes(code) ? ` [${code}]` : ''}`);
  }
  return parts.length ? parts.join(': ') : String(e);
}

async function resolveHub(repoId: string, opts: ResolveOptions): Promise<string> {
  const cacheDir = hfHubCacheDir(opts.cacheDir);
  const revision = opts.revision ?? 'main';
  const ggufFile = opts.ggufFile ?? undefined;
  const cached = findCachedSnapshot(cacheDir, repoId, revision, ggufFile);
  if ('dir' in cached) return cached.dir;
  const hint = `pass a local directory or pre-populate the HF cache (${cacheDir}: ${cached.missing})`;
  if (opts.offline ?? (envFlag('HF_HUB_OFFLINE') || envFlag('TRANSFORMERS_OFFLINE'))) {
    throw new ModelLoadError(`${repoId} is not in the Hugging Face cache and offline mode is on; ${hint}`, { code: 'model_not_cached' });
  }
  try {
    return await downloadToHubCache(repoId, { cacheDir, revision, ggufFile, onProgress: opts.onProgress ?? stderrProgressBar() });
  } catch (e) {
    throw new ModelLoadError(`could not download ${repoId} from the Hugging Face Hub (${describeCause(e)}); ${hint}`, {
      code: 'model_download_failed',
      cause: e,
    });
  }
}

/**
 * Turn a model spec into a local Hugging Face model directory:
 * - `demo`: a small random-weight Llama built on first use into the Pagewise cache;
 * - a path to an existing directory or model file (a .gguf): used as is;
 * - `org/name`: the Hugging Face cache's snapshot when complete, else downloaded into that cache.
 */
export async function resolveModel(spec: string, opts: ResolveOptions = {}): Promise<string> {
  const name = opts.ggufFile ?? undefined;
  const rev = opts.revision ?? undefined;
  if (rev !== undefined && (!/^[\w.-]+(\/[\w.-]+)*$/.test(rev) || rev.split('/').some((p) => p === '.' || p === '..'))) {
    throw new ModelLoadError(`--revision must be a branch, tag or commit hash, got "${opts.revision}"`, { code: 'model_not_found' });
  }
  // A plain file name (or a path inside the repository): never a way out of it.
  if (name !== undefined && (name === '' || name.split(/[\\/]/).some((p) => p === '..' || p === '') || isAbsolute(name))) {
    throw new ModelLoadError(`--gguf-file must name a file inside the model directory, got "${name}"`, { code: 'model_file_missing' });
  }
  const path = await resolveModelPath(spec, opts);
  if (name === undefined) return path;
  if (!statSync(path).isDirectory()) throw new ModelLoadError(`--gguf-file needs a model directory or repository, but ${path} is a file`, { code: 'model_file_missing' });
  const file = join(path, name);
  if (!existsSync(file)) throw new ModelLoadError(`${path} has no file ${name} (--gguf-file)`, { code: 'model_file_missing' });
  return file;
}

async function resolveModelPath(spec: string, opts: ResolveOptions): Promise<string> {
  if (spec === 'demo') return ensureDemoModel(opts.log);
  // A directory or a single-file model (e.g. a .gguf): openModelPackage tells the format.
  if (existsSync(spec)) return resolvePath(spec);
  const looksLikePath = /^(\.{0,2}\/|~|[A-Za-z]:\\)/.test(spec) || spec.split('/').length > 2;
  if (!looksLikePath && isRepoId(spec)) return resolveHub(spec, opts);
  throw new ModelLoadError(
    looksLikePath
      ? `model directory ${spec} does not exist`
      : `cannot resolve model "${spec}": not "demo", an existing directory, or a Hugging Face repo id (org/name)`,
    { code: 'model_not_found' },
  );
}
