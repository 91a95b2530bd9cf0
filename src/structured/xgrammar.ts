/**
 * Loads xgrammar's WebAssembly build (`@mlc-ai/web-xgrammar`) in Node and gives each caller its own
 * instance, with every native failure turned into a JS error that carries xgrammar's message.
 *
 * Why a shim: the package is an Emscripten bundle wrapped as UMD, shipped under `"type": "module"`.
 * Imported as ESM it finds neither `require` nor `__filename` (it uses both to locate itself) and it
 * keeps one module-global instance. So we read the bundle text, evaluate it as CommonJS (giving it
 * `require`, `module`, `__filename`, `__dirname`), and expose its Emscripten factory, which the
 * package's own JS wrapper hides. One factory call = one independent wasm instance.
 *
 * Why separate instances: the build reports every error (bad schema, bad regex, misuse) through
 * `abort()` after printing a `[FATAL] file:line: message` line; the wasm stack is then unwound
 * without running C++ destructors. An instance that aborted may have leaked memory, so the
 * engine's instance must never see input that can fail: grammars are checked first on a separate,
 * disposable instance (see compiler.ts), and the matcher guards every precondition in JS.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { PagewiseError } from '../errors.js';

/** The embind objects we use; each must be `delete()`d. Shapes follow xgrammar's web bindings. */
export interface NativeHandle {
  delete(): void;
}
export type NativeGrammar = NativeHandle;
export type NativeTokenizerInfo = NativeHandle;
export type NativeCompiledGrammar = NativeHandle;
export interface NativeCompiler extends NativeHandle {
  CompileJSONSchema(schema: string, anyWhitespace: boolean, indent: number | undefined, separators: undefined, strictMode: boolean, maxWhitespace: number | undefined): NativeCompiledGrammar;
  CompileGrammar(grammar: NativeGrammar): NativeCompiledGrammar;
  CompileStructuralTag(json: string): NativeCompiledGrammar;
}
export interface NativeMatcher extends NativeHandle {
  AcceptToken(id: number, verbose: boolean): boolean;
  GetNextTokenBitmask(vocabSize: number): NativeVector<number>;
  IsTerminated(): boolean;
  Reset(): void;
  Rollback(n: number): void;
}
export interface NativeVector<T> extends NativeHandle {
  size(): number;
  get(i: number): T;
}

/** The Emscripten module: the embind classes and the vector helpers. */
export interface XGrammarBinding {
  TokenizerInfo: new (vocab: NativeVector<string>, vocabType: string, vocabSize: number | undefined, stopTokenIds: NativeVector<number> | undefined, prependSpace: boolean) => NativeTokenizerInfo;
  GrammarCompiler: new (info: NativeTokenizerInfo, maxThreads: number, cacheEnabled: boolean) => NativeCompiler;
  GrammarMatcher: new (compiled: NativeCompiledGrammar, overrideStopTokens: NativeVector<number> | undefined, terminateWithoutStopToken: boolean, maxRollbackTokens: number) => NativeMatcher;
  Grammar: {
    FromEBNF(ebnf: string, rootRule: string): NativeGrammar;
  };
  vecStringFromJSArray(a: Array<string | Uint8Array>): NativeVector<string>;
  vecIntFromJSArray(a: number[]): NativeVector<number>;
  /** A view of the vector's storage in wasm memory: valid until the next allocation. */
  vecIntToView(v: NativeVector<number>): Int32Array;
}

/** A native call failed: xgrammar's own message (file and line prefix removed). */
export class XGrammarNativeError extends PagewiseError {}

type Factory = (opts: { print?: (s: string) => void; printErr?: (s: string) => void }) => Promise<XGrammarBinding>;

let factory: Factory | null = null;

/** The bundle's last line before the UMD footer; we add one export after it. */
const EXPORT_ANCHOR = 'exports.default = index;';

function loadFactory(): Factory {
  if (factory !== null) return factory;
  const require = createRequire(import.meta.url);
  const file = require.resolve('@mlc-ai/web-xgrammar');
  const source = readFileSync(file, 'utf8');
  const at = source.indexOf(EXPORT_ANCHOR);
  if (at < 0 || source.indexOf(EXPORT_ANCHOR, at + 1) >= 0) {
    throw new PagewiseError(`@mlc-ai/web-xgrammar at ${file} is not the build this shim knows (0.1.27): its export block changed`);
  }
  // `Module` is the Emscripten factory in the bundle's scope.
  const patched = source.replace(EXPORT_ANCHOR, `${EXPORT_ANCHOR} exports.__pagewiseFactory = Module;`);
  const mod: { exports: Record<string, unknown> } = { exports: {} };
  // A Function (not vm) so the bundle's `await import('module')` uses Node's default loader.
  const run = new Function('exports', 'require', 'module', '__filename', '__dirname', `${patched}\n//# sourceURL=${file}`) as (
    e: unknown, r: NodeJS.Require, m: unknown, f: string, d: string,
  ) => void;
  run.call(mod.exports, mod.exports, createRequire(file), mod, file, dirname(file));
  const f = mod.exports['__pagewiseFactory'];
  if (typeof f !== 'function') throw new PagewiseError('@mlc-ai/web-xgrammar: the Emscripten factory was not found');
  factory = f as Factory;
  return factory;
}

/** The last `[FATAL] path:line: message` xgrammar printed, as `message`. */
function fatalMessage(lines: string[]): string | null {
  for (let i = lines.length - 1; i >= 0; i--) {
    const m = /^\[FATAL\] (?:[^\s:]+:\d+: )?(.*)$/s.exec(lines[i]!);
    if (m) return m[1]!.replace(/^Check failed: \(.*?\) is false: /s, '').trim();
  }
  return null;
}

/** One wasm instance of xgrammar. */
export class XGrammarInstance {
  /** Set once a native call aborted: the instance may have leaked memory and should be replaced. */
  aborted = false;
  private readonly stderr: string[] = [];

  private constructor(readonly binding: XGrammarBinding, stderr: string[]) {
    this.stderr = stderr;
  }

  static async create(): Promise<XGrammarInstance> {
    const stderr: string[] = [];
    const binding = await loadFactory()({
      print: () => {},
      // Keep only the recent lines: they explain the next abort.
      printErr: (s) => {
        stderr.push(s);
        if (stderr.length > 16) stderr.shift();
      },
    });
    return new XGrammarInstance(binding, stderr);
  }

  /**
   * Run native work; an abort becomes an XGrammarNativeError with xgrammar's message. JS errors
   * (embind type errors) pass through unchanged.
   */
  call<T>(what: string, fn: (b: XGrammarBinding) => T): T {
    this.stderr.length = 0;
    try {
      return fn(this.binding);
    } catch (err) {
      if (err instanceof WebAssembly.RuntimeError) {
        this.aborted = true;
        const msg = fatalMessage(this.stderr) ?? err.message;
        throw new XGrammarNativeError(`${what}: ${msg}`, { cause: err });
      }
      // A C++ exception that escaped: Emscripten throws the exception's address, with no message.
      if (typeof err === 'number') {
        this.aborted = true;
        const msg = fatalMessage(this.stderr) ?? 'xgrammar raised an internal error';
        throw new XGrammarNativeError(`${what}: ${msg}`, { cause: err });
      }
      throw err;
    }
  }
}
