/**
 * Scoring at the custodian — what a provider's custodian sees and allows in a scoring job.
 *
 * Sees: the bank-signed request (bank, model id and pinned hash, purpose, the subject list); per (its dataset, touched
 * block) one ciphertext of Σ w·x + m, re-randomized and switched down, which it decrypts to v + m — uniform mod t,
 * because m is a fresh uniform mask from the job seed it never learns. It never sees a raw partial sum or a score.
 * Allows: a job opened with the bank's signature (`safehouse.score.request.v1`, fresh, naming the signer), at most one
 * decryption per requested subject, each label of the form `score/<its own provider>/<dataset>/block/<b>` answered
 * once, mode `seal` only — v + m sealed to the party the engine names — and in that answer only the slots of the
 * subjects the job allows: every other slot (a subject the bank did not name, or one refused below) is overwritten
 * with a uniform value mod t, read from the provider's own layout of the dataset. An engine that hands the bank more
 * unmask values than it should therefore unmasks noise.
 * Consent: each subject's own, for the signing bank, the job's purpose, `score` and the categories of this provider's
 * data the model reads, judged from the custodian's own copy of the ledger (engine/custodian/monitor.ts); a subject
 * without it is refused (its slots blinded) whatever the engine says.
 * Checks: before sealing, that every slot it answers is the approved model's partial score on the provider's own
 * records (it derives the block's mask from the key the engine sends and compiles its own terms itself), so a raw
 * column or any other function of its data sent under a score label is refused, whoever the recipient.
 * Refuses: a job whose model hash is not one the provider approved (its own record of approvals,
 * SH_ERR_MODEL_NOT_APPROVED); and (its own budget, docs/privacy.md "Scoring") a subject the bank's group has already scored with
 * `scoreModelsPerSubject` other models within the window; scoring again with a model already counted is free (it
 * reveals nothing new). The engine answers refused subjects `OVER_BUDGET`.
 */
import { fail } from '../../../core/errors.ts';
import type { CustodianRules, OpenJob, ProviderData } from '../../custodian/rules.ts';
import { hexToBytes } from '../../../core/sign.ts';
import { maskVector } from '../../he/mask.ts';
import { SCORE_REQUEST_TYPE, parseScoreLabel } from './messages.ts';

export const scoreRules: CustodianRules = {
  kind: 'score',
  requestType: SCORE_REQUEST_TYPE,
  allowance(body, ctx) {
    const named = Array.isArray(body.subjects) ? body.subjects.length : 0;
    const subjects = [
      ...new Set(((body.subjects as unknown[] | undefined) ?? []).filter((s) => typeof s === 'string')),
    ];
    const model = String(body.modelHash);
    // Only a model this provider itself approved (its own record, whatever the engine says).
    if (named > 0 && !ctx.data.approvedModel(model))
      fail(
        'SH_ERR_MODEL_NOT_APPROVED',
        `custodian ${ctx.provider}: model hash ${model.slice(0, 12)}… of job ${String(body.jobId)} is not one this provider approved`,
        { provider: ctx.provider },
      );
    const since = ctx.now.getTime() - ctx.policy.windowDays * 86_400_000;
    const refused: string[] = [];
    const reasons: Record<string, string> = {};
    const allowed: string[] = [];
    const spent: string[] = [];
    // The categories of this provider's data the approved model reads (its own approval record and tables).
    const categories = [...new Set(ctx.data.modelFields(model).flatMap((f) => ctx.data.categoryOf(f) ?? []))].sort();
    for (const subject of subjects as string[]) {
      if (ctx.skip.has(subject)) continue;
      // The subject's own consent, judged by the custodian from the ledger it follows — not the engine's word.
      const consent = ctx.consent(subject, 'score', categories);
      if (consent !== 'OK') {
        refused.push(subject);
        reasons[subject] = consent;
        continue;
      }
      const models = ctx.budget.distinct('score-models', ctx.group, subject, since);
      if (models.has(model)) allowed.push(subject);
      else if (models.size >= ctx.policy.scoreModelsPerSubject) refused.push(subject);
      else {
        allowed.push(subject);
        spent.push(subject);
      }
    }
    return {
      budget: named,
      state: { subjects: allowed, modelHash: model },
      refused,
      reasons,
      spend: spent.length
        ? [{ kind: 'score-models', group: ctx.group, subjects: spent, field: '', units: 1, ref: model }]
        : [],
    };
  },
  refuse(_job, label, mode, provider) {
    if (!label.startsWith('score/')) return `label ${JSON.stringify(label)} is not a score label`;
    if (mode !== 'seal') return `a score job does not use mode ${mode}`;
    const l = parseScoreLabel(label);
    if (!l || l.provider !== provider)
      return `label ${JSON.stringify(label)} is not one of provider ${provider}'s score blocks`;
    return undefined;
  },
  verify(job, label, values, answered, request, data, { t, slots }) {
    const l = parseScoreLabel(label)!;
    if (typeof request.maskKey !== 'string' || !/^[0-9a-f]{64}$/.test(request.maskKey))
      return `${label}: no mask key, so the custodian cannot check what it would seal`;
    const partial = data.partialScore(String(job.state.modelHash), l.datasetId);
    if (!partial)
      return `the custodian cannot compute model ${String(job.state.modelHash).slice(0, 12)}… on dataset ${l.datasetId}`;
    const m = maskVector(hexToBytes(request.maskKey), t, slots);
    // v = (v + m) − m; the engine's multipliers are the provider's own times 10^k (the model's scale counts every
    // provider's decimals), so v must be 10^k · partial for one k at every answered slot.
    let factor: bigint | undefined;
    const base = l.block * slots;
    for (let i = 0; i < slots; i++) {
      if (!answered(i)) continue;
      const v = (values[i]! + t - m[i]!) % t;
      const p = ((partial(base + i) % t) + t) % t;
      if (factor === undefined) {
        if (p === 0n) {
          if (v !== 0n)
            return `${label}: slot ${i} is not the approved model's partial score on the provider's records`;
          continue;
        }
        for (let k = 0n, f = 1n; k <= 24n && factor === undefined; k++, f *= 10n) if ((p * f) % t === v) factor = f;
        if (factor === undefined)
          return `${label}: slot ${i} is not the approved model's partial score on the provider's records`;
      } else if ((p * factor) % t !== v)
        return `${label}: slot ${i} is not the approved model's partial score on the provider's records`;
    }
    m.fill(0n);
    return undefined;
  },
  blind(job, label, data, slots) {
    const l = parseScoreLabel(label)!;
    const layout = data.layout(l.datasetId);
    if (!layout)
      return `the custodian holds no layout of dataset ${l.datasetId}, so it cannot tell whose slots block ${l.block} holds`;
    const out: number[] = [];
    const base = l.block * slots;
    const bits = allowedRows(job, l.datasetId, data);
    if (bits) {
      for (let i = 0; i < slots; i++) if (bits[base + i] !== 1) out.push(i);
    } else {
      const allowed = allowedSet(job);
      for (let i = 0; i < slots; i++) {
        const subject = layout(base + i);
        if (subject === undefined || !allowed.has(subject)) out.push(i);
      }
    }
    // A block with none of the job's subjects answers nothing the bank may learn: the label itself is outside the job.
    if (out.length === slots) return `block ${l.block} of dataset ${l.datasetId} holds none of the job's subjects`;
    return out;
  },
};

/** Each open job's allowed subjects as a set, built once per job (a job asks for many blocks). */
const allowedSets = new WeakMap<object, Set<string>>();

function allowedSet(job: OpenJob): Set<string> {
  let allowed = allowedSets.get(job);
  if (!allowed) {
    allowed = new Set(Array.isArray(job.state.subjects) ? (job.state.subjects as string[]) : []);
    allowedSets.set(job, allowed);
  }
  return allowed;
}

/** Per open job and dataset, 1 at each row of an allowed subject (from the provider's own row index), built once. */
const allowedBits = new WeakMap<object, Map<string, Uint8Array>>();

function allowedRows(job: OpenJob, datasetId: string, data: ProviderData): Uint8Array | undefined {
  let perDataset = allowedBits.get(job);
  let bits = perDataset?.get(datasetId);
  if (bits) return bits;
  const rows = data.rows?.(datasetId);
  if (!rows) return undefined;
  bits = new Uint8Array(rows.size);
  for (const s of Array.isArray(job.state.subjects) ? (job.state.subjects as string[]) : []) {
    const r = rows.get(s);
    if (r !== undefined && r < bits.length) bits[r] = 1;
  }
  if (!perDataset) allowedBits.set(job, (perDataset = new Map()));
  perDataset.set(datasetId, bits);
  return bits;
}
