/**
 * Verification at the custodian — what a provider's custodian sees and allows in a verification job (数据核验).
 *
 * Sees: the bank-signed request — per claim its id, subject, provider, field, op, the number of values and a salted
 * commitment to them, never a claimed value. Numeric claims: per (its dataset, field, block, round) one ciphertext
 * of r·d·(x − c) + r' (r uniform in [1, R], r' in [0, r), d = ±1; unused slots multiplier 0 and a uniform offset),
 * which it decrypts and answers only as one sign bit per slot sealed to the bank — it learns r·(x − c) + r' for values
 * it already holds, hiding |x − c| up to a factor in [1, R] (R per field in the result and the ledger). Token claims:
 * blinded P-256 points (RFC 9497 POPRF), uniformly random to it, tagged with the signed claim each serves.
 * Allows: a job opened with the bank's signature (`safehouse.verify.request.v1`, fresh, naming the signer) with claims
 * on this provider; at most two comparisons per value the bank signed for this provider's allowed claims (a numeric
 * `eq`/`ne` is ≥ and ≤), labels `verify/<own provider>/<dataset>/<field>/block/<b>/round/<r>` answered once, mode
 * `sign` only, and in each answer only the slots of subjects with allowed claims on that field, in rounds 0 … n−1
 * for a subject whose claims need n comparisons — every other slot's sign is a coin flip (the custodian overwrites it
 * with a uniform value, from its own layout of the dataset); per token claim at most the `count` of
 * evaluations the bank signed for, on that claim's own (`eq`/`in`) field, counted across every batch and restarts.
 * Refuses (its own budgets over a sliding window, per bank group, subject and field, docs/privacy.md "Verification"):
 * a numeric claim past `verifyUnitsPerWindow` answer units (a claim costs the sign bits it returns) and a token claim
 * past `tokenEvaluationsPerWindow` evaluations; the engine answers refused claims `over_budget`.
 */
import type { CustodianRules } from '../../custodian/rules.ts';
import type { SpendRecord } from '../../custodian/budget.ts';
import { claimUnits, VERIFY_REQUEST_TYPE, parseCompareLabel, type ClaimOp } from './messages.ts';

interface ClaimRef {
  claimId?: unknown;
  subject?: unknown;
  provider?: unknown;
  field?: unknown;
  op?: unknown;
  count?: unknown;
}

export const verifyRules: CustodianRules = {
  kind: 'verify',
  requestType: VERIFY_REQUEST_TYPE,
  allowance(body, ctx) {
    const claims = (Array.isArray(body.claims) ? (body.claims as ClaimRef[]) : []).filter(
      (c) => c?.provider === ctx.provider && typeof c.claimId === 'string' && typeof c.field === 'string',
    );
    const since = ctx.now.getTime() - ctx.policy.windowDays * 86_400_000;
    const allowed: Record<string, string> = {};
    /** field → subject → comparisons its allowed claims need (a slot is answered in rounds 0 … n−1 only). */
    const comparisons: Record<string, Record<string, number>> = {};
    const refused: string[] = [];
    const spend: SpendRecord[] = [];
    const job = new Map<string, number>();
    let values = 0;
    const reasons: Record<string, string> = {};
    for (const c of claims) {
      if (ctx.skip.has(c.claimId as string)) continue;
      const count = Number.isInteger(c.count) && (c.count as number) > 0 ? (c.count as number) : 0;
      const field = c.field as string;
      const subject = String(c.subject);
      // The subject's own consent to verification of this field's category (the custodian's ledger copy).
      const category = ctx.data.categoryOf(field);
      const consent = ctx.consent(subject, 'verify', category ? [category] : []);
      if (consent !== 'OK') {
        refused.push(c.claimId as string);
        reasons[c.claimId as string] = consent;
        continue;
      }
      // The provider's own schema says which fields are token fields; `in` is only ever a token op.
      const type = ctx.data.fieldType(field);
      const token = type === 'id' || (type === undefined && c.op === 'in');
      const kind = token ? 'token-evaluations' : 'verify-units';
      const limit = token ? ctx.policy.tokenEvaluationsPerWindow : ctx.policy.verifyUnitsPerWindow;
      const units = claimUnits({ op: c.op as ClaimOp, count }, token);
      const k = `${kind}\u0000${subject}\u0000${field}`;
      const used = (job.get(k) ?? 0) + ctx.budget.used(kind, ctx.group, subject, field, since);
      if (used + units > limit) {
        refused.push(c.claimId as string);
        continue;
      }
      job.set(k, (job.get(k) ?? 0) + units);
      spend.push({ kind, group: ctx.group, subjects: [subject], field, units });
      allowed[c.claimId as string] = field;
      if (!token) {
        const f = (comparisons[field] ??= {});
        f[subject] = (f[subject] ?? 0) + units;
      }
      values += count;
    }
    // A numeric eq/ne is two comparisons (≥ and ≤) per value; each decryption answers at least one comparison.
    return {
      budget: claims.length ? Math.max(1, 2 * values) : 0,
      state: { claims: allowed, comparisons },
      refused,
      reasons,
      spend,
    };
  },
  refuse(_job, label, mode, provider) {
    if (!label.startsWith('verify/')) return `label ${JSON.stringify(label)} is not a verify label`;
    if (mode !== 'sign') return `a verify job does not use mode ${mode}`;
    const l = parseCompareLabel(label);
    if (!l || l.provider !== provider)
      return `label ${JSON.stringify(label)} is not one of provider ${provider}'s comparison blocks`;
    return undefined;
  },
  blind(job, label, data, slots) {
    const l = parseCompareLabel(label)!;
    const layout = data.layout(l.datasetId);
    if (!layout)
      return `the custodian holds no layout of dataset ${l.datasetId}, so it cannot tell whose slots block ${l.block} holds`;
    const need = ((job.state.comparisons ?? {}) as Record<string, Record<string, number>>)[l.field] ?? {};
    const out: number[] = [];
    const base = l.block * slots;
    for (let i = 0; i < slots; i++) {
      const subject = layout(base + i);
      if (subject === undefined || !((need[subject] ?? 0) > l.round)) out.push(i);
    }
    if (out.length === slots)
      return `block ${l.block} round ${l.round} of ${l.field} holds no comparison the job's claims need`;
    return out;
  },
  tokenAllowance(job, bankRequest, provider, field) {
    const allowed = (job.state.claims ?? {}) as Record<string, string>;
    return new Map(
      bankRequest.body.claims
        .filter(
          (c) =>
            c.provider === provider &&
            c.field === field &&
            (c.op === 'eq' || c.op === 'in') &&
            allowed[c.claimId] === field,
        )
        .map((c) => [c.claimId, c.count]),
    );
  },
};
