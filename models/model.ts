/**
 * Model specs (linear and scorecard), their exact fixed-point compilation, and the bound calculator (docs/design.md §3, §7).
 *
 * Exactness: weights and points have at most 6 decimal places and every field value is an integer value·10^d, so with
 * D = the largest `decimals` among linear-term fields, the model's score times S = 10^(6+D) is an integer:
 *   S·score = S·intercept + Σ_linear (w·10^6)·10^(D−d_f)·(x·10^d_f) + Σ_scorecard (points_b·10^6)·10^D·[x ∈ bin b].
 * The engine evaluates exactly that integer sum mod t; the bound calculator proves |S·score| ≤ (t−1)/2 so the centered
 * residue is the integer itself, and the bank divides by S to get the exact decimal.
 *
 * Scorecard bins are half-open [lo, hi) in the field's units; `lo: null` / `hi: null` mean unbounded. A bin's
 * indicator [x ∈ b] is computed by the provider from its own records when it approves the model (one derived column
 * per bin, uploaded encrypted), so bins cost no comparisons on ciphertexts.
 */
import { fail } from '../core/errors.ts';
import { canonicalize } from '../core/jcs.ts';
import { parseFixed, pow10 } from '../core/fixed.ts';
import { sha256Hex } from '../core/hash.ts';
import { classAllows, type FieldSpec } from '../sandbox/catalog.ts';

export const MAX_WEIGHT_DECIMALS = 6;

export interface Bin {
  lo: string | null;
  hi: string | null;
  points: string;
}
export interface LinearTerm {
  provider: string;
  field: string;
  weight: string;
}
export interface ScorecardTerm {
  provider: string;
  field: string;
  bins: Bin[];
  missingPoints?: string;
}
export type ModelTerm = LinearTerm | ScorecardTerm;
export interface ModelSpec {
  id: string;
  kind: 'linear' | 'scorecard';
  intercept: string;
  terms: ModelTerm[];
}

const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function isScorecardTerm(t: ModelTerm): t is ScorecardTerm {
  return 'bins' in t;
}

/** Decimal text from a JSON number or string, refusing floats that do not print exactly. */
function decimalText(v: unknown, what: string): string {
  if (typeof v === 'string' && /^[+-]?\d+(\.\d+)?$/.test(v.trim())) return v.trim();
  if (typeof v === 'number' && Number.isFinite(v) && !/e/i.test(String(v))) return String(v);
  return fail(
    'SH_ERR_MODEL_INVALID',
    `"${what}" expected a decimal number or decimal string, got ${JSON.stringify(v)}`,
    { field: what },
  );
}

/** Weight-like decimal: at most 6 places (SH_ERR_MODEL_PRECISION). Returns value·10^6. */
function weight6(text: string, what: string): bigint {
  return parseFixed(text, MAX_WEIGHT_DECIMALS, what, 'SH_ERR_MODEL_PRECISION');
}

/**
 * Parse and normalize a model file (`model.json`). Structure only; field checks need the catalog (`compileModel`).
 * @throws SH_ERR_MODEL_INVALID, SH_ERR_MODEL_PRECISION
 * @example parseModel({ id: 'm1', kind: 'linear', intercept: 0, terms: [{ provider: 'tax', field: 'vat_paid_12m', weight: 0.5 }] })
 */
export function parseModel(input: unknown): ModelSpec {
  if (typeof input !== 'object' || input === null || Array.isArray(input))
    fail('SH_ERR_MODEL_INVALID', '"model" expected a JSON object');
  const o = input as Record<string, unknown>;
  const allowed = new Set(['id', 'kind', 'intercept', 'terms', 'description']);
  for (const k of Object.keys(o))
    if (!allowed.has(k)) fail('SH_ERR_MODEL_INVALID', `"model" has unknown member ${JSON.stringify(k)}`);
  if (typeof o.id !== 'string' || !ID.test(o.id))
    fail('SH_ERR_MODEL_INVALID', `"id" expected ${ID}, got ${JSON.stringify(o.id)}`);
  if (o.kind !== 'linear' && o.kind !== 'scorecard')
    fail('SH_ERR_MODEL_INVALID', `"kind" expected "linear" or "scorecard", got ${JSON.stringify(o.kind)}`);
  const intercept = decimalText(o.intercept ?? '0', 'intercept');
  weight6(intercept, 'intercept');
  if (!Array.isArray(o.terms) || o.terms.length === 0)
    fail('SH_ERR_MODEL_INVALID', '"terms" expected a non-empty array');
  const seen = new Set<string>();
  const terms = o.terms.map((t: unknown, i: number): ModelTerm => {
    const at = `terms[${i}]`;
    if (typeof t !== 'object' || t === null) fail('SH_ERR_MODEL_INVALID', `"${at}" expected an object`);
    const r = t as Record<string, unknown>;
    if (typeof r.provider !== 'string' || !ID.test(r.provider))
      fail('SH_ERR_MODEL_INVALID', `"${at}.provider" expected a party id`);
    if (typeof r.field !== 'string' || !/^[a-z][a-z0-9_]{0,47}$/.test(r.field))
      fail('SH_ERR_MODEL_INVALID', `"${at}.field" expected a field name`);
    const key = `${r.provider}/${r.field}`;
    if (seen.has(key)) fail('SH_ERR_MODEL_INVALID', `"${at}" repeats ${key}`);
    seen.add(key);
    if (o.kind === 'linear') {
      for (const k of Object.keys(r))
        if (!['provider', 'field', 'weight'].includes(k))
          fail('SH_ERR_MODEL_INVALID', `"${at}" has unknown member ${JSON.stringify(k)} for a linear model`);
      const w = decimalText(r.weight, `${at}.weight`);
      weight6(w, `${at}.weight`);
      return { provider: r.provider, field: r.field, weight: w };
    }
    for (const k of Object.keys(r))
      if (!['provider', 'field', 'bins', 'missingPoints'].includes(k))
        fail('SH_ERR_MODEL_INVALID', `"${at}" has unknown member ${JSON.stringify(k)} for a scorecard`);
    if (!Array.isArray(r.bins) || r.bins.length === 0)
      fail('SH_ERR_MODEL_INVALID', `"${at}.bins" expected a non-empty array`);
    const bins = r.bins.map((b: unknown, j: number): Bin => {
      const bt = `${at}.bins[${j}]`;
      if (typeof b !== 'object' || b === null) fail('SH_ERR_MODEL_INVALID', `"${bt}" expected an object`);
      const bb = b as Record<string, unknown>;
      const lo = bb.lo === null || bb.lo === undefined ? null : decimalText(bb.lo, `${bt}.lo`);
      const hi = bb.hi === null || bb.hi === undefined ? null : decimalText(bb.hi, `${bt}.hi`);
      const points = decimalText(bb.points, `${bt}.points`);
      weight6(points, `${bt}.points`);
      return { lo, hi, points };
    });
    const term: ScorecardTerm = { provider: r.provider, field: r.field, bins };
    if (r.missingPoints !== undefined) {
      term.missingPoints = decimalText(r.missingPoints, `${at}.missingPoints`);
      weight6(term.missingPoints, `${at}.missingPoints`);
    }
    return term;
  });
  return { id: o.id, kind: o.kind, intercept, terms };
}

/** SHA-256 of the canonical model: approvals and jobs pin this. */
export function modelHash(m: ModelSpec): string {
  return sha256Hex(canonicalize({ type: 'safehouse.model.v1', ...m }));
}

/** What a compiled term asks of one provider's dataset. */
export interface CompiledColumn {
  /** Stored column name: a field name, or a derived bin column `bin/<modelHash12>/<term>/<bin>`. */
  column: string;
  multiplier: bigint;
}
export interface CompiledTerm {
  provider: string;
  field: string;
  spec: FieldSpec;
  columns: CompiledColumn[];
  /** Offset (·S) added for a subject whose value is missing; undefined = the subject gets NO_DATA. */
  missingOffset: bigint | undefined;
  /** Largest |contribution| (·S) of this term over the field's bounds. */
  bound: bigint;
  /** Half-spread of the term's contribution (·S, as a float) for the anti-extraction share rule. */
  spread: number;
  /** Whether the term can change the score at all (non-zero weight / non-constant points). */
  effective: boolean;
}
export interface CompiledModel {
  spec: ModelSpec;
  hash: string;
  /** Score scale exponent: integer result = score·10^scale. */
  scale: number;
  intercept: bigint;
  terms: CompiledTerm[];
  /** |result| ≤ bound for every input within the field bounds. */
  bound: bigint;
}

export type FieldLookup = (provider: string, field: string) => (FieldSpec & { std?: number }) | undefined;

/**
 * Compile a model against the providers' published schemas: check fields exist and may be scored, fix the scale,
 * compute the per-column integer multipliers and run the bound calculator.
 * @throws SH_ERR_UNKNOWN_FIELD, SH_ERR_MODEL_FIELD_CLASS, SH_ERR_MODEL_INVALID (bins), SH_ERR_BOUND_OVERFLOW
 */
export function compileModel(spec: ModelSpec, lookup: FieldLookup, t: bigint): CompiledModel {
  const hash = modelHash(spec);
  const fields = spec.terms.map((term, i) => {
    const f = lookup(term.provider, term.field);
    if (!f)
      fail(
        'SH_ERR_UNKNOWN_FIELD',
        `"terms[${i}]" names ${term.provider}/${term.field}, which no current dataset of ${term.provider} declares`,
        { provider: term.provider, field: term.field },
      );
    if (f.type === 'id' || !classAllows(f.class, 'score')) {
      fail(
        'SH_ERR_MODEL_FIELD_CLASS',
        `"terms[${i}]" field ${term.provider}/${term.field} is ${f.class}${f.type === 'id' ? ' (token field)' : ''} and may not be used in a model`,
        { field: term.field },
      );
    }
    return f;
  });
  const D = Math.max(0, ...spec.terms.map((t, i) => (isScorecardTerm(t) ? 0 : fields[i]!.decimals)));
  const scale = MAX_WEIGHT_DECIMALS + D;
  const intercept = parseFixed(spec.intercept, MAX_WEIGHT_DECIMALS, 'intercept') * pow10(D);
  const terms = spec.terms.map((term, i): CompiledTerm => {
    const f = fields[i]!;
    const lo = parseFixed(f.min, f.decimals, `${f.name}.min`);
    const hi = parseFixed(f.max, f.decimals, `${f.name}.max`);
    const absMax = (lo < 0n ? -lo : lo) > (hi < 0n ? -hi : hi) ? (lo < 0n ? -lo : lo) : hi < 0n ? -hi : hi;
    if (!isScorecardTerm(term)) {
      const m = parseFixed(term.weight, MAX_WEIGHT_DECIMALS, `terms[${i}].weight`) * pow10(D - f.decimals);
      const mag = m < 0n ? -m : m;
      // σ in fixed-point units (x·10^d), like the multiplier applies to; bounds' uniform σ when no statistics are published.
      const std = f.std !== undefined ? f.std * 10 ** f.decimals : Number(hi - lo) / Math.sqrt(12);
      return {
        provider: term.provider,
        field: term.field,
        spec: f,
        columns: [{ column: f.name, multiplier: m }],
        missingOffset: undefined,
        bound: mag * absMax,
        spread: Number(mag) * std,
        effective: m !== 0n,
      };
    }
    checkBins(term, f, i);
    const pts = term.bins.map(
      (b, j) => parseFixed(b.points, MAX_WEIGHT_DECIMALS, `terms[${i}].bins[${j}].points`) * pow10(D),
    );
    const missing =
      term.missingPoints === undefined
        ? undefined
        : parseFixed(term.missingPoints, MAX_WEIGHT_DECIMALS, `terms[${i}].missingPoints`) * pow10(D);
    const mags = [...pts, ...(missing === undefined ? [] : [missing])].map((p) => (p < 0n ? -p : p));
    const bound = mags.reduce((a, b) => (b > a ? b : a), 0n);
    const min = pts.reduce((a, b) => (b < a ? b : a));
    const max = pts.reduce((a, b) => (b > a ? b : a));
    return {
      provider: term.provider,
      field: term.field,
      spec: f,
      columns: pts.map((p, j) => ({ column: binColumn(hash, i, j), multiplier: p })),
      missingOffset: missing,
      bound,
      spread: Number(max - min) / 2,
      effective: max !== min,
    };
  });
  const iMag = intercept < 0n ? -intercept : intercept;
  const bound = terms.reduce((a, t) => a + t.bound, iMag);
  const half = (t - 1n) / 2n;
  if (bound > half) {
    fail(
      'SH_ERR_BOUND_OVERFLOW',
      `model ${spec.id}: |score|·10^${scale} can reach ${bound}, more than (t−1)/2 = ${half}; reduce weights or use coarser field units`,
      { bound: bound.toString(), limit: half.toString() },
    );
  }
  return { spec, hash, scale, intercept, terms, bound };
}

/** Name of the derived indicator column for bin `j` of term `i` of a model. */
export function binColumn(modelHash: string, term: number, bin: number): string {
  return `bin/${modelHash.slice(0, 16)}/${term}/${bin}`;
}

function checkBins(term: ScorecardTerm, f: FieldSpec, i: number): void {
  const at = `terms[${i}].bins`;
  const edges = term.bins.map((b, j) => ({
    lo: b.lo === null ? null : parseFixed(b.lo, f.decimals, `${at}[${j}].lo`, 'SH_ERR_MODEL_INVALID'),
    hi: b.hi === null ? null : parseFixed(b.hi, f.decimals, `${at}[${j}].hi`, 'SH_ERR_MODEL_INVALID'),
  }));
  const min = parseFixed(f.min, f.decimals, 'min');
  const max = parseFixed(f.max, f.decimals, 'max');
  for (let j = 0; j < edges.length; j++) {
    const { lo, hi } = edges[j]!;
    if (lo !== null && hi !== null && lo >= hi) fail('SH_ERR_MODEL_INVALID', `"${at}[${j}]" expected lo < hi`);
    if (j > 0 && (edges[j - 1]!.hi === null || lo === null || edges[j - 1]!.hi !== lo)) {
      fail(
        'SH_ERR_MODEL_INVALID',
        `"${at}[${j}]" expected lo equal to the previous bin's hi (bins must be contiguous and sorted)`,
      );
    }
  }
  const first = edges[0]!.lo;
  const last = edges[edges.length - 1]!.hi;
  if ((first !== null && first > min) || (last !== null && last <= max)) {
    fail(
      'SH_ERR_MODEL_INVALID',
      `"${at}" expected to cover the field's range [${f.min}, ${f.max}] of ${term.provider}/${term.field}`,
    );
  }
}

/** Which bin (index) a fixed-point value falls in; bins were checked to be contiguous and to cover the field. */
export function binIndex(bins: readonly Bin[], x: bigint, decimals: number): number {
  for (let j = 0; j < bins.length; j++) {
    const b = bins[j]!;
    const lo = b.lo === null ? null : parseFixed(b.lo, decimals);
    const hi = b.hi === null ? null : parseFixed(b.hi, decimals);
    if ((lo === null || x >= lo) && (hi === null || x < hi)) return j;
  }
  return fail('SH_ERR_MODEL_INVALID', `value ${x} is outside every bin`);
}
