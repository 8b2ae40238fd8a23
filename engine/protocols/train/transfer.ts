/**
 * Joint training's domain transfer (docs/design.md §4.3, docs/protocols.md "Joint training" step 4): before the
 * iterations, every column of every other provider moves under the key holder's key and into its subject layout.
 * Per (column, source block, target block) the engine masks the column under its owner's key, the owner's custodian
 * decrypts v + m (uniform to it), moves the cohort's slots and encrypts under the key holder's public key, and the
 * engine subtracts the moved mask. No one sees a feature value.
 */
import { openAtCustodian } from '../job.ts';
import { fail } from '../../../core/errors.ts';
import { canonicalize } from '../../../core/jcs.ts';
import { sha256Hex } from '../../../core/hash.ts';
import type { Signed } from '../../../core/sign.ts';
import { deriveMaskKey, maskVector } from '../../he/mask.ts';
import { kernelRef } from '../../pool/kernel.ts';
import type { Engine } from '../../engine.ts';
import type { TransferRequest, TransferResponse } from '../../custodian/messages.ts';
import { askCustodian } from '../ask.ts';
import type * as Kernels from './kernels.ts';
import { heldColumn, rawColumn } from './engine.ts';
import { transferLabel, type TrainColumns, type TrainPlan } from './messages.ts';

const KERNELS = new URL('./kernels.ts', import.meta.url);
const maskForTransfer = kernelRef<typeof Kernels.maskForTransfer>(KERNELS, 'maskForTransfer');
const subtractVector = kernelRef<typeof Kernels.subtractVector>(KERNELS, 'subtractVector');

/**
 * Move every other provider's columns under the key holder's key and into its subject layout
 * (domain transfer with relayout, docs/design.md §4.3). Per (column, source block, target block): mask under the source key,
 * the source custodian decrypts v + m, moves the cohort's slots and encrypts under the key holder's public key, and
 * the engine subtracts the moved mask. The source custodian sees only uniform values; no one sees a feature.
 */
export async function transferTrainingColumns(
  engine: Engine,
  plan: TrainPlan,
  columns: ReadonlyArray<Signed<TrainColumns>>,
): Promise<void> {
  const t = engine.params.t;
  const holder = engine.registry.requireParty(plan.provider, 'provider');
  const holderPk = engine.registry.bfvPublicKey(plan.provider);
  let offset = columns[0]!.body.bins.reduce((a, b) => a + b.bins.length, 0);
  // Transfer masks are never replayed (docs/protocols.md "Auditor replay"): a fresh seed, not escrowed.
  const seed = engine.jobs.newSeed();
  for (const part of plan.others) await openAtCustodian(engine, part.provider, plan.request);
  for (const [k, part] of plan.others.entries()) {
    const src = engine.registry.requireParty(part.provider, 'provider');
    const nCols = columns[k + 1]!.body.bins.reduce((a, b) => a + b.bins.length, 0);
    const targetBlocks = [...new Set(plan.cohort.map((c) => c.block))].sort((a, b) => a - b);
    const jobs: Array<Promise<void>> = [];
    for (let i = 0; i < nCols; i++) {
      for (const tb of targetBlocks) {
        jobs.push(
          (async () => {
            // Which source blocks feed this target block, and the slot moves from each.
            const bySource = new Map<number, Array<[number, number]>>();
            plan.cohort.forEach((c, j) => {
              if (c.block !== tb) return;
              const s = part.slots[j]!;
              bySource.set(s.block, [...(bySource.get(s.block) ?? []), [s.slot, c.slot]]);
            });
            const parts: Uint8Array[] = [];
            const moved = new BigUint64Array(engine.params.slots);
            for (const [sb, moves] of bySource) {
              const blob = engine.datasets.columnBlob(part.datasetId, rawColumn(plan.jobId, i), sb);
              if (!blob) fail('SH_ERR_BLOB_MISSING', `training column ${i} block ${sb} of ${part.provider} missing`);
              const label = transferLabel(plan.jobId, part.provider, i, sb, tb);
              const maskKey = deriveMaskKey(seed, label);
              const ct = await engine.pool.run(maskForTransfer, {
                paramsId: engine.params.id,
                publicKey: { path: engine.store.blobPath(src.bfvPublicKeyBlob!), hash: src.bfvPublicKeyBlob! },
                column: { path: engine.store.blobPath(blob), hash: blob },
                maskKey: maskKey.slice(),
              });
              const request: TransferRequest = {
                type: 'safehouse.custodian.transfer.v1',
                paramsId: engine.params.id,
                provider: part.provider,
                jobId: plan.jobId,
                jobHash: plan.jobHash,
                label,
                ciphertext: sha256Hex(ct),
                target: { provider: plan.provider, bfvPublicKey: holder.bfvPublicKeyBlob! },
                moves,
              };
              const { ciphertext } = await askCustodian<
                TransferRequest,
                { response: Signed<TransferResponse>; ciphertext: Uint8Array }
              >(engine, {
                provider: part.provider,
                body: request,
                send: (c, signed) => c.transfer(signed as Signed<TransferRequest>, ct, holderPk),
                response: (a) => a.response,
                complete: (a) => a.response.body.ciphertext === sha256Hex(a.ciphertext),
                requestEvent: { mode: 'transfer', target: plan.provider, ciphertext: request.ciphertext },
                responseEvent: (a) => ({
                  responseHash: sha256Hex(canonicalize(a.response)),
                  ciphertext: a.response.body.ciphertext,
                }),
              });
              const m = maskVector(maskKey, t, engine.params.slots);
              for (const [from, to] of moves) moved[to] = m[from]!;
              parts.push(ciphertext);
            }
            const out = await engine.pool.run(subtractVector, {
              paramsId: engine.params.id,
              ciphertexts: parts,
              values: moved,
            });
            engine.datasets.putColumns(plan.datasetId, [
              { column: heldColumn(plan.jobId, offset + i), block: tb, blob: sha256Hex(out), bytes: out },
            ]);
          })(),
        );
      }
    }
    await engine.pool.all(jobs);
    offset += nCols;
  }
}
