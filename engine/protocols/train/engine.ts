/**
 * Joint training, the engine's steps (docs/protocols.md "Joint training"): plan the job from the bank-signed request
 * (consent op `train` per subject, data presence, the cohort minimum), store every provider's signed columns and the
 * bank's signed labels, and iterate — per iteration the bound calculator picks a group size g with g·max|D| ≤ (t−1)/2,
 * a worker computes Enc(D) and every Enc(X_b)·Enc(D), masked, re-randomized and switched down, the key holder's
 * custodian answers group sums of v + m, and the engine removes Σ m to get the exact gradient sums G_0 = Σ D_i and
 * G_b = Σ X_ib·D_i — the integers `taylorGradientSums` computes on plaintext — then updates the model (L2,
 * learning-rate decay, early stop). The engine sees gradients over ≥ minTrainingCohort subjects and the model.
 */
import { fail } from '../../../core/errors.ts';
import { canonicalize } from '../../../core/jcs.ts';
import { sha256Hex } from '../../../core/hash.ts';
import { centered } from '../../../core/fixed.ts';
import { requireSignature, type Signed } from '../../../core/sign.ts';
import { parseSubjectList } from '../../../sandbox/uscc.ts';
import { classAllows } from '../../../sandbox/catalog.ts';
import { maxAbsD, sumGroupSize, trainOptions, updateModel, type FixedModel } from '../../../models/train.ts';
import { STD_CLIP, type BinSpec } from '../../../models/features.ts';
import { deriveMaskKey, maskVector } from '../../he/mask.ts';
import { kernelRef } from '../../pool/kernel.ts';
import type { Engine } from '../../engine.ts';
import type { DatasetRecord } from '../../datasets.ts';
import type { DecryptRequest, DecryptResponse } from '../../custodian/messages.ts';
import { askCustodian, responseBytes } from '../ask.ts';
import { admitBankRequest, escrowHashes, escrowToAuditors, failOnError } from '../job.ts';
import type * as Kernels from './kernels.ts';
import {
  TRAIN_REQUEST_TYPE,
  columnBitsOf,
  iterationLabel,
  planParts,
  type TrainColumns,
  type TrainLabels,
  type TrainOutcome,
  type TrainPlan,
  type TrainProgress,
  type TrainRequest,
} from './messages.ts';

const gradBlock = kernelRef<typeof Kernels.gradBlock>(new URL('./kernels.ts', import.meta.url), 'gradBlock');

/** Where a job's inputs are stored: the key holder's columns (its own and transferred ones), others' raw columns, the labels. */
export const heldColumn = (jobId: string, index: number): string => `train/${jobId}/${index}`;
export const rawColumn = (jobId: string, index: number): string => `train/${jobId}/raw/${index}`;
export const labelsDataset = (jobId: string): string => `${jobId}:labels`;

/**
 * Step 1: check the request, consents (op `train`) and presence; record the job.
 * @throws SH_ERR_BAD_SIGNATURE, SH_ERR_UNKNOWN_FIELD, SH_ERR_MODEL_FIELD_CLASS, SH_ERR_JOB_TOO_LARGE (cohort below the
 *   minimum, reported as a limit), SH_ERR_USCC_*, SH_ERR_INVALID_ARGUMENT, SH_ERR_REQUEST_STALE
 */
export function planTraining(engine: Engine, signed: Signed<TrainRequest>): TrainPlan {
  const { bank, req, jobHash, at } = admitBankRequest(engine, signed, TRAIN_REQUEST_TYPE, 'train', {
    sealedResults: false,
  });
  if (!Array.isArray(req.subjects)) fail('SH_ERR_INVALID_ARGUMENT', '"subjects" expected an array');
  if (req.others !== undefined && !Array.isArray(req.others))
    fail('SH_ERR_INVALID_ARGUMENT', '"others" expected a list of { provider, fields }');
  const options = trainOptions(req.options);
  if (!Number.isInteger(req.bins) || req.bins < 2 || req.bins > 20)
    fail('SH_ERR_INVALID_ARGUMENT', `"bins" expected an integer in [2, 20], got ${req.bins}`);
  const parts = [{ provider: req.provider, fields: req.fields }, ...(req.others ?? [])];
  if (new Set(parts.map((p) => p.provider)).size !== parts.length)
    fail('SH_ERR_INVALID_ARGUMENT', '"others" repeats a provider');
  const datasets = parts.map(({ provider, fields }) => {
    engine.registry.requireParty(provider, 'provider');
    if (!Array.isArray(fields) || fields.length === 0)
      fail('SH_ERR_INVALID_ARGUMENT', `"fields" of ${provider} expected a non-empty list`);
    let dataset: DatasetRecord | undefined;
    for (const f of fields) {
      const ds = engine.datasets.withField(provider, f);
      const spec = ds?.schema.fields.find((x) => x.name === f);
      if (!ds || !spec) fail('SH_ERR_UNKNOWN_FIELD', `provider ${provider} has no field ${f}`, { field: f });
      if (spec.type === 'id' || !classAllows(spec.class, 'train'))
        fail('SH_ERR_MODEL_FIELD_CLASS', `field ${provider}/${f} is ${spec.class} and may not be used for training`, {
          field: f,
        });
      if (dataset && dataset.id !== ds.id)
        fail('SH_ERR_INVALID_ARGUMENT', `training fields of ${provider} must come from one of its datasets`);
      dataset = ds;
    }
    return dataset!;
  });
  const subjects = parseSubjectList(req.subjects);
  if (subjects.length > engine.policy.maxSubjectsPerJob)
    fail(
      'SH_ERR_JOB_TOO_LARGE',
      `job names ${subjects.length} subjects; the limit is ${engine.policy.maxSubjectsPerJob}`,
    );
  const categories = [...new Set(datasets.map((d) => d.category))].sort();
  const consent = engine.consents.statuses(
    { bank: bank.id, purpose: req.purpose, operation: 'train', categories, at },
    subjects,
  );
  const excluded: TrainPlan['excluded'] = {};
  const ok = subjects.filter((s) => {
    const st = consent.get(s)!.status;
    if (st !== 'OK') excluded[s] = st;
    return st === 'OK';
  });
  const slotMaps = datasets.map((d) => engine.datasets.subjectSlots(d.id, ok));
  const members = ok.filter((s) => {
    if (slotMaps.every((m) => m.has(s))) return true;
    excluded[s] = 'NO_DATA';
    return false;
  });
  const cohort = members.map((s) => ({ uscc: s, block: slotMaps[0]!.get(s)!.block, slot: slotMaps[0]!.get(s)!.slot }));
  const others = parts.slice(1).map((p, k) => ({
    provider: p.provider,
    datasetId: datasets[k + 1]!.id,
    fields: p.fields,
    slots: members.map((s) => ({
      uscc: s,
      block: slotMaps[k + 1]!.get(s)!.block,
      slot: slotMaps[k + 1]!.get(s)!.slot,
    })),
  }));
  const dataset = datasets[0];
  if (cohort.length < engine.policy.minTrainingCohort) {
    fail(
      'SH_ERR_JOB_TOO_LARGE',
      `training cohort of ${cohort.length} subjects is below the minimum of ${engine.policy.minTrainingCohort} (excluded: ${Object.keys(excluded).length})`,
      { cohort: cohort.length, minimum: engine.policy.minTrainingCohort },
    );
  }
  if (req.features !== undefined && req.features !== 'binned' && req.features !== 'standardized')
    fail('SH_ERR_INVALID_ARGUMENT', `"features" expected binned or standardized, got ${JSON.stringify(req.features)}`);
  const plan: TrainPlan = {
    jobId: req.jobId,
    jobHash,
    provider: req.provider,
    datasetId: dataset!.id,
    fields: req.fields,
    bins: req.bins,
    features: req.features ?? 'binned',
    options,
    cohort,
    excluded,
    others,
    request: signed,
  };
  engine.jobs.record(
    { id: req.jobId, kind: 'train', bank: bank.id, request: { signed }, status: 'planned' },
    {
      event: {
        jobId: req.jobId,
        job: 'train',
        bank: bank.id,
        provider: req.provider,
        others: others.map((o) => o.provider),
        purpose: req.purpose,
        fields: req.fields,
        jobHash,
        subjects: subjects.length,
        cohort: cohort.length,
        excluded: Object.keys(excluded).length,
        signature: signed.signature,
      },
      subjects,
    },
  );
  return plan;
}

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
  engine.jobs.setRequest(plan.jobId, { signed: plan.request, escrow, bins, cohort: plan.cohort.length });
  let model: FixedModel = { W0: 0n, W: new Array<bigint>(nCols).fill(0n) };
  const history: TrainOutcome['history'] = [];
  await engine.registry.custodian(plan.provider).openJob(plan.request);
  engine.jobs.setStatus(plan.jobId, 'running');
  await failOnError(engine, plan.jobId, async () => {
    for (let it = 0; it < o.iterations; it++) {
      // Products X_b·D are bounded by max|X|·max|D| (max|X| = 1 one-hot, STD_CLIP standardized); sums of D by max|D|.
      const cb = columnBitsOf(plan);
      const colMax = cb ? BigInt(STD_CLIP) : 1n;
      const g = sumGroupSize(maxAbsD(model, groups, o.scaleBits, cb, colMax) * colMax, t, engine.params.slots);
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
                type: 'safehouse.custodian.decrypt.v1',
                paramsId: engine.params.id,
                provider: plan.provider,
                jobId: plan.jobId,
                jobHash: plan.jobHash,
                label: labels[k]!,
                mode: 'sum',
                ciphertext: sha256Hex(ct),
                groupSize: g,
              };
              const response = await askCustodian<DecryptRequest, Signed<DecryptResponse>>(engine, {
                provider: plan.provider,
                body: request,
                send: (c, signed) => c.decrypt(signed as Signed<DecryptRequest>, ct),
                response: (r) => r,
                complete: (r) => !!r.body.sums,
                requestEvent: { mode: 'sum', groupSize: g, ciphertext: request.ciphertext },
                // The custodian's signed masked sums are kept (content-addressed by responseHash) for replay.
                responseEvent: (r) => ({ responseHash: engine.store.putBlob(responseBytes(r)) }),
              });
              // Remove each group's Σ m; every group's true sum is < t/2 by the bound calculator, so centering is exact.
              const m = maskVector(maskKeys[k]!, t, engine.params.slots);
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
      const upd = updateModel(model, sumsIt, plan.cohort.length, it, o, cb);
      history.push({ ...sumsIt, maxGrad: upd.maxGrad });
      model = upd.model;
      engine.ledger.append('train.iteration', {
        jobId: plan.jobId,
        iteration: it,
        groupSize: g,
        maxGrad: upd.maxGrad,
        gradientsHash: sha256Hex(canonicalize({ G0: sumsIt.G0.toString(), G: sumsIt.G.map(String) })),
      });
      onProgress?.({ iteration: it + 1, iterations: o.iterations, maxGrad: upd.maxGrad });
      if (upd.maxGrad < o.tolerance) break;
    }
  });
  const outcome: TrainOutcome = {
    jobId: plan.jobId,
    bins: [...bins],
    model,
    iterations: history.length,
    history,
    cohort: plan.cohort.length,
    excluded: plan.excluded,
  };
  const modelJson = { W0: model.W0.toString(), W: model.W.map(String), scaleBits: o.scaleBits, bins };
  const modelHash = sha256Hex(canonicalize(modelJson));
  engine.jobs.complete(
    plan.jobId,
    { iterations: history.length, cohort: plan.cohort.length, excluded: Object.keys(plan.excluded).length, modelHash },
    { job: 'train', bank, iterations: history.length, cohort: plan.cohort.length, modelHash },
  );
  return outcome;
}
