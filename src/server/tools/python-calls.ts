/**
 * The "pythonic" tool-call format: a Python list of calls, `[get_weather(city="Paris", days=3),
 * send(to=["a", "b"])]`, with keyword arguments whose values are Python literals (strings in either
 * quote, numbers, True / False / None, lists, tuples, dicts). JSON's true / false / null are read
 * too, since a grammar that constrains arguments by their JSON schema writes nested values as JSON.
 *
 * The reader is incremental-friendly: it reports how far the text parsed, so a streaming caller can
 * tell a call that is complete from one still being written.
 */

export interface PythonCall {
  name: string;
  /** Keyword arguments as JSON-compatible values. */
  args: Record<string, unknown>;
}

/** The outcome of reading a call list from `text[start]`. */
export interface PythonCallList {
  /** Calls complete so far, in order. */
  calls: PythonCall[];
  /** The name of a call whose `name(` has been read but whose arguments are not complete. */
  pendingName: string | null;
  /** Index just past the closing `]` once the list is complete, else -1. */
  end: number;
  /** The text cannot be (the start of) a call list. */
  invalid: boolean;
}

class Incomplete extends Error {}
class Invalid extends Error {}

const IDENT = /[A-Za-z_][A-Za-z0-9_.]*/y;
const NUMBER = /^-?(?:0|[1-9][0-9_]*)(?:\.[0-9_]+)?(?:[eE][+-]?[0-9]+)?$/;
const NUMBER_CHARS = /-?[0-9][0-9_.eE+-]*|-$/y;

class Reader {
  constructor(
    readonly text: string,
    public i: number,
  ) {}

  ws(): void {
    while (this.i < this.text.length && /\s/.test(this.text[this.i]!)) this.i++;
  }

  peek(): string {
    this.ws();
    if (this.i >= this.text.length) throw new Incomplete();
    return this.text[this.i]!;
  }

  expect(c: string): void {
    if (this.peek() !== c) throw new Invalid();
    this.i++;
  }

  ident(): string {
    this.ws();
    IDENT.lastIndex = this.i;
    const m = IDENT.exec(this.text);
    if (!m) {
      if (this.i >= this.text.length) throw new Incomplete();
      throw new Invalid();
    }
    // An identifier running to the end of the text may still grow.
    if (m.index + m[0].length >= this.text.length) throw new Incomplete();
    this.i += m[0].length;
    return m[0];
  }

  value(): unknown {
    const c = this.peek();
    if (c === '"' || c === "'") return this.string(c);
    if (c === '[' || c === '(') return this.list(c === '[' ? ']' : ')');
    if (c === '{') return this.dict();
    // A number's characters run to the end of the text: it may still grow ("-2." → "-2.5").
    NUMBER_CHARS.lastIndex = this.i;
    const run = NUMBER_CHARS.exec(this.text);
    if (run) {
      if (run.index + run[0].length >= this.text.length) throw new Incomplete();
      if (!NUMBER.test(run[0])) throw new Invalid();
      this.i += run[0].length;
      return Number(run[0].replaceAll('_', ''));
    }
    const word = this.ident();
    const literals: Record<string, unknown> = { True: true, False: false, None: null, true: true, false: false, null: null };
    if (!Object.hasOwn(literals, word)) throw new Invalid();
    return literals[word];
  }

  string(q: string): string {
    this.i++;
    let out = '';
    for (;;) {
      if (this.i >= this.text.length) throw new Incomplete();
      const c = this.text[this.i++]!;
      if (c === q) return out;
      if (c !== '\\') {
        out += c;
        continue;
      }
      if (this.i >= this.text.length) throw new Incomplete();
      const e = this.text[this.i++]!;
      const simple: Record<string, string> = { n: '\n', t: '\t', r: '\r', b: '\b', f: '\f', '\\': '\\', "'": "'", '"': '"', '/': '/', '0': '\0' };
      if (simple[e] !== undefined) out += simple[e];
      else if (e === 'u' || e === 'x') {
        const len = e === 'u' ? 4 : 2;
        const hex = this.text.slice(this.i, this.i + len);
        if (hex.length < len) throw new Incomplete();
        if (!/^[0-9a-fA-F]+$/.test(hex)) throw new Invalid();
        out += String.fromCharCode(parseInt(hex, 16));
        this.i += len;
      } else out += `\\${e}`;
    }
  }

  list(close: string): unknown[] {
    this.i++;
    const out: unknown[] = [];
    if (this.peek() === close) {
      this.i++;
      return out;
    }
    for (;;) {
      out.push(this.value());
      const c = this.peek();
      this.i++;
      if (c === close) return out;
      if (c !== ',') throw new Invalid();
      if (this.peek() === close) {
        this.i++;
        return out;
      }
    }
  }

  dict(): Record<string, unknown> {
    this.i++;
    const out: Record<string, unknown> = {};
    if (this.peek() === '}') {
      this.i++;
      return out;
    }
    for (;;) {
      const k = this.value();
      if (typeof k !== 'string' && typeof k !== 'number') throw new Invalid();
      this.expect(':');
      out[String(k)] = this.value();
      const c = this.peek();
      this.i++;
      if (c === '}') return out;
      if (c !== ',') throw new Invalid();
    }
  }
}

/** Read a call list starting at `text[start]` (which should be `[`). */
export function readPythonCalls(text: string, start: number): PythonCallList {
  const res: PythonCallList = { calls: [], pendingName: null, end: -1, invalid: false };
  const r = new Reader(text, start);
  try {
    r.expect('[');
    if (r.peek() === ']') {
      // An empty list is no call list.
      res.invalid = true;
      return res;
    }
    for (;;) {
      const name = r.ident();
      r.expect('(');
      res.pendingName = name;
      const args: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
      if (r.peek() === ')') r.i++;
      else {
        for (;;) {
          const key = r.ident();
          r.expect('=');
          args[key] = r.value();
          const c = r.peek();
          r.i++;
          if (c === ')') break;
          if (c !== ',') throw new Invalid();
        }
      }
      res.calls.push({ name, args: { ...args } });
      res.pendingName = null;
      const c = r.peek();
      r.i++;
      if (c === ']') {
        res.end = r.i;
        return res;
      }
      if (c !== ',') throw new Invalid();
    }
  } catch (err) {
    if (err instanceof Invalid) res.invalid = true;
    else if (!(err instanceof Incomplete)) throw err;
    return res;
  }
}
