/**
 * What a pool worker keeps between tasks: SEAL and its context loaded once per parameter set, and keys, encryptors,
 * decryptors and stored ciphertexts loaded once and found again by the SHA-256 of their bytes (a stored blob is
 * hash-verified on first load, so a cached object is exactly the verified blob). Shared by every kernel module a
 * worker loads (one module instance per worker thread).
 */
import { createHash } from 'node:crypto';
import type { Ciphertext, Decryptor, Encryptor, PublicKey, SecretKey } from 'node-seal';
import { SafehouseError } from '../../core/errors.ts';
import { heContext, paramSet } from '../he/params.ts';
import { BlockOps } from '../he/block.ts';
import { readBlobVerified } from '../store/store.ts';

/** A stored blob, named by its path and the SHA-256 the worker checks before SEAL sees a byte. */
export interface BlobRef {
  path: string;
  hash: string;
}

const ops = new Map<string, Promise<BlockOps>>();
const publicKeys = new Map<string, PublicKey>();
const encryptors = new Map<string, Encryptor>();
const decryptors = new Map<string, Decryptor>();
const ciphertexts = new Map<string, Ciphertext>();
const MAX_CACHED_CIPHERTEXTS = 256; // ~430 KB each in WASM memory: ≤ ~110 MB per worker

/** SEAL, the context and one BlockOps for a parameter set, loaded once per worker. */
export function blockOps(paramsId: string): Promise<BlockOps> {
  let o = ops.get(paramsId);
  if (!o) {
    o = heContext(paramSet(paramsId)).then((he) => new BlockOps(he));
    ops.set(paramsId, o);
  }
  return o;
}

/** A stored BFV public key, loaded once per worker. */
export function publicKeyFor(o: BlockOps, ref: BlobRef): PublicKey {
  let pk = publicKeys.get(ref.hash);
  if (!pk) {
    pk = o.loadPublicKey(readBlobVerified(ref.path, ref.hash));
    publicKeys.set(ref.hash, pk);
  }
  return pk;
}

/** Load a stored ciphertext (hash-verified); the caller frees it. */
export function loadStored(o: BlockOps, ref: BlobRef, what: string): Ciphertext {
  return o.load(readBlobVerified(ref.path, ref.hash), `${what} ${ref.hash.slice(0, 12)}`);
}

/**
 * A stored ciphertext, loaded once per worker (hash-verified on first load). Beyond the cap the oldest entries not
 * `pinned` by the running task are freed (a task needing more than the cap keeps all of its own). The cache owns it.
 */
export function cachedCiphertext(o: BlockOps, ref: BlobRef, what: string, pinned: ReadonlySet<string>): Ciphertext {
  let ct = ciphertexts.get(ref.hash);
  if (!ct) {
    ct = loadStored(o, ref, what);
    for (const [hash, old] of ciphertexts) {
      if (ciphertexts.size < MAX_CACHED_CIPHERTEXTS) break;
      if (pinned.has(hash)) continue;
      ciphertexts.delete(hash);
      old.delete();
    }
    ciphertexts.set(ref.hash, ct);
  }
  return ct;
}

/** A Decryptor per secret key, kept for the worker's life; the key is hashed only when first loaded. */
export function decryptorFor(o: BlockOps, secretKey: Uint8Array, keyHash: string): Decryptor {
  let d = decryptors.get(keyHash);
  if (!d) {
    if (createHash('sha256').update(secretKey).digest('hex') !== keyHash)
      throw new SafehouseError('SH_ERR_INVALID_ARGUMENT', 'decrypt task: the secret key does not match its hash');
    const sk = o.loadSecretKey(secretKey);
    d = new o.he.seal.Decryptor(o.he.context, sk);
    sk.delete();
    decryptors.set(keyHash, d);
  }
  return d;
}

/** A symmetric (seeded) Encryptor per secret key: a provider's own encryptions are half the size of public-key ones. */
export function symmetricEncryptorFor(o: BlockOps, secretKey: Uint8Array): Encryptor {
  const keyHash = createHash('sha256').update(secretKey).digest('hex');
  let enc = encryptors.get(keyHash);
  if (!enc) {
    const sk: SecretKey = o.loadSecretKey(secretKey);
    const kg = new o.he.seal.KeyGenerator(o.he.context, sk);
    const pk = kg.createPublicKey();
    enc = new o.he.seal.Encryptor(o.he.context, pk, sk);
    pk.delete();
    kg.delete();
    sk.delete();
    encryptors.set(keyHash, enc);
  }
  return enc;
}
