// The Ledger class (DESIGN §8): appends, C2SP checkpoints that never contradict an earlier one, RFC 9162 proofs
// checked with merkle.ts, verify() locating tampering, and the per-USCC access report.
import { DatabaseSync } from 'node:sqlite';
import { ed25519 } from '@noble/curves/ed25519.js';
import { describe, expect, test } from 'vitest';
import { isCoded, type ErrorCode } from '../engine/errors.ts';
import { canonicalize } from '../engine/jcs.ts';
import { signCheckpoint, verifyCheckpoint } from '../engine/ledger/checkpoint.ts';
import { Ledger } from '../engine/ledger/ledger.ts';
import { EMPTY_ROOT, leafHash, verifyConsistency, verifyInclusion } from '../engine/ledger/merkle.ts';
import { expectCode as expectCodeOf } from './fixtures/expect.ts';
const expectCode = (code: ErrorCode, f: () => unknown): void => expectCodeOf(f, code);

const ORIGIN = 'safehouse.test/ledger';
const KEY_NAME = 'safehouse.test/ledger';
const { secretKey, publicKey } = ed25519.keygen(new Uint8Array(32).fill(3));
const USCC_A = '91350100M000100Y43';
const USCC_B = '91110000100000000X';
const utf8 = new TextEncoder();

function open(db = new DatabaseSync(':memory:'), keys: { secretKey?: Uint8Array; publicKey?: Uint8Array } = { secretKey }) {
  let tick = 0;
  const now = (): Date => new Date(Date.UTC(2025, 0, 1) + 1000 * tick++); // pinned clock: no wall-clock in tests
  const ledger = new Ledger(db, { origin: ORIGIN, keyName: KEY_NAME, publicKey, ...keys, now });
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
  db.prepare('UPDATE ledger_entries SET body = ?, leaf_hash = ? WHERE idx = ?').run(forged, leafHash(utf8.encode(forged)), idx);
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
    expect(row.body).toBe(canonicalize({ kind: 'consent.granted', at: row.at, consentId: 'c1', scope: { fields: ['revenue'] } }));
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
    expect(end.ledger.verify()).toMatchObject({ ok: false, index: 14, checkpointSize: 15, code: 'SH_ERR_LEDGER_TAMPERED' });
  });

  test('(d) a checkpoint note with a forged signature', () => {
    const { db, ledger } = filled(15, [10, 15]);
    const { note } = db.prepare('SELECT note FROM ledger_checkpoints WHERE size = 10').get() as { note: string };
    const blob = note.slice(note.lastIndexOf(' ') + 1, -1);
    const bytes = Buffer.from(blob, 'base64');
    bytes[20]! ^= 0x40;
    db.prepare('UPDATE ledger_checkpoints SET note = ? WHERE size = 10').run(note.replace(blob, bytes.toString('base64')));
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
    db.exec(`UPDATE ledger_checkpoints SET root = (SELECT root FROM ledger_checkpoints c WHERE c.size != ledger_checkpoints.size)`);
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
  test('refuses after an old row was rewritten (same instance, fresh instance, same size)', () => {
    const { db, ledger } = filled(10, [10]);
    ledger.root(); // fill the cache before the rewrite: checkpoint() must not trust it
    rewrite(db, 3);
    expectCode('SH_ERR_LEDGER_INCONSISTENT', () => ledger.checkpoint()); // same size, different root
    ledger.append('job.result', {});
    expectCode('SH_ERR_LEDGER_INCONSISTENT', () => ledger.checkpoint());
    expectCode('SH_ERR_LEDGER_INCONSISTENT', () => open(db).ledger.checkpoint());
    expect(db.prepare('SELECT COUNT(*) AS n FROM ledger_checkpoints').get()).toEqual({ n: 1 });
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
        expect(verifyInclusion(ledger.entry(i).leafHash, i, size, ledger.inclusionProof(i, size), root), `${i}/${size}`).toBe(true);
      }
      for (let m = 0; m <= size; m++) {
        expect(verifyConsistency(m, size, ledger.consistencyProof(m, size), ledger.root(m), root), `${m}→${size}`).toBe(true);
      }
    }
  });

  test('proofs connect an entry and an old checkpoint to the latest signed checkpoint', () => {
    const { ledger } = filled(9, [5]);
    const old = ledger.latestCheckpoint()!;
    const cp = verifyCheckpoint(ledger.checkpoint(), KEY_NAME, publicKey);
    expect(verifyInclusion(ledger.entry(7).leafHash, 7, cp.size, ledger.inclusionProof(7), cp.rootHash)).toBe(true);
    expect(verifyConsistency(old.size, cp.size, ledger.consistencyProof(old.size), old.rootHash, cp.rootHash)).toBe(true);
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
    db.exec(`CREATE TRIGGER boom BEFORE INSERT ON ledger_entries WHEN NEW.idx = 4 BEGIN SELECT RAISE(ABORT, 'boom'); END`);
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
    expect(ledger.subjectEntries(USCC_A).map((e) => [e.index, e.kind])).toEqual([[0, 'consent.granted'], [1, 'job.requested']]);
    const b = ledger.subjectEntries(USCC_B);
    expect(b.map((e) => e.index)).toEqual([1, 3]);
    expect(b[1]).toEqual({ index: 3, kind: 'job.result', at: '2025-01-01T00:00:03.000Z', body: { kind: 'job.result', at: '2025-01-01T00:00:03.000Z', jobId: 'j1' } });
    expect(ledger.subjectEntries('91000000000000000X')).toEqual([]);
  });
});

describe('misuse is a coded error', () => {
  test('options, arguments and reserved members', () => {
    const db = new DatabaseSync(':memory:');
    const other = ed25519.keygen(new Uint8Array(32).fill(5));
    expectCode('SH_ERR_INVALID_ARGUMENT', () => new Ledger(db, { origin: ORIGIN, keyName: KEY_NAME, secretKey: other.secretKey, publicKey }));
    expectCode('SH_ERR_INVALID_ARGUMENT', () => new Ledger(db, { origin: 'a\nb', keyName: KEY_NAME, publicKey }));
    expectCode('SH_ERR_INVALID_ARGUMENT', () => new Ledger(db, { origin: ORIGIN, keyName: 'has space', publicKey }));
    expectCode('SH_ERR_INVALID_ARGUMENT', () => new Ledger(db, { origin: ORIGIN, keyName: KEY_NAME, publicKey: publicKey.slice(1) }));
    const { ledger } = filled(3);
    expectCode('SH_ERR_INVALID_ARGUMENT', () => ledger.append('k', { kind: 'spoofed' }));
    expectCode('SH_ERR_INVALID_ARGUMENT', () => ledger.append('k', { at: '1970-01-01T00:00:00Z' }));
    expectCode('SH_ERR_INVALID_ARGUMENT', () => ledger.append('k', [] as unknown as Record<string, unknown>));
    expectCode('SH_ERR_INVALID_ARGUMENT', () => ledger.append('k', { n: Number.NaN }));
    expectCode('SH_ERR_INVALID_ARGUMENT', () => ledger.append('k', {}, [''] ));
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
