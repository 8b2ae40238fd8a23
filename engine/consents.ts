/**
 * Consents (授权, docs/design.md §6): enterprise-signed consent statements and revocations, and each subject's status
 * for a job — valid signature by its registered key, grantee, purpose, operation, categories, time window, not
 * revoked. Large jobs judge their subjects in the worker pool (`statusesParallel`, `subjectsParallel`: the workers
 * read the statements through their own read-only connections), with the same answers as `statuses`.
 */
import { fail } from '../core/errors.ts';
import {
  validateConsentStatement,
  validateRevocationStatement,
  verifyConsentSignature,
  verifyRevocation,
  CONSENT_STATUSES,
  type SignedConsent,
  type SignedRevocation,
  type ConsentStatus,
} from '../sandbox/consent.ts';
import { SLOT_STRIDE } from './he/params.ts';
import type { SubjectSlot } from './datasets.ts';
import type { Registry } from './registry.ts';
import { ConsentReader, checkedHash, type ConsentRequest } from './consent-reader.ts';
import { bytesToHex } from '../core/sign.ts';
import { kernelRef } from './pool/kernel.ts';
import type * as Kernels from './consent-kernels.ts';
import type { EngineContext } from './context.ts';

const consentChunk = kernelRef<typeof Kernels.consentChunk>(
  new URL('./consent-kernels.ts', import.meta.url),
  'consentChunk',
);

/** Subjects per batched read on the engine's thread. */
const READ_BATCH = 5000;

/** Fewest subjects per consent-check task in the pool (below this, messaging costs more than it spreads). */
const CONSENT_CHUNK_MIN = 256;

/** What a job asks of each subject's consent: the bank, purpose, operation, categories, as of a time. */
export type ConsentQuery = ConsentRequest;

export class Consents {
  private readonly ctx: EngineContext;
  private readonly registry: Registry;
  private reader: ConsentReader | undefined;

  constructor(ctx: EngineContext, registry: Registry) {
    this.ctx = ctx;
    this.registry = registry;
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
    this.ctx.store.transaction(() => {
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
    this.ctx.store.transaction(() => {
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
   * Per-subject consent status for a job (docs/design.md §6), for many subjects: rows are read in batches and each subject's
   * statements (signature checks included) are judged by `consentStatus` in the worker pool, in parallel. Same
   * answers as {@link statuses} (test/engine/consents.test.ts).
   */
  async statusesParallel(
    req: ConsentQuery,
    subjects: readonly string[],
  ): Promise<Map<string, { status: ConsentStatus; consentId?: string }>> {
    return (await this.subjectsParallel(req, subjects, [])).consent;
  }

  /**
   * Consent statuses as {@link statusesParallel}, plus each subject's slot in each of `datasetIds` (as
   * Datasets.subjectSlots; with `slotsOf: 'OK'` only for subjects whose consent is OK), all read and judged in the pool: every per-subject step of a large job runs on the workers
   * (their own read-only connections to this database; WAL: committed data only), this thread only hands out lists.
   */
  async subjectsParallel(
    req: ConsentQuery,
    subjects: readonly string[],
    datasetIds: readonly string[],
    opts: { slotsOf?: 'all' | 'OK' } = {},
  ): Promise<{
    consent: Map<string, { status: ConsentStatus; consentId?: string }>;
    slots: Array<Map<string, SubjectSlot>>;
  }> {
    const request = {
      bank: req.bank,
      purpose: req.purpose,
      operation: req.operation,
      categories: req.categories,
      at: req.at.toISOString(),
    };
    const chunks: Array<Promise<Kernels.ConsentAnswer>> = [];
    // A multiple of the pool size in equal chunks, so no worker is left alone with the last one.
    const chunkSize = Math.max(CONSENT_CHUNK_MIN, Math.ceil(subjects.length / (this.ctx.pool.size * 8)));
    for (let i = 0; i < subjects.length; i += chunkSize) {
      chunks.push(
        this.ctx.pool.run(consentChunk, {
          dbPath: this.ctx.store.dbPath,
          request,
          subjects: subjects.slice(i, i + chunkSize),
          datasets: [...datasetIds],
          slotsOfOkOnly: opts.slotsOf === 'OK',
        }),
      );
    }
    const consent = new Map<string, { status: ConsentStatus; consentId?: string }>();
    const slots = datasetIds.map(() => new Map<string, SubjectSlot>());
    const none = new Set<string>();
    (await this.ctx.pool.all(chunks)).forEach((r, c) => {
      const ids = r.ids.split('\n');
      r.codes.forEach((code, j) => {
        const status = CONSENT_STATUSES[code]!;
        consent.set(subjects[c * chunkSize + j]!, ids[j] ? { status, consentId: ids[j] } : { status });
      });
      r.slots.forEach(({ pos, missing }, d) =>
        pos.forEach((p, j) => {
          if (p < 0) return;
          const m = missing[j];
          slots[d]!.set(subjects[c * chunkSize + j]!, {
            block: Math.floor(p / SLOT_STRIDE),
            slot: p % SLOT_STRIDE,
            missing: m ? new Set(m.split(';')) : none,
          });
        }),
      );
    });
    return { consent, slots };
  }

  /**
   * Per-subject consent status for a job (docs/design.md §6), judged on this thread in batches with the same reader
   * the pool's workers use. For the auditor's replay and small jobs; large jobs use {@link statusesParallel}.
   */
  statuses(req: ConsentQuery, subjects: readonly string[]): Map<string, { status: ConsentStatus; consentId?: string }> {
    this.reader ??= new ConsentReader(this.ctx.store.db);
    const out = new Map<string, { status: ConsentStatus; consentId?: string }>();
    for (let i = 0; i < subjects.length; i += READ_BATCH) {
      const batch = subjects.slice(i, i + READ_BATCH);
      this.reader.judge(req, batch).forEach((st, k) => out.set(batch[k]!, st));
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
