/**
 * Plaintext reference evaluation of a model on CSV cells: the "same computation on plaintext" every encrypted
 * result is compared with (tests, demo, replay). Independent of the fixed-point compilation in model.ts: each term is
 * an exact decimal fraction over its own power of ten, and the sum is brought to a common denominator at the end.
 */
import { formatFixed, parseFixed, pow10 } from '../core/fixed.ts';
import { encodeValue } from '../sandbox/values.ts';
import type { FieldSpec } from '../sandbox/catalog.ts';
import { isScorecardTerm, type ModelSpec } from './model.ts';

/** Exact decimal: value / 10^exp. */
interface Dec {
  v: bigint;
  exp: number;
}

const add = (a: Dec, b: Dec): Dec => {
  const e = Math.max(a.exp, b.exp);
  return { v: a.v * pow10(e - a.exp) + b.v * pow10(e - b.exp), exp: e };
};
const dec = (text: string): Dec => {
  const frac = (text.split('.')[1] ?? '').length;
  return { v: parseFixed(text, frac), exp: frac };
};
const cmp = (a: Dec, b: Dec): number => {
  const e = Math.max(a.exp, b.exp);
  const x = a.v * pow10(e - a.exp);
  const y = b.v * pow10(e - b.exp);
  return x < y ? -1 : x > y ? 1 : 0;
};

/**
 * Score one subject in plaintext. `cell(provider, field)` returns the CSV cell ('' = missing) or undefined when the
 * provider has no row for the subject. Returns NO_DATA exactly when the encrypted path does.
 */
export function evaluatePlain(
  spec: ModelSpec,
  field: (provider: string, name: string) => FieldSpec,
  cell: (provider: string, name: string) => string | undefined,
): { status: 'OK'; score: string } | { status: 'NO_DATA' } {
  let total = dec(spec.intercept);
  for (const term of spec.terms) {
    const f = field(term.provider, term.field);
    const raw = cell(term.provider, term.field);
    const x = raw === undefined ? null : encodeValue(f, raw);
    if (x === null) {
      if (isScorecardTerm(term) && term.missingPoints !== undefined) {
        total = add(total, dec(term.missingPoints));
        continue;
      }
      return { status: 'NO_DATA' };
    }
    const xv: Dec = { v: x, exp: f.decimals };
    if (!isScorecardTerm(term)) {
      const w = dec(term.weight);
      total = add(total, { v: w.v * xv.v, exp: w.exp + xv.exp });
      continue;
    }
    const bin = term.bins.find(
      (b) => (b.lo === null || cmp(xv, dec(b.lo)) >= 0) && (b.hi === null || cmp(xv, dec(b.hi)) < 0),
    );
    if (!bin) throw new Error(`value outside bins for ${term.field}`);
    total = add(total, dec(bin.points));
  }
  return { status: 'OK', score: formatFixed(total.v, total.exp) };
}

/**
 * Plaintext reference for a verification claim (docs/design.md §5): the predicate on the provider's CSV cell. Numeric
 * comparisons are exact decimal comparisons; id cells may list several values separated by ';', compared after the
 * field's normalization (passed in, so the reference and the token path share only the written-down rules).
 * Returns 'no_data' for an empty cell or a subject the provider does not have.
 */
export function claimPlain(
  spec: FieldSpec,
  cell: string | undefined,
  op: 'eq' | 'in' | 'ne' | 'gte' | 'lte' | 'between',
  values: readonly string[],
  normalize: (v: string) => string,
): 'yes' | 'no' | 'no_data' {
  if (cell === undefined || cell.trim() === '') return 'no_data';
  if (spec.type === 'id') {
    const have = new Set(cell.split(';').map(normalize));
    return values.some((v) => have.has(normalize(v))) ? 'yes' : 'no';
  }
  const x: Dec = { v: encodeValue(spec, cell)!, exp: spec.decimals };
  const asDec = (v: string): Dec => {
    const t = v.trim();
    if (spec.type === 'bool') return { v: t.toLowerCase() === 'true' || t === '1' ? 1n : 0n, exp: 0 };
    if (spec.type === 'enum') {
      const i = (spec.values ?? []).indexOf(t);
      return { v: BigInt(i >= 0 ? i : Number(t)), exp: 0 };
    }
    return dec(t.replace(/^\+/, ''));
  };
  const c = values.map(asDec);
  const yes = (b: boolean) => (b ? 'yes' : 'no');
  switch (op) {
    case 'eq':
      return yes(cmp(x, c[0]!) === 0);
    case 'ne':
      return yes(cmp(x, c[0]!) !== 0);
    case 'gte':
      return yes(cmp(x, c[0]!) >= 0);
    case 'lte':
      return yes(cmp(x, c[0]!) <= 0);
    case 'between':
      return yes(cmp(x, c[0]!) >= 0 && cmp(x, c[1]!) <= 0);
    default:
      throw new Error(`op ${op} is not numeric`);
  }
}
