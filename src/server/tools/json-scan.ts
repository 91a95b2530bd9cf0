/**
 * Reading one JSON object of a tool call — `{"name": "...", "arguments": {...}}` — from output
 * that may still be growing. What streaming needs: the name once its string is complete, the raw
 * text of the arguments value so far (a prefix of its final text, so fragments can be sent as they
 * come), and where the object ends. Only the object's own keys are tracked; nested values are
 * skipped by depth, strings by their quotes and escapes.
 */

export interface ScannedCall {
  /** The "name" value, once its string is complete. */
  name: string | null;
  /** Index in the text where the arguments value starts (its first character), if seen. */
  argsStart: number;
  /** Index just past the arguments value once it is complete, else -1. */
  argsEnd: number;
  /** Index just past the object's closing brace once it is complete, else -1. */
  end: number;
  /** The text is not a JSON object of this shape (or not valid JSON so far). */
  invalid: boolean;
}

const WS = new Set([' ', '\t', '\n', '\r']);

/**
 * Scan the object starting at `text[start]` (which must be `{`). `argKeys` are the keys that hold
 * the arguments (`arguments`, or `parameters` in Llama 3's format).
 */
export function scanCallObject(text: string, start: number, argKeys: readonly string[]): ScannedCall {
  const out: ScannedCall = { name: null, argsStart: -1, argsEnd: -1, end: -1, invalid: false };
  if (text[start] !== '{') {
    out.invalid = true;
    return out;
  }
  let depth = 0;
  let inString = false;
  let escaped = false;
  let stringStart = -1;
  // At depth 1: 'key' (expecting a key or '}'), 'colon', 'value', 'after' (expecting ',' or '}').
  let state: 'key' | 'colon' | 'value' | 'after' = 'key';
  let key: string | null = null;
  let valueStart = -1;
  for (let i = start; i < text.length; i++) {
    const c = text[i]!;
    if (inString) {
      if (escaped) escaped = false;
      else if (c === '\\') escaped = true;
      else if (c === '"') {
        inString = false;
        if (depth === 1) {
          const raw = text.slice(stringStart, i + 1);
          let value: string;
          try {
            value = JSON.parse(raw) as string;
          } catch {
            out.invalid = true;
            return out;
          }
          if (state === 'key') {
            key = value;
            state = 'colon';
          } else if (state === 'value') {
            if (key === 'name') out.name = value;
            endValue(i + 1);
            state = 'after';
          }
        }
      }
      continue;
    }
    if (WS.has(c)) continue;
    if (c === '"') {
      inString = true;
      stringStart = i;
      if (depth === 1) {
        if (state === 'value') beginValue(i);
        else if (state !== 'key') return invalid();
      }
      continue;
    }
    if (c === '{' || c === '[') {
      if (depth === 1) {
        if (state !== 'value') return invalid();
        beginValue(i);
      }
      if (depth === 0 && i !== start) return invalid();
      depth++;
      continue;
    }
    if (c === '}' || c === ']') {
      depth--;
      if (depth === 1) {
        // A nested value closed.
        endValue(i + 1);
        state = 'after';
      } else if (depth === 0) {
        if (c !== '}' || state === 'colon' || (state === 'value' && valueStart < 0)) return invalid();
        if (state === 'value') endValue(i);
        out.end = i + 1;
        return out;
      } else if (depth < 0) return invalid();
      continue;
    }
    if (depth !== 1) continue;
    if (c === ':') {
      if (state !== 'colon') return invalid();
      state = 'value';
      valueStart = -1;
      continue;
    }
    if (c === ',') {
      if (state === 'value' && valueStart >= 0) endValue(i);
      else if (state !== 'after') return invalid();
      state = 'key';
      continue;
    }
    // A bare value (number, true, false, null) at depth 1.
    if (state === 'value' && valueStart < 0) beginValue(i);
    else if (state !== 'value') return invalid();
  }
  return out;

  function beginValue(i: number): void {
    valueStart = i;
    if (key !== null && argKeys.includes(key) && out.argsStart < 0) out.argsStart = i;
  }
  function endValue(i: number): void {
    if (key !== null && argKeys.includes(key) && out.argsStart === valueStart && out.argsEnd < 0) {
      // A bare value's end may be followed by spaces before ',' or '}'.
      let e = i;
      while (e > valueStart && WS.has(text[e - 1]!)) e--;
      out.argsEnd = e;
    }
    valueStart = -1;
  }
  function invalid(): ScannedCall {
    out.invalid = true;
    return out;
  }
}

/** Index of the first non-whitespace character at or after `i` (text.length if none). */
export function skipWs(text: string, i: number): number {
  while (i < text.length && WS.has(text[i]!)) i++;
  return i;
}
