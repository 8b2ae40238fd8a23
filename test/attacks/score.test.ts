/**
 * Scoring attacks (docs/privacy.md "Scoring"), each run as the attacker would:
 *  1. differencing — three vetted linear models over vat_paid_12m, cit_paid_12m, taxable_sales_12m (the weights of
 *     issue 13), each approved, two score differences give all three values of every subject exactly;
 *  2. the same through a second identity of the bank's group;
 *  3. the same with a colluding platform operator who registers the second model without the engine's check — the
 *     provider's own review (its own record of what it approved for the group) must refuse it;
 *  4. a colluding operator who hands the bank the mask of every slot of a block (it derives them from the job seed)
 *     to read the scores of subjects the bank did not name;
 *  5. many models on one subject — the custodian's own per-subject budget of distinct models — including an operator
 *     who ignores the custodian's refusal.
 * On the code before issue 13 every one of these recovers the exact values (the assertions print what was recovered).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { compileModel, modelHash, parseModel } from '../../models/model.ts';
import {
  BANK,
  BRANCH,
  PURPOSE,
  TAX,
  captureSeeds,
  codeOf,
  linear,
  openWorld,
  readEverySlot,
  replay,
  truth,
  type World,
} from './fixture.ts';

const M1 = { vat_paid_12m: '0.001', cit_paid_12m: '0.001', taxable_sales_12m: '0.0001' };
const M2 = { vat_paid_12m: '0.0015', cit_paid_12m: '0.001', taxable_sales_12m: '0.0001' };
const M3 = { vat_paid_12m: '0.001', cit_paid_12m: '0.002', taxable_sales_12m: '0.0001' };

let w: World;
beforeAll(async () => {
  w = await openWorld({ policy: { scoreModelsPerSubject: 1 } });
}, 120_000);
afterAll(async () => w?.close());

/** Score every subject with each model; solve the 3×3 system per subject; count the subjects recovered exactly. */
async function solve(bank: string, ids: [string, string, string]): Promise<number> {
  const scores = [];
  for (const id of ids) {
    const { rows } = await w.sh.score(bank, id, PURPOSE, w.subjects);
    scores.push(new Map(rows.filter((r) => r.status === 'OK').map((r) => [r.uscc, Number(r.score)])));
  }
  let exact = 0;
  for (const u of w.subjects) {
    const [s1, s2, s3] = scores.map((m) => m.get(u));
    if (s1 === undefined || s2 === undefined || s3 === undefined) continue;
    const vat = Math.round(((s2 - s1) / 0.0005) * 100) / 100;
    const cit = Math.round(((s3 - s1) / 0.001) * 100) / 100;
    const sales = Math.round(((s1 - 0.001 * vat - 0.001 * cit) / 0.0001) * 100) / 100;
    const t = w.tax.get(u)!;
    if (vat === t.vat_paid_12m && cit === t.cit_paid_12m && sales === t.taxable_sales_12m) exact++;
  }
  return exact;
}

describe('attack: scoring by differencing models', () => {
  it('three vetted models of one bank: the second is refused at registration, naming the first', async () => {
    w.sh.registerModel(BANK, linear('diff-1', M1));
    await w.sh.approveModel(TAX, 'diff-1');
    const second = await codeOf(() => w.sh.registerModel(BANK, linear('diff-2', M2)));
    const third = await codeOf(() => w.sh.registerModel(BANK, linear('diff-3', M3)));
    let exact = 0;
    if (second === undefined && third === undefined) {
      await w.sh.approveModel(TAX, 'diff-2');
      await w.sh.approveModel(TAX, 'diff-3');
      exact = await solve(BANK, ['diff-1', 'diff-2', 'diff-3']);
    }
    expect({ second, third, exact }).toEqual({
      second: 'SH_ERR_MODEL_EXTRACTION',
      third: 'SH_ERR_MODEL_EXTRACTION',
      exact: 0,
    });
    let err: unknown;
    try {
      w.sh.registerModel(BANK, linear('diff-2', M2));
    } catch (e) {
      err = e;
    }
    // The most exposed field is named: two score differences give vat_paid_12m exactly.
    expect(err).toMatchObject({ details: { provider: TAX, field: 'vat_paid_12m', models: 'diff-1', unexplained: 0 } });
    expect((err as Error).message).toMatch(/diff-1/);
    expect(w.sh.engine.models.get('diff-2')).toBeUndefined();
  });

  it("a second identity of the bank's group is refused the same way; an unrelated bank is not", async () => {
    const branch = await codeOf(() => w.sh.registerModel(BRANCH, linear('diff-branch', M2)));
    expect(branch).toBe('SH_ERR_MODEL_EXTRACTION');
    expect(await codeOf(() => w.sh.registerModel('bank_unrelated', linear('other-entity', M2)))).toBeUndefined();
  });

  it("an operator who skips the engine's rule: the provider's own review refuses the approval", async () => {
    // The platform operator writes the second model straight into its database, as if registered.
    const spec = parseModel(linear('diff-forced', M2));
    const compiled = compileModel(spec, w.sh.engine.datasets.fieldLookup, w.sh.engine.params.t);
    w.sh.engine.store.db
      .prepare(
        'INSERT INTO models (id, bank, kind, spec_json, hash, scale, bound, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      )
      .run(
        spec.id,
        BANK,
        spec.kind,
        JSON.stringify(spec),
        modelHash(spec),
        compiled.scale,
        String(compiled.bound),
        new Date().toISOString(),
      );
    const approval = await codeOf(() => w.sh.approveModel(TAX, 'diff-forced'));
    expect(approval).toBe('SH_ERR_MODEL_EXTRACTION');
    // Scoring with it is refused: the engine finds no approval, and the custodian would not answer for a model its
    // provider never approved.
    expect(await codeOf(() => w.sh.score(BANK, 'diff-forced', PURPOSE, w.subjects.slice(0, 5)))).toBe(
      'SH_ERR_MODEL_NOT_APPROVED',
    );
  });
});

describe('attack: the operator hands the bank every mask', () => {
  it('only the subjects the bank named (and the custodian allowed) decode; every other slot is noise', async () => {
    const seeds = captureSeeds(w);
    const named = w.subjects.slice(0, 10);
    const { result } = await w.sh.score(BANK, 'diff-1', PURPOSE, named);
    const slots = readEverySlot(w, BANK, result, seeds.at(-1)!);
    const rowOf = new Map(w.subjects.map((u, i) => [u, i]));
    const right = (u: string) => slots.get(rowOf.get(u)!) === truth(w, M1, u);
    expect(named.filter(right)).toEqual(named);
    const others = w.subjects.slice(10);
    const leaked = others.filter(right).length;
    expect({ leaked, of: others.length }).toEqual({ leaked: 0, of: others.length });
  });
});

describe("attack: many models on one subject (the custodian's own budget of distinct models)", () => {
  it('a second distinct model of the group within the window is OVER_BUDGET, and its slot is noise even for a colluding operator', async () => {
    const seeds = captureSeeds(w);
    const target = w.subjects.slice(20, 25);
    // A model over fields disjoint from diff-1's: it passes the history rule on its own merits. Registered by the
    // branch: the budget is the group's.
    const B = { months_continuous_tax: '0.1', tax_arrears: '-5', tax_penalties_3y: '-1' };
    w.sh.registerModel(BRANCH, linear('budget-b', B));
    await w.sh.approveModel(TAX, 'budget-b');
    const a = await w.sh.score(BANK, 'diff-1', PURPOSE, target);
    const b = await w.sh.score(BRANCH, 'budget-b', PURPOSE, target); // policy: 1 model per subject per window
    expect(a.rows.map((r) => r.status)).toEqual(target.map(() => 'OK'));
    expect(b.rows.map((r) => r.status)).toEqual(target.map(() => 'OVER_BUDGET'));
    expect(b.rows.map((r) => r.score)).toEqual(target.map(() => ''));
    // Scoring again with a model already counted reveals nothing new and is answered.
    expect((await w.sh.score(BANK, 'diff-1', PURPOSE, target)).rows.map((r) => r.status)).toEqual(
      target.map(() => 'OK'),
    );
    // The operator decodes the refused job's block anyway: the custodian overwrote those slots.
    const slots = readEverySlot(w, BRANCH, b.result, seeds.at(-2)!);
    const rowOf = new Map(w.subjects.map((u, i) => [u, i]));
    const scaled = (u: string) => {
      const t = w.tax.get(u)!;
      return (
        100_000n * BigInt(t.months_continuous_tax!) -
        5_000_000n * BigInt(t.tax_arrears!) -
        1_000_000n * BigInt(t.tax_penalties_3y!)
      );
    };
    expect(target.filter((u) => slots.get(rowOf.get(u)!) === scaled(u))).toEqual([]);
    // The refusal is in the ledger, on each subject's access report.
    const refused = w.sh.engine.ledger.subjectEntries(target[0]!).filter((e) => e.kind === 'score.custodian_refused');
    expect(refused).toHaveLength(1);
    expect(refused[0]!.body).toMatchObject({ code: 'SH_ERR_CUSTODIAN_BUDGET', providers: { [TAX]: target.length } });
    // The auditor replays every job exactly, the custodian's refusal included.
    for (const r of [a, b]) expect(await replay(w.sh, r.jobId)).toMatchObject({ ok: true });
  });
});
