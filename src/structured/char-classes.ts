/**
 * Character classes of the xgrammar build we load are right only over ASCII: a class with a
 * non-ASCII member misbehaves (checked string by string: `[à-ÿ]` and `[α-ω]` match nothing,
 * `[a-z😀]` refuses 😀, `[^α]` accepts α, and `[^\u1680]` fails to compile). Under-matching can
 * leave no token to sample, over-matching breaks the constraint, so such classes are refused with a
 * clear error. Non-ASCII text outside classes ("é" in a literal or a regex) works.
 */
import { GrammarError } from '../errors.js';

/** The code point an escape inside a class denotes (`\xHH`, `\uHHHH`, `\UHHHHHHHH`), if any. */
function escapeCodePoint(src: string, at: number): number | null {
  const m = /^(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|u\{([0-9a-fA-F]+)\})/.exec(src.slice(at));
  if (!m) return null;
  return parseInt(m[1] ?? m[2] ?? m[3] ?? m[4]!, 16);
}

/**
 * Throw GrammarError when `src` (a regex, or EBNF when `ebnf`, whose "..." strings and # comments
 * are skipped) has a character class with a non-ASCII member.
 */
export function assertAsciiClasses(src: string, what: string, opts: { ebnf?: boolean; param?: string } = {}): void {
  let inClass = false;
  let start = 0;
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (!inClass && opts.ebnf) {
      if (c === '#') {
        while (i < src.length && src[i] !== '\n') i++;
        continue;
      }
      if (c === '"') {
        for (i++; i < src.length && src[i] !== '"'; i++) if (src[i] === '\\') i++;
        continue;
      }
    }
    if (c === '\\') {
      if (inClass) {
        const cp = escapeCodePoint(src, i + 1);
        if (cp !== null && cp > 0x7f) refuse();
      }
      i++;
      continue;
    }
    if (!inClass && c === '[') {
      inClass = true;
      start = i;
      // A `]` right after `[` or `[^` is a member.
      if (src[i + 1] === '^') i++;
      if (src[i + 1] === ']') i++;
      continue;
    }
    if (inClass && c === ']') inClass = false;
    else if (inClass && c.charCodeAt(0) > 0x7f) refuse();
  }

  function refuse(): never {
    const end = src.indexOf(']', start + 1);
    const cls = src.slice(start, end < 0 ? undefined : end + 1);
    throw new GrammarError(`${what}: the character class ${cls} has a non-ASCII character, which this grammar engine cannot match correctly yet; list such characters outside classes (e.g. (à|é))`, {
      param: opts.param ?? 'response_format',
    });
  }
}
