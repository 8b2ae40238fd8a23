/**
 * The engine on the network (issue 5): `safehouse serve`. A fastify server around one `Engine`, with routes grouped by
 * role — admin (parties), provider (blobs, datasets, model review and approval, its custodian's address), bank (models,
 * asynchronous score / verify / train jobs), enterprise (consents, revocations, its access report), auditor (ledger
 * entries and checkpoints to verify on its own side). The handlers call the same engine and protocol functions as
 * embedded mode (api/embedded.ts); only the transport differs.
 *
 * Every `/v1` route except `GET /v1/info` takes an RFC 9421 signature by a registered party (api/httpsig.ts), then the
 * role check, then the typebox schema (`additionalProperties: false`), then per-object authorization. Errors are the
 * one coded catalog (`{ code, message, details }`); bodies are limited (413), `__proto__`/`constructor` keys refused
 * (400), requests rate-limited per address before authentication and per party after it (429). `GET /docs` serves
 * the OpenAPI 3.0 document built from the same schemas.
 *
 * Jobs are asynchronous: `POST /v1/bank/jobs` → 202 `{ jobId }` → `GET /v1/bank/jobs/{id}` (status, progress) →
 * `GET /v1/bank/jobs/{id}/result`. Job records live in the engine database, results under `<home>/results/`, so a
 * restart loses nothing; on shutdown the running job finishes and queued jobs are parked, then resumed at the next
 * start (a request that went stale meanwhile then fails with its coded error).
 */
import { join } from 'node:path';
import { mkdirSync, readFileSync, writeFileSync, existsSync, renameSync } from 'node:fs';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { Type, type TSchema } from '@sinclair/typebox';
import { SafehouseError, fail, ERRORS, isCoded, type ErrorCode } from '../core/errors.ts';
import type { Engine } from '../engine/engine.ts';
import type { PartyRole } from '../engine/registry.ts';
import { sha256Hex } from '../core/hash.ts';
import { bytesToHex, hexToBytes, requireSignature, ed25519KeyPair, type Signed } from '../core/sign.ts';
import { runScoreJob } from '../engine/protocols/score/run.ts';
import { type ScoreRequest } from '../engine/protocols/score/messages.ts';
import { runVerifyJob } from '../engine/protocols/verify/run.ts';
import { type VerifyRequest, type ClaimOpenings } from '../engine/protocols/verify/messages.ts';
import { planTraining } from '../engine/protocols/train/engine.ts';
import { runTrainJob, type TrainingColumnsSource } from '../engine/protocols/train/run.ts';
import type { TrainPlan, TrainRequest, TrainLabels, TrainingPart } from '../engine/protocols/train/messages.ts';
import type { SignedConsent, SignedRevocation } from '../sandbox/consent.ts';
import { RequestVerifier } from './httpsig.ts';
import { HttpCustodian } from './custodian-http.ts';
import { toJson, fromJson } from './wire.ts';
import { accessReport } from '../engine/audit/report.ts';

export const ADMIN_ID = 'admin';

export type { TrainingColumnsSource, TrainingPart };

export interface ServerOptions {
  engine: Engine;
  /** Admin Ed25519 public key (created by `safehouse serve` in `<home>/admin.key` when absent). */
  adminPublicKey: Uint8Array;
  bodyLimit?: number;
  blobLimit?: number;
  /** Token bucket per authenticated party: burst and refill per second. */
  rateLimit?: { burst: number; perSecond: number };
  /** Token bucket per client address, applied before authentication. */
  ipRateLimit?: { burst: number; perSecond: number };
  trainingColumns?: TrainingColumnsSource;
  log?: (line: string) => void;
}

type JobKind = 'score' | 'verify' | 'train';
type JobStatus = 'queued' | 'running' | 'awaiting-labels' | 'done' | 'failed' | 'parked';
interface JobRow { id: string; kind: JobKind; bank: string; status: JobStatus; progress: { phase: string; done: number; total: number } | null; error: { code: string; message: string; details: Record<string, unknown> } | null; createdAt: string; finishedAt: string | null }

const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
const HEX64 = '^[0-9a-f]{64}$';
const PARTY_ID = '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$';

// ---------------------------------------------------------------- schemas (typebox → JSON Schema → OpenAPI)

const Obj = <T extends Record<string, TSchema>>(p: T) => Type.Object(p, { additionalProperties: false });
/** A signed statement: the body's own shape is checked by the engine function that takes it. */
const SignedDoc = Obj({ body: Type.Object({}, { additionalProperties: true }), signer: Type.String({ pattern: PARTY_ID }), signature: Type.String({ pattern: '^[0-9a-f]{128}$' }) });
const ErrorBody = Obj({ code: Type.String(), message: Type.String(), details: Type.Object({}, { additionalProperties: true }) });
const IdParams = Obj({ id: Type.String({ pattern: PARTY_ID }) });
const JobParams = Obj({ id: Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,96}$' }) });
const HashParams = Obj({ hash: Type.String({ pattern: HEX64 }) });
const JobView = Obj({
  jobId: Type.String(), kind: Type.String(), bank: Type.String(), status: Type.String(),
  progress: Type.Union([Type.Null(), Obj({ phase: Type.String(), done: Type.Integer(), total: Type.Integer() })]),
  error: Type.Union([Type.Null(), ErrorBody]), createdAt: Type.String(), finishedAt: Type.Union([Type.Null(), Type.String()]),
  plan: Type.Optional(Type.Object({}, { additionalProperties: true })),
});

interface RouteDoc { method: string; url: string; role: string; summary: string; schema: Record<string, unknown> }

class Bucket {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly burst: number;
  private readonly perSecond: number;
  constructor(burst: number, perSecond: number) {
    this.burst = burst;
    this.perSecond = perSecond;
  }
  take(key: string): number {
    const now = performance.now() / 1000;
    const b = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    b.tokens = Math.min(this.burst, b.tokens + (now - b.at) * this.perSecond);
    b.at = now;
    this.buckets.set(key, b);
    if (this.buckets.size > 100_000) for (const [k, v] of this.buckets) if (v.tokens >= this.burst) this.buckets.delete(k);
    if (b.tokens < 1) return Math.ceil((1 - b.tokens) / this.perSecond);
    b.tokens -= 1;
    return 0;
  }
}

declare module 'fastify' {
  interface FastifyRequest { rawBody?: Buffer; party?: { id: string; role: PartyRole | 'admin' } }
}

export class EngineServer {
  readonly app: FastifyInstance;
  private readonly engine: Engine;
  private readonly opts: ServerOptions;
  private readonly verifier: RequestVerifier;
  private readonly staged = new Map<string, Map<string, Uint8Array>>();
  private readonly queue: string[] = [];
  private running: Promise<void> | undefined;
  private closing = false;
  private readonly resultsDir: string;
  private readonly routes: RouteDoc[] = [];
  private readonly log: (line: string) => void;

  constructor(opts: ServerOptions) {
    this.engine = opts.engine;
    this.opts = opts;
    this.log = opts.log ?? (() => {});
    this.resultsDir = join(this.engine.store.home, 'results');
    mkdirSync(this.resultsDir, { recursive: true });
    this.engine.store.db.exec(`CREATE TABLE IF NOT EXISTS api_jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, bank TEXT NOT NULL,
      status TEXT NOT NULL, progress_json TEXT, error_json TEXT, submit_json TEXT NOT NULL, plan_json TEXT, created_at TEXT NOT NULL, finished_at TEXT);
      CREATE TABLE IF NOT EXISTS api_custodians (provider TEXT PRIMARY KEY, url TEXT NOT NULL, registered_at TEXT NOT NULL);`);
    this.verifier = new RequestVerifier({ keyOf: (id) => (id === ADMIN_ID ? opts.adminPublicKey : this.engine.registry.party(id)?.ed25519) });
    this.app = this.build();
    // Jobs parked by a previous shutdown (or cut off by a crash while running) go back in the queue.
    const again = this.engine.store.db.prepare("SELECT id FROM api_jobs WHERE status IN ('queued', 'parked', 'running') ORDER BY created_at").all() as Array<{ id: string }>;
    for (const r of again) this.enqueue(r.id);
  }

  async listen(port: number, host = '127.0.0.1'): Promise<string> {
    return this.app.listen({ port, host });
  }

  /** Graceful shutdown: refuse new requests, finish the running job, park the queued ones. */
  async close(): Promise<void> {
    this.closing = true;
    const parked = this.queue.splice(0);
    const park = this.engine.store.db.prepare("UPDATE api_jobs SET status = 'parked' WHERE id = ? AND status = 'queued'");
    for (const id of parked) park.run(id);
    await this.app.close();
    await this.running;
  }

  // ---------------------------------------------------------------- plumbing

  private build(): FastifyInstance {
    // Fastify's default Ajv options strip unknown properties (removeAdditional) and coerce types (coerceTypes): schemas
    // here are strict (`additionalProperties: false`, strings stay strings), so an extra key or a wrong type is a 400.
    const app = Fastify({ bodyLimit: this.opts.bodyLimit ?? 16 * 1024 * 1024, logger: false, onProtoPoisoning: 'error', onConstructorPoisoning: 'error', return503OnClosing: true, ajv: { customOptions: { removeAdditional: false, coerceTypes: false } },
      // The router's own refusals (a path parameter over 100 characters, a malformed percent-encoding) are coded too.
      frameworkErrors: (err, _req, reply) => (reply as unknown as FastifyReply).status(400).send({ code: 'SH_ERR_INVALID_ARGUMENT', message: err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'a path parameter is longer than 100 characters' : 'the request URL is malformed', details: {} }) });
    // Only JSON and octet-stream bodies are accepted: anything else (text/plain included) is a 415.
    app.removeContentTypeParser('text/plain');
    const json = app.getDefaultJsonParser('error', 'error');
    app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, body, done) => {
      (req as FastifyRequest).rawBody = body as Buffer;
      if ((body as Buffer).length === 0) return done(null, undefined);
      json(req, (body as Buffer).toString('utf8'), done);
    });
    app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer', bodyLimit: this.opts.blobLimit ?? 32 * 1024 * 1024 }, (req, body, done) => {
      (req as FastifyRequest).rawBody = body as Buffer;
      done(null, body);
    });
    const ipBucket = new Bucket(this.opts.ipRateLimit?.burst ?? 2000, this.opts.ipRateLimit?.perSecond ?? 1000);
    const partyBucket = new Bucket(this.opts.rateLimit?.burst ?? 400, this.opts.rateLimit?.perSecond ?? 200);
    app.addHook('onRequest', async (req) => {
      if (this.closing) fail('SH_ERR_UNAVAILABLE', 'the server is shutting down');
      const wait = ipBucket.take(req.ip);
      if (wait) fail('SH_ERR_RATE_LIMITED', `too many requests from ${req.ip}`, { retryAfterSeconds: wait });
    });
    app.addHook('preValidation', async (req) => {
      const cfg = req.routeOptions.config as { role?: string } | undefined;
      if (!cfg?.role || cfg.role === 'public') return;
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
      const id = this.verifier.verify({ method: req.method, url: req.url, authority: headers.host ?? '', body: req.rawBody ? new Uint8Array(req.rawBody) : new Uint8Array(0), headers });
      const role = id === ADMIN_ID ? 'admin' : this.engine.registry.party(id)!.role;
      req.party = { id, role };
      const wait = partyBucket.take(id);
      if (wait) fail('SH_ERR_RATE_LIMITED', `too many requests from ${id}`, { retryAfterSeconds: wait });
      const allowed = cfg.role.split('|');
      if (!allowed.includes('any') && !allowed.includes(role)) fail('SH_ERR_PARTY_ROLE', `${req.method} ${req.routeOptions.url} is for ${cfg.role.replace('|', ' or ')}, ${id} is ${role === 'admin' ? 'the admin' : `a ${role}`}`, { party: id });
    });
    app.setErrorHandler((err, req, reply) => {
      const e = err as Error & { statusCode?: number; code?: string; validation?: unknown[]; validationContext?: string };
      if (err instanceof SafehouseError) {
        if (err.kind === 'internal') this.log(`${req.method} ${req.url}: ${err.code} ${err.message}${err.cause ? ` (${String((err.cause as Error).message ?? err.cause)})` : ''}`);
        if (err.code === 'SH_ERR_RATE_LIMITED') void reply.header('retry-after', String(err.details.retryAfterSeconds ?? 1));
        return reply.status(err.status).send(err.toPublic());
      }
      const pub = (code: ErrorCode, message: string, details: Record<string, string | number | boolean> = {}) => reply.status(ERRORS[code].status).send({ code, message, details });
      if (e.validation) return pub('SH_ERR_INVALID_ARGUMENT', `request ${e.validationContext ?? ''} ${e.message}`.replace(/\s+/g, ' ').trim(), { where: e.validationContext ?? '' });
      if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || e.statusCode === 413) return pub('SH_ERR_BODY_TOO_LARGE', 'request body too large');
      if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' || e.statusCode === 415) return pub('SH_ERR_UNSUPPORTED_MEDIA_TYPE', `content type ${JSON.stringify(req.headers['content-type'] ?? '')} is not accepted here`);
      if (e.statusCode === 503) return pub('SH_ERR_UNAVAILABLE', 'the server is shutting down');
      if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) return pub('SH_ERR_INVALID_ARGUMENT', `malformed request: ${e.message}`.slice(0, 300));
      this.log(`${req.method} ${req.url}: uncoded ${e.stack ?? e.message}`);
      return pub('SH_ERR_INTERNAL', ERRORS.SH_ERR_INTERNAL.summary);
    });
    app.setNotFoundHandler((req, reply) => reply.status(404).send({ code: 'SH_ERR_NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}`, details: {} }));
    this.routesOf(app);
    this.proofRoutes(app);
    this.bundleRoute(app);
    app.get('/docs', { config: { role: 'public' } }, async () => this.openApi());
    return app;
  }

  private route<B = unknown, P = Record<string, string>, Q = Record<string, string>>(app: FastifyInstance, method: 'GET' | 'POST' | 'PUT', url: string, role: string, summary: string,
    schema: { body?: TSchema; params?: TSchema; querystring?: TSchema; response?: TSchema; status?: number; binary?: boolean },
    handler: (req: FastifyRequest & { body: B; params: P; query: Q; party: { id: string; role: PartyRole | 'admin' } }) => Promise<unknown>): void {
    const s: Record<string, unknown> = {};
    if (schema.body) s.body = schema.body;
    if (schema.params) s.params = schema.params;
    if (schema.querystring) s.querystring = schema.querystring;
    this.routes.push({ method, url, role, summary, schema: { ...s, ...(schema.response ? { response: schema.response } : {}), ...(schema.binary ? { binary: true } : {}), status: schema.status ?? 200 } });
    app.route({
      method, url, schema: s, config: { role },
      handler: async (req, reply) => {
        const out = await handler(req as never);
        if (out instanceof Uint8Array) return reply.status(schema.status ?? 200).header('content-type', 'application/octet-stream').send(Buffer.from(out));
        return reply.status(schema.status ?? 200).header('content-type', 'application/json; charset=utf-8').send(toJson(out));
      },
    });
  }

  /** OpenAPI 3.0 from the registered routes' schemas. */
  private openApi(): unknown {
    const paths: Record<string, Record<string, unknown>> = {};
    const strip = (x: unknown) => JSON.parse(JSON.stringify(x)) as Record<string, unknown>;
    for (const r of this.routes) {
      const path = r.url.replace(/:([A-Za-z]+)/g, '{$1}');
      const s = r.schema as { body?: TSchema; params?: TSchema; querystring?: TSchema; response?: TSchema; binary?: boolean; status: number };
      const params = [
        ...Object.entries((s.params as { properties?: Record<string, unknown> } | undefined)?.properties ?? {}).map(([name, schema]) => ({ name, in: 'path', required: true, schema: strip(schema) })),
        ...Object.entries((s.querystring as { properties?: Record<string, unknown> } | undefined)?.properties ?? {}).map(([name, schema]) => ({ name, in: 'query', required: false, schema: strip(schema) })),
      ];
      (paths[path] ??= {})[r.method.toLowerCase()] = {
        summary: r.summary, tags: [r.role.split('|')[0]],
        ...(r.role === 'public' ? { security: [] } : {}),
        ...(params.length ? { parameters: params } : {}),
        ...(s.body ? { requestBody: { required: true, content: { 'application/json': { schema: strip(s.body) } } } } : s.binary ? { requestBody: { required: true, content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } } } : {}),
        responses: {
          [String(s.status)]: { description: 'OK', content: { 'application/json': { schema: s.response ? strip(s.response) : { type: 'object' } } } },
          '4XX': { description: 'Coded error (docs/errors.md)', content: { 'application/json': { schema: strip(ErrorBody) } } },
        },
      };
    }
    return {
      openapi: '3.0.3',
      info: { title: 'Safehouse engine API', version: '1', description: 'Every /v1 route except GET /v1/info takes an RFC 9421 HTTP message signature (Ed25519; covered: @method @authority @path @query content-digest; created, nonce, keyid = party id). Errors: { code, message, details } from docs/errors.md.' },
      components: { securitySchemes: { httpsig: { type: 'apiKey', in: 'header', name: 'Signature' } } },
      security: [{ httpsig: [] }],
      paths,
    };
  }

  private stage(party: string, hash: string, bytes: Uint8Array): void {
    const m = this.staged.get(party) ?? new Map<string, Uint8Array>();
    let total = bytes.length;
    for (const b of m.values()) total += b.length;
    if (total > 1024 * 1024 * 1024) fail('SH_ERR_BODY_TOO_LARGE', `party ${party} has more than 1 GiB of staged blobs; submit the statement that uses them first`);
    m.set(hash, bytes);
    this.staged.set(party, m);
  }

  private stagedOf(party: string): Map<string, Uint8Array> {
    return this.staged.get(party) ?? new Map();
  }

  // ---------------------------------------------------------------- routes

  private routesOf(app: FastifyInstance): void {
    const e = this.engine;
    const partyView = (id: string) => {
      const p = e.registry.party(id);
      if (!p) fail('SH_ERR_UNKNOWN_PARTY', `no party ${JSON.stringify(id)} is registered`, { party: id });
      return { id: p.id, role: p.role, ed25519: bytesToHex(p.ed25519), ...(p.x25519 ? { x25519: bytesToHex(p.x25519) } : {}), ...(p.bfvPublicKeyBlob ? { bfvPublicKey: b64(e.store.getBlob(p.bfvPublicKeyBlob)) } : {}), ...(p.oprfPublicKey ? { oprfPublicKey: bytesToHex(p.oprfPublicKey) } : {}) };
    };

    this.route(app, 'GET', '/v1/info', 'public', 'Engine parameters, public keys and policy', {}, async () => ({
      paramsId: e.params.id, slots: e.params.slots, t: e.params.t.toString(), engine: { ed25519: bytesToHex(e.keys.ed25519.publicKey) }, policy: e.policy, ledgerOrigin: 'safehouse.local/ledger',
    }));
    this.route(app, 'GET', '/v1/parties/:id', 'any', "A registered party's public keys (the public registry)", { params: IdParams }, async (req) => partyView(req.params.id));

    // admin
    this.route<{ id: string; role: PartyRole; ed25519: string; x25519?: string; bfvPublicKey?: string; oprfPublicKey?: string }>(app, 'POST', '/v1/admin/parties', 'admin', 'Register a party and its public keys', {
      status: 201,
      body: Obj({ id: Type.String({ pattern: PARTY_ID }), role: Type.Union(['provider', 'bank', 'enterprise', 'auditor'].map((r) => Type.Literal(r))), ed25519: Type.String({ pattern: '^[0-9a-f]{64}$' }), x25519: Type.Optional(Type.String({ pattern: '^[0-9a-f]{64}$' })), bfvPublicKey: Type.Optional(Type.String({ maxLength: 2_000_000, pattern: '^[A-Za-z0-9+/]*={0,2}$' })), oprfPublicKey: Type.Optional(Type.String({ pattern: '^[0-9a-f]{66}$' })) }),
    }, async (req) => {
      const b = req.body;
      if (b.id === ADMIN_ID || b.id === 'engine') fail('SH_ERR_INVALID_ARGUMENT', `"id" ${b.id} is reserved`);
      e.registry.registerParty({ id: b.id, role: b.role, ed25519: hexToBytes(b.ed25519), ...(b.x25519 ? { x25519: hexToBytes(b.x25519) } : {}), ...(b.bfvPublicKey ? { bfvPublicKey: new Uint8Array(Buffer.from(b.bfvPublicKey, 'base64')) } : {}), ...(b.oprfPublicKey ? { oprfPublicKey: hexToBytes(b.oprfPublicKey) } : {}) });
      return partyView(b.id);
    });
    this.route<{ enterprises: Array<{ uscc: string; ed25519: string }> }>(app, 'POST', '/v1/admin/enterprises', 'admin', 'Register enterprises (real-name registration) in bulk', {
      body: Obj({ enterprises: Type.Array(Obj({ uscc: Type.String({ minLength: 18, maxLength: 18 }), ed25519: Type.String({ pattern: '^[0-9a-f]{64}$' }) }), { maxItems: 100_000 }) }),
    }, async (req) => {
      e.registry.registerEnterprises(req.body.enterprises.map((x) => ({ uscc: x.uscc, ed25519: hexToBytes(x.ed25519) })));
      return { registered: req.body.enterprises.length };
    });
    this.route(app, 'GET', '/v1/admin/parties', 'admin', 'List the registered parties (enterprises excepted)', {}, async () => ({ parties: e.registry.parties().map((p) => partyView(p.id)) }));

    // blobs (provider uploads, bank labels): staged per party until the statement naming them arrives
    this.route<Buffer, { hash: string }>(app, 'PUT', '/v1/blobs/:hash', 'provider|bank', 'Stage one content-addressed blob (application/octet-stream)', { params: HashParams, status: 201, binary: true }, async (req) => {
      if (!(req.body instanceof Buffer)) fail('SH_ERR_UNSUPPORTED_MEDIA_TYPE', 'a blob is sent as application/octet-stream');
      const bytes = new Uint8Array(req.body);
      if (sha256Hex(bytes) !== req.params.hash) fail('SH_ERR_CIPHERTEXT_INVALID', `blob does not hash to ${req.params.hash}`);
      this.stage(req.party.id, req.params.hash, bytes);
      return { hash: req.params.hash, bytes: bytes.length };
    });

    // provider
    this.route<{ manifest: Signed<never> }>(app, 'POST', '/v1/provider/datasets', 'provider', 'Submit a signed upload manifest (its blobs staged first)', { status: 201, body: Obj({ manifest: SignedDoc }) }, async (req) => {
      if (req.body.manifest.signer !== req.party.id) fail('SH_ERR_FORBIDDEN', `provider ${req.party.id} may not submit ${req.body.manifest.signer}'s upload`);
      const ds = e.datasets.acceptUpload(req.body.manifest, this.stagedOf(req.party.id));
      this.staged.delete(req.party.id);
      return { datasetId: ds.id, subjects: ds.subjects, blocks: ds.blocks, version: ds.version, category: ds.category };
    });
    this.route(app, 'GET', '/v1/provider/datasets', 'provider', "The provider's current datasets", {}, async (req) => ({
      datasets: e.datasets.current(req.party.id).map((d) => ({ id: d.id, category: d.category, version: d.version, subjects: d.subjects, blocks: d.blocks, fields: d.schema.fields.map((f) => f.name) })),
    }));
    this.route<unknown, { id: string }>(app, 'GET', '/v1/provider/models/:id', 'provider', 'A registered model, for review before approval', { params: JobParams }, async (req) => {
      const m = e.models.get(req.params.id);
      if (!m) fail('SH_ERR_NOT_FOUND', `no model ${JSON.stringify(req.params.id)} is registered`, { model: req.params.id });
      if (!m.spec.terms.some((t) => t.provider === req.party.id)) fail('SH_ERR_FORBIDDEN', `model ${req.params.id} does not use provider ${req.party.id}`);
      return { spec: m.spec, hash: m.hash, bank: m.bank };
    });
    this.route<{ approval: Signed<never> }>(app, 'POST', '/v1/provider/approvals', 'provider', 'Approve a model: signed statement with derived columns (staged first)', { status: 201, body: Obj({ approval: SignedDoc }) }, async (req) => {
      if (req.body.approval.signer !== req.party.id) fail('SH_ERR_FORBIDDEN', `provider ${req.party.id} may not submit ${req.body.approval.signer}'s approval`);
      // The engine looks these up in its database: a missing or non-string id would be an uncoded 500 there.
      const a = req.body.approval.body as { modelId?: unknown; modelHash?: unknown; datasetId?: unknown; derived?: unknown };
      const derivedOk = Array.isArray(a.derived) && a.derived.every((c: { column?: unknown; block?: unknown; blob?: unknown } | null) => typeof c === 'object' && c !== null && typeof c.column === 'string' && Number.isInteger(c.block) && typeof c.blob === 'string');
      if (typeof a.modelId !== 'string' || typeof a.modelHash !== 'string' || typeof a.datasetId !== 'string' || !derivedOk) fail('SH_ERR_INVALID_ARGUMENT', 'an approval expected "modelId", "modelHash" and "datasetId" strings and "derived" as a list of { column, block, blob }');
      e.models.approve(req.body.approval, this.stagedOf(req.party.id));
      this.staged.delete(req.party.id);
      return { approved: true };
    });
    this.route<{ url: string }>(app, 'POST', '/v1/provider/custodian', 'provider', "Tell the engine where the provider's custodian listens", { body: Obj({ url: Type.String({ maxLength: 300, pattern: '^https?://' }) }) }, async (req) => {
      if (!URL.canParse(req.body.url)) fail('SH_ERR_INVALID_ARGUMENT', `"url" expected an http(s) URL, got ${JSON.stringify(req.body.url)}`);
      await this.connect(req.party.id, req.body.url);
      e.store.db.prepare('INSERT INTO api_custodians (provider, url, registered_at) VALUES (?, ?, ?) ON CONFLICT(provider) DO UPDATE SET url = excluded.url, registered_at = excluded.registered_at').run(req.party.id, req.body.url, new Date().toISOString());
      return { connected: true };
    });

    // bank
    this.route<{ registration: Signed<never> }>(app, 'POST', '/v1/bank/models', 'bank', 'Register a model (bank-signed)', { status: 201, body: Obj({ registration: SignedDoc }) }, async (req) => {
      if (req.body.registration.signer !== req.party.id) fail('SH_ERR_FORBIDDEN', `bank ${req.party.id} may not register ${req.body.registration.signer}'s model`);
      const m = e.models.register(req.body.registration);
      return { id: m.spec.id, hash: m.hash, scale: m.scale, bound: m.bound.toString() };
    });
    this.route<unknown, { id: string }>(app, 'GET', '/v1/bank/models/:id', 'bank', "One of the bank's models", { params: JobParams }, async (req) => {
      const m = e.models.get(req.params.id);
      if (!m) fail('SH_ERR_NOT_FOUND', `no model ${JSON.stringify(req.params.id)} is registered`, { model: req.params.id });
      if (m.bank !== req.party.id) fail('SH_ERR_FORBIDDEN', `model ${req.params.id} belongs to another bank`);
      return { spec: m.spec, hash: m.hash, approvals: Object.fromEntries(e.models.approvals(req.params.id)) };
    });
    this.route<{ kind: JobKind; request: Signed<never>; openings?: ClaimOpenings }>(app, 'POST', '/v1/bank/jobs', 'bank', 'Submit a bank-signed score, verify or train job', {
      status: 202,
      body: Obj({ kind: Type.Union([Type.Literal('score'), Type.Literal('verify'), Type.Literal('train')]), request: SignedDoc, openings: Type.Optional(Type.Record(Type.String(), Obj({ values: Type.Array(Type.String({ maxLength: 256 }), { maxItems: 16 }), salt: Type.String({ pattern: '^[0-9a-f]{32,64}$' }) }))) }),
      response: Obj({ jobId: Type.String(), status: Type.String() }),
    }, async (req) => this.submit(req.party.id, req.body));
    this.route<unknown, { id: string }>(app, 'GET', '/v1/bank/jobs/:id', 'bank', 'Job status and progress', { params: JobParams, response: JobView }, async (req) => this.jobView(this.ownJob(req.params.id, req.party.id), true));
    this.route<{ labels: Signed<never> }, { id: string }>(app, 'POST', '/v1/bank/jobs/:id/labels', 'bank', 'Encrypted labels for a planned training job (blobs staged first)', { status: 202, params: JobParams, body: Obj({ labels: SignedDoc }) }, async (req) => {
      const job = this.ownJob(req.params.id, req.party.id);
      if (job.kind !== 'train' || job.status !== 'awaiting-labels') fail('SH_ERR_JOB_NOT_READY', `job ${job.id} is ${job.status}, not a training job awaiting labels`);
      const labels = req.body.labels as unknown as Signed<TrainLabels>;
      requireSignature(labels, e.registry.requireParty(req.party.id, 'bank').ed25519, 'safehouse.train.labels.v1', `labels from ${req.party.id}`);
      if (labels.signer !== req.party.id || labels.body.jobId !== job.id) fail('SH_ERR_PARAMS_MISMATCH', 'labels are for another job or bank');
      const blobs = this.stagedOf(req.party.id);
      for (const b of labels.body.blocks) if (!blobs.has(b.blob)) fail('SH_ERR_BLOB_MISSING', `label blob ${b.blob} was not uploaded`);
      const dir = join(this.resultsDir, `${job.id}.inputs`);
      mkdirSync(dir, { recursive: true });
      for (const b of labels.body.blocks) writeFileSync(join(dir, b.blob), blobs.get(b.blob)!);
      this.staged.delete(req.party.id);
      e.store.db.prepare("UPDATE api_jobs SET status = 'queued', submit_json = json_set(submit_json, '$.labels', json(?)) WHERE id = ?").run(JSON.stringify(labels), job.id);
      this.enqueue(job.id);
      return { jobId: job.id, status: 'queued' };
    });
    this.route<unknown, { id: string }>(app, 'GET', '/v1/bank/jobs/:id/result', 'bank', "A finished job's result (sealed to the bank where it carries values)", { params: JobParams }, async (req) => {
      const job = this.ownJob(req.params.id, req.party.id);
      if (job.status === 'failed') throw new SafehouseError((job.error!.code in ERRORS ? job.error!.code : 'SH_ERR_INTERNAL') as ErrorCode, job.error!.message, job.error!.details as never);
      if (job.status !== 'done') fail('SH_ERR_JOB_NOT_READY', `job ${job.id} is ${job.status}`, { status: job.status });
      return fromJson(readFileSync(join(this.resultsDir, `${job.id}.json`), 'utf8'));
    });

    // enterprise
    const Statement = (extra: string) => Obj({ statement: Type.Object({ subject: Type.String({ minLength: 18, maxLength: 18 }) }, { additionalProperties: true, description: extra }), signature: Type.String({ pattern: '^[0-9a-f]{128}$' }) });
    this.route<{ consents: SignedConsent[] }>(app, 'POST', '/v1/enterprise/consents', 'enterprise', 'Grant consents (each signed by the enterprise)', { status: 201, body: Obj({ consents: Type.Array(Statement('ConsentStatement (sandbox/consent.ts)'), { minItems: 1, maxItems: 1000 }) }) }, async (req) => {
      for (const c of req.body.consents) if (c.statement.subject !== req.party.id) fail('SH_ERR_FORBIDDEN', `enterprise ${req.party.id} may grant consents for itself only`);
      e.consents.add(req.body.consents);
      return { ids: req.body.consents.map((c) => c.statement.id) };
    });
    this.route<{ revocations: SignedRevocation[] }>(app, 'POST', '/v1/enterprise/revocations', 'enterprise', 'Revoke consents (each revocation signed by the enterprise)', { status: 201, body: Obj({ revocations: Type.Array(Statement('RevocationStatement (sandbox/consent.ts)'), { minItems: 1, maxItems: 1000 }) }) }, async (req) => {
      for (const r of req.body.revocations) if (r.statement.subject !== req.party.id) fail('SH_ERR_FORBIDDEN', `enterprise ${req.party.id} may revoke its own consents only`);
      for (const r of req.body.revocations) e.consents.revoke(r);
      return { revoked: req.body.revocations.map((r) => r.statement.consentId) };
    });
    const Subject = Obj({ subject: Type.Optional(Type.String({ minLength: 18, maxLength: 18 })) });
    const own = (req: { party: { id: string }; query: { subject?: string } }) => {
      if (req.query.subject !== undefined && req.query.subject !== req.party.id) fail('SH_ERR_FORBIDDEN', `enterprise ${req.party.id} may read its own records only`);
      return req.party.id;
    };
    this.route<unknown, Record<string, string>, { subject?: string }>(app, 'GET', '/v1/enterprise/consents', 'enterprise', "The enterprise's consents", { querystring: Subject }, async (req) => ({ consents: e.consents.of(own(req)) }));
    this.route<unknown, Record<string, string>, { subject?: string }>(app, 'GET', '/v1/enterprise/report', 'enterprise', 'Every ledger entry that touched the enterprise (its access report)', { querystring: Subject }, async (req) => {
      // Each entry with its exact leaf body and an inclusion proof against the latest signed checkpoint.
      return accessReport(e, own(req));
    });

    // auditor: raw material to verify on the auditor's side
    const Range = Obj({ from: Type.Optional(Type.String({ pattern: '^[0-9]{1,12}$' })), limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,6}$' })) });
    this.route<unknown, Record<string, string>, { from?: string; limit?: string }>(app, 'GET', '/v1/auditor/ledger', 'auditor', 'Ledger entries (canonical bodies) from an index', { querystring: Range }, async (req) => {
      const from = Number(req.query.from ?? 0);
      const limit = Math.min(Number(req.query.limit ?? 10_000), 10_000);
      const rows = e.store.db.prepare('SELECT idx, body FROM ledger_entries WHERE idx >= ? ORDER BY idx LIMIT ?').all(from, limit) as Array<{ idx: number; body: string }>;
      return { size: e.ledger.size(), entries: rows.map((r) => ({ index: Number(r.idx), body: r.body })) };
    });
    this.route(app, 'GET', '/v1/auditor/checkpoints', 'auditor', 'Every signed checkpoint (C2SP signed notes)', {}, async () => {
      e.ledger.checkpoint();
      const rows = e.store.db.prepare('SELECT size, note FROM ledger_checkpoints ORDER BY size').all() as Array<{ size: number; note: string }>;
      return { checkpoints: rows.map((r) => ({ size: Number(r.size), note: r.note })) };
    });
    this.route<unknown, { id: string }>(app, 'GET', '/v1/auditor/jobs/:id', 'auditor', "A job's stored request and summary (transcript)", { params: JobParams }, async (req) => {
      const r = e.store.db.prepare('SELECT id, kind, bank, request_json, status, summary_json, created_at, finished_at FROM jobs WHERE id = ?').get(req.params.id) as Record<string, string> | undefined;
      if (!r) fail('SH_ERR_NOT_FOUND', `no job ${JSON.stringify(req.params.id)}`, { job: req.params.id });
      return { id: r.id, kind: r.kind, bank: r.bank, status: r.status, request: JSON.parse(r.request_json!), summary: r.summary_json ? JSON.parse(r.summary_json) : null, createdAt: r.created_at, finishedAt: r.finished_at ?? null };
    });
    this.route<unknown, { hash: string }>(app, 'GET', '/v1/auditor/blobs/:hash', 'auditor', 'A stored blob (application/octet-stream)', { params: HashParams }, async (req) => {
      if (!existsSync(e.store.blobPath(req.params.hash))) fail('SH_ERR_NOT_FOUND', `no blob ${req.params.hash}`);
      return e.store.getBlob(req.params.hash);
    });
  }

  /** Issue 6: proofs for auditors and enterprises (RFC 9162 §2.1.3–2.1.4), against a signed checkpoint. */
  private proofRoutes(app: FastifyInstance): void {
    const e = this.engine;
    const hexes = (xs: readonly Uint8Array[]) => xs.map((x) => bytesToHex(x));
    const num = (v: string | undefined, what: string, dflt?: number): number => {
      if (v === undefined) { if (dflt === undefined) fail('SH_ERR_INVALID_ARGUMENT', `"${what}" is required`); return dflt!; }
      return Number(v);
    };
    const Q = (...names: string[]) => Obj(Object.fromEntries(names.map((n) => [n, Type.Optional(Type.String({ pattern: '^[0-9]{1,12}$' }))])));
    this.route<unknown, Record<string, string>, { index?: string; size?: string }>(app, 'GET', '/v1/auditor/proofs/inclusion', 'auditor|enterprise', 'Inclusion proof of one ledger entry in the tree of `size` entries (default: the latest checkpoint)', { querystring: Q('index', 'size') }, async (req) => {
      const cp = e.ledger.checkpoint();
      const latest = e.ledger.latestCheckpoint()!.size;
      const size = num(req.query.size, 'size', latest);
      const index = num(req.query.index, 'index');
      if (!(size <= latest && index < size)) fail('SH_ERR_INVALID_ARGUMENT', `expected index < size ≤ ${latest}, got index ${index}, size ${size}`);
      if (req.party.role === 'enterprise') {
        const mine = e.store.db.prepare('SELECT 1 FROM ledger_subjects WHERE idx = ? AND uscc = ?').get(index, req.party.id);
        if (!mine) fail('SH_ERR_FORBIDDEN', `ledger entry ${index} is not in ${req.party.id}'s access report`);
      }
      const body = (e.store.db.prepare('SELECT body FROM ledger_entries WHERE idx = ?').get(index) as { body: string }).body;
      return { index, size, body, proof: hexes(e.ledger.inclusionProof(index, size)), checkpoint: size === latest ? cp : null };
    });
    this.route<unknown, Record<string, string>, { from?: string; to?: string }>(app, 'GET', '/v1/auditor/proofs/consistency', 'auditor', 'Consistency proof between the trees of `from` and `to` entries (default to: the latest checkpoint)', { querystring: Q('from', 'to') }, async (req) => {
      const cp = e.ledger.checkpoint();
      const latest = e.ledger.latestCheckpoint()!.size;
      const to = num(req.query.to, 'to', latest);
      const from = num(req.query.from, 'from');
      if (!(from <= to && to <= latest)) fail('SH_ERR_INVALID_ARGUMENT', `expected from ≤ to ≤ ${latest}, got from ${from}, to ${to}`);
      return { from, to, proof: hexes(e.ledger.consistencyProof(from, to)), checkpoint: to === latest ? cp : null };
    });
  }

  /**
   * Issue 6: everything an auditor needs to replay one job on its own machine, besides the ledger (which it fetches
   * and verifies itself) and the blobs (fetched by hash): the job row and the rows it depends on — parties, the
   * datasets and subject slots involved, the columns the job read, token sets, the subjects' signed consents and
   * revocations, the model and its approvals. Signed statements are re-verified by the replay; blobs by their hashes.
   */
  private bundleRoute(app: FastifyInstance): void {
    const e = this.engine;
    const db = e.store.db;
    this.route<unknown, { id: string }>(app, 'GET', '/v1/auditor/jobs/:id/bundle', 'auditor', 'The rows a replay of this job reads, and the blobs it needs (by hash)', { params: JobParams }, async (req) => {
      const job = db.prepare('SELECT * FROM jobs WHERE id = ?').get(req.params.id) as Record<string, string> | undefined;
      if (!job) fail('SH_ERR_NOT_FOUND', `no job ${JSON.stringify(req.params.id)}`, { job: req.params.id });
      const body = (JSON.parse(job.request_json!) as { signed: { body: Record<string, unknown> } }).signed.body;
      const claims = (body.claims ?? []) as Array<{ subject: string; provider: string; field: string }>;
      const subjects = [...new Set([...((body.subjects ?? []) as string[]), ...claims.map((c) => c.subject)])];
      const model = typeof body.modelId === 'string' ? e.models.get(body.modelId) : undefined;
      // Datasets: the ones the job's ledger events name, and the current ones of every provider it involves.
      const events = (db.prepare('SELECT body FROM ledger_entries WHERE body LIKE ?').all(`%"jobId":${JSON.stringify(req.params.id)}%`) as Array<{ body: string }>).map((r) => JSON.parse(r.body) as Record<string, unknown>).filter((b) => b.jobId === req.params.id);
      const providers = new Set<string>([...(model?.spec.terms ?? []).map((t) => t.provider), ...claims.map((c) => c.provider), ...(typeof body.provider === 'string' ? [body.provider] : []), ...((body.others ?? []) as Array<{ provider: string }>).map((o) => o.provider)]);
      const datasetIds = new Set<string>(e.datasets.current().filter((d) => providers.has(d.provider)).map((d) => d.id));
      for (const ev of events) { const l = String(ev.label ?? '').split('/'); if ((l[0] === 'score' || l[0] === 'verify') && l[2] && !l[2].startsWith('job')) datasetIds.add(l[2]); }
      const ids = [...datasetIds];
      const inList = (xs: readonly string[]) => xs.map(() => '?').join(',') || "''";
      const columnNames = new Set<string>([...(model ? e.models.compiled(model.spec.id).terms.flatMap((t) => t.columns.map((c) => c.column)) : []), ...claims.map((c) => c.field)]);
      const rows = {
        jobs: [job],
        parties: db.prepare(`SELECT * FROM parties WHERE role != 'enterprise' OR id IN (${inList(subjects)})`).all(...subjects),
        datasets: db.prepare(`SELECT * FROM datasets WHERE id IN (${inList(ids)})`).all(...ids),
        dataset_subjects: ids.length && subjects.length ? db.prepare(`SELECT * FROM dataset_subjects WHERE dataset_id IN (${inList(ids)}) AND uscc IN (${inList(subjects)})`).all(...ids, ...subjects) : [],
        columns: ids.length ? (db.prepare(`SELECT * FROM columns WHERE dataset_id IN (${inList(ids)})`).all(...ids) as Array<{ column_name: string; blob: string }>).filter((c) => columnNames.has(c.column_name)) : [],
        tokens: ids.length ? db.prepare(`SELECT dataset_id, field, hex(token) AS token FROM tokens WHERE dataset_id IN (${inList(ids)})`).all(...ids) : [],
        consents: subjects.length ? db.prepare(`SELECT * FROM consents WHERE subject IN (${inList(subjects)})`).all(...subjects) : [],
        revocations: subjects.length ? db.prepare(`SELECT * FROM revocations WHERE subject IN (${inList(subjects)})`).all(...subjects) : [],
        models: model ? db.prepare('SELECT * FROM models WHERE id = ?').all(model.spec.id) : [],
        approvals: model ? db.prepare('SELECT * FROM approvals WHERE model_id = ?').all(model.spec.id) : [],
      };
      const blobs = new Set<string>();
      for (const c of rows.columns as Array<{ blob: string }>) blobs.add(c.blob);
      for (const p of rows.parties as Array<{ bfv_pub: string | null }>) if (p.bfv_pub) blobs.add(p.bfv_pub);
      for (const ev of events) for (const k of ['rerandomizer', 'resultHash', 'responseHash']) if (typeof ev[k] === 'string' && existsSync(e.store.blobPath(ev[k] as string))) blobs.add(ev[k] as string);
      return { rows, blobs: [...blobs].sort() };
    });
  }

  // ---------------------------------------------------------------- custodians

  private async connect(provider: string, url: string): Promise<void> {
    let c: HttpCustodian;
    try {
      c = await HttpCustodian.connect(url, this.engine.keys.ed25519.secretKey);
    } catch (err) {
      if (isCoded(err)) throw err;
      return fail('SH_ERR_UNAVAILABLE', `custodian of ${provider} at ${url} cannot be reached`, { provider }, err);
    }
    if (c.provider !== provider) fail('SH_ERR_FORBIDDEN', `the custodian at ${url} is ${c.provider}'s, not ${provider}'s`);
    this.engine.registry.connectCustodian(c);
  }

  /** Reconnect custodians registered in an earlier run (lazily, before a job needs them). */
  private async ensureCustodians(providers: Iterable<string>): Promise<void> {
    for (const p of new Set(providers)) {
      try {
        this.engine.registry.custodian(p);
        continue;
      } catch {
        // not connected in this process yet
      }
      const row = this.engine.store.db.prepare('SELECT url FROM api_custodians WHERE provider = ?').get(p) as { url: string } | undefined;
      if (!row) fail('SH_ERR_UNAVAILABLE', `provider ${p} has not registered a custodian (run \`safehouse custodian\`)`, { provider: p });
      await this.connect(p, row.url);
    }
  }

  // ---------------------------------------------------------------- jobs

  private ownJob(id: string, bank: string): JobRow {
    const r = this.engine.store.db.prepare('SELECT * FROM api_jobs WHERE id = ?').get(id) as Record<string, string | null> | undefined;
    if (!r) fail('SH_ERR_NOT_FOUND', `no job ${JSON.stringify(id)}`, { job: id });
    if (r.bank !== bank) fail('SH_ERR_FORBIDDEN', `job ${id} belongs to another bank`, { job: id });
    return { id: r.id!, kind: r.kind as JobKind, bank: r.bank!, status: r.status as JobStatus, progress: r.progress_json ? JSON.parse(r.progress_json) : null, error: r.error_json ? JSON.parse(r.error_json) : null, createdAt: r.created_at!, finishedAt: r.finished_at ?? null };
  }

  private jobView(job: JobRow, withPlan: boolean): Record<string, unknown> {
    const view: Record<string, unknown> = { jobId: job.id, kind: job.kind, bank: job.bank, status: job.status, progress: job.progress, error: job.error, createdAt: job.createdAt, finishedAt: job.finishedAt };
    if (withPlan && job.kind === 'train' && job.status === 'awaiting-labels') {
      const plan = JSON.parse((this.engine.store.db.prepare('SELECT plan_json FROM api_jobs WHERE id = ?').get(job.id) as { plan_json: string }).plan_json) as TrainPlan;
      view.plan = { jobId: plan.jobId, provider: plan.provider, features: plan.features, options: plan.options, cohort: plan.cohort, excluded: plan.excluded };
    }
    return view;
  }

  /** Check what can be checked at once (signature, bank, id, training plan), then queue. */
  private submit(bank: string, b: { kind: JobKind; request: Signed<never>; openings?: ClaimOpenings }): { jobId: string; status: JobStatus } {
    const e = this.engine;
    const types: Record<JobKind, string> = { score: 'safehouse.score.request.v1', verify: 'safehouse.verify.request.v1', train: 'safehouse.train.request.v1' };
    const request = b.request as unknown as Signed<{ type: string; jobId: string; bank: string }>;
    if (request.signer !== bank || request.body.bank !== bank) fail('SH_ERR_FORBIDDEN', `bank ${bank} may submit its own requests only`);
    requireSignature(request, e.registry.requireParty(bank, 'bank').ed25519, types[b.kind], `${b.kind} request by ${bank}`);
    const jobId = request.body.jobId;
    if (typeof jobId !== 'string' || !/^[A-Za-z0-9_.:-]{1,96}$/.test(jobId)) fail('SH_ERR_INVALID_ARGUMENT', '"jobId" expected 1..96 characters [A-Za-z0-9_.:-]');
    if (e.store.db.prepare('SELECT 1 FROM api_jobs WHERE id = ? UNION SELECT 1 FROM jobs WHERE id = ?').get(jobId, jobId)) fail('SH_ERR_ALREADY_EXISTS', `job ${jobId} already exists`, { job: jobId });
    if (b.kind === 'verify' && !b.openings) fail('SH_ERR_INVALID_ARGUMENT', '"openings" is required for a verify job');
    let plan: TrainPlan | undefined;
    if (b.kind === 'train') {
      // The planner looks providers and fields up in the database: malformed ones get a coded 400, not a driver error.
      const t = request.body as { provider?: unknown; fields?: unknown; others?: unknown; subjects?: unknown };
      const part = (p: unknown) => typeof p === 'object' && p !== null && typeof (p as { provider?: unknown }).provider === 'string'
        && Array.isArray((p as { fields?: unknown }).fields) && ((p as { fields: unknown[] }).fields).every((f) => typeof f === 'string');
      if (!part(t) || !(t.others === undefined || (Array.isArray(t.others) && t.others.every(part))) || !Array.isArray(t.subjects)) fail('SH_ERR_INVALID_ARGUMENT', 'a training request expected "provider" and "fields" (strings), "others" as a list of { provider, fields } and a "subjects" list');
      plan = planTraining(e, request as never);
    }
    const status: JobStatus = plan ? 'awaiting-labels' : 'queued';
    e.store.db.prepare('INSERT INTO api_jobs (id, kind, bank, status, submit_json, plan_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)').run(
      jobId, b.kind, bank, status, JSON.stringify({ request: b.request, ...(b.openings ? { openings: b.openings } : {}) }), plan ? toJson(plan) : null, new Date().toISOString());
    if (status === 'queued') this.enqueue(jobId);
    return { jobId, status };
  }

  private enqueue(id: string): void {
    if (this.closing) return;
    this.engine.store.db.prepare("UPDATE api_jobs SET status = 'queued' WHERE id = ? AND status IN ('parked', 'running')").run(id);
    this.queue.push(id);
    this.running ??= this.drain().finally(() => { this.running = undefined; });
  }

  private async drain(): Promise<void> {
    while (!this.closing && this.queue.length) {
      const id = this.queue.shift()!;
      await this.runJob(id);
    }
  }

  private async runJob(id: string): Promise<void> {
    const db = this.engine.store.db;
    const row = db.prepare('SELECT kind, submit_json, plan_json FROM api_jobs WHERE id = ?').get(id) as { kind: JobKind; submit_json: string; plan_json: string | null };
    db.prepare("UPDATE api_jobs SET status = 'running' WHERE id = ?").run(id);
    let last = 0;
    const progress = (p: { phase: string; done: number; total: number }) => {
      const now = performance.now();
      if (now - last < 200 && p.done !== p.total) return;
      last = now;
      db.prepare('UPDATE api_jobs SET progress_json = ? WHERE id = ?').run(JSON.stringify({ phase: p.phase, done: p.done, total: p.total }), id);
    };
    try {
      const submitted = JSON.parse(row.submit_json) as { request: Signed<never>; openings?: ClaimOpenings; labels?: Signed<TrainLabels> };
      let result: unknown;
      if (row.kind === 'score') {
        const req = submitted.request as unknown as Signed<ScoreRequest>;
        const m = this.engine.models.get(req.body.modelId);
        if (m) await this.ensureCustodians(m.spec.terms.map((t) => t.provider));
        result = await runScoreJob(this.engine, req, { onProgress: (p) => progress({ phase: p.phase, done: p.done, total: p.total }) });
      } else if (row.kind === 'verify') {
        const req = submitted.request as unknown as Signed<VerifyRequest>;
        await this.ensureCustodians(req.body.claims.map((c) => c.provider));
        result = await runVerifyJob(this.engine, req, submitted.openings ?? {}, { onProgress: (p) => progress({ phase: p.phase, done: p.done, total: p.total }) });
      } else {
        const plan = fromJson(row.plan_json!) as TrainPlan;
        await this.ensureCustodians([plan.provider, ...plan.others.map((o) => o.provider)]);
        // Each provider's columns from its custodian (unless a source was given), the bank's labels as it uploaded them.
        const columns = this.opts.trainingColumns ?? ((provider: string, part: TrainingPart, request: Signed<TrainRequest>) => (this.engine.registry.custodian(provider) as HttpCustodian).trainingColumns(part, request));
        const labels = submitted.labels!;
        const dir = join(this.resultsDir, `${id}.inputs`);
        const labelBlobs = new Map(labels.body.blocks.map((b) => [b.blob, new Uint8Array(readFileSync(join(dir, b.blob)))] as const));
        result = await runTrainJob(this.engine, plan, { columns, labels, labelBlobs }, { onProgress: (p) => progress(p) });
      }
      const file = join(this.resultsDir, `${id}.json`);
      writeFileSync(`${file}.tmp`, toJson(result));
      renameSync(`${file}.tmp`, file);
      db.prepare("UPDATE api_jobs SET status = 'done', finished_at = ? WHERE id = ?").run(new Date().toISOString(), id);
    } catch (err) {
      const pub = isCoded(err) ? err.toPublic() : { code: 'SH_ERR_INTERNAL', message: ERRORS.SH_ERR_INTERNAL.summary, details: {} };
      if (!isCoded(err) || err.kind === 'internal') this.log(`job ${id}: ${(err as Error)?.stack ?? String(err)}`);
      db.prepare("UPDATE api_jobs SET status = 'failed', error_json = ?, finished_at = ? WHERE id = ?").run(JSON.stringify(pub), new Date().toISOString(), id);
    }
  }
}

/** The admin key of a served home: created on first `serve`, kept 0600 in `<home>/admin.key` (a party key file). */
export function adminKey(home: string): { secretKey: Uint8Array; publicKey: Uint8Array; path: string } {
  const path = join(home, 'admin.key');
  if (!existsSync(path)) {
    const kp = ed25519KeyPair();
    writeFileSync(path, JSON.stringify({ id: ADMIN_ID, role: 'admin', ed25519: { secretKey: bytesToHex(kp.secretKey), publicKey: bytesToHex(kp.publicKey) } }, null, 2) + '\n', { mode: 0o600 });
  }
  const k = JSON.parse(readFileSync(path, 'utf8')) as { ed25519: { secretKey: string; publicKey: string } };
  return { secretKey: hexToBytes(k.ed25519.secretKey), publicKey: hexToBytes(k.ed25519.publicKey), path };
}
