/**
 * The engine on the network: `safehouse serve`. A fastify server around one `Engine`, with routes grouped by role
 * (api/server/routes/) — public and parties, admin, blob staging, provider, bank, enterprise, auditor — calling the
 * same engine and protocol functions as embedded mode (api/embedded.ts); only the transport differs
 * (docs/design.md §9, docs/protocols.md "Network transport").
 *
 * A request passes, in order: the shutdown check and the per-address rate limit (api/server/rate-limit.ts), the body
 * parsers (JSON and octet-stream only, size-limited, `__proto__`/`constructor` keys refused), the RFC 9421 signature,
 * per-party rate limit and role check (api/server/auth.ts), the strict typebox schema (api/server/schemas.ts), then
 * the handler's per-object authorization. Every refusal is coded (api/server/errors.ts). `GET /docs` serves the
 * OpenAPI 3.0 document built from the same schemas (api/server/openapi.ts). Jobs run asynchronously through a
 * persistent queue (api/server/jobs.ts) that survives restarts.
 */
import { join } from 'node:path';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { fail } from '../../core/errors.ts';
import { bytesToHex, hexToBytes, ed25519KeyPair } from '../../core/sign.ts';
import type { Engine } from '../../engine/engine.ts';
import type { TrainingColumnsSource } from '../../engine/protocols/train/run.ts';
import { ADMIN_ID, authenticate } from './auth.ts';
import { rateLimits, type BucketSize } from './rate-limit.ts';
import { frameworkErrors, errorHandler, notFound } from './errors.ts';
import { router, type RouteContext } from './route.ts';
import { docsRoute } from './openapi.ts';
import { Staging } from './staging.ts';
import { Custodians } from './custodians.ts';
import { JobQueue } from './jobs.ts';
import { Metrics, jobMetrics, logParty, observe } from './observe.ts';
import { publicRoutes } from './routes/public.ts';
import { adminRoutes } from './routes/admin.ts';
import { blobRoutes } from './routes/blobs.ts';
import { providerRoutes } from './routes/provider.ts';
import { bankRoutes } from './routes/bank.ts';
import { enterpriseRoutes } from './routes/enterprise.ts';
import { auditorRoutes } from './routes/auditor.ts';

export { ADMIN_ID };
export type { TrainingColumnsSource };
export type { TrainingPart } from '../../engine/protocols/train/messages.ts';

export interface ServerOptions {
  engine: Engine;
  /** Admin Ed25519 public key (created by `safehouse serve` in `<home>/admin.key` when absent). */
  adminPublicKey: Uint8Array;
  bodyLimit?: number;
  blobLimit?: number;
  /** Token bucket per authenticated party: burst and refill per second. */
  rateLimit?: BucketSize;
  /** Token bucket per client address, applied before authentication. */
  ipRateLimit?: BucketSize;
  trainingColumns?: TrainingColumnsSource;
  /** Jobs run at once (default 3): one stuck on a slow custodian holds one lane, bounded by the client's timeouts. */
  jobLanes?: number;
  /** Structured logs (pino, JSON lines on stderr) at this level; none when absent ('silent'). `serve` gives 'info'. */
  logLevel?: string;
  /**
   * Blob retention while the server runs (`serve`: hourly): the policy's age limit, and with `maxBlobBytes` a size
   * limit — the oldest finished jobs' replay material goes first. Each purge is a ledger leaf.
   */
  retention?: { everyMs: number; maxBlobBytes?: number };
  log?: (line: string) => void;
}

export class EngineServer {
  readonly app: FastifyInstance;
  private readonly opts: ServerOptions;
  private readonly log: (line: string) => void;
  private readonly jobs: JobQueue;
  private readonly custodians: Custodians;
  private readonly staging = new Staging();
  private readonly metrics = new Metrics();
  private closing = false;
  private retentionTimer: NodeJS.Timeout | undefined;

  constructor(opts: ServerOptions) {
    this.opts = opts;
    // Internal errors (their stacks): to the caller's function, else to the structured log.
    this.log = opts.log ?? ((line) => this.app?.log.error({ event: 'internal' }, line));
    this.custodians = new Custodians(opts.engine);
    this.jobs = new JobQueue(opts.engine, this.custodians, {
      trainingColumns: opts.trainingColumns,
      log: this.log,
      ...(opts.jobLanes ? { lanes: opts.jobLanes } : {}),
      onEvent: (e) => {
        jobMetrics(this.metrics, e);
        this.app?.log.info({ ...e, bank: logParty(e.bank) }, e.event);
      },
    });
    this.app = this.build();
    this.jobs.resume();
  }

  async listen(port: number, host = '127.0.0.1'): Promise<string> {
    const url = await this.app.listen({ port, host });
    const r = this.opts.retention;
    if (r) {
      this.retain();
      this.retentionTimer = setInterval(() => this.retain(), r.everyMs);
      this.retentionTimer.unref();
    }
    return url;
  }

  /** One retention pass (age, then size); its outcome is logged, a failure too — it never takes the server down. */
  retain(): { jobs: number; blobs: number } {
    const e = this.opts.engine;
    try {
      const byAge = e.retention.purge();
      const bySize =
        this.opts.retention?.maxBlobBytes !== undefined
          ? e.retention.purgeToSize(this.opts.retention.maxBlobBytes)
          : { jobs: [], blobs: 0 };
      const out = { jobs: byAge.jobs.length + bySize.jobs.length, blobs: byAge.blobs + bySize.blobs };
      if (out.jobs) this.app.log.info({ event: 'retention.purged', ...out }, 'retention.purged');
      return out;
    } catch (err) {
      this.log(`retention: ${(err as Error)?.stack ?? String(err)}`);
      return { jobs: 0, blobs: 0 };
    }
  }

  /** Graceful shutdown: refuse new requests, finish the running job, park the queued ones. */
  async close(): Promise<void> {
    this.closing = true;
    if (this.retentionTimer) clearInterval(this.retentionTimer);
    this.jobs.park();
    await this.app.close();
    await this.jobs.idle();
  }

  private build(): FastifyInstance {
    const { engine } = this.opts;
    // Fastify's default Ajv options strip unknown properties (removeAdditional) and coerce types (coerceTypes): schemas
    // here are strict (`additionalProperties: false`, strings stay strings), so an extra key or a wrong type is a 400.
    const app = Fastify({
      bodyLimit: this.opts.bodyLimit ?? 16 * 1024 * 1024,
      logger:
        this.opts.logLevel && this.opts.logLevel !== 'silent'
          ? { level: this.opts.logLevel, stream: process.stderr }
          : false,
      // Fastify's own request lines carry the raw URL (a path parameter may be a USCC): observe.ts logs instead.
      disableRequestLogging: true,
      onProtoPoisoning: 'error',
      onConstructorPoisoning: 'error',
      return503OnClosing: true,
      ajv: { customOptions: { removeAdditional: false, coerceTypes: false } },
      frameworkErrors,
    });
    // Only JSON and octet-stream bodies are accepted: anything else (text/plain included) is a 415. Both keep the raw
    // bytes, which the request signature's content digest covers.
    app.removeContentTypeParser('text/plain');
    const json = app.getDefaultJsonParser('error', 'error');
    app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, body, done) => {
      (req as FastifyRequest).rawBody = body as Buffer;
      if ((body as Buffer).length === 0) return done(null, undefined);
      json(req, (body as Buffer).toString('utf8'), done);
    });
    app.addContentTypeParser(
      'application/octet-stream',
      { parseAs: 'buffer', bodyLimit: this.opts.blobLimit ?? 32 * 1024 * 1024 },
      (req, body, done) => {
        (req as FastifyRequest).rawBody = body as Buffer;
        done(null, body);
      },
    );
    app.addHook('onRequest', async () => {
      if (this.closing) fail('SH_ERR_UNAVAILABLE', 'the server is shutting down');
    });
    const limits = rateLimits(app, { perAddress: this.opts.ipRateLimit, perParty: this.opts.rateLimit });
    authenticate(app, { engine, adminPublicKey: this.opts.adminPublicKey, limitParty: limits.party });
    app.setErrorHandler(errorHandler(this.log));
    observe(app, {
      engine,
      metrics: this.metrics,
      queue: () => ({ queued: this.jobs.depth(), running: this.jobs.runningCount() }),
      closing: () => this.closing,
    });
    app.setNotFoundHandler(notFound);
    const { route, routes } = router(app);
    const ctx: RouteContext = { engine, route, staging: this.staging, jobs: this.jobs, custodians: this.custodians };
    for (const group of [
      publicRoutes,
      adminRoutes,
      blobRoutes,
      providerRoutes,
      bankRoutes,
      enterpriseRoutes,
      auditorRoutes,
    ])
      group(ctx);
    docsRoute(app, routes);
    return app;
  }
}

/** The admin key of a served home: created on first `serve`, kept 0600 in `<home>/admin.key` (a party key file). */
export function adminKey(home: string): { secretKey: Uint8Array; publicKey: Uint8Array; path: string } {
  const path = join(home, 'admin.key');
  if (!existsSync(path)) {
    const kp = ed25519KeyPair();
    writeFileSync(
      path,
      JSON.stringify(
        {
          id: ADMIN_ID,
          role: 'admin',
          ed25519: { secretKey: bytesToHex(kp.secretKey), publicKey: bytesToHex(kp.publicKey) },
        },
        null,
        2,
      ) + '\n',
      { mode: 0o600 },
    );
  }
  let k: { ed25519?: { secretKey?: unknown; publicKey?: unknown } };
  try {
    k = JSON.parse(readFileSync(path, 'utf8')) as typeof k;
  } catch (err) {
    return fail('SH_ERR_KEY_FILE', `${path} is not a JSON key file`, { file: 'admin.key' }, err);
  }
  const hex = (v: unknown, what: string) => {
    if (typeof v !== 'string' || !/^[0-9a-f]{64}$/.test(v))
      fail('SH_ERR_KEY_FILE', `${path}: "ed25519.${what}" expected 32 bytes of hex`, { file: 'admin.key' });
    return hexToBytes(v as string);
  };
  return { secretKey: hex(k.ed25519?.secretKey, 'secretKey'), publicKey: hex(k.ed25519?.publicKey, 'publicKey'), path };
}
