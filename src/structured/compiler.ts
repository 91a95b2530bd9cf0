/**
 * Grammar compilation: a GrammarCompiler, one per tokenizer, that compiles specs against the
 * vocabulary (after checking them on a GrammarChecker, checker.ts) and caches the results by spec
 * text in an LRU.
 *
 * Threading: compiled grammars live in the wasm instance that built them and the web build has no
 * serialization, so compilation runs on the thread that will match (the engine's). `compile()`
 * first yields to the event loop, so a step in progress finishes before the compile starts, and
 * then runs to completion (measured on this 2-core machine, 49152-token byte-level vocabulary: a
 * schema of a few nested objects, arrays and enums 14–55 ms, json_object 10–65 ms, a regex 1–7 ms,
 * a choice or a small EBNF grammar < 1 ms; see the timing test in test/structured.test.ts); each
 * spec text is compiled once and cached.
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { GrammarChecker, toGrammarError } from './checker.js';
import { compileSpec, describe, normalizeSpec, type GrammarFormatOptions, type GrammarSpec, type NormalizedSpec } from './spec.js';
import { GrammarMatcher } from './matcher.js';
import { tokenBytes, Utf8Masks } from './utf8.js';
import type { GrammarVocab } from './vocab.js';
import { XGrammarInstance, type NativeCompiledGrammar, type NativeCompiler, type NativeTokenizerInfo } from './xgrammar.js';

/** A compiled grammar. Reference-counted: the cache holds one reference, each matcher one. */
export class CompiledGrammar {
  private refs = 1;

  constructor(
    readonly spec: NormalizedSpec,
    /** Milliseconds the native compile took. */
    readonly compileMs: number,
    private readonly handle: NativeCompiledGrammar,
    private readonly compiler: GrammarCompiler,
  ) {}

  get released(): boolean {
    return this.refs === 0;
  }

  /** A fresh matcher at the start of the grammar. */
  createMatcher(): GrammarMatcher {
    return this.compiler.newMatcher(this);
  }

  /** @internal the native handle, for matchers; throws once released. */
  native(): NativeCompiledGrammar {
    if (this.refs === 0) throw new Error(`compiled grammar ${describe(this.spec)} used after release`);
    return this.handle;
  }

  /** @internal */
  retain(): void {
    this.native();
    this.refs++;
  }

  /** @internal */
  release(): void {
    if (this.refs === 0) return;
    if (--this.refs === 0) this.handle.delete();
  }
}

export interface GrammarCompilerOptions extends GrammarFormatOptions {
  /** Compiled grammars kept (LRU by spec text). Default 64. */
  cacheSize?: number;
}

export class GrammarCompiler {
  /** Logits width; masks cover ids [0, vocabSize). */
  readonly vocabSize: number;
  /** Int32 words per mask row: ceil(vocabSize / 32). */
  readonly bitmaskWords: number;
  readonly stopTokenIds: readonly number[];
  /** @internal the UTF-8 validity masks every grammar mask is ANDed with (see utf8.ts). */
  readonly utf8: Utf8Masks;
  private readonly cache = new Map<string, CompiledGrammar>();
  private readonly inflight = new Map<string, Promise<CompiledGrammar>>();
  private readonly checker: GrammarChecker;
  private readonly cacheSize: number;
  private disposed = false;

  private constructor(
    /** @internal */ readonly instance: XGrammarInstance,
    private readonly info: NativeTokenizerInfo,
    private readonly native: NativeCompiler,
    vocab: GrammarVocab,
    private readonly fmt: GrammarCompilerOptions,
  ) {
    this.vocabSize = vocab.vocabSize;
    this.bitmaskWords = Math.ceil(vocab.vocabSize / 32);
    this.stopTokenIds = vocab.stopTokenIds;
    this.utf8 = new Utf8Masks(tokenBytes(vocab), vocab.vocabSize);
    this.checker = new GrammarChecker(fmt);
    this.cacheSize = fmt.cacheSize ?? 64;
    if (!Number.isInteger(this.cacheSize) || this.cacheSize < 1) throw new RangeError(`cacheSize must be a positive integer, got ${fmt.cacheSize}`);
  }

  /** Build the compiler for one vocabulary (tens of ms for a 50k vocabulary: done once per model). */
  static async create(vocab: GrammarVocab, opts: GrammarCompilerOptions = {}): Promise<GrammarCompiler> {
    const inst = await XGrammarInstance.create();
    const { info, native } = inst.call('tokenizer info', (b) => {
      const vec = b.vecStringFromJSArray(vocab.encodedVocab);
      const stops = b.vecIntFromJSArray(vocab.stopTokenIds);
      try {
        const info = new b.TokenizerInfo(vec, vocab.vocabType.toUpperCase(), vocab.vocabSize, stops, vocab.addPrefixSpace);
        // One thread: the web build has none. Its internal cache is off: ours keys by spec text.
        return { info, native: new b.GrammarCompiler(info, 1, false) };
      } finally {
        vec.delete();
        stops.delete();
      }
    });
    return new GrammarCompiler(inst, info, native, vocab, opts);
  }

  /** The cached compile of this spec, if any (no work; for the step loop). */
  cached(spec: GrammarSpec): CompiledGrammar | undefined {
    return this.touch(normalizeSpec(spec).key);
  }

  /**
   * Compile (or fetch from the cache) off the caller's current turn: yields to the event loop
   * first, and concurrent requests for one spec share one compile. Rejects with GrammarError.
   */
  async compile(spec: GrammarSpec): Promise<CompiledGrammar> {
    const norm = normalizeSpec(spec);
    const hit = this.touch(norm.key);
    if (hit) return hit;
    let pending = this.inflight.get(norm.key);
    if (pending === undefined) {
      pending = (async () => {
        try {
          await this.checker.check(spec);
          await yieldToLoop();
          return this.touch(norm.key) ?? this.compileNormalized(norm);
        } finally {
          this.inflight.delete(norm.key);
        }
      })();
      this.inflight.set(norm.key, pending);
    }
    return pending;
  }

  /**
   * Compile now on this thread (offline use, tests). The spec must have passed a GrammarChecker,
   * or come from a trusted source: an invalid spec fails the engine's instance (GrammarError is
   * still thrown, but the instance may leak memory afterwards).
   */
  compileSync(spec: GrammarSpec): CompiledGrammar {
    const norm = normalizeSpec(spec);
    return this.touch(norm.key) ?? this.compileNormalized(norm);
  }

  /** @internal a matcher over `compiled`; used by CompiledGrammar.createMatcher and forks. */
  newMatcher(compiled: CompiledGrammar): GrammarMatcher {
    this.assertLive();
    return new GrammarMatcher(this, compiled);
  }

  /** Compiled grammars in the cache. */
  get cacheEntries(): number {
    return this.cache.size;
  }

  /** Free the native objects. Matchers still alive keep their grammar until they are disposed. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const c of this.cache.values()) c.release();
    this.cache.clear();
    this.native.delete();
    this.info.delete();
  }

  private assertLive(): void {
    if (this.disposed) throw new Error('GrammarCompiler used after dispose()');
  }

  private touch(key: string): CompiledGrammar | undefined {
    const hit = this.cache.get(key);
    if (hit) {
      this.cache.delete(key);
      this.cache.set(key, hit);
    }
    return hit;
  }

  private compileNormalized(norm: NormalizedSpec): CompiledGrammar {
    this.assertLive();
    const t0 = performance.now();
    let handle: NativeCompiledGrammar;
    try {
      handle = this.instance.call('compile', (b) => compileSpec(b, this.native, norm, this.fmt));
    } catch (err) {
      toGrammarError(norm, err);
    }
    const compiled = new CompiledGrammar(norm, performance.now() - t0, handle, this);
    this.cache.set(norm.key, compiled);
    while (this.cache.size > this.cacheSize) {
      const [oldest, entry] = this.cache.entries().next().value as [string, CompiledGrammar];
      this.cache.delete(oldest);
      entry.release();
    }
    return compiled;
  }
}
