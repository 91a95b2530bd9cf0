/**
 * A small import scanner for the thread-boundary test: reads a module's static imports and
 * re-exports (`import … from`, `import type … from`, `export … from`, bare `import '…'`, and
 * `import('…')` with a literal), resolves the relative ones to source files, and walks the graph.
 * Package and `node:` imports are leaves. Type-only imports count: the boundary is about what
 * each side depends on, not only about what it loads.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const STATIC = /^[ \t]*(?:import|export)\b[^;'"]*?\bfrom\s*['"]([^'"]+)['"]/gm;
const BARE = /^[ \t]*import\s*['"]([^'"]+)['"]/gm;
const DYNAMIC = /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

/** The relative specifiers a source text imports. */
export function importSpecifiers(source: string): string[] {
  const out: string[] = [];
  for (const re of [STATIC, BARE, DYNAMIC]) for (const m of source.matchAll(re)) out.push(m[1]!);
  return out.filter((s) => s.startsWith('.'));
}

/** The source file a relative specifier names (`./x.js` is written for `./x.ts`). */
function resolveSpecifier(fromFile: string, spec: string): string {
  const base = resolve(dirname(fromFile), spec);
  const candidates = [base.replace(/\.js$/, '.ts'), base, `${base}.ts`, join(base, 'index.ts')];
  const hit = candidates.find((c) => c.endsWith('.ts') && existsSync(c));
  if (!hit) throw new Error(`${fromFile}: cannot resolve import '${spec}'`);
  return hit;
}

/**
 * Every module reachable from the entries, as repo-relative paths, each mapped to the module that
 * first imported it (null for an entry), so a failure can print the chain. `skip(from, to)` drops
 * an edge from the walk.
 */
export function reachable(root: string, entries: readonly string[], skip: (from: string, to: string) => boolean = () => false): Map<string, string | null> {
  const parent = new Map<string, string | null>();
  const queue: string[] = [];
  for (const e of entries) {
    const rel = relative(root, resolve(root, e));
    if (!parent.has(rel)) {
      parent.set(rel, null);
      queue.push(rel);
    }
  }
  while (queue.length > 0) {
    const file = queue.shift()!;
    const abs = resolve(root, file);
    for (const spec of importSpecifiers(readFileSync(abs, 'utf8'))) {
      const dep = relative(root, resolveSpecifier(abs, spec));
      if (parent.has(dep) || skip(file, dep)) continue;
      parent.set(dep, file);
      queue.push(dep);
    }
  }
  return parent;
}

/** entry → … → file, following the first importer of each module. */
export function chain(parent: ReadonlyMap<string, string | null>, file: string): string {
  const path: string[] = [];
  for (let cur: string | null | undefined = file; cur; cur = parent.get(cur)) path.unshift(cur);
  return path.join(' → ');
}
