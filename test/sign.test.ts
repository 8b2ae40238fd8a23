/**
 * Ed25519 over RFC 8785 JSON: signing with @noble/curves, verification with node:crypto (ed25519Verify). The two
 * implementations must agree on every input class a forger could try.
 */
import { describe, it, expect } from 'vitest';
import { ed25519 } from '@noble/curves/ed25519.js';
import { ed25519KeyPair, ed25519Verify, signJson, verifyJson, requireSignature } from '../engine/crypto/sign.ts';

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
      const flipped = sig.slice(); flipped[i % 64]! ^= 1 << (i % 8); cases.push([flipped, msg, publicKey]);
      const msg2 = msg.slice(); msg2[0]! ^= 1; cases.push([sig, msg2, publicKey]);
      const other = ed25519KeyPair().publicKey; cases.push([sig, msg, other]);
      // S + L: same value mod L, non-canonical encoding; RFC 8032 §5.1.7 requires rejecting it.
      const s = leNum(sig.slice(32));
      if (s + L < 2n ** 256n) { const nc = sig.slice(); nc.set(leBytes(s + L), 32); cases.push([nc, msg, publicKey]); }
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

describe('signed JSON statements', () => {
  it('round trip, member order does not matter, any change breaks it', () => {
    const { secretKey, publicKey } = ed25519KeyPair();
    const signed = signJson({ type: 'safehouse.test.v1', b: 2, a: [1, 'x'] }, 'bank1', secretKey);
    expect(verifyJson(signed, publicKey)).toBe(true);
    const reordered = { a: [1, 'x'], type: 'safehouse.test.v1', b: 2 };
    const changed = { ...signed.body, b: 3 };
    expect(verifyJson({ ...signed, body: reordered }, publicKey)).toBe(true);
    expect(verifyJson({ ...signed, body: changed }, publicKey)).toBe(false);
    expect(() => requireSignature(signed, publicKey, 'safehouse.other.v1', 'test')).toThrow(expect.objectContaining({ code: 'SH_ERR_BAD_SIGNATURE' }));
    expect(() => requireSignature({ ...signed, body: changed }, publicKey, 'safehouse.test.v1', 'test')).toThrow(expect.objectContaining({ code: 'SH_ERR_BAD_SIGNATURE' }));
    expect(() => requireSignature(signed, publicKey, 'safehouse.test.v1', 'test')).not.toThrow();
  });
});
