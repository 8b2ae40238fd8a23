/**
 * Multi-provider scoring (DESIGN §5), both sides in one file (STYLE §2).
 *
 * Bank B asks for model M over subjects S for a purpose. The engine checks B's signature, the model's pinned hash and
 * every provider's approval, then each subject's consent (DESIGN §6) and data availability. For each provider dataset
 * P and each block touched by an OK subject, a worker computes Enc_P(Σ w·x) over the stored columns, adds a uniform
 * mask m_P (HKDF from the job seed), re-randomizes and switches down; custodian P decrypts and seals v_P + m_P to B.
 * The engine sends B the sealed vectors and, for each OK subject s only, U_s = Σ_P m_P[slot_P(s)] − c_s (mod t), where
 * c_s is the plaintext part of the score (intercept, missing-value points). B computes
 *   score_s = centered(Σ_P (v_P + m_P)[slot_P(s)] − U_s) / 10^scale.
 *
 * Views (asserted by test/score.test.ts):
 *  - custodian: v + m, uniform mod t (never the raw partial v);
 *  - engine: ciphertexts, sealed boxes it cannot open, masks, per-subject statuses — never a decrypted value;
 *  - bank: scores of OK subjects only; slots of refused subjects stay masked (B never gets their U_s);
 *  - enterprise: an access entry per requested subject in the ledger; auditor: the transcript and the escrowed seed.
 */
import { fail } from '../../core/errors.ts';
import { canonicalize } from '../../core/jcs.ts';
import { sha256Hex } from '../../core/hash.ts';
import { deriveMaskKey, maskVector } from '../he/mask.ts';
import { centered, formatFixed, toSlot } from '../../core/fixed.ts';
import { requireSignature, signJson, verifyJson, bytesToHex, type Signed } from '../../core/sign.ts';
import { openSealed, sealTo, type SealedBox } from '../../core/sealbox.ts';
import type { DecryptRequest } from '../custodian/custodian.ts';
import type { Engine } from '../engine.ts';
import type { DatasetRecord, SubjectSlot } from '../datasets.ts';
import type { CompiledModel, CompiledTerm } from '../../models/model.ts';
import { parseSubjectList } from '../../sandbox/uscc.ts';
import type { ConsentStatus } from '../../sandbox/consent.ts';

export type ScoreStatus = ConsentStatus | 'NO_DATA';

/** Largest difference between a request's `requestedAt` and the engine's clock that a job accepts. */
export const MAX_REQUEST_SKEW_MS = 5 * 60_000;

export interface ScoreRequest {
  type: 'safehouse.score.request.v1';
  jobId: string;
  bank: string;
  modelId: string;
  modelHash: string;
  purpose: string;
  subjects: string[];
  requestedAt: string;
}

export interface ScoreBox {
  provider: string;
  datasetId: string;
  block: number;
  label: string;
  sealed: SealedBox;
}

/** What the bank receives. */
export interface ScoreResult {
  type: 'safehouse.score.result.v1';
  jobId: string;
  jobHash: string;
  modelId: string;
  paramsId: string;
  t: string;
  scale: number;
  boxes: ScoreBox[];
  subjects: Array<{ uscc: string; status: ScoreStatus; refs?: Array<[box: number, slot: number]>; unmask?: string }>;
}

export interface ScoreProgress {
  phase: 'consent' | 'compute' | 'done';
  done: number;
  total: number;
}

/** Bank side: a signed score request. @example buildScoreRequest({ bank: 'b1', ... }, sk) */
export function buildScoreRequest(
  r: { jobId: string; bank: string; modelId: string; modelHash: string; purpose: string; subjects: string[]; requestedAt?: string },
  bankSecretKey: Uint8Array,
): Signed<ScoreRequest> {
  const body: ScoreRequest = { type: 'safehouse.score.request.v1', jobId: r.jobId, bank: r.bank, modelId: r.modelId, modelHash: r.modelHash, purpose: r.purpose, subjects: r.subjects, requestedAt: r.requestedAt ?? new Date().toISOString() };
  return signJson(body, r.bank, bankSecretKey);
}

/**
 * Bank side: open the sealed vectors and unmask the scores of OK subjects.
 * @throws SH_ERR_SEALED_BOX when a box was not sealed to this key or was altered.
 */
export function openScoreResult(result: ScoreResult, bank: string, bankX25519Secret: Uint8Array): Array<{ uscc: string; status: ScoreStatus; score: string }> {
  const t = BigInt(result.t);
  const vectors = result.boxes.map((b) => {
    const bytes = openSealed(bankX25519Secret, b.sealed, { jobId: result.jobId, jobHash: result.jobHash, provider: b.provider, label: b.label, mode: 'seal', recipient: bank });
    const copy = new Uint8Array(bytes);
    return new BigUint64Array(copy.buffer, 0, copy.length / 8);
  });
  return result.subjects.map((s) => {
    if (s.status !== 'OK') return { uscc: s.uscc, status: s.status, score: '' };
    let acc = -BigInt(s.unmask!);
    for (const [box, slot] of s.refs!) acc += vectors[box]![slot]!;
    return { uscc: s.uscc, status: 'OK', score: formatFixed(centered(acc, t), result.scale) };
  });
}

/**
 * Each requested subject's status (consent first, then data: a term whose field is missing contributes its
 * `missingOffset`, or makes the subject NO_DATA) and, for scorable subjects, the plaintext part of its score (intercept
 * and missing-value offsets). Shared by the job and its replay. `groups[].slots` must hold the consented subjects.
 */
export function scoreStatuses(model: CompiledModel, groups: ReadonlyArray<{ terms: CompiledTerm[]; slots: Map<string, SubjectSlot> }>, subjects: readonly string[], consent: ReadonlyMap<string, { status: ConsentStatus }>): { status: Map<string, ScoreStatus>; offsets: Map<string, bigint> } {
  const status = new Map<string, ScoreStatus>(subjects.map((s) => [s, consent.get(s)!.status]));
  const offsets = new Map<string, bigint>();
  for (const s of subjects) {
    if (status.get(s) !== 'OK') continue;
    let offset = model.intercept;
    let available = true;
    for (const g of groups) {
      const slot = g.slots.get(s);
      if (slot && slot.missing.size === 0) continue; // every term of the group has its value (the common case)
      for (const term of g.terms) {
        if (slot && !slot.missing.has(term.field)) continue;
        if (term.missingOffset === undefined) available = false;
        else offset += term.missingOffset;
      }
    }
    if (available) offsets.set(s, offset);
    else status.set(s, 'NO_DATA');
  }
  return { status, offsets };
}

interface Group {
  provider: string;
  dataset: DatasetRecord;
  terms: CompiledTerm[];
  slots: Map<string, SubjectSlot>;
}

/**
 * Engine side: run a score job end to end.
 * @throws SH_ERR_BAD_SIGNATURE, SH_ERR_NOT_FOUND, SH_ERR_PARAMS_MISMATCH, SH_ERR_MODEL_NOT_APPROVED,
 *   SH_ERR_MODEL_STALE, SH_ERR_JOB_TOO_LARGE, SH_ERR_USCC_*, SH_ERR_INVALID_ARGUMENT (requestedAt not now),
 *   SH_ERR_ALREADY_EXISTS (job id already used), and custodian errors.
 */
export async function runScoreJob(engine: Engine, signed: Signed<ScoreRequest>, opts: { onProgress?: (p: ScoreProgress) => void } = {}): Promise<ScoreResult> {
  // 1. Who asks, for what, under which pinned model.
  const bank = engine.registry.requireParty(signed.signer, 'bank');
  requireSignature(signed, bank.ed25519, 'safehouse.score.request.v1', `score request by ${signed.signer}`);
  const req = signed.body;
  if (req.bank !== bank.id) fail('SH_ERR_BAD_SIGNATURE', `request names bank ${req.bank} but is signed by ${bank.id}`);
  if (!bank.x25519) fail('SH_ERR_INVALID_ARGUMENT', `bank ${bank.id} has no X25519 key to receive results`);
  // Consents are checked at the request's time (so a replay by the auditor gets the same statuses); the engine runs
  // only requests made now — otherwise a bank could backdate a request into an expired or revoked consent's window.
  const requestedAt = Date.parse(req.requestedAt);
  if (!Number.isFinite(requestedAt) || Math.abs(requestedAt - engine.now().getTime()) > MAX_REQUEST_SKEW_MS) {
    fail('SH_ERR_INVALID_ARGUMENT', `"requestedAt" expected within ${MAX_REQUEST_SKEW_MS / 60_000} minutes of the engine's clock, got ${JSON.stringify(req.requestedAt)}`);
  }
  engine.jobs.requireNew(req.jobId);
  const registered = engine.models.get(req.modelId);
  if (!registered) fail('SH_ERR_NOT_FOUND', `no model ${JSON.stringify(req.modelId)} is registered`, { model: req.modelId });
  if (registered.bank !== bank.id) fail('SH_ERR_PARTY_ROLE', `model ${req.modelId} belongs to ${registered.bank}, not ${bank.id}`);
  if (registered.hash !== req.modelHash) fail('SH_ERR_PARAMS_MISMATCH', `request pins model hash ${req.modelHash.slice(0, 12)}…, registered is ${registered.hash.slice(0, 12)}…`);
  const model = engine.models.compiled(req.modelId);
  const approvals = engine.models.approvals(req.modelId);
  for (const p of new Set(model.terms.map((t) => t.provider))) {
    if (approvals.get(p) !== model.hash) fail('SH_ERR_MODEL_NOT_APPROVED', `model ${req.modelId} is not approved by provider ${p}`, { provider: p });
  }
  if (!Array.isArray(req.subjects)) fail('SH_ERR_INVALID_ARGUMENT', '"subjects" expected an array');
  if (req.subjects.length > engine.policy.maxSubjectsPerJob) fail('SH_ERR_JOB_TOO_LARGE', `job names ${req.subjects.length} subjects; the limit is ${engine.policy.maxSubjectsPerJob}`, { subjects: req.subjects.length });
  const subjects = parseSubjectList(req.subjects);
  const jobHash = sha256Hex(canonicalize(signed));

  // 2. Which datasets, and each subject's status: consent first, then data availability.
  const groups = new Map<string, Group>();
  for (const term of model.terms) {
    const ds = engine.datasets.withField(term.provider, term.field)!;
    const g: Group = groups.get(ds.id) ?? { provider: term.provider, dataset: ds, terms: [], slots: new Map() };
    g.terms.push(term);
    groups.set(ds.id, g);
  }
  const categories = [...new Set([...groups.values()].map((g) => g.dataset.category))].sort();
  opts.onProgress?.({ phase: 'consent', done: 0, total: subjects.length });
  // Every per-subject step (consent statements, signature checks, slots) runs in the pool.
  const groupList = [...groups.values()];
  const plan = await engine.consents.subjectsParallel({ bank: bank.id, purpose: req.purpose, operation: 'score', categories, at: new Date(req.requestedAt) }, subjects, groupList.map((g) => g.dataset.id), { slotsOf: 'OK' });
  const consent = plan.consent;
  const ok = subjects.filter((s) => consent.get(s)!.status === 'OK');
  groupList.forEach((g, i) => { g.slots = plan.slots[i]!; }); // the pool returned slots of OK subjects only
  const { status, offsets } = scoreStatuses(model, [...groups.values()], subjects, consent);
  const scored = ok.filter((s) => status.get(s) === 'OK');

  // 3. Record the request before any custodian call, with every requested subject for their access reports.
  const seed = engine.jobs.newSeed();
  const escrow = engine.registry.parties('auditor').filter((a) => a.x25519).map((a) => ({ auditor: a.id, sealed: sealTo(a.x25519!, seed, { type: 'safehouse.escrow.v1', jobId: req.jobId, jobHash }) }));
  const consentIds = scored.map((s) => consent.get(s)!.consentId!).sort();
  engine.store.transaction(() => {
    engine.jobs.requireNew(req.jobId);
    engine.store.db.prepare('INSERT INTO jobs (id, kind, bank, request_json, status, created_at) VALUES (?, ?, ?, ?, ?, ?)').run(req.jobId, 'score', bank.id, JSON.stringify({ signed, escrow }), 'running', engine.now().toISOString());
    engine.ledger.append('job.requested', {
      jobId: req.jobId, job: 'score', bank: bank.id, modelId: req.modelId, modelHash: model.hash, purpose: req.purpose, jobHash,
      subjects: subjects.length, consentIds: sha256Hex(consentIds.join('\n')), signature: signed.signature,
      escrow: escrow.map((e) => ({ auditor: e.auditor, hash: sha256Hex(canonicalize(e.sealed)) })),
    }, subjects);
  });

  // 4. One masked, re-randomized ciphertext per (dataset, touched block), sealed to the bank by the custodian.
  const work: Array<{ g: Group; block: number }> = [];
  for (const g of groups.values()) {
    const blocks = new Set<number>();
    for (const s of scored) { const sl = g.slots.get(s); if (sl) blocks.add(sl.block); }
    for (const b of [...blocks].sort((x, y) => x - y)) work.push({ g, block: b });
  }
  for (const provider of new Set(work.map((w) => w.g.provider))) await engine.registry.custodian(provider).openJob(signed as never);
  let done = 0;
  opts.onProgress?.({ phase: 'compute', done, total: work.length });
  const boxes: ScoreBox[] = [];
  const boxIndex = new Map<string, number>();
  const masks = new Map<string, BigUint64Array>();
  const t = engine.params.t;
  const runBlock = async ({ g, block }: { g: Group; block: number }, i: number) => {
    const label = `score/${g.provider}/${g.dataset.id}/block/${block}`;
    const maskKey = deriveMaskKey(seed, `${req.jobId}/${label}`);
    const columns = g.terms.flatMap((term) => term.columns.map((c) => {
      const blob = engine.datasets.columnBlob(g.dataset.id, c.column, block);
      if (!blob) fail('SH_ERR_MODEL_STALE', `provider ${g.provider} has no column ${c.column} for block ${block} of dataset ${g.dataset.id} (re-approve the model after re-ingesting)`, { provider: g.provider });
      return { path: engine.store.blobPath(blob), hash: blob, multiplier: c.multiplier.toString() };
    }));
    const pk = engine.registry.requireParty(g.provider, 'provider').bfvPublicKeyBlob!;
    const out = await engine.pool.run<{ ciphertext: Uint8Array; rerandomizer: Uint8Array }>({ op: 'evalBlock', paramsId: engine.params.id, publicKey: { path: engine.store.blobPath(pk), hash: pk }, columns, maskKey: maskKey.slice() });
    const ct = out.ciphertext;
    // The fresh encryption of zero is kept so an auditor can replay this block bit for bit (issue 6).
    const rerandomizer = engine.store.putBlob(out.rerandomizer);
    const request: DecryptRequest = { type: 'safehouse.custodian.decrypt.v1', paramsId: engine.params.id, provider: g.provider, jobId: req.jobId, jobHash, label, mode: 'seal', ciphertext: sha256Hex(ct), recipient: { party: bank.id, x25519: bytesToHex(bank.x25519!) } };
    const signedReq = signJson(request, 'engine', engine.keys.ed25519.secretKey);
    const response = await engine.registry.custodian(g.provider).decrypt(signedReq, ct);
    const provider = engine.registry.requireParty(g.provider, 'provider');
    if (!verifyJson(response, provider.ed25519) || response.body.requestHash !== sha256Hex(canonicalize(signedReq)) || !response.body.sealed) {
      fail('SH_ERR_BAD_SIGNATURE', `custodian ${g.provider} answered ${label} with an unsigned or mismatched response`);
    }
    engine.ledger.appendMany([
      { kind: 'custodian.request', event: { jobId: req.jobId, provider: g.provider, label, mode: 'seal', requestHash: response.body.requestHash, ciphertext: request.ciphertext, rerandomizer } },
      { kind: 'custodian.response', event: { jobId: req.jobId, provider: g.provider, label, responseHash: sha256Hex(canonicalize(response)), sealed: sha256Hex(canonicalize(response.body.sealed)) } },
    ]);
    masks.set(`${g.dataset.id}#${block}`, maskVector(maskKey, t, engine.params.slots));
    boxes[i] = { provider: g.provider, datasetId: g.dataset.id, block, label, sealed: response.body.sealed };
    boxIndex.set(`${g.dataset.id}#${block}`, i);
    opts.onProgress?.({ phase: 'compute', done: ++done, total: work.length });
  };
  try {
    await engine.pool.all(work.map((w, i) => runBlock(w, i)));
  } catch (err) {
    engine.store.db.prepare("UPDATE jobs SET status = 'failed', finished_at = ? WHERE id = ?").run(engine.now().toISOString(), req.jobId);
    engine.ledger.append('job.failed', { jobId: req.jobId, code: (err as { code?: string }).code ?? 'SH_ERR_INTERNAL' });
    engine.ledger.checkpoint();
    throw err;
  }

  // 5. Unmask values for OK subjects only; refused subjects get a status and nothing else.
  const out: ScoreResult['subjects'] = subjects.map((s) => {
    const st = status.get(s)!;
    if (st !== 'OK') return { uscc: s, status: st };
    let u = -offsets.get(s)!;
    const refs: Array<[number, number]> = [];
    for (const g of groups.values()) {
      const sl = g.slots.get(s);
      if (!sl) continue;
      const key = `${g.dataset.id}#${sl.block}`;
      u += masks.get(key)![sl.slot]!;
      refs.push([boxIndex.get(key)!, sl.slot]);
    }
    return { uscc: s, status: 'OK', refs, unmask: toSlot(u, t).toString() };
  });
  const result: ScoreResult = { type: 'safehouse.score.result.v1', jobId: req.jobId, jobHash, modelId: req.modelId, paramsId: engine.params.id, t: t.toString(), scale: model.scale, boxes, subjects: out };
  const counts: Record<string, number> = {};
  for (const s of out) counts[s.status] = (counts[s.status] ?? 0) + 1;
  // The result itself is kept (content-addressed by its canonical hash) so a replay can compare what the bank got.
  const resultBlob = engine.store.putBlob(new TextEncoder().encode(canonicalize(result)));
  engine.store.transaction(() => {
    engine.store.db.prepare("UPDATE jobs SET status = 'completed', summary_json = ?, finished_at = ? WHERE id = ?").run(JSON.stringify({ counts, resultHash: resultBlob }), engine.now().toISOString(), req.jobId);
    engine.ledger.append('job.completed', { jobId: req.jobId, job: 'score', counts, boxes: boxes.length, resultHash: resultBlob }); // the blob's address is the SHA-256 of the same canonical bytes
  });
  engine.ledger.checkpoint();
  opts.onProgress?.({ phase: 'done', done: work.length, total: work.length });
  return result;
}
