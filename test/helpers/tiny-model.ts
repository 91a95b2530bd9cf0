/** A random-weight model dir generated once per test process (tiny presets build in milliseconds). */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFixture } from '../../src/model/fixture/index.js';

const built = new Map<string, Promise<string>>();

export function presetModelDir(preset = 'tiny'): Promise<string> {
  let p = built.get(preset);
  if (!p) {
    const dir = join(mkdtempSync(join(tmpdir(), 'pagewise-test-')), preset);
    p = writeFixture(preset, dir).then(() => dir);
    built.set(preset, p);
  }
  return p;
}
