/**
 * Scoring's pool kernel: one (provider dataset, block) of a job — Enc(Σ m_f·x_f) over the stored columns, plus the
 * mask from the job seed, plus a fresh encryption of zero, switched down to the transfer level. The encryption of zero
 * comes back with the ciphertext so the engine can log it and an auditor replay the block bit for bit.
 */
import { move } from 'piscina';
import { maskVector } from '../../he/mask.ts';
import { defineKernel, moveBoth } from '../../pool/kernel.ts';
import { blockOps, loadStored, publicKeyFor, type BlobRef } from '../../pool/worker-cache.ts';

export interface EvalBlockTask {
  paramsId: string;
  /** The key holder's BFV public key, as a stored blob. */
  publicKey: BlobRef;
  columns: Array<BlobRef & { multiplier: string }>;
  /** Mask key (docs/design.md §4.2); the mask vector is added before re-randomization. */
  maskKey: Uint8Array;
  /** Auditor replay: add this logged encryption of zero instead of a fresh one (then only the ciphertext returns). */
  rerandomizer?: Uint8Array;
}

export const evalBlock = defineKernel<EvalBlockTask, { ciphertext: Uint8Array; rerandomizer: Uint8Array } | Uint8Array>(
  async (task) => {
    const o = await blockOps(task.paramsId);
    const pk = publicKeyFor(o, task.publicKey);
    const cts = task.columns.map((c) => loadStored(o, c, 'column'));
    try {
      const acc = o.linear(cts.map((ct, i) => ({ ct, multiplier: BigInt(task.columns[i]!.multiplier) })));
      try {
        o.addVector(acc, maskVector(task.maskKey, o.he.params.t, o.slots));
        if (task.rerandomizer) {
          o.rerandomizeWith(acc, task.rerandomizer);
          return move(o.save(acc));
        }
        const zero = o.rerandomizeLogged(acc, pk);
        return moveBoth(o.save(acc), zero);
      } finally {
        acc.delete();
      }
    } finally {
      for (const ct of cts) ct.delete();
    }
  },
);
