/**
 * Consent (授权), docs/design.md §6: an enterprise authorizes a bank, for a purpose, to use its data of some categories in
 * some operations during a time window. Statements are RFC 8785 canonical JSON signed with Ed25519 (RFC 8032) by
 * the subject's registered key; revocation is another signed statement. {@link consentStatus} is the per-subject
 * check every job runs.
 *
 * Signed bytes are `canonicalBytes({ type: 'safehouse.consent.v1', ...statement })` (revocations:
 * `'safehouse.revocation.v1'`): the type tag keeps a signature over one kind of statement from being replayed as
 * another. Signatures are verified strictly (RFC 8032 §5.1.7, not ZIP-215), so each statement has one valid
 * encoding of its public key and signature.
 *
 * Consent ids are content-derived: `'c_' + hex(SHA-256(canonicalBytes({ type, ...statement without id })))[0..32]`
 * (16 bytes). With the random 16-byte nonce, two consents never share an id, and an id cannot be reattached to
 * different content: {@link validateConsentStatement} recomputes it.
 * Longer than 400 lines: consent statements, their validation and the status rules every job applies are one contract
 * and are read together.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { ed25519Verify } from '../core/sign.ts';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, hexToBytes, randomBytes } from '@noble/hashes/utils.js';
import { fail, describe } from '../core/errors.ts';
import { canonicalBytes } from '../core/jcs.ts';
import { CATALOG, getCategory } from './catalog.ts';
import { parseUscc } from './uscc.ts';
import { ed25519Sign } from '../core/sign.ts';

export type ConsentOp = 'score' | 'verify' | 'train';
export interface ConsentStatement {
  id: string;
  /** USCC of the enterprise, canonical form. */
  subject: string;
  /** Party id of the bank allowed to run jobs on the subject. */
  grantee: string;
  purpose: string;
  categories: string[];
  operations: ConsentOp[];
  /** ISO 8601 UTC, `YYYY-MM-DDTHH:MM:SS[.sss]Z`; valid from notBefore (inclusive) to notAfter (exclusive). */
  notBefore: string;
  notAfter: string;
  /** 16 random bytes, lowercase hex. */
  nonce: string;
}
export interface SignedConsent {
  statement: ConsentStatement;
  /** Lowercase hex Ed25519 signature over canonicalBytes({ type: 'safehouse.consent.v1', ...statement }). */
  signature: string;
}
export interface RevocationStatement {
  consentId: string;
  subject: string;
  revokedAt: string;
  nonce: string;
}
export interface SignedRevocation {
  statement: RevocationStatement;
  /** Lowercase hex Ed25519 signature over canonicalBytes({ type: 'safehouse.revocation.v1', ...statement }). */
  signature: string;
}
export type ConsentStatus = 'OK' | 'NO_CONSENT' | 'EXPIRED' | 'REVOKED' | 'OUT_OF_SCOPE' | 'BAD_SIGNATURE';
/** Every status, in a fixed order (a compact code for passing many statuses between threads). */
export const CONSENT_STATUSES: readonly ConsentStatus[] = [
  'OK',
  'NO_CONSENT',
  'EXPIRED',
  'REVOKED',
  'OUT_OF_SCOPE',
  'BAD_SIGNATURE',
];
/** What {@link createConsent} takes: the statement without id; nonce optional (random when omitted). */
export interface ConsentInput {
  subject: string;
  grantee: string;
  purpose: string;
  categories: string[];
  operations: ConsentOp[];
  notBefore: string | Date;
  notAfter: string | Date;
  nonce?: string;
}
/** The job-side question {@link consentStatus} answers for one subject. */
export interface ConsentRequest {
  subject: string;
  bank: string;
  purpose: string;
  operation: ConsentOp;
  categories: string[];
  at: Date;
}

const CONSENT_TYPE = 'safehouse.consent.v1';
const REVOCATION_TYPE = 'safehouse.revocation.v1';
const OPS: readonly ConsentOp[] = ['score', 'verify', 'train'];
const PURPOSE = /^[a-z][a-z0-9_.-]{0,63}$/;
/** Party ids: the engine's registry assigns them; this is only a sanity bound on the characters. */
const PARTY = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
const CONSENT_ID = /^c_[0-9a-f]{32}$/;
const NONCE = /^[0-9a-f]{32}$/;
const SIGNATURE = /^[0-9a-f]{128}$/;
const ISO_UTC = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d{1,3})?Z$/;
const CONSENT_KEYS = [
  'categories',
  'grantee',
  'id',
  'nonce',
  'notAfter',
  'notBefore',
  'operations',
  'purpose',
  'subject',
];
const REVOCATION_KEYS = ['consentId', 'nonce', 'revokedAt', 'subject'];

function invalid(path: string, msg: string): never {
  return fail('SH_ERR_CONSENT_INVALID', `"${path}" ${msg}`, { path });
}

const isRecord = (x: unknown): x is Record<string, unknown> => x !== null && typeof x === 'object' && !Array.isArray(x);

function checkKeys(x: Record<string, unknown>, keys: readonly string[], what: string): void {
  for (const k of Object.keys(x)) if (!keys.includes(k)) invalid(k, `is not a ${what} key`);
  for (const k of keys) if (x[k] === undefined) invalid(k, `expected a value, got nothing`);
}

/** Milliseconds of a strict ISO 8601 UTC timestamp; refuses calendar-invalid dates such as 2025-02-30. */
function isoMillis(path: string, v: unknown): number {
  const m = typeof v === 'string' ? ISO_UTC.exec(v) : null;
  const ms = m ? Date.parse(v as string) : NaN;
  if (!m || !Number.isFinite(ms) || new Date(ms).toISOString().slice(0, 19) !== m[1]) {
    invalid(path, `expected an ISO 8601 UTC time YYYY-MM-DDTHH:MM:SS[.sss]Z, got ${describe(v)}`);
  }
  return ms;
}

function checkSubject(v: unknown): string {
  if (typeof v !== 'string') invalid('subject', `expected a USCC string, got ${describe(v)}`);
  const u = parseUscc(v); // SH_ERR_USCC_FORMAT / SH_ERR_USCC_CHECK: the most precise cause
  if (u !== v) invalid('subject', `expected the canonical USCC ${u}, got ${describe(v)}`);
  return u;
}

/** `item` says what one element must be, listing the valid values where they are few (the message is the guide). */
function checkList<T extends string>(
  path: string,
  v: unknown,
  ok: (s: string) => boolean,
  what: string,
  item = what,
): T[] {
  if (!Array.isArray(v) || v.length === 0 || v.length > 64 || new Set(v).size !== v.length) {
    invalid(path, `expected 1..64 distinct ${what}, got ${describe(v)}`);
  }
  for (const [i, s] of v.entries())
    if (typeof s !== 'string' || !ok(s)) invalid(`${path}[${i}]`, `expected ${item}, got ${describe(s)}`);
  return [...(v as T[])];
}

function knownCategory(s: string): boolean {
  try {
    getCategory(s);
    return true;
  } catch {
    return false;
  }
}

function consentId(rest: Omit<ConsentStatement, 'id'>): string {
  return 'c_' + bytesToHex(sha256(canonicalBytes({ type: CONSENT_TYPE, ...rest })).subarray(0, 16));
}

/**
 * Check a consent statement's structure (docs/design.md §6) and return a clean copy: exactly the nine keys; subject a
 * canonical valid USCC; grantee a party id; purpose `^[a-z][a-z0-9_.-]{0,63}$`; categories known to the catalog;
 * operations among score/verify/train (both lists non-empty, no duplicates); notBefore < notAfter, strict ISO
 * 8601 UTC; nonce 32 lowercase hex; id equal to the content-derived id (module doc).
 *
 * @throws SafehouseError SH_ERR_CONSENT_INVALID naming the key; SH_ERR_USCC_FORMAT / SH_ERR_USCC_CHECK for the subject.
 * @example validateConsentStatement(signed.statement).subject === '91350100M000100Y43'
 */
export function validateConsentStatement(x: unknown): ConsentStatement {
  if (!isRecord(x)) invalid('statement', `expected an object, got ${describe(x)}`);
  checkKeys(x, CONSENT_KEYS, 'consent');
  const subject = checkSubject(x.subject);
  if (typeof x.grantee !== 'string' || !PARTY.test(x.grantee))
    invalid('grantee', `expected a party id, got ${describe(x.grantee)}`);
  if (typeof x.purpose !== 'string' || !PURPOSE.test(x.purpose)) {
    invalid('purpose', `expected ^[a-z][a-z0-9_.-]{0,63}$, got ${describe(x.purpose)}`);
  }
  const categories = checkList<string>(
    'categories',
    x.categories,
    knownCategory,
    'catalog category ids',
    `one of the catalog's category ids (${CATALOG.map((c) => c.id).join(', ')})`,
  );
  const operations = checkList<ConsentOp>(
    'operations',
    x.operations,
    (s) => OPS.includes(s as ConsentOp),
    'score, verify or train',
  );
  const nb = isoMillis('notBefore', x.notBefore);
  const na = isoMillis('notAfter', x.notAfter);
  if (!(nb < na))
    invalid('notAfter', `expected later than notBefore ${x.notBefore as string}, got ${x.notAfter as string}`);
  if (typeof x.nonce !== 'string' || !NONCE.test(x.nonce))
    invalid('nonce', `expected 32 lowercase hex characters, got ${describe(x.nonce)}`);
  const rest = {
    subject,
    grantee: x.grantee as string,
    purpose: x.purpose as string,
    categories,
    operations,
    notBefore: x.notBefore as string,
    notAfter: x.notAfter as string,
    nonce: x.nonce as string,
  };
  const id = consentId(rest);
  if (x.id !== id) invalid('id', `expected the content-derived id ${id}, got ${describe(x.id)}`);
  return { id, ...rest };
}

function secretKeyBytes(secretKey: unknown): Uint8Array {
  if (!(secretKey instanceof Uint8Array) || secretKey.length !== 32) {
    fail('SH_ERR_INVALID_ARGUMENT', `"secretKey" expected a 32-byte Ed25519 secret key, got ${describe(secretKey)}`);
  }
  return secretKey;
}

const toIso = (v: string | Date): string => (v instanceof Date ? v.toISOString() : v);

/**
 * Create and sign a consent (docs/design.md §6) with the subject's Ed25519 secret key. Dates may be given as Date
 * (serialized with toISOString) or as ISO strings; the subject is canonicalized; the nonce is 16 random bytes
 * unless given; the id is content-derived (module doc).
 *
 * @throws SafehouseError SH_ERR_CONSENT_INVALID / SH_ERR_USCC_* as {@link validateConsentStatement};
 *   SH_ERR_INVALID_ARGUMENT for a secret key that is not 32 bytes.
 * @example createConsent({ subject, grantee: 'bank1', purpose: 'loan.precredit', categories: ['tax'],
 *   operations: ['score'], notBefore: new Date(), notAfter: '2030-01-01T00:00:00Z' }, sk).statement.id
 */
export function createConsent(input: ConsentInput, secretKey: Uint8Array): SignedConsent {
  const sk = secretKeyBytes(secretKey);
  if (!isRecord(input)) invalid('statement', `expected an object, got ${describe(input)}`);
  const rest = {
    subject: typeof input.subject === 'string' ? parseUscc(input.subject) : input.subject,
    grantee: input.grantee,
    purpose: input.purpose,
    categories: input.categories,
    operations: input.operations,
    notBefore: toIso(input.notBefore),
    notAfter: toIso(input.notAfter),
    nonce: input.nonce ?? bytesToHex(randomBytes(16)),
  };
  const statement = validateConsentStatement({ id: consentId(rest), ...rest });
  const signature = bytesToHex(ed25519Sign(canonicalBytes({ type: CONSENT_TYPE, ...statement }), sk));
  return { statement, signature };
}

function verifyTagged(type: string, statement: unknown, signature: unknown, publicKey: unknown): boolean {
  try {
    if (!isRecord(statement) || typeof signature !== 'string' || !SIGNATURE.test(signature)) return false;
    if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) return false;
    if ('type' in statement) return false; // a statement may not carry its own tag
    const msg = canonicalBytes({ ...statement, type });
    return ed25519Verify(hexToBytes(signature), msg, publicKey);
  } catch {
    return false;
  }
}

/**
 * Whether `signed.signature` is a valid Ed25519 signature (RFC 8032, strict) by `publicKey` over the tagged
 * canonical statement. Checks the signature only, not the statement's structure (see {@link consentStatus}).
 * Never throws: malformed input is simply not validly signed.
 *
 * @example verifyConsentSignature(createConsent(input, sk), ed25519.getPublicKey(sk)) === true
 */
export function verifyConsentSignature(signed: SignedConsent, publicKey: Uint8Array): boolean {
  return isRecord(signed) && verifyTagged(CONSENT_TYPE, signed.statement, signed.signature, publicKey);
}

/**
 * Check a revocation statement's structure (docs/design.md §6): exactly consentId (`c_` + 32 hex), subject (canonical
 * USCC), revokedAt (ISO 8601 UTC), nonce (32 hex); returns a clean copy.
 *
 * @throws SafehouseError SH_ERR_CONSENT_INVALID naming the key; SH_ERR_USCC_FORMAT / SH_ERR_USCC_CHECK.
 * @example validateRevocationStatement(rev.statement).consentId === consent.statement.id
 */
export function validateRevocationStatement(x: unknown): RevocationStatement {
  if (!isRecord(x)) invalid('statement', `expected an object, got ${describe(x)}`);
  checkKeys(x, REVOCATION_KEYS, 'revocation');
  if (typeof x.consentId !== 'string' || !CONSENT_ID.test(x.consentId)) {
    invalid('consentId', `expected c_ and 32 lowercase hex characters, got ${describe(x.consentId)}`);
  }
  const subject = checkSubject(x.subject);
  isoMillis('revokedAt', x.revokedAt);
  if (typeof x.nonce !== 'string' || !NONCE.test(x.nonce))
    invalid('nonce', `expected 32 lowercase hex characters, got ${describe(x.nonce)}`);
  return { consentId: x.consentId, subject, revokedAt: x.revokedAt as string, nonce: x.nonce };
}

/**
 * Create and sign a revocation of consent `consentId` (docs/design.md §6). `revokedAt` defaults to now; a revocation takes
 * effect for jobs at or after it, so replaying an earlier job gives the same status.
 *
 * @throws SafehouseError SH_ERR_CONSENT_INVALID / SH_ERR_USCC_* for malformed arguments; SH_ERR_INVALID_ARGUMENT
 *   for a secret key that is not 32 bytes.
 * @example createRevocation(consent.statement.id, consent.statement.subject, sk).statement.consentId
 */
export function createRevocation(
  consentId: string,
  subject: string,
  secretKey: Uint8Array,
  revokedAt: string | Date = new Date(),
): SignedRevocation {
  const sk = secretKeyBytes(secretKey);
  const statement = validateRevocationStatement({
    consentId,
    subject: typeof subject === 'string' ? parseUscc(subject) : subject,
    revokedAt: toIso(revokedAt),
    nonce: bytesToHex(randomBytes(16)),
  });
  const signature = bytesToHex(ed25519Sign(canonicalBytes({ type: REVOCATION_TYPE, ...statement }), sk));
  return { statement, signature };
}

/**
 * Whether a revocation is well formed and validly signed by `publicKey` (RFC 8032, strict). Never throws.
 * @example verifyRevocation(createRevocation(id, subject, sk), ed25519.getPublicKey(sk)) === true
 */
export function verifyRevocation(signed: SignedRevocation, publicKey: Uint8Array): boolean {
  if (!isRecord(signed)) return false;
  try {
    validateRevocationStatement(signed.statement);
  } catch {
    return false;
  }
  return verifyTagged(REVOCATION_TYPE, signed.statement, signed.signature, publicKey);
}

/** Precedence of statuses across a subject's consents: the best one is reported. */
const RANK: Readonly<Record<ConsentStatus, number>> = {
  OK: 5,
  REVOKED: 4,
  EXPIRED: 3,
  OUT_OF_SCOPE: 2,
  BAD_SIGNATURE: 1,
  NO_CONSENT: 0,
};

function arg(path: string, msg: string): never {
  return fail('SH_ERR_INVALID_ARGUMENT', `"${path}" ${msg}`);
}

function checkRequest(req: ConsentRequest): { subject: string; at: number } {
  if (!isRecord(req)) arg('req', `expected an object, got ${describe(req)}`);
  const subject = parseUscc(req.subject);
  return { subject, at: checkRequestTerms(req) };
}

/** Everything of a request but its subject (checked once for a job's many subjects); its time in ms. */
function checkRequestTerms(req: Omit<ConsentRequest, 'subject'>): number {
  if (!isRecord(req)) arg('req', `expected an object, got ${describe(req)}`);
  if (typeof req.bank !== 'string' || req.bank === '')
    arg('req.bank', `expected a party id, got ${describe(req.bank)}`);
  if (typeof req.purpose !== 'string') arg('req.purpose', `expected a string, got ${describe(req.purpose)}`);
  if (!OPS.includes(req.operation))
    arg('req.operation', `expected score, verify or train, got ${describe(req.operation)}`);
  if (
    !Array.isArray(req.categories) ||
    req.categories.length === 0 ||
    !req.categories.every((c) => typeof c === 'string')
  ) {
    arg('req.categories', `expected a non-empty array of category ids, got ${describe(req.categories)}`);
  }
  const at = req.at instanceof Date ? req.at.getTime() : NaN;
  if (!Number.isFinite(at)) arg('req.at', `expected a valid Date, got ${describe(req.at)}`);
  return at;
}

/**
 * The consent status of one subject for one job (docs/design.md §6). `candidates` are the subject's stored consents,
 * `revocations` its stored revocations, `subjectKey` its registered Ed25519 public key (undefined: none).
 *
 * Only candidates naming this subject and `grantee === req.bank` count. Each gets a status, checked in this order:
 *  1. BAD_SIGNATURE: malformed statement, bad signature, or no registered key;
 *  2. OUT_OF_SCOPE: purpose differs, operation not granted, or some requested category not covered;
 *  3. REVOKED: a revocation that verifies with `subjectKey`, names this consent id and subject, and has
 *     revokedAt ≤ at (later revocations do not rewrite the past, so replays agree); forged ones are ignored;
 *  4. EXPIRED: notAfter ≤ at (the window is [notBefore, notAfter));
 *  5. NO_CONSENT: notBefore > at, i.e. not yet in force. There is no consent in effect, and the bank learns no
 *     more than that (an "early" status would tell it a future consent exists);
 *  6. OK.
 * Scope is checked before revocation and time so that a refusal names why *this request* is not covered: a revoked
 * consent for another purpose is reported OUT_OF_SCOPE, not REVOKED.
 * The subject's status is the best over its candidates: OK > REVOKED > EXPIRED > OUT_OF_SCOPE > BAD_SIGNATURE >
 * NO_CONSENT (also with no candidate). So one valid consent suffices (a revoked old consent and a valid new one
 * → OK), and among refusals the most specific wins (expired + revoked → REVOKED: the subject's latest act).
 * `consentId` is the first candidate with the winning status, given for OK, REVOKED, EXPIRED and OUT_OF_SCOPE
 * (signature-verified consents only); it is what the job logs.
 *
 * @throws SafehouseError SH_ERR_USCC_* for `req.subject`, SH_ERR_INVALID_ARGUMENT for other malformed `req` members.
 *   Malformed candidates and revocations never throw: they are BAD_SIGNATURE or ignored.
 * @example consentStatus({ subject, bank: 'bank1', purpose: 'loan.precredit', operation: 'score',
 *   categories: ['tax'], at: new Date() }, [signed], [], pk) // { status: 'OK', consentId: 'c_…' }
 */
export function consentStatus(
  req: ConsentRequest,
  candidates: SignedConsent[],
  revocations: SignedRevocation[],
  subjectKey: Uint8Array | undefined,
): { status: ConsentStatus; consentId?: string } {
  const { subject, at } = checkRequest(req);
  const revoked = new Set<string>();
  if (subjectKey !== undefined) {
    for (const r of revocations) {
      if (
        verifyRevocation(r, subjectKey) &&
        r.statement.subject === subject &&
        Date.parse(r.statement.revokedAt) <= at
      ) {
        revoked.add(r.statement.consentId);
      }
    }
  }
  let best: { status: ConsentStatus; consentId?: string } = { status: 'NO_CONSENT' };
  for (const c of candidates) {
    const raw = isRecord(c) && isRecord(c.statement) ? c.statement : undefined;
    if (raw === undefined || raw.grantee !== req.bank || raw.subject !== subject) continue;
    const status = candidateStatus(c, req, at, revoked, subjectKey);
    if (status === 'OK') return { status, consentId: c.statement.id };
    if (RANK[status] > RANK[best.status]) {
      best = status === 'BAD_SIGNATURE' || status === 'NO_CONSENT' ? { status } : { status, consentId: c.statement.id };
    }
  }
  return best;
}

function candidateStatus(
  c: SignedConsent,
  req: ConsentRequest,
  at: number,
  revoked: Set<string>,
  subjectKey: Uint8Array | undefined,
): ConsentStatus {
  if (subjectKey === undefined || !verifyConsentSignature(c, subjectKey)) return 'BAD_SIGNATURE';
  let st: ConsentStatement;
  try {
    st = validateConsentStatement(c.statement);
  } catch {
    return 'BAD_SIGNATURE';
  }
  return scopeStatus(st, req, at, revoked);
}

/** A validly signed statement's status for a request: scope, revocation, time window. */
function scopeStatus(
  st: ConsentStatement,
  req: ConsentRequest,
  at: number,
  revoked: ReadonlySet<string>,
): ConsentStatus {
  if (
    st.purpose !== req.purpose ||
    !st.operations.includes(req.operation) ||
    !req.categories.every((k) => st.categories.includes(k))
  )
    return 'OUT_OF_SCOPE';
  if (revoked.has(st.id)) return 'REVOKED';
  if (Date.parse(st.notAfter) <= at) return 'EXPIRED';
  if (Date.parse(st.notBefore) > at) return 'NO_CONSENT';
  return 'OK';
}

/**
 * As {@link consentStatus}, for statements whose signatures were checked once already (a custodian's own copy, kept
 * from the ledger it follows), with the revocation time of each revoked consent id. Same ranking, same answers.
 */
export function checkedConsentStatus(
  req: ConsentRequest,
  statements: readonly ConsentStatement[],
  revokedAt: ReadonlyMap<string, number>,
  /** Candidates whose signatures did not verify (they rank as BAD_SIGNATURE, as in consentStatus). */
  badSignatures = 0,
): { status: ConsentStatus; consentId?: string } {
  const { subject } = checkRequest(req);
  return checkedConsentJudge(req)(subject, statements, revokedAt, badSignatures);
}

/** A canonical USCC as parseUscc returns it (anything else is parsed, and so normalized or refused). */
const CANONICAL_USCC = /^[0-9A-HJ-NPQRTUWXY]{18}$/;

/**
 * {@link checkedConsentStatus} for many subjects of one request: the request's terms are checked once, each subject
 * then judged on its own statements. A subject that is not a valid USCC is NO_CONSENT (no statement can name it).
 * @throws SH_ERR_INVALID_ARGUMENT for malformed request terms (when the judge is made)
 */
export function checkedConsentJudge(
  terms: Omit<ConsentRequest, 'subject'>,
): (
  subject: string,
  statements: readonly ConsentStatement[],
  revokedAt: ReadonlyMap<string, number>,
  badSignatures?: number,
) => { status: ConsentStatus; consentId?: string } {
  const at = checkRequestTerms(terms);
  const req = terms as ConsentRequest;
  return (raw, statements, revokedAt, badSignatures = 0) => {
    let best: { status: ConsentStatus; consentId?: string } = {
      status: badSignatures > 0 ? 'BAD_SIGNATURE' : 'NO_CONSENT',
    };
    if (statements.length === 0) return best;
    let subject = raw;
    if (!CANONICAL_USCC.test(raw)) {
      try {
        subject = parseUscc(raw);
      } catch {
        return best;
      }
    }
    const revoked = new Set<string>();
    if (revokedAt.size > 0)
      for (const st of statements) {
        const r = revokedAt.get(st.id);
        if (r !== undefined && r <= at) revoked.add(st.id);
      }
    for (const st of statements) {
      if (st.grantee !== req.bank || st.subject !== subject) continue;
      const status = scopeStatus(st, req, at, revoked);
      if (status === 'OK') return { status, consentId: st.id };
      if (RANK[status] > RANK[best.status])
        best = status === 'NO_CONSENT' || status === 'BAD_SIGNATURE' ? { status } : { status, consentId: st.id };
    }
    return best;
  };
}
