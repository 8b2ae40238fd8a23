/**
 * End-to-end ledger run: a real `Ledger` (engine/ledger/ledger.ts) on a fresh node:sqlite database file (WAL, as
 * engine/store/store.ts opens it) in a temporary directory, signing with a fresh Ed25519 key.
 *
 *  - append: `leaves` consent.granted events (the engine's shape: consent id, a USCC subject from sandbox/uscc.ts,
 *    grantee, purpose, categories, operations, validity, a 64-byte signature) with `appendMany` in batches of
 *    `batch` (default 1 000), one checkpoint after each batch, as the engine checkpoints after each job;
 *  - proofs: an inclusion proof for every leaf against the final size;
 *  - checkpoint: the per-batch checkpoints plus one final checkpoint (nothing new by then: it returns the latest
 *    note after re-checking the stored tree against it).
 * engineSeconds = append + checkpoint + proofs. Outside it: generating the events, verifying every proof with
 * merkle.ts verifyInclusion against the final signed checkpoint (verifyProofs), a full `Ledger.verify()`
 * (ledgerVerify), and the plaintext baseline: the same leaf bytes hashed in memory with no storage — every leaf hash
 * and one RFC 6962 root (rootFromLeafHashes). The baseline is the bare hashing: serving n inclusion proofs from the
 * pure merkle.ts functions would be O(n) each, O(n²) in all, so it is not part of it.
 *
 * `node bench/e2e-ledger.ts [leaves]` (default 100 000) prints the result as JSON; BENCH_E2E_JSON=path also writes it.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DatabaseSync } from 'node:sqlite';
import { mulberry32 } from '../core/rng.ts';
import { randomUscc } from '../sandbox/uscc.ts';
import { ed25519KeyPair } from '../core/sign.ts';
import { verifyCheckpoint } from '../engine/ledger/checkpoint.ts';
import { Ledger, type LedgerCounters, type LedgerEvent } from '../engine/ledger/ledger.ts';
import { equalBytes, leafHash, rootFromLeafHashes, verifyInclusion } from '../engine/ledger/merkle.ts';
import type { E2eResult } from './report.ts';

const ORIGIN = 'safehouse.bench/ledger';
const BANK = 'bank_bench';
const utf8 = new TextEncoder();

export async function runLedgerE2e(opts: {
  leaves: number;
  batch?: number;
  log?: (line: string) => void;
}): Promise<E2eResult> {
  const leaves = opts.leaves;
  const batch = opts.batch ?? 1000;
  const log = opts.log ?? (() => {});
  if (!Number.isSafeInteger(leaves) || leaves < 1)
    throw new Error(`leaves: expected a positive integer, got ${leaves}`);
  if (!Number.isSafeInteger(batch) || batch < 1) throw new Error(`batch: expected a positive integer, got ${batch}`);
  const phases: Record<string, number> = {};
  const seconds = (t0: number): number => (performance.now() - t0) / 1000;

  // --- the events, made one batch at a time just before it is appended (setup, not timed as engine work)
  const rng = mulberry32(20250101);
  const hex = (bytes: number): string =>
    Buffer.from(Array.from({ length: bytes }, () => Math.floor(rng() * 256))).toString('hex');
  const makeEvents = (from: number, to: number): LedgerEvent[] =>
    Array.from({ length: to - from }, (_, k) => {
      const subject = randomUscc(rng);
      return {
        kind: 'consent.granted',
        event: {
          consentId: `consent-${String(from + k).padStart(8, '0')}-${hex(4)}`,
          subject,
          grantee: BANK,
          purpose: 'sme_credit_line',
          categories: ['tax', 'utility'],
          operations: ['score'],
          notBefore: '2025-01-01T00:00:00.000Z',
          notAfter: '2026-01-01T00:00:00.000Z',
          signature: hex(64),
        },
        subjects: [subject],
      };
    });
  phases.generate = 0;
  let t = 0;

  const dir = mkdtempSync(join(tmpdir(), 'safehouse-ledger-e2e-'));
  try {
    const db = new DatabaseSync(join(dir, 'ledger.db'));
    db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;');
    const { secretKey, publicKey } = ed25519KeyPair();
    const counters: LedgerCounters = { leafHashes: 0, nodeHashes: 0, rowsRead: 0 };
    const ledger = new Ledger(db, { origin: ORIGIN, keyName: ORIGIN, secretKey, publicKey, counters });

    // --- append, one checkpoint per batch
    const leafHashes: Uint8Array[] = [];
    const checkpointMs: Array<{ size: number; ms: number }> = [];
    let appendSeconds = 0;
    let checkpointSeconds = 0;
    let signatures = 0;
    for (let from = 0; from < leaves; from += batch) {
      t = performance.now();
      const events = makeEvents(from, Math.min(leaves, from + batch));
      phases.generate += seconds(t);
      t = performance.now();
      for (const r of ledger.appendMany(events)) leafHashes.push(r.leafHash);
      appendSeconds += seconds(t);
      t = performance.now();
      ledger.checkpoint();
      const ms = performance.now() - t;
      checkpointSeconds += ms / 1000;
      signatures++;
      checkpointMs.push({ size: ledger.size(), ms });
      if (checkpointMs.length % 20 === 0)
        log(`ledger e2e: ${ledger.size()} leaves appended, last checkpoint ${ms.toFixed(2)} ms`);
    }
    const n = ledger.size();

    // --- a proof for every leaf (timed), verified against the latest signed checkpoint (timed apart)
    const cp = verifyCheckpoint(ledger.latestCheckpoint()!.note, ORIGIN, publicKey);
    let proofSeconds = 0;
    let verifySeconds = 0;
    let proofNodes = 0;
    let badProofs = 0;
    const CHUNK = 1000;
    for (let from = 0; from < n; from += CHUNK) {
      const to = Math.min(n, from + CHUNK);
      t = performance.now();
      const proofs: Uint8Array[][] = [];
      for (let i = from; i < to; i++) proofs.push(ledger.inclusionProof(i, n));
      proofSeconds += seconds(t);
      t = performance.now();
      for (let i = from; i < to; i++) {
        const p = proofs[i - from]!;
        proofNodes += p.length;
        if (!verifyInclusion(leafHashes[i]!, i, n, p, cp.rootHash)) badProofs++;
      }
      verifySeconds += seconds(t);
    }
    log(`ledger e2e: ${n} inclusion proofs in ${proofSeconds.toFixed(2)} s, verified in ${verifySeconds.toFixed(2)} s`);

    // --- the final checkpoint
    t = performance.now();
    const finalNote = ledger.checkpoint();
    const finalMs = performance.now() - t;
    checkpointSeconds += finalMs / 1000;
    phases.append = appendSeconds;
    phases.checkpoint = checkpointSeconds;
    phases.proofs = proofSeconds;
    phases.verifyProofs = verifySeconds;
    const engineSeconds = appendSeconds + checkpointSeconds + proofSeconds;
    const measured = { ...counters };

    // --- full self-check (O(n), not engine work)
    t = performance.now();
    const report = ledger.verify();
    phases.ledgerVerify = seconds(t);

    // --- plaintext baseline: the same leaf bytes, hashed in memory
    const bodies = (db.prepare('SELECT body FROM ledger_entries ORDER BY idx').all() as Array<{ body: string }>).map(
      (r) => r.body,
    );
    t = performance.now();
    const plainLeaves = bodies.map((b) => leafHash(utf8.encode(b)));
    const plainRoot = rootFromLeafHashes(plainLeaves);
    const plaintextSeconds = seconds(t);
    phases.plaintext = plaintextSeconds;

    // --- sizes
    const pageSize = Number((db.prepare('PRAGMA page_size').get() as { page_size: number }).page_size);
    const pages = Number((db.prepare('PRAGMA page_count').get() as { page_count: number }).page_count);
    const tableBytes = new Map<string, number>();
    try {
      for (const r of db.prepare('SELECT name, SUM(pgsize) AS bytes FROM dbstat GROUP BY name').all() as Array<{
        name: string;
        bytes: number;
      }>) {
        tableBytes.set(r.name, Number(r.bytes));
      }
    } catch {
      // dbstat not compiled in: per-table sizes are left out
    }
    db.close();

    const final = verifyCheckpoint(finalNote, ORIGIN, publicKey);
    const sameLeaves = plainLeaves.length === n && plainLeaves.every((h, i) => equalBytes(h, leafHashes[i]!));
    const rootOk = equalBytes(final.rootHash, plainRoot) && equalBytes(cp.rootHash, plainRoot) && final.size === n;
    const ok = n === leaves && badProofs === 0 && sameLeaves && rootOk && report.ok;
    const detail = [
      `${n - badProofs}/${n} inclusion proofs verified with merkle.ts verifyInclusion against the signed checkpoint of size ${cp.size} (all, none sampled)`,
      `checkpoint root ${rootOk ? '=' : '≠'} rootFromLeafHashes over the leaves re-hashed from their bodies`,
      `leaf hashes from appendMany ${sameLeaves ? '=' : '≠'} the re-hashed bodies`,
      report.ok
        ? `Ledger.verify() ok (${report.checkpoints} checkpoints, stored nodes match)`
        : `Ledger.verify() failed: ${report.code} ${report.reason}`,
    ].join('; ');

    const median = (xs: number[]): number => {
      const s = [...xs].sort((a, b) => a - b);
      return s.length === 0
        ? Number.NaN
        : s.length % 2
          ? s[(s.length - 1) / 2]!
          : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
    };
    const round = (x: number, digits = 3): number => Number(x.toFixed(digits));
    const first10 = checkpointMs.slice(0, 10);
    const last10 = checkpointMs.slice(-10);
    const extra: Record<string, number | string> = {
      appendUsPerLeaf: round((appendSeconds / n) * 1e6),
      proofUsPerLeaf: round((proofSeconds / n) * 1e6),
      verifyProofUsPerLeaf: round((verifySeconds / n) * 1e6),
      meanProofLength: round(proofNodes / n, 2),
      checkpointMsFirstBatch: round(checkpointMs[0]!.ms),
      checkpointMsFirstBatchSize: checkpointMs[0]!.size,
      checkpointMsMedianFirst10Batches: round(median(first10.map((c) => c.ms))),
      checkpointMsMedianLast10Batches: round(median(last10.map((c) => c.ms))),
      checkpointMsLastBatch: round(checkpointMs.at(-1)!.ms),
      checkpointMsFinalNoNewEntries: round(finalMs),
      checkpointSizesCompared: `${first10[0]!.size}..${first10.at(-1)!.size} vs ${last10[0]!.size}..${last10.at(-1)!.size}`,
      dbBytesPerLeaf: round((pageSize * pages) / n, 1),
      'measured.sha256.leaf': measured.leafHashes,
      'measured.sha256.node': measured.nodeHashes,
      'measured.ed25519.sign': signatures,
      'measured.rowsRead': measured.rowsRead,
      engineVsPlaintext: round(engineSeconds / plaintextSeconds, 1),
    };
    for (const [name, key] of [
      ['ledger_entries', 'entriesBytesPerLeaf'],
      ['ledger_nodes', 'nodesBytesPerLeaf'],
      ['ledger_subjects', 'subjectsBytesPerLeaf'],
      ['ledger_subjects_uscc', 'subjectIndexBytesPerLeaf'],
      ['ledger_checkpoints', 'checkpointsBytesPerLeaf'],
    ] as const) {
      const b = tableBytes.get(name);
      if (b !== undefined) extra[key] = round(b / n, 1);
    }

    return {
      name: 'ledger',
      description:
        `A Ledger on a fresh SQLite file appends ${n} consent.granted events in batches of ${batch} with a signed checkpoint after each batch, ` +
        `serves an inclusion proof for every leaf against the final size, and checkpoints once more.`,
      size: { leaves: n, batch, batches: checkpointMs.length },
      engineSeconds: round(engineSeconds),
      phases: Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, round(v)])),
      ops: { 'sha256.leaf': n, 'sha256.node': n - 1, 'ed25519.sign': 1 },
      plaintextSeconds: round(plaintextSeconds),
      peakRssMiB: Number((process.resourceUsage().maxRSS / 1024).toFixed(1)),
      checks: { ok, detail },
      extra,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const leaves = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 100_000);
  const started = performance.now();
  const r = await runLedgerE2e({ leaves, log: (line) => console.error(line) });
  console.error(`ledger e2e: ${((performance.now() - started) / 1000).toFixed(1)} s wall in all`);
  console.log(JSON.stringify(r, null, 2));
  if (process.env.BENCH_E2E_JSON) writeFileSync(process.env.BENCH_E2E_JSON, JSON.stringify(r, null, 2) + '\n');
  if (!r.checks.ok) process.exitCode = 1;
}
