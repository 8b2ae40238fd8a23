/**
 * Joint modeling (联合建模, DESIGN §5): vertical logistic regression with the FATE-style Taylor sigmoid, all sides in
 * one file (STYLE §2), except the provider's feature derivation (custodian/provider.ts `prepareTraining`).
 *
 * 1. Bank → engine: a signed `safehouse.train.request.v1` naming the provider, its fields, the training subjects, the
 *    number of bins and the training options. The engine checks consent (op `train`, the dataset's category) per
 *    subject and data presence, excludes the rest (and says so), and refuses cohorts below the policy minimum.
 * 2. Provider: bins each field from its own cohort records (quantiles; enums one bin per value), derives one-hot 0/1
 *    columns for the cohort only (zeros elsewhere), encrypts them under its own key and signs the bin edges (aggregates).
 * 3. Bank: encrypts L = s·(2 − 4y) (s = 2^scaleBits) for its cohort under the provider's public key at the slots the
 *    engine names, and signs the upload. The engine never sees a label; the custodian only ever sees masked sums.
 * 4. Engine, per iteration: the bound calculator proves g·max|D| ≤ (t−1)/2 for the group size g; a worker computes
 *    Enc(D) = Σ W_b·Enc(X_b) + Enc(L) + W0·T and Enc(X_b)·Enc(D) for every column (one ciphertext multiply each, no
 *    relinearization), masks each with a fresh HKDF mask, re-randomizes and switches down; the custodian answers in
 *    `sum` mode (group sums of v + m); the engine removes Σ m per group and gets the exact integers
 *    G_0 = Σ D_i and G_b = Σ X_ib·D_i — the same integers `taylorGradientSums` computes on plaintext — then updates the
 *    model (models/train.ts `updateModel`: L2, learning-rate decay, early stop).
 * 5. Engine → bank: the model (bins + fixed-point weights), converted to a scorecard by the bank.
 *
 * Views: custodian — uniform (v + m) group sums; engine — gradients over ≥ minTrainingCohort subjects and the model;
 * bank — the model and its own hold-out metrics (scored through the normal scoring protocol); provider — the cohort
 * membership (as in any vertical-FL sample alignment) and nothing of the labels.
 */
import { randomBytes } from 'node:crypto';
import { fail, isCoded } from '../../core/errors.ts';
import { canonicalize } from '../../core/jcs.ts';
import { sha256Hex } from '../../core/hash.ts';
import { deriveMaskKey, maskVector } from '../he/mask.ts';
import { centered, toSlot } from '../../core/fixed.ts';
import { heContext, type ParamSet } from '../he/params.ts';
import { BlockOps } from '../he/block.ts';
import { requireSignature, signJson, verifyJson, type Signed } from '../../core/sign.ts';
import { sealTo } from '../../core/sealbox.ts';
import type { DecryptRequest, TransferRequest } from '../custodian/custodian.ts';
import type { Engine } from '../engine.ts';
import type { DatasetRecord } from '../datasets.ts';
import { parseSubjectList } from '../../sandbox/uscc.ts';
import { classAllows } from '../../sandbox/catalog.ts';
import type { ConsentStatus } from '../../sandbox/consent.ts';
import { MAX_REQUEST_SKEW_MS } from './score.ts';
import { maxAbsD, sumGroupSize, trainOptions, updateModel, STD_BITS, STD_CLIP, type BinSpec, type FixedModel, type TrainOptions } from '../../models/train.ts';

export interface TrainRequest {
  type: 'safehouse.train.request.v1';
  jobId: string;
  bank: string;
  purpose: string;
  /** The key holder: its key and subject layout carry the training; its features stay in place. */
  provider: string;
  fields: string[];
  /** Further providers: their features are moved under the key holder's key by domain transfer (DESIGN §4.3). */
  others?: Array<{ provider: string; fields: string[] }>;
  subjects: string[];
  bins: number;
  /** `binned` (default): provider-binned one-hot columns → scorecard. `standardized`: (x − mean)/std from the
   * provider's published statistics → linear model on raw values. */
  features?: 'binned' | 'standardized';
  options: Partial<TrainOptions>;
  requestedAt: string;
}

/** What the engine tells the provider and the bank after checking the request. */
export interface TrainPlan {
  jobId: string;
  jobHash: string;
  provider: string;
  datasetId: string;
  fields: string[];
  bins: number;
  features: 'binned' | 'standardized';
  options: TrainOptions;
  /** Cohort subjects with their slots in the provider's layout. */
  cohort: Array<{ uscc: string; block: number; slot: number }>;
  /** Subjects left out, and why. */
  excluded: Record<string, ConsentStatus | 'NO_DATA'>;
  /** Further providers, with their slots for the cohort (same order as `cohort`). */
  others: Array<{ provider: string; datasetId: string; fields: string[]; slots: Array<{ uscc: string; block: number; slot: number }> }>;
  /** The bank-signed request, shown to each custodian before it is asked for anything (`Custodian.openJob`). */
  request: Signed<TrainRequest>;
}

/** Provider → engine: bins and the one-hot cohort columns (column i = bin i in field order). */
export interface TrainColumns {
  type: 'safehouse.train.columns.v1';
  jobId: string;
  provider: string;
  datasetId: string;
  bins: BinSpec[];
  columns: Array<{ index: number; block: number; blob: string }>;
}

/** Bank → engine: its encrypted labels L = s·(2 − 4y) per block. */
export interface TrainLabels {
  type: 'safehouse.train.labels.v1';
  jobId: string;
  bank: string;
  scaleBits: number;
  blocks: Array<{ block: number; blob: string }>;
}

export interface TrainProgress { iteration: number; iterations: number; maxGrad: number }

export interface TrainOutcome {
  jobId: string;
  bins: BinSpec[];
  model: FixedModel;
  iterations: number;
  history: Array<{ G0: bigint; G: bigint[]; maxGrad: number }>;
  cohort: number;
  excluded: Record<string, ConsentStatus | 'NO_DATA'>;
}

/** Column scale bits: 0 for one-hot, STD_BITS for standardized features (D then carries c = 2^STD_BITS). */
export function columnBitsOf(plan: { features: 'binned' | 'standardized' }): number {
  return plan.features === 'standardized' ? STD_BITS : 0;
}

/** Bank side: a signed training request. */
export function buildTrainRequest(r: Omit<TrainRequest, 'type' | 'requestedAt'> & { requestedAt?: string }, bankSecretKey: Uint8Array): Signed<TrainRequest> {
  return signJson({ type: 'safehouse.train.request.v1', ...r, requestedAt: r.requestedAt ?? new Date().toISOString() }, r.bank, bankSecretKey);
}

/**
 * Engine side, step 1: check the request, consents (op `train`) and presence; record the job.
 * @throws SH_ERR_BAD_SIGNATURE, SH_ERR_UNKNOWN_FIELD, SH_ERR_MODEL_FIELD_CLASS, SH_ERR_JOB_TOO_LARGE (cohort below the
 *   minimum, reported as a limit), SH_ERR_USCC_*, SH_ERR_INVALID_ARGUMENT
 */
export function planTraining(engine: Engine, signed: Signed<TrainRequest>): TrainPlan {
  const bank = engine.registry.requireParty(signed.signer, 'bank');
  requireSignature(signed, bank.ed25519, 'safehouse.train.request.v1', `train request by ${signed.signer}`);
  const req = signed.body;
  if (req.bank !== bank.id) fail('SH_ERR_BAD_SIGNATURE', `request names bank ${req.bank} but is signed by ${bank.id}`);
  const at = new Date(req.requestedAt);
  if (!Number.isFinite(at.getTime()) || Math.abs(at.getTime() - engine.now().getTime()) > MAX_REQUEST_SKEW_MS) {
    fail('SH_ERR_INVALID_ARGUMENT', `"requestedAt" expected within ${MAX_REQUEST_SKEW_MS / 60_000} minutes of the engine's clock`);
  }
  engine.jobs.requireNew(req.jobId);
  if (!Array.isArray(req.subjects)) fail('SH_ERR_INVALID_ARGUMENT', '"subjects" expected an array');
  if (req.others !== undefined && !Array.isArray(req.others)) fail('SH_ERR_INVALID_ARGUMENT', '"others" expected a list of { provider, fields }');
  const options = trainOptions(req.options);
  if (!Number.isInteger(req.bins) || req.bins < 2 || req.bins > 20) fail('SH_ERR_INVALID_ARGUMENT', `"bins" expected an integer in [2, 20], got ${req.bins}`);
  const parts = [{ provider: req.provider, fields: req.fields }, ...(req.others ?? [])];
  if (new Set(parts.map((p) => p.provider)).size !== parts.length) fail('SH_ERR_INVALID_ARGUMENT', '"others" repeats a provider');
  const datasets = parts.map(({ provider, fields }) => {
    engine.registry.requireParty(provider, 'provider');
    if (!Array.isArray(fields) || fields.length === 0) fail('SH_ERR_INVALID_ARGUMENT', `"fields" of ${provider} expected a non-empty list`);
    let dataset: DatasetRecord | undefined;
    for (const f of fields) {
      const ds = engine.datasets.withField(provider, f);
      const spec = ds?.schema.fields.find((x) => x.name === f);
      if (!ds || !spec) fail('SH_ERR_UNKNOWN_FIELD', `provider ${provider} has no field ${f}`, { field: f });
      if (spec.type === 'id' || !classAllows(spec.class, 'train')) fail('SH_ERR_MODEL_FIELD_CLASS', `field ${provider}/${f} is ${spec.class} and may not be used for training`, { field: f });
      if (dataset && dataset.id !== ds.id) fail('SH_ERR_INVALID_ARGUMENT', `training fields of ${provider} must come from one of its datasets`);
      dataset = ds;
    }
    return dataset!;
  });
  const subjects = parseSubjectList(req.subjects);
  if (subjects.length > engine.policy.maxSubjectsPerJob) fail('SH_ERR_JOB_TOO_LARGE', `job names ${subjects.length} subjects; the limit is ${engine.policy.maxSubjectsPerJob}`);
  const categories = [...new Set(datasets.map((d) => d.category))].sort();
  const consent = engine.consents.statuses({ bank: bank.id, purpose: req.purpose, operation: 'train', categories, at }, subjects);
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
  const others = parts.slice(1).map((p, k) => ({ provider: p.provider, datasetId: datasets[k + 1]!.id, fields: p.fields, slots: members.map((s) => ({ uscc: s, block: slotMaps[k + 1]!.get(s)!.block, slot: slotMaps[k + 1]!.get(s)!.slot })) }));
  const dataset = datasets[0];
  if (cohort.length < engine.policy.minTrainingCohort) {
    fail('SH_ERR_JOB_TOO_LARGE', `training cohort of ${cohort.length} subjects is below the minimum of ${engine.policy.minTrainingCohort} (excluded: ${Object.keys(excluded).length})`, { cohort: cohort.length, minimum: engine.policy.minTrainingCohort });
  }
  const jobHash = sha256Hex(canonicalize(signed));
  if (req.features !== undefined && req.features !== 'binned' && req.features !== 'standardized') fail('SH_ERR_INVALID_ARGUMENT', `"features" expected binned or standardized, got ${JSON.stringify(req.features)}`);
  const plan: TrainPlan = { jobId: req.jobId, jobHash, provider: req.provider, datasetId: dataset!.id, fields: req.fields, bins: req.bins, features: req.features ?? 'binned', options, cohort, excluded, others, request: signed };
  engine.store.transaction(() => {
    engine.store.db.prepare('INSERT INTO jobs (id, kind, bank, request_json, status, created_at) VALUES (?, ?, ?, ?, ?, ?)').run(req.jobId, 'train', bank.id, JSON.stringify({ signed }), 'planned', engine.now().toISOString());
    engine.ledger.append('job.requested', { jobId: req.jobId, job: 'train', bank: bank.id, provider: req.provider, others: others.map((o) => o.provider), purpose: req.purpose, fields: req.fields, jobHash, subjects: subjects.length, cohort: cohort.length, excluded: Object.keys(excluded).length, signature: signed.signature }, subjects);
  });
  return plan;
}

/** Bank side, step 3: encrypt L = s·(2 − 4y) at the cohort's slots under the provider's BFV public key. */
export async function encryptLabels(engine: Engine, plan: TrainPlan, labels: ReadonlyMap<string, 0 | 1>, bank: string, bankSecretKey: Uint8Array): Promise<{ signed: Signed<TrainLabels>; blobs: Map<string, Uint8Array> }> {
  const provider = engine.registry.requireParty(plan.provider, 'provider');
  return encryptLabelsUnder(engine.params, engine.store.getBlob(provider.bfvPublicKeyBlob!), plan, labels, bank, bankSecretKey);
}

/** `encryptLabels` for a bank that is not in the engine's process: the key holder's public key from the registry. */
export async function encryptLabelsUnder(params: ParamSet, holderPublicKey: Uint8Array, plan: Pick<TrainPlan, 'jobId' | 'options' | 'features' | 'cohort'>, labels: ReadonlyMap<string, 0 | 1>, bank: string, bankSecretKey: Uint8Array): Promise<{ signed: Signed<TrainLabels>; blobs: Map<string, Uint8Array> }> {
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
  return { signed: signJson({ type: 'safehouse.train.labels.v1', jobId: plan.jobId, bank, scaleBits: plan.options.scaleBits, blocks }, bank, bankSecretKey), blobs };
}

/**
 * Engine side, steps 2–3 received: store every provider's signed columns (the key holder's first, then `plan.others`
 * in order) and the bank's signed labels, all hash-checked. Returns the bins of all columns, in column order.
 * @throws SH_ERR_BAD_SIGNATURE, SH_ERR_CIPHERTEXT_INVALID, SH_ERR_CIPHERTEXT_SIZE, SH_ERR_INVALID_ARGUMENT
 */
export function acceptTrainingInputs(engine: Engine, plan: TrainPlan, columns: ReadonlyArray<Signed<TrainColumns>>, labels: Signed<TrainLabels>, blobs: ReadonlyMap<string, Uint8Array>): BinSpec[] {
  const parts = [{ provider: plan.provider, datasetId: plan.datasetId, slots: plan.cohort }, ...plan.others];
  if (columns.length !== parts.length) fail('SH_ERR_INVALID_ARGUMENT', `expected training columns from ${parts.length} provider(s), got ${columns.length}`);
  const bank = engine.registry.requireParty(labels.signer, 'bank');
  requireSignature(labels, bank.ed25519, 'safehouse.train.labels.v1', `labels from ${labels.signer}`);
  if (labels.body.jobId !== plan.jobId || labels.body.scaleBits !== plan.options.scaleBits) fail('SH_ERR_PARAMS_MISMATCH', 'labels are for another job or scale');
  const holderBlocks = [...new Set(plan.cohort.map((c) => c.block))].sort((a, b) => a - b);
  if (labels.body.blocks.map((b) => b.block).join() !== holderBlocks.join()) fail('SH_ERR_INVALID_ARGUMENT', `labels expected for blocks ${holderBlocks.join(',')}`);
  const check = (hash: string, what: string) => {
    const b = blobs.get(hash);
    if (!b) fail('SH_ERR_INVALID_ARGUMENT', `${what}: blob ${hash} is not in the upload`);
    if (b.length > engine.params.maxCiphertextBytes) fail('SH_ERR_CIPHERTEXT_SIZE', `${what}: ${b.length} bytes exceeds the cap`);
    if (sha256Hex(b) !== hash) fail('SH_ERR_CIPHERTEXT_INVALID', `${what}: bytes do not hash to ${hash}`);
  };
  parts.forEach((part, k) => {
    const c = columns[k]!;
    const provider = engine.registry.requireParty(part.provider, 'provider');
    requireSignature(c, provider.ed25519, 'safehouse.train.columns.v1', `training columns from ${c.signer}`);
    if (c.body.jobId !== plan.jobId || c.body.provider !== part.provider || c.body.datasetId !== part.datasetId) fail('SH_ERR_PARAMS_MISMATCH', 'training columns are for another job, provider or dataset');
    const nCols = c.body.bins.reduce((a, b) => a + b.bins.length, 0);
    const blocks = [...new Set(part.slots.map((x) => x.block))].sort((a, b) => a - b);
    const want = new Set(blocks.flatMap((b) => Array.from({ length: nCols }, (_, i) => `${i}#${b}`)));
    for (const col of c.body.columns) if (!want.delete(`${col.index}#${col.block}`)) fail('SH_ERR_INVALID_ARGUMENT', `unexpected training column ${col.index} block ${col.block} from ${part.provider}`);
    if (want.size) fail('SH_ERR_INVALID_ARGUMENT', `training columns missing from ${part.provider}: ${[...want].slice(0, 3).join(', ')}`);
    for (const col of c.body.columns) check(col.blob, `training column ${col.index} of ${part.provider}`);
  });
  for (const b of labels.body.blocks) check(b.blob, `labels block ${b.block}`);
  engine.store.transaction(() => {
    const ins = engine.store.db.prepare('INSERT INTO columns (dataset_id, column_name, block, blob) VALUES (?, ?, ?, ?)');
    parts.forEach((part, k) => {
      for (const col of columns[k]!.body.columns) {
        engine.store.putBlob(blobs.get(col.blob)!);
        ins.run(part.datasetId, k === 0 ? `train/${plan.jobId}/${col.index}` : `train/${plan.jobId}/raw/${col.index}`, col.block, col.blob);
      }
    });
    for (const b of labels.body.blocks) { engine.store.putBlob(blobs.get(b.blob)!); ins.run(`${plan.jobId}:labels`, 'labels', b.block, b.blob); }
    engine.store.db.prepare("UPDATE jobs SET status = 'ready', summary_json = ? WHERE id = ?").run(JSON.stringify({ bins: columns.flatMap((c) => c.body.bins) }), plan.jobId);
    engine.ledger.append('train.inputs', { jobId: plan.jobId, providers: parts.map((p) => p.provider), columns: columns.map((c) => c.body.columns.length), columnsSignatures: columns.map((c) => c.signature), labelBlocks: labels.body.blocks.length, labelsSignature: labels.signature });
  });
  return columns.flatMap((c) => c.body.bins);
}

/**
 * Engine side: move every other provider's columns under the key holder's key and into its subject layout
 * (domain transfer with relayout, DESIGN §4.3). Per (column, source block, target block): mask under the source key,
 * the source custodian decrypts v + m, moves the cohort's slots and encrypts under the key holder's public key, and
 * the engine subtracts the moved mask. The source custodian sees only uniform values; no one sees a feature.
 */
export async function transferTrainingColumns(engine: Engine, plan: TrainPlan, columns: ReadonlyArray<Signed<TrainColumns>>): Promise<void> {
  const t = engine.params.t;
  const holder = engine.registry.requireParty(plan.provider, 'provider');
  const holderPk = engine.store.getBlob(holder.bfvPublicKeyBlob!);
  let offset = columns[0]!.body.bins.reduce((a, b) => a + b.bins.length, 0);
  const seed = new Uint8Array(randomBytes(32));
  for (const part of plan.others) await engine.registry.custodian(part.provider).openJob(plan.request as never);
  for (const [k, part] of plan.others.entries()) {
    const src = engine.registry.requireParty(part.provider, 'provider');
    const nCols = columns[k + 1]!.body.bins.reduce((a, b) => a + b.bins.length, 0);
    const targetBlocks = [...new Set(plan.cohort.map((c) => c.block))].sort((a, b) => a - b);
    const jobs: Array<Promise<void>> = [];
    for (let i = 0; i < nCols; i++) {
      for (const tb of targetBlocks) {
        jobs.push((async () => {
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
            const blob = engine.datasets.columnBlob(part.datasetId, `train/${plan.jobId}/raw/${i}`, sb);
            if (!blob) fail('SH_ERR_BLOB_MISSING', `training column ${i} block ${sb} of ${part.provider} missing`);
            const label = `train/${plan.jobId}/transfer/${part.provider}/${i}/from/${sb}/to/${tb}`;
            const maskKey = deriveMaskKey(seed, label);
            const ct = await engine.pool.run<Uint8Array>({ op: 'maskForTransfer', paramsId: engine.params.id, publicKey: { path: engine.store.blobPath(src.bfvPublicKeyBlob!), hash: src.bfvPublicKeyBlob! }, column: { path: engine.store.blobPath(blob), hash: blob }, maskKey: maskKey.slice() });
            const request: TransferRequest = { type: 'safehouse.custodian.transfer.v1', paramsId: engine.params.id, provider: part.provider, jobId: plan.jobId, jobHash: plan.jobHash, label, ciphertext: sha256Hex(ct), target: { provider: plan.provider, bfvPublicKey: holder.bfvPublicKeyBlob! }, moves };
            const signedReq = signJson(request, 'engine', engine.keys.ed25519.secretKey);
            const { response, ciphertext } = await engine.registry.custodian(part.provider).transfer(signedReq, ct, holderPk);
            if (!verifyJson(response, src.ed25519) || response.body.requestHash !== sha256Hex(canonicalize(signedReq)) || response.body.ciphertext !== sha256Hex(ciphertext)) {
              fail('SH_ERR_BAD_SIGNATURE', `custodian ${part.provider} answered ${label} with an unsigned or mismatched response`);
            }
            engine.ledger.appendMany([
              { kind: 'custodian.request', event: { jobId: plan.jobId, provider: part.provider, label, mode: 'transfer', target: plan.provider, requestHash: response.body.requestHash, ciphertext: request.ciphertext } },
              { kind: 'custodian.response', event: { jobId: plan.jobId, provider: part.provider, label, responseHash: sha256Hex(canonicalize(response)), ciphertext: response.body.ciphertext } },
            ]);
            const m = maskVector(maskKey, t, engine.params.slots);
            for (const [from, to] of moves) moved[to] = m[from]!;
            parts.push(ciphertext);
          }
          const out = await engine.pool.run<Uint8Array>({ op: 'subtractVector', paramsId: engine.params.id, ciphertexts: parts, values: moved });
          const hash = engine.store.putBlob(out);
          engine.store.db.prepare('INSERT INTO columns (dataset_id, column_name, block, blob) VALUES (?, ?, ?, ?)').run(plan.datasetId, `train/${plan.jobId}/${offset + i}`, tb, hash);
        })());
      }
    }
    await engine.pool.all(jobs);
    offset += nCols;
  }
}

/**
 * Engine side, step 4: the training iterations.
 * @throws SH_ERR_BOUND_OVERFLOW when no group size keeps the sums below t/2; custodian errors.
 */
export async function runTraining(engine: Engine, plan: TrainPlan, bins: readonly BinSpec[], onProgress?: (p: TrainProgress) => void): Promise<TrainOutcome> {
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
  const provider = engine.registry.requireParty(plan.provider, 'provider');
  const bank = engine.store.db.prepare('SELECT bank FROM jobs WHERE id = ?').get(plan.jobId) as { bank: string };
  const seed = new Uint8Array(randomBytes(32));
  const escrow = engine.registry.parties('auditor').filter((a) => a.x25519).map((a) => ({ auditor: a.id, sealed: sealTo(a.x25519!, seed, { type: 'safehouse.escrow.v1', jobId: plan.jobId, jobHash: plan.jobHash }) }));
  engine.ledger.append('job.escrowed', { jobId: plan.jobId, escrow: escrow.map((e) => ({ auditor: e.auditor, hash: sha256Hex(canonicalize(e.sealed)) })) });
  // Replay material (issue 6): the request, the escrow boxes and the bins of the columns, beside the ledger.
  engine.store.db.prepare('UPDATE jobs SET request_json = ? WHERE id = ?').run(JSON.stringify({ signed: plan.request, escrow, bins, cohort: plan.cohort.length }), plan.jobId);
  let model: FixedModel = { W0: 0n, W: new Array<bigint>(nCols).fill(0n) };
  const history: TrainOutcome['history'] = [];
  await engine.registry.custodian(plan.provider).openJob(plan.request as never);
  engine.store.db.prepare("UPDATE jobs SET status = 'running' WHERE id = ?").run(plan.jobId);
  try {
    for (let it = 0; it < o.iterations; it++) {
      // Products X_b·D are bounded by max|X|·max|D| (max|X| = 1 one-hot, STD_CLIP standardized); sums of D by max|D|.
      const cb = columnBitsOf(plan);
      const colMax = cb ? BigInt(STD_CLIP) : 1n;
      const g = sumGroupSize(maxAbsD(model, groups, o.scaleBits, cb, colMax) * colMax, t, engine.params.slots);
      const G0acc = { v: 0n };
      const Gacc = new Array<bigint>(nCols).fill(0n);
      // Each block's products are split across the pool; every task recomputes D (cheap) for its share.
      const share = Math.max(1, engine.pool.size);
      const tasks = blocks.flatMap((block) => Array.from({ length: share }, (_, part) => ({ block, part, products: Array.from({ length: nCols }, (_, b) => b).filter((b) => b % share === part) })))
        .filter((x) => x.products.length > 0 || x.part === 0);
      await engine.pool.all(tasks.map(async ({ block, part, products }) => {
        const labelsBlob = engine.datasets.columnBlob(`${plan.jobId}:labels`, 'labels', block)!;
        const columns = Array.from({ length: nCols }, (_, i) => {
          const blob = engine.datasets.columnBlob(plan.datasetId, `train/${plan.jobId}/${i}`, block);
          if (!blob) fail('SH_ERR_BLOB_MISSING', `training column ${i} block ${block} missing`);
          return { path: engine.store.blobPath(blob), hash: blob };
        });
        const withD = part === 0;
        const outputs = [...(withD ? [-1] : []), ...products];
        const labels = outputs.map((b) => `train/${plan.jobId}/it/${it}/block/${block}/${b < 0 ? 'D' : `X${b}D`}`);
        const maskKeys = labels.map((l) => deriveMaskKey(seed, l));
        const cts = await engine.pool.run<Uint8Array[]>({
          op: 'gradBlock', paramsId: engine.params.id, publicKey: { path: engine.store.blobPath(pkBlob), hash: pkBlob }, columns,
          labels: { path: engine.store.blobPath(labelsBlob), hash: labelsBlob }, weights: model.W.map(String), intercept: (model.W0 << BigInt(cb)).toString(),
          cohort: cohortMask.get(block)!.slice(), withD, products, maskKeys: maskKeys.map((k) => k.slice()),
        });
        const sums = await Promise.all(cts.map(async (ct, k) => {
          const request: DecryptRequest = { type: 'safehouse.custodian.decrypt.v1', paramsId: engine.params.id, provider: plan.provider, jobId: plan.jobId, jobHash: plan.jobHash, label: labels[k]!, mode: 'sum', ciphertext: sha256Hex(ct), groupSize: g };
          const signedReq = signJson(request, 'engine', engine.keys.ed25519.secretKey);
          const response = await engine.registry.custodian(plan.provider).decrypt(signedReq, ct);
          if (!verifyJson(response, provider.ed25519) || response.body.requestHash !== sha256Hex(canonicalize(signedReq)) || !response.body.sums) {
            fail('SH_ERR_BAD_SIGNATURE', `custodian ${plan.provider} answered ${labels[k]} with an unsigned or mismatched response`);
          }
          engine.ledger.appendMany([
            { kind: 'custodian.request', event: { jobId: plan.jobId, provider: plan.provider, label: labels[k], mode: 'sum', groupSize: g, requestHash: response.body.requestHash, ciphertext: request.ciphertext } },
            // The custodian's signed masked sums are kept (content-addressed by responseHash) for replay.
            { kind: 'custodian.response', event: { jobId: plan.jobId, provider: plan.provider, label: labels[k], responseHash: engine.store.putBlob(new TextEncoder().encode(canonicalize(response))) } },
          ]);
          // Remove each group's Σ m; every group's true sum is < t/2 by the bound calculator, so centering is exact.
          const m = maskVector(maskKeys[k]!, t, engine.params.slots);
          let total = 0n;
          response.body.sums.forEach((sv, j) => {
            let ms = 0n;
            for (let i = j * g; i < (j + 1) * g; i++) ms += m[i]!;
            total += centered(BigInt(sv) - ms, t);
          });
          return total;
        }));
        outputs.forEach((b, k) => {
          if (b < 0) G0acc.v += sums[k]!;
          else Gacc[b]! += sums[k]!;
        });
      }));
      const sumsIt = { G0: G0acc.v, G: Gacc };
      const upd = updateModel(model, sumsIt, plan.cohort.length, it, o, cb);
      history.push({ ...sumsIt, maxGrad: upd.maxGrad });
      model = upd.model;
      engine.ledger.append('train.iteration', { jobId: plan.jobId, iteration: it, groupSize: g, maxGrad: upd.maxGrad, gradientsHash: sha256Hex(canonicalize({ G0: sumsIt.G0.toString(), G: sumsIt.G.map(String) })) });
      onProgress?.({ iteration: it + 1, iterations: o.iterations, maxGrad: upd.maxGrad });
      if (upd.maxGrad < o.tolerance) break;
    }
  } catch (err) {
    engine.store.db.prepare("UPDATE jobs SET status = 'failed', finished_at = ? WHERE id = ?").run(engine.now().toISOString(), plan.jobId);
    engine.ledger.append('job.failed', { jobId: plan.jobId, code: isCoded(err) ? err.code : 'SH_ERR_INTERNAL' });
    engine.ledger.checkpoint();
    throw err;
  }
  const outcome: TrainOutcome = { jobId: plan.jobId, bins: [...bins], model, iterations: history.length, history, cohort: plan.cohort.length, excluded: plan.excluded };
  const modelJson = { W0: model.W0.toString(), W: model.W.map(String), scaleBits: o.scaleBits, bins };
  engine.store.transaction(() => {
    engine.store.db.prepare("UPDATE jobs SET status = 'completed', summary_json = ?, finished_at = ? WHERE id = ?").run(JSON.stringify({ iterations: history.length, cohort: plan.cohort.length, excluded: Object.keys(plan.excluded).length, modelHash: sha256Hex(canonicalize(modelJson)) }), engine.now().toISOString(), plan.jobId);
    engine.ledger.append('job.completed', { jobId: plan.jobId, job: 'train', bank: bank.bank, iterations: history.length, cohort: plan.cohort.length, modelHash: sha256Hex(canonicalize(modelJson)) });
  });
  engine.ledger.checkpoint();
  return outcome;
}
