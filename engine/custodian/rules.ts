/**
 * A protocol's rules at the custodian: which bank-signed request type opens a job, what the job allows this custodian
 * to answer (derived from the bank-signed request alone and the custodian's own budgets — never from what the engine
 * says), and whether one request is inside the job. Each protocol writes its rules in its own folder
 * (engine/protocols/<p>/custodian.ts); the generic custodian (custodian.ts) loops over the rules it was given and
 * enforces budgets, answered labels and its journal.
 */
import type { ProviderPolicy } from '../../sandbox/policy.ts';
import type { CustodianBudget, SpendRecord } from './budget.ts';
import type { BankJobBody, BankClaims, DecryptMode } from './messages.ts';

export type JobKind = 'score' | 'verify' | 'train';

/** What a job allows one custodian. */
export interface Allowance {
  /** Decryptions and transfers it may ask for. */
  budget: number;
  /** Protocol state the label checks read (kept in the custodian's journal, so it survives a restart). */
  state?: Record<string, unknown>;
  /** Subjects or claims the custodian refuses for this job (its own consent check, its own budgets); told to the engine. */
  refused?: string[];
  /** Why, for refusals that are not budget (a consent status from the custodian's own ledger copy). */
  reasons?: Record<string, string>;
  /** What the job spends of the custodian's budgets (journaled when the job is opened). */
  spend?: SpendRecord[];
  /** Training, the key holder: the (ε, δ) its noise gives each subject (told to the engine). */
  privacy?: { epsilon: number; delta: number };
}

/** An opened job as the custodian tracks it. */
export interface OpenJob {
  jobId: string;
  kind: JobKind;
  budget: number;
  state: Record<string, unknown>;
  refused: string[];
  used: number;
  /** Labels already answered: each is answered once. */
  labels: Set<string>;
  /** `zero`-mode labels answered "every slot is 0" (training's label check). */
  zeros: Set<string>;
  /** The signing bank and the X25519 key its registrar certificate names: the only recipient of sealed answers. */
  recipient?: { party: string; x25519: string };
  reasons?: Record<string, string>;
}

/**
 * What a custodian knows of its own provider's data (from the provider's own tables, never from the engine): which
 * fields are token fields, and the subjects of each dataset in slot order, so it can tell whose value a slot holds.
 */
export interface ProviderData {
  fieldType(field: string): 'id' | 'numeric' | undefined;
  /**
   * Which subject row r of a dataset holds (row b·slots + i is slot i of block b; undefined past the last row), or
   * undefined when it holds no copy of the dataset.
   */
  layout(datasetId: string): ((row: number) => string | undefined) | undefined;
  /** The inverse of `layout`: each subject's row in a dataset (built once per load of the table), if it holds one. */
  rows?(datasetId: string): ReadonlyMap<string, number> | undefined;
  /** Read the provider's tables and prepare what jobs will ask of them (approved models' partial scores), ahead. */
  warm?(): void;
  /** Whether the provider approved a model with this hash (its own record of approvals). */
  approvedModel(modelHash: string): boolean;
  /** The provider's current dataset holding a field (its own tables), if any. */
  datasetWith(field: string): string | undefined;
  /** The category of the provider's dataset holding a field (its own tables), if any. */
  categoryOf(field: string): string | undefined;
  /** The fields of this provider's data that the approved model with this hash uses (its own approval records). */
  modelFields(modelHash: string): string[];
  /**
   * The approved model's partial score of each row of one of its datasets, from its own records and its own
   * compilation of its own terms (engine/provider/tables.ts); undefined when it cannot compute it.
   */
  partialScore(modelHash: string, datasetId: string): ((row: number) => bigint) | undefined;
}

/** What the custodian knows when a job is opened. */
export interface OpenContext {
  provider: string;
  /** The signing bank's group as the registrar certified it (budgets count per group). */
  group: string;
  /**
   * The subject's consent for the signing bank, the job's purpose, this operation and these categories, as of the
   * request's time — judged by the custodian from its own copy of the ledger (certified keys, checked signatures).
   */
  consent(subject: string, operation: 'score' | 'verify' | 'train', categories: string[]): string;
  policy: ProviderPolicy;
  budget: CustodianBudget;
  now: Date;
  data: ProviderData;
  /** What the engine said it will not ask about (subjects or claim ids): neither answered nor counted. */
  skip: ReadonlySet<string>;
}

export interface CustodianRules {
  readonly kind: JobKind;
  /** The bank-signed request type that opens a job of this kind (`safehouse.<kind>.request.v1`). */
  readonly requestType: string;
  /** The allowance a job gives this custodian; budget 0 means the job does not involve it. */
  allowance(body: BankJobBody & Record<string, unknown>, ctx: OpenContext): Allowance;
  /** Why a decryption (`mode`) or transfer (`'transfer'`) is outside the job; undefined if inside. */
  refuse(job: OpenJob, label: string, mode: DecryptMode | 'transfer', provider: string): string | undefined;
  /**
   * Slots of a decrypted block the bank may not learn (subjects outside the job's allowance), which the custodian
   * overwrites with uniform values mod t before answering; a string is a refusal (it cannot tell whose slots these
   * are). Absent: every slot of an admitted label may be answered.
   */
  blind?(job: OpenJob, label: string, data: ProviderData, slots: number): number[] | string;
  /**
   * `sum` mode: the standard deviation of the noise the custodian adds to each group sum (0: none), or a refusal.
   * Computed from the signed request, the provider's policy and the request's declared bound only.
   */
  noise?(
    job: OpenJob,
    label: string,
    request: { bound?: string; groupSize?: number },
    policy: ProviderPolicy,
    params: { t: bigint; slots: number },
  ): number | string;
  /**
   * After decrypting, before answering: why these values (v + m, mod t) are not what the job computes on the slots it
   * answers (`answered`), or undefined. Scoring checks each against the approved model on the provider's own records.
   */
  verify?(
    job: OpenJob,
    label: string,
    values: BigUint64Array,
    answered: (slot: number) => boolean,
    request: { maskKey?: string },
    data: ProviderData,
    params: { t: bigint; slots: number },
  ): string | undefined;
  /** Transfer: why moving these slots ([from, to]) is outside the job (a `from` slot of a subject it excludes). */
  moves?(
    job: OpenJob,
    label: string,
    moves: ReadonlyArray<readonly [number, number]>,
    data: ProviderData,
    slots: number,
  ): string | undefined;
  /** Token evaluations the bank signed for, per claim, on one of `provider`'s fields (verification only). */
  tokenAllowance?(job: OpenJob, bankRequest: BankClaims, provider: string, field: string): Map<string, number>;
}
