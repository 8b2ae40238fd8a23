/**
 * Differential-privacy accounting for training (sandbox/dp.ts, docs/privacy.md "Training"): the (ε, δ) ↔ ρ conversion
 * of Bun & Steinke (TCC 2016, Prop. 1.3) both ways, the Gaussian calibration σ = Δ·√(T/2ρ), and that Δ really bounds
 * how far one iteration's released sums move when one subject's values change (worst cases and random neighbours,
 * computed on the same release the key holder's custodian answers: the D sum and every column's X·D sum).
 */
import { describe, it, expect } from 'vitest';
import { epsilonOf, rhoFor, trainSigma } from '../../sandbox/dp.ts';
import { mulberry32 } from '../../core/rng.ts';

/** One subject's contribution to one iteration's release: [D, X_1·D, …, X_c·D]. */
function contribution(d: number, x: number[]): number[] {
  return [d, ...x.map((v) => v * d)];
}
const l2 = (a: number[], b: number[]) => Math.sqrt(a.reduce((s, v, i) => s + (v - b[i]!) ** 2, 0));

/** The sensitivity trainSigma uses, recovered from σ: Δ = σ·√(2ρ/T). */
function sensitivityOf(o: Parameters<typeof trainSigma>[0]): number {
  return trainSigma(o) * Math.sqrt((2 * rhoFor(o.epsilon, o.delta)) / o.iterations);
}

describe('dp: zCDP accounting', () => {
  it('rhoFor inverts epsilonOf', () => {
    for (const [eps, delta] of [
      [8, 1e-5],
      [1, 1e-6],
      [0.1, 1e-9],
      [100, 1e-5],
    ] as const) {
      const rho = rhoFor(eps, delta);
      expect(rho).toBeGreaterThan(0);
      expect(epsilonOf(rho, delta)).toBeCloseTo(eps, 9);
    }
    // ε = 8 at δ = 10⁻⁵: ρ ≈ 1.05 — the figure docs/privacy.md quotes.
    expect(rhoFor(8, 1e-5)).toBeCloseTo(1.049, 2);
  });

  it('bad ε or δ is a coded error', () => {
    for (const [eps, delta] of [
      [0, 1e-5],
      [-1, 1e-5],
      [Infinity, 1e-5],
      [8, 0],
      [8, 1],
      [Number.NaN, 1e-5],
    ])
      expect(() => rhoFor(eps!, delta!)).toThrow(expect.objectContaining({ code: 'SH_ERR_INVALID_ARGUMENT' }));
  });

  it('σ grows as √T and falls as 1/√ρ; T iterations of σ spend exactly ρ', () => {
    const base = { dBound: 1000, columnsPerSubject: 5, colMax: 1, iterations: 10, epsilon: 8, delta: 1e-5 };
    expect(trainSigma({ ...base, iterations: 40 }) / trainSigma(base)).toBeCloseTo(2, 9);
    const delta = sensitivityOf(base);
    // ρ of one Gaussian release is Δ²/(2σ²); T of them add up to the job's ρ.
    const perIteration = (delta * delta) / (2 * trainSigma(base) ** 2);
    expect(perIteration * base.iterations).toBeCloseTo(rhoFor(8, 1e-5), 9);
  });
});

describe('dp: the sensitivity bounds changing one subject', () => {
  it('one-hot bins: Δ = 2·dBound·√(1 + k), reached when D flips sign and no field changes bin', () => {
    const dBound = 1000;
    for (const k of [1, 3, 20]) {
      const bins = 4;
      const delta = sensitivityOf({ dBound, columnsPerSubject: k, colMax: 1, iterations: 1, epsilon: 8, delta: 1e-5 });
      expect(delta).toBeCloseTo(2 * dBound * Math.sqrt(1 + k), 6);
      // Worst case: the same bins, D from +dBound to −dBound; moving every field's bin instead gives less.
      const row = (bin: number) => Array.from({ length: k * bins }, (_, c) => (c % bins === bin ? 1 : 0));
      expect(l2(contribution(dBound, row(0)), contribution(-dBound, row(0)))).toBeCloseTo(delta, 6);
      expect(l2(contribution(dBound, row(0)), contribution(-dBound, row(1)))).toBeLessThan(delta);
      // Random neighbours never exceed it.
      const rnd = mulberry32(k);
      for (let n = 0; n < 500; n++) {
        const pick = () =>
          Array.from({ length: k }, () => Math.floor(rnd() * bins)).flatMap((b) =>
            Array.from({ length: bins }, (_, j) => (j === b ? 1 : 0)),
          );
        const d = () => Math.round((2 * rnd() - 1) * dBound);
        expect(l2(contribution(d(), pick()), contribution(d(), pick()))).toBeLessThanOrEqual(delta + 1e-9);
      }
    }
  });

  it('standardized: Δ = 2·dBound·√(1 + k·colMax²), reached at opposite extremes', () => {
    const dBound = 1000;
    const colMax = 4;
    for (const k of [1, 7]) {
      const delta = sensitivityOf({ dBound, columnsPerSubject: k, colMax, iterations: 1, epsilon: 8, delta: 1e-5 });
      expect(delta).toBeCloseTo(2 * dBound * Math.sqrt(1 + k * colMax * colMax), 6);
      const all = (v: number) => new Array<number>(k).fill(v);
      expect(l2(contribution(dBound, all(colMax)), contribution(-dBound, all(colMax)))).toBeCloseTo(delta, 6);
      const rnd = mulberry32(100 + k);
      for (let n = 0; n < 500; n++) {
        const x = () => Array.from({ length: k }, () => (2 * rnd() - 1) * colMax);
        const d = () => (2 * rnd() - 1) * dBound;
        expect(l2(contribution(d(), x()), contribution(d(), x()))).toBeLessThanOrEqual(delta + 1e-9);
      }
    }
  });
});
