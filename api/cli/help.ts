/**
 * The CLI's help pages, written from the command table (commands.ts): the overview (`safehouse`, `safehouse --help`)
 * lists the commands grouped by the party that runs them; `safehouse <command> --help` (or `safehouse help
 * <command>`) gives that command's usage in each of its modes, its options with types and defaults, and an example.
 */
import { COMMANDS, GROUPS, PARTIES, optionsFor, type CommandSpec, type Mode, type OptionSpec } from './commands.ts';
import { expected } from './parse.ts';

const WIDTH = 118;

export function overview(): string {
  const lines = [
    'safehouse — privacy-preserving computation for SME credit-information sharing (数据安全屋)',
    '',
    'Usage: safehouse <command> [options]          safehouse <command> --help: its options and an example',
  ];
  for (const { party, title } of PARTIES) {
    lines.push('', `${title}:`);
    for (const c of COMMANDS.filter((x) => x.party === party)) lines.push(...wrap(`  ${c.name.padEnd(17)}`, c.summary));
  }
  lines.push(
    '',
    'Modes: embedded (the default) plays every party in one process on a data directory, --home DIR (default',
    './.safehouse), each with its keys from the wallet there; client mode acts as one party against an engine server:',
    'add --server URL --as PARTY --key FILE to a party command (README "Network mode").',
    'Exit codes: 0 done; 1 a job or check failed; 2 bad usage or input. Errors print `SH_ERR_…: message` on stderr',
    '(every code: docs/errors.md).',
  );
  return lines.join('\n');
}

export function groupHelp(group: string): string {
  const cmds = GROUPS.get(group) ?? [];
  return [
    `safehouse ${group} — ${cmds.map((c) => c.name).join(', ')}`,
    '',
    ...cmds.flatMap((c) => wrap(`  ${c.name.padEnd(17)}`, c.summary)),
    '',
    `safehouse ${group} <${cmds.map((c) => c.name.split(' ')[1]).join('|')}> --help for its options.`,
  ].join('\n');
}

function flag(o: OptionSpec): string {
  return `--${o.name}${o.arg ? ` ${o.arg}` : ''}`;
}

/** One usage line of `c` in `mode`: required options, the alternatives, then the optional ones in brackets. */
function usage(c: CommandSpec, mode: Mode): string[] {
  const table = optionsFor(c, mode);
  const names = new Set(table.map((o) => o.name));
  const alternatives = (c.oneOf ?? []).map((g) => g.filter((n) => names.has(n))).filter((g) => g.length > 0);
  const inGroup = new Set(alternatives.flat());
  const byName = new Map(table.map((o) => [o.name, o]));
  const parts = [
    ...table.filter((o) => o.required && o.name !== 'home').map(flag),
    ...(alternatives.length
      ? [`(${alternatives.map((g) => g.map((n) => flag(byName.get(n)!)).join(' ')).join(' | ')})`]
      : []),
    ...table.filter((o) => !o.required && !inGroup.has(o.name)).map((o) => `[${flag(o)}]`),
  ];
  // An option and its value (or a bracketed group) stay on one line: wrap only between them.
  const glued = parts.map((p) => p.replaceAll(' ', '\u00a0')).join(' ');
  return wrap(`  safehouse ${c.name} `, glued, `    `).map((l) => l.replaceAll('\u00a0', ' '));
}

function typeText(o: OptionSpec): string {
  const t =
    o.type === 'string'
      ? 'string'
      : o.type === 'boolean'
        ? 'flag'
        : o.type === 'list' && !o.values
          ? 'list'
          : expected(o);
  const dflt = o.default !== undefined ? `default ${o.default}` : o.defaultText ? `default ${o.defaultText}` : '';
  return [t, o.required ? 'required' : dflt].filter(Boolean).join('; ');
}

export function commandHelp(c: CommandSpec): string {
  const modes = c.modes;
  const lines = [`safehouse ${c.name} — ${c.summary}`, '', 'Usage:'];
  for (const m of modes) {
    if (modes.length > 1) lines.push(`  ${m === 'client' ? 'client mode' : 'embedded mode'}:`);
    lines.push(...usage(c, m).map((l) => (modes.length > 1 ? `  ${l}` : l)));
  }
  lines.push('', 'Options:');
  const seen = new Set<string>();
  for (const o of c.options) {
    // An option of two modes with different help (--key) is listed once per text.
    const id = `${o.name}\u0000${o.help}`;
    if (seen.has(id)) continue;
    seen.add(id);
    const where = modes.length > 1 && o.mode ? ` (${o.mode === 'client' ? 'client mode' : 'embedded mode'})` : '';
    lines.push(...wrap(`  ${flag(o).padEnd(24)} `, `${o.help}${where} — ${typeText(o)}`, ' '.repeat(27)));
  }
  lines.push('  --help, -h               this page');
  if (c.oneOf)
    lines.push('', `Give exactly one of: ${c.oneOf.map((g) => g.map((n) => `--${n}`).join(' ')).join('  |  ')}.`);
  if (c.notes) lines.push('', ...c.notes);
  lines.push('', c.examples.length > 1 ? 'Examples:' : 'Example:', ...c.examples.map((e) => `  ${e}`));
  return lines.join('\n');
}

/** `head` then `text` wrapped at WIDTH, continuation lines indented to `indent` (default: under the text). */
function wrap(head: string, text: string, indent = ' '.repeat(head.length)): string[] {
  const out: string[] = [];
  let line = head;
  for (const word of text.split(' ')) {
    if (line.length + word.length + 1 > WIDTH && line.trim() !== '' && line !== head) {
      out.push(line.trimEnd());
      line = indent;
    }
    line += (line === head || line === indent ? '' : ' ') + word;
  }
  out.push(line.trimEnd());
  return out;
}
