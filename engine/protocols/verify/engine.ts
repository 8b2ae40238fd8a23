/**
 * Verification, the engine's steps (数据核验, docs/protocols.md "Verification"): judge each claim in order — consent
 * for op `verify` and the field's category, the bank's budget per (subject, provider, field, epoch), data presence —
 * then answer token claims by RFC 9497 POPRF membership (blind under the provider's published key, the custodian
 * evaluates with a DLEQ proof, the engine checks the proof, finalizes and looks the token up) and numeric claims by
 * masked comparisons packed into (dataset, field, block, round) ciphertexts whose sign bits the custodian seals to
 * the bank. The engine learns whether a token matched, never a numeric answer; `run.ts` puts the steps in order.
 */
import { createHmac } from 'node:crypto';
import { fail } from '../../../core/errors.ts';
import { canonicalize } from '../../../core/jcs.ts';
import { sha256Hex } from '../../../core/hash.ts';
import { bytesToHex, hexToBytes, type Signed } from '../../../core/sign.ts';
import { windowStart } from '../../../sandbox/policy.ts';
import type { ConsentStatus } from '../../../sandbox/consent.ts';
import { deriveMaskKey } from '../../he/mask.ts';
import { tokenInfo, tokenInput, TOKEN_EPOCH } from '../../tokens/oprf.ts';
import { kernelRef } from '../../pool/kernel.ts';
import type { Engine } from '../../engine.ts';
import type { PartyRecord } from '../../registry.ts';
import type { BudgetKey } from '../../budgets.ts';
import type { DecryptRequest, DecryptResponse, TokenEvalRequest, TokenEvalResponse } from '../../custodian/messages.ts';
import { askCustodian, responseBytes } from '../ask.ts';
import type * as Kernels from './kernels.ts';
import { comparisonRange, comparisonVectors, comparisonsFor, type Comparison, type PreparedClaim } from './claims.ts';
import {
  claimUnits,
  compareLabel,
  tokensLabel,
  TOKEN_BATCH,
  type ClaimResult,
  type SignBox,
  type VerifyRequest,
  type VerifyResult,
} from './messages.ts';

const KERNELS = new URL('./kernels.ts', import.meta.url);
export const compareBlock = kernelRef<typeof Kernels.compareBlock>(KERNELS, 'compareBlock');
const blind = kernelRef<typeof Kernels.blind>(KERNELS, 'blind');
const finalize = kernelRef<typeof Kernels.finalize>(KERNELS, 'finalize');

export function groupBy<T>(xs: readonly T[], key: (x: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const x of xs) {
    const k = key(x);
    const list = m.get(k);
    if (list) list.push(x);
    else m.set(k, [x]);
  }
  return m;
}

export interface Judged {
  /** Answers already known: refusals, over_budget, no_data. */
  results: Map<string, ClaimResult>;
  /** Claims that reach a custodian, in claim order, with their subject's slot. */
  work: PreparedClaim[];
  slotOf: Map<string, { block: number; slot: number }>;
  /** The start of the budget window (ISO time). */
  since: string;
  /** Units this job spends per key (and the total used with them). */
  spend: Map<string, { key: BudgetKey; used: number; units: number }>;
  exceeded: Array<{ claimId: string; subject: string; field: string }>;
}

/** Consent per (subject, category), from the engine's consent index: `<category>/<subject>` → status. */
export function claimConsents(
  engine: Engine,
  bank: string,
  req: VerifyRequest,
  prepared: readonly PreparedClaim[],
  at: Date,
): Map<string, { status: ConsentStatus; consentId?: string }> {
  const consent = new Map<string, { status: ConsentStatus; consentId?: string }>();
  for (const [category, ps] of groupBy(prepared, (p) => p.dataset.category)) {
    const st = engine.consents.jobStatuses(
      { bank, purpose: req.purpose, operation: 'verify', categories: [category], at },
      [...new Set(ps.map((p) => p.claim.subject))],
    );
    for (const [s, v] of st) consent.set(`${category}/${s}`, v);
  }
  return consent;
}

/**
 * Consent (from `claimConsents`), then budget and presence, in claim order. Synchronous, so a job runs it inside the
 * transaction that records the budget it spends: two jobs started together cannot both spend the same units.
 */
export function judgeClaims(
  engine: Engine,
  bank: string,
  prepared: readonly PreparedClaim[],
  consent: ReadonlyMap<string, { status: ConsentStatus }>,
  at: Date,
): Judged {
  const results = new Map<string, ClaimResult>();
  const group = engine.registry.groupOf(bank);
  const since = windowStart(engine.policy, at);
  const spend = new Map<string, { key: BudgetKey; used: number; units: number }>();
  const slotOf = new Map<string, { block: number; slot: number }>();
  const work: PreparedClaim[] = [];
  const exceeded: Judged['exceeded'] = [];
  for (const p of prepared) {
    const { claim } = p;
    const st = consent.get(`${p.dataset.category}/${claim.subject}`)!;
    if (st.status !== 'OK') {
      results.set(claim.claimId, `refused:${st.status}`);
      continue;
    }
    // A claim costs what it can answer; the budget is the group's, over the window ending at the request.
    const key: BudgetKey = { group, subject: claim.subject, provider: claim.provider, field: claim.field };
    const k = [group, claim.subject, claim.provider, claim.field].join('\u0000');
    const units = claimUnits(claim, p.spec.type === 'id');
    const before = spend.get(k) ?? { key, used: engine.budgets.used(key, since), units: 0 };
    if (before.used + units > engine.policy.verifyUnitsPerWindow) {
      results.set(claim.claimId, 'over_budget');
      exceeded.push({ claimId: claim.claimId, subject: claim.subject, field: `${claim.provider}/${claim.field}` });
      continue;
    }
    spend.set(k, { key, used: before.used + units, units: before.units + units });
    const sl = engine.datasets.subjectSlots(p.dataset.id, [claim.subject]).get(claim.subject);
    if (!sl || sl.missing.has(claim.field)) {
      results.set(claim.claimId, 'no_data');
      continue;
    }
    slotOf.set(claim.claimId, sl);
    work.push(p);
  }
  return { results, work, slotOf, since, spend, exceeded };
}

/** Token membership for one (provider, field) group: blind → custodian (batched, DLEQ) → finalize → look up. */
export async function verifyTokens(
  engine: Engine,
  signed: Signed<VerifyRequest>,
  jobHash: string,
  group: readonly PreparedClaim[],
  seed: Uint8Array,
): Promise<Map<string, boolean>> {
  const { provider, field } = group[0]!.claim;
  const party = engine.registry.requireParty(provider, 'provider');
  if (!party.oprfPublicKey) fail('SH_ERR_INVALID_ARGUMENT', `provider ${provider} has no OPRF key`);
  const info = tokenInfo(provider, field, TOKEN_EPOCH);
  const items = group.flatMap((p) =>
    p.values.map((v) => ({
      claimId: p.claim.claimId,
      input: tokenInput(p.claim.subject, field, v),
      datasetId: p.dataset.id,
    })),
  );
  const matches = new Map<string, boolean>(group.map((p) => [p.claim.claimId, false]));
  const chunks: Array<typeof items> = [];
  for (let i = 0; i < items.length; i += TOKEN_BATCH) chunks.push(items.slice(i, i + TOKEN_BATCH));
  await engine.pool.all(
    chunks.map(async (chunk, k) => {
      const inputs = chunk.map((x) => x.input);
      // Blinds derive from the job seed, so the auditor holding the escrowed seed can recompute the blinded elements.
      const label = tokensLabel(provider, field, k);
      const blinded = await engine.pool.run(blind, {
        publicKey: party.oprfPublicKey!,
        info,
        inputs,
        blindKey: deriveMaskKey(seed, `${signed.body.jobId}/${label}/blind`),
      });
      const request: TokenEvalRequest = {
        type: 'safehouse.custodian.oprf.v1',
        suite: 'P256-SHA256',
        mode: 'POPRF',
        provider,
        jobId: signed.body.jobId,
        jobHash,
        field,
        epoch: TOKEN_EPOCH,
        label,
        elements: chunk.map((x, i) => ({ claimId: x.claimId, blinded: bytesToHex(blinded[i]!.blinded) })),
      };
      const response = await askCustodian<TokenEvalRequest, Signed<TokenEvalResponse>>(engine, {
        provider,
        body: request,
        send: (c, s) => c.evaluateTokens(s as Signed<TokenEvalRequest>, signed),
        response: (r) => r,
        complete: (r) => r.body.evaluated.length === chunk.length,
        requestEvent: { mode: 'oprf', elements: chunk.length, elementsHash: sha256Hex(canonicalize(request.elements)) },
        // The custodian's signed evaluations and proof are kept (content-addressed by responseHash) for replay.
        responseEvent: (r) => ({ responseHash: engine.store.putBlob(responseBytes(r)) }),
      });
      const tokens = await engine.pool.run(finalize, {
        publicKey: party.oprfPublicKey!,
        info,
        inputs,
        blinded,
        evaluated: response.body.evaluated.map((h) => hexToBytes(h)),
        proof: hexToBytes(response.body.proof),
      });
      tokens.forEach((tk, i) => {
        if (engine.datasets.hasToken(chunk[i]!.datasetId, field, tk)) matches.set(chunk[i]!.claimId, true);
      });
    }),
  );
  return matches;
}

export interface CompareTask {
  p: PreparedClaim;
  block: number;
  round: number;
  comparisons: Comparison[];
}

/**
 * Numeric claims as comparison rounds: per (dataset, field, block) the claims' comparisons, packed one per slot per
 * round. Claims answered without a comparison (e.g. `eq` with more decimals than the field) go to `results`.
 */
export function compareTasks(
  numWork: readonly PreparedClaim[],
  slotOf: ReadonlyMap<string, { block: number; slot: number }>,
  results: Map<string, ClaimResult>,
): { tasks: CompareTask[]; numeric: VerifyResult['numeric'] } {
  const numeric: VerifyResult['numeric'] = [];
  const cmpGroups = new Map<string, { p: PreparedClaim; comparisons: Comparison[] }>();
  for (const p of numWork) {
    const cmps = comparisonsFor(p, slotOf.get(p.claim.claimId)!.slot);
    if (cmps === 'no') {
      results.set(p.claim.claimId, 'no');
      continue;
    }
    if (cmps === 'yes') {
      results.set(p.claim.claimId, 'yes');
      continue;
    }
    const key = `${p.dataset.id}\u0000${p.claim.field}\u0000${slotOf.get(p.claim.claimId)!.block}`;
    const g = cmpGroups.get(key) ?? { p, comparisons: [] };
    g.comparisons.push(...cmps.map((c, k) => ({ ...c, k })));
    cmpGroups.set(key, g);
    numeric.push({ claimId: p.claim.claimId, parts: [], negate: p.claim.op === 'ne' });
  }
  const tasks: CompareTask[] = [];
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
  return { tasks, numeric };
}

/** Every comparison round through the pool and its custodian (mode `sign`, sealed to the bank), with its ledger pair. */
export async function compareBlocks(
  engine: Engine,
  job: { jobId: string; jobHash: string; bank: PartyRecord; seed: Uint8Array },
  tasks: readonly CompareTask[],
  numeric: VerifyResult['numeric'],
  onTask: () => void,
): Promise<{ boxes: SignBox[]; ranges: Record<string, string> }> {
  const boxes: SignBox[] = [];
  const ranges: Record<string, string> = {};
  const partsOf = new Map(numeric.map((n) => [n.claimId, n.parts]));
  await engine.pool.all(
    tasks.map(async (task, i) => {
      const { p, block, round, comparisons } = task;
      const R = comparisonRange(engine, p.spec);
      ranges[`${p.claim.provider}/${p.claim.field}`] = R.toString();
      const label = compareLabel(p.claim.provider, p.dataset.id, p.claim.field, block, round);
      const { multipliers, offsets } = comparisonVectors(engine, job.seed, `${job.jobId}/${label}`, comparisons, R);
      const blob = engine.datasets.columnBlob(p.dataset.id, p.claim.field, block);
      if (!blob) fail('SH_ERR_BLOB_MISSING', `no column ${p.claim.field} block ${block} in dataset ${p.dataset.id}`);
      const pk = engine.registry.requireParty(p.claim.provider, 'provider').bfvPublicKeyBlob!;
      const out = (await engine.pool.run(
        compareBlock,
        {
          paramsId: engine.params.id,
          publicKey: { path: engine.store.blobPath(pk), hash: pk },
          column: { path: engine.store.blobPath(blob), hash: blob },
          multipliers,
          offsets,
        },
        [multipliers.buffer as ArrayBuffer, offsets.buffer as ArrayBuffer],
      )) as { ciphertext: Uint8Array; rerandomizer: Uint8Array };
      const ct = out.ciphertext;
      const rerandomizer = engine.jobs.putJobBlob(job.jobId, out.rerandomizer);
      const request: DecryptRequest = {
        type: 'safehouse.custodian.decrypt.v1',
        paramsId: engine.params.id,
        provider: p.claim.provider,
        jobId: job.jobId,
        jobHash: job.jobHash,
        label,
        mode: 'sign',
        ciphertext: sha256Hex(ct),
        rerandomizer,
        recipient: { party: job.bank.id, x25519: bytesToHex(job.bank.x25519!) },
      };
      const response = await askCustodian<DecryptRequest, Signed<DecryptResponse>>(engine, {
        provider: p.claim.provider,
        body: request,
        send: (c, s) => c.decrypt(s as Signed<DecryptRequest>, ct),
        response: (r) => r,
        complete: (r) => !!r.body.sealed,
        // Which comparisons the block carries ([claim, position]; the values stay in the engine's store), for replay.
        requestEvent: {
          mode: 'sign',
          ciphertext: request.ciphertext,
          rerandomizer,
          comparisons: comparisons.map((c) => [c.claimId, c.k!]),
        },
        discard: () => engine.store.dropBlob(rerandomizer),
        responseEvent: (r) => ({
          responseHash: sha256Hex(canonicalize(r)),
          sealed: sha256Hex(canonicalize(r.body.sealed)),
        }),
      });
      boxes[i] = {
        provider: p.claim.provider,
        datasetId: p.dataset.id,
        field: p.claim.field,
        block,
        round,
        label,
        sealed: response.body.sealed!,
      };
      for (const c of comparisons) partsOf.get(c.claimId)!.push([i, c.slot]);
      onTask();
    }),
  );
  return { boxes, ranges };
}

/** HMAC-SHA256 of the engine-determined answers (canonical JSON), keyed from the job seed (see job.completed). */
export function directAnswersMac(seed: Uint8Array, jobId: string, direct: Record<string, ClaimResult>): string {
  return createHmac('sha256', deriveMaskKey(seed, `${jobId}/verify/direct`))
    .update(canonicalize(direct))
    .digest('hex');
}
