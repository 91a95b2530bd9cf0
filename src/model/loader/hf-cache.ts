/**
 * The Hugging Face hub cache layout, shared with Python's huggingface_hub so a model downloaded by
 * either is found by both:
 *
 *   <cache>/models--<org>--<name>/refs/<revision>          commit hash of the revision
 *   <cache>/models--<org>--<name>/snapshots/<commit>/<file>  symlink to ../../blobs/<etag>
 *   <cache>/models--<org>--<name>/blobs/<etag>               file contents
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export const COMMIT_HASH = /^[0-9a-f]{40}$/;

/** Hub repo ids look like `org/name`; dots and dashes allowed, no path tricks. */
export function isRepoId(spec: string): boolean {
  return /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/.test(spec) && !spec.includes('..');
}

/** The hub cache directory, resolved as huggingface_hub does: HF_HUB_CACHE, HF_HOME/hub, XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub. */
export function hfHubCacheDir(override?: string): string {
  if (override) return override;
  const env = process.env;
  if (env['HF_HUB_CACHE']) return env['HF_HUB_CACHE'];
  if (env['HF_HOME']) return join(env['HF_HOME'], 'hub');
  return join(env['XDG_CACHE_HOME'] || join(homedir(), '.cache'), 'huggingface', 'hub');
}

export function repoCacheDir(cacheDir: string, repoId: string): string {
  return join(cacheDir, `models--${repoId.replace('/', '--')}`);
}

/** Files without which the engine cannot run a model; weights are checked separately. */
export const REQUIRED_FILES = ['config.json', 'tokenizer.json'] as const;

/** Weight files a snapshot directory needs, per its index if it is sharded; null when it has no weights list at all. */
export function requiredWeightFiles(dir: string): string[] | null {
  const indexPath = join(dir, 'model.safetensors.index.json');
  if (existsSync(indexPath)) {
    try {
      const map = (JSON.parse(readFileSync(indexPath, 'utf8')) as { weight_map?: Record<string, string> }).weight_map ?? {};
      return ['model.safetensors.index.json', ...new Set(Object.values(map))];
    } catch {
      return ['model.safetensors.index.json (valid)'];
    }
  }
  return existsSync(join(dir, 'model.safetensors')) ? ['model.safetensors'] : null;
}

/**
 * The files of a GGUF model named by one of them: every part of a split set
 * (`NAME-00001-of-0000N.gguf`, the convention gguf/file.ts reads), else just the file.
 */
export function ggufSplitParts(name: string): string[] {
  const m = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/.exec(name);
  if (!m || Number(m[3]) < 1) return [name];
  return Array.from({ length: Number(m[3]) }, (_, i) => `${m[1]}-${String(i + 1).padStart(5, '0')}-of-${m[3]}.gguf`);
}

export type SnapshotLookup = { dir: string } | { missing: string };

/**
 * The cached snapshot of `repoId` at `revision` if it holds everything needed to run the model
 * (with `ggufFile`: that GGUF file, all its parts), else a description of what is missing (for the
 * error a failed download ends with).
 */
export function findCachedSnapshot(cacheDir: string, repoId: string, revision: string, ggufFile?: string): SnapshotLookup {
  const repoDir = repoCacheDir(cacheDir, repoId);
  let commit = revision;
  if (!COMMIT_HASH.test(revision)) {
    const ref = join(repoDir, 'refs', revision);
    if (!existsSync(ref)) return { missing: `no ${ref}` };
    commit = readFileSync(ref, 'utf8').trim();
  }
  const dir = join(repoDir, 'snapshots', commit);
  if (!existsSync(dir)) return { missing: `no snapshot ${dir}` };
  // existsSync follows symlinks, so a snapshot link whose blob is gone counts as missing.
  if (ggufFile !== undefined) {
    const absent = ggufSplitParts(ggufFile).filter((f) => !existsSync(join(dir, f)));
    return absent.length === 0 ? { dir } : { missing: `snapshot ${dir} lacks ${absent.join(', ')}` };
  }
  const missing: string[] = REQUIRED_FILES.filter((f) => !existsSync(join(dir, f)));
  const weights = requiredWeightFiles(dir);
  if (weights === null) missing.push('model.safetensors or model.safetensors.index.json');
  else missing.push(...weights.filter((f) => !existsSync(join(dir, f))));
  return missing.length === 0 ? { dir } : { missing: `snapshot ${dir} lacks ${missing.join(', ')}` };
}
