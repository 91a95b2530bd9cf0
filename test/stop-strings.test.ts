/** Stop strings over streamed text (src/engine/stop-strings.ts). */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { StopStringMatcher } from '../src/engine/stop-strings.js';
import { Rng } from '../src/sampling/rng.js';

describe('StopStringMatcher', () => {
  const feed = (m: StopStringMatcher, deltas: string[]): { emitted: string[]; stopped: string | null } => {
    const emitted: string[] = [];
    let stopped: string | null = null;
    for (const d of deltas) {
      const r = m.push(d);
      emitted.push(r.emit);
      if (r.stopped !== null) {
        stopped = r.stopped;
        break;
      }
    }
    return { emitted, stopped };
  };

  test('stop string inside one delta: output cut before it', () => {
    const r = feed(new StopStringMatcher(['END'], false), ['Hello END world']);
    assert.deepEqual(r, { emitted: ['Hello '], stopped: 'END' });
  });

  test('stop string spanning three deltas is never partly emitted', () => {
    const m = new StopStringMatcher(['END'], false);
    const r = feed(m, ['Hel', 'lo E', 'N', 'D more']);
    assert.deepEqual(r.emitted, ['Hel', 'lo ', '', '']);
    assert.equal(r.stopped, 'END');
    assert.ok(!r.emitted.join('').includes('E'));
    assert.deepEqual(m.push('again'), { emit: '', stopped: 'END' });
  });

  test('a held-back prefix that does not complete is released', () => {
    const m = new StopStringMatcher(['END'], false);
    assert.deepEqual(feed(m, ['a E', 'Nx', 'y']).emitted, ['a ', 'ENx', 'y']);
    assert.equal(m.push('EN').emit, '');
    assert.equal(m.flush(), 'EN');
    assert.equal(m.flush(), '');
  });

  test('include_stop_str_in_output keeps the stop string and holds nothing back', () => {
    const r = feed(new StopStringMatcher(['END'], true), ['Hel', 'lo E', 'N', 'D more']);
    assert.deepEqual(r.emitted, ['Hel', 'lo E', 'N', 'D']);
    assert.equal(r.stopped, 'END');
    const one = feed(new StopStringMatcher(['\n\n'], true), ['a\n', '\nb']);
    assert.deepEqual(one, { emitted: ['a\n', '\n'], stopped: '\n\n' });
  });

  test('several stop strings: the earliest match wins, ties go to the first listed', () => {
    assert.deepEqual(feed(new StopStringMatcher(['world', 'lo'], false), ['hello world']), { emitted: ['hel'], stopped: 'lo' });
    assert.deepEqual(feed(new StopStringMatcher(['ab', 'abc'], false), ['xabcd']), { emitted: ['x'], stopped: 'ab' });
    // "bc" completes while the longer "abcd" is still partial: stop at once.
    assert.deepEqual(feed(new StopStringMatcher(['abcd', 'bc'], false), ['a', 'bc']), { emitted: ['', 'a'], stopped: 'bc' });
    assert.deepEqual(feed(new StopStringMatcher(['abcd', 'bc'], true), ['xa', 'bc']), { emitted: ['xa', 'bc'], stopped: 'bc' });
  });

  test('no stop strings: everything passes through', () => {
    const m = new StopStringMatcher([], false);
    assert.deepEqual(m.push('abc'), { emit: 'abc', stopped: null });
    assert.equal(m.flush(), '');
  });

  test('random splits of a text give the same output as one push', () => {
    const text = 'The cat sat. STOP The dog ran. ST OP STOP!';
    const r = new Rng(3);
    for (const include of [false, true]) {
      const whole = new StopStringMatcher(['STOP', 'dog'], include).push(text);
      for (let trial = 0; trial < 50; trial++) {
        const m = new StopStringMatcher(['STOP', 'dog'], include);
        let out = '';
        let stopped: string | null = null;
        for (let i = 0; i < text.length && stopped === null; ) {
          const len = 1 + Math.floor(r.next() * 4);
          const res = m.push(text.slice(i, i + len));
          out += res.emit;
          stopped = res.stopped;
          i += len;
        }
        if (stopped === null) out += m.flush();
        assert.equal(out, whole.emit);
        assert.equal(stopped, whole.stopped);
      }
    }
  });
});
