/**
 * The auditor's job bundle (`GET /v1/auditor/jobs/{id}/bundle`; docs/protocols.md "Auditor replay"): everything a
 * replay of one job reads on the auditor's machine besides the ledger (which the auditor fetches and verifies itself)
 * and the blobs (fetched by hash) — the job row and the rows it depends on: parties, the datasets and subject slots
 * involved, the columns the job read, token sets, the subjects' signed consents and revocations, the model and its
 * approvals. Rows are the engine database's rows verbatim (engine/store/store.ts `SCHEMA`), because the auditor's
 * client inserts them as they are into its replica (api/client/auditor.ts `replayRemote`); signed statements among them are
 * re-verified by the replay, blobs by their hashes.
 */
import { existsSync } from 'node:fs';
import { fail } from '../../core/errors.ts';
import type { Engine } from '../../engine/engine.ts';

// Row types are type aliases, not interfaces, so that a row is also a plain `Record` of its cells (the client inserts
// rows column by column).

/** `jobs`: one row per accepted bank-signed request. */
export type JobsRow = {
  id: string;
  kind: string;
  bank: string;
  request_json: string;
  status: string;
  summary_json: string | null;
  created_at: string;
  finished_at: string | null;
};
/** `parties`: public keys (hex) and the BFV public key's blob address. */
export type PartyRow = {
  id: string;
  role: string;
  ed25519_pub: string;
  x25519_pub: string | null;
  bfv_pub: string | null;
  params_id: string | null;
  oprf_pub: string | null;
  created_at: string;
};
/** `datasets`: one accepted upload (manifest and schema as stored JSON). */
export type DatasetRow = {
  id: string;
  provider: string;
  category: string;
  version: number;
  schema_json: string;
  manifest_json: string;
  signature: string;
  params_id: string;
  subjects: number;
  blocks: number;
  stats_json: string;
  created_at: string;
  current: number;
};
/** `dataset_subjects`: a subject's slot in a dataset. */
export type DatasetSubjectRow = { dataset_id: string; uscc: string; block: number; slot: number; missing: string };
/** `columns`: one encrypted column block's blob address. */
export type ColumnRow = { dataset_id: string; column_name: string; block: number; blob: string };
/** `tokens`: one OPRF token of a dataset field; the BLOB column travels as hex (SQLite `hex()`, upper case). */
export type TokenRow = { dataset_id: string; field: string; token: string };
/** `consents`: a subject's signed consent. */
export type ConsentRow = { id: string; subject: string; grantee: string; signed_json: string; created_at: string };
/** `revocations`: a subject's signed revocation. */
export type RevocationRow = { consent_id: string; subject: string; signed_json: string; created_at: string };
/** `models`: a registered model (spec as stored JSON, bound as a decimal string). */
export type ModelRow = {
  id: string;
  bank: string;
  kind: string;
  spec_json: string;
  hash: string;
  scale: number;
  bound: string;
  created_at: string;
};
/** `approvals`: a provider's signed approval of a model. */
export type ApprovalRow = {
  model_id: string;
  provider: string;
  model_hash: string;
  signed_json: string;
  created_at: string;
};

/** The bundle: rows by table name (the replica inserts each into the table of that name), then blob addresses. */
export interface AuditBundle {
  rows: {
    jobs: JobsRow[];
    parties: PartyRow[];
    datasets: DatasetRow[];
    dataset_subjects: DatasetSubjectRow[];
    columns: ColumnRow[];
    tokens: TokenRow[];
    consents: ConsentRow[];
    revocations: RevocationRow[];
    models: ModelRow[];
    approvals: ApprovalRow[];
  };
  /** SHA-256 addresses of the blobs the replay reads, sorted. */
  blobs: string[];
}

/** Ledger event fields that name a blob the replay compares against (when it has not been purged). */
const EVENT_BLOBS = ['rerandomizer', 'resultHash', 'responseHash'] as const;

/**
 * The bundle of one job (SH_ERR_NOT_FOUND when no such job was accepted). The engine's components offer no raw rows
 * beyond the job's own (`engine.jobs.row`), so the dependent rows are read here, read-only, through
 * `engine.store.db`; nothing in this module writes.
 */
export function auditBundle(e: Engine, jobId: string): AuditBundle {
  const db = e.store.db;
  const job = e.jobs.row(jobId) as JobsRow | undefined;
  if (!job) fail('SH_ERR_NOT_FOUND', `no job ${JSON.stringify(jobId)}`, { job: jobId });
  const body = (JSON.parse(job.request_json) as { signed: { body: Record<string, unknown> } }).signed.body;
  const claims = (body.claims ?? []) as Array<{ subject: string; provider: string; field: string }>;
  const subjects = [...new Set([...((body.subjects ?? []) as string[]), ...claims.map((c) => c.subject)])];
  const model = typeof body.modelId === 'string' ? e.models.get(body.modelId) : undefined;
  // Datasets: the ones the job's ledger events name, and the current ones of every provider it involves.
  const events = e.ledger.jobEntries(jobId).map((x) => x.body);
  const providers = new Set<string>([
    ...(model?.spec.terms ?? []).map((t) => t.provider),
    ...claims.map((c) => c.provider),
    ...(typeof body.provider === 'string' ? [body.provider] : []),
    ...((body.others ?? []) as Array<{ provider: string }>).map((o) => o.provider),
  ]);
  const datasetIds = new Set<string>(
    e.datasets
      .current()
      .filter((d) => providers.has(d.provider))
      .map((d) => d.id),
  );
  for (const ev of events) {
    const l = String(ev.label ?? '').split('/');
    if ((l[0] === 'score' || l[0] === 'verify') && l[2] && !l[2].startsWith('job')) datasetIds.add(l[2]);
  }
  const ids = [...datasetIds];
  const inList = (xs: readonly string[]) => xs.map(() => '?').join(',') || "''";
  const columnNames = new Set<string>([
    ...(model ? e.models.compiled(model.spec.id).terms.flatMap((t) => t.columns.map((c) => c.column)) : []),
    ...claims.map((c) => c.field),
  ]);
  const rows: AuditBundle['rows'] = {
    jobs: [job],
    // Every party but the enterprises, and of those only the job's subjects.
    parties: db
      .prepare(`SELECT * FROM parties WHERE role != 'enterprise' OR id IN (${inList(subjects)})`)
      .all(...subjects) as unknown as PartyRow[],
    datasets: db.prepare(`SELECT * FROM datasets WHERE id IN (${inList(ids)})`).all(...ids) as unknown as DatasetRow[],
    dataset_subjects:
      ids.length && subjects.length
        ? (db
            .prepare(
              `SELECT * FROM dataset_subjects WHERE dataset_id IN (${inList(ids)}) AND uscc IN (${inList(subjects)})`,
            )
            .all(...ids, ...subjects) as unknown as DatasetSubjectRow[])
        : [],
    columns: ids.length
      ? (
          db.prepare(`SELECT * FROM columns WHERE dataset_id IN (${inList(ids)})`).all(...ids) as unknown as ColumnRow[]
        ).filter((c) => columnNames.has(c.column_name))
      : [],
    tokens: ids.length
      ? (db
          .prepare(`SELECT dataset_id, field, hex(token) AS token FROM tokens WHERE dataset_id IN (${inList(ids)})`)
          .all(...ids) as unknown as TokenRow[])
      : [],
    consents: subjects.length
      ? (db
          .prepare(`SELECT * FROM consents WHERE subject IN (${inList(subjects)})`)
          .all(...subjects) as unknown as ConsentRow[])
      : [],
    revocations: subjects.length
      ? (db
          .prepare(`SELECT * FROM revocations WHERE subject IN (${inList(subjects)})`)
          .all(...subjects) as unknown as RevocationRow[])
      : [],
    models: model ? (db.prepare('SELECT * FROM models WHERE id = ?').all(model.spec.id) as unknown as ModelRow[]) : [],
    approvals: model
      ? (db.prepare('SELECT * FROM approvals WHERE model_id = ?').all(model.spec.id) as unknown as ApprovalRow[])
      : [],
  };
  const blobs = new Set<string>();
  for (const c of rows.columns) blobs.add(c.blob);
  for (const p of rows.parties) if (p.bfv_pub) blobs.add(p.bfv_pub);
  for (const ev of events)
    for (const k of EVENT_BLOBS)
      if (typeof ev[k] === 'string' && existsSync(e.store.blobPath(ev[k] as string))) blobs.add(ev[k] as string);
  return { rows, blobs: [...blobs].sort() };
}
