/**
 * The model-history rule (docs/privacy.md "Scoring"): a bank group's models are judged together, not one at a time.
 * Scores are exact, so every model a group can score a subject with gives it one exact linear equation in that
 * subject's values; differencing or solving several of them isolates a field (three linear models over three tax
 * fields recover all three exactly). The rule bounds what any combination of the group's models reveals about each
 * of a provider's fields.
 *
 * Each term is a feature of one field with a coefficient: a linear term w·x_f is the feature x_f with coefficient
 * w·σ_f (σ_f the field's published standard deviation, so features are on one scale); a scorecard term is the
 * feature "its own points function of x_f" with coefficient the half-range of its points. A model is the vector of
 * its coefficients over a provider's features. Treating the features as independent with unit variance, a group that
 * knows the scores of models V learns about field f exactly the part of its features lying in the row space of V:
 * the share of f that stays unexplained is λ_min of (I − Q Qᵀ) restricted to f's features, Q an orthonormal basis of
 * the row space — for one feature per field, 1 − (the squared cosine between e_f and the span). One model alone gives
 * 1 − (its variance share of f), so this generalizes the single-model variance rule. A registration (and a
 * provider's approval) is refused when any field of a provider would keep less than `minUnexplainedShare`.
 */
import { fail } from '../core/errors.ts';

export interface HistoryTerm {
  provider: string;
  field: string;
  /** Which function of the field: `x` for the raw value, `bins:<id>` for a scorecard's points function. */
  feature: string;
  /** The feature's coefficient on a common scale (signed w·σ for linear terms, the points' half-range for bins). */
  coefficient: number;
}

export interface HistoryModel {
  id: string;
  terms: readonly HistoryTerm[];
}

export interface FieldExposure {
  provider: string;
  field: string;
  /** Share of the field's variance no combination of the models' scores explains (1 = nothing learned). */
  unexplained: number;
}

/**
 * Vectors of the models over one provider's features, each row normalized (a model's scale does not change what it
 * reveals), and each field's feature indexes.
 */
function design(
  models: readonly HistoryModel[],
  provider: string,
): { rows: number[][]; fields: Map<string, number[]> } {
  const index = new Map<string, number>();
  const fields = new Map<string, number[]>();
  for (const m of models)
    for (const t of m.terms) {
      if (t.provider !== provider) continue;
      const key = `${t.field}\u0000${t.feature}`;
      if (!index.has(key)) {
        index.set(key, index.size);
        fields.set(t.field, [...(fields.get(t.field) ?? []), index.get(key)!]);
      }
    }
  const rows: number[][] = [];
  for (const m of models) {
    const row = new Array<number>(index.size).fill(0);
    for (const t of m.terms)
      if (t.provider === provider) row[index.get(`${t.field}\u0000${t.feature}`)!]! += t.coefficient;
    const norm = Math.hypot(...row);
    if (norm > 0) rows.push(row.map((x) => x / norm));
  }
  return { rows, fields };
}

/** An orthonormal basis of the rows' span (modified Gram–Schmidt; directions below 1e-9 of a row are dropped). */
function basis(rows: readonly number[][]): number[][] {
  const q: number[][] = [];
  for (const r of rows) {
    const v = [...r];
    for (let pass = 0; pass < 2; pass++)
      for (const b of q) {
        const d = v.reduce((a, x, i) => a + x * b[i]!, 0);
        for (let i = 0; i < v.length; i++) v[i]! -= d * b[i]!;
      }
    const n = Math.hypot(...v);
    if (n > 1e-9) q.push(v.map((x) => x / n));
  }
  return q;
}

/** Smallest eigenvalue of a small symmetric matrix (cyclic Jacobi rotations). */
export function minEigenvalue(a: readonly number[][]): number {
  const n = a.length;
  if (n === 0) return 1;
  const m = a.map((r) => [...r]);
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) off += m[i]![j]! ** 2;
    if (off < 1e-22) break;
    for (let p = 0; p < n; p++)
      for (let q = p + 1; q < n; q++) {
        if (Math.abs(m[p]![q]!) < 1e-300) continue;
        const theta = (m[q]![q]! - m[p]![p]!) / (2 * m[p]![q]!);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const kp = m[k]![p]!;
          const kq = m[k]![q]!;
          m[k]![p] = c * kp - s * kq;
          m[k]![q] = s * kp + c * kq;
        }
        for (let k = 0; k < n; k++) {
          const pk = m[p]![k]!;
          const qk = m[q]![k]!;
          m[p]![k] = c * pk - s * qk;
          m[q]![k] = s * pk + c * qk;
        }
      }
  }
  return Math.min(...m.map((r, i) => r[i]!));
}

/** What the models, together, leave unexplained of each field of each provider they use. */
export function exposure(models: readonly HistoryModel[]): FieldExposure[] {
  const providers = [...new Set(models.flatMap((m) => m.terms.map((t) => t.provider)))].sort();
  const out: FieldExposure[] = [];
  for (const provider of providers) {
    const { rows, fields } = design(models, provider);
    const q = basis(rows);
    for (const [field, idx] of [...fields].sort((x, y) => (x[0] < y[0] ? -1 : 1))) {
      const sub = idx.map((i) => idx.map((j) => (i === j ? 1 : 0) - q.reduce((a, b) => a + b[i]! * b[j]!, 0)));
      out.push({ provider, field, unexplained: Math.max(0, Math.min(1, minEigenvalue(sub))) });
    }
  }
  return out;
}

/**
 * Refuse `candidate` when, together with the group's `earlier` models (those using any provider it uses), some
 * field of a provider would keep less than `minUnexplainedShare` of its variance unexplained — and less than the
 * earlier models alone leave (a model over other fields adds nothing to what earlier models reveal). The field
 * reported is the most exposed one.
 * @throws SH_ERR_MODEL_EXTRACTION naming the provider, the field, the share and the earlier models
 * @returns each field's exposure with the candidate added
 */
export function vetHistory(
  candidate: HistoryModel,
  earlier: readonly HistoryModel[],
  minUnexplainedShare: number,
  group: string,
): FieldExposure[] {
  const providers = new Set(candidate.terms.map((t) => t.provider));
  const relevant = earlier.filter((m) => m.id !== candidate.id && m.terms.some((t) => providers.has(t.provider)));
  const report = exposure([...relevant, candidate]).filter((e) => providers.has(e.provider));
  const before = new Map(exposure(relevant).map((e) => [`${e.provider}\u0000${e.field}`, e.unexplained]));
  const worse = report
    .filter(
      (e) =>
        e.unexplained < minUnexplainedShare &&
        e.unexplained < (before.get(`${e.provider}\u0000${e.field}`) ?? 1) - 1e-9,
    )
    .sort((a, b) => a.unexplained - b.unexplained);
  const e = worse[0];
  if (e) {
    const others = relevant.filter((m) => m.terms.some((t) => t.provider === e.provider)).map((m) => m.id);
    fail(
      'SH_ERR_MODEL_EXTRACTION',
      `model ${candidate.id}${others.length ? ` together with ${group}'s earlier model(s) ${others.join(', ')}` : ''} would leave only ${(e.unexplained * 100).toFixed(1)}% of ${e.provider}/${e.field}'s variance unexplained — a combination of their scores would estimate it; at least ${(minUnexplainedShare * 100).toFixed(0)}% must stay unexplained (docs/privacy.md)`,
      { provider: e.provider, field: e.field, models: others.join(','), unexplained: Number(e.unexplained.toFixed(4)) },
    );
  }
  return report;
}
