/**
 * An auditor's client paces itself: a long replay fetches a job's blobs in batches (one request per 64 blobs, each
 * frame checked against its hash) and waits out 429s for as long as the server's `retry-after` says, instead of
 * failing with SH_ERR_RATE_LIMITED. Bad batch requests are coded refusals.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Safehouse } from '../../api/embedded.ts';
import { EngineServer } from '../../api/server/index.ts';
import { Client } from '../../api/client/index.ts';
import { readFrames, BLOB_BATCH } from '../../api/wire.ts';
import { sha256Hex } from '../../core/hash.ts';
import { ed25519KeyPair } from '../../core/sign.ts';
import { isCoded } from '../../core/errors.ts';
import { signRequest } from '../../api/httpsig.ts';

let home: string;
let sh: Safehouse;
let server: EngineServer;
let url: string;
const admin = ed25519KeyPair();
const blobs: string[] = [];

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'sh-pacing-'));
  sh = await Safehouse.open({ home, create: true });
  await sh.addParty('auditor', 'auditor_pacing');
  for (let i = 0; i < 70; i++) blobs.push(sh.engine.store.putBlob(new TextEncoder().encode(`blob ${i}`)));
  // One request per second after a burst of 3: a loop of calls must wait.
  server = new EngineServer({
    engine: sh.engine,
    adminPublicKey: admin.publicKey,
    rateLimit: { burst: 3, perSecond: 1 },
  });
  url = await server.listen(0);
});

afterAll(async () => {
  await server.close();
  await sh.close();
  rmSync(home, { recursive: true, force: true });
});

const auditor = () => new Client(url, sh.wallet.require('auditor_pacing', 'auditor'));

describe("the auditor's client", () => {
  it('waits out 429s (retry-after) instead of failing: 6 calls against a burst of 3', async () => {
    const c = auditor();
    const sizes: number[] = [];
    for (let i = 0; i < 6; i++)
      sizes.push((await c.get<{ checkpoints: unknown[] }>('/v1/auditor/checkpoints')).checkpoints.length);
    expect(sizes.every((n) => n >= 1)).toBe(true);
    // The same loop sent raw (signed, but not paced) is refused with 429 and a retry-after.
    const keys = sh.wallet.require('auditor_pacing', 'auditor');
    const statuses: Array<[number, string | null]> = [];
    for (let i = 0; i < 6; i++) {
      const u = new URL('/v1/auditor/checkpoints', url);
      const res = await fetch(u, {
        headers: signRequest({ method: 'GET', url: u.href, authority: u.host }, keys.id, keys.ed25519.secretKey),
      });
      await res.arrayBuffer();
      statuses.push([res.status, res.headers.get('retry-after')]);
    }
    expect(statuses.some(([st, ra]) => st === 429 && Number(ra) >= 1)).toBe(true);
  });

  it('fetches blobs in batches of 64, each frame the stored bytes', async () => {
    const c = auditor();
    const frames = readFrames(await c.getBytes('/v1/auditor/blobs/batch', { hashes: blobs.slice(0, BLOB_BATCH) }));
    expect(frames.size).toBe(BLOB_BATCH);
    for (const h of blobs.slice(0, BLOB_BATCH)) expect(sha256Hex(frames.get(h)!)).toBe(h);
  });

  it('refuses a batch over 64, an unknown blob and a malformed hash with coded errors', async () => {
    const c = auditor();
    const code = async (p: Promise<unknown>) =>
      p.then(
        () => 'ok',
        (e: unknown) => (isCoded(e) ? e.code : String(e)),
      );
    expect(await code(c.getBytes('/v1/auditor/blobs/batch', { hashes: blobs.slice(0, BLOB_BATCH + 1) }))).toBe(
      'SH_ERR_INVALID_ARGUMENT',
    );
    expect(await code(c.getBytes('/v1/auditor/blobs/batch', { hashes: [sha256Hex('never stored')] }))).toBe(
      'SH_ERR_NOT_FOUND',
    );
    expect(await code(c.getBytes('/v1/auditor/blobs/batch', { hashes: ['xyz'] }))).toBe('SH_ERR_INVALID_ARGUMENT');
  });
});
