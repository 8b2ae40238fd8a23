/**
 * The custodian on the wire: a fastify server that puts a provider's `LocalCustodian` (its BFV and OPRF
 * secrets stay in that process) behind HTTP, and `HttpCustodian`, the engine-side client implementing the same
 * `Custodian` interface, so the engine's code paths do not change between embedded and networked mode.
 *
 * Every request carries an RFC 9421 signature by the engine (api/httpsig.ts) on top of the engine-signed JSON bodies
 * the custodian already checks; ciphertexts travel base64 in JSON bodies (≤ 8 MiB). Errors are the coded catalog:
 * `{ code, message, details }` with the catalog's HTTP status; anything uncoded is a hidden 500.
 */
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { SafehouseError, fail, ERRORS, type ErrorCode } from '../core/errors.ts';
import type {
  BankJob,
  Custodian,
  DecryptRequest,
  DecryptResponse,
  TransferRequest,
  TransferResponse,
  TokenEvalRequest,
  TokenEvalResponse,
  BankClaims,
  OpenedJob,
  OpenOptions,
} from '../engine/custodian/messages.ts';
import type { LedgerUpdate } from '../engine/custodian/monitor.ts';
import type { Signed } from '../core/sign.ts';
import { bytesToHex, hexToBytes } from '../core/sign.ts';
import { RequestVerifier, signRequest } from './httpsig.ts';
import type { TrainColumns, TrainingPart } from '../engine/protocols/train/messages.ts';
export { b64, unb64 };

const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
const unb64 = (s: unknown, what: string): Uint8Array => {
  if (typeof s !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(s))
    fail('SH_ERR_INVALID_ARGUMENT', `"${what}" expected base64`);
  return new Uint8Array(Buffer.from(s, 'base64'));
};

/** Verify a request's RFC 9421 signature by the engine and parse its JSON body (an object, poisoned keys dropped). */
export type Authed = <T>(req: FastifyRequest) => T;

/** Build (not start) the custodian server. Requests must be RFC 9421-signed by the engine key. */
export function buildCustodianServer(
  custodian: Custodian,
  enginePublicKey: Uint8Array,
  opts: {
    bodyLimit?: number;
    /** Extra routes (the custodian process adds training-column preparation). */
    extend?: (app: FastifyInstance, authed: Authed) => void;
    /** Structured logs (pino JSON on stderr) at this level: route, status, code, duration — never a body. */
    logLevel?: string;
  } = {},
): FastifyInstance {
  const app = Fastify({
    bodyLimit: opts.bodyLimit ?? 8 * 1024 * 1024,
    logger: opts.logLevel && opts.logLevel !== 'silent' ? { level: opts.logLevel, stream: process.stderr } : false,
    disableRequestLogging: true,
  });
  app.addHook('onResponse', async (req, reply) => {
    req.log.info(
      {
        route: req.routeOptions.url ?? 'unmatched',
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 10) / 10,
        ...((reply as unknown as { shCode?: string }).shCode
          ? { code: (reply as unknown as { shCode?: string }).shCode }
          : {}),
      },
      'request',
    );
  });
  const verifier = new RequestVerifier({ keyOf: (id) => (id === 'engine' ? enginePublicKey : undefined) });
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  const authed: Authed = <T>(req: FastifyRequest): T => {
    const raw = req.body instanceof Buffer ? new Uint8Array(req.body) : new Uint8Array(0);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
    verifier.verify({ method: req.method, url: req.url, authority: headers.host ?? '', body: raw, headers });
    let body: unknown;
    try {
      body = raw.length
        ? JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(raw), (k, v) =>
            k === '__proto__' || k === 'constructor' ? undefined : v,
          )
        : {};
    } catch (err) {
      return fail('SH_ERR_INVALID_ARGUMENT', 'request body is not valid JSON', {}, err);
    }
    // Handlers read members of the body: `null`, an array or a scalar would otherwise be an uncoded 500.
    if (typeof body !== 'object' || body === null || Array.isArray(body))
      fail('SH_ERR_INVALID_ARGUMENT', 'request body must be a JSON object');
    return body as T;
  };
  app.setErrorHandler((err, _req, reply) => {
    if (err instanceof SafehouseError) {
      (reply as unknown as { shCode?: string }).shCode = err.code;
      return reply.status(err.status).send(err.toPublic());
    }
    const status = (err as { statusCode?: number }).statusCode;
    if (status === 413)
      return reply.status(413).send({ code: 'SH_ERR_BODY_TOO_LARGE', message: 'request body too large', details: {} });
    if (status && status >= 400 && status < 500)
      return reply.status(400).send({ code: 'SH_ERR_INVALID_ARGUMENT', message: 'malformed request', details: {} });
    return reply.status(500).send({ code: 'SH_ERR_INTERNAL', message: ERRORS.SH_ERR_INTERNAL.summary, details: {} });
  });
  app.get('/v1/custodian/info', async () => ({
    provider: custodian.provider,
    paramsId: custodian.paramsId,
    bfvPublicKey: b64(custodian.bfvPublicKey),
    signingPublicKey: bytesToHex(custodian.signingPublicKey),
  }));
  /** A bank-signed document from the wire: the custodian looks its signer up in the bank registry, so it must be a name. */
  const bankSigned = <T>(v: T, what: string): T => {
    if (
      typeof v !== 'object' ||
      v === null ||
      Array.isArray(v) ||
      typeof (v as { signer?: unknown }).signer !== 'string'
    )
      fail('SH_ERR_INVALID_ARGUMENT', `"${what}" expected a signed document`);
    return v;
  };
  app.post('/v1/custodian/jobs', async (req) => {
    const b = authed<{ job: BankJob; skip?: unknown }>(req);
    bankSigned(b.job, 'job');
    if (b.skip !== undefined && (!Array.isArray(b.skip) || b.skip.some((x) => typeof x !== 'string')))
      fail('SH_ERR_INVALID_ARGUMENT', '"skip" expected a list of subject or claim ids');
    const opened = await custodian.openJob(b.job, b.skip ? { skip: b.skip as string[] } : {});
    return {
      opened: true,
      refused: opened.refused,
      ...(opened.reasons ? { reasons: opened.reasons } : {}),
      ...(opened.privacy ? { privacy: opened.privacy } : {}),
    };
  });
  // The custodian follows the ledger itself (docs/trust.md): leaves it checks against the signed checkpoint.
  app.post('/v1/custodian/ledger/state', async (req) => {
    authed<Record<string, never>>(req);
    return await custodian.ledgerState();
  });
  app.post('/v1/custodian/ledger', async (req) => {
    const b = authed<LedgerUpdate>(req);
    return await custodian.follow({
      from: b.from,
      entries: b.entries,
      ...(b.checkpoint !== undefined ? { checkpoint: b.checkpoint } : {}),
    });
  });
  app.post('/v1/custodian/decrypt', async (req) => {
    const b = authed<{ request: Signed<DecryptRequest>; ciphertext: string }>(req);
    return { response: await custodian.decrypt(b.request, unb64(b.ciphertext, 'ciphertext')) };
  });
  app.post('/v1/custodian/transfer', async (req) => {
    const b = authed<{ request: Signed<TransferRequest>; ciphertext: string; targetPublicKey: string }>(req);
    const out = await custodian.transfer(
      b.request,
      unb64(b.ciphertext, 'ciphertext'),
      unb64(b.targetPublicKey, 'targetPublicKey'),
    );
    return { response: out.response, ciphertext: b64(out.ciphertext) };
  });
  app.post('/v1/custodian/tokens', async (req) => {
    const b = authed<{ request: Signed<TokenEvalRequest>; bankRequest: BankClaims }>(req);
    bankSigned(b.bankRequest, 'bankRequest');
    return { response: await custodian.evaluateTokens(b.request, b.bankRequest) };
  });
  app.post('/v1/custodian/answered', async (req) => {
    const b = authed<{ jobHash?: unknown; label?: unknown }>(req);
    if (typeof b.jobHash !== 'string' || typeof b.label !== 'string')
      fail('SH_ERR_INVALID_ARGUMENT', '"jobHash" and "label" expected strings');
    return { answer: (await custodian.answered?.(b.jobHash, b.label)) ?? null };
  });
  opts.extend?.(app, authed);
  return app;
}

/** A 503 from the custodian (starting up, shutting down): worth another attempt. */
class RetryableStatus extends Error {}

/** `GET /v1/custodian/info`: who the custodian is and its public keys. */
interface CustodianInfo {
  provider: string;
  paramsId: string;
  bfvPublicKey: string;
  signingPublicKey: string;
}

/**
 * How the engine treats a custodian that is slow or gone (docs/operations.md "Custodian outages"): every call has a
 * timeout; a call that did not get an answer (refused connection, reset, timeout, a 503) is retried with exponential
 * backoff and jitter for up to `retryForMs` — every custodian call is idempotent: a job shown again is the same job,
 * ledger leaves sent again are taken from where the custodian stands, and a label answered already is given again by
 * `answered` — after which the call fails with SH_ERR_UNAVAILABLE naming the custodian. Then the circuit opens: for
 * `cooldownMs` calls fail at once (no job waits on a custodian known to be down), and one trial call closes it again.
 */
export interface CustodianClientOptions {
  /** Per-call timeout (training columns get `longTimeoutMs`). */
  timeoutMs: number;
  longTimeoutMs: number;
  retryForMs: number;
  cooldownMs: number;
}

/** Defaults, each overridable by environment (SAFEHOUSE_CUSTODIAN_TIMEOUT_MS, …_RETRY_MS, …_COOLDOWN_MS). */
export function custodianClientOptions(env: NodeJS.ProcessEnv = process.env): CustodianClientOptions {
  const num = (name: string, dflt: number) => {
    const v = Number(env[name]);
    return Number.isFinite(v) && v > 0 ? v : dflt;
  };
  return {
    timeoutMs: num('SAFEHOUSE_CUSTODIAN_TIMEOUT_MS', 30_000),
    longTimeoutMs: num('SAFEHOUSE_CUSTODIAN_LONG_TIMEOUT_MS', 600_000),
    retryForMs: num('SAFEHOUSE_CUSTODIAN_RETRY_MS', 20_000),
    cooldownMs: num('SAFEHOUSE_CUSTODIAN_COOLDOWN_MS', 15_000),
  };
}

/** What the engine measured of a custodian's calls (Prometheus metrics, api/server/metrics.ts). */
export interface CustodianCallStats {
  calls: number;
  errors: number;
  retries: number;
  /** Seconds spent per call, summed (with `calls`, the mean latency). */
  seconds: number;
  breakerOpen: boolean;
}

/** Engine side: a remote custodian behind the `Custodian` interface. */
export class HttpCustodian implements Custodian {
  readonly provider: string;
  readonly paramsId: string;
  readonly bfvPublicKey: Uint8Array;
  readonly signingPublicKey: Uint8Array;
  readonly stats: CustodianCallStats = { calls: 0, errors: 0, retries: 0, seconds: 0, breakerOpen: false };
  private readonly base: URL;
  private readonly engineKey: Uint8Array;
  private readonly opts: CustodianClientOptions;
  /** Circuit breaker: open until this time (ms since the epoch); 0 = closed. */
  private openUntil = 0;

  private constructor(base: URL, info: CustodianInfo, engineKey: Uint8Array, opts: CustodianClientOptions) {
    this.base = base;
    this.provider = info.provider;
    this.paramsId = info.paramsId;
    this.bfvPublicKey = unb64(info.bfvPublicKey, 'bfvPublicKey');
    this.signingPublicKey = hexToBytes(info.signingPublicKey);
    this.engineKey = engineKey;
    this.opts = opts;
  }

  /**
   * Fetch the custodian's public info; the engine then checks it against the registry (`connectCustodian`).
   * @throws SH_ERR_UNAVAILABLE when nothing answers at `url` within the timeout
   */
  static async connect(
    url: string,
    engineSecretKey: Uint8Array,
    opts: CustodianClientOptions = custodianClientOptions(),
  ): Promise<HttpCustodian> {
    const base = new URL(url);
    let res: Response;
    try {
      res = await fetch(new URL('/v1/custodian/info', base), { signal: AbortSignal.timeout(opts.timeoutMs) });
    } catch (err) {
      return fail('SH_ERR_UNAVAILABLE', `the custodian at ${url} cannot be reached`, {}, err);
    }
    if (!res.ok) fail('SH_ERR_UNKNOWN_PARTY', `custodian at ${url} answered ${res.status}`);
    return new HttpCustodian(base, (await res.json()) as CustodianInfo, engineSecretKey, opts);
  }

  private unavailable(why: string, cause?: unknown): never {
    return fail(
      'SH_ERR_UNAVAILABLE',
      `custodian of ${this.provider} at ${this.base.origin} is unavailable: ${why}`,
      { provider: this.provider },
      cause,
    );
  }

  async post<T>(path: string, payload: unknown, timeoutMs = this.opts.timeoutMs): Promise<T> {
    const now = Date.now();
    if (this.openUntil > now)
      this.unavailable(
        `it failed its last calls; the engine tries again in ${Math.ceil((this.openUntil - now) / 1000)} s`,
      );
    const url = new URL(path, this.base);
    const body = new TextEncoder().encode(JSON.stringify(payload));
    const deadline = now + this.opts.retryForMs;
    let lastErr: unknown;
    for (let attempt = 0; ; attempt++) {
      const t0 = performance.now();
      this.stats.calls++;
      try {
        // Signed afresh per attempt: the custodian refuses a signature it has seen (replay protection).
        const headers = signRequest(
          { method: 'POST', url: url.href, authority: url.host, body },
          'engine',
          this.engineKey,
        );
        const res = await fetch(url, {
          method: 'POST',
          body,
          headers: { 'content-type': 'application/json', ...headers },
          signal: AbortSignal.timeout(timeoutMs),
        });
        const json = (await res.json()) as {
          code?: string;
          message?: string;
          details?: Record<string, string | number | boolean>;
        };
        this.stats.seconds += (performance.now() - t0) / 1000;
        if (res.status === 503) throw new RetryableStatus(json.message ?? 'the custodian is not ready');
        this.openUntil = 0;
        this.stats.breakerOpen = false;
        if (!res.ok) {
          this.stats.errors++;
          const code = (json.code && json.code in ERRORS ? json.code : 'SH_ERR_INTERNAL') as ErrorCode;
          throw new SafehouseError(
            code,
            `custodian ${this.provider}: ${json.message ?? res.statusText}`,
            json.details ?? {},
          );
        }
        return json as T;
      } catch (err) {
        if (err instanceof SafehouseError) throw err;
        this.stats.seconds += (performance.now() - t0) / 1000;
        lastErr = err;
      }
      const wait = Math.min(5_000, 200 * 2 ** attempt) * (0.5 + Math.random() / 2);
      if (Date.now() + wait >= deadline) break;
      this.stats.retries++;
      await new Promise((r) => setTimeout(r, wait));
    }
    this.stats.errors++;
    this.openUntil = Date.now() + this.opts.cooldownMs;
    this.stats.breakerOpen = true;
    const e = lastErr as { name?: string; message?: string; cause?: { code?: string } };
    const why =
      e?.name === 'TimeoutError'
        ? `no answer within ${Math.round(timeoutMs / 1000)} s`
        : (e?.cause?.code ?? e?.message ?? 'no answer');
    return this.unavailable(`${why} (for ${Math.round(this.opts.retryForMs / 1000)} s of retries)`, lastErr);
  }

  async openJob(job: BankJob, opts: OpenOptions = {}): Promise<OpenedJob> {
    const out = await this.post<{
      refused?: unknown;
      reasons?: unknown;
      privacy?: { epsilon?: unknown; delta?: unknown };
    }>('/v1/custodian/jobs', { job, ...(opts.skip?.length ? { skip: opts.skip } : {}) });
    const refused = Array.isArray(out.refused) ? out.refused.filter((x): x is string => typeof x === 'string') : [];
    const reasons: Record<string, string> = {};
    if (out.reasons && typeof out.reasons === 'object')
      for (const [k, v] of Object.entries(out.reasons)) if (typeof v === 'string') reasons[k] = v;
    const p = out.privacy;
    // The key holder of a training job says what (ε, δ) its noise gives; anything else is no statement.
    return {
      refused,
      ...(Object.keys(reasons).length ? { reasons } : {}),
      ...(typeof p?.epsilon === 'number' && typeof p.delta === 'number'
        ? { privacy: { epsilon: p.epsilon, delta: p.delta } }
        : {}),
    };
  }

  async ledgerState(): Promise<{ size: number }> {
    const out = await this.post<{ size?: unknown }>('/v1/custodian/ledger/state', {});
    return { size: Number(out.size) };
  }

  async follow(update: LedgerUpdate): Promise<{ size: number }> {
    const out = await this.post<{ size?: unknown }>('/v1/custodian/ledger', update);
    return { size: Number(out.size) };
  }

  async decrypt(request: Signed<DecryptRequest>, ciphertext: Uint8Array): Promise<Signed<DecryptResponse>> {
    return (
      await this.post<{ response: Signed<DecryptResponse> }>('/v1/custodian/decrypt', {
        request,
        ciphertext: b64(ciphertext),
      })
    ).response;
  }

  async transfer(
    request: Signed<TransferRequest>,
    ciphertext: Uint8Array,
    targetPublicKey: Uint8Array,
  ): Promise<{ response: Signed<TransferResponse>; ciphertext: Uint8Array }> {
    const out = await this.post<{ response: Signed<TransferResponse>; ciphertext: string }>('/v1/custodian/transfer', {
      request,
      ciphertext: b64(ciphertext),
      targetPublicKey: b64(targetPublicKey),
    });
    return { response: out.response, ciphertext: unb64(out.ciphertext, 'ciphertext') };
  }

  /**
   * Ask the provider's side for its training columns of a planned job (binned one-hot or standardized, encrypted under
   * the provider's own key). The custodian checks the bank-signed request first (`openJob`).
   */
  async trainingColumns(
    part: TrainingPart,
    request: Signed<unknown>,
  ): Promise<{ signed: Signed<TrainColumns>; blobs: Map<string, Uint8Array> }> {
    const out = await this.post<{ signed: Signed<TrainColumns>; blobs: Record<string, string> }>(
      '/v1/custodian/training',
      { part, request },
      this.opts.longTimeoutMs,
    );
    const blobs = new Map<string, Uint8Array>();
    for (const [h, b] of Object.entries(out.blobs)) blobs.set(h, unb64(b, 'blob'));
    return { signed: out.signed, blobs };
  }

  async answered(
    jobHash: string,
    label: string,
  ): Promise<{ request: unknown; response: unknown; ciphertext?: string } | undefined> {
    const out = await this.post<{ answer?: { request: unknown; response: unknown; ciphertext?: string } | null }>(
      '/v1/custodian/answered',
      { jobHash, label },
    );
    return out.answer ?? undefined;
  }

  async evaluateTokens(request: Signed<TokenEvalRequest>, bankRequest: BankClaims): Promise<Signed<TokenEvalResponse>> {
    return (await this.post<{ response: Signed<TokenEvalResponse> }>('/v1/custodian/tokens', { request, bankRequest }))
      .response;
  }
}
