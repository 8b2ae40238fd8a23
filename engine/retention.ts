/**
 * Retention: a finished job's replay material (re-randomizers, stored results, custodian answers, training inputs —
 * the blobs its ledger events and job columns name; never dataset columns or keys) is deleted after the policy's
 * `blobRetentionDays`, and the purge itself is a ledger leaf (`retention.purged`: the jobs, the blob count and a hash
 * of the purged list). Ledger entries are never deleted; a replay of a purged job reports `missing`, not `mismatch`.
 */
import { existsSync } from 'node:fs';
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
    const { store, ledger, now } = this.ctx;
    const cutoff = new Date(now().getTime() - days * 86_400_000).toISOString();
    const jobs = this.jobs.finishedBefore(cutoff);
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
