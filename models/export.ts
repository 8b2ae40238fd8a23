/**
 * Exporting a trained model (docs/protocols.md "Joint training", step 6): bins + fixed-point weights → a `scorecard`
 * ModelSpec (score = logit of default, or PDO points) or, for standardized features, a `linear` ModelSpec on raw
 * values — either registers and scores as is.
 */
import { describe, fail } from '../core/errors.ts';
import { formatFixed, parseFixed } from '../core/fixed.ts';
import { parseModel, type ModelSpec } from './model.ts';
import { STD_BITS, type BinSpec } from './features.ts';
import { checkModel, checkScale, type FixedModel } from './train.ts';

/** Exact decimal text of a float rounded to 6 places (toFixed rounds the exact binary value, ties away from 0). */
function points6(x: number, what: string): string {
  if (!Number.isFinite(x) || Math.abs(x) >= 1e15)
    fail('SH_ERR_MODEL_INVALID', `"${what}" expected a finite value below 1e15 in magnitude, got ${x}`);
  return formatFixed(parseFixed(x.toFixed(6), 6), 6);
}

/**
 * Scorecard conversion (docs/design.md §5 → §3): bins + fixed-point weights → a `scorecard` ModelSpec the scoring path accepts
 * as is (parsed by `parseModel` before it is returned). Each BinSpec becomes one term with its bins, points rounded to
 * 6 decimals and `missingPoints: '0'` (a missing value contributes nothing in training too).
 *
 * Without `scaling` the score is the logit of default: points_b = W_b/2^scaleBits, intercept = W0/2^scaleBits (each
 * rounded to 6 places, so the score is within (terms + 1)·5e−7 of the trained logit; higher = riskier).
 * With `{ pdo, baseScore, baseOdds }` (odds good:bad of baseOdds at baseScore, doubling every pdo points) classic
 * points: factor = pdo/ln 2, offset = baseScore − factor·ln(baseOdds), points = −factor·w, intercept =
 * offset − factor·w0 (higher = better).
 * @throws SH_ERR_INVALID_ARGUMENT (weights don't match the bins, bad scaling), SH_ERR_MODEL_INVALID (id, bins).
 * @example toScorecard('gc-v1', bins, model, 16, { pdo: 20, baseScore: 600, baseOdds: 50 }).kind === 'scorecard'
 */
export function toScorecard(
  id: string,
  bins: readonly BinSpec[],
  model: FixedModel,
  scaleBits: number,
  scaling?: { pdo: number; baseScore: number; baseOdds: number },
): ModelSpec {
  checkModel(model);
  const s = Number(checkScale(scaleBits));
  if (!Array.isArray(bins as unknown) || bins.length === 0)
    fail('SH_ERR_INVALID_ARGUMENT', `"bins" expected a non-empty array of BinSpec, got ${describe(bins)}`);
  const nCols = bins.reduce((a, b) => a + b.bins.length, 0);
  if (model.W.length !== nCols)
    fail('SH_ERR_INVALID_ARGUMENT', `"model.W" expected ${nCols} weights (one per bin), got ${model.W.length}`);
  let factor = 1;
  let offset = 0;
  if (scaling !== undefined) {
    const { pdo, baseScore, baseOdds } = scaling;
    if (typeof pdo !== 'number' || !Number.isFinite(pdo) || pdo <= 0)
      fail('SH_ERR_INVALID_ARGUMENT', `"scaling.pdo" expected a finite number > 0, got ${describe(pdo)}`);
    if (typeof baseScore !== 'number' || !Number.isFinite(baseScore))
      fail('SH_ERR_INVALID_ARGUMENT', `"scaling.baseScore" expected a finite number, got ${describe(baseScore)}`);
    if (typeof baseOdds !== 'number' || !Number.isFinite(baseOdds) || baseOdds <= 0)
      fail('SH_ERR_INVALID_ARGUMENT', `"scaling.baseOdds" expected a finite number > 0, got ${describe(baseOdds)}`);
    // Points rise with the odds good:bad = e^−logit: score = offset + (pdo/ln 2)·ln(odds) = offset − (pdo/ln 2)·logit.
    factor = -pdo / Math.LN2;
    offset = baseScore - (pdo / Math.LN2) * Math.log(baseOdds);
  }
  // Logit: W/2^s is exact in float64 (|W| < 2^53), so toFixed(6) is the correctly rounded decimal.
  const pts = (W: bigint, what: string): string => points6(factor * (Number(W) / s), what);
  let col = 0;
  const terms = bins.map((b, i) => ({
    provider: b.provider,
    field: b.field,
    bins: b.bins.map((bin, j) => ({
      lo: bin.lo,
      hi: bin.hi,
      points: pts(model.W[col++]!, `terms[${i}].bins[${j}].points`),
    })),
    missingPoints: '0',
  }));
  const intercept = points6(offset + factor * (Number(model.W0) / s), 'intercept');
  return parseModel({ id, kind: 'scorecard', intercept, terms });
}

/**
 * Linear export of a model trained on standardized features: weights that apply to **raw** field values, so the
 * scoring path takes the model as is and the score is the logit (up to 6-decimal rounding, and except for values the
 * training clipped beyond 8 standard deviations): weight_f = (W_f/s)/std_f, intercept = W0/s − Σ_f (W_f/s)·mean_f/std_f.
 * A subject missing a field gets NO_DATA when scored (training used the mean for it).
 * @throws SH_ERR_INVALID_ARGUMENT when a spec is not standardized or the weights don't match.
 */
export function toLinear(id: string, specs: readonly BinSpec[], model: FixedModel, scaleBits: number): ModelSpec {
  checkModel(model);
  const s = Number(checkScale(scaleBits));
  if (model.W.length !== specs.length)
    fail(
      'SH_ERR_INVALID_ARGUMENT',
      `"model.W" expected ${specs.length} weights (one per field), got ${model.W.length}`,
    );
  let intercept = Number(model.W0) / s;
  const terms = specs.map((spec, f) => {
    if (!spec.standardize || !(spec.standardize.std > 0))
      fail('SH_ERR_INVALID_ARGUMENT', `"specs[${f}]" is not a standardized feature`);
    const w = Number(model.W[f]!) / s;
    intercept -= (w * spec.standardize.mean) / spec.standardize.std;
    return {
      provider: spec.provider,
      field: spec.field,
      weight: points6(w / spec.standardize.std, `terms[${f}].weight`),
    };
  });
  return parseModel({ id, kind: 'linear', intercept: points6(intercept, 'intercept'), terms });
}
