/**
 * A training job end to end on the engine, after the plan — the one pipeline embedded mode and the server both run:
 * each provider's columns from its side (in-process agent or its custodian over HTTP), the bank's signed encrypted
 * labels, both hash-checked and stored, the other providers' columns moved under the key holder's key, then the
 * iterations. The plan itself (`planTraining`) comes first because the bank needs the cohort's slots to encrypt its
 * labels; the server keeps the job `awaiting-labels` in between.
 */
import type { Signed } from '../../../core/sign.ts';
import type { Engine } from '../../engine.ts';
import { acceptTrainingInputs, runIterations, type TrainObserver } from './engine.ts';
import { transferTrainingColumns } from './transfer.ts';
import {
  planParts,
  type TrainColumns,
  type TrainingPart,
  type TrainLabels,
  type TrainOutcome,
  type TrainPlan,
  type TrainProgress,
  type TrainRequest,
} from './messages.ts';

/** A provider's signed training columns for its part of a plan, from wherever the provider runs. */
export type TrainingColumnsSource = (
  provider: string,
  part: TrainingPart,
  request: Signed<TrainRequest>,
) => Promise<{ signed: Signed<TrainColumns>; blobs: ReadonlyMap<string, Uint8Array> }>;

export interface TrainRunProgress {
  phase: 'columns' | 'iterate';
  done: number;
  total: number;
}

/**
 * @throws SH_ERR_BAD_SIGNATURE, SH_ERR_PARAMS_MISMATCH, SH_ERR_CIPHERTEXT_*, SH_ERR_INVALID_ARGUMENT (inputs),
 *   SH_ERR_BOUND_OVERFLOW, custodian errors
 */
export async function runTrainJob(
  engine: Engine,
  plan: TrainPlan,
  inputs: { columns: TrainingColumnsSource; labels: Signed<TrainLabels>; labelBlobs: ReadonlyMap<string, Uint8Array> },
  opts: {
    onProgress?: (p: TrainRunProgress) => void;
    onIteration?: (p: TrainProgress) => void;
    /** Engine-side test hook: each iteration's model and noisy sums (nothing of it reaches the bank). */
    observe?: TrainObserver;
  } = {},
): Promise<TrainOutcome> {
  const parts = planParts(plan);
  const columns: Array<Signed<TrainColumns>> = [];
  const blobs = new Map<string, Uint8Array>();
  for (const [i, part] of parts.entries()) {
    opts.onProgress?.({ phase: 'columns', done: i, total: parts.length });
    const c = await inputs.columns(
      part.provider,
      {
        jobId: plan.jobId,
        datasetId: part.datasetId,
        fields: part.fields,
        bins: plan.bins,
        features: plan.features,
        cohort: part.slots,
      },
      plan.request,
    );
    columns.push(c.signed);
    for (const [h, bytes] of c.blobs) blobs.set(h, bytes);
  }
  for (const [h, bytes] of inputs.labelBlobs) blobs.set(h, bytes);
  const bins = acceptTrainingInputs(engine, plan, columns, inputs.labels, blobs);
  if (plan.others.length) await transferTrainingColumns(engine, plan, columns);
  return runIterations(
    engine,
    plan,
    bins,
    (p) => {
      opts.onProgress?.({ phase: 'iterate', done: p.iteration, total: p.iterations });
      opts.onIteration?.(p);
    },
    opts.observe,
  );
}
