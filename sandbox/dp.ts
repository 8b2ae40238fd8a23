/**
 * Differential-privacy accounting for training (docs/privacy.md "Training"), in zero-concentrated DP (zCDP; Bun &
 * Steinke, "Concentrated Differential Privacy", TCC 2016):
 *  - the Gaussian mechanism with L2 sensitivity Δ and noise σ is ρ-zCDP with ρ = Δ² / (2σ²) (their Prop. 1.6);
 *  - ρ's add up over releases (Lemma 1.7);
 *  - ρ-zCDP implies (ρ + 2√(ρ ln(1/δ)), δ)-DP (Prop. 1.3).
 * A training job of T iterations gets a target ρ from the provider's (ε, δ); each iteration's releases (every group
 * sum of D and of every X_b·D) have L2 sensitivity Δ_t to one subject's values, so σ_t = Δ_t·√(T / (2ρ)) spends ρ/T per iteration
 * whatever Δ_t is. Rounding the Gaussian sample of an integer-valued sum to an integer is post-processing.
 */
import { fail } from '../core/errors.ts';

/** The largest ρ whose conversion gives (ε, δ)-DP: ε = ρ + 2√(ρ·ln(1/δ)) solved for ρ. */
export function rhoFor(epsilon: number, delta: number): number {
  if (!(epsilon > 0 && Number.isFinite(epsilon)) || !(delta > 0 && delta < 1))
    fail('SH_ERR_INVALID_ARGUMENT', `expected ε > 0 and δ in (0, 1), got ε = ${epsilon}, δ = ${delta}`);
  const l = Math.log(1 / delta);
  return (Math.sqrt(l + epsilon) - Math.sqrt(l)) ** 2;
}

/** The ε that ρ-zCDP gives at δ. */
export function epsilonOf(rho: number, delta: number): number {
  return rho + 2 * Math.sqrt(rho * Math.log(1 / delta));
}

/**
 * Noise of one training iteration's sums: σ = Δ·√(T / (2ρ)). Δ is the L2 sensitivity to **changing one subject's
 * values** (the bank named the subject, so membership is not the secret). Its residual moves by at most 2·dBound in
 * the D sum (|D_i| ≤ dBound); each of its k fields adds at most (2·colMax·dBound)² to the squared distance — a
 * standardized column moves from x·D to x′·D′; a one-hot field (colMax = 1) either stays in its bin while D flips
 * sign, (2·dBound)², or changes bin, D² + D′² ≤ 2·dBound². So Δ = 2·dBound·√(1 + k·colMax²): twice the sensitivity
 * to adding or removing the subject.
 */
export function trainSigma(o: {
  dBound: number;
  columnsPerSubject: number;
  colMax: number;
  iterations: number;
  epsilon: number;
  delta: number;
}): number {
  const sensitivity = 2 * o.dBound * Math.sqrt(1 + o.columnsPerSubject * o.colMax * o.colMax);
  return sensitivity * Math.sqrt(o.iterations / (2 * rhoFor(o.epsilon, o.delta)));
}
