/**
 * Consents (授权, docs/design.md §6): enterprise-signed consent statements and revocations, and each subject's status
 * for a job — valid signature by its registered key, grantee, purpose, operation, categories, time window, not
 * revoked. Jobs judge their subjects from the in-memory consent index (`jobStatuses`, `jobSubjects`;
 * engine/consent-index.ts), with the same answers as `statuses`, which reads the rows from SQLite (the auditor's replay).
 */
import { fail } from '../core/errors.ts';
import {
  validateConsentStatement,
  validateRevocationStatement,
  verifyConsentSignature,
  verifyRevocation,
  type SignedConsent,
  type SignedRevocation,
  type ConsentStatus,
} from '../sandbox/consent.ts';
import type { Datasets, SubjectSlot } from './datasets.ts';
import type { Registry } from './registry.ts';
import { ConsentReader, checkedHash, type ConsentRequest } from './consent-reader.ts';
import { ConsentIndex } from './consent-index.ts';
import { bytesToHex } from '../core/sign.ts';
import type { EngineContext } from './context.ts';

/** Subjects per batched read on the engine's thread. */
const READ_BATCH = 5000;

/** What a job asks of each subject's consent: the bank, purpose, operation, categories, as of a time. */
export type ConsentQuery = ConsentRequest;

export class Consents {
  private readonly ctx: EngineContext;
  private readonly registry: Registry;
  private reader: ConsentReader | undefined;
  private readonly index: ConsentIndex;
  private datasets: Datasets | undefined;

  constructor(ctx: EngineContext, registry: Registry) {
    this.ctx = ctx;
    this.registry = registry;
    this.index = new ConsentIndex(ctx.store.db);
  }

  /** Build (or bring up to date) the consent index now rather than in the next job. */
  warm(): void {
    this.index.fresh();
  }

  /** Where {@link jobSubjects} reads slots (set once by the engine; the two classes are built side by side). */
  useDatasets(datasets: Datasets): void {
    this.datasets = datasets;
  }

  /**
   * Record signed consents (docs/design.md §6). Each is validated and its signature checked against the subject's registered
   * key before anything is written; all land in one transaction or none do.
   * @throws SH_ERR_CONSENT_INVALID, SH_ERR_BAD_SIGNATURE, SH_ERR_UNKNOWN_PARTY, SH_ERR_ALREADY_EXISTS
   */
  add(list: readonly SignedConsent[]): void {
    const keys: string[] = [];
    for (const c of list) {
      const st = validateConsentStatement(c.statement);
      const subject = this.registry.requireParty(st.subject, 'enterprise');
      this.registry.requireParty(st.grantee, 'bank');
      if (!verifyConsentSignature(c, subject.ed25519))
        fail('SH_ERR_BAD_SIGNATURE', `consent ${st.id} is not signed by ${st.subject}'s registered key`, {
          consent: st.id,
        });
      keys.push(bytesToHex(subject.ed25519));
    }
    this.index.fresh();
    const keyOf = new Map(list.map((c, i) => [c.statement.subject, keys[i]!]));
    let before = 0;
    this.ctx.store.transaction(() => {
      before = this.index.currentVersion();
      const ins = this.ctx.store.db.prepare(
        'INSERT INTO consents (id, subject, grantee, signed_json, created_at, checked) VALUES (?, ?, ?, ?, ?, ?)',
      );
      const at = this.ctx.now().toISOString();
      for (const [i, c] of list.entries()) {
        const json = JSON.stringify(c);
        try {
          // Verified above: recorded with its hash, so no job verifies this signature again.
          ins.run(c.statement.id, c.statement.subject, c.statement.grantee, json, at, checkedHash(json, keys[i]!));
        } catch (err) {
          fail(
            'SH_ERR_ALREADY_EXISTS',
            `consent ${c.statement.id} is already recorded`,
            { consent: c.statement.id },
            err,
          );
        }
      }
      this.ctx.ledger.appendMany(
        list.map((c) => ({
          kind: 'consent.granted',
          event: {
            consentId: c.statement.id,
            subject: c.statement.subject,
            grantee: c.statement.grantee,
            purpose: c.statement.purpose,
            categories: c.statement.categories,
            operations: c.statement.operations,
            notBefore: c.statement.notBefore,
            notAfter: c.statement.notAfter,
            nonce: c.statement.nonce,
            signature: c.signature,
          },
          subjects: [c.statement.subject],
        })),
      );
    });
    this.index.recorded(before, this.index.currentVersion(), { consents: list, keyHex: (s) => keyOf.get(s)! });
    // A bulk import is checkpointed now, so the next job's checkpoint hashes only that job's own entries.
    this.ctx.ledger.checkpoint();
  }

  /** @throws SH_ERR_CONSENT_INVALID, SH_ERR_CONSENT_NOT_FOUND, SH_ERR_BAD_SIGNATURE */
  revoke(r: SignedRevocation): void {
    const st = validateRevocationStatement(r.statement);
    const row = this.ctx.store.db.prepare('SELECT subject FROM consents WHERE id = ?').get(st.consentId) as
      { subject: string } | undefined;
    if (!row || row.subject !== st.subject)
      fail('SH_ERR_CONSENT_NOT_FOUND', `no consent ${st.consentId} of subject ${st.subject}`, {
        consent: st.consentId,
      });
    const subject = this.registry.requireParty(st.subject, 'enterprise');
    if (!verifyRevocation(r, subject.ed25519))
      fail('SH_ERR_BAD_SIGNATURE', `revocation of ${st.consentId} is not signed by ${st.subject}'s registered key`);
    this.index.fresh();
    const keyHex = bytesToHex(subject.ed25519);
    let before = 0;
    this.ctx.store.transaction(() => {
      before = this.index.currentVersion();
      const json = JSON.stringify(r);
      this.ctx.store.db
        .prepare(
          'INSERT INTO revocations (consent_id, subject, signed_json, created_at, checked) VALUES (?, ?, ?, ?, ?)',
        )
        .run(
          st.consentId,
          st.subject,
          json,
          this.ctx.now().toISOString(),
          checkedHash(json, bytesToHex(subject.ed25519)),
        );
      this.ctx.ledger.append(
        'consent.revoked',
        {
          consentId: st.consentId,
          subject: st.subject,
          revokedAt: st.revokedAt,
          nonce: st.nonce,
          signature: r.signature,
        },
        [st.subject],
      );
    });
    this.index.recorded(before, this.index.currentVersion(), { revocations: [r], keyHex: () => keyHex });
  }

  /** A subject's consents (to one bank, or to any), in the order they were recorded. */
  of(subject: string, grantee?: string): SignedConsent[] {
    const rows = (
      grantee
        ? this.ctx.store
            .stmt('SELECT signed_json FROM consents WHERE subject = ? AND grantee = ?')
            .all(subject, grantee)
        : this.ctx.store.stmt('SELECT signed_json FROM consents WHERE subject = ?').all(subject)
    ) as Array<{ signed_json: string }>;
    return rows.map((r) => JSON.parse(r.signed_json) as SignedConsent);
  }

  /**
   * Per-subject consent status for a job (docs/design.md §6), from the in-memory index (engine/consent-index.ts: every
   * recorded statement, its signature verified once): the same answers as {@link statuses}, which reads and judges the
   * rows in SQLite (test/engine/consents.test.ts).
   */
  jobStatuses(
    req: ConsentQuery,
    subjects: readonly string[],
  ): Map<string, { status: ConsentStatus; consentId?: string }> {
    const judged = this.index.judge(req, subjects);
    return new Map(subjects.map((s, i) => [s, judged[i]!]));
  }

  /**
   * Consent statuses as {@link jobStatuses}, plus each subject's slot in each of `datasetIds` (as
   * Datasets.subjectSlots; with `slotsOf: 'OK'` only for subjects whose consent is OK), in request order.
   */
  jobSubjects(
    req: ConsentQuery,
    subjects: readonly string[],
    datasetIds: readonly string[],
    opts: { slotsOf?: 'all' | 'OK' } = {},
  ): {
    consent: Map<string, { status: ConsentStatus; consentId?: string }>;
    slots: Array<Map<string, SubjectSlot>>;
  } {
    const consent = this.jobStatuses(req, subjects);
    const of = opts.slotsOf === 'OK' ? subjects.filter((s) => consent.get(s)!.status === 'OK') : subjects;
    const slots = datasetIds.map((d) => this.datasets!.subjectSlots(d, of));
    return { consent, slots };
  }

  /**
   * Per-subject consent status (docs/design.md §6), read and judged from the stored rows in batches (ConsentReader):
   * for the auditor's replay, which must not trust a cache; jobs use {@link jobStatuses}.
   */
  statuses(
    req: ConsentQuery,
    subjects: readonly string[],
    /** Judge with the consents and revocations recorded by this time only (a replay: what the job knew). */
    recordedBy?: string,
  ): Map<string, { status: ConsentStatus; consentId?: string }> {
    this.reader ??= new ConsentReader(this.ctx.store.db);
    const out = new Map<string, { status: ConsentStatus; consentId?: string }>();
    for (let i = 0; i < subjects.length; i += READ_BATCH) {
      const batch = subjects.slice(i, i + READ_BATCH);
      this.reader.judge(req, batch, recordedBy).forEach((st, k) => out.set(batch[k]!, st));
    }
    return out;
  }

  /** The subject a consent id belongs to (a revocation by id is signed by that subject). */
  subjectOf(consentId: string): string | undefined {
    return (
      this.ctx.store.stmt('SELECT subject FROM consents WHERE id = ?').get(consentId) as { subject: string } | undefined
    )?.subject;
  }
}
