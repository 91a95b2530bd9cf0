/**
 * POST /v1/chat/completions: messages rendered with the model's chat template, n choices,
 * streamed (a role chunk per choice first, then content deltas) or not. With a tool-call parser
 * in play (tools/), each choice's output is read into `tool_calls` (streamed as tool-call deltas),
 * and a choice that called tools finishes with `tool_calls`.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { RequestOutput } from '../engine/output-processor.js';
import { checkAccepting, responseId, warnIgnored, type ServeContext } from './context.js';
import { chatLogprobs, promptLogprobsOut, TokenStrings, usage } from './format.js';
import { Generation } from './generation.js';
import { parseChat, type ChatRequest } from './request.js';
import { streamGeneration } from './streaming.js';
import { checkGrammar } from './structured-fields.js';
import { extractToolCalls, ToolCallStream } from './tools/stream.js';
import type { FinishReason } from '../engine/protocol.js';

const ROLE = 'assistant';

interface Shared {
  sc: ServeContext;
  req: ChatRequest;
  id: string;
  created: number;
  strs: TokenStrings;
}

export async function chatHandler(sc: ServeContext, request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const req = await sc.tokens.run(parseChat(request.body, sc.req));
  await checkGrammar([req.params], req.grammarParam);
  warnIgnored(sc, 'POST /v1/chat/completions', req.ignoredFields);
  checkAccepting(sc);
  const id = responseId('chatcmpl', req.requestId);
  const gen = Generation.start(sc.engine, id, [{ tokenIds: req.prompt.tokenIds, params: req.params }], sc.metrics);
  const shared: Shared = {
    sc,
    req,
    id,
    created: Math.floor(Date.now() / 1000),
    strs: new TokenStrings(sc.engine.tokenizer, req.returnTokensAsTokenIds),
  };
  return gen.serve(reply, req.stream, () => stream(shared, gen, reply), (finals) => response(shared, finals[0]!));
}

/** A choice that called tools and ended normally finishes with `tool_calls`. */
function finishReason(reason: FinishReason | null, called: boolean): string | null {
  return called && reason === 'stop' ? 'tool_calls' : reason;
}

function response(s: Shared, o: RequestOutput): unknown {
  const { req } = s;
  const outs = o.outputs;
  const parser = req.tools?.parser ?? null;
  const choices = outs.map((c, j) => {
    const message: Record<string, unknown> = { role: ROLE, content: (req.echoText ?? '') + c.text };
    let called = false;
    if (parser) {
      const x = extractToolCalls(parser, c.text, req.tools!.parallel);
      called = x.toolCalls.length > 0;
      if (called) {
        message['content'] = x.content === null && !req.echoText ? null : (req.echoText ?? '') + (x.content ?? '');
        message['tool_calls'] = x.toolCalls;
      }
    }
    const choice: Record<string, unknown> = {
      index: j,
      message,
      logprobs: req.topLogprobs !== null ? { content: chatLogprobs(c.tokenIds, c.logprobs ?? [], req.topLogprobs, s.strs) } : null,
      finish_reason: finishReason(c.finishReason, called),
      stop_reason: c.stopReason,
    };
    if (req.returnTokenIds) choice['token_ids'] = c.tokenIds;
    return choice;
  });
  const body: Record<string, unknown> = {
    id: s.id,
    object: 'chat.completion',
    created: s.created,
    model: req.model,
    choices,
    usage: usage(o.promptTokenIds.length, outs.reduce((a, c) => a + c.tokenIds.length, 0)),
  };
  if (req.promptLogprobs !== null) body['prompt_logprobs'] = promptLogprobsOut(o.promptTokenIds, o.promptLogprobs, s.strs);
  if (req.returnTokenIds) body['prompt_token_ids'] = o.promptTokenIds;
  return body;
}

function stream(s: Shared, gen: Generation, reply: FastifyReply): Promise<void> {
  const { req } = s;
  const parser = req.tools?.parser ?? null;
  const sent = Array.from({ length: req.n }, () => ({ text: 0, tokens: 0, done: false, tools: parser ? new ToolCallStream(parser, req.tools!.parallel) : null }));
  const stream0 = gen.streams[0]!;
  return streamGeneration(s.sc, gen, reply, {
    route: 'POST /v1/chat/completions',
    id: s.id,
    chunk: (choices, u) => {
      const c: Record<string, unknown> = { id: s.id, object: 'chat.completion.chunk', created: s.created, model: req.model, choices };
      if (u) c['usage'] = u;
      return c;
    },
    usage: () => usage(stream0.output.promptTokenIds.length, stream0.output.outputs.reduce((a, c) => a + c.tokenIds.length, 0)),
    continuousUsage: req.continuousUsage,
    includeUsage: req.includeUsage,
    // The assistant role first, for every choice (and the echoed final message, with echo).
    *preamble() {
      for (let i = 0; i < req.n; i++) {
        yield { index: i, delta: { role: ROLE, content: '' }, logprobs: null, finish_reason: null };
        if (req.echoText) yield { index: i, delta: { content: req.echoText }, logprobs: null, finish_reason: null };
      }
    },
    *choices(_promptIndex, o) {
      for (const c of o.outputs) {
        const st = sent[c.index];
        if (!st || st.done) continue;
        const tokenEnd = c.tokenIds.length;
        const finished = c.finishReason !== null;
        let delta: Record<string, unknown>;
        if (st.tools) {
          // Content and tool-call deltas; a chunk with neither waits (its logprobs go with the next).
          const u = st.tools.update(c.text, finished);
          delta = {};
          if (u.content !== '') delta['content'] = u.content;
          if (u.toolCalls.length > 0) delta['tool_calls'] = u.toolCalls;
          if (u.content === '' && u.toolCalls.length === 0 && !finished) continue;
        } else {
          const text = c.text.slice(st.text);
          if (text === '' && tokenEnd === st.tokens && !finished) continue;
          delta = text !== '' || !finished ? { content: text } : {};
        }
        const choice: Record<string, unknown> = {
          index: c.index,
          delta,
          logprobs:
            req.topLogprobs !== null
              ? { content: chatLogprobs(c.tokenIds.slice(st.tokens, tokenEnd), (c.logprobs ?? []).slice(st.tokens, tokenEnd), req.topLogprobs, s.strs) }
              : null,
          finish_reason: finished ? finishReason(c.finishReason, st.tools?.called ?? false) : null,
          stop_reason: finished ? c.stopReason : null,
        };
        if (req.returnTokenIds) choice['token_ids'] = c.tokenIds.slice(st.tokens, tokenEnd);
        st.text = c.text.length;
        st.tokens = tokenEnd;
        st.done = finished;
        yield choice;
      }
    },
  });
}
