/**
 * The tamper-evident ledger (DESIGN §8): an append-only RFC 6962 log of events in SQLite, with signed C2SP
 * checkpoints, inclusion and consistency proofs, a full self-check and the per-USCC access report.
 *
 * Leaves are the UTF-8 bytes of RFC 8785 canonical JSON `{ kind, at, ...event }`; `body` stores exactly that text,
 * so anyone can recompute a leaf hash from the row. The caller owns the database; the Ledger only creates its tables.
 *
 * Trust model. Leaf hashes are cached in memory (loaded lazily) to serve roots and proofs; checkpoint() and verify()
 * re-read the database, so a row rewritten behind the cache is still caught. The ledger_subjects index is a lookup
 * aid, not itself committed to by the tree: an event that must prove whom it touched should name them in its body.
 * The secret key is held (as a copy) for the Ledger's lifetime; JavaScript cannot guarantee it is wiped (STYLE §10).
 */
import type { DatabaseSync, SQLOutputValue, StatementSync } from 'node:sqlite';
import { ed25519 } from '@noble/curves/ed25519.js';
import { describe, fail, isCoded, type ErrorCode } from '../errors.ts';
import { canonicalize } from '../jcs.ts';
import { keyHash, signCheckpoint, verifyCheckpoint } from './checkpoint.ts';
import {
  consistencyProof,
  equalBytes,
  HASH_SIZE,
  inclusionProof,
  leafHash,
  rootsAtSizes,
  verifyConsistency,
} from './merkle.ts';

/** Options for `new Ledger(db, opts)`. */
export interface LedgerOptions {
  /** Checkpoint origin line (C2SP tlog-checkpoint), e.g. `safehouse.example/ledger`. */
  readonly origin: string;
  /** signed-note key name of the ledger key. */
  readonly keyName: string;
  /** 32-byte Ed25519 secret key; omit for a verify-only Ledger (checkpoint() then throws). */
  readonly secretKey?: Uint8Array;
  /** 32-byte Ed25519 public key; must match secretKey when both are given. */
  readonly publicKey: Uint8Array;
  /** Clock for the `at` timestamps (tests pin it). Default: `() => new Date()`. */
  readonly now?: () => Date;
}

/** One event to append. `subjects` are the USCCs it touched, for access reports. */
export interface LedgerEvent {
  readonly kind: string;
  readonly event: Record<string, unknown>;
  readonly subjects?: readonly string[];
}

/** A stored entry; `body` is the parsed leaf, including its `kind` and `at`. */
export interface LedgerEntry {
  readonly index: number;
  readonly kind: string;
  readonly at: string;
  readonly body: Record<string, unknown>;
  readonly leafHash: Uint8Array;
}

/** A stored checkpoint whose note has been verified. */
export interface StoredCheckpoint {
  readonly size: number;
  readonly rootHash: Uint8Array;
  readonly note: string;
}

/** Result of Ledger.verify(): the first problem found, located by entry index and/or checkpoint size. */
export type LedgerReport =
  | { ok: true; size: number; checkpoints: number; root: string }
  | { ok: false; index?: number; checkpointSize?: number; code: ErrorCode; reason: string };

const utf8 = new TextEncoder();
const SCHEMA = `
  CREATE TABLE IF NOT EXISTS ledger_entries(
    idx INTEGER PRIMARY KEY, kind TEXT NOT NULL, body TEXT NOT NULL, leaf_hash BLOB NOT NULL, at TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS ledger_checkpoints(
    size INTEGER PRIMARY KEY, root BLOB NOT NULL, note TEXT NOT NULL, at TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS ledger_subjects(uscc TEXT NOT NULL, idx INTEGER NOT NULL);
  CREATE INDEX IF NOT EXISTS ledger_subjects_uscc ON ledger_subjects(uscc, idx);`;

/**
 * An append-only, checkpointed event log over a caller-owned `DatabaseSync` (RFC 6962 tree, C2SP checkpoints).
 * @throws SafehouseError SH_ERR_INVALID_ARGUMENT from the constructor for bad options (origin, key name, key
 *   lengths, a secret key that does not match the public key).
 * @example
 *   const ledger = new Ledger(db, { origin: 'safehouse.example/ledger', keyName: 'safehouse.example/ledger', secretKey, publicKey });
 *   ledger.append('consent.granted', { consentId: 'c1' }, ['91350100M000100Y43']); ledger.checkpoint();
 */
export class Ledger {
  readonly #db: DatabaseSync;
  readonly #origin: string;
  readonly #keyName: string;
  readonly #publicKey: Uint8Array;
  readonly #secretKey: Uint8Array | undefined;
  readonly #now: () => Date;
  readonly #sql: Record<
    | 'nextIndex' | 'insertEntry' | 'insertSubject' | 'hashesFrom' | 'bodiesFrom' | 'entry' | 'allEntries'
    | 'lastCheckpoint' | 'allCheckpoints' | 'insertCheckpoint' | 'subjectEntries',
    StatementSync
  >;
  #hashes: Uint8Array[] = [];

  constructor(db: DatabaseSync, opts: LedgerOptions) {
    if (opts === null || typeof opts !== 'object') fail('SH_ERR_INVALID_ARGUMENT', `"opts" expected object, got ${describe(opts)}`);
    const { origin, keyName, secretKey, publicKey, now = () => new Date() } = opts;
    if (typeof origin !== 'string' || !/^[^\x00-\x1f]+$/.test(origin) || !origin.isWellFormed()) {
      fail('SH_ERR_INVALID_ARGUMENT', `"origin" expected a non-empty single line, got ${describe(origin)}`);
    }
    keyHash(keyName, publicKey); // validates the key name and the public key length
    if (secretKey !== undefined) {
      if (!(secretKey instanceof Uint8Array) || secretKey.length !== 32) {
        fail('SH_ERR_INVALID_ARGUMENT', `"secretKey" expected 32 bytes, got ${describe(secretKey)}`);
      }
      if (!equalBytes(ed25519.getPublicKey(secretKey), publicKey)) {
        fail('SH_ERR_INVALID_ARGUMENT', '"secretKey" does not match "publicKey"');
      }
    }
    if (typeof now !== 'function') fail('SH_ERR_INVALID_ARGUMENT', `"now" expected function, got ${describe(now)}`);
    this.#db = db;
    this.#origin = origin;
    this.#keyName = keyName;
    this.#publicKey = publicKey.slice();
    this.#secretKey = secretKey?.slice();
    this.#now = now;
    db.exec(SCHEMA);
    const q = (sql: string): StatementSync => db.prepare(sql);
    this.#sql = {
      nextIndex: q('SELECT COALESCE(MAX(idx) + 1, 0) AS n FROM ledger_entries'),
      insertEntry: q('INSERT INTO ledger_entries(idx, kind, body, leaf_hash, at) VALUES (?, ?, ?, ?, ?)'),
      insertSubject: q('INSERT INTO ledger_subjects(uscc, idx) VALUES (?, ?)'),
      hashesFrom: q('SELECT idx, leaf_hash FROM ledger_entries WHERE idx >= ? ORDER BY idx'),
      bodiesFrom: q('SELECT idx, body, leaf_hash FROM ledger_entries WHERE idx >= ? ORDER BY idx'),
      entry: q('SELECT idx, kind, body, leaf_hash, at FROM ledger_entries WHERE idx = ?'),
      allEntries: q('SELECT idx, body, leaf_hash FROM ledger_entries ORDER BY idx'),
      lastCheckpoint: q('SELECT size, root, note FROM ledger_checkpoints ORDER BY size DESC LIMIT 1'),
      allCheckpoints: q('SELECT size, root, note FROM ledger_checkpoints ORDER BY size'),
      insertCheckpoint: q('INSERT INTO ledger_checkpoints(size, root, note, at) VALUES (?, ?, ?, ?)'),
      subjectEntries: q(
        `SELECT DISTINCT e.idx, e.kind, e.body, e.at FROM ledger_subjects s JOIN ledger_entries e ON e.idx = s.idx
         WHERE s.uscc = ? ORDER BY e.idx`,
      ),
    };
  }

  /**
   * Appends one event as a leaf (RFC 6962 §2.1 leaf of RFC 8785 canonical JSON `{ kind, at, ...event }`).
   * @throws SafehouseError SH_ERR_INVALID_ARGUMENT for an empty kind, a non-object event, an event that sets the
   *   reserved `kind` or `at` members, non-JSON values, or subjects that are not non-empty strings.
   * @example ledger.append('job.requested', { jobId: 'j1' }, ['91350100M000100Y43']) // { index: 0, leafHash }
   */
  append(kind: string, event: Record<string, unknown>, subjects?: readonly string[]): { index: number; leafHash: Uint8Array } {
    return this.appendMany([{ kind, event, ...(subjects === undefined ? {} : { subjects }) }])[0]!;
  }

  /**
   * Appends many events atomically in one SQLite transaction (a savepoint, so it nests in a caller's
   * transaction): all rows or none. Everything is validated and hashed before the first write.
   * @throws SafehouseError SH_ERR_INVALID_ARGUMENT as append(), naming the item (`events[3].kind`).
   * @example ledger.appendMany(grants.map((g) => ({ kind: 'consent.granted', event: g, subjects: [g.uscc] })))
   */
  appendMany(events: readonly LedgerEvent[]): Array<{ index: number; leafHash: Uint8Array }> {
    if (!Array.isArray(events)) fail('SH_ERR_INVALID_ARGUMENT', `"events" expected array, got ${describe(events)}`);
    const rows = events.map((e, i) => this.#prepare(e, `events[${i}]`));
    const db = this.#db;
    db.exec('SAVEPOINT ledger_append');
    let first = 0;
    try {
      first = Number(this.#sql.nextIndex.get()!.n); // read inside the transaction, so indices cannot collide
      rows.forEach((r, i) => {
        this.#sql.insertEntry.run(first + i, r.kind, r.body, r.leafHash, r.at);
        for (const s of r.subjects) this.#sql.insertSubject.run(s, first + i);
      });
      db.exec('RELEASE ledger_append');
    } catch (err) {
      db.exec('ROLLBACK TO ledger_append');
      db.exec('RELEASE ledger_append');
      throw err;
    }
    // A caller's enclosing transaction may roll back after this returns; a cache that does not end exactly at `first`
    // may hold such rolled-back leaves, so it is dropped and reloaded lazily.
    if (this.#hashes.length === first) this.#hashes.push(...rows.map((r) => r.leafHash));
    else this.#hashes = [];
    return rows.map((r, i) => ({ index: first + i, leafHash: r.leafHash }));
  }

  /**
   * Number of entries (one more than the highest index).
   * @example ledger.size() === 0 // for a new ledger
   */
  size(): number {
    return Number(this.#sql.nextIndex.get()!.n);
  }

  /**
   * MTH of the first `size` entries (RFC 6962 §2.1); default: all of them.
   * @throws SafehouseError SH_ERR_INVALID_ARGUMENT if size is out of range; SH_ERR_LEDGER_TAMPERED if a row is
   *   missing or its leaf hash is not 32 bytes.
   * @example ledger.root(0) // EMPTY_ROOT
   */
  root(size?: number): Uint8Array {
    const hashes = this.#leafHashes();
    if (size !== undefined) {
      checkIndex(size, 'size');
      if (size > hashes.length) fail('SH_ERR_INVALID_ARGUMENT', `"size" expected at most ${hashes.length}, got ${size}`, { size });
    }
    return rootsAtSizes(hashes, [size ?? hashes.length])[0]!;
  }

  /**
   * One entry, with its parsed body.
   * @throws SafehouseError SH_ERR_NOT_FOUND if there is no entry at `index`; SH_ERR_LEDGER_TAMPERED if its body is
   *   not JSON; SH_ERR_INVALID_ARGUMENT if `index` is not a non-negative integer.
   * @example ledger.entry(0).kind === 'consent.granted'
   */
  entry(index: number): LedgerEntry {
    checkIndex(index, 'index');
    const row = this.#sql.entry.get(index);
    if (!row) fail('SH_ERR_NOT_FOUND', `ledger entry ${index} does not exist`, { index });
    return { index, kind: str(row.kind), at: str(row.at), body: parseBody(index, row.body), leafHash: bytes(row.leaf_hash) };
  }

  /**
   * Signs and stores a checkpoint of the current tree (C2SP tlog-checkpoint) and returns its note. Never signs a
   * tree inconsistent with the latest stored checkpoint: it re-reads every leaf hash from the database, checks that
   * entries new since that checkpoint match their bodies, and verifies an RFC 9162 §2.1.4 consistency proof from
   * the old (size, root) to the new tree. If nothing was appended since, returns the latest note.
   * @throws SafehouseError SH_ERR_LEDGER_INCONSISTENT if the tree no longer extends the latest checkpoint;
   *   SH_ERR_LEDGER_TAMPERED if a new entry's body does not match its leaf hash, a row is missing, or the latest
   *   stored checkpoint fails verification; SH_ERR_INVALID_ARGUMENT for a verify-only Ledger (no secret key).
   * @example const note = ledger.checkpoint(); verifyCheckpoint(note, keyName, publicKey).size === ledger.size()
   */
  checkpoint(): string {
    if (!this.#secretKey) fail('SH_ERR_INVALID_ARGUMENT', '"secretKey" expected: this Ledger was opened verify-only');
    this.#hashes = []; // re-read: a row rewritten after the cache was filled must not hide behind it
    const hashes = this.#leafHashes();
    const n = hashes.length;
    const last = this.latestCheckpoint();
    const m = last?.size ?? 0;
    if (n < m) fail('SH_ERR_LEDGER_INCONSISTENT', `the ledger has ${n} entries but checkpoint ${m} was signed`, { size: n, checkpointSize: m });
    for (const row of this.#sql.bodiesFrom.iterate(m)) {
      if (!equalBytes(leafHash(utf8.encode(str(row.body))), bytes(row.leaf_hash))) {
        fail('SH_ERR_LEDGER_TAMPERED', `ledger entry ${row.idx} does not match its leaf hash`, { index: Number(row.idx) });
      }
    }
    const root = rootsAtSizes(hashes, [n])[0]!;
    if (last) {
      const proof = consistencyProof(hashes, m, n);
      if (!verifyConsistency(m, n, proof, last.rootHash, root)) {
        fail('SH_ERR_LEDGER_INCONSISTENT', `the tree of ${n} entries is not consistent with checkpoint ${m}`, { size: n, checkpointSize: m });
      }
      if (n === m) return last.note;
    }
    const note = signCheckpoint({ origin: this.#origin, size: n, rootHash: root }, this.#keyName, this.#secretKey);
    this.#sql.insertCheckpoint.run(n, root, note, this.#now().toISOString());
    return note;
  }

  /**
   * The latest stored checkpoint, after verifying its note against this ledger's key, origin and stored root.
   * @throws SafehouseError SH_ERR_LEDGER_TAMPERED if the stored note does not verify or disagrees with its row.
   * @example ledger.latestCheckpoint()?.size
   */
  latestCheckpoint(): StoredCheckpoint | undefined {
    const row = this.#sql.lastCheckpoint.get();
    if (!row) return undefined;
    const problem = this.#checkCheckpointRow(row);
    if (problem) fail('SH_ERR_LEDGER_TAMPERED', problem.reason, { checkpointSize: Number(row.size) });
    return { size: Number(row.size), rootHash: bytes(row.root), note: str(row.note) };
  }

  /**
   * Audit path for entry `index` in the tree of the first `size` entries (RFC 9162 §2.1.3.1); default: all.
   * @throws SafehouseError SH_ERR_INVALID_ARGUMENT unless 0 ≤ index < size ≤ this.size().
   * @example verifyInclusion(ledger.entry(3).leafHash, 3, n, ledger.inclusionProof(3, n), ledger.root(n))
   */
  inclusionProof(index: number, size?: number): Uint8Array[] {
    const hashes = this.#leafHashes();
    return inclusionProof(hashes, index, size ?? hashes.length);
  }

  /**
   * Consistency proof between the trees of the first `m` and `n` entries (RFC 9162 §2.1.4.1); default n: all.
   * @throws SafehouseError SH_ERR_INVALID_ARGUMENT unless 0 ≤ m ≤ n ≤ this.size().
   * @example verifyConsistency(m, n, ledger.consistencyProof(m, n), ledger.root(m), ledger.root(n))
   */
  consistencyProof(m: number, n?: number): Uint8Array[] {
    const hashes = this.#leafHashes();
    return consistencyProof(hashes, m, n ?? hashes.length);
  }

  /**
   * Full self-check from the database alone: recomputes every leaf hash from its body (RFC 6962 §2.1) and compares
   * the stored one, finds missing rows, verifies every checkpoint's signature (signed-note), origin and size, and
   * recomputes the root at every checkpoint size. Because all roots are recomputed from one leaf sequence, matching
   * roots also prove consecutive checkpoints consistent (RFC 9162 §2.1.4: the older tree is a prefix of the newer).
   * Reports the first problem; a rewrite that kept body and leaf hash in step is located to the entry range between
   * the last good checkpoint and the first bad one.
   * @throws nothing for tampering (returns ok: false); SQLite errors propagate.
   * @example const r = ledger.verify(); if (!r.ok) console.error(r.code, r.index, r.checkpointSize, r.reason);
   */
  verify(): LedgerReport {
    const hashes: Uint8Array[] = [];
    for (const row of this.#sql.allEntries.iterate()) {
      const index = hashes.length;
      if (Number(row.idx) !== index) return tampered({ index }, `entry ${index} is missing (the next stored entry is ${row.idx})`);
      if (typeof row.body !== 'string' || !(row.leaf_hash instanceof Uint8Array)) return tampered({ index }, `entry ${index} has a malformed row`);
      const h = leafHash(utf8.encode(row.body));
      if (!equalBytes(h, row.leaf_hash)) return tampered({ index }, `entry ${index}: the stored leaf hash does not match the body`);
      hashes.push(h);
    }
    const rows = this.#sql.allCheckpoints.all();
    const roots = rootsAtSizes(hashes, rows.map((r) => Math.min(Number(r.size), hashes.length)));
    let good = 0;
    for (const [k, row] of rows.entries()) {
      const checkpointSize = Number(row.size);
      const problem = this.#checkCheckpointRow(row);
      if (problem) return { ok: false, checkpointSize, ...problem };
      if (checkpointSize > hashes.length) {
        return tampered({ index: hashes.length, checkpointSize }, `checkpoint ${checkpointSize} covers entries ${hashes.length}.. which are missing`);
      }
      if (!equalBytes(roots[k]!, bytes(row.root))) {
        return tampered({ checkpointSize }, `checkpoint ${checkpointSize}: entries ${good}..${checkpointSize - 1} were rewritten (the root differs)`);
      }
      good = checkpointSize;
    }
    const root = rootsAtSizes(hashes, [hashes.length])[0]!;
    return { ok: true, size: hashes.length, checkpoints: rows.length, root: Buffer.from(root).toString('hex') };
  }

  /**
   * Access report (DESIGN §8): every entry appended with `uscc` among its subjects, in ledger order.
   * @throws SafehouseError SH_ERR_INVALID_ARGUMENT if `uscc` is not a non-empty string; SH_ERR_LEDGER_TAMPERED if
   *   a body is not JSON.
   * @example ledger.subjectEntries('91350100M000100Y43').map((e) => e.kind)
   */
  subjectEntries(uscc: string): Array<{ index: number; kind: string; body: Record<string, unknown>; at: string }> {
    if (typeof uscc !== 'string' || uscc === '') fail('SH_ERR_INVALID_ARGUMENT', `"uscc" expected a non-empty string, got ${describe(uscc)}`);
    return this.#sql.subjectEntries.all(uscc).map((r) => {
      const index = Number(r.idx);
      return { index, kind: str(r.kind), body: parseBody(index, r.body), at: str(r.at) };
    });
  }

  // --- internals

  /** The cached leaf hashes, topped up from the database; emptied and reloaded if rows disappeared. */
  #leafHashes(): readonly Uint8Array[] {
    const n = this.size();
    if (this.#hashes.length > n) this.#hashes = [];
    if (this.#hashes.length < n) {
      for (const row of this.#sql.hashesFrom.iterate(this.#hashes.length)) {
        const index = this.#hashes.length;
        if (Number(row.idx) !== index) fail('SH_ERR_LEDGER_TAMPERED', `ledger entry ${index} is missing`, { index });
        const h = row.leaf_hash;
        if (!(h instanceof Uint8Array) || h.length !== HASH_SIZE) fail('SH_ERR_LEDGER_TAMPERED', `ledger entry ${index} has a malformed leaf hash`, { index });
        this.#hashes.push(h);
      }
    }
    return this.#hashes;
  }

  /** Validates one event for appending and computes its leaf. */
  #prepare(e: LedgerEvent, name: string): { kind: string; at: string; body: string; leafHash: Uint8Array; subjects: string[] } {
    if (e === null || typeof e !== 'object') fail('SH_ERR_INVALID_ARGUMENT', `"${name}" expected object, got ${describe(e)}`);
    const { kind, event, subjects = [] } = e;
    if (typeof kind !== 'string' || kind === '') fail('SH_ERR_INVALID_ARGUMENT', `"${name}.kind" expected a non-empty string, got ${describe(kind)}`);
    if (event === null || typeof event !== 'object' || Array.isArray(event)) {
      fail('SH_ERR_INVALID_ARGUMENT', `"${name}.event" expected object, got ${describe(event)}`);
    }
    for (const reserved of ['kind', 'at']) {
      if (Object.hasOwn(event, reserved)) fail('SH_ERR_INVALID_ARGUMENT', `"${name}.event.${reserved}" is reserved: the ledger sets it`);
    }
    if (!Array.isArray(subjects) || subjects.some((s) => typeof s !== 'string' || s === '')) {
      fail('SH_ERR_INVALID_ARGUMENT', `"${name}.subjects" expected an array of non-empty strings, got ${describe(subjects)}`);
    }
    const at = this.#now().toISOString();
    const body = canonicalize({ ...event, kind, at });
    return { kind, at, body, leafHash: leafHash(utf8.encode(body)), subjects: [...new Set(subjects)] };
  }

  /** Checks a checkpoint row's note (signature, origin, size) and stored root; returns the problem, if any. */
  #checkCheckpointRow(row: Record<string, SQLOutputValue>): { code: ErrorCode; reason: string } | undefined {
    const size = Number(row.size);
    try {
      const cp = verifyCheckpoint(str(row.note), this.#keyName, this.#publicKey);
      if (cp.origin !== this.#origin || cp.size !== size) {
        return { code: 'SH_ERR_LEDGER_TAMPERED', reason: `checkpoint ${size}: the note is for ${cp.origin} at size ${cp.size}` };
      }
      if (!(row.root instanceof Uint8Array) || !equalBytes(cp.rootHash, row.root)) {
        return { code: 'SH_ERR_LEDGER_TAMPERED', reason: `checkpoint ${size}: the stored root differs from the signed note` };
      }
      return undefined;
    } catch (err) {
      if (isCoded(err)) return { code: err.code, reason: `checkpoint ${size}: ${err.message}` };
      throw err;
    }
  }
}

// --- helpers

function tampered(where: { index?: number; checkpointSize?: number }, reason: string): LedgerReport {
  return { ok: false, ...where, code: 'SH_ERR_LEDGER_TAMPERED', reason };
}

function checkIndex(v: unknown, name: string): asserts v is number {
  if (!Number.isSafeInteger(v) || (v as number) < 0) fail('SH_ERR_INVALID_ARGUMENT', `"${name}" expected a non-negative integer, got ${describe(v)}`);
}

function parseBody(index: number, body: SQLOutputValue | undefined): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(str(body));
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // fall through: reported below with the entry's index
  }
  return fail('SH_ERR_LEDGER_TAMPERED', `ledger entry ${index} has a body that is not a JSON object`, { index });
}

function str(v: SQLOutputValue | undefined): string {
  return typeof v === 'string' ? v : String(v);
}

function bytes(v: SQLOutputValue | undefined): Uint8Array {
  return v instanceof Uint8Array ? v : new Uint8Array(0);
}
