/**
 * The one way consents are read and judged for a job (docs/design.md §6): for a list of subjects, three batched
 * queries — each subject's registered key, its consents to the bank (in the order they were recorded) and its
 * revocations — then `consentStatus` per subject, Ed25519 signature checks included. The engine's thread uses it on
 * its own connection (small jobs, the auditor's replay); pool workers use it on their own read-only connections
 * (consent-kernels.ts), so both give the same answers by construction.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { hexToBytes } from '../core/sign.ts';
import {
  consentStatus,
  type ConsentOp,
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
      'SELECT c.subject, c.signed_json FROM json_each(?) AS j CROSS JOIN consents AS c ON c.subject = j.value AND c.grantee = ? ORDER BY c.rowid',
    );
    this.revocations = db.prepare(
      'SELECT r.subject, r.signed_json FROM json_each(?) AS j CROSS JOIN revocations AS r ON r.subject = j.value',
    );
  }

  /** Each subject's status (and the consent that covers it), in the order of `subjects`. */
  judge(req: ConsentRequest, subjects: readonly string[]): Array<{ status: ConsentStatus; consentId?: string }> {
    const list = JSON.stringify(subjects);
    const keys = new Map(
      (this.keys.all(list) as Array<{ id: string; ed25519_pub: string }>).map((r) => [r.id, r.ed25519_pub]),
    );
    const consents = new Map<string, SignedConsent[]>();
    for (const r of this.consents.all(list, req.bank) as Array<{ subject: string; signed_json: string }>) {
      const l = consents.get(r.subject);
      if (l) l.push(JSON.parse(r.signed_json) as SignedConsent);
      else consents.set(r.subject, [JSON.parse(r.signed_json) as SignedConsent]);
    }
    const revs = new Map<string, SignedRevocation[]>();
    for (const r of this.revocations.all(list) as Array<{ subject: string; signed_json: string }>) {
      if (!consents.has(r.subject)) continue; // a subject with no consent to this bank is NO_CONSENT either way
      const l = revs.get(r.subject);
      if (l) l.push(JSON.parse(r.signed_json) as SignedRevocation);
      else revs.set(r.subject, [JSON.parse(r.signed_json) as SignedRevocation]);
    }
    return subjects.map((s) => {
      const key = keys.get(s);
      return consentStatus(
        { subject: s, ...req },
        consents.get(s) ?? [],
        revs.get(s) ?? [],
        key === undefined ? undefined : hexToBytes(key),
      );
    });
  }
}
