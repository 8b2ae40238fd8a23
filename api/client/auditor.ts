/**
 * Client mode, the auditor's side: verify the whole ledger on its own machine (every leaf and root recomputed, each new
 * checkpoint required to extend the last one it accepted), and replay a job on a local replica built from the verified
 * ledger, the job's bundle and hash-checked blobs.
 */
import { join } from 'node:path';
import { existsSync, readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { Engine } from '../../engine/engine.ts';
import { sha256Hex } from '../../core/hash.ts';
import { replayJob, type ReplayReport } from '../../engine/audit/replay.ts';
import { SafehouseError, fail, type ErrorCode } from '../../core/errors.ts';
import type { AuditBundle } from '../server/bundle.ts';
import { hexToBytes } from '../../core/sign.ts';
import { leafHash, rootsAtSizes, equalBytes, verifyConsistency } from '../../engine/ledger/merkle.ts';
import { verifyCheckpoint } from '../../engine/ledger/checkpoint.ts';
import { writeSecret } from '../keys.ts';
import { Client } from './http.ts';
import { BLOB_BATCH, readFrames } from '../wire.ts';

// ---------------------------------------------------------------- auditor

/**
 * Verify the ledger on the auditor's side: fetch every entry and checkpoint, recompute leaf hashes from the canonical
 * bodies and the RFC 6962 roots at each checkpoint size, and check each checkpoint's signature against the engine key
 * (pinned with `engineKey`, else the key in ledger entry 0 must equal the key the server announces).
 */
export async function auditVerify(
  auditor: Client,
  engineKey?: string,
  state?: string,
): Promise<
  | { ok: true; size: number; checkpoints: number; root: string; consistentWith?: number }
  | { ok: false; code: ErrorCode; reason: string; index?: number; checkpointSize?: number }
> {
  const r = await auditVerifyOnce(auditor, engineKey);
  if (!r.ok || !state) return r;
  // The auditor keeps the last checkpoint it accepted and requires every new one to extend it (RFC 9162 §2.1.4).
  let consistentWith: number | undefined;
  if (existsSync(state)) {
    const last = JSON.parse(readFileSync(state, 'utf8')) as { size: number; root: string };
    if (last.size > r.size)
      return {
        ok: false,
        code: 'SH_ERR_LEDGER_INCONSISTENT',
        reason: `the ledger shrank: ${r.size} entries, the last checkpoint seen had ${last.size}`,
        checkpointSize: last.size,
      };
    const c = await auditor.get<{ proof: string[] }>(`/v1/auditor/proofs/consistency?from=${last.size}&to=${r.size}`);
    if (!verifyConsistency(last.size, r.size, c.proof.map(hexToBytes), hexToBytes(last.root), hexToBytes(r.root))) {
      return {
        ok: false,
        code: 'SH_ERR_LEDGER_INCONSISTENT',
        reason: `the ledger of ${r.size} entries is not an extension of the checkpoint of ${last.size} seen earlier`,
        checkpointSize: last.size,
      };
    }
    consistentWith = last.size;
  }
  writeSecret(state, JSON.stringify({ size: r.size, root: r.root, at: new Date().toISOString() }) + '\n');
  return { ...r, ...(consistentWith !== undefined ? { consistentWith } : {}) };
}

/**
 * An enterprise's access report, checked on its side: the checkpoint's signature (engine key from /v1/info unless
 * pinned), and for every entry an inclusion proof of its exact leaf body in that checkpoint's tree.
 * @throws SH_ERR_LEDGER_TAMPERED when a proof or the checkpoint does not verify
 */
async function auditVerifyOnce(
  auditor: Client,
  engineKey?: string,
): Promise<
  | { ok: true; size: number; checkpoints: number; root: string }
  | { ok: false; code: ErrorCode; reason: string; index?: number; checkpointSize?: number }
> {
  const r = await verifiedLedger(auditor, engineKey);
  if (!r.ok) return r;
  const { bodies: _bodies, ...rest } = r;
  return rest;
}

/** The whole ledger, each entry checked against the signed checkpoints (the auditor's own copy). */
async function verifiedLedger(
  auditor: Client,
  engineKey?: string,
): Promise<
  | { ok: true; size: number; checkpoints: number; root: string; bodies: string[] }
  | { ok: false; code: ErrorCode; reason: string; index?: number; checkpointSize?: number }
> {
  const info = await auditor.info();
  const key = engineKey ?? info.engine.ed25519;
  // Checkpoints first (the server signs one at its current size), then every entry they cover.
  const { checkpoints } = await auditor.get<{ checkpoints: Array<{ size: number; note: string }> }>(
    '/v1/auditor/checkpoints',
  );
  const target = Math.max(0, ...checkpoints.map((c) => c.size));
  const bodies: string[] = [];
  for (;;) {
    const page = await auditor.get<{ size: number; entries: Array<{ index: number; body: string }> }>(
      `/v1/auditor/ledger?from=${bodies.length}&limit=10000`,
    );
    for (const e of page.entries) {
      if (e.index !== bodies.length)
        return {
          ok: false,
          code: 'SH_ERR_LEDGER_TAMPERED',
          reason: `entry ${bodies.length} is missing`,
          index: bodies.length,
        };
      bodies.push(e.body);
    }
    if (page.entries.length === 0 || (bodies.length >= target && bodies.length >= page.size)) break;
  }
  const first = bodies[0] ? (JSON.parse(bodies[0]) as { kind?: string; engineKey?: string }) : undefined;
  if (first?.kind !== 'engine.initialized' || first.engineKey !== key)
    return {
      ok: false,
      code: 'SH_ERR_LEDGER_TAMPERED',
      reason: 'entry 0 does not name the engine key this auditor trusts',
      index: 0,
    };
  const hashes = bodies.map((b) => leafHash(new TextEncoder().encode(b)));
  const roots = rootsAtSizes(
    hashes,
    checkpoints.map((c) => Math.min(c.size, hashes.length)),
  );
  for (const [i, c] of checkpoints.entries()) {
    let cp;
    try {
      cp = verifyCheckpoint(c.note, info.ledgerOrigin, hexToBytes(key));
    } catch (err) {
      return {
        ok: false,
        code: 'SH_ERR_LEDGER_TAMPERED',
        reason: `checkpoint ${c.size}: ${(err as Error).message}`,
        checkpointSize: c.size,
      };
    }
    if (cp.size !== c.size || c.size > hashes.length)
      return {
        ok: false,
        code: 'SH_ERR_LEDGER_TAMPERED',
        reason: `checkpoint ${c.size} covers entries that were not served`,
        checkpointSize: c.size,
      };
    if (!equalBytes(cp.rootHash, roots[i]!))
      return {
        ok: false,
        code: 'SH_ERR_LEDGER_TAMPERED',
        reason: `checkpoint ${c.size}: the served entries do not hash to its root`,
        checkpointSize: c.size,
      };
  }
  const root = rootsAtSizes(hashes, [hashes.length])[0]!;
  return {
    ok: true,
    size: hashes.length,
    checkpoints: checkpoints.length,
    root: Buffer.from(root).toString('hex'),
    bodies,
  };
}

/** Job ids with a `job.requested` entry in the verified ledger (optionally from a ledger index on). */
export async function jobsOf(auditor: Client, since = 0, engineKey?: string): Promise<string[]> {
  const ledger = await verifiedLedger(auditor, engineKey);
  if (!ledger.ok) throw new SafehouseError(ledger.code, `the ledger does not verify: ${ledger.reason}`);
  return ledger.bodies
    .slice(since)
    .map((b) => JSON.parse(b) as { kind: string; jobId?: string })
    .filter((b) => b.kind === 'job.requested')
    .map((b) => b.jobId!);
}

/**
 * `safehouse audit replay --server`: replay a job on the auditor's machine. The auditor fetches and verifies the whole
 * ledger itself, takes the job's entries from that verified copy, fetches the job's bundle (rows) and every blob it
 * names (each checked against its hash), builds a local replica data directory and runs the same replay as embedded
 * mode (engine/audit/replay.ts) with its own X25519 key for the escrowed seed.
 */
export async function replayRemote(
  auditor: Client,
  jobId: string,
  opts: { engineKey?: string; dir?: string } = {},
): Promise<ReplayReport> {
  if (!auditor.keys.x25519)
    fail('SH_ERR_PARTY_ROLE', `${auditor.id}'s key file has no X25519 key (auditors need one to open escrowed seeds)`);
  const ledger = await verifiedLedger(auditor, opts.engineKey);
  if (!ledger.ok) throw new SafehouseError(ledger.code, `the ledger does not verify: ${ledger.reason}`);
  const bundle = await auditor.get<AuditBundle>(`/v1/auditor/jobs/${encodeURIComponent(jobId)}/bundle`);
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'safehouse-replay-'));
  const mirror = Engine.open({ home: dir, create: true, poolSize: 2 });
  try {
    const db = mirror.store.db;
    db.exec('BEGIN');
    try {
      for (const [table, rows] of Object.entries(bundle.rows)) {
        if (!/^[a-z_]+$/.test(table)) fail('SH_ERR_INVALID_ARGUMENT', `bundle names table ${JSON.stringify(table)}`);
        for (const r of rows) {
          const row: Record<string, string | number | null> = r;
          const keys = Object.keys(row).filter((k) => /^[a-z][a-z0-9_]*$/.test(k));
          const values = keys.map((k) =>
            table === 'tokens' && k === 'token' ? new Uint8Array(Buffer.from(String(row[k]), 'hex')) : row[k],
          );
          db.prepare(`INSERT INTO ${table} (${keys.join(', ')}) VALUES (${keys.map(() => '?').join(', ')})`).run(
            ...values,
          );
        }
      }
      // The job's ledger entries come from the auditor's verified copy, not from the bundle.
      const ins = db.prepare(
        'INSERT OR REPLACE INTO ledger_entries (idx, kind, body, leaf_hash, at) VALUES (?, ?, ?, ?, ?)',
      );
      const indexJob = db.prepare('INSERT INTO ledger_jobs (job_id, idx) VALUES (?, ?)');
      ledger.bodies.forEach((body, idx) => {
        if (idx === 0 || !body.includes(JSON.stringify(jobId))) return;
        const b = JSON.parse(body) as { kind: string; at: string; jobId?: string };
        if (b.jobId !== jobId) return;
        ins.run(idx, b.kind, body, leafHash(new TextEncoder().encode(body)), b.at);
        indexJob.run(jobId, idx);
      });
      db.exec('COMMIT');
    } catch (err) {
      db.exec('ROLLBACK');
      throw err;
    }
    // The blobs in batches (one request per BLOB_BATCH), each frame checked against its hash.
    for (let i = 0; i < bundle.blobs.length; i += BLOB_BATCH) {
      const want = bundle.blobs.slice(i, i + BLOB_BATCH);
      const frames = readFrames(await auditor.getBytes('/v1/auditor/blobs/batch', { hashes: want }));
      for (const hash of want) {
        const bytes = frames.get(hash);
        if (!bytes)
          fail('SH_ERR_BLOB_MISSING', `the engine did not serve blob ${hash} of job ${jobId}`, { blob: hash });
        if (sha256Hex(bytes) !== hash)
          fail('SH_ERR_BLOB_CORRUPT', `blob ${hash} served by the engine does not hash to its address`, { blob: hash });
        mirror.store.putBlob(bytes);
      }
    }
    return await replayJob(mirror, jobId, { id: auditor.id, x25519SecretKey: auditor.keys.x25519.secretKey });
  } finally {
    await mirror.close();
    if (!opts.dir) rmSync(dir, { recursive: true, force: true });
  }
}
