/**
 * What the engine and a provider's custodian say to each other (docs/design.md §4): the engine-signed requests —
 * masked decryption (`seal` | `sum` | `sign`), domain transfer, blinded token evaluation — the custodian-signed
 * answers, the bank-signed job a series of requests serves, and the `Custodian` interface both the in-process
 * custodian (engine/custodian/custodian.ts) and its HTTP client (api/custodian-http.ts) implement.
 */
import type { Signed } from '../../core/sign.ts';
import type { SealedBox } from '../../core/sealbox.ts';
import type { LedgerUpdate } from './monitor.ts';

/**
 * `seal`: the vector sealed to a recipient (scoring); `sign`: sign bits sealed (verification); `sum`: group sums
 * (training, with the custodian's noise); `zero`: only whether every slot is 0 (training's label check).
 */
export type DecryptMode = 'seal' | 'sum' | 'sign' | 'zero';

/** How long a bank-signed request may be shown to a custodian after the bank signed it. */
export const BANK_REQUEST_TTL_MS = 15 * 60_000;

export interface DecryptRequest {
  type: 'safehouse.custodian.decrypt.v1';
  paramsId: string;
  provider: string;
  jobId: string;
  /** Hash of the job request (and through it the model hash): peers agree on what is being computed. */
  jobHash: string;
  /** Label of this request inside the job (e.g. "score/tax/block/0"); bound into sealed boxes. */
  label: string;
  mode: DecryptMode;
  /** SHA-256 (hex) of the serialized ciphertext sent with the request. */
  ciphertext: string;
  recipient?: { party: string; x25519: string };
  /**
   * Scoring: the block's mask key (hex; HKDF from the job seed, docs/design.md §4.2). The key holder derives the mask,
   * checks that every slot it answers is the approved model's partial score on its own records, and only then seals
   * v + m — so a column or any other function of its data cannot be sent under a score label.
   */
  maskKey?: string;
  /**
   * SHA-256 of the engine's re-randomizer blob for this ciphertext (the auditor's replay material; the custodian does
   * not use it): a job resumed after a crash that takes the first run's answer ledgers the first run's blob.
   */
  rerandomizer?: string;
  groupSize?: number;
  /**
   * Training `sum` of an iteration: the engine's bound max|D_i| on one subject's residual (decimal), from which the
   * custodian calibrates its noise (never below the label term 2s it derives itself from the signed request).
   */
  bound?: string;
}

export interface DecryptResponse {
  type: 'safehouse.custodian.response.v1';
  provider: string;
  jobId: string;
  label: string;
  /** SHA-256 of the canonical signed request. */
  requestHash: string;
  mode: DecryptMode;
  sealed?: SealedBox;
  /** `sum` mode: group sums of (v + m) mod t, plus the custodian's noise, as decimal strings. */
  sums?: string[];
  /** `sum` mode of a training iteration: the standard deviation of the noise added to each group sum. */
  sigma?: number;
  /** `zero` mode: whether every slot decrypted to 0. */
  zero?: boolean;
}

/**
 * Engine → custodian: domain transfer (docs/design.md §4.3). The custodian decrypts a masked vector v + m under its
 * own key, moves slots (`moves`: [from, to] pairs, relaying the vector into another provider's subject layout, zeros
 * elsewhere) and encrypts the result under the target provider's public key. The engine then subtracts the moved mask.
 */
export interface TransferRequest {
  type: 'safehouse.custodian.transfer.v1';
  paramsId: string;
  provider: string;
  jobId: string;
  jobHash: string;
  label: string;
  ciphertext: string;
  target: { provider: string; bfvPublicKey: string };
  moves: Array<[from: number, to: number]>;
}

export interface TransferResponse {
  type: 'safehouse.custodian.transfer.response.v1';
  provider: string;
  jobId: string;
  label: string;
  requestHash: string;
  /** SHA-256 of the returned ciphertext (sent alongside). */
  ciphertext: string;
}

/** Engine → custodian: evaluate blinded token claims (RFC 9497 POPRF, docs/design.md §4.4). */
export interface TokenEvalRequest {
  type: 'safehouse.custodian.oprf.v1';
  suite: 'P256-SHA256';
  mode: 'POPRF';
  provider: string;
  jobId: string;
  /** SHA-256 of the canonical bank-signed verify request this evaluation serves. */
  jobHash: string;
  field: string;
  epoch: number;
  label: string;
  /** Blinded points (hex), each tagged with the bank-signed claim it serves. */
  elements: Array<{ claimId: string; blinded: string }>;
}

export interface TokenEvalResponse {
  type: 'safehouse.custodian.oprf.response.v1';
  provider: string;
  jobId: string;
  label: string;
  requestHash: string;
  evaluated: string[];
  /** One batch DLEQ proof (hex) over all elements. */
  proof: string;
}

/** The members every bank-signed job request has; each protocol's request type extends it. */
export interface BankJobBody {
  type: string;
  jobId: string;
  bank: string;
  requestedAt: string;
}

/**
 * A bank-signed job request (score, verify or train) as the bank signed it. The engine shows it to every custodian the
 * job involves before asking for anything (`openJob`); every later request names it by `jobHash` = SHA-256 of its
 * canonical form, and the custodian answers only within the allowance its protocol's rules derive from the job itself.
 */
export type BankJob = Signed<BankJobBody>;

/** The bank-signed verification request a token evaluation is counted against (engine/protocols/verify/). */
export type BankClaims = Signed<
  BankJobBody & { claims: Array<{ claimId: string; provider: string; field: string; op: string; count: number }> }
>;

/** What the engine tells a custodian when it shows a job (it can only narrow what the custodian answers). */
export interface OpenOptions {
  /**
   * Subjects (scoring) or claim ids (verification) the engine will not ask about — refused for consent, missing
   * data or its own budget. The custodian neither answers nor counts them.
   */
  skip?: readonly string[];
}

/** A custodian's answer to an opened job. */
export interface OpenedJob {
  /** Subjects (scoring, training) or claim ids (verification) it will not answer for: its own consent check and budgets. */
  refused: string[];
  /** For refusals that are not budget: the consent status the custodian found itself (NO_CONSENT, REVOKED, …). */
  reasons?: Record<string, string>;
  /** Training, the key holder: the (ε, δ) its noise gives each subject of the job (the provider's policy). */
  privacy?: { epsilon: number; delta: number };
}

export interface Custodian {
  readonly provider: string;
  readonly paramsId: string;
  /** Serialized BFV public key (what the engine re-randomizes with and other providers transfer to). */
  readonly bfvPublicKey: Uint8Array;
  /** Ed25519 key the custodian signs responses with. */
  readonly signingPublicKey: Uint8Array;
  /**
   * Show the custodian the bank-signed job a series of requests serves (idempotent). The custodian checks the bank's
   * signature against the public registry, that the request is fresh and that it involves this provider, and derives
   * the job's allowance; decryptions and transfers naming any other job hash are refused.
   * Answers with what the custodian refuses for this job under its own budgets (subjects, or claims for
   * verification), which the engine must answer as refused; the same answer every time the job is shown.
   * @throws SH_ERR_BAD_SIGNATURE, SH_ERR_PARAMS_MISMATCH, SH_ERR_REQUEST_STALE
   */
  openJob(job: BankJob, opts?: OpenOptions): Promise<OpenedJob>;
  /** How many ledger leaves the custodian has accepted (docs/trust.md). */
  ledgerState(): Promise<{ size: number }>;
  /**
   * Send the custodian the next ledger leaves, with a signed checkpoint on the last batch: it accepts them only if they
   * extend the checkpoint it holds to that root. @throws SH_ERR_LEDGER_INCONSISTENT
   */
  follow(update: LedgerUpdate): Promise<{ size: number }>;
  decrypt(request: Signed<DecryptRequest>, ciphertext: Uint8Array): Promise<Signed<DecryptResponse>>;
  /**
   * Evaluate blinded token claims in one batch with a DLEQ proof, refusing more evaluations per claim than the
   * bank-signed request allows (SH_ERR_CUSTODIAN_BUDGET) and identity or invalid points (SH_ERR_TOKEN_INVALID).
   */
  evaluateTokens(request: Signed<TokenEvalRequest>, bankRequest: BankClaims): Promise<Signed<TokenEvalResponse>>;
  /**
   * The answer this custodian already gave to `label` of a running job: the engine-signed request it answered, its
   * signed response and (transfer) the ciphertext — what an engine resuming a job after a crash takes instead of
   * asking again (a label is answered once). Undefined when the label was not answered.
   */
  answered?(
    jobHash: string,
    label: string,
  ): Promise<{ request: unknown; response: unknown; ciphertext?: string } | undefined>;
  /** Domain transfer with relayout (docs/design.md §4.3): returns Enc_target(π(v + m)) and a signed receipt. */
  transfer(
    request: Signed<TransferRequest>,
    ciphertext: Uint8Array,
    targetPublicKey: Uint8Array,
  ): Promise<{ response: Signed<TransferResponse>; ciphertext: Uint8Array }>;
}

export interface CustodianKeys {
  bfvSecretKey: Uint8Array;
  bfvPublicKey: Uint8Array;
  ed25519SecretKey: Uint8Array;
  ed25519PublicKey: Uint8Array;
  /** RFC 9497 POPRF key pair (P256-SHA256) for token fields. */
  oprfSecretKey?: Uint8Array;
  oprfPublicKey?: Uint8Array;
}

export interface CustodianView {
  label: string;
  mode: DecryptMode;
  /** The residues the custodian decrypted, exactly as it sees them. */
  values: BigUint64Array;
}
