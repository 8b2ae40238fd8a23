/**
 * Auditor replay of scoring jobs: an untouched job replays `match` at every step; altering one stored
 * column blob, the escrowed mask seed or one weight of the registered model makes the replay report `mismatch` at the
 * right step; a purged re-randomizer is reported `missing`, not `mismatch`.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync, readFileSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Safehouse } from '../../../api/embedded.ts';
import {
  generateDemo,
  generateClaims,
  DEMO_BANK,
  DEMO_PURPOSE,
  DEMO_MODEL_ID,
  ALL_CATEGORIES,
} from '../../../api/demo-data.ts';
import { replayJob, type ReplayReport } from '../../../engine/audit/replay.ts';
import { sealTo } from '../../../core/sealbox.ts';

const AUDITOR = 'auditor_pboc';
let home: string;
let sh: Safehouse;
let jobId: string;
let verifyJobId: string;
let auditor: { id: string; x25519SecretKey: Uint8Array };

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'sh-replay-'));
  sh = await Safehouse.open({ home, create: true });
  const data = generateDemo(300, 41);
  await sh.addParty('bank', DEMO_BANK);
  await sh.addParty('auditor', AUDITOR);
  for (const p of Object.values(data.providers)) {
    await sh.addParty('provider', p.provider);
    await sh.ingest(p.provider, p.schema, p.csv);
  }
  sh.grantConsents(
    data.subjects
      .filter((_, i) => i % 10 !== 3)
      .map((u) => ({
        subject: u,
        bank: DEMO_BANK,
        purpose: DEMO_PURPOSE,
        categories: ALL_CATEGORIES,
        operations: ['score' as const, 'verify' as const],
        days: 30,
      })),
  );
  sh.registerModel(DEMO_BANK, data.model);
  for (const p of ['sz_tax_bureau', 'sz_power_water', 'sz_housing_fund']) await sh.approveModel(p, DEMO_MODEL_ID);
  jobId = (await sh.score(DEMO_BANK, DEMO_MODEL_ID, DEMO_PURPOSE, data.subjects)).jobId;
  verifyJobId = (await sh.verify(DEMO_BANK, DEMO_PURPOSE, generateClaims(data, 80, 5))).jobId;
  auditor = { id: AUDITOR, x25519SecretKey: sh.wallet.get(AUDITOR)!.x25519!.secretKey };
});

afterAll(async () => {
  await sh.close();
  rmSync(home, { recursive: true, force: true });
});

const statusOf = (r: ReplayReport, step: string) =>
  r.steps.filter((s) => s.step === step || s.step.startsWith(`${step} `)).map((s) => s.status);

describe('audit replay of a score job', () => {
  it('an untouched job replays match at every step', async () => {
    const r = await replayJob(sh.engine, jobId, auditor);
    expect(r.steps.map((s) => s.step.split(' ')[0])).toEqual([
      'request',
      'escrow',
      'model',
      'consent',
      'block',
      'block',
      'block',
      'result',
    ]);
    expect(r.steps.every((s) => s.status === 'match')).toBe(true);
    expect(r.ok).toBe(true);
  });

  it('an altered column blob is a mismatch at its block only', async () => {
    const term = sh.engine.models.compiled(DEMO_MODEL_ID).terms.find((t) => t.provider === 'sz_tax_bureau')!;
    const ds = sh.engine.datasets.withField('sz_tax_bureau', term.field)!;
    const path = sh.engine.store.blobPath(sh.engine.datasets.columnBlob(ds.id, term.columns[0]!.column, 0)!);
    const original = readFileSync(path);
    const bad = Buffer.from(original);
    bad[bad.length - 1]! ^= 1;
    writeFileSync(path, bad);
    try {
      const r = await replayJob(sh.engine, jobId, auditor);
      expect(r.ok).toBe(false);
      const blocks = r.steps.filter((s) => s.step.startsWith('block '));
      expect(blocks.filter((s) => s.status === 'mismatch').map((s) => s.step)).toEqual([
        expect.stringContaining('score/sz_tax_bureau/'),
      ]);
      expect(
        statusOf(r, 'request').concat(statusOf(r, 'model'), statusOf(r, 'consent'), statusOf(r, 'result')),
      ).toEqual(['match', 'match', 'match', 'match']);
    } finally {
      writeFileSync(path, original);
    }
  });

  it('a replaced mask seed is a mismatch at the escrow, and every block then differs', async () => {
    const row = sh.engine.store.db.prepare('SELECT request_json FROM jobs WHERE id = ?').get(jobId) as {
      request_json: string;
    };
    const stored = JSON.parse(row.request_json) as {
      escrow: Array<{ auditor: string; sealed: unknown }>;
      signed: { body: unknown };
    };
    const jobHash = (
      sh.engine.store.db
        .prepare("SELECT body FROM ledger_entries WHERE body LIKE '%job.requested%' AND body LIKE ?")
        .get(`%${jobId}%`) as { body: string }
    ).body.match(/"jobHash":"([0-9a-f]{64})"/)![1]!;
    stored.escrow = stored.escrow.map((e) => ({
      ...e,
      sealed: sealTo(sh.engine.registry.party(AUDITOR)!.x25519!, new Uint8Array(32).fill(7), {
        type: 'safehouse.escrow.v1',
        jobId,
        jobHash,
      }),
    }));
    sh.engine.store.db.prepare('UPDATE jobs SET request_json = ? WHERE id = ?').run(JSON.stringify(stored), jobId);
    try {
      const r = await replayJob(sh.engine, jobId, auditor);
      expect(statusOf(r, 'escrow')).toEqual(['mismatch']);
      expect(statusOf(r, 'block').every((s) => s === 'mismatch')).toBe(true);
      expect(statusOf(r, 'result')).toEqual(['mismatch']);
      expect(statusOf(r, 'request')).toEqual(['match']);
    } finally {
      sh.engine.store.db.prepare('UPDATE jobs SET request_json = ? WHERE id = ?').run(row.request_json, jobId);
    }
  });

  it('one altered weight of the registered model is a mismatch at the model step', async () => {
    const row = sh.engine.store.db.prepare('SELECT spec_json FROM models WHERE id = ?').get(DEMO_MODEL_ID) as {
      spec_json: string;
    };
    // The scorecard's first bin of its first term: 60 points become 61.
    const spec = JSON.parse(row.spec_json) as { terms: Array<{ bins: Array<{ points: string }> }> };
    spec.terms[0]!.bins[0]!.points = String(Number(spec.terms[0]!.bins[0]!.points) + 1);
    sh.engine.store.db.prepare('UPDATE models SET spec_json = ? WHERE id = ?').run(JSON.stringify(spec), DEMO_MODEL_ID);
    try {
      const r = await replayJob(sh.engine, jobId, auditor);
      expect(statusOf(r, 'model')).toEqual(['mismatch']);
      // The altered scorecard names other derived bin columns than the approved one: no block replays as sent.
      expect(statusOf(r, 'block').every((s) => s !== 'match')).toBe(true);
      expect(r.ok).toBe(false);
      expect(statusOf(r, 'request')).toEqual(['match']);
    } finally {
      sh.engine.store.db.prepare('UPDATE models SET spec_json = ? WHERE id = ?').run(row.spec_json, DEMO_MODEL_ID);
    }
  });

  it('a purged re-randomizer is reported missing, not mismatch', async () => {
    const entry = sh.engine.store.db
      .prepare("SELECT body FROM ledger_entries WHERE body LIKE '%custodian.request%' AND body LIKE ?")
      .get(`%${jobId}%`) as { body: string };
    const hash = (JSON.parse(entry.body) as { rerandomizer: string }).rerandomizer;
    const path = sh.engine.store.blobPath(hash);
    renameSync(path, `${path}.away`);
    try {
      const r = await replayJob(sh.engine, jobId, auditor);
      expect(r.steps.filter((s) => s.status !== 'match').map((s) => s.status)).toEqual(['missing']);
    } finally {
      renameSync(`${path}.away`, path);
    }
    expect((await replayJob(sh.engine, jobId, auditor)).ok).toBe(true);
  });
});

describe('audit replay of a verification job', () => {
  it('token batches, numeric blocks, answers and result all match; a swapped re-randomizer or custodian answer does not', async () => {
    const r = await replayJob(sh.engine, verifyJobId, auditor);
    const kinds = new Set(r.steps.map((x) => x.step.split(' ')[0]));
    expect(kinds).toEqual(
      new Set(['request', 'escrow', 'openings', 'claims', 'consent', 'tokens', 'block', 'answers', 'result']),
    );
    expect(r.steps.filter((x) => x.status !== 'match')).toEqual([]);
    // Swap one numeric block's logged re-randomizer for another block's: that block (only) mismatches.
    const signs = sh.engine.store.db
      .prepare('SELECT idx, body FROM ledger_entries WHERE body LIKE \'%"mode":"sign"%\' AND body LIKE ?')
      .all(`%${verifyJobId}%`) as Array<{ idx: number; body: string }>;
    expect(signs.length).toBeGreaterThan(1);
    const [a, b] = signs.map((x) => JSON.parse(x.body) as { rerandomizer: string; label: string });
    const pa = sh.engine.store.blobPath(a!.rerandomizer);
    const original = readFileSync(pa);
    writeFileSync(pa, readFileSync(sh.engine.store.blobPath(b!.rerandomizer)));
    try {
      const r2 = await replayJob(sh.engine, verifyJobId, auditor);
      expect(r2.steps.filter((x) => x.status !== 'match').map((x) => `${x.status} ${x.step}`)).toEqual([
        `mismatch block ${a!.label}`,
      ]);
    } finally {
      writeFileSync(pa, original);
    }
    // Remove one consent a claim relied on: the consent re-derived as of the request time disagrees with the job.
    const claimSubject = (
      JSON.parse(
        (
          sh.engine.store.db.prepare('SELECT request_json FROM jobs WHERE id = ?').get(verifyJobId) as {
            request_json: string;
          }
        ).request_json,
      ) as { signed: { body: { claims: Array<{ subject: string }> } } }
    ).signed.body.claims
      .map((c) => c.subject)
      .find((u) => sh.engine.consents.of(u).length > 0)!;
    const consentRows = sh.engine.store.db
      .prepare('SELECT * FROM consents WHERE subject = ?')
      .all(claimSubject) as Array<Record<string, string>>;
    sh.engine.store.db.prepare('DELETE FROM consents WHERE subject = ?').run(claimSubject);
    try {
      const r4 = await replayJob(sh.engine, verifyJobId, auditor);
      expect(r4.steps.find((x) => x.step === 'consent')?.status).toBe('mismatch');
    } finally {
      for (const c of consentRows)
        sh.engine.store.db
          .prepare('INSERT INTO consents (id, subject, grantee, signed_json, created_at) VALUES (?, ?, ?, ?, ?)')
          .run(c.id!, c.subject!, c.grantee!, c.signed_json!, c.created_at!);
    }
    expect((await replayJob(sh.engine, verifyJobId, auditor)).ok).toBe(true);
    // Alter the stored signed evaluations of one token batch: that batch mismatches.
    const resp = sh.engine.store.db
      .prepare(
        "SELECT body FROM ledger_entries WHERE body LIKE '%custodian.response%' AND body LIKE '%/tokens/%' AND body LIKE ?",
      )
      .get(`%${verifyJobId}%`) as { body: string };
    const ev = JSON.parse(resp.body) as { responseHash: string; label: string };
    const pr = sh.engine.store.blobPath(ev.responseHash);
    const saved = readFileSync(pr);
    writeFileSync(pr, saved.toString('utf8').replace(/"evaluated":\["0/, '"evaluated":["1'));
    try {
      const r3 = await replayJob(sh.engine, verifyJobId, auditor);
      expect(r3.steps.filter((x) => x.status !== 'match').map((x) => `${x.status} ${x.step}`)).toEqual([
        `mismatch tokens ${ev.label}`,
        'mismatch answers',
      ]);
    } finally {
      writeFileSync(pr, saved);
    }
  });
});

describe('access report', () => {
  it("lists the subject's consent and every job that named it, with outcomes; every entry's proof verifies", async () => {
    const { accessReport } = await import('../../../engine/audit/report.ts');
    const { verifyInclusion, leafHash } = await import('../../../engine/ledger/merkle.ts');
    const { verifyCheckpoint } = await import('../../../engine/ledger/checkpoint.ts');
    const subjects = (
      JSON.parse(
        (
          sh.engine.store.db.prepare('SELECT request_json FROM jobs WHERE id = ?').get(jobId) as {
            request_json: string;
          }
        ).request_json,
      ) as { signed: { body: { subjects: string[] } } }
    ).signed.body.subjects;
    const consented = subjects[0]!;
    const refused = subjects[3]!; // i % 10 === 3 granted nothing
    const a = accessReport(sh.engine, consented);
    expect(a.entries.filter((e) => e.what === 'consent').map((e) => e.bank)).toEqual([DEMO_BANK]);
    const scoreEntry = a.entries.find((e) => e.jobId === jobId)!;
    expect(scoreEntry).toMatchObject({ what: 'job', operation: 'score', bank: DEMO_BANK, purpose: DEMO_PURPOSE });
    expect(['delivered', 'no_data']).toContain(scoreEntry.outcome);
    expect(scoreEntry.fields).toEqual(expect.arrayContaining(['sz_tax_bureau.tax_credit_grade']));
    const b = accessReport(sh.engine, refused);
    expect(b.entries.filter((e) => e.what === 'consent')).toEqual([]);
    expect(b.entries.find((e) => e.jobId === jobId)!.outcome).toBe('refused:NO_CONSENT');
    const cp = verifyCheckpoint(a.checkpoint, 'safehouse.local/ledger', sh.engine.keys.ed25519.publicKey);
    for (const e of [...a.entries, ...b.entries]) {
      expect(
        verifyInclusion(
          leafHash(new TextEncoder().encode(e.leaf)),
          e.index,
          cp.size,
          e.proof.map((h) => new Uint8Array(Buffer.from(h, 'hex'))),
          cp.rootHash,
        ),
      ).toBe(true);
    }
  });
});

describe('audit replay over the network', () => {
  it("the auditor's client replays each job on its own replica (verified ledger, bundle rows, hash-checked blobs) with the same steps and results", async () => {
    const { EngineServer } = await import('../../../api/server/index.ts');
    const { Client, replayRemote, jobsOf } = await import('../../../api/client/index.ts');
    const { ed25519KeyPair } = await import('../../../core/sign.ts');
    const server = new EngineServer({ engine: sh.engine, adminPublicKey: ed25519KeyPair().publicKey });
    const url = await server.listen(0);
    try {
      const client = new Client(url, sh.wallet.get(AUDITOR)!);
      expect(await jobsOf(client)).toEqual([jobId, verifyJobId]);
      for (const id of [jobId, verifyJobId]) {
        const remote = await replayRemote(client, id);
        const local = await replayJob(sh.engine, id, auditor);
        expect(remote.steps).toEqual(local.steps);
        expect(remote.ok).toBe(true);
      }
      // A bank cannot fetch a job's replay bundle.
      const bank = new Client(url, sh.wallet.get(DEMO_BANK)!);
      await expect(bank.get(`/v1/auditor/jobs/${jobId}/bundle`)).rejects.toMatchObject({ code: 'SH_ERR_PARTY_ROLE' });
    } finally {
      await server.close();
    }
  });
});

describe('retention', () => {
  it('purging a finished job keeps the ledger intact and records the purge; its replay then reports missing, never mismatch', async () => {
    const before = sh.engine.ledger.size();
    expect(sh.engine.retention.purge(1).jobs).toEqual([]); // the job finished less than a day ago
    const r = sh.engine.retention.purge(0);
    expect(r.jobs).toEqual([jobId, verifyJobId]);
    const purge = sh.engine.ledger.entry(before);
    expect(purge.kind).toBe('retention.purged');
    expect(purge.body).toMatchObject({ jobs: [jobId, verifyJobId], blobs: r.blobs });
    expect(sh.engine.auditVerify().ok).toBe(true);
    const replay = await replayJob(sh.engine, jobId, auditor);
    expect(replay.steps.filter((s) => s.status === 'mismatch')).toEqual([]);
    expect(statusOf(replay, 'block')).toEqual(['missing', 'missing', 'missing']);
    expect(statusOf(replay, 'result')).toEqual(['missing']);
    expect(statusOf(replay, 'request').concat(statusOf(replay, 'consent'))).toEqual(['match', 'match']);
    // Dataset columns stay: the same subjects still score.
    expect(sh.engine.retention.purge(0)).toEqual({ jobs: [], blobs: 0 });
  });
});
