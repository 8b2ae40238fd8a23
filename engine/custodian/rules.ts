/**
 * A protocol's rules at the custodian: which bank-signed request type opens a job, what the job allows this custodian
 * to answer (derived from the bank-signed request alone — never from what the engine says), and whether one request
 * is inside the job. Each protocol writes its rules in its own folder (engine/protocols/<p>/custodian.ts); the
 * generic custodian (custodian.ts) loops over the rules it was given and enforces budgets and answered labels.
 */
import type { BankJobBody, BankClaims, DecryptMode } from './messages.ts';

export type JobKind = 'score' | 'verify' | 'train';

/** What a job allows one custodian: a number of decryptions/transfers, and protocol limits kept with it in the log. */
export interface Allowance {
  budget: number;
  /** Protocol limits the label checks use (training: iterations, columns, ownColumns); written to the custodian log. */
  limits?: Record<string, number>;
}

/** An opened job as the custodian tracks it. */
export interface OpenJob extends Allowance {
  jobId: string;
  kind: JobKind;
  used: number;
  /** Labels already answered: each is answered once. */
  labels: Set<string>;
}

export interface CustodianRules {
  readonly kind: JobKind;
  /** The bank-signed request type that opens a job of this kind (`safehouse.<kind>.request.v1`). */
  readonly requestType: string;
  /** The allowance a job gives `provider`'s custodian; budget 0 means the job does not involve it. */
  allowance(body: BankJobBody & Record<string, unknown>, provider: string): Allowance;
  /** Why a decryption (`mode`) or transfer (`'transfer'`) with this label is outside the job; undefined if inside. */
  refuse(job: OpenJob, label: string, mode: DecryptMode | 'transfer', provider: string): string | undefined;
  /** Token evaluations the bank signed for, per claim, on one of `provider`'s fields (verification only). */
  tokenAllowance?(bankRequest: BankClaims, provider: string, field: string): Map<string, number>;
}
