/**
 * Sealed boxes: how a custodian hands a result to one named party (docs/design.md §4.2 modes `seal` and `sign`).
 * A one-shot public-key encryption in the spirit of RFC 9180 base mode (DHKEM(X25519) + HKDF-SHA256 + AES-256-GCM),
 * but simpler — no suite negotiation, no exporter, one message per ephemeral key:
 *
 *   e, epk   = fresh X25519 key pair (RFC 7748)          R = recipient public key
 *   shared   = X25519(e, R)                              refused when all zero (R, or epk on open, of low order)
 *   key      = HKDF-SHA256(ikm = shared, salt = epk ‖ R,
 *                          info = "safehouse.sealbox.v1" ‖ JCS(context), L = 32)           (RFC 5869)
 *   nonce    = 12 random bytes
 *   ct ‖ tag = AES-256-GCM(key, nonce, plaintext, aad = JCS(context))                     (16-byte tag)
 *
 * JCS is RFC 8785 canonical JSON (../jcs.ts). `context` names the slot a box belongs to (job, provider, block,
 * recipient ids): it is bound twice, into the key and as AAD, so a box opened under any other context fails
 * authentication and cannot be replayed into another job or block. Putting epk ‖ R in the salt binds the key to
 * this exchange, as RFC 9180's kem_context does. Every box has its own ephemeral key, so (key, nonce) never repeats;
 * the random nonce is defence in depth.
 *
 * Secrets: the ephemeral secret, the shared secret and the derived key are overwritten with zeros as soon as they are
 * used, and a failed open wipes any partial plaintext. JS cannot guarantee more than that: the engine may have copied
 * a buffer before it is wiped (GC compaction), the X25519 ladder works on immutable bigints that cannot be wiped,
 * node:crypto keeps its own copy of the AES key inside an OpenSSL context until that object is garbage-collected,
 * and the caller's secret key and the returned plaintext are the caller's to wipe.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { x25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { describe, fail } from './errors.ts';
import { canonicalBytes } from './jcs.ts';

/** A plaintext sealed to one recipient; plain JSON, safe to store, log by hash and send as is. */
export interface SealedBox {
  v: 1;
  /** Ephemeral X25519 public key, 64 lowercase hex characters. */
  epk: string;
  /** AES-GCM nonce, 24 lowercase hex characters. */
  nonce: string;
  /** Base64 (RFC 4648 §4, padded) of ciphertext ‖ 16-byte GCM tag. */
  ct: string;
}

const INFO_LABEL = new TextEncoder().encode('safehouse.sealbox.v1');
const KEY_LEN = 32;
const NONCE_LEN = 12;
const TAG_LEN = 16;
const HEX32 = /^[0-9a-f]{64}$/;
const HEX12 = /^[0-9a-f]{24}$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * A fresh X25519 key pair (RFC 7748) for receiving sealed boxes; keep `secretKey` private and wipe it when done.
 * @example const { secretKey, publicKey } = x25519KeyPair(); // publicKey.length === 32
 */
export function x25519KeyPair(): { secretKey: Uint8Array; publicKey: Uint8Array } {
  const { secretKey, publicKey } = x25519.keygen();
  return { secretKey, publicKey };
}

/**
 * Seal `plaintext` to the holder of `recipientPublicKey`, bound to `context` (construction in the file header).
 * @throws SafehouseError SH_ERR_INVALID_ARGUMENT for a key that is not 32 bytes, non-bytes plaintext, or a context
 *   that is not a JSON object; SH_ERR_SEALED_BOX when the recipient key is of low order (all-zero shared secret).
 * @example const box = sealTo(bank.publicKey, bytes, { job: 'j1', provider: 'tax', block: 0, recipient: 'bank-a' });
 */
export function sealTo(
  recipientPublicKey: Uint8Array,
  plaintext: Uint8Array,
  context: Record<string, unknown>,
): SealedBox {
  checkBytes(recipientPublicKey, 'recipientPublicKey', 32);
  checkBytes(plaintext, 'plaintext');
  const aad = contextBytes(context);
  const eph = x25519.utils.randomSecretKey();
  let shared: Uint8Array | undefined;
  let key: Uint8Array | undefined;
  try {
    const epk = x25519.getPublicKey(eph);
    shared = agree(eph, recipientPublicKey, 'recipient public key');
    key = deriveKey(shared, epk, recipientPublicKey, aad);
    const nonce = new Uint8Array(randomBytes(NONCE_LEN));
    const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_LEN });
    cipher.setAAD(aad);
    const ct = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    return { v: 1, epk: toHex(epk), nonce: toHex(nonce), ct: ct.toString('base64') };
  } finally {
    eph.fill(0);
    shared?.fill(0);
    key?.fill(0);
  }
}

/**
 * Open a box sealed by `sealTo` with the recipient's secret key and the same `context`. Returns the plaintext only
 * after the GCM tag verifies; never partial data.
 * @throws SafehouseError SH_ERR_SEALED_BOX for a malformed box, a wrong key, a tampered epk/nonce/ct/tag, a different
 *   context or a low-order epk; SH_ERR_INVALID_ARGUMENT for a secret key that is not 32 bytes or a bad context.
 * @example const bytes = openSealed(bank.secretKey, box, { job: 'j1', provider: 'tax', block: 0, recipient: 'bank-a' });
 */
export function openSealed(
  recipientSecretKey: Uint8Array,
  box: SealedBox,
  context: Record<string, unknown>,
): Uint8Array {
  checkBytes(recipientSecretKey, 'recipientSecretKey', 32);
  const aad = contextBytes(context);
  const { epk, nonce, body } = parseBox(box);
  let shared: Uint8Array | undefined;
  let key: Uint8Array | undefined;
  try {
    shared = agree(recipientSecretKey, epk, 'box.epk');
    key = deriveKey(shared, epk, x25519.getPublicKey(recipientSecretKey), aad);
    const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_LEN });
    decipher.setAAD(aad);
    decipher.setAuthTag(body.subarray(body.length - TAG_LEN));
    const out = decipher.update(body.subarray(0, body.length - TAG_LEN));
    try {
      decipher.final();
    } catch (err) {
      out.fill(0);
      fail('SH_ERR_SEALED_BOX', 'sealed box failed authentication (wrong key, wrong context or tampered box)', {}, err);
    }
    const plain = new Uint8Array(out);
    out.fill(0); // `out` may be a slice of Node's shared buffer pool; keep only our private copy.
    return plain;
  } finally {
    shared?.fill(0);
    key?.fill(0);
  }
}

/** X25519 with the RFC 7748 §6.1 all-zero check, mapped to a coded error (noble also refuses low-order points). */
function agree(secretKey: Uint8Array, publicKey: Uint8Array, what: string): Uint8Array {
  let shared: Uint8Array;
  try {
    shared = x25519.getSharedSecret(secretKey, publicKey);
  } catch (err) {
    return fail('SH_ERR_SEALED_BOX', `${what} is a low-order point (all-zero X25519 shared secret)`, {}, err);
  }
  let acc = 0;
  for (const b of shared) acc |= b; // no early exit: the time taken does not depend on which byte is non-zero
  if (acc === 0) fail('SH_ERR_SEALED_BOX', `${what} is a low-order point (all-zero X25519 shared secret)`);
  return shared;
}

function deriveKey(shared: Uint8Array, epk: Uint8Array, rpk: Uint8Array, contextJcs: Uint8Array): Uint8Array {
  const salt = new Uint8Array(64);
  salt.set(epk, 0);
  salt.set(rpk, 32);
  const info = new Uint8Array(INFO_LABEL.length + contextJcs.length);
  info.set(INFO_LABEL, 0);
  info.set(contextJcs, INFO_LABEL.length);
  return hkdf(sha256, shared, salt, info, KEY_LEN);
}

function contextBytes(context: Record<string, unknown>): Uint8Array {
  if (context === null || typeof context !== 'object' || Array.isArray(context) || ArrayBuffer.isView(context)) {
    fail('SH_ERR_INVALID_ARGUMENT', `"context" expected a JSON object, got ${describe(context)}`);
  }
  return canonicalBytes(context);
}

/** Decode and check every field of an untrusted box; anything off is SH_ERR_SEALED_BOX naming the field. */
function parseBox(box: SealedBox): { epk: Uint8Array; nonce: Uint8Array; body: Uint8Array } {
  if (box === null || typeof box !== 'object')
    fail('SH_ERR_SEALED_BOX', `"box" expected an object, got ${describe(box)}`);
  const { v, epk, nonce, ct } = box as unknown as Record<string, unknown>;
  if (v !== 1) fail('SH_ERR_SEALED_BOX', `"box.v" expected 1, got ${describe(v)}`);
  if (typeof epk !== 'string' || !HEX32.test(epk)) {
    fail('SH_ERR_SEALED_BOX', `"box.epk" expected 64 lowercase hex characters, got ${describe(epk)}`);
  }
  if (typeof nonce !== 'string' || !HEX12.test(nonce)) {
    fail('SH_ERR_SEALED_BOX', `"box.nonce" expected 24 lowercase hex characters, got ${describe(nonce)}`);
  }
  if (typeof ct !== 'string' || !BASE64.test(ct)) {
    fail('SH_ERR_SEALED_BOX', `"box.ct" expected padded base64, got ${describe(ct)}`);
  }
  const body = new Uint8Array(Buffer.from(ct, 'base64'));
  // The regex admits non-zero pad bits ("AB==" vs "AA=="); re-encoding rejects them, so each box has one spelling.
  if (body.length < TAG_LEN || Buffer.from(body).toString('base64') !== ct) {
    fail('SH_ERR_SEALED_BOX', `"box.ct" expected canonical base64 of at least ${TAG_LEN} bytes, got ${describe(ct)}`);
  }
  return { epk: new Uint8Array(Buffer.from(epk, 'hex')), nonce: new Uint8Array(Buffer.from(nonce, 'hex')), body };
}

function checkBytes(value: unknown, name: string, length?: number): void {
  if (!(value instanceof Uint8Array))
    fail('SH_ERR_INVALID_ARGUMENT', `"${name}" expected Uint8Array, got ${describe(value)}`);
  if (length !== undefined && value.length !== length) {
    fail('SH_ERR_INVALID_ARGUMENT', `"${name}" expected ${length} bytes, got ${value.length}`);
  }
}

function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('hex');
}
