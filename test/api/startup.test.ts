/**
 * `safehouse serve` refuses a data directory it should not start on (docs/operations.md "Start-up checks"), with a
 * coded error and no stack trace, and changes nothing there: a missing or empty engine.db (before, either silently
 * became a new engine with an empty ledger), a file that is not a database, a damaged page, a rewritten ledger leaf,
 * a missing or malformed engine.key or admin.key. `--init` makes a new engine; a sound one restarts without it.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn } from 'node:child_process';
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BIN = new URL('../../api/bin/safehouse.js', import.meta.url).pathname;
let root: string;
let sound: string;

/** Start `serve`; resolve with its exit code and stderr, or with 'listening' (then it is stopped) — bounded. */
function serve(home: string, extra: string[] = []): Promise<{ outcome: 'listening' | number; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, 'serve', '--home', home, '--port', '0', '--pool-size', '1', ...extra], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let done = false;
    const finish = (outcome: 'listening' | number) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (outcome === 'listening') p.kill('SIGTERM');
      resolve({ outcome, stderr });
    };
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      finish(-1);
    }, 60_000);
    p.stdout.on('data', (d: Buffer) => {
      if (d.toString().includes('listening on')) finish('listening');
    });
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('exit', (code) => finish(code ?? -1));
  });
}

/** A copy of the sound data directory to damage. */
function copy(name: string): string {
  const dir = join(root, name);
  cpSync(sound, dir, { recursive: true });
  return dir;
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'sh-startup-'));
  sound = join(root, 'sound');
  const first = await serve(sound, ['--init']);
  expect(first.outcome).toBe('listening');
  // Let it shut down (SIGTERM) before the directory is copied.
  for (
    let i = 0;
    i < 100 && existsSync(join(sound, 'engine.db-wal')) && statSync(join(sound, 'engine.db-wal')).size;
    i++
  )
    await new Promise((r) => setTimeout(r, 50));
}, 120_000);
afterAll(() => rmSync(root, { recursive: true, force: true }));

function refused(r: { outcome: 'listening' | number; stderr: string }, code: string) {
  expect(r.outcome).not.toBe('listening');
  expect(r.outcome).not.toBe(0);
  expect(r.stderr).toContain(code);
  expect(r.stderr).not.toMatch(/\n\s+at .+:\d+:\d+/); // no stack trace
}

describe('safehouse serve: start-up checks', () => {
  it('a sound data directory restarts without --init', async () => {
    expect((await serve(copy('restart'))).outcome).toBe('listening');
  }, 60_000);

  it('no engine database: refused unless --init, and nothing is created', async () => {
    const home = join(root, 'missing');
    mkdirSync(home);
    refused(await serve(home), 'SH_ERR_HOME_NOT_INITIALIZED');
    expect(existsSync(join(home, 'engine.db'))).toBe(false);
    expect(existsSync(join(home, 'engine.key'))).toBe(false);
  }, 60_000);

  it('an empty engine.db (a lost file truncated to nothing) is refused, not a new engine', async () => {
    const home = copy('empty');
    writeFileSync(join(home, 'engine.db'), '');
    rmSync(join(home, 'engine.db-wal'), { force: true });
    rmSync(join(home, 'engine.db-shm'), { force: true });
    refused(await serve(home), 'SH_ERR_STORE_DAMAGED');
    expect(statSync(join(home, 'engine.db')).size).toBe(0);
  }, 60_000);

  it('a file that is not a database, or one with damaged pages, is refused', async () => {
    const junk = copy('junk');
    writeFileSync(join(junk, 'engine.db'), Buffer.alloc(8192, 0x5a));
    rmSync(join(junk, 'engine.db-wal'), { force: true });
    refused(await serve(junk), 'SH_ERR_STORE_DAMAGED');

    const torn = copy('torn');
    rmSync(join(torn, 'engine.db-wal'), { force: true });
    rmSync(join(torn, 'engine.db-shm'), { force: true });
    const bytes = readFileSync(join(sound, 'engine.db'));
    // Overwrite every page after the first two (schema survives, table and index pages do not).
    const page = bytes.readUInt16BE(16) || 65536;
    for (let off = 2 * page; off < bytes.length; off += page) bytes.fill(0xa5, off + 8, off + page);
    writeFileSync(join(torn, 'engine.db'), bytes);
    refused(await serve(torn), 'SH_ERR_STORE_DAMAGED');
  }, 60_000);

  it('a rewritten ledger leaf is refused at start (SH_ERR_LEDGER_TAMPERED)', async () => {
    const home = copy('tampered');
    const db = new DatabaseSync(join(home, 'engine.db'));
    db.prepare(
      "UPDATE ledger_entries SET body = replace(body, 'engine.initialized', 'engine.initialised') WHERE idx = 0",
    ).run();
    db.close();
    refused(await serve(home), 'SH_ERR_LEDGER_TAMPERED');
  }, 60_000);

  it('a missing or malformed engine.key or admin.key is refused, and no new key replaces it', async () => {
    const noKey = copy('no-engine-key');
    rmSync(join(noKey, 'engine.key'));
    refused(await serve(noKey), 'SH_ERR_KEY_FILE');
    expect(existsSync(join(noKey, 'engine.key'))).toBe(false);

    const badKey = copy('bad-engine-key');
    writeFileSync(join(badKey, 'engine.key'), '{"ed25519": "not hex"');
    refused(await serve(badKey), 'SH_ERR_KEY_FILE');

    const badAdmin = copy('bad-admin-key');
    const before = readFileSync(join(badAdmin, 'admin.key'), 'utf8').slice(0, 40);
    writeFileSync(join(badAdmin, 'admin.key'), before);
    refused(await serve(badAdmin), 'SH_ERR_KEY_FILE');
    expect(readFileSync(join(badAdmin, 'admin.key'), 'utf8')).toBe(before);
    copyFileSync(join(sound, 'admin.key'), join(badAdmin, 'admin.key'));
    expect((await serve(badAdmin)).outcome).toBe('listening');
  }, 120_000);
});
