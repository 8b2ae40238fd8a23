/**
 * Client mode: each party acting against a Safehouse server (`--server URL --as PARTY --key FILE`), with
 * its keys on its own side. Every request is RFC 9421-signed with the party's Ed25519 key; what a party signs (upload
 * manifests, approvals, score/verify/train requests, consents, labels) is built by the same functions embedded mode
 * uses, and what comes back sealed (scores, claim answers) is opened here, with the party's own X25519 key.
 */
import { join } from 'node:path';
import { existsSync, readFileSync, statSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { Engine } from '../engine/engine.ts';
import { sha256Hex } from '../core/hash.ts';
import { replayJob, type ReplayReport } from '../engine/audit/replay.ts';
import { randomBytes } from 'node:crypto';
import { SafehouseError, fail, ERRORS, type ErrorCode } from '../core/errors.ts';
import { signRequest } from './httpsig.ts';
import { toJson, fromJson } from './wire.ts';
import type { AuditBundle } from './server/bundle.ts';
import { paramSet, type ParamSet } from '../engine/he/params.ts';
import { ProviderAgent } from '../engine/provider/agent.ts';
import { type ProviderTable } from '../engine/provider/table.ts';
import { WorkerPool } from '../engine/pool/pool.ts';
import { signJson, hexToBytes, type Signed } from '../core/sign.ts';
import { buildScoreRequest, openScoreResult } from '../engine/protocols/score/bank.ts';
import { type ScoreResult, type ScoreStatus } from '../engine/protocols/score/messages.ts';
import { buildVerifyRequest, openVerifyResult } from '../engine/protocols/verify/bank.ts';
import { type Claim, type ClaimResult, type VerifyResult } from '../engine/protocols/verify/messages.ts';
import { buildTrainRequest, encryptLabels } from '../engine/protocols/train/bank.ts';
import { type TrainOutcome, type TrainPlan } from '../engine/protocols/train/messages.ts';
import { createConsent, createRevocation, type SignedConsent } from '../sandbox/consent.ts';
import { parseUscc } from '../sandbox/uscc.ts';
import { parseModel, type ModelSpec } from '../models/model.ts';
import type { TrainOptions } from '../models/train.ts';
import type { Policy } from '../sandbox/policy.ts';
import { leafHash, rootsAtSizes, equalBytes, verifyInclusion, verifyConsistency } from '../engine/ledger/merkle.ts';
import { verifyCheckpoint } from '../engine/ledger/checkpoint.ts';
import { providerKeys, readKeyFile, writeSecret, type PublicKeys } from './keys.ts';
import type { PartyKeys } from './wallet.ts';
import type { ConsentGrant } from './embedded.ts';
import type { AccessEntry, AccessReport } from '../engine/audit/report.ts';

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

  /** Call a route; JSON bodies are encoded with bigint/bytes tags, Uint8Array bodies go as octet-stream. */
  async call<T>(method: 'GET' | 'POST' | 'PUT', path: string, payload?: unknown): Promise<T> {
    try {
      return await this.callOnce<T>(method, path, payload);
    } catch (err) {
      // A pooled keep-alive socket reset before the request went out (e.g. the server closed it after refusing an
      // oversized body): send once more, freshly signed. A replayed job submission is refused as already existing.
      if (
        (err as { code?: string }).code === 'SH_ERR_UNAVAILABLE' &&
        /ECONNRESET|UND_ERR_SOCKET|other side closed/.test(
          String((err as { cause?: { cause?: unknown } }).cause?.cause ?? ''),
        )
      ) {
        return this.callOnce<T>(method, path, payload);
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

  /** GET an `application/octet-stream` body (blobs). */
  async getBytes(path: string): Promise<Uint8Array> {
    const url = new URL(path, this.base);
    const headers = signRequest(
      { method: 'GET', url: url.href, authority: url.host },
      this.keys.id,
      this.keys.ed25519.secretKey,
    );
    const res = await fetch(url, { headers }).catch((err: unknown) =>
      fail('SH_ERR_UNAVAILABLE', `cannot reach ${url.origin}`, {}, err),
    );
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (!res.ok) {
      const e = (() => {
        try {
          return JSON.parse(new TextDecoder().decode(bytes)) as { code?: string; message?: string };
        } catch {
          return {};
        }
      })();
      throw new SafehouseError(
        (e.code && e.code in ERRORS ? e.code : 'SH_ERR_INTERNAL') as ErrorCode,
        e.message ?? `GET ${path} answered ${res.status}`,
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
      const v = await this.get<JobView>(`/v1/bank/jobs/${encodeURIComponent(jobId)}`);
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

export async function registerParties(admin: Client, pubs: readonly PublicKeys[]): Promise<string[]> {
  const enterprises = pubs.filter((p) => p.role === 'enterprise');
  const others = pubs.filter((p) => p.role !== 'enterprise');
  for (const p of others) await admin.post('/v1/admin/parties', p);
  for (let i = 0; i < enterprises.length; i += 5000) {
    await admin.post('/v1/admin/enterprises', {
      enterprises: enterprises.slice(i, i + 5000).map((e) => ({ uscc: e.id, ed25519: e.ed25519 })),
    });
  }
  return pubs.map((p) => p.id);
}

// ---------------------------------------------------------------- provider

/** The provider side: its agent (keys from its directory) and its own tables. */
export class ProviderClient {
  readonly client: Client;
  readonly dir: string;
  private agentInstance: ProviderAgent | undefined;
  private pool: WorkerPool | undefined;
  private params: ParamSet | undefined;

  constructor(server: string, keysDir: string) {
    const k = providerKeys(keysDir);
    this.client = new Client(server, k.party);
    this.dir = keysDir;
  }

  async agent(): Promise<ProviderAgent> {
    if (!this.agentInstance) {
      this.params = paramSet((await this.client.info()).paramsId);
      const k = providerKeys(this.dir);
      this.pool = new WorkerPool({ size: 2 });
      this.agentInstance = new ProviderAgent(
        k.party.id,
        this.params,
        {
          bfvSecretKey: k.bfvSecretKey,
          bfvPublicKey: k.bfvPublicKey,
          ed25519SecretKey: k.party.ed25519.secretKey,
          ed25519PublicKey: k.party.ed25519.publicKey,
          oprfSecretKey: k.oprfSecretKey,
          oprfPublicKey: k.oprfPublicKey,
        },
        this.pool,
      );
    }
    return this.agentInstance;
  }

  async close(): Promise<void> {
    await this.pool?.close();
  }

  async ingest(
    schema: unknown,
    csvText: string,
  ): Promise<{ datasetId: string; subjects: number; blocks: number; version: number; category: string }> {
    const agent = await this.agent();
    const datasetId = `${agent.id}.${(schema as { category?: string })?.category ?? 'x'}.${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
    const up = await agent.prepareUpload(schema, csvText, datasetId);
    await this.client.putBlobs(up.blobs);
    const ds = await this.client.post<{
      datasetId: string;
      subjects: number;
      blocks: number;
      version: number;
      category: string;
    }>('/v1/provider/datasets', { manifest: up.manifest });
    writeSecret(join(this.dir, `${ds.category}.json`), JSON.stringify(up.table));
    return ds;
  }

  table(category: string): ProviderTable {
    const p = join(this.dir, `${category}.json`);
    if (!existsSync(p))
      fail(
        'SH_ERR_MODEL_STALE',
        `provider ${this.client.id} has no local copy of its ${category} dataset in ${this.dir}`,
      );
    return JSON.parse(readFileSync(p, 'utf8')) as ProviderTable;
  }

  async approve(modelId: string): Promise<void> {
    const agent = await this.agent();
    const { spec } = await this.client.get<{ spec: ModelSpec }>(`/v1/provider/models/${encodeURIComponent(modelId)}`);
    const { datasets } = await this.client.get<{ datasets: Array<{ id: string; category: string; fields: string[] }> }>(
      '/v1/provider/datasets',
    );
    const field = spec.terms.find((t) => t.provider === agent.id)!.field;
    const ds = datasets.find((d) => d.fields.includes(field));
    if (!ds) fail('SH_ERR_UNKNOWN_FIELD', `provider ${agent.id} has no dataset with ${field}`);
    const table = this.table(ds.category);
    if (table.datasetId !== ds.id)
      fail(
        'SH_ERR_MODEL_STALE',
        `provider ${agent.id}'s local table is ${table.datasetId}, the engine's current dataset is ${ds.id}`,
      );
    const { policy } = await this.client.info();
    const { approval, blobs } = await agent.approve(spec, table, policy);
    await this.client.putBlobs(blobs);
    await this.client.post('/v1/provider/approvals', { approval });
  }
}

// ---------------------------------------------------------------- bank

export async function registerModel(
  bank: Client,
  modelJson: unknown,
): Promise<{ id: string; hash: string; scale: number; bound: string }> {
  const spec = parseModel(modelJson);
  return bank.post('/v1/bank/models', {
    registration: signJson(
      { type: 'safehouse.model.register.v1', bank: bank.id, model: spec },
      bank.id,
      bank.keys.ed25519.secretKey,
    ),
  });
}

type Progress = (p: { phase: string; done: number; total: number }) => void;

export async function score(
  bank: Client,
  modelId: string,
  purpose: string,
  subjects: string[],
  onProgress?: Progress,
): Promise<{ jobId: string; rows: Array<{ uscc: string; status: ScoreStatus; score: string }> }> {
  if (!bank.keys.x25519)
    fail('SH_ERR_PARTY_ROLE', `${bank.id}'s key file has no X25519 key (banks need one to open results)`);
  const m = await bank.get<{ hash: string }>(`/v1/bank/models/${encodeURIComponent(modelId)}`);
  const jobId = newJobId('score');
  const signed = buildScoreRequest(
    { jobId, bank: bank.id, modelId, modelHash: m.hash, purpose, subjects, requestedAt: new Date().toISOString() },
    bank.keys.ed25519.secretKey,
  );
  await bank.post('/v1/bank/jobs', { kind: 'score', request: signed });
  await bank.waitJob(jobId, onProgress ? { onProgress } : {});
  const result = await bank.get<ScoreResult>(`/v1/bank/jobs/${jobId}/result`);
  return { jobId, rows: openScoreResult(result, bank.id, bank.keys.x25519.secretKey) };
}

export async function verify(
  bank: Client,
  purpose: string,
  claims: readonly Claim[],
  onProgress?: Progress,
): Promise<{ jobId: string; results: Map<string, ClaimResult> }> {
  if (!bank.keys.x25519)
    fail('SH_ERR_PARTY_ROLE', `${bank.id}'s key file has no X25519 key (banks need one to open results)`);
  const jobId = newJobId('verify');
  const { signed, openings } = buildVerifyRequest(
    { jobId, bank: bank.id, purpose, claims, requestedAt: new Date().toISOString() },
    bank.keys.ed25519.secretKey,
  );
  await bank.post('/v1/bank/jobs', { kind: 'verify', request: signed, openings });
  await bank.waitJob(jobId, onProgress ? { onProgress } : {});
  const result = await bank.get<VerifyResult>(`/v1/bank/jobs/${jobId}/result`);
  return {
    jobId,
    results: openVerifyResult(
      result,
      bank.id,
      bank.keys.x25519.secretKey,
      claims.map((c) => c.claimId),
    ),
  };
}

/**
 * Joint training as the bank: sign the request; the engine plans it (consent op `train`, cohort minimum); encrypt the
 * labels of the cohort under the key holder's registered BFV key on the bank's side; the engine gathers the providers'
 * encrypted columns from their custodians and iterates.
 */
export async function train(
  bank: Client,
  r: {
    provider: string;
    purpose: string;
    fields: string[];
    others?: Array<{ provider: string; fields: string[] }>;
    subjects: string[];
    labels: ReadonlyMap<string, 0 | 1>;
    bins?: number;
    features?: 'binned' | 'standardized';
    options?: Partial<TrainOptions>;
    onProgress?: Progress;
  },
): Promise<TrainOutcome> {
  const jobId = newJobId('train');
  const signed = buildTrainRequest(
    {
      jobId,
      bank: bank.id,
      purpose: r.purpose,
      provider: r.provider,
      fields: r.fields,
      ...(r.others?.length ? { others: r.others } : {}),
      ...(r.features ? { features: r.features } : {}),
      subjects: r.subjects,
      bins: r.bins ?? 5,
      options: r.options ?? {},
      requestedAt: new Date().toISOString(),
    },
    bank.keys.ed25519.secretKey,
  );
  await bank.post('/v1/bank/jobs', { kind: 'train', request: signed });
  const view = await bank.waitJob(jobId, { until: ['awaiting-labels', 'done'] });
  if (!view.plan) fail('SH_ERR_JOB_NOT_READY', `job ${jobId} has no training plan`);
  const holder = await bank.get<{ bfvPublicKey?: string }>(`/v1/parties/${encodeURIComponent(view.plan.provider)}`);
  if (!holder.bfvPublicKey) fail('SH_ERR_UNKNOWN_PARTY', `provider ${view.plan.provider} has no BFV key registered`);
  const params = paramSet((await bank.info()).paramsId);
  const enc = await encryptLabels(
    params,
    new Uint8Array(Buffer.from(holder.bfvPublicKey, 'base64')),
    { ...view.plan, jobId },
    r.labels,
    bank.id,
    bank.keys.ed25519.secretKey,
  );
  await bank.putBlobs(enc.blobs);
  await bank.post(`/v1/bank/jobs/${jobId}/labels`, { labels: enc.signed });
  await bank.waitJob(jobId, r.onProgress ? { onProgress: r.onProgress } : {});
  return bank.get<TrainOutcome>(`/v1/bank/jobs/${jobId}/result`);
}

// ---------------------------------------------------------------- enterprise

/** Grant consents, each signed by its enterprise with its own key (`keyOf`), one request per enterprise. */
export async function grantConsents(
  server: string,
  grants: readonly ConsentGrant[],
  keyOf: (uscc: string) => PartyKeys,
): Promise<SignedConsent[]> {
  const bySubject = new Map<string, SignedConsent[]>();
  const out: SignedConsent[] = [];
  for (const g of grants) {
    const subject = parseUscc(g.subject);
    const k = keyOf(subject);
    if (!Number.isFinite(g.days) || g.days <= 0)
      fail('SH_ERR_CONSENT_INVALID', `"days" expected a positive number, got ${g.days}`);
    const nb = g.notBefore ?? new Date();
    const c = createConsent(
      {
        subject,
        grantee: g.bank,
        purpose: g.purpose,
        categories: g.categories,
        operations: g.operations,
        notBefore: nb,
        notAfter: new Date(nb.getTime() + g.days * 86_400_000),
      },
      k.ed25519.secretKey,
    );
    bySubject.set(subject, [...(bySubject.get(subject) ?? []), c]);
    out.push(c);
  }
  for (const [subject, consents] of bySubject) {
    const c = new Client(server, keyOf(subject));
    for (let i = 0; i < consents.length; i += 1000)
      await c.post('/v1/enterprise/consents', { consents: consents.slice(i, i + 1000) });
  }
  return out;
}

export async function revokeConsents(ent: Client, sel: { consentId?: string; bank?: string }): Promise<string[]> {
  const { consents } = await ent.get<{ consents: SignedConsent[] }>('/v1/enterprise/consents');
  const targets = consents.filter((c) =>
    sel.consentId ? c.statement.id === sel.consentId : c.statement.grantee === sel.bank,
  );
  if (targets.length === 0)
    fail(
      'SH_ERR_CONSENT_NOT_FOUND',
      sel.consentId ? `no consent ${sel.consentId} of ${ent.id}` : `no consent of ${ent.id} for ${sel.bank}`,
    );
  await ent.post('/v1/enterprise/revocations', {
    revocations: targets.map((t) => createRevocation(t.statement.id, ent.id, ent.keys.ed25519.secretKey, new Date())),
  });
  return targets.map((t) => t.statement.id);
}

/** A directory of `<USCC>.key` files, or a single enterprise key file. */
export function enterpriseKeys(path: string): (uscc: string) => PartyKeys {
  const cache = new Map<string, PartyKeys>();
  return (uscc) => {
    let k = cache.get(uscc);
    if (!k) {
      const isDir = existsSync(path) && statSync(path).isDirectory();
      if (isDir && !existsSync(join(path, `${uscc}.key`)))
        fail('SH_ERR_UNKNOWN_PARTY', `no key for enterprise ${uscc} in ${path}`, { party: uscc });
      k = readKeyFile(isDir ? join(path, `${uscc}.key`) : path);
      if (k.id !== uscc) fail('SH_ERR_UNKNOWN_PARTY', `no key for enterprise ${uscc} in ${path}`, { party: uscc });
      cache.set(uscc, k);
    }
    return k;
  };
}

// ---------------------------------------------------------------- auditor

/**
 * Verify the ledger on the auditor's side: fetch every entry and checkpoint, recompute leaf hashes from the canonical
 * bodies and the RFC 6962 roots at each checkpoint size, and check each checkpoint's signature against the engine key
 * (pinned with `engineKey`, else the key in ledger entry 0 must equal the key the server announces).
 */
export async function auditVerify(
  auditor: Client,
  engineKey?: string,
  state?: string,
): Promise<
  | { ok: true; size: number; checkpoints: number; root: string; consistentWith?: number }
  | { ok: false; code: ErrorCode; reason: string; index?: number; checkpointSize?: number }
> {
  const r = await auditVerifyOnce(auditor, engineKey);
  if (!r.ok || !state) return r;
  // The auditor keeps the last checkpoint it accepted and requires every new one to extend it (RFC 9162 §2.1.4).
  let consistentWith: number | undefined;
  if (existsSync(state)) {
    const last = JSON.parse(readFileSync(state, 'utf8')) as { size: number; root: string };
    if (last.size > r.size)
      return {
        ok: false,
        code: 'SH_ERR_LEDGER_INCONSISTENT',
        reason: `the ledger shrank: ${r.size} entries, the last checkpoint seen had ${last.size}`,
        checkpointSize: last.size,
      };
    const c = await auditor.get<{ proof: string[] }>(`/v1/auditor/proofs/consistency?from=${last.size}&to=${r.size}`);
    if (!verifyConsistency(last.size, r.size, c.proof.map(hexToBytes), hexToBytes(last.root), hexToBytes(r.root))) {
      return {
        ok: false,
        code: 'SH_ERR_LEDGER_INCONSISTENT',
        reason: `the ledger of ${r.size} entries is not an extension of the checkpoint of ${last.size} seen earlier`,
        checkpointSize: last.size,
      };
    }
    consistentWith = last.size;
  }
  writeSecret(state, JSON.stringify({ size: r.size, root: r.root, at: new Date().toISOString() }) + '\n');
  return { ...r, ...(consistentWith !== undefined ? { consistentWith } : {}) };
}

/**
 * An enterprise's access report, checked on its side: the checkpoint's signature (engine key from /v1/info unless
 * pinned), and for every entry an inclusion proof of its exact leaf body in that checkpoint's tree.
 * @throws SH_ERR_LEDGER_TAMPERED when a proof or the checkpoint does not verify
 */
export async function accessReport(
  ent: Client,
  engineKey?: string,
): Promise<{ subject: string; size: number; entries: Array<Omit<AccessEntry, 'leaf' | 'proof'>> }> {
  const info = await ent.info();
  const r = await ent.get<AccessReport>('/v1/enterprise/report');
  const cp = verifyCheckpoint(r.checkpoint, info.ledgerOrigin, hexToBytes(engineKey ?? info.engine.ed25519));
  for (const e of r.entries) {
    const leaf = leafHash(new TextEncoder().encode(e.leaf));
    if (!verifyInclusion(leaf, e.index, cp.size, e.proof.map(hexToBytes), cp.rootHash))
      fail('SH_ERR_LEDGER_TAMPERED', `report entry ${e.index} is not included in checkpoint ${cp.size}`, {
        index: e.index,
      });
    const parsed = JSON.parse(e.leaf) as { kind?: string };
    if (parsed.kind !== e.kind)
      fail('SH_ERR_LEDGER_TAMPERED', `report entry ${e.index} does not match its leaf`, { index: e.index });
  }
  return {
    subject: r.subject,
    size: cp.size,
    entries: r.entries.map(({ leaf: _leaf, proof: _proof, ...rest }) => rest),
  };
}

async function auditVerifyOnce(
  auditor: Client,
  engineKey?: string,
): Promise<
  | { ok: true; size: number; checkpoints: number; root: string }
  | { ok: false; code: ErrorCode; reason: string; index?: number; checkpointSize?: number }
> {
  const r = await verifiedLedger(auditor, engineKey);
  if (!r.ok) return r;
  const { bodies: _bodies, ...rest } = r;
  return rest;
}

/** The whole ledger, each entry checked against the signed checkpoints (the auditor's own copy). */
async function verifiedLedger(
  auditor: Client,
  engineKey?: string,
): Promise<
  | { ok: true; size: number; checkpoints: number; root: string; bodies: string[] }
  | { ok: false; code: ErrorCode; reason: string; index?: number; checkpointSize?: number }
> {
  const info = await auditor.info();
  const key = engineKey ?? info.engine.ed25519;
  // Checkpoints first (the server signs one at its current size), then every entry they cover.
  const { checkpoints } = await auditor.get<{ checkpoints: Array<{ size: number; note: string }> }>(
    '/v1/auditor/checkpoints',
  );
  const target = Math.max(0, ...checkpoints.map((c) => c.size));
  const bodies: string[] = [];
  for (;;) {
    const page = await auditor.get<{ size: number; entries: Array<{ index: number; body: string }> }>(
      `/v1/auditor/ledger?from=${bodies.length}&limit=10000`,
    );
    for (const e of page.entries) {
      if (e.index !== bodies.length)
        return {
          ok: false,
          code: 'SH_ERR_LEDGER_TAMPERED',
          reason: `entry ${bodies.length} is missing`,
          index: bodies.length,
        };
      bodies.push(e.body);
    }
    if (page.entries.length === 0 || (bodies.length >= target && bodies.length >= page.size)) break;
  }
  const first = bodies[0] ? (JSON.parse(bodies[0]) as { kind?: string; engineKey?: string }) : undefined;
  if (first?.kind !== 'engine.initialized' || first.engineKey !== key)
    return {
      ok: false,
      code: 'SH_ERR_LEDGER_TAMPERED',
      reason: 'entry 0 does not name the engine key this auditor trusts',
      index: 0,
    };
  const hashes = bodies.map((b) => leafHash(new TextEncoder().encode(b)));
  const roots = rootsAtSizes(
    hashes,
    checkpoints.map((c) => Math.min(c.size, hashes.length)),
  );
  for (const [i, c] of checkpoints.entries()) {
    let cp;
    try {
      cp = verifyCheckpoint(c.note, info.ledgerOrigin, hexToBytes(key));
    } catch (err) {
      return {
        ok: false,
        code: 'SH_ERR_LEDGER_TAMPERED',
        reason: `checkpoint ${c.size}: ${(err as Error).message}`,
        checkpointSize: c.size,
      };
    }
    if (cp.size !== c.size || c.size > hashes.length)
      return {
        ok: false,
        code: 'SH_ERR_LEDGER_TAMPERED',
        reason: `checkpoint ${c.size} covers entries that were not served`,
        checkpointSize: c.size,
      };
    if (!equalBytes(cp.rootHash, roots[i]!))
      return {
        ok: false,
        code: 'SH_ERR_LEDGER_TAMPERED',
        reason: `checkpoint ${c.size}: the served entries do not hash to its root`,
        checkpointSize: c.size,
      };
  }
  const root = rootsAtSizes(hashes, [hashes.length])[0]!;
  return {
    ok: true,
    size: hashes.length,
    checkpoints: checkpoints.length,
    root: Buffer.from(root).toString('hex'),
    bodies,
  };
}

/** Job ids with a `job.requested` entry in the verified ledger (optionally from a ledger index on). */
export async function jobsOf(auditor: Client, since = 0, engineKey?: string): Promise<string[]> {
  const ledger = await verifiedLedger(auditor, engineKey);
  if (!ledger.ok) throw new SafehouseError(ledger.code, `the ledger does not verify: ${ledger.reason}`);
  return ledger.bodies
    .slice(since)
    .map((b) => JSON.parse(b) as { kind: string; jobId?: string })
    .filter((b) => b.kind === 'job.requested')
    .map((b) => b.jobId!);
}

/**
 * `safehouse audit replay --server`: replay a job on the auditor's machine. The auditor fetches and verifies the whole
 * ledger itself, takes the job's entries from that verified copy, fetches the job's bundle (rows) and every blob it
 * names (each checked against its hash), builds a local replica data directory and runs the same replay as embedded
 * mode (engine/audit/replay.ts) with its own X25519 key for the escrowed seed.
 */
export async function replayRemote(
  auditor: Client,
  jobId: string,
  opts: { engineKey?: string; dir?: string } = {},
): Promise<ReplayReport> {
  if (!auditor.keys.x25519)
    fail('SH_ERR_PARTY_ROLE', `${auditor.id}'s key file has no X25519 key (auditors need one to open escrowed seeds)`);
  const ledger = await verifiedLedger(auditor, opts.engineKey);
  if (!ledger.ok) throw new SafehouseError(ledger.code, `the ledger does not verify: ${ledger.reason}`);
  const bundle = await auditor.get<AuditBundle>(`/v1/auditor/jobs/${encodeURIComponent(jobId)}/bundle`);
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'safehouse-replay-'));
  const mirror = Engine.open({ home: dir, create: true, poolSize: 2 });
  try {
    const db = mirror.store.db;
    db.exec('BEGIN');
    try {
      for (const [table, rows] of Object.entries(bundle.rows)) {
        if (!/^[a-z_]+$/.test(table)) fail('SH_ERR_INVALID_ARGUMENT', `bundle names table ${JSON.stringify(table)}`);
        for (const r of rows) {
          const row: Record<string, string | number | null> = r;
          const keys = Object.keys(row).filter((k) => /^[a-z][a-z0-9_]*$/.test(k));
          const values = keys.map((k) =>
            table === 'tokens' && k === 'token' ? new Uint8Array(Buffer.from(String(row[k]), 'hex')) : row[k],
          );
          db.prepare(`INSERT INTO ${table} (${keys.join(', ')}) VALUES (${keys.map(() => '?').join(', ')})`).run(
            ...values,
          );
        }
      }
      // The job's ledger entries come from the auditor's verified copy, not from the bundle.
      const ins = db.prepare(
        'INSERT OR REPLACE INTO ledger_entries (idx, kind, body, leaf_hash, at) VALUES (?, ?, ?, ?, ?)',
      );
      const indexJob = db.prepare('INSERT INTO ledger_jobs (job_id, idx) VALUES (?, ?)');
      ledger.bodies.forEach((body, idx) => {
        if (idx === 0 || !body.includes(JSON.stringify(jobId))) return;
        const b = JSON.parse(body) as { kind: string; at: string; jobId?: string };
        if (b.jobId !== jobId) return;
        ins.run(idx, b.kind, body, leafHash(new TextEncoder().encode(body)), b.at);
        indexJob.run(jobId, idx);
      });
      db.exec('COMMIT');
    } catch (err) {
      db.exec('ROLLBACK');
      throw err;
    }
    for (const hash of bundle.blobs) {
      const bytes = await auditor.getBytes(`/v1/auditor/blobs/${hash}`);
      if (sha256Hex(bytes) !== hash)
        fail('SH_ERR_BLOB_CORRUPT', `blob ${hash} served by the engine does not hash to its address`);
      mirror.store.putBlob(bytes);
    }
    return await replayJob(mirror, jobId, { id: auditor.id, x25519SecretKey: auditor.keys.x25519.secretKey });
  } finally {
    await mirror.close();
    if (!opts.dir) rmSync(dir, { recursive: true, force: true });
  }
}

export type { Signed };
