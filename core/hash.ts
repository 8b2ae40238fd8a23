/**
 * SHA-256 (FIPS 180-4) as lowercase hex: the address of every content-addressed blob and the digest inside every
 * ledger event and signed request. node:crypto's OpenSSL implementation (native, and available in worker threads).
 */
import { createHash } from 'node:crypto';

/** @example sha256Hex('abc') === 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad' */
export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}
