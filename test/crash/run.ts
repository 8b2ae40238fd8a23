/**
 * `npm run test:crash` (docs/operations.md "Crash safety"): the network deployment as processes on 127.0.0.1 — the
 * engine (`safehouse serve`) and two custodians — with banks, enterprises and a provider as in-process clients. Each
 * round starts one operation (ingest, consent grant, scoring, verification, training), then `kill -9`s the engine
 * (50 rounds) or a custodian (20) at a random moment of it and restarts the process. After every round the operation
 * must have ended as an uninterrupted run does — scores and answers equal to the plaintext, consents and datasets
 * there once — or, where docs/operations.md says so, with one coded failure; after all rounds no job is left without
 * an ending or ended twice, no consent is doubled, no blob is partial or unreferenced, the ledger verifies and the
 * auditor's `audit replay --all` exits 0. The tally is printed; the exit code is 0 only when every check held.
 *
 * Bounded: every wait has a deadline; a round that does not finish within it is a failure, not a hang.
 * Longer than 400 lines: five operations and their checks, the rounds, and the final audit.
 */
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { NET_AUDITOR, NET_BANK, NET_PURPOSE, cli } from '../../api/demo-network.ts';
import { INGEST, MODEL_ID, deploy } from './deployment.ts';
import { Client, newJobId } from '../../api/client/http.ts';
import { ProviderClient } from '../../api/client/provider.ts';
import { enterpriseKeys } from '../../api/client/enterprise.ts';
import { submitJob, train } from '../../api/client/bank.ts';
import { readKeyFile } from '../../api/keys.ts';
import { parseCsv } from '../../core/csv.ts';
import { mulberry32 } from '../../core/rng.ts';
import { buildScoreRequest, openScoreResult } from '../../engine/protocols/score/bank.ts';
import type { ScoreResult } from '../../engine/protocols/score/messages.ts';
import { buildVerifyRequest, openVerifyResult } from '../../engine/protocols/verify/bank.ts';
import type { Claim, ClaimOp, VerifyResult } from '../../engine/protocols/verify/messages.ts';
import { createConsent } from '../../sandbox/consent.ts';
import { evaluatePlain } from '../../models/plain.ts';
import { parseModel } from '../../models/model.ts';
import { validateSchema } from '../../sandbox/catalog.ts';

const ENGINE_KILLS = Number(process.env.CRASH_ENGINE_KILLS ?? 50);
const CUSTODIAN_KILLS = Number(process.env.CRASH_CUSTODIAN_KILLS ?? 20);
const PORT = Number(process.env.CRASH_PORT ?? 18710);
const ROUND_DEADLINE_MS = 240_000;
/** Codes a job may end with after a crash, as docs/operations.md states them (training does not resume). */
const STATED = new Set(['SH_ERR_INTERRUPTED', 'SH_ERR_UNAVAILABLE']);

const rnd = mulberry32(Number(process.env.CRASH_SEED ?? 20261204));
const dir = process.env.CRASH_DIR ? resolve(process.env.CRASH_DIR) : mkdtempSync(join(tmpdir(), 'sh-crash-'));
mkdirSync(dir, { recursive: true });
const say = (l: string) => process.stdout.write(l + '\n');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- the deployment

const t0 = performance.now();
const d = await deploy(dir, { port: PORT });
const { sc, home, keys, url, engine, custodians, modelFile, logs } = d;
const S = ['--server', url];
say(`set-up: ${((performance.now() - t0) / 1000).toFixed(1)} s (engine, 2 custodians, ${sc.values.size} subjects)`);

// ---------------------------------------------------------------- the plaintext truth

const model = parseModel(JSON.parse(readFileSync(modelFile, 'utf8')));
const specs = new Map(
  sc.providers.flatMap((p) => validateSchema(p.schema).fields.map((f) => [`${p.provider}/${f.name}`, f] as const)),
);
const noConsent = new Set(sc.withoutConsent);
function expectedRow(u: string): { status: string; score: string } {
  if (noConsent.has(u)) return { status: 'NO_CONSENT', score: '' };
  const v = sc.values.get(u)!;
  const plain = evaluatePlain(
    model,
    (p, f) => specs.get(`${p}/${f}`)!,
    (_p, f) => v.get(f),
  );
  return plain.status === 'OK' ? { status: 'OK', score: plain.score } : { status: 'NO_DATA', score: '' };
}
const subjects = readFileSync(sc.subjectsFile, 'utf8').trim().split('\n');
const claimRows = parseCsv(readFileSync(sc.claimsFile, 'utf8')).rows;
const labels = new Map(parseCsv(readFileSync(sc.labelsFile, 'utf8')).rows.map((r) => [r[0]!, Number(r[1]) as 0 | 1]));
const fieldsBy = new Map<string, string[]>();
for (const pf of sc.fields.split(',')) {
  const [p, f] = pf.split('.') as [string, string];
  fieldsBy.set(p, [...(fieldsBy.get(p) ?? []), f]);
}
const bank = new Client(url, readKeyFile(join(keys, `${NET_BANK}.key`)));
const keyOf = enterpriseKeys(join(keys, 'enterprises'));
const ingester = new ProviderClient(url, join(keys, INGEST));
const demoCsv = readFileSync(sc.providers[1]!.csvFile, 'utf8');
const ingestSchema = sc.providers[1]!.schema;
const ingestCategory = sc.providers[1]!.category;

// ---------------------------------------------------------------- operations

type Outcome = { ok: boolean; code?: string; detail?: string; jobId?: string };
const code = (err: unknown) => (err as { code?: string }).code ?? String((err as Error).message ?? err);
const grantedConsents: string[] = [];
const ingested: string[] = [];

let scoreRound = 0;
async function opScore(): Promise<Outcome> {
  const k = scoreRound++;
  const batch = Array.from({ length: 120 }, (_, i) => subjects[(k * 120 + i) % subjects.length]!);
  const m = await bank.get<{ hash: string }>(`/v1/bank/models/${MODEL_ID}`);
  const jobId = newJobId('score');
  const signed = buildScoreRequest(
    { jobId, bank: NET_BANK, modelId: MODEL_ID, modelHash: m.hash, purpose: NET_PURPOSE, subjects: batch },
    bank.keys.ed25519.secretKey,
  );
  try {
    await submitJob(bank, { kind: 'score', request: signed });
    await bank.waitJob(jobId, { timeoutMs: ROUND_DEADLINE_MS });
  } catch (err) {
    return { ok: STATED.has(code(err)), code: code(err), jobId };
  }
  const result = await bank.get<ScoreResult>(`/v1/bank/jobs/${jobId}/result`);
  const rows = openScoreResult(result, NET_BANK, bank.keys.x25519!.secretKey);
  const wrong = rows.filter((r) => {
    const e = expectedRow(r.uscc);
    return r.status !== e.status || r.score !== e.score;
  });
  return { ok: wrong.length === 0, jobId, ...(wrong.length ? { detail: `${wrong.length} scores differ` } : {}) };
}

let claimCursor = 0;
async function opVerify(): Promise<Outcome> {
  const rows = claimRows.slice(claimCursor, claimCursor + 10);
  claimCursor += 10;
  const claims: Claim[] = rows.map((r) => ({
    claimId: r[0]!,
    subject: r[1]!,
    provider: r[2]!,
    field: r[3]!,
    op: r[4] as ClaimOp,
    values: r[6] ? [r[5]!, r[6]] : [r[5]!],
  }));
  const jobId = newJobId('verify');
  const { signed, openings } = buildVerifyRequest(
    { jobId, bank: NET_BANK, purpose: NET_PURPOSE, claims },
    bank.keys.ed25519.secretKey,
  );
  try {
    await submitJob(bank, { kind: 'verify', request: signed, openings });
    await bank.waitJob(jobId, { timeoutMs: ROUND_DEADLINE_MS });
  } catch (err) {
    return { ok: STATED.has(code(err)), code: code(err), jobId };
  }
  const result = await bank.get<VerifyResult>(`/v1/bank/jobs/${jobId}/result`);
  const answers = openVerifyResult(
    result,
    NET_BANK,
    bank.keys.x25519!.secretKey,
    claims.map((c) => c.claimId),
  );
  const wrong = claims.filter((c) => answers.get(c.claimId) !== sc.expectedClaims.get(c.claimId));
  return { ok: wrong.length === 0, jobId, ...(wrong.length ? { detail: `${wrong.length} answers differ` } : {}) };
}

async function opTrain(): Promise<Outcome> {
  const [holder, ...others] = [...fieldsBy];
  try {
    const out = await train(bank, {
      provider: holder![0],
      fields: holder![1],
      others: others.map(([provider, fields]) => ({ provider, fields })),
      purpose: NET_PURPOSE,
      subjects: subjects.filter((u) => !noConsent.has(u)),
      labels,
      options: { iterations: 2 },
    });
    return { ok: out.model.W.length > 0, jobId: out.jobId };
  } catch (err) {
    return { ok: STATED.has(code(err)), code: code(err) };
  }
}

let consentRound = 0;
async function opConsent(): Promise<Outcome> {
  const k = consentRound++;
  // Subjects that gave the bank no consent stay without one (a consent for another purpose would make them OUT_OF_SCOPE).
  const consenting = subjects.filter((u) => !noConsent.has(u));
  const who = Array.from({ length: 8 }, (_, i) => consenting[(k * 8 + i) % consenting.length]!);
  const signed = who.map((u) =>
    createConsent(
      {
        subject: u,
        grantee: NET_BANK,
        purpose: `crash-round-${k}`,
        categories: sc.providers.map((p) => p.category),
        operations: ['score'],
        notBefore: new Date(),
        notAfter: new Date(Date.now() + 30 * 86_400_000),
      },
      keyOf(u).ed25519.secretKey,
    ),
  );
  for (const c of signed) {
    const ent = new Client(url, keyOf(c.statement.subject));
    for (let attempt = 0; ; attempt++) {
      try {
        await ent.post('/v1/enterprise/consents', { consents: [c] });
        break;
      } catch (err) {
        // The first attempt landed before the crash: the same signed consent is there once.
        if (code(err) === 'SH_ERR_ALREADY_EXISTS' && attempt > 0) break;
        if (code(err) !== 'SH_ERR_UNAVAILABLE' || attempt > 120) return { ok: false, code: code(err) };
        await sleep(500);
      }
    }
    grantedConsents.push(c.statement.id);
  }
  return { ok: true };
}

async function opIngest(): Promise<Outcome> {
  const agent = await ingester.agent();
  const datasetId = `${INGEST}.${ingestCategory}.${newJobId('ds').split('_').slice(1).join('')}`;
  const up = await agent.prepareUpload(ingestSchema, demoCsv, datasetId);
  for (let attempt = 0; ; attempt++) {
    try {
      // Staged blobs do not survive a restart: every attempt stages them again.
      await ingester.client.putBlobs(up.blobs);
      await ingester.client.post('/v1/provider/datasets', { manifest: up.manifest });
      break;
    } catch (err) {
      if (code(err) === 'SH_ERR_ALREADY_EXISTS' && attempt > 0) break;
      if (!['SH_ERR_UNAVAILABLE', 'SH_ERR_BLOB_MISSING'].includes(code(err)) || attempt > 120)
        return { ok: false, code: code(err) };
      await sleep(500);
    }
  }
  ingested.push(datasetId);
  return { ok: true };
}

const OPS: Record<string, () => Promise<Outcome>> = {
  ingest: opIngest,
  consent: opConsent,
  score: opScore,
  verify: opVerify,
  train: opTrain,
};

// ---------------------------------------------------------------- rounds

/** Each operation once without a kill: its duration (the kill lands within it) and its uninterrupted result. */
const duration: Record<string, number> = {};
let failures = 0;
for (const [name, op] of Object.entries(OPS)) {
  const t = performance.now();
  const r = await op();
  duration[name] = performance.now() - t;
  if (!r.ok) {
    failures++;
    say(`uninterrupted ${name} FAILED: ${r.code ?? ''} ${r.detail ?? ''}`);
  }
}
say(
  `uninterrupted runs (ms): ${Object.entries(duration)
    .map(([k, v]) => `${k} ${v.toFixed(0)}`)
    .join(', ')}`,
);

const victims = [...Array<string>(ENGINE_KILLS).fill('engine'), ...Array<string>(CUSTODIAN_KILLS).fill('custodian')];
for (let i = victims.length - 1; i > 0; i--) {
  const j = Math.floor(rnd() * (i + 1));
  [victims[i], victims[j]] = [victims[j]!, victims[i]!];
}
const ROTATION = ['score', 'verify', 'consent', 'ingest', 'score', 'verify', 'train'];
const tally = new Map<string, { rounds: number; ok: number; coded: Record<string, number>; bad: number }>();
let custodianTurn = 0;
for (const [round, victim] of victims.entries()) {
  const name = ROTATION[round % ROTATION.length]!;
  const t = tally.get(name) ?? { rounds: 0, ok: 0, coded: {}, bad: 0 };
  tally.set(name, t);
  t.rounds++;
  const running = Promise.race([
    OPS[name]!(),
    sleep(ROUND_DEADLINE_MS).then((): Outcome => ({ ok: false, code: 'ROUND_DEADLINE' })),
  ]).catch((err: unknown): Outcome => ({ ok: false, code: code(err) }));
  await sleep(rnd() * duration[name]!);
  const proc = victim === 'engine' ? engine : custodians[custodianTurn++ % custodians.length]!;
  await proc.kill9();
  await sleep(100 + rnd() * 700);
  await proc.start();
  const r = await running;
  if (r.ok) {
    if (r.code) t.coded[r.code] = (t.coded[r.code] ?? 0) + 1;
    else t.ok++;
  } else {
    t.bad++;
    failures++;
    say(`round ${round + 1} (${name}, kill ${proc.name}): FAILED ${r.code ?? ''} ${r.detail ?? ''} ${r.jobId ?? ''}`);
  }
  if ((round + 1) % 10 === 0) say(`${round + 1}/${victims.length} rounds, ${failures} failure(s)`);
}

// ---------------------------------------------------------------- after all rounds

// The auditor, on its own replica: the ledger verifies and every job replays (exit 0).
const auditor = ['--as', NET_AUDITOR, '--key', join(keys, `${NET_AUDITOR}.key`)];
const checks: Array<[string, boolean, string]> = [];
try {
  const v = await cli(['audit', 'verify', ...S, ...auditor]);
  checks.push(['audit verify', v.startsWith('ledger intact'), v.trim().split('\n')[0]!]);
} catch (err) {
  checks.push(['audit verify', false, String((err as Error).message)]);
}
try {
  const r = await cli(['audit', 'replay', ...S, ...auditor, '--all'], { timeoutMs: 20 * 60_000 });
  checks.push(['audit replay --all', true, r.trim().split('\n').at(-1)!]);
} catch (err) {
  checks.push(['audit replay --all', false, String((err as Error).message).slice(0, 400)]);
}
await d.stop();

const db = new DatabaseSync(join(home, 'engine.db'), { readOnly: true });
const all = <T>(sql: string, ...a: Array<string | number>) => db.prepare(sql).all(...a) as T[];
const entries = all<{ kind: string; body: string }>('SELECT kind, body FROM ledger_entries ORDER BY idx');
const endings = new Map<string, number>();
const requested: string[] = [];
for (const e of entries) {
  const b = JSON.parse(e.body) as { jobId?: string };
  if (e.kind === 'job.requested') requested.push(b.jobId!);
  if (e.kind === 'job.completed' || e.kind === 'job.failed') endings.set(b.jobId!, (endings.get(b.jobId!) ?? 0) + 1);
}
const unended = requested.filter((id) => !endings.has(id));
const twice = [...endings].filter(([, n]) => n > 1).map(([id]) => id);
checks.push([
  'every job ended once',
  unended.length === 0 && twice.length === 0,
  `${requested.length} jobs, ${unended.length} without an ending, ${twice.length} ended twice`,
]);
const open = all<{ n: number }>(
  "SELECT COUNT(*) AS n FROM api_jobs WHERE status IN ('queued', 'running', 'parked', 'awaiting-labels')",
)[0]!.n;
const stuck = all<{ n: number }>("SELECT COUNT(*) AS n FROM jobs WHERE status IN ('running', 'ready', 'planned')")[0]!
  .n;
checks.push([
  'no job left queued or running',
  Number(open) === 0 && Number(stuck) === 0,
  `${open} queued/running, ${stuck} engine jobs unfinished`,
]);
const consentCounts = new Map(
  all<{ id: string; n: number }>('SELECT id, COUNT(*) AS n FROM consents GROUP BY id').map((r) => [r.id, Number(r.n)]),
);
const grantedLeaves = new Map<string, number>();
for (const e of entries)
  if (e.kind === 'consent.granted') {
    const id = (JSON.parse(e.body) as { consentId: string }).consentId;
    grantedLeaves.set(id, (grantedLeaves.get(id) ?? 0) + 1);
  }
const lostConsents = grantedConsents.filter((id) => consentCounts.get(id) !== 1 || grantedLeaves.get(id) !== 1);
checks.push([
  'consents there once',
  lostConsents.length === 0,
  `${grantedConsents.length} granted in rounds, ${lostConsents.length} missing or doubled`,
]);
const datasetIds = new Set(all<{ id: string }>('SELECT id FROM datasets').map((r) => r.id));
const lostDatasets = ingested.filter((id) => !datasetIds.has(id));
checks.push([
  'datasets there once',
  lostDatasets.length === 0,
  `${ingested.length} ingested in rounds, ${lostDatasets.length} missing`,
]);
// Blobs: none partial; every one referenced by a row or a ledger leaf.
const blobDir = join(home, 'blobs');
const files: string[] = [];
for (const e of readdirSync(blobDir, { withFileTypes: true, recursive: true })) if (e.isFile()) files.push(e.name);
const partial = files.filter((f) => f.endsWith('.tmp'));
const referenced = new Set<string>();
for (const t of all<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'"))
  for (const row of all<Record<string, unknown>>(`SELECT * FROM "${t.name}"`))
    for (const v of Object.values(row))
      if (typeof v === 'string') for (const m of v.matchAll(/[0-9a-f]{64}/g)) referenced.add(m[0]);
const unreferenced = files.filter((f) => !f.endsWith('.tmp') && !referenced.has(f));
checks.push([
  'no partial or unreferenced blob',
  partial.length === 0 && unreferenced.length === 0,
  `${files.length} blobs, ${partial.length} partial, ${unreferenced.length} unreferenced`,
]);
db.close();

say('');
say('crash tally (kills: ' + `${ENGINE_KILLS} engine, ${CUSTODIAN_KILLS} custodian)`);
for (const [name, t] of tally)
  say(
    `  ${name.padEnd(8)} ${String(t.rounds).padStart(3)} rounds: ${t.ok} as uninterrupted` +
      Object.entries(t.coded)
        .map(([c, n]) => `, ${n} ${c}`)
        .join('') +
      (t.bad ? `, ${t.bad} FAILED` : ''),
  );
for (const [name, ok, detail] of checks) {
  say(`  ${ok ? 'ok  ' : 'FAIL'} ${name}: ${detail}`);
  if (!ok) failures++;
}
say(`crash test: ${((performance.now() - t0) / 1000).toFixed(0)} s, ${failures} failure(s); logs in ${logs}`);
await ingester.close();
if (!process.env.CRASH_DIR && failures === 0) rmSync(dir, { recursive: true, force: true });
process.exit(failures === 0 ? 0 : 1);
