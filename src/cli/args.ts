/**
 * A small, strict flag parser: `--name value`, `--name=value`, and boolean `--flag`. Unknown flags
 * are errors, so a typo never silently falls back to a default.
 */

/**
 * A command line the CLI cannot run: unknown or malformed flags, missing arguments, unreadable
 * input files. Its own class, not the server's HTTP 400 (UsageError): the CLI prints the
 * message and exits 1.
 */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface FlagSpec {
  /** Flags that take a value. */
  values: readonly string[];
  /** Flags that are booleans. */
  booleans: readonly string[];
}

export function parseArgs(argv: readonly string[], spec: FlagSpec): Map<string, string | true> {
  const out = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new UsageError(`unexpected argument "${a}"`);
    const eq = a.indexOf('=');
    const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
    if (spec.booleans.includes(name)) {
      if (eq >= 0) throw new UsageError(`--${name} takes no value`);
      out.set(name, true);
    } else if (spec.values.includes(name)) {
      const v = eq >= 0 ? a.slice(eq + 1) : argv[++i];
      if (v === undefined) throw new UsageError(`--${name} needs a value`);
      out.set(name, v);
    } else {
      throw new UsageError(`unknown option --${name}`);
    }
  }
  return out;
}

export function intFlag(flags: Map<string, string | true>, name: string): number | undefined {
  const v = flags.get(name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v === true || !Number.isInteger(n)) throw new UsageError(`--${name} must be an integer, got "${String(v)}"`);
  return n;
}

export function numFlag(flags: Map<string, string | true>, name: string): number | undefined {
  const v = flags.get(name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v === true || v.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got "${String(v)}"`);
  return n;
}

export function strFlag(flags: Map<string, string | true>, name: string): string | undefined {
  const v = flags.get(name);
  if (v === true) throw new UsageError(`--${name} needs a value`);
  return v;
}
