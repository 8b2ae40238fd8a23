/**
 * Joint training, plaintext parts (docs/design.md §5; models/train.ts, models/german.ts): provider-side binning, the exact
 * gradient integers against a float re-computation, the bound calculator and group size, the update step, the
 * fixed-point and float reference trainers, the scorecard conversion (accepted by compileModel and vetting, scored by
 * evaluatePlain), and the German Credit fixture. The acceptance check: on German Credit (seed fixed, stratified 70/30,
 * 5 quantile bins) the fixed-point model's hold-out AUC is within 0.01 of the float model's.
 * Longer than 400 lines: the plaintext trainer's properties and the German Credit acceptance share the loaded data set
 * and the trained reference model.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  DEFAULT_TRAIN,
  maxAbsD,
  sumGroupSize,
  taylorGradientSums,
  trainOptions,
  trainPlainFixed,
  trainPlainFloat,
  updateModel,
  type FixedModel,
  type TrainOptions,
} from '../../models/train.ts';
import { MAX_BINS, binOf, quantileBins, type BinSpec } from '../../models/features.ts';
import { toScorecard } from '../../models/export.ts';
import { auc, ks } from '../../models/metrics.ts';
import {
  GERMAN_ATTRIBUTES,
  GERMAN_PATH,
  GERMAN_PROVIDER_FIELDS,
  loadGerman,
  germanSplit,
  trainTestSplit,
  type GermanSplit,
} from '../../models/german.ts';
import { binIndex, compileModel, type ModelSpec, type ScorecardTerm } from '../../models/model.ts';
import { parseFixed } from '../../core/fixed.ts';
import { evaluatePlain } from '../../models/plain.ts';
import { parseCsv } from '../../core/csv.ts';
import { mulberry32 } from '../../core/rng.ts';
import { validateSchema, type FieldSpec } from '../../sandbox/catalog.ts';
import { isValidUscc } from '../../sandbox/uscc.ts';
import { encodeValue } from '../../sandbox/values.ts';
import { vetModel } from '../../sandbox/vetting.ts';
import { DEFAULT_POLICY } from '../../sandbox/policy.ts';
import { isCoded } from '../../core/errors.ts';
import { expectCode } from '../fixtures/expect.ts';

const T = 1099511480321n;
const HALF = (T - 1n) / 2n;

const intField = (name: string, min: string, max: string): FieldSpec => ({
  name,
  label: name,
  type: 'int',
  decimals: 0,
  min,
  max,
  class: 'MODEL_ONLY',
});
const decField = (name: string, min: string, max: string): FieldSpec => ({
  name,
  label: name,
  type: 'decimal',
  decimals: 2,
  min,
  max,
  class: 'MODEL_ONLY',
});
const enumField = (name: string, values: string[]): FieldSpec => ({
  name,
  label: name,
  type: 'enum',
  decimals: 0,
  min: '0',
  max: String(values.length - 1),
  class: 'MODEL_ONLY',
  values,
});

function shuffle<T>(xs: readonly T[], rng: () => number): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

/** Structural checks every bin list must pass: sorted, contiguous, covering (null ends), distinct edges. */
function expectWellFormed(bins: BinSpec['bins'], decimals: number): void {
  expect(bins.length).toBeGreaterThanOrEqual(1);
  expect(bins[0]!.lo).toBeNull();
  expect(bins[bins.length - 1]!.hi).toBeNull();
  for (let j = 0; j + 1 < bins.length; j++) {
    expect(bins[j]!.hi).not.toBeNull();
    expect(bins[j + 1]!.lo).toBe(bins[j]!.hi);
    if (j > 0) expect(parseFixed(bins[j]!.hi!, decimals) > parseFixed(bins[j]!.lo!, decimals)).toBe(true);
  }
}

describe('quantileBins / binOf (provider-side binning)', () => {
  it('int: ≤ k bins with distinct exact edges, contiguous, covering; every value in its bin; missing → −1; order-independent', () => {
    const rng = mulberry32(11);
    const f = intField('x', '0', '100000');
    for (const k of [1, 2, 3, 5, 10]) {
      const values = Array.from({ length: 300 }, () =>
        rng() < 0.1 ? null : BigInt(Math.floor(rng() * rng() * 20000)),
      );
      const bins = quantileBins(f, values, k);
      expect(bins.length).toBeLessThanOrEqual(k);
      expectWellFormed(bins, 0);
      expect(new Set(bins.map((b) => b.lo)).size).toBe(bins.length);
      const counts = new Array<number>(bins.length).fill(0);
      for (const v of values) {
        const j = binOf(bins, v, 0);
        if (v === null) {
          expect(j).toBe(-1);
          continue;
        }
        const b = bins[j]!;
        expect(b.lo === null || v >= BigInt(b.lo)).toBe(true);
        expect(b.hi === null || v < BigInt(b.hi)).toBe(true);
        counts[j]!++;
      }
      expect(counts.every((c) => c > 0)).toBe(true); // no empty bin on the provider's own data
      expect(quantileBins(f, shuffle(values, rng), k)).toEqual(bins);
    }
  });

  it('the quantile edges are the order statistics sorted[⌊j·n/k⌋]', () => {
    const f = intField('age', '18', '100');
    expect(quantileBins(f, [30n, 40n, 50n, 60n, null], 2)).toEqual([
      { lo: null, hi: '50' },
      { lo: '50', hi: null },
    ]);
    // 10 values 1..10, k = 3 → sorted[3] = 4, sorted[6] = 7
    expect(
      quantileBins(
        f,
        Array.from({ length: 10 }, (_, i) => BigInt(i + 19)),
        3,
      ),
    ).toEqual([
      { lo: null, hi: '22' },
      { lo: '22', hi: '25' },
      { lo: '25', hi: null },
    ]);
  });

  it("decimal: edges are exact decimals at the field's places", () => {
    const f = decField('amt', '0', '1000');
    const bins = quantileBins(f, [1250n, 1250n, 1999n, 3000n, 4001n, 99999n], 3);
    expect(bins).toEqual([
      { lo: null, hi: '19.99' },
      { lo: '19.99', hi: '40.01' },
      { lo: '40.01', hi: null },
    ]);
    expect(binOf(bins, 1999n, 2)).toBe(1);
    expect(binOf(bins, 1998n, 2)).toBe(0);
    expect(binOf(bins, 100000n, 2)).toBe(2);
  });

  it('enum / bool: one bin per value present (absent values join the bin below); all missing → one bin', () => {
    const e = enumField('grade', ['A', 'B', 'M', 'C', 'D']);
    const bins = quantileBins(e, [4n, 0n, 2n, 2n, null, 0n], 2); // k does not limit enums
    expect(bins).toEqual([
      { lo: null, hi: '2' },
      { lo: '2', hi: '4' },
      { lo: '4', hi: null },
    ]);
    expect([0n, 1n, 2n, 3n, 4n, null].map((x) => binOf(bins, x, 0))).toEqual([0, 0, 1, 1, 2, -1]);
    const b: FieldSpec = {
      name: 'flag',
      label: 'flag',
      type: 'bool',
      decimals: 0,
      min: '0',
      max: '1',
      class: 'MODEL_ONLY',
    };
    expect(quantileBins(b, [1n, 0n, 1n], 5)).toEqual([
      { lo: null, hi: '1' },
      { lo: '1', hi: null },
    ]);
    expect(quantileBins(b, [1n, 1n], 5)).toEqual([{ lo: null, hi: null }]);
    expect(quantileBins(e, [null, null], 5)).toEqual([{ lo: null, hi: null }]);
    expect(quantileBins(intField('x', '0', '9'), [], 5)).toEqual([{ lo: null, hi: null }]);
  });

  it('int with at most k distinct values: one bin per value (a rare value keeps its own bin)', () => {
    const f = intField('dependents', '1', '2');
    const values = Array.from({ length: 100 }, (_, i) => (i < 85 ? 1n : 2n));
    expect(quantileBins(f, values, 5)).toEqual([
      { lo: null, hi: '2' },
      { lo: '2', hi: null },
    ]);
    expect(quantileBins(f, values, 1)).toEqual([{ lo: null, hi: null }]);
  });

  it('the bins make a valid scorecard: compileModel accepts them and binIndex agrees with binOf', () => {
    const rng = mulberry32(5);
    const fields = [
      intField('gc_a', '0', '500'),
      decField('gc_b', '-50', '50'),
      enumField('gc_c', ['x', 'y', 'z', 'w']),
    ];
    const values = fields.map((f) =>
      Array.from({ length: 200 }, () => {
        if (rng() < 0.05) return null;
        const lo = f.type === 'decimal' ? -5000 : 0;
        const hi = f.type === 'decimal' ? 5000 : f.type === 'enum' ? 3 : 500;
        return BigInt(lo + Math.floor(rng() * (hi - lo + 1)));
      }),
    );
    const specs: BinSpec[] = fields.map((f, i) => ({
      provider: 'p1',
      field: f.name,
      decimals: f.decimals,
      bins: quantileBins(f, values[i]!, 5),
    }));
    const model: ModelSpec = {
      id: 'binned',
      kind: 'scorecard',
      intercept: '0.5',
      terms: specs.map((s) => ({
        provider: s.provider,
        field: s.field,
        missingPoints: '0',
        bins: s.bins.map((b, j) => ({ ...b, points: String(j - 1.25) })),
      })),
    };
    const compiled = compileModel(
      model,
      (p, name) => (p === 'p1' ? fields.find((f) => f.name === name) : undefined),
      T,
    );
    expect(compiled.terms.map((t) => t.columns.length)).toEqual(specs.map((s) => s.bins.length));
    specs.forEach((s, i) => {
      for (const v of values[i]!)
        if (v !== null)
          expect(binIndex((model.terms[i] as ScorecardTerm).bins, v, s.decimals)).toBe(binOf(s.bins, v, s.decimals));
    });
  });

  it('refusals: token field, k out of range, non-bigint values, bins that do not cover', () => {
    const id: FieldSpec = {
      name: 'cert',
      label: 'cert',
      type: 'id',
      decimals: 0,
      min: '',
      max: '',
      class: 'VERIFY_ONLY',
    };
    expectCode(() => quantileBins(id, [], 5), 'SH_ERR_INVALID_ARGUMENT');
    for (const k of [0, MAX_BINS + 1, 2.5, Number.NaN])
      expectCode(() => quantileBins(intField('x', '0', '9'), [1n], k), 'SH_ERR_INVALID_ARGUMENT');
    expectCode(() => quantileBins(intField('x', '0', '9'), [1 as unknown as bigint], 5), 'SH_ERR_INVALID_ARGUMENT');
    expectCode(() => binOf([{ lo: '5', hi: null }], 4n, 0), 'SH_ERR_INVALID_ARGUMENT');
  });
});

describe('trainOptions', () => {
  it('fills defaults and keeps given values', () => {
    expect(trainOptions()).toEqual({
      scaleBits: 16,
      learningRate: 0.5,
      decay: 0.01,
      l2: 0.01,
      iterations: 10,
      tolerance: 1e-4,
    });
    expect(trainOptions()).toEqual(DEFAULT_TRAIN);
    expect(trainOptions({ iterations: 5, l2: 0 })).toEqual({ ...DEFAULT_TRAIN, iterations: 5, l2: 0 });
  });

  it('refuses each bad option by name (SH_ERR_INVALID_ARGUMENT)', () => {
    const bad: Array<Record<string, unknown>> = [
      { scaleBits: 0 },
      { scaleBits: 33 },
      { scaleBits: 16.5 },
      { learningRate: 0 },
      { learningRate: -1 },
      { learningRate: Infinity },
      { decay: -0.1 },
      { l2: -1 },
      { l2: '0.1' },
      { iterations: 0 },
      { iterations: 1.5 },
      { iterations: 10_001 },
      { tolerance: -1 },
      { tolerance: Number.NaN },
      { momentum: 0.9 },
    ];
    for (const o of bad) {
      try {
        trainOptions(o as Partial<TrainOptions>);
        expect.fail(`accepted ${JSON.stringify(o)}`);
      } catch (err) {
        expect(isCoded(err, 'SH_ERR_INVALID_ARGUMENT')).toBe(true);
        expect((err as { details: Record<string, unknown> }).details.option).toBe(Object.keys(o)[0]);
        expect((err as Error).message).toContain(`options.${Object.keys(o)[0]}`);
      }
    }
    expectCode(() => trainOptions(null as unknown as Partial<TrainOptions>), 'SH_ERR_INVALID_ARGUMENT');
  });
});

/** Random one-hot data: `sizes[f]` bins for feature f, ~10% missing per feature, random labels and weights. */
function randomProblem(rng: () => number, n: number, sizes: readonly number[], wBits: number) {
  const groups: number[][] = [];
  let next = 0;
  for (const k of sizes) groups.push(Array.from({ length: k }, () => next++));
  const X = Array.from({ length: next }, () => new Uint8Array(n));
  for (let i = 0; i < n; i++) {
    for (const g of groups) if (rng() >= 0.1) X[g[Math.floor(rng() * g.length)]!]![i] = 1;
  }
  const y = Uint8Array.from({ length: n }, () => (rng() < 0.3 ? 1 : 0));
  const rw = () => BigInt(Math.floor((rng() * 2 - 1) * 2 ** wBits));
  const model: FixedModel = { W0: rw(), W: Array.from({ length: next }, rw) };
  return { X, y, groups, model };
}

/** D_i straight from the definition. */
const directD = (m: FixedModel, X: readonly Uint8Array[], y: Uint8Array, s: bigint): bigint[] =>
  Array.from(y, (yi, i) => m.W0 + m.W.reduce((a, w, b) => a + w * BigInt(X[b]![i]!), 0n) + s * (2n - 4n * BigInt(yi)));

describe('taylorGradientSums / maxAbsD / sumGroupSize', () => {
  it('G equals 4s·Σ x·(0.5 + z/4 − y) computed in float (exact: every quantity is dyadic)', () => {
    const rng = mulberry32(77);
    for (let trial = 0; trial < 20; trial++) {
      const sb = 8 + Math.floor(rng() * 12);
      const s = 2 ** sb;
      const { X, y, model } = randomProblem(rng, 5 + Math.floor(rng() * 60), [1, 3, 5, 2], sb + 1);
      const { G0, G } = taylorGradientSums(model, X, y, sb);
      const w0 = Number(model.W0) / s;
      const w = model.W.map((W) => Number(W) / s);
      const r = Array.from(y, (yi, i) => 0.5 + (w0 + w.reduce((a, wb, b) => a + wb * X[b]![i]!, 0)) / 4 - yi);
      expect(Number(G0)).toBe(4 * s * r.reduce((a, v) => a + v, 0));
      G.forEach((g, b) => expect(Number(g)).toBe(4 * s * r.reduce((a, v, i) => a + v * X[b]![i]!, 0)));
    }
  });

  it('worked example: zero model, one column, labels (1, 0), s = 2^16 → D = (−2s, 2s), G0 = 0, G = −2s', () => {
    expect(taylorGradientSums({ W0: 0n, W: [0n] }, [Uint8Array.of(1, 0)], Uint8Array.of(1, 0), 16)).toEqual({
      G0: 0n,
      G: [-131072n],
    });
  });

  it('maxAbsD bounds every D_i (random models and inputs) and is attained when all weights share a sign', () => {
    const rng = mulberry32(31);
    for (let trial = 0; trial < 50; trial++) {
      const sb = 4 + Math.floor(rng() * 20);
      const { X, y, groups, model } = randomProblem(rng, 40, [2, 4, 1, 5, 3], sb + 2);
      const bound = maxAbsD(model, groups, sb);
      for (const d of directD(model, X, y, 1n << BigInt(sb))) expect(d < 0n ? -d : d).toBeLessThanOrEqual(bound);
    }
    // All-positive weights, y = 0: the subject holding each feature's largest bin reaches the bound exactly.
    const model: FixedModel = { W0: 7n, W: [1n, 9n, 4n, 2n, 6n] };
    const groups = [[0, 1], [2], [3, 4]];
    const X = [Uint8Array.of(0), Uint8Array.of(1), Uint8Array.of(1), Uint8Array.of(0), Uint8Array.of(1)];
    expect(maxAbsD(model, groups, 3)).toBe(7n + 9n + 4n + 6n + 16n);
    expect(directD(model, X, Uint8Array.of(0), 8n)[0]).toBe(7n + 9n + 4n + 6n + 16n);
    // A column no group lists counts on its own; a column listed twice is refused.
    expect(maxAbsD(model, [[0, 1], [2]], 3)).toBe(7n + 9n + 4n + 2n + 6n + 16n);
    expectCode(
      () =>
        maxAbsD(
          model,
          [
            [0, 1],
            [1, 2],
          ],
          3,
        ),
      'SH_ERR_INVALID_ARGUMENT',
    );
    expectCode(() => maxAbsD(model, [[0, 5]], 3), 'SH_ERR_INVALID_ARGUMENT');
  });

  it(`sumGroupSize: largest power of two ≤ slots with g·maxD ≤ (t−1)/2 = ${HALF} (t = ${T})`, () => {
    const rng = mulberry32(3);
    const cases = [0n, 1n, 290_261n, 67_108_864n, HALF / 4096n, HALF / 3n, HALF / 2n, HALF - 1n, HALF];
    for (let i = 0; i < 30; i++) cases.push(BigInt(Math.floor(rng() * Number(HALF))));
    for (const slots of [8192, 4096, 100, 1]) {
      for (const maxD of cases) {
        const g = sumGroupSize(maxD, T, slots);
        expect(Number.isInteger(Math.log2(g))).toBe(true);
        expect(g).toBeLessThanOrEqual(slots);
        expect(BigInt(g) * maxD).toBeLessThanOrEqual(HALF);
        expect(2 * g > slots || BigInt(2 * g) * maxD > HALF).toBe(true);
      }
    }
    expect(sumGroupSize(0n, T, 8192)).toBe(8192);
    expect(sumGroupSize(0n, T, 100)).toBe(64);
    expect(sumGroupSize(HALF, T, 8192)).toBe(1);
    expect(sumGroupSize(HALF / 2n, T, 8192)).toBe(2);
    expectCode(() => sumGroupSize(HALF + 1n, T, 8192), 'SH_ERR_BOUND_OVERFLOW');
    expectCode(() => sumGroupSize(-1n, T, 8192), 'SH_ERR_INVALID_ARGUMENT');
    expectCode(() => sumGroupSize(1n, T, 0), 'SH_ERR_INVALID_ARGUMENT');
  });

  it('refuses mismatched data', () => {
    const m: FixedModel = { W0: 0n, W: [0n, 0n] };
    expectCode(() => taylorGradientSums(m, [Uint8Array.of(1)], Uint8Array.of(0), 16), 'SH_ERR_INVALID_ARGUMENT');
    expectCode(
      () => taylorGradientSums(m, [Uint8Array.of(1), Uint8Array.of(0, 1)], Uint8Array.of(0), 16),
      'SH_ERR_INVALID_ARGUMENT',
    );
    expectCode(
      () => taylorGradientSums(m, [Uint8Array.of(2), Uint8Array.of(0)], Uint8Array.of(0), 16),
      'SH_ERR_INVALID_ARGUMENT',
    );
    expectCode(
      () => taylorGradientSums(m, [Uint8Array.of(1), Uint8Array.of(0)], Uint8Array.of(3), 16),
      'SH_ERR_INVALID_ARGUMENT',
    );
    expectCode(
      () => taylorGradientSums(m, [Uint8Array.of(1), Uint8Array.of(0)], Uint8Array.of(0), 0),
      'SH_ERR_INVALID_ARGUMENT',
    );
  });
});

describe('updateModel / trainPlainFixed / trainPlainFloat', () => {
  it('one step by hand: g_b = G_b/(4sn) + l2·w_b, no L2 on the intercept, lr_t = lr/(1 + decay·t)', () => {
    const o = trainOptions();
    // Zero model, X = [1, 0], y = [1, 0]: G0 = 0, G = −2s → g = −0.25, w = 0 + 0.5·0.25 = 0.125 → W = 8192.
    const s = 65536n;
    const r0 = updateModel({ W0: 0n, W: [0n] }, { G0: 0n, G: [-2n * s] }, 2, 0, o);
    expect(r0).toEqual({ model: { W0: 0n, W: [8192n] }, maxGrad: 0.25 });
    // w0 = 1, w = 1, iteration 10: lr = 0.5/1.1; g0 = G0/(4sn) = 0.5, g = 0.25 + 0.01·1 = 0.26.
    const r1 = updateModel({ W0: s, W: [s] }, { G0: 4n * s, G: [2n * s] }, 2, 10, o);
    const lr = 0.5 / 1.1;
    expect(r1.model.W0).toBe(BigInt(Math.round((1 - lr * 0.5) * 65536)));
    expect(r1.model.W[0]).toBe(BigInt(Math.round((1 - lr * 0.26) * 65536)));
    expect(r1.maxGrad).toBe(0.5);
    expectCode(() => updateModel({ W0: 0n, W: [0n] }, { G0: 0n, G: [] }, 2, 0, o), 'SH_ERR_INVALID_ARGUMENT');
    expectCode(() => updateModel({ W0: 0n, W: [0n] }, { G0: 0n, G: [0n] }, 0, 0, o), 'SH_ERR_INVALID_ARGUMENT');
    expectCode(() => updateModel({ W0: 0n, W: [0n] }, { G0: 0n, G: [0n] }, 2, -1, o), 'SH_ERR_INVALID_ARGUMENT');
  });

  it('trainPlainFixed: history[i] = taylorGradientSums of the model after i updates (what the encrypted trainer must reproduce)', () => {
    const rng = mulberry32(8);
    const { X, y } = randomProblem(rng, 120, [3, 4, 2], 0);
    const o = trainOptions({ iterations: 12 });
    const r = trainPlainFixed(X, y, o);
    expect(r.iterations).toBe(12);
    expect(r.history.length).toBe(12);
    let m: FixedModel = { W0: 0n, W: new Array<bigint>(X.length).fill(0n) };
    r.history.forEach((h, it) => {
      const sums = taylorGradientSums(m, X, y, o.scaleBits);
      expect({ G0: h.G0, G: h.G }).toEqual(sums);
      const u = updateModel(m, sums, y.length, it, o);
      expect(h.maxGrad).toBe(u.maxGrad);
      m = u.model;
    });
    expect(m).toEqual(r.model);
    expect(trainPlainFixed(X, y, o)).toEqual(r); // deterministic
  });

  it('early stop: the iteration whose max |g| < tolerance still updates the model, then training stops', () => {
    const rng = mulberry32(9);
    const { X, y } = randomProblem(rng, 80, [2, 3], 0);
    const r = trainPlainFixed(X, y, trainOptions({ tolerance: 10 }));
    expect(r.iterations).toBe(1);
    expect(r.model).toEqual(
      updateModel({ W0: 0n, W: new Array<bigint>(X.length).fill(0n) }, r.history[0]!, y.length, 0, trainOptions())
        .model,
    );
    expect(trainPlainFloat(X, y, trainOptions({ tolerance: 10 })).iterations).toBe(1);
  });

  it('the float trainer stays within quantization error of the fixed-point one', () => {
    const rng = mulberry32(10);
    const { X, y } = randomProblem(rng, 300, [4, 3, 5], 0);
    const o = trainOptions();
    const fx = trainPlainFixed(X, y, o);
    const fl = trainPlainFloat(X, y, o);
    expect(fl.iterations).toBe(fx.iterations);
    expect(Math.abs(Number(fx.model.W0) / 65536 - fl.w0)).toBeLessThan(1e-3);
    fl.w.forEach((w, b) => expect(Math.abs(Number(fx.model.W[b]!) / 65536 - w)).toBeLessThan(1e-3));
  });
});

describe('German Credit loader (UCI Statlog, models/german.ts)', () => {
  let gc: GermanSplit;
  beforeAll(() => {
    gc = germanSplit({ seed: 7, providers: 1 });
  });

  it('1000 rows, 300 bad (class 2 → label 1), distinct valid deterministic USCCs', () => {
    const rows = loadGerman();
    expect(rows.length).toBe(1000);
    expect(rows.filter((r) => r.label === 1).length).toBe(300);
    expect(rows[1]!.attributes.slice(0, 5)).toEqual(['A12', '48', 'A32', 'A43', '5951']); // line 2 of german.data, class 2
    expect(rows[1]!.label).toBe(1);
    expect(gc.subjects.length).toBe(1000);
    expect(new Set(gc.subjects).size).toBe(1000);
    expect(gc.subjects.every(isValidUscc)).toBe(true);
    expect([...gc.labels.values()].filter((l) => l === 1).length).toBe(300);
    expect(germanSplit({ seed: 7, providers: 1 }).subjects).toEqual(gc.subjects);
    expect(germanSplit({ seed: 8, providers: 1 }).subjects[0]).not.toBe(gc.subjects[0]);
  });

  it('attribute codes agree with german.doc', () => {
    const doc = readFileSync(join(dirname(GERMAN_PATH), 'german.doc'), 'utf8');
    const inDoc = new Set([...doc.matchAll(/\b(A\d{2,3})\s*:/g)].map((m) => m[1]!));
    const ours = new Set(GERMAN_ATTRIBUTES.flatMap((a) => a.codes ?? []));
    expect([...ours].sort()).toEqual([...inDoc].sort());
  });

  it('schemas pass validateSchema (own MODEL_ONLY fields, gc_ prefix) and the CSVs round-trip to german.data', () => {
    const rows = loadGerman();
    for (const split of [gc, germanSplit({ seed: 7, providers: 2 })]) {
      const all: string[] = [];
      for (const p of split.providers) {
        expect(validateSchema(p.schema)).toEqual(p.schema);
        expect(p.schema.fields.every((f) => f.class === 'MODEL_ONLY' && f.name.startsWith('gc_'))).toBe(true);
        const csv = parseCsv(p.csv, { requiredHeader: ['uscc'] });
        expect(csv.header).toEqual(['uscc', ...p.schema.fields.map((f) => f.name)]);
        expect(csv.rows.map((r) => r[0])).toEqual(split.subjects);
        csv.rows.forEach((r, i) =>
          p.schema.fields.forEach((f, k) => {
            const def = GERMAN_PROVIDER_FIELDS.find((x) => x.field.name === f.name)!;
            expect(r[k + 1]).toBe(rows[i]!.attributes[def.attr - 1]);
            expect(encodeValue(f, r[k + 1]!)).not.toBeNull();
          }),
        );
        all.push(...p.schema.fields.map((f) => f.name));
      }
      expect(all.sort()).toEqual(GERMAN_PROVIDER_FIELDS.map((f) => f.field.name as string).sort());
    }
    const two = germanSplit({ seed: 7, providers: 2 });
    expect(two.providers.map((p) => [p.provider, p.schema.category])).toEqual([
      ['gc_provider', 'tax'],
      ['gc_provider2', 'utilities'],
    ]);
    expect(gc.providers.map((p) => [p.provider, p.schema.category, p.schema.fields.length])).toEqual([
      ['gc_provider', 'tax', 11],
    ]);
    const labels = parseCsv(gc.labelsCsv);
    expect(labels.header).toEqual(['uscc', 'label']);
    expect(labels.rows.map(([u, l]) => [u, Number(l)])).toEqual(gc.subjects.map((u) => [u, gc.labels.get(u)]));
    expect(gc.bankFeatures.get(gc.subjects[0]!)).toMatchObject({ purpose: 'A43', foreign_worker: 'A201' });
  });

  it('trainTestSplit: stratified 70/30, disjoint, deterministic, independent of input order', () => {
    const { train, test } = trainTestSplit(gc.subjects, gc.labels, { seed: 42, testFraction: 0.3 });
    expect([train.length, test.length]).toEqual([700, 300]);
    expect(test.filter((u) => gc.labels.get(u) === 1).length).toBe(90);
    expect(new Set([...train, ...test]).size).toBe(1000);
    const again = trainTestSplit([...gc.subjects].reverse(), gc.labels, { seed: 42, testFraction: 0.3 });
    expect(new Set(again.test)).toEqual(new Set(test));
    expect(trainTestSplit(gc.subjects, gc.labels, { seed: 43, testFraction: 0.3 }).test).not.toEqual(test);
    expectCode(() => trainTestSplit(gc.subjects, gc.labels, { seed: 1, testFraction: 1 }), 'SH_ERR_INVALID_ARGUMENT');
    expectCode(() => trainTestSplit(['x'], gc.labels, { seed: 1 }), 'SH_ERR_INVALID_ARGUMENT');
  });

  it('refusals: missing file (SH_ERR_NOT_FOUND, names the path), malformed line (SH_ERR_CSV_MALFORMED), bad options', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sh-german-'));
    try {
      const missing = join(dir, 'nope.data');
      try {
        loadGerman(missing);
        expect.fail('loaded a missing file');
      } catch (err) {
        expect(isCoded(err, 'SH_ERR_NOT_FOUND')).toBe(true);
        expect((err as Error).message).toContain(missing);
      }
      const bad = join(dir, 'bad.data');
      const good = readFileSync(GERMAN_PATH, 'utf8').split('\n');
      writeFileSync(bad, [good[0], good[1]!.replace('A43', 'A99')].join('\n'));
      try {
        loadGerman(bad);
        expect.fail('loaded a malformed file');
      } catch (err) {
        expect(isCoded(err, 'SH_ERR_CSV_MALFORMED')).toBe(true);
        expect((err as { details: Record<string, unknown> }).details.line).toBe(2);
      }
      expectCode(() => germanSplit({ seed: 7, providers: 3 as 1 }), 'SH_ERR_INVALID_ARGUMENT');
      expectCode(
        () => germanSplit({ seed: 7, providers: 2, secondProviderFields: ['gc_nope'] }),
        'SH_ERR_INVALID_ARGUMENT',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('German Credit acceptance: fixed-point Taylor-LR vs float, scorecard export', () => {
  const SEED = 7;
  const SPLIT_SEED = 42;
  const BINS = 5;
  let gc: GermanSplit;
  let fields: FieldSpec[];
  let cellOf: (u: string, field: string) => string;
  let bins: BinSpec[];
  let train: string[];
  let test: string[];
  let o: TrainOptions;
  let fixed: ReturnType<typeof trainPlainFixed>;
  let float: ReturnType<typeof trainPlainFloat>;
  let Xtr: Uint8Array[];
  let Xte: Uint8Array[];

  const oneHot = (subjects: readonly string[]): Uint8Array[] =>
    bins.flatMap((b, k) => {
      const which = subjects.map((u) => binOf(b.bins, encodeValue(fields[k]!, cellOf(u, b.field)), b.decimals));
      return b.bins.map((_, j) => Uint8Array.from(which, (w) => (w === j ? 1 : 0)));
    });
  const logits = (X: readonly Uint8Array[], n: number, w0: number, w: readonly number[]): number[] =>
    Array.from({ length: n }, (_, i) => w.reduce((a, wb, b) => a + wb * X[b]![i]!, w0));
  const labelsOf = (subjects: readonly string[]) => Uint8Array.from(subjects, (u) => gc.labels.get(u)!);

  beforeAll(() => {
    gc = germanSplit({ seed: SEED, providers: 1 });
    const p = gc.providers[0]!;
    fields = p.schema.fields;
    const csv = parseCsv(p.csv);
    const rows = new Map(csv.rows.map((r) => [r[0]!, r]));
    cellOf = (u, field) => rows.get(u)![csv.header.indexOf(field)]!;
    ({ train, test } = trainTestSplit(gc.subjects, gc.labels, { seed: SPLIT_SEED, testFraction: 0.3 }));
    // The provider bins each field from its own records of the training cohort.
    bins = fields.map((f) => ({
      provider: p.provider,
      field: f.name,
      decimals: f.decimals,
      bins: quantileBins(
        f,
        train.map((u) => encodeValue(f, cellOf(u, f.name))),
        BINS,
      ),
    }));
    Xtr = oneHot(train);
    Xte = oneHot(test);
    // The acceptance figures are for 30 iterations (the default before the privacy noise made fewer iterations better).
    o = trainOptions({ iterations: 30 });
    fixed = trainPlainFixed(Xtr, labelsOf(train), o);
    float = trainPlainFloat(Xtr, labelsOf(train), o);
  });

  it('hold-out AUC of the fixed-point model within 0.01 of the float model', () => {
    const s = 2 ** o.scaleBits;
    const fw0 = Number(fixed.model.W0) / s;
    const fw = fixed.model.W.map((W) => Number(W) / s);
    const m = {
      trainFixed: auc(logits(Xtr, train.length, fw0, fw), labelsOf(train)),
      trainFloat: auc(logits(Xtr, train.length, float.w0, float.w), labelsOf(train)),
      holdoutFixed: auc(logits(Xte, test.length, fw0, fw), labelsOf(test)),
      holdoutFloat: auc(logits(Xte, test.length, float.w0, float.w), labelsOf(test)),
      holdoutKsFixed: ks(logits(Xte, test.length, fw0, fw), labelsOf(test)),
    };
    console.log(
      `German Credit (seed ${SEED}, stratified 70/30 seed ${SPLIT_SEED}, ${BINS} bins → ${Xtr.length} columns): ` +
        `iterations fixed ${fixed.iterations} / float ${float.iterations}, last max|g| ${fixed.history.at(-1)!.maxGrad.toExponential(3)}; ` +
        `AUC train fixed ${m.trainFixed.toFixed(4)} float ${m.trainFloat.toFixed(4)}; hold-out fixed ${m.holdoutFixed.toFixed(4)} float ${m.holdoutFloat.toFixed(4)}; hold-out KS ${m.holdoutKsFixed.toFixed(4)}`,
    );
    expect(Math.abs(m.holdoutFixed - m.holdoutFloat)).toBeLessThanOrEqual(0.01);
    expect(m.holdoutFixed).toBeGreaterThan(0.7); // the model learned something real (published LR results: ≈ 0.75–0.80)
    expect(fixed.iterations).toBe(float.iterations);
  });

  it("the default options keep every iteration's sums exact with whole-block groups (t ≈ 2^40, 8192 slots)", () => {
    const groups: number[][] = [];
    let next = 0;
    for (const b of bins) groups.push(b.bins.map(() => next++));
    let m: FixedModel = { W0: 0n, W: new Array<bigint>(Xtr.length).fill(0n) };
    let worst = 0n;
    fixed.history.forEach((h, it) => {
      const bound = maxAbsD(m, groups, o.scaleBits);
      if (bound > worst) worst = bound;
      for (const d of directD(m, Xtr, labelsOf(train), 1n << BigInt(o.scaleBits)))
        expect(d < 0n ? -d : d).toBeLessThanOrEqual(bound);
      m = updateModel(m, h, train.length, it, o).model;
    });
    expect(worst).toBeLessThan(1n << 19n);
    expect(sumGroupSize(worst, T, 8192)).toBe(8192);
  });

  it('the scorecard (logit) compiles, passes vetting, and evaluatePlain on the provider CSV reproduces the logit (≤ 1e−5) and the AUC', () => {
    const model = toScorecard('gc-logit-v1', bins, fixed.model, o.scaleBits);
    expect(model.kind).toBe('scorecard');
    expect(model.terms.every((t) => 'missingPoints' in t && t.missingPoints === '0')).toBe(true);
    const lookup = (p: string, f: string) => (p === 'gc_provider' ? fields.find((x) => x.name === f) : undefined);
    const compiled = compileModel(model, lookup, T);
    vetModel(compiled, DEFAULT_POLICY);
    const s = 2 ** o.scaleBits;
    const all = [...train, ...test];
    const X = oneHot(all);
    const exact = logits(
      X,
      all.length,
      Number(fixed.model.W0) / s,
      fixed.model.W.map((W) => Number(W) / s),
    );
    const scored = all.map((u) => {
      const r = evaluatePlain(
        model,
        (_p, f) => lookup('gc_provider', f)!,
        (_p, f) => cellOf(u, f),
      );
      if (r.status !== 'OK') throw new Error(`NO_DATA for ${u}`);
      return Number(r.score);
    });
    let worst = 0;
    scored.forEach((v, i) => {
      worst = Math.max(worst, Math.abs(v - exact[i]!));
    });
    console.log(
      `scorecard: ${model.terms.length} terms, ${X.length} bins, max |scorecard − logit| = ${worst.toExponential(2)}`,
    );
    expect(worst).toBeLessThanOrEqual(1e-5);
    const n = train.length;
    // Rounding points to 6 places could only swap two subjects whose logits are within 1.3e−5; none are here.
    expect(auc(scored.slice(n), labelsOf(test))).toBe(auc(exact.slice(n), labelsOf(test)));
    expect(auc(scored.slice(0, n), labelsOf(train))).toBe(auc(exact.slice(0, n), labelsOf(train)));
  });

  it('the PDO scorecard: higher = better, AUC on −score equals the logit AUC, baseScore at the base odds', () => {
    const scaling = { pdo: 20, baseScore: 600, baseOdds: 50 };
    const logit = toScorecard('gc-logit-v1', bins, fixed.model, o.scaleBits);
    const pdo = toScorecard('gc-points-v1', bins, fixed.model, o.scaleBits, scaling);
    const lookup = (_p: string, f: string) => fields.find((x) => x.name === f)!;
    compileModel(pdo, lookup, T);
    const score = (m: ModelSpec, u: string) => {
      const r = evaluatePlain(m, lookup, (_p, f) => cellOf(u, f));
      return r.status === 'OK' ? Number(r.score) : Number.NaN;
    };
    const lg = test.map((u) => score(logit, u));
    const pts = test.map((u) => score(pdo, u));
    const factor = scaling.pdo / Math.LN2;
    // points = offset − factor·logit, offset = baseScore − factor·ln(baseOdds): at odds good:bad = 50 (logit = −ln 50) → 600.
    pts.forEach((p, i) =>
      expect(Math.abs(p - (scaling.baseScore - factor * (lg[i]! + Math.log(scaling.baseOdds))))).toBeLessThan(1e-3),
    );
    const holdout = auc(lg, labelsOf(test));
    expect(
      auc(
        pts.map((p) => -p),
        labelsOf(test),
      ),
    ).toBe(holdout);
    expect(auc(pts, labelsOf(test))).toBeCloseTo(1 - holdout, 12);
    expectCode(
      () => toScorecard('x', bins, fixed.model, o.scaleBits, { ...scaling, pdo: 0 }),
      'SH_ERR_INVALID_ARGUMENT',
    );
    expectCode(
      () => toScorecard('x', bins, fixed.model, o.scaleBits, { ...scaling, baseOdds: -1 }),
      'SH_ERR_INVALID_ARGUMENT',
    );
    expectCode(() => toScorecard('x', bins, { W0: 0n, W: [0n] }, o.scaleBits), 'SH_ERR_INVALID_ARGUMENT');
    expectCode(() => toScorecard('bad id!', bins, fixed.model, o.scaleBits), 'SH_ERR_MODEL_INVALID');
  });
});
