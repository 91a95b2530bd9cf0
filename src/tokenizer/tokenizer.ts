/**
 * The model's tokenizer: `tokenizer.json` run by @huggingface/tokenizers (a BPE model's merge step
 * by compact-bpe.ts, which holds the merges in a fraction of the memory), special-token facts from
 * `tokenizer_config.json`, and the chat template rendered by @huggingface/jinja.
 *
 * Everything a request needs from the tokenizer goes through this class, so the server, the offline
 * API and the detokenizer agree on one encoding and one decoding.
 */
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { deserialize, serialize } from 'node:v8';
import { Tokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';
import { InvalidRequestError, ModelLoadError } from '../errors.js';
import { CompactBpe, type LibBpe } from './compact-bpe.js';

/** One chat message as the OpenAI API sends it (text parts only). */
export interface ChatMessage {
  role: string;
  content: string | Array<{ type: 'text'; text: string }>;
  name?: string;
  /** An assistant's tool calls (arguments as objects, for the template). */
  tool_calls?: unknown[];
  /** A tool result's call id. */
  tool_call_id?: string;
}

export interface EncodeOptions {
  /** Add the special tokens of the post-processor (BOS for Llama-style tokenizers). Default true. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (BOS, EOS, ...) from the text. Default false (as HF `decode`). */
  skipSpecialTokens?: boolean;
  /** Accepted for vLLM/OpenAI compatibility; no effect with `tokenizer.json` decoders (see `decode`). */
  spacesBetweenSpecialTokens?: boolean;
}

export interface ChatTemplateOptions {
  /** Append the assistant header so the model answers next. Default true. */
  addGenerationPrompt?: boolean;
  /** OpenAI `tools`, passed to the template as `tools`. */
  tools?: unknown;
  /** Extra template variables (vLLM's `chat_template_kwargs`). */
  extra?: Record<string, unknown>;
}

/** The JSON shapes we read; everything else in these files is passed through untouched. */
type JsonObject = Record<string, unknown>;

interface AddedTokenJson {
  id: number;
  content: string;
  special?: boolean;
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function readJson(path: string, what: string): JsonObject {
  if (!existsSync(path)) throw new ModelLoadError(`${what} not found: ${path}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ModelLoadError(`${what} is not valid JSON: ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (!isObject(parsed)) throw new ModelLoadError(`${what} must hold a JSON object: ${path}`);
  return parsed;
}

/** `bos_token` and friends are either a string or an AddedToken dict `{content: ...}`. */
function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v['content'] === 'string') return v['content'];
  return null;
}

/**
 * Pick the template the way transformers does: a plain string, or a list of named templates where
 * `tool_use` wins when tools are given and `default` otherwise.
 */
function selectTemplate(raw: unknown, wantTools: boolean): string | null {
  if (typeof raw === 'string') return raw;
  if (Array.isArray(raw)) {
    const named = new Map<string, string>();
    for (const t of raw) {
      if (isObject(t) && typeof t['name'] === 'string' && typeof t['template'] === 'string') {
        named.set(t['name'], t['template']);
      }
    }
    if (wantTools && named.has('tool_use')) return named.get('tool_use') ?? null;
    return named.get('default') ?? null;
  }
  if (isObject(raw)) return selectTemplate(Object.entries(raw).map(([name, template]) => ({ name, template })), wantTools);
  return null;
}

/**
 * What a tokenizer is built from, whatever the model format: a Hugging Face directory's files as
 * they are, or the equivalent a GGUF file's metadata is converted into. Plain data, so the engine
 * worker can read a model's tokenizer and hand it to the main thread in one message.
 */
export interface TokenizerFiles {
  tokenizerJson: JsonObject;
  tokenizerConfig: JsonObject;
  /** A template overriding the config's (`chat_template.jinja` / `.json`), if any. */
  chatTemplate?: unknown;
}

/**
 * TokenizerFiles serialized once (v8.serialize) into shared memory: ~3 MB for Llama 3's 128k-entry
 * vocabulary, where the parsed objects take ~11-15 MB of V8 heap. The engine worker reads the
 * model's tokenizer into this form and keeps only it (for structured outputs); the main thread and
 * the tokenizer pool's workers build their tokenizers from the same bytes: a SharedArrayBuffer
 * crosses threads without a copy, so a process holds one.
 */
export type PackedTokenizerFiles = Uint8Array;

export function packTokenizerFiles(files: TokenizerFiles): PackedTokenizerFiles {
  const bytes = serialize(files);
  const out = new Uint8Array(new SharedArrayBuffer(bytes.byteLength));
  out.set(bytes);
  return out;
}

/** The files back as objects (a fresh copy each call: the caller keeps only what it builds from them). */
export function unpackTokenizerFiles(packed: PackedTokenizerFiles): TokenizerFiles {
  return deserialize(packed) as TokenizerFiles;
}

/** The tokenizer files of a Hugging Face model directory. */
export function readTokenizerFiles(dir: string): TokenizerFiles {
  const tokenizerJson = readJson(join(dir, 'tokenizer.json'), 'tokenizer.json');
  const tokenizerConfig = readJson(join(dir, 'tokenizer_config.json'), 'tokenizer_config.json');
  const jinjaPath = join(dir, 'chat_template.jinja');
  const jsonPath = join(dir, 'chat_template.json');
  if (existsSync(jinjaPath)) return { tokenizerJson, tokenizerConfig, chatTemplate: readFileSync(jinjaPath, 'utf8') };
  if (existsSync(jsonPath)) {
    const t = readJson(jsonPath, 'chat_template.json')['chat_template'];
    if (t === undefined) throw new ModelLoadError(`chat_template.json has no "chat_template" field: ${jsonPath}`);
    return { tokenizerJson, tokenizerConfig, chatTemplate: t };
  }
  return { tokenizerJson, tokenizerConfig };
}

export class PagewiseTokenizer {
  /** Number of token ids (highest id + 1), added tokens included. */
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  /** Whether `encode(text)` (with special tokens) starts with BOS. */
  readonly addBosToken: boolean;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  /** The default chat template (`null` when the model has none). */
  readonly chatTemplate: string | null;

  private readonly tok: Tokenizer;
  private readonly specialIds: Set<number>;
  private readonly rawChatTemplate: unknown;
  private readonly templateCache = new Map<string, Template>();

  /**
   * @param tokenizerJson the parsed `tokenizer.json`
   * @param tokenizerConfig the parsed `tokenizer_config.json`
   * @param chatTemplate a template that overrides the config's (from `chat_template.jinja` / `.json`)
   */
  constructor(tokenizerJson: JsonObject, tokenizerConfig: JsonObject, chatTemplate?: unknown) {
    if (!isObject(tokenizerJson['model'])) throw new ModelLoadError('tokenizer.json has no "model" object');
    // The library wants `added_tokens` to exist; older files omit it.
    const json: JsonObject = { ...tokenizerJson, added_tokens: Array.isArray(tokenizerJson['added_tokens']) ? tokenizerJson['added_tokens'] : [] };
    // A BPE model's merges go to a compact table (compact-bpe.ts) instead of the library's.
    const model = tokenizerJson['model'] as JsonObject;
    const merges = model['merges'];
    const compact = CompactBpe.supports({ config: model }) && Array.isArray(merges) && isObject(model['vocab']);
    // Our own copy of the model's config: the library keeps it (as the tokenizer's and the model's
    // `config`), and its vocabulary is dropped from it once built (below). CompactBpe builds the
    // vocabulary itself, so the library's model gets none.
    const modelConfig: JsonObject = { ...model, merges: compact ? [] : merges, vocab: compact ? {} : model['vocab'] };
    json['model'] = modelConfig;
    try {
      this.tok = new Tokenizer(json, tokenizerConfig);
      if (compact) this.tok.model = new CompactBpe(this.tok.model as LibBpe, model['vocab'] as Record<string, number>, merges as Array<string | [string, string]>);
    } catch (err) {
      throw new ModelLoadError(`tokenizer.json could not be loaded: ${(err as Error).message}`, { cause: err });
    }
    // Every model copies the vocabulary into its own Map and array when built and never reads the
    // config's again: the object (~6 MB of V8 heap for a 128k-entry vocabulary, in every thread
    // holding a tokenizer) would otherwise stay referenced for nothing.
    delete modelConfig['vocab'];

    const added = (json['added_tokens'] as unknown[]).filter(
      (t): t is AddedTokenJson => isObject(t) && typeof t['id'] === 'number' && typeof t['content'] === 'string',
    );
    this.specialIds = new Set(added.filter((t) => t.special === true).map((t) => t.id));

    this.vocabSize = Math.max(maxModelId(tokenizerJson['model'] as JsonObject), ...added.map((t) => t.id)) + 1;

    this.bosToken = tokenContent(tokenizerConfig['bos_token']);
    this.eosToken = tokenContent(tokenizerConfig['eos_token']);
    this.bosTokenId = this.bosToken === null ? null : (this.tok.token_to_id(this.bosToken) ?? null);
    this.eosTokenId = this.eosToken === null ? null : (this.tok.token_to_id(this.eosToken) ?? null);
    // Config-declared special tokens are special even when tokenizer.json forgot the flag.
    for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) {
      const c = tokenContent(tokenizerConfig[key]);
      const id = c === null ? undefined : this.tok.token_to_id(c);
      if (id !== undefined) this.specialIds.add(id);
    }

    // Probe rather than trust `add_bos_token`: the post-processor in tokenizer.json is what actually
    // runs (Llama 3 adds BOS without declaring add_bos_token; Qwen2 adds none).
    if (this.bosTokenId === null) {
      this.addBosToken = false;
    } else {
      const withSpecial = this.tok.encode('a', { add_special_tokens: true }).ids;
      const without = this.tok.encode('a', { add_special_tokens: false }).ids;
      this.addBosToken = withSpecial[0] === this.bosTokenId && without[0] !== this.bosTokenId;
    }

    this.rawChatTemplate = chatTemplate ?? tokenizerConfig['chat_template'] ?? null;
    this.chatTemplate = selectTemplate(this.rawChatTemplate, false);
  }

  /**
   * Load `tokenizer.json` and `tokenizer_config.json` from a model directory. A separate
   * `chat_template.jinja` (or `chat_template.json`) takes priority over the config's template, as in
   * transformers.
   */
  static fromDir(dir: string): PagewiseTokenizer {
    return PagewiseTokenizer.fromFiles(readTokenizerFiles(dir));
  }

  static fromFiles(f: TokenizerFiles): PagewiseTokenizer {
    return new PagewiseTokenizer(f.tokenizerJson, f.tokenizerConfig, f.chatTemplate ?? undefined);
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    return this.tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  }

  /**
   * Decode ids to text with the `tokenizer.json` decoder. Never applies
   * `clean_up_tokenization_spaces`: vLLM's streamed output does not either, and the incremental
   * detokenizer must reproduce this text exactly.
   *
   * `spacesBetweenSpecialTokens` is accepted for API compatibility and changes nothing: like HF fast
   * tokenizers and vLLM's (v1) fast incremental detokenizer, decoding follows `tokenizer.json`,
   * whose decoders never insert spaces around added tokens. (Only HF *slow* tokenizers join added
   * tokens with spaces; emulating that would make our text differ from vLLM's for the same model,
   * e.g. Qwen3's non-special `<think>`.)
   */
  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    // The library throws on an empty list.
    if (ids.length === 0) return '';
    return this.tok.decode(ids as number[], { skip_special_tokens: opts.skipSpecialTokens ?? false, clean_up_tokenization_spaces: false });
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  idToToken(id: number): string | null {
    return this.tok.id_to_token(id) ?? null;
  }

  /** The id of a token string, or null when it is not in the vocabulary. */
  tokenToId(token: string): number | null {
    return this.tok.token_to_id(token) ?? null;
  }

  /**
   * Render a chat with the model's template. Array contents are flattened to their text parts joined
   * by "\n" (vLLM's "string" content format, which every text-only template understands).
   * Template errors (including the template's own `raise_exception`) are request errors.
   */
  applyChatTemplate(messages: ChatMessage[], opts: ChatTemplateOptions = {}): string {
    const wantTools = opts.tools !== undefined && opts.tools !== null;
    const source = selectTemplate(this.rawChatTemplate, wantTools);
    if (source === null) {
      throw new InvalidRequestError(
        'The model has no chat_template (tokenizer_config.json / chat_template.jinja); use the completions API or supply a template',
        { param: 'messages' },
      );
    }
    let template = this.templateCache.get(source);
    if (template === undefined) {
      try {
        template = new Template(source);
      } catch (err) {
        throw new InvalidRequestError(`The model's chat_template could not be parsed: ${(err as Error).message}`, { param: 'messages', cause: err });
      }
      this.templateCache.set(source, template);
    }
    // Other message fields (tool_calls, tool_call_id, ...) pass through untouched for templates
    // that use them; only list contents are flattened.
    const flat = messages.map((m) => {
      const content: unknown = Array.isArray(m.content) ? m.content.map((p) => p.text).join('\n') : m.content;
      return { ...m, content };
    });
    const vars: Record<string, unknown> = {
      ...(opts.extra ?? {}),
      messages: flat,
      add_generation_prompt: opts.addGenerationPrompt ?? true,
      bos_token: this.bosToken ?? '',
      eos_token: this.eosToken ?? '',
    };
    if (wantTools) vars['tools'] = opts.tools;
    try {
      return template.render(vars);
    } catch (err) {
      throw new InvalidRequestError(`chat template error: ${(err as Error).message}`, { param: 'messages', cause: err });
    }
  }

  /**
   * Tokenize a rendered chat prompt. Templates write their own BOS (when the model wants one), so
   * no special tokens are added here — as transformers' `apply_chat_template(tokenize=True)` and
   * vLLM's chat endpoint do. A rendered prompt that starts with the BOS text therefore gets exactly
   * one BOS (the text itself is parsed as the special token), and one that does not gets none.
   */
  encodeChatPrompt(rendered: string): number[] {
    return this.encode(rendered, { addSpecialTokens: false });
  }
}

/** Highest id in the model's own vocabulary (BPE/WordPiece: a token → id map; Unigram: a list). */
function maxModelId(model: JsonObject): number {
  const vocab = model['vocab'];
  if (Array.isArray(vocab)) return vocab.length - 1;
  if (isObject(vocab)) {
    // A for-in loop, not Object.values: see CompactBpe's constructor on what that costs.
    let max = -1;
    for (const piece in vocab) {
      const v = vocab[piece];
      if (typeof v === 'number' && v > max) max = v;
    }
    return max;
  }
  return -1;
}
