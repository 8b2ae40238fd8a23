/**
 * `safehouse demo`: four providers upload encrypted tables and tokens, enterprises grant (and some revoke or let expire)
 * consents, a bank registers a scorecard that every provider approves, the bank scores all enterprises, and the result
 * is compared with the same scorecard evaluated on the plaintext CSVs; then the ledger is verified.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Safehouse, type ConsentGrant } from './embedded.ts';
import {
  demoGrants,
  generateDemo,
  generateClaims,
  DEMO_BANK,
  DEMO_PURPOSE,
  DEMO_MODEL_ID,
  OUT_OF_SCOPE_CATEGORIES,
} from './demo-data.ts';
import { parseCsv } from '../core/csv.ts';
import { evaluatePlain, claimPlain } from '../models/plain.ts';
import { normalizeId, idRuleFor } from '../engine/tokens/normalize.ts';
import { parseModel } from '../models/model.ts';
import { parseUscc } from '../sandbox/uscc.ts';
import type { FieldSpec } from '../sandbox/catalog.ts';
import { existsSync } from 'node:fs';
import { GERMAN_PATH, germanSplit, trainTestSplit } from '../models/german.ts';
import { runTrain } from './train-run.ts';
import { replayJob } from '../engine/audit/replay.ts';

export interface DemoSummary {
  subjects: number;
  scored: number;
  refused: Record<string, number>;
  expectedRefused: Record<string, number>;
  matchesPlaintext: boolean;
  mismatches: number;
  ledger: { ok: boolean; size: number; checkpoints: number };
  seconds: number;
  timings: Record<string, number>;
  plaintextScoringSeconds: number;
  encryptedScoringSeconds: number;
  verification: {
    claims: number;
    matchesPlaintext: boolean;
    mismatches: number;
    results: Record<string, number>;
    seconds: number;
    ranges: Record<string, string>;
  };
  training:
    | {
        iterations: number;
        trainAuc: number;
        holdoutAuc: number;
        plaintextAuc: number;
        holdoutKs: number;
        privacy: { epsilon: number; delta: number };
        cohort: number;
        excluded: Record<string, number>;
        seconds: number;
        secondsPerIteration: number;
      }
    | { skipped: string };
  replay: { jobs: number; allMatch: boolean; steps: number; notMatching: string[] };
  accessReports: { subjects: number; exact: boolean; mismatches: number };
  home: string;
}

/** The providers' plaintext tables (USCC → field → cell) and field specs: the demo's plaintext truth. */
export function demoPlaintext(
  sh: Safehouse,
  data: ReturnType<typeof generateDemo>,
): { tables: Map<string, Map<string, Map<string, string>>>; fieldSpecs: Map<string, FieldSpec> } {
  const tables = new Map<string, Map<string, Map<string, string>>>();
  const fieldSpecs = new Map<string, FieldSpec>();
  for (const p of Object.values(data.providers)) {
    const csv = parseCsv(p.csv);
    const rowsBy = new Map<string, Map<string, string>>();
    for (const r of csv.rows) rowsBy.set(parseUscc(r[0]!), new Map(csv.header.map((h, i) => [h, r[i]!])));
    tables.set(p.provider, rowsBy);
    for (const f of sh.engine.datasets.current(p.provider)[0]!.schema.fields)
      fieldSpecs.set(`${p.provider}/${f.name}`, f);
  }
  return { tables, fieldSpecs };
}

export async function runDemo(opts: {
  subjects: number;
  claims?: number;
  train?: boolean;
  home?: string;
  log?: (line: string) => void;
  progress?: (label: string, done: number, total: number) => void;
  poolSize?: number;
}): Promise<DemoSummary> {
  const t0 = performance.now();
  const log = opts.log ?? (() => {});
  const timings: Record<string, number> = {};
  const lap = (name: string, since: number) => {
    timings[name] = Number(((performance.now() - since) / 1000).toFixed(3));
  };
  const keepHome = opts.home !== undefined;
  const home = opts.home ?? mkdtempSync(join(tmpdir(), 'safehouse-demo-'));
  const data = generateDemo(opts.subjects);
  const sh = await Safehouse.open({ home, create: true, ...(opts.poolSize ? { poolSize: opts.poolSize } : {}) });
  try {
    let t = performance.now();
    await sh.addParty('bank', DEMO_BANK);
    await sh.addParty('auditor', 'auditor_pboc');
    for (const p of Object.values(data.providers)) await sh.addParty('provider', p.provider);
    lap('parties', t);
    log(
      `parties: bank ${DEMO_BANK}, auditor, providers ${Object.values(data.providers)
        .map((p) => p.provider)
        .join(', ')}`,
    );

    t = performance.now();
    for (const p of Object.values(data.providers)) {
      const r = await sh.ingest(p.provider, p.schema, p.csv);
      log(`ingest ${p.provider}: ${r.subjects} subjects in ${r.blocks} block(s), dataset ${r.datasetId}`);
    }
    lap('ingest', t);

    t = performance.now();
    const grants: ConsentGrant[] = demoGrants(data, sh.engine.now());
    const chunk = 2000;
    for (let i = 0; i < grants.length; i += chunk) {
      sh.grantConsents(grants.slice(i, i + chunk));
      opts.progress?.('consents', Math.min(grants.length, i + chunk), grants.length);
    }
    let revoked = 0;
    for (const u of data.subjects)
      if (data.plan.get(u) === 'REVOKED') {
        sh.revoke({ subject: u, bank: DEMO_BANK });
        revoked++;
      }
    lap('consents', t);
    log(
      `consents: ${grants.length} granted (${grants.length - revoked - [...data.plan.values()].filter((s) => s === 'EXPIRED' || s === 'OUT_OF_SCOPE').length} plain, some expired or out of scope), ${revoked} revoked`,
    );

    t = performance.now();
    const compiled = sh.registerModel(DEMO_BANK, data.model);
    for (const p of new Set(compiled.terms.map((x) => x.provider))) await sh.approveModel(p, DEMO_MODEL_ID);
    lap('model', t);
    log(
      `model ${DEMO_MODEL_ID} (${compiled.terms.length} terms) registered, hash ${compiled.hash.slice(0, 16)}…, approved by all providers`,
    );

    // Each provider's custodian follows the ledger as it grows, as a running one does: it verifies every consent's
    // signature itself, once, before any job asks (docs/trust.md).
    t = performance.now();
    await sh.syncCustodians();
    lap('custodians', t);

    t = performance.now();
    const { rows, jobId: scoreJobId } = await sh.score(DEMO_BANK, DEMO_MODEL_ID, DEMO_PURPOSE, data.subjects, (p) =>
      opts.progress?.(`score:${p.phase}`, p.done, p.total),
    );
    const encryptedScoringSeconds = (performance.now() - t) / 1000;
    lap('score', t);

    // The same scorecard on the plaintext CSVs.
    t = performance.now();
    const spec = parseModel(data.model);
    const { tables, fieldSpecs } = demoPlaintext(sh, data);
    const expected = new Map<string, { status: string; score: string }>();
    for (const u of data.subjects) {
      const plan = data.plan.get(u)!;
      if (plan !== 'OK') {
        expected.set(u, { status: plan, score: '' });
        continue;
      }
      const r = evaluatePlain(
        spec,
        (p, f) => fieldSpecs.get(`${p}/${f}`)!,
        (p, f) => tables.get(p)!.get(u)?.get(f) ?? (tables.get(p)!.has(u) ? '' : undefined),
      );
      expected.set(u, r.status === 'OK' ? { status: 'OK', score: r.score } : { status: 'NO_DATA', score: '' });
    }
    const plaintextScoringSeconds = (performance.now() - t) / 1000;
    lap('plaintext', t);

    let mismatches = 0;
    const refused: Record<string, number> = {};
    const expectedRefused: Record<string, number> = {};
    for (const r of rows) {
      const e = expected.get(r.uscc)!;
      if (e.status !== r.status || e.score !== r.score) mismatches++;
      if (r.status !== 'OK') refused[r.status] = (refused[r.status] ?? 0) + 1;
      if (e.status !== 'OK') expectedRefused[e.status] = (expectedRefused[e.status] ?? 0) + 1;
    }
    // Verification (数据核验): half token claims, half numeric, against the same CSVs in plaintext.
    t = performance.now();
    const claims = generateClaims(
      data,
      opts.claims ?? Math.min(10_000, Math.max(2, Math.floor(data.subjects.length / 2))),
    );
    const {
      results: got,
      result: vres,
      jobId: verifyJobId,
    } = await sh.verify(DEMO_BANK, DEMO_PURPOSE, claims, (p) => opts.progress?.(`verify:${p.phase}`, p.done, p.total));
    const verifySeconds = (performance.now() - t) / 1000;
    lap('verify', t);
    let vMismatch = 0;
    const vCounts: Record<string, number> = {};
    const categoryOf = new Map(Object.entries(data.providers).map(([cat, p]) => [p.provider, cat]));
    for (const c of claims) {
      const plan = data.plan.get(c.subject)!;
      const category = categoryOf.get(c.provider)!;
      const refused =
        plan === 'OK'
          ? undefined
          : plan === 'OUT_OF_SCOPE'
            ? OUT_OF_SCOPE_CATEGORIES.includes(category)
              ? undefined
              : plan
            : plan;
      const f = fieldSpecs.get(`${c.provider}/${c.field}`)!;
      const want = refused
        ? `refused:${refused}`
        : claimPlain(f, tables.get(c.provider)!.get(c.subject)?.get(c.field), c.op, c.values, (v) =>
            normalizeId(idRuleFor(c.field), v),
          );
      const r = got.get(c.claimId) ?? '';
      vCounts[r] = (vCounts[r] ?? 0) + 1;
      if (r !== want) vMismatch++;
    }

    // Joint modeling (联合建模) on the German Credit split: the bank's labels, a provider's encrypted features.
    t = performance.now();
    let training: DemoSummary['training'];
    let gcSubjects: string[] = [];
    let gcTrain = new Set<string>();
    if (opts.train === false) training = { skipped: 'disabled' };
    else if (!existsSync(GERMAN_PATH)) training = { skipped: `German Credit data not found at ${GERMAN_PATH}` };
    else {
      // Two providers under two keys: the second one's features reach the first key by domain transfer.
      const gc = germanSplit({ seed: 7, providers: 2 });
      gcSubjects = gc.subjects;
      gcTrain = new Set(trainTestSplit(gc.subjects, gc.labels, { seed: 42, testFraction: 0.3 }).train);
      for (const p of gc.providers) {
        await sh.addParty('provider', p.provider);
        await sh.ingest(p.provider, p.schema, p.csv);
      }
      const categories = gc.providers.map((p) => (p.schema as { category: string }).category);
      // Most applicants authorized training and scoring for model development; a few did not and are left out.
      const granted = gc.subjects.filter((_, i) => i % 37 !== 5);
      sh.grantConsents(
        granted.map((u) => ({
          subject: u,
          bank: DEMO_BANK,
          purpose: 'model_training',
          categories,
          operations: ['train', 'score'],
          days: 365,
        })),
      );
      const [p1, ...rest] = gc.providers.map((p) => ({
        provider: p.provider,
        fields: (p.schema as { fields: Array<{ name: string }> }).fields.map((f) => f.name),
      }));
      const r = await runTrain(sh, {
        bank: DEMO_BANK,
        provider: p1!.provider,
        fields: p1!.fields,
        others: rest,
        purpose: 'model_training',
        labels: gc.labels,
        modelId: 'gc-scorecard-v1',
        seed: 42,
        ...(opts.progress
          ? {
              onProgress: (x: { iteration: number; iterations: number }) =>
                opts.progress!('train', x.iteration, x.iterations),
            }
          : {}),
      });
      training = {
        iterations: r.iterations,
        trainAuc: r.trainAuc,
        holdoutAuc: r.holdoutAuc,
        plaintextAuc: r.plaintextAuc,
        holdoutKs: r.holdoutKs,
        privacy: r.privacy,
        cohort: r.cohort,
        excluded: r.excluded,
        seconds: r.seconds,
        secondsPerIteration: r.secondsPerIteration,
      };
      log(
        `training on German Credit: ${r.iterations} iterations, hold-out AUC ${r.holdoutAuc.toFixed(4)} vs plaintext ${r.plaintextAuc.toFixed(4)} (privacy noise, ε = ${r.privacy.epsilon})`,
      );
    }
    lap('train', t);

    t = performance.now();
    const audit = sh.engine.auditVerify();
    lap('audit', t);

    // The auditor replays every job in the ledger with the seeds escrowed to it.
    t = performance.now();
    const auditorKeys = sh.wallet.require('auditor_pboc', 'auditor');
    const jobIds = sh.engine.ledger.entriesOfKind('job.requested').map((e) => String(e.body.jobId));
    const replays = [];
    for (const [i, id] of jobIds.entries()) {
      replays.push(
        await replayJob(sh.engine, id, { id: 'auditor_pboc', x25519SecretKey: auditorKeys.x25519!.secretKey }),
      );
      opts.progress?.('replay', i + 1, jobIds.length);
    }
    const replay = {
      jobs: replays.length,
      allMatch: replays.every((r) => r.ok),
      steps: replays.reduce((a, r) => a + r.steps.length, 0),
      notMatching: replays
        .flatMap((r) => r.steps.filter((x) => x.status !== 'match').map((x) => `${r.jobId} ${x.status} ${x.step}`))
        .slice(0, 10),
    };
    lap('replay', t);
    log(
      `replay: ${replay.jobs} jobs, ${replay.steps} steps, ${replay.allMatch ? 'all match' : `NOT ALL MATCH: ${replay.notMatching.join('; ')}`}`,
    );

    // Access reports: each demo subject's report lists exactly the jobs the generator's plan says touched it.
    t = performance.now();
    const claimSubjects = new Set(claims.map((c) => c.subject));
    const gcSet = new Set(gcSubjects);
    // German Credit applicants: the training job (its 70 % split, seed 42 as runTrain uses) and the hold-out scoring job.
    const kindOf = (id: string) => sh.engine.jobs.get(id)!.kind;
    const gcJobs = jobIds.filter((id) => id !== scoreJobId && id !== verifyJobId);
    const trainJob = gcJobs.filter((id) => kindOf(id) === 'train');
    const holdoutJob = gcJobs.filter((id) => kindOf(id) === 'score');
    const demoSubjects = new Set(data.subjects);
    let reportMismatches = 0;
    for (const u of new Set([...data.subjects, ...gcSubjects])) {
      const want = [
        ...(demoSubjects.has(u) ? [scoreJobId] : []),
        ...(claimSubjects.has(u) ? [verifyJobId] : []),
        ...(gcSet.has(u) ? holdoutJob : []),
        ...(gcTrain.has(u) ? trainJob : []),
      ].sort();
      const got = sh.engine.ledger
        .subjectEntries(u)
        .filter((e) => e.kind === 'job.requested')
        .map((e) => String(e.body.jobId))
        .sort();
      if (JSON.stringify(got) !== JSON.stringify(want)) reportMismatches++;
    }
    const accessReports = {
      subjects: new Set([...data.subjects, ...gcSubjects]).size,
      exact: reportMismatches === 0,
      mismatches: reportMismatches,
    };
    lap('reports', t);
    return {
      subjects: data.subjects.length,
      scored: rows.filter((r) => r.status === 'OK').length,
      refused,
      expectedRefused,
      matchesPlaintext: mismatches === 0 && rows.length === data.subjects.length,
      mismatches,
      ledger: audit.ok
        ? { ok: true, size: audit.size, checkpoints: audit.checkpoints }
        : { ok: false, size: sh.engine.ledger.size(), checkpoints: 0 },
      seconds: Number(((performance.now() - t0) / 1000).toFixed(3)),
      timings,
      plaintextScoringSeconds: Number(plaintextScoringSeconds.toFixed(4)),
      encryptedScoringSeconds: Number(encryptedScoringSeconds.toFixed(3)),
      training,
      verification: {
        claims: claims.length,
        matchesPlaintext: vMismatch === 0 && got.size === claims.length,
        mismatches: vMismatch,
        results: vCounts,
        seconds: Number(verifySeconds.toFixed(3)),
        ranges: vres.ranges,
      },
      replay,
      accessReports,
      home: keepHome ? home : '(temporary, removed)',
    };
  } finally {
    await sh.close();
    if (!keepHome) rmSync(home, { recursive: true, force: true });
  }
}
