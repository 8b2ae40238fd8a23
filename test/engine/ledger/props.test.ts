// Property tests (fast-check) of engine/ledger/merkle.ts against a naive reference written straight from the
// definitions of RFC 6962 §2.1 (MTH), §2.1.1 (PATH) and §2.1.2 (PROOF / SUBPROOF): roots, inclusion and consistency
// proofs are byte-identical to the reference for random trees, every honest proof verifies, and any single flipped
// bit, wrong index or size, truncated or extended proof is rejected. Then the Ledger's incremental tree (stored
// nodes, cache) against those functions over random append histories, with rolled-back caller transactions, two
// instances over one database, and the old schema migrated.
import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { DatabaseSync } from 'node:sqlite';
import { ed25519 } from '@noble/curves/ed25519.js';
import { verifyCheckpoint } from '../../../engine/ledger/checkpoint.ts';
import { Ledger } from '../../../engine/ledger/ledger.ts';
import {
  consistencyProof,
  inclusionProof,
  leafHash,
  rootFromLeafHashes,
  verifyConsistency,
  verifyInclusion,
} from '../../../engine/ledger/merkle.ts';

const sha = (...parts: Uint8Array[]): Uint8Array => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};
const ONE = new Uint8Array([1]);
/** Largest power of two strictly smaller than n (n > 1). */
const split = (n: number): number => {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
};
/** MTH over leaf hashes (RFC 6962 §2.1; the leaf hashes are already 0x00-prefixed). */
function mth(d: readonly Uint8Array[]): Uint8Array {
  if (d.length === 0) return sha();
  if (d.length === 1) return d[0]!;
  const k = split(d.length);
  return sha(ONE, mth(d.slice(0, k)), mth(d.slice(k)));
}
/** PATH(m, D[n]) (RFC 6962 §2.1.1). */
function path(m: number, d: readonly Uint8Array[]): Uint8Array[] {
  if (d.length <= 1) return [];
  const k = split(d.length);
  return m < k ? [...path(m, d.slice(0, k)), mth(d.slice(k))] : [...path(m - k, d.slice(k)), mth(d.slice(0, k))];
}
/** SUBPROOF(m, D[n], b) (RFC 6962 §2.1.2). */
function subproof(m: number, d: readonly Uint8Array[], b: boolean): Uint8Array[] {
  const n = d.length;
  if (m === n) return b ? [] : [mth(d)];
  const k = split(n);
  return m <= k
    ? [...subproof(m, d.slice(0, k), b), mth(d.slice(k))]
    : [...subproof(m - k, d.slice(k), false), mth(d.slice(0, k))];
}
const proof = (m: number, d: readonly Uint8Array[]): Uint8Array[] =>
  m === 0 || m === d.length ? [] : subproof(m, d, true);

const hex = (xs: readonly Uint8Array[]) => xs.map((x) => Buffer.from(x).toString('hex'));
const tree = fc
  .integer({ min: 1, max: 200 })
  .chain((n) =>
    fc.tuple(fc.constant(n), fc.array(fc.uint8Array({ minLength: 0, maxLength: 40 }), { minLength: n, maxLength: n })),
  )
  // Distinct leaves (the index is appended): with equal leaves a proof for i may honestly verify at another index.
  .map(([, leaves]) => leaves.map((l, i) => leafHash(new Uint8Array([...l, i & 0xff, i >> 8]))));

describe('Merkle tree vs the RFC 6962 definitions (fast-check)', () => {
  test('roots and inclusion proofs equal the reference; honest proofs verify, tampered ones do not', () => {
    fc.assert(
      fc.property(tree, fc.nat(), fc.nat(), fc.nat(255), (leaves, a, b, bit) => {
        const size = 1 + (a % leaves.length);
        const index = b % size;
        const d = leaves.slice(0, size);
        const root = rootFromLeafHashes(d);
        expect(Buffer.from(root).toString('hex')).toBe(Buffer.from(mth(d)).toString('hex'));
        const p = inclusionProof(leaves, index, size);
        expect(hex(p)).toEqual(hex(path(index, d)));
        expect(verifyInclusion(d[index]!, index, size, p, root)).toBe(true);
        // Wrong leaf, index, size; a flipped bit in any node; truncated or extended: all rejected.
        expect(verifyInclusion(sha(d[index]!), index, size, p, root)).toBe(false);
        if (size > 1) expect(verifyInclusion(d[index]!, (index + 1) % size, size, p, root)).toBe(false);
        expect(verifyInclusion(d[index]!, index, size * 2, p, root)).toBe(false);
        if (p.length > 0) {
          const k = bit % p.length;
          const bad = p.map((x) => x.slice());
          bad[k]![bit % 32]! ^= 1 << (bit % 8);
          expect(verifyInclusion(d[index]!, index, size, bad, root)).toBe(false);
          expect(verifyInclusion(d[index]!, index, size, p.slice(0, -1), root)).toBe(false);
        }
        expect(verifyInclusion(d[index]!, index, size, [...p, root], root)).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  test('consistency proofs equal the reference; honest proofs verify, tampered ones do not', () => {
    fc.assert(
      fc.property(tree, fc.nat(), fc.nat(), fc.nat(255), (leaves, a, b, bit) => {
        const n = 1 + (a % leaves.length);
        const m = b % (n + 1);
        const oldRoot = rootFromLeafHashes(leaves.slice(0, m));
        const newRoot = rootFromLeafHashes(leaves.slice(0, n));
        const p = consistencyProof(leaves, m, n);
        expect(hex(p)).toEqual(hex(proof(m, leaves.slice(0, n))));
        expect(verifyConsistency(m, n, p, oldRoot, newRoot)).toBe(true);
        if (m > 0 && m < n) {
          const k = bit % p.length;
          const bad = p.map((x) => x.slice());
          bad[k]![bit % 32]! ^= 1 << (bit % 8);
          expect(verifyConsistency(m, n, bad, oldRoot, newRoot)).toBe(false);
          expect(verifyConsistency(m, n, p.slice(0, -1), oldRoot, newRoot)).toBe(false);
          expect(verifyConsistency(m, n, [...p, newRoot], oldRoot, newRoot)).toBe(false);
          expect(verifyConsistency(m, n, p, sha(oldRoot), newRoot)).toBe(false);
          expect(verifyConsistency(m, n, p, oldRoot, sha(newRoot))).toBe(false);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('Ledger (stored nodes + cache) vs merkle.ts over random histories (fast-check)', () => {
  const { secretKey, publicKey } = ed25519.keygen(new Uint8Array(32).fill(11));
  const NAME = 'safehouse.test/ledger';
  const open = (db: DatabaseSync): Ledger => {
    let tick = 0;
    return new Ledger(db, {
      origin: NAME,
      keyName: NAME,
      secretKey,
      publicKey,
      now: () => new Date(Date.UTC(2025, 0, 1) + tick++),
    });
  };
  const op = fc.record({
    writer: fc.integer({ min: 0, max: 1 }), // which of two Ledger instances over the same database appends
    count: fc.integer({ min: 0, max: 40 }),
    rollBack: fc.boolean(), // append inside a caller transaction that rolls back (after reading roots and proofs)
    checkpoint: fc.boolean(),
    reader: fc.integer({ min: 0, max: 1 }),
    a: fc.nat(),
    b: fc.nat(),
  });

  test('roots, inclusion and consistency proofs equal the reference after every step, and after migration', () => {
    let serial = 0;
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 14 }), fc.nat(), (ops, cut) => {
        const db = new DatabaseSync(':memory:');
        const ledgers = [open(db), open(db)];
        const leaves: Uint8Array[] = []; // committed leaf hashes: the reference
        const events = (n: number) =>
          Array.from({ length: n }, () => ({ kind: 'consent.granted', event: { serial: serial++ } }));
        const check = (l: Ledger, a: number, b: number): void => {
          const n = leaves.length;
          expect(l.size()).toBe(n);
          const size = a % (n + 1);
          expect(hex([l.root(size)])).toEqual(hex([rootFromLeafHashes(leaves.slice(0, size))]));
          expect(hex([l.root()])).toEqual(hex([rootFromLeafHashes(leaves)]));
          if (size > 0)
            expect(hex(l.inclusionProof(b % size, size))).toEqual(hex(inclusionProof(leaves, b % size, size)));
          if (n > 0) expect(hex(l.inclusionProof(b % n))).toEqual(hex(inclusionProof(leaves, b % n, n)));
          expect(hex(l.consistencyProof(b % (size + 1), size))).toEqual(
            hex(consistencyProof(leaves, b % (size + 1), size)),
          );
          expect(hex(l.consistencyProof(size))).toEqual(hex(consistencyProof(leaves, size, n)));
        };
        for (const o of ops) {
          const l = ledgers[o.writer]!;
          if (o.rollBack) {
            db.exec('BEGIN');
            l.appendMany(events(o.count));
            const n = l.size();
            if (n > 0) l.inclusionProof(o.a % n); // fill the cache with nodes over leaves about to vanish
            l.root();
            db.exec('ROLLBACK');
          } else {
            leaves.push(...l.appendMany(events(o.count)).map((r) => r.leafHash));
          }
          if (o.checkpoint) {
            expect(verifyCheckpoint(l.checkpoint(), NAME, publicKey).rootHash).toEqual(rootFromLeafHashes(leaves));
          }
          check(ledgers[o.reader]!, o.a, o.b);
        }
        expect(ledgers[0]!.verify()).toMatchObject({ ok: true, size: leaves.length });
        // The old schema (no node table), and a node table that stops short (a node-less writer appended after k).
        const k = cut % (leaves.length + 1);
        db.exec(`DELETE FROM ledger_nodes WHERE (idx + 1) * (1 << level) > ${k}`);
        check(open(db), cut, k);
        db.exec('DROP TABLE ledger_nodes');
        const migrated = open(db);
        check(migrated, k, cut);
        expect(migrated.verify()).toMatchObject({ ok: true, size: leaves.length });
        migrated.checkpoint();
        for (const l of ledgers) check(l, cut, k); // the old instances' caches still agree with the rebuilt table
      }),
      { numRuns: 120 },
    );
  });
});
