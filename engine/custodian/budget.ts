/**
 * A custodian's own per-subject budgets (docs/privacy.md): what each bank group has been given about each of its
 * provider's subjects, counted over a sliding window — verification answer units and token evaluations per field,
 * distinct models a subject was scored with, ε spent in training. The custodian trusts nothing the engine says about
 * these: it counts from the bank-signed requests it was shown and keeps the count in its own journal, so a restart
 * (or an engine that forgot) changes nothing.
 */
import type { CustodianJournal } from './journal.ts';

export type BudgetKind = 'verify-units' | 'token-evaluations' | 'score-models' | 'train-epsilon';

/** One spend, for each of `subjects` (a 100 000-subject job journals one record, not 100 000). */
export interface SpendRecord {
  kind: BudgetKind;
  group: string;
  subjects: string[];
  /** The field (verify, tokens); empty for score and train. */
  field: string;
  /** Units spent per subject (ε for training; 1 per model for scoring). */
  units: number;
  /** Scoring: the model hash (distinct models are what is counted). */
  ref?: string;
}

interface Stored {
  units: number;
  ref: string | undefined;
  at: number;
}

export class CustodianBudget {
  /** Records by (kind, group, field), then subject: a 100 000-subject job looks each subject up once. */
  private index: Map<string, Map<string, Stored[]>> | undefined;
  private readonly journal: CustodianJournal;

  constructor(journal: CustodianJournal) {
    this.journal = journal;
  }

  private static key(kind: BudgetKind, group: string, field: string): string {
    return `${kind}\u0000${group}\u0000${field}`;
  }

  private all(): Map<string, Map<string, Stored[]>> {
    if (!this.index) {
      this.index = new Map();
      for (const r of this.journal.spendRecords()) this.push(r, Date.parse(r.at));
    }
    return this.index;
  }

  private push(r: SpendRecord, at: number): void {
    const stored: Stored = { units: r.units, ref: r.ref, at };
    const k = CustodianBudget.key(r.kind, r.group, r.field);
    let bySubject = this.index!.get(k);
    if (!bySubject) this.index!.set(k, (bySubject = new Map()));
    for (const subject of r.subjects) {
      const list = bySubject.get(subject);
      if (list) list.push(stored);
      else bySubject.set(subject, [stored]);
    }
  }

  /** Rebuild the index from the journal now (after a restart) rather than in the next job. */
  warm(): void {
    this.all();
  }

  /** Units of one kind spent for (group, subject, field) since `since` (ms). */
  used(kind: BudgetKind, group: string, subject: string, field: string, since: number): number {
    let n = 0;
    for (const r of this.all()
      .get(CustodianBudget.key(kind, group, field))
      ?.get(subject) ?? [])
      if (r.at >= since) n += r.units;
    return n;
  }

  /** Distinct refs (models) of one kind for (group, subject) since `since` (ms). */
  distinct(kind: BudgetKind, group: string, subject: string, since: number): Set<string> {
    const out = new Set<string>();
    for (const r of this.all()
      .get(CustodianBudget.key(kind, group, ''))
      ?.get(subject) ?? [])
      if (r.at >= since && r.ref) out.add(r.ref);
    return out;
  }

  /** Forget the index: it is rebuilt from the journal (after a refund) at the next use. */
  reload(): void {
    this.index = undefined;
  }

  /** Record a job's spending (in memory; the custodian journals it with the opened job). */
  add(records: readonly SpendRecord[], at: number): void {
    this.all();
    for (const r of records) this.push(r, at);
  }
}
