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
 */
import { trainOptions, type TrainOptions } from '../../../models/train.ts';
import type { CustodianRules } from '../../custodian/rules.ts';
import { TRAIN_REQUEST_TYPE, parseIterationLabel, parseTransferLabel } from './messages.ts';

export const trainRules: CustodianRules = {
  kind: 'train',
  requestType: TRAIN_REQUEST_TYPE,
  allowance(body, ctx) {
    const provider = ctx.provider;
    const subjects = Array.isArray(body.subjects) ? body.subjects.length : 0;
    const parts = [
      { provider: body.provider, fields: body.fields },
      ...(Array.isArray(body.others) ? body.others : []),
    ] as Array<{ provider: string; fields: unknown }>;
    // A binned field has at most `bins` quantile bins, or one column per label of an enum (≤ 256, sandbox/catalog.ts).
    const width = body.features === 'standardized' ? 1 : 256;
    const cols = (p: { fields: unknown }) => (Array.isArray(p.fields) ? p.fields.length : 0) * width;
    const columns = parts.reduce((a, p) => a + cols(p), 0);
    const own = parts.find((p) => p.provider === provider);
    if (!own) return { budget: 0 };
    const iterations = trainOptions(body.options as Partial<TrainOptions> | undefined).iterations;
    const holder = body.provider === provider;
    const ownColumns = cols(own);
    return {
      budget: holder ? iterations * (columns + 1) * subjects : ownColumns * subjects,
      state: { iterations: holder ? iterations : 0, columns, ownColumns: holder ? 0 : ownColumns },
    };
  },
  refuse(job, label, mode, provider) {
    if (!label.startsWith('train/')) return `label ${JSON.stringify(label)} is not a train label`;
    const limits = job.state as { iterations?: number; columns?: number; ownColumns?: number };
    const it = parseIterationLabel(label);
    const tr = parseTransferLabel(label);
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
    return ok ? undefined : `label ${JSON.stringify(label)} is outside job ${job.jobId} (iterations, columns, mode)`;
  },
};
