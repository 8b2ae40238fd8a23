// The Ledger class (docs/design.md §8): appends, C2SP checkpoints that never contradict an earlier one, RFC 9162 proofs
// checked with merkle.ts, verify() locating tampering, and the per-USCC access report.
// Longer than 400 lines: the Ledger's append, checkpoint, proof and tamper-location behaviour, each case on a fresh
// database built by the same helpers.
import { DatabaseSync } from 'node:sqlite';
import { ed25519 } from '@noble/curves/ed25519.js';
import { describe, expect, test } from 'vitest';
import { isCoded, type ErrorCode } from '../../../core/errors.ts';
import { canonicalize } from '../../../core/jcs.ts';
import { signCheckpoint, verifyCheckpoint } from '../../../engine/ledger/checkpoint.ts';
import { Ledger, type LedgerCounters } from '../../../engine/ledger/ledger.ts';
import {
  consistencyProof as refConsistency,
  EMPTY_ROOT,
  inclusionProof as refInclusion,
  leafHash,
  rootFromLeafHashes,
  verifyConsistency,
  verifyInclusion,
} from '../../../engine/ledger/merkle.ts';
import { expectCode as expectCodeOf } from '../../fixtures/expect.ts';
const expectCode = (code: ErrorCode, f: () => unknown): void => expectCodeOf(f, code);

const ORIGIN = 'safehouse.test/ledger';
const KEY_NAME = 'safehouse.test/ledger';
const { secretKey, publicKey } = ed25519.keygen(new Uint8Array(32).fill(3));
const USCC_A = '91350100M000100Y43';
const USCC_B = '91110000100000000X';
const utf8 = new TextEncoder();

function open(
  db = new DatabaseSync(':memory:'),
  keys: { secretKey?: Uint8Array; publicKey?: Uint8Array } = { secretKey },
  counters?: LedgerCounters,
) {
  let tick = 0;
  const now = (): Date => new Date(Date.UTC(2025, 0, 1) + 1000 * tick++); // pinned clock: no wall-clock in tests
  const ledger = new Ledger(db, {
    origin: ORIGIN,
    keyName: KEY_NAME,
    publicKey,
    ...keys,
    now,
    ...(counters ? { counters } : {}),
  });
  return { db, ledger };
}

/** A ledger of `n` events with checkpoints after each size in `checkpointsAt`. */
function filled(n: number, checkpointsAt: number[] = []) {
  const l = open();
  for (let i = 0; i < n; i++) {
    l.ledger.append('job.requested', { jobId: `job-${i}`, fields: ['revenue'] }, [i % 2 ? USCC_B : USCC_A]);
    if (checkpointsAt.includes(i + 1)) l.ledger.checkpoint();
  }
  return l;
}

/** Rewrite entry `idx` the way a careful attacker would: a new body and its matching leaf hash. */
function rewrite(db: DatabaseSync, idx: number): void {
  const { body } = db.prepare('SELECT body FROM ledger_entries WHERE idx = ?').get(idx) as { body: string };
  const forged = body.replace('job-', 'JOB-');
  db.prepare('UPDATE ledger_entries SET body = ?, leaf_hash = ? WHERE idx = ?').run(
    forged,
    leafHash(utf8.encode(forged)),
    idx,
  );
}

describe('append, checkpoint, verify', () => {
  test('leaves are canonical JSON of { kind, at, ...event } and a fresh ledger verifies', () => {
    const { ledger, db } = open();
    expect(ledger.size()).toBe(0);
    expect(ledger.root()).toEqual(EMPTY_ROOT);
    const r = ledger.append('consent.granted', { consentId: 'c1', scope: { fields: ['revenue'] } }, [USCC_A]);
    expect(r.index).toBe(0);
    const row = db.prepare('SELECT body, at FROM ledger_entries WHERE idx = 0').get() as { body: string; at: string };
    expect(row.at).toBe('2025-01-01T00:00:00.000Z');
    expect(row.body).toBe(
      canonicalize({ kind: 'consent.granted', at: row.at, consentId: 'c1', scope: { fields: ['revenue'] } }),
    );
    expect(r.leafHash).toEqual(leafHash(utf8.encode(row.body)));
    expect(ledger.entry(0)).toEqual({
      index: 0,
      kind: 'consent.granted',
      at: row.at,
      body: { kind: 'consent.granted', at: row.at, consentId: 'c1', scope: { fields: ['revenue'] } },
      leafHash: r.leafHash,
    });
    expect(ledger.root()).toEqual(r.leafHash);
  });

  test('checkpoints are signed C2SP notes over the current tree; repeated calls do not re-sign', () => {
    const { ledger, db } = filled(10);
    const note = ledger.checkpoint();
    expect(verifyCheckpoint(note, KEY_NAME, publicKey)).toEqual({ origin: ORIGIN, size: 10, rootHash: ledger.root() });
    expect(ledger.checkpoint()).toBe(note);
    expect(ledger.latestCheckpoint()).toEqual({ size: 10, rootHash: ledger.root(), note });
    ledger.append('job.result', { jobId: 'job-0' });
    const note2 = ledger.checkpoint();
    expect(verifyCheckpoint(note2, KEY_NAME, publicKey).size).toBe(11);
    expect(db.prepare('SELECT COUNT(*) AS n FROM ledger_checkpoints').get()).toEqual({ n: 2 });
    const report = ledger.verify();
    expect(report).toEqual({ ok: true, size: 11, checkpoints: 2, root: Buffer.from(ledger.root()).toString('hex') });
  });

  test('an empty ledger can be checkpointed and verified', () => {
    const { ledger } = open();
    expect(verifyCheckpoint(ledger.checkpoint(), KEY_NAME, publicKey).size).toBe(0);
    expect(ledger.verify()).toMatchObject({ ok: true, size: 0, checkpoints: 1 });
  });

  test('a second Ledger over the same database sees and verifies the same log', () => {
    const { db, ledger } = filled(7, [4, 7]);
    const again = open(db).ledger;
    expect(again.size()).toBe(7);
    expect(again.root()).toEqual(ledger.root());
    expect(again.verify()).toMatchObject({ ok: true, size: 7, checkpoints: 2 });
    again.append('job.result', {});
    expect(ledger.root(8)).toEqual(again.root()); // the first instance tops up its cache from the database
  });
});

describe('verify() detects and locates tampering', () => {
  test('(a) an edited body', () => {
    const { db, ledger } = filled(15, [10, 15]);
    db.prepare(`UPDATE ledger_entries SET body = replace(body, 'job-3', 'job-X') WHERE idx = 3`).run();
    expect(ledger.verify()).toMatchObject({ ok: false, index: 3, code: 'SH_ERR_LEDGER_TAMPERED' });
  });

  test('(b) an edited leaf hash', () => {
    const { db, ledger } = filled(15, [10, 15]);
    db.prepare('UPDATE ledger_entries SET leaf_hash = ? WHERE idx = 5').run(new Uint8Array(32));
    expect(ledger.verify()).toMatchObject({ ok: false, index: 5, code: 'SH_ERR_LEDGER_TAMPERED' });
  });

  test('(c) a deleted row, in the middle or at the end', () => {
    const mid = filled(15, [10, 15]);
    mid.db.prepare('DELETE FROM ledger_entries WHERE idx = 4').run();
    expect(mid.ledger.verify()).toMatchObject({ ok: false, index: 4, code: 'SH_ERR_LEDGER_TAMPERED' });
    const end = filled(15, [10, 15]);
    end.db.prepare('DELETE FROM ledger_entries WHERE idx = 14').run();
    expect(end.ledger.verify()).toMatchObject({
      ok: false,
      index: 14,
      checkpointSize: 15,
      code: 'SH_ERR_LEDGER_TAMPERED',
    });
  });

  test('(d) a checkpoint note with a forged signature', () => {
    const { db, ledger } = filled(15, [10, 15]);
    const { note } = db.prepare('SELECT note FROM ledger_checkpoints WHERE size = 10').get() as { note: string };
    const blob = note.slice(note.lastIndexOf(' ') + 1, -1);
    const bytes = Buffer.from(blob, 'base64');
    bytes[20]! ^= 0x40;
    db.prepare('UPDATE ledger_checkpoints SET note = ? WHERE size = 10').run(
      note.replace(blob, bytes.toString('base64')),
    );
    expect(ledger.verify()).toMatchObject({ ok: false, checkpointSize: 10, code: 'SH_ERR_BAD_SIGNATURE' });
  });

  test('(d′) a checkpoint re-signed by another key', () => {
    const { db, ledger } = filled(15, [10, 15]);
    const other = ed25519.keygen(new Uint8Array(32).fill(4));
    const forged = signCheckpoint({ origin: ORIGIN, size: 15, rootHash: ledger.root() }, KEY_NAME, other.secretKey);
    db.prepare('UPDATE ledger_checkpoints SET note = ? WHERE size = 15').run(forged);
    expect(ledger.verify()).toMatchObject({ ok: false, checkpointSize: 15, code: 'SH_ERR_BAD_SIGNATURE' });
  });

  test('(e) checkpoint roots swapped', () => {
    const { db, ledger } = filled(15, [10, 15]);
    db.exec(
      `UPDATE ledger_checkpoints SET root = (SELECT root FROM ledger_checkpoints c WHERE c.size != ledger_checkpoints.size)`,
    );
    expect(ledger.verify()).toMatchObject({ ok: false, checkpointSize: 10, code: 'SH_ERR_LEDGER_TAMPERED' });
  });

  test('a rewrite that keeps body and leaf hash in step is located to the first checkpoint covering it', () => {
    const early = filled(15, [10, 15]);
    rewrite(early.db, 2);
    const r = early.ledger.verify();
    expect(r).toMatchObject({ ok: false, checkpointSize: 10, code: 'SH_ERR_LEDGER_TAMPERED' });
    expect(r.ok === false && r.reason).toContain('entries 0..9');
    const late = filled(15, [10, 15]);
    rewrite(late.db, 12);
    const r2 = late.ledger.verify();
    expect(r2).toMatchObject({ ok: false, checkpointSize: 15 });
    expect(r2.ok === false && r2.reason).toContain('entries 10..14');
  });
});

describe('checkpoint() never signs a tree inconsistent with an earlier checkpoint', () => {
  test('refuses after a stored tree node of the checkpointed prefix was rewritten (same instance, fresh instance, same size)', () => {
    // checkpoint() recomputes the checkpointed root from the stored subtrees of [0, 10): nodes (3, 0) and (1, 4).
    const { db, ledger } = filled(10, [10]);
    ledger.root(); // fill the cache before the rewrite: checkpoint() must not trust it
    db.prepare('UPDATE ledger_nodes SET hash = ? WHERE level = 3 AND idx = 0').run(new Uint8Array(32).fill(9));
    expectCode('SH_ERR_LEDGER_INCONSISTENT', () => ledger.checkpoint()); // same size, different root
    ledger.append('job.result', {});
    expectCode('SH_ERR_LEDGER_INCONSISTENT', () => ledger.checkpoint());
    expectCode('SH_ERR_LEDGER_INCONSISTENT', () => open(db).ledger.checkpoint());
    expect(db.prepare('SELECT COUNT(*) AS n FROM ledger_checkpoints').get()).toEqual({ n: 1 });
    expect(ledger.verify()).toMatchObject({ ok: false, index: 0, code: 'SH_ERR_LEDGER_TAMPERED' });
  });

  test('an old row rewritten behind the node table: checkpoint() still signs only the original tree, verify() and proofs expose it', () => {
    // Changed with the incremental checkpoint: this used to throw SH_ERR_LEDGER_INCONSISTENT because checkpoint()
    // re-read every leaf (O(n)). It now commits to the stored tree, which still holds the original leaf 3.
    const { db, ledger } = filled(10, [10]);
    const original = ledger.root(10);
    const leaf3 = ledger.entry(3).leafHash;
    rewrite(db, 3);
    expect(ledger.checkpoint()).toBe(ledger.latestCheckpoint()!.note); // same size: nothing new signed
    ledger.append('job.result', {});
    const cp = verifyCheckpoint(ledger.checkpoint(), KEY_NAME, publicKey);
    expect(verifyConsistency(10, 11, ledger.consistencyProof(10, 11), original, cp.rootHash)).toBe(true);
    const proof = ledger.inclusionProof(3);
    expect(verifyInclusion(leaf3, 3, 11, proof, cp.rootHash)).toBe(true); // the signed tree holds the original leaf
    expect(verifyInclusion(ledger.entry(3).leafHash, 3, 11, proof, cp.rootHash)).toBe(false); // the rewrite does not verify
    expect(open(db).ledger.verify()).toMatchObject({ ok: false, checkpointSize: 10, code: 'SH_ERR_LEDGER_TAMPERED' });
  });

  test('refuses when covered rows were deleted', () => {
    const { db, ledger } = filled(10, [10]);
    db.prepare('DELETE FROM ledger_entries WHERE idx = 9').run();
    expectCode('SH_ERR_LEDGER_INCONSISTENT', () => ledger.checkpoint());
  });

  test('refuses a new entry whose body does not match its leaf hash, and a forged latest checkpoint', () => {
    const a = filled(10, [5]);
    a.db.prepare(`UPDATE ledger_entries SET body = replace(body, 'job-7', 'job-X') WHERE idx = 7`).run();
    expectCode('SH_ERR_LEDGER_TAMPERED', () => a.ledger.checkpoint());
    const b = filled(10, [5]);
    b.db.prepare(`UPDATE ledger_checkpoints SET note = replace(note, '\n5\n', '\n4\n')`).run();
    expectCode('SH_ERR_LEDGER_TAMPERED', () => b.ledger.checkpoint());
  });
});

describe('proofs served by the ledger verify with merkle.ts', () => {
  test('inclusion proofs for every (index, size) and consistency proofs for every (m, n) up to 13', () => {
    const { ledger } = filled(13);
    for (let size = 1; size <= 13; size++) {
      const root = ledger.root(size);
      for (let i = 0; i < size; i++) {
        expect(
          verifyInclusion(ledger.entry(i).leafHash, i, size, ledger.inclusionProof(i, size), root),
          `${i}/${size}`,
        ).toBe(true);
      }
      for (let m = 0; m <= size; m++) {
        expect(verifyConsistency(m, size, ledger.consistencyProof(m, size), ledger.root(m), root), `${m}→${size}`).toBe(
          true,
        );
      }
    }
  });

  test('proofs connect an entry and an old checkpoint to the latest signed checkpoint', () => {
    const { ledger } = filled(9, [5]);
    const old = ledger.latestCheckpoint()!;
    const cp = verifyCheckpoint(ledger.checkpoint(), KEY_NAME, publicKey);
    expect(verifyInclusion(ledger.entry(7).leafHash, 7, cp.size, ledger.inclusionProof(7), cp.rootHash)).toBe(true);
    expect(verifyConsistency(old.size, cp.size, ledger.consistencyProof(old.size), old.rootHash, cp.rootHash)).toBe(
      true,
    );
  });
});

describe('appendMany', () => {
  test('20 000 events in one transaction, then checkpoint and verify', () => {
    const { ledger } = filled(3, [3]);
    const grants = Array.from({ length: 20_000 }, (_, i) => ({
      kind: 'consent.granted',
      event: { consentId: `c-${i}`, provider: 'bank-a' },
      subjects: [i === 12_345 ? USCC_B : `91350100M${String(i).padStart(8, '0')}X`],
    }));
    const out = ledger.appendMany(grants);
    expect(out.length).toBe(20_000);
    expect(out[0]!.index).toBe(3);
    expect(out.at(-1)!.index).toBe(20_002);
    expect(ledger.size()).toBe(20_003);
    expect(ledger.entry(20_002).body).toMatchObject({ kind: 'consent.granted', consentId: 'c-19999' });
    expect(verifyCheckpoint(ledger.checkpoint(), KEY_NAME, publicKey).size).toBe(20_003);
    expect(ledger.verify()).toMatchObject({ ok: true, size: 20_003, checkpoints: 2 });
    expect(ledger.subjectEntries(USCC_B).map((e) => e.index)).toEqual([1, 12_348]);
  });

  test('all or nothing: a bad item is refused before any write, a failing write rolls back', () => {
    const { db, ledger } = filled(2);
    const ok = { kind: 'k', event: {} };
    try {
      ledger.appendMany([ok, ok, { kind: '', event: {} }]);
      expect.fail('expected an error');
    } catch (err) {
      expect(isCoded(err, 'SH_ERR_INVALID_ARGUMENT') && err.message).toContain('events[2].kind');
    }
    expect(ledger.size()).toBe(2);
    db.exec(
      `CREATE TRIGGER boom BEFORE INSERT ON ledger_entries WHEN NEW.idx = 4 BEGIN SELECT RAISE(ABORT, 'boom'); END`,
    );
    expect(() => ledger.appendMany([ok, ok, ok])).toThrow(/boom/);
    expect(ledger.size()).toBe(2);
    db.exec('DROP TRIGGER boom');
    db.exec('BEGIN'); // nests inside a caller's transaction
    ledger.appendMany([ok, ok]);
    db.exec('COMMIT');
    expect(ledger.verify()).toMatchObject({ ok: true, size: 4 });
  });
});

describe('access report', () => {
  test('subjectEntries returns every entry that touched a USCC, in order', () => {
    const { ledger } = open();
    ledger.append('consent.granted', { consentId: 'c1' }, [USCC_A]);
    ledger.append('job.requested', { jobId: 'j1' }, [USCC_A, USCC_B, USCC_A]);
    ledger.append('model.approved', { modelId: 'm1' });
    ledger.append('job.result', { jobId: 'j1' }, [USCC_B]);
    expect(ledger.subjectEntries(USCC_A).map((e) => [e.index, e.kind])).toEqual([
      [0, 'consent.granted'],
      [1, 'job.requested'],
    ]);
    const b = ledger.subjectEntries(USCC_B);
    expect(b.map((e) => e.index)).toEqual([1, 3]);
    expect(b[1]).toEqual({
      index: 3,
      kind: 'job.result',
      at: '2025-01-01T00:00:03.000Z',
      body: { kind: 'job.result', at: '2025-01-01T00:00:03.000Z', jobId: 'j1' },
    });
    expect(ledger.subjectEntries('91000000000000000X')).toEqual([]);
  });
});

describe('misuse is a coded error', () => {
  test('options, arguments and reserved members', () => {
    const db = new DatabaseSync(':memory:');
    const other = ed25519.keygen(new Uint8Array(32).fill(5));
    expectCode(
      'SH_ERR_INVALID_ARGUMENT',
      () => new Ledger(db, { origin: ORIGIN, keyName: KEY_NAME, secretKey: other.secretKey, publicKey }),
    );
    expectCode('SH_ERR_INVALID_ARGUMENT', () => new Ledger(db, { origin: 'a\nb', keyName: KEY_NAME, publicKey }));
    expectCode('SH_ERR_INVALID_ARGUMENT', () => new Ledger(db, { origin: ORIGIN, keyName: 'has space', publicKey }));
    expectCode(
      'SH_ERR_INVALID_ARGUMENT',
      () => new Ledger(db, { origin: ORIGIN, keyName: KEY_NAME, publicKey: publicKey.slice(1) }),
    );
    const { ledger } = filled(3);
    expectCode('SH_ERR_INVALID_ARGUMENT', () => ledger.append('k', { kind: 'spoofed' }));
    expectCode('SH_ERR_INVALID_ARGUMENT', () => ledger.append('k', { at: '1970-01-01T00:00:00Z' }));
    expectCode('SH_ERR_INVALID_ARGUMENT', () => ledger.append('k', [] as unknown as Record<string, unknown>));
    expectCode('SH_ERR_INVALID_ARGUMENT', () => ledger.append('k', { n: Number.NaN }));
    expectCode('SH_ERR_INVALID_ARGUMENT', () => ledger.append('k', {}, ['']));
    expectCode('SH_ERR_NOT_FOUND', () => ledger.entry(3));
    expectCode('SH_ERR_INVALID_ARGUMENT', () => ledger.entry(-1));
    expectCode('SH_ERR_INVALID_ARGUMENT', () => ledger.root(4));
    expectCode('SH_ERR_INVALID_ARGUMENT', () => ledger.inclusionProof(3));
    expectCode('SH_ERR_INVALID_ARGUMENT', () => ledger.consistencyProof(2, 4));
    expectCode('SH_ERR_INVALID_ARGUMENT', () => ledger.subjectEntries(''));
    const verifyOnly = open(new DatabaseSync(':memory:'), {}).ledger;
    expectCode('SH_ERR_INVALID_ARGUMENT', () => verifyOnly.checkpoint());
    expect(ledger.size()).toBe(3);
  });
});

/** Every leaf hash, read straight from the rows (the reference functions run over these). */
function storedLeaves(db: DatabaseSync): Uint8Array[] {
  return (
    db.prepare('SELECT leaf_hash FROM ledger_entries ORDER BY idx').all() as Array<{ leaf_hash: Uint8Array }>
  ).map((r) => r.leaf_hash);
}

/** Roots, inclusion and consistency proofs of `ledger` equal merkle.ts's over `leaves`, for sizes in `sizes`. */
function expectReference(ledger: Ledger, leaves: readonly Uint8Array[], sizes: readonly number[]): void {
  const hex = (xs: readonly Uint8Array[]) => xs.map((x) => Buffer.from(x).toString('hex')).join(',');
  for (const size of sizes) {
    expect(hex([ledger.root(size)]), `root ${size}`).toBe(hex([rootFromLeafHashes(leaves.slice(0, size))]));
    for (let i = 0; i < size; i += Math.max(1, Math.floor(size / 7))) {
      expect(hex(ledger.inclusionProof(i, size)), `path ${i}/${size}`).toBe(hex(refInclusion(leaves, i, size)));
    }
    for (let m = 0; m <= size; m += Math.max(1, Math.floor(size / 7))) {
      expect(hex(ledger.consistencyProof(m, size)), `proof ${m}→${size}`).toBe(hex(refConsistency(leaves, m, size)));
    }
  }
}

describe('stored tree nodes (ledger_nodes)', () => {
  test('one row per complete perfect subtree of level ≥ 1, each the MTH of its leaves', () => {
    const { db } = filled(11);
    const leaves = storedLeaves(db);
    const rows = db.prepare('SELECT level, idx, hash FROM ledger_nodes ORDER BY level, idx').all() as Array<{
      level: number;
      idx: number;
      hash: Uint8Array;
    }>;
    expect(rows.map((r) => [r.level, r.idx])).toEqual([
      [1, 0],
      [1, 1],
      [1, 2],
      [1, 3],
      [1, 4],
      [2, 0],
      [2, 1],
      [3, 0],
    ]);
    for (const r of rows)
      expect(r.hash).toEqual(rootFromLeafHashes(leaves.slice(r.idx * 2 ** r.level, (r.idx + 1) * 2 ** r.level)));
  });

  test('a node completed by entries new since the checkpoint that differs from their bodies: checkpoint() refuses', () => {
    const { db, ledger } = filled(10, [10]);
    for (let i = 0; i < 6; i++) ledger.append('job.result', { jobId: `r${i}` }); // completes (1, 5), (1, 6), (2, 3), …
    db.prepare('UPDATE ledger_nodes SET hash = ? WHERE level = 1 AND idx = 5').run(new Uint8Array(32).fill(1));
    expectCode('SH_ERR_LEDGER_TAMPERED', () => ledger.checkpoint());
    expectCode('SH_ERR_LEDGER_TAMPERED', () => open(db).ledger.checkpoint());
    expect(ledger.verify()).toMatchObject({ ok: false, index: 10, code: 'SH_ERR_LEDGER_TAMPERED' });
    db.prepare('DELETE FROM ledger_nodes WHERE level = 2 AND idx = 3').run(); // missing rather than altered
    db.prepare('UPDATE ledger_nodes SET hash = ? WHERE level = 1 AND idx = 5').run(
      rootFromLeafHashes(storedLeaves(db).slice(10, 12)),
    );
    expectCode('SH_ERR_LEDGER_TAMPERED', () => ledger.checkpoint());
    expect(ledger.verify()).toMatchObject({ ok: false, index: 12, code: 'SH_ERR_LEDGER_TAMPERED' });
  });

  test('a missing node the checkpointed root is made of: checkpoint() refuses; verify() names it', () => {
    const { db, ledger } = filled(10, [10]);
    ledger.append('job.result', {});
    db.prepare('DELETE FROM ledger_nodes WHERE level = 3 AND idx = 0').run();
    expectCode('SH_ERR_LEDGER_TAMPERED', () => open(db).ledger.checkpoint());
    const r = open(db).ledger.verify();
    expect(r).toMatchObject({ ok: false, index: 0, code: 'SH_ERR_LEDGER_TAMPERED' });
    expect(r.ok === false && r.reason).toContain('(level 3, index 0) over entries 0..7 is missing');
  });

  test('a node off the checkpoint frontier rewritten: checkpoint() does not read it (O(log n)); verify() and proofs expose it', () => {
    const { db, ledger } = filled(10, [10]);
    db.prepare('UPDATE ledger_nodes SET hash = ? WHERE level = 1 AND idx = 1').run(new Uint8Array(32).fill(2));
    const fresh = open(db).ledger; // no cache: serves the altered node
    ledger.append('job.result', {});
    const cp = verifyCheckpoint(ledger.checkpoint(), KEY_NAME, publicKey);
    expect(cp.rootHash).toEqual(rootFromLeafHashes(storedLeaves(db)));
    expect(verifyInclusion(fresh.entry(0).leafHash, 0, 11, fresh.inclusionProof(0, 11), cp.rootHash)).toBe(false);
    const r = fresh.verify();
    expect(r).toMatchObject({ ok: false, index: 2, code: 'SH_ERR_LEDGER_TAMPERED' });
    expect(r.ok === false && r.reason).toContain('(level 1, index 1) does not match entries 2..3');
  });

  test('nodes past the last entry: verify() reports them, appendMany() refuses', () => {
    const { db, ledger } = filled(12);
    db.prepare('DELETE FROM ledger_entries WHERE idx >= 10').run();
    const r = ledger.verify();
    expect(r).toMatchObject({ ok: false, code: 'SH_ERR_LEDGER_TAMPERED' });
    expect(r.ok === false && r.reason).toContain('is not part of the tree of 10 entries');
    expectCode('SH_ERR_LEDGER_TAMPERED', () => ledger.append('job.result', {}));
    expect(ledger.size()).toBe(10);
    const junk = filled(4); // a forged node above level 1, where a new leaf will land
    junk.db.prepare('INSERT INTO ledger_nodes(level, idx, hash) VALUES (2, 1, ?)').run(new Uint8Array(32));
    expectCode('SH_ERR_LEDGER_TAMPERED', () =>
      junk.ledger.appendMany(Array.from({ length: 4 }, () => ({ kind: 'k', event: {} }))),
    );
    expect(junk.ledger.size()).toBe(4);
  });

  test('a database from before the node table is backfilled on first use and gives the same answers', () => {
    const { db, ledger } = filled(37, [20, 37]);
    const leaves = storedLeaves(db);
    const before = db.prepare('SELECT level, idx, hash FROM ledger_nodes ORDER BY level, idx').all();
    db.exec('DROP TABLE ledger_nodes'); // the old schema
    const migrated = open(db).ledger;
    expectReference(migrated, leaves, [0, 1, 20, 36, 37]);
    expect(db.prepare('SELECT level, idx, hash FROM ledger_nodes ORDER BY level, idx').all()).toEqual(before);
    expect(migrated.verify()).toMatchObject({ ok: true, size: 37, checkpoints: 2 });
    migrated.append('job.result', {});
    expect(verifyCheckpoint(migrated.checkpoint(), KEY_NAME, publicKey).size).toBe(38);
    expect(ledger.root()).toEqual(migrated.root());
  });

  test('a node table shorter than the ledger (a node-less writer appended) is topped up, then checked by checkpoint()', () => {
    const { db } = filled(45, [21]);
    const leaves = storedLeaves(db);
    db.exec('DELETE FROM ledger_nodes WHERE (idx + 1) * (1 << level) > 22'); // as if entries 22..44 came without nodes
    const l = open(db).ledger;
    expectReference(l, leaves, [21, 22, 30, 45]);
    expect(l.verify()).toMatchObject({ ok: true, size: 45 });
    expect(verifyCheckpoint(l.checkpoint(), KEY_NAME, publicKey).rootHash).toEqual(rootFromLeafHashes(leaves));
    // A tampered leaf hash in the backfilled range is caught by the next checkpoint: the backfill trusts no row.
    const t = filled(12, [12]);
    t.db.exec('DROP TABLE ledger_nodes');
    t.db.prepare('UPDATE ledger_entries SET leaf_hash = ? WHERE idx = 5').run(new Uint8Array(32));
    expectCode('SH_ERR_LEDGER_INCONSISTENT', () => open(t.db).ledger.checkpoint());
  });

  test('a caller transaction that rolls back cannot leave its nodes in the cache', () => {
    const { db, ledger } = filled(6, [6]);
    const other = open(db).ledger;
    db.exec('BEGIN');
    ledger.appendMany(Array.from({ length: 5 }, (_, i) => ({ kind: 'rolled.back', event: { i } })));
    ledger.root();
    ledger.inclusionProof(9); // the cache now holds nodes over rolled-back leaves
    db.exec('ROLLBACK');
    expectReference(ledger, storedLeaves(db), [6]);
    ledger.appendMany(Array.from({ length: 5 }, (_, i) => ({ kind: 'kept', event: { i } }))); // same count, other leaves
    db.exec('BEGIN');
    ledger.append('rolled.back', {});
    ledger.root();
    db.exec('ROLLBACK');
    other.append('by.another.instance', {}); // same size as the rolled-back cache: the last leaf differs
    expectReference(ledger, storedLeaves(db), [6, 11, 12]);
    expect(verifyCheckpoint(ledger.checkpoint(), KEY_NAME, publicKey).rootHash).toEqual(
      rootFromLeafHashes(storedLeaves(db)),
    );
    expect(ledger.verify()).toMatchObject({ ok: true, size: 12 });
  });

  test('the latest checkpoint is re-verified whenever its row differs from the one this instance signed', () => {
    const { db, ledger } = filled(6, [6]);
    expect(ledger.latestCheckpoint()!.size).toBe(6);
    db.prepare('UPDATE ledger_checkpoints SET root = ? WHERE size = 6').run(new Uint8Array(32));
    expectCode('SH_ERR_LEDGER_TAMPERED', () => ledger.latestCheckpoint());
    expectCode('SH_ERR_LEDGER_TAMPERED', () => ledger.checkpoint());
  });

  test('checkpoint cost does not grow with the ledger: counted hashes and row reads at ~1 000 and ~33 000 entries', () => {
    const counters: LedgerCounters = { leafHashes: 0, nodeHashes: 0, rowsRead: 0 };
    const { ledger } = open(undefined, undefined, counters);
    const batch = (n: number, tag: string) =>
      Array.from({ length: n }, (_, i) => ({ kind: 'job.result', event: { tag, i } }));
    const costOfCheckpointAfter = (fresh: number): LedgerCounters => {
      ledger.appendMany(batch(fresh, `c${ledger.size()}`));
      const before = { ...counters };
      ledger.checkpoint();
      return {
        leafHashes: counters.leafHashes - before.leafHashes,
        nodeHashes: counters.nodeHashes - before.nodeHashes,
        rowsRead: counters.rowsRead - before.rowsRead,
      };
    };
    ledger.appendMany(batch(990, 'a'));
    ledger.checkpoint();
    const small = costOfCheckpointAfter(10); // 1 000 entries
    for (let i = 0; i < 4; i++) {
      ledger.appendMany(batch(8_000, `b${i}`));
      ledger.checkpoint();
    }
    const large = costOfCheckpointAfter(10); // 33 000 entries
    expect(ledger.size()).toBe(33_010);
    for (const c of [small, large]) {
      expect(c.leafHashes).toBe(10); // only the new entries' bodies are re-hashed
      expect(c.nodeHashes).toBeLessThanOrEqual(10 + 4 * 16); // their nodes + O(log n) folds and the consistency proof
      expect(c.rowsRead).toBeLessThanOrEqual(10 + 4 * 16 + 10);
    }
    expect(Math.abs(large.rowsRead - small.rowsRead)).toBeLessThanOrEqual(4 * 6); // log2(33 000) − log2(1 000) ≈ 5
    expect(Math.abs(large.nodeHashes - small.nodeHashes)).toBeLessThanOrEqual(4 * 6);
    // Proofs on a fresh instance (empty cache) read O(log n) rows, not the ledger.
    const reads = counters.rowsRead;
    ledger.inclusionProof(12_345);
    ledger.consistencyProof(20_000);
    expect(counters.rowsRead - reads).toBeLessThanOrEqual(4 * 16);
  });
});
