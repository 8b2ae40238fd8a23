/**
 * Reading a `safehouse` command line against the command table (commands.ts). The command words come first; node:util
 * `parseArgs` then splits the rest into options — non-strict and with tokens, so that every problem is found here and
 * told in Safehouse's words, never in the parser's — and each value is checked against its option's type, range or
 * values, then each command's required options and alternatives. Every failure is an SH_ERR_INVALID_ARGUMENT whose
 * details name the option (or the command), with the closest valid name when one is near (docs/errors.md).
 */
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { SafehouseError } from '../../core/errors.ts';
import {
  COMMANDS,
  GROUPS,
  VALUE_OPTIONS,
  command,
  optionsFor,
  type CommandSpec,
  type Mode,
  type OptionSpec,
} from './commands.ts';

export type Value = string | number | boolean | string[];

/** A usage error: bad command, option or value. The CLI exits 2 for these. */
export function usageError(message: string, details: Record<string, string | number | boolean>): SafehouseError {
  return new SafehouseError('SH_ERR_INVALID_ARGUMENT', message, details);
}

/** The options of one command line, typed and checked. */
export class Args {
  readonly command: CommandSpec;
  readonly mode: Mode;
  readonly #values: ReadonlyMap<string, Value>;

  constructor(spec: CommandSpec, mode: Mode, values: ReadonlyMap<string, Value>) {
    this.command = spec;
    this.mode = mode;
    this.#values = values;
  }

  has(name: string): boolean {
    return this.#values.has(name);
  }

  /** A string option the table requires (or that the handler has checked is there). */
  string(name: string): string {
    const v = this.#values.get(name);
    if (typeof v !== 'string')
      throw usageError(`"--${name}" is required; see safehouse ${this.command.name} --help`, { option: name });
    return v;
  }

  optString(name: string): string | undefined {
    const v = this.#values.get(name);
    return typeof v === 'string' ? v : undefined;
  }

  number(name: string): number {
    const v = this.#values.get(name);
    if (typeof v !== 'number')
      throw usageError(`"--${name}" is required; see safehouse ${this.command.name} --help`, { option: name });
    return v;
  }

  optNumber(name: string): number | undefined {
    const v = this.#values.get(name);
    return typeof v === 'number' ? v : undefined;
  }

  flag(name: string): boolean {
    return this.#values.get(name) === true;
  }

  list(name: string): string[] {
    const v = this.#values.get(name);
    return Array.isArray(v) ? v : [];
  }

  /** The data directory (embedded mode and `serve`): `--home`, else `$SAFEHOUSE_HOME`, else ./.safehouse. */
  get home(): string {
    return resolve(this.optString('home') ?? (process.env.SAFEHOUSE_HOME || './.safehouse'));
  }
}

export type CommandLine = { kind: 'help'; topic?: CommandSpec | string } | { kind: 'run'; args: Args };

/** Optimal-string-alignment edit distance (a transposition counts as one edit: `scroe` is one from `score`). */
export function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => i || j));
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  return d[a.length]![b.length]!;
}

/** The candidate nearest to `query`, if it is near enough to be what was meant (or `query` is its prefix). */
export function closest(query: string, candidates: readonly string[]): string | undefined {
  const q = query.toLowerCase();
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = distance(q, c.toLowerCase());
    if (d < bestD) [best, bestD] = [c, d];
  }
  if (best !== undefined && bestD <= Math.max(1, Math.floor(q.length / 3))) return best;
  // A prefix either way (`cons` for `consent`, `taxes` for `tax`) is what was meant when only one candidate fits.
  const prefixed = candidates.filter((c) => {
    const l = c.toLowerCase();
    return Math.min(l.length, q.length) >= 3 && (l.startsWith(q) || q.startsWith(l));
  });
  return prefixed.length === 1 ? prefixed[0] : undefined;
}

const isHelp = (t: string) => t === '--help' || t === '-h';

/**
 * Read a command line: a help request, or a command with checked options.
 * @throws SafehouseError SH_ERR_INVALID_ARGUMENT for an unknown command or option, a bad value, a missing option.
 */
export function parseCommandLine(argv: readonly string[]): CommandLine {
  // The command words: the first positionals, stepping over options and the values of options that take one.
  const words: Array<{ index: number; value: string }> = [];
  for (let i = 0; i < argv.length && words.length < 3; i++) {
    const t = argv[i]!;
    if (t === '--') break;
    if (t.startsWith('-') && t.length > 1) {
      if (t.startsWith('--') && !t.includes('=') && VALUE_OPTIONS.has(t.slice(2))) i++;
      continue;
    }
    words.push({ index: i, value: t });
  }
  if (words.length === 0) {
    const other = argv.find((t) => !isHelp(t));
    if (other === undefined) return { kind: 'help' };
    throw usageError(`no command given before ${other}; see safehouse --help for the commands`, { option: other });
  }
  if (words[0]!.value === 'help') {
    if (words.length === 1) return { kind: 'help' };
    const r = resolveCommand(words.slice(1).map((w) => w.value));
    return { kind: 'help', topic: r.spec ?? r.group! };
  }
  const r = resolveCommand(words.map((w) => w.value));
  const used = new Set(words.slice(0, r.used).map((w) => w.index));
  const rest = argv.filter((_, i) => !used.has(i));
  const beforeTerminator = rest.slice(0, rest.includes('--') ? rest.indexOf('--') : rest.length);
  if (r.group !== undefined || beforeTerminator.some(isHelp)) return { kind: 'help', topic: r.spec ?? r.group! };
  const spec = r.spec!;

  const client = beforeTerminator.some((t) => t === '--server' || t.startsWith('--server='));
  if (client && !spec.modes.includes('client'))
    throw usageError(
      `safehouse ${spec.name} has no client mode (--server): ${spec.modes.includes('local') ? 'it runs as a process of its own' : 'it works on the data directory, --home'}; see safehouse ${spec.name} --help`,
      { option: 'server', command: spec.name },
    );
  const mode: Mode = client ? 'client' : spec.modes.includes('local') ? 'local' : 'embedded';
  return { kind: 'run', args: new Args(spec, mode, readOptions(spec, mode, rest)) };
}

function resolveCommand(w: readonly string[]): { spec?: CommandSpec; group?: string; used: number } {
  const [a, b] = w as [string, string | undefined];
  const group = GROUPS.get(a);
  if (!group) {
    const spec = command(a);
    if (spec) return { spec, used: 1 };
    const near = closest(a, [...new Set(COMMANDS.map((c) => c.name.split(' ')[0]!))]);
    let suggestion = near;
    const subs = near !== undefined ? GROUPS.get(near)?.map((c) => c.name.split(' ')[1]!) : undefined;
    if (near !== undefined && subs) {
      const sub = b === undefined ? undefined : closest(b, subs);
      suggestion = sub ? `${near} ${sub}` : subs.map((s) => `${near} ${s}`).join('" or "');
    }
    throw usageError(
      `unknown command "${a}"; ${suggestion ? `did you mean "${suggestion}"? See` : 'see'} safehouse --help for every command`,
      { command: a, ...(suggestion ? { suggestion } : {}) },
    );
  }
  if (b === undefined) return { group: a, used: 1 };
  const spec = command(`${a} ${b}`);
  if (spec) return { spec, used: 2 };
  const subs = group.map((c) => c.name.split(' ')[1]!);
  const near = closest(b, subs);
  throw usageError(
    `unknown command "${a} ${b}"; ${near ? `did you mean "${a} ${near}"? ` : ''}${a} commands: ${subs.join(', ')} (safehouse ${a} --help)`,
    { command: `${a} ${b}`, ...(near ? { suggestion: `${a} ${near}` } : {}) },
  );
}

function modeText(m: Mode | undefined): string {
  return m === 'client'
    ? 'client mode (with --server URL)'
    : m === 'embedded'
      ? 'embedded mode (without --server)'
      : '';
}

function readOptions(spec: CommandSpec, mode: Mode, rest: string[]): Map<string, Value> {
  const table = optionsFor(spec, mode);
  const byName = new Map(table.map((o) => [o.name, o]));
  const see = `see safehouse ${spec.name} --help`;
  const parserOptions: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    help: { type: 'boolean', short: 'h' },
  };
  for (const o of table) parserOptions[o.name] = { type: o.type === 'boolean' ? 'boolean' : 'string' };
  let tokens;
  try {
    tokens = parseArgs({
      args: rest,
      options: parserOptions,
      strict: false,
      allowPositionals: true,
      tokens: true,
    }).tokens;
  } catch {
    // Non-strict parsing does not refuse input; this only guards against the parser's own surprises.
    throw usageError(`cannot read the options of safehouse ${spec.name}; ${see}`, { command: spec.name });
  }
  const raw = new Map<string, string | true>();
  let afterTerminator = false;
  for (const t of tokens) {
    if (t.kind === 'option-terminator') {
      afterTerminator = true;
      continue;
    }
    if (t.kind === 'positional')
      throw usageError(
        `unexpected argument ${JSON.stringify(t.value)} for safehouse ${spec.name}${afterTerminator ? '' : ' (options are written --name VALUE; quote a value that has spaces)'}; ${see}`,
        { command: spec.name, argument: t.value },
      );
    const o = byName.get(t.name);
    if (!o) {
      const elsewhere = spec.options.find((x) => x.name === t.name);
      if (elsewhere)
        throw usageError(`${t.rawName} belongs to ${modeText(elsewhere.mode)} of safehouse ${spec.name}; ${see}`, {
          option: t.name,
          command: spec.name,
        });
      const near = closest(
        t.name,
        table.map((x) => x.name),
      );
      throw usageError(
        `unknown option ${t.rawName} for safehouse ${spec.name}; ${near ? `did you mean --${near}? S${see.slice(1)}` : see} for its options`,
        { option: t.name, command: spec.name, ...(near ? { suggestion: near } : {}) },
      );
    }
    if (raw.has(o.name))
      throw usageError(`--${o.name} is given twice; give it once`, { option: o.name, command: spec.name });
    if (o.type === 'boolean') {
      if (t.inlineValue) throw usageError(`--${o.name} takes no value`, { option: o.name, command: spec.name });
      raw.set(o.name, true);
      continue;
    }
    if (t.value === undefined || (!t.inlineValue && t.value.startsWith('--')))
      throw usageError(
        `--${o.name} needs a value (${o.arg ?? 'VALUE'})${t.value === undefined ? '' : `, got the option ${t.value}`}; ${see}`,
        { option: o.name, command: spec.name },
      );
    raw.set(o.name, t.value);
  }

  const values = new Map<string, Value>();
  for (const [name, v] of raw) values.set(name, convert(spec, byName.get(name)!, v as string | true));
  const alternatives = (spec.oneOf ?? []).map((g) => g.filter((n) => byName.has(n))).filter((g) => g.length > 0);
  const inGroup = new Set(alternatives.flat());
  const flag = (n: string) => `--${n}${byName.get(n)!.arg ? ` ${byName.get(n)!.arg}` : ''}`;
  const missing = table.filter((o) => o.required && !inGroup.has(o.name) && !values.has(o.name)).map((o) => o.name);
  if (alternatives.length > 0) {
    const given = alternatives.filter((g) => g.some((n) => values.has(n)));
    const ways = alternatives.map((g) => g.map(flag).join(' ')).join(', or ');
    if (given.length === 0)
      throw usageError(`safehouse ${spec.name} needs ${ways}; ${see}`, {
        option: alternatives[0]![0]!,
        command: spec.name,
      });
    if (given.length > 1)
      throw usageError(
        `${given.map((g) => `--${g.find((n) => values.has(n))}`).join(' and ')} cannot be combined: give ${ways}`,
        { option: given[1]!.find((n) => values.has(n))!, command: spec.name },
      );
    missing.push(...given[0]!.filter((n) => !values.has(n)));
  }
  if (missing.length > 0)
    throw usageError(
      `safehouse ${spec.name}${mode === 'client' ? ' (client mode)' : ''} needs ${missing.map(flag).join(', ')}; ${see}`,
      { option: missing[0]!, command: spec.name, missing: missing.join(',') },
    );
  for (const o of table) if (!values.has(o.name) && o.default !== undefined) values.set(o.name, o.default);
  return values;
}

/** What an option's values must be, in words: "an integer from 1 to 36500", "one of binned, standardized". */
export function expected(o: OptionSpec): string {
  if (o.type === 'int' || o.type === 'number') {
    const what = o.type === 'int' ? 'an integer' : 'a number';
    if (o.min !== undefined && o.max !== undefined) return `${what} from ${o.min} to ${o.max}`;
    if (o.min !== undefined) return `${what} ≥ ${o.min}`;
    if (o.above !== undefined) return `${what} > ${o.above}`;
    return what;
  }
  if (o.type === 'enum') return `one of ${o.values!.join(', ')}`;
  if (o.type === 'list' && o.values)
    return `a comma-separated list of ${o.valuesName ?? 'values'} (${o.values.join(', ')})`;
  if (o.type === 'list') return 'a comma-separated list';
  return 'a value';
}

function convert(spec: CommandSpec, o: OptionSpec, v: string | true): Value {
  const bad = (got: string, hint = ''): never => {
    throw usageError(`"--${o.name}" expected ${expected(o)}, got ${JSON.stringify(got)}${hint}`, {
      option: o.name,
      command: spec.name,
      expected: expected(o),
    });
  };
  if (v === true) return true;
  const s = v.trim();
  switch (o.type) {
    case 'boolean':
      return true;
    case 'int':
    case 'number': {
      const n = Number(s);
      const shape = o.type === 'int' ? /^[+-]?\d+$/ : /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;
      if (!shape.test(s) || !Number.isFinite(n)) return bad(v);
      if (
        (o.min !== undefined && n < o.min) ||
        (o.max !== undefined && n > o.max) ||
        (o.above !== undefined && n <= o.above)
      )
        return bad(v);
      return n;
    }
    case 'enum': {
      if (o.values!.includes(s)) return s;
      const near = closest(s, o.values!);
      return bad(v, near ? `; did you mean ${near}?` : '');
    }
    case 'list': {
      const items = s
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean);
      if (items.length === 0) return bad(v);
      for (const x of items)
        if (o.values && !o.values.includes(x)) {
          const near = closest(x, o.values);
          return bad(x, near ? `; did you mean ${near}?` : '');
        }
      return items;
    }
    default:
      if (s === '') return bad(v);
      return v;
  }
}
