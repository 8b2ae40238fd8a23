/**
 * `safehouse`, the command line (entered through api/bin/safehouse.js). It reads the command line against the
 * command table (commands.ts, parse.ts), prints help (help.ts) or runs the command's handler, loaded with its
 * module only when it runs so that help and usage errors answer at once. Errors are printed as `CODE: message` on
 * stderr (docs/errors.md); the exit code is 0 when the command did its work, 1 when a job or check failed, 2 for
 * bad usage or input (an error of kind `input`, or one naming an option).
 */
import { SafehouseError } from '../../core/errors.ts';
import type { CommandSpec } from './commands.ts';
import { commandHelp, groupHelp, overview } from './help.ts';
import { parseCommandLine } from './parse.ts';
import type { Handler } from './context.ts';

const MODULES: Record<CommandSpec['module'], () => Promise<{ HANDLERS: Record<string, Handler> }>> = {
  platform: () => import('./platform.ts'),
  provider: () => import('./provider.ts'),
  enterprise: () => import('./enterprise.ts'),
  bank: () => import('./bank.ts'),
  train: () => import('./train.ts'),
  auditor: () => import('./auditor.ts'),
};

/** The handler of every command in the table (a test checks none is missing). */
export async function handlerOf(spec: CommandSpec): Promise<Handler | undefined> {
  return (await MODULES[spec.module]()).HANDLERS[spec.name];
}

/** Run a command line; returns the exit code. Usage and input errors are thrown (see {@link exitCodeOf}). */
export async function main(argv: string[]): Promise<number> {
  const line = parseCommandLine(argv);
  const out = (l: string) => process.stdout.write(l + '\n');
  if (line.kind === 'help') {
    out(
      line.topic === undefined
        ? overview()
        : typeof line.topic === 'string'
          ? groupHelp(line.topic)
          : commandHelp(line.topic),
    );
    return 0;
  }
  const handler = await handlerOf(line.args.command);
  if (!handler) throw new SafehouseError('SH_ERR_INTERNAL', `no handler for ${line.args.command.name}`);
  return handler({ args: line.args, out });
}

/** 2 for bad usage or input — a kind `input` error, or one whose details name an option — else 1. */
export function exitCodeOf(err: unknown): number {
  return err instanceof SafehouseError && (err.kind === 'input' || err.details.option !== undefined) ? 2 : 1;
}

export async function run(argv: string[]): Promise<void> {
  try {
    process.exitCode = await main(argv);
  } catch (err) {
    if (err instanceof SafehouseError) {
      const p = err.toPublic();
      process.stderr.write(`${p.code}: ${p.message}\n`);
      if (err.kind === 'internal' && err.cause)
        process.stderr.write(`  cause: ${String((err.cause as Error)?.message ?? err.cause)}\n`);
    } else {
      process.stderr.write(`SH_ERR_INTERNAL: ${(err as Error)?.stack ?? String(err)}\n`);
    }
    process.exitCode = exitCodeOf(err);
  }
}

if (import.meta.main) await run(process.argv.slice(2));
