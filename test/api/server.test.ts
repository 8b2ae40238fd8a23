/**
 * The engine server's defences, each refusal checked for its coded error *and* for leaving the state alone:
 * RFC 9421 signatures (missing, wrong key, tampered body, replayed, stale, future-dated, unknown key), role checks,
 * per-object authorization (another bank's job, another enterprise's report or consents), custodians answering only
 * bank-signed jobs (forged, stale, unknown job hash, a label answered twice), body limits, malformed and poisoned JSON,
 * strict schemas, media types, unknown routes, per-party rate limits, the OpenAPI document, and a job's life cycle over
 * HTTP giving exactly the embedded scores.
 * Longer than 400 lines: one served engine with every party registered and a custodian behind HTTP; each defence is a
 * refusal checked against the same state.
 */
import { canonicalize } from '../../core/jcs.ts';
import { feedCustodian } from '../../engine/protocols/job.ts';
import type { LedgerUpdate } from '../../engine/custodian/monitor.ts';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { Safehouse } from '../../api/embedded.ts';
import { generateDemo, DEMO_BANK, DEMO_PURPOSE, DEMO_MODEL_ID, ALL_CATEGORIES } from '../../api/demo-data.ts';
import { EngineServer } from '../../api/server/index.ts';
import { newJobId } from '../../api/client/index.ts';
import { buildCustodianServer, HttpCustodian } from '../../api/custodian-http.ts';
import { signRequest } from '../../api/httpsig.ts';
import { fromJson } from '../../api/wire.ts';
import { ERRORS, isCoded, type ErrorCode } from '../../core/errors.ts';
import { ed25519KeyPair, signJson, bytesToHex, type Signed } from '../../core/sign.ts';
import { sha256Hex } from '../../core/hash.ts';
import { buildScoreRequest, openScoreResult } from '../../engine/protocols/score/bank.ts';
import { type ScoreRequest, type ScoreResult } from '../../engine/protocols/score/messages.ts';
import type {
  BankJob,
  Custodian,
  DecryptRequest,
  OpenedJob,
  OpenOptions,
  DecryptResponse,
  TokenEvalRequest,
  TransferRequest,
  BankClaims,
} from '../../engine/custodian/messages.ts';
import { createConsent } from '../../sandbox/consent.ts';
import type { PartyKeys } from '../../api/wallet.ts';

const BANK_B = 'bank_cmb_sz';
const AUDITOR = 'auditor_pboc';
const PROVIDERS = ['tax', 'utilities', 'housing_fund'] as const;
const TAX = 'sz_tax_bureau';

let home: string;
let sh: Safehouse;
let data: ReturnType<typeof generateDemo>;
let embedded: Array<{ uscc: string; status: string; score: string }>;
const admin = ed25519KeyPair();
const adminKeys = { id: 'admin', sk: admin.secretKey };
let server: EngineServer;
let url: string;
let limited: EngineServer;
let limitedUrl: string;
let small: EngineServer;
let smallUrl: string;
let custodianApp: FastifyInstance;
let custodianUrl: string;

const keysOf = (id: string): PartyKeys => sh.wallet.get(id)!;
const as = (id: string) => ({ id, sk: keysOf(id).ed25519.secretKey });

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'sh-server-'));
  sh = await Safehouse.open({ home, create: true, poolSize: 1 });
  data = generateDemo(40, 5);
  await sh.addParty('bank', DEMO_BANK);
  await sh.addParty('bank', BANK_B);
  await sh.addParty('auditor', AUDITOR);
  for (const c of PROVIDERS) {
    const p = data.providers[c];
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
  for (const c of PROVIDERS) await sh.approveModel(data.providers[c].provider, DEMO_MODEL_ID);
  embedded = (await sh.score(DEMO_BANK, DEMO_MODEL_ID, DEMO_PURPOSE, data.subjects)).rows;
  // Every server is built before any job is submitted (a new server resumes queued jobs of the data directory).
  server = new EngineServer({ engine: sh.engine, adminPublicKey: admin.publicKey });
  url = await server.listen(0);
  limited = new EngineServer({
    engine: sh.engine,
    adminPublicKey: admin.publicKey,
    rateLimit: { burst: 5, perSecond: 1 },
  });
  limitedUrl = await limited.listen(0);
  small = new EngineServer({
    engine: sh.engine,
    adminPublicKey: admin.publicKey,
    bodyLimit: 64 * 1024,
    blobLimit: 64 * 1024,
  });
  smallUrl = await small.listen(0);
  custodianApp = buildCustodianServer(sh.engine.registry.custodian(TAX), sh.engine.keys.ed25519.publicKey);
  custodianUrl = await custodianApp.listen({ host: '127.0.0.1', port: 0 });
});

afterAll(async () => {
  await server?.close();
  await limited?.close();
  await small?.close();
  await custodianApp?.close();
  await sh?.close();
  if (home) rmSync(home, { recursive: true, force: true });
});

// ---------------------------------------------------------------- helpers

/** Answers are JSON checked field by field. */
type Json = any;
interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: Json;
}

type Method = 'GET' | 'POST' | 'PUT';
interface Req {
  method?: Method;
  path: string;
  /** Signer (keyid and secret key); null sends no signature. */
  as?: { id: string; sk: Uint8Array } | null;
  body?: string | Uint8Array | undefined;
  /** Sign this body instead of the one sent (tampering). */
  signedBody?: string | Uint8Array;
  contentType?: string;
  now?: Date;
  base?: string;
}

const bytes = (b: string | Uint8Array | undefined) =>
  b === undefined ? undefined : typeof b === 'string' ? new TextEncoder().encode(b) : b;

/** The headers a party would send (signature over method, authority, path, query and body digest). */
function signed(r: Req): { u: URL; headers: Record<string, string>; body: Uint8Array | undefined } {
  const method = r.method ?? (r.body === undefined ? 'GET' : 'POST');
  const u = new URL(r.path, r.base ?? url);
  const body = bytes(r.body);
  const toSign = r.signedBody === undefined ? body : bytes(r.signedBody);
  const headers: Record<string, string> = r.as
    ? signRequest(
        { method, url: u.href, authority: u.host, ...(toSign ? { body: toSign } : {}) },
        r.as.id,
        r.as.sk,
        r.now,
      )
    : {};
  if (body) headers['content-type'] = r.contentType ?? 'application/json';
  return { u, headers, body };
}

async function raw(
  method: Method,
  u: URL,
  headers: Record<string, string>,
  body: Uint8Array | undefined,
): Promise<Answer> {
  const res = await fetch(u, { method, headers, ...(body ? { body } : {}) });
  const text = await res.text();
  let json: Json;
  try {
    json = text ? fromJson(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

async function send(r: Req): Promise<Answer> {
  const s = signed(r);
  return raw(r.method ?? (r.body === undefined ? 'GET' : 'POST'), s.u, s.headers, s.body);
}

const json = (v: unknown) => JSON.stringify(v);

/** A coded error: the catalog's status, and exactly `{ code, message, details }`. */
function expectCoded(a: Answer, code: ErrorCode): void {
  expect({ status: a.status, code: a.json?.code }, a.text).toEqual({ status: ERRORS[code].status, code });
  expect(Object.keys(a.json).sort()).toEqual(['code', 'details', 'message']);
  expect(typeof a.json.message).toBe('string');
  expect(typeof a.json.details).toBe('object');
}

const count = (sql: string, ...args: string[]) =>
  Number((sh.engine.store.db.prepare(sql).get(...args) as { n: number }).n);

/** What a refused request must not change. */
function snapshot() {
  return {
    parties: count('SELECT COUNT(*) AS n FROM parties'),
    ledger: sh.engine.ledger.size(),
    apiJobs: count('SELECT COUNT(*) AS n FROM api_jobs'),
    jobs: count('SELECT COUNT(*) AS n FROM jobs'),
    consents: count('SELECT COUNT(*) AS n FROM consents'),
    models: count('SELECT COUNT(*) AS n FROM models'),
  };
}

/** A fresh party registration body (valid: would create an auditor if accepted). */
function newAuditor(id: string) {
  return {
    id,
    role: 'auditor',
    ed25519: bytesToHex(ed25519KeyPair().publicKey),
    x25519: bytesToHex(ed25519KeyPair().publicKey),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function scoreRequest(bank: string, subjects: string[], requestedAt = new Date()): Signed<ScoreRequest> {
  const m = sh.engine.models.get(DEMO_MODEL_ID)!;
  return buildScoreRequest(
    {
      jobId: newJobId('score'),
      bank,
      modelId: DEMO_MODEL_ID,
      modelHash: m.hash,
      purpose: DEMO_PURPOSE,
      subjects,
      requestedAt: requestedAt.toISOString(),
    },
    keysOf(bank).ed25519.secretKey,
  );
}

/** One real score job over HTTP as the demo bank, run to the end (shared by the life-cycle and the ownership tests). */
let lifecycle:
  | Promise<{
      jobId: string;
      request: Signed<ScoreRequest>;
      submit: Answer;
      polls: number;
      final: Answer;
      result: Answer;
    }>
  | undefined;
function runLifecycle() {
  lifecycle ??= (async () => {
    const request = scoreRequest(DEMO_BANK, data.subjects);
    const jobId = request.body.jobId;
    const submit = await send({ path: '/v1/bank/jobs', as: as(DEMO_BANK), body: json({ kind: 'score', request }) });
    let final: Answer | undefined;
    let polls = 0;
    for (; polls < 600; polls++) {
      const v = await send({ path: `/v1/bank/jobs/${jobId}`, as: as(DEMO_BANK) });
      if (v.status !== 200 || v.json.status === 'done' || v.json.status === 'failed') {
        final = v;
        break;
      }
      await sleep(100);
    }
    const result = await send({ path: `/v1/bank/jobs/${jobId}/result`, as: as(DEMO_BANK) });
    return { jobId, request, submit, polls, final: final!, result };
  })();
  return lifecycle;
}

// ---------------------------------------------------------------- 1. signatures

describe('RFC 9421 request signatures', () => {
  it('refuses an unsigned request with a coded 401 and registers nothing', async () => {
    const before = snapshot();
    const a = await send({ path: '/v1/admin/parties', as: null, body: json(newAuditor('aud_unsigned')) });
    expectCoded(a, 'SH_ERR_BAD_SIGNATURE');
    expect(sh.engine.registry.party('aud_unsigned')).toBeUndefined();
    expect(snapshot()).toEqual(before);
    // GET routes too, and a signature header without its input header.
    expectCoded(await send({ path: '/v1/admin/parties', as: null }), 'SH_ERR_BAD_SIGNATURE');
    const s = signed({ path: '/v1/admin/parties', as: adminKeys });
    delete s.headers['signature-input'];
    expectCoded(await raw('GET', s.u, s.headers, undefined), 'SH_ERR_BAD_SIGNATURE');
  });

  it("refuses a request signed with another party's key, or whose body was changed after signing", async () => {
    const before = snapshot();
    // keyid says admin, key is the bank's.
    const wrongKey = await send({
      path: '/v1/admin/parties',
      as: { id: 'admin', sk: keysOf(DEMO_BANK).ed25519.secretKey },
      body: json(newAuditor('aud_wrongkey')),
    });
    expectCoded(wrongKey, 'SH_ERR_BAD_SIGNATURE');
    // keyid says the demo bank, key is the other bank's.
    expectCoded(
      await send({ path: `/v1/parties/${DEMO_BANK}`, as: { id: DEMO_BANK, sk: keysOf(BANK_B).ed25519.secretKey } }),
      'SH_ERR_BAD_SIGNATURE',
    );
    // Body tampered after signing: the digest no longer matches.
    const tampered = await send({
      path: '/v1/admin/parties',
      as: adminKeys,
      signedBody: json(newAuditor('aud_signed')),
      body: json(newAuditor('aud_tampered')),
    });
    expectCoded(tampered, 'SH_ERR_BAD_SIGNATURE');
    expect(tampered.json.message).toMatch(/Content-Digest/);
    // Signed for another path / method / authority.
    const s = signed({ path: '/v1/admin/parties', as: adminKeys });
    expectCoded(await raw('GET', new URL('/v1/parties/admin', url), s.headers, undefined), 'SH_ERR_BAD_SIGNATURE');
    const other = signed({ path: '/v1/admin/parties', as: adminKeys, base: limitedUrl });
    expectCoded(await raw('GET', new URL('/v1/admin/parties', url), other.headers, undefined), 'SH_ERR_BAD_SIGNATURE');
    for (const id of ['aud_wrongkey', 'aud_signed', 'aud_tampered'])
      expect(sh.engine.registry.party(id)).toBeUndefined();
    expect(snapshot()).toEqual(before);
  });

  it('refuses a replayed request (the same headers twice): the first is served, the second is a 401', async () => {
    const s = signed({ path: '/v1/admin/parties', as: adminKeys, body: json(newAuditor('aud_replay')) });
    const first = await raw('POST', s.u, s.headers, s.body);
    expect(first.status).toBe(201);
    expect(first.json).toMatchObject({ id: 'aud_replay', role: 'auditor' });
    const before = snapshot();
    const second = await raw('POST', s.u, s.headers, s.body);
    expectCoded(second, 'SH_ERR_BAD_SIGNATURE');
    expect(second.json.message).toMatch(/replayed/);
    expect(snapshot()).toEqual(before);
    // A replayed GET as well.
    const g = signed({ path: '/v1/admin/parties', as: adminKeys });
    expect((await raw('GET', g.u, g.headers, undefined)).status).toBe(200);
    expectCoded(await raw('GET', g.u, g.headers, undefined), 'SH_ERR_BAD_SIGNATURE');
  });

  it('refuses stale (10 min old) and future-dated (10 min ahead) signatures', async () => {
    const before = snapshot();
    const stale = await send({
      path: '/v1/admin/parties',
      as: adminKeys,
      body: json(newAuditor('aud_stale')),
      now: new Date(Date.now() - 10 * 60_000),
    });
    expectCoded(stale, 'SH_ERR_BAD_SIGNATURE');
    expect(stale.json.message).toMatch(/stale or future-dated/);
    const future = await send({
      path: '/v1/admin/parties',
      as: adminKeys,
      body: json(newAuditor('aud_future')),
      now: new Date(Date.now() + 10 * 60_000),
    });
    expectCoded(future, 'SH_ERR_BAD_SIGNATURE');
    expect(sh.engine.registry.party('aud_stale')).toBeUndefined();
    expect(sh.engine.registry.party('aud_future')).toBeUndefined();
    expect(snapshot()).toEqual(before);
  });

  it('refuses an unknown keyid', async () => {
    const before = snapshot();
    const stranger = ed25519KeyPair();
    const a = await send({
      path: '/v1/admin/parties',
      as: { id: 'nobody_here', sk: stranger.secretKey },
      body: json(newAuditor('aud_stranger')),
    });
    expectCoded(a, 'SH_ERR_BAD_SIGNATURE');
    expect(a.json.message).toMatch(/unknown keyid/);
    expectCoded(
      await send({ path: `/v1/parties/${DEMO_BANK}`, as: { id: 'nobody_here', sk: stranger.secretKey } }),
      'SH_ERR_BAD_SIGNATURE',
    );
    expect(snapshot()).toEqual(before);
  });

  it('serves GET /v1/info without a signature', async () => {
    const a = await send({ path: '/v1/info', as: null });
    expect(a.status).toBe(200);
    expect(a.json.engine.ed25519).toBe(bytesToHex(sh.engine.keys.ed25519.publicKey));
  });
});

// ---------------------------------------------------------------- 2. roles

describe('role checks', () => {
  it('a bank calling admin or provider routes gets 403 SH_ERR_PARTY_ROLE and changes nothing', async () => {
    const before = snapshot();
    const bank = as(DEMO_BANK);
    const calls: Req[] = [
      { path: '/v1/admin/parties', as: bank },
      { path: '/v1/admin/parties', as: bank, body: json(newAuditor('aud_by_bank')) },
      { path: '/v1/admin/enterprises', as: bank, body: json({ enterprises: [] }) },
      { path: '/v1/provider/datasets', as: bank },
      { path: '/v1/provider/custodian', as: bank, body: json({ url: 'http://127.0.0.1:9/' }) },
      { path: `/v1/provider/models/${DEMO_MODEL_ID}`, as: bank },
      { path: '/v1/enterprise/report', as: bank },
      { path: '/v1/auditor/ledger', as: bank },
    ];
    for (const c of calls) {
      const a = await send(c);
      expectCoded(a, 'SH_ERR_PARTY_ROLE');
      expect(a.json.details).toEqual({ party: DEMO_BANK });
    }
    // And the other way round: a provider, an enterprise and the admin on bank routes.
    expectCoded(await send({ path: `/v1/bank/models/${DEMO_MODEL_ID}`, as: as(TAX) }), 'SH_ERR_PARTY_ROLE');
    expectCoded(
      await send({
        path: '/v1/bank/jobs',
        as: as(data.subjects[0]!),
        body: json({ kind: 'score', request: scoreRequest(DEMO_BANK, data.subjects.slice(0, 2)) }),
      }),
      'SH_ERR_PARTY_ROLE',
    );
    expectCoded(
      await send({
        path: '/v1/bank/jobs',
        as: adminKeys,
        body: json({ kind: 'score', request: scoreRequest(DEMO_BANK, data.subjects.slice(0, 2)) }),
      }),
      'SH_ERR_PARTY_ROLE',
    );
    expect(sh.engine.registry.party('aud_by_bank')).toBeUndefined();
    expect(snapshot()).toEqual(before);
  });
});

// ---------------------------------------------------------------- 3. banks' jobs

describe("a bank cannot touch another bank's jobs", () => {
  it("reading another bank's job status or result is 403 SH_ERR_FORBIDDEN", async () => {
    const { jobId, final } = await runLifecycle();
    expect(final.json.status).toBe('done');
    const other = as(BANK_B);
    const status = await send({ path: `/v1/bank/jobs/${jobId}`, as: other });
    expectCoded(status, 'SH_ERR_FORBIDDEN');
    expect(status.text).not.toContain(DEMO_BANK); // nothing about the job leaks
    expectCoded(await send({ path: `/v1/bank/jobs/${jobId}/result`, as: other }), 'SH_ERR_FORBIDDEN');
    // Its own reads of a job that does not exist are 404, not 403.
    expectCoded(await send({ path: '/v1/bank/jobs/score_does_not_exist', as: other }), 'SH_ERR_NOT_FOUND');
    // Labels for another bank's job are refused the same way, before anything is stored.
    const before = snapshot();
    expectCoded(
      await send({
        path: `/v1/bank/jobs/${jobId}/labels`,
        as: other,
        body: json({
          labels: signJson({ type: 'safehouse.train.labels.v1', jobId }, BANK_B, keysOf(BANK_B).ed25519.secretKey),
        }),
      }),
      'SH_ERR_FORBIDDEN',
    );
    // Another bank's model: forbidden too.
    expectCoded(await send({ path: `/v1/bank/models/${DEMO_MODEL_ID}`, as: other }), 'SH_ERR_FORBIDDEN');
    expect(snapshot()).toEqual(before);
  });

  it('submitting a request signed as (or naming) another bank is 403 and creates no job', async () => {
    const before = snapshot();
    // Bank B forwards bank A's genuine signed request.
    const stolen = scoreRequest(DEMO_BANK, data.subjects.slice(0, 3));
    expectCoded(
      await send({ path: '/v1/bank/jobs', as: as(BANK_B), body: json({ kind: 'score', request: stolen }) }),
      'SH_ERR_FORBIDDEN',
    );
    // Bank B signs a request that names bank A.
    const m = sh.engine.models.get(DEMO_MODEL_ID)!;
    const naming = buildScoreRequest(
      {
        jobId: newJobId('score'),
        bank: DEMO_BANK,
        modelId: DEMO_MODEL_ID,
        modelHash: m.hash,
        purpose: DEMO_PURPOSE,
        subjects: data.subjects.slice(0, 3),
      },
      keysOf(BANK_B).ed25519.secretKey,
    );
    const relabelled = { ...naming, signer: BANK_B };
    expectCoded(
      await send({ path: '/v1/bank/jobs', as: as(BANK_B), body: json({ kind: 'score', request: relabelled }) }),
      'SH_ERR_FORBIDDEN',
    );
    // Bank B claims to be bank A inside the statement but signs with its own key: signature check.
    expectCoded(
      await send({ path: '/v1/bank/jobs', as: as(DEMO_BANK), body: json({ kind: 'score', request: naming }) }),
      'SH_ERR_BAD_SIGNATURE',
    );
    for (const id of [stolen.body.jobId, naming.body.jobId]) {
      expect(count('SELECT COUNT(*) AS n FROM api_jobs WHERE id = ?', id)).toBe(0);
    }
    expect(snapshot()).toEqual(before);
  });
});

// ---------------------------------------------------------------- 4. enterprises

describe('an enterprise reads and writes only its own records', () => {
  it("another enterprise's report and consents are 403; its own report lists its entries", async () => {
    const [mine, theirs] = [data.subjects[0]!, data.subjects[1]!];
    const me = as(mine);
    expectCoded(await send({ path: `/v1/enterprise/report?subject=${theirs}`, as: me }), 'SH_ERR_FORBIDDEN');
    expectCoded(await send({ path: `/v1/enterprise/consents?subject=${theirs}`, as: me }), 'SH_ERR_FORBIDDEN');
    const own = await send({ path: '/v1/enterprise/report', as: me });
    expect(own.status).toBe(200);
    expect(own.json.subject).toBe(mine);
    const kinds = (own.json.entries as Array<{ kind: string }>).map((e) => e.kind);
    expect(kinds).toContain('party.registered');
    expect(kinds).toContain('consent.granted');
    expect(kinds).toContain('job.requested'); // the embedded scoring run touched every subject
    const direct = JSON.parse(JSON.stringify(sh.engine.ledger.subjectEntries(mine))) as Array<Record<string, unknown>>;
    expect(
      (own.json.entries as Array<Record<string, unknown>>).map((x) => ({
        index: x.index,
        kind: x.kind,
        body: x.body,
        at: x.at,
      })),
    ).toEqual(direct.map((x) => ({ index: x.index, kind: x.kind, body: x.body, at: x.at })));
    // Naming itself explicitly is the same report.
    const explicit = await send({ path: `/v1/enterprise/report?subject=${mine}`, as: me });
    expect(explicit.json).toEqual(own.json);
    const consents = await send({ path: '/v1/enterprise/consents', as: me });
    expect(consents.status).toBe(200);
    expect(consents.json.consents.map((c: { statement: { id: string } }) => c.statement.id)).toEqual(
      sh.engine.consents.of(mine).map((c) => c.statement.id),
    );
  });

  it('an enterprise granting or revoking a consent for another subject is 403 and stores nothing', async () => {
    const [mine, theirs] = [data.subjects[2]!, data.subjects[3]!];
    const me = keysOf(mine);
    const grant = (subject: string, sk: Uint8Array) =>
      createConsent(
        {
          subject,
          grantee: BANK_B,
          purpose: 'fuzz_other',
          categories: ['tax'],
          operations: ['score'],
          notBefore: new Date(),
          notAfter: new Date(Date.now() + 86_400_000),
        },
        sk,
      );
    const before = snapshot();
    const theirsBefore = sh.engine.consents.of(theirs).length;
    const mineBefore = sh.engine.consents.of(mine).length;
    // Signed with the caller's key, or even with the other subject's own key (a captured statement): refused either way.
    expectCoded(
      await send({
        path: '/v1/enterprise/consents',
        as: as(mine),
        body: json({ consents: [grant(theirs, me.ed25519.secretKey)] }),
      }),
      'SH_ERR_FORBIDDEN',
    );
    expectCoded(
      await send({
        path: '/v1/enterprise/consents',
        as: as(mine),
        body: json({ consents: [grant(theirs, keysOf(theirs).ed25519.secretKey)] }),
      }),
      'SH_ERR_FORBIDDEN',
    );
    // A batch mixing its own consent with another's: all or nothing.
    expectCoded(
      await send({
        path: '/v1/enterprise/consents',
        as: as(mine),
        body: json({ consents: [grant(mine, me.ed25519.secretKey), grant(theirs, me.ed25519.secretKey)] }),
      }),
      'SH_ERR_FORBIDDEN',
    );
    // Revoking another subject's consent.
    const target = sh.engine.consents.of(theirs)[0]!;
    expectCoded(
      await send({
        path: '/v1/enterprise/revocations',
        as: as(mine),
        body: json({
          revocations: [
            {
              statement: {
                consentId: target.statement.id,
                subject: theirs,
                revokedAt: new Date().toISOString(),
                nonce: randomBytes(16).toString('hex'),
              },
              signature: 'ab'.repeat(64),
            },
          ],
        }),
      }),
      'SH_ERR_FORBIDDEN',
    );
    expect(sh.engine.consents.of(theirs).length).toBe(theirsBefore);
    expect(sh.engine.consents.of(mine).length).toBe(mineBefore);
    expect(count('SELECT COUNT(*) AS n FROM revocations')).toBe(0);
    expect(snapshot()).toEqual(before);
    // Its own consent is accepted (the refusals above were about the subject, not the statement).
    const ok = await send({
      path: '/v1/enterprise/consents',
      as: as(mine),
      body: json({ consents: [grant(mine, me.ed25519.secretKey)] }),
    });
    expect(ok.status).toBe(201);
    expect(sh.engine.consents.of(mine).length).toBe(mineBefore + 1);
  });
});

// ---------------------------------------------------------------- 5. custodians

/** Passes everything to the real custodian and keeps the decrypt requests it saw. */
class Recorder implements Custodian {
  readonly provider: string;
  readonly paramsId: string;
  readonly bfvPublicKey: Uint8Array;
  readonly signingPublicKey: Uint8Array;
  readonly inner: Custodian;
  readonly decrypts: Array<{ request: Signed<DecryptRequest>; ciphertext: Uint8Array }> = [];
  readonly jobs: BankJob[] = [];
  constructor(inner: Custodian) {
    this.inner = inner;
    this.provider = inner.provider;
    this.paramsId = inner.paramsId;
    this.bfvPublicKey = inner.bfvPublicKey;
    this.signingPublicKey = inner.signingPublicKey;
  }
  openJob(job: BankJob, opts?: OpenOptions): Promise<OpenedJob> {
    this.jobs.push(job);
    return this.inner.openJob(job, opts);
  }
  ledgerState(): Promise<{ size: number }> {
    return this.inner.ledgerState();
  }
  follow(u: LedgerUpdate): Promise<{ size: number }> {
    return this.inner.follow(u);
  }
  decrypt(request: Signed<DecryptRequest>, ciphertext: Uint8Array): Promise<Signed<DecryptResponse>> {
    this.decrypts.push({ request, ciphertext });
    return this.inner.decrypt(request, ciphertext);
  }
  evaluateTokens(request: Signed<TokenEvalRequest>, bankRequest: BankClaims) {
    return this.inner.evaluateTokens(request, bankRequest);
  }
  transfer(request: Signed<TransferRequest>, ciphertext: Uint8Array, targetPublicKey: Uint8Array) {
    return this.inner.transfer(request, ciphertext, targetPublicKey);
  }
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (err) {
    return isCoded(err) ? err.code : `uncoded: ${String(err)}`;
  }
}

describe('custodians answer only bank-signed jobs', () => {
  const engineSigned = (body: Omit<DecryptRequest, 'type'>) =>
    signJson({ type: 'safehouse.custodian.decrypt.v1' as const, ...body }, 'engine', sh.engine.keys.ed25519.secretKey);
  const decryptBody = (jobId: string, jobHash: string, ct: Uint8Array): Omit<DecryptRequest, 'type'> => ({
    paramsId: sh.engine.params.id,
    provider: TAX,
    jobId,
    jobHash,
    label: `score/${TAX}/x/block/0`,
    mode: 'seal',
    ciphertext: sha256Hex(ct),
    recipient: { party: DEMO_BANK, x25519: bytesToHex(keysOf(DEMO_BANK).x25519!.publicKey) },
  });

  it('a decryption naming no opened job (random job hash) is SH_ERR_PARAMS_MISMATCH, over HTTP and in process', async () => {
    const remote = await HttpCustodian.connect(custodianUrl, sh.engine.keys.ed25519.secretKey);
    const local = sh.engine.registry.custodian(TAX);
    const ct = randomBytes(1000);
    const req = engineSigned(decryptBody(newJobId('score'), randomBytes(32).toString('hex'), ct));
    expect(await codeOf(remote.decrypt(req, ct))).toBe('SH_ERR_PARAMS_MISMATCH');
    expect(await codeOf(local.decrypt(req, ct))).toBe('SH_ERR_PARAMS_MISMATCH');
    // A real, opened job's id with a made-up hash: the same.
    const job = scoreRequest(DEMO_BANK, data.subjects.slice(0, 4)) as unknown as BankJob;
    // The custodian opens only jobs it finds in the ledger: ledger it as the engine would, and feed the custodian.
    sh.engine.ledger.append('job.requested', { jobId: job.body.jobId, jobHash: sha256Hex(canonicalize(job)) });
    await feedCustodian(sh.engine, TAX);
    await remote.openJob(job);
    const forgedHash = engineSigned(decryptBody(job.body.jobId, randomBytes(32).toString('hex'), ct));
    expect(await codeOf(remote.decrypt(forgedHash, ct))).toBe('SH_ERR_PARAMS_MISMATCH');
    // Not signed by the engine at all.
    const byBank = signJson(
      {
        type: 'safehouse.custodian.decrypt.v1' as const,
        ...decryptBody(job.body.jobId, sha256Hex(JSON.stringify(job)), ct),
      },
      'engine',
      keysOf(DEMO_BANK).ed25519.secretKey,
    );
    expect(await codeOf(remote.decrypt(byBank, ct))).toBe('SH_ERR_BAD_SIGNATURE');
  });

  it('a job with a forged bank signature is SH_ERR_BAD_SIGNATURE; a stale one (1 h old) is SH_ERR_REQUEST_STALE', async () => {
    const remote = await HttpCustodian.connect(custodianUrl, sh.engine.keys.ed25519.secretKey);
    const local = sh.engine.registry.custodian(TAX);
    const m = sh.engine.models.get(DEMO_MODEL_ID)!;
    const body = {
      jobId: newJobId('score'),
      bank: DEMO_BANK,
      modelId: DEMO_MODEL_ID,
      modelHash: m.hash,
      purpose: DEMO_PURPOSE,
      subjects: data.subjects.slice(0, 4),
      requestedAt: new Date().toISOString(),
    };
    const forged = buildScoreRequest(body, ed25519KeyPair().secretKey) as unknown as BankJob; // signer says the bank, key is anyone's
    expect(await codeOf(remote.openJob(forged))).toBe('SH_ERR_BAD_SIGNATURE');
    expect(await codeOf(local.openJob(forged))).toBe('SH_ERR_BAD_SIGNATURE');
    const genuine = buildScoreRequest(body, keysOf(DEMO_BANK).ed25519.secretKey) as unknown as BankJob;
    const altered = { ...genuine, body: { ...genuine.body, subjects: data.subjects } }; // more subjects = more budget
    expect(await codeOf(remote.openJob(altered))).toBe('SH_ERR_BAD_SIGNATURE');
    const unknownBank = buildScoreRequest(
      { ...body, bank: 'bank_nowhere' },
      ed25519KeyPair().secretKey,
    ) as unknown as BankJob;
    expect(await codeOf(remote.openJob(unknownBank))).toBe('SH_ERR_CERT_INVALID'); // no registrar certificate
    const stale = buildScoreRequest(
      { ...body, jobId: newJobId('score'), requestedAt: new Date(Date.now() - 3_600_000).toISOString() },
      keysOf(DEMO_BANK).ed25519.secretKey,
    ) as unknown as BankJob;
    expect(await codeOf(remote.openJob(stale))).toBe('SH_ERR_REQUEST_STALE');
    expect(await codeOf(local.openJob(stale))).toBe('SH_ERR_REQUEST_STALE');
    // A decryption for the refused jobs then names no opened job.
    const ct = randomBytes(100);
    for (const j of [forged, stale]) {
      expect(
        await codeOf(remote.decrypt(engineSigned(decryptBody(j.body.jobId, sha256Hex(JSON.stringify(j)), ct)), ct)),
      ).toBe('SH_ERR_PARAMS_MISMATCH');
    }
  });

  it('a label answered once is refused the second time (SH_ERR_CUSTODIAN_BUDGET), replayed over HTTP or in process', async () => {
    const original = sh.engine.registry.custodian(TAX);
    const recorder = new Recorder(original);
    sh.engine.registry.connectCustodian(recorder);
    let rows: Array<{ uscc: string; status: string; score: string }>;
    try {
      rows = (await sh.score(DEMO_BANK, DEMO_MODEL_ID, DEMO_PURPOSE, data.subjects)).rows;
    } finally {
      sh.engine.registry.connectCustodian(original);
    }
    expect(rows).toEqual(embedded); // the recorder changed nothing
    expect(recorder.jobs.length).toBe(1);
    expect(recorder.decrypts.length).toBeGreaterThan(0);
    const { request, ciphertext } = recorder.decrypts[0]!;
    const remote = await HttpCustodian.connect(custodianUrl, sh.engine.keys.ed25519.secretKey);
    expect(await codeOf(remote.decrypt(request, ciphertext))).toBe('SH_ERR_CUSTODIAN_BUDGET');
    expect(await codeOf(original.decrypt(request, ciphertext))).toBe('SH_ERR_CUSTODIAN_BUDGET');
    // Re-showing the job does not reset its budget.
    await remote.openJob(recorder.jobs[0]!);
    expect(await codeOf(remote.decrypt(request, ciphertext))).toBe('SH_ERR_CUSTODIAN_BUDGET');
    // The same label re-signed by the engine (fresh signature, same job and label) is still the same label.
    const again = signJson({ ...request.body }, 'engine', sh.engine.keys.ed25519.secretKey);
    expect(await codeOf(remote.decrypt(again, ciphertext))).toBe('SH_ERR_CUSTODIAN_BUDGET');
  });
});

// ---------------------------------------------------------------- 6. bodies, media types, routes

describe('request bodies and routes', () => {
  it('a body over the limit is 413 SH_ERR_BODY_TOO_LARGE (JSON and blobs)', async () => {
    const before = snapshot();
    const big = json({ ...newAuditor('aud_big'), padding: 'x'.repeat(100 * 1024) });
    expectCoded(
      await send({ base: smallUrl, path: '/v1/admin/parties', as: adminKeys, body: big }),
      'SH_ERR_BODY_TOO_LARGE',
    );
    const blob = randomBytes(100 * 1024);
    expectCoded(
      await send({
        base: smallUrl,
        method: 'PUT',
        path: `/v1/blobs/${sha256Hex(blob)}`,
        as: as(TAX),
        body: blob,
        contentType: 'application/octet-stream',
      }),
      'SH_ERR_BODY_TOO_LARGE',
    );
    // Under the limit, the same server answers normally (here: the schema refuses the padding).
    expectCoded(
      await send({
        base: smallUrl,
        path: '/v1/admin/parties',
        as: adminKeys,
        body: json({ ...newAuditor('aud_pad'), padding: 'x' }),
      }),
      'SH_ERR_INVALID_ARGUMENT',
    );
    expect(sh.engine.registry.party('aud_big')).toBeUndefined();
    expect(snapshot()).toEqual(before);
  });

  it('malformed JSON, __proto__ / constructor.prototype keys and unknown properties are 400 and register nothing', async () => {
    const before = snapshot();
    const valid = newAuditor('aud_poison');
    const bodies = [
      '{"id": "aud_poison", "role": ',
      'not json at all',
      '{"id":"aud_poison"}}',
      `{"__proto__": {"isAdmin": true}, ${json(valid).slice(1)}`,
      `{"constructor": {"prototype": {"isAdmin": true}}, ${json(valid).slice(1)}`,
      `{"x": {"__proto__": {"polluted": 1}}}`,
      json({ ...valid, isAdmin: true }),
      json({ ...valid, id: 12345 }), // wrong type (no coercion to "12345")
      json([valid]),
      'null',
    ];
    for (const body of bodies) {
      const a = await send({ path: '/v1/admin/parties', as: adminKeys, body });
      expectCoded(a, 'SH_ERR_INVALID_ARGUMENT');
    }
    expect(({} as Record<string, unknown>).isAdmin).toBeUndefined();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(sh.engine.registry.party('aud_poison')).toBeUndefined();
    expect(sh.engine.registry.party('12345')).toBeUndefined();
    expect(snapshot()).toEqual(before);
    // The same valid body is accepted: the refusals were about the bodies.
    expect((await send({ path: '/v1/admin/parties', as: adminKeys, body: json(valid) })).status).toBe(201);
  });

  it('a wrong content type is 415 SH_ERR_UNSUPPORTED_MEDIA_TYPE', async () => {
    const before = snapshot();
    expectCoded(
      await send({
        path: '/v1/admin/parties',
        as: adminKeys,
        body: json(newAuditor('aud_text')),
        contentType: 'text/plain',
      }),
      'SH_ERR_UNSUPPORTED_MEDIA_TYPE',
    );
    expectCoded(
      await send({ path: '/v1/admin/parties', as: adminKeys, body: '<party/>', contentType: 'application/xml' }),
      'SH_ERR_UNSUPPORTED_MEDIA_TYPE',
    );
    // A blob sent as JSON.
    expectCoded(
      await send({ method: 'PUT', path: `/v1/blobs/${sha256Hex('"x"')}`, as: as(TAX), body: '"x"' }),
      'SH_ERR_UNSUPPORTED_MEDIA_TYPE',
    );
    expect(sh.engine.registry.party('aud_text')).toBeUndefined();
    expect(snapshot()).toEqual(before);
  });

  it('an unknown route is 404 SH_ERR_NOT_FOUND, signed or not', async () => {
    expectCoded(await send({ path: '/v1/nothing/here', as: null }), 'SH_ERR_NOT_FOUND');
    expectCoded(await send({ path: '/v1/admin/parties/extra/segments', as: adminKeys }), 'SH_ERR_NOT_FOUND');
    expectCoded(
      await send({ method: 'PUT', path: '/v1/admin/parties', as: adminKeys, body: '{}' }),
      'SH_ERR_NOT_FOUND',
    );
  });
});

// ---------------------------------------------------------------- 7. rate limits

describe('per-party rate limit', () => {
  it('the 6th quick request of one party is 429 with retry-after; another party is still served', async () => {
    const bank = as(DEMO_BANK);
    const answers: Answer[] = [];
    for (let i = 0; i < 6; i++)
      answers.push(await send({ base: limitedUrl, path: `/v1/parties/${DEMO_BANK}`, as: bank }));
    expect(answers.slice(0, 5).map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
    const sixth = answers[5]!;
    expectCoded(sixth, 'SH_ERR_RATE_LIMITED');
    expect(Number(sixth.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(sixth.json.details.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    const other = await send({ base: limitedUrl, path: `/v1/parties/${DEMO_BANK}`, as: as(BANK_B) });
    expect(other.status).toBe(200);
    expect(other.json.id).toBe(DEMO_BANK);
  });
});

// ---------------------------------------------------------------- 8. OpenAPI

describe('GET /docs', () => {
  it('is an OpenAPI 3.0 document covering every role group, with strict request bodies', async () => {
    const a = await send({ path: '/docs', as: null });
    expect(a.status).toBe(200);
    const doc = a.json as {
      openapi: string;
      paths: Record<
        string,
        Record<
          string,
          { requestBody?: { content: Record<string, { schema: Record<string, unknown> }> }; parameters?: unknown[] }
        >
      >;
    };
    expect(doc.openapi).toMatch(/^3\.0\.\d+$/);
    const paths = Object.keys(doc.paths);
    for (const group of ['admin', 'provider', 'bank', 'enterprise', 'auditor']) {
      expect(
        paths.some((p) => p.startsWith(`/v1/${group}/`)),
        group,
      ).toBe(true);
    }
    expect(paths).toContain('/v1/bank/jobs/{id}/result');
    expect(paths).toContain('/v1/blobs/{hash}');
    let bodies = 0;
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const schema = op.requestBody?.content['application/json']?.schema;
        if (!schema) continue;
        bodies++;
        expect(schema.type, `${method} ${path}`).toBe('object');
        expect(schema.additionalProperties, `${method} ${path}`).toBe(false);
      }
    }
    expect(bodies).toBeGreaterThanOrEqual(10);
    expect(doc.paths['/v1/bank/jobs/{id}']!.get!.parameters).toEqual([
      expect.objectContaining({ name: 'id', in: 'path', required: true }),
    ]);
  });
});

// ---------------------------------------------------------------- 9. life cycle

describe('a job over HTTP', () => {
  it('202 → status until done → result opens with the bank key and equals embedded scoring', async () => {
    const { jobId, request, submit, polls, final, result } = await runLifecycle();
    expect(submit.status).toBe(202);
    expect(submit.json).toEqual({ jobId, status: 'queued' });
    expect(polls).toBeLessThan(600);
    expect(final.status).toBe(200);
    expect(final.json).toMatchObject({ jobId, kind: 'score', bank: DEMO_BANK, status: 'done', error: null });
    expect(final.json.progress.done).toBe(final.json.progress.total);
    expect(result.status).toBe(200);
    const rows = openScoreResult(result.json as ScoreResult, DEMO_BANK, keysOf(DEMO_BANK).x25519!.secretKey);
    expect(rows).toEqual(embedded);
    expect(rows.filter((r) => r.status === 'OK').length).toBeGreaterThan(20);
    // A signed request runs once: submitting it again (a client that lost the answer, or after a crash) is the same
    // job — its id and status — and queues nothing; another request under the same job id is a 409.
    const before = snapshot();
    const again = await send({ path: '/v1/bank/jobs', as: as(DEMO_BANK), body: json({ kind: 'score', request }) });
    expect(again.json).toEqual({ jobId, status: 'done' });
    expect(snapshot()).toEqual(before);
    const other = { ...request, body: { ...request.body, subjects: request.body.subjects.slice(1) } };
    const resigned = signJson(other.body, DEMO_BANK, keysOf(DEMO_BANK).ed25519.secretKey);
    expectCoded(
      await send({ path: '/v1/bank/jobs', as: as(DEMO_BANK), body: json({ kind: 'score', request: resigned }) }),
      'SH_ERR_ALREADY_EXISTS',
    );
    expect(snapshot()).toEqual(before);
  });
});
