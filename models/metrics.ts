/**
 * Discrimination metrics for credit models (docs/design.md §5: the bank's own hold-out metrics): AUC and KS.
 *
 * Convention for both: label 1 = bad (default), 0 = good, and a **higher score means more likely bad** (a logit
 * scorecard). For classic points, where higher = better, pass the negated scores. Both are computed in float64 from the
 * sorted scores; ties are handled exactly (average ranks for AUC, whole tie groups for KS), so neither depends on
 * the order of the input.
 */
import { describe, fail } from '../core/errors.ts';

/** Validated input: indices sorted by score, and the class sizes. */
interface Checked {
  order: number[];
  nBad: number;
  nGood: number;
}

function check(scores: readonly number[], labels: Uint8Array | readonly number[]): Checked {
  if (!Array.isArray(scores))
    fail('SH_ERR_INVALID_ARGUMENT', `"scores" expected an array of numbers, got ${describe(scores)}`);
  if (!(labels instanceof Uint8Array) && !Array.isArray(labels))
    fail('SH_ERR_INVALID_ARGUMENT', `"labels" expected a Uint8Array or an array of 0/1, got ${describe(labels)}`);
  if (labels.length !== scores.length)
    fail('SH_ERR_INVALID_ARGUMENT', `"labels" expected ${scores.length} labels (one per score), got ${labels.length}`);
  if (scores.length === 0)
    fail('SH_ERR_INVALID_ARGUMENT', '"scores" expected at least one bad and one good subject, got none');
  let nBad = 0;
  for (let i = 0; i < scores.length; i++) {
    if (typeof scores[i] !== 'number' || !Number.isFinite(scores[i]))
      fail('SH_ERR_INVALID_ARGUMENT', `"scores[${i}]" expected a finite number, got ${describe(scores[i])}`);
    const l = labels[i];
    if (l !== 0 && l !== 1)
      fail('SH_ERR_INVALID_ARGUMENT', `"labels[${i}]" expected 0 (good) or 1 (bad), got ${describe(l)}`);
    nBad += l;
  }
  const nGood = scores.length - nBad;
  if (nBad === 0 || nGood === 0)
    fail('SH_ERR_INVALID_ARGUMENT', `"labels" expected both classes, got ${nBad} bad and ${nGood} good`, {
      bad: nBad,
      good: nGood,
    });
  const order = Array.from(scores.keys()).sort((a, b) => scores[a]! - scores[b]!);
  return { order, nBad, nGood };
}

/**
 * Area under the ROC curve = P(score of a random bad > score of a random good) + ½·P(tie): the Mann–Whitney U
 * statistic from average ranks, (R_bad − n_bad(n_bad + 1)/2) / (n_bad·n_good). 1 = perfect, 0.5 = no skill.
 * @throws SH_ERR_INVALID_ARGUMENT for empty or single-class input, mismatched lengths, non-finite scores or labels
 *   other than 0/1.
 * @example auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) === 0.75
 */
export function auc(scores: number[], labels: Uint8Array | number[]): number {
  const { order, nBad, nGood } = check(scores, labels);
  let rankSum = 0;
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j + 1 < order.length && scores[order[j + 1]!] === scores[order[i]!]) j++;
    const avgRank = (i + j) / 2 + 1; // ranks i+1 … j+1 share their mean
    for (let k = i; k <= j; k++) if (labels[order[k]!] === 1) rankSum += avgRank;
    i = j + 1;
  }
  return (rankSum - (nBad * (nBad + 1)) / 2) / (nBad * nGood);
}

/**
 * Kolmogorov–Smirnov statistic: max over thresholds c of |F_bad(c) − F_good(c)|, F = the empirical CDF of each class's
 * scores, evaluated only between distinct score values (a tie group is never split). In [0, 1]; 0 = no separation.
 * Symmetric in the score's direction.
 * @throws SH_ERR_INVALID_ARGUMENT as {@link auc}.
 * @example ks([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) === 0.5
 */
export function ks(scores: number[], labels: Uint8Array | number[]): number {
  const { order, nBad, nGood } = check(scores, labels);
  let bad = 0;
  let good = 0;
  let best = 0;
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j < order.length && scores[order[j]!] === scores[order[i]!]) {
      if (labels[order[j]!] === 1) bad++;
      else good++;
      j++;
    }
    best = Math.max(best, Math.abs(bad / nBad - good / nGood));
    i = j;
  }
  return best;
}
