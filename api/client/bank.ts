/**
 * Client mode, the bank's side: register models, submit signed score / verify / train jobs, poll them and open the
 * sealed results with the bank's own X25519 key; for training, encrypt its labels under the key holder's public key;
 * and the hold-out evaluation of a trained model once its providers have approved it.
 */
import { fail, isCoded } from '../../core/errors.ts';
import { paramSet } from '../../engine/he/params.ts';
import { signJson } from '../../core/sign.ts';
import { buildScoreRequest, openScoreResult } from '../../engine/protocols/score/bank.ts';
import { type ScoreResult, type ScoreStatus } from '../../engine/protocols/score/messages.ts';
import { buildVerifyRequest, openVerifyResult } from '../../engine/protocols/verify/bank.ts';
import { type Claim, type ClaimResult, type VerifyResult } from '../../engine/protocols/verify/messages.ts';
import { buildTrainRequest, encryptLabels } from '../../engine/protocols/train/bank.ts';
import { type TrainOutcome } from '../../engine/protocols/train/messages.ts';
import { parseModel } from '../../models/model.ts';
import type { TrainOptions } from '../../models/train.ts';
import { holdoutMetrics, type HoldoutMetrics, type ScoreScale } from '../train-run.ts';
import { Client, newJobId } from './http.ts';

// ---------------------------------------------------------------- bank

export async function registerModel(
  bank: Client,
  modelJson: unknown,
): Promise<{ id: string; hash: string; scale: number; bound: string }> {
  const spec = parseModel(modelJson);
  return bank.post('/v1/bank/models', {
    registration: signJson(
      { type: 'safehouse.model.register.v1', bank: bank.id, model: spec },
      bank.id,
      bank.keys.ed25519.secretKey,
    ),
  });
}

type Progress = (p: { phase: string; done: number; total: number }) => void;

export async function score(
  bank: Client,
  modelId: string,
  purpose: string,
  subjects: string[],
  onProgress?: Progress,
): Promise<{ jobId: string; rows: Array<{ uscc: string; status: ScoreStatus; score: string }> }> {
  if (!bank.keys.x25519)
    fail('SH_ERR_PARTY_ROLE', `${bank.id}'s key file has no X25519 key (banks need one to open results)`);
  const m = await bank.get<{ hash: string }>(`/v1/bank/models/${encodeURIComponent(modelId)}`);
  const jobId = newJobId('score');
  const signed = buildScoreRequest(
    { jobId, bank: bank.id, modelId, modelHash: m.hash, purpose, subjects, requestedAt: new Date().toISOString() },
    bank.keys.ed25519.secretKey,
  );
  await submitJob(bank, { kind: 'score', request: signed });
  await bank.waitJob(jobId, onProgress ? { onProgress } : {});
  const result = await bank.get<ScoreResult>(`/v1/bank/jobs/${jobId}/result`);
  return { jobId, rows: openScoreResult(result, bank.id, bank.keys.x25519.secretKey) };
}

/**
 * Hold-out metrics of an approved model, computed by the bank: score the hold-out subjects through the normal scoring
 * protocol and take AUC and KS against the bank's own labels (the engine never sees a label).
 */
export async function evaluate(
  bank: Client,
  r: {
    modelId: string;
    purpose: string;
    holdout: string[];
    labels: ReadonlyMap<string, 0 | 1>;
    scale: ScoreScale;
    onProgress?: Progress;
  },
): Promise<{
  jobId: string;
  rows: Array<{ uscc: string; status: ScoreStatus; score: string }>;
  metrics: HoldoutMetrics;
}> {
  const { jobId, rows } = await score(bank, r.modelId, r.purpose, r.holdout, r.onProgress);
  return { jobId, rows, metrics: holdoutMetrics(rows, r.holdout, r.labels, r.scale) };
}

export async function verify(
  bank: Client,
  purpose: string,
  claims: readonly Claim[],
  onProgress?: Progress,
): Promise<{ jobId: string; results: Map<string, ClaimResult> }> {
  if (!bank.keys.x25519)
    fail('SH_ERR_PARTY_ROLE', `${bank.id}'s key file has no X25519 key (banks need one to open results)`);
  const jobId = newJobId('verify');
  const { signed, openings } = buildVerifyRequest(
    { jobId, bank: bank.id, purpose, claims, requestedAt: new Date().toISOString() },
    bank.keys.ed25519.secretKey,
  );
  await submitJob(bank, { kind: 'verify', request: signed, openings });
  await bank.waitJob(jobId, onProgress ? { onProgress } : {});
  const result = await bank.get<VerifyResult>(`/v1/bank/jobs/${jobId}/result`);
  return {
    jobId,
    results: openVerifyResult(
      result,
      bank.id,
      bank.keys.x25519.secretKey,
      claims.map((c) => c.claimId),
    ),
  };
}

/**
 * Joint training as the bank: sign the request; the engine plans it (consent op `train`, cohort minimum); encrypt the
 * labels of the cohort under the key holder's registered BFV key on the bank's side; the engine gathers the providers'
 * encrypted columns from their custodians and iterates.
 */
export async function train(
  bank: Client,
  r: {
    provider: string;
    purpose: string;
    fields: string[];
    others?: Array<{ provider: string; fields: string[] }>;
    subjects: string[];
    labels: ReadonlyMap<string, 0 | 1>;
    bins?: number;
    features?: 'binned' | 'standardized';
    options?: Partial<TrainOptions>;
    onProgress?: Progress;
  },
): Promise<TrainOutcome> {
  const jobId = newJobId('train');
  const signed = buildTrainRequest(
    {
      jobId,
      bank: bank.id,
      purpose: r.purpose,
      provider: r.provider,
      fields: r.fields,
      ...(r.others?.length ? { others: r.others } : {}),
      ...(r.features ? { features: r.features } : {}),
      subjects: r.subjects,
      bins: r.bins ?? 5,
      options: r.options ?? {},
      requestedAt: new Date().toISOString(),
    },
    bank.keys.ed25519.secretKey,
  );
  await submitJob(bank, { kind: 'train', request: signed });
  const view = await bank.waitJob(jobId, { until: ['awaiting-labels', 'done'] });
  if (!view.plan) fail('SH_ERR_JOB_NOT_READY', `job ${jobId} has no training plan`);
  const holder = await bank.get<{ bfvPublicKey?: string }>(`/v1/parties/${encodeURIComponent(view.plan.provider)}`);
  if (!holder.bfvPublicKey) fail('SH_ERR_UNKNOWN_PARTY', `provider ${view.plan.provider} has no BFV key registered`);
  const params = paramSet((await bank.info()).paramsId);
  const enc = await encryptLabels(
    params,
    new Uint8Array(Buffer.from(holder.bfvPublicKey, 'base64')),
    { ...view.plan, jobId },
    r.labels,
    bank.id,
    bank.keys.ed25519.secretKey,
  );
  // Through a server restart: blobs staged before it are gone, so both are sent again until the labels are taken
  // (a job no longer awaiting labels took them).
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await bank.putBlobs(enc.blobs);
      await bank.post(`/v1/bank/jobs/${jobId}/labels`, { labels: enc.signed });
      break;
    } catch (err) {
      if (!isCoded(err, 'SH_ERR_UNAVAILABLE') && !isCoded(err, 'SH_ERR_BLOB_MISSING')) {
        const now = await bank.get<{ status: string }>(`/v1/bank/jobs/${jobId}`).catch(() => undefined);
        if (now && now.status !== 'awaiting-labels') break;
        throw err;
      }
      if (Date.now() > deadline) throw err;
      await new Promise((res) => setTimeout(res, 500 + Math.random() * 500));
    }
  }
  await bank.waitJob(jobId, r.onProgress ? { onProgress: r.onProgress } : {});
  return bank.get<TrainOutcome>(`/v1/bank/jobs/${jobId}/result`);
}

/**
 * Submit a signed job, through a server restart: the same signed request again is the same job (never "already
 * exists"), so a submission whose answer was lost is simply sent again, for up to a minute.
 */
export async function submitJob(bank: Client, submission: Record<string, unknown>): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await bank.post('/v1/bank/jobs', submission);
      return;
    } catch (err) {
      if (!isCoded(err, 'SH_ERR_UNAVAILABLE') || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 500 + Math.random() * 500));
    }
  }
}
