/**
 * Auditor replay of a job (issue 6): from the ledger, the stored bank-signed request, the blobs and the seed escrowed
 * to the auditor, re-check every step a scoring job took and compare what was sent to the custodians and to the bank.
 * Each step ends `match`, `mismatch` (the recomputation disagrees with what was logged: treat as tampering) or
 * `missing` (a blob or record needed for the step is gone, e.g. purged after retention — not evidence of tampering).
 *
 * Steps of a score job:
 *  - `request`: the bank's signature over the stored request, and its hash equal to the ledgered `jobHash`;
 *  - `escrow`: the auditor's sealed seed opens (X25519 + AES-GCM bound to job and hash) and hashes as ledgered;
 *  - `model`: the registered model recompiles to the hash the request pinned, approved by every provider it uses;
 *  - `consent`: each subject's consent status re-derived as of `requestedAt` from the signed consents and
 *    revocations; the hash of the consent ids used equals the ledgered one;
 *  - `block <label>`: the worker recomputes Σ w·x over the stored columns, adds the mask derived from the seed and the
 *    logged re-randomizer, switches down — the bytes must hash to the ciphertext the custodian was sent;
 *  - `result`: the stored result hashes as ledgered, its statuses and unmask values U equal the recomputation (masks
 *    from the seed, offsets from the model), and its sealed boxes are the custodians' ledgered answers.
 * The replay trusts nothing the engine computed: it reads the signed statements, the ledger and content-addressed blobs.
 */
import { existsSync } from 'node:fs';
import { canonicalize } from '../jcs.ts';
import { isCoded } from '../errors.ts';
import { sha256Hex } from '../store/store.ts';
import { deriveMaskKey, maskVector } from '../he/mask.ts';
import { toSlot } from '../he/codec.ts';
import { verifyJson, type Signed } from '../crypto/sign.ts';
import { openSealed, type SealedBox } from '../crypto/sealbox.ts';
import { compileModel, type CompiledModel } from '../../models/model.ts';
import { scoreStatuses, type ScoreRequest, type ScoreResult } from '../protocols/score.ts';
import type { Engine } from '../engine.ts';

export type StepStatus = 'match' | 'mismatch' | 'missing';
export interface ReplayStep { step: string; status: StepStatus; detail?: string }
export interface ReplayReport { jobId: string; kind: string; ok: boolean; steps: ReplayStep[] }

interface LedgerEvent { index: number; kind: string; body: Record<string, unknown> }

/** Every ledger event of one job, in order (the auditor scans the ledger it verified). */
function jobEvents(engine: Engine, jobId: string): LedgerEvent[] {
  const rows = engine.store.db.prepare("SELECT idx, body FROM ledger_entries WHERE body LIKE ? ORDER BY idx").all(`%"jobId":${JSON.stringify(jobId)}%`) as Array<{ idx: number; body: string }>;
  return rows.map((r) => {
    const body = JSON.parse(r.body) as Record<string, unknown>;
    return { index: Number(r.idx), kind: String(body.kind), body };
  }).filter((e) => e.body.jobId === jobId);
}

function blobOrMissing(engine: Engine, hash: unknown): Uint8Array | 'missing' | 'corrupt' {
  if (typeof hash !== 'string' || !/^[0-9a-f]{64}$/.test(hash) || !existsSync(engine.store.blobPath(hash))) return 'missing';
  try {
    return engine.store.getBlob(hash);
  } catch (err) {
    if (isCoded(err, 'SH_ERR_BLOB_CORRUPT')) return 'corrupt';
    throw err;
  }
}

/**
 * Replay one job. `auditor` is the replaying auditor's id and X25519 secret key (to open the escrowed seed).
 * @throws SH_ERR_NOT_FOUND for an unknown job id
 */
export async function replayJob(engine: Engine, jobId: string, auditor: { id: string; x25519SecretKey: Uint8Array }): Promise<ReplayReport> {
  const row = engine.store.db.prepare('SELECT kind, request_json FROM jobs WHERE id = ?').get(jobId) as { kind: string; request_json: string } | undefined;
  const steps: ReplayStep[] = [];
  const add = (step: string, status: StepStatus, detail?: string) => steps.push({ step, status, ...(detail ? { detail } : {}) });
  const events = jobEvents(engine, jobId);
  const requested = events.find((e) => e.kind === 'job.requested');
  if (!row || !requested) {
    add('request', 'missing', row ? 'no job.requested entry in the ledger' : 'no stored request');
    return { jobId, kind: row?.kind ?? 'unknown', ok: false, steps };
  }
  if (row.kind !== 'score') {
    add('request', 'missing', `replay of ${row.kind} jobs is not implemented yet`);
    return { jobId, kind: row.kind, ok: false, steps };
  }
  const stored = JSON.parse(row.request_json) as { signed: Signed<ScoreRequest>; escrow: Array<{ auditor: string; sealed: SealedBox }> };
  const signed = stored.signed;
  const req = signed.body;

  // request
  const bank = engine.party(signed.signer);
  const jobHash = sha256Hex(canonicalize(signed));
  if (!bank || !verifyJson(signed, bank.ed25519)) add('request', 'mismatch', 'the bank signature over the stored request does not verify');
  else if (jobHash !== requested.body.jobHash) add('request', 'mismatch', 'the stored request does not hash to the ledgered jobHash');
  else add('request', 'match');

  // escrow
  let seed: Uint8Array | undefined;
  const mine = stored.escrow?.find((x) => x.auditor === auditor.id);
  const ledgered = (requested.body.escrow as Array<{ auditor: string; hash: string }> | undefined)?.find((x) => x.auditor === auditor.id);
  if (!mine || !ledgered) add('escrow', 'missing', `no seed escrowed to ${auditor.id}`);
  else {
    try {
      seed = openSealed(auditor.x25519SecretKey, mine.sealed, { type: 'safehouse.escrow.v1', jobId, jobHash: requested.body.jobHash });
    } catch {
      add('escrow', 'mismatch', 'the escrowed seed does not open for this auditor');
    }
    // A replaced box still opens (it is sealed to the auditor's public key), so its hash is what pins the seed; the
    // blocks are replayed with it anyway and mismatch too.
    if (seed && sha256Hex(canonicalize(mine.sealed)) !== ledgered.hash) add('escrow', 'mismatch', 'the stored escrow box is not the ledgered one');
    else if (seed) add('escrow', 'match');
  }

  // model
  const m = engine.model(req.modelId);
  let model: CompiledModel | undefined;
  if (!m) add('model', 'missing', `model ${req.modelId} is not stored`);
  else {
    model = compileModel(m.spec, engine.fieldLookup, engine.params.t);
    const approvals = engine.approvals(req.modelId);
    const unapproved = [...new Set(model.terms.map((t) => t.provider))].filter((p) => approvals.get(p) !== model!.hash);
    if (model.hash !== req.modelHash) add('model', 'mismatch', `the stored model compiles to ${model.hash.slice(0, 12)}…, the request pinned ${req.modelHash.slice(0, 12)}…`);
    else if (unapproved.length) add('model', 'mismatch', `not approved by ${unapproved.join(', ')}`);
    else add('model', 'match');
  }

  // consent (as of the request's time)
  const subjects = req.subjects;
  const blockEvents = events.filter((e) => e.kind === 'custodian.request');
  const datasets = new Map<string, { provider: string; terms: CompiledModel['terms'] }>();
  for (const e of blockEvents) {
    const datasetId = String(e.body.label).split('/')[2]!;
    if (model) datasets.set(datasetId, { provider: String(e.body.provider), terms: model.terms.filter((t) => t.provider === e.body.provider) });
  }
  const categories = [...new Set([...datasets.keys()].map((id) => engine.dataset(id)?.category).filter((c): c is string => !!c))].sort();
  const consent = engine.consentStatuses({ bank: req.bank, purpose: req.purpose, operation: 'score', categories, at: new Date(req.requestedAt) }, subjects);
  const ok = subjects.filter((s) => consent.get(s)?.status === 'OK');
  const groups = [...datasets].map(([datasetId, d]) => ({ datasetId, ...d, slots: engine.subjectSlots(datasetId, ok) }));
  const { status, offsets } = model ? scoreStatuses(model, groups, subjects, consent) : { status: new Map<string, string>(), offsets: new Map<string, bigint>() };
  const consentIds = subjects.filter((s) => status.get(s) === 'OK').map((s) => consent.get(s)!.consentId!).sort();
  if (sha256Hex(consentIds.join('\n')) !== requested.body.consentIds) add('consent', 'mismatch', 'the consents valid at the request time are not the ones the job used');
  else add('consent', 'match');

  // blocks: recompute the ciphertext each custodian was sent
  const masks = new Map<string, BigUint64Array>();
  for (const e of blockEvents) {
    const label = String(e.body.label);
    const [, provider, datasetId, , blockText] = label.split('/');
    const block = Number(blockText);
    const step = `block ${label}`;
    if (!seed || !model) { add(step, 'missing', 'no seed or model to replay with'); continue; }
    const maskKey = deriveMaskKey(seed, `${jobId}/${label}`);
    masks.set(`${datasetId}#${block}`, maskVector(maskKey, engine.params.t, engine.params.slots));
    const rerandomizer = blobOrMissing(engine, e.body.rerandomizer);
    if (rerandomizer === 'missing') { add(step, 'missing', 're-randomizer blob not stored'); continue; }
    if (rerandomizer === 'corrupt') { add(step, 'mismatch', 're-randomizer blob does not hash to its address'); continue; }
    const columns: Array<{ path: string; hash: string; multiplier: string }> = [];
    let problem: StepStatus | undefined;
    for (const term of model.terms.filter((t) => t.provider === provider)) {
      for (const c of term.columns) {
        const blob = engine.columnBlob(datasetId!, c.column, block);
        const bytes = blobOrMissing(engine, blob);
        if (bytes === 'missing') problem ??= 'missing';
        else if (bytes === 'corrupt') problem = 'mismatch';
        else columns.push({ path: engine.store.blobPath(blob!), hash: blob!, multiplier: c.multiplier.toString() });
      }
    }
    if (problem) { add(step, problem, problem === 'missing' ? 'a column blob is not stored' : 'a column blob does not hash to its address'); continue; }
    const pk = engine.party(provider!)?.bfvPublicKeyBlob;
    try {
      const ct = await engine.pool.run<Uint8Array>({ op: 'evalBlock', paramsId: engine.params.id, publicKey: { path: engine.store.blobPath(pk!), hash: pk! }, columns, maskKey: maskKey.slice(), rerandomizer });
      if (sha256Hex(ct) === e.body.ciphertext) add(step, 'match');
      else add(step, 'mismatch', 'the recomputed ciphertext differs from the one sent to the custodian');
    } catch (err) {
      add(step, 'mismatch', `recomputation failed: ${isCoded(err) ? err.code : 'error'}`);
    }
  }

  // result
  const completed = events.find((e) => e.kind === 'job.completed');
  const resultBytes = completed ? blobOrMissing(engine, completed.body.resultHash) : 'missing';
  if (resultBytes === 'missing') add('result', 'missing', 'the result sent to the bank is not stored');
  else if (resultBytes === 'corrupt') add('result', 'mismatch', 'the stored result does not hash to the ledgered resultHash');
  else if (!seed || !model) add('result', 'missing', 'no seed or model to replay with');
  else {
    const result = JSON.parse(new TextDecoder().decode(resultBytes)) as ScoreResult;
    const t = engine.params.t;
    const responses = new Map(events.filter((e) => e.kind === 'custodian.response').map((e) => [String(e.body.label), String(e.body.sealed)]));
    const bad: string[] = [];
    for (const b of result.boxes) if (responses.get(b.label) !== sha256Hex(canonicalize(b.sealed))) bad.push(`box ${b.label}`);
    for (const s of result.subjects) {
      if (status.get(s.uscc) !== s.status) { bad.push(`status of ${s.uscc}`); continue; }
      if (s.status !== 'OK') continue;
      let u = -offsets.get(s.uscc)!;
      for (const g of groups) {
        const sl = g.slots.get(s.uscc);
        if (sl) u += masks.get(`${g.datasetId}#${sl.block}`)?.[sl.slot] ?? 0n;
      }
      if (toSlot(u, t).toString() !== s.unmask) bad.push(`unmask of ${s.uscc}`);
    }
    if (result.subjects.length !== subjects.length) bad.push('subject count');
    if (bad.length) add('result', 'mismatch', `${bad.length} difference(s), first: ${bad[0]}`);
    else add('result', 'match');
  }
  return { jobId, kind: row.kind, ok: steps.every((s) => s.status === 'match'), steps };
}
