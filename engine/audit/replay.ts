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
import { canonicalize } from '../../core/jcs.ts';
import { isCoded } from '../../core/errors.ts';
import { sha256Hex } from '../../core/hash.ts';
import { deriveMaskKey, maskVector } from '../he/mask.ts';
import { toSlot, centered } from '../../core/fixed.ts';
import { verifyJson, hexToBytes, type Signed } from '../../core/sign.ts';
import { openSealed, type SealedBox } from '../../core/sealbox.ts';
import { compileModel, type CompiledModel } from '../../models/model.ts';
import { scoreStatuses, type ScoreRequest, type ScoreResult } from '../protocols/score.ts';
import { verifyReplay, comparisonRange, directAnswersMac, type VerifyRequest, type VerifyResult, type ClaimOpenings, type ClaimResult, type PreparedClaim, type ClaimComparison } from '../protocols/verify.ts';
import { blindInputs, finalizeTokens, tokenInfo, tokenInput } from '../tokens/oprf.ts';
import { TOKEN_EPOCH } from '../custodian/provider.ts';
import { columnBitsOf, type TrainRequest } from '../protocols/train.ts';
import { maxAbsD, sumGroupSize, trainOptions, updateModel, STD_CLIP, type BinSpec, type FixedModel } from '../../models/train.ts';
import type { ConsentStatus } from '../../sandbox/consent.ts';
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
  if (row.kind === 'verify') return replayVerify(engine, jobId, auditor, JSON.parse(row.request_json), events, requested);
  if (row.kind === 'train') return replayTrain(engine, jobId, auditor, JSON.parse(row.request_json), events, requested);
  if (row.kind !== 'score') {
    add('request', 'missing', `replay of ${row.kind} jobs is not implemented yet`);
    return { jobId, kind: row.kind, ok: false, steps };
  }
  const stored = JSON.parse(row.request_json) as { signed: Signed<ScoreRequest>; escrow: Array<{ auditor: string; sealed: SealedBox }> };
  const signed = stored.signed;
  const req = signed.body;

  // request
  const bank = engine.registry.party(signed.signer);
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
  const m = engine.models.get(req.modelId);
  let model: CompiledModel | undefined;
  if (!m) add('model', 'missing', `model ${req.modelId} is not stored`);
  else {
    model = compileModel(m.spec, engine.datasets.fieldLookup, engine.params.t);
    const approvals = engine.models.approvals(req.modelId);
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
  const categories = [...new Set([...datasets.keys()].map((id) => engine.datasets.get(id)?.category).filter((c): c is string => !!c))].sort();
  const consent = engine.consents.statuses({ bank: req.bank, purpose: req.purpose, operation: 'score', categories, at: new Date(req.requestedAt) }, subjects);
  const ok = subjects.filter((s) => consent.get(s)?.status === 'OK');
  const groups = [...datasets].map(([datasetId, d]) => ({ datasetId, ...d, slots: engine.datasets.subjectSlots(datasetId, ok) }));
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
        const blob = engine.datasets.columnBlob(datasetId!, c.column, block);
        const bytes = blobOrMissing(engine, blob);
        if (bytes === 'missing') problem ??= 'missing';
        else if (bytes === 'corrupt') problem = 'mismatch';
        else columns.push({ path: engine.store.blobPath(blob!), hash: blob!, multiplier: c.multiplier.toString() });
      }
    }
    if (problem) { add(step, problem, problem === 'missing' ? 'a column blob is not stored' : 'a column blob does not hash to its address'); continue; }
    const pk = engine.registry.party(provider!)?.bfvPublicKeyBlob;
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

/** request + escrow steps shared by every job kind; returns the seed when the escrow opens. */
function checkRequestAndEscrow(engine: Engine, jobId: string, auditor: { id: string; x25519SecretKey: Uint8Array }, stored: { signed: Signed<{ type: string }>; escrow?: Array<{ auditor: string; sealed: SealedBox }> }, requested: LedgerEvent, add: (step: string, status: StepStatus, detail?: string) => void): Uint8Array | undefined {
  const signed = stored.signed;
  const bank = engine.registry.party(signed.signer);
  if (!bank || !verifyJson(signed, bank.ed25519)) add('request', 'mismatch', 'the bank signature over the stored request does not verify');
  else if (sha256Hex(canonicalize(signed)) !== requested.body.jobHash) add('request', 'mismatch', 'the stored request does not hash to the ledgered jobHash');
  else add('request', 'match');
  const mine = stored.escrow?.find((x) => x.auditor === auditor.id);
  const escrowed = jobEvents(engine, jobId).find((e) => e.kind === 'job.escrowed') ?? requested;
  const ledgered = (escrowed.body.escrow as Array<{ auditor: string; hash: string }> | undefined)?.find((x) => x.auditor === auditor.id);
  if (!mine || !ledgered) { add('escrow', 'missing', `no seed escrowed to ${auditor.id}`); return undefined; }
  let seed: Uint8Array | undefined;
  try {
    seed = openSealed(auditor.x25519SecretKey, mine.sealed, { type: 'safehouse.escrow.v1', jobId, jobHash: requested.body.jobHash });
  } catch {
    add('escrow', 'mismatch', 'the escrowed seed does not open for this auditor');
    return undefined;
  }
  if (sha256Hex(canonicalize(mine.sealed)) !== ledgered.hash) add('escrow', 'mismatch', 'the stored escrow box is not the ledgered one');
  else add('escrow', 'match');
  return seed;
}

/**
 * Verification job replay: request, escrow (seed and the bank's claim openings), claims (openings match the signed
 * commitments), consent, every token batch (blinded elements recomputed from the seed, the custodian's signed
 * evaluations finalized and looked up), every numeric block (comparison vectors from the seed, the logged
 * re-randomizer), the engine-determined answers (MAC keyed from the seed) and the result.
 */
async function replayVerify(engine: Engine, jobId: string, auditor: { id: string; x25519SecretKey: Uint8Array }, stored: { signed: Signed<VerifyRequest>; escrow?: Array<{ auditor: string; sealed: SealedBox }>; openingsEscrow?: Array<{ auditor: string; sealed: SealedBox }> }, events: LedgerEvent[], requested: LedgerEvent): Promise<ReplayReport> {
  const steps: ReplayStep[] = [];
  const add = (step: string, status: StepStatus, detail?: string) => steps.push({ step, status, ...(detail ? { detail } : {}) });
  const done = (): ReplayReport => ({ jobId, kind: 'verify', ok: steps.every((x) => x.status === 'match'), steps });
  const seed = checkRequestAndEscrow(engine, jobId, auditor, stored, requested, add);
  const req = stored.signed.body;
  const jobHash = String(requested.body.jobHash);
  // The claim openings, sealed to this auditor.
  let openings: ClaimOpenings | undefined;
  const box = stored.openingsEscrow?.find((x) => x.auditor === auditor.id);
  const ledgered = ((events.find((e) => e.kind === 'job.escrowed')?.body.openings ?? []) as Array<{ auditor: string; hash: string }>).find((x) => x.auditor === auditor.id);
  if (!box || !ledgered) add('openings', 'missing', `no claim openings escrowed to ${auditor.id}`);
  else {
    try {
      openings = JSON.parse(new TextDecoder().decode(openSealed(auditor.x25519SecretKey, box.sealed, { type: 'safehouse.escrow.openings.v1', jobId, jobHash }))) as ClaimOpenings;
      add('openings', sha256Hex(canonicalize(box.sealed)) === ledgered.hash ? 'match' : 'mismatch');
    } catch {
      add('openings', 'mismatch', 'the escrowed openings do not open for this auditor');
    }
  }
  if (!seed || !openings) { add('claims', 'missing', 'no seed or openings to replay with'); return done(); }
  let prepared: PreparedClaim[];
  try {
    prepared = req.claims.map((c, i) => verifyReplay.prepareClaim(engine, c, openings![c.claimId], i));
    add('claims', 'match');
  } catch (err) {
    add('claims', 'mismatch', `a claim does not check against its signed commitment (${isCoded(err) ? err.code : 'error'})`);
    return done();
  }
  const byId = new Map(prepared.map((p) => [p.claim.claimId, p]));

  // Consent, budget (the ledgered refusals), data presence: which claims reached work, as the job decided them.
  const at = new Date(req.requestedAt);
  const results = new Map<string, ClaimResult>();
  const consent = new Map<string, { status: ConsentStatus }>();
  const categories = new Map<string, Set<string>>();
  for (const p of prepared) categories.set(p.dataset.category, (categories.get(p.dataset.category) ?? new Set()).add(p.claim.subject));
  for (const [category, subjects] of categories) {
    for (const [u, v] of engine.consents.statuses({ bank: req.bank, purpose: req.purpose, operation: 'verify', categories: [category], at }, [...subjects])) consent.set(`${category}/${u}`, v);
  }
  const exceeded = new Set((events.find((e) => e.kind === 'verify.budget_exceeded')?.body.claims ?? []) as string[]);
  const work: PreparedClaim[] = [];
  const slotOf = new Map<string, { block: number; slot: number }>();
  for (const p of prepared) {
    const st = consent.get(`${p.dataset.category}/${p.claim.subject}`)!.status;
    if (st !== 'OK') { results.set(p.claim.claimId, `refused:${st}`); continue; }
    if (exceeded.has(p.claim.claimId)) { results.set(p.claim.claimId, 'over_budget'); continue; }
    const sl = engine.datasets.subjectSlots(p.dataset.id, [p.claim.subject]).get(p.claim.subject);
    if (!sl || sl.missing.has(p.claim.field)) { results.set(p.claim.claimId, 'no_data'); continue; }
    slotOf.set(p.claim.claimId, sl);
    work.push(p);
  }
  // The job ledgered how many claims passed consent and budget (answered or no_data): the re-derivation must agree.
  const used = events.find((e) => e.kind === 'verify.budget_used');
  const passed = work.length + [...results.values()].filter((r) => r === 'no_data').length;
  if (!used) add('consent', 'missing', 'no verify.budget_used entry');
  else if (used.body.claims !== passed) add('consent', 'mismatch', `${passed} claims pass consent as of the request time, the job let ${String(used.body.claims)} through`);
  else add('consent', 'match');

  // Token batches.
  const requests = new Map(events.filter((e) => e.kind === 'custodian.request').map((e) => [String(e.body.label), e]));
  const responses = new Map(events.filter((e) => e.kind === 'custodian.response').map((e) => [String(e.body.label), e]));
  const tokenGroups = new Map<string, PreparedClaim[]>();
  for (const p of work.filter((x) => x.spec.type === 'id')) tokenGroups.set(`${p.claim.provider}/${p.claim.field}`, [...(tokenGroups.get(`${p.claim.provider}/${p.claim.field}`) ?? []), p]);
  for (const group of tokenGroups.values()) {
    const { provider, field } = group[0]!.claim;
    const party = engine.registry.party(provider)!;
    const info = tokenInfo(provider, field, TOKEN_EPOCH);
    const items = group.flatMap((p) => p.values.map((v) => ({ claimId: p.claim.claimId, input: tokenInput(p.claim.subject, field, v), datasetId: p.dataset.id })));
    for (const p of group) results.set(p.claim.claimId, 'no');
    for (let k = 0; k * 512 < items.length; k++) {
      const chunk = items.slice(k * 512, (k + 1) * 512);
      const label = `verify/${provider}/${field}/tokens/${k}`;
      const step = `tokens ${label}`;
      const ev = requests.get(label);
      if (!ev) { add(step, 'missing', 'no ledgered request'); continue; }
      const blinded = blindInputs(party.oprfPublicKey!, info, chunk.map((x) => x.input), deriveMaskKey(seed, `${jobId}/${label}/blind`));
      const elements = chunk.map((x, i) => ({ claimId: x.claimId, blinded: Buffer.from(blinded[i]!.blinded).toString('hex') }));
      if (sha256Hex(canonicalize(elements)) !== ev.body.elementsHash) { add(step, 'mismatch', 'the blinded elements sent differ from the recomputed ones'); continue; }
      const resp = blobOrMissing(engine, responses.get(label)?.body.responseHash);
      if (resp === 'missing') { add(step, 'missing', "the custodian's signed evaluations are not stored"); continue; }
      if (resp === 'corrupt') { add(step, 'mismatch', "the stored evaluations do not hash to the ledgered response"); continue; }
      const response = JSON.parse(new TextDecoder().decode(resp)) as Signed<{ evaluated: string[]; proof: string }>;
      if (!verifyJson(response as never, party.ed25519)) { add(step, 'mismatch', "the stored evaluations are not signed by the custodian"); continue; }
      try {
        const tokens = finalizeTokens(chunk.map((x) => x.input), blinded, response.body.evaluated.map((h) => hexToBytes(h)), hexToBytes(response.body.proof), party.oprfPublicKey!, info);
        tokens.forEach((tk, i) => { if (engine.datasets.hasToken(chunk[i]!.datasetId, field, tk)) results.set(chunk[i]!.claimId, 'yes'); });
        add(step, 'match');
      } catch (err) {
        add(step, 'mismatch', `the evaluations do not finalize (${isCoded(err) ? err.code : 'error'})`);
      }
    }
  }

  // Numeric blocks.
  const numericParts = new Map<string, Array<[number, number]>>();
  for (const p of work.filter((x) => x.spec.type !== 'id')) {
    const cmps = verifyReplay.comparisonsFor(p, slotOf.get(p.claim.claimId)!.slot);
    if (cmps === 'yes' || cmps === 'no') results.set(p.claim.claimId, cmps);
    else numericParts.set(p.claim.claimId, []);
  }
  const signEvents = events.filter((e) => e.kind === 'custodian.request' && e.body.mode === 'sign');
  for (const e of signEvents) {
    const label = String(e.body.label);
    const step = `block ${label}`;
    const [, provider, datasetId, field, , blockText] = label.split('/');
    const block = Number(blockText);
    const pairs = (e.body.comparisons ?? []) as Array<[string, number]>;
    const comparisons: ClaimComparison[] = [];
    let bad = '';
    for (const [claimId, k] of pairs) {
      const p = byId.get(claimId);
      const sl = slotOf.get(claimId);
      const cmps = p && sl ? verifyReplay.comparisonsFor(p, sl.slot) : undefined;
      if (!p || !sl || !Array.isArray(cmps) || !cmps[k] || p.claim.provider !== provider || p.claim.field !== field || sl.block !== block) { bad = `comparison ${claimId}#${k} is not one the job's claims make here`; break; }
      comparisons.push(cmps[k]!);
    }
    if (bad) { add(step, 'mismatch', bad); continue; }
    const rerandomizer = blobOrMissing(engine, e.body.rerandomizer);
    if (rerandomizer === 'missing') { add(step, 'missing', 're-randomizer blob not stored'); continue; }
    if (rerandomizer === 'corrupt') { add(step, 'mismatch', 're-randomizer blob does not hash to its address'); continue; }
    const column = engine.datasets.columnBlob(datasetId!, field!, block);
    const colBytes = blobOrMissing(engine, column);
    if (colBytes !== 'missing' && colBytes !== 'corrupt') {
      const p = byId.get(pairs[0]![0])!;
      const { multipliers, offsets } = verifyReplay.comparisonVectors(engine, seed, `${jobId}/${label}`, comparisons, comparisonRange(engine, p.spec));
      const pk = engine.registry.party(provider!)!.bfvPublicKeyBlob!;
      try {
        const ct = await engine.pool.run<Uint8Array>({ op: 'compareBlock', paramsId: engine.params.id, publicKey: { path: engine.store.blobPath(pk), hash: pk }, column: { path: engine.store.blobPath(column!), hash: column! }, multipliers, offsets, rerandomizer });
        add(step, sha256Hex(ct) === e.body.ciphertext ? 'match' : 'mismatch', sha256Hex(ct) === e.body.ciphertext ? undefined : 'the recomputed ciphertext differs from the one sent to the custodian');
      } catch (err) {
        add(step, 'mismatch', `recomputation failed: ${isCoded(err) ? err.code : 'error'}`);
      }
    } else add(step, colBytes === 'missing' ? 'missing' : 'mismatch', 'the column blob is not stored intact');
  }

  // The engine-determined answers (MAC keyed from the seed) and the result as sent.
  const directJson: Record<string, ClaimResult> = {};
  for (const c of req.claims) { const r = results.get(c.claimId); if (r) directJson[c.claimId] = r; }
  const completed = events.find((e) => e.kind === 'job.completed');
  if (!completed) add('answers', 'missing', 'the job did not complete');
  else add('answers', directAnswersMac(seed, jobId, directJson) === completed.body.directMac ? 'match' : 'mismatch');
  const resultBytes = completed ? blobOrMissing(engine, completed.body.resultHash) : 'missing';
  if (resultBytes === 'missing') add('result', 'missing', 'the result sent to the bank is not stored');
  else if (resultBytes === 'corrupt') add('result', 'mismatch', 'the stored result does not hash to the ledgered resultHash');
  else {
    const result = JSON.parse(new TextDecoder().decode(resultBytes)) as VerifyResult;
    const diffs: string[] = [];
    const sealedOf = new Map(events.filter((e) => e.kind === 'custodian.response').map((e) => [String(e.body.label), e.body.sealed]));
    result.boxes.forEach((b, i) => {
      if (sealedOf.get(b.label) !== sha256Hex(canonicalize(b.sealed))) diffs.push(`box ${b.label}`);
      const ev = signEvents.find((e) => e.body.label === b.label);
      for (const [claimId] of (ev?.body.comparisons ?? []) as Array<[string, number]>) numericParts.get(claimId)?.push([i, slotOf.get(claimId)!.slot]);
    });
    const want = new Map([...numericParts].map(([id, parts]) => [id, JSON.stringify({ parts: parts.sort((a, b) => a[0] - b[0] || a[1] - b[1]), negate: byId.get(id)!.claim.op === 'ne' })]));
    const got = new Map(result.numeric.map((n) => [n.claimId, JSON.stringify({ parts: [...n.parts].sort((a, b) => a[0] - b[0] || a[1] - b[1]), negate: n.negate })]));
    if (want.size !== got.size || [...want].some(([id, v]) => got.get(id) !== v)) diffs.push('numeric answer mapping');
    add('result', diffs.length ? 'mismatch' : 'match', diffs.length ? `${diffs.length} difference(s), first: ${diffs[0]}` : undefined);
  }
  return done();
}

/**
 * Training job replay: request and escrow, then every iteration after decryption — the custodian's signed masked
 * group sums (kept as blobs) minus the masks derived from the seed give the gradient sums, which must hash as ledgered
 * (`train.iteration`), and the fixed-point update gives the next model; the last one must be the delivered model
 * (`job.completed` modelHash). The products' ciphertexts are not replayed bit for bit: their re-randomizers
 * (iterations × columns × blocks encryptions of zero, ≈ 0.4 MB each) are not kept.
 */
async function replayTrain(engine: Engine, jobId: string, auditor: { id: string; x25519SecretKey: Uint8Array }, stored: { signed: Signed<TrainRequest>; escrow?: Array<{ auditor: string; sealed: SealedBox }>; bins?: BinSpec[]; cohort?: number }, events: LedgerEvent[], requested: LedgerEvent): Promise<ReplayReport> {
  const steps: ReplayStep[] = [];
  const add = (step: string, status: StepStatus, detail?: string) => steps.push({ step, status, ...(detail ? { detail } : {}) });
  const done = (): ReplayReport => ({ jobId, kind: 'train', ok: steps.every((x) => x.status === 'match'), steps });
  const seed = checkRequestAndEscrow(engine, jobId, auditor, stored, requested, add);
  if (!seed || !stored.bins || stored.cohort === undefined) { add('iterations', 'missing', 'no seed or stored bins to replay with'); return done(); }
  if (stored.cohort !== requested.body.cohort) add('cohort', 'mismatch', `stored cohort ${stored.cohort}, ledgered ${String(requested.body.cohort)}`);
  else add('cohort', 'match');
  const req = stored.signed.body;
  const o = trainOptions(req.options);
  const t = engine.params.t;
  const cb = columnBitsOf({ features: req.features ?? 'binned' });
  const colMax = cb ? BigInt(STD_CLIP) : 1n;
  const nCols = stored.bins.reduce((a, b) => a + b.bins.length, 0);
  const groups: number[][] = [];
  let next = 0;
  for (const b of stored.bins) groups.push(b.bins.map(() => next++));
  const provider = engine.registry.party(req.provider);
  const responses = new Map(events.filter((e) => e.kind === 'custodian.response').map((e) => [String(e.body.label), e]));
  let model: FixedModel = { W0: 0n, W: new Array<bigint>(nCols).fill(0n) };
  const iterations = events.filter((e) => e.kind === 'train.iteration');
  for (const ev of iterations) {
    const it = Number(ev.body.iteration);
    const step = `iteration ${it}`;
    const g = sumGroupSize(maxAbsD(model, groups, o.scaleBits, cb, colMax) * colMax, t, engine.params.slots);
    if (g !== ev.body.groupSize) { add(step, 'mismatch', `group size ${g} recomputed, ${String(ev.body.groupSize)} used`); break; }
    let G0 = 0n;
    const G = new Array<bigint>(nCols).fill(0n);
    let problem: [StepStatus, string] | undefined;
    for (const [label, r] of responses) {
      const m = /^train\/[^/]+\/it\/(\d+)\/block\/\d+\/(D|X(\d+)D)$/.exec(label);
      if (!m || Number(m[1]) !== it) continue;
      const bytes = blobOrMissing(engine, r.body.responseHash);
      if (bytes === 'missing' || bytes === 'corrupt') { problem = bytes === 'missing' ? ['missing', `the custodian's sums for ${label} are not stored`] : ['mismatch', `the stored sums for ${label} do not hash as ledgered`]; break; }
      const response = JSON.parse(new TextDecoder().decode(bytes)) as Signed<{ type: string; label: string; sums?: string[] }>;
      if (!provider || !verifyJson(response, provider.ed25519) || response.body.label !== label || !response.body.sums) { problem = ['mismatch', `the stored sums for ${label} are not the custodian's signed answer`]; break; }
      const mask = maskVector(deriveMaskKey(seed, label), t, engine.params.slots);
      let total = 0n;
      response.body.sums.forEach((sv, j) => {
        let ms = 0n;
        for (let i = j * g; i < (j + 1) * g; i++) ms += mask[i]!;
        total += centered(BigInt(sv) - ms, t);
      });
      if (m[3] === undefined) G0 += total;
      else G[Number(m[3])]! += total;
    }
    if (problem) { add(step, problem[0], problem[1]); break; }
    if (sha256Hex(canonicalize({ G0: G0.toString(), G: G.map(String) })) !== ev.body.gradientsHash) { add(step, 'mismatch', 'the gradient sums differ from the ledgered ones'); break; }
    const upd = updateModel(model, { G0, G }, stored.cohort, it, o, cb);
    model = upd.model;
    add(step, 'match');
  }
  const completed = events.find((e) => e.kind === 'job.completed');
  const modelHash = sha256Hex(canonicalize({ W0: model.W0.toString(), W: model.W.map(String), scaleBits: o.scaleBits, bins: stored.bins }));
  if (!completed) add('model', 'missing', 'the job did not complete');
  else if (steps.some((x) => x.step.startsWith('iteration') && x.status !== 'match')) add('model', 'missing', 'an iteration could not be replayed');
  else add('model', modelHash === completed.body.modelHash ? 'match' : 'mismatch', modelHash === completed.body.modelHash ? undefined : 'the replayed model is not the delivered one');
  return done();
}
