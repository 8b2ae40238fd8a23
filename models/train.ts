/**
 * Joint training (联合建模, docs/design.md §5): the deterministic plaintext parts both trainers share — the exact
 * integer gradient sums, the bound calculator for the sum group size, the model update and the plaintext reference
 * trainers (binning is in features.ts, the export to a model spec in export.ts). The encrypted trainer
 * (engine/protocols/train/engine.ts) computes the
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
import type { BinSpec } from './features.ts';

// --- options --------------------------------------------------------------------------------------------------

/** Training options (docs/design.md §5). All are part of the signed training request and of the model's provenance. */
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
 * The defaults: 16 fractional bits, lr 0.5 decaying by 1/(1 + 0.01·t), L2 0.01, at most 10 iterations, stop when
 * max |g| < 1e-4. Measured on German Credit (5 bins, 11 fields → 48 columns, 700 subjects): max|D| stays below 2^19
 * (290 261 after 30 iterations), so one sum group spans all 8192 slots for t ≈ 2^40. The key holder's privacy noise
 * grows with √iterations (docs/privacy.md "Training"): 10 iterations cost 0.004 hold-out AUC on plaintext against 30
 * (0.7761 vs 0.7805) and keep the noisy model within 0.02 of it (six runs, two providers: −0.013 … +0.009).
 */
export const DEFAULT_TRAIN: Readonly<TrainOptions> = Object.freeze({
  scaleBits: 16,
  learningRate: 0.5,
  decay: 0.01,
  l2: 0.01,
  iterations: 10,
  tolerance: 1e-4,
});

/**
 * Validate options up front into a filled object; `undefined` members take {@link DEFAULT_TRAIN}.
 * @throws SH_ERR_INVALID_ARGUMENT naming the option (wrong type, range, or an unknown member).
 * @example trainOptions({ iterations: 10 }).learningRate === 0.5
 */
export function trainOptions(o?: Partial<TrainOptions>): TrainOptions {
  if (o !== undefined && (o === null || typeof o !== 'object' || Array.isArray(o))) {
    fail('SH_ERR_INVALID_ARGUMENT', `"options" expected an object, got ${describe(o)}`);
  }
  const given = (o ?? {}) as Record<string, unknown>;
  for (const k of Object.keys(given)) {
    if (!(k in DEFAULT_TRAIN))
      fail(
        'SH_ERR_INVALID_ARGUMENT',
        `"options.${k}" is not a training option (expected one of ${Object.keys(DEFAULT_TRAIN).join(', ')})`,
        { option: k },
      );
  }
  const pick = (k: keyof TrainOptions, ok: (v: number) => boolean, what: string): number => {
    const v = given[k] === undefined ? DEFAULT_TRAIN[k] : given[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v))
      fail('SH_ERR_INVALID_ARGUMENT', `"options.${k}" expected ${what}, got ${describe(v)}`, { option: k });
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
  if (!Array.isArray(X))
    fail('SH_ERR_INVALID_ARGUMENT', `"X" expected an array of Uint8Array columns, got ${describe(X)}`);
  if (nCols !== undefined && X.length !== nCols)
    fail('SH_ERR_INVALID_ARGUMENT', `"X" expected ${nCols} columns (one per weight), got ${X.length}`);
  X.forEach((col, b) => {
    if (!(col instanceof Uint8Array || col instanceof Int16Array) || col.length !== n)
      fail(
        'SH_ERR_INVALID_ARGUMENT',
        `"X[${b}]" expected a Uint8Array or Int16Array of ${n} (one per label), got ${describe(col)}`,
      );
    if (col instanceof Uint8Array)
      for (let i = 0; i < n; i++)
        if (col[i]! > 1) fail('SH_ERR_INVALID_ARGUMENT', `"X[${b}][${i}]" expected 0 or 1, got ${col[i]}`);
  });
  return n;
}

export function checkScale(scaleBits: number): bigint {
  if (!Number.isInteger(scaleBits) || scaleBits < 1 || scaleBits > 32)
    fail('SH_ERR_INVALID_ARGUMENT', `"scaleBits" expected an integer 1..32, got ${describe(scaleBits)}`);
  return 1n << BigInt(scaleBits);
}

export function checkModel(model: FixedModel): void {
  if (
    typeof model !== 'object' ||
    model === null ||
    typeof model.W0 !== 'bigint' ||
    !Array.isArray(model.W) ||
    !model.W.every((w) => typeof w === 'bigint')
  ) {
    fail('SH_ERR_INVALID_ARGUMENT', `"model" expected { W0: bigint, W: bigint[] }, got ${describe(model)}`);
  }
}

/**
 * The integers the encrypted path computes, exactly (docs/design.md §5): D_i = W0 + Σ_b W_b·X_ib + s·(2 − 4·y_i) with
 * s = 2^scaleBits, G_b = Σ_i X_ib·D_i, G_0 = Σ_i D_i. X is one-hot 0/1 (a Uint8Array per column, one entry per
 * subject), y in {0, 1} (1 = bad/default). D_i = 4·s·(0.5 + z_i/4 − y_i) for the model's logit z_i.
 * @throws SH_ERR_INVALID_ARGUMENT for mismatched lengths, non-0/1 entries, or a bad scaleBits.
 * @example taylorGradientSums({ W0: 0n, W: [0n] }, [Uint8Array.of(1, 0)], Uint8Array.of(1, 0), 16) // { G0: 0n, G: [-131072n] }
 */
export function taylorGradientSums(
  model: FixedModel,
  X: readonly Column[],
  y: Uint8Array,
  scaleBits: number,
  columnBits = 0,
): GradientSums {
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
 * Bound calculator for one iteration (docs/design.md §5, §3): the largest |D_i| over any one-hot inputs and labels,
 * |W0| + Σ_features max_{b in feature} |W_b| + 2s. `groups` lists, per feature, the indices of its one-hot columns (at
 * most one of them is 1 per subject); a column listed in no group is counted as a feature of its own, so the bound
 * never falls short.
 * @throws SH_ERR_INVALID_ARGUMENT for a column index out of range or listed twice.
 * @example maxAbsD({ W0: -3n, W: [1n, -5n, 2n] }, [[0, 1], [2]], 1) === 3n + 5n + 2n + 4n
 */
export function maxAbsD(
  model: FixedModel,
  groups: ReadonlyArray<readonly number[]>,
  scaleBits: number,
  columnBits = 0,
  columnMax = 1n,
): bigint {
  checkModel(model);
  const s = checkScale(scaleBits);
  const abs = (v: bigint): bigint => (v < 0n ? -v : v);
  const seen = new Uint8Array(model.W.length);
  let total = (abs(model.W0) + 2n * s) << BigInt(columnBits);
  groups.forEach((g, f) => {
    let m = 0n;
    for (const b of g) {
      if (!Number.isInteger(b) || b < 0 || b >= model.W.length)
        fail(
          'SH_ERR_INVALID_ARGUMENT',
          `"groups[${f}]" expected column indices 0..${model.W.length - 1}, got ${describe(b)}`,
        );
      if (seen[b])
        fail('SH_ERR_INVALID_ARGUMENT', `"groups[${f}]" lists column ${b}, which another group already holds`);
      seen[b] = 1;
      if (abs(model.W[b]!) > m) m = abs(model.W[b]!);
    }
    total += m * columnMax;
  });
  model.W.forEach((w, b) => {
    if (!seen[b]) total += abs(w) * columnMax;
  });
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
  if (typeof maxD !== 'bigint' || maxD < 0n)
    fail('SH_ERR_INVALID_ARGUMENT', `"maxD" expected a bigint ≥ 0, got ${describe(maxD)}`);
  if (typeof t !== 'bigint' || t < 3n) fail('SH_ERR_INVALID_ARGUMENT', `"t" expected a bigint ≥ 3, got ${describe(t)}`);
  if (!Number.isSafeInteger(slots) || slots < 1)
    fail('SH_ERR_INVALID_ARGUMENT', `"slots" expected a positive integer, got ${describe(slots)}`);
  const half = (t - 1n) / 2n;
  if (maxD > half) {
    fail(
      'SH_ERR_BOUND_OVERFLOW',
      `training: |D| can reach ${maxD}, more than (t−1)/2 = ${half} even for single-subject sums; lower scaleBits or the learning rate`,
      { bound: maxD.toString(), limit: half.toString() },
    );
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
export function updateModel(
  model: FixedModel,
  sums: GradientSums,
  n: number,
  iteration: number,
  o: TrainOptions,
  columnBits = 0,
): { model: FixedModel; maxGrad: number } {
  checkModel(model);
  const s = checkScale(o.scaleBits);
  if (
    typeof sums !== 'object' ||
    sums === null ||
    typeof sums.G0 !== 'bigint' ||
    !Array.isArray(sums.G) ||
    sums.G.length !== model.W.length ||
    !sums.G.every((g) => typeof g === 'bigint')
  ) {
    fail(
      'SH_ERR_INVALID_ARGUMENT',
      `"sums" expected { G0: bigint, G: bigint[${model.W.length}] }, got ${describe(sums)}`,
    );
  }
  if (!Number.isSafeInteger(n) || n < 1)
    fail('SH_ERR_INVALID_ARGUMENT', `"n" expected a positive integer, got ${describe(n)}`);
  if (!Number.isSafeInteger(iteration) || iteration < 0)
    fail('SH_ERR_INVALID_ARGUMENT', `"iteration" expected an integer ≥ 0, got ${describe(iteration)}`);
  const sf = Number(s);
  const denom = 4 * sf * n;
  const lr = o.learningRate / (1 + o.decay * iteration);
  const quantize = (w: number, what: string): bigint => {
    const q = Math.round(w * sf);
    if (!Number.isSafeInteger(q))
      fail(
        'SH_ERR_BOUND_OVERFLOW',
        `training diverged: ${what} = ${w} at iteration ${iteration}; lower the learning rate`,
        { iteration },
      );
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
export function trainPlainFixed(
  X: readonly Column[],
  y: Uint8Array,
  o: TrainOptions,
  columnBits = 0,
): { model: FixedModel; iterations: number; history: Array<GradientSums & { maxGrad: number }> } {
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
 * docs/design.md §5 acceptance comparison): g_0 = Σ(0.5 + z_i/4 − y_i)/n, g_b = Σ X_ib·(0.5 + z_i/4 − y_i)/n + l2·w_b, same
 * schedule and early stop as {@link trainPlainFixed}. `scaleBits` is ignored.
 * @throws SH_ERR_INVALID_ARGUMENT (data or options).
 * @example const { w0, w } = trainPlainFloat(X, y, trainOptions()) // logit = w0 + Σ w_b·X_b
 */
export function trainPlainFloat(
  X: readonly Column[],
  y: Uint8Array,
  o: TrainOptions,
  columnBits = 0,
): { w0: number; w: number[]; iterations: number } {
  const opts = trainOptions(o);
  const n = checkData(X, y);
  let w0 = 0;
  let w = new Array<number>(X.length).fill(0);
  let iterations = 0;
  const r = new Float64Array(n);
  for (let it = 0; it < opts.iterations; it++) {
    for (let i = 0; i < n; i++) r[i] = w0;
    const c = 2 ** columnBits;
    X.forEach((col, b) => {
      const wb = w[b]!;
      if (wb !== 0) for (let i = 0; i < n; i++) if (col[i] !== 0) r[i]! += (wb * col[i]!) / c;
    });
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
