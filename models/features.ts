/**
 * Training features, the provider's side of joint training (docs/protocols.md "Joint training", step 2): binning a
 * field from its cohort records (quantiles; few distinct values or an enum: one bin per value) and the standardized
 * column X' = clip(round((x − mean)/std · 2^STD_BITS), ±STD_CLIP) from the provider's published statistics.
 */
import { describe, fail } from '../core/errors.ts';
import { formatFixed, parseFixed } from '../core/fixed.ts';
import type { FieldSpec } from '../sandbox/catalog.ts';

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
 * provider does in `prepareTraining` (docs/design.md §5). Deterministic: the same values in any order give the same bins.
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
  if (spec.type === 'id')
    fail('SH_ERR_INVALID_ARGUMENT', `"spec" expected a numeric, bool or enum field, got token field ${spec.name}`, {
      field: spec.name,
    });
  if (!Number.isInteger(k) || k < 1 || k > MAX_BINS)
    fail('SH_ERR_INVALID_ARGUMENT', `"k" expected an integer 1..${MAX_BINS}, got ${describe(k)}`);
  const present: bigint[] = [];
  values.forEach((v, i) => {
    if (v === null) return;
    if (typeof v !== 'bigint')
      fail('SH_ERR_INVALID_ARGUMENT', `"values[${i}]" expected a bigint or null, got ${describe(v)}`, {
        field: spec.name,
      });
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
    if (
      (b.lo === null || x >= parseFixed(b.lo, decimals, `bins[${j}].lo`)) &&
      (b.hi === null || x < parseFixed(b.hi, decimals, `bins[${j}].hi`))
    )
      return j;
  }
  return fail(
    'SH_ERR_INVALID_ARGUMENT',
    `"bins" expected to cover every value, got none holding ${formatFixed(x, decimals)}`,
  );
}
