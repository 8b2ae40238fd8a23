/**
 * Verification's pool kernels: a masked comparison block — Enc(m ⊙ x + o) over a stored column, then re-randomized
 * for transfer (the encryption of zero returned for the ledger, or a logged one replayed) — and the engine's two
 * RFC 9497 POPRF steps, blinding claim inputs and finalizing the custodian's evaluations (DLEQ proof checked).
 */
import { move } from 'piscina';
import { defineKernel, moveBoth } from '../../pool/kernel.ts';
import { blockOps, loadStored, publicKeyFor, type BlobRef } from '../../pool/worker-cache.ts';
import { blindInputs, finalizeTokens, type Blinded } from '../../tokens/oprf.ts';

export interface CompareBlockTask {
  paramsId: string;
  publicKey: BlobRef;
  column: BlobRef;
  /** Per-slot multiplier r·d mod t (0 for unused slots). */
  multipliers: BigUint64Array;
  /** Per-slot offset r' − r·d·c mod t (uniform for unused slots). */
  offsets: BigUint64Array;
  /** Auditor replay: add this logged encryption of zero instead of a fresh one (then only the ciphertext returns). */
  rerandomizer?: Uint8Array;
}

export const compareBlock = defineKernel<
  CompareBlockTask,
  { ciphertext: Uint8Array; rerandomizer: Uint8Array } | Uint8Array
>(async (task) => {
  const o = await blockOps(task.paramsId);
  const pk = publicKeyFor(o, task.publicKey);
  const ct = loadStored(o, task.column, 'column');
  try {
    o.multiplyVector(ct, task.multipliers);
    o.addVector(ct, task.offsets);
    if (task.rerandomizer) {
      o.rerandomizeWith(ct, task.rerandomizer);
      return move(o.save(ct));
    }
    const zero = o.rerandomizeLogged(ct, pk);
    return moveBoth(o.save(ct), zero);
  } finally {
    ct.delete();
  }
});

/** POPRF Blind of claim inputs under the provider's published key; blinds from `blindKey` (the job seed) when given. */
export const blind = defineKernel<
  { publicKey: Uint8Array; info: Uint8Array; inputs: Uint8Array[]; blindKey?: Uint8Array },
  Blinded[]
>((task) => blindInputs(task.publicKey, task.info, task.inputs, task.blindKey));

/** POPRF Finalize of a batch after checking its DLEQ proof against the provider's published key. */
export const finalize = defineKernel<
  {
    publicKey: Uint8Array;
    info: Uint8Array;
    inputs: Uint8Array[];
    blinded: Blinded[];
    evaluated: Uint8Array[];
    proof: Uint8Array;
  },
  Uint8Array[]
>((task) => finalizeTokens(task.inputs, task.blinded, task.evaluated, task.proof, task.publicKey, task.info));
