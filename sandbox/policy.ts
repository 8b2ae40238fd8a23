/**
 * Output policy and limits (docs/design.md §7, docs/privacy.md). One filled defaults object, validated up front.
 *
 * Two holders: the engine applies `Policy` to every job (it refuses early and says why), and each provider's custodian
 * applies its own `ProviderPolicy` — the subset it enforces itself, with its own values — to every request for its
 * provider, whatever the engine decided. The provider's limits are shown to it when it approves a model.
 */
import { fail } from '../core/errors.ts';

export interface ProviderPolicy {
  /** Anti-extraction: minimum fields with an effective (non-zero) weight per provider a model uses. */
  minFieldsPerProvider: number;
  /** Anti-extraction: the largest share of a provider's score variance one field may carry (one model). */
  maxFieldVarianceShare: number;
  /**
   * Anti-extraction across a bank group's models (sandbox/history.ts): the share of each field's variance that every
   * combination of the group's models must leave unexplained.
   */
  minUnexplainedShare: number;
  /** Days every per-subject budget is counted over, as a sliding window ending now (no epoch boundaries). */
  windowDays: number;
  /** Scoring: distinct models one bank group may score one subject with, per window. */
  scoreModelsPerSubject: number;
  /** Verification: answer units (one per sign bit a claim returns) per bank group, subject and field, per window. */
  verifyUnitsPerWindow: number;
  /** Verification: token evaluations (one per candidate value) per bank group, subject and field, per window. */
  tokenEvaluationsPerWindow: number;
  /** Training: the (ε, δ) differential-privacy guarantee of one job for each subject in it (custodian-added noise). */
  trainEpsilon: number;
  trainDelta: number;
  /** Training: the ε one subject may spend per bank group per window, summed over jobs. */
  trainSubjectEpsilon: number;
  /** Minimum training cohort: gradients aggregate at least this many subjects. */
  minTrainingCohort: number;
}

export interface Policy extends ProviderPolicy {
  /** Maximum subjects per scoring job. */
  maxSubjectsPerJob: number;
  /** Maximum claims per verification job. */
  maxClaimsPerJob: number;
  /** Smallest randomizer range R accepted for a masked numeric comparison (custodian leakage bound, docs/design.md §5). */
  minComparisonR: number;
  /** Days a finished job's replay material (re-randomizers, results, job inputs) is kept before `retention purge`. */
  blobRetentionDays: number;
}

export const DEFAULT_PROVIDER_POLICY: Readonly<ProviderPolicy> = Object.freeze({
  minFieldsPerProvider: 3,
  maxFieldVarianceShare: 0.8,
  minUnexplainedShare: 0.2,
  windowDays: 30,
  scoreModelsPerSubject: 4,
  verifyUnitsPerWindow: 10,
  tokenEvaluationsPerWindow: 10,
  trainEpsilon: 8,
  trainDelta: 1e-5,
  trainSubjectEpsilon: 16,
  minTrainingCohort: 200,
});

export const DEFAULT_POLICY: Readonly<Policy> = Object.freeze({
  ...DEFAULT_PROVIDER_POLICY,
  maxSubjectsPerJob: 200_000,
  maxClaimsPerJob: 200_000,
  minComparisonR: 2,
  blobRetentionDays: 365,
});

const INTEGER_KEYS = [
  'minFieldsPerProvider',
  'windowDays',
  'scoreModelsPerSubject',
  'verifyUnitsPerWindow',
  'tokenEvaluationsPerWindow',
  'minTrainingCohort',
  'maxSubjectsPerJob',
  'maxClaimsPerJob',
  'minComparisonR',
  'blobRetentionDays',
] as const;

function check<P extends Partial<Policy>>(p: P): P {
  for (const k of INTEGER_KEYS) {
    const v = p[k];
    if (v !== undefined && (!Number.isInteger(v) || v < 1))
      fail('SH_ERR_INVALID_ARGUMENT', `"${k}" expected an integer ≥ 1, got ${v}`, { field: k });
  }
  for (const k of ['maxFieldVarianceShare', 'minUnexplainedShare', 'trainDelta'] as const) {
    const v = p[k];
    if (v !== undefined && !(v > 0 && v <= 1))
      fail('SH_ERR_INVALID_ARGUMENT', `"${k}" expected a share in (0, 1], got ${v}`, { field: k });
  }
  for (const k of ['trainEpsilon', 'trainSubjectEpsilon'] as const) {
    const v = p[k];
    if (v !== undefined && !(Number.isFinite(v) && v > 0))
      fail('SH_ERR_INVALID_ARGUMENT', `"${k}" expected a positive number, got ${v}`, { field: k });
  }
  // One job spends trainEpsilon of each subject's trainSubjectEpsilon: a larger job ε could never train anyone.
  if (p.trainEpsilon !== undefined && p.trainSubjectEpsilon !== undefined && p.trainEpsilon > p.trainSubjectEpsilon)
    fail(
      'SH_ERR_INVALID_ARGUMENT',
      `"trainEpsilon" ${p.trainEpsilon} exceeds "trainSubjectEpsilon" ${p.trainSubjectEpsilon}: no subject could be trained`,
      { field: 'trainEpsilon' },
    );
  return p;
}

/** Fill and validate the engine's policy. @throws SH_ERR_INVALID_ARGUMENT */
export function policy(overrides: Partial<Policy> = {}): Policy {
  return check({ ...DEFAULT_POLICY, ...overrides });
}

/** Fill and validate a provider's policy (its custodian's limits). @throws SH_ERR_INVALID_ARGUMENT */
export function providerPolicy(overrides: Partial<ProviderPolicy> = {}): ProviderPolicy {
  const p = check({ ...DEFAULT_PROVIDER_POLICY, ...overrides });
  const out = {} as Record<string, unknown>;
  for (const k of Object.keys(DEFAULT_PROVIDER_POLICY)) out[k] = p[k as keyof ProviderPolicy];
  return out as unknown as ProviderPolicy;
}

/** The start of the sliding window that ends at `at` (ISO time). */
export function windowStart(p: Pick<ProviderPolicy, 'windowDays'>, at: Date): string {
  return new Date(at.getTime() - p.windowDays * 86_400_000).toISOString();
}
