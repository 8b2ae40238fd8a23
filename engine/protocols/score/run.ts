/**
 * A scoring job end to end on the engine (embedded and server run this same pipeline): admit the bank-signed request,
 * pin the model, judge every subject in the pool, record the job (every requested subject named, for their access
 * reports) and escrow its seed before any custodian call, evaluate the touched blocks, deliver the result and record
 * its hash. A failure after the job was recorded fails it in the ledger.
 */
import { SafehouseError, fail } from '../../../core/errors.ts';
import { sha256Hex } from '../../../core/hash.ts';
import type { Signed } from '../../../core/sign.ts';
import { parseSubjectList } from '../../../sandbox/uscc.ts';
import type { Engine } from '../../engine.ts';
import { admitBankRequest, escrowHashes, escrowToAuditors, failOnError, openAtCustodian } from '../job.ts';
import { evaluateBlocks, modelGroups, pinnedModel, scoreResult, scoreStatuses, touchedBlocks } from './engine.ts';
import {
  SCORE_REQUEST_TYPE,
  canonicalScoreResult,
  type ScoreProgress,
  type ScoreRequest,
  type ScoreResult,
  type ScoreStatus,
} from './messages.ts';

/** Show the job to every custodian it touches, with the subjects it will not score; the subjects each refuses. */
async function openCustodians(
  engine: Engine,
  signed: Signed<ScoreRequest>,
  work: ReadonlyArray<{ g: { provider: string } }>,
  skip: readonly string[],
): Promise<{ refused: Map<string, string[]>; reasons: Map<string, string> }> {
  const refused = new Map<string, string[]>();
  const reasons = new Map<string, string>();
  const providers = [...new Set(work.map((w) => w.g.provider))].sort();
  // Every custodian at once (separate services in network mode). Subjects the engine already refused are neither
  // answered nor counted by the custodian.
  const answers = await Promise.all(providers.map((p) => openAtCustodian(engine, p, signed, { skip })));
  for (const [i, opened] of answers.entries()) {
    for (const s of opened.refused ?? []) {
      refused.set(s, [...(refused.get(s) ?? []), providers[i]!]);
      const why = opened.reasons?.[s];
      if (why && !reasons.has(s)) reasons.set(s, why);
    }
  }
  return { refused, reasons };
}

/**
 * What a resumed job takes from its first run: the seed, provided the subjects it scores are the ones it recorded
 * (the hash of their consent ids in `job.requested`). Otherwise the job fails once with SH_ERR_INTERRUPTED.
 */
function resumeState(engine: Engine, jobId: string, consentIds: string): { seed: Uint8Array } {
  const secret = engine.jobs.secret(jobId);
  const requested = engine.ledger.jobEntries(jobId).find((e) => e.kind === 'job.requested');
  if (!secret || requested?.body.consentIds !== consentIds) {
    const err = new SafehouseError(
      'SH_ERR_INTERRUPTED',
      `job ${jobId} was cut off and cannot resume: ${secret ? 'the consents it recorded changed' : 'its seed was not kept'}`,
      { job: jobId },
    );
    engine.jobs.fail(jobId, err);
    throw err;
  }
  return { seed: secret.seed };
}

/** Per provider, how many subjects it refused (for the ledger entry; the subjects are its index). */
function refusalsByProvider(refused: ReadonlyMap<string, string[]>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const ps of refused.values()) for (const p of ps) out[p] = (out[p] ?? 0) + 1;
  return out;
}

/**
 * @throws SH_ERR_BAD_SIGNATURE, SH_ERR_NOT_FOUND, SH_ERR_PARAMS_MISMATCH, SH_ERR_MODEL_NOT_APPROVED,
 *   SH_ERR_MODEL_STALE, SH_ERR_JOB_TOO_LARGE, SH_ERR_USCC_*, SH_ERR_REQUEST_STALE (requestedAt not now),
 *   SH_ERR_ALREADY_EXISTS (job id already used), and custodian errors.
 */
export async function runScoreJob(
  engine: Engine,
  signed: Signed<ScoreRequest>,
  opts: {
    onProgress?: (p: ScoreProgress) => void;
    /** Resume this recorded, running job after a crash (docs/operations.md "Crash safety"). */
    resume?: boolean;
  } = {},
): Promise<ScoreResult> {
  if (!opts.resume) return scoreJob(engine, signed, opts);
  engine.jobs.resuming.add(signed.body.jobId);
  try {
    return await scoreJob(engine, signed, opts);
  } catch (err) {
    engine.jobs.fail(signed.body.jobId, err); // once: a job failed already stays as it was
    throw err;
  } finally {
    engine.jobs.resuming.delete(signed.body.jobId);
  }
}

async function scoreJob(
  engine: Engine,
  signed: Signed<ScoreRequest>,
  opts: { onProgress?: (p: ScoreProgress) => void; resume?: boolean },
): Promise<ScoreResult> {
  // 1. Who asks, for what, under which pinned model.
  const { bank, req, jobHash } = admitBankRequest(engine, signed, SCORE_REQUEST_TYPE, 'score', {
    sealedResults: true,
    resume: opts.resume,
  });
  const model = pinnedModel(engine, req, bank.id);
  if (!Array.isArray(req.subjects)) fail('SH_ERR_INVALID_ARGUMENT', '"subjects" expected an array');
  if (req.subjects.length > engine.policy.maxSubjectsPerJob)
    fail(
      'SH_ERR_JOB_TOO_LARGE',
      `job names ${req.subjects.length} subjects; the limit is ${engine.policy.maxSubjectsPerJob}`,
      { subjects: req.subjects.length },
    );
  const subjects = parseSubjectList(req.subjects);

  // 2. Which datasets, and each subject's status: consent first (the engine's consent index: no signature is verified
  // in a job), then data availability.
  const groups = modelGroups(engine, model);
  const categories = [...new Set(groups.map((g) => g.dataset.category))].sort();
  opts.onProgress?.({ phase: 'consent', done: 0, total: subjects.length });
  const plan = engine.consents.jobSubjects(
    { bank: bank.id, purpose: req.purpose, operation: 'score', categories, at: new Date(req.requestedAt) },
    subjects,
    groups.map((g) => g.dataset.id),
    { slotsOf: 'OK' },
  );
  const consent = plan.consent;
  groups.forEach((g, i) => {
    g.slots = plan.slots[i]!;
  }); // slots of OK subjects only
  const judged = scoreStatuses(model, groups, subjects, consent);
  const scored = subjects.filter((s) => consent.get(s)!.status === 'OK' && judged.status.get(s) === 'OK');

  // 3. Record the request before any custodian call, with every requested subject for their access reports.
  const consentIds = scored.map((s) => consent.get(s)!.consentId!).sort();
  const resumed = opts.resume ? resumeState(engine, req.jobId, sha256Hex(consentIds.join('\n'))) : undefined;
  const seed = resumed?.seed ?? engine.jobs.newSeed();
  if (!resumed) {
    const escrow = escrowToAuditors(engine, seed, { type: 'safehouse.escrow.v1', jobId: req.jobId, jobHash });
    engine.jobs.record(
      { id: req.jobId, kind: 'score', bank: bank.id, request: { signed, escrow }, status: 'running' },
      {
        event: {
          jobId: req.jobId,
          job: 'score',
          bank: bank.id,
          modelId: req.modelId,
          modelHash: model.hash,
          purpose: req.purpose,
          jobHash,
          subjects: subjects.length,
          consentIds: sha256Hex(consentIds.join('\n')),
          signature: signed.signature,
          escrow: escrowHashes(escrow),
        },
        subjects,
      },
      () => engine.jobs.keepSecret(req.jobId, { seed, state: {} }),
    );
  }

  // 4. One masked, re-randomized ciphertext per (dataset, touched block), sealed to the bank by the custodian.
  // Each custodian judges the job against its own scoring budget first; a subject any of them refuses is answered
  // OVER_BUDGET (its slots come back as noise from that custodian whatever the engine does).
  const touched = touchedBlocks(groups, scored);
  const scoredSet = new Set(scored);
  const skip = subjects.filter((s) => !scoredSet.has(s));
  const { refused, reasons } = await failOnError(engine, req.jobId, () =>
    openCustodians(engine, signed, touched, skip),
  );
  // Only blocks that still hold a subject every custodian allows are computed (a custodian refuses the others).
  const work = refused.size
    ? touchedBlocks(
        groups,
        scored.filter((s) => !refused.has(s)),
      )
    : touched;
  if (refused.size) {
    // A custodian's own consent check (its ledger copy) gives the status it found; otherwise its budget refused.
    for (const s of refused.keys())
      if (judged.status.get(s) === 'OK') judged.status.set(s, (reasons.get(s) ?? 'OVER_BUDGET') as ScoreStatus);
    if (!resumed || !engine.ledger.jobEntries(req.jobId).some((e) => e.kind === 'score.custodian_refused'))
      engine.ledger.append(
        'score.custodian_refused',
        {
          jobId: req.jobId,
          code: 'SH_ERR_CUSTODIAN_BUDGET',
          providers: refusalsByProvider(refused),
          refused: [...refused.keys()].sort(),
          ...(reasons.size ? { reasons: Object.fromEntries([...reasons].sort()) } : {}),
        },
        [...refused.keys()],
      );
  }
  let done = 0;
  opts.onProgress?.({ phase: 'compute', done, total: work.length });
  const evaluated = await failOnError(engine, req.jobId, () =>
    evaluateBlocks(engine, { jobId: req.jobId, jobHash, bank, seed }, work, () =>
      opts.onProgress?.({ phase: 'compute', done: ++done, total: work.length }),
    ),
  );

  // 5. The result: unmask values for OK subjects only. It is kept (content-addressed by its canonical hash) so a
  // replay can compare what the bank got.
  const result = scoreResult(engine, { jobId: req.jobId, jobHash, req, model }, subjects, groups, judged, evaluated);
  const counts: Record<string, number> = {};
  for (const s of result.subjects) counts[s.status] = (counts[s.status] ?? 0) + 1;
  const resultBlob = engine.store.putBlob(new TextEncoder().encode(canonicalScoreResult(result)));
  // The blob's address is the SHA-256 of the same canonical bytes.
  engine.jobs.complete(
    req.jobId,
    { counts, resultHash: resultBlob },
    { job: 'score', counts, boxes: evaluated.boxes.length, resultHash: resultBlob },
  );
  opts.onProgress?.({ phase: 'done', done: work.length, total: work.length });
  return result;
}
