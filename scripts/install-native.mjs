#!/usr/bin/env node
/**
 * The package's `install` script: build the native addon once.
 *
 * npm runs `install` again whenever it links the package somewhere new (`npx pagewise` from a
 * checkout links it into npm's exec cache), and a full node-gyp rebuild costs minutes. So a build
 * leaves a stamp next to the addon: a hash of everything the build reads (binding.gyp and native/)
 * and the platform. When the stamp matches and the addon loads, there is nothing to do.
 *
 * The Node version is not part of the stamp: the addon uses Node-API (NAPI_VERSION in binding.gyp),
 * whose ABI is stable across Node releases.
 *
 * PAGEWISE_REBUILD=1 forces a rebuild.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const addonPath = join(root, 'build', 'Release', 'pagewise.node');
const stampPath = join(root, 'build', 'Release', 'pagewise.stamp');

/** binding.gyp and every file under native/, in a fixed order. */
function buildInputs() {
  const files = [join(root, 'binding.gyp')];
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) files.push(p);
    }
  };
  walk(join(root, 'native'));
  return files;
}

function fingerprint() {
  const h = createHash('sha256');
  h.update(`${process.platform} ${process.arch}\n`);
  for (const f of buildInputs()) {
    h.update(`${relative(root, f)}\n`);
    h.update(readFileSync(f));
  }
  return h.digest('hex');
}

function upToDate(stamp) {
  if (process.env.PAGEWISE_REBUILD || !existsSync(addonPath) || !existsSync(stampPath)) return false;
  if (readFileSync(stampPath, 'utf8').trim() !== stamp) return false;
  try {
    createRequire(import.meta.url)(addonPath);
    return true;
  } catch {
    return false; // built for another system (a copied tree): build again
  }
}

/**
 * npm tells its scripts where its own node-gyp is; run by hand, the one bundled with the npm next to
 * this node, else the one on PATH.
 */
function nodeGyp(args) {
  const besideNode = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  const bundled = [process.env.npm_config_node_gyp, besideNode].find((p) => p && existsSync(p));
  const [cmd, argv] = bundled ? [process.execPath, [bundled, ...args]] : ['node-gyp', args];
  const r = spawnSync(cmd, argv, { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' && cmd === 'node-gyp' });
  if (r.error) throw r.error;
  return r.status ?? 1;
}

const stamp = fingerprint();
if (upToDate(stamp)) {
  console.error('pagewise: native addon already built for these sources (build/Release/pagewise.node); PAGEWISE_REBUILD=1 rebuilds it');
} else {
  const status = nodeGyp(['rebuild']);
  if (status !== 0) process.exit(status);
  writeFileSync(stampPath, `${stamp}\n`);
}
