/**
 * Output policy and limits (DESIGN §7). One filled defaults object, validated up front (STYLE §5).
 */
import { fail } from '../engine/errors.ts';

export interface Policy {
  /** Anti-extraction: minimum fields with an effective (non-zero) weight per provider a model uses. */
  minFieldsPerProvider: number;
  /** Anti-extraction: the largest share of a provider's score variance one field may carry. */
  maxFieldVarianceShare: number;
  /** Maximum subjects per scoring job. */
  maxSubjectsPerJob: number;
}

export const DEFAULT_POLICY: Readonly<Policy> = Object.freeze({
  minFieldsPerProvider: 3,
  maxFieldVarianceShare: 0.8,
  maxSubjectsPerJob: 200_000,
});

/** Fill and validate a policy. @throws SH_ERR_INVALID_ARGUMENT */
export function policy(overrides: Partial<Policy> = {}): Policy {
  const p = { ...DEFAULT_POLICY, ...overrides };
  if (!Number.isInteger(p.minFieldsPerProvider) || p.minFieldsPerProvider < 1) fail('SH_ERR_INVALID_ARGUMENT', `"minFieldsPerProvider" expected an integer ≥ 1, got ${p.minFieldsPerProvider}`);
  if (!(p.maxFieldVarianceShare > 0 && p.maxFieldVarianceShare <= 1)) fail('SH_ERR_INVALID_ARGUMENT', `"maxFieldVarianceShare" expected (0, 1], got ${p.maxFieldVarianceShare}`);
  if (!Number.isInteger(p.maxSubjectsPerJob) || p.maxSubjectsPerJob < 1) fail('SH_ERR_INVALID_ARGUMENT', `"maxSubjectsPerJob" expected an integer ≥ 1, got ${p.maxSubjectsPerJob}`);
  return p;
}
