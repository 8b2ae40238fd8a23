/**
 * Job records (the `jobs` table): one row per bank-signed request that was accepted, written in the same transaction
 * as its `job.requested` ledger leaf, and finished exactly once — `job.completed` with its summary, or `job.failed`
 * with the error's code — each followed by a signed checkpoint. Protocols record and finish jobs only through here.
 */
import { randomBytes } from 'node:crypto';
import { fail, isCoded } from '../core/errors.ts';
import { sha256Hex } from '../core/hash.ts';
import type { EngineContext } from './context.ts';

export type JobKind = 'score' | 'verify' | 'train';
export type JobStatus = 'planned' | 'ready' | 'running' | 'completed' | 'failed' | 'purged';

export interface JobRecord {
  id: string;
  kind: JobKind;
  bank: string;
  /** What the job keeps for replay: the bank-signed request, escrow boxes, and per-protocol material. */
  request: Record<string, unknown>;
  status: JobStatus;
  summary: Record<string, unknown> | null;
  createdAt: string;
  finishedAt: string | null;
}

interface JobRow {
  id: string;
  kind: string;
  bank: string;
  request_json: string;
  status: string;
  summary_json: string | null;
  created_at: string;
  finished_at: string | null;
}

/**
 * What a running job needs to resume after a crash (docs/operations.md "Crash safety"): its seed (masks, blinds and
 * randomizers derive from it, so the resumed job asks the custodians exactly what the first run asked) and the state
 * it decided before its first custodian call. Kept in `job_secrets` only while the job runs: removed when it finishes.
 */
export interface JobSecret {
  seed: Uint8Array;
  state: Record<string, unknown>;
}

export class Jobs {
  private readonly ctx: EngineContext;
  /** Jobs being resumed in this process: their custodian steps take answers already given (engine/protocols/ask.ts). */
  readonly resuming = new Set<string>();

  constructor(ctx: EngineContext) {
    this.ctx = ctx;
    ctx.store.db.exec(
      `CREATE TABLE IF NOT EXISTS job_secrets (job_id TEXT PRIMARY KEY, seed BLOB NOT NULL, state_json TEXT NOT NULL);
       CREATE TABLE IF NOT EXISTS job_blobs (job_id TEXT NOT NULL, blob TEXT NOT NULL, PRIMARY KEY (job_id, blob)) WITHOUT ROWID;`,
    );
  }

  /**
   * Store a blob a running job makes for its replay (a re-randomizer), noted first as the job's: when the job finishes,
   * those its ledger entries do not name — made by a run a crash cut off before it asked — are deleted.
   */
  putJobBlob(jobId: string, bytes: Uint8Array): string {
    const hash = sha256Hex(bytes);
    this.ctx.store.db.prepare('INSERT OR IGNORE INTO job_blobs (job_id, blob) VALUES (?, ?)').run(jobId, hash);
    return this.ctx.store.putBlob(bytes);
  }

  /** After a job finished: delete the blobs it made that none of its ledger entries names. */
  private sweepBlobs(id: string): void {
    const { store, ledger } = this.ctx;
    const made = (
      store.db.prepare('SELECT blob FROM job_blobs WHERE job_id = ?').all(id) as Array<{ blob: string }>
    ).map((r) => r.blob);
    if (!made.length) return;
    const named = new Set<string>();
    for (const e of ledger.jobEntries(id))
      for (const v of Object.values(e.body)) if (typeof v === 'string') named.add(v);
    for (const b of made) if (!named.has(b)) store.dropBlob(b);
    store.db.prepare('DELETE FROM job_blobs WHERE job_id = ?').run(id);
  }

  /** Keep a running job's seed and decided state (inside the transaction that records the job, or just after). */
  keepSecret(id: string, secret: JobSecret): void {
    this.ctx.store.db
      .prepare(
        'INSERT INTO job_secrets (job_id, seed, state_json) VALUES (?, ?, ?) ON CONFLICT(job_id) DO UPDATE SET seed = excluded.seed, state_json = excluded.state_json',
      )
      .run(id, secret.seed, JSON.stringify(secret.state));
  }

  /** A running job's kept seed and state, if it has them. */
  secret(id: string): JobSecret | undefined {
    const r = this.ctx.store.stmt('SELECT seed, state_json FROM job_secrets WHERE job_id = ?').get(id) as
      { seed: Uint8Array; state_json: string } | undefined;
    return r ? { seed: new Uint8Array(r.seed), state: JSON.parse(r.state_json) as Record<string, unknown> } : undefined;
  }

  /** Ids of jobs recorded and not finished (a crash cut them off, or they run now), oldest first. */
  unfinished(): string[] {
    return (
      this.ctx.store.db
        .prepare("SELECT id FROM jobs WHERE status IN ('running', 'ready') ORDER BY created_at, id")
        .all() as Array<{ id: string }>
    ).map((r) => r.id);
  }

  /** A fresh job id: `<kind>_<UTC yyyymmddhhmmss>_<8 hex>`. */
  newId(kind: string): string {
    return `${kind}_${this.ctx
      .now()
      .toISOString()
      .replace(/[-:.TZ]/g, '')
      .slice(0, 14)}_${randomBytes(4).toString('hex')}`;
  }

  /** Random 32-byte job seed; masks derive from it (docs/design.md §4.2) and it is escrowed to the auditors. */
  newSeed(): Uint8Array {
    return new Uint8Array(randomBytes(32));
  }

  /**
   * Refuse a job id already recorded: a signed request runs once. Jobs check before any work and again inside the
   * transaction that records them (their consent checks await the pool, so the same request may arrive twice meanwhile).
   * @throws SH_ERR_ALREADY_EXISTS
   */
  requireNew(jobId: string): void {
    if (this.ctx.store.stmt('SELECT 1 FROM jobs WHERE id = ?').get(jobId))
      fail('SH_ERR_ALREADY_EXISTS', `job ${jobId} already exists; a signed request runs once`, { job: jobId });
  }

  /**
   * Record an accepted job: its row and its `job.requested` leaf (naming every subject it touches, for their access
   * reports) in one transaction, the id re-checked inside it; `also` runs in the same transaction (e.g. budget use).
   * @throws SH_ERR_ALREADY_EXISTS
   */
  record(
    job: { id: string; kind: JobKind; bank: string; request: Record<string, unknown>; status: 'running' | 'planned' },
    requested: { event: Record<string, unknown>; subjects: readonly string[] },
    also?: () => void,
  ): void {
    const { store, ledger, now } = this.ctx;
    store.transaction(() => {
      this.requireNew(job.id);
      store.db
        .prepare('INSERT INTO jobs (id, kind, bank, request_json, status, created_at) VALUES (?, ?, ?, ?, ?, ?)')
        .run(job.id, job.kind, job.bank, JSON.stringify(job.request), job.status, now().toISOString());
      ledger.append('job.requested', requested.event, requested.subjects);
      also?.();
    });
  }

  /** Replace the replay material kept with a job (training adds its escrow and bins once they exist). */
  setRequest(id: string, request: Record<string, unknown>): void {
    this.ctx.store.db.prepare('UPDATE jobs SET request_json = ? WHERE id = ?').run(JSON.stringify(request), id);
  }

  setStatus(id: string, status: JobStatus, summary?: Record<string, unknown>): void {
    if (summary === undefined) this.ctx.store.db.prepare('UPDATE jobs SET status = ? WHERE id = ?').run(status, id);
    else
      this.ctx.store.db
        .prepare('UPDATE jobs SET status = ?, summary_json = ? WHERE id = ?')
        .run(status, JSON.stringify(summary), id);
  }

  /** Finish a job: status, summary and its `job.completed` leaf in one transaction, then a signed checkpoint. */
  complete(id: string, summary: Record<string, unknown>, completed: Record<string, unknown>): void {
    const { store, ledger, now } = this.ctx;
    store.transaction(() => {
      store.db
        .prepare("UPDATE jobs SET status = 'completed', summary_json = ?, finished_at = ? WHERE id = ?")
        .run(JSON.stringify(summary), now().toISOString(), id);
      ledger.append('job.completed', { jobId: id, ...completed });
      store.db.prepare('DELETE FROM job_secrets WHERE job_id = ?').run(id);
    });
    this.sweepBlobs(id);
    ledger.checkpoint();
  }

  /**
   * Fail a job once with the error's code (`SH_ERR_INTERNAL` for an uncoded one): its status, the engine-side
   * verification budget it spent given back (the bank receives nothing of a failed job), its `job.failed` leaf naming
   * the units refunded — one transaction — then a checkpoint. A job already finished is left as it is. Each custodian
   * refunds its own budget when it reads the leaf, only if it answered nothing for the job (engine/custodian/).
   */
  fail(id: string, err: unknown): void {
    const { store, ledger, now } = this.ctx;
    let failed = false;
    store.transaction(() => {
      const row = store.db.prepare('SELECT status FROM jobs WHERE id = ?').get(id) as { status: string } | undefined;
      if (!row || row.status === 'completed' || row.status === 'failed' || row.status === 'purged') return;
      const units = Number(
        (
          store.db.prepare('SELECT COALESCE(SUM(units), 0) AS u FROM verify_spend WHERE job_id = ?').get(id) as {
            u: number;
          }
        ).u,
      );
      store.db.prepare('DELETE FROM verify_spend WHERE job_id = ?').run(id);
      store.db.prepare('DELETE FROM job_secrets WHERE job_id = ?').run(id);
      store.db.prepare("UPDATE jobs SET status = 'failed', finished_at = ? WHERE id = ?").run(now().toISOString(), id);
      ledger.append('job.failed', {
        jobId: id,
        code: isCoded(err) ? err.code : 'SH_ERR_INTERNAL',
        ...(units ? { refunded: { verifyUnits: units } } : {}),
      });
      failed = true;
    });
    if (failed) {
      this.sweepBlobs(id);
      ledger.checkpoint();
    }
  }

  get(id: string): JobRecord | undefined {
    if (typeof id !== 'string') return undefined;
    const r = this.ctx.store.stmt('SELECT * FROM jobs WHERE id = ?').get(id) as JobRow | undefined;
    return r ? toJob(r) : undefined;
  }

  /** The stored row itself (the auditor's bundle carries rows verbatim for its replica). */
  row(id: string): Record<string, unknown> | undefined {
    return this.ctx.store.stmt('SELECT * FROM jobs WHERE id = ?').get(id) as Record<string, unknown> | undefined;
  }

  /** Ids of jobs finished at or before `cutoff` (ISO time) and not purged yet, oldest first. */
  finishedBefore(cutoff: string): string[] {
    return (
      this.ctx.store.db
        .prepare(
          "SELECT id FROM jobs WHERE finished_at IS NOT NULL AND finished_at <= ? AND status != 'purged' ORDER BY finished_at",
        )
        .all(cutoff) as Array<{ id: string }>
    ).map((r) => r.id);
  }

  /** Every job id in creation order. */
  ids(): string[] {
    return (
      this.ctx.store.db.prepare('SELECT id FROM jobs ORDER BY created_at, id').all() as Array<{ id: string }>
    ).map((r) => r.id);
  }
}

function toJob(r: JobRow): JobRecord {
  return {
    id: r.id,
    kind: r.kind as JobKind,
    bank: r.bank,
    request: JSON.parse(r.request_json) as Record<string, unknown>,
    status: r.status as JobStatus,
    summary: r.summary_json ? (JSON.parse(r.summary_json) as Record<string, unknown>) : null,
    createdAt: r.created_at,
    finishedAt: r.finished_at,
  };
}
