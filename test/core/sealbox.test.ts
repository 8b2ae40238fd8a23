import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { openSealed, sealTo, x25519KeyPair, type SealedBox } from '../../core/sealbox.ts';
import { isCoded, type ErrorCode } from '../../core/errors.ts';
import { expectCode } from '../fixtures/expect.ts';

const ctx = { job: 'j-001', provider: 'tax', block: 3, recipient: 'bank-a' };

/** Flip one bit of byte `i` of a hex field. */
function flipHex(hex: string, i: number): string {
  const b = Buffer.from(hex, 'hex');
  b[i]! ^= 0x01;
  return b.toString('hex');
}

/** Flip one bit of byte `i` of the base64 ct field (negative i counts from the end). */
function flipCt(ct: string, i: number): string {
  const b = Buffer.from(ct, 'base64');
  b[i < 0 ? b.length + i : i]! ^= 0x80;
  return b.toString('base64');
}

describe('sealbox: X25519 + HKDF-SHA256 + AES-256-GCM (docs/design.md §4.2 mode seal)', () => {
  const bank = x25519KeyPair();

  it('round trips empty, 1-byte and 64 KiB plaintexts', () => {
    for (const pt of [new Uint8Array(0), Uint8Array.of(0xab), new Uint8Array(randomBytes(64 * 1024))]) {
      const box = sealTo(bank.publicKey, pt, ctx);
      expect(box.v).toBe(1);
      expect(box.epk).toMatch(/^[0-9a-f]{64}$/);
      expect(box.nonce).toMatch(/^[0-9a-f]{24}$/);
      expect(Buffer.from(box.ct, 'base64').length).toBe(pt.length + 16);
      const out = openSealed(bank.secretKey, box, ctx);
      expect(out).toBeInstanceOf(Uint8Array);
      expect(Buffer.from(out).equals(Buffer.from(pt))).toBe(true);
    }
  });

  it('uses a fresh ephemeral key and nonce for every box', () => {
    const a = sealTo(bank.publicKey, Uint8Array.of(1, 2, 3), ctx);
    const b = sealTo(bank.publicKey, Uint8Array.of(1, 2, 3), ctx);
    expect(a.epk).not.toBe(b.epk);
    expect(a.ct).not.toBe(b.ct);
  });

  it('context member order does not matter (JCS), values do', () => {
    const box = sealTo(bank.publicKey, Uint8Array.of(7), ctx);
    const reordered = { recipient: 'bank-a', block: 3, provider: 'tax', job: 'j-001' };
    expect([...openSealed(bank.secretKey, box, reordered)]).toEqual([7]);
  });

  it('refuses the wrong recipient key', () => {
    const box = sealTo(bank.publicKey, Uint8Array.of(1, 2, 3), ctx);
    const other = x25519KeyPair();
    expectCode(() => openSealed(other.secretKey, box, ctx), 'SH_ERR_SEALED_BOX');
  });

  it('refuses a box with one bit flipped in epk, nonce, ciphertext or tag', () => {
    const box = sealTo(bank.publicKey, new Uint8Array(100).fill(9), ctx);
    const tampered: SealedBox[] = [
      { ...box, epk: flipHex(box.epk, 0) },
      { ...box, epk: flipHex(box.epk, 17) },
      { ...box, nonce: flipHex(box.nonce, 0) },
      { ...box, nonce: flipHex(box.nonce, 11) },
      { ...box, ct: flipCt(box.ct, 0) },
      { ...box, ct: flipCt(box.ct, 99) },
      { ...box, ct: flipCt(box.ct, -16) }, // first tag byte
      { ...box, ct: flipCt(box.ct, -1) }, // last tag byte
    ];
    for (const t of tampered) expectCode(() => openSealed(bank.secretKey, t, ctx), 'SH_ERR_SEALED_BOX');
  });

  it('refuses a truncated or extended ciphertext', () => {
    const box = sealTo(bank.publicKey, new Uint8Array(40), ctx);
    const body = Buffer.from(box.ct, 'base64');
    for (const b of [body.subarray(0, body.length - 1), body.subarray(0, 15), Buffer.concat([body, Buffer.of(0)])]) {
      expectCode(() => openSealed(bank.secretKey, { ...box, ct: b.toString('base64') }, ctx), 'SH_ERR_SEALED_BOX');
    }
  });

  it('refuses a different context (replay into another slot)', () => {
    const box = sealTo(bank.publicKey, Uint8Array.of(1, 2, 3), ctx);
    for (const other of [
      { ...ctx, block: 4 },
      { ...ctx, job: 'j-002' },
      { ...ctx, recipient: 'bank-b' },
      { ...ctx, extra: true },
      { job: 'j-001', provider: 'tax', block: 3 },
      {},
    ]) {
      expectCode(() => openSealed(bank.secretKey, box, other), 'SH_ERR_SEALED_BOX');
    }
  });

  it('rejects an all-zero (low-order) epk and sealing to a low-order recipient key', () => {
    const box = sealTo(bank.publicKey, Uint8Array.of(1), ctx);
    expectCode(() => openSealed(bank.secretKey, { ...box, epk: '00'.repeat(32) }, ctx), 'SH_ERR_SEALED_BOX');
    const one = '01' + '00'.repeat(31); // u = 1, order 4
    expectCode(() => openSealed(bank.secretKey, { ...box, epk: one }, ctx), 'SH_ERR_SEALED_BOX');
    expectCode(() => sealTo(new Uint8Array(32), Uint8Array.of(1), ctx), 'SH_ERR_SEALED_BOX');
  });

  it('survives a JSON round trip', () => {
    const pt = new TextEncoder().encode('分数 712, 655');
    const box = sealTo(bank.publicKey, pt, ctx);
    const copy = JSON.parse(JSON.stringify(box)) as SealedBox;
    expect(copy).toEqual(box);
    expect(Object.keys(copy).sort()).toEqual(['ct', 'epk', 'nonce', 'v']);
    expect(new TextDecoder().decode(openSealed(bank.secretKey, copy, ctx))).toBe('分数 712, 655');
  });

  it('refuses malformed box fields with SH_ERR_SEALED_BOX', () => {
    const box = sealTo(bank.publicKey, Uint8Array.of(1, 2), ctx);
    const bad: unknown[] = [
      null,
      'box',
      { ...box, v: 2 },
      { ...box, epk: box.epk.toUpperCase() },
      { ...box, epk: box.epk.slice(2) },
      { ...box, nonce: box.nonce + '00' },
      { ...box, nonce: 12 },
      { ...box, ct: box.ct + '*' },
      { ...box, ct: '' },
      { ...box, ct: undefined },
    ];
    for (const b of bad) expectCode(() => openSealed(bank.secretKey, b as SealedBox, ctx), 'SH_ERR_SEALED_BOX');
  });

  it('refuses bad arguments with SH_ERR_INVALID_ARGUMENT', () => {
    const box = sealTo(bank.publicKey, Uint8Array.of(1), ctx);
    expectCode(() => sealTo(bank.publicKey.subarray(1), Uint8Array.of(1), ctx), 'SH_ERR_INVALID_ARGUMENT');
    expectCode(() => sealTo(bank.publicKey, 'text' as unknown as Uint8Array, ctx), 'SH_ERR_INVALID_ARGUMENT');
    expectCode(
      () => sealTo(bank.publicKey, Uint8Array.of(1), [] as unknown as Record<string, unknown>),
      'SH_ERR_INVALID_ARGUMENT',
    );
    expectCode(() => sealTo(bank.publicKey, Uint8Array.of(1), { n: Number.NaN }), 'SH_ERR_INVALID_ARGUMENT');
    expectCode(() => openSealed(new Uint8Array(31), box, ctx), 'SH_ERR_INVALID_ARGUMENT');
    expectCode(
      () => openSealed(bank.secretKey, box, null as unknown as Record<string, unknown>),
      'SH_ERR_INVALID_ARGUMENT',
    );
  });
});
