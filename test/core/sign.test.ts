/**
 * Ed25519 over RFC 8785 JSON: signing and verification through node:crypto (ed25519Sign, ed25519Verify), checked
 * against @noble/curves: identical keys and signatures (RFC 8032 signing is deterministic), and the same verdict on
 * every input class a forger could try.
 */
import { describe, it, expect } from 'vitest';
import { ed25519 } from '@noble/curves/ed25519.js';
import {
  ed25519KeyPair,
  ed25519PublicKey,
  ed25519Sign,
  ed25519Verify,
  signJson,
  verifyJson,
  requireSignature,
} from '../../core/sign.ts';

const L = 2n ** 252n + 27742317777372353535851937790883648493n;

function leBytes(x: bigint): Uint8Array {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = Number((x >> BigInt(8 * i)) & 0xffn);
  return out;
}
function leNum(b: Uint8Array): bigint {
  let x = 0n;
  for (let i = 31; i >= 0; i--) x = (x << 8n) | BigInt(b[i]!);
  return x;
}

describe('ed25519Verify agrees with noble (RFC 8032, strict)', () => {
  it('valid, corrupted and non-canonical signatures', () => {
    for (let i = 0; i < 50; i++) {
      const { secretKey, publicKey } = ed25519KeyPair();
      const msg = new TextEncoder().encode(`message ${i} ${'x'.repeat(i)}`);
      const sig = ed25519.sign(msg, secretKey);
      const cases: Array<[Uint8Array, Uint8Array, Uint8Array]> = [[sig, msg, publicKey]];
      const flipped = sig.slice();
      flipped[i % 64]! ^= 1 << (i % 8);
      cases.push([flipped, msg, publicKey]);
      const msg2 = msg.slice();
      msg2[0]! ^= 1;
      cases.push([sig, msg2, publicKey]);
      const other = ed25519KeyPair().publicKey;
      cases.push([sig, msg, other]);
      // S + L: same value mod L, non-canonical encoding; RFC 8032 §5.1.7 requires rejecting it.
      const s = leNum(sig.slice(32));
      if (s + L < 2n ** 256n) {
        const nc = sig.slice();
        nc.set(leBytes(s + L), 32);
        cases.push([nc, msg, publicKey]);
      }
      for (const [sg, m, pk] of cases) {
        expect(ed25519Verify(sg, m, pk)).toBe(ed25519.verify(sg, m, pk, { zip215: false }));
      }
      expect(ed25519Verify(sig, msg, publicKey)).toBe(true);
      expect(ed25519Verify(flipped, msg, publicKey)).toBe(false);
    }
  });

  it('malformed lengths are false, not exceptions', () => {
    const { publicKey } = ed25519KeyPair();
    expect(ed25519Verify(new Uint8Array(63), new Uint8Array(1), publicKey)).toBe(false);
    expect(ed25519Verify(new Uint8Array(64), new Uint8Array(1), new Uint8Array(31))).toBe(false);
    expect(ed25519Verify(new Uint8Array(64), new Uint8Array(1), new Uint8Array(32))).toBe(false);
  });
});

describe('ed25519Sign and ed25519PublicKey (node:crypto) equal noble byte for byte', () => {
  it('RFC 8032 §7.1 TEST 2 and random keys and messages, 0 bytes to 100 KB', () => {
    // RFC 8032 §7.1, TEST 2: one-byte message 0x72.
    const sk = Uint8Array.from(Buffer.from('4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb', 'hex'));
    expect(Buffer.from(ed25519PublicKey(sk)).toString('hex')).toBe(
      '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
    );
    expect(Buffer.from(ed25519Sign(Uint8Array.of(0x72), sk)).toString('hex')).toBe(
      '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
    );
    for (let i = 0; i < 40; i++) {
      const { secretKey, publicKey } = ed25519KeyPair();
      expect(publicKey).toEqual(ed25519.getPublicKey(secretKey));
      const msg = new Uint8Array(i === 39 ? 100_000 : i * 37).map((_, j) => (j * 31 + i) & 0xff);
      expect(ed25519Sign(msg, secretKey)).toEqual(ed25519.sign(msg, secretKey));
    }
  });

  it('a secret key that is not 32 bytes is a coded error', () => {
    expect(() => ed25519Sign(new Uint8Array(1), new Uint8Array(31))).toThrow(
      expect.objectContaining({ code: 'SH_ERR_INVALID_ARGUMENT' }),
    );
  });
});

describe('signed JSON statements', () => {
  it('round trip, member order does not matter, any change breaks it', () => {
    const { secretKey, publicKey } = ed25519KeyPair();
    const signed = signJson({ type: 'safehouse.test.v1', b: 2, a: [1, 'x'] }, 'bank1', secretKey);
    expect(verifyJson(signed, publicKey)).toBe(true);
    const reordered = { a: [1, 'x'], type: 'safehouse.test.v1', b: 2 };
    const changed = { ...signed.body, b: 3 };
    expect(verifyJson({ ...signed, body: reordered }, publicKey)).toBe(true);
    expect(verifyJson({ ...signed, body: changed }, publicKey)).toBe(false);
    expect(() => requireSignature(signed, publicKey, 'safehouse.other.v1', 'test')).toThrow(
      expect.objectContaining({ code: 'SH_ERR_BAD_SIGNATURE' }),
    );
    expect(() => requireSignature({ ...signed, body: changed }, publicKey, 'safehouse.test.v1', 'test')).toThrow(
      expect.objectContaining({ code: 'SH_ERR_BAD_SIGNATURE' }),
    );
    expect(() => requireSignature(signed, publicKey, 'safehouse.test.v1', 'test')).not.toThrow();
  });
});
