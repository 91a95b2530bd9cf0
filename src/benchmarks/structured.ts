/**
 * `bench throughput --structured json-schema`: what structured outputs cost. The same workload runs
 * unconstrained and with every request constrained to one fixed JSON schema (a few nested objects,
 * arrays and enums); reported: the output-throughput ratio, the schema's compile time, and the
 * time to first token a first-seen schema adds (the engine compiles it before admitting the request).
 */
import type { AsyncEngine } from '../engine/async-engine.js';
import { makeSamplingParams } from '../sampling/params.js';
import { GrammarCompiler } from '../structured/compiler.js';
import type { GrammarSpec } from '../structured/spec.js';
import { grammarVocab } from '../structured/vocab.js';
import { unpackTokenizerFiles } from '../tokenizer/tokenizer.js';

/** The benchmark's schema: an order with nested objects, arrays, enums, bounds and a pattern. */
export function benchSchema(statuses: readonly string[] = ['active', 'inactive', 'pending']): Record<string, unknown> {
  return {
    type: 'object',
    properties: {
      id: { type: 'integer', minimum: 0, maximum: 100000 },
      status: { enum: statuses },
      owner: {
        type: 'object',
        properties: {
          name: { type: 'string', maxLength: 24 },
          roles: { type: 'array', items: { enum: ['admin', 'dev', 'ops'] }, maxItems: 3 },
        },
        required: ['name', 'roles'],
        additionalProperties: false,
      },
      items: {
        type: 'array',
        items: {
          type: 'object',
          properties: { sku: { type: 'string', pattern: '^[A-Z]{3}-[0-9]{3}$' }, qty: { type: 'integer', minimum: 1, maximum: 99 } },
          required: ['sku', 'qty'],
          additionalProperties: false,
        },
        maxItems: 4,
      },
      urgent: { type: 'boolean' },
    },
    required: ['id', 'status', 'owner', 'items', 'urgent'],
    additionalProperties: false,
  };
}

export const STRUCTURED_MODES = ['json-schema'] as const;
export type StructuredMode = (typeof STRUCTURED_MODES)[number];

export function benchSpec(mode: StructuredMode, statuses?: readonly string[]): GrammarSpec {
  switch (mode) {
    case 'json-schema':
      return { kind: 'json_schema', schema: benchSchema(statuses) };
  }
}

/**
 * Compile the spec against the model's vocabulary here (the engine does the same in its worker):
 * the compiler's one-time build, then the spec's compile on a warm instance (after a first,
 * different compile, which also pays the WebAssembly instance's warm-up).
 */
export async function compileTimes(engine: AsyncEngine, spec: GrammarSpec): Promise<{ compiler_build_ms: number; first_compile_ms: number; compile_ms: number }> {
  const info = engine.info;
  const t0 = performance.now();
  const compiler = await GrammarCompiler.create(grammarVocab(unpackTokenizerFiles(engine.tokenizerFiles).tokenizerJson, engine.tokenizer, { vocabSize: info.model.vocabSize, stopTokenIds: info.eosTokenIds }));
  const built = performance.now() - t0;
  try {
    const first = await compiler.compile({ kind: 'json_object' });
    const g = await compiler.compile(spec);
    return { compiler_build_ms: built, first_compile_ms: first.compileMs, compile_ms: g.compileMs };
  } finally {
    compiler.dispose();
  }
}

/** Time to first token of one request (ms), alone on the engine. */
async function ttft(engine: AsyncEngine, prompt: number[], spec: GrammarSpec | null, seed: number): Promise<number> {
  const params = makeSamplingParams({ temperature: 1, maxTokens: 4, seed, structuredOutputs: spec }, { vocabSize: engine.info.model.vocabSize });
  const out = await engine.generate({ promptTokenIds: prompt, params }).final();
  const m = out.metrics;
  return (m.firstTokenTime ?? NaN) - m.arrivalTime;
}

/**
 * TTFT on a warm engine: unconstrained, the first structured request (the engine also builds its
 * grammar compiler then), a first-seen schema once the compiler exists, and a cached schema.
 */
export async function structuredTtft(engine: AsyncEngine, prompt: number[], mode: StructuredMode, seed: number): Promise<Record<string, number>> {
  await ttft(engine, prompt, null, seed); // warm-up
  const unconstrained = await ttft(engine, prompt, null, seed);
  const firstStructured = await ttft(engine, prompt, benchSpec(mode, ['warm-up-a', 'warm-up-b']), seed);
  const firstSeen = await ttft(engine, prompt, benchSpec(mode), seed);
  const cached = await ttft(engine, prompt, benchSpec(mode), seed);
  return {
    ttft_unconstrained_ms: unconstrained,
    ttft_first_structured_request_ms: firstStructured,
    ttft_first_seen_schema_ms: firstSeen,
    ttft_cached_schema_ms: cached,
    ttft_added_first_seen_schema_ms: firstSeen - cached,
  };
}
