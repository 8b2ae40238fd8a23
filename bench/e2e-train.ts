/**
 * End-to-end joint training (联合建模, docs/design.md §5): `subjects` synthetic enterprises × `fields` numeric fields split over
 * two providers (the key holder A and a second provider B, whose columns reach A's key by domain transfer, §4.3), the
 * bank's labels, `iterations` fixed iterations (tolerance 0: no early stop) of the FATE-style Taylor-LR.
 *
 * Features: `standardized` (train.ts): each field is one encrypted column X' = clip(round((x − mean)/std · 2^5), ±256)
 * from the provider's published statistics, so "20 fields" means 20 encrypted columns (binned features would make it
 * ~5 one-hot columns per field). The data is synthetic and seeded (mulberry32): latent standard normals with a common
 * factor, field values at different means and scales (2 decimals, ~1 % missing), and labels drawn from a logistic
 * model of the latent values, so the AUC is meaningful. B's rows are in a different order than A's, so the transfer
 * really relayouts slots.
 *
 * Timed as engine work (`engineSeconds`): what `Safehouse.train` does, step by step — plan (request signature,
 * consents, cohort), both providers encrypting their standardized cohort columns, the bank encrypting its labels,
 * the engine accepting the inputs, the domain transfer of B's columns, and the iterations. Setup (parties, ingest,
 * consents) is reported in `phases` only.
 *
 * Checks: iteration by iteration, the engine's noisy sums (G0, every G_b) minus the noise the key holder's custodian
 * journaled equal the plaintext fixed-point sums (`taylorGradientSums`) at the engine's model, and the model follows from
 * the noisy sums; the encrypted model's AUC on a plaintext hold-out set (same generator, never ingested) is within 0.02
 * of the same Taylor-LR trained in float64 on plaintext (`trainPlainFloat`). The bench measures cost: its providers
 * allow ε = 10⁶ per job (noise σ ≈ 0.01 of the default's), since the default (ε = 8) noise does not fit below t/2 for
 * standardized columns over 10 iterations (docs/privacy.md "Training") — the work is the same at any ε.
 *
 * Usage: `node bench/e2e-train.ts [subjects] [fields] [iterations] [--pool N]` (default 8192 20 10). Prints the result
 * JSON; `BENCH_E2E_JSON=path` also writes it there.
 * Longer than 400 lines: one end-to-end run: the data generator, each phase of the job and its plaintext references
 * share one fixture and one timing log.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
import { join } from 'node:path';
import { Safehouse } from '../api/embedded.ts';
import { mulberry32 } from '../core/rng.ts';
import { toCsv } from '../core/csv.ts';
import { oneHot } from '../api/train-run.ts';
import { randomUscc } from '../sandbox/uscc.ts';
import { buildTrainRequest, encryptLabels } from '../engine/protocols/train/bank.ts';
import { acceptTrainingInputs, runIterations } from '../engine/protocols/train/engine.ts';
import { planTraining } from '../engine/protocols/train/plan.ts';
import { transferTrainingColumns } from '../engine/protocols/train/transfer.ts';
import { type TrainProgress } from '../engine/protocols/train/messages.ts';
import type { ProviderTable } from '../engine/provider/table.ts';
import {
  taylorGradientSums,
  trainOptions,
  trainPlainFloat,
  updateModel,
  maxAbsD,
  sumGroupSize,
  type FixedModel,
  type GradientSums,
} from '../models/train.ts';
import { standardizedValue, STD_BITS, STD_CLIP, type BinSpec } from '../models/features.ts';
import { auc } from '../models/metrics.ts';
import { benchArgs, type E2eResult } from './report.ts';

const BANK = 'bank_bench_train';
const AUDITOR = 'auditor_bench_train';
const PROVIDER_A = 'bx_provider_a';
const PROVIDER_B = 'bx_provider_b';
const PURPOSE = 'model_training';
const FEATURES = 'standardized' as const;
const sec = (ms: number) => Number((ms / 1000).toFixed(3));

interface SyntheticRow {
  values: Array<string>;
  label: 0 | 1;
}

/** Seeded synthetic population: `fields` decimal values per row (empty = missing) and a logistic label. */
function synthetic(fields: number, seed: number): { next: () => SyntheticRow; coefficients: number[] } {
  const rnd = mulberry32(seed);
  const normal = () => Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd());
  const coefRnd = mulberry32(1234);
  const raw = Array.from({ length: fields }, (_, f) => (f % 4 === 3 ? 0 : coefRnd() * 2 - 1));
  const norm = Math.sqrt(raw.reduce((a, b) => a + b * b, 0)) || 1;
  const beta = raw.map((b) => (1.6 * b) / norm); // the latent logit has a standard deviation of about 1.6
  const mean = Array.from({ length: fields }, (_, f) => [50, 1200, 8, 300, 0.5][f % 5]! * (1 + f / 10));
  const scale = Array.from({ length: fields }, (_, f) => [12, 400, 3, 90, 0.2][f % 5]! * (1 + f / 20));
  return {
    coefficients: beta,
    next: () => {
      const common = normal();
      const z = Array.from({ length: fields }, () => 0.5 * common + Math.sqrt(0.75) * normal());
      const logit = -0.8 + z.reduce((a, zf, f) => a + beta[f]! * zf, 0);
      const label: 0 | 1 = rnd() < 1 / (1 + Math.exp(-logit)) ? 1 : 0;
      const values = z.map((zf, f) => (rnd() < 0.01 ? '' : (mean[f]! + scale[f]! * zf).toFixed(2)));
      return { values, label };
    },
  };
}

const fieldName = (provider: 'a' | 'b', i: number) => `bx_${provider}${String(i + 1).padStart(2, '0')}`;

export async function runTrainE2e(opts: {
  subjects: number;
  fields: number;
  iterations: number;
  poolSize?: number;
  holdout?: number;
  log?: (line: string) => void;
}): Promise<E2eResult> {
  const { subjects: nSubjects, fields: nFields, iterations } = opts;
  if (!Number.isInteger(nSubjects) || nSubjects < 200)
    throw new RangeError(`"subjects" expected an integer ≥ 200 (the policy's minimum cohort), got ${nSubjects}`);
  if (!Number.isInteger(nFields) || nFields < 2)
    throw new RangeError(`"fields" expected an integer ≥ 2 (split over two providers), got ${nFields}`);
  if (!Number.isInteger(iterations) || iterations < 1)
    throw new RangeError(`"iterations" expected a positive integer, got ${iterations}`);
  const nHoldout = opts.holdout ?? Math.max(2048, Math.floor(nSubjects / 2));
  const log = opts.log ?? (() => {});
  const phases: Record<string, number> = {};
  const lap = (name: string, since: number) => {
    phases[name] = sec(performance.now() - since);
  };
  const home = mkdtempSync(join(tmpdir(), 'safehouse-e2e-train-'));
  let sh: Safehouse | undefined;
  try {
    // --- setup: data, parties, ingest, consents (not engine work) ---------------------------------------------------
    let t = performance.now();
    const nA = Math.ceil(nFields / 2);
    const nB = nFields - nA;
    const fieldsA = Array.from({ length: nA }, (_, i) => fieldName('a', i));
    const fieldsB = Array.from({ length: nB }, (_, i) => fieldName('b', i));
    const gen = synthetic(nFields, 20261124);
    const uRnd = mulberry32(777);
    const seen = new Set<string>();
    const subjects: string[] = [];
    while (subjects.length < nSubjects) {
      const u = randomUscc(uRnd);
      if (!seen.has(u)) {
        seen.add(u);
        subjects.push(u);
      }
    }
    const rows = subjects.map(() => gen.next());
    const holdout = Array.from({ length: nHoldout }, () => gen.next());
    const labels = new Map(subjects.map((u, i) => [u, rows[i]!.label]));
    const fieldSpec = (name: string) => ({
      name,
      type: 'decimal',
      decimals: 2,
      min: '-100000',
      max: '100000',
      class: 'MODEL_ONLY',
    });
    const schemaA = { category: 'tax', fields: fieldsA.map(fieldSpec) };
    const schemaB = { category: 'utilities', fields: fieldsB.map(fieldSpec) };
    const csvA = toCsv(
      ['uscc', ...fieldsA],
      subjects.map((u, i) => [u, ...rows[i]!.values.slice(0, nA)]),
    );
    // Provider B lists the same enterprises in its own order: the transfer must move every slot.
    const order = subjects.map((_, i) => i);
    const pRnd = mulberry32(4242);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(pRnd() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    const csvB = toCsv(
      ['uscc', ...fieldsB],
      order.map((i) => [subjects[i]!, ...rows[i]!.values.slice(nA)]),
    );
    lap('setup.generate', t);

    t = performance.now();
    sh = await Safehouse.open({
      home,
      create: true,
      ...(opts.poolSize ? { poolSize: opts.poolSize } : {}),
      providerPolicy: { trainEpsilon: 1e6, trainSubjectEpsilon: 1e7 },
    });
    await sh.addParty('bank', BANK);
    await sh.addParty('auditor', AUDITOR);
    await sh.addParty('provider', PROVIDER_A);
    await sh.addParty('provider', PROVIDER_B);
    lap('setup.parties', t);

    t = performance.now();
    const ingA = await sh.ingest(PROVIDER_A, schemaA, csvA);
    const ingB = await sh.ingest(PROVIDER_B, schemaB, csvB);
    lap('setup.ingest', t);
    log(
      `ingest: ${PROVIDER_A} ${ingA.subjects} subjects × ${nA} fields in ${ingA.blocks} block(s); ${PROVIDER_B} ${ingB.subjects} × ${nB} in ${ingB.blocks}`,
    );

    t = performance.now();
    for (let i = 0; i < subjects.length; i += 2000) {
      sh.grantConsents(
        subjects.slice(i, i + 2000).map((u) => ({
          subject: u,
          bank: BANK,
          purpose: PURPOSE,
          categories: ['tax', 'utilities'],
          operations: ['train' as const],
          days: 365,
        })),
      );
    }
    lap('setup.consents', t);

    // Checkpoint the setup's ledger entries now, as a running engine would have (see bench/e2e-verify.ts).
    t = performance.now();
    sh.engine.ledger.checkpoint();
    lap('setup.checkpoint', t);

    // Each provider's custodian follows the ledger as it grows (each consent's signature verified once, there).
    t = performance.now();
    await sh.syncCustodians();
    lap('setup.custodians-follow', t);

    t = performance.now();
    await sh.warmUp();
    lap('setup.warmUp', t);

    // --- the timed engine section: Safehouse.train, step by step ------------------------------------------------------
    const agent = (id: string) => sh!.agent(id); // the providers' side, timed separately
    const options = { iterations, tolerance: 0 };
    const iterationTimes: number[] = [];
    const rssBefore = process.resourceUsage().maxRSS / 1024;
    const load0 = loadavg()[0]!;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    t = t0;
    const k = sh.wallet.require(BANK, 'bank');
    const jobId = sh.engine.jobs.newId('train');
    const signed = buildTrainRequest(
      {
        jobId,
        bank: BANK,
        purpose: PURPOSE,
        provider: PROVIDER_A,
        fields: fieldsA,
        others: [{ provider: PROVIDER_B, fields: fieldsB }],
        features: FEATURES,
        subjects,
        bins: 5,
        options,
      },
      k.ed25519.secretKey,
    );
    const plan = await planTraining(sh.engine, signed);
    lap('train.plan', t);

    t = performance.now();
    const parts = [
      { provider: plan.provider, datasetId: plan.datasetId, fields: plan.fields, slots: plan.cohort },
      ...plan.others,
    ];
    const tables = new Map<string, ProviderTable>();
    const prepared = await Promise.all(
      parts.map(async (part) => {
        const table = sh!.providerTable(part.provider, sh!.engine.datasets.get(part.datasetId)!.category);
        tables.set(part.provider, table);
        return agent(part.provider).prepareTraining(
          {
            jobId,
            datasetId: part.datasetId,
            fields: part.fields,
            bins: plan.bins,
            features: plan.features,
            cohort: part.slots,
          },
          table,
        );
      }),
    );
    const columns = prepared.map((c) => c.signed);
    const blobs = new Map<string, Uint8Array>();
    for (const c of prepared) for (const [h, b] of c.blobs) blobs.set(h, b);
    lap('train.providersEncryptColumns', t);

    t = performance.now();
    const lab = await encryptLabels(
      sh.engine.params,
      sh.engine.registry.bfvPublicKey(plan.provider),
      plan,
      labels,
      BANK,
      k.ed25519.secretKey,
    );
    for (const [h, b] of lab.blobs) blobs.set(h, b);
    lap('train.bankEncryptsLabels', t);

    t = performance.now();
    const bins = acceptTrainingInputs(sh.engine, plan, columns, lab.signed, blobs);
    lap('train.acceptInputs', t);

    t = performance.now();
    await transferTrainingColumns(sh.engine, plan, columns);
    lap('train.transfer', t);

    t = performance.now();
    let last = t;
    const observed: Array<{ model: FixedModel; sums: GradientSums }> = [];
    const outcome = await runIterations(
      sh.engine,
      plan,
      bins,
      (p: TrainProgress) => {
        const now = performance.now();
        iterationTimes.push((now - last) / 1000);
        last = now;
        log(
          `iteration ${p.iteration}/${p.iterations}: ${((now - t) / 1000).toFixed(1)} s, max|g| ${p.maxGrad.toExponential(2)}`,
        );
      },
      (_it, model, sums) => observed.push({ model, sums }),
    );
    lap('train.iterations', t);
    const engineSeconds = sec(performance.now() - t0);
    const cpu = process.cpuUsage(cpu0);
    const load1 = loadavg()[0]!;
    phases['train.iterationMean'] = Number(
      (iterationTimes.reduce((a, b) => a + b, 0) / Math.max(1, iterationTimes.length)).toFixed(3),
    );

    // --- plaintext: the same Taylor-LR on the same standardized columns ----------------------------------------------
    t = performance.now();
    const rowOf = new Map([...tables].map(([p, tb]) => [p, new Map(tb.subjects.map((u, i) => [u, i]))]));
    const value = (u: string, f: string, provider: string) => {
      const v = tables.get(provider)!.values[f]![rowOf.get(provider)!.get(u)!];
      return v === null || v === undefined ? null : BigInt(v);
    };
    const cohort = plan.cohort.map((c) => c.uscc);
    const X = oneHot(outcome.bins, cohort, value);
    const y = Uint8Array.from(cohort.map((u) => labels.get(u)!));
    lap('plaintext.columns', t);
    const o = trainOptions(options);
    const cb = STD_BITS;
    t = performance.now();
    const float = trainPlainFloat(X, y, o, cb);
    const plaintextSeconds = Number(((performance.now() - t) / 1000).toFixed(4));
    phases['plaintext.trainFloat'] = plaintextSeconds;
    // --- checks -----------------------------------------------------------------------------------------------------
    // The key holder's own record of the noise it added, per iteration and output.
    const journal = readFileSync(join(sh.wallet.providerDir(PROVIDER_A), 'custodian.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { jobId?: string; label?: string; noise?: string[] });
    const noiseOf = (it: number, out: string) => {
      let n = 0n;
      for (const l of journal) {
        const m = /\/it\/(\d+)\/block\/\d+\/(D|X\d+D)$/.exec(l.label ?? '');
        if (l.jobId === jobId && m && Number(m[1]) === it && m[2] === out && l.noise)
          for (const v of l.noise) n += BigInt(v);
      }
      return n;
    };
    t = performance.now();
    let replayed: FixedModel = { W0: 0n, W: new Array<bigint>(X.length).fill(0n) };
    let sameHistory = observed.length === outcome.iterations;
    observed.forEach(({ model, sums }, it) => {
      const exact = taylorGradientSums(model, X, y, o.scaleBits, cb);
      if (sums.G0 - noiseOf(it, 'D') !== exact.G0) sameHistory = false;
      if (!sums.G.every((g, b) => g - noiseOf(it, `X${b}D`) === exact.G[b])) sameHistory = false;
      replayed = updateModel(model, sums, plan.cohort.length, it, o, cb).model;
    });
    lap('plaintext.trainFixedBigint', t);
    const sameModel =
      outcome.model.W0 === replayed.W0 &&
      outcome.model.W.length === replayed.W.length &&
      outcome.model.W.every((w, i) => w === replayed.W[i]);
    // Hold-out (plaintext only, never ingested), standardized with the providers' published statistics.
    const hX = holdoutColumns(outcome.bins, holdout, fieldsA, fieldsB);
    const hy = Uint8Array.from(holdout.map((r) => r.label));
    const s = 2 ** o.scaleBits;
    const encScores = hy.reduce<number[]>((acc, _, i) => {
      acc.push(
        (Number(outcome.model.W0) + outcome.model.W.reduce((a, w, b) => a + (Number(w) * hX[b]![i]!) / 2 ** cb, 0)) / s,
      );
      return acc;
    }, []);
    const plainScores = hy.reduce<number[]>((acc, _, i) => {
      acc.push(float.w0 + float.w.reduce((a, w, b) => a + (w * hX[b]![i]!) / 2 ** cb, 0));
      return acc;
    }, []);
    const encAuc = auc(encScores, hy);
    const plainAuc = auc(plainScores, hy);
    const trainEncAuc = auc(
      cohort.map(
        (_, i) =>
          Number(outcome.model.W0) + outcome.model.W.reduce((a, w, b) => a + (Number(w) * X[b]![i]!) / 2 ** cb, 0),
      ),
      y,
    );
    // Reference: the generator's true coefficients on the same standardized hold-out columns (columns are in field order).
    const oracleAuc = auc(
      holdout.map((_, i) => hX.reduce((a, col, b) => a + gen.coefficients[b]! * col[i]!, 0)),
      hy,
    );
    const aucOk = Math.abs(encAuc - plainAuc) <= 0.02;
    const ok = sameModel && sameHistory && aucOk && outcome.iterations === iterations;
    const detail = `encrypted model ${sameModel ? '==' : '!='} the update of its noisy sums, gradients ${sameHistory ? '== plaintext + recorded noise' : 'DIFFER from plaintext + recorded noise'} in all ${outcome.iterations} iterations; hold-out AUC (${nHoldout} rows) encrypted ${encAuc.toFixed(4)} vs plaintext float Taylor-LR ${plainAuc.toFixed(4)} (|Δ| ${Math.abs(encAuc - plainAuc).toFixed(4)} ${aucOk ? '≤' : '>'} 0.02)`;

    const shape = trainShape(
      plan,
      observed.map((x) => x.sums),
      nA,
      nB,
      o,
      cb,
      sh.engine.params.t,
      sh.engine.params.slots,
    );
    return {
      name: 'train',
      description: `Vertical Taylor-LR joint training on ${plan.cohort.length} synthetic subjects × ${nFields} standardized fields (${nA} at key holder ${PROVIDER_A}, ${nB} at ${PROVIDER_B} moved by domain transfer), bank-encrypted labels, ${outcome.iterations} fixed iterations with masked sum decryptions, checked bit-for-bit against the plaintext fixed-point trainer and by hold-out AUC against the float Taylor-LR.`,
      size: {
        subjects: nSubjects,
        fields: nFields,
        iterations: outcome.iterations,
        cohort: plan.cohort.length,
        fieldsA: nA,
        fieldsB: nB,
        columns: shape.columns,
        blocks: shape.blocksA,
        blocksB: shape.blocksB,
        transfers: shape.transfers,
        holdout: nHoldout,
      },
      engineSeconds,
      phases,
      ops: shape.ops,
      plaintextSeconds,
      peakRssMiB: Number((process.resourceUsage().maxRSS / 1024).toFixed(1)),
      checks: { ok, detail },
      extra: {
        features: FEATURES,
        engineCpuSeconds: Number(((cpu.user + cpu.system) / 1e6).toFixed(2)),
        engineCpuPerWall: Number(((cpu.user + cpu.system) / 1e6 / engineSeconds).toFixed(2)),
        loadAverage1m: `${load0.toFixed(2)} → ${load1.toFixed(2)}`,
        holdoutAucEncrypted: Number(encAuc.toFixed(4)),
        holdoutAucPlaintextFloat: Number(plainAuc.toFixed(4)),
        holdoutAucTrueCoefficients: Number(oracleAuc.toFixed(4)),
        trainAucEncrypted: Number(trainEncAuc.toFixed(4)),
        sumGroupSizeLastIteration: shape.lastGroupSize,
        custodianDecryptionsPerIteration: shape.decryptionsPerIteration,
        secondsPerIterationMin: Number(Math.min(...iterationTimes).toFixed(3)),
        secondsPerIterationMax: Number(Math.max(...iterationTimes).toFixed(3)),
        firstIterationSeconds: Number((iterationTimes[0] ?? 0).toFixed(3)),
        msPerDecryptionInIterations: Number(
          ((1000 * phases['train.iterations']!) / (shape.decryptionsPerIteration * outcome.iterations)).toFixed(1),
        ),
        dRecomputedPerBlockPerIteration: Math.max(1, sh.engine.pool.size),
        poolSize: sh.engine.pool.size,
        rssBeforeTrainMiB: Number(rssBefore.toFixed(1)),
        plaintextFixedSeconds: phases['plaintext.trainFixedBigint']!,
        engineVsPlaintextFloat: Number((engineSeconds / Math.max(plaintextSeconds, 1e-6)).toFixed(0)),
      },
    };
  } finally {
    await sh?.close();
    rmSync(home, { recursive: true, force: true });
  }
}

/** Hold-out rows as standardized training columns, with the providers' published mean/std from the trained bins. */
function holdoutColumns(
  bins: readonly BinSpec[],
  rows: readonly SyntheticRow[],
  fieldsA: readonly string[],
  fieldsB: readonly string[],
): Int16Array[] {
  const index = new Map([...fieldsA, ...fieldsB].map((f, i) => [f, i]));
  return bins.map((spec) => {
    const std = spec.standardize!;
    const i = index.get(spec.field)!;
    return Int16Array.from(
      rows.map((r) =>
        standardizedValue(
          r.values[i] === '' ? null : BigInt(Math.round(Number(r.values[i]) * 10 ** spec.decimals)),
          spec.decimals,
          std.mean,
          std.std,
        ),
      ),
    );
  });
}

/**
 * The job's shape and the minimal operation counts docs/design.md §4–§5 need for it (standardized features: one column per
 * field). A = key holder (its layout carries the training), B = the other provider; blocks are those holding cohort
 * subjects (A's layout for columns, labels and iterations; B's for B's uploads).
 *
 * One-time:
 *   request: bank 1 ed25519.sign; engine 1 ed25519.verify; each custodian (A for the iterations, B for the transfers)
 *     1 ed25519.verify of the bank-signed request; consent: 1 ed25519.verify per cohort subject (one statement covers
 *     both categories);
 *   uploads: per column per block, 1 seal.encode + 1 seal.encryptSymmetric at its provider (nA·blocksA + nB·blocksB);
 *     1 ed25519.sign (provider's statement) + 1 ed25519.verify (engine) per provider;
 *   labels: per A block, 1 seal.encode + 1 seal.encrypt (public key, by the bank); 1 sign + 1 verify;
 *   transfer (§4.3), per (B column, source block, target block) pair feeding the cohort: engine 1 encode + 1 addPlain
 *     (mask) + 1 encryptZero + 1 add + 1 modSwitchToTransfer; custodian B 1 decrypt + 1 decode + 1 encode + 1 encrypt
 *     (under A's key); 2 sign + 2 verify (request, response); 2 ledger leaves. Per (B column, target block): (source
 *     blocks − 1) adds to combine, 1 encode + 1 addPlain to remove the moved mask;
 *   job: ledger leaves job.requested, train.inputs, job.escrowed, job.completed; 1 x25519.seal (seed escrow to the
 *     auditor); 1 ed25519.sign (checkpoint).
 * Per iteration, per A block (the model W of that iteration is replayed from the gradient history):
 *   Enc(D) = Σ W_f·Enc(X_f) + Enc(L) + W0·T: 1 multiplyPlainConst per weight with |W_f| > 1, 1 add per further
 *     non-zero term and 1 for L, and if W0 ≠ 0, 1 encode + 1 addPlain (W0·T);
 *   per column: 1 multiply (Enc(X_f) ⊙ Enc(D), no relinearization);
 *   per output (D and each product): 1 encode + 1 addPlain (mask), 1 encryptZero + 1 add, 1 modSwitchToTransfer
 *     (products are size-3 ciphertexts: that switch and the add cost ~1.5× the priced size-2 ones); custodian
 *     1 decrypt (D) or decrypt3 (products) + 1 decode, group sums in the clear of the masked vector; 2 sign + 2 verify,
 *     2 ledger leaves;
 *   1 ledger leaf (train.iteration).
 */
function trainShape(
  plan: Awaited<ReturnType<typeof planTraining>>,
  history: ReadonlyArray<{ G0: bigint; G: bigint[] }>,
  nA: number,
  nB: number,
  o: ReturnType<typeof trainOptions>,
  cb: number,
  t: bigint,
  slots: number,
): {
  ops: Record<string, number>;
  columns: number;
  blocksA: number;
  blocksB: number;
  transfers: number;
  decryptionsPerIteration: number;
  lastGroupSize: number;
} {
  const columns = nA + nB;
  const blocksA = new Set(plan.cohort.map((c) => c.block)).size;
  const other = plan.others[0]!;
  const blocksB = new Set(other.slots.map((s) => s.block)).size;
  // Transfer pairs: per target block, the distinct source blocks feeding it.
  const sources = new Map<number, Set<number>>();
  plan.cohort.forEach((c, j) => {
    const s = sources.get(c.block) ?? new Set<number>();
    s.add(other.slots[j]!.block);
    sources.set(c.block, s);
  });
  const pairsPerColumn = [...sources.values()].reduce((a, s) => a + s.size, 0);
  const targetsPerColumn = sources.size;
  const transfers = nB * pairsPerColumn;

  const ops: Record<string, number> = {};
  const add = (k: string, n: number) => {
    if (n) ops[k] = (ops[k] ?? 0) + n;
  };
  // one-time
  add('ed25519.sign', 1 + 2 + 1 + 1); // request, two column statements, labels, checkpoint
  add('ed25519.verify', 1 + 2 + plan.cohort.length + 2 + 1); // request at engine, at custodians A and B; consents; statements; labels
  add('seal.encode', nA * blocksA + nB * blocksB);
  add('seal.encryptSymmetric', nA * blocksA + nB * blocksB);
  add('seal.encode', blocksA);
  add('seal.encrypt', blocksA);
  add('sha256.leaf', 4);
  add('x25519.seal', 1);
  // transfer
  add('seal.encode', transfers * 2 + nB * targetsPerColumn);
  add('seal.addPlain', transfers + nB * targetsPerColumn);
  add('seal.encryptZero', transfers);
  add('seal.add', transfers + nB * (pairsPerColumn - targetsPerColumn));
  add('seal.modSwitchToTransfer', transfers);
  add('seal.decrypt', transfers);
  add('seal.decode', transfers);
  add('seal.encrypt', transfers);
  add('ed25519.sign', 2 * transfers);
  add('ed25519.verify', 2 * transfers);
  add('sha256.leaf', 2 * transfers);
  // iterations, with the model each iteration starts from
  let model: FixedModel = { W0: 0n, W: new Array<bigint>(columns).fill(0n) };
  const abs = (v: bigint) => (v < 0n ? -v : v);
  let lastGroupSize = 0;
  history.forEach((h, it) => {
    // The bound calculator's group size for this iteration (as runTraining computes it): products ≤ max|D|·STD_CLIP.
    lastGroupSize = sumGroupSize(
      maxAbsD(
        model,
        model.W.map((_, b) => [b]),
        o.scaleBits,
        cb,
        BigInt(STD_CLIP),
      ) * BigInt(STD_CLIP),
      t,
      slots,
    );
    const nz = model.W.filter((w) => w !== 0n).length;
    const big = model.W.filter((w) => abs(w) > 1n).length;
    const outputs = 1 + columns;
    add('seal.multiplyPlainConst', blocksA * big);
    add('seal.add', blocksA * (nz > 0 ? nz : 0)); // (nz − 1) between terms + 1 for L
    if (model.W0 !== 0n) {
      add('seal.encode', blocksA);
      add('seal.addPlain', blocksA);
    }
    add('seal.multiply', blocksA * columns);
    add('seal.encode', blocksA * outputs);
    add('seal.addPlain', blocksA * outputs);
    add('seal.encryptZero', blocksA * outputs);
    add('seal.add', blocksA * outputs);
    add('seal.modSwitchToTransfer', blocksA * outputs);
    add('seal.decrypt', blocksA);
    add('seal.decrypt3', blocksA * columns);
    add('seal.decode', blocksA * outputs);
    add('ed25519.sign', 2 * blocksA * outputs);
    add('ed25519.verify', 2 * blocksA * outputs);
    add('sha256.leaf', 2 * blocksA * outputs + 1);
    model = updateModel(model, h, plan.cohort.length, it, o, cb).model;
  });
  return { ops, columns, blocksA, blocksB, transfers, decryptionsPerIteration: blocksA * (1 + columns), lastGroupSize };
}

if (import.meta.main) {
  const { positional, flag } = benchArgs(process.argv.slice(2));
  const subjects = Number(positional[0] ?? 8192);
  const fields = Number(positional[1] ?? 20);
  const iterations = Number(positional[2] ?? 10);
  const poolSize = flag('--pool');
  const wall = performance.now();
  const r = await runTrainE2e({
    subjects,
    fields,
    iterations,
    ...(poolSize ? { poolSize } : {}),
    log: (line) => console.error(line),
  });
  r.extra.wallSeconds = sec(performance.now() - wall);
  const json = JSON.stringify(r, null, 2);
  console.log(json);
  if (process.env.BENCH_E2E_JSON) writeFileSync(process.env.BENCH_E2E_JSON, json + '\n');
  if (!r.checks.ok) process.exitCode = 1;
}
