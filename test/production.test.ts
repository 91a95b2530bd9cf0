/**
 * Running Pagewise the way it is installed and deployed: the install script builds the native addon
 * once (and again only when its sources change), and `pagewise serve` started behind a wrapper that
 * passes no signals on (npm runs bins through `sh`) stops when the wrapper is stopped, with JSON logs.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { makeSamplingParams } from '../src/sampling/params.js';
import { fixturePath } from './helpers/fixtures.js';

const root = resolve(import.meta.dirname, '..');
const scratch = mkdtempSync(join(tmpdir(), 'pagewise-prod-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

describe('install once', () => {
  const builtAddon = join(root, 'build', 'Release', 'pagewise.node');

  test('the install script builds when needed and finds the built addon otherwise', () => {
    assert.ok(existsSync(builtAddon), `${builtAddon} is built by npm install`);
    // A package of our own: the script, a binding.gyp, native sources, and a stand-in for
    // node-gyp that "builds" by copying the real addon and counts its runs.
    const pkg = join(scratch, 'pkg');
    mkdirSync(join(pkg, 'scripts'), { recursive: true });
    mkdirSync(join(pkg, 'native'), { recursive: true });
    copyFileSync(join(root, 'scripts', 'install-native.mjs'), join(pkg, 'scripts', 'install-native.mjs'));
    writeFileSync(join(pkg, 'binding.gyp'), '{"targets": []}\n');
    writeFileSync(join(pkg, 'native', 'a.cc'), 'int a() { return 1; }\n');
    const gyp = join(pkg, 'fake-node-gyp.mjs');
    const log = join(pkg, 'gyp.log');
    writeFileSync(
      gyp,
      `import { appendFileSync, copyFileSync, mkdirSync, rmSync } from 'node:fs';
       appendFileSync(${JSON.stringify(log)}, process.argv.slice(2).join(' ') + '\\n');
       rmSync('build', { recursive: true, force: true });
       mkdirSync('build/Release', { recursive: true });
       copyFileSync(${JSON.stringify(builtAddon)}, 'build/Release/pagewise.node');\n`,
    );
    const install = (env: Record<string, string> = {}) => {
      const r = spawnSync(process.execPath, [join(pkg, 'scripts', 'install-native.mjs')], {
        cwd: pkg,
        env: { ...process.env, npm_config_node_gyp: gyp, PAGEWISE_REBUILD: '', ...env },
        encoding: 'utf8',
      });
      assert.equal(r.status, 0, r.stderr);
      return r.stderr;
    };
    const builds = () => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').length : 0);
    const addon = join(pkg, 'build', 'Release', 'pagewise.node');

    install();
    assert.equal(builds(), 1);
    assert.equal(readFileSync(log, 'utf8'), 'rebuild\n');
    const mtime = statSync(addon).mtimeMs;
    // npm runs `install` again (npx links the package into its cache): nothing is rebuilt.
    assert.match(install(), /already built/);
    assert.equal(builds(), 1);
    assert.equal(statSync(addon).mtimeMs, mtime);
    // A changed source rebuilds; so does PAGEWISE_REBUILD; so does an addon that does not load.
    writeFileSync(join(pkg, 'native', 'a.cc'), 'int a() { return 2; }\n');
    install();
    assert.equal(builds(), 2);
    install();
    assert.equal(builds(), 2);
    install({ PAGEWISE_REBUILD: '1' });
    assert.equal(builds(), 3);
    writeFileSync(addon, 'not a shared object');
    install();
    assert.equal(builds(), 4);
  });

  test("package.json runs it as the install script and ships it", () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string>; files: string[] };
    assert.equal(pkg.scripts['install'], 'node scripts/install-native.mjs');
    assert.ok(pkg.files.includes('scripts/install-native.mjs'));
  });
});

/** The log's lines as objects; none of them may be a text-format line. */
function jsonLines(stderr: string): Array<Record<string, unknown>> {
  const lines = stderr.trim().split('\n');
  assert.ok(!lines.some((l) => l.startsWith('pagewise:')), `text lines in a JSON log:\n${stderr}`);
  return lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('serve behind a wrapper that passes no signals on', () => {
  test('SIGTERM to the wrapper (as npm → sh gets it) stops the server; its logs are JSON lines', async () => {
    const entry = `import('./src/cli/main.ts').then((m) => m.main(process.argv.slice(1)))`;
    const args = ['serve', '--model', fixturePath('stories260k'), '--port', '0', '--kv-cache-memory', '16MiB', '--threads', '1', '--log-format', 'json', '--max-model-len', '128'];
    const quoted = [process.execPath, '--import', 'tsx', '-e', entry, '--', ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ');
    // Like `npx pagewise serve`: npm's sh runs the server as a child and does not forward signals.
    const sh = spawn('sh', ['-c', `${quoted} & echo "child $!"; wait`], {
      cwd: root,
      env: { ...process.env, npm_command: 'exec', npm_lifecycle_event: 'npx' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    sh.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    sh.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const waitFor = async (cond: () => boolean, what: string, ms = 60_000): Promise<void> => {
      const until = Date.now() + ms;
      while (!cond()) {
        if (Date.now() > until) throw new Error(`timed out waiting for ${what}; stderr:\n${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    let child = 0;
    const alive = (pid: number): boolean => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    try {
      await waitFor(() => /child (\d+)/.test(stdout), 'the child pid');
      child = Number(/child (\d+)/.exec(stdout)![1]);
      await waitFor(() => /serving model/.test(stderr), 'the server to start');
      const lines = jsonLines(stderr);
      const serving = lines.find((l) => /serving model/.test(l['msg'] as string))!;
      assert.equal(serving['level'], 'info');
      const url = /on (http:\/\/[^/\s]+)/.exec(serving['msg'] as string)![1]!;
      const r = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"prompt": "Hi", "max_tokens": 2}' });
      assert.equal(r.status, 200);
      await waitFor(() => /"total_ms"/.test(stderr), 'the access line');

      sh.kill('SIGTERM');
      await waitFor(() => !alive(child), 'the server to exit', 20_000);
      const last = jsonLines(stderr);
      assert.ok(last.some((l) => /parent process \d+ exited: shutting down/.test(l['msg'] as string)), stderr);
      assert.ok(last.some((l) => l['msg'] === 'stopped'), stderr);
    } finally {
      sh.kill('SIGKILL');
      if (child > 0 && alive(child)) process.kill(child, 'SIGKILL');
    }
  });
});

describe('load progress', () => {
  test('the engine reports tensors read while it loads; the bar draws on a terminal only', async () => {
    const { AsyncEngine } = await import('../src/engine/async-engine.js');
    const { TtyProgressBar } = await import('../src/shared/progress-bar.js');
    const seen: Array<[number, number]> = [];
    const engine = await AsyncEngine.start({ model: fixturePath('stories260k'), kvCacheMemory: 16 << 20, threads: 1, log: () => undefined, onLoadProgress: (r, t) => seen.push([r, t]) });
    await engine.shutdown();
    assert.ok(seen.length > 5, `${seen.length} progress messages`);
    assert.ok(seen.every(([r, t], i) => r >= 1 && r <= t && t === seen[0]![1] && (i === 0 || r > seen[i - 1]![0])), JSON.stringify(seen));
    assert.ok(seen.at(-1)![0] >= seen[0]![1] - 1, 'the model reads (about) every tensor of the checkpoint');

    const writes: string[] = [];
    const fake = (isTTY: boolean) => ({ isTTY, write: (s: string) => void writes.push(s) }) as unknown as NodeJS.WriteStream;
    const quiet = new TtyProgressBar('loading x', fake(false));
    quiet.update(0.5);
    quiet.finish();
    assert.deepEqual(writes, []);
    const bar = new TtyProgressBar('loading x', fake(true));
    bar.update(0.5, '1/2 tensors');
    bar.finish('done');
    assert.match(writes[0]!, /^\rloading x \[={15} {15}\]  50% 1\/2 tensors/);
    assert.match(writes.join(''), /100% done\x1b\[K\n$/);
  });
});

describe('engine failure', () => {
  test("a dead engine worker is reported through the engine's logError (the server's logger), and its streams fail", async () => {
    const { AsyncEngine } = await import('../src/engine/async-engine.js');
    const errors: Array<[string, string | undefined]> = [];
    const engine = await AsyncEngine.start({
      model: fixturePath('stories260k'),
      kvCacheMemory: 16 << 20,
      threads: 1,
      log: () => undefined,
      logError: (message, stack) => void errors.push([message, stack]),
    });
    const stream = engine.generate({ promptTokenIds: [1, 2, 3], params: makeSamplingParams({ maxTokens: 400, ignoreEos: true }, { vocabSize: engine.info.model.vocabSize }) });
    // The worker goes away as a crash would (no shutdown first).
    await (engine as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
    await assert.rejects(stream.final(), /engine worker exited unexpectedly/);
    assert.equal(engine.healthy, false);
    assert.deepEqual(
      errors.map(([m]) => m),
      ['engine worker exited unexpectedly (code 1)'],
    );
    await engine.shutdown();
  });
});


describe('working memory', () => {
  test('an idle engine hands back its step working memory, and later requests give the same tokens', async () => {
    const { AsyncEngine } = await import('../src/engine/async-engine.js');
    const engine = await AsyncEngine.start({ model: fixturePath('stories260k'), kvCacheMemory: 16 << 20, threads: 2, log: () => undefined });
    try {
      const prompt = [1, ...Array.from({ length: 300 }, (_, i) => 3 + ((i * 37) % 500))];
      const params = makeSamplingParams({ maxTokens: 12, ignoreEos: true, temperature: 0 }, { vocabSize: engine.info.model.vocabSize });
      const tokens = async (): Promise<number[]> => (await engine.generate({ promptTokenIds: prompt, params }).final()).outputs[0]!.tokenIds;
      // The worker releases once it has been idle for 2 s after steps: wait for it however long the
      // machine takes (up to 15 s), never for a fixed time.
      const releasedAbove = async (bytes: number): Promise<number> => {
        const deadline = Date.now() + 15_000;
        while (engine.workingMemoryReleased <= bytes && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
        return engine.workingMemoryReleased;
      };
      const first = await tokens();
      assert.equal(engine.workingMemoryReleased, 0, 'nothing is released while the engine works or right after');
      const once = await releasedAbove(0);
      assert.ok(once > 0, 'the idle engine released its working memory');
      assert.deepEqual(await tokens(), first);
      // The new steps' idle spell releases again; then, without new steps, idleness releases nothing more.
      const again = await releasedAbove(once);
      assert.ok(again > once, 'the second idle spell released too');
      await new Promise((r) => setTimeout(r, 2500));
      assert.equal(engine.workingMemoryReleased, again, 'no release without steps in between');
    } finally {
      await engine.shutdown();
    }
  });
});
