/**
 * Jobs cut off by a crash (docs/operations.md "Crash safety"), in embedded mode: the engine "dies" at a chosen step —
 * the test stops answering the job's promise there, as a killed process would, and opens a second engine and second
 * custodians on the same data directory, as a restarted one does. A resumed scoring or verification job ends with
 * the result an uninterrupted run gives (checked against the plaintext), each label answered once by its custodian
 * (nothing decrypted twice), each ledger leaf written once, and its auditor's replay matching. A job failed instead
 * gives its budget back — the engine's at once, each custodian's only when it answered nothing for the job.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Safehouse } from '../../../api/embedded.ts';
import { buildScoreRequest, openScoreResult } from '../../../engine/protocols/score/bank.ts';
import { runScoreJob } from '../../../engine/protocols/score/run.ts';
import { buildVerifyRequest, openVerifyResult } from '../../../engine/protocols/verify/bank.ts';
import { runVerifyJob } from '../../../engine/protocols/verify/run.ts';
import type { Claim } from '../../../engine/protocols/verify/messages.ts';
import { SafehouseError } from '../../../core/errors.ts';
import { formatFixed } from '../../../core/fixed.ts';
import { BANK, PURPOSE, SECRET, TAX, AUDITOR, linear, openWorld, truth, type World } from '../../attacks/fixture.ts';
import { replayJob } from '../../../engine/audit/replay.ts';

const WEIGHTS = { vat_paid_12m: '0.001', cit_paid_12m: '0.001', taxable_sales_12m: '0.0001' };

let w: World;
beforeAll(async () => {
  w = await openWorld({ subjects: 40 });
  w.sh.registerModel(BANK, linear('resume-1', WEIGHTS));
  await w.sh.approveModel(TAX, 'resume-1');
}, 180_000);
/** The engines that "died": closed at the end (their cut-off job never goes on). */
const dead: Safehouse[] = [];
afterAll(async () => {
  for (const d of dead) await d.close().catch(() => {});
  await w?.close();
});

/** The custodian's own journal lines for a job (what it answered, refused, refunded). */
function journal(sh: Safehouse, provider: string, jobId: string): Array<Record<string, unknown>> {
  const file = join(sh.wallet.providerDir(provider), 'custodian.log');
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((e) => e.jobId === jobId);
}

/** Play a crash: the custodian call `method` of `provider` runs (or not, `before`) and the engine never hears back. */
function dieAt(sh: Safehouse, provider: string, method: 'decrypt' | 'openJob' | 'evaluateTokens', before = false) {
  const c = sh.engine.registry.custodian(provider) as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  const real = c[method]!.bind(c);
  c[method] = async (...a: unknown[]) => {
    if (!before) await real(...a);
    return new Promise(() => {});
  };
}

/** A second engine and custodians on the same directory: the restart. */
async function restart(): Promise<Safehouse> {
  return Safehouse.open({ home: w.home, poolSize: 1 });
}

function scoreRequest(subjects: string[]) {
  const k = w.sh.wallet.require(BANK, 'bank');
  const m = w.sh.engine.models.get('resume-1')!;
  return buildScoreRequest(
    {
      jobId: w.sh.engine.jobs.newId('score'),
      bank: BANK,
      modelId: 'resume-1',
      modelHash: m.hash,
      purpose: PURPOSE,
      subjects,
    },
    k.ed25519.secretKey,
  );
}

const expectedScore = (u: string) => formatFixed(truth(w, WEIGHTS, u), 8);
const kinds = (sh: Safehouse, jobId: string) => sh.engine.ledger.jobEntries(jobId).map((e) => e.kind);

describe('a scoring job cut off by a crash resumes to the uninterrupted result', () => {
  for (const [when, method, before] of [
    ['after its custodian answered, before the engine recorded the answer', 'decrypt', false],
    ['before its custodian saw the ciphertext', 'decrypt', true],
    ['before the job was shown to the custodian', 'openJob', true],
  ] as const) {
    it(
      when,
      async () => {
        const subjects = w.subjects.slice(0, 20);
        const signed = scoreRequest(subjects);
        const jobId = signed.body.jobId;
        const first = await Safehouse.open({ home: w.home, poolSize: 1 });
        dead.push(first);
        dead.push(first);
        dieAt(first, TAX, method, before);
        void runScoreJob(first.engine, signed);
        // Wait until the first run reached the step it dies at (its job is recorded as running).
        for (let i = 0; i < 200 && first.engine.jobs.get(jobId)?.status !== 'running'; i++)
          await new Promise((r) => setTimeout(r, 25));
        await new Promise((r) => setTimeout(r, 1500));
        expect(first.engine.jobs.get(jobId)?.status).toBe('running');

        const again = await restart();
        const decryptions: string[] = [];
        const c = again.engine.registry.custodian(TAX) as unknown as { decrypt: (...a: unknown[]) => Promise<unknown> };
        const real = c.decrypt.bind(c);
        c.decrypt = async (...a: unknown[]) => {
          decryptions.push('asked');
          return real(...a);
        };
        const result = await runScoreJob(again.engine, signed, { resume: true });
        const k = again.wallet.require(BANK, 'bank');
        const rows = openScoreResult(result, BANK, k.x25519!.secretKey);
        // Encrypted == plaintext, exactly as an uninterrupted run.
        expect(rows.map((r) => [r.uscc, r.status, r.score])).toEqual(subjects.map((u) => [u, 'OK', expectedScore(u)]));
        // The custodian answered the block once; the resumed run took that answer when there was one.
        const answers = journal(again, TAX, jobId).filter((e) => typeof e.responseHash === 'string');
        expect(answers).toHaveLength(1);
        if (method === 'decrypt' && !before) expect(decryptions).toHaveLength(0);
        // One request, one response, one completion in the ledger; the job row completed; its seed no longer kept.
        const ks = kinds(again, jobId);
        expect(ks.filter((x) => x === 'job.requested')).toHaveLength(1);
        expect(ks.filter((x) => x === 'custodian.response')).toHaveLength(1);
        expect(ks.filter((x) => x === 'job.completed')).toHaveLength(1);
        expect(ks).not.toContain('job.failed');
        expect(again.engine.jobs.secret(jobId)).toBeUndefined();
        // The auditor replays it bit for bit (the first run's re-randomizer where its answer was taken).
        const a = again.wallet.require(AUDITOR, 'auditor');
        const report = await replayJob(again.engine, jobId, { id: AUDITOR, x25519SecretKey: a.x25519!.secretKey });
        expect(report.steps.filter((s) => s.status !== 'match')).toEqual([]);
        expect(report.ok).toBe(true);
        await again.close();
      },
      120_000,
    );
  }

  it('refuses to resume a request that is not the recorded running job (coded, nothing written)', async () => {
    const signed = scoreRequest(w.subjects.slice(0, 3));
    const before = w.sh.engine.ledger.size();
    await expect(runScoreJob(w.sh.engine, signed, { resume: true })).rejects.toMatchObject({
      code: 'SH_ERR_INVALID_ARGUMENT',
    });
    expect(w.sh.engine.ledger.size()).toBe(before);
    expect(w.sh.engine.jobs.get(signed.body.jobId)).toBeUndefined();
  });
});

describe('a verification job cut off by a crash', () => {
  function claims(): Claim[] {
    return w.subjects.slice(20, 26).map((u, i) => ({
      claimId: `r${i}`,
      subject: u,
      provider: TAX,
      field: SECRET,
      op: 'gte' as const,
      values: [String(w.tax.get(u)![SECRET]! + (i % 2 ? 1 : 0))],
    }));
  }

  it('resumes to the uninterrupted answers, spending its budget once', async () => {
    const cs = claims();
    const k = w.sh.wallet.require(BANK, 'bank');
    const { signed, openings } = buildVerifyRequest(
      { jobId: w.sh.engine.jobs.newId('verify'), bank: BANK, purpose: PURPOSE, claims: cs },
      k.ed25519.secretKey,
    );
    const jobId = signed.body.jobId;
    const first = await Safehouse.open({ home: w.home, poolSize: 1 });
    dead.push(first);
    dieAt(first, TAX, 'decrypt');
    void runVerifyJob(first.engine, signed, openings);
    for (let i = 0; i < 400 && !kinds(first, jobId).includes('job.escrowed'); i++)
      await new Promise((r) => setTimeout(r, 25));
    await new Promise((r) => setTimeout(r, 1500));
    const spent = first.engine.store.db
      .prepare('SELECT COALESCE(SUM(units), 0) AS u FROM verify_spend WHERE job_id = ?')
      .get(jobId) as { u: number };
    expect(Number(spent.u)).toBeGreaterThan(0);

    const again = await restart();
    const result = await runVerifyJob(again.engine, signed, openings, { resume: true });
    const answers = openVerifyResult(
      result,
      BANK,
      k.x25519!.secretKey,
      cs.map((c) => c.claimId),
    );
    // value ≥ value is yes, value ≥ value + 1 is no: the plaintext comparison.
    expect(cs.map((c, i) => [c.claimId, answers.get(c.claimId)])).toEqual(
      cs.map((c, i) => [c.claimId, i % 2 ? 'no' : 'yes']),
    );
    const after = again.engine.store.db
      .prepare('SELECT COALESCE(SUM(units), 0) AS u FROM verify_spend WHERE job_id = ?')
      .get(jobId) as { u: number };
    expect(Number(after.u)).toBe(Number(spent.u));
    const ks = kinds(again, jobId);
    expect(ks.filter((x) => x === 'job.escrowed')).toHaveLength(1);
    expect(ks.filter((x) => x === 'verify.budget_used')).toHaveLength(1);
    expect(ks.filter((x) => x === 'job.completed')).toHaveLength(1);
    const labels = journal(again, TAX, jobId)
      .filter((e) => typeof e.responseHash === 'string')
      .map((e) => e.label);
    expect(new Set(labels).size).toBe(labels.length);
    const a = again.wallet.require(AUDITOR, 'auditor');
    const report = await replayJob(again.engine, jobId, { id: AUDITOR, x25519SecretKey: a.x25519!.secretKey });
    expect(report.steps.filter((s) => s.status !== 'match')).toEqual([]);
    await again.close();
  }, 120_000);
});

describe('a job failed after a crash gives back what it did not use', () => {
  it('the engine refunds its verification units; a custodian that answered nothing refunds its own', async () => {
    const k = w.sh.wallet.require(BANK, 'bank');
    const cs = [
      { claimId: 'f0', subject: w.subjects[30]!, provider: TAX, field: SECRET, op: 'gte' as const, values: ['1'] },
    ];
    const { signed, openings } = buildVerifyRequest(
      { jobId: w.sh.engine.jobs.newId('verify'), bank: BANK, purpose: PURPOSE, claims: cs },
      k.ed25519.secretKey,
    );
    const jobId = signed.body.jobId;
    const first = await Safehouse.open({ home: w.home, poolSize: 1 });
    dead.push(first);
    dieAt(first, TAX, 'decrypt', true); // shown to the custodian (budget spent there), nothing decrypted
    void runVerifyJob(first.engine, signed, openings);
    for (let i = 0; i < 400 && !journal(first, TAX, jobId).some((e) => e.opened); i++)
      await new Promise((r) => setTimeout(r, 25));
    await new Promise((r) => setTimeout(r, 500));
    const again = await restart();
    again.engine.jobs.fail(jobId, new SafehouseError('SH_ERR_INTERRUPTED', 'test: cut off'));
    again.engine.jobs.fail(jobId, new SafehouseError('SH_ERR_INTERRUPTED', 'test: once only'));
    const failed = again.engine.ledger.jobEntries(jobId).filter((e) => e.kind === 'job.failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]!.body).toMatchObject({
      code: 'SH_ERR_INTERRUPTED',
      refunded: { verifyUnits: expect.any(Number) },
    });
    const left = again.engine.store.db
      .prepare('SELECT COUNT(*) AS n FROM verify_spend WHERE job_id = ?')
      .get(jobId) as {
      n: number;
    };
    expect(Number(left.n)).toBe(0);
    await again.syncCustodians();
    expect(journal(again, TAX, jobId).filter((e) => e.refunded)).toHaveLength(1);
    // Following the ledger again (a restarted custodian re-reads it all) refunds nothing twice.
    const third = await restart();
    await third.syncCustodians();
    expect(journal(third, TAX, jobId).filter((e) => e.refunded)).toHaveLength(1);
    const a = third.wallet.require(AUDITOR, 'auditor');
    const report = await replayJob(third.engine, jobId, { id: AUDITOR, x25519SecretKey: a.x25519!.secretKey });
    expect(report.steps.filter((s) => s.status !== 'match')).toEqual([]);
    await third.close();
    await again.close();
  }, 120_000);

  it('attack: the operator fails a job its custodian answered, to buy the budget back — the custodian refunds nothing', async () => {
    const k = w.sh.wallet.require(BANK, 'bank');
    const cs = [
      { claimId: 'g0', subject: w.subjects[31]!, provider: TAX, field: SECRET, op: 'gte' as const, values: ['1'] },
    ];
    const { signed, openings } = buildVerifyRequest(
      { jobId: w.sh.engine.jobs.newId('verify'), bank: BANK, purpose: PURPOSE, claims: cs },
      k.ed25519.secretKey,
    );
    const jobId = signed.body.jobId;
    const first = await Safehouse.open({ home: w.home, poolSize: 1 });
    dead.push(first);
    dieAt(first, TAX, 'decrypt'); // the custodian answers; the operator then writes job.failed
    void runVerifyJob(first.engine, signed, openings);
    for (let i = 0; i < 400 && !journal(first, TAX, jobId).some((e) => e.responseHash); i++)
      await new Promise((r) => setTimeout(r, 25));
    const again = await restart();
    again.engine.jobs.fail(jobId, new SafehouseError('SH_ERR_INTERRUPTED', 'operator says so'));
    await again.syncCustodians();
    const lines = journal(again, TAX, jobId);
    expect(lines.some((e) => e.responseHash)).toBe(true);
    expect(lines.filter((e) => e.refunded)).toHaveLength(0);
    const a = again.wallet.require(AUDITOR, 'auditor');
    const report = await replayJob(again.engine, jobId, { id: AUDITOR, x25519SecretKey: a.x25519!.secretKey });
    expect(report.steps.filter((s) => s.status !== 'match')).toEqual([]);
    expect(report.steps.at(-1)).toMatchObject({ step: 'outcome', status: 'match' });
    // Its kept answer is dropped once the job is finished: nothing to hand out again.
    const hash = (lines.find((e) => e.opened)!.opened as string) ?? '';
    const cust = again.engine.registry.custodian(TAX);
    expect(await cust.answered!(hash, String(lines.find((e) => e.responseHash)!.label))).toBeUndefined();
    await again.close();
  }, 120_000);
});

describe("an auditor's replay of failed jobs", () => {
  it('a job that failed before any custodian answered replays, the failure a step of its own', async () => {
    const sh = await restart();
    const c = sh.engine.registry.custodian(TAX) as unknown as { openJob: (...a: unknown[]) => Promise<unknown> };
    c.openJob = async () => {
      throw new SafehouseError('SH_ERR_UNAVAILABLE', 'test: custodian down');
    };
    const signed = scoreRequest(w.subjects.slice(0, 5));
    await expect(runScoreJob(sh.engine, signed)).rejects.toMatchObject({ code: 'SH_ERR_UNAVAILABLE' });
    const failed = sh.engine.ledger.jobEntries(signed.body.jobId).filter((e) => e.kind === 'job.failed');
    expect(failed.map((e) => e.body.code)).toEqual(['SH_ERR_UNAVAILABLE']);
    const a = sh.wallet.require(AUDITOR, 'auditor');
    const report = await replayJob(sh.engine, signed.body.jobId, { id: AUDITOR, x25519SecretKey: a.x25519!.secretKey });
    expect(report.steps.filter((s) => s.status !== 'match')).toEqual([]);
    expect(report.steps.find((s) => s.step === 'outcome')).toMatchObject({ status: 'match' });
    expect(report.ok).toBe(true);
    await sh.close();
  }, 60_000);
});
