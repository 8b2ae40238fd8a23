/**
 * Joint training at the custodian — what a provider's custodian sees and allows in a training job.
 *
 * Sees: the bank-signed request (bank, purpose, the key holder and its fields, other providers and theirs, the
 * training subjects, bins, options). As the **key holder**: per iteration and block, masked ciphertexts of the
 * residuals D and of each product X_b·D, which it decrypts to uniform values v + m and answers only as group sums of
 * g slots (`sum` mode; g from the engine's bound calculator) — never a slot value; it never sees a label (the bank
 * encrypted them under its key) or a gradient (the engine removes Σ m). As **another provider**: its own training
 * columns masked under its own key, decrypted to uniform v + m, moved into the key holder's layout and re-encrypted
 * under the key holder's key (domain transfer). Providers learn the cohort membership, as in any vertical-FL sample
 * alignment (their training-column preparation is told the cohort).
 * Allows: a job opened with the bank's signature (`safehouse.train.request.v1`, fresh, naming the signer) that names
 * this provider; key holder — at most iterations × (columns + 1) × subjects sums, labels
 * `train/<job>/it/<i>/block/<b>/(D|X<k>D)` with i < iterations and k < columns, mode `sum`; other providers — at most
 * own columns × subjects transfers, labels `train/<job>/transfer/<own provider>/<k>/from/<b>/to/<b'>` with
 * k < own columns; each label answered once. Columns are counted from the signed fields: one per standardized field,
 * at most 256 per binned field (the largest enum, sandbox/catalog.ts).
 * Protects (docs/privacy.md "Training"): each subject the bank named spends `trainEpsilon` of the group's
 * `trainSubjectEpsilon` per window at every provider whose data it uses — past it the subject is refused
 * (OVER_BUDGET, out of the cohort); when fewer than the provider's `minTrainingCohort` remain, all are refused and
 * nothing is spent. The key holder first answers, per block, only whether the engine's
 * L² − 4s²·T is 0 everywhere (mode `zero`): that is, whether every cohort label is 0/1 (L = ±2s, t prime) and every
 * other slot has none — no iteration sum of a block is answered before its labels passed. It then adds to every group sum a
 * rounded Gaussian of σ from the provider's (ε, δ), the job's iterations, the fields and the residual bound the engine
 * declares (never below the label term 2s), and journals the noise; it sums only the slots of allowed subjects, read
 * from its own table (the engine masks nothing else), and a transfer custodian moves no other subject's slot.
 */
import { sumGroupSize, trainOptions, type TrainOptions } from '../../../models/train.ts';
import { STD_CLIP } from '../../../models/features.ts';
import type { CustodianRules } from '../../custodian/rules.ts';
import type { SpendRecord } from '../../custodian/budget.ts';
import {
  TRAIN_REQUEST_TYPE,
  columnBitsOf,
  iterationSigma,
  labelCheckLabel,
  parseIterationLabel,
  parseLabelCheckLabel,
  parseTransferLabel,
} from './messages.ts';

interface TrainState {
  iterations?: number;
  columns?: number;
  ownColumns?: number;
  /** Subjects this custodian answers for (named by the bank, not skipped by the engine, within its ε budget). */
  subjects?: string[];
  /** The provider's own fields in the job, and every field (sensitivity counts one column per field). */
  ownFields?: string[];
  /** The key holder the bank named: the only provider a transfer may target. */
  holder?: string;
  fields?: number;
  features?: 'binned' | 'standardized';
  /** The label term 2s: the smallest residual bound the custodian accepts. */
  labelTerm?: string;
  privacy?: { epsilon: number; delta: number };
}

/** Each open job's allowed subjects as a set, built once per job. */
const allowedSets = new WeakMap<object, Set<string>>();
const allowedOf = (job: { state: Record<string, unknown> }): Set<string> => {
  let set = allowedSets.get(job);
  if (!set) {
    set = new Set(((job.state as TrainState).subjects ?? []) as string[]);
    allowedSets.set(job, set);
  }
  return set;
};

export const trainRules: CustodianRules = {
  kind: 'train',
  requestType: TRAIN_REQUEST_TYPE,
  allowance(body, ctx) {
    const provider = ctx.provider;
    const named = Array.isArray(body.subjects) ? body.subjects.length : 0;
    const parts = [
      { provider: body.provider, fields: body.fields },
      ...(Array.isArray(body.others) ? body.others : []),
    ] as Array<{ provider: string; fields: unknown }>;
    // A binned field has at most `bins` quantile bins, or one column per label of an enum (≤ 256, sandbox/catalog.ts).
    const width = body.features === 'standardized' ? 1 : 256;
    const nFields = (p: { fields: unknown }) => (Array.isArray(p.fields) ? p.fields.length : 0);
    const columns = parts.reduce((a, p) => a + nFields(p) * width, 0);
    const own = parts.find((p) => p.provider === provider);
    if (!own) return { budget: 0 };
    const options = trainOptions(body.options as Partial<TrainOptions> | undefined);
    const holder = body.provider === provider;
    const ownColumns = nFields(own) * width;
    // Each subject spends the job's ε of the group's per-window training budget, at every provider whose data it uses.
    const epsilon = ctx.policy.trainEpsilon;
    const since = ctx.now.getTime() - ctx.policy.windowDays * 86_400_000;
    const subjects: string[] = [];
    const refused: string[] = [];
    const ownFields = (Array.isArray(own.fields) ? own.fields : []) as string[];
    const categories = [...new Set(ownFields.flatMap((f) => ctx.data.categoryOf(String(f)) ?? []))].sort();
    const reasons: Record<string, string> = {};
    for (const u of new Set(((body.subjects as unknown[] | undefined) ?? []).filter((x) => typeof x === 'string'))) {
      if (ctx.skip.has(u as string)) continue;
      // The subject's own consent to training on this provider's categories (the custodian's ledger copy).
      const consent = ctx.consent(u as string, 'train', categories);
      if (consent !== 'OK') {
        refused.push(u as string);
        reasons[u as string] = consent;
        continue;
      }
      if (
        ctx.budget.used('train-epsilon', ctx.group, u as string, '', since) + epsilon >
        ctx.policy.trainSubjectEpsilon + 1e-9
      )
        refused.push(u as string);
      else subjects.push(u as string);
    }
    // Below the provider's own cohort minimum the job gets no subject (and spends nothing): whatever the engine
    // decides, every slot this custodian answers for it is blinded.
    if (subjects.length < ctx.policy.minTrainingCohort) {
      refused.push(...subjects);
      subjects.length = 0;
    }
    const spend: SpendRecord[] = subjects.length
      ? [{ kind: 'train-epsilon', group: ctx.group, subjects, field: '', units: epsilon }]
      : [];
    const s = (1n << BigInt(options.scaleBits)) << BigInt(columnBitsOf({ features: body.features as 'binned' }));
    const state: TrainState = {
      iterations: holder ? options.iterations : 0,
      columns,
      ownColumns: holder ? 0 : ownColumns,
      subjects,
      ownFields,
      holder: String(body.provider),
      fields: parts.reduce((a, p) => a + nFields(p), 0),
      features: body.features === 'standardized' ? 'standardized' : 'binned',
      labelTerm: (2n * s).toString(),
    };
    return {
      budget: holder ? options.iterations * (columns + 1) * named + named : ownColumns * named,
      state: state as Record<string, unknown>,
      refused,
      reasons,
      spend,
      ...(holder ? { privacy: { epsilon, delta: ctx.policy.trainDelta } } : {}),
    };
  },
  refuse(job, label, mode, provider) {
    if (!label.startsWith('train/')) return `label ${JSON.stringify(label)} is not a train label`;
    const limits = job.state as TrainState;
    const it = parseIterationLabel(label);
    const tr = parseTransferLabel(label);
    const check = parseLabelCheckLabel(label);
    if (check)
      return check.jobId === job.jobId && mode === 'zero' && (limits.iterations ?? 0) > 0
        ? undefined
        : `label ${JSON.stringify(label)} is outside job ${job.jobId} (only the key holder checks labels, mode zero)`;
    const ok = it
      ? it.jobId === job.jobId &&
        mode === 'sum' &&
        it.iteration < (limits.iterations ?? 0) &&
        (it.column === undefined || it.column < (limits.columns ?? 0))
      : tr
        ? tr.jobId === job.jobId &&
          mode === 'transfer' &&
          tr.provider === provider &&
          tr.column < (limits.ownColumns ?? 0)
        : false;
    if (!ok) return `label ${JSON.stringify(label)} is outside job ${job.jobId} (iterations, columns, mode)`;
    // No gradient sum over a block before the bank's labels in it were proven binary.
    if (it && !job.zeros.has(labelCheckLabel(job.jobId, it.block)))
      return `block ${it.block} of job ${job.jobId}: the labels were not shown to be 0/1 (label check first)`;
    return undefined;
  },
  blind(job, label, data, slots) {
    const it = parseIterationLabel(label) ?? parseLabelCheckLabel(label);
    if (!it) return [];
    const own = (job.state as TrainState).ownFields ?? [];
    const datasetId = own.length ? data.datasetWith(own[0]!) : undefined;
    const layout = datasetId ? data.layout(datasetId) : undefined;
    if (!layout)
      return `the custodian holds no table with ${own[0]}, so it cannot tell whose slots block ${it.block} holds`;
    const allowed = allowedOf(job);
    const out: number[] = [];
    for (let i = 0; i < slots; i++) {
      const u = layout(it.block * slots + i);
      if (u === undefined || !allowed.has(u)) out.push(i);
    }
    return out;
  },
  noise(job, label, request, policy, params) {
    const st = job.state as TrainState;
    if (!parseIterationLabel(label)) return 0;
    const floor = BigInt(st.labelTerm ?? '0');
    let bound: bigint;
    try {
      bound = BigInt(request.bound ?? '');
    } catch {
      return `"bound" expected the residual bound max|D| as a decimal integer, got ${JSON.stringify(request.bound)}`;
    }
    if (bound < floor) return `"bound" ${bound} is below the label term ${floor} every residual can reach`;
    const sigma = iterationSigma({
      bound,
      features: st.features ?? 'binned',
      fields: st.fields ?? 1,
      iterations: st.iterations ?? 1,
      epsilon: policy.trainEpsilon,
      delta: policy.trainDelta,
    });
    // The group size is the protocol's, not the engine's choice: the largest that keeps a group sum of the declared
    // bound and 12σ of noise below t/2 (the engine and the auditor's replay compute the same). A smaller group (down
    // to one subject) would answer finer sums than the bound requires.
    const colMax = st.features === 'standardized' ? BigInt(STD_CLIP) : 1n;
    const margin = 2n * BigInt(Math.ceil(12 * sigma) + 1);
    let g: number;
    try {
      g = sumGroupSize(bound * colMax, params.t - margin, params.slots);
    } catch {
      return `"bound" ${bound} leaves no group size below t/2 with the privacy noise`;
    }
    if (request.groupSize !== g)
      return `group size ${String(request.groupSize)} of ${label}: the protocol fixes ${g} for the declared bound ${bound}`;
    return sigma;
  },
  moves(job, _label, moves, data, slots) {
    const own = (job.state as TrainState).ownFields ?? [];
    const datasetId = own.length ? data.datasetWith(own[0]!) : undefined;
    const layout = datasetId ? data.layout(datasetId) : undefined;
    if (!layout) return `the custodian holds no table with ${own[0]}, so it cannot tell whose slots it would move`;
    const allowed = allowedOf(job);
    const tr = parseTransferLabel(_label)!;
    for (const [from] of moves) {
      const u = layout(tr.from * slots + from);
      if (u === undefined || !allowed.has(u))
        return `slot ${from} of block ${tr.from} holds no subject this job allows`;
    }
    return undefined;
  },
};
