/**
 * Ed25519 signatures over RFC 8785 canonical JSON (@noble/curves). Every signed statement carries a `type` member
 * naming its kind (e.g. "safehouse.custodian.decrypt.v1"), so a signature over one kind can never be replayed as another.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import { canonicalBytes } from '../jcs.ts';
import { fail } from '../errors.ts';

export interface Signed<T> {
  body: T;
  signer: string;
  signature: string;
}

export function ed25519KeyPair(): { secretKey: Uint8Array; publicKey: Uint8Array } {
  const secretKey = ed25519.utils.randomSecretKey();
  return { secretKey, publicKey: ed25519.getPublicKey(secretKey) };
}

export function ed25519PublicKey(secretKey: Uint8Array): Uint8Array {
  return ed25519.getPublicKey(secretKey);
}

/** Sign `body` (which must have a `type`) as `signer`. @example signJson({ type: 'x.v1', a: 1 }, 'bank1', sk) */
export function signJson<T extends { type: string }>(body: T, signer: string, secretKey: Uint8Array): Signed<T> {
  return { body, signer, signature: bytesToHex(ed25519.sign(canonicalBytes(body), secretKey)) };
}

/** True when the signature verifies; malformed input is simply false. */
export function verifyJson(signed: Signed<{ type: string }>, publicKey: Uint8Array): boolean {
  try {
    if (!/^[0-9a-f]{128}$/.test(signed.signature)) return false;
    return ed25519.verify(hexToBytes(signed.signature), canonicalBytes(signed.body), publicKey);
  } catch {
    return false;
  }
}

/** Verify or throw SH_ERR_BAD_SIGNATURE naming what was signed. */
export function requireSignature(signed: Signed<{ type: string }>, publicKey: Uint8Array, expectedType: string, what: string): void {
  if (signed?.body?.type !== expectedType) fail('SH_ERR_BAD_SIGNATURE', `${what}: expected a signed ${expectedType}, got ${JSON.stringify(signed?.body?.type)}`);
  if (!verifyJson(signed, publicKey)) fail('SH_ERR_BAD_SIGNATURE', `${what}: signature by ${signed.signer} does not verify`, { signer: signed.signer });
}

export { bytesToHex, hexToBytes };
