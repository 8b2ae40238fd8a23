/**
 * Fuzzing the engine server and a custodian server with fast-check: for every route family (admin, provider,
 * bank, enterprise, auditor, blobs) 1000 requests properly signed by a party of the right role — so they pass
 * authentication and the role check — but malformed: random JSON values, wrong types, missing and extra fields, huge
 * strings, invalid hex / base64, `__proto__` / `constructor.prototype` keys, random path parameters and queries,
 * non-JSON text sent as JSON, wrong media types, blobs whose bytes do not hash to their address, and statements signed
 * by the right party but saying something the engine must refuse. Every answer must be a 4xx coded error from the
 * catalog (never a 5xx), and nothing may change: the generators always include at least one violation, so a request
 * that was accepted is a bug, not noise. The custodian server gets 1000 malformed engine-signed requests the same way.
 * Longer than 400 lines: one fuzzing harness — the generators for every route family share the served engine, its
 * parties and the state snapshot each run is compared with.
 */
import { feedCustodian } from '../../engine/protocols/job.ts';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync, readdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { Safehouse } from '../../api/embedded.ts';
import { EngineServer } from '../../api/server/index.ts';
import type { Staging } from '../../api/server/staging.ts';
import { buildCustodianServer } from '../../api/custodian-http.ts';
import { signRequest } from '../../api/httpsig.ts';
import { generateDemo } from '../../api/demo-data.ts';
import { mulberry32 } from '../../core/rng.ts';
import { ERRORS } from '../../core/errors.ts';
import { ed25519KeyPair, signJson, bytesToHex } from '../../core/sign.ts';
import { sha256Hex } from '../../core/hash.ts';
import { createConsent, createRevocation, type SignedConsent } from '../../sandbox/consent.ts';
import { randomUscc, isValidUscc } from '../../sandbox/uscc.ts';

const PROVIDER = 'fz_provider';
const BANK = 'fz_bank';
const BANK2 = 'fz_bank_two';
const AUDITOR = 'fz_auditor';
const ENT = randomUscc(mulberry32(11));
const ENT2 = randomUscc(mulberry32(12));
/** Runs per family (`SH_FUZZ_RUNS=10000` for a longer search). */
const RUNS = Number(process.env.SH_FUZZ_RUNS ?? 1000);
/** What the server logs about uncoded failures (shown with a failing case). */
const internal: string[] = [];

let home: string;
let sh: Safehouse;
let server: EngineServer;
let url: string;
let custodianApp: FastifyInstance;
let custodianUrl: string;
const admin = ed25519KeyPair();
let consent: SignedConsent;
let registered: Set<string>;
/** Ledger size at the latest checkpoint, and the ledger entries in ENT's access report. */
let latest: number;
/** The provider's tax fields (a dataset exists, so training requests reach the planner's later checks). */
let taxFields: string[];
let taxSubjects: string[];
let ownEntries: Set<number>;

interface Signer {
  id: string;
  sk: Uint8Array;
}
const adminSigner: Signer = { id: 'admin', sk: admin.secretKey };
const signer = (id: string): Signer => ({ id, sk: sh.wallet.get(id)!.ed25519.secretKey });
const engineSigner = (): Signer => ({ id: 'engine', sk: sh.engine.keys.ed25519.secretKey });

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'sh-fuzz-'));
  sh = await Safehouse.open({ home, create: true, poolSize: 1 });
  await sh.addParty('provider', PROVIDER);
  const demo = generateDemo(20, 3);
  await sh.ingest(PROVIDER, demo.providers.tax.schema, demo.providers.tax.csv);
  taxSubjects = demo.subjects;
  taxFields = (demo.providers.tax.schema as { fields: Array<{ name: string }> }).fields.map((f) => f.name);
  await sh.addParty('bank', BANK);
  await sh.addParty('bank', BANK2);
  await sh.addParty('auditor', AUDITOR);
  [consent] = sh.grantConsents([
    { subject: ENT, bank: BANK, purpose: 'fuzz', categories: ['tax'], operations: ['score'], days: 30 },
    { subject: ENT2, bank: BANK, purpose: 'fuzz', categories: ['tax'], operations: ['score'], days: 30 },
  ]) as [SignedConsent];
  const unlimited = { burst: 1e9, perSecond: 1e9 };
  server = new EngineServer({
    engine: sh.engine,
    adminPublicKey: admin.publicKey,
    rateLimit: unlimited,
    ipRateLimit: unlimited,
    bodyLimit: 256 * 1024,
    blobLimit: 64 * 1024,
    log: (line) => internal.push(line),
  });
  url = await server.listen(0);
  custodianApp = buildCustodianServer(sh.engine.registry.custodian(PROVIDER), sh.engine.keys.ed25519.publicKey, {
    bodyLimit: 64 * 1024,
  });
  custodianUrl = await custodianApp.listen({ host: '127.0.0.1', port: 0 });
  // The custodian knows banks from the ledger it follows: bring its copy up to date, as the engine does before a job.
  await feedCustodian(sh.engine, PROVIDER);
  sh.engine.ledger.checkpoint();
  latest = sh.engine.ledger.latestCheckpoint()!.size;
  ownEntries = new Set(sh.engine.ledger.subjectEntries(ENT).map((e) => e.index));
  registered = new Set(
    (sh.engine.store.db.prepare('SELECT id FROM parties').all() as Array<{ id: string }>).map((r) => r.id),
  );
});

afterAll(async () => {
  await server?.close();
  await custodianApp?.close();
  await sh?.close();
  if (home) rmSync(home, { recursive: true, force: true });
});

// ---------------------------------------------------------------- sending and checking

type Method = 'GET' | 'POST' | 'PUT';
interface Case {
  method: Method;
  path: string;
  as: Signer;
  body?: string | Uint8Array;
  contentType?: string;
}

async function send(c: Case, base = url, attempt = 0): Promise<{ status: number; text: string; json: unknown }> {
  const u = new URL(c.path, base);
  const body =
    c.body === undefined ? undefined : typeof c.body === 'string' ? new TextEncoder().encode(c.body) : c.body;
  const headers = signRequest(
    { method: c.method, url: u.href, authority: u.host, ...(body ? { body } : {}) },
    c.as.id,
    c.as.sk,
  );
  if (body && c.contentType !== '') headers['content-type'] = c.contentType ?? 'application/json';
  let res: Response;
  try {
    res = await fetch(u, { method: c.method, headers, ...(body ? { body } : {}) });
  } catch (err) {
    // A keep-alive socket the server closed after refusing an oversized body can be reset under the next request
    // before it is sent: that is the transport, not an answer. Re-sign (new nonce) and send once more.
    if (
      attempt === 0 &&
      /ECONNRESET|UND_ERR_SOCKET|other side closed/.test(String((err as { cause?: unknown }).cause ?? err))
    )
      return send(c, base, 1);
    throw err;
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json };
}

const preview = (c: Case) =>
  `${c.method} ${c.path.slice(0, 200)} as ${c.as.id} [${c.contentType ?? 'json'}] ${typeof c.body === 'string' ? c.body.slice(0, 300) : c.body ? `<${c.body.length} bytes>` : ''}`;

/** A 4xx coded error from the catalog, with the catalog's status, past authentication and the role check. */
function checkRefusal(a: { status: number; text: string; json: unknown }, c: Case, seen: Map<string, number>): void {
  const where = `${preview(c)}\n→ ${a.status} ${a.text.slice(0, 300)}${a.status >= 500 && internal.length ? `\nserver log: ${internal.at(-1)!.slice(0, 1500)}` : ''}`;
  expect(a.status >= 400 && a.status < 500, where).toBe(true);
  const j = a.json as { code?: unknown; message?: unknown; details?: unknown } | undefined;
  expect(j !== null && typeof j === 'object' && !Array.isArray(j), where).toBe(true);
  expect(Object.keys(j!).sort(), where).toEqual(['code', 'details', 'message']);
  expect(typeof j!.code === 'string' && j!.code in ERRORS, where).toBe(true);
  const code = j!.code as keyof typeof ERRORS;
  expect(ERRORS[code].status, where).toBe(a.status);
  expect(typeof j!.message, where).toBe('string');
  expect(typeof j!.details === 'object' && j!.details !== null && !Array.isArray(j!.details), where).toBe(true);
  // The request itself was authentic and from the right role: the refusal is about what it says.
  expect(String(j!.message).startsWith('request signature'), where).toBe(false);
  expect(code === 'SH_ERR_PARTY_ROLE' && /^(GET|POST|PUT) \S+ is for /.test(String(j!.message)), where).toBe(false);
  expect(['SH_ERR_RATE_LIMITED', 'SH_ERR_UNAVAILABLE'].includes(code), where).toBe(false);
  seen.set(code, (seen.get(code) ?? 0) + 1);
}

/** Everything a refused request must leave as it was. */
function snapshot(): Record<string, number> {
  const db = sh.engine.store.db;
  const out: Record<string, number> = { ledger: sh.engine.ledger.size() };
  for (const { name } of db
    .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    .all() as Array<{ name: string }>) {
    // Reading a report or a proof signs a checkpoint at the current size: that is not a change of state.
    if (name === 'ledger_checkpoints') continue;
    // A signed request's nonce is kept even when the request is refused, so that it cannot be replayed after a
    // restart (docs/operations.md "Nonces"): recording it is the replay defence, not a change the request made.
    if (name === 'api_nonces') continue;
    out[name] = Number((db.prepare(`SELECT COUNT(*) AS n FROM "${name}"`).get() as { n: number }).n);
  }
  out.staged = (server as unknown as { staging: Staging }).staging.size;
  out.blobs = existsSync(join(home, 'blobs')) ? readdirSync(join(home, 'blobs'), { recursive: true }).length : 0;
  out.custodianJobs = (sh.engine.registry.custodian(PROVIDER) as unknown as { jobs: Map<string, unknown> }).jobs.size;
  return out;
}

async function fuzz(name: string, cases: fc.Arbitrary<Case>, expectCodes: string[], base = url): Promise<void> {
  const before = snapshot();
  const seen = new Map<string, number>();
  // Counterexamples print as one short line (bodies can be 200 000 characters).
  const shown = cases.map((c) => Object.assign(c, { [fc.toStringMethod]: () => preview(c) }));
  await fc.assert(
    fc.asyncProperty(shown, async (c) => {
      checkRefusal(await send(c, base), c, seen);
    }),
    { numRuns: RUNS },
  );
  expect(snapshot(), name).toEqual(before);
  // The generators reach past the schema into the handlers' own checks.
  for (const code of expectCodes)
    expect(seen.get(code) ?? 0, `${name}: ${code} in ${JSON.stringify([...seen])}`).toBeGreaterThan(0);
}

// ---------------------------------------------------------------- generators

const json = (v: unknown) => JSON.stringify(v);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const anyJson = fc.jsonValue({ maxDepth: 3 });
const notObject = anyJson.filter((v) => !isObject(v));
const nonString: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.constant(null),
  fc.array(anyJson, { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 6 }), anyJson, { maxKeys: 3 }),
);
/** Long strings (1 000 – 200 000 characters, some over the 256 KiB body limit once escaped or UTF-8 encoded). */
const huge = fc
  .tuple(fc.integer({ min: 1000, max: 200_000 }), fc.constantFrom('a', '0', 'f', '中', ' ', '"', '\\', '\u0000'))
  .map(([n, ch]) => ch.repeat(n));
const text = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ maxLength: 20, unit: 'grapheme' }));
/** A string that does not match `re` (wrong characters, wrong length, huge), or not a string at all. */
const bad = (re: RegExp): fc.Arbitrary<unknown> =>
  fc.oneof(
    nonString,
    fc.oneof(text, huge, fc.constant('')).filter((s) => !re.test(s)),
  );
const HEX64 = /^[0-9a-f]{64}$/;
const HEX128 = /^[0-9a-f]{128}$/;
const PARTY_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;
const JOB_ID = /^[A-Za-z0-9_.:-]{1,96}$/;
const hex = (bytes: number) => fc.uint8Array({ minLength: bytes, maxLength: bytes }).map((b) => bytesToHex(b));
const hexish = (n: number) =>
  fc.oneof(
    hex(n)
      .map((h) => h.toUpperCase())
      .filter((h) => /[A-F]/.test(h)),
    hex(n).map((h) => h.slice(1)),
    hex(n).map((h) => `${h}0`),
    hex(n).map((h) => `g${h.slice(1)}`),
  );
const badHex = (n: number) => fc.oneof(bad(new RegExp(`^[0-9a-f]{${2 * n}}$`)), hexish(n));
const partyId = fc
  .stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,20}$/)
  .filter((id) => !registered.has(id) && !isValidUscc(id) && id !== 'admin' && id !== 'engine');
const notUscc18 = fc.string({ minLength: 18, maxLength: 18 }).filter((s) => !isValidUscc(s));
const validUscc = fc.integer().map((seed) => randomUscc(mulberry32(seed)));
const jobId = fc.stringMatching(/^[A-Za-z0-9_.:-]{1,40}$/);
const badJobId = fc.oneof(fc.constant(undefined), bad(JOB_ID));
const iso = fc.oneof(
  fc.constant(undefined),
  fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
  text,
);
/** Text that is not JSON at all. */
const nonJson = fc
  .oneof(
    fc.constantFrom(
      '{',
      '}',
      '[1,',
      '{"a":}',
      '{"a":1}}',
      "{'a':1}",
      'undefined',
      'NaN',
      '-',
      '{"a":1,}',
      '\u0000',
      '\ufeff{}x',
      '{"a":"\\x"}',
      '[',
      '"unterminated',
    ),
    fc.string({ minLength: 1, maxLength: 60 }),
  )
  .filter((s) => {
    try {
      JSON.parse(s);
      return false;
    } catch {
      return true;
    }
  });

/** `{"__proto__": …}` or `{"constructor": {"prototype": …}}` spliced into an object's JSON, at the top or nested. */
function poison(objText: string, v: unknown, how: string): string {
  const inner =
    how === 'proto'
      ? `"__proto__":${json(v)}`
      : how === 'ctor'
        ? `"constructor":{"prototype":${json(v)}}`
        : `"nested":{"a":{"__proto__":${json(v)}}}`;
  return objText === '{}' ? `{${inner}}` : `{${inner},${objText.slice(1)}`;
}

interface Shape {
  /** Objects of the route's shape (possibly valid). */
  base: fc.Arbitrary<Record<string, unknown>>;
  required: readonly string[];
  /** Per key, values the schema refuses. */
  bad: Record<string, fc.Arbitrary<unknown>>;
}

/** JSON text that breaks the route's schema in one way, on top of `shape.base`. */
function malformed(shape: Shape): fc.Arbitrary<string> {
  const keys = Object.keys(shape.bad);
  const known = new Set(keys);
  const arbs: Array<fc.Arbitrary<string>> = [
    notObject.map(json),
    nonJson,
    fc.tuple(shape.base, fc.constantFrom(...keys)).chain(([b, k]) => shape.bad[k]!.map((v) => json({ ...b, [k]: v }))),
    fc
      .tuple(
        shape.base,
        fc.string({ minLength: 1, maxLength: 12 }).filter((k) => !known.has(k)),
        anyJson,
      )
      .map(([b, k, v]) => json({ ...b, [k]: v })),
    fc
      .tuple(shape.base, anyJson, fc.constantFrom('proto', 'ctor', 'nested'))
      .map(([b, v, how]) => poison(json(b), v, how)),
  ];
  if (shape.required.length)
    arbs.push(
      fc
        .tuple(shape.base, fc.constantFrom(...shape.required))
        .map(([b, k]) => json(Object.fromEntries(Object.entries(b).filter(([x]) => x !== k)))),
    );
  return fc.oneof(...arbs);
}

/** A random object with a few random members, merged under `fixed`. */
const randomish = <T extends object>(fixed: fc.Arbitrary<T>): fc.Arbitrary<T & Record<string, unknown>> =>
  fc
    .tuple(fixed, fc.dictionary(fc.string({ maxLength: 10 }), anyJson, { maxKeys: 4 }))
    .map(([f, extra]) => ({ ...extra, ...f }));

/** A signed statement as the schema's `SignedDoc` has it (the signature is random unless `signedBy`). */
const signedDoc = (body: fc.Arbitrary<Record<string, unknown>>, signerId: fc.Arbitrary<string>) =>
  fc.tuple(body, signerId, hex(64)).map(([b, s, sig]) => ({ body: b, signer: s, signature: sig }));
const signedBy = (body: fc.Arbitrary<Record<string, unknown>>, who: () => Signer, type: string) =>
  body.map((b) => signJson({ ...b, type }, who().id, who().sk));
const signedDocShape = (type: string, signerId: fc.Arbitrary<string>): Shape => ({
  base: signedDoc(randomish(fc.constant({ type })), signerId) as fc.Arbitrary<Record<string, unknown>>,
  required: ['body', 'signer', 'signature'],
  bad: { body: notObject, signer: bad(PARTY_ID), signature: bad(HEX128) },
});
/** `{ [key]: <signed statement> }` broken at the top level or inside the statement. */
const wrapped = (key: string, inner: Shape): fc.Arbitrary<string> =>
  fc.oneof(
    malformed({ base: inner.base.map((d) => ({ [key]: d })), required: [key], bad: { [key]: notObject } }),
    malformed(inner).map((t) => `{${json(key)}:${t}}`),
  );

/** A path segment: random text (any Unicode), ids of the right shape, or long. */
const segment = fc
  .oneof(
    fc.string({ maxLength: 30 }),
    fc.string({ maxLength: 12, unit: 'grapheme' }),
    jobId,
    fc.stringMatching(/^[0-9a-f]{64}$/),
    fc.constantFrom('', '.', '..', '%', '/', '?x=1', '#', ' ', 'a'.repeat(101), 'x'.repeat(97)),
  )
  .filter((s) => {
    try {
      encodeURIComponent(s);
      return true;
    } catch {
      return false; // lone surrogates cannot be sent in a URL
    }
  });
const seg = (s: string) => encodeURIComponent(s);

/** Query parameters, random or from the route's own names, as [name, value] pairs. */
const queryPairs = (names: string[]) =>
  fc.array(
    fc.tuple(
      fc.oneof(fc.constantFrom(...names), fc.string({ maxLength: 8 })),
      fc.oneof(
        fc.stringMatching(/^[0-9]{1,12}$/),
        fc.integer({ min: 0, max: 200 }).map(String),
        text,
        fc.constantFrom('', '-1', '1e3', '0x10', '9'.repeat(13), ' 1', '1.5'),
      ),
    ),
    { maxLength: 4 },
  );
const qs = (pairs: Array<[string, string]>) => (pairs.length ? `?${new URLSearchParams(pairs).toString()}` : '');
/** A query the schema accepts: only `spec`'s names, once each, every value matching. */
function queryFits(pairs: Array<[string, string]>, spec: Record<string, RegExp>): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  for (const [k, v] of pairs) {
    if (!Object.hasOwn(spec, k) || Object.hasOwn(out, k) || !spec[k]!.test(v)) return undefined;
    out[k] = v;
  }
  return out;
}
const DIGITS = /^[0-9]{1,12}$/;

const post =
  (path: string, as: () => Signer) =>
  (body: string): Case => ({ method: 'POST', path, as: as(), body });
const get = (path: string, as: () => Signer): Case => ({ method: 'GET', path, as: as() });

// ---------------------------------------------------------------- families

const ROLES = ['provider', 'bank', 'enterprise', 'auditor'];

function adminCases(): fc.Arbitrary<Case> {
  const as = () => adminSigner;
  const party: Shape = {
    base: fc.record(
      { id: partyId, role: fc.constantFrom(...ROLES), ed25519: hex(32), x25519: hex(32) },
      { requiredKeys: ['id', 'role', 'ed25519'] },
    ),
    required: ['id', 'role', 'ed25519'],
    bad: {
      id: bad(PARTY_ID),
      role: fc.oneof(
        nonString,
        text.filter((r) => !ROLES.includes(r)),
      ),
      ed25519: badHex(32),
      x25519: badHex(32),
      bfvPublicKey: fc.oneof(
        nonString,
        text.filter((s) => !/^[A-Za-z0-9+/]*={0,2}$/.test(s)),
      ),
      oprfPublicKey: badHex(33),
    },
  };
  // Well-formed, and still refused by the engine: reserved ids, missing keys for the role, an id taken, a bad USCC.
  const refused = fc
    .oneof(
      fc.record({
        id: fc.constantFrom('admin', 'engine'),
        role: fc.constantFrom('bank', 'auditor'),
        ed25519: hex(32),
        x25519: hex(32),
      }),
      fc.record({ id: partyId, role: fc.constantFrom('bank', 'auditor'), ed25519: hex(32) }),
      fc.record({ id: partyId, role: fc.constant('provider'), ed25519: hex(32), oprfPublicKey: hex(33) }),
      fc.record({
        id: fc.oneof(
          partyId,
          notUscc18.filter((s) => PARTY_ID.test(s)),
        ),
        role: fc.constant('enterprise'),
        ed25519: hex(32),
      }),
      fc.record({
        id: partyId,
        role: fc.constantFrom('bank', 'auditor'),
        ed25519: hex(32),
        x25519: hex(32),
        oprfPublicKey: hex(33),
      }),
      fc.record({
        id: fc.constantFrom(BANK, AUDITOR, PROVIDER, ENT),
        role: fc.constantFrom(...ROLES),
        ed25519: hex(32),
        x25519: hex(32),
      }),
    )
    .map(json);
  const item = fc.record({ uscc: validUscc, ed25519: hex(32) });
  const enterprises: Shape = {
    base: fc
      .tuple(fc.array(item, { maxLength: 3 }), fc.record({ uscc: notUscc18, ed25519: hex(32) }), fc.nat())
      .map(([ok, badOne, at]) => {
        const list: unknown[] = [...ok];
        list.splice(at % (ok.length + 1), 0, badOne); // one bad USCC refuses the whole batch
        return { enterprises: list };
      }),
    required: ['enterprises'],
    bad: {
      enterprises: fc.oneof(
        fc.oneof(nonString, text).filter((v) => !Array.isArray(v)),
        fc.array(notObject, { minLength: 1, maxLength: 3 }),
        fc
          .tuple(
            fc.array(item, { maxLength: 2 }),
            fc.oneof(
              fc.record({
                uscc: fc.oneof(
                  nonString,
                  text.filter((s) => s.length !== 18),
                ),
                ed25519: hex(32),
              }),
              fc.record({ uscc: validUscc, ed25519: badHex(32) }),
              fc.record({ uscc: validUscc }),
              fc.record({ uscc: validUscc, ed25519: hex(32), extra: anyJson }),
            ),
          )
          .map(([ok, b]) => [...ok, b]),
      ),
    },
  };
  return fc.oneof(
    fc.oneof(malformed(party), refused).map(post('/v1/admin/parties', as)),
    malformed(enterprises).map(post('/v1/admin/enterprises', as)),
    segment.filter((s) => !registered.has(s)).map((s) => get(`/v1/parties/${seg(s)}`, as)),
  );
}

function providerCases(): fc.Arbitrary<Case> {
  const as = () => signer(PROVIDER);
  const signerIds = fc.oneof(fc.constant(PROVIDER), fc.constantFrom(BANK, AUDITOR, 'nobody'));
  const manifestBody = randomish(
    fc.record(
      {
        provider: fc.oneof(fc.constant(PROVIDER), text),
        paramsId: fc.oneof(fc.constant(sh.engine.params.id), text),
        datasetId: fc.oneof(jobId, text),
        schema: anyJson,
        subjectsBlob: fc.oneof(hex(32), text),
        columns: anyJson,
      },
      { requiredKeys: [] },
    ),
  );
  const approvalBody = randomish(
    fc.record(
      {
        provider: fc.oneof(fc.constant(PROVIDER), text),
        modelId: fc.oneof(jobId, text),
        modelHash: fc.oneof(hex(32), text),
        datasetId: text,
        derived: anyJson,
      },
      { requiredKeys: [] },
    ),
  );
  // A URL the schema accepts but that does not parse: never a network call, always the provider's mistake.
  const unparsable = fc
    .oneof(
      fc.constantFrom(
        'http://',
        'https://',
        'http://[',
        'http://[::1',
        'http://a b/',
        'http://%zz/',
        'http://:80/',
        'http://a:99999/',
        'https://a:-1/',
        'http://[fe80::1%eth0]/',
        'http://a\u0000b/',
        'http://<>/',
      ),
      fc
        .tuple(
          fc.constantFrom('http://', 'https://'),
          fc.stringMatching(/^[a-z0-9.]{0,10}$/),
          fc.constantFrom(' ', '[', ']', '%', '<', '>', '^', '|', '\\x', ':x', ':99999', '@:'),
          fc.string({ maxLength: 8 }),
        )
        .map(([s, a, c, b]) => `${s}${a}${c}${b}`),
    )
    .filter((u) => {
      try {
        new URL(u);
        return false;
      } catch {
        return true;
      }
    });
  const custodian: Shape = {
    base: unparsable.map((u) => ({ url: u })),
    required: ['url'],
    bad: {
      url: fc.oneof(
        nonString,
        text.filter((s) => !/^https?:\/\//.test(s)),
        fc.integer({ min: 301, max: 5000 }).map((n) => `http://${'a'.repeat(n)}`),
      ),
    },
  };
  return fc.oneof(
    wrapped('manifest', signedDocShape('safehouse.upload.v1', signerIds)).map(post('/v1/provider/datasets', as)),
    // Signed by the provider itself, saying something the engine refuses (its blobs were never staged, no model exists).
    fc
      .oneof(
        signedBy(manifestBody, as, 'safehouse.upload.v1'),
        signedDoc(
          manifestBody.map((b) => ({ ...b, type: 'safehouse.upload.v1' })),
          signerIds,
        ),
      )
      .map((m) => json({ manifest: m }))
      .map(post('/v1/provider/datasets', as)),
    wrapped('approval', signedDocShape('safehouse.approval.v1', signerIds)).map(post('/v1/provider/approvals', as)),
    fc
      .oneof(signedBy(approvalBody, as, 'safehouse.approval.v1'), signedBy(approvalBody, as, 'safehouse.upload.v1'))
      .map((a) => json({ approval: a }))
      .map(post('/v1/provider/approvals', as)),
    fc
      .oneof(
        malformed(custodian),
        unparsable.map((u) => json({ url: u })),
      )
      .map(post('/v1/provider/custodian', as)),
    segment.map((s) => get(`/v1/provider/models/${seg(s)}`, as)),
  );
}

function bankCases(): fc.Arbitrary<Case> {
  const as = () => signer(BANK);
  const types = {
    score: 'safehouse.score.request.v1',
    verify: 'safehouse.verify.request.v1',
    train: 'safehouse.train.request.v1',
  } as const;
  const kinds = Object.keys(types) as Array<keyof typeof types>;
  const now = () => new Date().toISOString();
  const requestBody = (id: fc.Arbitrary<unknown>) =>
    randomish(
      fc.record(
        {
          bank: fc.oneof(fc.constant(BANK), fc.constant(BANK2), text),
          jobId: id,
          requestedAt: fc.oneof(iso, fc.constant('now')),
          subjects: fc.oneof(fc.array(validUscc, { maxLength: 3 }), anyJson),
          modelId: text,
          provider: fc.oneof(fc.constant(PROVIDER), text),
          fields: anyJson,
          others: anyJson,
          bins: anyJson,
          options: anyJson,
          claims: anyJson,
          purpose: text,
        },
        { requiredKeys: ['bank', 'jobId'] },
      ),
    ).map((b) => (b.requestedAt === 'now' ? { ...b, requestedAt: now() } : b));
  const job: Shape = {
    base: fc.record({
      kind: fc.constantFrom(...kinds),
      request: signedDoc(
        requestBody(jobId).map((b) => ({ ...b, type: types.score })),
        fc.constant(BANK),
      ),
    }),
    required: ['kind', 'request'],
    bad: {
      kind: fc.oneof(
        nonString,
        text.filter((k) => !kinds.includes(k as never)),
      ),
      request: fc.oneof(
        notObject,
        fc.record({ body: notObject, signer: fc.constant(BANK), signature: hex(64) }),
        fc.record({ body: fc.constant({}), signer: bad(PARTY_ID), signature: hex(64) }),
        fc.record({ body: fc.constant({}), signer: fc.constant(BANK), signature: badHex(64) }),
      ),
      openings: fc.oneof(
        notObject,
        fc.dictionary(
          fc.string({ maxLength: 8 }),
          fc.oneof(
            notObject,
            fc.record({ values: fc.array(fc.string(), { minLength: 17, maxLength: 20 }), salt: hex(16) }),
            fc.record({
              values: fc.array(fc.string({ minLength: 257, maxLength: 300 }), { minLength: 1, maxLength: 2 }),
              salt: hex(16),
            }),
            fc.record({
              values: fc.array(fc.string(), { maxLength: 2 }),
              salt: fc.oneof(
                bad(/^[0-9a-f]{32,64}$/),
                hex(8),
                hex(16).map((h) => `g${h.slice(1)}`),
                hex(33),
              ),
            }),
            fc.record({ values: fc.array(nonString, { minLength: 1, maxLength: 2 }), salt: hex(16) }),
            fc.record({ values: fc.array(fc.string(), { maxLength: 2 }) }),
            fc.record({ values: fc.array(fc.string(), { maxLength: 2 }), salt: hex(16), extra: anyJson }),
          ),
          { minKeys: 1, maxKeys: 2 },
        ),
      ),
    },
  };
  // Well-formed submissions the server must refuse before queueing anything.
  const refused = fc
    .oneof(
      // another bank's signed request, or one naming another bank
      fc.tuple(fc.constantFrom(...kinds), requestBody(jobId)).map(([k, b]) => ({
        kind: k,
        request: signJson({ ...b, bank: BANK2, type: types[k] }, BANK2, signer(BANK2).sk),
      })),
      fc.tuple(fc.constantFrom(...kinds), requestBody(jobId)).map(([k, b]) => ({
        kind: k,
        request: signJson({ ...b, bank: BANK2, type: types[k] }, BANK, signer(BANK).sk),
      })),
      // forged: the bank's name, anyone's signature
      fc.tuple(fc.constantFrom(...kinds), requestBody(jobId), hex(64)).map(([k, b, sig]) => ({
        kind: k,
        request: { body: { ...b, bank: BANK, type: types[k] }, signer: BANK, signature: sig },
      })),
      // signed by the bank, but for another kind of job than the one submitted
      fc
        .tuple(fc.constantFrom(...kinds), fc.constantFrom(...kinds), requestBody(jobId))
        .filter(([k, t]) => k !== t)
        .map(([k, t, b]) => ({
          kind: k,
          request: signJson({ ...b, bank: BANK, type: types[t] }, BANK, signer(BANK).sk),
        })),
      // signed by the bank with an invalid or missing job id
      fc
        .tuple(fc.constantFrom(...kinds), requestBody(badJobId))
        .map(([k, b]) => ({ kind: k, request: signJson({ ...b, bank: BANK, type: types[k] }, BANK, signer(BANK).sk) })),
      // a verify job without its openings
      requestBody(jobId).map((b) => ({
        kind: 'verify',
        request: signJson({ ...b, bank: BANK, type: types.verify }, BANK, signer(BANK).sk),
      })),
      // a training request the planner refuses (no dataset, bad fields, stale or future requestedAt…)
      requestBody(jobId).map((b) => ({
        kind: 'train',
        request: signJson({ ...b, bank: BANK, type: types.train }, BANK, signer(BANK).sk),
      })),
    )
    .map(json);
  // Fresh training requests with a valid bin count, mostly naming the provider's real fields, so the planner's own checks
  // (providers, fields, others, subjects, consent, cohort minimum) run; no bank holds a training consent, so none passes.
  const mostly = <T, U>(usual: fc.Arbitrary<T>, other: fc.Arbitrary<U>) =>
    fc.oneof({ arbitrary: usual, weight: 4 }, { arbitrary: other, weight: 1 });
  const planner = fc
    .record(
      {
        jobId,
        bins: fc.integer({ min: 2, max: 20 }),
        provider: mostly(fc.constant(PROVIDER), fc.oneof(fc.constant(BANK), text, nonString)),
        fields: mostly(
          fc.array(fc.constantFrom(...taxFields), { minLength: 1, maxLength: 3 }),
          fc.oneof(anyJson, fc.array(text, { minLength: 1, maxLength: 2 })),
        ),
        others: mostly(
          fc.constant(undefined),
          fc.oneof(
            anyJson,
            fc.array(
              fc.oneof(
                anyJson,
                fc.record({
                  provider: fc.oneof(fc.constant(PROVIDER), fc.constant(BANK), text),
                  fields: fc.oneof(anyJson, fc.array(fc.constantFrom(...taxFields), { minLength: 1 })),
                }),
              ),
              { maxLength: 2 },
            ),
          ),
        ),
        subjects: mostly(fc.array(fc.oneof(fc.constantFrom(...taxSubjects), validUscc), { maxLength: 4 }), anyJson),
        purpose: text,
        features: mostly(fc.constant(undefined), anyJson),
        options: mostly(fc.constant(undefined), anyJson),
      },
      { requiredKeys: ['jobId', 'bins', 'provider', 'fields', 'subjects', 'others', 'features', 'options'] },
    )
    .map((b) =>
      json({
        kind: 'train',
        request: signJson({ ...b, bank: BANK, requestedAt: now(), type: types.train }, BANK, signer(BANK).sk),
      }),
    );
  const registration: Shape = signedDocShape(
    'safehouse.model.register.v1',
    fc.oneof(fc.constant(BANK), fc.constant(BANK2)),
  );
  const model = fc.oneof(
    notObject,
    randomish(
      fc.record(
        {
          id: text,
          kind: fc.oneof(
            nonString,
            text.filter((k) => k !== 'linear' && k !== 'scorecard'),
          ),
          intercept: anyJson,
          terms: anyJson,
        },
        { requiredKeys: ['kind'] },
      ),
    ),
  );
  const labels: Shape = signedDocShape('safehouse.train.labels.v1', fc.constant(BANK));
  return fc.oneof(
    fc.oneof(malformed(job), refused, planner).map(post('/v1/bank/jobs', as)),
    fc
      .oneof(
        wrapped('registration', registration),
        fc.tuple(model, fc.oneof(fc.constant(BANK), fc.constant(BANK2))).map(([m, b]) =>
          json({
            registration: signJson({ type: 'safehouse.model.register.v1', bank: b, model: m }, BANK, signer(BANK).sk),
          }),
        ),
      )
      .map(post('/v1/bank/models', as)),
    segment.map((s) => get(`/v1/bank/models/${seg(s)}`, as)),
    segment.map((s) => get(`/v1/bank/jobs/${seg(s)}`, as)),
    segment.map((s) => get(`/v1/bank/jobs/${seg(s)}/result`, as)),
    fc
      .tuple(
        segment,
        fc.oneof(
          wrapped('labels', labels),
          signedBy(randomish(fc.record({ jobId })), as, 'safehouse.train.labels.v1').map((l) => json({ labels: l })),
        ),
      )
      .map(([s, body]) => post(`/v1/bank/jobs/${seg(s)}/labels`, as)(body)),
  );
}

function enterpriseCases(): fc.Arbitrary<Case> {
  const as = () => signer(ENT);
  const statement = (subject: fc.Arbitrary<unknown>) =>
    randomish(
      fc.record(
        {
          subject,
          id: text,
          grantee: fc.oneof(fc.constant(BANK), text),
          purpose: text,
          categories: anyJson,
          operations: anyJson,
          notBefore: iso,
          notAfter: iso,
          nonce: fc.oneof(hex(16), text),
          consentId: fc.oneof(fc.constant(consent.statement.id), text),
          revokedAt: iso,
        },
        { requiredKeys: ['subject'] },
      ),
    );
  const item = (subject: fc.Arbitrary<unknown>) => fc.record({ statement: statement(subject), signature: hex(64) });
  const list = (key: string): Shape => ({
    base: fc
      .array(item(fc.oneof(fc.constant(ENT), fc.constant(ENT2), notUscc18)), { minLength: 1, maxLength: 3 })
      .map((xs) => ({ [key]: xs })),
    required: [key],
    bad: {
      [key]: fc.oneof(
        fc.oneof(nonString, text).filter((v) => !Array.isArray(v)),
        fc.constant([]),
        fc
          .integer({ min: 1001, max: 1100 })
          .map((n) => Array.from({ length: n }, () => ({ statement: { subject: ENT }, signature: 'a'.repeat(128) }))),
        fc.array(
          fc.oneof(
            notObject,
            fc.record({ statement: notObject, signature: hex(64) }),
            fc.record({
              statement: statement(
                fc.oneof(
                  nonString,
                  text.filter((s) => s.length !== 18),
                ),
              ),
              signature: hex(64),
            }),
            fc.record({ statement: statement(fc.constant(ENT)), signature: badHex(64) }),
            fc.record({ statement: statement(fc.constant(ENT)) }),
            fc.record({ statement: statement(fc.constant(ENT)), signature: hex(64), extra: anyJson }),
          ),
          { minLength: 1, maxLength: 2 },
        ),
      ),
    },
  });
  const sk = () => signer(ENT).sk;
  // Well-formed and refused: another subject, a statement the engine finds invalid, a bad signature, a consent recorded already.
  const grantRefused = fc
    .oneof(
      fc.array(item(fc.oneof(fc.constant(ENT), fc.constant(ENT2), validUscc)), { minLength: 1, maxLength: 3 }),
      fc.constant([consent]),
      hex(64).map((sig) => [
        {
          ...createConsent(
            {
              subject: ENT,
              grantee: BANK,
              purpose: 'fuzz_other',
              categories: ['tax'],
              operations: ['score'],
              notBefore: new Date(),
              notAfter: new Date(Date.now() + 86_400_000),
            },
            sk(),
          ),
          signature: sig,
        },
      ]),
      fc.constant(null).map(() => [
        createConsent(
          {
            subject: ENT,
            grantee: BANK,
            purpose: 'fuzz_other',
            categories: ['tax'],
            operations: ['score'],
            notBefore: new Date(),
            notAfter: new Date(Date.now() + 86_400_000),
          },
          signer(ENT2).sk,
        ),
      ]),
      fc.constant(null).map(() => [
        createConsent(
          {
            subject: ENT,
            grantee: BANK2 + '_unregistered',
            purpose: 'fuzz_other',
            categories: ['tax'],
            operations: ['score'],
            notBefore: new Date(),
            notAfter: new Date(Date.now() + 86_400_000),
          },
          sk(),
        ),
      ]),
    )
    .map((consents) => json({ consents }));
  const revokeRefused = fc
    .oneof(
      fc.array(item(fc.oneof(fc.constant(ENT), fc.constant(ENT2), validUscc)), { minLength: 1, maxLength: 3 }),
      hex(64).map((sig) => [{ ...createRevocation(consent.statement.id, ENT, sk()), signature: sig }]),
      fc.constant(null).map(() => [createRevocation(consent.statement.id, ENT, signer(ENT2).sk)]),
      hex(16).map((h) => [createRevocation(`c_${h}`, ENT, sk())]),
    )
    .map((revocations) => json({ revocations }));
  const subjectQuery = fc
    .tuple(queryPairs(['subject']), fc.boolean())
    .map(([p, other]) => (other ? [...p, ['subject', ENT2] as [string, string]] : p))
    .filter((p) => {
      const q = queryFits(p, { subject: /^.{18}$/s });
      return !(q && (q.subject === undefined || q.subject === ENT)); // only these are allowed
    });
  const inclusion = queryPairs(['index', 'size']).filter((p) => {
    const q = queryFits(p, { index: DIGITS, size: DIGITS });
    if (!q || q.index === undefined) return true;
    const size = q.size === undefined ? latest : Number(q.size);
    return !(Number(q.index) < size && size <= latest && ownEntries.has(Number(q.index)));
  });
  return fc.oneof(
    fc.oneof(malformed(list('consents')), grantRefused).map(post('/v1/enterprise/consents', as)),
    fc.oneof(malformed(list('revocations')), revokeRefused).map(post('/v1/enterprise/revocations', as)),
    subjectQuery.map((p) => get(`/v1/enterprise/consents${qs(p)}`, as)),
    subjectQuery.map((p) => get(`/v1/enterprise/report${qs(p)}`, as)),
    inclusion.map((p) => get(`/v1/auditor/proofs/inclusion${qs(p)}`, as)),
  );
}

function auditorCases(): fc.Arbitrary<Case> {
  const as = () => signer(AUDITOR);
  const range = queryPairs(['from', 'limit']).filter((p) => !queryFits(p, { from: DIGITS, limit: /^[0-9]{1,6}$/ }));
  const inclusion = queryPairs(['index', 'size']).filter((p) => {
    const q = queryFits(p, { index: DIGITS, size: DIGITS });
    if (!q || q.index === undefined) return true;
    const size = q.size === undefined ? latest : Number(q.size);
    return !(Number(q.index) < size && size <= latest);
  });
  const consistency = fc
    .oneof(
      queryPairs(['from', 'to']),
      fc.tuple(fc.nat({ max: latest + 5 }), fc.nat({ max: latest + 5 })).map(([a, b]): Array<[string, string]> => [
        ['from', String(a)],
        ['to', String(b)],
      ]),
    )
    .filter((p) => {
      const q = queryFits(p, { from: DIGITS, to: DIGITS });
      if (!q || q.from === undefined) return true;
      const to = q.to === undefined ? latest : Number(q.to);
      return !(Number(q.from) <= to && to <= latest);
    });
  return fc.oneof(
    range.map((p) => get(`/v1/auditor/ledger${qs(p)}`, as)),
    segment.map((s) => get(`/v1/auditor/jobs/${seg(s)}`, as)),
    segment.map((s) => get(`/v1/auditor/blobs/${seg(s)}`, as)),
    inclusion.map((p) => get(`/v1/auditor/proofs/inclusion${qs(p)}`, as)),
    consistency.map((p) => get(`/v1/auditor/proofs/consistency${qs(p)}`, as)),
  );
}

function blobCases(): fc.Arbitrary<Case> {
  const as = fc.constantFrom(PROVIDER, BANK).map((id) => signer(id));
  const bytes = fc.oneof(
    fc.uint8Array({ maxLength: 4096 }),
    fc.integer({ min: 64 * 1024 + 1, max: 100 * 1024 }).map((n) => new Uint8Array(randomBytes(n))),
  );
  const wrongHash = fc
    .tuple(bytes, fc.oneof(hex(32), fc.constant('sha')))
    .map(([b, h]) => ({ b, h: h === 'sha' ? sha256Hex(new Uint8Array([...b, 0])) : h }))
    .filter(({ b, h }) => sha256Hex(b) !== h);
  return fc.oneof(
    // bytes that do not hash to the address
    fc.tuple(as, wrongHash).map(([who, { b, h }]): Case => ({
      method: 'PUT',
      path: `/v1/blobs/${h}`,
      as: who,
      body: b,
      contentType: 'application/octet-stream',
    })),
    // an address that is not a SHA-256 hex digest (the bytes' own hash, upper-cased or cut, or random text)
    fc
      .tuple(
        as,
        bytes,
        fc.oneof(
          segment.filter((s) => !HEX64.test(s)),
          fc.constant('upper'),
          fc.constant('cut'),
        ),
      )
      .map(([who, b, s]): Case => {
        const h = s === 'upper' ? sha256Hex(b).toUpperCase() : s === 'cut' ? sha256Hex(b).slice(2) : seg(s);
        return { method: 'PUT', path: `/v1/blobs/${h}`, as: who, body: b, contentType: 'application/octet-stream' };
      }),
    // the right address, the wrong media type: JSON, text, none, something else
    fc
      .tuple(
        as,
        fc.oneof(anyJson.map(json), nonJson, fc.string({ minLength: 1 })),
        fc.constantFrom(
          'application/json',
          'text/plain',
          '',
          'application/x-www-form-urlencoded',
          'image/png',
          'multipart/form-data; boundary=x',
        ),
      )
      .map(([who, body, ct]): Case => ({
        method: 'PUT',
        path: `/v1/blobs/${sha256Hex(body)}`,
        as: who,
        body,
        contentType: ct,
      })),
  );
}

function custodianCases(): fc.Arbitrary<Case> {
  const as = engineSigner;
  const paramsId = fc.oneof(fc.constant(sh.engine.params.id), text);
  const provider = fc.oneof(fc.constant(PROVIDER), text);
  const b64 = fc.oneof(
    fc.uint8Array({ maxLength: 256 }).map((b) => Buffer.from(b).toString('base64')),
    text,
    nonString,
  );
  const engineSigned = (type: string, fields: fc.Arbitrary<Record<string, unknown>>) =>
    signedBy(randomish(fields), as, type);
  const decrypt = fc.record(
    {
      paramsId,
      provider,
      jobId: fc.oneof(jobId, text),
      jobHash: fc.oneof(hex(32), text),
      label: fc.oneof(fc.constant('score/x/block/0'), text),
      mode: fc.oneof(fc.constantFrom('seal', 'sum', 'sign'), text),
      ciphertext: fc.oneof(hex(32), text),
      recipient: anyJson,
      groupSize: anyJson,
    },
    { requiredKeys: [] },
  );
  const transfer = fc.record(
    {
      paramsId,
      provider,
      jobId: text,
      jobHash: hex(32),
      label: text,
      ciphertext: hex(32),
      target: anyJson,
      moves: anyJson,
    },
    { requiredKeys: [] },
  );
  const tokens = fc.record(
    {
      suite: fc.oneof(fc.constant('P256-SHA256'), text),
      mode: fc.oneof(fc.constant('POPRF'), text),
      provider,
      jobId: text,
      jobHash: hex(32),
      field: text,
      epoch: anyJson,
      label: text,
      elements: anyJson,
    },
    { requiredKeys: [] },
  );
  // Bank jobs the custodian must not open: forged, from an unknown bank, stale, or not a job at all.
  const bankBody = randomish(
    fc.record({
      jobId,
      bank: fc.constant(BANK),
      subjects: fc.array(validUscc, { minLength: 1, maxLength: 3 }),
      requestedAt: fc.constant(''),
      type: fc.constantFrom('safehouse.score.request.v1', 'safehouse.verify.request.v1', 'safehouse.train.request.v1'),
    }),
  );
  const job = fc.oneof(
    anyJson,
    fc
      .tuple(bankBody, hex(64))
      .map(([b, sig]) => ({ body: { ...b, requestedAt: new Date().toISOString() }, signer: BANK, signature: sig })),
    bankBody.map((b) =>
      signJson({ ...b, requestedAt: new Date().toISOString() }, 'bank_unknown', ed25519KeyPair().secretKey),
    ),
    fc
      .tuple(bankBody, fc.integer({ min: 16, max: 10_000 }))
      .map(([b, min]) =>
        signJson({ ...b, requestedAt: new Date(Date.now() - min * 60_000).toISOString() }, BANK, signer(BANK).sk),
      ),
    fc
      .tuple(bankBody, text)
      .map(([b, t]) =>
        signJson({ ...b, type: `x.${t}`, requestedAt: new Date().toISOString() }, BANK, signer(BANK).sk),
      ),
    fc
      .tuple(bankBody, iso)
      .map(([b, at]) => signJson({ ...b, ...(at === undefined ? {} : { requestedAt: at }) }, BANK, signer(BANK).sk))
      .filter(
        (j) =>
          !Number.isFinite(Date.parse(String(j.body.requestedAt))) ||
          Math.abs(Date.now() - Date.parse(String(j.body.requestedAt))) > 20 * 60_000,
      ),
  );
  const bodies = (route: string): fc.Arbitrary<string> => {
    const objects: Record<string, fc.Arbitrary<Record<string, unknown>>> = {
      jobs: fc.oneof(
        randomish(fc.record({ job }, { requiredKeys: [] })),
        job.map((j) => ({ job: j })),
      ),
      decrypt: randomish(
        fc.record(
          {
            request: fc.oneof(
              anyJson,
              engineSigned('safehouse.custodian.decrypt.v1', decrypt),
              engineSigned('safehouse.custodian.transfer.v1', decrypt),
            ),
            ciphertext: b64,
          },
          { requiredKeys: [] },
        ),
      ),
      transfer: randomish(
        fc.record(
          {
            request: fc.oneof(anyJson, engineSigned('safehouse.custodian.transfer.v1', transfer)),
            ciphertext: b64,
            targetPublicKey: b64,
          },
          { requiredKeys: [] },
        ),
      ),
      tokens: randomish(
        fc.record(
          {
            request: fc.oneof(anyJson, engineSigned('safehouse.custodian.oprf.v1', tokens)),
            bankRequest: fc.oneof(anyJson, job),
          },
          { requiredKeys: [] },
        ),
      ),
    };
    return fc.oneof(
      notObject.map(json),
      nonJson,
      objects[route]!.map(json),
      fc
        .tuple(objects[route]!, anyJson, fc.constantFrom('proto', 'ctor', 'nested'))
        .map(([o, v, how]) => poison(json(o), v, how)),
      huge.filter((s) => s.length > 70_000).map((s) => json({ padding: s })),
    );
  };
  return fc.oneof(
    ...['jobs', 'decrypt', 'transfer', 'tokens'].map((route) =>
      fc.oneof(
        bodies(route).map((body): Case => ({ method: 'POST', path: `/v1/custodian/${route}`, as: as(), body })),
        fc
          .tuple(bodies(route), fc.constantFrom('application/xml', 'application/octet-stream', 'image/png'))
          .map(([body, ct]): Case => ({
            method: 'POST',
            path: `/v1/custodian/${route}`,
            as: as(),
            body,
            contentType: ct,
          })),
      ),
    ),
  );
}

// ---------------------------------------------------------------- properties

describe('fuzzing the engine server: malformed requests by the right party are coded 4xx and change nothing', () => {
  it('admin routes', async () => {
    await fuzz('admin', adminCases(), [
      'SH_ERR_INVALID_ARGUMENT',
      'SH_ERR_UNKNOWN_PARTY',
      'SH_ERR_ALREADY_EXISTS',
      'SH_ERR_USCC_FORMAT',
    ]);
  });

  it('provider routes', async () => {
    await fuzz('provider', providerCases(), [
      'SH_ERR_INVALID_ARGUMENT',
      'SH_ERR_FORBIDDEN',
      'SH_ERR_BAD_SIGNATURE',
      'SH_ERR_NOT_FOUND',
      'SH_ERR_PARAMS_MISMATCH',
      'SH_ERR_SCHEMA_INVALID',
    ]);
  });

  it('bank routes', async () => {
    await fuzz('bank', bankCases(), [
      'SH_ERR_INVALID_ARGUMENT',
      'SH_ERR_FORBIDDEN',
      'SH_ERR_BAD_SIGNATURE',
      'SH_ERR_NOT_FOUND',
      'SH_ERR_MODEL_INVALID',
      'SH_ERR_JOB_TOO_LARGE',
    ]);
  });

  it('enterprise routes', async () => {
    await fuzz('enterprise', enterpriseCases(), [
      'SH_ERR_INVALID_ARGUMENT',
      'SH_ERR_FORBIDDEN',
      'SH_ERR_BAD_SIGNATURE',
      'SH_ERR_ALREADY_EXISTS',
    ]);
  });

  it('auditor routes', async () => {
    await fuzz('auditor', auditorCases(), ['SH_ERR_INVALID_ARGUMENT', 'SH_ERR_NOT_FOUND']);
  });

  it('blob uploads', async () => {
    await fuzz('blobs', blobCases(), [
      'SH_ERR_INVALID_ARGUMENT',
      'SH_ERR_CIPHERTEXT_INVALID',
      'SH_ERR_UNSUPPORTED_MEDIA_TYPE',
      'SH_ERR_BODY_TOO_LARGE',
    ]);
  });
});

describe('fuzzing a custodian server', () => {
  it('malformed engine-signed requests are coded 4xx and open no job', async () => {
    await fuzz(
      'custodian',
      custodianCases(),
      ['SH_ERR_INVALID_ARGUMENT', 'SH_ERR_BAD_SIGNATURE', 'SH_ERR_PARAMS_MISMATCH', 'SH_ERR_REQUEST_STALE'],
      custodianUrl,
    );
  });
});
