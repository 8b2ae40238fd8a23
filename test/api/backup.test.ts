/**
 * `safehouse backup` / `restore` (docs/operations.md "Backup and restore"): a backup taken while the engine server
 * runs a job restores into a directory whose database is sound and whose ledger verifies (`audit verify`), with every
 * blob its rows name and the results it had delivered; the restored engine serves the delivered result again.
 * A backup into a non-empty directory and a restore over an existing engine are refused, coded, changing nothing.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Safehouse } from '../../api/embedded.ts';
import { generateDemo, DEMO_BANK, DEMO_PURPOSE, DEMO_MODEL_ID, ALL_CATEGORIES } from '../../api/demo-data.ts';
import { EngineServer } from '../../api/server/index.ts';
import { Client, newJobId } from '../../api/client/index.ts';
import { buildScoreRequest, openScoreResult } from '../../engine/protocols/score/bank.ts';
import type { ScoreResult } from '../../engine/protocols/score/messages.ts';
import { ed25519KeyPair } from '../../core/sign.ts';

const BIN = new URL('../../api/bin/safehouse.js', import.meta.url).pathname;
let root: string;
let home: string;
let sh: Safehouse;
let data: ReturnType<typeof generateDemo>;

const run = (args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 300_000 });
const runAsync = (args: string[]) =>
  new Promise<{ status: number | null; stdout: string; stderr: string }>((done) => {
    const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('exit', (status) => done({ status, stdout, stderr }));
  });

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'sh-backup-'));
  home = join(root, 'engine');
  sh = await Safehouse.open({ home, create: true, poolSize: 1 });
  data = generateDemo(200, 9);
  await sh.addParty('bank', DEMO_BANK);
  await sh.addParty('auditor', 'auditor_backup');
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
}, 180_000);
afterAll(async () => {
  await sh?.close();
  rmSync(root, { recursive: true, force: true });
});

describe('safehouse backup and restore', () => {
  it('a backup taken while the server runs jobs restores to a sound engine whose ledger verifies', async () => {
    const server = new EngineServer({ engine: sh.engine, adminPublicKey: ed25519KeyPair().publicKey });
    const bank = new Client(await server.listen(0), sh.wallet.get(DEMO_BANK)!);
    const job = async () => {
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
      return jobId;
    };
    const first = await job();
    const out = join(root, 'backup-1');
    // The backup runs in its own process while the server scores again.
    const [b] = await Promise.all([runAsync(['backup', '--home', home, '--out', out]), job()]);
    await server.close();
    expect(b.status, b.stderr).toBe(0);
    expect(b.stdout).toMatch(/ledger entries/);
    const manifest = JSON.parse(readFileSync(join(out, 'BACKUP.json'), 'utf8')) as { ledgerEntries: number };
    expect(manifest.ledgerEntries).toBeGreaterThan(0);

    const restored = join(root, 'restored');
    const r = run(['restore', '--from', out, '--home', restored]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/ledger of \d+ entries verifies/);
    const v = run(['audit', 'verify', '--home', restored]);
    expect(v.status, v.stderr).toBe(0);
    expect(v.stdout).toMatch(/^ledger intact/);
    // Every blob a row of the restored database names is there.
    const again = await Safehouse.open({ home: restored, poolSize: 1 });
    try {
      const blobs = new Set(
        readdirSync(join(restored, 'blobs'), { recursive: true, withFileTypes: true })
          .filter((e) => e.isFile())
          .map((e) => e.name),
      );
      const named = (again.engine.store.db.prepare('SELECT blob FROM columns').all() as Array<{ blob: string }>).map(
        (x) => x.blob,
      );
      expect(named.length).toBeGreaterThan(0);
      expect(named.filter((x) => !blobs.has(x))).toEqual([]);
      // The delivered result of the first job is served by the restored engine.
      const server2 = new EngineServer({ engine: again.engine, adminPublicKey: ed25519KeyPair().publicKey });
      const bank2 = new Client(await server2.listen(0), sh.wallet.get(DEMO_BANK)!);
      try {
        const result = await bank2.get<ScoreResult>(`/v1/bank/jobs/${first}/result`);
        expect(openScoreResult(result, DEMO_BANK, bank2.keys.x25519!.secretKey).length).toBe(data.subjects.length);
      } finally {
        await server2.close();
      }
    } finally {
      await again.close();
    }
  }, 300_000);

  it('refuses a backup into a non-empty directory and a restore over an existing engine, changing nothing', () => {
    const busy = join(root, 'busy');
    mkdirSync(busy);
    writeFileSync(join(busy, 'keep.txt'), 'x');
    const b = run(['backup', '--home', home, '--out', busy]);
    expect(b.status).not.toBe(0);
    expect(b.stderr).toContain('SH_ERR_ALREADY_EXISTS');
    expect(readdirSync(busy)).toEqual(['keep.txt']);
    const r = run(['restore', '--from', join(root, 'backup-1'), '--home', home]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('SH_ERR_ALREADY_EXISTS');
    const notBackup = run(['restore', '--from', busy, '--home', join(root, 'nowhere')]);
    expect(notBackup.stderr).toContain('SH_ERR_INVALID_ARGUMENT');
    expect(existsSync(join(root, 'nowhere', 'engine.db'))).toBe(false);
  });
});
