/**
 * The consent check as a pool kernel (docs/design.md §6): a worker judges a chunk of subjects with the same
 * ConsentReader the engine's thread uses (consent-reader.ts), on its own read-only connection to the engine's database
 * (WAL: committed data only) — the per-subject part of a large job, spread over the pool. It also reads each subject's slot in the job's datasets, so a job's per-subject steps never
 * funnel through the main thread. Answers are compact typed arrays, transferred rather than cloned.
 */
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { CONSENT_STATUSES, type ConsentOp } from '../sandbox/consent.ts';
import { ConsentReader } from './consent-reader.ts';
import { SLOT_STRIDE } from './he/params.ts';
import { SUBJECT_SLOTS_SQL } from './store/store.ts';
import { defineKernel } from './pool/kernel.ts';

export interface ConsentTask {
  dbPath: string;
  request: { bank: string; purpose: string; operation: ConsentOp; categories: string[]; at: string };
  subjects: string[];
  /** Also each subject's [block, slot, missing fields] in each of these datasets (null where it has no row). */
  datasets: string[];
  /** Slots only for subjects whose status is OK (null for the others). */
  slotsOfOkOnly?: boolean;
}

/** Status codes (index into CONSENT_STATUSES), consent ids joined by newlines, and per dataset the packed slot positions. */
export interface ConsentAnswer {
  codes: Uint8Array;
  ids: string;
  slots: Array<{ pos: Int32Array; missing: Record<number, string> }>;
}

const databases = new Map<string, { db: DatabaseSync; reader: ConsentReader; slots: StatementSync }>();

export const consentChunk = defineKernel<ConsentTask, ConsentAnswer>((task) => {
  let d = databases.get(task.dbPath);
  if (!d) {
    const db = new DatabaseSync(task.dbPath, { readOnly: true });
    db.exec('PRAGMA cache_size = -32768;');
    d = { db, reader: new ConsentReader(db), slots: db.prepare(SUBJECT_SLOTS_SQL) };
    databases.set(task.dbPath, d);
  }
  const r = task.request;
  const req = {
    bank: r.bank,
    purpose: r.purpose,
    operation: r.operation,
    categories: r.categories,
    at: new Date(r.at),
  };
  const statuses = d.reader.judge(req, task.subjects);
  const list = JSON.stringify(task.subjects);
  const codes = Uint8Array.from(statuses, (st) => CONSENT_STATUSES.indexOf(st.status));
  const ids = statuses.map((st) => st.consentId ?? '').join('\n');
  const slots = task.datasets.map((ds) => {
    const pos = new Int32Array(task.subjects.length).fill(-1);
    const missing: Record<number, string> = {};
    const index = new Map(task.subjects.map((s, k) => [s, k]));
    for (const row of d.slots.all(list, ds) as Array<{ uscc: string; block: number; slot: number; missing: string }>) {
      const k = index.get(row.uscc)!;
      if (task.slotsOfOkOnly && codes[k] !== 0) continue;
      pos[k] = row.block * SLOT_STRIDE + row.slot;
      if (row.missing) missing[k] = row.missing;
    }
    return { pos, missing };
  });
  return move({
    [transferableSymbol]: [codes.buffer, ...slots.map((x) => x.pos.buffer)],
    [valueSymbol]: { codes, ids, slots },
  } as never);
});
