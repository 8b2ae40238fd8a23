/**
 * Verification's claim logic on the engine, shared with the auditor's replay: validate a claim against the catalog,
 * the provider's dataset and the bank's commitment (`prepareClaim`); turn a numeric claim into masked comparisons
 * d·(x − c) ≥ 0 with thresholds exact at the field's scale (`comparisonsFor`); the bound calculator's randomizer range
 * R (`comparisonRange`); and the per-slot multipliers and offsets, replayable from the job seed (`comparisonVectors`).
 */
import { fail } from '../../../core/errors.ts';
import { parseFixed, toSlot, pow10 } from '../../../core/fixed.ts';
import { classAllows, type FieldSpec } from '../../../sandbox/catalog.ts';
import { parseUscc } from '../../../sandbox/uscc.ts';
import { deriveMaskKey, maskVector } from '../../he/mask.ts';
import { normalizeId, idRuleFor } from '../../tokens/normalize.ts';
import type { Engine } from '../../engine.ts';
import type { DatasetRecord } from '../../datasets.ts';
import { CLAIM_ID, MAX_IN_VALUES, NUMERIC_OPS, TOKEN_OPS, commitment, type SignedClaim } from './messages.ts';

/** One masked comparison d·(x − c) ≥ 0 at a subject's slot; `k` is its position in `comparisonsFor`'s list for the claim (logged for replay). */
export interface Comparison {
  claimId: string;
  slot: number;
  d: 1n | -1n;
  c: bigint;
  k?: number;
}

/** A claim checked against the catalog, its dataset and its commitment, with its values (ids normalized). */
export interface PreparedClaim {
  claim: SignedClaim;
  values: string[];
  dataset: DatasetRecord;
  spec: FieldSpec;
}

/** Validate one claim against the catalog, the provider's dataset and the bank's commitment. */
export function prepareClaim(
  engine: Engine,
  claim: SignedClaim,
  opening: { values: string[]; salt: string } | undefined,
  i: number,
): PreparedClaim {
  const at = `claims[${i}] (${claim?.claimId})`;
  if (typeof claim !== 'object' || claim === null || typeof claim.claimId !== 'string' || !CLAIM_ID.test(claim.claimId))
    fail('SH_ERR_CLAIM_INVALID', `${at}: malformed claim`, { claim: i });
  let subject: string;
  try {
    subject = parseUscc(claim.subject);
  } catch (err) {
    const e = err as { code: 'SH_ERR_USCC_FORMAT'; message: string };
    return fail(e.code, `${at}: ${e.message}`, { claim: claim.claimId }, err);
  }
  if (subject !== claim.subject)
    fail('SH_ERR_CLAIM_INVALID', `${at}: subject must be the canonical USCC ${subject}`, { claim: claim.claimId });
  engine.registry.requireParty(claim.provider, 'provider');
  const dataset = engine.datasets.withField(claim.provider, claim.field);
  const spec = dataset?.schema.fields.find((f) => f.name === claim.field);
  if (!dataset || !spec)
    fail('SH_ERR_UNKNOWN_FIELD', `${at}: provider ${claim.provider} has no field ${claim.field}`, {
      claim: claim.claimId,
      field: claim.field,
    });
  if (!classAllows(spec.class, 'verify'))
    fail(
      'SH_ERR_VERIFY_FIELD_CLASS',
      `${at}: ${claim.provider}/${claim.field} is ${spec.class} and cannot be verified`,
      { claim: claim.claimId, field: claim.field },
    );
  const ops = spec.type === 'id' ? TOKEN_OPS : NUMERIC_OPS;
  if (!ops.includes(claim.op))
    fail(
      'SH_ERR_CLAIM_INVALID',
      `${at}: op ${JSON.stringify(claim.op)} is not allowed on ${spec.type} field ${claim.field} (allowed: ${ops.join(', ')})`,
      { claim: claim.claimId },
    );
  // The bound calculator runs before any work (docs/design.md §3): a field too wide for a masked comparison is refused here,
  // not after the job is recorded, the budget spent and custodians called (test/engine/protocols/verify.test.ts, "bound calculator").
  if (spec.type !== 'id') comparisonRange(engine, spec);
  if (
    !opening ||
    !Array.isArray(opening.values) ||
    typeof opening.salt !== 'string' ||
    commitment(claim.claimId, opening.values, opening.salt) !== claim.commitment
  ) {
    fail('SH_ERR_CLAIM_INVALID', `${at}: the claimed value does not match the bank-signed commitment`, {
      claim: claim.claimId,
    });
  }
  const n = opening.values.length;
  const want = claim.op === 'between' ? n === 2 : claim.op === 'in' ? n >= 1 && n <= MAX_IN_VALUES : n === 1;
  if (!want || claim.count !== n)
    fail(
      'SH_ERR_CLAIM_INVALID',
      `${at}: op ${claim.op} takes ${claim.op === 'between' ? '2 values' : claim.op === 'in' ? `1..${MAX_IN_VALUES} values` : '1 value'}, got ${n}`,
      { claim: claim.claimId },
    );
  let values: string[];
  if (spec.type === 'id') {
    values = opening.values.map((v) => {
      try {
        return normalizeId(idRuleFor(spec.name), v);
      } catch (err) {
        return fail('SH_ERR_CLAIM_INVALID', `${at}: ${(err as Error).message}`, { claim: claim.claimId }, err);
      }
    });
  } else {
    for (const v of opening.values) claimThreshold(spec, v, `${at}.value`);
    values = [...opening.values];
  }
  return { claim: { ...claim, subject }, values, dataset, spec };
}

/**
 * A claimed value as an exact rational at the field's scale: numerator v over 10^extra (extra = decimals beyond the
 * field's). Enum values are labels (or their index), bool true/false/1/0.
 */
function claimThreshold(spec: FieldSpec, text: string, what: string): { v: bigint; extra: number } {
  const t = text.trim();
  if (spec.type === 'bool') {
    const l = t.toLowerCase();
    if (l === 'true' || l === '1') return { v: 1n, extra: 0 };
    if (l === 'false' || l === '0') return { v: 0n, extra: 0 };
    return fail(
      'SH_ERR_CLAIM_INVALID',
      `${what}: expected true/false or 1/0 for ${spec.name}, got ${JSON.stringify(text)}`,
    );
  }
  if (spec.type === 'enum') {
    const i = (spec.values ?? []).indexOf(t);
    if (i >= 0) return { v: BigInt(i), extra: 0 };
    if (/^\d+$/.test(t) && Number(t) < (spec.values ?? []).length) return { v: BigInt(t), extra: 0 };
    return fail(
      'SH_ERR_CLAIM_INVALID',
      `${what}: expected one of ${(spec.values ?? []).join('|')} for ${spec.name}, got ${JSON.stringify(text)}`,
    );
  }
  const m = /^[+-]?\d+(?:\.(\d+))?$/.exec(t);
  if (!m)
    return fail(
      'SH_ERR_CLAIM_INVALID',
      `${what}: expected a decimal number for ${spec.name}, got ${JSON.stringify(text)}`,
    );
  const places = Math.max(spec.decimals, (m[1] ?? '').length);
  return { v: parseFixed(t, places), extra: places - spec.decimals };
}

const floorDiv = (a: bigint, b: bigint) => (a >= 0n ? a / b : -((-a + b - 1n) / b));
const ceilDiv = (a: bigint, b: bigint) => -floorDiv(-a, b);

/**
 * The comparisons a numeric claim needs at a slot, with thresholds at the field's scale and clamped into
 * [min − 1, max + 1] (so |x − c| stays within the field's range); or a known answer when no comparison is needed
 * (e.g. `eq` with a value that has more decimals than the field can hold).
 */
export function comparisonsFor(p: PreparedClaim, slot: number): Comparison[] | 'yes' | 'no' {
  const { spec, claim } = p;
  const min = parseFixed(spec.min, spec.decimals);
  const max = parseFixed(spec.max, spec.decimals);
  const clamp = (c: bigint) => (c < min - 1n ? min - 1n : c > max + 1n ? max + 1n : c);
  const th = p.values.map((v) => claimThreshold(spec, v, claim.claimId));
  const scale = (x: { v: bigint; extra: number }) => pow10(x.extra);
  const ge = (x: { v: bigint; extra: number }): Comparison => ({
    claimId: claim.claimId,
    slot,
    d: 1n,
    c: clamp(ceilDiv(x.v, scale(x))),
  });
  const le = (x: { v: bigint; extra: number }): Comparison => ({
    claimId: claim.claimId,
    slot,
    d: -1n,
    c: clamp(floorDiv(x.v, scale(x))),
  });
  switch (claim.op) {
    case 'gte':
      return [ge(th[0]!)];
    case 'lte':
      return [le(th[0]!)];
    case 'between':
      return [ge(th[0]!), le(th[1]!)];
    case 'eq':
    case 'ne': {
      const x = th[0]!;
      if (x.v % scale(x) !== 0n) return claim.op === 'eq' ? 'no' : 'yes';
      return [ge(x), le(x)];
    }
    default:
      return fail('SH_ERR_CLAIM_INVALID', `op ${claim.op} is not a numeric op`);
  }
}

/**
 * Bound calculator for masked comparisons: the largest R with R·(D + 1) ≤ (t − 1)/2, where D = max − min + 1 bounds
 * |x − c| for x in bounds and c clamped to [min − 1, max + 1]; then r·|x − c| + r' < R·(D + 1) ≤ (t−1)/2.
 * @throws SH_ERR_BOUND_OVERFLOW when R would be below the policy minimum.
 */
export function comparisonRange(engine: Engine, spec: FieldSpec): bigint {
  const D = parseFixed(spec.max, spec.decimals) - parseFixed(spec.min, spec.decimals) + 1n;
  const R = (engine.params.t - 1n) / 2n / (D + 1n);
  if (R < BigInt(engine.policy.minComparisonR))
    fail(
      'SH_ERR_BOUND_OVERFLOW',
      `field ${spec.name}: range too wide for masked comparison (R = ${R} < ${engine.policy.minComparisonR})`,
      { field: spec.name },
    );
  return R;
}

/** Per-slot multiplier r·d and offset r' − r·d·c (mod t); unused slots: 0 and a uniform offset. Replayable from the job seed. */
export function comparisonVectors(
  engine: Engine,
  seed: Uint8Array,
  label: string,
  comparisons: readonly Comparison[],
  R: bigint,
): { multipliers: BigUint64Array; offsets: BigUint64Array } {
  const t = engine.params.t;
  const n = engine.params.slots;
  const rs = maskVector(deriveMaskKey(seed, `${label}/r`), R, n);
  const us = maskVector(deriveMaskKey(seed, `${label}/r'`), t, n);
  const multipliers = new BigUint64Array(n);
  const offsets = us.slice();
  for (const c of comparisons) {
    const r = rs[c.slot]! + 1n;
    const rPrime = (us[c.slot]! * r) / t; // uniform in [0, r) up to a bias below r/t
    multipliers[c.slot] = toSlot(r * c.d, t);
    offsets[c.slot] = toSlot(rPrime - r * c.d * c.c, t);
  }
  return { multipliers, offsets };
}
