/**
 * Joint training's messages (docs/protocols.md "Joint training"): the bank-signed request, the plan the engine derives
 * from it, each provider's signed columns, the bank's signed encrypted labels, and the labels of custodian requests —
 * built and parsed here only, so the custodian's rules read exactly what the engine wrote.
 */
import type { Signed } from '../../../core/sign.ts';
import type { ConsentStatus } from '../../../sandbox/consent.ts';
import { STD_BITS, STD_CLIP, type BinSpec } from '../../../models/features.ts';
import { trainSigma } from '../../../sandbox/dp.ts';
import { type FixedModel, type TrainOptions } from '../../../models/train.ts';

export const TRAIN_REQUEST_TYPE = 'safehouse.train.request.v1';

export interface TrainRequest {
  type: 'safehouse.train.request.v1';
  jobId: string;
  bank: string;
  purpose: string;
  /** The key holder: its key and subject layout carry the training; its features stay in place. */
  provider: string;
  fields: string[];
  /** Further providers: their features are moved under the key holder's key by domain transfer (docs/design.md §4.3). */
  others?: Array<{ provider: string; fields: string[] }>;
  subjects: string[];
  bins: number;
  /** `binned` (default): provider-binned one-hot columns → scorecard. `standardized`: (x − mean)/std from the
   * provider's published statistics → linear model on raw values. */
  features?: 'binned' | 'standardized';
  options: Partial<TrainOptions>;
  requestedAt: string;
}

export type SlotRef = { uscc: string; block: number; slot: number };

/** What the engine tells the provider and the bank after checking the request. */
export interface TrainPlan {
  jobId: string;
  jobHash: string;
  provider: string;
  datasetId: string;
  fields: string[];
  bins: number;
  features: 'binned' | 'standardized';
  options: TrainOptions;
  /** Cohort subjects with their slots in the provider's layout. */
  cohort: SlotRef[];
  /** Subjects left out, and why (OVER_BUDGET: a provider's custodian refused them under its training budget). */
  excluded: Record<string, ConsentStatus | 'NO_DATA' | 'OVER_BUDGET'>;
  /** The (ε, δ) the key holder's noise gives each subject (its custodian's answer, the provider's policy). */
  privacy: { epsilon: number; delta: number };
  /** Further providers, with their slots for the cohort (same order as `cohort`). */
  others: Array<{ provider: string; datasetId: string; fields: string[]; slots: SlotRef[] }>;
  /** The bank-signed request, shown to each custodian before it is asked for anything (`Custodian.openJob`). */
  request: Signed<TrainRequest>;
}

/** One provider's part of a plan, as the engine asks for its columns. */
export interface TrainingPart {
  jobId: string;
  datasetId: string;
  fields: string[];
  bins: number;
  features: 'binned' | 'standardized';
  cohort: SlotRef[];
}

/** Provider → engine: bins and the one-hot cohort columns (column i = bin i in field order). */
export interface TrainColumns {
  type: 'safehouse.train.columns.v1';
  jobId: string;
  provider: string;
  datasetId: string;
  bins: BinSpec[];
  columns: Array<{ index: number; block: number; blob: string }>;
}

/** Bank → engine: its encrypted labels L = s·(2 − 4y) per block. */
export interface TrainLabels {
  type: 'safehouse.train.labels.v1';
  jobId: string;
  bank: string;
  scaleBits: number;
  blocks: Array<{ block: number; blob: string }>;
}

export interface TrainProgress {
  iteration: number;
  iterations: number;
  maxGrad: number;
}

export interface TrainOutcome {
  jobId: string;
  bins: BinSpec[];
  model: FixedModel;
  iterations: number;
  cohort: number;
  excluded: Record<string, ConsentStatus | 'NO_DATA' | 'OVER_BUDGET'>;
  /** The (ε, δ)-differential privacy of the model for each cohort subject. */
  privacy: { epsilon: number; delta: number };
}

/** Column scale bits: 0 for one-hot, STD_BITS for standardized features (D then carries c = 2^STD_BITS). */
export function columnBitsOf(plan: { features?: 'binned' | 'standardized' }): number {
  return plan.features === 'standardized' ? STD_BITS : 0;
}

/** Every part of a plan in column order: the key holder's, then `others`. */
export function planParts(
  plan: TrainPlan,
): Array<{ provider: string; datasetId: string; fields: string[]; slots: SlotRef[] }> {
  return [
    { provider: plan.provider, datasetId: plan.datasetId, fields: plan.fields, slots: plan.cohort },
    ...plan.others,
  ];
}

/** An iteration's sum request: D itself (`column` undefined, for G_0) or the product X_column·D. */
export function iterationLabel(jobId: string, iteration: number, block: number, column?: number): string {
  return `train/${jobId}/it/${iteration}/block/${block}/${column === undefined ? 'D' : `X${column}D`}`;
}

/** Inverse of {@link iterationLabel}; undefined for anything else. */
export function parseIterationLabel(
  label: string,
): { jobId: string; iteration: number; block: number; column?: number } | undefined {
  const m = /^train\/([^/]+)\/it\/(\d+)\/block\/(\d+)\/(D|X(\d+)D)$/.exec(label);
  if (!m) return undefined;
  return {
    jobId: m[1]!,
    iteration: Number(m[2]),
    block: Number(m[3]),
    ...(m[5] === undefined ? {} : { column: Number(m[5]) }),
  };
}

/** A domain-transfer request: column `column` of `provider`, from its block `from` into the key holder's block `to`. */
export function transferLabel(jobId: string, provider: string, column: number, from: number, to: number): string {
  return `train/${jobId}/transfer/${provider}/${column}/from/${from}/to/${to}`;
}

/** Inverse of {@link transferLabel}; undefined for anything else. */
export function parseTransferLabel(
  label: string,
): { jobId: string; provider: string; column: number; from: number; to: number } | undefined {
  const m = /^train\/([^/]+)\/transfer\/([^/]+)\/(\d+)\/from\/(\d+)\/to\/(\d+)$/.exec(label);
  return m ? { jobId: m[1]!, provider: m[2]!, column: Number(m[3]), from: Number(m[4]), to: Number(m[5]) } : undefined;
}

/** The label check of one block of the bank's labels (mode `zero`): `train/<job>/labels/block/<b>`. */
export function labelCheckLabel(jobId: string, block: number): string {
  return `train/${jobId}/labels/block/${block}`;
}

/** Inverse of {@link labelCheckLabel}; undefined for anything else. */
export function parseLabelCheckLabel(label: string): { jobId: string; block: number } | undefined {
  const m = /^train\/([^/]+)\/labels\/block\/(\d+)$/.exec(label);
  return m ? { jobId: m[1]!, block: Number(m[2]) } : undefined;
}

/**
 * The noise a key holder adds to one iteration's sums (sandbox/dp.ts): σ from the residual bound the engine
 * declares (never below the label term 2s), the columns one subject adds to (the fields for one-hot bins, every
 * column for standardized features, |X| ≤ STD_CLIP), the job's iterations and the provider's (ε, δ).
 */
export function iterationSigma(o: {
  bound: bigint;
  features: 'binned' | 'standardized';
  fields: number;
  iterations: number;
  epsilon: number;
  delta: number;
}): number {
  const standardized = o.features === 'standardized';
  return trainSigma({
    dBound: Number(o.bound),
    columnsPerSubject: o.fields,
    colMax: standardized ? STD_CLIP : 1,
    iterations: o.iterations,
    epsilon: o.epsilon,
    delta: o.delta,
  });
}
