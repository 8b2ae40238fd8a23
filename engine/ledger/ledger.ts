/**
 * The tamper-evident ledger (docs/design.md §8): an append-only RFC 6962 log of events in SQLite, with signed C2SP
 * checkpoints, inclusion and consistency proofs, a full self-check and the per-USCC access report.
 *
 * Leaves are the UTF-8 bytes of RFC 8785 canonical JSON `{ kind, at, ...event }`; `body` stores exactly that text,
 * so anyone can recompute a leaf hash from the row. The caller owns the database; the Ledger only creates its tables.
 *
 * Stored tree. Besides the leaf hashes (ledger_entries.leaf_hash, level 0), `ledger_nodes(level, idx, hash)` holds
 * every complete perfect subtree of level ≥ 1: node (L, i) = MTH(D[i·2^L : (i+1)·2^L]) (RFC 6962 §2.1), written in
 * the same savepoint as the leaves that complete it (appending one leaf completes at most log2(n) nodes). Every
 * MTH(D[a:b]) that RFC 9162 §2.1.3/§2.1.4 needs is either such a node or a right-edge range D[a:size], the fold of at
 * most log2(size) of them, so root(), inclusionProof() and consistencyProof() cost O(log n) node look-ups and
 * hashes, and checkpoint() costs O(new entries + log n). A database from before the node table (or one a node-less
 * writer appended to) is backfilled from the stored leaf hashes on first use. merkle.ts's pure functions stay the
 * reference: the property tests compare against them and verify() uses them.
 *
 * Trust model. Node hashes are cached in memory (loaded lazily, per node) to serve roots and proofs; every call first
 * compares the database's size and last leaf hash with the cache's, so a caller's rolled-back transaction (or another
 * writer) empties the cache instead of hiding behind it. checkpoint() reads from the database only: it recomputes the
 * root of the last checkpointed prefix from the stored nodes and requires the signed root, then re-hashes the new
 * entries from their bodies — so it never signs a tree inconsistent with the latest checkpoint. It does not re-read
 * the checkpointed prefix (that is O(n)): an old entry rewritten or deleted behind the node table, or a stored node
 * off the checkpoint's frontier, is found by verify() (and by anyone checking an inclusion proof against a signed
 * checkpoint), not by checkpoint(). The ledger_subjects index is a lookup aid, not itself committed to by the tree:
 * an event that must prove whom it touched should name them in its body. The secret key is held (as a copy) for the
 * Ledger's lifetime; JavaScript cannot guarantee it is wiped.
 * Longer than 400 lines: one class — appends, the stored tree's node cache and every proof share one invariant (the
 * cache describes a prefix of the database, re-checked at each call) kept in one place; the pure parts are merkle.ts,
 * checkpoint.ts and tree.ts.
 */
import type { DatabaseSync, SQLOutputValue, StatementSync } from 'node:sqlite';
import { describe, fail, isCoded, type ErrorCode } from '../../core/errors.ts';
import { canonicalize } from '../../core/jcs.ts';
import { keyHash, signCheckpoint, verifyCheckpoint } from './checkpoint.ts';
import { ed25519PublicKey } from '../../core/sign.ts';
import {
  consistencyPath,
  EMPTY_ROOT,
  equalBytes,
  HASH_SIZE,
  inclusionPath,
  leafHash,
  nodeHash,
  rootsAtSizes,
  verifyConsistency,
} from './merkle.ts';
import {
  NodeCache,
  bytes,
  checkIndex,
  checkSize,
  exactLog2,
  frontier,
  parseBody,
  span,
  str,
  tampered,
} from './tree.ts';

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
  /** Work counters the Ledger increments (tests and benchmarks read them); default: a private object. */
  readonly counters?: LedgerCounters;
}

/** Work done by a Ledger, counted as it happens (see LedgerOptions.counters). */
export interface LedgerCounters {
  /** SHA-256 leaf hashes (RFC 6962 §2.1 MTH({d})) computed. */
  leafHashes: number;
  /** SHA-256 interior-node hashes computed (merkle.ts verifiers called by the Ledger are not counted). */
  nodeHashes: number;
  /** Rows read from SQLite by the tree code: entries, nodes, checkpoints and the per-call size check. */
  rowsRead: number;
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
/** SQLite extended result code of a PRIMARY KEY violation (node:sqlite's `errcode`). */
const SQLITE_CONSTRAINT_PRIMARYKEY = 1555;
// ledger_nodes holds levels ≥ 1 only (level 0 is ledger_entries.leaf_hash); WITHOUT ROWID: the key is the row.
const SCHEMA = `
  CREATE TABLE IF NOT EXISTS ledger_entries(
    idx INTEGER PRIMARY KEY, kind TEXT NOT NULL, body TEXT NOT NULL, leaf_hash BLOB NOT NULL, at TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS ledger_checkpoints(
    size INTEGER PRIMARY KEY, root BLOB NOT NULL, note TEXT NOT NULL, at TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS ledger_subjects(uscc TEXT NOT NULL, idx INTEGER NOT NULL);
  CREATE INDEX IF NOT EXISTS ledger_subjects_uscc ON ledger_subjects(uscc, idx);
  CREATE TABLE IF NOT EXISTS ledger_nodes(
    level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL, PRIMARY KEY(level, idx)) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS ledger_jobs(job_id TEXT NOT NULL, idx INTEGER NOT NULL);
  CREATE INDEX IF NOT EXISTS ledger_jobs_job ON ledger_jobs(job_id, idx);`;

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
  readonly #count: LedgerCounters;
  readonly #sql: Record<
    | 'nextIndex'
    | 'tail'
    | 'leafAt'
    | 'nodeAt'
    | 'nodesIn'
    | 'allNodes'
    | 'insertNode'
    | 'insertNodeIfAbsent'
    | 'insertEntry'
    | 'insertSubject'
    | 'insertSubjects'
    | 'hashesFrom'
    | 'bodiesFrom'
    | 'entry'
    | 'allEntries'
    | 'lastCheckpoint'
    | 'allCheckpoints'
    | 'insertCheckpoint'
    | 'subjectEntries'
    | 'insertJob'
    | 'jobEntries'
    | 'textsFrom'
    | 'notes'
    | 'touches'
    | 'ofKind',
    StatementSync
  >;
  /** Node hashes known to equal the database's, valid for the first #cachedSize entries (ending in #cachedLast). */
  #cache = new NodeCache();
  #cachedSize = 0;
  #cachedLast: Uint8Array | undefined;
  /** Bumped whenever the cache is emptied; keys the right-edge memo. */
  #generation = 0;
  /** Suffix folds of the frontier of one tree size: MTH(D[starts[j]:size]) = folds[j]. */
  #edge: { generation: number; size: number; starts: number[]; folds: Uint8Array[] } | undefined;
  /** Set by #sync when ledger_nodes holds nodes past the last entry (entries were deleted from the end). */
  #nodesPastEnd = false;
  /**
   * The last checkpoint row this instance verified or signed. Its check is a deterministic function of (size, note,
   * root) and this Ledger's key and origin, so an identical row need not be verified again (an Ed25519 verification,
   * ~1.5 ms: most of a checkpoint() with few new entries).
   */
  #trusted: { size: number; note: string; root: Uint8Array } | undefined;

  constructor(db: DatabaseSync, opts: LedgerOptions) {
    if (opts === null || typeof opts !== 'object')
      fail('SH_ERR_INVALID_ARGUMENT', `"opts" expected object, got ${describe(opts)}`);
    const { origin, keyName, secretKey, publicKey, now = () => new Date(), counters } = opts;
    if (typeof origin !== 'string' || !/^[^\x00-\x1f]+$/.test(origin) || !origin.isWellFormed()) {
      fail('SH_ERR_INVALID_ARGUMENT', `"origin" expected a non-empty single line, got ${describe(origin)}`);
    }
    keyHash(keyName, publicKey); // validates the key name and the public key length
    if (secretKey !== undefined) {
      if (!(secretKey instanceof Uint8Array) || secretKey.length !== 32) {
        fail('SH_ERR_INVALID_ARGUMENT', `"secretKey" expected 32 bytes, got ${describe(secretKey)}`);
      }
      if (!equalBytes(ed25519PublicKey(secretKey), publicKey)) {
        fail('SH_ERR_INVALID_ARGUMENT', '"secretKey" does not match "publicKey"');
      }
    }
    if (typeof now !== 'function') fail('SH_ERR_INVALID_ARGUMENT', `"now" expected function, got ${describe(now)}`);
    if (counters !== undefined && (counters === null || typeof counters !== 'object')) {
      fail('SH_ERR_INVALID_ARGUMENT', `"counters" expected object, got ${describe(counters)}`);
    }
    this.#db = db;
    this.#origin = origin;
    this.#keyName = keyName;
    this.#publicKey = publicKey.slice();
    this.#secretKey = secretKey?.slice();
    this.#now = now;
    this.#count = counters ?? { leafHashes: 0, nodeHashes: 0, rowsRead: 0 };
    const hadJobIndex =
      db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ledger_jobs'").get() !== undefined;
    db.exec(SCHEMA);
    // A ledger from before the job index: index the jobs of its existing entries once.
    if (!hadJobIndex)
      db.exec(
        "INSERT INTO ledger_jobs(job_id, idx) SELECT json_extract(body, '$.jobId'), idx FROM ledger_entries WHERE json_type(body, '$.jobId') = 'text'",
      );
    const q = (sql: string): StatementSync => db.prepare(sql);
    this.#sql = {
      nextIndex: q('SELECT COALESCE(MAX(idx) + 1, 0) AS n FROM ledger_entries'),
      // One O(log n) read per call: the size, the last leaf hash (cache check) and the node table's level-1 extent.
      tail: q(
        `SELECT (SELECT MAX(idx) FROM ledger_entries) AS last,
                (SELECT leaf_hash FROM ledger_entries ORDER BY idx DESC LIMIT 1) AS leaf,
                (SELECT MAX(idx) FROM ledger_nodes WHERE level = 1) AS level1`,
      ),
      leafAt: q('SELECT leaf_hash FROM ledger_entries WHERE idx = ?'),
      nodeAt: q('SELECT hash FROM ledger_nodes WHERE level = ? AND idx = ?'),
      nodesIn: q('SELECT idx, hash FROM ledger_nodes WHERE level = ? AND idx BETWEEN ? AND ? ORDER BY idx'),
      allNodes: q('SELECT level, idx, hash FROM ledger_nodes ORDER BY level, idx'),
      insertNode: q('INSERT INTO ledger_nodes(level, idx, hash) VALUES (?, ?, ?)'),
      insertNodeIfAbsent: q('INSERT OR IGNORE INTO ledger_nodes(level, idx, hash) VALUES (?, ?, ?)'),
      insertEntry: q('INSERT INTO ledger_entries(idx, kind, body, leaf_hash, at) VALUES (?, ?, ?, ?, ?)'),
      insertSubject: q('INSERT INTO ledger_subjects(uscc, idx) VALUES (?, ?)'),
      insertSubjects: q('INSERT INTO ledger_subjects(uscc, idx) SELECT value, ? FROM json_each(?)'),
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
      insertJob: q('INSERT INTO ledger_jobs(job_id, idx) VALUES (?, ?)'),
      textsFrom: q('SELECT idx, body FROM ledger_entries WHERE idx >= ? ORDER BY idx LIMIT ?'),
      notes: q('SELECT size, note FROM ledger_checkpoints ORDER BY size'),
      touches: q('SELECT 1 AS hit FROM ledger_subjects WHERE idx = ? AND uscc = ? LIMIT 1'),
      ofKind: q('SELECT idx, kind, body, at FROM ledger_entries WHERE kind = ? AND idx >= ? ORDER BY idx'),
      jobEntries: q(
        'SELECT e.idx, e.kind, e.body, e.at FROM ledger_jobs j JOIN ledger_entries e ON e.idx = j.idx WHERE j.job_id = ? ORDER BY e.idx',
      ),
    };
  }

  /**
   * Appends one event as a leaf (RFC 6962 §2.1 leaf of RFC 8785 canonical JSON `{ kind, at, ...event }`).
   * @throws SafehouseError SH_ERR_INVALID_ARGUMENT for an empty kind, a non-object event, an event that sets the
   *   reserved `kind` or `at` members, non-JSON values, or subjects that are not non-empty strings.
   * @example ledger.append('job.requested', { jobId: 'j1' }, ['91350100M000100Y43']) // { index: 0, leafHash }
   */
  append(
    kind: string,
    event: Record<string, unknown>,
    subjects?: readonly string[],
  ): { index: number; leafHash: Uint8Array } {
    return this.appendMany([{ kind, event, ...(subjects === undefined ? {} : { subjects }) }])[0]!;
  }

  /**
   * Appends many events atomically in one SQLite transaction (a savepoint, so it nests in a caller's
   * transaction): all rows or none, together with the tree nodes they complete (at most log2(n) per leaf).
   * Everything is validated and leaf-hashed before the first write.
   * @throws SafehouseError SH_ERR_INVALID_ARGUMENT as append(), naming the item (`events[3].kind`);
   *   SH_ERR_LEDGER_TAMPERED if the node table holds nodes past the last entry (entries were deleted from the end),
   *   or a node the new leaves hang from is missing.
   * @example ledger.appendMany(grants.map((g) => ({ kind: 'consent.granted', event: g, subjects: [g.uscc] })))
   */
  appendMany(events: readonly LedgerEvent[]): Array<{ index: number; leafHash: Uint8Array }> {
    if (!Array.isArray(events)) fail('SH_ERR_INVALID_ARGUMENT', `"events" expected array, got ${describe(events)}`);
    const rows = events.map((e, i) => this.#prepare(e, `events[${i}]`));
    const db = this.#db;
    const made: Array<[level: number, idx: number, hash: Uint8Array]> = [];
    db.exec('SAVEPOINT ledger_append');
    let first = 0;
    try {
      first = this.#sync(); // read inside the transaction, so indices cannot collide
      if (this.#nodesPastEnd && rows.length > 0) {
        fail(
          'SH_ERR_LEDGER_TAMPERED',
          `the tree node table has nodes past entry ${first - 1}: entries were deleted from the end`,
          { index: first },
        );
      }
      const stack = frontier(first).map(([level, idx]) => this.#node(level, idx));
      rows.forEach((r, i) => {
        this.#sql.insertEntry.run(first + i, r.kind, r.body, r.leafHash, r.at);
        // A job names up to 200 000 subjects: one statement for the list instead of one per subject.
        if (r.subjects.length > 8) this.#sql.insertSubjects.run(first + i, JSON.stringify(r.subjects));
        else for (const s of r.subjects) this.#sql.insertSubject.run(s, first + i);
        if (r.jobId !== undefined) this.#sql.insertJob.run(r.jobId, first + i);
        this.#push(stack, r.leafHash, first + i, (level, idx, hash) => {
          try {
            this.#sql.insertNode.run(level, idx, hash);
          } catch (err) {
            if ((err as { errcode?: unknown }).errcode !== SQLITE_CONSTRAINT_PRIMARYKEY) throw err;
            fail(
              'SH_ERR_LEDGER_TAMPERED',
              `tree node (level ${level}, index ${idx}) already exists past the last entry`,
              { index: idx * 2 ** level },
              err,
            );
          }
          made.push([level, idx, hash]);
        });
      });
      db.exec('RELEASE ledger_append');
    } catch (err) {
      db.exec('ROLLBACK TO ledger_append');
      db.exec('RELEASE ledger_append');
      throw err;
    }
    // #sync() made the cache describe exactly the first `first` entries. A caller's enclosing transaction may still
    // roll these rows back after we return; the next call's #sync() then sees a different size or last leaf and
    // empties the cache, so rolled-back nodes are never served.
    if (rows.length > 0 && this.#cachedSize === first) {
      rows.forEach((r, i) => this.#cache.set(0, first + i, r.leafHash));
      for (const [level, idx, hash] of made) this.#cache.set(level, idx, hash);
      this.#cachedSize = first + rows.length;
      this.#cachedLast = rows.at(-1)!.leafHash;
    }
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
   * MTH of the first `size` entries (RFC 6962 §2.1); default: all of them. O(log n): the fold of the perfect
   * subtrees that make up [0, size).
   * @throws SafehouseError SH_ERR_INVALID_ARGUMENT if size is out of range; SH_ERR_LEDGER_TAMPERED if a stored node
   *   or leaf hash it needs is missing or not 32 bytes.
   * @example ledger.root(0) // EMPTY_ROOT
   */
  root(size?: number): Uint8Array {
    const n = this.#sync();
    if (size !== undefined) {
      checkIndex(size, 'size');
      if (size > n) fail('SH_ERR_INVALID_ARGUMENT', `"size" expected at most ${n}, got ${size}`, { size });
    }
    return this.#fold(frontier(size ?? n).map(([level, idx]) => this.#node(level, idx))).slice();
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
    return {
      index,
      kind: str(row.kind),
      at: str(row.at),
      body: parseBody(index, row.body),
      leafHash: bytes(row.leaf_hash),
    };
  }

  /**
   * The exact stored text of an entry's leaf (its RFC 8785 body), for clients that recompute the leaf hash themselves.
   * @throws SafehouseError SH_ERR_NOT_FOUND if there is no entry at `index`.
   */
  leafText(index: number): string {
    checkIndex(index, 'index');
    const row = this.#sql.entry.get(index);
    if (!row) fail('SH_ERR_NOT_FOUND', `ledger entry ${index} does not exist`, { index });
    return str(row.body);
  }

  /** Up to `limit` entries from `from` on, as their exact stored leaf texts (clients recompute every hash themselves). */
  leafTexts(from: number, limit: number): Array<{ index: number; body: string }> {
    checkIndex(from, 'from');
    checkIndex(limit, 'limit');
    return this.#sql.textsFrom.all(from, limit).map((r) => ({ index: Number(r.idx), body: str(r.body) }));
  }

  /** Every stored checkpoint note, by size (unverified: clients verify them against the ledger key). */
  checkpointNotes(): Array<{ size: number; note: string }> {
    return this.#sql.notes.all().map((r) => ({ size: Number(r.size), note: str(r.note) }));
  }

  /** Entries of one kind from index `from` on, in ledger order (e.g. every `job.requested`). */
  entriesOfKind(
    kind: string,
    from = 0,
  ): Array<{ index: number; kind: string; body: Record<string, unknown>; at: string }> {
    checkIndex(from, 'from');
    return this.#sql.ofKind.all(kind, from).map((r) => {
      const index = Number(r.idx);
      return { index, kind: str(r.kind), body: parseBody(index, r.body), at: str(r.at) };
    });
  }

  /** Whether entry `index` was appended with `uscc` among its subjects (is in its access report). */
  touches(index: number, uscc: string): boolean {
    return this.#sql.touches.get(index, uscc) !== undefined;
  }

  /**
   * Signs and stores a checkpoint of the current tree (C2SP tlog-checkpoint) and returns its note. Never signs a
   * tree inconsistent with the latest stored checkpoint (size m, signed root r): reading the database, not the cache,
   * it (1) recomputes MTH(D[0:m]) from the stored perfect subtrees that make up [0, m) and requires it to equal r;
   * (2) re-reads the entries new since m, requires them contiguous and each leaf hash equal to the hash of its body;
   * (3) extends the subtrees of step 1 by those leaves — the new root is built on top of the verified old tree, so it
   * is consistent with r by construction (also re-checked with an RFC 9162 §2.1.4 proof) — and requires every node
   * these leaves complete to equal the stored one, so later proofs are served from checked nodes. Cost:
   * O(new entries + log n). If nothing was appended since, returns the latest note.
   * Not covered (O(n), see verify()): entries of the checkpointed prefix that were rewritten or deleted behind the
   * node table, and stored nodes inside that prefix which are not among the subtrees of step 1.
   * @throws SafehouseError SH_ERR_LEDGER_INCONSISTENT if there are fewer entries than the latest checkpoint, or the
   *   stored tree no longer reproduces its signed root (a stored node or a leaf hash on its right edge was altered);
   *   SH_ERR_LEDGER_TAMPERED if a new entry is missing or its body does not match its leaf hash, a stored node
   *   completed by the new entries differs from the recomputed one, a stored node needed is missing or malformed, or
   *   the latest stored checkpoint fails verification; SH_ERR_INVALID_ARGUMENT for a verify-only Ledger (no secret
   *   key).
   * @example const note = ledger.checkpoint(); verifyCheckpoint(note, keyName, publicKey).size === ledger.size()
   */
  checkpoint(): string {
    if (!this.#secretKey) fail('SH_ERR_INVALID_ARGUMENT', '"secretKey" expected: this Ledger was opened verify-only');
    const n = this.#sync(); // also backfills a node table from before this version
    const last = this.latestCheckpoint();
    const m = last?.size ?? 0;
    if (n < m)
      fail('SH_ERR_LEDGER_INCONSISTENT', `the ledger has ${n} entries but checkpoint ${m} was signed`, {
        size: n,
        checkpointSize: m,
      });
    // (1) The old tree, from the database.
    const stack = frontier(m).map(([level, idx]) => this.#readNode(level, idx));
    if (last && !equalBytes(this.#fold(stack), last.rootHash)) {
      fail(
        'SH_ERR_LEDGER_INCONSISTENT',
        `the stored tree of the first ${m} entries no longer hashes to the root of checkpoint ${m} (a tree node or leaf hash was altered)`,
        { size: n, checkpointSize: m },
      );
    }
    if (last && n === m) return last.note;
    // (2) The new entries, from their bodies, extending the old tree.
    const made = new Map<number, Array<[idx: number, hash: Uint8Array]>>();
    let next = m;
    for (const row of this.#sql.bodiesFrom.iterate(m)) {
      this.#count.rowsRead++;
      if (Number(row.idx) !== next) fail('SH_ERR_LEDGER_TAMPERED', `ledger entry ${next} is missing`, { index: next });
      const h = leafHash(utf8.encode(str(row.body)));
      this.#count.leafHashes++;
      if (!equalBytes(h, bytes(row.leaf_hash))) {
        fail('SH_ERR_LEDGER_TAMPERED', `ledger entry ${row.idx} does not match its leaf hash`, {
          index: Number(row.idx),
        });
      }
      this.#push(stack, h, next, (level, idx, hash) => {
        let list = made.get(level);
        if (!list) made.set(level, (list = []));
        list.push([idx, hash]);
      });
      next++;
    }
    if (next !== n) fail('SH_ERR_LEDGER_TAMPERED', `ledger entry ${next} is missing`, { index: next });
    // (3) The stored nodes those entries completed.
    for (const [level, list] of made) {
      let k = 0;
      for (const row of this.#sql.nodesIn.iterate(level, list[0]![0], list.at(-1)![0])) {
        this.#count.rowsRead++;
        const [idx, hash] = list[k]!;
        if (Number(row.idx) !== idx) break; // reported as missing below
        if (!(row.hash instanceof Uint8Array) || !equalBytes(row.hash, hash)) {
          fail(
            'SH_ERR_LEDGER_TAMPERED',
            `tree node (level ${level}, index ${idx}) does not match entries ${span(level, idx)}`,
            { index: idx * 2 ** level },
          );
        }
        k++;
      }
      if (k < list.length) {
        const idx = list[k]![0];
        fail(
          'SH_ERR_LEDGER_TAMPERED',
          `tree node (level ${level}, index ${idx}) over entries ${span(level, idx)} is missing`,
          { index: idx * 2 ** level },
        );
      }
    }
    const root = this.#fold(stack);
    if (last && !verifyConsistency(m, n, this.consistencyProof(m, n), last.rootHash, root)) {
      fail('SH_ERR_LEDGER_INCONSISTENT', `the tree of ${n} entries is not consistent with checkpoint ${m}`, {
        size: n,
        checkpointSize: m,
      });
    }
    const note = signCheckpoint({ origin: this.#origin, size: n, rootHash: root }, this.#keyName, this.#secretKey);
    this.#sql.insertCheckpoint.run(n, root, note, this.#now().toISOString());
    this.#trusted = { size: n, note, root: root.slice() };
    return note;
  }

  /**
   * The latest stored checkpoint, after verifying its note against this ledger's key, origin and stored root (a row
   * identical to the last one this instance verified or signed is not verified again).
   * @throws SafehouseError SH_ERR_LEDGER_TAMPERED if the stored note does not verify or disagrees with its row.
   * @example ledger.latestCheckpoint()?.size
   */
  latestCheckpoint(): StoredCheckpoint | undefined {
    const row = this.#sql.lastCheckpoint.get();
    this.#count.rowsRead++;
    if (!row) return undefined;
    const cp = { size: Number(row.size), rootHash: bytes(row.root), note: str(row.note) };
    const t = this.#trusted;
    if (!(
      t &&
      t.size === cp.size &&
      t.note === cp.note &&
      typeof row.note === 'string' &&
      equalBytes(t.root, cp.rootHash)
    )) {
      const problem = this.#checkCheckpointRow(row);
      if (problem) fail('SH_ERR_LEDGER_TAMPERED', problem.reason, { checkpointSize: cp.size });
      this.#trusted = { size: cp.size, note: cp.note, root: cp.rootHash.slice() };
    }
    return cp;
  }

  /**
   * Audit path for entry `index` in the tree of the first `size` entries (RFC 9162 §2.1.3.1); default: all.
   * O(log n): each path element is a stored perfect subtree or a right-edge range (memoized per tree size).
   * @throws SafehouseError SH_ERR_INVALID_ARGUMENT unless 0 ≤ index < size ≤ this.size(); SH_ERR_LEDGER_TAMPERED if
   *   a stored node it needs is missing or malformed.
   * @example verifyInclusion(ledger.entry(3).leafHash, 3, n, ledger.inclusionProof(3, n), ledger.root(n))
   */
  inclusionProof(index: number, size?: number): Uint8Array[] {
    const n = this.#sync();
    const treeSize = size ?? n;
    checkSize(treeSize, 'size', n);
    checkIndex(index, 'index');
    if (index >= treeSize)
      fail('SH_ERR_INVALID_ARGUMENT', `"index" expected less than size ${treeSize}, got ${index}`, {
        index,
        size: treeSize,
      });
    return inclusionPath(index, treeSize, (lo, hi) => this.#range(lo, hi, treeSize)).map((h) => h.slice());
  }

  /**
   * Consistency proof between the trees of the first `m` and `n` entries (RFC 9162 §2.1.4.1); default n: all.
   * O(log n), as inclusionProof.
   * @throws SafehouseError SH_ERR_INVALID_ARGUMENT unless 0 ≤ m ≤ n ≤ this.size(); SH_ERR_LEDGER_TAMPERED if a
   *   stored node it needs is missing or malformed.
   * @example verifyConsistency(m, n, ledger.consistencyProof(m, n), ledger.root(m), ledger.root(n))
   */
  consistencyProof(m: number, n?: number): Uint8Array[] {
    const size = this.#sync();
    const treeSize = n ?? size;
    checkSize(treeSize, 'n', size);
    checkSize(m, 'm', treeSize);
    return consistencyPath(m, treeSize, (lo, hi) => this.#range(lo, hi, treeSize)).map((h) => h.slice());
  }

  /**
   * Full self-check from the database alone, O(n): recomputes every leaf hash from its body (RFC 6962 §2.1) and
   * compares the stored one, finds missing rows, verifies every checkpoint's signature (signed-note), origin and
   * size, recomputes the root at every checkpoint size, and finally recomputes every perfect subtree and compares
   * the stored tree nodes (missing, altered, or extra nodes). Because all roots are recomputed from one leaf
   * sequence, matching roots also prove consecutive checkpoints consistent (RFC 9162 §2.1.4: the older tree is a
   * prefix of the newer). Reports the first problem, in that order (entries, checkpoints, nodes); a rewrite that
   * kept body and leaf hash in step is located to the entry range between the last good checkpoint and the first
   * bad one. A node table from before this version is backfilled first (from the stored leaf hashes).
   * @throws nothing for tampering (returns ok: false); SQLite errors propagate.
   * @example const r = ledger.verify(); if (!r.ok) console.error(r.code, r.index, r.checkpointSize, r.reason);
   */
  verify(): LedgerReport {
    try {
      this.#sync();
    } catch (err) {
      if (!isCoded(err)) throw err; // a backfill that met a tampered row: the checks below report it
    }
    const hashes: Uint8Array[] = [];
    for (const row of this.#sql.allEntries.iterate()) {
      const index = hashes.length;
      if (Number(row.idx) !== index)
        return tampered({ index }, `entry ${index} is missing (the next stored entry is ${row.idx})`);
      if (typeof row.body !== 'string' || !(row.leaf_hash instanceof Uint8Array))
        return tampered({ index }, `entry ${index} has a malformed row`);
      const h = leafHash(utf8.encode(row.body));
      if (!equalBytes(h, row.leaf_hash))
        return tampered({ index }, `entry ${index}: the stored leaf hash does not match the body`);
      hashes.push(h);
    }
    this.#count.rowsRead += hashes.length;
    this.#count.leafHashes += hashes.length;
    const rows = this.#sql.allCheckpoints.all();
    const roots = rootsAtSizes(
      hashes,
      rows.map((r) => Math.min(Number(r.size), hashes.length)),
    );
    let good = 0;
    for (const [k, row] of rows.entries()) {
      const checkpointSize = Number(row.size);
      const problem = this.#checkCheckpointRow(row);
      if (problem) return { ok: false, checkpointSize, ...problem };
      if (checkpointSize > hashes.length) {
        return tampered(
          { index: hashes.length, checkpointSize },
          `checkpoint ${checkpointSize} covers entries ${hashes.length}.. which are missing`,
        );
      }
      if (!equalBytes(roots[k]!, bytes(row.root))) {
        return tampered(
          { checkpointSize },
          `checkpoint ${checkpointSize}: entries ${good}..${checkpointSize - 1} were rewritten (the root differs)`,
        );
      }
      good = checkpointSize;
    }
    const nodeProblem = this.#checkNodes(hashes);
    if (nodeProblem) return nodeProblem;
    const root = rootsAtSizes(hashes, [hashes.length])[0]!;
    return { ok: true, size: hashes.length, checkpoints: rows.length, root: Buffer.from(root).toString('hex') };
  }

  /**
   * Access report (docs/design.md §8): every entry appended with `uscc` among its subjects, in ledger order.
   * @throws SafehouseError SH_ERR_INVALID_ARGUMENT if `uscc` is not a non-empty string; SH_ERR_LEDGER_TAMPERED if
   *   a body is not JSON.
   * @example ledger.subjectEntries('91350100M000100Y43').map((e) => e.kind)
   */
  subjectEntries(uscc: string): Array<{ index: number; kind: string; body: Record<string, unknown>; at: string }> {
    if (typeof uscc !== 'string' || uscc === '')
      fail('SH_ERR_INVALID_ARGUMENT', `"uscc" expected a non-empty string, got ${describe(uscc)}`);
    return this.#sql.subjectEntries.all(uscc).map((r) => {
      const index = Number(r.idx);
      return { index, kind: str(r.kind), body: parseBody(index, r.body), at: str(r.at) };
    });
  }

  /**
   * Every entry of one job (events whose body names it as `jobId`), in ledger order, through the `ledger_jobs` index.
   * Like ledger_subjects, the index is a lookup aid outside the tree: each returned body is checked to name the job,
   * and an index row removed behind the ledger shows in a replay as a missing step, not as a hidden one (the auditor's
   * network replay filters the whole verified ledger itself).
   * @throws SafehouseError SH_ERR_LEDGER_TAMPERED if a body is not JSON.
   * @example ledger.jobEntries('score_20261202_ab12cd34').map((e) => e.kind) // ['job.requested', 'custodian.request', …]
   */
  jobEntries(jobId: string): Array<{ index: number; kind: string; body: Record<string, unknown>; at: string }> {
    if (typeof jobId !== 'string' || jobId === '')
      fail('SH_ERR_INVALID_ARGUMENT', `"jobId" expected a non-empty string, got ${describe(jobId)}`);
    return this.#sql.jobEntries
      .all(jobId)
      .map((r) => {
        const index = Number(r.idx);
        return { index, kind: str(r.kind), body: parseBody(index, r.body), at: str(r.at) };
      })
      .filter((e) => e.body.jobId === jobId);
  }

  // --- internals: the stored tree

  /**
   * Brings the cache and the node table in line with the database and returns its size. O(log n): one read of the
   * size, last leaf hash and level-1 extent (plus one leaf read when the ledger grew behind the cache). The cache is
   * kept only if it still describes a prefix of the stored entries (same last leaf at its size); otherwise emptied.
   * A node table that stops short of the entries (a database from before it, or a node-less writer) is backfilled.
   */
  #sync(): number {
    const row = this.#sql.tail.get()!;
    this.#count.rowsRead++;
    const n = row.last === null ? 0 : Number(row.last) + 1;
    const lastLeaf = row.leaf instanceof Uint8Array ? row.leaf : undefined;
    const same = (a: Uint8Array | undefined, b: Uint8Array | undefined): boolean =>
      a && b ? equalBytes(a, b) : a === b;
    if (n !== this.#cachedSize || !same(lastLeaf, this.#cachedLast)) {
      let keep = false;
      if (n > this.#cachedSize) {
        if (this.#cachedSize === 0) keep = true;
        else {
          const at = this.#sql.leafAt.get(this.#cachedSize - 1);
          this.#count.rowsRead++;
          keep = at?.leaf_hash instanceof Uint8Array && same(at.leaf_hash, this.#cachedLast);
        }
      }
      if (!keep) this.#dropCache();
      this.#cachedSize = n;
      this.#cachedLast = lastLeaf?.slice();
    }
    const want = Math.floor(n / 2) - 1; // the last level-1 node [2i, 2i+2) with 2i + 2 ≤ n (-1: none)
    const have = row.level1 === null ? -1 : Number(row.level1);
    this.#nodesPastEnd = have > want;
    if (have < want) this.#backfill(2 * (have + 1), n);
    return n;
  }

  /**
   * Writes the nodes completed by entries [from, n) from their stored leaf hashes, starting from the stored
   * subtrees of [0, from) (or from 0 if one of those is missing too). Its own savepoint; existing rows are kept.
   */
  #backfill(from: number, n: number): void {
    let start = from;
    let stack: Uint8Array[];
    try {
      stack = frontier(start).map(([level, idx]) => this.#readNode(level, idx));
    } catch (err) {
      if (!isCoded(err, 'SH_ERR_LEDGER_TAMPERED')) throw err;
      start = 0;
      stack = [];
    }
    this.#db.exec('SAVEPOINT ledger_backfill');
    try {
      let next = start;
      for (const row of this.#sql.hashesFrom.iterate(start)) {
        this.#count.rowsRead++;
        if (Number(row.idx) !== next)
          fail('SH_ERR_LEDGER_TAMPERED', `ledger entry ${next} is missing`, { index: next });
        const h = row.leaf_hash;
        if (!(h instanceof Uint8Array) || h.length !== HASH_SIZE)
          fail('SH_ERR_LEDGER_TAMPERED', `ledger entry ${next} has a malformed leaf hash`, { index: next });
        this.#push(stack, h, next, (level, idx, hash) => this.#sql.insertNodeIfAbsent.run(level, idx, hash));
        next++;
      }
      if (next !== n) fail('SH_ERR_LEDGER_TAMPERED', `ledger entry ${next} is missing`, { index: next });
      this.#db.exec('RELEASE ledger_backfill');
    } catch (err) {
      this.#db.exec('ROLLBACK TO ledger_backfill');
      this.#db.exec('RELEASE ledger_backfill');
      throw err;
    }
  }

  #dropCache(): void {
    this.#cache = new NodeCache();
    this.#generation++;
    this.#edge = undefined;
  }

  /** Node (level, idx) — level 0 is a leaf hash — from the cache, else from the database (then cached). */
  #node(level: number, idx: number): Uint8Array {
    const cached = this.#cache.get(level, idx);
    if (cached) return cached;
    const h = this.#readNode(level, idx);
    this.#cache.set(level, idx, h);
    return h;
  }

  /** Node (level, idx) read from the database, never from the cache. */
  #readNode(level: number, idx: number): Uint8Array {
    this.#count.rowsRead++;
    if (level === 0) {
      const row = this.#sql.leafAt.get(idx);
      if (!row) fail('SH_ERR_LEDGER_TAMPERED', `ledger entry ${idx} is missing`, { index: idx });
      const h = row.leaf_hash;
      if (!(h instanceof Uint8Array) || h.length !== HASH_SIZE)
        fail('SH_ERR_LEDGER_TAMPERED', `ledger entry ${idx} has a malformed leaf hash`, { index: idx });
      return h;
    }
    const row = this.#sql.nodeAt.get(level, idx);
    const h = row?.hash;
    if (!(h instanceof Uint8Array) || h.length !== HASH_SIZE) {
      fail(
        'SH_ERR_LEDGER_TAMPERED',
        `tree node (level ${level}, index ${idx}) over entries ${span(level, idx)} is ${row ? 'malformed' : 'missing'}`,
        { index: idx * 2 ** level },
      );
    }
    return h;
  }

  /**
   * MTH(D[lo:hi]) for a range of the RFC 9162 proof recursions over a tree of `size` leaves: a perfect aligned
   * subtree (a stored node) or a right-edge range D[lo:size] (a suffix of the frontier of `size`, memoized).
   */
  #range(lo: number, hi: number, size: number): Uint8Array {
    const w = hi - lo;
    const level = exactLog2(w);
    if (level >= 0 && lo % w === 0) return this.#node(level, lo / w);
    if (hi !== size)
      throw new Error(`internal: [${lo}, ${hi}) is neither a perfect subtree nor a right edge of ${size}`);
    let edge = this.#edge;
    if (!edge || edge.generation !== this.#generation || edge.size !== size) {
      const parts = frontier(size);
      const starts = parts.map(([level, idx]) => idx * 2 ** level);
      const folds: Uint8Array[] = new Array<Uint8Array>(parts.length);
      for (let j = parts.length - 1; j >= 0; j--) {
        const h = this.#node(parts[j]![0], parts[j]![1]);
        folds[j] = j === parts.length - 1 ? h : this.#hash(h, folds[j + 1]!);
      }
      this.#edge = edge = { generation: this.#generation, size, starts, folds };
    }
    const j = edge.starts.indexOf(lo);
    if (j < 0) throw new Error(`internal: ${lo} does not start a subtree of the frontier of ${size}`);
    return edge.folds[j]!;
  }

  /** Adds leaf `index` to a frontier stack of [0, index), reporting each node it completes (level ≥ 1). */
  #push(
    stack: Uint8Array[],
    leaf: Uint8Array,
    index: number,
    onNode: (level: number, idx: number, hash: Uint8Array) => void,
  ): void {
    let h = leaf;
    let level = 0;
    let i = index;
    while (i % 2 === 1) {
      h = this.#hash(stack.pop()!, h);
      level++;
      i = (i - 1) / 2;
      onNode(level, i, h);
    }
    stack.push(h);
  }

  /** MTH of the leaves under a frontier stack: its subtrees, largest first, hashed together right to left. */
  #fold(stack: readonly Uint8Array[]): Uint8Array {
    if (stack.length === 0) return EMPTY_ROOT;
    let h = stack[stack.length - 1]!;
    for (let i = stack.length - 2; i >= 0; i--) h = this.#hash(stack[i]!, h);
    return h;
  }

  #hash(left: Uint8Array, right: Uint8Array): Uint8Array {
    this.#count.nodeHashes++;
    return nodeHash(left, right);
  }

  /** verify(): recomputes every perfect subtree of level ≥ 1 and compares ledger_nodes, in (level, idx) order. */
  #checkNodes(hashes: readonly Uint8Array[]): LedgerReport | undefined {
    const n = hashes.length;
    const levels: Array<readonly Uint8Array[]> = [hashes];
    for (let below = hashes; below.length >= 2;) {
      const up: Uint8Array[] = [];
      for (let i = 0; i + 1 < below.length; i += 2) up.push(this.#hash(below[i]!, below[i + 1]!));
      levels.push(up);
      below = up;
    }
    let level = 1;
    let idx = 0;
    const expected = (): [number, number] | undefined => {
      while (level < levels.length && idx >= levels[level]!.length) [level, idx] = [level + 1, 0];
      return level < levels.length ? [level, idx] : undefined;
    };
    const before = (a: readonly [number, number], b: readonly [number, number]): boolean =>
      a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);
    const missing = ([l, i]: [number, number]): LedgerReport =>
      tampered({ index: i * 2 ** l }, `tree node (level ${l}, index ${i}) over entries ${span(l, i)} is missing`);
    for (const row of this.#sql.allNodes.iterate()) {
      this.#count.rowsRead++;
      const stored: [number, number] = [Number(row.level), Number(row.idx)];
      const e = expected();
      if (e && before(e, stored)) return missing(e);
      if (!e || before(stored, e)) {
        return tampered(
          { index: Math.min(Math.max(0, stored[1] * 2 ** stored[0]), n) },
          `tree node (level ${stored[0]}, index ${stored[1]}) is not part of the tree of ${n} entries`,
        );
      }
      if (!(row.hash instanceof Uint8Array) || !equalBytes(row.hash, levels[level]![idx]!)) {
        return tampered(
          { index: idx * 2 ** level },
          `tree node (level ${level}, index ${idx}) does not match entries ${span(level, idx)}`,
        );
      }
      idx++;
    }
    const e = expected();
    return e ? missing(e) : undefined;
  }

  // --- internals: entries and checkpoints

  /** Validates one event for appending and computes its leaf. */
  #prepare(
    e: LedgerEvent,
    name: string,
  ): { kind: string; at: string; body: string; leafHash: Uint8Array; subjects: string[]; jobId: string | undefined } {
    if (e === null || typeof e !== 'object')
      fail('SH_ERR_INVALID_ARGUMENT', `"${name}" expected object, got ${describe(e)}`);
    const { kind, event, subjects = [] } = e;
    if (typeof kind !== 'string' || kind === '')
      fail('SH_ERR_INVALID_ARGUMENT', `"${name}.kind" expected a non-empty string, got ${describe(kind)}`);
    if (event === null || typeof event !== 'object' || Array.isArray(event)) {
      fail('SH_ERR_INVALID_ARGUMENT', `"${name}.event" expected object, got ${describe(event)}`);
    }
    for (const reserved of ['kind', 'at']) {
      if (Object.hasOwn(event, reserved))
        fail('SH_ERR_INVALID_ARGUMENT', `"${name}.event.${reserved}" is reserved: the ledger sets it`);
    }
    if (!Array.isArray(subjects) || subjects.some((s) => typeof s !== 'string' || s === '')) {
      fail(
        'SH_ERR_INVALID_ARGUMENT',
        `"${name}.subjects" expected an array of non-empty strings, got ${describe(subjects)}`,
      );
    }
    const at = this.#now().toISOString();
    const body = canonicalize({ ...event, kind, at });
    this.#count.leafHashes++;
    const jobId = typeof event.jobId === 'string' && event.jobId !== '' ? event.jobId : undefined;
    return { kind, at, body, leafHash: leafHash(utf8.encode(body)), subjects: [...new Set(subjects)], jobId };
  }

  /** Checks a checkpoint row's note (signature, origin, size) and stored root; returns the problem, if any. */
  #checkCheckpointRow(row: Record<string, SQLOutputValue>): { code: ErrorCode; reason: string } | undefined {
    const size = Number(row.size);
    try {
      const cp = verifyCheckpoint(str(row.note), this.#keyName, this.#publicKey);
      if (cp.origin !== this.#origin || cp.size !== size) {
        return {
          code: 'SH_ERR_LEDGER_TAMPERED',
          reason: `checkpoint ${size}: the note is for ${cp.origin} at size ${cp.size}`,
        };
      }
      if (!(row.root instanceof Uint8Array) || !equalBytes(cp.rootHash, row.root)) {
        return {
          code: 'SH_ERR_LEDGER_TAMPERED',
          reason: `checkpoint ${size}: the stored root differs from the signed note`,
        };
      }
      return undefined;
    } catch (err) {
      if (isCoded(err)) return { code: err.code, reason: `checkpoint ${size}: ${err.message}` };
      throw err;
    }
  }
}
