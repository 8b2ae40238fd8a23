/**
 * Data verification (数据核验, DESIGN §5), both sides in one file (STYLE §2). A bank sends claims
 * `{subject, provider, field, op, value[, value2]}`; each gets one answer: yes | no | no_data | refused:<consent status>
 * | over_budget, sealed to the bank.
 *
 * Token fields (`type: id`; ops `eq`, `in`): the engine blinds (subject, field, normalized claimed value) with RFC 9497
 * POPRF (P256-SHA256, info = provider, field, key epoch), the provider's custodian evaluates the blinded points in a
 * batch with a DLEQ proof — refusing more evaluations per claim than the bank signed for — and the engine checks the
 * proof against the provider's published key, finalizes and looks the token up in the provider's uploaded token set.
 * The custodian learns nothing about the claimed value; the engine learns whether it matched.
 *
 * Numeric fields (int, decimal, enum, bool; ops `eq`, `ne`, `gte`, `lte`, `between`): each claim is one or two
 * comparisons x ≥ c or x ≤ c at the subject's slot. Per (dataset, field, block, round) a worker computes
 *   Enc(r ⊙ d ⊙ (x − c) + r')   with d = ±1, r uniform in [1, R], r' uniform in [0, r),
 * so the sign of the slot is the sign of d·(x − c) (x, c integers at the field's scale: r·(x−c)+r' ≥ 0 ⟺ x ≥ c). R is
 * chosen per field by the bound calculator so |r·(x−c)+r'| < t/2 for every x, c in bounds; unused slots get multiplier
 * 0 and a uniform offset. The custodian decrypts and seals one sign bit per slot to the bank (mode `sign`).
 * Leakage (reported per field as R): the custodian sees r·(x−c)+r' for values it already holds.
 *
 * Budgets: each claim spends one unit of the bank's budget for (subject, provider, field, epoch); claims beyond it are
 * `over_budget` and a `verify.budget_exceeded` ledger event (code SH_ERR_VERIFY_BUDGET).
 *
 * Output contract: bank — one result per claim; custodian — r·(x−c)+r' (numeric), blinded points (tokens); engine —
 * ciphertexts, tokens, statuses, token match bits; enterprise — an access entry; auditor — the transcript.
 */
import { randomBytes, createHmac } from 'node:crypto';
import { fail, isCoded } from '../../core/errors.ts';
import { canonicalize } from '../../core/jcs.ts';
import { sha256Hex } from '../../core/hash.ts';
import { deriveMaskKey, maskVector } from '../he/mask.ts';
import { parseFixed, toSlot, pow10 } from '../../core/fixed.ts';
import { requireSignature, signJson, verifyJson, bytesToHex, hexToBytes, type Signed } from '../../core/sign.ts';
import { openSealed, sealTo, type SealedBox } from '../../core/sealbox.ts';
import type { DecryptRequest, TokenEvalRequest } from '../custodian/custodian.ts';
import type { Engine } from '../engine.ts';
import type { DatasetRecord } from '../datasets.ts';
import { tokenInfo, tokenInput, type Blinded } from '../tokens/oprf.ts';
import { normalizeId, idRuleFor } from '../tokens/normalize.ts';
import { TOKEN_EPOCH } from '../custodian/provider.ts';
import { classAllows, type FieldSpec } from '../../sandbox/catalog.ts';
import { parseUscc } from '../../sandbox/uscc.ts';
import { budgetEpoch } from '../../sandbox/policy.ts';
import type { ConsentStatus } from '../../sandbox/consent.ts';
import { MAX_REQUEST_SKEW_MS } from './score.ts';

export type ClaimOp = 'eq' | 'in' | 'ne' | 'gte' | 'lte' | 'between';
export type ClaimResult = 'yes' | 'no' | 'no_data' | 'over_budget' | `refused:${ConsentStatus}`;

/** A claim as the bank writes it (claims.csv). `values` has one entry, except `in` (a list) and `between` (two). */
export interface Claim { claimId: string; subject: string; provider: string; field: string; op: ClaimOp; values: string[] }

/** What the bank signs per claim: the value itself is replaced by a salted commitment, so custodians can count
 * evaluations per claim from the signed request without learning claimed values. */
export interface SignedClaim { claimId: string; subject: string; provider: string; field: string; op: ClaimOp; count: number; commitment: string }

export interface VerifyRequest {
  type: 'safehouse.verify.request.v1';
  jobId: string;
  bank: string;
  purpose: string;
  requestedAt: string;
  claims: SignedClaim[];
}

/** Openings of the commitments, sent to the engine only. */
export type ClaimOpenings = Record<string, { values: string[]; salt: string }>;

export interface SignBox { provider: string; datasetId: string; field: string; block: number; round: number; label: string; sealed: SealedBox }

export interface VerifyResult {
  type: 'safehouse.verify.result.v1';
  jobId: string;
  jobHash: string;
  /** Results the engine determined (refusals, no_data, over_budget, token matches), sealed to the bank. */
  direct: SealedBox;
  /** Sealed sign vectors from custodians (numeric claims). */
  boxes: SignBox[];
  /** How each numeric claim's answer is read: AND of the sign bits at (box, slot), negated for `ne`. */
  numeric: Array<{ claimId: string; parts: Array<[box: number, slot: number]>; negate: boolean }>;
  /** Randomizer range R used per numeric field (the custodian's leakage bound). */
  ranges: Record<string, string>;
}

export interface VerifyProgress { phase: 'check' | 'tokens' | 'numeric' | 'done'; done: number; total: number }

const CLAIM_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;
const TOKEN_OPS: readonly ClaimOp[] = ['eq', 'in'];
const NUMERIC_OPS: readonly ClaimOp[] = ['eq', 'ne', 'gte', 'lte', 'between'];
const MAX_IN_VALUES = 16;

function commitment(claimId: string, values: readonly string[], salt: string): string {
  return sha256Hex(canonicalize({ type: 'safehouse.claim.commitment.v1', claimId, values, salt }));
}

/**
 * Bank side: sign a verification request; returns the signed request (for the engine and, through it, custodians) and
 * the commitment openings (for the engine only).
 * @throws SH_ERR_CLAIM_INVALID for duplicate claim ids or a wrong number of values.
 */
export function buildVerifyRequest(
  r: { jobId: string; bank: string; purpose: string; claims: readonly Claim[]; requestedAt?: string },
  bankSecretKey: Uint8Array,
): { signed: Signed<VerifyRequest>; openings: ClaimOpenings } {
  const openings: ClaimOpenings = {};
  const claims = r.claims.map((c, i): SignedClaim => {
    if (!CLAIM_ID.test(c.claimId)) fail('SH_ERR_CLAIM_INVALID', `claims[${i}]: "claim_id" expected ${CLAIM_ID}, got ${JSON.stringify(c.claimId)}`, { claim: i });
    if (openings[c.claimId]) fail('SH_ERR_CLAIM_INVALID', `claims[${i}]: claim id ${c.claimId} is repeated`, { claim: c.claimId });
    const salt = randomBytes(16).toString('hex');
    openings[c.claimId] = { values: [...c.values], salt };
    return { claimId: c.claimId, subject: c.subject, provider: c.provider, field: c.field, op: c.op, count: c.values.length, commitment: commitment(c.claimId, c.values, salt) };
  });
  const body: VerifyRequest = { type: 'safehouse.verify.request.v1', jobId: r.jobId, bank: r.bank, purpose: r.purpose, requestedAt: r.requestedAt ?? new Date().toISOString(), claims };
  return { signed: signJson(body, r.bank, bankSecretKey), openings };
}

/**
 * Bank side: open the result; with `expected` (the signed claim ids), check every claim got an answer.
 * @throws SH_ERR_SEALED_BOX when a box was not sealed to this key or was altered; SH_ERR_PARAMS_MISMATCH when a claim
 *   is unanswered.
 * @example openVerifyResult(result, 'bank1', x25519SecretKey).get('c1') === 'yes'
 */
export function openVerifyResult(result: VerifyResult, bank: string, bankX25519Secret: Uint8Array, expected?: readonly string[]): Map<string, ClaimResult> {
  const direct = JSON.parse(new TextDecoder().decode(openSealed(bankX25519Secret, result.direct, { type: 'safehouse.verify.direct.v1', jobId: result.jobId, jobHash: result.jobHash, recipient: bank }))) as Record<string, ClaimResult>;
  const bits = result.boxes.map((b) => openSealed(bankX25519Secret, b.sealed, { jobId: result.jobId, jobHash: result.jobHash, provider: b.provider, label: b.label, mode: 'sign', recipient: bank }));
  const out = new Map<string, ClaimResult>(Object.entries(direct));
  for (const n of result.numeric) {
    const all = n.parts.every(([box, slot]) => ((bits[box]![slot >> 3]! >> (slot & 7)) & 1) === 1);
    out.set(n.claimId, all !== n.negate ? 'yes' : 'no');
  }
  const missing = (expected ?? []).filter((id) => !out.has(id));
  if (missing.length) fail('SH_ERR_PARAMS_MISMATCH', `the result answers no claim ${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ' …' : ''}`);
  return out;
}

/** One comparison: d·(x − c) ≥ 0 at a subject's slot. */
/** One masked comparison; `k` is its position in `comparisonsFor`'s list for the claim (logged for replay). */
interface Comparison { claimId: string; slot: number; d: 1n | -1n; c: bigint; k?: number }

interface Prepared {
  claim: SignedClaim;
  values: string[];
  dataset: DatasetRecord;
  spec: FieldSpec;
}

/**
 * Engine side: run a verification job end to end.
 * @throws SH_ERR_BAD_SIGNATURE, SH_ERR_CLAIM_INVALID, SH_ERR_VERIFY_FIELD_CLASS, SH_ERR_UNKNOWN_FIELD,
 *   SH_ERR_USCC_*, SH_ERR_JOB_TOO_LARGE, SH_ERR_TOKEN_PROOF, SH_ERR_BOUND_OVERFLOW, custodian errors.
 */
export async function runVerifyJob(engine: Engine, signed: Signed<VerifyRequest>, openings: ClaimOpenings, opts: { onProgress?: (p: VerifyProgress) => void } = {}): Promise<VerifyResult> {
  // 1. Who asks; the whole batch is validated before any work.
  const bank = engine.registry.requireParty(signed.signer, 'bank');
  requireSignature(signed, bank.ed25519, 'safehouse.verify.request.v1', `verify request by ${signed.signer}`);
  const req = signed.body;
  if (req.bank !== bank.id) fail('SH_ERR_BAD_SIGNATURE', `request names bank ${req.bank} but is signed by ${bank.id}`);
  if (!bank.x25519) fail('SH_ERR_INVALID_ARGUMENT', `bank ${bank.id} has no X25519 key to receive results`);
  const at = new Date(req.requestedAt);
  if (!Number.isFinite(at.getTime()) || Math.abs(at.getTime() - engine.now().getTime()) > MAX_REQUEST_SKEW_MS) {
    fail('SH_ERR_INVALID_ARGUMENT', `"requestedAt" expected within ${MAX_REQUEST_SKEW_MS / 60_000} minutes of the engine's clock, got ${JSON.stringify(req.requestedAt)}`);
  }
  engine.jobs.requireNew(req.jobId);
  if (!Array.isArray(req.claims)) fail('SH_ERR_CLAIM_INVALID', '"claims" expected an array');
  if (req.claims.length > engine.policy.maxClaimsPerJob) fail('SH_ERR_JOB_TOO_LARGE', `job has ${req.claims.length} claims; the limit is ${engine.policy.maxClaimsPerJob}`);
  const jobHash = sha256Hex(canonicalize(signed));
  const prepared = req.claims.map((c, i) => prepareClaim(engine, c, openings[c.claimId], i));
  const ids = new Set<string>();
  for (const p of prepared) {
    if (ids.has(p.claim.claimId)) fail('SH_ERR_CLAIM_INVALID', `claim id ${p.claim.claimId} is repeated`, { claim: p.claim.claimId });
    ids.add(p.claim.claimId);
  }
  opts.onProgress?.({ phase: 'check', done: 0, total: prepared.length });

  // 2. Consent per (subject, category), data presence, then budget, in claim order.
  const results = new Map<string, ClaimResult>();
  const byCategory = groupBy(prepared, (p) => p.dataset.category);
  const consent = new Map<string, { status: ConsentStatus; consentId?: string }>();
  // Judged in the pool (statements read and signatures checked by the workers), the categories concurrently.
  await engine.pool.all([...byCategory].map(async ([category, ps]) => {
    const st = await engine.consents.statusesParallel({ bank: bank.id, purpose: req.purpose, operation: 'verify', categories: [category], at }, [...new Set(ps.map((p) => p.claim.subject))]);
    for (const [s, v] of st) consent.set(`${category}/${s}`, v);
  }));
  const epoch = budgetEpoch(engine.policy, at);
  const usedQ = engine.store.db.prepare('SELECT used FROM verify_budget WHERE bank = ? AND subject = ? AND provider = ? AND field = ? AND epoch = ?');
  const spend = new Map<string, number>();
  const slotOf = new Map<string, { block: number; slot: number }>();
  const work: Prepared[] = [];
  const exceeded: Array<{ claimId: string; subject: string; field: string }> = [];
  for (const p of prepared) {
    const { claim } = p;
    const st = consent.get(`${p.dataset.category}/${claim.subject}`)!;
    if (st.status !== 'OK') { results.set(claim.claimId, `refused:${st.status}`); continue; }
    const key = [bank.id, claim.subject, claim.provider, claim.field, epoch].join('\u0000');
    const used = spend.get(key) ?? ((usedQ.get(bank.id, claim.subject, claim.provider, claim.field, epoch) as { used: number } | undefined)?.used ?? 0);
    if (used >= engine.policy.verifyBudgetPerEpoch) {
      results.set(claim.claimId, 'over_budget');
      exceeded.push({ claimId: claim.claimId, subject: claim.subject, field: `${claim.provider}/${claim.field}` });
      continue;
    }
    spend.set(key, used + 1);
    const sl = engine.datasets.subjectSlots(p.dataset.id, [claim.subject]).get(claim.subject);
    if (!sl || sl.missing.has(claim.field)) { results.set(claim.claimId, 'no_data'); continue; }
    slotOf.set(claim.claimId, sl);
    work.push(p);
  }

  // 3. Record the request (with every subject, for access reports) and the budget spent, before any custodian call.
  const subjects = [...new Set(req.claims.map((c) => c.subject))];
  engine.store.transaction(() => {
    engine.jobs.requireNew(req.jobId);
    engine.store.db.prepare('INSERT INTO jobs (id, kind, bank, request_json, status, created_at) VALUES (?, ?, ?, ?, ?, ?)').run(req.jobId, 'verify', bank.id, JSON.stringify({ signed }), 'running', engine.now().toISOString());
    engine.ledger.append('job.requested', { jobId: req.jobId, job: 'verify', bank: bank.id, purpose: req.purpose, jobHash, claims: req.claims.length, subjects: subjects.length, signature: signed.signature }, subjects);
    const up = engine.store.db.prepare('INSERT INTO verify_budget (bank, subject, provider, field, epoch, used) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(bank, subject, provider, field, epoch) DO UPDATE SET used = excluded.used');
    for (const [key, used] of spend) {
      const [b, s, pr, f] = key.split('\u0000');
      up.run(b!, s!, pr!, f!, epoch, used);
    }
    engine.ledger.append('verify.budget_used', { jobId: req.jobId, epoch, units: [...spend.values()].length, claims: work.length + [...results.values()].filter((r) => r === 'no_data').length });
    if (exceeded.length) engine.ledger.append('verify.budget_exceeded', { jobId: req.jobId, code: 'SH_ERR_VERIFY_BUDGET', epoch, claims: exceeded.map((e) => e.claimId) }, [...new Set(exceeded.map((e) => e.subject))]);
  });

  const seed = new Uint8Array(randomBytes(32));
  // The seed (randomizers of numeric comparisons) is escrowed to the auditors, as for scoring, so a job can be replayed.
  const escrow = engine.registry.parties('auditor').filter((a) => a.x25519).map((a) => ({ auditor: a.id, sealed: sealTo(a.x25519!, seed, { type: 'safehouse.escrow.v1', jobId: req.jobId, jobHash }) }));
  // The claim openings (the bank's values) are not kept in clear: they are sealed to the auditors with the seed, for replay.
  const openingsEscrow = engine.registry.parties('auditor').filter((a) => a.x25519).map((a) => ({ auditor: a.id, sealed: sealTo(a.x25519!, new TextEncoder().encode(canonicalize(openings)), { type: 'safehouse.escrow.openings.v1', jobId: req.jobId, jobHash }) }));
  engine.store.db.prepare('UPDATE jobs SET request_json = ? WHERE id = ?').run(JSON.stringify({ signed, escrow, openingsEscrow }), req.jobId);
  engine.ledger.append('job.escrowed', { jobId: req.jobId, escrow: escrow.map((e) => ({ auditor: e.auditor, hash: sha256Hex(canonicalize(e.sealed)) })), openings: openingsEscrow.map((e) => ({ auditor: e.auditor, hash: sha256Hex(canonicalize(e.sealed)) })) });
  const boxes: SignBox[] = [];
  const numeric: VerifyResult['numeric'] = [];
  const ranges: Record<string, string> = {};
  try {
    // 4. Token claims, batched per (provider, field).
    const tokenWork = work.filter((p) => p.spec.type === 'id');
    opts.onProgress?.({ phase: 'tokens', done: 0, total: tokenWork.length });
    const tokenGroups = groupBy(tokenWork, (p) => `${p.claim.provider}/${p.claim.field}`);
    let tokensDone = 0;
    // Groups run concurrently (their batches spread over both pools); labels do not depend on the order.
    await engine.pool.all([...tokenGroups.values()].map(async (group) => {
      const matches = await verifyTokens(engine, signed, jobHash, group, seed);
      for (const p of group) results.set(p.claim.claimId, matches.get(p.claim.claimId) ? 'yes' : 'no');
      tokensDone += group.length;
      opts.onProgress?.({ phase: 'tokens', done: tokensDone, total: tokenWork.length });
    }));

    // 5. Numeric claims: comparisons packed into (dataset, field, block, round) ciphertexts.
    const numWork = work.filter((p) => p.spec.type !== 'id');
    const cmpGroups = new Map<string, { p: Prepared; comparisons: Comparison[] }>();
    for (const p of numWork) {
      const cmps = comparisonsFor(p, slotOf.get(p.claim.claimId)!.slot);
      if (cmps === 'no') { results.set(p.claim.claimId, 'no'); continue; }
      if (cmps === 'yes') { results.set(p.claim.claimId, 'yes'); continue; }
      const key = `${p.dataset.id}\u0000${p.claim.field}\u0000${slotOf.get(p.claim.claimId)!.block}`;
      const g = cmpGroups.get(key) ?? { p, comparisons: [] };
      g.comparisons.push(...cmps.map((c, k) => ({ ...c, k })));
      cmpGroups.set(key, g);
      numeric.push({ claimId: p.claim.claimId, parts: [], negate: p.claim.op === 'ne' });
    }
    const partsOf = new Map(numeric.map((n) => [n.claimId, n.parts]));
    const tasks: Array<{ p: Prepared; block: number; round: number; comparisons: Comparison[] }> = [];
    for (const [key, g] of cmpGroups) {
      const block = Number(key.split('\u0000')[2]);
      const rounds: Comparison[][] = [];
      for (const c of g.comparisons) {
        let r = rounds.find((round) => !round.some((x) => x.slot === c.slot));
        if (!r) rounds.push((r = []));
        r.push(c);
      }
      rounds.forEach((comparisons, round) => tasks.push({ p: g.p, block, round, comparisons }));
    }
    for (const provider of new Set(tasks.map((x) => x.p.claim.provider))) await engine.registry.custodian(provider).openJob(signed as never);
    let numDone = 0;
    opts.onProgress?.({ phase: 'numeric', done: 0, total: tasks.length });
    await engine.pool.all(tasks.map(async (task, i) => {
      const { p, block, round, comparisons } = task;
      const R = comparisonRange(engine, p.spec);
      ranges[`${p.claim.provider}/${p.claim.field}`] = R.toString();
      const label = `verify/${p.claim.provider}/${p.dataset.id}/${p.claim.field}/block/${block}/round/${round}`;
      const { multipliers, offsets } = comparisonVectors(engine, seed, `${req.jobId}/${label}`, comparisons, R);
      const blob = engine.datasets.columnBlob(p.dataset.id, p.claim.field, block);
      if (!blob) fail('SH_ERR_BLOB_MISSING', `no column ${p.claim.field} block ${block} in dataset ${p.dataset.id}`);
      const pk = engine.registry.requireParty(p.claim.provider, 'provider').bfvPublicKeyBlob!;
      const out = await engine.pool.run<{ ciphertext: Uint8Array; rerandomizer: Uint8Array }>({ op: 'compareBlock', paramsId: engine.params.id, publicKey: { path: engine.store.blobPath(pk), hash: pk }, column: { path: engine.store.blobPath(blob), hash: blob }, multipliers, offsets }, [multipliers.buffer as ArrayBuffer, offsets.buffer as ArrayBuffer]);
      const ct = out.ciphertext;
      const rerandomizer = engine.store.putBlob(out.rerandomizer);
      const request: DecryptRequest = { type: 'safehouse.custodian.decrypt.v1', paramsId: engine.params.id, provider: p.claim.provider, jobId: req.jobId, jobHash, label, mode: 'sign', ciphertext: sha256Hex(ct), recipient: { party: bank.id, x25519: bytesToHex(bank.x25519!) } };
      const signedReq = signJson(request, 'engine', engine.keys.ed25519.secretKey);
      const response = await engine.registry.custodian(p.claim.provider).decrypt(signedReq, ct);
      const provider = engine.registry.requireParty(p.claim.provider, 'provider');
      if (!verifyJson(response, provider.ed25519) || response.body.requestHash !== sha256Hex(canonicalize(signedReq)) || !response.body.sealed) {
        fail('SH_ERR_BAD_SIGNATURE', `custodian ${p.claim.provider} answered ${label} with an unsigned or mismatched response`);
      }
      engine.ledger.appendMany([
        // Which comparisons the block carries ([claim, position]; the values stay in the engine's store), for replay.
        { kind: 'custodian.request', event: { jobId: req.jobId, provider: p.claim.provider, label, mode: 'sign', requestHash: response.body.requestHash, ciphertext: request.ciphertext, rerandomizer, comparisons: comparisons.map((c) => [c.claimId, c.k!]) } },
        { kind: 'custodian.response', event: { jobId: req.jobId, provider: p.claim.provider, label, responseHash: sha256Hex(canonicalize(response)), sealed: sha256Hex(canonicalize(response.body.sealed)) } },
      ]);
      boxes[i] = { provider: p.claim.provider, datasetId: p.dataset.id, field: p.claim.field, block, round, label, sealed: response.body.sealed };
      for (const c of comparisons) partsOf.get(c.claimId)!.push([i, c.slot]);
      opts.onProgress?.({ phase: 'numeric', done: ++numDone, total: tasks.length });
    }));
  } catch (err) {
    engine.store.db.prepare("UPDATE jobs SET status = 'failed', finished_at = ? WHERE id = ?").run(engine.now().toISOString(), req.jobId);
    engine.ledger.append('job.failed', { jobId: req.jobId, code: isCoded(err) ? err.code : 'SH_ERR_INTERNAL' });
    engine.ledger.checkpoint();
    throw err;
  }

  // 6. Seal what the engine determined; the bank reads numeric answers from the custodians' sealed bits.
  const directJson: Record<string, ClaimResult> = {};
  for (const c of req.claims) { const r = results.get(c.claimId); if (r) directJson[c.claimId] = r; }
  const direct = sealTo(bank.x25519!, new TextEncoder().encode(JSON.stringify(directJson)), { type: 'safehouse.verify.direct.v1', jobId: req.jobId, jobHash, recipient: bank.id });
  const result: VerifyResult = { type: 'safehouse.verify.result.v1', jobId: req.jobId, jobHash, direct, boxes, numeric, ranges };
  const counts: Record<string, number> = {};
  for (const r of Object.values(directJson)) { const k = r === 'yes' || r === 'no' ? 'token_or_known' : r; counts[k] = (counts[k] ?? 0) + 1; }
  counts.numeric = numeric.length;
  // Replay material: the result as sent (its hash is ledgered) and a MAC of the engine-determined answers under a key
  // derived from the escrowed seed — only the bank (sealed box) and seed-holding auditors can check those answers.
  const resultHash = engine.store.putBlob(new TextEncoder().encode(canonicalize(result)));
  const directMac = directAnswersMac(seed, req.jobId, directJson);
  engine.store.transaction(() => {
    engine.store.db.prepare("UPDATE jobs SET status = 'completed', summary_json = ?, finished_at = ? WHERE id = ?").run(JSON.stringify({ counts, ranges, resultHash }), engine.now().toISOString(), req.jobId);
    engine.ledger.append('job.completed', { jobId: req.jobId, job: 'verify', counts, ranges, boxes: boxes.length, resultHash, directMac });
  });
  engine.ledger.checkpoint();
  opts.onProgress?.({ phase: 'done', done: req.claims.length, total: req.claims.length });
  return result;
}

/** HMAC-SHA256 of the engine-determined answers (canonical JSON), keyed from the job seed (see job.completed). */
export function directAnswersMac(seed: Uint8Array, jobId: string, direct: Record<string, ClaimResult>): string {
  return createHmac('sha256', deriveMaskKey(seed, `${jobId}/verify/direct`)).update(canonicalize(direct)).digest('hex');
}

/** Validate one claim against the catalog, the provider's dataset and the bank's commitment. */
function prepareClaim(engine: Engine, claim: SignedClaim, opening: { values: string[]; salt: string } | undefined, i: number): Prepared {
  const at = `claims[${i}] (${claim?.claimId})`;
  if (typeof claim !== 'object' || claim === null || typeof claim.claimId !== 'string' || !CLAIM_ID.test(claim.claimId)) fail('SH_ERR_CLAIM_INVALID', `${at}: malformed claim`, { claim: i });
  let subject: string;
  try {
    subject = parseUscc(claim.subject);
  } catch (err) {
    const e = err as { code: 'SH_ERR_USCC_FORMAT'; message: string };
    return fail(e.code, `${at}: ${e.message}`, { claim: claim.claimId }, err);
  }
  if (subject !== claim.subject) fail('SH_ERR_CLAIM_INVALID', `${at}: subject must be the canonical USCC ${subject}`, { claim: claim.claimId });
  engine.registry.requireParty(claim.provider, 'provider');
  const dataset = engine.datasets.withField(claim.provider, claim.field);
  const spec = dataset?.schema.fields.find((f) => f.name === claim.field);
  if (!dataset || !spec) fail('SH_ERR_UNKNOWN_FIELD', `${at}: provider ${claim.provider} has no field ${claim.field}`, { claim: claim.claimId, field: claim.field });
  if (!classAllows(spec.class, 'verify')) fail('SH_ERR_VERIFY_FIELD_CLASS', `${at}: ${claim.provider}/${claim.field} is ${spec.class} and cannot be verified`, { claim: claim.claimId, field: claim.field });
  const ops = spec.type === 'id' ? TOKEN_OPS : NUMERIC_OPS;
  if (!ops.includes(claim.op)) fail('SH_ERR_CLAIM_INVALID', `${at}: op ${JSON.stringify(claim.op)} is not allowed on ${spec.type} field ${claim.field} (allowed: ${ops.join(', ')})`, { claim: claim.claimId });
  // The bound calculator runs before any work (DESIGN §3): a field too wide for a masked comparison is refused here,
  // not after the job is recorded, the budget spent and custodians called (test/verify.test.ts, "bound calculator").
  if (spec.type !== 'id') comparisonRange(engine, spec);
  if (!opening || !Array.isArray(opening.values) || typeof opening.salt !== 'string' || commitment(claim.claimId, opening.values, opening.salt) !== claim.commitment) {
    fail('SH_ERR_CLAIM_INVALID', `${at}: the claimed value does not match the bank-signed commitment`, { claim: claim.claimId });
  }
  const n = opening.values.length;
  const want = claim.op === 'between' ? n === 2 : claim.op === 'in' ? n >= 1 && n <= MAX_IN_VALUES : n === 1;
  if (!want || claim.count !== n) fail('SH_ERR_CLAIM_INVALID', `${at}: op ${claim.op} takes ${claim.op === 'between' ? '2 values' : claim.op === 'in' ? `1..${MAX_IN_VALUES} values` : '1 value'}, got ${n}`, { claim: claim.claimId });
  let values: string[];
  if (spec.type === 'id') {
    values = opening.values.map((v) => {
      try {
        return normalizeId(idRuleFor(spec.name), v);
      } catch (err) {
        return fail('SH_ERR_CLAIM_INVALID', `${at}: ${(err as Error).message}`, { claim: claim.claimId }, err);
      }
    });
  } else {
    for (const v of opening.values) claimThreshold(spec, v, `${at}.value`);
    values = [...opening.values];
  }
  return { claim: { ...claim, subject }, values, dataset, spec };
}

/**
 * A claimed value as an exact rational at the field's scale: numerator v over 10^extra (extra = decimals beyond the
 * field's). Enum values are labels (or their index), bool true/false/1/0.
 */
function claimThreshold(spec: FieldSpec, text: string, what: string): { v: bigint; extra: number } {
  const t = text.trim();
  if (spec.type === 'bool') {
    const l = t.toLowerCase();
    if (l === 'true' || l === '1') return { v: 1n, extra: 0 };
    if (l === 'false' || l === '0') return { v: 0n, extra: 0 };
    return fail('SH_ERR_CLAIM_INVALID', `${what}: expected true/false or 1/0 for ${spec.name}, got ${JSON.stringify(text)}`);
  }
  if (spec.type === 'enum') {
    const i = (spec.values ?? []).indexOf(t);
    if (i >= 0) return { v: BigInt(i), extra: 0 };
    if (/^\d+$/.test(t) && Number(t) < (spec.values ?? []).length) return { v: BigInt(t), extra: 0 };
    return fail('SH_ERR_CLAIM_INVALID', `${what}: expected one of ${(spec.values ?? []).join('|')} for ${spec.name}, got ${JSON.stringify(text)}`);
  }
  const m = /^[+-]?\d+(?:\.(\d+))?$/.exec(t);
  if (!m) return fail('SH_ERR_CLAIM_INVALID', `${what}: expected a decimal number for ${spec.name}, got ${JSON.stringify(text)}`);
  const places = Math.max(spec.decimals, (m[1] ?? '').length);
  return { v: parseFixed(t, places), extra: places - spec.decimals };
}

const floorDiv = (a: bigint, b: bigint) => (a >= 0n ? a / b : -((-a + b - 1n) / b));
const ceilDiv = (a: bigint, b: bigint) => -floorDiv(-a, b);

/**
 * The comparisons a numeric claim needs at a slot, with thresholds at the field's scale and clamped into
 * [min − 1, max + 1] (so |x − c| stays within the field's range); or a known answer when no comparison is needed
 * (e.g. `eq` with a value that has more decimals than the field can hold).
 */
function comparisonsFor(p: Prepared, slot: number): Comparison[] | 'yes' | 'no' {
  const { spec, claim } = p;
  const min = parseFixed(spec.min, spec.decimals);
  const max = parseFixed(spec.max, spec.decimals);
  const clamp = (c: bigint) => (c < min - 1n ? min - 1n : c > max + 1n ? max + 1n : c);
  const th = p.values.map((v) => claimThreshold(spec, v, claim.claimId));
  const scale = (x: { v: bigint; extra: number }) => pow10(x.extra);
  const ge = (x: { v: bigint; extra: number }): Comparison => ({ claimId: claim.claimId, slot, d: 1n, c: clamp(ceilDiv(x.v, scale(x))) });
  const le = (x: { v: bigint; extra: number }): Comparison => ({ claimId: claim.claimId, slot, d: -1n, c: clamp(floorDiv(x.v, scale(x))) });
  switch (claim.op) {
    case 'gte': return [ge(th[0]!)];
    case 'lte': return [le(th[0]!)];
    case 'between': return [ge(th[0]!), le(th[1]!)];
    case 'eq':
    case 'ne': {
      const x = th[0]!;
      if (x.v % scale(x) !== 0n) return claim.op === 'eq' ? 'no' : 'yes';
      return [ge(x), le(x)];
    }
    default:
      return fail('SH_ERR_CLAIM_INVALID', `op ${claim.op} is not a numeric op`);
  }
}

/**
 * Bound calculator for masked comparisons: the largest R with R·(D + 1) ≤ (t − 1)/2, where D = max − min + 1 bounds
 * |x − c| for x in bounds and c clamped to [min − 1, max + 1]; then r·|x − c| + r' < R·(D + 1) ≤ (t−1)/2.
 * @throws SH_ERR_BOUND_OVERFLOW when R would be below the policy minimum.
 */
export function comparisonRange(engine: Engine, spec: FieldSpec): bigint {
  const D = parseFixed(spec.max, spec.decimals) - parseFixed(spec.min, spec.decimals) + 1n;
  const R = (engine.params.t - 1n) / 2n / (D + 1n);
  if (R < BigInt(engine.policy.minComparisonR)) fail('SH_ERR_BOUND_OVERFLOW', `field ${spec.name}: range too wide for masked comparison (R = ${R} < ${engine.policy.minComparisonR})`, { field: spec.name });
  return R;
}

/** Per-slot multiplier r·d and offset r' − r·d·c (mod t); unused slots: 0 and a uniform offset. Replayable from the job seed. */
function comparisonVectors(engine: Engine, seed: Uint8Array, label: string, comparisons: readonly Comparison[], R: bigint): { multipliers: BigUint64Array; offsets: BigUint64Array } {
  const t = engine.params.t;
  const n = engine.params.slots;
  const rs = maskVector(deriveMaskKey(seed, `${label}/r`), R, n);
  const us = maskVector(deriveMaskKey(seed, `${label}/r'`), t, n);
  const multipliers = new BigUint64Array(n);
  const offsets = us.slice();
  for (const c of comparisons) {
    const r = rs[c.slot]! + 1n;
    const rPrime = (us[c.slot]! * r) / t; // uniform in [0, r) up to a bias below r/t
    multipliers[c.slot] = toSlot(r * c.d, t);
    offsets[c.slot] = toSlot(rPrime - r * c.d * c.c, t);
  }
  return { multipliers, offsets };
}

/** Token membership for one (provider, field) group: blind → custodian (batched, DLEQ) → finalize → look up. */
async function verifyTokens(engine: Engine, signed: Signed<VerifyRequest>, jobHash: string, group: readonly Prepared[], seed: Uint8Array): Promise<Map<string, boolean>> {
  const { provider, field } = group[0]!.claim;
  const party = engine.registry.requireParty(provider, 'provider');
  if (!party.oprfPublicKey) fail('SH_ERR_INVALID_ARGUMENT', `provider ${provider} has no OPRF key`);
  const info = tokenInfo(provider, field, TOKEN_EPOCH);
  const items = group.flatMap((p) => p.values.map((v) => ({ claimId: p.claim.claimId, input: tokenInput(p.claim.subject, field, v), datasetId: p.dataset.id })));
  const matches = new Map<string, boolean>(group.map((p) => [p.claim.claimId, false]));
  const BATCH = 512;
  const chunks: Array<typeof items> = [];
  for (let i = 0; i < items.length; i += BATCH) chunks.push(items.slice(i, i + BATCH));
  await engine.pool.all(chunks.map(async (chunk, k) => {
    const inputs = chunk.map((x) => x.input);
    // Blinds derive from the job seed, so the auditor holding the escrowed seed can recompute the blinded elements.
    const label = `verify/${provider}/${field}/tokens/${k}`;
    const blinded = await engine.pool.run<Blinded[]>({ op: 'oprf', fn: 'blind', publicKey: party.oprfPublicKey!, info, inputs, blindKey: deriveMaskKey(seed, `${signed.body.jobId}/${label}/blind`) });
    const request: TokenEvalRequest = {
      type: 'safehouse.custodian.oprf.v1', suite: 'P256-SHA256', mode: 'POPRF', provider, jobId: signed.body.jobId, jobHash, field, epoch: TOKEN_EPOCH,
      label,
      elements: chunk.map((x, i) => ({ claimId: x.claimId, blinded: bytesToHex(blinded[i]!.blinded) })),
    };
    const signedReq = signJson(request, 'engine', engine.keys.ed25519.secretKey);
    const response = await engine.registry.custodian(provider).evaluateTokens(signedReq, signed);
    if (!verifyJson(response, party.ed25519) || response.body.requestHash !== sha256Hex(canonicalize(signedReq)) || response.body.evaluated.length !== chunk.length) {
      fail('SH_ERR_BAD_SIGNATURE', `custodian ${provider} answered ${request.label} with an unsigned or mismatched response`);
    }
    engine.ledger.appendMany([
      { kind: 'custodian.request', event: { jobId: signed.body.jobId, provider, label: request.label, mode: 'oprf', requestHash: response.body.requestHash, elements: chunk.length, elementsHash: sha256Hex(canonicalize(request.elements)) } },
      // The custodian's signed evaluations and proof are kept (content-addressed by responseHash) for replay.
      { kind: 'custodian.response', event: { jobId: signed.body.jobId, provider, label: request.label, responseHash: engine.store.putBlob(new TextEncoder().encode(canonicalize(response))) } },
    ]);
    const tokens = await engine.pool.run<Uint8Array[]>({
      op: 'oprf', fn: 'finalize', publicKey: party.oprfPublicKey!, info, inputs, blinded,
      evaluated: response.body.evaluated.map((h) => hexToBytes(h)), proof: hexToBytes(response.body.proof),
    });
    tokens.forEach((tk, i) => { if (engine.datasets.hasToken(chunk[i]!.datasetId, field, tk)) matches.set(chunk[i]!.claimId, true); });
  }));
  return matches;
}

function groupBy<T>(xs: readonly T[], key: (x: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const x of xs) {
    const k = key(x);
    const list = m.get(k);
    if (list) list.push(x);
    else m.set(k, [x]);
  }
  return m;
}

/** The engine's own steps, exposed for the auditor's replay (engine/audit/replay.ts); not an API for banks. */
export const verifyReplay = { prepareClaim, comparisonsFor, comparisonVectors };
export type { Prepared as PreparedClaim, Comparison as ClaimComparison };
