/**
 * The engine server's job life cycle: jobs are asynchronous (202 → status with progress → result), a
 * graceful shutdown finishes the running job and parks the queued ones, and the next server on the same data directory
 * resumes the parked jobs; results over HTTP equal embedded mode. Nothing is lost across the restart.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Safehouse } from '../../api/embedded.ts';
import { generateDemo, DEMO_BANK, DEMO_PURPOSE, DEMO_MODEL_ID, ALL_CATEGORIES } from '../../api/demo-data.ts';
import { EngineServer } from '../../api/server/index.ts';
import { Client, newJobId, type JobView } from '../../api/client/index.ts';
import { buildScoreRequest, openScoreResult } from '../../engine/protocols/score/bank.ts';
import { type ScoreResult } from '../../engine/protocols/score/messages.ts';
import { ed25519KeyPair } from '../../core/sign.ts';
import { signRequest } from '../../api/httpsig.ts';
import { blobBytes } from '../../engine/retention.ts';

let home: string;
let sh: Safehouse;
let data: ReturnType<typeof generateDemo>;
let embedded: Array<{ uscc: string; status: string; score: string }>;
const admin = ed25519KeyPair();

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'sh-life-'));
  sh = await Safehouse.open({ home, create: true });
  data = generateDemo(400, 33);
  await sh.addParty('bank', DEMO_BANK);
  for (const p of Object.values(data.providers)) {
    await sh.addParty('provider', p.provider);
    await sh.ingest(p.provider, p.schema, p.csv);
  }
  sh.grantConsents(
    data.subjects.map((u) => ({
      subject: u,
      bank: DEMO_BANK,
      purpose: DEMO_PURPOSE,
      categories: ALL_CATEGORIES,
      operations: ['score' as const],
      days: 30,
    })),
  );
  sh.registerModel(DEMO_BANK, data.model);
  for (const p of ['sz_tax_bureau', 'sz_power_water', 'sz_housing_fund']) await sh.approveModel(p, DEMO_MODEL_ID);
  embedded = (await sh.score(DEMO_BANK, DEMO_MODEL_ID, DEMO_PURPOSE, data.subjects)).rows;
});

afterAll(async () => {
  await sh.close();
  rmSync(home, { recursive: true, force: true });
});

const statuses = () =>
  new Map(
    (sh.engine.store.db.prepare('SELECT id, status FROM api_jobs').all() as Array<{ id: string; status: string }>).map(
      (r) => [r.id, r.status],
    ),
  );

describe('engine server job life cycle', () => {
  it('shutdown finishes the running job and parks the queued ones; a restarted server resumes them', async () => {
    // One lane, so that shutdown finds queued jobs to park.
    const server = new EngineServer({ engine: sh.engine, adminPublicKey: admin.publicKey, jobLanes: 1 });
    const url = await server.listen(0);
    const bank = new Client(url, sh.wallet.get(DEMO_BANK)!);
    const hash = sh.engine.models.get(DEMO_MODEL_ID)!.hash;
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const jobId = newJobId('score');
      const request = buildScoreRequest(
        {
          jobId,
          bank: DEMO_BANK,
          modelId: DEMO_MODEL_ID,
          modelHash: hash,
          purpose: DEMO_PURPOSE,
          subjects: data.subjects,
          requestedAt: new Date().toISOString(),
        },
        bank.keys.ed25519.secretKey,
      );
      const r = await bank.post<{ jobId: string; status: string }>('/v1/bank/jobs', { kind: 'score', request });
      expect(r).toEqual({ jobId, status: 'queued' });
      ids.push(jobId);
    }
    // A result asked for too early is a coded 409, not a hang or a 500.
    await expect(bank.get(`/v1/bank/jobs/${ids[2]}/result`)).rejects.toMatchObject({ code: 'SH_ERR_JOB_NOT_READY' });
    await server.close();
    const after = statuses();
    expect([...after.values()].every((s) => s === 'done' || s === 'parked')).toBe(true);
    expect(after.get(ids[0]!)).toBe('done');
    expect([...after.values()].filter((s) => s === 'parked').length).toBeGreaterThan(0);

    // Next start on the same data directory: parked jobs run; every result equals embedded scoring.
    const again = new EngineServer({ engine: sh.engine, adminPublicKey: admin.publicKey });
    const url2 = await again.listen(0);
    try {
      const bank2 = new Client(url2, sh.wallet.get(DEMO_BANK)!);
      for (const id of ids) {
        const view: JobView = await bank2.waitJob(id, { timeoutMs: 300_000 });
        expect(view.status).toBe('done');
        expect(view.progress).toMatchObject({ phase: 'done' });
        expect(view.progress!.done).toBe(view.progress!.total);
        const result = await bank2.get<ScoreResult>(`/v1/bank/jobs/${id}/result`);
        expect(openScoreResult(result, DEMO_BANK, bank2.keys.x25519!.secretKey)).toEqual(embedded);
      }
    } finally {
      await again.close();
    }
  });

  it('a signed request replayed after a restart is still refused (nonces are kept in the database)', async () => {
    const first = new EngineServer({ engine: sh.engine, adminPublicKey: admin.publicKey });
    const url = await first.listen(0);
    const u = new URL('/v1/admin/parties', url);
    const headers = signRequest({ method: 'GET', url: u.href, authority: u.host }, 'admin', admin.secretKey);
    expect((await fetch(u, { headers })).status).toBe(200);
    await first.close();
    // The same address, a new server process's worth of state: the captured headers are a replay.
    const again = new EngineServer({ engine: sh.engine, adminPublicKey: admin.publicKey });
    await again.listen(Number(u.port));
    try {
      const res = await fetch(u, { headers });
      expect(res.status).toBe(401);
      expect(((await res.json()) as { message: string }).message).toMatch(/replayed/);
      // A fresh signature is served.
      const fresh = signRequest({ method: 'GET', url: u.href, authority: u.host }, 'admin', admin.secretKey);
      expect((await fetch(u, { headers: fresh })).status).toBe(200);
    } finally {
      await again.close();
    }
  });

  it('health, readiness and Prometheus metrics: counts of what ran, no party or subject as a label', async () => {
    const server = new EngineServer({ engine: sh.engine, adminPublicKey: admin.publicKey });
    const url = await server.listen(0);
    try {
      const bank = new Client(url, sh.wallet.get(DEMO_BANK)!);
      const jobId = newJobId('score');
      const request = buildScoreRequest(
        {
          jobId,
          bank: DEMO_BANK,
          modelId: DEMO_MODEL_ID,
          modelHash: sh.engine.models.get(DEMO_MODEL_ID)!.hash,
          purpose: DEMO_PURPOSE,
          subjects: data.subjects.slice(0, 50),
          requestedAt: new Date().toISOString(),
        },
        bank.keys.ed25519.secretKey,
      );
      await bank.post('/v1/bank/jobs', { kind: 'score', request });
      await bank.waitJob(jobId, { timeoutMs: 120_000 });
      expect(await (await fetch(new URL('/healthz', url))).json()).toEqual({ status: 'ok' });
      const ready = await fetch(new URL('/readyz', url));
      expect(ready.status).toBe(200);
      expect(await ready.json()).toMatchObject({ status: 'ready', problems: [], queued: 0, running: 0 });
      const res = await fetch(new URL('/metrics', url));
      expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
      const text = await res.text();
      expect(text).toMatch(/^safehouse_jobs_queued 0$/m);
      expect(text).toMatch(/^safehouse_job_seconds_count\{kind="score",status="done"\} 1$/m);
      expect(text).toMatch(/^safehouse_job_phase_seconds_count\{kind="score",phase="compute"\} 1$/m);
      expect(text).toMatch(/^safehouse_http_requests_total\{route="\/v1\/bank\/jobs",method="POST",status="202"\} 1$/m);
      expect(text).toMatch(/^safehouse_ledger_entries \d+$/m);
      expect(text).not.toContain(DEMO_BANK);
      for (const u of data.subjects) expect(text).not.toContain(u);
    } finally {
      await server.close();
    }
  });

  it('blob retention runs in the server too: over a size limit the oldest jobs’ replay blobs go, datasets stay', async () => {
    const before = blobBytes(sh.engine.store.home);
    const finished = sh.engine.jobs.finishedBefore(new Date().toISOString()).length;
    expect(finished).toBeGreaterThan(0);
    const server = new EngineServer({
      engine: sh.engine,
      adminPublicKey: admin.publicKey,
      retention: { everyMs: 3_600_000, maxBlobBytes: 0 },
    });
    const url = await server.listen(0); // a pass runs at start
    try {
      const after = blobBytes(sh.engine.store.home);
      expect(after).toBeLessThan(before);
      expect(sh.engine.jobs.finishedBefore(new Date().toISOString())).toEqual([]);
      const purged = sh.engine.ledger.entriesOfKind('retention.purged', 0);
      expect(purged.length).toBeGreaterThan(0);
      // Dataset columns are never purged: the next job still scores, equal to embedded scoring.
      const bank = new Client(url, sh.wallet.get(DEMO_BANK)!);
      const jobId = newJobId('score');
      const request = buildScoreRequest(
        {
          jobId,
          bank: DEMO_BANK,
          modelId: DEMO_MODEL_ID,
          modelHash: sh.engine.models.get(DEMO_MODEL_ID)!.hash,
          purpose: DEMO_PURPOSE,
          subjects: data.subjects,
          requestedAt: new Date().toISOString(),
        },
        bank.keys.ed25519.secretKey,
      );
      await bank.post('/v1/bank/jobs', { kind: 'score', request });
      await bank.waitJob(jobId, { timeoutMs: 120_000 });
      const result = await bank.get<ScoreResult>(`/v1/bank/jobs/${jobId}/result`);
      expect(openScoreResult(result, DEMO_BANK, bank.keys.x25519!.secretKey)).toEqual(embedded);
      expect(sh.engine.auditVerify().ok).toBe(true);
    } finally {
      await server.close();
    }
  });
});
