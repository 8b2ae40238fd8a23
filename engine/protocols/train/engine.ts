/**
 * Joint training, the engine's steps after the plan (plan.ts; docs/protocols.md "Joint training"): store every
 * provider's signed columns and the bank's signed labels, have the key holder's custodian show the labels 0/1, and
 * iterate — per iteration the bound calculator picks a group size g with g·max|D| plus the noise margin ≤ (t−1)/2,
 * a worker computes Enc(D) and every Enc(X_b)·Enc(D), masked at the cohort's slots, re-randomized and switched down,
 * the key holder's custodian answers group sums of v + m plus its privacy noise, and the engine removes Σ m to get
 * G_0 = Σ D_i and G_b = Σ X_ib·D_i — the integers `taylorGradientSums` computes on plaintext, plus that noise — then
 * updates the model (L2, learning-rate decay, early stop). The engine sees only noisy sums; the bank the final model.
 */
import { fail } from '../../../core/errors.ts';
import { canonicalize } from '../../../core/jcs.ts';
import { sha256Hex } from '../../../core/hash.ts';
import { centered } from '../../../core/fixed.ts';
import { requireSignature, type Signed } from '../../../core/sign.ts';
import { maxAbsD, sumGroupSize, updateModel, type FixedModel } from '../../../models/train.ts';
import { STD_CLIP, type BinSpec } from '../../../models/features.ts';
import { deriveMaskKey, maskVector } from '../../he/mask.ts';
import { kernelRef } from '../../pool/kernel.ts';
import type { Engine } from '../../engine.ts';
import type { DecryptRequest, DecryptResponse } from '../../custodian/messages.ts';
import { askCustodian, responseBytes } from '../ask.ts';
import { escrowHashes, escrowToAuditors, failOnError, openAtCustodian } from '../job.ts';
import type * as Kernels from './kernels.ts';
import {
  columnBitsOf,
  iterationLabel,
  iterationSigma,
  labelCheckLabel,
  planParts,
  type TrainColumns,
  type TrainLabels,
  type TrainOutcome,
  type TrainPlan,
  type TrainProgress,
} from './messages.ts';

const gradBlock = kernelRef<typeof Kernels.gradBlock>(new URL('./kernels.ts', import.meta.url), 'gradBlock');
const labelCheck = kernelRef<typeof Kernels.labelCheck>(new URL('./kernels.ts', import.meta.url), 'labelCheck');

/** Test hook (engine side, never sent to the bank): each iteration's model and the noisy gradient sums it got. */
export type TrainObserver = (iteration: number, model: FixedModel, sums: { G0: bigint; G: bigint[] }) => void;

/** A job mask restricted to the cohort's slots (the key holder's custodian sums no other slot). */
export function cohortMaskVector(key: Uint8Array, t: bigint, cohort: BigUint64Array): BigUint64Array {
  const m = maskVector(key, t, cohort.length);
  for (let i = 0; i < m.length; i++) if (!cohort[i]) m[i] = 0n;
  return m;
}

/**
 * Prove the bank's labels binary before any gradient (docs/privacy.md "Training"): per block the key holder decrypts
 * L² − 4s²·T in mode `zero` and answers only whether every slot is 0 — L = s·(2 − 4y) is ±2s exactly when
 * y ∈ {0, 1} (t is prime), and 0 outside the cohort. @throws SH_ERR_LABELS_NOT_BINARY
 */
async function checkLabels(
  engine: Engine,
  plan: TrainPlan,
  blocks: readonly number[],
  cohortMask: ReadonlyMap<number, BigUint64Array>,
  seed: Uint8Array,
): Promise<void> {
  const t = engine.params.t;
  const s = (1n << BigInt(plan.options.scaleBits)) << BigInt(columnBitsOf(plan));
  const pkBlob = engine.registry.requireParty(plan.provider, 'provider').bfvPublicKeyBlob!;
  const bad: number[] = [];
  await engine.pool.all(
    blocks.map(async (block) => {
      const label = labelCheckLabel(plan.jobId, block);
      const labelsBlob = engine.datasets.columnBlob(labelsDataset(plan.jobId), 'labels', block)!;
      const ct = await engine.pool.run(labelCheck, {
        paramsId: engine.params.id,
        publicKey: { path: engine.store.blobPath(pkBlob), hash: pkBlob },
        labels: { path: engine.store.blobPath(labelsBlob), hash: labelsBlob },
        cohort: cohortMask.get(block)!.slice(),
        labelTerm: (2n * s).toString(),
      });
      const request = keyHolderRequest(engine, plan, label, 'zero', ct);
      const response = await askCustodian<DecryptRequest, Signed<DecryptResponse>>(engine, {
        provider: plan.provider,
        body: request,
        send: (c, signed) => c.decrypt(signed as Signed<DecryptRequest>, ct),
        response: (r) => r,
        complete: (r) => typeof r.body.zero === 'boolean',
        requestEvent: { mode: 'zero', ciphertext: request.ciphertext },
        responseEvent: (r) => ({ responseHash: engine.store.putBlob(responseBytes(r)), zero: r.body.zero }),
      });
      if (!response.body.zero) bad.push(block);
    }),
  );
  if (bad.length)
    fail(
      'SH_ERR_LABELS_NOT_BINARY',
      `the bank's labels of job ${plan.jobId} are not all 0/1 (block${bad.length > 1 ? 's' : ''} ${bad.sort((a, b) => a - b).join(', ')}); no gradient was computed`,
      { blocks: bad.join(',') },
    );
}

/** Where a job's inputs are stored: the key holder's columns (its own and transferred ones), others' raw columns, the labels. */
export const heldColumn = (jobId: string, index: number): string => `train/${jobId}/${index}`;
export const rawColumn = (jobId: string, index: number): string => `train/${jobId}/raw/${index}`;
export const labelsDataset = (jobId: string): string => `${jobId}:labels`;

/**
 * Steps 2–3 received: store every provider's signed columns (the key holder's first, then `plan.others`
 * in order) and the bank's signed labels, all hash-checked. Returns the bins of all columns, in column order.
 * @throws SH_ERR_BAD_SIGNATURE, SH_ERR_CIPHERTEXT_INVALID, SH_ERR_CIPHERTEXT_SIZE, SH_ERR_INVALID_ARGUMENT
 */
export function acceptTrainingInputs(
  engine: Engine,
  plan: TrainPlan,
  columns: ReadonlyArray<Signed<TrainColumns>>,
  labels: Signed<TrainLabels>,
  blobs: ReadonlyMap<string, Uint8Array>,
): BinSpec[] {
  const parts = planParts(plan);
  if (columns.length !== parts.length)
    fail(
      'SH_ERR_INVALID_ARGUMENT',
      `expected training columns from ${parts.length} provider(s), got ${columns.length}`,
    );
  const bank = engine.registry.requireParty(labels.signer, 'bank');
  requireSignature(labels, bank.ed25519, 'safehouse.train.labels.v1', `labels from ${labels.signer}`);
  if (labels.body.jobId !== plan.jobId || labels.body.scaleBits !== plan.options.scaleBits)
    fail('SH_ERR_PARAMS_MISMATCH', 'labels are for another job or scale');
  const holderBlocks = [...new Set(plan.cohort.map((c) => c.block))].sort((a, b) => a - b);
  if (labels.body.blocks.map((b) => b.block).join() !== holderBlocks.join())
    fail('SH_ERR_INVALID_ARGUMENT', `labels expected for blocks ${holderBlocks.join(',')}`);
  const check = (hash: string, what: string) => {
    const b = blobs.get(hash);
    if (!b) fail('SH_ERR_INVALID_ARGUMENT', `${what}: blob ${hash} is not in the upload`);
    if (b.length > engine.params.maxCiphertextBytes)
      fail('SH_ERR_CIPHERTEXT_SIZE', `${what}: ${b.length} bytes exceeds the cap`);
    if (sha256Hex(b) !== hash) fail('SH_ERR_CIPHERTEXT_INVALID', `${what}: bytes do not hash to ${hash}`);
  };
  parts.forEach((part, k) => {
    const c = columns[k]!;
    const provider = engine.registry.requireParty(part.provider, 'provider');
    requireSignature(c, provider.ed25519, 'safehouse.train.columns.v1', `training columns from ${c.signer}`);
    if (c.body.jobId !== plan.jobId || c.body.provider !== part.provider || c.body.datasetId !== part.datasetId)
      fail('SH_ERR_PARAMS_MISMATCH', 'training columns are for another job, provider or dataset');
    const nCols = c.body.bins.reduce((a, b) => a + b.bins.length, 0);
    const blocks = [...new Set(part.slots.map((x) => x.block))].sort((a, b) => a - b);
    const want = new Set(blocks.flatMap((b) => Array.from({ length: nCols }, (_, i) => `${i}#${b}`)));
    for (const col of c.body.columns)
      if (!want.delete(`${col.index}#${col.block}`))
        fail(
          'SH_ERR_INVALID_ARGUMENT',
          `unexpected training column ${col.index} block ${col.block} from ${part.provider}`,
        );
    if (want.size)
      fail(
        'SH_ERR_INVALID_ARGUMENT',
        `training columns missing from ${part.provider}: ${[...want].slice(0, 3).join(', ')}`,
      );
    for (const col of c.body.columns) check(col.blob, `training column ${col.index} of ${part.provider}`);
  });
  for (const b of labels.body.blocks) check(b.blob, `labels block ${b.block}`);
  engine.store.transaction(() => {
    parts.forEach((part, k) => {
      engine.datasets.putColumns(
        part.datasetId,
        columns[k]!.body.columns.map((col) => ({
          column: k === 0 ? heldColumn(plan.jobId, col.index) : rawColumn(plan.jobId, col.index),
          block: col.block,
          blob: col.blob,
          bytes: blobs.get(col.blob)!,
        })),
      );
    });
    engine.datasets.putColumns(
      labelsDataset(plan.jobId),
      labels.body.blocks.map((b) => ({ column: 'labels', block: b.block, blob: b.blob, bytes: blobs.get(b.blob)! })),
    );
    engine.jobs.setStatus(plan.jobId, 'ready', { bins: columns.flatMap((c) => c.body.bins) });
    engine.ledger.append('train.inputs', {
      jobId: plan.jobId,
      providers: parts.map((p) => p.provider),
      columns: columns.map((c) => c.body.columns.length),
      columnsSignatures: columns.map((c) => c.signature),
      labelBlocks: labels.body.blocks.length,
      labelsSignature: labels.signature,
    });
  });
  return columns.flatMap((c) => c.body.bins);
}

/**
 * Step 4: the training iterations, after the inputs are stored (and, with several providers, transferred).
 * @throws SH_ERR_BOUND_OVERFLOW when no group size keeps the sums below t/2; custodian errors.
 */
export async function runIterations(
  engine: Engine,
  plan: TrainPlan,
  bins: readonly BinSpec[],
  onProgress?: (p: TrainProgress) => void,
  observe?: TrainObserver,
): Promise<TrainOutcome> {
  const o = plan.options;
  const t = engine.params.t;
  const nCols = bins.reduce((a, b) => a + b.bins.length, 0);
  const groups: number[][] = [];
  let next = 0;
  for (const b of bins) groups.push(b.bins.map(() => next++));
  const blocks = [...new Set(plan.cohort.map((c) => c.block))].sort((a, b) => a - b);
  const cohortMask = new Map(blocks.map((b) => [b, new BigUint64Array(engine.params.slots)]));
  for (const c of plan.cohort) cohortMask.get(c.block)![c.slot] = 1n;
  const pkBlob = engine.registry.requireParty(plan.provider, 'provider').bfvPublicKeyBlob!;
  const bank = plan.request.body.bank;
  const seed = engine.jobs.newSeed();
  const escrow = escrowToAuditors(engine, seed, {
    type: 'safehouse.escrow.v1',
    jobId: plan.jobId,
    jobHash: plan.jobHash,
  });
  engine.ledger.append('job.escrowed', { jobId: plan.jobId, escrow: escrowHashes(escrow) });
  // Replay material: the request, the escrow boxes and the bins of the columns, beside the ledger.
  const cohortSlots: Record<string, number[]> = {};
  for (const c of plan.cohort) (cohortSlots[c.block] ??= []).push(c.slot);
  engine.jobs.setRequest(plan.jobId, {
    signed: plan.request,
    escrow,
    bins,
    cohort: plan.cohort.length,
    cohortSlots,
    privacy: plan.privacy,
  });
  let model: FixedModel = { W0: 0n, W: new Array<bigint>(nCols).fill(0n) };
  let iterations = 0;
  await openAtCustodian(engine, plan.provider, plan.request);
  engine.jobs.setStatus(plan.jobId, 'running');
  await failOnError(engine, plan.jobId, async () => {
    // The key holder answers no gradient sum before the bank's labels are shown to be 0/1, block by block.
    await checkLabels(engine, plan, blocks, cohortMask, seed);
    for (let it = 0; it < o.iterations; it++) {
      // Products X_b·D are bounded by max|X|·max|D| (max|X| = 1 one-hot, STD_CLIP standardized); sums of D by max|D|.
      const cb = columnBitsOf(plan);
      const colMax = cb ? BigInt(STD_CLIP) : 1n;
      const bound = maxAbsD(model, groups, o.scaleBits, cb, colMax);
      // The custodian's noise (σ from the bound, truncated at 12σ) must not push a group sum past t/2 either.
      const sigma = iterationSigma({
        bound,
        features: plan.features,
        fields: planParts(plan).reduce((a, p) => a + p.fields.length, 0),
        iterations: o.iterations,
        ...plan.privacy,
      });
      const margin = 2n * BigInt(Math.ceil(12 * sigma) + 1);
      if (margin + 2n * bound * colMax >= t)
        fail(
          'SH_ERR_BOUND_OVERFLOW',
          `training: at iteration ${it} the privacy noise (σ ≈ ${sigma.toExponential(2)}) and one subject's term (${bound * colMax}) no longer fit below t/2; lower scaleBits (standardized features need about 12) or train fewer iterations`,
          { iteration: it },
        );
      const g = sumGroupSize(bound * colMax, t - margin, engine.params.slots);
      const sigmas = new Set<number>();
      const G0acc = { v: 0n };
      const Gacc = new Array<bigint>(nCols).fill(0n);
      // Each block's products are split across the pool; every task recomputes D (cheap) for its share.
      const share = Math.max(1, engine.pool.size);
      const tasks = blocks
        .flatMap((block) =>
          Array.from({ length: share }, (_, part) => ({
            block,
            part,
            products: Array.from({ length: nCols }, (_, b) => b).filter((b) => b % share === part),
          })),
        )
        .filter((x) => x.products.length > 0 || x.part === 0);
      await engine.pool.all(
        tasks.map(async ({ block, part, products }) => {
          const labelsBlob = engine.datasets.columnBlob(labelsDataset(plan.jobId), 'labels', block)!;
          const columns = Array.from({ length: nCols }, (_, i) => {
            const blob = engine.datasets.columnBlob(plan.datasetId, heldColumn(plan.jobId, i), block);
            if (!blob) fail('SH_ERR_BLOB_MISSING', `training column ${i} block ${block} missing`);
            return { path: engine.store.blobPath(blob), hash: blob };
          });
          const withD = part === 0;
          const outputs = [...(withD ? [-1] : []), ...products];
          const labels = outputs.map((b) => iterationLabel(plan.jobId, it, block, b < 0 ? undefined : b));
          const maskKeys = labels.map((l) => deriveMaskKey(seed, l));
          const cts = await engine.pool.run(gradBlock, {
            paramsId: engine.params.id,
            publicKey: { path: engine.store.blobPath(pkBlob), hash: pkBlob },
            columns,
            labels: { path: engine.store.blobPath(labelsBlob), hash: labelsBlob },
            weights: model.W.map(String),
            intercept: (model.W0 << BigInt(cb)).toString(),
            cohort: cohortMask.get(block)!.slice(),
            withD,
            products,
            maskKeys: maskKeys.map((k) => k.slice()),
          });
          const sums = await Promise.all(
            cts.map(async (ct, k) => {
              const request: DecryptRequest = {
                ...keyHolderRequest(engine, plan, labels[k]!, 'sum', ct),
                groupSize: g,
                bound: bound.toString(),
              };
              const response = await askCustodian<DecryptRequest, Signed<DecryptResponse>>(engine, {
                provider: plan.provider,
                body: request,
                send: (c, signed) => c.decrypt(signed as Signed<DecryptRequest>, ct),
                response: (r) => r,
                complete: (r) => !!r.body.sums,
                requestEvent: { mode: 'sum', groupSize: g, bound: request.bound, ciphertext: request.ciphertext },
                // The custodian's signed masked sums are kept (content-addressed by responseHash) for replay.
                responseEvent: (r) => ({ responseHash: engine.store.putBlob(responseBytes(r)) }),
              });
              if (typeof response.body.sigma === 'number') sigmas.add(response.body.sigma);
              // Remove each group's Σ m (masks cover cohort slots only); every group's noisy sum is < t/2 by the bound
              // calculator and the noise margin, so centering is exact.
              const m = cohortMaskVector(maskKeys[k]!, t, cohortMask.get(block)!);
              let total = 0n;
              response.body.sums!.forEach((sv, j) => {
                let ms = 0n;
                for (let i = j * g; i < (j + 1) * g; i++) ms += m[i]!;
                total += centered(BigInt(sv) - ms, t);
              });
              return total;
            }),
          );
          outputs.forEach((b, k) => {
            if (b < 0) G0acc.v += sums[k]!;
            else Gacc[b]! += sums[k]!;
          });
        }),
      );
      const sumsIt = { G0: G0acc.v, G: Gacc };
      observe?.(it, model, sumsIt);
      const upd = updateModel(model, sumsIt, plan.cohort.length, it, o, cb);
      model = upd.model;
      iterations = it + 1;
      engine.ledger.append('train.iteration', {
        jobId: plan.jobId,
        iteration: it,
        groupSize: g,
        bound: bound.toString(),
        // The custodian's noise on every sum of the iteration (its signed answers say so; replay checks it).
        sigma: [...sigmas],
        maxGrad: upd.maxGrad,
        gradientsHash: sha256Hex(canonicalize({ G0: sumsIt.G0.toString(), G: sumsIt.G.map(String) })),
      });
      onProgress?.({ iteration: it + 1, iterations: o.iterations, maxGrad: upd.maxGrad });
      if (upd.maxGrad < o.tolerance) break;
    }
  });
  // What the bank receives: the final model (and the bins it is expressed in), never an intermediate.
  const outcome: TrainOutcome = {
    jobId: plan.jobId,
    bins: [...bins],
    model,
    iterations,
    cohort: plan.cohort.length,
    excluded: plan.excluded,
    privacy: plan.privacy,
  };
  const modelJson = { W0: model.W0.toString(), W: model.W.map(String), scaleBits: o.scaleBits, bins };
  const modelHash = sha256Hex(canonicalize(modelJson));
  // The outcome as the bank receives it, kept so a server that crashed before delivering it can still deliver it.
  const outcomeBlob = engine.store.putBlob(
    new TextEncoder().encode(canonicalize({ ...outcome, model: { W0: modelJson.W0, W: modelJson.W } })),
  );
  engine.jobs.complete(
    plan.jobId,
    { iterations, cohort: plan.cohort.length, excluded: Object.keys(plan.excluded).length, modelHash, outcomeBlob },
    { job: 'train', bank, iterations, cohort: plan.cohort.length, modelHash, privacy: plan.privacy },
  );
  return outcome;
}

/** A decryption request to the key holder's custodian for this job (label check or iteration sum). */
function keyHolderRequest(
  engine: Engine,
  plan: TrainPlan,
  label: string,
  mode: 'zero' | 'sum',
  ct: Uint8Array,
): DecryptRequest {
  return {
    type: 'safehouse.custodian.decrypt.v1',
    paramsId: engine.params.id,
    provider: plan.provider,
    jobId: plan.jobId,
    jobHash: plan.jobHash,
    label,
    mode,
    ciphertext: sha256Hex(ct),
  };
}
