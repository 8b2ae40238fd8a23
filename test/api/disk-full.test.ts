/**
 * A full disk (docs/operations.md "Disk pressure"): the engine's data directory on a small tmpfs, filled to the last
 * byte while the server runs. Jobs and uploads then fail with SH_ERR_STORAGE_FULL (before, ENOSPC in putBlob made the
 * job's own failure write throw: an unhandled rejection, exit 1), the server stays up and answers, nothing is
 * half-written (no partial blob, the ledger verifies, no job is left running), and once space is freed the same
 * server runs the next job to the plaintext result. Needs root for `mount -t tmpfs` (the CI machine is root).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Safehouse } from '../../api/embedded.ts';
import { generateDemo, DEMO_BANK, DEMO_PURPOSE, DEMO_MODEL_ID, ALL_CATEGORIES } from '../../api/demo-data.ts';
import { EngineServer } from '../../api/server/index.ts';
import { Client, newJobId } from '../../api/client/index.ts';
import { buildScoreRequest, openScoreResult } from '../../engine/protocols/score/bank.ts';
import type { ScoreResult } from '../../engine/protocols/score/messages.ts';
import { ed25519KeyPair } from '../../core/sign.ts';

let mount: string;
let sh: Safehouse;
let server: EngineServer;
let bank: Client;
let data: ReturnType<typeof generateDemo>;
let embedded: Array<{ uscc: string; status: string; score: string }>;
const filler = () => join(mount, 'filler');

beforeAll(async () => {
  mount = mkdtempSync(join(tmpdir(), 'sh-full-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=96m', 'tmpfs', mount]);
  const home = join(mount, 'engine');
  mkdirSync(home);
  sh = await Safehouse.open({ home, create: true, poolSize: 1 });
  data = generateDemo(300, 5);
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
  server = new EngineServer({ engine: sh.engine, adminPublicKey: ed25519KeyPair().publicKey, log: () => {} });
  bank = new Client(await server.listen(0), sh.wallet.get(DEMO_BANK)!);
}, 180_000);

afterAll(async () => {
  await server?.close().catch(() => {});
  await sh?.close().catch(() => {});
  try {
    execFileSync('umount', ['-l', mount]);
  } catch {
    // not mounted (beforeAll failed)
  }
  rmSync(mount, { recursive: true, force: true });
});

/** Fill the tmpfs to the last byte. */
function fill(): void {
  const fd = openSync(filler(), 'w');
  const chunk = Buffer.alloc(1 << 20, 1);
  try {
    for (;;) writeSync(fd, chunk);
  } catch {
    // ENOSPC: full
  } finally {
    closeSync(fd);
  }
  for (let n = 1 << 16; n >= 1; n >>= 1) {
    try {
      writeFileSync(join(mount, `filler-${n}-${Math.random()}`), Buffer.alloc(n, 1));
    } catch {
      // this size no longer fits
    }
  }
}

const scoreRequest = () =>
  buildScoreRequest(
    {
      jobId: newJobId('score'),
      bank: DEMO_BANK,
      modelId: DEMO_MODEL_ID,
      modelHash: sh.engine.models.get(DEMO_MODEL_ID)!.hash,
      purpose: DEMO_PURPOSE,
      subjects: data.subjects,
      requestedAt: new Date().toISOString(),
    },
    bank.keys.ed25519.secretKey,
  );

function partialBlobs(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true }))
    if (e.isFile() && e.name.endsWith('.tmp')) out.push(e.name);
  return out;
}

describe('a full disk', () => {
  it('fails jobs with SH_ERR_STORAGE_FULL, keeps the server up, half-writes nothing, and recovers when space is freed', async () => {
    fill();
    const outcomes: string[] = [];
    for (let i = 0; i < 3; i++) {
      const request = scoreRequest();
      try {
        await bank.post('/v1/bank/jobs', { kind: 'score', request });
        await bank.waitJob(request.body.jobId, { timeoutMs: 120_000 });
        outcomes.push('done');
      } catch (err) {
        outcomes.push((err as { code?: string }).code ?? String(err));
      }
    }
    // Every attempt refused or failed, coded; none silently succeeded or crashed the server.
    expect(
      outcomes.every((c) => c === 'SH_ERR_STORAGE_FULL'),
      outcomes.join(', '),
    ).toBe(true);
    const info = await bank.info();
    expect(info.paramsId).toBe(sh.engine.params.id);
    expect(partialBlobs(join(sh.engine.store.home, 'blobs'))).toEqual([]);
    expect(sh.engine.ledger.verify().ok).toBe(true);

    // Space again: the same server, no restart, runs the next job to the embedded (plaintext-checked) result.
    for (const f of readdirSync(mount)) if (f.startsWith('filler')) rmSync(join(mount, f));
    const request = scoreRequest();
    await bank.post('/v1/bank/jobs', { kind: 'score', request });
    await bank.waitJob(request.body.jobId, { timeoutMs: 120_000 });
    const result = await bank.get<ScoreResult>(`/v1/bank/jobs/${request.body.jobId}/result`);
    expect(openScoreResult(result, DEMO_BANK, bank.keys.x25519!.secretKey)).toEqual(embedded);
    // Nothing is left running (jobs that failed for lack of space ended, once).
    const running = sh.engine.store.db.prepare("SELECT COUNT(*) AS n FROM jobs WHERE status = 'running'").get() as {
      n: number;
    };
    expect(Number(running.n)).toBe(0);
  }, 300_000);
});
