/**
 * `pagewise serve`: start the engine and the OpenAI-compatible HTTP server; stop both gracefully
 * on SIGTERM/SIGINT (exit code 0).
 */
import { ENGINE_FLAGS, ENGINE_FLAGS_HELP, engineConfigFromFlags } from './engine-flags.js';
import { AsyncEngine } from '../engine/async-engine.js';
import { createServer, shutdownGracefully } from '../server/app.js';
import { intFlag, numFlag, parseArgs, strFlag, UsageError } from './args.js';
import { TOOL_CALL_PARSERS, toolCallParser } from '../server/tools/parsers.js';

export const SERVE_HELP = `Usage: pagewise serve [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--served-model-name NAME]
                      [--generation-config auto|vllm] [--shutdown-grace SECONDS] [--access-log]
                      [--enable-auto-tool-choice] [--tool-call-parser NAME] [--no-dashboard]
                      [engine options]

Serves the OpenAI API (POST /v1/completions, POST /v1/chat/completions, GET /v1/models) and
POST /tokenize, POST /detokenize, GET /health, GET /version, GET /metrics (Prometheus), and a
live dashboard at GET /dashboard (KV block map, queues, tokens/s, latency).

  --host H                 address to listen on (default 127.0.0.1)
  --port N                 port (default 8000; 0 picks a free one)
  --api-key KEY            require "Authorization: Bearer KEY" (also read from PAGEWISE_API_KEY);
                           /health and /metrics stay open
  --served-model-name N    the name clients put in "model" (default: the --model value);
                           several names may be given, comma-separated
  --generation-config M    auto (default): the model's generation_config.json sampling defaults
                           apply to fields a request leaves unset; vllm: vLLM's built-in defaults
  --shutdown-grace S       seconds in-flight requests get to finish on SIGTERM/SIGINT (default 20)
  --access-log             log one line per HTTP request
  --tool-call-parser P     how the model writes tool calls: hermes | llama3_json | mistral | pythonic;
                           its output is parsed into message.tool_calls
  --enable-auto-tool-choice  let the model decide to call tools (tool_choice "auto", the default
                           when tools are given); needs --tool-call-parser
  --no-dashboard           do not serve the live dashboard at /dashboard (behind --api-key when
                           set: a browser logs in with any user name and the key as password)

${ENGINE_FLAGS_HELP}
`;

export async function serveCommand(argv: string[]): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(SERVE_HELP);
    return;
  }
  const flags = parseArgs(argv, {
    values: [...ENGINE_FLAGS.values, 'host', 'port', 'api-key', 'served-model-name', 'generation-config', 'shutdown-grace', 'tool-call-parser'],
    booleans: [...ENGINE_FLAGS.booleans, 'access-log', 'enable-auto-tool-choice', 'no-dashboard'],
  });
  const host = strFlag(flags, 'host') ?? '127.0.0.1';
  const port = intFlag(flags, 'port') ?? 8000;
  if (port < 0 || port > 65535) throw new UsageError(`--port must be in [0, 65535], got ${port}`);
  const apiKey = strFlag(flags, 'api-key') ?? process.env['PAGEWISE_API_KEY'] ?? null;
  if (apiKey !== null && apiKey.length === 0) throw new UsageError('--api-key must not be empty');
  const names = strFlag(flags, 'served-model-name')
    ?.split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  const genCfg = strFlag(flags, 'generation-config') ?? 'auto';
  if (genCfg !== 'auto' && genCfg !== 'vllm') throw new UsageError(`--generation-config must be auto or vllm, got "${genCfg}"`);
  const parserName = strFlag(flags, 'tool-call-parser');
  const toolParser = parserName === undefined ? null : toolCallParser(parserName);
  if (toolParser === undefined) throw new UsageError(`--tool-call-parser must be one of ${Object.keys(TOOL_CALL_PARSERS).join(', ')}, got "${parserName}"`);
  const autoToolChoice = flags.has('enable-auto-tool-choice');
  if (autoToolChoice && toolParser === null) throw new UsageError('--enable-auto-tool-choice needs --tool-call-parser');
  const grace = numFlag(flags, 'shutdown-grace') ?? 20;
  if (grace < 0) throw new UsageError(`--shutdown-grace must be >= 0, got ${grace}`);

  const log = (level: string, message: string): void => {
    process.stderr.write(`pagewise: ${level === 'info' ? '' : `${level}: `}${message}\n`);
  };
  const engineOpts = engineConfigFromFlags(flags);
  // The engine's start-up line carries its own prefix.
  const engine = await AsyncEngine.start({ ...engineOpts, log: (l) => process.stderr.write(`${l}\n`) });
  const app = createServer(engine, {
    servedModelName: names && names.length > 0 ? names : undefined,
    apiKey,
    generationConfig: genCfg,
    accessLog: flags.has('access-log'),
    tools: { parser: toolParser, autoToolChoice },
    dashboard: !flags.has('no-dashboard'),
    log,
  });

  let stopping: Promise<void> | null = null;
  const stop = (signal: string): void => {
    if (stopping) {
      log('warn', `${signal} again: exiting now`);
      process.exit(1);
    }
    log('info', `${signal}: shutting down (in-flight requests get up to ${grace}s)`);
    stopping = shutdownGracefully(app, engine, grace * 1000).then(
      () => {
        log('info', 'stopped');
        process.exit(0);
      },
      (err: unknown) => {
        log('error', `shutdown failed: ${err instanceof Error ? err.message : String(err)}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  try {
    await app.listen({ host, port });
  } catch (err) {
    await engine.shutdown();
    throw err;
  }
  const addr = app.server.address();
  const where = typeof addr === 'object' && addr !== null ? `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}` : String(addr);
  const info = engine.info;
  log(
    'info',
    `serving model "${app.pagewise.servedModelNames.join('", "')}" (${info.modelDir}) on ${where}/v1 — ` +
      `KV pool ${info.numBlocks} blocks × ${info.blockSize} tokens, ${info.threads} threads, max model len ${info.maxModelLen}` +
      `${apiKey ? ', API key required' : ''}` +
      `${flags.has('no-dashboard') ? '' : `; dashboard at ${where}/dashboard`}`,
  );
}
