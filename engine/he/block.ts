/**
 * Block operations: the engine's HE primitives over one ciphertext's worth of subjects (docs/design.md §4).
 * One `BlockOps` per context per process/worker; evaluator, encoder and constant plaintexts are reused, never created
 * per slot. Callers own the ciphertexts they get back and free them with `delete()`.
 */
import type { Ciphertext, Plaintext, PublicKey, SecretKey, BatchEncoder, Evaluator } from 'node-seal';
import { fail } from '../../core/errors.ts';
import type { HeContext } from './params.ts';
import { sealCall } from './seal.ts';
import { toSlot } from '../../core/fixed.ts';

export interface LinearTerm {
  readonly ct: Ciphertext;
  /** Signed integer multiplier; |m| < t/2. Negative weights are applied as multiply-by-|m| then subtract (docs/design.md §3). */
  readonly multiplier: bigint;
}

export class BlockOps {
  readonly he: HeContext;
  readonly encoder: BatchEncoder;
  readonly evaluator: Evaluator;
  readonly slots: number;
  private readonly constants = new Map<bigint, Plaintext>();

  constructor(he: HeContext) {
    this.he = he;
    this.encoder = new he.seal.BatchEncoder(he.context);
    this.evaluator = new he.seal.Evaluator(he.context);
    this.slots = this.encoder.slotCount();
  }

  /** Encode a vector of residues (length ≤ slots, padded with zeros). */
  encode(values: BigUint64Array): Plaintext {
    if (values.length > this.slots)
      fail('SH_ERR_INVALID_ARGUMENT', `"values" expected at most ${this.slots} slots, got ${values.length}`);
    const full = values.length === this.slots ? values : padded(values, this.slots);
    const pt = new this.he.seal.Plaintext();
    this.encoder.encode(full, pt);
    return pt;
  }

  decode(pt: Plaintext): BigUint64Array {
    return this.encoder.decodeBigUint64(pt) as BigUint64Array;
  }

  /**
   * A constant plaintext (every slot = c): encodes to a one-coefficient polynomial, so multiplyPlain takes SEAL's
   * scalar path (0.25 ms vs ~4 ms for a full vector, measured). Cached per value.
   */
  constant(c: bigint): Plaintext {
    let pt = this.constants.get(c);
    if (!pt) {
      pt = this.encode(new BigUint64Array(this.slots).fill(toSlot(c, this.he.params.t)));
      if (this.constants.size > 4096) this.clearConstants();
      this.constants.set(c, pt);
    }
    return pt;
  }

  clearConstants(): void {
    for (const pt of this.constants.values()) pt.delete();
    this.constants.clear();
  }

  /**
   * Load a serialized ciphertext. The size cap is checked before SEAL sees the bytes; integrity (hash/signature) is
   * the caller's job and must come first (SEAL 4.1.2 predates the 4.4.0 deserialization hardening).
   * @throws SH_ERR_CIPHERTEXT_SIZE, SH_ERR_CIPHERTEXT_INVALID
   */
  load(bytes: Uint8Array, what = 'ciphertext', maxSize = 2): Ciphertext {
    if (bytes.length > this.he.params.maxCiphertextBytes) {
      fail(
        'SH_ERR_CIPHERTEXT_SIZE',
        `"${what}" expected at most ${this.he.params.maxCiphertextBytes} bytes, got ${bytes.length}`,
        { bytes: bytes.length },
      );
    }
    const ct = new this.he.seal.Ciphertext();
    try {
      sealCall('SH_ERR_CIPHERTEXT_INVALID', what, () => ct.loadFromArray(this.he.context, bytes));
      if (ct.size() < 2 || ct.size() > maxSize || ct.polyModulusDegree() !== this.he.params.polyModulusDegree) {
        fail(
          'SH_ERR_CIPHERTEXT_INVALID',
          `"${what}" expected a ciphertext of size 2${maxSize > 2 ? `..${maxSize}` : ''} for ${this.he.params.id}, got size ${ct.size()}`,
        );
      }
    } catch (err) {
      ct.delete();
      throw err;
    }
    return ct;
  }

  /** Serialize with zstd (what goes to disk and over the wire). */
  save(ct: Ciphertext): Uint8Array {
    return sealCall(
      'SH_ERR_INTERNAL',
      'ciphertext save',
      () => ct.saveToArray(this.he.seal.ComprModeType.zstd) as Uint8Array,
    );
  }

  /** Chain index of a ciphertext's level (3 = fresh for bfv-8192-t40-v1, 0 = last). */
  chainIndex(ct: Ciphertext): number {
    return sealCall('SH_ERR_CIPHERTEXT_INVALID', 'chainIndex', () => {
      const id = ct.parmsId();
      const data = this.he.context.getContextData(id);
      try {
        return data.chainIndex();
      } finally {
        data.delete();
        id.delete();
      }
    });
  }

  /**
   * Σ m_i · ct_i (docs/design.md §4.1). Zero multipliers are skipped; an empty or all-zero sum is an error (there is no
   * transparent zero ciphertext by design).
   */
  linear(terms: readonly LinearTerm[]): Ciphertext {
    return sealCall('SH_ERR_CIPHERTEXT_INVALID', 'linear evaluation', () => this.linearUnchecked(terms));
  }

  private linearUnchecked(terms: readonly LinearTerm[]): Ciphertext {
    const half = (this.he.params.t - 1n) / 2n;
    let acc: Ciphertext | undefined;
    const tmp = new this.he.seal.Ciphertext();
    try {
      for (const { ct, multiplier } of terms) {
        if (multiplier === 0n) continue;
        const mag = multiplier < 0n ? -multiplier : multiplier;
        if (mag > half) fail('SH_ERR_BOUND_OVERFLOW', `multiplier ${multiplier} exceeds t/2`);
        const neg = multiplier < 0n;
        if (!acc) {
          acc = new this.he.seal.Ciphertext();
          if (mag === 1n) acc.assign(ct);
          else this.evaluator.multiplyPlain(ct, this.constant(mag), acc);
          if (neg) this.evaluator.negateInplace(acc);
          continue;
        }
        const term = mag === 1n ? ct : (this.evaluator.multiplyPlain(ct, this.constant(mag), tmp), tmp);
        if (neg) this.evaluator.subInplace(acc, term);
        else this.evaluator.addInplace(acc, term);
      }
    } catch (err) {
      acc?.delete();
      throw err;
    } finally {
      tmp.delete();
    }
    if (!acc) fail('SH_ERR_INVALID_ARGUMENT', '"terms" expected at least one non-zero multiplier');
    return acc;
  }

  /** ct += vector (slot-wise, residues mod t). */
  addVector(ct: Ciphertext, values: BigUint64Array): void {
    const pt = this.encode(values);
    try {
      sealCall('SH_ERR_CIPHERTEXT_INVALID', 'addVector', () => this.evaluator.addPlainInplace(ct, pt));
    } finally {
      pt.delete();
    }
  }

  /**
   * a ⊙ b of two ciphertexts (joint training: feature × Taylor residual), without relinearization: the result has size 3,
   * which the key holder decrypts directly, so no relinearization keys need to be published (docs/design.md §5).
   */
  multiply(a: Ciphertext, b: Ciphertext): Ciphertext {
    const out = new this.he.seal.Ciphertext();
    try {
      sealCall('SH_ERR_CIPHERTEXT_INVALID', 'multiply', () => this.evaluator.multiply(a, b, out));
    } catch (err) {
      out.delete();
      throw err;
    }
    return out;
  }

  /** ct ⊙= vector (slot-wise product with a full plaintext vector; ~4 ms, used for per-slot randomizers). */
  multiplyVector(ct: Ciphertext, values: BigUint64Array): void {
    const pt = this.encode(values);
    try {
      sealCall('SH_ERR_CIPHERTEXT_INVALID', 'multiplyVector', () => this.evaluator.multiplyPlainInplace(ct, pt));
    } finally {
      pt.delete();
    }
  }

  /**
   * Re-randomize and prepare for transfer (docs/design.md §4.2): add a fresh public-key encryption of zero under the key
   * holder's public key, then switch down to the parameter set's transfer level. The fresh zero hides which
   * ciphertexts were combined; the modulus switch scales the accumulated noise down to rounding noise and cuts the
   * size (~430 KB → ~214 KB).
   */
  rerandomizeForTransfer(ct: Ciphertext, publicKey: PublicKey): void {
    sealCall('SH_ERR_CIPHERTEXT_INVALID', 'rerandomizeForTransfer', () => this.rerandomizeUnchecked(ct, publicKey));
  }

  /**
   * `rerandomizeForTransfer` that also returns the fresh encryption of zero it added (serialized), so the step can be
   * logged and replayed by an auditor (`rerandomizeWith`).
   */
  rerandomizeLogged(ct: Ciphertext, publicKey: PublicKey): Uint8Array {
    let out: Uint8Array | undefined;
    sealCall('SH_ERR_CIPHERTEXT_INVALID', 'rerandomizeForTransfer', () =>
      this.rerandomizeUnchecked(ct, publicKey, (zero) => {
        out = this.save(zero);
      }),
    );
    return out!;
  }

  /** Replay of a logged re-randomization: add the given encryption of zero, then switch down to the transfer level. */
  rerandomizeWith(ct: Ciphertext, zeroBytes: Uint8Array): void {
    const zero = this.load(zeroBytes, 'logged re-randomizer');
    try {
      sealCall('SH_ERR_CIPHERTEXT_INVALID', 'rerandomizeWith', () =>
        this.rerandomizeUnchecked(ct, undefined, undefined, zero),
      );
    } finally {
      zero.delete();
    }
  }

  private rerandomizeUnchecked(
    ct: Ciphertext,
    publicKey: PublicKey | undefined,
    keep?: (zero: Ciphertext) => void,
    given?: Ciphertext,
  ): void {
    if (given) {
      if (this.chainIndex(given) !== this.chainIndex(ct)) this.evaluator.cipherModSwitchToInplace(given, ct.parmsId());
      this.evaluator.addInplace(ct, given);
    } else {
      const encryptor = new this.he.seal.Encryptor(this.he.context, publicKey!);
      const zero = new this.he.seal.Ciphertext();
      try {
        encryptor.encryptZero(zero);
        keep?.(zero);
        if (this.chainIndex(zero) !== this.chainIndex(ct)) this.evaluator.cipherModSwitchToInplace(zero, ct.parmsId());
        this.evaluator.addInplace(ct, zero);
      } finally {
        zero.delete();
        encryptor.delete();
      }
    }
    const target = this.he.params.transferChainIndex;
    let idx = this.chainIndex(ct);
    if (idx < target)
      fail('SH_ERR_NOISE_BUDGET', `ciphertext is already below the transfer level (${idx} < ${target})`);
    while (idx > target) {
      this.evaluator.cipherModSwitchToNextInplace(ct);
      idx = this.chainIndex(ct);
    }
  }

  /** Load a BFV public key (as published by a provider), size-capped before SEAL parses it. @throws SH_ERR_INVALID_ARGUMENT */
  loadPublicKey(bytes: Uint8Array): PublicKey {
    if (bytes.length > this.he.params.maxPublicKeyBytes)
      fail(
        'SH_ERR_INVALID_ARGUMENT',
        `"bfvPublicKey" expected at most ${this.he.params.maxPublicKeyBytes} bytes, got ${bytes.length}`,
      );
    const pk = new this.he.seal.PublicKey();
    sealCall('SH_ERR_INVALID_ARGUMENT', 'BFV public key', () => pk.loadFromArray(this.he.context, bytes));
    return pk;
  }

  /** Load a BFV secret key (custodian only). */
  loadSecretKey(bytes: Uint8Array): SecretKey {
    const sk = new this.he.seal.SecretKey();
    sealCall('SH_ERR_INVALID_ARGUMENT', 'BFV secret key', () => sk.loadFromArray(this.he.context, bytes));
    return sk;
  }

  dispose(): void {
    this.clearConstants();
    this.encoder.delete();
    this.evaluator.delete();
  }
}

function padded(values: BigUint64Array, n: number): BigUint64Array {
  const out = new BigUint64Array(n);
  out.set(values);
  return out;
}

/** A fresh BFV key pair for a key holder (custodian). Returns serialized keys; the secret stays with the caller. */
export function generateBfvKeys(he: HeContext): { secretKey: Uint8Array; publicKey: Uint8Array } {
  const kg = new he.seal.KeyGenerator(he.context);
  const sk = kg.secretKey();
  const pk = kg.createPublicKey();
  try {
    return {
      secretKey: sk.saveToArray(he.seal.ComprModeType.zstd) as Uint8Array,
      publicKey: pk.saveToArray(he.seal.ComprModeType.zstd) as Uint8Array,
    };
  } finally {
    sk.delete();
    pk.delete();
    kg.delete();
  }
}
