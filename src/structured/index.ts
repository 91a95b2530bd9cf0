/**
 * Structured outputs: constrain generation to a JSON schema, JSON object, regex, choice list or
 * EBNF grammar with xgrammar's token bitmasks. See compiler.ts (compile, cache, check) and
 * matcher.ts (the per-sequence, per-step API).
 */
export { type GrammarSpec, type GrammarFormatOptions, type NormalizedSpec, normalizeSpec } from './spec.js';
export { GrammarChecker, sharedGrammarChecker } from './checker.js';
export { GrammarCompiler, CompiledGrammar, type GrammarCompilerOptions } from './compiler.js';
export { GrammarMatcher, applyTokenBitmask, bitmaskWords } from './matcher.js';
export { grammarVocab, detectVocabType, detectAddPrefixSpace, type GrammarVocab, type GrammarVocabOptions, type VocabType, type VocabTokenizer } from './vocab.js';
