/**
 * Joint training, the bank's side: sign the request; encrypt its labels L = c·s·(2 − 4y) (s = 2^scaleBits; c = 1 for
 * one-hot, 2^5 for standardized features) at the cohort's slots under the key holder's BFV public key — the engine
 * never sees a label — and sign the upload. The bank converts the delivered model itself (models/train.ts).
 */
import { fail } from '../../../core/errors.ts';
import { sha256Hex } from '../../../core/hash.ts';
import { toSlot } from '../../../core/fixed.ts';
import { signJson, type Signed } from '../../../core/sign.ts';
import { heContext, type ParamSet } from '../../he/params.ts';
import { BlockOps } from '../../he/block.ts';
import { columnBitsOf, type TrainLabels, type TrainPlan, type TrainRequest } from './messages.ts';

/** A signed training request. */
export function buildTrainRequest(
  r: Omit<TrainRequest, 'type' | 'requestedAt'> & { requestedAt?: string },
  bankSecretKey: Uint8Array,
): Signed<TrainRequest> {
  return signJson(
    { type: 'safehouse.train.request.v1', ...r, requestedAt: r.requestedAt ?? new Date().toISOString() },
    r.bank,
    bankSecretKey,
  );
}

/**
 * Encrypt L = c·s·(2 − 4y) at the cohort's slots under the key holder's public key (from the public registry).
 * @throws SH_ERR_INVALID_ARGUMENT when a cohort subject has no label
 */
export async function encryptLabels(
  params: ParamSet,
  holderPublicKey: Uint8Array,
  plan: Pick<TrainPlan, 'jobId' | 'options' | 'features' | 'cohort'>,
  labels: ReadonlyMap<string, 0 | 1>,
  bank: string,
  bankSecretKey: Uint8Array,
): Promise<{ signed: Signed<TrainLabels>; blobs: Map<string, Uint8Array> }> {
  const he = await heContext(params);
  const ops = new BlockOps(he);
  const pk = ops.loadPublicKey(holderPublicKey);
  const encryptor = new he.seal.Encryptor(he.context, pk);
  const s = (1n << BigInt(plan.options.scaleBits)) << BigInt(columnBitsOf(plan));
  const byBlock = new Map<number, BigUint64Array>();
  for (const c of plan.cohort) {
    const y = labels.get(c.uscc);
    if (y === undefined) fail('SH_ERR_INVALID_ARGUMENT', `no label for cohort subject ${c.uscc}`);
    const v = byBlock.get(c.block) ?? new BigUint64Array(he.params.slots);
    v[c.slot] = toSlot(s * (2n - 4n * BigInt(y)), he.params.t);
    byBlock.set(c.block, v);
  }
  const blobs = new Map<string, Uint8Array>();
  const blocks: TrainLabels['blocks'] = [];
  try {
    for (const [block, v] of [...byBlock].sort((a, b) => a[0] - b[0])) {
      const pt = ops.encode(v);
      const ct = new he.seal.Ciphertext();
      try {
        encryptor.encrypt(pt, ct);
        const bytes = ops.save(ct);
        const blob = sha256Hex(bytes);
        blobs.set(blob, bytes);
        blocks.push({ block, blob });
      } finally {
        pt.delete();
        ct.delete();
      }
      v.fill(0n);
    }
  } finally {
    encryptor.delete();
    pk.delete();
    ops.dispose();
  }
  return {
    signed: signJson(
      { type: 'safehouse.train.labels.v1', jobId: plan.jobId, bank, scaleBits: plan.options.scaleBits, blocks },
      bank,
      bankSecretKey,
    ),
    blobs,
  };
}
