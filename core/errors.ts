/**
 * The one catalog of Safehouse's coded errors. Every error a user can meet carries a stable `code`
 * from this table, an HTTP status for the API, and a message that names the offending field or value.
 * `docs/errors.md` lists the same codes; `test/core/errors.test.ts` checks catalog, docs and source agree both ways.
 *
 * Split by cause: `input` (malformed or out-of-range input), `auth` (signature, consent, approval),
 * `state` (the request is well formed but the system state forbids it), `integrity` (stored data or a peer's
 * message fails a check), `limit` (a policy or resource bound), `internal` (a bug: messages are hidden from API users).
 */
export type ErrorKind = 'input' | 'auth' | 'state' | 'integrity' | 'limit' | 'internal';

interface CatalogEntry {
  readonly kind: ErrorKind;
  readonly status: number;
  readonly summary: string;
}

const e = (kind: ErrorKind, status: number, summary: string): CatalogEntry => ({ kind, status, summary });

export const ERRORS = {
  // --- general
  SH_ERR_INVALID_ARGUMENT: e('input', 400, 'An argument has the wrong type, shape or range; the message names it.'),
  SH_ERR_NOT_FOUND: e('state', 404, 'A named object (job, model, dataset, blob) does not exist.'),
  SH_ERR_ALREADY_EXISTS: e('state', 409, 'An object with this id already exists.'),
  SH_ERR_INTERNAL: e('internal', 500, 'An unexpected failure; the details are logged, not returned.'),
  SH_ERR_HOME_NOT_INITIALIZED: e('state', 409, 'The data directory has not been set up with `safehouse init`.'),
  // --- subjects
  SH_ERR_USCC_FORMAT: e('input', 400, 'A USCC is not 18 characters from the GB 32100 alphabet.'),
  SH_ERR_USCC_CHECK: e('input', 400, 'A USCC has a wrong GB 32100 check character.'),
  // --- CSV and schema ingest
  SH_ERR_CSV_MALFORMED: e('input', 400, 'A CSV file cannot be parsed (quotes, column count, encoding, header).'),
  SH_ERR_CSV_UNKNOWN_FIELD: e('input', 400, 'A CSV column names a field the schema does not declare.'),
  SH_ERR_CSV_VALUE: e('input', 400, 'A CSV cell is not a valid value of its field (type, decimals, bounds).'),
  SH_ERR_ID_VALUE: e('input', 400, 'An id value is empty or invalid after normalization.'),
  SH_ERR_CSV_DUPLICATE_SUBJECT: e('input', 400, 'A subject appears twice in one CSV.'),
  SH_ERR_SCHEMA_INVALID: e('input', 400, 'A dataset schema is malformed.'),
  SH_ERR_UNKNOWN_CATEGORY: e('input', 400, 'A schema names a category the catalog does not have.'),
  SH_ERR_FIELD_CLASS_NOT_ALLOWED: e('input', 400, "A field's class is not one its category allows."),
  SH_ERR_UNKNOWN_FIELD: e('input', 400, 'A model or request names a field that is not in any uploaded dataset.'),
  // --- parties and signatures
  SH_ERR_UNKNOWN_PARTY: e('state', 404, 'No party with this id is registered.'),
  SH_ERR_PARTY_ROLE: e('auth', 403, 'The party does not have the role this action needs.'),
  SH_ERR_BAD_SIGNATURE: e('auth', 401, 'A signature over a request, upload or statement does not verify.'),
  SH_ERR_CERT_INVALID: e(
    'auth',
    403,
    "A bank's or enterprise's key has no valid certificate from the registrar (real-name registration).",
  ),
  // --- consent
  SH_ERR_CONSENT_INVALID: e('input', 400, 'A consent or revocation statement is malformed.'),
  SH_ERR_CONSENT_NOT_FOUND: e('state', 404, 'No consent matches the revocation request.'),
  // --- models and vetting
  SH_ERR_MODEL_INVALID: e('input', 400, 'A model file is malformed (kind, terms, weights, bins).'),
  SH_ERR_MODEL_PRECISION: e('input', 400, 'A model weight or point value has more than 6 decimal places.'),
  SH_ERR_MODEL_FIELD_CLASS: e('auth', 403, 'A model uses a field whose class does not allow use in models.'),
  SH_ERR_MODEL_EXTRACTION: e(
    'auth',
    403,
    "A model fails the anti-extraction rules (too few fields, one field dominates, or with the bank group's earlier models a field would be isolated).",
  ),
  SH_ERR_MODEL_NOT_APPROVED: e('auth', 403, 'A model is not approved by every provider it uses.'),
  SH_ERR_MODEL_STALE: e('state', 409, "A provider's derived model features do not match its current dataset."),
  SH_ERR_BOUND_OVERFLOW: e('limit', 422, 'The bound calculator cannot prove |result| < t/2 for this computation.'),
  // --- jobs and custodians
  SH_ERR_JOB_TOO_LARGE: e('limit', 413, 'A job names more subjects than the output policy allows.'),
  SH_ERR_CLAIM_INVALID: e(
    'input',
    400,
    'A verification claim is malformed: op not allowed for the field type, bad value, or commitment mismatch.',
  ),
  SH_ERR_VERIFY_FIELD_CLASS: e(
    'auth',
    403,
    'A claim names a field whose class does not allow verification (e.g. MODEL_ONLY).',
  ),
  SH_ERR_LABELS_NOT_BINARY: e(
    'input',
    422,
    "A training job's encrypted labels are not all 0 or 1 (the key holder's label check failed).",
  ),
  SH_ERR_VERIFY_BUDGET: e(
    'limit',
    429,
    "A bank group's verification budget for a subject's field is spent (answer units over the sliding window).",
  ),
  SH_ERR_CUSTODIAN_BUDGET: e(
    'limit',
    429,
    "A custodian refuses: the request is beyond what the bank-signed job allows (its budget, a label already answered, more token evaluations than signed for) or beyond the provider's own per-subject budgets.",
  ),
  SH_ERR_REQUEST_STALE: e(
    'auth',
    401,
    "A bank-signed request is too old (or dated too far ahead) for the engine's or a custodian's clock window.",
  ),
  SH_ERR_JOB_NOT_LEDGERED: e(
    'integrity',
    409,
    'A custodian refuses a job whose bank-signed request it has not seen in the ledger, or a ledger update that does not extend the checkpoint it holds.',
  ),
  SH_ERR_RECIPIENT: e(
    'auth',
    403,
    'A custodian refuses to seal to anyone but the certified sealing key of the bank that signed the job.',
  ),
  SH_ERR_PARAMS_MISMATCH: e('integrity', 409, 'Peers disagree on the parameter set, job or model hash.'),
  SH_ERR_CIPHERTEXT_SIZE: e('limit', 413, 'A ciphertext is larger than the cap for its parameter set.'),
  SH_ERR_CIPHERTEXT_INVALID: e('integrity', 422, 'A ciphertext fails to load or is not valid for the parameter set.'),
  SH_ERR_SEALED_BOX: e('integrity', 422, 'A sealed result fails authentication or was not sealed to this recipient.'),
  SH_ERR_TOKEN_PROOF: e(
    'integrity',
    422,
    "An OPRF evaluation fails its DLEQ proof against the provider's published key.",
  ),
  SH_ERR_TOKEN_INVALID: e('input', 400, 'An OPRF element is malformed, the identity point, or not on the curve.'),
  SH_ERR_NOISE_BUDGET: e('integrity', 500, 'A ciphertext reached the key holder without its required noise margin.'),
  // --- HE runtime
  SH_ERR_SEAL_RUNTIME: e('internal', 500, 'The SEAL WebAssembly runtime failed to load or threw.'),
  SH_ERR_PARAMS_INSECURE: e('integrity', 500, 'A SEAL context does not reach 128-bit security.'),
  SH_ERR_HANDLE_DELETED: e('internal', 500, 'A SEAL object was used after it was freed.'),
  // --- store and ledger
  SH_ERR_BLOB_MISSING: e('integrity', 500, 'A content-addressed blob named by the metadata is not on disk.'),
  SH_ERR_BLOB_CORRUPT: e('integrity', 500, 'A blob on disk does not hash to its address.'),
  SH_ERR_LEDGER_TAMPERED: e('integrity', 500, 'A ledger entry, tree node or checkpoint does not verify.'),
  SH_ERR_LEDGER_INCONSISTENT: e('integrity', 500, 'A checkpoint is inconsistent with an earlier one.'),
  // --- network API
  SH_ERR_FORBIDDEN: e(
    'auth',
    403,
    "The authenticated party may not act on or read this object (another bank's job, another enterprise's report).",
  ),
  SH_ERR_RATE_LIMITED: e('limit', 429, 'Too many requests from this party or address in a short time.'),
  SH_ERR_BODY_TOO_LARGE: e('limit', 413, 'A request body is larger than the route accepts.'),
  SH_ERR_UNSUPPORTED_MEDIA_TYPE: e('input', 415, 'A request body has a content type the route does not accept.'),
  SH_ERR_JOB_NOT_READY: e(
    'state',
    409,
    "A job's result was asked for before the job finished, or a job step came out of order.",
  ),
  SH_ERR_UNAVAILABLE: e('state', 503, "The server is shutting down, or a provider's custodian cannot be reached."),
  SH_ERR_INTERRUPTED: e(
    'state',
    503,
    'A job was cut off by a crash or restart at a step it cannot resume from; it failed once, its budget given back where nothing was released.',
  ),
  SH_ERR_STORAGE_FULL: e('limit', 507, 'The disk holding the data directory is full; nothing of the request was kept.'),
  SH_ERR_STORE_DAMAGED: e(
    'integrity',
    500,
    "The engine's database is empty, not a database, or fails SQLite's integrity check: the server does not start on it.",
  ),
  SH_ERR_KEY_FILE: e('input', 400, 'A key file is missing, is not JSON, or lacks a key of the right size.'),
} as const satisfies Record<string, CatalogEntry>;

export type ErrorCode = keyof typeof ERRORS;

/**
 * A write that failed because the disk is full (ENOSPC, EDQUOT from the file system; SQLITE_FULL from SQLite) as
 * SH_ERR_STORAGE_FULL; anything else undefined. The transaction that hit it rolled back: nothing was kept.
 */
export function storageFull(err: unknown): SafehouseError | undefined {
  if (err instanceof SafehouseError) return err.code === 'SH_ERR_STORAGE_FULL' ? err : undefined;
  const e = err as { code?: unknown; errcode?: unknown; message?: unknown } | undefined;
  const full =
    e?.code === 'ENOSPC' ||
    e?.code === 'EDQUOT' ||
    e?.errcode === 13 ||
    /database or disk is full|ENOSPC|no space left on device/i.test(String(e?.message ?? ''));
  return full
    ? new SafehouseError('SH_ERR_STORAGE_FULL', 'the disk holding the data directory is full', {}, { cause: err })
    : undefined;
}

/** The error every Safehouse module throws for a condition a user can meet. */
export class SafehouseError extends Error {
  readonly code: ErrorCode;
  readonly kind: ErrorKind;
  readonly status: number;
  /** Fixed, non-secret details safe to show a caller (field names, row numbers, counts). */
  readonly details: Readonly<Record<string, string | number | boolean>>;

  constructor(
    code: ErrorCode,
    message: string,
    details: Record<string, string | number | boolean> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'SafehouseError';
    this.code = code;
    this.kind = ERRORS[code].kind;
    this.status = ERRORS[code].status;
    this.details = Object.freeze({ ...details });
  }

  /** The body an API or CLI shows: fixed fields only; internal messages are hidden. */
  toPublic(): { code: ErrorCode; message: string; details: Record<string, string | number | boolean> } {
    const message = this.kind === 'internal' ? ERRORS[this.code].summary : this.message;
    return { code: this.code, message, details: { ...this.details } };
  }
}

/** Throw a coded error. Shorthand used across the code base. */
export function fail(
  code: ErrorCode,
  message: string,
  details?: Record<string, string | number | boolean>,
  cause?: unknown,
): never {
  throw new SafehouseError(code, message, details, cause === undefined ? undefined : { cause });
}

/** True when `err` is a SafehouseError with `code` (or any code, when omitted). */
export function isCoded(err: unknown, code?: ErrorCode): err is SafehouseError {
  return err instanceof SafehouseError && (code === undefined || err.code === code);
}

/** `"name" expected X, got Y` — the message form used for argument errors. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `array(${value.length})`;
  if (typeof value === 'string') return value.length > 40 ? `string(${value.length})` : JSON.stringify(value);
  if (typeof value === 'object') return 'object';
  return `${typeof value} ${String(value)}`;
}
