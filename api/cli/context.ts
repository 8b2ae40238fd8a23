/**
 * What every command handler shares: its checked arguments and stdout, the embedded-mode session on the data
 * directory, the client-mode connection, progress on stderr, and output files — which are never overwritten
 * silently: `--out` names them, and one that exists is refused (SH_ERR_ALREADY_EXISTS) before any job runs unless
 * `--force` is given.
 */
import { existsSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { SafehouseError, isCoded } from '../../core/errors.ts';
import { Safehouse } from '../embedded.ts';
import { clientFor, type Client } from '../client/index.ts';
import type { Args } from './parse.ts';

export interface Context {
  readonly args: Args;
  /** One line on stdout. */
  out(line: string): void;
}

/** A command's handler: its exit code (0 done, 1 a job or check failed; usage errors are thrown). */
export type Handler = (c: Context) => Promise<number>;

/** Run until SIGINT/SIGTERM, then shut down gracefully (the servers: `serve`, `custodian`). */
export async function untilSignal(close: () => Promise<void>): Promise<number> {
  await new Promise<void>((done) => {
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
  await close();
  return 0;
}

/** Open the data directory (embedded mode), run `f`, close it. */
export async function withSafehouse<T>(
  args: Args,
  f: (sh: Safehouse) => Promise<T>,
  o: { create?: boolean } = {},
): Promise<T> {
  let sh: Safehouse;
  try {
    sh = await Safehouse.open({ home: args.home, create: o.create === true });
  } catch (err) {
    // Pointing --home at the wrong place is a usage error (exit 2), not a failed job.
    if (isCoded(err, 'SH_ERR_HOME_NOT_INITIALIZED'))
      throw new SafehouseError(err.code, err.message, { ...err.details, option: 'home' }, { cause: err });
    throw err;
  }
  try {
    return await f(sh);
  } finally {
    await sh.close();
  }
}

/** Client mode: the party's signed HTTP client (`--server`, `--key`, `--as` checked against the key file). */
export function client(args: Args): Client {
  return clientFor(args.string('server'), args.optString('as'), args.string('key'));
}

/**
 * Check output files before anything runs: each must not exist (unless `--force`), and its directory must.
 * @throws SH_ERR_ALREADY_EXISTS for an existing file without --force; SH_ERR_INVALID_ARGUMENT for a missing directory.
 */
export function checkOutputs(args: Args, files: readonly string[]): void {
  for (const f of files) {
    const path = resolve(f);
    if (existsSync(path) && statSync(path).isDirectory())
      throw new SafehouseError('SH_ERR_INVALID_ARGUMENT', `--out ${f} is a directory; name a file`, {
        option: 'out',
        file: f,
      });
    if (existsSync(path) && !args.flag('force'))
      throw new SafehouseError(
        'SH_ERR_ALREADY_EXISTS',
        `${f} already exists; nothing was run or written (choose another --out, or add --force to overwrite it)`,
        { option: 'out', file: f },
      );
    if (!existsSync(dirname(path)))
      throw new SafehouseError('SH_ERR_INVALID_ARGUMENT', `--out ${f}: the directory ${dirname(f)} does not exist`, {
        option: 'out',
        file: f,
      });
  }
}

/** Write an output file whole (a temporary file renamed into place, so a reader never sees half of it). */
export function writeOutput(file: string, text: string): void {
  const path = resolve(file);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

/**
 * Progress of a long step on stderr: a bar redrawn in place on a terminal; otherwise (a log, a pipe) one line per
 * tenth of the work, so that `--json` runs show progress too while stdout stays one JSON object.
 */
export function progress(label: string): (done: number, total: number) => void {
  let shown = -1;
  return (done, total) => {
    if (process.stderr.isTTY) {
      const width = 30;
      const filled = total === 0 ? width : Math.round((Math.min(done, total) / total) * width);
      process.stderr.write(
        `\r${label.padEnd(16)} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}${done === total ? '\n' : ''}`,
      );
      return;
    }
    const tenth = total === 0 ? 10 : Math.floor((Math.min(done, total) / total) * 10);
    if (tenth > shown && (tenth > 0 || done === total)) {
      shown = tenth;
      process.stderr.write(`${label} ${done}/${total}\n`);
    }
  };
}

/** `status 3, other 1` in a fixed order of first appearance. */
export function counts(values: Iterable<string>): string {
  const m = new Map<string, number>();
  for (const v of values) m.set(v, (m.get(v) ?? 0) + 1);
  return [...m].map(([k, n]) => `${k} ${n}`).join(', ');
}
