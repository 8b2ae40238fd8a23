/**
 * Verification budgets on the engine's side (docs/privacy.md "Verification"): answer units a bank group has spent per
 * (subject, provider, field), counted over a sliding window that ends now — so there is no epoch boundary at which a
 * budget refills twice. The verification protocol reads them before answering and writes what a job spent inside the
 * job's own transaction. Each provider's custodian keeps its own count as well (engine/custodian/budget.ts).
 */
import type { EngineContext } from './context.ts';

export interface BudgetKey {
  group: string;
  subject: string;
  provider: string;
  field: string;
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS verify_spend (
    bank_group TEXT NOT NULL, subject TEXT NOT NULL, provider TEXT NOT NULL, field TEXT NOT NULL,
    at TEXT NOT NULL, units INTEGER NOT NULL, job_id TEXT NOT NULL);
  CREATE INDEX IF NOT EXISTS verify_spend_key ON verify_spend (bank_group, subject, provider, field, at);`;

export class VerifyBudgets {
  private readonly ctx: EngineContext;

  constructor(ctx: EngineContext) {
    this.ctx = ctx;
    ctx.store.db.exec(SCHEMA);
    migrateEpochs(ctx);
  }

  /** Units spent for one key since `since` (ISO time, the window's start). */
  used(k: BudgetKey, since: string): number {
    const r = this.ctx.store
      .stmt(
        'SELECT COALESCE(SUM(units), 0) AS used FROM verify_spend WHERE bank_group = ? AND subject = ? AND provider = ? AND field = ? AND at >= ?',
      )
      .get(k.group, k.subject, k.provider, k.field, since) as { used: number };
    return Number(r.used);
  }

  /** Record what a job spent (call inside the job's transaction). */
  spend(jobId: string, at: string, spent: ReadonlyArray<[BudgetKey, number]>): void {
    const ins = this.ctx.store.stmt(
      'INSERT INTO verify_spend (bank_group, subject, provider, field, at, units, job_id) VALUES (?, ?, ?, ?, ?, ?, ?)',
    );
    for (const [k, units] of spent) ins.run(k.group, k.subject, k.provider, k.field, at, units, jobId);
  }
}

/**
 * Data directories from before sliding windows counted units per fixed 30-day epoch (`verify_budget`): each count
 * moves to `verify_spend` dated at its epoch's start (so it still counts while that start is in the window), once.
 */
function migrateEpochs(ctx: EngineContext): void {
  const db = ctx.store.db;
  if (!db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'verify_budget'").get()) return;
  ctx.store.transaction(() => {
    const rows = db.prepare('SELECT bank, subject, provider, field, epoch, used FROM verify_budget').all() as Array<{
      bank: string;
      subject: string;
      provider: string;
      field: string;
      epoch: number;
      used: number;
    }>;
    const ins = db.prepare(
      "INSERT INTO verify_spend (bank_group, subject, provider, field, at, units, job_id) VALUES (?, ?, ?, ?, ?, ?, 'epoch-migration')",
    );
    for (const r of rows)
      ins.run(r.bank, r.subject, r.provider, r.field, new Date(r.epoch * 30 * 86_400_000).toISOString(), r.used);
    db.exec('DROP TABLE verify_budget');
  });
}
