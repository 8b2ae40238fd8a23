/**
 * Client mode's transport: a signed HTTP client for one party (every request RFC 9421-signed with the party's Ed25519
 * key, JSON with bigint/bytes tags or octet-stream bodies, coded errors rebuilt from the server's `{ code, message,
 * details }`), job polling, and the admin's bulk registration.
 */
import { randomBytes } from 'node:crypto';
import { SafehouseError, fail, isCoded, ERRORS, type ErrorCode } from '../../core/errors.ts';

/** How many 429s in a row a call waits out, and the longest single wait it accepts. */
const MAX_RATE_RETRIES = 30;
const MAX_RETRY_WAIT_S = 30;
import { hexToBytes } from '../../core/sign.ts';
import { signRequest } from '../httpsig.ts';
import { toJson, fromJson } from '../wire.ts';
import { type TrainPlan } from '../../engine/protocols/train/messages.ts';
import type { Policy } from '../../sandbox/policy.ts';
import { readKeyFile, type PublicKeys } from '../keys.ts';
import type { PartyKeys } from '../wallet.ts';
import { issueCertificate } from '../../sandbox/registrar.ts';

export interface ServerInfo {
  paramsId: string;
  slots: number;
  t: string;
  engine: { ed25519: string };
  policy: Policy;
  ledgerOrigin: string;
}
export interface JobView {
  jobId: string;
  kind: string;
  status: string;
  progress: { phase: string; done: number; total: number } | null;
  error: { code: string; message: string; details: Record<string, string | number | boolean> } | null;
  plan?: Pick<TrainPlan, 'jobId' | 'provider' | 'features' | 'options' | 'cohort' | 'excluded'>;
}

/** A signed HTTP client for one party. */
export class Client {
  readonly base: URL;
  readonly keys: PartyKeys;

  constructor(server: string, keys: PartyKeys) {
    try {
      this.base = new URL(server);
    } catch {
      fail('SH_ERR_INVALID_ARGUMENT', `"--server" expected a URL, got ${JSON.stringify(server)}`, { option: 'server' });
    }
    this.keys = keys;
  }

  get id(): string {
    return this.keys.id;
  }

  /**
   * Call a route; JSON bodies are encoded with bigint/bytes tags, Uint8Array bodies go as octet-stream. A 429 is
   * waited out as the server's `retry-after` says, plus up to half as much again at random so that callers refused
   * together do not return together (each wait capped at MAX_RETRY_WAIT_S, at most MAX_RATE_RETRIES times, then the
   * coded SH_ERR_RATE_LIMITED is thrown), so many concurrent clients and a long auditor replay pace themselves.
   */
  async call<T>(method: 'GET' | 'POST' | 'PUT', path: string, payload?: unknown): Promise<T> {
    const once = () => this.paced(() => this.resent(() => this.callOnce<T>(method, path, payload)));
    if (method !== 'GET') return once();
    // A read is safe to repeat: through a server restart (refused connections, 503) it is sent again for a minute.
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        return await once();
      } catch (err) {
        if (!isCoded(err, 'SH_ERR_UNAVAILABLE') || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 300 + Math.random() * 700));
      }
    }
  }

  /** Retry after 429s, as long as the server asks for a bounded wait. */
  private async paced<T>(send: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await send();
      } catch (err) {
        if (!isCoded(err, 'SH_ERR_RATE_LIMITED') || attempt >= MAX_RATE_RETRIES) throw err;
        const asked = Number(err.details.retryAfterSeconds ?? 1);
        const wait = Math.min(MAX_RETRY_WAIT_S, Number.isFinite(asked) && asked > 0 ? asked : 1);
        await new Promise((r) => setTimeout(r, 1000 * wait * (1 + Math.random() / 2)));
      }
    }
  }

  /**
   * A pooled keep-alive socket reset before the request went out (e.g. the server closed it after refusing an
   * oversized body): send once more, freshly signed. A replayed job submission is refused as already existing.
   */
  private async resent<T>(send: () => Promise<T>): Promise<T> {
    try {
      return await send();
    } catch (err) {
      if (
        (err as { code?: string }).code === 'SH_ERR_UNAVAILABLE' &&
        /ECONNRESET|UND_ERR_SOCKET|other side closed/.test(
          String((err as { cause?: { cause?: unknown } }).cause?.cause ?? ''),
        )
      ) {
        return send();
      }
      throw err;
    }
  }

  private async callOnce<T>(method: 'GET' | 'POST' | 'PUT', path: string, payload?: unknown): Promise<T> {
    const url = new URL(path, this.base);
    const binary = payload instanceof Uint8Array;
    const body = payload === undefined ? undefined : binary ? payload : new TextEncoder().encode(toJson(payload));
    const headers: Record<string, string> = signRequest(
      { method, url: url.href, authority: url.host, ...(body ? { body } : {}) },
      this.keys.id,
      this.keys.ed25519.secretKey,
    );
    if (body) headers['content-type'] = binary ? 'application/octet-stream' : 'application/json';
    let res: Response;
    try {
      res = await fetch(url, { method, headers, ...(body ? { body } : {}) });
    } catch (err) {
      return fail('SH_ERR_UNAVAILABLE', `cannot reach ${url.origin}`, {}, err);
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? fromJson(text) : undefined;
    } catch {
      json = undefined;
    }
    if (!res.ok) {
      const e = (json ?? {}) as {
        code?: string;
        message?: string;
        details?: Record<string, string | number | boolean>;
      };
      const code = (
        e.code && e.code in ERRORS ? e.code : res.status === 429 ? 'SH_ERR_RATE_LIMITED' : 'SH_ERR_INTERNAL'
      ) as ErrorCode;
      throw new SafehouseError(code, e.message ?? `${method} ${path} answered ${res.status}`, e.details ?? {});
    }
    return json as T;
  }

  get<T>(path: string): Promise<T> {
    return this.call<T>('GET', path);
  }

  /** An `application/octet-stream` answer (blobs), GET or POST with a JSON body; paced like `call`. */
  async getBytes(path: string, payload?: unknown): Promise<Uint8Array> {
    return this.paced(() => this.bytesOnce(path, payload));
  }

  private async bytesOnce(path: string, payload?: unknown): Promise<Uint8Array> {
    const url = new URL(path, this.base);
    const method = payload === undefined ? 'GET' : 'POST';
    const body = payload === undefined ? undefined : new TextEncoder().encode(toJson(payload));
    const headers: Record<string, string> = signRequest(
      { method, url: url.href, authority: url.host, ...(body ? { body } : {}) },
      this.keys.id,
      this.keys.ed25519.secretKey,
    );
    if (body) headers['content-type'] = 'application/json';
    const res = await fetch(url, { method, headers, ...(body ? { body } : {}) }).catch((err: unknown) =>
      fail('SH_ERR_UNAVAILABLE', `cannot reach ${url.origin}`, {}, err),
    );
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (!res.ok) {
      const e = (() => {
        try {
          return JSON.parse(new TextDecoder().decode(bytes)) as {
            code?: string;
            message?: string;
            details?: Record<string, string | number | boolean>;
          };
        } catch {
          return {};
        }
      })();
      throw new SafehouseError(
        (e.code && e.code in ERRORS
          ? e.code
          : res.status === 429
            ? 'SH_ERR_RATE_LIMITED'
            : 'SH_ERR_INTERNAL') as ErrorCode,
        e.message ?? `${method} ${path} answered ${res.status}`,
        e.details ?? {},
      );
    }
    return bytes;
  }

  post<T>(path: string, payload: unknown): Promise<T> {
    return this.call<T>('POST', path, payload);
  }

  private infoCache: Promise<ServerInfo> | undefined;

  /** The server's public parameters (fetched once per client). */
  info(): Promise<ServerInfo> {
    this.infoCache ??= fetch(new URL('/v1/info', this.base))
      .catch((err: unknown) => fail('SH_ERR_UNAVAILABLE', `cannot reach ${this.base.origin}`, {}, err))
      .then(async (res) => fromJson(await res.text()) as ServerInfo)
      .catch((err: unknown) => {
        this.infoCache = undefined;
        throw err;
      });
    return this.infoCache;
  }

  async putBlobs(blobs: ReadonlyMap<string, Uint8Array>): Promise<void> {
    for (const [hash, bytes] of blobs) await this.call('PUT', `/v1/blobs/${hash}`, bytes);
  }

  /** Poll a job until it is done (or needs the bank), reporting progress; bounded by `timeoutMs`. */
  async waitJob(
    jobId: string,
    opts: {
      until?: string[];
      onProgress?: (p: { phase: string; done: number; total: number }) => void;
      timeoutMs?: number;
    } = {},
  ): Promise<JobView> {
    const until = opts.until ?? ['done'];
    const deadline = Date.now() + (opts.timeoutMs ?? 6 * 3600_000);
    let delay = 50;
    for (;;) {
      let v: JobView;
      try {
        v = await this.get<JobView>(`/v1/bank/jobs/${encodeURIComponent(jobId)}`);
      } catch (err) {
        // The server restarting (refused connections, 503 while it shuts down): the job is kept; poll on.
        if (!isCoded(err, 'SH_ERR_UNAVAILABLE') || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 500 + Math.random() * 500));
        continue;
      }
      if (v.progress) opts.onProgress?.(v.progress);
      if (v.status === 'failed' && v.error)
        throw new SafehouseError(
          (v.error.code in ERRORS ? v.error.code : 'SH_ERR_INTERNAL') as ErrorCode,
          v.error.message,
          v.error.details,
        );
      if (until.includes(v.status)) return v;
      if (Date.now() > deadline)
        fail('SH_ERR_UNAVAILABLE', `job ${jobId} did not finish in time (last status ${v.status})`, { job: jobId });
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(500, delay * 2);
    }
  }
}

export function clientFor(server: string, as: string | undefined, keyPath: string): Client {
  const keys = readKeyFile(keyPath);
  if (as !== undefined && as !== keys.id)
    fail('SH_ERR_INVALID_ARGUMENT', `"--as" ${as} does not match the key file's party ${keys.id}`, { option: 'as' });
  return new Client(server, keys);
}

export function newJobId(kind: string): string {
  return `${kind}_${new Date()
    .toISOString()
    .replace(/[-:.TZ]/g, '')
    .slice(0, 14)}_${randomBytes(4).toString('hex')}`;
}

// ---------------------------------------------------------------- admin

/**
 * As the admin, register parties from their public keys. With `registrar` (the registrar's key: real-name
 * registration, sandbox/registrar.ts), each bank's and enterprise's key is certified first — custodians ignore keys
 * without a registrar certificate.
 */
export async function registerParties(
  admin: Client,
  pubs: readonly PublicKeys[],
  opts: { group?: string; registrar?: PartyKeys } = {},
): Promise<string[]> {
  const certify = (p: PublicKeys, group?: string) => {
    const r = opts.registrar;
    if (!r || (p.role !== 'bank' && p.role !== 'enterprise')) return {};
    return {
      certificate: issueCertificate(
        {
          party: p.id,
          role: p.role,
          ed25519: hexToBytes(p.ed25519),
          ...(p.x25519 ? { x25519: hexToBytes(p.x25519) } : {}),
          ...(group ? { group } : {}),
        },
        { id: r.id, secretKey: r.ed25519.secretKey },
      ),
    };
  };
  const enterprises = pubs.filter((p) => p.role === 'enterprise');
  const others = pubs.filter((p) => p.role !== 'enterprise');
  for (const p of others) {
    const group = opts.group && p.role === 'bank' ? opts.group : undefined;
    await admin.post('/v1/admin/parties', { ...p, ...(group ? { group } : {}), ...certify(p, group) });
  }
  for (let i = 0; i < enterprises.length; i += 5000) {
    await admin.post('/v1/admin/enterprises', {
      enterprises: enterprises.slice(i, i + 5000).map((e) => ({ uscc: e.id, ed25519: e.ed25519, ...certify(e) })),
    });
  }
  return pubs.map((p) => p.id);
}
