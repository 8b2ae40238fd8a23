/**
 * Model vetting (docs/design.md §7): a compiled model (fields exist and may be scored, bound calculator passed — see
 * models/model.ts) must also pass the anti-extraction rules before any provider may approve it:
 *  1. at least `minFieldsPerProvider` fields with an effective weight per provider used;
 *  2. no field carries more than `maxFieldVarianceShare` of that provider's score variance, estimated from the
 *     provider's published field statistics (std) as (|w|·σ_f)² / Σ_g (|w_g|·σ_g)²; for scorecard terms the half-range
 *     of their points stands in for |w|·σ. Rule 2 is what stops "digit packing" (x1·10^8 + x2·10^4 + x3): a field
 *     placed in high digits necessarily dominates the variance.
 */
import { fail } from '../core/errors.ts';
import type { ProviderPolicy } from './policy.ts';

/**
 * What vetting reads of a compiled model (models/model.ts `CompiledModel` has these members): per term, its provider
 * and field, whether it can change the score at all, and the half-spread of its contribution.
 */
export interface VettableModel {
  spec: { id: string };
  terms: ReadonlyArray<{ provider: string; field: string; effective: boolean; spread: number }>;
}

export interface VettingReport {
  providers: Array<{ provider: string; effectiveFields: number; maxShare: number; maxShareField: string }>;
}

/** @throws SH_ERR_MODEL_EXTRACTION naming the provider and field. */
export function vetModel(
  model: VettableModel,
  policy: Pick<ProviderPolicy, 'minFieldsPerProvider' | 'maxFieldVarianceShare'>,
): VettingReport {
  const byProvider = new Map<string, Array<VettableModel['terms'][number]>>();
  for (const t of model.terms) byProvider.set(t.provider, [...(byProvider.get(t.provider) ?? []), t]);
  const providers: VettingReport['providers'] = [];
  for (const [provider, terms] of byProvider) {
    const effective = terms.filter((t) => t.effective);
    if (effective.length < policy.minFieldsPerProvider) {
      fail(
        'SH_ERR_MODEL_EXTRACTION',
        `model ${model.spec.id} uses ${effective.length} effective field(s) of ${provider}; at least ${policy.minFieldsPerProvider} are required`,
        { provider, fields: effective.length },
      );
    }
    const total = effective.reduce((a, t) => a + t.spread * t.spread, 0);
    let maxShare = 0;
    let maxShareField = '';
    for (const t of effective) {
      const share = total > 0 ? (t.spread * t.spread) / total : 1;
      if (share > maxShare) [maxShare, maxShareField] = [share, t.field];
    }
    if (maxShare > policy.maxFieldVarianceShare) {
      fail(
        'SH_ERR_MODEL_EXTRACTION',
        `model ${model.spec.id}: field ${provider}/${maxShareField} carries ${(maxShare * 100).toFixed(1)}% of ${provider}'s score variance (limit ${(policy.maxFieldVarianceShare * 100).toFixed(0)}%)`,
        { provider, field: maxShareField },
      );
    }
    providers.push({ provider, effectiveFields: effective.length, maxShare, maxShareField });
  }
  return { providers };
}
