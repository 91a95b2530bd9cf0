/**
 * What every benchmark result records about where it ran: the CPU (model, physical cores, logical
 * threads, the SIMD features our kernels dispatch on), memory, OS, Node, and the git commit of the
 * code measured. A number without these cannot be compared with another one.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface MachineInfo {
  cpu_model: string;
  /** Physical cores (from /proc/cpuinfo); the logical count where that is unknown. */
  cores: number;
  /** Logical CPUs the OS reports (hyper-threads included). */
  threads: number;
  /** CPUs this process may use (cgroup / affinity limits applied), from os.availableParallelism(). */
  available_parallelism: number;
  /** The CPU features that matter to our kernels, those present only (e.g. avx2, fma, avx512f, avx512_bf16). */
  cpu_flags: string[];
  mem_total_gib: number;
  platform: string;
  arch: string;
  os_release: string;
  node_version: string;
}

/** Features the native backend dispatches on or that explain a result, in /proc/cpuinfo spelling. */
const FLAGS_OF_INTEREST = [
  'sse4_2',
  'avx',
  'avx2',
  'fma',
  'f16c',
  'avx512f',
  'avx512bw',
  'avx512vl',
  'avx512_vnni',
  'avx512_bf16',
  'avx512_fp16',
  'avx_vnni',
  'amx_tile',
  'amx_bf16',
  'amx_int8',
  'asimd',
  'sve',
  'bf16',
  'i8mm',
];

let cached: MachineInfo | undefined;

/** Facts about this machine; computed once per process. Never throws. */
export function machineInfo(): MachineInfo {
  if (cached) return { ...cached, cpu_flags: [...cached.cpu_flags] };
  const cpus = os.cpus();
  const threads = cpus.length;
  let cpuModel = cpus[0]?.model.trim() ?? '';
  let cores = threads;
  let flags: string[] = [];
  const cpuinfo = readCpuinfo();
  if (cpuinfo !== null) {
    const parsed = parseCpuinfo(cpuinfo);
    if (parsed.cores > 0) cores = parsed.cores;
    if (cpuModel === '' && parsed.model !== '') cpuModel = parsed.model;
    flags = parsed.flags;
  }
  const present = new Set(flags);
  cached = {
    cpu_model: cpuModel || 'unknown',
    cores,
    threads,
    available_parallelism: typeof os.availableParallelism === 'function' ? os.availableParallelism() : threads,
    cpu_flags: FLAGS_OF_INTEREST.filter((f) => present.has(f)),
    mem_total_gib: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    platform: process.platform,
    arch: process.arch,
    os_release: os.release(),
    node_version: process.version,
  };
  return machineInfo();
}

function readCpuinfo(): string | null {
  if (process.platform !== 'linux') return null;
  try {
    return readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return null;
  }
}

/**
 * Physical cores = distinct (physical id, core id) pairs; the CPU feature flags of the first
 * processor (x86 "flags", ARM "Features"). Exported for tests on canned text.
 */
export function parseCpuinfo(text: string): { model: string; cores: number; flags: string[] } {
  const pairs = new Set<string>();
  let model = '';
  let flags: string[] | null = null;
  for (const block of text.split(/\n\s*\n/)) {
    let phys = '';
    let core = '';
    for (const line of block.split('\n')) {
      const i = line.indexOf(':');
      if (i < 0) continue;
      const key = line.slice(0, i).trim();
      const value = line.slice(i + 1).trim();
      if (key === 'physical id') phys = value;
      else if (key === 'core id') core = value;
      else if (key === 'model name' && model === '') model = value;
      else if ((key === 'flags' || key === 'Features') && flags === null) flags = value.split(/\s+/);
    }
    if (core !== '') pairs.add(`${phys}/${core}`);
  }
  return { model, cores: pairs.size, flags: flags ?? [] };
}

/** The directory holding Pagewise's package.json (works from src/ under tsx and from dist/). */
function packageDir(): string | null {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return null;
}

function git(args: string[]): string | null {
  const cwd = packageDir();
  if (cwd === null) return null;
  try {
    return execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).trim();
  } catch {
    return null;
  }
}

/** HEAD of the Pagewise checkout being measured; null when not in a git checkout or git is absent. */
export function gitCommit(): string | null {
  const out = git(['rev-parse', 'HEAD']);
  return out !== null && /^[0-9a-f]{40,64}$/.test(out) ? out : null;
}

/**
 * Whether the measured checkout has uncommitted changes to tracked files (then the commit alone does
 * not name the code that ran); null when unknown.
 */
export function gitDirty(): boolean | null {
  const out = git(['status', '--porcelain', '--untracked-files=no']);
  return out === null ? null : out !== '';
}
