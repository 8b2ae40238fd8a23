/**
 * The consent check as a pool kernel (docs/design.md §6): a worker reads each subject's registered key, its consents
 * to the bank and its revocations from the engine's database (its own read-only connection: WAL, committed data only)
 * and judges them with `consentStatus`, Ed25519 signature checks included — the per-subject part of a large job,
 * spread over the pool. It also reads each subject's slot in the job's datasets, so a job's per-subject steps never
 * funnel through the main thread. Answers are compact typed arrays, transferred rather than cloned.
 */
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { hexToBytes } from '../core/sign.ts';
import {
  consentStatus,
  CONSENT_STATUSES,
  type ConsentOp,
  type SignedConsent,
  type SignedRevocation,
} from '../sandbox/consent.ts';
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

const databases = new Map<
  string,
  { db: DatabaseSync; keys: StatementSync; consents: StatementSync; revocations: StatementSync; slots: StatementSync }
>();

export const consentChunk = defineKernel<ConsentTask, ConsentAnswer>((task) => {
  let d = databases.get(task.dbPath);
  if (!d) {
    const db = new DatabaseSync(task.dbPath, { readOnly: true });
    db.exec('PRAGMA cache_size = -32768;');
    d = {
      db,
      keys: db.prepare(
        "SELECT p.id, p.ed25519_pub FROM json_each(?) AS j CROSS JOIN parties AS p ON p.id = j.value WHERE p.role = 'enterprise'",
      ),
      // The subject list drives each loop (CROSS JOIN: index lookups, never a scan per chunk). Consents in rowid order,
      // as the engine's one-subject query reads them (consentStatus takes the first that fits).
      consents: db.prepare(
        'SELECT c.subject, c.signed_json FROM json_each(?) AS j CROSS JOIN consents AS c ON c.subject = j.value AND c.grantee = ? ORDER BY c.rowid',
      ),
      revocations: db.prepare(
        'SELECT r.subject, r.signed_json FROM json_each(?) AS j CROSS JOIN revocations AS r ON r.subject = j.value',
      ),
      slots: db.prepare(SUBJECT_SLOTS_SQL),
    };
    databases.set(task.dbPath, d);
  }
  const list = JSON.stringify(task.subjects);
  const keys = new Map(
    (d.keys.all(list) as Array<{ id: string; ed25519_pub: string }>).map((r) => [r.id, r.ed25519_pub]),
  );
  const consents = new Map<string, SignedConsent[]>();
  for (const r of d.consents.all(list, task.request.bank) as Array<{ subject: string; signed_json: string }>) {
    const l = consents.get(r.subject);
    if (l) l.push(JSON.parse(r.signed_json) as SignedConsent);
    else consents.set(r.subject, [JSON.parse(r.signed_json) as SignedConsent]);
  }
  const revs = new Map<string, SignedRevocation[]>();
  for (const r of d.revocations.all(list) as Array<{ subject: string; signed_json: string }>) {
    if (!consents.has(r.subject)) continue;
    const l = revs.get(r.subject);
    if (l) l.push(JSON.parse(r.signed_json) as SignedRevocation);
    else revs.set(r.subject, [JSON.parse(r.signed_json) as SignedRevocation]);
  }
  const r = task.request;
  const req = {
    bank: r.bank,
    purpose: r.purpose,
    operation: r.operation,
    categories: r.categories,
    at: new Date(r.at),
  };
  const statuses = task.subjects.map((s) => {
    const key = keys.get(s);
    return consentStatus(
      { subject: s, ...req },
      consents.get(s) ?? [],
      revs.get(s) ?? [],
      key === undefined ? undefined : hexToBytes(key),
    );
  });
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
