/**
 * Joint training (联合建模, DESIGN §5): the deterministic plaintext parts both trainers share — provider-side binning,
 * the exact integer gradient sums, the bound calculator for the sum group size, the model update, the plaintext
 * reference trainers and the scorecard conversion. The encrypted trainer (engine/protocols/train.ts) computes the
 * same integers on ciphertexts and calls {@link updateModel} with them, so it matches {@link trainPlainFixed}
 * iteration by iteration, bit for bit.
 *
 * The model is vertical logistic regression on **binned one-hot** features with the FATE-style Taylor sigmoid
 * σ(z) ≈ 0.5 + z/4. With s = 2^scaleBits and integer weights W = round(w·s), per subject i
 *   D_i = W0 + Σ_b W_b·X_ib + s·(2 − 4·y_i) = 4·s·(σ̃(z_i) − y_i),
 * so the log-loss gradient is Σ_i X_ib·D_i / (4·s·n) — exact integers up to the last division, which is the point:
 * the engine can obtain G_b = Σ_i X_ib·D_i exactly under BFV (masked group sums) and nothing is rounded before the
 * update step.
 *
 * Column order convention (everywhere): the one-hot columns are all bins of bins[0], then all bins of bins[1], …
 * A missing value gives a subject an all-zero row for that feature (its contribution is 0, the scorecard's
 * `missingPoints: '0'`).
 */
import { describe, fail } from '../core/errors.ts';
import { formatFixed, parseFixed } from '../core/fixed.ts';
import type { FieldSpec } from '../sandbox/catalog.ts';
import { parseModel, type ModelSpec } from './model.ts';

// --- binning --------------------------------------------------------------------------------------------------

/**
 * The bins of one provider field used in training: half-open `[lo, hi)` exact decimal strings at the field's
 * `decimals`, `null` = unbounded; contiguous, sorted, first `lo` and last `hi` null (so they cover the field and can be
 * used as scorecard bins unchanged, models/model.ts).
 */
export interface BinSpec {
  provider: string;
  field: string;
  decimals: number;
  bins: Array<{ lo: string | null; hi: string | null }>;
  /**
   * Standardized (not binned) features: one column X' = clip(round((x − mean)/std·2^STD_BITS), ±STD_CLIP) from the
   * provider's published statistics; `bins` is then the single bin [null, null].
   */
  standardize?: { mean: number; std: number };
}

/** Standardized features: value scale 2^STD_BITS and clip |X'| ≤ STD_CLIP (8 standard deviations). */
export const STD_BITS = 5;
export const STD_CLIP = 256;

/**
 * The standardized training value of one fixed-point field value (missing → 0, the mean), shared by the provider
 * (which encrypts it) and every plaintext reference: clip(round((x/10^d − mean)/std·2^STD_BITS), ±STD_CLIP).
 */
export function standardizedValue(x: bigint | null, decimals: number, mean: number, std: number): number {
  if (x === null) return 0;
  if (!(std > 0)) return 0;
  const v = Math.round(((Number(x) / 10 ** decimals - mean) / std) * 2 ** STD_BITS);
  return Math.max(-STD_CLIP, Math.min(STD_CLIP, v));
}

/** Upper limit on `k` in {@link quantileBins}: more bins than this are noise on any cohort the policy admits. */
export const MAX_BINS = 64;

/**
 * Provider-side binning of one field from its own fixed-point values (`value·10^decimals`, null = missing), as the
 * provider does in `prepareTraining` (DESIGN §5). Deterministic: the same values in any order give the same bins.
 *
 * - enum / bool: one bin per value present. With present values v1 < … < vp the bins are
 *   [null, v2), [v2, v3), …, [vp, null), so an absent value shares the bin of the nearest present value below it (or
 *   the first bin).
 * - int / decimal with at most `k` distinct values present: one bin per value, as for enum. (Quantile edges would
 *   merge a rare value into its neighbour: German Credit's dependents, 1 for 84% of applicants, would get one bin.)
 * - int / decimal otherwise: up to `k` quantile bins. Candidate edges are the order statistics sorted[⌊j·n/k⌋],
 *   j = 1..k−1; edges equal to the minimum or to the previous edge are dropped, so edges are distinct exact values of
 *   the field and every bin holds at least one of the given values. Fewer than `k` bins come out when values repeat.
 * - no value present at all: one bin [null, null].
 *
 * The edges are order statistics of the provider's own cohort records (aggregates it signs into its statement); no
 * row leaves the provider.
 *
 * @throws SH_ERR_INVALID_ARGUMENT for an id (token) field, a `k` outside 1..{@link MAX_BINS}, or a value that is not a
 *   bigint or null.
 * @example quantileBins(ageSpec, [30n, 40n, 50n, 60n, null], 2) // [{ lo: null, hi: '50' }, { lo: '50', hi: null }]
 */
export function quantileBins(spec: FieldSpec, values: ReadonlyArray<bigint | null>, k: number): BinSpec['bins'] {
  if (spec.type === 'id') fail('SH_ERR_INVALID_ARGUMENT', `"spec" expected a numeric, bool or enum field, got token field ${spec.name}`, { field: spec.name });
  if (!Number.isInteger(k) || k < 1 || k > MAX_BINS) fail('SH_ERR_INVALID_ARGUMENT', `"k" expected an integer 1..${MAX_BINS}, got ${describe(k)}`);
  const present: bigint[] = [];
  values.forEach((v, i) => {
    if (v === null) return;
    if (typeof v !== 'bigint') fail('SH_ERR_INVALID_ARGUMENT', `"values[${i}]" expected a bigint or null, got ${describe(v)}`, { field: spec.name });
    present.push(v);
  });
  present.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const n = present.length;
  const edges: bigint[] = [];
  const distinct: bigint[] = [];
  for (let i = 1; i < n; i++) if (present[i]! !== present[i - 1]!) distinct.push(present[i]!);
  if (spec.type === 'enum' || spec.type === 'bool' || distinct.length + 1 <= k) {
    edges.push(...distinct);
  } else {
    for (let j = 1; j < k && n > 0; j++) {
      const e = present[Math.floor((j * n) / k)]!;
      if (e > present[0]! && (edges.length === 0 || e > edges[edges.length - 1]!)) edges.push(e);
    }
  }
  const text = (e: bigint | undefined): string | null => (e === undefined ? null : formatFixed(e, spec.decimals));
  return Array.from({ length: edges.length + 1 }, (_, j) => ({ lo: text(edges[j - 1]), hi: text(edges[j]) }));
}

/**
 * Index of the bin holding `x` (fixed-point at `decimals`), or −1 for a missing value (null). Bins are half-open
 * [lo, hi) as in {@link quantileBins}.
 * @throws SH_ERR_INVALID_ARGUMENT when no bin holds `x` (bins that do not cover the value) or an edge is not an
 *   exact decimal with at most `decimals` places.
 * @example binOf([{ lo: null, hi: '50' }, { lo: '50', hi: null }], 50n, 0) === 1
 */
export function binOf(bins: BinSpec['bins'], x: bigint | null, decimals: number): number {
  if (x === null) return -1;
  for (let j = 0; j < bins.length; j++) {
    const b = bins[j]!;
    if ((b.lo === null || x >= parseFixed(b.lo, decimals, `bins[${j}].lo`)) && (b.hi === null || x < parseFixed(b.hi, decimals, `bins[${j}].hi`))) return j;
  }
  return fail('SH_ERR_INVALID_ARGUMENT', `"bins" expected to cover every value, got none holding ${formatFixed(x, decimals)}`);
}

// --- options --------------------------------------------------------------------------------------------------

/** Training options (DESIGN §5). All are part of the signed training request and of the model's provenance. */
export interface TrainOptions {
  /** Weights are integers W = round(w·2^scaleBits); the Taylor label term is s·(2 − 4y) with s = 2^scaleBits. 1..32. */
  scaleBits: number;
  /** Initial learning rate (> 0). */
  learningRate: number;
  /** Learning-rate schedule lr_t = learningRate / (1 + decay·t), t = 0-based iteration (≥ 0). */
  decay: number;
  /** L2 penalty on the bin weights, not on the intercept (≥ 0). */
  l2: number;
  /** Most iterations (1..10000). */
  iterations: number;
  /** Early stop after the first iteration whose max |gradient| is below this (≥ 0; 0 = never stop early). */
  tolerance: number;
}

/**
 * The defaults: 16 fractional bits, lr 0.5 decaying by 1/(1 + 0.01·t), L2 0.01, at most 30 iterations, stop when
 * max |g| < 1e-4. Measured on German Credit (5 bins, 11 fields → 48 columns, 700 subjects): max|D| stays below 2^19
 * (290 261 at the last iteration), so one sum group spans all 8192 slots for t ≈ 2^40; the 30 iterations end at
 * max |g| ≈ 0.015 (the cap, not the tolerance, stops training; more iterations did not improve hold-out AUC).
 */
export const DEFAULT_TRAIN: Readonly<TrainOptions> = Object.freeze({
  scaleBits: 16, learningRate: 0.5, decay: 0.01, l2: 0.01, iterations: 30, tolerance: 1e-4,
});

/**
 * Validate options up front into a filled object (STYLE §5); `undefined` members take {@link DEFAULT_TRAIN}.
 * @throws SH_ERR_INVALID_ARGUMENT naming the option (wrong type, range, or an unknown member).
 * @example trainOptions({ iterations: 10 }).learningRate === 0.5
 */
export function trainOptions(o?: Partial<TrainOptions>): TrainOptions {
  if (o !== undefined && (o === null || typeof o !== 'object' || Array.isArray(o))) {
    fail('SH_ERR_INVALID_ARGUMENT', `"options" expected an object, got ${describe(o)}`);
  }
  const given = (o ?? {}) as Record<string, unknown>;
  for (const k of Object.keys(given)) {
    if (!(k in DEFAULT_TRAIN)) fail('SH_ERR_INVALID_ARGUMENT', `"options.${k}" is not a training option (expected one of ${Object.keys(DEFAULT_TRAIN).join(', ')})`, { option: k });
  }
  const pick = (k: keyof TrainOptions, ok: (v: number) => boolean, what: string): number => {
    const v = given[k] === undefined ? DEFAULT_TRAIN[k] : given[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) fail('SH_ERR_INVALID_ARGUMENT', `"options.${k}" expected ${what}, got ${describe(v)}`, { option: k });
    return v;
  };
  return {
    scaleBits: pick('scaleBits', (v) => Number.isInteger(v) && v >= 1 && v <= 32, 'an integer 1..32'),
    learningRate: pick('learningRate', (v) => v > 0, 'a finite number > 0'),
    decay: pick('decay', (v) => v >= 0, 'a finite number ≥ 0'),
    l2: pick('l2', (v) => v >= 0, 'a finite number ≥ 0'),
    iterations: pick('iterations', (v) => Number.isInteger(v) && v >= 1 && v <= 10_000, 'an integer 1..10000'),
    tolerance: pick('tolerance', (v) => v >= 0, 'a finite number ≥ 0'),
  };
}

// --- the exact integer part -----------------------------------------------------------------------------------

/** A fixed-point model: intercept W0 and one weight per one-hot column, all at scale 2^scaleBits. */
export interface FixedModel {
  W0: bigint;
  /** One per one-hot column (column order: all bins of bins[0], then bins[1], …). */
  W: bigint[];
}

/** Gradient sums of one iteration: G0 = Σ_i D_i, G[b] = Σ_i X_ib·D_i. */
export interface GradientSums {
  G0: bigint;
  G: bigint[];
}

/** A training column: one-hot 0/1 (Uint8Array) or standardized values (Int16Array, |x| ≤ STD_CLIP). */
export type Column = Uint8Array | Int16Array;

function checkData(X: readonly Column[], y: Uint8Array, nCols?: number): number {
  if (!(y instanceof Uint8Array)) fail('SH_ERR_INVALID_ARGUMENT', `"y" expected a Uint8Array, got ${describe(y)}`);
  const n = y.length;
  if (n === 0) fail('SH_ERR_INVALID_ARGUMENT', '"y" expected at least one subject, got 0');
  for (let i = 0; i < n; i++) if (y[i]! > 1) fail('SH_ERR_INVALID_ARGUMENT', `"y[${i}]" expected 0 or 1, got ${y[i]}`);
  if (!Array.isArray(X)) fail('SH_ERR_INVALID_ARGUMENT', `"X" expected an array of Uint8Array columns, got ${describe(X)}`);
  if (nCols !== undefined && X.length !== nCols) fail('SH_ERR_INVALID_ARGUMENT', `"X" expected ${nCols} columns (one per weight), got ${X.length}`);
  X.forEach((col, b) => {
    if (!(col instanceof Uint8Array || col instanceof Int16Array) || col.length !== n) fail('SH_ERR_INVALID_ARGUMENT', `"X[${b}]" expected a Uint8Array or Int16Array of ${n} (one per label), got ${describe(col)}`);
    if (col instanceof Uint8Array) for (let i = 0; i < n; i++) if (col[i]! > 1) fail('SH_ERR_INVALID_ARGUMENT', `"X[${b}][${i}]" expected 0 or 1, got ${col[i]}`);
  });
  return n;
}

function checkScale(scaleBits: number): bigint {
  if (!Number.isInteger(scaleBits) || scaleBits < 1 || scaleBits > 32) fail('SH_ERR_INVALID_ARGUMENT', `"scaleBits" expected an integer 1..32, got ${describe(scaleBits)}`);
  return 1n << BigInt(scaleBits);
}

function checkModel(model: FixedModel): void {
  if (typeof model !== 'object' || model === null || typeof model.W0 !== 'bigint' || !Array.isArray(model.W) || !model.W.every((w) => typeof w === 'bigint')) {
    fail('SH_ERR_INVALID_ARGUMENT', `"model" expected { W0: bigint, W: bigint[] }, got ${describe(model)}`);
  }
}

/**
 * The integers the encrypted path computes, exactly (DESIGN §5): D_i = W0 + Σ_b W_b·X_ib + s·(2 − 4·y_i) with
 * s = 2^scaleBits, G_b = Σ_i X_ib·D_i, G_0 = Σ_i D_i. X is one-hot 0/1 (a Uint8Array per column, one entry per
 * subject), y in {0, 1} (1 = bad/default). D_i = 4·s·(0.5 + z_i/4 − y_i) for the model's logit z_i.
 * @throws SH_ERR_INVALID_ARGUMENT for mismatched lengths, non-0/1 entries, or a bad scaleBits.
 * @example taylorGradientSums({ W0: 0n, W: [0n] }, [Uint8Array.of(1, 0)], Uint8Array.of(1, 0), 16) // { G0: 0n, G: [-131072n] }
 */
export function taylorGradientSums(model: FixedModel, X: readonly Column[], y: Uint8Array, scaleBits: number, columnBits = 0): GradientSums {
  checkModel(model);
  const s = checkScale(scaleBits);
  const n = checkData(X, y, model.W.length);
  // With standardized columns (scale c = 2^columnBits): D_i = c·(W0 + s·(2 − 4y_i)) + Σ_b W_b·X_ib.
  const c = 1n << BigInt(columnBits);
  const D = new Array<bigint>(n);
  for (let i = 0; i < n; i++) D[i] = c * (model.W0 + (y[i] === 1 ? -2n * s : 2n * s));
  X.forEach((col, b) => {
    const w = model.W[b]!;
    if (w !== 0n) for (let i = 0; i < n; i++) if (col[i] !== 0) D[i]! += w * BigInt(col[i]!);
  });
  let G0 = 0n;
  for (let i = 0; i < n; i++) G0 += D[i]!;
  const G = X.map((col) => {
    let g = 0n;
    for (let i = 0; i < n; i++) if (col[i] !== 0) g += BigInt(col[i]!) * D[i]!;
    return g;
  });
  return { G0, G };
}

/**
 * Bound calculator for one iteration (DESIGN §5, §3): the largest |D_i| over any one-hot inputs and labels,
 * |W0| + Σ_features max_{b in feature} |W_b| + 2s. `groups` lists, per feature, the indices of its one-hot columns (at
 * most one of them is 1 per subject); a column listed in no group is counted as a feature of its own, so the bound
 * never falls short.
 * @throws SH_ERR_INVALID_ARGUMENT for a column index out of range or listed twice.
 * @example maxAbsD({ W0: -3n, W: [1n, -5n, 2n] }, [[0, 1], [2]], 1) === 3n + 5n + 2n + 4n
 */
export function maxAbsD(model: FixedModel, groups: ReadonlyArray<readonly number[]>, scaleBits: number, columnBits = 0, columnMax = 1n): bigint {
  checkModel(model);
  const s = checkScale(scaleBits);
  const abs = (v: bigint): bigint => (v < 0n ? -v : v);
  const seen = new Uint8Array(model.W.length);
  let total = (abs(model.W0) + 2n * s) << BigInt(columnBits);
  groups.forEach((g, f) => {
    let m = 0n;
    for (const b of g) {
      if (!Number.isInteger(b) || b < 0 || b >= model.W.length) fail('SH_ERR_INVALID_ARGUMENT', `"groups[${f}]" expected column indices 0..${model.W.length - 1}, got ${describe(b)}`);
      if (seen[b]) fail('SH_ERR_INVALID_ARGUMENT', `"groups[${f}]" lists column ${b}, which another group already holds`);
      seen[b] = 1;
      if (abs(model.W[b]!) > m) m = abs(model.W[b]!);
    }
    total += m * columnMax;
  });
  model.W.forEach((w, b) => { if (!seen[b]) total += abs(w) * columnMax; });
  return total;
}

/**
 * The sum group size for the custodian's `sum` mode: the largest power of two g ≤ `slots` with g·maxD ≤ (t−1)/2, so
 * every group sum of g values |D_i|·X (or |D_i|) ≤ maxD is recovered exactly from its centered residue.
 * @throws SH_ERR_BOUND_OVERFLOW when even g = 1 fails (maxD > (t−1)/2); SH_ERR_INVALID_ARGUMENT for a negative maxD,
 *   t < 3 or slots not a positive integer.
 * @example sumGroupSize(1n << 20n, 1099511480321n, 8192) === 8192
 */
export function sumGroupSize(maxD: bigint, t: bigint, slots: number): number {
  if (typeof maxD !== 'bigint' || maxD < 0n) fail('SH_ERR_INVALID_ARGUMENT', `"maxD" expected a bigint ≥ 0, got ${describe(maxD)}`);
  if (typeof t !== 'bigint' || t < 3n) fail('SH_ERR_INVALID_ARGUMENT', `"t" expected a bigint ≥ 3, got ${describe(t)}`);
  if (!Number.isSafeInteger(slots) || slots < 1) fail('SH_ERR_INVALID_ARGUMENT', `"slots" expected a positive integer, got ${describe(slots)}`);
  const half = (t - 1n) / 2n;
  if (maxD > half) {
    fail('SH_ERR_BOUND_OVERFLOW', `training: |D| can reach ${maxD}, more than (t−1)/2 = ${half} even for single-subject sums; lower scaleBits or the learning rate`, { bound: maxD.toString(), limit: half.toString() });
  }
  let g = 1;
  while (g * 2 <= slots && BigInt(g * 2) * maxD <= half) g *= 2;
  return g;
}

/**
 * One update step from exact gradient sums (deterministic float64 arithmetic: only + − × ÷ and Math.round, so both
 * trainers get the same bits): g_0 = G_0/(4·s·n), g_b = G_b/(4·s·n) + l2·w_b (no L2 on the intercept),
 * w ← w − lr_t·g with lr_t = learningRate/(1 + decay·iteration), then re-quantized W = Math.round(w·s) (ties toward
 * +∞). Returns the new model and max |g| (over the intercept and every column) for the early stop, which the caller
 * applies after the update (the model of the last iteration is always updated).
 * @throws SH_ERR_INVALID_ARGUMENT for mismatched lengths, n or iteration out of range; SH_ERR_BOUND_OVERFLOW when a
 *   weight leaves the exactly representable range (|w·s| ≥ 2^53: a diverging learning rate).
 * @example updateModel(model, taylorGradientSums(model, X, y, 16), y.length, 0, trainOptions())
 */
export function updateModel(model: FixedModel, sums: GradientSums, n: number, iteration: number, o: TrainOptions, columnBits = 0): { model: FixedModel; maxGrad: number } {
  checkModel(model);
  const s = checkScale(o.scaleBits);
  if (typeof sums !== 'object' || sums === null || typeof sums.G0 !== 'bigint' || !Array.isArray(sums.G) || sums.G.length !== model.W.length || !sums.G.every((g) => typeof g === 'bigint')) {
    fail('SH_ERR_INVALID_ARGUMENT', `"sums" expected { G0: bigint, G: bigint[${model.W.length}] }, got ${describe(sums)}`);
  }
  if (!Number.isSafeInteger(n) || n < 1) fail('SH_ERR_INVALID_ARGUMENT', `"n" expected a positive integer, got ${describe(n)}`);
  if (!Number.isSafeInteger(iteration) || iteration < 0) fail('SH_ERR_INVALID_ARGUMENT', `"iteration" expected an integer ≥ 0, got ${describe(iteration)}`);
  const sf = Number(s);
  const denom = 4 * sf * n;
  const lr = o.learningRate / (1 + o.decay * iteration);
  const quantize = (w: number, what: string): bigint => {
    const q = Math.round(w * sf);
    if (!Number.isSafeInteger(q)) fail('SH_ERR_BOUND_OVERFLOW', `training diverged: ${what} = ${w} at iteration ${iteration}; lower the learning rate`, { iteration });
    return BigInt(q);
  };
  // Standardized columns carry a factor c = 2^columnBits in D and another in X: g_0 = G_0/(4sn·c), g_b = G_b/(4sn·c²).
  const c = 2 ** columnBits;
  const g0 = Number(sums.G0) / (denom * c);
  let maxGrad = Math.abs(g0);
  const W0 = quantize(Number(model.W0) / sf - lr * g0, 'intercept');
  const W = model.W.map((Wb, b) => {
    const w = Number(Wb) / sf;
    const g = Number(sums.G[b]!) / (denom * c * c) + o.l2 * w;
    if (Math.abs(g) > maxGrad) maxGrad = Math.abs(g);
    return quantize(w - lr * g, `weight ${b}`);
  });
  return { model: { W0, W }, maxGrad };
}

/**
 * Whole plaintext fixed-point training: the reference the encrypted trainer must match exactly, iteration by
 * iteration. Starts from the zero model; each iteration computes {@link taylorGradientSums} on the current model,
 * applies {@link updateModel}, records `{ G0, G, maxGrad }`, and stops after an iteration with maxGrad < tolerance or
 * after `iterations`. `iterations` in the result = history.length.
 * @throws SH_ERR_INVALID_ARGUMENT (data or options), SH_ERR_BOUND_OVERFLOW (divergence).
 * @example trainPlainFixed(X, y, trainOptions()).model.W.length === X.length
 */
export function trainPlainFixed(X: readonly Column[], y: Uint8Array, o: TrainOptions, columnBits = 0): { model: FixedModel; iterations: number; history: Array<GradientSums & { maxGrad: number }> } {
  const opts = trainOptions(o);
  const n = checkData(X, y);
  let model: FixedModel = { W0: 0n, W: new Array<bigint>(X.length).fill(0n) };
  const history: Array<GradientSums & { maxGrad: number }> = [];
  for (let it = 0; it < opts.iterations; it++) {
    const sums = taylorGradientSums(model, X, y, opts.scaleBits, columnBits);
    const upd = updateModel(model, sums, n, it, opts, columnBits);
    history.push({ ...sums, maxGrad: upd.maxGrad });
    model = upd.model;
    if (upd.maxGrad < opts.tolerance) break;
  }
  return { model, iterations: history.length, history };
}

/**
 * The same Taylor-LR in float64 on the same one-hot data, without quantization (for reporting `plaintextAuc`, the
 * DESIGN §5 acceptance comparison): g_0 = Σ(0.5 + z_i/4 − y_i)/n, g_b = Σ X_ib·(0.5 + z_i/4 − y_i)/n + l2·w_b, same
 * schedule and early stop as {@link trainPlainFixed}. `scaleBits` is ignored.
 * @throws SH_ERR_INVALID_ARGUMENT (data or options).
 * @example const { w0, w } = trainPlainFloat(X, y, trainOptions()) // logit = w0 + Σ w_b·X_b
 */
export function trainPlainFloat(X: readonly Column[], y: Uint8Array, o: TrainOptions, columnBits = 0): { w0: number; w: number[]; iterations: number } {
  const opts = trainOptions(o);
  const n = checkData(X, y);
  let w0 = 0;
  let w = new Array<number>(X.length).fill(0);
  let iterations = 0;
  const r = new Float64Array(n);
  for (let it = 0; it < opts.iterations; it++) {
    for (let i = 0; i < n; i++) r[i] = w0;
    const c = 2 ** columnBits;
    X.forEach((col, b) => { const wb = w[b]!; if (wb !== 0) for (let i = 0; i < n; i++) if (col[i] !== 0) r[i]! += (wb * col[i]!) / c; });
    for (let i = 0; i < n; i++) r[i] = 0.5 + r[i]! / 4 - y[i]!;
    let g0 = 0;
    for (let i = 0; i < n; i++) g0 += r[i]!;
    g0 /= n;
    let maxGrad = Math.abs(g0);
    const lr = opts.learningRate / (1 + opts.decay * it);
    w = w.map((wb, b) => {
      const col = X[b]!;
      let g = 0;
      for (let i = 0; i < n; i++) if (col[i] !== 0) g += (r[i]! * col[i]!) / 2 ** columnBits;
      g = g / n + opts.l2 * wb;
      if (Math.abs(g) > maxGrad) maxGrad = Math.abs(g);
      return wb - lr * g;
    });
    w0 -= lr * g0;
    iterations++;
    if (maxGrad < opts.tolerance) break;
  }
  return { w0, w, iterations };
}

// --- scorecard ------------------------------------------------------------------------------------------------

/** Exact decimal text of a float rounded to 6 places (toFixed rounds the exact binary value, ties away from 0). */
function points6(x: number, what: string): string {
  if (!Number.isFinite(x) || Math.abs(x) >= 1e15) fail('SH_ERR_MODEL_INVALID', `"${what}" expected a finite value below 1e15 in magnitude, got ${x}`);
  return formatFixed(parseFixed(x.toFixed(6), 6), 6);
}

/**
 * Scorecard conversion (DESIGN §5 → §3): bins + fixed-point weights → a `scorecard` ModelSpec the scoring path accepts
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
export function toScorecard(id: string, bins: readonly BinSpec[], model: FixedModel, scaleBits: number, scaling?: { pdo: number; baseScore: number; baseOdds: number }): ModelSpec {
  checkModel(model);
  const s = Number(checkScale(scaleBits));
  if (!Array.isArray(bins as unknown) || bins.length === 0) fail('SH_ERR_INVALID_ARGUMENT', `"bins" expected a non-empty array of BinSpec, got ${describe(bins)}`);
  const nCols = bins.reduce((a, b) => a + b.bins.length, 0);
  if (model.W.length !== nCols) fail('SH_ERR_INVALID_ARGUMENT', `"model.W" expected ${nCols} weights (one per bin), got ${model.W.length}`);
  let factor = 1;
  let offset = 0;
  if (scaling !== undefined) {
    const { pdo, baseScore, baseOdds } = scaling;
    if (typeof pdo !== 'number' || !Number.isFinite(pdo) || pdo <= 0) fail('SH_ERR_INVALID_ARGUMENT', `"scaling.pdo" expected a finite number > 0, got ${describe(pdo)}`);
    if (typeof baseScore !== 'number' || !Number.isFinite(baseScore)) fail('SH_ERR_INVALID_ARGUMENT', `"scaling.baseScore" expected a finite number, got ${describe(baseScore)}`);
    if (typeof baseOdds !== 'number' || !Number.isFinite(baseOdds) || baseOdds <= 0) fail('SH_ERR_INVALID_ARGUMENT', `"scaling.baseOdds" expected a finite number > 0, got ${describe(baseOdds)}`);
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
    bins: b.bins.map((bin, j) => ({ lo: bin.lo, hi: bin.hi, points: pts(model.W[col++]!, `terms[${i}].bins[${j}].points`) })),
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
  if (model.W.length !== specs.length) fail('SH_ERR_INVALID_ARGUMENT', `"model.W" expected ${specs.length} weights (one per field), got ${model.W.length}`);
  let intercept = Number(model.W0) / s;
  const terms = specs.map((spec, f) => {
    if (!spec.standardize || !(spec.standardize.std > 0)) fail('SH_ERR_INVALID_ARGUMENT', `"specs[${f}]" is not a standardized feature`);
    const w = Number(model.W[f]!) / s;
    intercept -= (w * spec.standardize.mean) / spec.standardize.std;
    return { provider: spec.provider, field: spec.field, weight: points6(w / spec.standardize.std, `terms[${f}].weight`) };
  });
  return parseModel({ id, kind: 'linear', intercept: points6(intercept, 'intercept'), terms });
}
