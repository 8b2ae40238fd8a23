/**
 * The custodian's pool kernels, run in the provider's own worker threads (never the engine's): masked decryption with
 * the key holder's checks, and RFC 9497 POPRF evaluation of blinded elements with a batch DLEQ proof.
 */
import { move } from 'piscina';
import { defineKernel } from '../pool/kernel.ts';
import { blockOps, decryptorFor } from '../pool/worker-cache.ts';
import { evaluateBlinded as evaluate } from '../tokens/oprf.ts';
import { checkedDecrypt } from './decrypt.ts';

export interface DecryptTask {
  paramsId: string;
  /** The custodian's key in shared memory (not copied per task); loaded into SEAL once per worker, by `keyHash`. */
  secretKey: Uint8Array;
  keyHash: string;
  ciphertext: Uint8Array;
  label: string;
  maxSize: number;
}

/** Decrypt a ciphertext the custodian already hash-checked against the signed request; the decoded slots come back. */
export const decrypt = defineKernel<DecryptTask, BigUint64Array>(async (task) => {
  const o = await blockOps(task.paramsId);
  const values = checkedDecrypt(
    o,
    decryptorFor(o, task.secretKey, task.keyHash),
    o.he.params,
    task.ciphertext,
    task.label,
    task.maxSize,
  );
  return move(values as never);
});

export interface EvaluateBlindedTask {
  secretKey: Uint8Array;
  info: Uint8Array;
  blinded: Uint8Array[];
}

/** POPRF BlindEvaluate of a batch (P-256 scalar multiplications, ≈ 2–4 ms per element) with one DLEQ proof. */
export const evaluateBlinded = defineKernel<EvaluateBlindedTask, { evaluated: Uint8Array[]; proof: Uint8Array }>(
  (task) => evaluate(task.secretKey, task.info, task.blinded),
);
