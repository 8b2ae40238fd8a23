/**
 * Output policy and limits (docs/design.md §7). One filled defaults object, validated up front.
 */
import { fail } from '../core/errors.ts';

export interface Policy {
  /** Anti-extraction: minimum fields with an effective (non-zero) weight per provider a model uses. */
  minFieldsPerProvider: number;
  /** Anti-extraction: the largest share of a provider's score variance one field may carry. */
  maxFieldVarianceShare: number;
  /** Maximum subjects per scoring job. */
  maxSubjectsPerJob: number;
  /** Maximum claims per verification job. */
  maxClaimsPerJob: number;
  /** Verification budget: claims a bank may make per subject per field per epoch (docs/design.md §7). */
  verifyBudgetPerEpoch: number;
  /** Length of a budget epoch in days (epochs are counted from 1970-01-01 UTC). */
  verifyEpochDays: number;
  /** Minimum training cohort: gradients the engine sees aggregate at least this many subjects (docs/design.md §7). */
  minTrainingCohort: number;
  /** Smallest randomizer range R accepted for a masked numeric comparison (custodian leakage bound, docs/design.md §5). */
  minComparisonR: number;
  /** Days a finished job's replay material (re-randomizers, results, job inputs) is kept before `retention purge`. */
  blobRetentionDays: number;
}

export const DEFAULT_POLICY: Readonly<Policy> = Object.freeze({
  minFieldsPerProvider: 3,
  maxFieldVarianceShare: 0.8,
  maxSubjectsPerJob: 200_000,
  maxClaimsPerJob: 200_000,
  verifyBudgetPerEpoch: 10,
  verifyEpochDays: 30,
  minComparisonR: 2,
  minTrainingCohort: 200,
  blobRetentionDays: 365,
});

/** Fill and validate a policy. @throws SH_ERR_INVALID_ARGUMENT */
export function policy(overrides: Partial<Policy> = {}): Policy {
  const p = { ...DEFAULT_POLICY, ...overrides };
  if (!Number.isInteger(p.minFieldsPerProvider) || p.minFieldsPerProvider < 1)
    fail('SH_ERR_INVALID_ARGUMENT', `"minFieldsPerProvider" expected an integer ≥ 1, got ${p.minFieldsPerProvider}`);
  if (!(p.maxFieldVarianceShare > 0 && p.maxFieldVarianceShare <= 1))
    fail('SH_ERR_INVALID_ARGUMENT', `"maxFieldVarianceShare" expected (0, 1], got ${p.maxFieldVarianceShare}`);
  if (!Number.isInteger(p.maxSubjectsPerJob) || p.maxSubjectsPerJob < 1)
    fail('SH_ERR_INVALID_ARGUMENT', `"maxSubjectsPerJob" expected an integer ≥ 1, got ${p.maxSubjectsPerJob}`);
  for (const k of [
    'maxClaimsPerJob',
    'verifyBudgetPerEpoch',
    'verifyEpochDays',
    'minComparisonR',
    'minTrainingCohort',
    'blobRetentionDays',
  ] as const) {
    if (!Number.isInteger(p[k]) || p[k] < 1)
      fail('SH_ERR_INVALID_ARGUMENT', `"${k}" expected an integer ≥ 1, got ${p[k]}`);
  }
  return p;
}

/** The budget epoch a time falls in. */
export function budgetEpoch(p: Policy, at: Date): number {
  return Math.floor(at.getTime() / (p.verifyEpochDays * 86_400_000));
}
