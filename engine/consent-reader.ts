/**
 * The one way consents are read and judged for a job (docs/design.md §6): for a list of subjects, three batched
 * queries — each subject's registered key, its consents to the bank (in the order they were recorded) and its
 * revocations — then each subject's status by `consentStatus`'s rules, each signature verified once (when recorded). The auditor's replay and
 * training use it on the engine's connection; jobs judge from the in-memory index (consent-index.ts), which applies
 * the same rules to the same rows (test/engine/consents.test.ts compares them).
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { hexToBytes } from '../core/sign.ts';
import { sha256Hex } from '../core/hash.ts';
import {
  checkedConsentStatus,
  validateConsentStatement,
  verifyConsentSignature,
  verifyRevocation,
  type ConsentOp,
  type ConsentStatement,
  type ConsentStatus,
  type SignedConsent,
  type SignedRevocation,
} from '../sandbox/consent.ts';

export interface ConsentRequest {
  bank: string;
  purpose: string;
  operation: ConsentOp;
  categories: string[];
  at: Date;
}

/**
 * What a consent or revocation row records once its signature was verified (at `Consents.add`/`revoke`): the hash of
 * the stored statement and the key it verified with. A row whose hash still matches needs no second Ed25519
 * verification; one that does not (edited in the store, or the subject's key changed) is verified again.
 */
export function checkedHash(signedJson: string, keyHex: string): string {
  return sha256Hex(`${signedJson}\n${keyHex}`);
}

/**
 * One stored consent row, judged as every reader of the store does: its statement when the recorded hash matches (it
 * was verified when added) or its signature verifies now with the subject's key; `bad` when it does not but names this
 * grantee and subject (it ranks BAD_SIGNATURE); `undefined` for a row that names neither or cannot be read.
 */
export function acceptConsentRow(
  row: { subject: string; signed_json: string; checked: string | null },
  grantee: string,
  keyHex: string,
): ConsentStatement | 'bad' | undefined {
  let c: SignedConsent;
  try {
    c = JSON.parse(row.signed_json) as SignedConsent;
  } catch {
    return undefined;
  }
  if (row.checked === checkedHash(row.signed_json, keyHex)) return c.statement;
  let ok = false;
  try {
    ok = verifyConsentSignature(c, hexToBytes(keyHex)) && validateConsentStatement(c.statement) !== undefined;
  } catch {
    ok = false;
  }
  if (ok) return c.statement;
  return c?.statement?.grantee === grantee && c.statement.subject === row.subject ? 'bad' : undefined;
}

/** One stored revocation row of `row.subject`, as every reader judges it: the consent id and time it revokes, if valid. */
export function acceptRevocationRow(
  row: { subject: string; signed_json: string; checked: string | null },
  keyHex: string,
): { consentId: string; at: number } | undefined {
  try {
    const v = JSON.parse(row.signed_json) as SignedRevocation;
    const ok = row.checked === checkedHash(row.signed_json, keyHex) || verifyRevocation(v, hexToBytes(keyHex));
    if (!ok || v.statement.subject !== row.subject) return undefined;
    return { consentId: v.statement.consentId, at: Date.parse(v.statement.revokedAt) };
  } catch {
    return undefined;
  }
}

export class ConsentReader {
  private readonly keys: StatementSync;
  private readonly consents: StatementSync;
  private readonly revocations: StatementSync;

  constructor(db: DatabaseSync) {
    // The subject list drives each loop (CROSS JOIN: index lookups, never a scan per batch).
    this.keys = db.prepare(
      "SELECT p.id, p.ed25519_pub FROM json_each(?) AS j CROSS JOIN parties AS p ON p.id = j.value WHERE p.role = 'enterprise'",
    );
    this.consents = db.prepare(
      'SELECT c.subject, c.signed_json, c.checked, c.created_at FROM json_each(?) AS j CROSS JOIN consents AS c ON c.subject = j.value AND c.grantee = ? ORDER BY c.rowid',
    );
    this.revocations = db.prepare(
      'SELECT r.subject, r.signed_json, r.checked, r.created_at FROM json_each(?) AS j CROSS JOIN revocations AS r ON r.subject = j.value',
    );
  }

  /**
   * Each subject's status (and the consent that covers it), in the order of `subjects`: `consentStatus`'s answers,
   * with each signature verified once — rows whose recorded hash matches were verified when they were added.
   */
  judge(
    req: ConsentRequest,
    subjects: readonly string[],
    /** Only consents and revocations the engine had recorded by this time (ISO): a replay judges as the job did. */
    recordedBy?: string,
  ): Array<{ status: ConsentStatus; consentId?: string }> {
    const list = JSON.stringify(subjects);
    const keys = new Map(
      (this.keys.all(list) as Array<{ id: string; ed25519_pub: string }>).map((r) => [r.id, r.ed25519_pub]),
    );
    type Row = { subject: string; signed_json: string; checked: string | null; created_at: string };
    const known = (r: Row) => recordedBy === undefined || r.created_at <= recordedBy;
    const consents = new Map<string, Row[]>();
    for (const r of (this.consents.all(list, req.bank) as Row[]).filter(known)) {
      const l = consents.get(r.subject);
      if (l) l.push(r);
      else consents.set(r.subject, [r]);
    }
    const revs = new Map<string, Row[]>();
    for (const r of (this.revocations.all(list) as Row[]).filter(known)) {
      if (!consents.has(r.subject)) continue; // a subject with no consent to this bank is NO_CONSENT either way
      const l = revs.get(r.subject);
      if (l) l.push(r);
      else revs.set(r.subject, [r]);
    }
    return subjects.map((s) => {
      const key = keys.get(s);
      const rows = consents.get(s) ?? [];
      if (key === undefined) return rows.length ? { status: 'BAD_SIGNATURE' } : { status: 'NO_CONSENT' };
      const statements: ConsentStatement[] = [];
      let bad = 0;
      for (const r of rows) {
        const st = acceptConsentRow(r, req.bank, key);
        if (st === 'bad') bad++;
        else if (st) statements.push(st);
      }
      const revokedAt = new Map<string, number>();
      for (const r of revs.get(s) ?? []) {
        const v = acceptRevocationRow(r, key);
        if (!v) continue;
        const before = revokedAt.get(v.consentId);
        if (before === undefined || v.at < before) revokedAt.set(v.consentId, v.at);
      }
      return checkedConsentStatus({ subject: s, ...req }, statements, revokedAt, bad);
    });
  }
}
