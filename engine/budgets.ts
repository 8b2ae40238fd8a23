/**
 * Verification budgets (docs/design.md §7): claims a bank has spent per (subject, provider, field, epoch). The
 * verification protocol reads them before answering and writes what a job spent inside the job's own transaction.
 */
import type { EngineContext } from './context.ts';

export interface BudgetKey {
  bank: string;
  subject: string;
  provider: string;
  field: string;
  epoch: number;
}

export class VerifyBudgets {
  private readonly ctx: EngineContext;

  constructor(ctx: EngineContext) {
    this.ctx = ctx;
  }

  /** Units already spent for one key. */
  used(k: BudgetKey): number {
    const r = this.ctx.store
      .stmt(
        'SELECT used FROM verify_budget WHERE bank = ? AND subject = ? AND provider = ? AND field = ? AND epoch = ?',
      )
      .get(k.bank, k.subject, k.provider, k.field, k.epoch) as { used: number } | undefined;
    return r?.used ?? 0;
  }

  /** Set the units spent per key (call inside the job's transaction). */
  write(spent: ReadonlyArray<[BudgetKey, number]>): void {
    const up = this.ctx.store.stmt(
      'INSERT INTO verify_budget (bank, subject, provider, field, epoch, used) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(bank, subject, provider, field, epoch) DO UPDATE SET used = excluded.used',
    );
    for (const [k, used] of spent) up.run(k.bank, k.subject, k.provider, k.field, k.epoch, used);
  }
}
