/**
 * `pagewise generate`: run prompts through the offline API and print the results.
 */
import { readFileSync } from 'node:fs';
import { ENGINE_FLAGS, engineConfigFromFlags } from './engine-flags.js';
import { LLM, type Prompt } from '../engine/llm.js';
import { intFlag, numFlag, parseArgs, strFlag, UsageError } from './args.js';
import { promptLogprobsJson, tokenLogprobsJson } from './logprobs-json.js';

function parseIds(text: string, where: string): number[] {
  const ids = text.split(',').map((s) => Number(s.trim()));
  if (ids.length === 0 || ids.some((n) => !Number.isInteger(n) || n < 0)) {
    throw new UsageError(`${where}: expected comma-separated non-negative token ids, got "${text}"`);
  }
  return ids;
}

/** One prompt per line: a JSON string, or {"prompt_token_ids": [...]}. */
export function readPromptsFile(path: string): Prompt[] {
  const lines = readFileSync(path, 'utf8').split('\n');
  const prompts: Prompt[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      throw new UsageError(`${path}:${i + 1}: not valid JSON`);
    }
    if (typeof v === 'string') prompts.push(v);
    else if (typeof v === 'object' && v !== null && Array.isArray((v as { prompt_token_ids?: unknown }).prompt_token_ids)) {
      const ids = (v as { prompt_token_ids: unknown[] }).prompt_token_ids;
      if (!ids.every((n) => Number.isInteger(n) && (n as number) >= 0)) throw new UsageError(`${path}:${i + 1}: prompt_token_ids must be non-negative integers`);
      prompts.push({ promptTokenIds: ids as number[] });
    } else throw new UsageError(`${path}:${i + 1}: expected a JSON string or {"prompt_token_ids": [...]}`);
  });
  if (prompts.length === 0) throw new UsageError(`${path}: no prompts`);
  return prompts;
}

export async function generateCommand(argv: string[]): Promise<void> {
  const flags = parseArgs(argv, {
    values: [...ENGINE_FLAGS.values, 'prompt', 'prompt-ids', 'prompts-file', 'max-tokens', 'temperature', 'top-p', 'top-k', 'seed', 'logprobs', 'prompt-logprobs'],
    booleans: [...ENGINE_FLAGS.booleans, 'json', 'ignore-eos'],
  });
  const sources = ['prompt', 'prompt-ids', 'prompts-file'].filter((k) => flags.has(k));
  if (sources.length !== 1) throw new UsageError('give exactly one of --prompt, --prompt-ids or --prompts-file');
  let prompts: Prompt[];
  if (flags.has('prompt')) prompts = [strFlag(flags, 'prompt')!];
  else if (flags.has('prompt-ids')) prompts = [{ promptTokenIds: parseIds(strFlag(flags, 'prompt-ids')!, '--prompt-ids') }];
  else prompts = readPromptsFile(strFlag(flags, 'prompts-file')!);

  const logprobs = intFlag(flags, 'logprobs');
  const promptLogprobs = intFlag(flags, 'prompt-logprobs');
  if ((logprobs !== undefined || promptLogprobs !== undefined) && !flags.has('json')) throw new UsageError('--logprobs and --prompt-logprobs need --json');

  const llm = new LLM(engineConfigFromFlags(flags));
  try {
    const outputs = await llm.generate(prompts, {
      maxTokens: intFlag(flags, 'max-tokens') ?? 16,
      temperature: numFlag(flags, 'temperature'),
      topP: numFlag(flags, 'top-p'),
      topK: intFlag(flags, 'top-k'),
      seed: intFlag(flags, 'seed'),
      ignoreEos: flags.has('ignore-eos') || undefined,
      logprobs,
      promptLogprobs,
    });
    for (const o of outputs) {
      const c = o.outputs[0]!;
      if (flags.has('json')) {
        const line: Record<string, unknown> = { prompt_token_ids: o.promptTokenIds, token_ids: c.tokenIds, text: c.text };
        if (logprobs !== undefined) line['logprobs'] = (c.logprobs ?? []).map(tokenLogprobsJson);
        if (promptLogprobs !== undefined) line['prompt_logprobs'] = promptLogprobsJson(o.promptLogprobs ?? []);
        process.stdout.write(`${JSON.stringify(line)}\n`);
      } else {
        process.stdout.write(`${c.text}\n`);
      }
    }
  } finally {
    await llm.close();
  }
}
