/**
 * The provider's pool kernels (its own worker threads, its own keys): symmetric, seeded BFV encryption of a column —
 * half the size of a public-key encryption — and RFC 9497 POPRF evaluation of its own token inputs.
 */
import { move } from 'piscina';
import { defineKernel } from '../pool/kernel.ts';
import { blockOps, symmetricEncryptorFor } from '../pool/worker-cache.ts';
import { evaluateTokens } from '../tokens/oprf.ts';

export interface EncryptTask {
  paramsId: string;
  /** The provider's serialized BFV secret key (a copy, wiped after the task). */
  secretKey: Uint8Array;
  values: BigUint64Array;
}

export const encrypt = defineKernel<EncryptTask, Uint8Array>(async (task) => {
  const o = await blockOps(task.paramsId);
  const enc = symmetricEncryptorFor(o, task.secretKey);
  const pt = o.encode(task.values);
  try {
    const ser = enc.encryptSymmetricSerializable(pt);
    try {
      return move(ser.saveToArray(o.he.seal.ComprModeType.zstd) as Uint8Array);
    } finally {
      ser.delete();
    }
  } finally {
    pt.delete();
    task.secretKey.fill(0);
  }
});

export interface EvaluateTask {
  secretKey: Uint8Array;
  info: Uint8Array;
  inputs: Uint8Array[];
}

/** Non-interactive POPRF evaluation by the key holder itself (≈ 2–4 ms per input on P-256). */
export const evaluate = defineKernel<EvaluateTask, Uint8Array[]>((task) =>
  evaluateTokens(task.secretKey, task.info, task.inputs),
);
