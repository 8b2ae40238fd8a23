/**
 * Replayable uniform masks (docs/design.md §4.2). A job has a 32-byte seed (escrowed to the auditor); each (provider, block)
 * gets its own key = HKDF-SHA256(seed, salt "safehouse.mask.v1", info label) (RFC 5869), and the mask vector is read
 * from an AES-256-CTR keystream under that key: bitlen(t) bits per slot, little-endian, rejected when ≥ t so every slot is
 * exactly uniform mod t (t < 2^40; rejection rate ≈ 1.3·10^-7 for the 40-bit t). Same seed and label ⇒ same mask,
 * which is what lets the auditor replay a job.
 */
import { createCipheriv } from 'node:crypto';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { fail } from '../../core/errors.ts';

const SALT = new TextEncoder().encode('safehouse.mask.v1');

/** HKDF-SHA256 key for one mask vector. @example deriveMaskKey(seed, 'job/j1/provider/tax/block/0') */
export function deriveMaskKey(seed: Uint8Array, label: string): Uint8Array {
  if (seed.length < 32) fail('SH_ERR_INVALID_ARGUMENT', `"seed" expected at least 32 bytes, got ${seed.length}`);
  return hkdf(sha256, seed, SALT, new TextEncoder().encode(label), 32);
}

/**
 * n values uniform in [0, t) from the keystream of `key`.
 * @throws SH_ERR_INVALID_ARGUMENT when t ≥ 2^40 or the key is not 32 bytes.
 */
export function maskVector(key: Uint8Array, t: bigint, n: number): BigUint64Array {
  if (key.length !== 32) fail('SH_ERR_INVALID_ARGUMENT', `"key" expected 32 bytes, got ${key.length}`);
  if (t <= 1n || t >= 1n << 40n) fail('SH_ERR_INVALID_ARGUMENT', `"t" expected 1 < t < 2^40, got ${t}`);
  const out = new BigUint64Array(n);
  const cipher = createCipheriv('aes-256-ctr', key, new Uint8Array(16));
  // Draw exactly bitlen(t) bits per candidate (⌈bits/8⌉ bytes, top bits masked) so the rejection rate stays < 1/2
  // for any t; for the 40-bit t that is 5 bytes with no masking.
  const bits = t.toString(2).length;
  const width = Math.ceil(bits / 8);
  const top = 2 ** (bits - 8 * (width - 1));
  const tNum = Number(t);
  let filled = 0;
  while (filled < n) {
    const ks = cipher.update(new Uint8Array((n - filled) * width + 64));
    for (let o = 0; o + width <= ks.length && filled < n; o += width) {
      // little-endian, exact in a double (< 2^53)
      let v = ks[o + width - 1]! % top;
      for (let j = width - 2; j >= 0; j--) v = v * 256 + ks[o + j]!;
      if (v < tNum) out[filled++] = BigInt(v);
    }
  }
  return out;
}
