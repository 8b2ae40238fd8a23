/**
 * Embedded store (docs/design.md §9): node:sqlite for metadata and the ledger, content-addressed blobs on disk.
 *
 * Layout of a data directory (`--home`, default ./.safehouse):
 *   engine.db          metadata + ledger (the engine's view: public keys, ciphertext addresses, consents, models, jobs)
 *   blobs/ab/<sha256>  ciphertexts and other binary payloads, named by the SHA-256 of their bytes
 *   wallet/            embedded mode only: the parties' own key material (see api/wallet.ts), never read by the engine
 *
 * Blobs are written to a temp file and renamed, so a crash never leaves a half blob under a valid address, and every
 * read re-hashes the bytes before anyone deserializes them.
 */
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { mkdirSync, existsSync, readFileSync, writeFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { SafehouseError, fail, storageFull } from '../../core/errors.ts';
import { sha256Hex } from '../../core/hash.ts';

/**
 * Every write that can change a consent judgement (a consent or revocation row, an enterprise's key) counts in
 * `meta.consent_version`, whichever connection makes it: the engine's in-memory consent index (engine/consent-index.ts)
 * is rebuilt when the count is not the one it was built at.
 */
const BUMP = "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'consent_version';";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS parties (
  id TEXT PRIMARY KEY, role TEXT NOT NULL, ed25519_pub TEXT NOT NULL, x25519_pub TEXT,
  bfv_pub TEXT, params_id TEXT, oprf_pub TEXT, created_at TEXT NOT NULL, bank_group TEXT, cert_json TEXT);
CREATE TABLE IF NOT EXISTS datasets (
  id TEXT PRIMARY KEY, provider TEXT NOT NULL, category TEXT NOT NULL, version INTEGER NOT NULL,
  schema_json TEXT NOT NULL, manifest_json TEXT NOT NULL, signature TEXT NOT NULL, params_id TEXT NOT NULL,
  subjects INTEGER NOT NULL, blocks INTEGER NOT NULL, stats_json TEXT NOT NULL, created_at TEXT NOT NULL,
  current INTEGER NOT NULL DEFAULT 1);
CREATE INDEX IF NOT EXISTS datasets_provider ON datasets(provider, category, current);
CREATE TABLE IF NOT EXISTS dataset_subjects (
  dataset_id TEXT NOT NULL, uscc TEXT NOT NULL, block INTEGER NOT NULL, slot INTEGER NOT NULL,
  missing TEXT NOT NULL DEFAULT '', PRIMARY KEY (dataset_id, uscc));
CREATE TABLE IF NOT EXISTS columns (
  dataset_id TEXT NOT NULL, column_name TEXT NOT NULL, block INTEGER NOT NULL, blob TEXT NOT NULL,
  PRIMARY KEY (dataset_id, column_name, block));
CREATE INDEX IF NOT EXISTS parties_role ON parties(role);
CREATE TABLE IF NOT EXISTS tokens (
  dataset_id TEXT NOT NULL, field TEXT NOT NULL, token BLOB NOT NULL, PRIMARY KEY (dataset_id, field, token)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS consents (
  id TEXT PRIMARY KEY, subject TEXT NOT NULL, grantee TEXT NOT NULL, signed_json TEXT NOT NULL, created_at TEXT NOT NULL,
  checked TEXT);
CREATE INDEX IF NOT EXISTS consents_subject ON consents(subject, grantee);
CREATE TABLE IF NOT EXISTS revocations (
  consent_id TEXT NOT NULL, subject TEXT NOT NULL, signed_json TEXT NOT NULL, created_at TEXT NOT NULL, checked TEXT);
CREATE INDEX IF NOT EXISTS revocations_subject ON revocations(subject);
CREATE TABLE IF NOT EXISTS models (
  id TEXT PRIMARY KEY, bank TEXT NOT NULL, kind TEXT NOT NULL, spec_json TEXT NOT NULL, hash TEXT NOT NULL,
  scale INTEGER NOT NULL, bound TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS approvals (
  model_id TEXT NOT NULL, provider TEXT NOT NULL, model_hash TEXT NOT NULL, signed_json TEXT NOT NULL,
  created_at TEXT NOT NULL, PRIMARY KEY (model_id, provider));
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY, kind TEXT NOT NULL, bank TEXT NOT NULL, request_json TEXT NOT NULL, status TEXT NOT NULL,
  summary_json TEXT, created_at TEXT NOT NULL, finished_at TEXT);
INSERT OR IGNORE INTO meta (key, value) VALUES ('consent_version', '0');
CREATE TRIGGER IF NOT EXISTS consents_written_i AFTER INSERT ON consents BEGIN ${BUMP} END;
CREATE TRIGGER IF NOT EXISTS consents_written_u AFTER UPDATE ON consents BEGIN ${BUMP} END;
CREATE TRIGGER IF NOT EXISTS consents_written_d AFTER DELETE ON consents BEGIN ${BUMP} END;
CREATE TRIGGER IF NOT EXISTS revocations_written_i AFTER INSERT ON revocations BEGIN ${BUMP} END;
CREATE TRIGGER IF NOT EXISTS revocations_written_u AFTER UPDATE ON revocations BEGIN ${BUMP} END;
CREATE TRIGGER IF NOT EXISTS revocations_written_d AFTER DELETE ON revocations BEGIN ${BUMP} END;
CREATE TRIGGER IF NOT EXISTS enterprise_key_i AFTER INSERT ON parties
  WHEN NEW.role = 'enterprise' AND EXISTS (SELECT 1 FROM consents WHERE subject = NEW.id) BEGIN ${BUMP} END;
CREATE TRIGGER IF NOT EXISTS enterprise_key_u AFTER UPDATE OF ed25519_pub, role ON parties
  WHEN OLD.role = 'enterprise' OR NEW.role = 'enterprise' BEGIN ${BUMP} END;
CREATE TRIGGER IF NOT EXISTS enterprise_key_d AFTER DELETE ON parties WHEN OLD.role = 'enterprise' BEGIN ${BUMP} END;
`;

/** Columns added after a table was first created: added to older data directories when they are opened. */
const ADDED_COLUMNS: ReadonlyArray<[table: string, column: string, decl: string]> = [
  ['parties', 'bank_group', 'TEXT'],
  ['parties', 'cert_json', 'TEXT'],
  ['consents', 'checked', 'TEXT'],
  ['revocations', 'checked', 'TEXT'],
];

function migrate(db: DatabaseSync): void {
  for (const [table, column, decl] of ADDED_COLUMNS) {
    const have = (db.prepare(`PRAGMA table_info(${table})`).all() as Array<{ name: string }>).some(
      (c) => c.name === column,
    );
    if (!have) db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${decl}`);
  }
}

export class Store {
  readonly home: string;
  readonly db: DatabaseSync;
  private readonly blobDir: string;

  private constructor(home: string, db: DatabaseSync) {
    this.home = home;
    this.db = db;
    this.blobDir = join(home, 'blobs');
  }

  /**
   * Open (or with `create`, initialize) a data directory.
   * @throws SH_ERR_HOME_NOT_INITIALIZED when the directory has no engine.db and `create` is false.
   */
  static open(home: string, opts: { create?: boolean } = {}): Store {
    const dbPath = join(home, 'engine.db');
    const exists = existsSync(dbPath);
    if (!exists && !opts.create) {
      fail(
        'SH_ERR_HOME_NOT_INITIALIZED',
        `no Safehouse data directory at ${home} (run \`safehouse init --home ${home}\`)`,
      );
    }
    // SQLite takes an empty file for a new database: an engine.db truncated to nothing would start a new ledger.
    if (exists && statSync(dbPath).size === 0 && !opts.create)
      fail('SH_ERR_STORE_DAMAGED', `${dbPath} is empty (0 bytes): restore it from a backup`, { file: 'engine.db' });
    mkdirSync(join(home, 'blobs'), { recursive: true });
    let db: DatabaseSync | undefined;
    try {
      db = new DatabaseSync(dbPath);
      // A 64 MiB page cache (default 2 MiB): a 100 000-subject job inserts its subject index in random key order.
      db.exec(
        'PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -65536;',
      );
      if (exists && !opts.create && !db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'meta'").get())
        fail('SH_ERR_STORE_DAMAGED', `${dbPath} is an SQLite database but not an engine's (no meta table)`, {
          file: 'engine.db',
        });
      db.exec(SCHEMA);
      migrate(db);
    } catch (err) {
      if (db?.isOpen) db.close();
      throw damaged(err, dbPath);
    }
    return new Store(home, db);
  }

  /**
   * SQLite's `PRAGMA quick_check` (page structure, record formats, index order — not index contents).
   * @throws SH_ERR_STORE_DAMAGED naming the first problem found
   */
  quickCheck(): void {
    let rows: Array<Record<string, unknown>>;
    try {
      rows = this.db.prepare('PRAGMA quick_check(5)').all() as Array<Record<string, unknown>>;
    } catch (err) {
      throw damaged(err, this.dbPath);
    }
    const found = rows.map((r) => String(Object.values(r)[0]));
    if (found.length !== 1 || found[0] !== 'ok')
      fail('SH_ERR_STORE_DAMAGED', `${this.dbPath} fails SQLite's quick_check: ${found.join('; ').slice(0, 300)}`, {
        file: 'engine.db',
      });
  }

  close(): void {
    if (this.db.isOpen) this.db.close();
  }

  private readonly statements = new Map<string, StatementSync>();

  /** Path of the SQLite database (worker threads open it read-only for large batched reads). */
  get dbPath(): string {
    return join(this.home, 'engine.db');
  }

  /**
   * A prepared statement, compiled once per Store (preparing costs more than a point query). Only for `get`/`all`/`run`:
   * a cached statement must not be iterated while another caller could reuse it.
   */
  stmt(sql: string): StatementSync {
    let st = this.statements.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      this.statements.set(sql, st);
    }
    return st;
  }

  getMeta(key: string): string | undefined {
    const row = this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
    return row?.value;
  }

  setMeta(key: string, value: string): void {
    this.db
      .prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value')
      .run(key, value);
  }

  /** Run `fn` in one SQLite transaction: all of its writes land, or none do. */
  transaction<T>(fn: () => T): T {
    this.db.exec('BEGIN IMMEDIATE');
    try {
      const out = fn();
      this.db.exec('COMMIT');
      return out;
    } catch (err) {
      this.db.exec('ROLLBACK');
      throw err;
    }
  }

  /**
   * Store bytes under their SHA-256 (hex). Idempotent. Written aside and renamed: a blob is whole or absent.
   * @throws SH_ERR_STORAGE_FULL when the disk is full (the partial file is removed)
   */
  putBlob(bytes: Uint8Array): string {
    const hash = sha256Hex(bytes);
    const path = this.blobPath(hash);
    if (!existsSync(path)) {
      const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
      try {
        mkdirSync(join(this.blobDir, hash.slice(0, 2)), { recursive: true });
        writeFileSync(tmp, bytes);
        renameSync(tmp, path);
      } catch (err) {
        rmSync(tmp, { force: true });
        const full = storageFull(err);
        if (full) fail('SH_ERR_STORAGE_FULL', `no room for a ${bytes.length}-byte blob in ${this.blobDir}`, {}, err);
        throw err;
      }
    }
    return hash;
  }

  /** Read a blob and check it hashes to its address. @throws SH_ERR_BLOB_MISSING, SH_ERR_BLOB_CORRUPT */
  getBlob(hash: string): Uint8Array {
    return readBlobVerified(this.blobPath(hash), hash);
  }

  blobPath(hash: string): string {
    if (!/^[0-9a-f]{64}$/.test(hash))
      fail('SH_ERR_INVALID_ARGUMENT', `"blob" expected a SHA-256 hex address, got ${JSON.stringify(hash)}`);
    return join(this.blobDir, hash.slice(0, 2), hash);
  }

  /** Remove a blob (used only to roll back an upload that failed before its metadata committed). */
  hasBlob(hash: string): boolean {
    return existsSync(this.blobPath(hash));
  }

  dropBlob(hash: string): void {
    rmSync(this.blobPath(hash), { force: true });
  }
}

/** An SQLite error that says the file is not a (sound) database, as SH_ERR_STORE_DAMAGED; others as they are. */
function damaged(err: unknown, path: string): unknown {
  const e = err as { errcode?: unknown; message?: unknown; code?: unknown };
  if (e?.code === 'SH_ERR_STORE_DAMAGED' || e?.code === 'SH_ERR_HOME_NOT_INITIALIZED') return err;
  // SQLITE_CORRUPT (11), SQLITE_NOTADB (26), and their extended codes.
  const code = typeof e?.errcode === 'number' ? e.errcode & 0xff : -1;
  if (code === 11 || code === 26 || /malformed|not a database|corrupt/i.test(String(e?.message ?? '')))
    return new SafehouseError(
      'SH_ERR_STORE_DAMAGED',
      `${path} is damaged (${String(e?.message ?? err)}): restore it from a backup`,
      { file: 'engine.db' },
      { cause: err },
    );
  return err;
}

/** Read a content-addressed file and verify its hash (usable from workers, which have no Store). */
export function readBlobVerified(path: string, hash: string): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    return fail('SH_ERR_BLOB_MISSING', `blob ${hash} is missing from the store`, { blob: hash }, err);
  }
  bytes = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength); // a plain view: embind rejects Buffer
  if (sha256Hex(bytes) !== hash)
    fail('SH_ERR_BLOB_CORRUPT', `blob ${hash} does not hash to its address`, { blob: hash });
  return bytes;
}
