/**
 * Backup and restore of an engine's data directory (docs/operations.md "Backup and restore"), safe while the server
 * runs: the database through SQLite's online backup (a consistent snapshot, page by page, other connections keep
 * writing), then the blobs — after the snapshot, because a blob is written before the row that names it, so every
 * blob the snapshot names is copied — then the keys, delivered results and (embedded mode) the wallet. The copy is checked before it is called a
 * backup (SQLite's quick_check, and the ledger through its signed checkpoints by whoever restores it); restoring
 * refuses a directory that already holds an engine.
 */
import { backup, DatabaseSync } from 'node:sqlite';
import { cpSync, existsSync, mkdirSync, readdirSync, writeFileSync, copyFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fail } from '../../core/errors.ts';

/** What a backup holds, written beside it as BACKUP.json. */
export interface BackupManifest {
  type: 'safehouse.backup.v1';
  at: string;
  from: string;
  ledgerEntries: number;
  blobs: number;
  files: string[];
}

const KEY_FILES = ['engine.key', 'admin.key'];

/** @throws SH_ERR_HOME_NOT_INITIALIZED, SH_ERR_ALREADY_EXISTS (a non-empty `out`), SH_ERR_STORE_DAMAGED */
export async function backupHome(home: string, out: string): Promise<BackupManifest> {
  const dbPath = join(home, 'engine.db');
  if (!existsSync(dbPath)) fail('SH_ERR_HOME_NOT_INITIALIZED', `no engine database in ${home}`);
  if (existsSync(out) && readdirSync(out).length)
    fail('SH_ERR_ALREADY_EXISTS', `${out} is not empty; a backup goes to a new directory`, { option: 'out' });
  mkdirSync(out, { recursive: true });
  const src = new DatabaseSync(dbPath);
  try {
    await backup(src, join(out, 'engine.db'));
  } finally {
    src.close();
  }
  const copy = new DatabaseSync(join(out, 'engine.db'), { readOnly: true });
  let entries: number;
  try {
    const check = copy.prepare('PRAGMA quick_check').all() as Array<Record<string, unknown>>;
    if (String(Object.values(check[0] ?? {})[0]) !== 'ok')
      fail('SH_ERR_STORE_DAMAGED', `the copy of ${dbPath} fails quick_check`, { file: 'engine.db' });
    entries = Number((copy.prepare('SELECT COUNT(*) AS n FROM ledger_entries').get() as { n: number }).n);
  } finally {
    copy.close();
  }
  const files = ['engine.db'];
  if (existsSync(join(home, 'blobs'))) {
    // Finished blobs only: a `.tmp` is a write in progress, named by no row of the snapshot.
    cpSync(join(home, 'blobs'), join(out, 'blobs'), { recursive: true, filter: (p) => !p.endsWith('.tmp') });
    files.push('blobs/');
  }
  for (const f of KEY_FILES)
    if (existsSync(join(home, f))) {
      copyFileSync(join(home, f), join(out, f));
      files.push(f);
    }
  // Delivered results (network mode); embedded mode's wallet, where one process plays every party on this directory.
  for (const d of ['results', 'wallet'])
    if (existsSync(join(home, d))) {
      cpSync(join(home, d), join(out, d), { recursive: true, filter: (p) => !p.endsWith('.tmp') });
      files.push(`${d}/`);
    }
  const blobs = existsSync(join(out, 'blobs'))
    ? readdirSync(join(out, 'blobs'), { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).length
    : 0;
  const manifest: BackupManifest = {
    type: 'safehouse.backup.v1',
    at: new Date().toISOString(),
    from: home,
    ledgerEntries: entries,
    blobs,
    files,
  };
  writeFileSync(join(out, 'BACKUP.json'), JSON.stringify(manifest, null, 2) + '\n');
  return manifest;
}

/**
 * Copy a backup into `home` (which must hold no engine). The caller opens and checks it (Engine.startupCheck).
 * @throws SH_ERR_INVALID_ARGUMENT (not a backup), SH_ERR_ALREADY_EXISTS (home has an engine.db)
 */
export function restoreHome(from: string, home: string): void {
  if (!existsSync(join(from, 'BACKUP.json')) || !existsSync(join(from, 'engine.db')))
    fail('SH_ERR_INVALID_ARGUMENT', `${from} is not a Safehouse backup (no BACKUP.json and engine.db)`, {
      option: 'from',
    });
  if (existsSync(join(home, 'engine.db')))
    fail('SH_ERR_ALREADY_EXISTS', `${home} already holds an engine; restore into a new directory`, {
      option: 'home',
    });
  mkdirSync(home, { recursive: true });
  try {
    for (const f of readdirSync(from))
      if (f !== 'BACKUP.json') cpSync(join(from, f), join(home, f), { recursive: true });
  } catch (err) {
    rmSync(join(home, 'engine.db'), { force: true });
    throw err;
  }
}
