/**
 * What a request may ask of the loaded engine: token ids inside the vocabulary, no more sequences
 * at once than --max-num-seqs, and no more tokens than the model's context or the whole KV pool.
 * One set of checks for both threads: request parsing (server), AsyncEngine.generate (main thread,
 * before sending) and EngineCore.addRequest (worker, for callers that drive the core directly).
 */
import { ContextLengthError, InvalidRequestError } from '../errors.js';
import { requestWidth, type FanOutParams } from './fan-out.js';

export interface RequestLimits {
  /** Logits width: valid token ids are 0..vocabSize-1. */
  vocabSize: number;
  /** The model's context (possibly lowered by --max-model-len). */
  maxModelLen: number;
  /** Token slots in the whole KV pool (blocks × block size): no single request can be longer. */
  kvCacheTokens: number;
  /** Tokens per KV block (the pool hands out whole blocks). */
  blockSize: number;
  /** Most sequences the engine runs at once. */
  maxNumSeqs: number;
}

/** The limits of a loaded engine, from the facts the worker reports when it is ready. */
export function engineLimits(info: {
  model: { vocabSize: number };
  maxModelLen: number;
  numBlocks: number;
  blockSize: number;
  /** Tokens one sequence can hold (KV layouts with sliding windows); default blocks × block size. */
  kvSequenceTokens?: number;
  config: { maxNumSeqs: number };
}): RequestLimits {
  return {
    vocabSize: info.model.vocabSize,
    maxModelLen: info.maxModelLen,
    kvCacheTokens: info.kvSequenceTokens ?? info.numBlocks * info.blockSize,
    blockSize: info.blockSize,
    maxNumSeqs: info.config.maxNumSeqs,
  };
}

/** The longest request (prompt + output) the engine can hold. */
export function maxRequestTokens(l: Pick<RequestLimits, 'maxModelLen' | 'kvCacheTokens'>): number {
  return Math.min(l.maxModelLen, l.kvCacheTokens);
}

/** Throw unless `id` is an integer token id of the vocabulary. */
export function checkTokenId(param: string, id: number, vocabSize: number): void {
  if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
    throw new InvalidRequestError(`${param} contains token id ${id}, outside the vocabulary (valid ids are 0..${vocabSize - 1})`, { param });
  }
}

/** Throw when the request would run more sequences at once than the engine does. */
export function checkWidth(p: FanOutParams, maxNumSeqs: number): void {
  const width = requestWidth(p);
  if (width > maxNumSeqs) {
    throw new InvalidRequestError(
      `the request runs ${width} sequences at once (n/best_of) but the engine runs at most ${maxNumSeqs} (--max-num-seqs)`,
      { param: p.bestOf > p.n ? 'best_of' : 'n' },
    );
  }
}

/**
 * Reject a request that can never run: empty prompt, token ids outside the vocabulary, too many
 * sequences, or more tokens than the model's context or the whole KV pool holds.
 */
export function checkRequestFits(l: RequestLimits, prompt: readonly number[], params: FanOutParams & { maxTokens: number }): void {
  if (prompt.length === 0) throw new InvalidRequestError('the prompt is empty: at least one token is needed', { param: 'prompt' });
  for (const id of prompt) checkTokenId('prompt', id, l.vocabSize);
  checkWidth(params, l.maxNumSeqs);
  const total = prompt.length + params.maxTokens;
  if (total > l.maxModelLen) {
    throw new ContextLengthError(
      `This model's maximum context length is ${l.maxModelLen} tokens. However, you requested ${total} tokens ` +
        `(${prompt.length} in the prompt, ${params.maxTokens} for the completion). Reduce the prompt or max_tokens.`,
      { param: 'max_tokens', code: 'context_length_exceeded' },
    );
  }
  if (total > l.kvCacheTokens) {
    const blocks = Math.ceil(total / l.blockSize);
    const numBlocks = l.kvCacheTokens / l.blockSize;
    throw new ContextLengthError(
      `the request needs ${blocks} KV blocks (${total} tokens) but the KV cache has only ${numBlocks} ` +
        `(${l.kvCacheTokens} tokens); raise --kv-cache-memory or shorten the request`,
      { param: 'max_tokens', code: 'context_length_exceeded' },
    );
  }
}
