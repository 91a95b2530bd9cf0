/**
 * Tokenizer work as data. Request parsing is written once, as a generator that yields the
 * tokenizer work it needs (`yield* encodeTexts(...)`, `yield* renderChatTemplate(...)`) and gets
 * the results back. Whoever runs the generator decides where that work happens: `runInline` on the
 * calling thread (tests, small tools), `TokenizerPool.run` off the event loop for long inputs (the
 * server). Both see the same parsing code, so they cannot disagree.
 */
import type { ChatMessage, ChatTemplateOptions, PagewiseTokenizer } from './tokenizer.js';

export type TokenizerJob =
  /** Encode each text; the answer is one id list per text. */
  | { op: 'encode'; texts: string[]; addSpecialTokens: boolean }
  /** Render a chat with the model's template; the answer is the text. */
  | { op: 'chat'; messages: ChatMessage[]; opts: ChatTemplateOptions };

/** A computation that yields tokenizer jobs and finally returns a T. */
export type WithTokenizer<T> = Generator<TokenizerJob, T, unknown>;

export function* encodeTexts(texts: string[], addSpecialTokens: boolean): WithTokenizer<number[][]> {
  return (yield { op: 'encode', texts, addSpecialTokens }) as number[][];
}

export function* renderChatTemplate(messages: ChatMessage[], opts: ChatTemplateOptions): WithTokenizer<string> {
  return (yield { op: 'chat', messages, opts }) as string;
}

/** Do one job with a tokenizer on this thread. */
export function runJob(tok: PagewiseTokenizer, job: TokenizerJob): number[][] | string {
  if (job.op === 'encode') return job.texts.map((t) => tok.encode(t, { addSpecialTokens: job.addSpecialTokens }));
  return tok.applyChatTemplate(job.messages, job.opts);
}

/** Run a computation with every job done here, synchronously. A job's error is thrown into it. */
export function runInline<T>(g: WithTokenizer<T>, tok: PagewiseTokenizer): T {
  let step = g.next();
  while (!step.done) {
    let result: unknown;
    try {
      result = runJob(tok, step.value);
    } catch (err) {
      step = g.throw(err);
      continue;
    }
    step = g.next(result);
  }
  return step.value;
}

/** Characters of input a job reads (what decides whether it is worth a trip to a worker). */
export function jobSize(job: TokenizerJob): number {
  if (job.op === 'encode') return job.texts.reduce((s, t) => s + t.length, 0);
  let n = 0;
  for (const m of job.messages) n += typeof m.content === 'string' ? m.content.length : m.content.reduce((s, p) => s + p.text.length, 0);
  // Tools and template variables are rendered too; their JSON length is a fair measure.
  if (job.opts.tools !== undefined) n += JSON.stringify(job.opts.tools)?.length ?? 0;
  if (job.opts.extra !== undefined) n += JSON.stringify(job.opts.extra)?.length ?? 0;
  return n;
}
