/** Pagewise public API. */
export { LLM, type Prompt } from './engine/llm.js';
export { AsyncEngine, RequestStream, type EngineStartOptions, type GenerateRequest } from './engine/async-engine.js';
export type { RequestOutput, CompletionOutput, RequestMetrics } from './engine/output-processor.js';
export type { EngineInfo, EngineStats, TokenLogprobs } from './engine/protocol.js';
export { makeEngineConfig, type EngineConfig } from './config/engine-config.js';
export { makeSamplingParams, type SamplingParams, type SamplingParamsInput } from './sampling/params.js';
export type { GrammarSpec } from './structured/spec.js';
export * from './errors.js';
