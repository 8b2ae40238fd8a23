/**
 * Scoring, the provider's side: approving a bank's model. The provider recomputes the model's hash (so it signs
 * exactly what it reviewed), reviews its own terms with its own schema and unrounded statistics — the same
 * compilation and anti-extraction rules the engine ran, independently — and, for each of its scorecard terms, derives
 * one encrypted 0/1 indicator column per bin from its own records, so a scorecard stays a linear sum at scoring time
 * (no comparisons on ciphertexts).
 */
import { fail, isCoded } from '../../../core/errors.ts';
import { sha256Hex } from '../../../core/hash.ts';
import { signJson, type Signed } from '../../../core/sign.ts';
import { vetModel } from '../../../sandbox/vetting.ts';
import { vetHistory, type FieldExposure } from '../../../sandbox/history.ts';
import { providerPolicy, type ProviderPolicy } from '../../../sandbox/policy.ts';
import { historyModel } from '../../../models/history.ts';
import {
  modelHash,
  isScorecardTerm,
  binColumn,
  binIndex,
  compileModel,
  type ModelSpec,
} from '../../../models/model.ts';
import type { ApprovalStatement } from '../../models.ts';
import type { ProviderSide } from '../../provider/side.ts';
import { fieldStats, type ProviderTable } from '../../provider/table.ts';

/** What the provider's review found, shown to it when it approves. */
export interface ApprovalReview {
  /** The limits applied (the provider's own policy). */
  policy: ProviderPolicy;
  group: string;
  /** The group's models this provider approved before, which the review counted. */
  earlier: string[];
  /** Per field of this provider, the variance share no combination of those models and this one explains. */
  exposure: FieldExposure[];
}

/**
 * Approve a model as `provider`, with its own table, policy and record of what it approved for the bank's group
 * before; returns the signed approval, the derived columns' blobs and the review.
 * @throws SH_ERR_INVALID_ARGUMENT when the model does not use this provider or the table lacks a field;
 *   SH_ERR_MODEL_EXTRACTION when the model alone or with the group's earlier models would isolate a field.
 */
export async function approveModel(
  provider: ProviderSide,
  spec: ModelSpec,
  table: ProviderTable,
  opts: { policy?: ProviderPolicy; group?: string; earlier?: readonly ModelSpec[] } = {},
): Promise<{ approval: Signed<ApprovalStatement>; blobs: Map<string, Uint8Array>; review: ApprovalReview }> {
  const policy = opts.policy ?? providerPolicy();
  const hash = modelHash(spec);
  if (!spec.terms.some((t) => t.provider === provider.id))
    fail('SH_ERR_INVALID_ARGUMENT', `model ${spec.id} does not use provider ${provider.id}`);
  // The provider's own review, independent of the engine's: its terms must compile against its own schema and pass
  // the anti-extraction rules with its own (unrounded) statistics.
  const mine: ModelSpec = { ...spec, intercept: '0', terms: spec.terms.filter((t) => t.provider === provider.id) };
  const stats = fieldStats(
    table.schema.fields.filter((f) => f.type !== 'id'),
    table,
  );
  const own = (p: string, name: string) => {
    const f = p === provider.id ? table.schema.fields.find((x) => x.name === name) : undefined;
    return f && stats[name] ? { ...f, std: stats[name].std } : f;
  };
  const compiled = compileModel(mine, own, provider.params.t);
  vetModel(compiled, policy);
  // The group's history, as this provider recorded it: models that no longer compile on its data are left out.
  const group = opts.group ?? 'unknown';
  const earlier = (opts.earlier ?? []).flatMap((m) => {
    try {
      const part: ModelSpec = { ...m, intercept: '0', terms: m.terms.filter((t) => t.provider === provider.id) };
      return part.terms.length ? [historyModel(compileModel(part, own, provider.params.t))] : [];
    } catch (err) {
      if (isCoded(err)) return [];
      throw err;
    }
  });
  const exposure = vetHistory(historyModel(compiled), earlier, policy.minUnexplainedShare, group);
  const slots = provider.params.slots;
  const n = table.subjects.length;
  const blocks = Math.ceil(n / slots);
  const blobs = new Map<string, Uint8Array>();
  const tasks: Array<Promise<ApprovalStatement['derived'][number]>> = [];
  spec.terms.forEach((term, i) => {
    if (term.provider !== provider.id || !isScorecardTerm(term)) return;
    const f = table.schema.fields.find((x) => x.name === term.field);
    const col = table.values[term.field];
    if (!f || !col)
      fail(
        'SH_ERR_INVALID_ARGUMENT',
        `provider ${provider.id}'s dataset ${table.datasetId} has no field ${term.field}`,
      );
    const bins = col.map((v) => (v === null ? -1 : binIndex(term.bins, BigInt(v), f.decimals)));
    term.bins.forEach((_, j) => {
      for (let b = 0; b < blocks; b++) {
        const vec = new BigUint64Array(slots);
        for (let s = b * slots; s < Math.min(n, (b + 1) * slots); s++) if (bins[s] === j) vec[s - b * slots] = 1n;
        const column = binColumn(hash, i, j);
        tasks.push(
          provider.encrypt(vec).then((bytes) => {
            const blob = sha256Hex(bytes);
            blobs.set(blob, bytes);
            return { column, block: b, blob };
          }),
        );
      }
    });
  });
  const derived = await provider.all(tasks);
  const body: ApprovalStatement = {
    type: 'safehouse.approval.v1',
    provider: provider.id,
    modelId: spec.id,
    modelHash: hash,
    datasetId: table.datasetId,
    derived,
    approvedAt: new Date().toISOString(),
  };
  return {
    approval: signJson(body, provider.id, provider.keys.ed25519SecretKey),
    blobs,
    review: { policy, group, earlier: earlier.map((m) => m.id), exposure },
  };
}
