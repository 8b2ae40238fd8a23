/**
 * Joint training, step 1 (docs/protocols.md "Joint training"): plan the job from the bank-signed request — the
 * fields and their classes, consent op `train` per subject, data presence, the cohort minimum — then show the request
 * to every provider's custodian, which judges each subject against its provider's own training budget
 * (docs/privacy.md "Training") and answers whom it refuses and what privacy the key holder's noise gives.
 * Nothing reaches a custodian before the engine's own checks pass, so a request the engine refuses opens nothing.
 */
import { fail } from '../../../core/errors.ts';
import type { Signed } from '../../../core/sign.ts';
import { parseSubjectList } from '../../../sandbox/uscc.ts';
import { classAllows } from '../../../sandbox/catalog.ts';
import { trainOptions } from '../../../models/train.ts';
import type { Engine } from '../../engine.ts';
import type { DatasetRecord } from '../../datasets.ts';
import { admitBankRequest, failOnError, openAtCustodian } from '../job.ts';
import { TRAIN_REQUEST_TYPE, type TrainPlan, type TrainRequest } from './messages.ts';

/** ` — OVER_BUDGET 687, OUT_OF_SCOPE 13`: why subjects were left out, most frequent first. */
function reasons(excluded: Record<string, string>): string {
  const n = new Map<string, number>();
  for (const r of Object.values(excluded)) n.set(r, (n.get(r) ?? 0) + 1);
  const parts = [...n].sort((a, b) => b[1] - a[1]).map(([r, k]) => `${r} ${k}`);
  return parts.length ? ` — ${parts.join(', ')}` : '';
}

/**
 * Step 1: check the request, consents (op `train`) and presence; record the job.
 * @throws SH_ERR_BAD_SIGNATURE, SH_ERR_UNKNOWN_FIELD, SH_ERR_MODEL_FIELD_CLASS, SH_ERR_JOB_TOO_LARGE (cohort below the
 *   minimum, reported as a limit), SH_ERR_USCC_*, SH_ERR_INVALID_ARGUMENT, SH_ERR_REQUEST_STALE
 */
export async function planTraining(engine: Engine, signed: Signed<TrainRequest>): Promise<TrainPlan> {
  const { bank, req, jobHash, at } = admitBankRequest(engine, signed, TRAIN_REQUEST_TYPE, 'train', {
    sealedResults: false,
  });
  if (!Array.isArray(req.subjects)) fail('SH_ERR_INVALID_ARGUMENT', '"subjects" expected an array');
  if (req.others !== undefined && !Array.isArray(req.others))
    fail('SH_ERR_INVALID_ARGUMENT', '"others" expected a list of { provider, fields }');
  const options = trainOptions(req.options);
  if (!Number.isInteger(req.bins) || req.bins < 2 || req.bins > 20)
    fail('SH_ERR_INVALID_ARGUMENT', `"bins" expected an integer in [2, 20], got ${req.bins}`);
  const parts = [{ provider: req.provider, fields: req.fields }, ...(req.others ?? [])];
  if (new Set(parts.map((p) => p.provider)).size !== parts.length)
    fail('SH_ERR_INVALID_ARGUMENT', '"others" repeats a provider');
  const datasets = parts.map(({ provider, fields }) => {
    engine.registry.requireParty(provider, 'provider');
    if (!Array.isArray(fields) || fields.length === 0)
      fail('SH_ERR_INVALID_ARGUMENT', `"fields" of ${provider} expected a non-empty list`);
    let dataset: DatasetRecord | undefined;
    for (const f of fields) {
      const ds = engine.datasets.withField(provider, f);
      const spec = ds?.schema.fields.find((x) => x.name === f);
      if (!ds || !spec) fail('SH_ERR_UNKNOWN_FIELD', `provider ${provider} has no field ${f}`, { field: f });
      if (spec.type === 'id' || !classAllows(spec.class, 'train'))
        fail('SH_ERR_MODEL_FIELD_CLASS', `field ${provider}/${f} is ${spec.class} and may not be used for training`, {
          field: f,
        });
      if (dataset && dataset.id !== ds.id)
        fail('SH_ERR_INVALID_ARGUMENT', `training fields of ${provider} must come from one of its datasets`);
      dataset = ds;
    }
    return dataset!;
  });
  const subjects = parseSubjectList(req.subjects);
  if (subjects.length > engine.policy.maxSubjectsPerJob)
    fail(
      'SH_ERR_JOB_TOO_LARGE',
      `job names ${subjects.length} subjects; the limit is ${engine.policy.maxSubjectsPerJob}`,
    );
  const categories = [...new Set(datasets.map((d) => d.category))].sort();
  const consent = engine.consents.jobStatuses(
    { bank: bank.id, purpose: req.purpose, operation: 'train', categories, at },
    subjects,
  );
  const excluded: TrainPlan['excluded'] = {};
  const ok = subjects.filter((s) => {
    const st = consent.get(s)!.status;
    if (st !== 'OK') excluded[s] = st;
    return st === 'OK';
  });
  const slotMaps = datasets.map((d) => engine.datasets.subjectSlots(d.id, ok));
  const present = ok.filter((s) => {
    if (slotMaps.every((m) => m.has(s))) return true;
    excluded[s] = 'NO_DATA';
    return false;
  });
  if (req.features !== undefined && req.features !== 'binned' && req.features !== 'standardized')
    fail('SH_ERR_INVALID_ARGUMENT', `"features" expected binned or standardized, got ${JSON.stringify(req.features)}`);
  const tooSmall = (n: number) =>
    fail(
      'SH_ERR_JOB_TOO_LARGE',
      `training cohort of ${n} subjects is below the minimum of ${engine.policy.minTrainingCohort} (excluded: ${Object.keys(excluded).length}${reasons(excluded)})`,
      { cohort: n, minimum: engine.policy.minTrainingCohort },
    );
  // Refuse before any custodian is shown the request: opening a job spends its subjects' budgets there.
  if (present.length < engine.policy.minTrainingCohort) tooSmall(present.length);
  // Every provider's custodian judges the subjects against its own training budget (it is told whom the engine already
  // left out); a subject any of them refuses is OVER_BUDGET. The key holder says what privacy its noise gives.
  // The request is ledgered before any custodian sees it: each custodian answers only jobs it finds in the ledger.
  engine.jobs.record(
    { id: req.jobId, kind: 'train', bank: bank.id, request: { signed }, status: 'planned' },
    {
      event: {
        jobId: req.jobId,
        job: 'train',
        bank: bank.id,
        provider: req.provider,
        others: parts.slice(1).map((p) => p.provider),
        purpose: req.purpose,
        fields: req.fields,
        jobHash,
        subjects: subjects.length,
        signature: signed.signature,
      },
      subjects,
    },
  );
  let privacy: TrainPlan['privacy'] | undefined;
  const refused = new Map<string, string>();
  await failOnError(engine, req.jobId, async () => {
    for (const p of parts) {
      const opened = await openAtCustodian(engine, p.provider, signed, { skip: Object.keys(excluded) });
      for (const u of opened.refused ?? []) if (!refused.has(u)) refused.set(u, opened.reasons?.[u] ?? 'OVER_BUDGET');
      if (p.provider === req.provider) privacy = opened.privacy;
    }
  });
  if (!privacy)
    fail('SH_ERR_PARAMS_MISMATCH', `the custodian of ${req.provider} did not say what privacy its noise gives`);
  const members = present.filter((s) => {
    if (!refused.has(s)) return true;
    excluded[s] = refused.get(s) as (typeof excluded)[string];
    return false;
  });
  const cohort = members.map((s) => ({ uscc: s, block: slotMaps[0]!.get(s)!.block, slot: slotMaps[0]!.get(s)!.slot }));
  const others = parts.slice(1).map((p, k) => ({
    provider: p.provider,
    datasetId: datasets[k + 1]!.id,
    fields: p.fields,
    slots: members.map((s) => ({
      uscc: s,
      block: slotMaps[k + 1]!.get(s)!.block,
      slot: slotMaps[k + 1]!.get(s)!.slot,
    })),
  }));
  const dataset = datasets[0];
  if (cohort.length < engine.policy.minTrainingCohort)
    await failOnError(engine, req.jobId, async () => tooSmall(cohort.length));
  const plan: TrainPlan = {
    jobId: req.jobId,
    jobHash,
    provider: req.provider,
    datasetId: dataset!.id,
    fields: req.fields,
    bins: req.bins,
    features: req.features ?? 'binned',
    options,
    cohort,
    excluded,
    privacy,
    others,
    request: signed,
  };
  // What the custodians' answers decided, after the request itself was ledgered.
  engine.ledger.append('train.planned', {
    jobId: req.jobId,
    cohort: cohort.length,
    excluded: Object.keys(excluded).length,
    overBudget: Object.values(excluded).filter((x) => x === 'OVER_BUDGET').length,
    privacy,
  });
  return plan;
}
