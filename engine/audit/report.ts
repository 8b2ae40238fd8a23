/**
 * An enterprise's access report (信息主体查询): every consent it signed or revoked and every job that named it
 * — bank, purpose, operation, fields, time, and whether a result was delivered for it or refused (with the consent
 * status) — each with its ledger leaf and an RFC 9162 inclusion proof against the latest signed checkpoint, so the
 * enterprise can check the report without trusting the engine (api/client/enterprise.ts `accessReport`).
 * {@link describeEntry} is the one line the CLI prints for an entry, for every kind an enterprise can meet.
 */
import { existsSync } from 'node:fs';
import { bytesToHex } from '../../core/sign.ts';
import type { Engine } from '../engine.ts';
import type { ScoreResult } from '../protocols/score/messages.ts';

export interface AccessEntry {
  index: number;
  at: string;
  kind: string;
  /** What the entry is to the enterprise; `other` for a kind this report does not know (its line gives the kind). */
  what: 'registration' | 'consent' | 'revocation' | 'job' | 'budget' | 'other';
  bank?: string;
  purpose?: string;
  operation?: string;
  fields?: string[];
  jobId?: string;
  consentId?: string;
  /** For jobs: `delivered`, `no_data`, or `refused:<consent status>`. */
  outcome?: string;
  body: Record<string, unknown>;
  leaf: string;
  proof: string[];
}

export interface AccessReport {
  subject: string;
  checkpoint: string;
  size: number;
  entries: AccessEntry[];
}

export function accessReport(engine: Engine, subject: string): AccessReport {
  const checkpoint = engine.ledger.checkpoint();
  const size = engine.ledger.latestCheckpoint()!.size;
  const entries: AccessEntry[] = [];
  for (const e of engine.ledger.subjectEntries(subject)) {
    if (e.index >= size) continue;
    const base = {
      index: e.index,
      at: e.at,
      kind: e.kind,
      body: e.body,
      leaf: engine.ledger.leafText(e.index),
      proof: engine.ledger.inclusionProof(e.index, size).map((p) => bytesToHex(p)),
    };
    if (e.kind === 'party.registered') {
      entries.push({ ...base, what: 'registration' });
    } else if (e.kind === 'consent.granted') {
      entries.push({
        ...base,
        what: 'consent',
        bank: String(e.body.grantee),
        purpose: String(e.body.purpose),
        operation: (e.body.operations as string[]).join(','),
        fields: e.body.categories as string[],
        consentId: String(e.body.consentId),
      });
    } else if (e.kind === 'consent.revoked') {
      entries.push({ ...base, what: 'revocation', consentId: String(e.body.consentId) });
    } else if (e.kind === 'job.requested') {
      const jobId = String(e.body.jobId);
      const job = engine.jobs.get(jobId);
      const signed = job ? (job.request as { signed: { body: Record<string, unknown> } }).signed.body : {};
      entries.push({
        ...base,
        what: 'job',
        jobId,
        bank: String(e.body.bank),
        purpose: String(e.body.purpose),
        operation: String(e.body.job),
        fields: jobFields(engine, String(e.body.job), signed, subject),
        outcome: outcomeOf(engine, String(e.body.job), signed, job?.summary ?? null, subject),
      });
    } else {
      const jobId = typeof e.body.jobId === 'string' ? { jobId: e.body.jobId } : {};
      const budget = ['verify.budget_exceeded', 'verify.custodian_refused', 'score.custodian_refused'].includes(e.kind);
      entries.push({ ...base, what: budget ? 'budget' : 'other', ...jobId });
    }
  }
  return { subject, checkpoint, size, entries };
}

/**
 * One line for an entry (without its time and index), whatever its kind: a registration, a consent, a revocation,
 * a job with its outcome, a spent verification budget; an unknown kind is named as it is.
 * @example describeEntry({ kind: 'party.registered', what: 'registration', body: { role: 'enterprise' } })
 *   // 'registered as enterprise'
 */
export function describeEntry(e: Omit<AccessEntry, 'leaf' | 'proof' | 'index' | 'at'>): string {
  const b = e.body;
  const list = (xs: readonly string[] | undefined) => (xs ?? []).join(', ');
  switch (e.what) {
    case 'registration': {
      const key = typeof b.ed25519 === 'string' ? ` (Ed25519 key ${b.ed25519.slice(0, 16)}…)` : '';
      return `registered as ${String(b.role ?? 'a party')}${key}`;
    }
    case 'consent':
      return `consent ${e.consentId} to ${e.bank} for ${e.purpose} (${e.operation}; ${list(e.fields)})${typeof b.notAfter === 'string' ? ` until ${b.notAfter}` : ''}`;
    case 'revocation':
      return `revocation of consent ${e.consentId}`;
    case 'job':
      return `${e.operation} job ${e.jobId} by ${e.bank} for ${e.purpose} [${list(e.fields)}] → ${e.outcome}`;
    case 'budget': {
      const window = typeof b.since === 'string' ? ` (window since ${b.since})` : '';
      if (e.kind === 'score.custodian_refused')
        return `scoring budget spent in job ${e.jobId}: provider ${list(Object.keys((b.providers ?? {}) as object))} refused to answer for you (OVER_BUDGET)`;
      if (e.kind === 'verify.custodian_refused')
        return `verification budget spent at provider ${list(b.providers as string[])} in job ${e.jobId}: its claims were answered over_budget`;
      return `verification budget spent in job ${e.jobId}${window}: claims beyond it were answered over_budget`;
    }
    default:
      return `${e.kind} entry${e.jobId ? ` of job ${e.jobId}` : ''}`;
  }
}

/** Fields a job used of this subject: the model's terms (score), the subject's claims (verify), the training fields. */
function jobFields(engine: Engine, kind: string, req: Record<string, unknown>, subject: string): string[] {
  if (kind === 'score')
    return [
      ...new Set((engine.models.get(String(req.modelId))?.spec.terms ?? []).map((t) => `${t.provider}.${t.field}`)),
    ].sort();
  if (kind === 'verify')
    return [
      ...new Set(
        ((req.claims ?? []) as Array<{ subject: string; provider: string; field: string }>)
          .filter((c) => c.subject === subject)
          .map((c) => `${c.provider}.${c.field}`),
      ),
    ].sort();
  if (kind === 'train') {
    const parts = [
      { provider: req.provider, fields: req.fields },
      ...((req.others ?? []) as Array<{ provider: string; fields: string[] }>),
    ] as Array<{ provider: string; fields: string[] }>;
    return parts.flatMap((p) => (p.fields ?? []).map((f) => `${p.provider}.${f}`)).sort();
  }
  return [];
}

/** Delivered or refused for this subject: the stored result where kept, else the consent status at the job's time. */
function outcomeOf(
  engine: Engine,
  kind: string,
  req: Record<string, unknown>,
  summary: Record<string, unknown> | null,
  subject: string,
): string {
  if (kind === 'score' && summary) {
    const hash = summary.resultHash as string | undefined;
    if (hash && existsSync(engine.store.blobPath(hash))) {
      const result = JSON.parse(new TextDecoder().decode(engine.store.getBlob(hash))) as ScoreResult;
      const s = result.subjects.find((x) => x.uscc === subject);
      if (s) return s.status === 'OK' ? 'delivered' : s.status === 'NO_DATA' ? 'no_data' : `refused:${s.status}`;
    }
  }
  const op = kind === 'score' ? 'score' : kind === 'verify' ? 'verify' : 'train';
  const categories =
    kind === 'verify'
      ? [
          ...new Set(
            ((req.claims ?? []) as Array<{ subject: string; provider: string; field: string }>)
              .filter((c) => c.subject === subject)
              .map((c) => engine.datasets.withField(c.provider, c.field)?.category)
              .filter((c): c is string => !!c),
          ),
        ]
      : kind === 'score'
        ? [
            ...new Set(
              (engine.models.get(String(req.modelId))?.spec.terms ?? [])
                .map((t) => engine.datasets.withField(t.provider, t.field)?.category)
                .filter((c): c is string => !!c),
            ),
          ]
        : [
            ...new Set(
              [
                { provider: req.provider, fields: req.fields },
                ...((req.others ?? []) as Array<{ provider: string; fields: string[] }>),
              ]
                .map((p) => engine.datasets.withField(String(p.provider), String((p.fields as string[])[0]))?.category)
                .filter((c): c is string => !!c),
            ),
          ];
  const st = engine.consents
    .statuses(
      {
        bank: String(req.bank),
        purpose: String(req.purpose),
        operation: op,
        categories: categories.sort(),
        at: new Date(String(req.requestedAt)),
      },
      [subject],
    )
    .get(subject)!;
  return st.status === 'OK' ? 'delivered' : `refused:${st.status}`;
}
