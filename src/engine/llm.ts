/**
 * LLM: the offline API. `new LLM({ model })`, then `generate(prompts, params)` submits every prompt
 * at once to the same engine the server uses (continuous batching) and returns the outputs in
 * input order. `params.structuredOutputs` constrains every output to a grammar (a JSON schema, a
 * JSON object, a regex, a choice or an EBNF grammar; see GrammarSpec).
 */
import { generationDefaults } from '../config/generation-defaults.js';
import { makeSamplingParams, type SamplingParamsInput } from '../sampling/params.js';
import { sharedGrammarChecker } from '../structured/checker.js';
import { AsyncEngine, type EngineStartOptions } from './async-engine.js';
import type { RequestOutput } from './output-processor.js';

/** A prompt: text (tokenized with the model's tokenizer, BOS added as it specifies) or token ids used as given. */
export type Prompt = string | { promptTokenIds: number[] };

export class LLM {
  private enginePromise: Promise<AsyncEngine> | null = null;

  constructor(private readonly opts: EngineStartOptions = {}) {}

  /** The running engine (started on first use). */
  engine(): Promise<AsyncEngine> {
    this.enginePromise ??= AsyncEngine.start(this.opts);
    return this.enginePromise;
  }

  /** Token ids of a prompt as the engine will see them. */
  async tokenize(prompt: Prompt): Promise<number[]> {
    if (typeof prompt !== 'string') return prompt.promptTokenIds;
    return (await this.engine()).tokenizer.encode(prompt);
  }

  async generate(prompts: Prompt | Prompt[], params: SamplingParamsInput = {}): Promise<RequestOutput[]> {
    const engine = await this.engine();
    const list = Array.isArray(prompts) ? prompts : [prompts];
    // Fields left unset take the model's generation_config.json defaults, as in the server.
    const sp = makeSamplingParams(params, {
      vocabSize: engine.info.model.vocabSize,
      maxModelLen: engine.info.maxModelLen,
      defaults: generationDefaults(engine.info.generationConfig, 'auto').defaults,
    });
    // A constraint that cannot compile is refused here (GrammarError), before anything is submitted.
    if (sp.structuredOutputs !== null) await sharedGrammarChecker().check(sp.structuredOutputs);
    const ids = await Promise.all(list.map((p) => this.tokenize(p)));
    const streams = ids.map((promptTokenIds) => engine.generate({ promptTokenIds, params: sp }));
    return Promise.all(streams.map((s) => s.final()));
  }

  /** Stop the engine worker. */
  async close(): Promise<void> {
    if (!this.enginePromise) return;
    const e = await this.enginePromise;
    this.enginePromise = null;
    await e.shutdown();
  }
}
