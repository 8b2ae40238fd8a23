/**
 * A compiled model as the model-history rule reads it (sandbox/history.ts, docs/privacy.md "Scoring"): per term, the
 * function of its field the term adds (the raw value for a linear term; for a scorecard term its points function,
 * identified by its bin edges and the shape of its points, so scorecards that differ only by scale and shift are
 * one feature) and the term's coefficient on a common scale (signed w·σ; a scorecard's points half-range).
 */
import { sha256Hex } from '../core/hash.ts';
import type { HistoryModel } from '../sandbox/history.ts';
import { isScorecardTerm, type CompiledModel } from './model.ts';

export function historyModel(m: CompiledModel): HistoryModel {
  const terms: HistoryModel['terms'][number][] = [];
  m.terms.forEach((t, i) => {
    if (!t.effective) return;
    const spec = m.spec.terms[i]!;
    if (!isScorecardTerm(spec)) {
      const sign = t.columns[0]!.multiplier < 0n ? -1 : 1;
      terms.push({ provider: t.provider, field: t.field, feature: 'x', coefficient: sign * t.spread });
      return;
    }
    // The points' shape, shifted and scaled to [0, 1], so only what the function distinguishes counts.
    const pts = t.columns.map((c) => Number(c.multiplier));
    const lo = Math.min(...pts);
    const hi = Math.max(...pts);
    const shape = pts.map((p) => ((p - lo) / (hi - lo)).toFixed(6));
    const edges = spec.bins.map((b) => [b.lo, b.hi]);
    const id = sha256Hex(JSON.stringify({ edges, shape })).slice(0, 16);
    terms.push({ provider: t.provider, field: t.field, feature: `bins:${id}`, coefficient: t.spread });
  });
  return { id: m.spec.id, terms };
}
