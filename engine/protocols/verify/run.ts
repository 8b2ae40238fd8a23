/**
 * A verification job end to end on the engine (embedded and server run this same pipeline): admit the bank-signed
 * request and validate the whole batch before any work, judge every claim, record the job, the budget spent and any
 * over-budget claims in one transaction before any custodian call, escrow the seed and the claim openings to the
 * auditors, answer token claims (per provider and field, concurrently) and numeric claims (comparison rounds), then
 * seal the engine-determined answers to the bank and record the result. Each claim gets one answer: yes | no |
 * no_data | refused:<consent status> | over_budget.
 */
import { fail } from '../../../core/errors.ts';
import { canonicalize } from '../../../core/jcs.ts';
import { sealTo } from '../../../core/sealbox.ts';
import type { Signed } from '../../../core/sign.ts';
import type { Engine } from '../../engine.ts';
import { admitBankRequest, escrowHashes, escrowToAuditors, failOnError, openAtCustodian } from '../job.ts';
import { prepareClaim, type PreparedClaim } from './claims.ts';
import { windowStart } from '../../../sandbox/policy.ts';
import {
  claimConsents,
  compareBlocks,
  compareTasks,
  directAnswersMac,
  groupBy,
  judgeClaims,
  verifyTokens,
  type Judged,
} from './engine.ts';
import {
  VERIFY_REQUEST_TYPE,
  type ClaimOpenings,
  type ClaimResult,
  type VerifyProgress,
  type VerifyRequest,
  type VerifyResult,
} from './messages.ts';

/**
 * Show the job to the custodian of every provider with claims left to answer; claims a custodian refuses become
 * over_budget (ledgered with their subjects). Returns the claims still to answer.
 */
async function custodianRefusals(engine: Engine, signed: Signed<VerifyRequest>, judged: Judged) {
  const refused = new Map<string, string>();
  const reasons = new Map<string, string>();
  const asked = new Set(judged.work.map((p) => p.claim.claimId));
  const skip = signed.body.claims.map((c) => c.claimId).filter((id) => !asked.has(id));
  for (const provider of [...new Set(judged.work.map((p) => p.claim.provider))].sort()) {
    // Claims the engine already answered or refused are neither answered nor counted by the custodian.
    const opened = await openAtCustodian(engine, provider, signed, { skip });
    for (const c of opened.refused ?? []) {
      refused.set(c, provider);
      if (opened.reasons?.[c]) reasons.set(c, opened.reasons[c]!);
    }
  }
  const work = judged.work.filter((p) => !refused.has(p.claim.claimId));
  const hit = judged.work.filter((p) => refused.has(p.claim.claimId));
  if (hit.length) {
    // A custodian's own consent check gives refused:<status>; otherwise its budget refused the claim.
    for (const p of hit) {
      const why = reasons.get(p.claim.claimId);
      judged.results.set(p.claim.claimId, why ? (`refused:${why}` as ClaimResult) : 'over_budget');
    }
    const once =
      !engine.jobs.resuming.has(signed.body.jobId) ||
      !engine.ledger.jobEntries(signed.body.jobId).some((e) => e.kind === 'verify.custodian_refused');
    if (once)
      engine.ledger.append(
        'verify.custodian_refused',
        {
          jobId: signed.body.jobId,
          code: 'SH_ERR_CUSTODIAN_BUDGET',
          claims: hit.map((p) => p.claim.claimId),
          providers: [...new Set(hit.map((p) => p.claim.provider))].sort(),
          ...(reasons.size ? { reasons: Object.fromEntries([...reasons].sort()) } : {}),
        },
        [...new Set(hit.map((p) => p.claim.subject))],
      );
  }
  return work;
}

/**
 * @throws SH_ERR_BAD_SIGNATURE, SH_ERR_CLAIM_INVALID, SH_ERR_VERIFY_FIELD_CLASS, SH_ERR_UNKNOWN_FIELD,
 *   SH_ERR_USCC_*, SH_ERR_JOB_TOO_LARGE, SH_ERR_REQUEST_STALE, SH_ERR_TOKEN_PROOF, SH_ERR_BOUND_OVERFLOW, custodian errors.
 */
export async function runVerifyJob(
  engine: Engine,
  signed: Signed<VerifyRequest>,
  openings: ClaimOpenings,
  opts: {
    onProgress?: (p: VerifyProgress) => void;
    /** Resume this recorded, running job after a crash (docs/operations.md "Crash safety"). */
    resume?: boolean;
  } = {},
): Promise<VerifyResult> {
  if (!opts.resume) return verifyJob(engine, signed, openings, opts);
  engine.jobs.resuming.add(signed.body.jobId);
  try {
    return await verifyJob(engine, signed, openings, opts);
  } catch (err) {
    engine.jobs.fail(signed.body.jobId, err); // once: a job failed already stays as it was
    throw err;
  } finally {
    engine.jobs.resuming.delete(signed.body.jobId);
  }
}

/** A resumed job's judgement as its first run recorded it (answers known, claims that reach a custodian). */
function restoreJudged(
  engine: Engine,
  prepared: readonly PreparedClaim[],
  state: Record<string, unknown>,
  at: Date,
): Judged {
  const results = new Map(Object.entries((state.results ?? {}) as Record<string, ClaimResult>));
  const asked = new Set((state.work ?? []) as string[]);
  const work = prepared.filter((p) => asked.has(p.claim.claimId));
  const slotOf = new Map<string, { block: number; slot: number }>();
  for (const p of work) {
    const sl = engine.datasets.subjectSlots(p.dataset.id, [p.claim.subject]).get(p.claim.subject);
    if (!sl || sl.missing.has(p.claim.field))
      fail('SH_ERR_INTERRUPTED', `job cut off and cannot resume: the data of claim ${p.claim.claimId} changed`);
    slotOf.set(p.claim.claimId, sl);
  }
  return { results, work, slotOf, since: windowStart(engine.policy, at), spend: new Map(), exceeded: [] };
}

async function verifyJob(
  engine: Engine,
  signed: Signed<VerifyRequest>,
  openings: ClaimOpenings,
  opts: { onProgress?: (p: VerifyProgress) => void; resume?: boolean },
): Promise<VerifyResult> {
  // 1. Who asks; the whole batch is validated before any work.
  const { bank, req, jobHash, at } = admitBankRequest(engine, signed, VERIFY_REQUEST_TYPE, 'verify', {
    sealedResults: true,
    resume: opts.resume,
  });
  if (!Array.isArray(req.claims)) fail('SH_ERR_CLAIM_INVALID', '"claims" expected an array');
  if (req.claims.length > engine.policy.maxClaimsPerJob)
    fail('SH_ERR_JOB_TOO_LARGE', `job has ${req.claims.length} claims; the limit is ${engine.policy.maxClaimsPerJob}`);
  const prepared = req.claims.map((c, i) => prepareClaim(engine, c, openings[c.claimId], i));
  const ids = new Set<string>();
  for (const p of prepared) {
    if (ids.has(p.claim.claimId))
      fail('SH_ERR_CLAIM_INVALID', `claim id ${p.claim.claimId} is repeated`, { claim: p.claim.claimId });
    ids.add(p.claim.claimId);
  }
  opts.onProgress?.({ phase: 'check', done: 0, total: prepared.length });

  // 2. Consent per (subject, category), judged in the pool.
  const consent = claimConsents(engine, bank.id, req, prepared, at);

  // 3. Budget and data presence in claim order, judged in the transaction that records the request (with every
  // subject, for access reports) and the budget spent, before any custodian call.
  const subjects = [...new Set(req.claims.map((c) => c.subject))];
  // The seed (randomizers of numeric comparisons, token blinds) is kept with the judgement while the job runs, so a
  // job cut off by a crash resumes asking exactly what it asked.
  const resumed = opts.resume ? engine.jobs.secret(req.jobId) : undefined;
  if (opts.resume && !resumed)
    fail('SH_ERR_INTERRUPTED', `job ${req.jobId} was cut off and cannot resume: its seed was not kept`);
  const seed = resumed?.seed ?? engine.jobs.newSeed();
  let judged!: Judged;
  if (resumed) judged = restoreJudged(engine, prepared, resumed.state, at);
  else
    engine.jobs.record(
      { id: req.jobId, kind: 'verify', bank: bank.id, request: { signed }, status: 'running' },
      {
        event: {
          jobId: req.jobId,
          job: 'verify',
          bank: bank.id,
          purpose: req.purpose,
          jobHash,
          claims: req.claims.length,
          subjects: subjects.length,
          signature: signed.signature,
        },
        subjects,
      },
      () => {
        judged = judgeClaims(engine, bank.id, prepared, consent, at);
        const { results, work, since } = judged;
        engine.budgets.spend(
          req.jobId,
          at.toISOString(),
          [...judged.spend.values()].map((s) => [s.key, s.units]),
        );
        engine.ledger.append('verify.budget_used', {
          jobId: req.jobId,
          window: { days: engine.policy.windowDays, since },
          units: [...judged.spend.values()].reduce((a, s) => a + s.units, 0),
          claims: work.length + [...results.values()].filter((r) => r === 'no_data').length,
        });
        if (judged.exceeded.length)
          engine.ledger.append(
            'verify.budget_exceeded',
            { jobId: req.jobId, code: 'SH_ERR_VERIFY_BUDGET', since, claims: judged.exceeded.map((e) => e.claimId) },
            [...new Set(judged.exceeded.map((e) => e.subject))],
          );
        engine.jobs.keepSecret(req.jobId, {
          seed,
          state: { results: Object.fromEntries(results), work: work.map((p) => p.claim.claimId) },
        });
      },
    );

  const { results, slotOf } = judged;

  // The seed is escrowed to the auditors so a job can be replayed; the claim openings (the bank's values) are not
  // kept in clear: they are sealed to the auditors with the seed. Once, before any custodian call.
  if (!resumed || !engine.ledger.jobEntries(req.jobId).some((e) => e.kind === 'job.escrowed')) {
    const escrow = escrowToAuditors(engine, seed, { type: 'safehouse.escrow.v1', jobId: req.jobId, jobHash });
    const openingsEscrow = escrowToAuditors(engine, new TextEncoder().encode(canonicalize(openings)), {
      type: 'safehouse.escrow.openings.v1',
      jobId: req.jobId,
      jobHash,
    });
    engine.store.transaction(() => {
      engine.jobs.setRequest(req.jobId, { signed, escrow, openingsEscrow });
      engine.ledger.append('job.escrowed', {
        jobId: req.jobId,
        escrow: escrowHashes(escrow),
        openings: escrowHashes(openingsEscrow),
      });
    });
  }

  const { boxes, numeric, ranges } = await failOnError(engine, req.jobId, async () => {
    // 4. Each provider's custodian judges the claims on it against its own budgets; what it refuses is over_budget.
    const work = await custodianRefusals(engine, signed, judged);

    // 5. Token claims, batched per (provider, field); groups run concurrently (labels do not depend on the order).
    const tokenWork = work.filter((p) => p.spec.type === 'id');
    opts.onProgress?.({ phase: 'tokens', done: 0, total: tokenWork.length });
    let tokensDone = 0;
    await engine.pool.all(
      [...groupBy(tokenWork, (p) => `${p.claim.provider}/${p.claim.field}`).values()].map(async (group) => {
        const matches = await verifyTokens(engine, signed, jobHash, group, seed);
        for (const p of group) results.set(p.claim.claimId, matches.get(p.claim.claimId) ? 'yes' : 'no');
        tokensDone += group.length;
        opts.onProgress?.({ phase: 'tokens', done: tokensDone, total: tokenWork.length });
      }),
    );

    // 6. Numeric claims: comparisons packed into (dataset, field, block, round) ciphertexts.
    const { tasks, numeric } = compareTasks(
      work.filter((p) => p.spec.type !== 'id'),
      slotOf,
      results,
    );
    let numDone = 0;
    opts.onProgress?.({ phase: 'numeric', done: 0, total: tasks.length });
    const { boxes, ranges } = await compareBlocks(
      engine,
      { jobId: req.jobId, jobHash, bank, seed },
      tasks,
      numeric,
      () => opts.onProgress?.({ phase: 'numeric', done: ++numDone, total: tasks.length }),
    );
    return { boxes, numeric, ranges };
  });

  // 7. Seal what the engine determined; the bank reads numeric answers from the custodians' sealed bits.
  const directJson: Record<string, ClaimResult> = {};
  for (const c of req.claims) {
    const r = results.get(c.claimId);
    if (r) directJson[c.claimId] = r;
  }
  const direct = sealTo(bank.x25519!, new TextEncoder().encode(JSON.stringify(directJson)), {
    type: 'safehouse.verify.direct.v1',
    jobId: req.jobId,
    jobHash,
    recipient: bank.id,
  });
  const result: VerifyResult = {
    type: 'safehouse.verify.result.v1',
    jobId: req.jobId,
    jobHash,
    direct,
    boxes,
    numeric,
    ranges,
  };
  const counts: Record<string, number> = {};
  for (const r of Object.values(directJson)) {
    const k = r === 'yes' || r === 'no' ? 'token_or_known' : r;
    counts[k] = (counts[k] ?? 0) + 1;
  }
  counts.numeric = numeric.length;
  // Replay material: the result as sent (its hash is ledgered) and a MAC of the engine-determined answers under a key
  // derived from the escrowed seed — only the bank (sealed box) and seed-holding auditors can check those answers.
  const resultHash = engine.store.putBlob(new TextEncoder().encode(canonicalize(result)));
  const directMac = directAnswersMac(seed, req.jobId, directJson);
  engine.jobs.complete(
    req.jobId,
    { counts, ranges, resultHash },
    { job: 'verify', counts, ranges, boxes: boxes.length, resultHash, directMac },
  );
  opts.onProgress?.({ phase: 'done', done: req.claims.length, total: req.claims.length });
  return result;
}
