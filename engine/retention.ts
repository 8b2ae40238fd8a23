/**
 * Retention: a finished job's replay material (re-randomizers, stored results, custodian answers, training inputs —
 * the blobs its ledger events and job columns name; never dataset columns or keys) is deleted after the policy's
 * `blobRetentionDays`, and the purge itself is a ledger leaf (`retention.purged`: the jobs, the blob count and a hash
 * of the purged list). Ledger entries are never deleted; a replay of a purged job reports `missing`, not `mismatch`.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fail } from '../core/errors.ts';
import { sha256Hex } from '../core/hash.ts';
import type { EngineContext } from './context.ts';
import type { Jobs } from './jobs.ts';

/** Ledger event members that name replay material by its blob address. */
const REPLAY_BLOB_KEYS = ['rerandomizer', 'resultHash', 'ciphertext'] as const;

export class Retention {
  private readonly ctx: EngineContext;
  private readonly jobs: Jobs;

  constructor(ctx: EngineContext, jobs: Jobs) {
    this.ctx = ctx;
    this.jobs = jobs;
  }

  /**
   * Delete the replay material of jobs finished more than `days` ago and record what was purged.
   * @returns the purged jobs and blob count
   * @throws SH_ERR_INVALID_ARGUMENT for a negative or non-finite `days`
   */
  purge(days: number = this.ctx.policy.blobRetentionDays): { jobs: string[]; blobs: number } {
    if (!Number.isFinite(days) || days < 0)
      fail('SH_ERR_INVALID_ARGUMENT', `"days" expected a number ≥ 0, got ${days}`);
    const cutoff = new Date(this.ctx.now().getTime() - days * 86_400_000).toISOString();
    return this.purgeJobs(this.jobs.finishedBefore(cutoff), cutoff);
  }

  /**
   * Size-based retention: while the blob directory holds more than `maxBytes`, purge the replay material of the
   * oldest finished jobs (in steps of 50), however recent. Dataset columns and keys are never purged, so the floor
   * is what the current datasets need. @returns the purged jobs and blob count
   */
  purgeToSize(maxBytes: number): { jobs: string[]; blobs: number } {
    if (!Number.isFinite(maxBytes) || maxBytes < 0)
      fail('SH_ERR_INVALID_ARGUMENT', `"maxBytes" expected a number ≥ 0, got ${maxBytes}`);
    const all = { jobs: [] as string[], blobs: 0 };
    const now = this.ctx.now().toISOString();
    while (blobBytes(this.ctx.store.home) > maxBytes) {
      const next = this.jobs.finishedBefore(now).slice(0, 50);
      if (!next.length) break;
      const r = this.purgeJobs(next, now);
      all.jobs.push(...r.jobs);
      all.blobs += r.blobs;
    }
    return all;
  }

  private purgeJobs(jobs: string[], cutoff: string): { jobs: string[]; blobs: number } {
    const { store, ledger } = this.ctx;
    if (jobs.length === 0) return { jobs, blobs: 0 };
    const kept = new Set(
      (
        store.db.prepare('SELECT blob FROM columns WHERE dataset_id NOT LIKE ?').all('%:labels') as Array<{
          blob: string;
        }>
      ).map((r) => r.blob),
    );
    const hashes = new Set<string>();
    for (const id of jobs) {
      const outcome = this.jobs.get(id)?.summary?.outcomeBlob; // a training job's delivered outcome
      if (typeof outcome === 'string' && /^[0-9a-f]{64}$/.test(outcome)) hashes.add(outcome);
      for (const e of ledger.jobEntries(id)) {
        for (const k of REPLAY_BLOB_KEYS) {
          const h = e.body[k];
          if (typeof h === 'string' && /^[0-9a-f]{64}$/.test(h) && !kept.has(h)) hashes.add(h);
        }
      }
      for (const r of store.db
        .prepare('SELECT blob FROM columns WHERE dataset_id = ? OR column_name LIKE ?')
        .all(`${id}:labels`, `train/${id}/%`) as Array<{ blob: string }>)
        hashes.add(r.blob);
    }
    const purged = [...hashes].filter((h) => existsSync(store.blobPath(h))).sort();
    store.transaction(() => {
      for (const id of jobs) this.jobs.setStatus(id, 'purged');
      ledger.append('retention.purged', {
        jobs,
        before: cutoff,
        blobs: purged.length,
        blobsHash: sha256Hex(purged.join('\n')),
      });
    });
    for (const h of purged) store.dropBlob(h);
    ledger.checkpoint();
    return { jobs, blobs: purged.length };
  }
}

/** Bytes of the finished blob files of a data directory. */
export function blobBytes(home: string): number {
  const dir = join(home, 'blobs');
  if (!existsSync(dir)) return 0;
  let n = 0;
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true }))
    if (e.isFile()) n += statSync(join(e.parentPath, e.name)).size;
  return n;
}
