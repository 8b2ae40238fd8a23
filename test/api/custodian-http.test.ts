/**
 * Custodians on the wire: each provider's custodian runs behind its own fastify server on
 * 127.0.0.1, the engine talks to it through `HttpCustodian`, and scoring and verification give exactly the embedded
 * results. Unsigned, wrongly signed and replayed HTTP requests are refused with coded 401s.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Safehouse } from '../../api/embedded.ts';
import {
  generateDemo,
  generateClaims,
  DEMO_BANK,
  DEMO_PURPOSE,
  DEMO_MODEL_ID,
  ALL_CATEGORIES,
} from '../../api/demo-data.ts';
import { buildCustodianServer, HttpCustodian } from '../../api/custodian-http.ts';
import { signRequest } from '../../api/httpsig.ts';
import { ed25519KeyPair } from '../../core/sign.ts';

let home: string;
let sh: Safehouse;
const servers: FastifyInstance[] = [];
const urls = new Map<string, string>();
let data: ReturnType<typeof generateDemo>;
let claims: ReturnType<typeof generateClaims>;
let embeddedScores: Array<{ uscc: string; status: string; score: string }>;
let embeddedClaims: Map<string, string>;

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'sh-http-'));
  sh = await Safehouse.open({ home, create: true });
  data = generateDemo(300, 21);
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
      operations: ['score' as const, 'verify' as const],
      days: 30,
    })),
  );
  sh.registerModel(DEMO_BANK, data.model);
  for (const p of ['sz_tax_bureau', 'sz_power_water', 'sz_housing_fund']) await sh.approveModel(p, DEMO_MODEL_ID);
  // Embedded results first.
  embeddedScores = (await sh.score(DEMO_BANK, DEMO_MODEL_ID, DEMO_PURPOSE, data.subjects)).rows;
  claims = generateClaims(data, 120, 3);
  embeddedClaims = (await sh.verify(DEMO_BANK, DEMO_PURPOSE, claims)).results;
  // Then every custodian behind HTTP on loopback.
  for (const p of Object.values(data.providers)) {
    const app = buildCustodianServer(sh.engine.registry.custodian(p.provider), sh.engine.keys.ed25519.publicKey);
    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    servers.push(app);
    urls.set(p.provider, url);
    sh.engine.registry.connectCustodian(await HttpCustodian.connect(url, sh.engine.keys.ed25519.secretKey));
  }
});

afterAll(async () => {
  for (const s of servers) await s.close();
  await sh.close();
  rmSync(home, { recursive: true, force: true });
});

describe('custodians over HTTP', () => {
  it('scoring through remote custodians equals embedded scoring', async () => {
    const { rows } = await sh.score(DEMO_BANK, DEMO_MODEL_ID, DEMO_PURPOSE, data.subjects);
    expect(rows).toEqual(embeddedScores);
    expect(rows.filter((r) => r.status === 'OK').length).toBeGreaterThan(200);
  });

  it('verification (tokens and masked comparisons) through remote custodians equals embedded verification', async () => {
    const { results } = await sh.verify(DEMO_BANK, DEMO_PURPOSE, claims);
    expect(new Map([...results].sort())).toEqual(new Map([...embeddedClaims].sort()));
  });

  it('unsigned, wrongly signed and replayed requests get coded 401s', async () => {
    const url = new URL('/v1/custodian/decrypt', urls.get('sz_tax_bureau')!);
    const body = new TextEncoder().encode(JSON.stringify({ request: {}, ciphertext: '' }));
    const post = (headers: Record<string, string>) =>
      fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
    const unsigned = await post({});
    expect(unsigned.status).toBe(401);
    expect(await unsigned.json()).toMatchObject({ code: 'SH_ERR_BAD_SIGNATURE' });
    const forged = await post(
      signRequest({ method: 'POST', url: url.href, authority: url.host, body }, 'engine', ed25519KeyPair().secretKey),
    );
    expect(forged.status).toBe(401);
    const headers = signRequest(
      { method: 'POST', url: url.href, authority: url.host, body },
      'engine',
      sh.engine.keys.ed25519.secretKey,
    );
    const first = await post(headers);
    expect(first.status).toBe(401); // transport signature fine, but the engine-signed body is missing: coded refusal
    expect(await first.json()).toMatchObject({ code: 'SH_ERR_BAD_SIGNATURE' });
    const replay = await post(headers);
    expect(replay.status).toBe(401);
    expect(((await replay.json()) as { message: string }).message).toMatch(/replayed/);
  });
});
