/**
 * Verification, the bank's side: sign the claims with each value replaced by a salted commitment (custodians count
 * and check claims from the signed document without learning a claimed value; the openings go to the engine only),
 * then open the result — the engine-determined answers sealed by the engine, numeric answers read from the
 * custodians' sealed sign bits.
 */
import { randomBytes } from 'node:crypto';
import { fail } from '../../../core/errors.ts';
import { openSealed } from '../../../core/sealbox.ts';
import { signJson, type Signed } from '../../../core/sign.ts';
import {
  CLAIM_ID,
  commitment,
  type Claim,
  type ClaimOpenings,
  type ClaimResult,
  type SignedClaim,
  type VerifyRequest,
  type VerifyResult,
} from './messages.ts';

/**
 * Bank side: sign a verification request; returns the signed request (for the engine and, through it, custodians) and
 * the commitment openings (for the engine only).
 * @throws SH_ERR_CLAIM_INVALID for duplicate claim ids or a wrong number of values.
 */
export function buildVerifyRequest(
  r: { jobId: string; bank: string; purpose: string; claims: readonly Claim[]; requestedAt?: string },
  bankSecretKey: Uint8Array,
): { signed: Signed<VerifyRequest>; openings: ClaimOpenings } {
  const openings: ClaimOpenings = {};
  const claims = r.claims.map((c, i): SignedClaim => {
    if (!CLAIM_ID.test(c.claimId))
      fail('SH_ERR_CLAIM_INVALID', `claims[${i}]: "claim_id" expected ${CLAIM_ID}, got ${JSON.stringify(c.claimId)}`, {
        claim: i,
      });
    if (openings[c.claimId])
      fail('SH_ERR_CLAIM_INVALID', `claims[${i}]: claim id ${c.claimId} is repeated`, { claim: c.claimId });
    const salt = randomBytes(16).toString('hex');
    openings[c.claimId] = { values: [...c.values], salt };
    return {
      claimId: c.claimId,
      subject: c.subject,
      provider: c.provider,
      field: c.field,
      op: c.op,
      count: c.values.length,
      commitment: commitment(c.claimId, c.values, salt),
    };
  });
  const body: VerifyRequest = {
    type: 'safehouse.verify.request.v1',
    jobId: r.jobId,
    bank: r.bank,
    purpose: r.purpose,
    requestedAt: r.requestedAt ?? new Date().toISOString(),
    claims,
  };
  return { signed: signJson(body, r.bank, bankSecretKey), openings };
}

/**
 * Bank side: open the result; with `expected` (the signed claim ids), check every claim got an answer.
 * @throws SH_ERR_SEALED_BOX when a box was not sealed to this key or was altered; SH_ERR_PARAMS_MISMATCH when a claim
 *   is unanswered.
 * @example openVerifyResult(result, 'bank1', x25519SecretKey).get('c1') === 'yes'
 */
export function openVerifyResult(
  result: VerifyResult,
  bank: string,
  bankX25519Secret: Uint8Array,
  expected?: readonly string[],
): Map<string, ClaimResult> {
  const direct = JSON.parse(
    new TextDecoder().decode(
      openSealed(bankX25519Secret, result.direct, {
        type: 'safehouse.verify.direct.v1',
        jobId: result.jobId,
        jobHash: result.jobHash,
        recipient: bank,
      }),
    ),
  ) as Record<string, ClaimResult>;
  const bits = result.boxes.map((b) =>
    openSealed(bankX25519Secret, b.sealed, {
      jobId: result.jobId,
      jobHash: result.jobHash,
      provider: b.provider,
      label: b.label,
      mode: 'sign',
      recipient: bank,
    }),
  );
  const out = new Map<string, ClaimResult>(Object.entries(direct));
  for (const n of result.numeric) {
    const all = n.parts.every(([box, slot]) => ((bits[box]![slot >> 3]! >> (slot & 7)) & 1) === 1);
    out.set(n.claimId, all !== n.negate ? 'yes' : 'no');
  }
  const missing = (expected ?? []).filter((id) => !out.has(id));
  if (missing.length)
    fail(
      'SH_ERR_PARAMS_MISMATCH',
      `the result answers no claim ${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ' …' : ''}`,
    );
  return out;
}
