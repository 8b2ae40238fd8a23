/**
 * The key holder's decryption check (docs/design.md §4.2), shared by the custodian's own thread and its pool's
 * workers: load the ciphertext (size-capped; the caller has already checked its hash against the signed request),
 * refuse anything not switched down to the transfer level or below the noise margin — a ciphertext that skipped
 * re-randomization could leak the engine's computation through its noise — then decrypt and decode.
 */
import type { Ciphertext, Decryptor } from 'node-seal';
import { fail } from '../../core/errors.ts';
import type { BlockOps } from '../he/block.ts';
import type { ParamSet } from '../he/params.ts';
import { sealCall } from '../he/seal.ts';

/** @throws SH_ERR_CIPHERTEXT_SIZE, SH_ERR_CIPHERTEXT_INVALID, SH_ERR_NOISE_BUDGET */
export function checkedDecrypt(
  ops: BlockOps,
  decryptor: Decryptor,
  params: ParamSet,
  ciphertext: Uint8Array,
  label: string,
  maxSize: number,
): BigUint64Array {
  const ct: Ciphertext = ops.load(ciphertext, `ciphertext for ${label}`, maxSize);
  try {
    const level = ops.chainIndex(ct);
    if (level !== params.transferChainIndex) {
      fail(
        'SH_ERR_CIPHERTEXT_INVALID',
        `ciphertext for ${label} is at level ${level}, expected the transfer level ${params.transferChainIndex} (re-randomize and switch down first)`,
      );
    }
    const budget = sealCall('SH_ERR_CIPHERTEXT_INVALID', 'noise budget', () => decryptor.invariantNoiseBudget(ct));
    if (budget < params.minNoiseBudget) {
      fail(
        'SH_ERR_NOISE_BUDGET',
        `ciphertext for ${label} has ${budget} bits of noise budget, the minimum is ${params.minNoiseBudget}`,
        { budget },
      );
    }
    const pt = new ops.he.seal.Plaintext();
    try {
      sealCall('SH_ERR_CIPHERTEXT_INVALID', 'decrypt', () => decryptor.decrypt(ct, pt));
      return ops.decode(pt);
    } finally {
      pt.delete();
    }
  } finally {
    ct.delete();
  }
}
