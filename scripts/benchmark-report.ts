/**
 * Turns `pagewise bench` JSON results into Markdown tables and an SVG chart:
 *
 *   node --import tsx scripts/benchmark-report.ts RESULT.json... [--out docs/PERFORMANCE-tables.md] [--svg docs/throughput.svg]
 *
 * A file may hold one JSON object, an array of them, or one object per line. One table per bench
 * kind ("bench" key): serve results as rows by max concurrency, throughput results as rows, anything
 * else as key/value tables. The SVG plots output tokens/s and p99 ITL against concurrency for the
 * serve results. Missing keys show as "–"; nothing here assumes a key exists.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type Result = { [k: string]: Json };

/** Parses a file's text: one object, an array of objects, or JSON lines. Bad parts go to `warn`. */
export function parseResults(text: string, name: string, warn: (msg: string) => void = () => undefined): Result[] {
  const isObj = (v: unknown): v is Result => typeof v === 'object' && v !== null && !Array.isArray(v);
  try {
    const v = JSON.parse(text) as unknown;
    if (isObj(v)) return [v];
    if (Array.isArray(v)) return v.filter(isObj);
  } catch {
    // not one JSON document: try one per line below
  }
  const out: Result[] = [];
  text.split('\n').forEach((line, i) => {
    const t = line.trim();
    if (t === '') return;
    try {
      const v = JSON.parse(t) as unknown;
      if (isObj(v)) out.push(v);
    } catch {
      warn(`${name}:${i + 1}: not JSON, skipped`);
    }
  });
  return out;
}

export function kindOf(r: Result): string {
  if (typeof r['bench'] === 'string') return r['bench'];
  if ('ttft_ms' in r && 'max_concurrency' in r) return 'serve';
  return 'unknown';
}

/** Walks a dotted path; undefined when any step is missing. */
function get(r: Json | undefined, key: string): Json | undefined {
  let cur: Json | undefined = r;
  for (const part of key.split('.')) {
    if (cur === null || cur === undefined || typeof cur !== 'object' || Array.isArray(cur)) return undefined;
    cur = cur[part];
  }
  return cur;
}

function num(r: Result, key: string): number | undefined {
  const v = get(r, key);
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/** Readable numbers: integers as they are, others to about three significant digits (more above 100). */
export function fmt(v: Json | undefined): string {
  if (v === undefined || v === null) return '–';
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return String(v);
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    if (a >= 100) return v.toFixed(1);
    if (a >= 1) return v.toFixed(2);
    return Number(v.toPrecision(3)).toString();
  }
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && v.every((x) => typeof x !== 'object' || x === null)) return v.map((x) => fmt(x)).join(', ');
  return JSON.stringify(v);
}

function cell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');
}

function table(header: string[], rows: string[][]): string {
  const lines = [`| ${header.map(cell).join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
  for (const r of rows) lines.push(`| ${r.map(cell).join(' | ')} |`);
  return lines.join('\n');
}

function machineLine(m: Json | undefined): string | null {
  if (m === undefined || m === null || typeof m !== 'object' || Array.isArray(m)) return null;
  const cpu = fmt(m['cpu_model']);
  const cores = m['cores'] === undefined ? '' : `${fmt(m['cores'])} cores`;
  const threads = m['threads'] === undefined ? '' : `${fmt(m['threads'])} threads`;
  const flags = Array.isArray(m['cpu_flags']) ? m['cpu_flags'].filter((f) => typeof f === 'string' && /avx512|amx|avx2|bf16|sve|asimd/.test(f)) : [];
  const parts = [cores, threads, flags.length ? flags.join(' ') : ''].filter((s) => s !== '');
  return parts.length ? `${cpu} (${parts.join(', ')})` : cpu;
}

function commitLine(r: Result): string {
  const c = r['git_commit'];
  if (typeof c !== 'string') return 'unknown commit';
  return `commit \`${c.slice(0, 10)}\`${r['git_dirty'] === true ? ' (uncommitted changes)' : ''}`;
}

/**
 * Fields with one value across all rows go into the context line above the table; fields that vary
 * become columns. Returns the context text and the keys that vary.
 */
function context(rows: Result[], keys: { key: string; label: string; show: (r: Result) => string }[]): { text: string; varying: typeof keys } {
  const parts: string[] = [];
  const varying: typeof keys = [];
  for (const k of keys) {
    const values = new Set(rows.map(k.show));
    if (values.size === 1) {
      const v = [...values][0]!;
      if (v !== '–') parts.push(`${k.label}: ${v}`);
    } else {
      varying.push(k);
    }
  }
  return { text: parts.join('; '), varying };
}

const CONTEXT_KEYS = [
  { key: 'model', label: 'model', show: (r: Result) => fmt(r['model']) },
  { key: 'machine', label: 'machine', show: (r: Result) => machineLine(r['machine']) ?? '–' },
  { key: 'git_commit', label: 'code', show: (r: Result) => commitLine(r) },
];

function concurrencyOf(r: Result): number {
  const c = num(r, 'max_concurrency');
  return c === undefined ? Infinity : c;
}

function rateOf(r: Result): number {
  const v = num(r, 'request_rate');
  return v === undefined ? Infinity : v;
}

function serveSection(rows: Result[]): string {
  const sorted = [...rows].sort(
    (a, b) =>
      fmt(a['model']).localeCompare(fmt(b['model'])) ||
      concurrencyOf(a) - concurrencyOf(b) ||
      rateOf(a) - rateOf(b) ||
      (num(a, 'input_len') ?? 0) - (num(b, 'input_len') ?? 0),
  );
  const ctx = context(sorted, [
    ...CONTEXT_KEYS,
    { key: 'base_url', label: 'server', show: (r) => fmt(r['base_url']) },
    { key: 'input_len', label: 'input len', show: (r) => fmt(r['input_len'] ?? r['dataset']) },
    { key: 'output_len', label: 'output len', show: (r) => fmt(r['output_len']) },
    { key: 'num_prompts', label: 'prompts', show: (r) => fmt(r['num_prompts']) },
    { key: 'request_rate', label: 'request rate (req/s)', show: (r) => fmt(r['request_rate']) },
  ]);
  const hasGoodput = sorted.some((r) => get(r, 'goodput.request_goodput') !== undefined);
  const anyFailed = sorted.some((r) => (num(r, 'failed') ?? 0) > 0);
  const header = [
    'max concurrency',
    ...ctx.varying.map((k) => k.label),
    ...(anyFailed ? ['completed', 'failed'] : ['requests']),
    'req/s',
    'output tok/s',
    'total tok/s',
    'TTFT p50 (ms)',
    'TTFT p99 (ms)',
    'TPOT p50 (ms)',
    'TPOT p99 (ms)',
    'ITL p50 (ms)',
    'ITL p99 (ms)',
    ...(hasGoodput ? ['goodput (req/s)'] : []),
  ];
  const body = sorted.map((r) => {
    const c = r['max_concurrency'];
    return [
      c === null || c === undefined ? '∞' : fmt(c),
      ...ctx.varying.map((k) => k.show(r)),
      ...(anyFailed ? [fmt(r['completed']), fmt(r['failed'])] : [fmt(r['completed'])]),
      fmt(get(r, 'request_throughput')),
      fmt(get(r, 'output_tokens_per_s')),
      fmt(get(r, 'total_tokens_per_s')),
      fmt(get(r, 'ttft_ms.p50')),
      fmt(get(r, 'ttft_ms.p99')),
      fmt(get(r, 'tpot_ms.p50')),
      fmt(get(r, 'tpot_ms.p99')),
      fmt(get(r, 'itl_ms.p50')),
      fmt(get(r, 'itl_ms.p99')),
      ...(hasGoodput ? [fmt(get(r, 'goodput.request_goodput'))] : []),
    ];
  });
  const notes: string[] = [];
  if (sorted.some((r) => r['ignore_eos'] === false)) notes.push('Some runs did not send ignore_eos: their outputs may be shorter than output len.');
  if (sorted.some((r) => r['capped'] === true)) notes.push('Some runs were stopped by --max-duration-s.');
  return [ctx.text, table(header, body), ...notes].filter((s) => s !== '').join('\n\n');
}

const THROUGHPUT_COLUMNS: [string, string][] = [
  ['model', 'model'],
  ['dtype', 'dtype'],
  ['threads', 'threads'],
  ['scheduler', 'scheduler'],
  ['dataset', 'dataset'],
  ['num_prompts', 'prompts'],
  ['input_tokens', 'input tokens'],
  ['output_tokens', 'output tokens'],
  ['elapsed_s', 'elapsed (s)'],
  ['requests_per_s', 'req/s'],
  ['output_tokens_per_s', 'output tok/s'],
  ['total_tokens_per_s', 'total tok/s'],
  ['kv_waste_mean', 'KV waste (mean)'],
  ['kv_usage_peak', 'KV usage (peak)'],
  ['num_preemptions', 'preemptions'],
  ['static_output_tokens_per_s', 'static output tok/s'],
  ['continuous_over_static', 'continuous / static'],
];

/** Scalar leaves as dotted keys (arrays of scalars kept whole), nested objects up to a few levels. */
function flatten(r: Json, prefix = '', depth = 0, out: [string, Json][] = []): [string, Json][] {
  if (r !== null && typeof r === 'object' && !Array.isArray(r) && depth < 4) {
    for (const [k, v] of Object.entries(r)) flatten(v, prefix === '' ? k : `${prefix}.${k}`, depth + 1, out);
  } else {
    out.push([prefix, r]);
  }
  return out;
}

const META = /^(bench|machine|git_commit|git_dirty|timestamp)(\.|$)/;

function rowsSection(rows: Result[], preferred: [string, string][]): string {
  const ctx = context(rows, CONTEXT_KEYS);
  let cols = preferred.filter(([k]) => rows.some((r) => get(r, k) !== undefined));
  if (cols.length === 0) {
    const keys: string[] = [];
    for (const r of rows) for (const [k] of flatten(r)) if (!META.test(k) && !keys.includes(k)) keys.push(k);
    cols = keys.map((k) => [k, k]);
  }
  // Context fields already stated above the table are not repeated as columns.
  const stated = new Set(CONTEXT_KEYS.filter((k) => !ctx.varying.includes(k)).map((k) => k.key));
  cols = cols.filter(([k]) => !stated.has(k));
  const body = rows.map((r) => cols.map(([k]) => fmt(get(r, k))));
  return [ctx.text, table(cols.map(([, l]) => l), body)].filter((s) => s !== '').join('\n\n');
}

function keyValueSection(rows: Result[]): string {
  return rows
    .map((r) => {
      const head = [machineLine(r['machine']), commitLine(r)].filter((s) => s !== null).join('; ');
      const kv = flatten(r).filter(([k]) => !META.test(k));
      return [head, table(['key', 'value'], kv.map(([k, v]) => [k, fmt(v)]))].join('\n\n');
    })
    .join('\n\n');
}

/** The Markdown document: one section per bench kind, serve first, then throughput, then the rest. */
export function renderMarkdown(results: Result[], sources: string[] = []): string {
  const byKind = new Map<string, Result[]>();
  for (const r of results) {
    const k = kindOf(r);
    byKind.set(k, [...(byKind.get(k) ?? []), r]);
  }
  const order = [...byKind.keys()].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  const parts = ['# Benchmark results', ''];
  parts.push(
    `Generated by \`scripts/benchmark-report.ts\` from ${results.length} result${results.length === 1 ? '' : 's'}` +
      (sources.length ? ` (${sources.map((s) => `\`${path.basename(s)}\``).join(', ')})` : '') +
      '.',
  );
  for (const k of order) {
    const rows = byKind.get(k)!;
    parts.push('', `## ${k}`, '');
    if (k === 'serve') parts.push(serveSection(rows));
    else if (k === 'throughput') parts.push(rowsSection(rows, THROUGHPUT_COLUMNS));
    else parts.push(keyValueSection(rows));
  }
  return `${parts.join('\n')}\n`;
}

function rank(kind: string): number {
  return kind === 'serve' ? 0 : kind === 'throughput' ? 1 : 2;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** An axis maximum that is 1, 2 or 5 times a power of ten, with its tick step. */
function niceAxis(max: number): { top: number; step: number } {
  if (!(max > 0)) return { top: 1, step: 0.25 };
  const raw = max / 4;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * pow).find((s) => s >= raw)!;
  return { top: Math.ceil(max / step) * step, step };
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

/**
 * Two panels, output tokens/s and p99 ITL (ms) against max concurrency (categorical axis, ∞ for no
 * limit), one line per series (model, plus lengths / rate when those vary). Null when no serve result.
 */
export function renderSvg(results: Result[]): string | null {
  const rows = results.filter((r) => kindOf(r) === 'serve');
  if (rows.length === 0) return null;
  const xs = [...new Set(rows.map(concurrencyOf))].sort((a, b) => a - b);
  const seriesKey = (r: Result): string => {
    const parts = [fmt(r['model'])];
    const vary = (k: string): boolean => new Set(rows.map((x) => fmt(x[k]))).size > 1;
    if (vary('input_len') || vary('output_len')) parts.push(`${fmt(r['input_len'] ?? r['dataset'])}→${fmt(r['output_len'])}`);
    if (vary('request_rate')) parts.push(`${fmt(r['request_rate'])} req/s`);
    if (vary('git_commit')) parts.push(typeof r['git_commit'] === 'string' ? r['git_commit'].slice(0, 7) : '?');
    return parts.join(' ');
  };
  const series = new Map<string, Result[]>();
  for (const r of rows) series.set(seriesKey(r), [...(series.get(seriesKey(r)) ?? []), r]);

  const W = 380;
  const H = 260;
  const M = { l: 58, r: 14, t: 30, b: 42 };
  const legendH = 18 * series.size + 10;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * W}" height="${H + legendH}" viewBox="0 0 ${2 * W} ${H + legendH}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
  ];
  const panel = (ox: number, title: string, value: (r: Result) => number | undefined): void => {
    const pw = W - M.l - M.r;
    const ph = H - M.t - M.b;
    const vals = rows.map(value).filter((v): v is number => v !== undefined);
    const { top, step } = niceAxis(Math.max(0, ...vals));
    const px = (i: number): number => ox + M.l + (xs.length === 1 ? pw / 2 : (i * pw) / (xs.length - 1));
    const py = (v: number): number => M.t + ph - (v / top) * ph;
    out.push(`<text x="${ox + W / 2}" y="18" text-anchor="middle" font-size="13" font-weight="bold">${esc(title)}</text>`);
    for (let t = 0; t <= top + step / 1e6; t += step) {
      const y = py(t).toFixed(1);
      out.push(`<line x1="${ox + M.l}" x2="${ox + M.l + pw}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`);
      out.push(`<text x="${ox + M.l - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${esc(String(Number(t.toPrecision(6))))}</text>`);
    }
    out.push(`<line x1="${ox + M.l}" x2="${ox + M.l}" y1="${M.t}" y2="${M.t + ph}" stroke="#333"/>`);
    out.push(`<line x1="${ox + M.l}" x2="${ox + M.l + pw}" y1="${M.t + ph}" y2="${M.t + ph}" stroke="#333"/>`);
    xs.forEach((x, i) => {
      out.push(`<text x="${px(i).toFixed(1)}" y="${M.t + ph + 16}" text-anchor="middle">${x === Infinity ? '∞' : esc(fmt(x))}</text>`);
    });
    out.push(`<text x="${ox + M.l + pw / 2}" y="${H - 8}" text-anchor="middle">max concurrency</text>`);
    [...series.values()].forEach((rs, si) => {
      const color = COLORS[si % COLORS.length]!;
      const pts = rs
        .map((r) => ({ i: xs.indexOf(concurrencyOf(r)), v: value(r) }))
        .filter((p): p is { i: number; v: number } => p.v !== undefined)
        .sort((a, b) => a.i - b.i);
      if (pts.length > 1) {
        const d = pts.map((p) => `${px(p.i).toFixed(1)},${py(p.v).toFixed(1)}`).join(' ');
        out.push(`<polyline points="${d}" fill="none" stroke="${color}" stroke-width="2"/>`);
      }
      for (const p of pts) {
        out.push(`<circle cx="${px(p.i).toFixed(1)}" cy="${py(p.v).toFixed(1)}" r="3.5" fill="${color}"><title>${esc(fmt(p.v))}</title></circle>`);
      }
    });
  };
  panel(0, 'Output tokens/s', (r) => num(r, 'output_tokens_per_s'));
  panel(W, 'p99 inter-token latency (ms)', (r) => num(r, 'itl_ms.p99'));
  [...series.keys()].forEach((name, si) => {
    const y = H + 8 + si * 18;
    const color = COLORS[si % COLORS.length]!;
    out.push(`<rect x="${M.l}" y="${y}" width="14" height="4" fill="${color}"/>`);
    out.push(`<text x="${M.l + 20}" y="${y + 5}">${esc(name)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

function writeOut(file: string, text: string): void {
  mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  writeFileSync(file, text);
}

export function main(argv: string[]): number {
  const files: string[] = [];
  let out: string | undefined;
  let svg: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--out' || a === '--svg') {
      const v = argv[++i];
      if (v === undefined) {
        process.stderr.write(`report: ${a} needs a file\n`);
        return 2;
      }
      if (a === '--out') out = v;
      else svg = v;
    } else if (a === '--help' || a === '-h') {
      process.stdout.write('usage: node --import tsx scripts/benchmark-report.ts RESULT.json... [--out FILE.md] [--svg FILE.svg]\n');
      return 0;
    } else if (a.startsWith('--')) {
      process.stderr.write(`report: unknown option ${a}\n`);
      return 2;
    } else {
      files.push(a);
    }
  }
  if (files.length === 0) {
    process.stderr.write('report: no result files given\n');
    return 2;
  }
  const warn = (m: string): void => void process.stderr.write(`report: ${m}\n`);
  const results: Result[] = [];
  for (const f of files) {
    try {
      results.push(...parseResults(readFileSync(f, 'utf8'), f, warn));
    } catch (err) {
      warn(`${f}: ${(err as Error).message}`);
    }
  }
  if (results.length === 0) {
    warn('no results found');
    return 1;
  }
  const md = renderMarkdown(results, files);
  if (out === undefined) process.stdout.write(md);
  else writeOut(out, md);
  if (svg !== undefined) {
    const s = renderSvg(results);
    if (s === null) warn('no serve results: no SVG written');
    else writeOut(svg, s);
  }
  return 0;
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main(process.argv.slice(2));
}
