/**
 * RFC 9421 HTTP Message Signatures with Ed25519 (api/httpsig.ts): round trip, and every tampering, staleness, replay
 * and key problem refused with SH_ERR_BAD_SIGNATURE.
 */
import { describe, it, expect } from 'vitest';
import { ed25519KeyPair } from '../../core/sign.ts';
import { RequestVerifier, signRequest, contentDigest, type HttpRequestParts } from '../../api/httpsig.ts';

const bank = ed25519KeyPair();
const other = ed25519KeyPair();
const T0 = new Date('2026-11-23T12:00:00Z');
const body = new TextEncoder().encode(JSON.stringify({ model: 'sme-scorecard-v1', subjects: ['91350100M000100Y43'] }));
const base: HttpRequestParts = {
  method: 'POST',
  url: 'http://127.0.0.1:8080/v1/bank/jobs/score?wait=0',
  authority: '127.0.0.1:8080',
  body,
};
const verifier = (now = T0) =>
  new RequestVerifier({
    keyOf: (id) => (id === 'bank1' ? bank.publicKey : id === 'bank2' ? other.publicKey : undefined),
    now: () => now,
  });
const signed = (req: HttpRequestParts = base, keyid = 'bank1', sk = bank.secretKey, at = T0): HttpRequestParts => ({
  ...req,
  headers: signRequest(req, keyid, sk, at),
});
const refuse = (v: RequestVerifier, req: HttpRequestParts, why: RegExp) =>
  expect(() => v.verify(req)).toThrow(
    expect.objectContaining({ code: 'SH_ERR_BAD_SIGNATURE', message: expect.stringMatching(why) }),
  );

describe('RFC 9421 request signatures (Ed25519)', () => {
  it('a signed request verifies once and names its party; the headers have the RFC 9421/9530 shape', () => {
    const req = signed();
    expect(req.headers!['signature-input']).toMatch(
      /^sig1=\("@method" "@authority" "@path" "@query" "content-digest"\);created=\d+;nonce="[A-Za-z0-9_-]+";keyid="bank1";alg="ed25519"$/,
    );
    expect(req.headers!['content-digest']).toBe(contentDigest(body));
    expect(verifier().verify(req)).toBe('bank1');
  });

  it('any change to method, path, query, authority or body breaks it', () => {
    const v = verifier();
    const req = signed();
    refuse(v, { ...req, method: 'PUT' }, /does not verify/);
    refuse(v, { ...req, url: 'http://127.0.0.1:8080/v1/bank/jobs/verify?wait=0' }, /does not verify/);
    refuse(v, { ...req, url: 'http://127.0.0.1:8080/v1/bank/jobs/score?wait=1' }, /does not verify/);
    refuse(v, { ...req, authority: '127.0.0.1:9090' }, /does not verify/);
    refuse(v, { ...req, body: new TextEncoder().encode('{}') }, /Content-Digest/);
    refuse(
      v,
      {
        ...req,
        body: new TextEncoder().encode('{}'),
        headers: { ...req.headers!, 'content-digest': contentDigest(new TextEncoder().encode('{}')) },
      },
      /does not verify/,
    );
  });

  it('unsigned, malformed, wrong key, unknown party, stale, future-dated and replayed requests are refused', () => {
    const v = verifier();
    refuse(v, base, /required/);
    const req = signed();
    refuse(v, { ...req, headers: { ...req.headers!, signature: 'sig1=:AAAA:' } }, /does not verify/);
    refuse(
      v,
      {
        ...req,
        headers: {
          ...req.headers!,
          'signature-input': req.headers!['signature-input']!.replace('ed25519', 'rsa-pss-sha512'),
        },
      },
      /malformed/,
    );
    refuse(v, signed(base, 'bank1', other.secretKey), /does not verify/);
    refuse(v, signed(base, 'bank2', bank.secretKey), /does not verify/);
    refuse(v, signed(base, 'nobody', bank.secretKey), /unknown keyid/);
    refuse(v, signed(base, 'bank1', bank.secretKey, new Date(T0.getTime() - 301_000)), /stale or future/);
    refuse(v, signed(base, 'bank1', bank.secretKey, new Date(T0.getTime() + 301_000)), /stale or future/);
    expect(v.verify(req)).toBe('bank1');
    refuse(v, req, /replayed/);
    // The same body signed again (fresh nonce) is a new request.
    expect(v.verify(signed())).toBe('bank1');
  });
});
