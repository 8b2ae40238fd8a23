/**
 * One queued job run by the server (api/server/jobs.ts): a job the engine recorded before a crash is delivered if it
 * finished (its result rebuilt from the engine's blob), failed with its own code if it failed, resumed if its
 * protocol can resume (scoring, verification), or failed once with SH_ERR_INTERRUPTED (training cut off after its
 * plan); otherwise it runs from the start. docs/operations.md "Crash safety".
 */
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { SafehouseError, fail, ERRORS, type ErrorCode } from '../../core/errors.ts';
import type { Signed } from '../../core/sign.ts';
import type { Engine } from '../../engine/engine.ts';
import { feedCustodian } from '../../engine/protocols/job.ts';
import { runScoreJob } from '../../engine/protocols/score/run.ts';
import type { ScoreRequest } from '../../engine/protocols/score/messages.ts';
import { runVerifyJob } from '../../engine/protocols/verify/run.ts';
import type { VerifyRequest, ClaimOpenings } from '../../engine/protocols/verify/messages.ts';
import { runTrainJob, type TrainingColumnsSource } from '../../engine/protocols/train/run.ts';
import type {
  TrainPlan,
  TrainRequest,
  TrainLabels,
  TrainingPart,
  TrainOutcome,
} from '../../engine/protocols/train/messages.ts';
import type { HttpCustodian } from '../custodian-http.ts';
import { fromJson } from '../wire.ts';
import type { Custodians } from './custodians.ts';
import type { JobKind } from './jobs.ts';

/** Run (or recover) one job; its result. @throws the job's coded error */
export async function executeJob(
  x: { engine: Engine; custodians: Custodians; trainingColumns: TrainingColumnsSource | undefined },
  job: {
    id: string;
    kind: JobKind;
    planJson: string | null;
    submitted: { request: Signed<never>; openings?: ClaimOpenings; labels?: Signed<TrainLabels> };
    inputsDir: string;
  },
  progress: (p: { phase: string; done: number; total: number }) => void,
): Promise<unknown> {
  const { id, submitted } = job;
  // A job the engine recorded before a crash: deliver it if it finished, resume it if it can, else fail it once.
  const recorded = x.engine.jobs.get(id);
  const resume = !!recorded && recorded.status !== 'planned';
  let result: unknown;
  if (recorded?.status === 'completed' || recorded?.status === 'purged') {
    result = delivered(x.engine, recorded.kind, recorded.summary ?? {});
  } else if (recorded?.status === 'failed') {
    const failed = x.engine.ledger.jobEntries(id).find((x) => x.kind === 'job.failed');
    const code = String(failed?.body.code ?? 'SH_ERR_INTERNAL');
    throw new SafehouseError(
      (code in ERRORS ? code : 'SH_ERR_INTERNAL') as ErrorCode,
      `job ${id} failed (${code}) before the server restarted`,
      { job: id },
    );
  } else if (resume && job.kind === 'train') {
    // Training keeps no resumable state between iterations: it fails once; custodians refund what they did not answer.
    const err = new SafehouseError(
      'SH_ERR_INTERRUPTED',
      `training job ${id} was cut off by a restart at ${recorded!.status === 'ready' ? 'its inputs' : 'its iterations'}`,
      { job: id },
    );
    x.engine.jobs.fail(id, err);
    throw err;
  } else if (job.kind === 'score') {
    const req = submitted.request as unknown as Signed<ScoreRequest>;
    const m = x.engine.models.get(req.body.modelId);
    if (m) await x.custodians.ensure(m.spec.terms.map((t) => t.provider));
    result = await runScoreJob(x.engine, req, {
      resume,
      onProgress: (p) => progress({ phase: p.phase, done: p.done, total: p.total }),
    });
  } else if (job.kind === 'verify') {
    const req = submitted.request as unknown as Signed<VerifyRequest>;
    await x.custodians.ensure(req.body.claims.map((c) => c.provider));
    result = await runVerifyJob(x.engine, req, submitted.openings ?? {}, {
      resume,
      onProgress: (p) => progress({ phase: p.phase, done: p.done, total: p.total }),
    });
  } else {
    const plan = fromJson(job.planJson!) as TrainPlan;
    await x.custodians.ensure([plan.provider, ...plan.others.map((o) => o.provider)]);
    // Each provider's columns from its custodian (unless a source was given), the bank's labels as it uploaded them.
    const columns =
      x.trainingColumns ??
      (async (provider: string, part: TrainingPart, request: Signed<TrainRequest>) => {
        // A custodian restarted since the plan rebuilds its ledger copy first (it opens the job again).
        await feedCustodian(x.engine, provider);
        return (x.engine.registry.custodian(provider) as HttpCustodian).trainingColumns(part, request);
      });
    const labels = submitted.labels!;
    const dir = job.inputsDir;
    const labelBlobs = new Map(
      labels.body.blocks.map((b) => [b.blob, new Uint8Array(readFileSync(join(dir, b.blob)))] as const),
    );
    result = await runTrainJob(x.engine, plan, { columns, labels, labelBlobs }, { onProgress: (p) => progress(p) });
  }
  return result;
}

/** A finished job's result from what the engine kept of it (the server crashed before it wrote its copy). */
function delivered(engine: Engine, kind: JobKind, summary: Record<string, unknown>): unknown {
  const blob = kind === 'train' ? summary.outcomeBlob : summary.resultHash;
  if (typeof blob !== 'string' || !engine.store.hasBlob(blob))
    fail('SH_ERR_BLOB_MISSING', `the result of this ${kind} job is no longer kept`);
  const kept = JSON.parse(new TextDecoder().decode(engine.store.getBlob(blob))) as Record<string, unknown>;
  if (kind !== 'train') return kept;
  const m = kept.model as { W0: string; W: string[] };
  return { ...kept, model: { W0: BigInt(m.W0), W: m.W.map((w) => BigInt(w)) } } as TrainOutcome;
}

/** Subjects and claims a job had refused for budget, by where (the engine's budget, a custodian's). */
export function refusalsOf(engine: Engine, id: string): Record<string, number> {
  const out: Record<string, number> = {};
  let entries: ReturnType<Engine['ledger']['jobEntries']>;
  try {
    entries = engine.ledger.jobEntries(id);
  } catch {
    return out;
  }
  for (const e of entries) {
    const n = (k: string) => (Array.isArray(e.body[k]) ? (e.body[k] as unknown[]).length : 0);
    if (e.kind === 'verify.budget_exceeded') out.engine = (out.engine ?? 0) + n('claims');
    else if (e.kind === 'verify.custodian_refused') out.custodian = (out.custodian ?? 0) + n('claims');
    else if (e.kind === 'score.custodian_refused') out.custodian = (out.custodian ?? 0) + n('refused');
  }
  return out;
}
