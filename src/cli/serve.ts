/**
 * `pagewise serve`: start the engine and the OpenAI-compatible HTTP server; stop both gracefully
 * on SIGTERM/SIGINT (exit code 0), or when the npm process that started it is gone.
 */
import { ENGINE_FLAGS, ENGINE_FLAGS_HELP, engineConfigFromFlags } from './engine-flags.js';
import { AsyncEngine } from '../engine/async-engine.js';
import { createServer, shutdownGracefully } from '../server/app.js';
import { createLogger, LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from '../server/log.js';
import { DEFAULT_TOKENIZER_WORKERS } from '../tokenizer/pool.js';
import type { DownloadProgress } from '../model/loader/resolve.js';
import { intFlag, numFlag, parseArgs, strFlag, UsageError } from './args.js';
import { TOOL_CALL_PARSERS, toolCallParser } from '../server/tools/parsers.js';
import { collectGarbageNow, collectGarbageOnceQuiet } from '../shared/collect-garbage.js';

export const SERVE_HELP = `Usage: pagewise serve [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--served-model-name NAME]
                      [--generation-config auto|vllm] [--shutdown-grace SECONDS] [--log-format text|json]
                      [--log-level debug|info|warn|error] [--no-access-log] [--tokenizer-workers N]
                      [--enable-auto-tool-choice] [--tool-call-parser NAME] [--no-dashboard] [engine options]

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
  --log-format F           text (default) or json: one JSON object per line on stderr
  --log-level L            debug | info (default) | warn | error
  --no-access-log          no line per HTTP request (by default each request logs its status,
                           tokens, time to first token and total time, with its request id)
  --tokenizer-workers N    most threads that tokenize long prompts off the event loop (default ${DEFAULT_TOKENIZER_WORKERS};
                           0: on the event loop); started on demand, they exit after 30 s idle
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
    values: [...ENGINE_FLAGS.values, 'host', 'port', 'api-key', 'served-model-name', 'generation-config', 'shutdown-grace', 'log-format', 'log-level', 'tokenizer-workers', 'tool-call-parser'],
    booleans: [...ENGINE_FLAGS.booleans, 'no-access-log', 'enable-auto-tool-choice', 'no-dashboard'],
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

  const format = strFlag(flags, 'log-format') ?? 'text';
  if (!LOG_FORMATS.includes(format as LogFormat)) throw new UsageError(`--log-format must be ${LOG_FORMATS.join(' or ')}, got "${format}"`);
  const level = strFlag(flags, 'log-level') ?? 'info';
  if (!LOG_LEVELS.includes(level as LogLevel)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got "${level}"`);
  const tokenizerWorkers = intFlag(flags, 'tokenizer-workers');
  if (tokenizerWorkers !== undefined && (tokenizerWorkers < 0 || tokenizerWorkers > 64)) throw new UsageError(`--tokenizer-workers must be in [0, 64], got ${tokenizerWorkers}`);

  const log = createLogger({ format: format as LogFormat, level: level as LogLevel });
  const engineOpts = engineConfigFromFlags(flags);
  // JSON logs stay JSON lines: a hub download logs each file instead of drawing a bar.
  let lastFile = -1;
  const onDownloadProgress =
    format === 'json'
      ? (p: DownloadProgress): void => {
          if (p.fileIndex === lastFile || p.fileIndex >= p.fileCount) return;
          lastFile = p.fileIndex;
          log('info', 'downloading', { repo: p.repo, file: p.file, file_index: p.fileIndex + 1, file_count: p.fileCount, total_bytes: p.totalBytes });
        }
      : undefined;
  // The engine's start-up lines carry the text format's prefix; the logger adds its own.
  const engine = await AsyncEngine.start({
    ...engineOpts,
    onDownloadProgress,
    // No bar between JSON lines; the start-up line says when the model is loaded.
    onLoadProgress: format === 'json' ? () => undefined : undefined,
    log: (l) => log('info', l.replace(/^pagewise: /, '')),
    // JSON: the stack is a field of the error line; text: its own lines after it.
    logError: (message, stack) => {
      log('error', message, format === 'json' ? { stack } : {});
      if (stack && format !== 'json') process.stderr.write(`${stack}\n`);
    },
  });
  const app = createServer(engine, {
    servedModelName: names && names.length > 0 ? names : undefined,
    apiKey,
    generationConfig: genCfg,
    accessLog: !flags.has('no-access-log'),
    tokenizerWorkers,
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
  watchNpmParent(stop);

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
  // Start-up's garbage (the tokenizer's build) is collected now rather than left resident until
  // requests come, and the young generation it grew is given back once the server has been quiet.
  setImmediate(collectGarbageNow);
  collectGarbageOnceQuiet(
    () => engine.numInFlight === 0,
    () => engine.releaseFreeMemory(),
  );
}

/**
 * Under `npx pagewise serve` (or an npm script) the process tree is npm → sh → node, and sh does
 * not pass signals on: a process manager's SIGTERM to npm stops npm and leaves the server running,
 * with its KV pool, as an orphan. So when npm started us, we stop when our parent goes away (we
 * are re-parented). A server started directly (systemd, docker, a shell) gets signals itself and is
 * not watched, so `nohup pagewise serve &` outlives its shell as it should.
 */
function watchNpmParent(stop: (why: string) => void): void {
  if (process.env['npm_lifecycle_event'] === undefined && process.env['npm_command'] === undefined) return;
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid !== parent) {
      clearInterval(timer);
      // Whoever read our stderr may be gone with the parent: a closed pipe must not end the shutdown.
      process.stderr.on('error', () => undefined);
      stop(`parent process ${parent} exited`);
    }
  }, 500);
  timer.unref();
}
