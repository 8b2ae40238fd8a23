/**
 * The network deployment end to end: the engine and two custodians run as separate processes on 127.0.0.1, and consent → ingest →
 * joint training → model approval → hold-out evaluation → scoring → verification → audit verify run through the CLI's
 * client mode
 * (api/demo-network.ts). The same scenario in embedded mode (one process, api/embedded.ts) must give the same trained
 * model, the same scores and the same claim answers; both are also checked against plaintext.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, readdirSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  runNetwork,
  writeScenario,
  NET_BANK,
  NET_AUDITOR,
  NET_PURPOSE,
  type NetworkRun,
} from '../../api/demo-network.ts';
import { Safehouse } from '../../api/embedded.ts';
import { holdoutMetrics } from '../../api/train-run.ts';
import { parseCsv } from '../../core/csv.ts';
import { trainTestSplit } from '../../models/german.ts';
import { toScorecard } from '../../models/export.ts';
import { trainOptions } from '../../models/train.ts';
import { parseModel } from '../../models/model.ts';
import { evaluatePlain } from '../../models/plain.ts';
import { validateSchema } from '../../sandbox/catalog.ts';
import type { ConsentOp } from '../../sandbox/consent.ts';
import type { Claim } from '../../engine/protocols/verify/messages.ts';

const ITERATIONS = 4;
let dir: string;
let net: NetworkRun;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sh-net-e2e-'));
  net = await runNetwork({ dir: join(dir, 'net'), iterations: ITERATIONS, claims: 30 });
}, 600_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the servers’ logs of the whole run', () => {
  it('are structured lines naming routes, statuses and jobs — never a USCC, a value or a score in clear', () => {
    const logDir = join(dir, 'net', 'logs');
    const text = readdirSync(logDir)
      .map((f) => readFileSync(join(logDir, f), 'utf8'))
      .join('\n');
    const lines = text.split('\n').filter((l) => l.startsWith('{'));
    const records = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    // There is something to read: one line per request and per job, with what an operator needs.
    const requests = records.filter((r) => r.msg === 'request');
    expect(requests.length).toBeGreaterThan(100);
    for (const r of requests)
      expect(Object.keys(r)).toEqual(expect.arrayContaining(['reqId', 'route', 'status', 'ms']));
    expect(records.some((r) => r.msg === 'job.finished' && r.kind === 'score' && r.status === 'done')).toBe(true);
    expect(requests.some((r) => typeof r.party === 'string' && String(r.party).startsWith('enterprise#'))).toBe(true);
    // Nothing the data, the consents or the results hold appears anywhere in them.
    const sc = net.scenario;
    const leaked: string[] = [];
    for (const u of sc.values.keys()) if (text.includes(u)) leaked.push(u);
    const distinctive = new Set<string>();
    for (const row of sc.values.values())
      for (const v of row.values()) if (/^\d{4,}(\.\d+)?$/.test(v) || /^\d+\.\d{2,}$/.test(v)) distinctive.add(v);
    for (const s of net.scores.values()) if (s.score.length >= 6) distinctive.add(s.score);
    // A value is leaked when it appears as a JSON value, not as a digit run inside a hash or a time.
    for (const v of distinctive) if (new RegExp(`[":,\\s]${v.replace('.', '\\.')}["},\\s]`).test(text)) leaked.push(v);
    expect(leaked).toEqual([]);
    expect(distinctive.size).toBeGreaterThan(50);
  });
});

describe('network deployment (engine + 2 custodians as processes, CLI client mode)', () => {
  it('scores, claim answers and refusals equal plaintext; the auditor verifies the ledger on its side', () => {
    const sc = net.scenario;
    const model = parseModel(net.model);
    const specs = new Map(
      sc.providers.flatMap((p) => validateSchema(p.schema).fields.map((f) => [`${p.provider}/${f.name}`, f] as const)),
    );
    const refused = [...net.scores].filter(([, s]) => s.status !== 'OK').map(([u, s]) => [u, s.status] as const);
    expect(new Map(refused)).toEqual(new Map(sc.withoutConsent.map((u) => [u, 'NO_CONSENT'])));
    let compared = 0;
    for (const [u, s] of net.scores) {
      if (s.status !== 'OK') continue;
      const plain = evaluatePlain(
        model,
        (p, f) => specs.get(`${p}/${f}`)!,
        (_p, f) => sc.values.get(u)!.get(f),
      );
      expect(plain).toEqual({ status: 'OK', score: s.score });
      compared++;
    }
    expect(compared).toBe(1000 - sc.withoutConsent.length);
    expect(net.claims).toEqual(sc.expectedClaims);
    expect(new Set(net.claims.values())).toEqual(new Set(['yes', 'no']));
    expect(net.audit).toMatch(/^ledger intact: \d+ entries/);
    // Every job (train, the hold-out evaluation's score, score, verify) replayed by the auditor's client on its own
    // replica: all steps match.
    const replayed = net.replay.split('\n').filter((l) => /^\S+ \((score|verify|train)\): /.test(l));
    expect(replayed.map((l) => l.replace(/^\S+ /, ''))).toEqual([
      '(train): all steps match',
      '(score): all steps match',
      '(score): all steps match',
      '(verify): all steps match',
    ]);
    // The enterprise's own access report: its consent and the jobs that touched it.
    expect(net.report.entries).toBeGreaterThanOrEqual(3);
  });

  it('embedded mode on the same data and seeds gives a model of the same shape, the same scores and answers', async () => {
    const sc = writeScenario(join(dir, 'emb-data'), { claims: 30 });
    const sh = await Safehouse.open({ home: join(dir, 'emb'), create: true });
    try {
      await sh.addParty('bank', NET_BANK);
      await sh.addParty('auditor', NET_AUDITOR);
      for (const p of sc.providers) {
        await sh.addParty('provider', p.provider);
        await sh.ingest(p.provider, p.schema, readFileSync(p.csvFile, 'utf8'));
      }
      const consents = parseCsv(readFileSync(sc.consentsFile, 'utf8'));
      sh.grantConsents(
        consents.rows.map((r) => ({
          subject: r[0]!,
          bank: r[1]!,
          purpose: r[2]!,
          categories: r[3]!.split(';'),
          operations: r[4]!.split(';') as ConsentOp[],
          days: Number(r[5]),
        })),
      );
      const labels = new Map(
        parseCsv(readFileSync(sc.labelsFile, 'utf8')).rows.map((r) => [
          r[0]!,
          r[1] === '1' ? (1 as const) : (0 as const),
        ]),
      );
      const { train, test } = trainTestSplit([...labels.keys()], labels, { seed: 42, testFraction: 0.3 });
      const byProvider = new Map<string, string[]>();
      for (const f of sc.fields.split(',')) {
        const [p, name] = [f.slice(0, f.indexOf('.')), f.slice(f.indexOf('.') + 1)];
        byProvider.set(p, [...(byProvider.get(p) ?? []), name]);
      }
      const [first, second] = sc.providers;
      const outcome = await sh.train({
        bank: NET_BANK,
        provider: first!.provider,
        purpose: NET_PURPOSE,
        fields: byProvider.get(first!.provider)!,
        others: [{ provider: second!.provider, fields: byProvider.get(second!.provider)! }],
        subjects: train,
        labels,
        bins: 5,
        options: { iterations: ITERATIONS },
      });
      const model = toScorecard(
        'gc-network-v1',
        outcome.bins,
        outcome.model,
        trainOptions({ iterations: ITERATIONS }).scaleBits,
      );
      // Each key holder's custodian draws fresh privacy noise (docs/privacy.md "Training"), so the two trainings give
      // the same bins and model shape but different weights; each run's replay checks its sums against its own noise.
      const shape = (m: unknown) =>
        JSON.parse(JSON.stringify(m, (k, v) => (k === 'points' || k === 'intercept' ? undefined : v))) as unknown;
      expect(shape(model)).toEqual(shape(net.model));
      expect(model).not.toEqual(net.model);

      // The network's model, registered here, scores the same subjects to the same exact values.
      const netModel = parseModel(net.model);
      sh.registerModel(NET_BANK, netModel);
      for (const p of sc.providers) await sh.approveModel(p.provider, netModel.id);
      const subjects = readFileSync(sc.subjectsFile, 'utf8').split('\n').filter(Boolean);
      const { rows } = await sh.score(NET_BANK, netModel.id, NET_PURPOSE, subjects);
      expect(new Map(rows.map((r) => [r.uscc, { status: r.status, score: r.score }]))).toEqual(net.scores);
      // `safehouse evaluate` over the network scored the hold-out subjects train wrote: the same metrics as here.
      const holdout = holdoutMetrics(rows, test, labels, 'logit');
      expect(net.evaluate).toEqual({
        jobId: expect.any(String),
        model: 'gc-network-v1',
        holdout: test.length,
        scored: holdout.scored,
        notScored: holdout.notScored,
        holdoutAuc: holdout.auc,
        holdoutKs: holdout.ks,
      });

      const claims: Claim[] = parseCsv(readFileSync(sc.claimsFile, 'utf8')).rows.map((r) => ({
        claimId: r[0]!,
        subject: r[1]!,
        provider: r[2]!,
        field: r[3]!,
        op: r[4] as Claim['op'],
        values: r[4] === 'between' ? [r[5]!, r[6]!] : [r[5]!],
      }));
      const { results } = await sh.verify(NET_BANK, NET_PURPOSE, claims);
      expect(new Map([...results].map(([k, v]) => [k, String(v)]))).toEqual(net.claims);
      expect(sh.engine.auditVerify().ok).toBe(true);
    } finally {
      await sh.close();
    }
  }, 600_000);
});
