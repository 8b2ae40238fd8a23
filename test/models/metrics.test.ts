/**
 * AUC and KS (models/metrics.ts): hand-computed values, ties, invariance to input order, a brute-force pairwise
 * AUC on random tied data, and the refusals (empty, single class, mismatched, bad labels or scores).
 */
import { describe, it, expect } from 'vitest';
import { auc, ks } from '../../models/metrics.ts';
import { mulberry32 } from '../../core/rng.ts';
import { expectCode } from '../fixtures/expect.ts';

/** P(bad > good) + ½·P(tie) over all pairs, the definition AUC implements. */
function pairwiseAuc(scores: number[], labels: number[]): number {
  let num = 0;
  let den = 0;
  scores.forEach((sb, i) => {
    if (labels[i] !== 1) return;
    scores.forEach((sg, j) => {
      if (labels[j] !== 0) return;
      den++;
      num += sb > sg ? 1 : sb === sg ? 0.5 : 0;
    });
  });
  return num / den;
}

/** max |F_bad − F_good| evaluated at every distinct score (CDF at c = share of the class with score ≤ c). */
function bruteKs(scores: number[], labels: number[]): number {
  const nb = labels.filter((l) => l === 1).length;
  const ng = labels.length - nb;
  let best = 0;
  for (const c of new Set(scores)) {
    const fb = scores.filter((s, i) => labels[i] === 1 && s <= c).length / nb;
    const fg = scores.filter((s, i) => labels[i] === 0 && s <= c).length / ng;
    best = Math.max(best, Math.abs(fb - fg));
  }
  return best;
}

describe('auc (Mann–Whitney, average ranks; label 1 = bad, higher score = more likely bad)', () => {
  it('hand-computed: [0.1, 0.4, 0.35, 0.8] / [0, 0, 1, 1] → 3 of 4 pairs ordered = 0.75', () => {
    expect(auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])).toBe(0.75);
    expect(auc([0.1, 0.4, 0.35, 0.8], Uint8Array.of(0, 0, 1, 1))).toBe(0.75);
  });

  it('ties count one half: [1, 1, 2, 2, 3] / [0, 1, 0, 1, 1] → ranks 1.5, 1.5, 3.5, 3.5, 5; (10 − 6)/6 = 2/3', () => {
    expect(auc([1, 1, 2, 2, 3], [0, 1, 0, 1, 1])).toBeCloseTo(2 / 3, 15);
  });

  it('perfect, reversed, all tied', () => {
    expect(auc([0, 1, 2, 3], [0, 0, 1, 1])).toBe(1);
    expect(auc([3, 2, 1, 0], [0, 0, 1, 1])).toBe(0);
    expect(auc([5, 5, 5, 5, 5], [1, 0, 1, 0, 0])).toBe(0.5);
  });

  it('negating the scores gives 1 − AUC (the PDO points convention)', () => {
    const s = [0.3, -1, 2, 2, 0.3, 7, -4];
    const l = [1, 0, 1, 0, 0, 1, 0];
    expect(
      auc(
        s.map((x) => -x),
        l,
      ),
    ).toBeCloseTo(1 - auc(s, l), 15);
  });

  it('equals the pairwise definition on random data with many ties, in any order', () => {
    const rng = mulberry32(2024);
    for (let trial = 0; trial < 40; trial++) {
      const n = 2 + Math.floor(rng() * 60);
      const labels = Array.from({ length: n }, (_, i) => (i < 1 ? 1 : i < 2 ? 0 : rng() < 0.3 ? 1 : 0));
      const scores = labels.map(() => Math.floor(rng() * 6) / 2);
      const a = auc(scores, labels);
      expect(a).toBeCloseTo(pairwiseAuc(scores, labels), 12);
      const perm = scores.map((_, i) => i);
      for (let i = n - 1; i > 0; i--) {
        const j = Math.floor(rng() * (i + 1));
        [perm[i], perm[j]] = [perm[j]!, perm[i]!];
      }
      expect(
        auc(
          perm.map((i) => scores[i]!),
          perm.map((i) => labels[i]!),
        ),
      ).toBeCloseTo(a, 12);
    }
  });
});

describe('ks (max |F_bad − F_good|, tie groups never split)', () => {
  it('hand-computed: [0.1, 0.4, 0.35, 0.8] / [0, 0, 1, 1] → 0.5', () => {
    // sorted: 0.1 g (F_g .5, F_b 0), 0.35 b (.5, .5), 0.4 g (1, .5), 0.8 b (1, 1)
    expect(ks([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])).toBe(0.5);
  });

  it('ties: [1, 1, 2, 2, 3] / [0, 1, 0, 1, 1] → |1/3 − 1/2|, |2/3 − 1|, 0 → 1/3', () => {
    expect(ks([1, 1, 2, 2, 3], [0, 1, 0, 1, 1])).toBeCloseTo(1 / 3, 15);
  });

  it('all tied → 0 (splitting the tie group would wrongly report separation); perfect → 1', () => {
    expect(ks([2, 2, 2, 2], [1, 0, 1, 0])).toBe(0);
    expect(ks([0, 1, 2, 3], [0, 0, 1, 1])).toBe(1);
    expect(ks([3, 2, 1, 0], [0, 0, 1, 1])).toBe(1);
  });

  it('equals the brute-force definition on random tied data', () => {
    const rng = mulberry32(99);
    for (let trial = 0; trial < 40; trial++) {
      const n = 2 + Math.floor(rng() * 50);
      const labels = Array.from({ length: n }, (_, i) => (i < 1 ? 1 : i < 2 ? 0 : rng() < 0.4 ? 1 : 0));
      const scores = labels.map(() => Math.floor(rng() * 8));
      expect(ks(scores, labels)).toBeCloseTo(bruteKs(scores, labels), 12);
    }
  });
});

describe('refusals (SH_ERR_INVALID_ARGUMENT)', () => {
  for (const [name, f] of [
    ['auc', auc],
    ['ks', ks],
  ] as const) {
    it(`${name}: empty, single class, mismatched lengths, labels other than 0/1, non-finite scores`, () => {
      expectCode(() => f([], []), 'SH_ERR_INVALID_ARGUMENT');
      expectCode(() => f([1, 2, 3], [1, 1, 1]), 'SH_ERR_INVALID_ARGUMENT');
      expectCode(() => f([1, 2, 3], Uint8Array.of(0, 0, 0)), 'SH_ERR_INVALID_ARGUMENT');
      expectCode(() => f([1, 2], [0, 1, 1]), 'SH_ERR_INVALID_ARGUMENT');
      expectCode(() => f([1, 2], [0, 2]), 'SH_ERR_INVALID_ARGUMENT');
      expectCode(() => f([1, Number.NaN], [0, 1]), 'SH_ERR_INVALID_ARGUMENT');
      expectCode(() => f([1, Infinity], [0, 1]), 'SH_ERR_INVALID_ARGUMENT');
    });
  }
});
