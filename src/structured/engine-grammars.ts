/**
 * The engine's grammars (worker side): one GrammarCompiler for the served model's vocabulary,
 * built on first use (a model that never sees a structured request never pays for it), and the
 * per-step bitmasks of the constrained sequences.
 *
 * Compiles never run inside a step: `compile()` is asynchronous (compiler.ts yields to the event
 * loop before the native compile), and the engine admits a request only once its grammar is ready,
 * so a first-seen schema delays its own request and no other.
 */
import { PagewiseTokenizer, unpackTokenizerFiles, type PackedTokenizerFiles } from '../tokenizer/tokenizer.js';
import { GrammarCompiler, type CompiledGrammar } from './compiler.js';
import type { GrammarMatcher } from './matcher.js';
import type { GrammarSpec } from './spec.js';
import { grammarVocab } from './vocab.js';

export class EngineGrammars {
  private compiler: Promise<GrammarCompiler> | null = null;
  private ready: GrammarCompiler | null = null;
  /** Int32 words per mask row. */
  readonly words: number;
  /** Scratch for one step's masks, grown as needed. */
  private masks = new Int32Array(0);

  constructor(
    /** The model's tokenizer files, packed: unpacked only to build the compiler (then garbage). */
    private readonly tokenizer: PackedTokenizerFiles,
    /** Logits width. */
    private readonly vocabSize: number,
    /** Ids that end generation (EOS): a grammar allows them exactly where it can end. */
    private readonly stopTokenIds: readonly number[],
  ) {
    this.words = Math.ceil(vocabSize / 32);
  }

  /** The compiled grammar of this spec if it is cached (no work). */
  cached(spec: GrammarSpec): CompiledGrammar | undefined {
    return this.ready?.cached(spec);
  }

  /** Compile (or fetch) off the step loop. Rejects with GrammarError for a bad spec. */
  async compile(spec: GrammarSpec): Promise<CompiledGrammar> {
    const compiler = await (this.compiler ??= this.create());
    return compiler.compile(spec);
  }

  /**
   * This step's mask of each sequence that has a grammar (views into one scratch buffer, valid
   * until the next call), null for the others.
   */
  masksFor(matchers: ReadonlyArray<GrammarMatcher | null>): Array<Uint32Array | null> {
    let n = 0;
    for (const m of matchers) if (m !== null) n++;
    if (n * this.words > this.masks.length) this.masks = new Int32Array(n * this.words);
    let k = 0;
    return matchers.map((m) => {
      if (m === null) return null;
      const off = k++ * this.words;
      m.fillNextTokenBitmask(this.masks, off);
      return new Uint32Array(this.masks.buffer, off * 4, this.words);
    });
  }

  /** Free the compiler's native objects (live matchers keep their grammars). */
  dispose(): void {
    this.ready?.dispose();
    this.ready = null;
  }

  private async create(): Promise<GrammarCompiler> {
    const files = unpackTokenizerFiles(this.tokenizer);
    const vocab = grammarVocab(files.tokenizerJson, PagewiseTokenizer.fromFiles(files), { vocabSize: this.vocabSize, stopTokenIds: this.stopTokenIds });
    this.ready = await GrammarCompiler.create(vocab);
    return this.ready;
  }
}
