import { ed25519 } from '@noble/curves/ed25519.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import { isCoded } from '../../core/errors.ts';
import { canonicalBytes } from '../../core/jcs.ts';
import type { ConsentInput, ConsentRequest, SignedConsent, SignedRevocation } from '../../sandbox/consent.ts';
import { thrownCode as code } from '../fixtures/expect.ts';
import {
  consentStatus,
  createConsent,
  createRevocation,
  validateConsentStatement,
  validateRevocationStatement,
  verifyConsentSignature,
  verifyRevocation,
} from '../../sandbox/consent.ts';

// Fixed keys so failures reproduce; the subject's and an impostor's.
const sk = Uint8Array.from({ length: 32 }, (_, i) => i + 1);
const pk = ed25519.getPublicKey(sk);
const otherSk = Uint8Array.from({ length: 32 }, (_, i) => 200 - i);
const otherPk = ed25519.getPublicKey(otherSk);

const SUBJECT = '91350100M000100Y43';
const BASE: ConsentInput = {
  subject: SUBJECT,
  grantee: 'bank-fz-001',
  purpose: 'loan.precredit',
  categories: ['tax', 'utilities'],
  operations: ['score', 'verify'],
  notBefore: '2025-01-01T00:00:00Z',
  notAfter: '2026-01-01T00:00:00Z',
};
const REQ: ConsentRequest = {
  subject: SUBJECT,
  bank: 'bank-fz-001',
  purpose: 'loan.precredit',
  operation: 'score',
  categories: ['tax'],
  at: new Date('2025-06-01T00:00:00Z'),
};

const consent = (over: Partial<ConsentInput> = {}, key = sk): SignedConsent => createConsent({ ...BASE, ...over }, key);
const status = (req: Partial<ConsentRequest>, cs: SignedConsent[], rs: SignedRevocation[] = []) =>
  consentStatus({ ...REQ, ...req }, cs, rs, pk);

describe('consent statements (docs/design.md §6)', () => {
  it('signs canonical JSON tagged safehouse.consent.v1 with a content-derived id', () => {
    const c = consent();
    const { id, ...rest } = c.statement;
    expect(c.statement.nonce).toMatch(/^[0-9a-f]{32}$/);
    expect(id).toBe(
      'c_' + bytesToHex(sha256(canonicalBytes({ type: 'safehouse.consent.v1', ...rest })).subarray(0, 16)),
    );
    const msg = canonicalBytes({ type: 'safehouse.consent.v1', ...c.statement });
    expect(ed25519.verify(Buffer.from(c.signature, 'hex'), msg, pk)).toBe(true);
    expect(verifyConsentSignature(c, pk)).toBe(true);
    expect(validateConsentStatement(c.statement)).toEqual(c.statement);
  });

  it('gives each consent a fresh nonce and id; a given nonce is used as is', () => {
    expect(consent().statement.id).not.toBe(consent().statement.id);
    const n = 'ab'.repeat(16);
    expect(consent({ nonce: n }).statement.id).toBe(consent({ nonce: n }).statement.id);
  });

  it('canonicalizes the subject and accepts Date bounds', () => {
    const c = consent({ subject: ' 91350100m000100y43', notBefore: new Date('2025-01-01T00:00:00Z') });
    expect(c.statement.subject).toBe(SUBJECT);
    expect(c.statement.notBefore).toBe('2025-01-01T00:00:00.000Z');
  });

  it('refuses malformed statements with SH_ERR_CONSENT_INVALID (or the USCC code)', () => {
    expect(code(() => consent({ subject: '91350100M000100Y44' }))).toBe('SH_ERR_USCC_CHECK');
    expect(code(() => consent({ purpose: 'Loan' }))).toBe('SH_ERR_CONSENT_INVALID');
    expect(code(() => consent({ grantee: '' }))).toBe('SH_ERR_CONSENT_INVALID');
    expect(code(() => consent({ categories: ['tax', 'credit_card'] }))).toBe('SH_ERR_CONSENT_INVALID');
    expect(code(() => consent({ categories: [] }))).toBe('SH_ERR_CONSENT_INVALID');
    expect(code(() => consent({ categories: ['tax', 'tax'] }))).toBe('SH_ERR_CONSENT_INVALID');
    expect(code(() => consent({ operations: ['return' as 'score'] }))).toBe('SH_ERR_CONSENT_INVALID');
    expect(code(() => consent({ notAfter: '2025-01-01T00:00:00Z' }))).toBe('SH_ERR_CONSENT_INVALID');
    expect(code(() => consent({ notAfter: '2025-02-30T00:00:00Z' }))).toBe('SH_ERR_CONSENT_INVALID');
    expect(code(() => consent({ notAfter: '2026-01-01T08:00:00+08:00' }))).toBe('SH_ERR_CONSENT_INVALID');
    expect(code(() => consent({ nonce: 'AB'.repeat(16) }))).toBe('SH_ERR_CONSENT_INVALID');
    expect(code(() => createConsent(BASE, sk.subarray(1)))).toBe('SH_ERR_INVALID_ARGUMENT');
    const s = consent().statement;
    expect(code(() => validateConsentStatement({ ...s, id: 'c_' + '0'.repeat(32) }))).toBe('SH_ERR_CONSENT_INVALID');
    expect(code(() => validateConsentStatement({ ...s, extra: 1 }))).toBe('SH_ERR_CONSENT_INVALID');
    expect(code(() => validateConsentStatement({ ...s, subject: s.subject.toLowerCase() }))).toBe(
      'SH_ERR_CONSENT_INVALID',
    );
    expect(code(() => validateConsentStatement('consent'))).toBe('SH_ERR_CONSENT_INVALID');
  });

  it('rejects tampering and the wrong key', () => {
    const c = consent();
    expect(verifyConsentSignature(c, otherPk)).toBe(false);
    expect(verifyConsentSignature(consent({}, otherSk), pk)).toBe(false);
    for (const [k, v] of Object.entries({
      grantee: 'bank-xm-002',
      purpose: 'loan.postcredit',
      categories: ['tax', 'utilities', 'property'],
      operations: ['score', 'verify', 'train'],
      notAfter: '2027-01-01T00:00:00Z',
      nonce: 'cd'.repeat(16),
      subject: '91310115591693856A',
    })) {
      expect(verifyConsentSignature({ ...c, statement: { ...c.statement, [k]: v } }, pk), k).toBe(false);
    }
    const flipped = (c.signature[0] === '0' ? '1' : '0') + c.signature.slice(1);
    expect(verifyConsentSignature({ ...c, signature: flipped }, pk)).toBe(false);
    expect(verifyConsentSignature({ ...c, signature: c.signature.toUpperCase() }, pk)).toBe(false);
    expect(verifyConsentSignature({ ...c, statement: { ...c.statement, type: 'x' } as never }, pk)).toBe(false);
    expect(verifyConsentSignature(null as never, pk)).toBe(false);
    expect(verifyConsentSignature(c, pk.subarray(1))).toBe(false);
  });
});

describe('revocations', () => {
  it('signs and verifies; refuses forgery and malformed statements', () => {
    const c = consent();
    const r = createRevocation(c.statement.id, SUBJECT, sk, new Date('2025-03-01T00:00:00Z'));
    expect(r.statement).toMatchObject({
      consentId: c.statement.id,
      subject: SUBJECT,
      revokedAt: '2025-03-01T00:00:00.000Z',
    });
    expect(verifyRevocation(r, pk)).toBe(true);
    expect(verifyRevocation(r, otherPk)).toBe(false);
    expect(verifyRevocation({ ...r, statement: { ...r.statement, consentId: consent().statement.id } }, pk)).toBe(
      false,
    );
    // A consent signature cannot be passed off as a revocation: the type tags differ.
    expect(verifyRevocation({ statement: r.statement, signature: c.signature }, pk)).toBe(false);
    expect(code(() => createRevocation('c_123', SUBJECT, sk))).toBe('SH_ERR_CONSENT_INVALID');
    expect(code(() => createRevocation(c.statement.id, '91350100M000100Y4', sk))).toBe('SH_ERR_USCC_FORMAT');
    expect(code(() => validateRevocationStatement({ ...r.statement, revokedAt: 'yesterday' }))).toBe(
      'SH_ERR_CONSENT_INVALID',
    );
  });
});

describe('consentStatus (docs/design.md §6)', () => {
  it('OK for a valid, in-scope, unrevoked consent in its window', () => {
    const c = consent();
    expect(status({}, [c])).toEqual({ status: 'OK', consentId: c.statement.id });
    expect(status({ operation: 'verify', categories: ['tax', 'utilities'] }, [c]).status).toBe('OK');
  });

  it('NO_CONSENT without a consent for this bank', () => {
    expect(status({}, [])).toEqual({ status: 'NO_CONSENT' });
    expect(status({}, [consent({ grantee: 'bank-xm-002' })])).toEqual({ status: 'NO_CONSENT' });
    // A consent of another subject passed by mistake is not this subject's.
    expect(status({}, [consent({ subject: '91310115591693856A' })])).toEqual({ status: 'NO_CONSENT' });
  });

  it('window is [notBefore, notAfter): at == notBefore is valid, at == notAfter is EXPIRED, before is NO_CONSENT', () => {
    const c = consent();
    expect(status({ at: new Date('2025-01-01T00:00:00Z') }, [c]).status).toBe('OK');
    expect(status({ at: new Date('2025-12-31T23:59:59.999Z') }, [c]).status).toBe('OK');
    expect(status({ at: new Date('2026-01-01T00:00:00Z') }, [c])).toEqual({
      status: 'EXPIRED',
      consentId: c.statement.id,
    });
    expect(status({ at: new Date('2024-12-31T23:59:59.999Z') }, [c])).toEqual({ status: 'NO_CONSENT' });
  });

  it('OUT_OF_SCOPE for another purpose, operation or an uncovered category', () => {
    const c = consent();
    const out = { status: 'OUT_OF_SCOPE', consentId: c.statement.id };
    expect(status({ purpose: 'loan.postcredit' }, [c])).toEqual(out);
    expect(status({ operation: 'train' }, [c])).toEqual(out);
    expect(status({ categories: ['tax', 'property'] }, [c])).toEqual(out);
  });

  it('BAD_SIGNATURE for a tampered statement, another signer, or no registered key', () => {
    const c = consent();
    const widened = { ...c, statement: { ...c.statement, operations: ['score', 'verify', 'train'] } } as SignedConsent;
    expect(status({}, [widened])).toEqual({ status: 'BAD_SIGNATURE' });
    expect(status({}, [consent({}, otherSk)])).toEqual({ status: 'BAD_SIGNATURE' });
    expect(consentStatus(REQ, [c], [], undefined)).toEqual({ status: 'BAD_SIGNATURE' });
    // Validly signed but malformed (e.g. a client that computed the id differently): not a valid consent.
    const { id: _id, ...rest } = c.statement;
    const odd = { ...rest, id: 'c_' + '0'.repeat(32) };
    const oddSigned = {
      statement: odd,
      signature: bytesToHex(ed25519.sign(canonicalBytes({ type: 'safehouse.consent.v1', ...odd }), sk)),
    };
    expect(verifyConsentSignature(oddSigned, pk)).toBe(true);
    expect(status({}, [oddSigned])).toEqual({ status: 'BAD_SIGNATURE' });
    expect(status({}, [null as never, { statement: 5 } as never])).toEqual({ status: 'NO_CONSENT' });
  });

  it('REVOKED by a verified revocation in force; forged, foreign and later revocations are ignored', () => {
    const c = consent();
    const rev = createRevocation(c.statement.id, SUBJECT, sk, new Date('2025-03-01T00:00:00Z'));
    expect(status({}, [c], [rev])).toEqual({ status: 'REVOKED', consentId: c.statement.id });
    expect(status({ at: new Date('2025-03-01T00:00:00Z') }, [c], [rev]).status).toBe('REVOKED');
    expect(status({ at: new Date('2025-02-28T23:59:59Z') }, [c], [rev]).status).toBe('OK');
    const forged = createRevocation(c.statement.id, SUBJECT, otherSk, new Date('2025-03-01T00:00:00Z'));
    expect(status({}, [c], [forged]).status).toBe('OK');
    const otherConsent = createRevocation(consent().statement.id, SUBJECT, sk, new Date('2025-03-01T00:00:00Z'));
    expect(status({}, [c], [otherConsent]).status).toBe('OK');
    const tampered = { ...otherConsent, statement: { ...otherConsent.statement, consentId: c.statement.id } };
    expect(status({}, [c], [tampered]).status).toBe('OK');
    expect(status({}, [c], [null as never, { statement: {} } as never]).status).toBe('OK');
  });

  it('over several consents: one valid suffices, else the most specific refusal', () => {
    const old = consent({ notBefore: '2024-01-01T00:00:00Z', notAfter: '2025-01-01T00:00:00Z' });
    const revoked = consent();
    const fresh = consent({ notBefore: '2025-05-01T00:00:00Z' });
    const rev = createRevocation(revoked.statement.id, SUBJECT, sk, new Date('2025-04-01T00:00:00Z'));
    const otherPurpose = consent({ purpose: 'lease' });
    const forged = consent({}, otherSk);
    const otherBank = consent({ grantee: 'bank-xm-002' });
    // A revoked consent and a newer valid one → OK with the valid one's id, whatever the order.
    expect(status({}, [revoked, fresh], [rev])).toEqual({ status: 'OK', consentId: fresh.statement.id });
    expect(status({}, [fresh, revoked], [rev])).toEqual({ status: 'OK', consentId: fresh.statement.id });
    // The first OK consent's id is returned.
    const twin = consent();
    expect(status({}, [forged, twin, fresh])).toEqual({ status: 'OK', consentId: twin.statement.id });
    // Refusals: REVOKED > EXPIRED > OUT_OF_SCOPE > BAD_SIGNATURE > NO_CONSENT.
    expect(status({}, [old, revoked, otherPurpose, forged], [rev])).toEqual({
      status: 'REVOKED',
      consentId: revoked.statement.id,
    });
    expect(status({}, [forged, otherPurpose, old], [rev])).toEqual({ status: 'EXPIRED', consentId: old.statement.id });
    expect(status({}, [forged, otherPurpose, otherBank])).toEqual({
      status: 'OUT_OF_SCOPE',
      consentId: otherPurpose.statement.id,
    });
    expect(status({}, [otherBank, forged])).toEqual({ status: 'BAD_SIGNATURE' });
    // A revoked consent for another purpose is reported OUT_OF_SCOPE: revocation does not concern this request.
    const rev2 = createRevocation(otherPurpose.statement.id, SUBJECT, sk, new Date('2025-04-01T00:00:00Z'));
    expect(status({}, [otherPurpose], [rev2]).status).toBe('OUT_OF_SCOPE');
    // Expired and revoked → REVOKED (the subject's explicit act is the more specific refusal).
    const revOld = createRevocation(old.statement.id, SUBJECT, sk, new Date('2024-06-01T00:00:00Z'));
    expect(status({}, [old], [revOld]).status).toBe('REVOKED');
  });

  it('refuses a malformed request', () => {
    expect(code(() => status({ subject: 'nope' }, []))).toBe('SH_ERR_USCC_FORMAT');
    expect(code(() => status({ operation: 'return' as 'score' }, []))).toBe('SH_ERR_INVALID_ARGUMENT');
    expect(code(() => status({ categories: [] }, []))).toBe('SH_ERR_INVALID_ARGUMENT');
    expect(code(() => status({ at: new Date('garbage') }, []))).toBe('SH_ERR_INVALID_ARGUMENT');
    expect(code(() => status({ bank: '' }, []))).toBe('SH_ERR_INVALID_ARGUMENT');
  });
});
