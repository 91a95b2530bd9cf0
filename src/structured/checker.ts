/**
 * Validating grammar specs before a request reaches the engine: a GrammarChecker compiles each spec
 * on a disposable xgrammar instance of its own, against a one-token vocabulary (cheap: no token
 * masks to build), which meets every parse and compile failure the engine's compile would.
 *
 * Both threads use it: the server and the offline API check what clients send (a bad schema is a
 * 400 that never reaches the engine), and the engine's GrammarCompiler checks again before it
 * compiles on its own instance (which must never see input that can fail: see xgrammar.ts). This
 * module imports nothing of the engine's side.
 */
import { GrammarError } from '../errors.js';
import { compileSpec, describe, normalizeSpec, type GrammarFormatOptions, type GrammarSpec, type NormalizedSpec } from './spec.js';
import { XGrammarInstance, XGrammarNativeError, type NativeCompiler } from './xgrammar.js';

/** Rethrow a native failure as the GrammarError (400) a client sees; anything else unchanged. */
export function toGrammarError(spec: NormalizedSpec, err: unknown): never {
  if (err instanceof XGrammarNativeError) {
    const msg = err.message.replace(/^[^:]*: /, '');
    throw new GrammarError(`invalid ${describe(spec)}: ${msg}`, { param: 'response_format', cause: err });
  }
  throw err;
}

/** Spec keys that passed, remembered so a client repeating a schema is not re-checked (LRU). */
const PASSED_KEPT = 256;

/**
 * Validates specs on its own instance, replaced after any failure (a failed native call may leave
 * an instance leaking). Errors are GrammarError (400).
 */
export class GrammarChecker {
  private instance: Promise<{ inst: XGrammarInstance; compiler: NativeCompiler }> | null = null;
  private readonly passed = new Map<string, true>();

  constructor(private readonly fmt: GrammarFormatOptions = {}) {}

  /** Throws GrammarError when the spec cannot be compiled; returns its normalized form. */
  async check(spec: GrammarSpec): Promise<NormalizedSpec> {
    const norm = normalizeSpec(spec);
    if (this.passed.has(norm.key)) {
      this.passed.delete(norm.key);
      this.passed.set(norm.key, true);
      return norm;
    }
    const current = (this.instance ??= GrammarChecker.start());
    const { inst, compiler } = await current;
    try {
      inst.call('check', (b) => compileSpec(b, compiler, norm, this.fmt).delete());
    } catch (err) {
      if (inst.aborted && this.instance === current) this.instance = null;
      toGrammarError(norm, err);
    }
    this.passed.set(norm.key, true);
    if (this.passed.size > PASSED_KEPT) this.passed.delete(this.passed.keys().next().value!);
    return norm;
  }

  private static async start(): Promise<{ inst: XGrammarInstance; compiler: NativeCompiler }> {
    const inst = await XGrammarInstance.create();
    const compiler = inst.call('checker', (b) => {
      const vocab = b.vecStringFromJSArray(['a']);
      const stops = b.vecIntFromJSArray([0]);
      try {
        return new b.GrammarCompiler(new b.TokenizerInfo(vocab, 'RAW', 1, stops, false), 1, false);
      } finally {
        vocab.delete();
        stops.delete();
      }
    });
    return { inst, compiler };
  }
}

/** One checker per thread for what clients send (the server, the offline API). */
let shared: GrammarChecker | null = null;

export function sharedGrammarChecker(): GrammarChecker {
  return (shared ??= new GrammarChecker());
}
