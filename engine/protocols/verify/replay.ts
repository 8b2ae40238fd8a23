/**
 * Verification, the auditor's replay (docs/protocols.md "Auditor replay"): request, escrow (the seed and the bank's
 * claim openings, both sealed to this auditor), claims (openings match the bank-signed commitments), consent as of the
 * request's time (the count of claims let through must equal the ledgered one), every token batch (blinded elements
 * recomputed from the seed, the custodian's signed evaluations finalized with their DLEQ proof and looked up), every
 * numeric block (comparison vectors from the seed for the logged [claim, position] pairs, the logged re-randomizer),
 * the engine-determined answers (MAC keyed from the seed) and the result as sent. Budget refusals are taken from the
 * ledger's `verify.budget_exceeded` and `verify.custodian_refused` entries.
 */
import { canonicalize } from '../../../core/jcs.ts';
import { isCoded } from '../../../core/errors.ts';
import { sha256Hex } from '../../../core/hash.ts';
import { verifyJson, hexToBytes, type Signed } from '../../../core/sign.ts';
import { openSealed, type SealedBox } from '../../../core/sealbox.ts';
import type { ConsentStatus } from '../../../sandbox/consent.ts';
import { deriveMaskKey } from '../../he/mask.ts';
import { blindInputs, finalizeTokens, tokenInfo, tokenInput, TOKEN_EPOCH } from '../../tokens/oprf.ts';
import { blobOrMissing, checkRequestAndEscrow, failedDetail, type ReplayContext } from '../../audit/steps.ts';
import {
  comparisonRange,
  comparisonVectors,
  comparisonsFor,
  prepareClaim,
  type Comparison,
  type PreparedClaim,
} from './claims.ts';
import { compareBlock, directAnswersMac } from './engine.ts';
import {
  parseCompareLabel,
  tokensLabel,
  TOKEN_BATCH,
  type ClaimOpenings,
  type ClaimResult,
  type VerifyRequest,
  type VerifyResult,
} from './messages.ts';

/** What a verification job keeps for replay. */
export interface StoredVerify {
  signed: Signed<VerifyRequest>;
  escrow?: Array<{ auditor: string; sealed: SealedBox }>;
  openingsEscrow?: Array<{ auditor: string; sealed: SealedBox }>;
}

export async function replayVerify(ctx: ReplayContext<StoredVerify>): Promise<void> {
  const { engine, jobId, auditor, stored, events, requested, add } = ctx;
  const seed = checkRequestAndEscrow(ctx);
  const req = stored.signed.body;
  const jobHash = String(requested.body.jobHash);
  // The claim openings, sealed to this auditor.
  let openings: ClaimOpenings | undefined;
  const box = stored.openingsEscrow?.find((x) => x.auditor === auditor.id);
  const ledgered = (
    (events.find((e) => e.kind === 'job.escrowed')?.body.openings ?? []) as Array<{ auditor: string; hash: string }>
  ).find((x) => x.auditor === auditor.id);
  if (!box || !ledgered) add('openings', 'missing', `no claim openings escrowed to ${auditor.id}`);
  else {
    try {
      openings = JSON.parse(
        new TextDecoder().decode(
          openSealed(auditor.x25519SecretKey, box.sealed, { type: 'safehouse.escrow.openings.v1', jobId, jobHash }),
        ),
      ) as ClaimOpenings;
      add('openings', sha256Hex(canonicalize(box.sealed)) === ledgered.hash ? 'match' : 'mismatch');
    } catch {
      add('openings', 'mismatch', 'the escrowed openings do not open for this auditor');
    }
  }
  if (!seed || !openings) {
    add('claims', 'missing', 'no seed or openings to replay with');
    return;
  }
  let prepared: PreparedClaim[];
  try {
    prepared = req.claims.map((c, i) => prepareClaim(engine, c, openings![c.claimId], i));
    add('claims', 'match');
  } catch (err) {
    add(
      'claims',
      'mismatch',
      `a claim does not check against its signed commitment (${isCoded(err) ? err.code : 'error'})`,
    );
    return;
  }
  const byId = new Map(prepared.map((p) => [p.claim.claimId, p]));

  // Consent, budget (the ledgered refusals), data presence: which claims reached work, as the job decided them.
  const at = new Date(req.requestedAt);
  const results = new Map<string, ClaimResult>();
  const consent = new Map<string, { status: ConsentStatus }>();
  const categories = new Map<string, Set<string>>();
  for (const p of prepared)
    categories.set(p.dataset.category, (categories.get(p.dataset.category) ?? new Set()).add(p.claim.subject));
  for (const [category, subjects] of categories) {
    for (const [u, v] of engine.consents.statuses(
      { bank: req.bank, purpose: req.purpose, operation: 'verify', categories: [category], at },
      [...subjects],
      String(requested.body.at), // what the engine knew when it recorded the job
    ))
      consent.set(`${category}/${u}`, v);
  }
  const exceeded = new Set((events.find((e) => e.kind === 'verify.budget_exceeded')?.body.claims ?? []) as string[]);
  const work: PreparedClaim[] = [];
  const slotOf = new Map<string, { block: number; slot: number }>();
  for (const p of prepared) {
    const st = consent.get(`${p.dataset.category}/${p.claim.subject}`)!.status;
    if (st !== 'OK') {
      results.set(p.claim.claimId, `refused:${st}`);
      continue;
    }
    if (exceeded.has(p.claim.claimId)) {
      results.set(p.claim.claimId, 'over_budget');
      continue;
    }
    const sl = engine.datasets.subjectSlots(p.dataset.id, [p.claim.subject]).get(p.claim.subject);
    if (!sl || sl.missing.has(p.claim.field)) {
      results.set(p.claim.claimId, 'no_data');
      continue;
    }
    slotOf.set(p.claim.claimId, sl);
    work.push(p);
  }
  // The job ledgered how many claims passed consent and budget (answered or no_data): the re-derivation must agree.
  const used = events.find((e) => e.kind === 'verify.budget_used');
  const passed = work.length + [...results.values()].filter((r) => r === 'no_data').length;
  if (!used) add('consent', 'missing', 'no verify.budget_used entry');
  else if (used.body.claims !== passed)
    add(
      'consent',
      'mismatch',
      `${passed} claims pass consent as of the request time, the job let ${String(used.body.claims)} through`,
    );
  else add('consent', 'match');
  // Claims a custodian refused under its own budgets were answered over_budget (after the engine's judgement).
  // Or refused:<status> when the custodian's own consent check refused it (the ledger entry names the reasons).
  const custodianRefused = new Map<string, string | undefined>();
  for (const e of events.filter((e) => e.kind === 'verify.custodian_refused')) {
    const reasons = (e.body.reasons ?? {}) as Record<string, string>;
    for (const c of (e.body.claims ?? []) as string[]) custodianRefused.set(c, reasons[c]);
  }
  for (let i = work.length - 1; i >= 0; i--)
    if (custodianRefused.has(work[i]!.claim.claimId)) {
      const why = custodianRefused.get(work[i]!.claim.claimId);
      results.set(work[i]!.claim.claimId, why ? (`refused:${why}` as ClaimResult) : 'over_budget');
      work.splice(i, 1);
    }

  // Token batches.
  const requests = new Map(events.filter((e) => e.kind === 'custodian.request').map((e) => [String(e.body.label), e]));
  const responses = new Map(
    events.filter((e) => e.kind === 'custodian.response').map((e) => [String(e.body.label), e]),
  );
  const tokenGroups = new Map<string, PreparedClaim[]>();
  for (const p of work.filter((x) => x.spec.type === 'id'))
    tokenGroups.set(`${p.claim.provider}/${p.claim.field}`, [
      ...(tokenGroups.get(`${p.claim.provider}/${p.claim.field}`) ?? []),
      p,
    ]);
  for (const group of tokenGroups.values()) {
    const { provider, field } = group[0]!.claim;
    const party = engine.registry.party(provider)!;
    const info = tokenInfo(provider, field, TOKEN_EPOCH);
    const items = group.flatMap((p) =>
      p.values.map((v) => ({
        claimId: p.claim.claimId,
        input: tokenInput(p.claim.subject, field, v),
        datasetId: p.dataset.id,
      })),
    );
    for (const p of group) results.set(p.claim.claimId, 'no');
    for (let k = 0; k * TOKEN_BATCH < items.length; k++) {
      const chunk = items.slice(k * TOKEN_BATCH, (k + 1) * TOKEN_BATCH);
      const label = tokensLabel(provider, field, k);
      const step = `tokens ${label}`;
      const ev = requests.get(label);
      if (!ev) {
        add(step, 'missing', 'no ledgered request');
        continue;
      }
      const blinded = blindInputs(
        party.oprfPublicKey!,
        info,
        chunk.map((x) => x.input),
        deriveMaskKey(seed, `${jobId}/${label}/blind`),
      );
      const elements = chunk.map((x, i) => ({
        claimId: x.claimId,
        blinded: Buffer.from(blinded[i]!.blinded).toString('hex'),
      }));
      if (sha256Hex(canonicalize(elements)) !== ev.body.elementsHash) {
        add(step, 'mismatch', 'the blinded elements sent differ from the recomputed ones');
        continue;
      }
      const resp = blobOrMissing(engine, responses.get(label)?.body.responseHash);
      if (resp === 'missing') {
        add(step, 'missing', "the custodian's signed evaluations are not stored");
        continue;
      }
      if (resp === 'corrupt') {
        add(step, 'mismatch', 'the stored evaluations do not hash to the ledgered response');
        continue;
      }
      const response = JSON.parse(new TextDecoder().decode(resp)) as Signed<{
        type: string;
        evaluated: string[];
        proof: string;
      }>;
      if (!verifyJson(response, party.ed25519)) {
        add(step, 'mismatch', 'the stored evaluations are not signed by the custodian');
        continue;
      }
      try {
        const tokens = finalizeTokens(
          chunk.map((x) => x.input),
          blinded,
          response.body.evaluated.map((h) => hexToBytes(h)),
          hexToBytes(response.body.proof),
          party.oprfPublicKey!,
          info,
        );
        tokens.forEach((tk, i) => {
          if (engine.datasets.hasToken(chunk[i]!.datasetId, field, tk)) results.set(chunk[i]!.claimId, 'yes');
        });
        add(step, 'match');
      } catch (err) {
        add(step, 'mismatch', `the evaluations do not finalize (${isCoded(err) ? err.code : 'error'})`);
      }
    }
  }

  // Numeric blocks.
  const numericParts = new Map<string, Array<[number, number]>>();
  for (const p of work.filter((x) => x.spec.type !== 'id')) {
    const cmps = comparisonsFor(p, slotOf.get(p.claim.claimId)!.slot);
    if (cmps === 'yes' || cmps === 'no') results.set(p.claim.claimId, cmps);
    else numericParts.set(p.claim.claimId, []);
  }
  const signEvents = events.filter((e) => e.kind === 'custodian.request' && e.body.mode === 'sign');
  for (const e of signEvents) {
    const label = String(e.body.label);
    const step = `block ${label}`;
    const parsed = parseCompareLabel(label);
    if (!parsed) {
      add(step, 'mismatch', 'the label is not a comparison block');
      continue;
    }
    const { provider, datasetId, field, block } = parsed;
    const pairs = (e.body.comparisons ?? []) as Array<[string, number]>;
    const comparisons: Comparison[] = [];
    let bad = '';
    for (const [claimId, k] of pairs) {
      const p = byId.get(claimId);
      const sl = slotOf.get(claimId);
      const cmps = p && sl ? comparisonsFor(p, sl.slot) : undefined;
      if (
        !p ||
        !sl ||
        !Array.isArray(cmps) ||
        !cmps[k] ||
        p.claim.provider !== provider ||
        p.claim.field !== field ||
        sl.block !== block
      ) {
        bad = `comparison ${claimId}#${k} is not one the job's claims make here`;
        break;
      }
      comparisons.push(cmps[k]!);
    }
    if (bad) {
      add(step, 'mismatch', bad);
      continue;
    }
    const rerandomizer = blobOrMissing(engine, e.body.rerandomizer);
    if (rerandomizer === 'missing') {
      add(step, 'missing', 're-randomizer blob not stored');
      continue;
    }
    if (rerandomizer === 'corrupt') {
      add(step, 'mismatch', 're-randomizer blob does not hash to its address');
      continue;
    }
    const column = engine.datasets.columnBlob(datasetId!, field!, block);
    const colBytes = blobOrMissing(engine, column);
    if (colBytes !== 'missing' && colBytes !== 'corrupt') {
      const p = byId.get(pairs[0]![0])!;
      const { multipliers, offsets } = comparisonVectors(
        engine,
        seed,
        `${jobId}/${label}`,
        comparisons,
        comparisonRange(engine, p.spec),
      );
      const pk = engine.registry.party(provider!)!.bfvPublicKeyBlob!;
      try {
        const ct = (await engine.pool.run(compareBlock, {
          paramsId: engine.params.id,
          publicKey: { path: engine.store.blobPath(pk), hash: pk },
          column: { path: engine.store.blobPath(column!), hash: column! },
          multipliers,
          offsets,
          rerandomizer,
        })) as Uint8Array;
        add(
          step,
          sha256Hex(ct) === e.body.ciphertext ? 'match' : 'mismatch',
          sha256Hex(ct) === e.body.ciphertext
            ? undefined
            : 'the recomputed ciphertext differs from the one sent to the custodian',
        );
      } catch (err) {
        add(step, 'mismatch', failedDetail(err));
      }
    } else add(step, colBytes === 'missing' ? 'missing' : 'mismatch', 'the column blob is not stored intact');
  }

  // The engine-determined answers (MAC keyed from the seed) and the result as sent.
  const directJson: Record<string, ClaimResult> = {};
  for (const c of req.claims) {
    const r = results.get(c.claimId);
    if (r) directJson[c.claimId] = r;
  }
  const completed = events.find((e) => e.kind === 'job.completed');
  if (!completed) add('answers', 'missing', 'the job did not complete');
  else add('answers', directAnswersMac(seed, jobId, directJson) === completed.body.directMac ? 'match' : 'mismatch');
  const resultBytes = completed ? blobOrMissing(engine, completed.body.resultHash) : 'missing';
  if (resultBytes === 'missing') add('result', 'missing', 'the result sent to the bank is not stored');
  else if (resultBytes === 'corrupt')
    add('result', 'mismatch', 'the stored result does not hash to the ledgered resultHash');
  else {
    const result = JSON.parse(new TextDecoder().decode(resultBytes)) as VerifyResult;
    const diffs: string[] = [];
    const sealedOf = new Map(
      events.filter((e) => e.kind === 'custodian.response').map((e) => [String(e.body.label), e.body.sealed]),
    );
    result.boxes.forEach((b, i) => {
      if (sealedOf.get(b.label) !== sha256Hex(canonicalize(b.sealed))) diffs.push(`box ${b.label}`);
      const ev = signEvents.find((e) => e.body.label === b.label);
      for (const [claimId] of (ev?.body.comparisons ?? []) as Array<[string, number]>)
        numericParts.get(claimId)?.push([i, slotOf.get(claimId)!.slot]);
    });
    const want = new Map(
      [...numericParts].map(([id, parts]) => [
        id,
        JSON.stringify({
          parts: parts.sort((a, b) => a[0] - b[0] || a[1] - b[1]),
          negate: byId.get(id)!.claim.op === 'ne',
        }),
      ]),
    );
    const got = new Map(
      result.numeric.map((n) => [
        n.claimId,
        JSON.stringify({ parts: [...n.parts].sort((a, b) => a[0] - b[0] || a[1] - b[1]), negate: n.negate }),
      ]),
    );
    if (want.size !== got.size || [...want].some(([id, v]) => got.get(id) !== v)) diffs.push('numeric answer mapping');
    add(
      'result',
      diffs.length ? 'mismatch' : 'match',
      diffs.length ? `${diffs.length} difference(s), first: ${diffs[0]}` : undefined,
    );
  }
}
