/**
 * Joint training, the provider's side (docs/protocols.md "Joint training", step 2): bin each field from its own
 * cohort records (quantiles; an enum or a field with few values one bin per value) and encrypt one-hot 0/1 columns
 * for the cohort only (column i = bin i, fields in order), zeros at every other slot — or, for standardized features,
 * one column X' = clip(round((x − mean)/std·2^5), ±256) from its published mean and std. The bin edges are aggregates
 * and are signed into the statement; no row leaves. Before preparing anything the provider checks that the engine's
 * request is the bank-signed job's own part (`checkTrainingPart`).
 */
import { fail } from '../../../core/errors.ts';
import { sha256Hex } from '../../../core/hash.ts';
import { toSlot } from '../../../core/fixed.ts';
import { signJson, type Signed } from '../../../core/sign.ts';
import { quantileBins, binOf, standardizedValue, type BinSpec } from '../../../models/features.ts';
import type { ProviderSide } from '../../provider/side.ts';
import { fieldStats, type ProviderTable } from '../../provider/table.ts';
import type { TrainColumns, TrainingPart, TrainRequest } from './messages.ts';

export type { TrainingPart };

/**
 * The part the engine asks `provider` for must be what the bank signed: its own fields in the signed order, the
 * signed job id, bins and feature kind, and a cohort drawn from the signed subjects.
 * @throws SH_ERR_PARAMS_MISMATCH
 */
export function checkTrainingPart(provider: string, request: Signed<TrainRequest>, part: TrainingPart): void {
  const r = request.body;
  const mine = r.provider === provider ? r.fields : r.others?.find((x) => x.provider === provider)?.fields;
  if (
    !mine ||
    !part ||
    JSON.stringify(mine) !== JSON.stringify(part.fields) ||
    part.jobId !== r.jobId ||
    part.bins !== r.bins ||
    part.features !== (r.features ?? 'binned')
  ) {
    fail('SH_ERR_PARAMS_MISMATCH', `training request for ${provider} does not match the bank-signed job ${r.jobId}`);
  }
  const subjects = new Set(r.subjects);
  if (!Array.isArray(part.cohort) || part.cohort.some((c) => !subjects.has(c.uscc)))
    fail('SH_ERR_PARAMS_MISMATCH', `training cohort names subjects the bank did not sign for`);
}

/**
 * The provider's columns for one planned job, from its own table.
 * @throws SH_ERR_MODEL_STALE (the table is not the job's dataset), SH_ERR_PARAMS_MISMATCH when the engine's slot map
 *   disagrees with this provider's own layout, SH_ERR_UNKNOWN_FIELD
 */
export async function prepareTrainingColumns(
  provider: ProviderSide,
  plan: TrainingPart,
  table: ProviderTable,
): Promise<{ signed: Signed<TrainColumns>; blobs: Map<string, Uint8Array> }> {
  if (table.datasetId !== plan.datasetId)
    fail('SH_ERR_MODEL_STALE', `provider ${provider.id}'s table is ${table.datasetId}, the job uses ${plan.datasetId}`);
  const slots = provider.params.slots;
  const row = new Map(table.subjects.map((u, i) => [u, i]));
  for (const c of plan.cohort) {
    if (row.get(c.uscc) !== c.block * slots + c.slot)
      fail(
        'SH_ERR_PARAMS_MISMATCH',
        `subject ${c.uscc} is not at block ${c.block} slot ${c.slot} of ${provider.id}'s dataset`,
      );
  }
  const standardized = plan.features === 'standardized';
  // Standardization uses this provider's published statistics (the same numbers the engine holds), not the cohort's.
  const published = standardized
    ? fieldStats(
        table.schema.fields.filter((f) => f.type !== 'id'),
        table,
      )
    : {};
  const bins: BinSpec[] = plan.fields.map((name) => {
    const f = table.schema.fields.find((x) => x.name === name);
    const col = table.values[name];
    if (!f || !col)
      fail('SH_ERR_UNKNOWN_FIELD', `provider ${provider.id}'s dataset has no numeric field ${name}`, { field: name });
    if (standardized)
      return {
        provider: provider.id,
        field: name,
        decimals: f.decimals,
        bins: [{ lo: null, hi: null }],
        standardize: { mean: published[name]!.mean, std: published[name]!.std },
      };
    const values = plan.cohort.map((c) => {
      const v = col[row.get(c.uscc)!];
      return v === null || v === undefined ? null : BigInt(v);
    });
    return { provider: provider.id, field: name, decimals: f.decimals, bins: quantileBins(f, values, plan.bins) };
  });
  const blocks = [...new Set(plan.cohort.map((c) => c.block))].sort((a, b) => a - b);
  const blobs = new Map<string, Uint8Array>();
  const tasks: Array<Promise<TrainColumns['columns'][number]>> = [];
  let index = 0;
  for (const spec of bins) {
    const col = table.values[spec.field]!;
    const raw = plan.cohort.map((c) => {
      const v = col[row.get(c.uscc)!];
      return v === null || v === undefined ? null : BigInt(v);
    });
    const which = raw.map((v) => binOf(spec.bins, v, spec.decimals));
    const std = spec.standardize;
    spec.bins.forEach((_, j) => {
      const i = index++;
      for (const block of blocks) {
        const vec = new BigUint64Array(slots);
        plan.cohort.forEach((c, k) => {
          if (c.block !== block) return;
          if (std)
            vec[c.slot] = toSlot(
              BigInt(standardizedValue(raw[k]!, spec.decimals, std.mean, std.std)),
              provider.params.t,
            );
          else if (which[k] === j) vec[c.slot] = 1n;
        });
        tasks.push(
          provider.encrypt(vec).then((bytes) => {
            const blob = sha256Hex(bytes);
            blobs.set(blob, bytes);
            return { index: i, block, blob };
          }),
        );
      }
    });
  }
  const columns = await provider.all(tasks);
  const body: TrainColumns = {
    type: 'safehouse.train.columns.v1',
    jobId: plan.jobId,
    provider: provider.id,
    datasetId: plan.datasetId,
    bins,
    columns,
  };
  return { signed: signJson(body, provider.id, provider.keys.ed25519SecretKey), blobs };
}
