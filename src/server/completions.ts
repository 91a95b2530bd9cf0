/**
 * POST /v1/completions: one or more prompts, n choices each, streamed or not.
 * Choice `index` is `prompt_index * n + output_index`, as vLLM numbers them.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { CompletionOutput, RequestOutput } from '../engine/output-processor.js';
import { checkAccepting, responseId, warnIgnored, type ServeContext } from './context.js';
import {
  completionLogprobs,
  concatCompletionLogprobs,
  promptLogprobsOut,
  TokenStrings,
  usage,
  type CompletionLogprobs,
} from './format.js';
import { Generation } from './generation.js';
import { parseCompletion, type CompletionRequest } from './request.js';
import { streamGeneration } from './streaming.js';
import { checkGrammar } from './structured-fields.js';

interface Shared {
  sc: ServeContext;
  req: CompletionRequest;
  id: string;
  created: number;
  strs: TokenStrings;
  /** Per prompt: the text echoed back (the client's text, or the decoded token ids). */
  promptTexts: string[];
}

/** The n outputs of one prompt that the client gets (the best by cumulative logprob under best_of). */
function tokensOf(outs: readonly CompletionOutput[], echoOnly: boolean): number {
  return echoOnly ? 0 : outs.reduce((a, c) => a + c.tokenIds.length, 0);
}

export async function completionsHandler(sc: ServeContext, request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const req = await sc.tokens.run(parseCompletion(request.body, sc.req));
  await checkGrammar(req.params, req.grammarParam);
  warnIgnored(sc, 'POST /v1/completions', req.ignoredFields);
  checkAccepting(sc);
  const id = responseId('cmpl', req.requestId);
  const gen = Generation.start(
    sc.engine,
    id,
    req.prompts.map((p, i) => ({ tokenIds: p.tokenIds, params: req.params[i]! })),
    sc.metrics,
  );
  const shared: Shared = {
    sc,
    req,
    id,
    created: Math.floor(Date.now() / 1000),
    strs: new TokenStrings(sc.engine.tokenizer, req.returnTokensAsTokenIds),
    promptTexts: req.echo ? req.prompts.map((p) => p.text ?? sc.engine.tokenizer.decode(p.tokenIds)) : [],
  };
  return gen.serve(reply, req.stream, () => stream(shared, gen, reply), (finals) => response(shared, finals));
}

function response(s: Shared, finals: RequestOutput[]): unknown {
  const { req } = s;
  const choices: unknown[] = [];
  let promptTokens = 0;
  let completionTokens = 0;
  finals.forEach((o, pi) => {
    const outs = o.outputs;
    promptTokens += o.promptTokenIds.length;
    completionTokens += tokensOf(outs, req.echoOnly);
    const promptText = req.echo ? s.promptTexts[pi]! : '';
    outs.forEach((c, j) => {
      const text = promptText + (req.echoOnly ? '' : c.text);
      let logprobs: CompletionLogprobs | null = null;
      if (req.logprobs !== null) {
        const gen = req.echoOnly
          ? completionLogprobs([], [], req.logprobs, 0, s.strs)
          : completionLogprobs(c.tokenIds, c.logprobs ?? [], req.logprobs, promptText.length, s.strs);
        logprobs = req.echo && o.promptLogprobs ? concatCompletionLogprobs(completionLogprobs(o.promptTokenIds, o.promptLogprobs, req.logprobs, 0, s.strs), gen) : gen;
      }
      const choice: Record<string, unknown> = {
        index: pi * req.n + j,
        text,
        logprobs,
        finish_reason: c.finishReason,
        stop_reason: c.stopReason,
      };
      if (req.returnTokenIds) {
        choice['token_ids'] = req.echoOnly ? [] : c.tokenIds;
        choice['prompt_token_ids'] = o.promptTokenIds;
      }
      if (req.promptLogprobs !== null) choice['prompt_logprobs'] = promptLogprobsOut(o.promptTokenIds, o.promptLogprobs, s.strs);
      choices.push(choice);
    });
  });
  return {
    id: s.id,
    object: 'text_completion',
    created: s.created,
    model: req.model,
    choices,
    usage: usage(promptTokens, completionTokens),
  };
}

interface ChoiceState {
  /** Characters of the output's text already sent. */
  text: number;
  /** Tokens (and logprobs) already sent. */
  tokens: number;
  started: boolean;
  done: boolean;
}

function stream(s: Shared, gen: Generation, reply: FastifyReply): Promise<void> {
  const { req } = s;
  const states = new Map<number, ChoiceState>();
  return streamGeneration(s.sc, gen, reply, {
    route: 'POST /v1/completions',
    id: s.id,
    chunk: (choices, u) => {
      const c: Record<string, unknown> = { id: s.id, object: 'text_completion', created: s.created, model: req.model, choices };
      if (u) c['usage'] = u;
      return c;
    },
    usage: () => {
      let p = 0;
      let c = 0;
      for (const st of gen.streams) {
        p += st.output.promptTokenIds.length;
        c += tokensOf(st.output.outputs, req.echoOnly);
      }
      return usage(p, c);
    },
    continuousUsage: req.continuousUsage,
    includeUsage: req.includeUsage,
    *choices(pi, o) {
      for (const c of o.outputs) {
        const index = pi * req.n + c.index;
        let st = states.get(index);
        if (!st) states.set(index, (st = { text: 0, tokens: 0, started: false, done: false }));
        if (st.done) continue;
        const tokenEnd = c.tokenIds.length;
        const finished = c.finishReason !== null;
        const echoNow = req.echo && !st.started;
        const promptText = echoNow ? s.promptTexts[pi]! : '';
        const newText = req.echoOnly ? '' : c.text.slice(st.text);
        if (!echoNow && newText === '' && tokenEnd === st.tokens && !finished) continue;
        let logprobs: CompletionLogprobs | null = null;
        if (req.logprobs !== null) {
          const offset = (req.echo ? s.promptTexts[pi]!.length : 0) + st.text;
          const part = req.echoOnly
            ? completionLogprobs([], [], req.logprobs, 0, s.strs)
            : completionLogprobs(c.tokenIds.slice(st.tokens, tokenEnd), (c.logprobs ?? []).slice(st.tokens, tokenEnd), req.logprobs, offset, s.strs);
          logprobs = echoNow && o.promptLogprobs ? concatCompletionLogprobs(completionLogprobs(o.promptTokenIds, o.promptLogprobs, req.logprobs, 0, s.strs), part) : part;
        }
        const choice: Record<string, unknown> = {
          index,
          text: promptText + newText,
          logprobs,
          finish_reason: finished ? c.finishReason : null,
          stop_reason: finished ? c.stopReason : null,
        };
        if (req.returnTokenIds) {
          choice['token_ids'] = req.echoOnly ? [] : c.tokenIds.slice(st.tokens, tokenEnd);
          if (!st.started) choice['prompt_token_ids'] = o.promptTokenIds;
        }
        st.text = c.text.length;
        st.tokens = tokenEnd;
        st.started = true;
        st.done = finished;
        yield choice;
      }
    },
  });
}
