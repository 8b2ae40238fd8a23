/**
 * `safehouse train` end to end, as a bank would run it: split its labels into training and hold-out sets (seeded,
 * stratified by label),
 * train on the training set with the provider's encrypted features, convert the model into a scorecard, register it,
 * have the provider approve it, score every labeled subject through the normal scoring protocol, and compute AUC and
 * KS from the returned scores — the engine never learns a hold-out label. For comparison it also trains the same
 * Taylor-LR on plaintext (embedded mode can read the provider's own table; a real bank cannot) and reports its AUC.
 * {@link holdoutMetrics} is the bank's computation from returned scores, shared with `safehouse evaluate` (which in
 * client mode runs once the providers have approved the model themselves) so both print the same numbers.
 */
import { fail } from '../core/errors.ts';
import type { Safehouse } from './embedded.ts';
import type { ScoreProgress, ScoreStatus } from '../engine/protocols/score/messages.ts';
import type { TrainOutcome, TrainProgress } from '../engine/protocols/train/messages.ts';
import { binOf, standardizedValue, STD_BITS, type BinSpec } from '../models/features.ts';
import { toScorecard, toLinear } from '../models/export.ts';
import { trainPlainFloat, trainOptions, type Column, type TrainOptions } from '../models/train.ts';
import { auc, ks } from '../models/metrics.ts';
import { trainTestSplit } from '../models/german.ts';
import type { ModelSpec } from '../models/model.ts';

export interface TrainRunResult {
  jobId: string;
  model: ModelSpec;
  iterations: number;
  cohort: number;
  excluded: Record<string, number>;
  trainAuc: number;
  holdoutAuc: number;
  holdoutKs: number;
  plaintextAuc: number;
  /** The differential privacy of the job for each subject's values, as the key holder's custodian gave it. */
  privacy: { epsilon: number; delta: number };
  seconds: number;
  secondsPerIteration: number;
  /** The subjects trained on (before consent exclusions) and the hold-out subjects, in label-file order. */
  training: string[];
  holdout: string[];
}

/** A model's scores are a logit (higher = riskier) or PDO points (higher = more creditworthy). */
export type ScoreScale = 'logit' | 'points';

export interface HoldoutMetrics {
  auc: number;
  ks: number;
  /** Subjects with a score (status OK), and the statuses of those without one (left out of the metrics). */
  scored: number;
  notScored: Record<string, number>;
}

/**
 * The bank's metrics over `subjects` from the rows the scoring protocol returned: AUC and KS of the scored ones
 * against their labels (models/metrics.ts: a higher score means more likely bad, so points are negated).
 * @throws SH_ERR_INVALID_ARGUMENT when fewer than two subjects were scored, or only one class was.
 */
export function holdoutMetrics(
  rows: ReadonlyArray<{ uscc: string; status: ScoreStatus; score: string }>,
  subjects: readonly string[],
  labels: ReadonlyMap<string, 0 | 1>,
  scale: ScoreScale,
): HoldoutMetrics {
  const sign = scale === 'points' ? -1 : 1;
  const score = new Map(rows.filter((x) => x.status === 'OK').map((x) => [x.uscc, sign * Number(x.score)]));
  const status = new Map(rows.map((x) => [x.uscc, x.status]));
  const s = subjects.filter((u) => score.has(u));
  const notScored: Record<string, number> = {};
  for (const u of subjects)
    if (!score.has(u))
      notScored[status.get(u) ?? 'NOT_RETURNED'] = (notScored[status.get(u) ?? 'NOT_RETURNED'] ?? 0) + 1;
  if (s.length < 2) {
    // Say why: no consent (op `score` for the purpose) and the scoring budget (docs/privacy.md) need different fixes.
    const why = Object.entries(notScored)
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${k} ${n}`)
      .join(', ');
    fail(
      'SH_ERR_INVALID_ARGUMENT',
      `too few scored subjects for metrics: ${s.length} of ${subjects.length} scored${why ? ` (${why})` : ''}; ` +
        'NO_CONSENT needs consent op `score` for the purpose, OVER_BUDGET means the bank group scored them with ' +
        'scoreModelsPerSubject distinct models in the window',
      notScored,
    );
  }
  const xs = s.map((u) => score.get(u)!);
  const ys = s.map((u) => labels.get(u)!);
  return { auc: auc(xs, ys), ks: ks(xs, ys), scored: s.length, notScored };
}

/** `safehouse evaluate` in embedded mode: score the hold-out subjects as the bank, then {@link holdoutMetrics}. */
export async function runEvaluate(
  sh: Safehouse,
  r: {
    bank: string;
    modelId: string;
    purpose: string;
    holdout: string[];
    labels: ReadonlyMap<string, 0 | 1>;
    scale: ScoreScale;
    onProgress?: (p: ScoreProgress) => void;
  },
): Promise<{
  jobId: string;
  rows: Array<{ uscc: string; status: ScoreStatus; score: string }>;
  metrics: HoldoutMetrics;
}> {
  const { jobId, rows } = await sh.score(r.bank, r.modelId, r.purpose, r.holdout, r.onProgress);
  return { jobId, rows, metrics: holdoutMetrics(rows, r.holdout, r.labels, r.scale) };
}

/** Fractional bits for standardized-feature training (the default 16 leaves no room for the privacy noise). */
export const STANDARDIZED_SCALE_BITS = 8;

export async function runTrain(
  sh: Safehouse,
  r: {
    bank: string;
    provider: string;
    purpose: string;
    fields: string[];
    others?: Array<{ provider: string; fields: string[] }>;
    labels: ReadonlyMap<string, 0 | 1>;
    modelId: string;
    seed?: number;
    bins?: number;
    features?: 'binned' | 'standardized';
    options?: Partial<TrainOptions>;
    pdo?: { pdo: number; baseScore: number; baseOdds: number };
    onProgress?: (p: TrainProgress) => void;
  },
): Promise<TrainRunResult> {
  const t0 = performance.now();
  // Standardized columns (|X| up to STD_CLIP) need a coarser fixed point for the key holder's privacy noise to fit
  // below t/2 (docs/privacy.md "Training"); binned columns keep the default.
  const options: Partial<TrainOptions> = {
    ...(r.features === 'standardized' ? { scaleBits: STANDARDIZED_SCALE_BITS } : {}),
    ...r.options,
  };
  const { train, test } = trainTestSplit([...r.labels.keys()], r.labels, { seed: r.seed ?? 42, testFraction: 0.3 });
  const outcome: TrainOutcome = await sh.train({
    bank: r.bank,
    provider: r.provider,
    purpose: r.purpose,
    fields: r.fields,
    ...(r.others ? { others: r.others } : {}),
    ...(r.features ? { features: r.features } : {}),
    subjects: train,
    labels: r.labels,
    bins: r.bins ?? 5,
    options,
    ...(r.onProgress ? { onProgress: r.onProgress } : {}),
  });
  const trainSeconds = (performance.now() - t0) / 1000;
  const opts = trainOptions(options);
  const standardized = r.features === 'standardized';
  if (standardized && r.pdo)
    fail('SH_ERR_INVALID_ARGUMENT', 'PDO points apply to scorecards (binned features), not to a linear model');
  const model = standardized
    ? toLinear(r.modelId, outcome.bins, outcome.model, opts.scaleBits)
    : toScorecard(r.modelId, outcome.bins, outcome.model, opts.scaleBits, r.pdo);

  // Hold-out metrics through the scoring protocol: register, approve, score; the bank computes AUC and KS.
  sh.registerModel(r.bank, model);
  for (const p of [r.provider, ...(r.others ?? []).map((o) => o.provider)]) await sh.approveModel(p, model.id);
  const { rows } = await sh.score(r.bank, model.id, r.purpose, [...train, ...test]);
  // A logit scorecard rises with the risk of default; PDO points rise with creditworthiness.
  const scale: ScoreScale = r.pdo ? 'points' : 'logit';
  const holdout = holdoutMetrics(rows, test, r.labels, scale);

  // The same Taylor-LR on plaintext one-hot data with the same bins (embedded-mode comparison only).
  const tables = new Map(
    [{ provider: r.provider, fields: r.fields }, ...(r.others ?? [])].map((p) => {
      const ds = sh.engine.datasets.withField(p.provider, p.fields[0]!)!;
      const table = sh.providerTable(p.provider, ds.category);
      return [p.provider, { table, row: new Map(table.subjects.map((u, i) => [u, i])) }] as const;
    }),
  );
  const onehot = (subjects: readonly string[]) =>
    oneHot(outcome.bins, subjects, (u, f, provider) => {
      const { table, row } = tables.get(provider)!;
      const i = row.get(u);
      const v = i === undefined ? null : table.values[f]![i];
      return v === null || v === undefined ? null : BigInt(v);
    });
  const cohort = train.filter((u) => !(u in outcome.excluded));
  const cb = standardized ? STD_BITS : 0;
  const plain = trainPlainFloat(onehot(cohort), Uint8Array.from(cohort.map((u) => r.labels.get(u)!)), opts, cb);
  const Xtest = onehot(test);
  const plainScores = test.map((_, i) => plain.w0 + plain.w.reduce((a, w, b) => a + (w * Xtest[b]![i]!) / 2 ** cb, 0));
  const excluded: Record<string, number> = {};
  for (const st of Object.values(outcome.excluded)) excluded[st] = (excluded[st] ?? 0) + 1;
  return {
    jobId: outcome.jobId,
    model,
    iterations: outcome.iterations,
    cohort: outcome.cohort,
    excluded,
    privacy: outcome.privacy,
    trainAuc: holdoutMetrics(rows, train, r.labels, scale).auc,
    holdoutAuc: holdout.auc,
    holdoutKs: holdout.ks,
    plaintextAuc: auc(
      plainScores,
      test.map((u) => r.labels.get(u)!),
    ),
    seconds: Number(((performance.now() - t0) / 1000).toFixed(3)),
    secondsPerIteration: Number((trainSeconds / Math.max(1, outcome.iterations)).toFixed(3)),
    training: train,
    holdout: test,
  };
}

/** Training columns for `subjects`: one-hot bins of every field in order, or standardized values (Int16Array). */
export function oneHot(
  bins: readonly BinSpec[],
  subjects: readonly string[],
  value: (uscc: string, field: string, provider: string) => bigint | null,
): Column[] {
  const cols: Column[] = [];
  for (const spec of bins) {
    const std = spec.standardize;
    if (std) {
      cols.push(
        Int16Array.from(
          subjects.map((u) => standardizedValue(value(u, spec.field, spec.provider), spec.decimals, std.mean, std.std)),
        ),
      );
      continue;
    }
    const which = subjects.map((u) => binOf(spec.bins, value(u, spec.field, spec.provider), spec.decimals));
    spec.bins.forEach((_, j) => cols.push(Uint8Array.from(which.map((w) => (w === j ? 1 : 0)))));
  }
  return cols;
}
