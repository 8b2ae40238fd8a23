/**
 * Verification at the custodian — what a provider's custodian sees and allows in a verification job (数据核验).
 *
 * Sees: the bank-signed request — per claim its id, subject, provider, field, op, the number of values and a salted
 * commitment to them, never a claimed value. Numeric claims: per (its dataset, field, block, round) one ciphertext
 * of r·d·(x − c) + r' (r uniform in [1, R], r' in [0, r), d = ±1; unused slots multiplier 0 and a uniform offset),
 * which it decrypts and answers only as one sign bit per slot sealed to the bank — it learns r·(x − c) + r' for values
 * it already holds, hiding |x − c| up to a factor in [1, R] (R per field in the result and the ledger). Token claims:
 * blinded P-256 points (RFC 9497 POPRF), uniformly random to it, tagged with the signed claim each serves.
 * Allows: a job opened with the bank's signature (`safehouse.verify.request.v1`, fresh, naming the signer) with claims
 * on this provider; at most two comparisons per value the bank signed for this provider's claims (a numeric `eq`/`ne`
 * is ≥ and ≤), labels `verify/<own provider>/<dataset>/<field>/block/<b>/round/<r>` answered once, mode `sign` only;
 * per token claim at most the `count` of evaluations the bank signed for, on that claim's own (`eq`/`in`) field,
 * counted across every batch of the job and across restarts.
 */
import type { CustodianRules } from '../../custodian/rules.ts';
import { VERIFY_REQUEST_TYPE, parseCompareLabel } from './messages.ts';

export const verifyRules: CustodianRules = {
  kind: 'verify',
  requestType: VERIFY_REQUEST_TYPE,
  allowance(body, provider) {
    const claims = Array.isArray(body.claims) ? (body.claims as Array<{ provider?: string; count?: number }>) : [];
    // A numeric eq/ne is two comparisons (≥ and ≤) per value; each decryption answers at least one comparison.
    return {
      budget:
        2 *
        claims
          .filter((c) => c?.provider === provider)
          .reduce((a, c) => a + (Number.isInteger(c.count) && c.count! > 0 ? c.count! : 0), 0),
    };
  },
  refuse(_job, label, mode, provider) {
    if (!label.startsWith('verify/')) return `label ${JSON.stringify(label)} is not a verify label`;
    if (mode !== 'sign') return `a verify job does not use mode ${mode}`;
    const l = parseCompareLabel(label);
    if (!l || l.provider !== provider)
      return `label ${JSON.stringify(label)} is not one of provider ${provider}'s comparison blocks`;
    return undefined;
  },
  tokenAllowance(bankRequest, provider, field) {
    return new Map(
      bankRequest.body.claims
        .filter((c) => c.provider === provider && c.field === field && (c.op === 'eq' || c.op === 'in'))
        .map((c) => [c.claimId, c.count]),
    );
  },
};
