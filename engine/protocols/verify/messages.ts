/**
 * Verification's messages (数据核验, docs/protocols.md "Verification"): claims as the bank writes them, the signed
 * request with salted commitments instead of values, the openings (to the engine only), the result, and the labels of
 * custodian requests — built and parsed here only, so the custodian's rules read exactly what the engine wrote.
 */
import { canonicalize } from '../../../core/jcs.ts';
import { sha256Hex } from '../../../core/hash.ts';
import type { SealedBox } from '../../../core/sealbox.ts';
import type { ConsentStatus } from '../../../sandbox/consent.ts';

export const VERIFY_REQUEST_TYPE = 'safehouse.verify.request.v1';

export type ClaimOp = 'eq' | 'in' | 'ne' | 'gte' | 'lte' | 'between';
export type ClaimResult = 'yes' | 'no' | 'no_data' | 'over_budget' | `refused:${ConsentStatus}`;

/** A claim as the bank writes it (claims.csv). `values` has one entry, except `in` (a list) and `between` (two). */
export interface Claim {
  claimId: string;
  subject: string;
  provider: string;
  field: string;
  op: ClaimOp;
  values: string[];
}

/** What the bank signs per claim: the value itself is replaced by a salted commitment, so custodians can count
 * evaluations per claim from the signed request without learning claimed values. */
export interface SignedClaim {
  claimId: string;
  subject: string;
  provider: string;
  field: string;
  op: ClaimOp;
  count: number;
  commitment: string;
}

export interface VerifyRequest {
  type: 'safehouse.verify.request.v1';
  jobId: string;
  bank: string;
  purpose: string;
  requestedAt: string;
  claims: SignedClaim[];
}

/** Openings of the commitments, sent to the engine only. */
export type ClaimOpenings = Record<string, { values: string[]; salt: string }>;

export interface SignBox {
  provider: string;
  datasetId: string;
  field: string;
  block: number;
  round: number;
  label: string;
  sealed: SealedBox;
}

export interface VerifyResult {
  type: 'safehouse.verify.result.v1';
  jobId: string;
  jobHash: string;
  /** Results the engine determined (refusals, no_data, over_budget, token matches), sealed to the bank. */
  direct: SealedBox;
  /** Sealed sign vectors from custodians (numeric claims). */
  boxes: SignBox[];
  /** How each numeric claim's answer is read: AND of the sign bits at (box, slot), negated for `ne`. */
  numeric: Array<{ claimId: string; parts: Array<[box: number, slot: number]>; negate: boolean }>;
  /** Randomizer range R used per numeric field (the custodian's leakage bound). */
  ranges: Record<string, string>;
}

export interface VerifyProgress {
  phase: 'check' | 'tokens' | 'numeric' | 'done';
  done: number;
  total: number;
}

export const CLAIM_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;
export const TOKEN_OPS: readonly ClaimOp[] = ['eq', 'in'];
export const NUMERIC_OPS: readonly ClaimOp[] = ['eq', 'ne', 'gte', 'lte', 'between'];
export const MAX_IN_VALUES = 16;
/** Blinded elements per custodian token request. */
export const TOKEN_BATCH = 512;

/**
 * What a claim costs against the verification budgets (docs/privacy.md "Verification"): what it can answer. A
 * `gte`/`lte` comparison returns one sign bit (1 unit); `eq`, `ne` and `between` return two (below, inside, above:
 * 2 units); a token claim is a yes/no for each candidate value (`eq`: 1, `in`: one per value).
 */
export function claimUnits(claim: { op: ClaimOp; count: number }, token: boolean): number {
  if (token) return Math.max(1, claim.count);
  return claim.op === 'gte' || claim.op === 'lte' ? 1 : 2;
}

/** The bank's salted commitment to a claim's values: SHA-256(JCS{type, claimId, values, salt}). */
export function commitment(claimId: string, values: readonly string[], salt: string): string {
  return sha256Hex(canonicalize({ type: 'safehouse.claim.commitment.v1', claimId, values, salt }));
}

/** A numeric comparison round: `verify/<provider>/<datasetId>/<field>/block/<b>/round/<r>`. */
export function compareLabel(provider: string, datasetId: string, field: string, block: number, round: number): string {
  return `verify/${provider}/${datasetId}/${field}/block/${block}/round/${round}`;
}

/** Inverse of {@link compareLabel}; undefined for anything else. */
export function parseCompareLabel(
  label: string,
): { provider: string; datasetId: string; field: string; block: number; round: number } | undefined {
  const m = /^verify\/([^/]+)\/([^/]+)\/([^/]+)\/block\/(\d+)\/round\/(\d+)$/.exec(label);
  return m ? { provider: m[1]!, datasetId: m[2]!, field: m[3]!, block: Number(m[4]), round: Number(m[5]) } : undefined;
}

/** A batch of blinded token claims: `verify/<provider>/<field>/tokens/<k>`. */
export function tokensLabel(provider: string, field: string, batch: number): string {
  return `verify/${provider}/${field}/tokens/${batch}`;
}
