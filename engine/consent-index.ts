/**
 * The engine's consents in memory, for jobs (docs/design.md §6): every recorded consent statement whose signature was
 * verified (once, when it was recorded — or again here when its row no longer matches the hash recorded then), per
 * subject and grantee in the order recorded, with each subject's revocations. A job judges its subjects from here with
 * `checkedConsentJudge`, the rules `ConsentReader` applies to the same rows read from SQLite (test/engine/consents.test.ts
 * compares the two): no job reads, parses or hashes 100 000 consent rows.
 *
 * Coherence: triggers (engine/store/store.ts) count every write to `consents`, `revocations` and an enterprise's key
 * in `meta.consent_version`, from any connection. Before a job the index compares that count with the one it was
 * built at and rebuilds when it differs; `Consents.add`/`revoke` apply their own rows and move the count on, so the
 * engine's own writes never force a rebuild.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import {
  checkedConsentJudge,
  type ConsentStatement,
  type ConsentStatus,
  type SignedConsent,
  type SignedRevocation,
} from '../sandbox/consent.ts';
import { acceptConsentRow, acceptRevocationRow, type ConsentRequest } from './consent-reader.ts';

/** One subject's consents as the reader would judge them. */
interface SubjectEntry {
  /** Registered enterprise key (hex) the rows were checked against; undefined: no enterprise of that id. */
  key: string | undefined;
  /** Per grantee column: the statements whose signatures verified, in rowid order. */
  statements: Map<string, ConsentStatement[]>;
  /** Per grantee column: rows that did not verify but name that grantee and this subject (they rank BAD_SIGNATURE). */
  bad?: Map<string, number>;
  /** Per grantee column: how many rows there are (a subject without a key has BAD_SIGNATURE if any). */
  rows: Map<string, number>;
  /** Consent id → earliest revocation time, from this subject's verified revocations. */
  revokedAt?: Map<string, number>;
}

const NO_REVOCATIONS: ReadonlyMap<string, number> = new Map();

type ConsentRow = { subject: string; grantee: string; signed_json: string; checked: string | null };
type RevocationRow = { subject: string; signed_json: string; checked: string | null };

export class ConsentIndex {
  private readonly db: DatabaseSync;
  private readonly versionStmt: StatementSync;
  private version = -1;
  private subjects = new Map<string, SubjectEntry>();

  constructor(db: DatabaseSync) {
    this.db = db;
    this.versionStmt = db.prepare("SELECT value FROM meta WHERE key = 'consent_version'");
  }

  /** The write count the triggers keep (0 before the first write). */
  currentVersion(): number {
    const r = this.versionStmt.get() as { value: string } | undefined;
    return r ? Number(r.value) : 0;
  }

  /** Each subject's status, in the order of `subjects` — the answers `ConsentReader.judge` gives on the same rows. */
  judge(req: ConsentRequest, subjects: readonly string[]): Array<{ status: ConsentStatus; consentId?: string }> {
    this.fresh();
    const judge = checkedConsentJudge(req);
    return subjects.map((s) => {
      const e = this.subjects.get(s);
      if (!e) return { status: 'NO_CONSENT' };
      if (e.key === undefined)
        return (e.rows.get(req.bank) ?? 0) > 0 ? { status: 'BAD_SIGNATURE' } : { status: 'NO_CONSENT' };
      return judge(s, e.statements.get(req.bank) ?? [], e.revokedAt ?? NO_REVOCATIONS, e.bad?.get(req.bank) ?? 0);
    });
  }

  /**
   * The engine's own write: rows it verified and recorded in one transaction, which moved the count from `before` to
   * `after`. Applied when the index was current at `before` (otherwise the next job rebuilds it anyway).
   */
  recorded(
    before: number,
    after: number,
    rows: {
      consents?: readonly SignedConsent[];
      revocations?: readonly SignedRevocation[];
      keyHex: (subject: string) => string;
    },
  ): void {
    if (this.version !== before) return;
    for (const c of rows.consents ?? []) {
      const e = this.entry(c.statement.subject, rows.keyHex(c.statement.subject));
      bump(e.rows, c.statement.grantee);
      push(e.statements, c.statement.grantee, c.statement);
    }
    for (const r of rows.revocations ?? []) {
      const e = this.entry(r.statement.subject, rows.keyHex(r.statement.subject));
      revoke(e, r.statement.consentId, Date.parse(r.statement.revokedAt));
    }
    this.version = after;
  }

  /** Rebuild if any write since the last build or own write was not the engine's own. */
  fresh(): void {
    const v = this.currentVersion();
    if (v !== this.version) this.rebuild(v);
  }

  private entry(subject: string, key: string | undefined): SubjectEntry {
    let e = this.subjects.get(subject);
    if (!e) {
      e = { key, statements: new Map(), rows: new Map() };
      this.subjects.set(subject, e);
    }
    return e;
  }

  /** Every row again, with the reader's row rules (acceptConsentRow, acceptRevocationRow). */
  private rebuild(version: number): void {
    const subjects = new Map<string, SubjectEntry>();
    const keys = new Map(
      (
        this.db.prepare("SELECT id, ed25519_pub FROM parties WHERE role = 'enterprise'").all() as Array<{
          id: string;
          ed25519_pub: string;
        }>
      ).map((r) => [r.id, r.ed25519_pub]),
    );
    const entry = (s: string): SubjectEntry => {
      let e = subjects.get(s);
      if (!e) {
        e = { key: keys.get(s), statements: new Map(), rows: new Map() };
        subjects.set(s, e);
      }
      return e;
    };
    for (const r of this.db
      .prepare('SELECT subject, grantee, signed_json, checked FROM consents ORDER BY rowid')
      .all() as ConsentRow[]) {
      const e = entry(r.subject);
      bump(e.rows, r.grantee);
      if (e.key === undefined) continue;
      const st = acceptConsentRow(r, r.grantee, e.key);
      if (st === 'bad') bump((e.bad ??= new Map()), r.grantee);
      else if (st) push(e.statements, r.grantee, st);
    }
    for (const r of this.db
      .prepare('SELECT subject, signed_json, checked FROM revocations ORDER BY rowid')
      .all() as RevocationRow[]) {
      const e = subjects.get(r.subject);
      if (!e || e.key === undefined) continue; // no consent of that subject: nothing to revoke
      const v = acceptRevocationRow(r, e.key);
      if (v) revoke(e, v.consentId, v.at);
    }
    this.subjects = subjects;
    this.version = version;
  }
}

function bump(m: Map<string, number>, k: string): void {
  m.set(k, (m.get(k) ?? 0) + 1);
}

function push(m: Map<string, ConsentStatement[]>, k: string, st: ConsentStatement): void {
  const l = m.get(k);
  if (l) l.push(st);
  else m.set(k, [st]);
}

function revoke(e: SubjectEntry, consentId: string, at: number): void {
  const m = (e.revokedAt ??= new Map());
  const before = m.get(consentId);
  if (before === undefined || at < before) m.set(consentId, at);
}
