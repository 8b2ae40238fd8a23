/**
 * The custodian: a provider's key-holding service (DESIGN §1, §4.2). It holds the provider's BFV secret key and
 * answers **masked decryptions** only; it never returns v itself.
 *
 * `Custodian` is the interface the engine talks to. `LocalCustodian` runs in-process (embedded mode) but behaves like
 * the networked one will: it holds its own key material, takes only signed requests, checks the parameter set, the
 * job and the ciphertext hash **before** SEAL deserializes a byte, refuses ciphertexts that were not switched down to
 * the transfer level or lack the noise margin, and logs every request/response hash on its own side.
 *
 * Modes (DESIGN §4.2):
 *  - `seal`: the vector v + m (mod t, uniform to the custodian) sealed to a named party (X25519+HKDF+AES-GCM);
 *  - `sum`:  sums of (v + m) mod t over groups of g slots, returned to the engine, which removes Σ m per group;
 *  - `sign`: per slot, 1 if the centered value is ≥ 0 else 0, sealed to a named party (masked comparisons).
 *
 * The custodian's view (what `observe` reports, for tests): the decrypted residues of each request — uniform for
 * `seal`/`sum` because the engine adds a fresh uniform mask, r·(x−c)+r' for `sign`.
 */
import { appendFileSync, mkdirSync, existsSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Ciphertext, Decryptor, PublicKey, SecretKey } from 'node-seal';
import { fail } from '../../core/errors.ts';
import { canonicalize } from '../../core/jcs.ts';
import { BlockOps } from '../he/block.ts';
import { heContext, paramSet, type ParamSet } from '../he/params.ts';
import { centered } from '../../core/fixed.ts';
import { sealCall } from '../he/seal.ts';
import { sha256Hex } from '../../core/hash.ts';
import { sealTo, type SealedBox } from '../../core/sealbox.ts';
import { requireSignature, signJson, hexToBytes, bytesToHex, type Signed } from '../../core/sign.ts';
import { TOKEN_SUITE, TOKEN_MODE, tokenInfo, evaluateBlinded } from '../tokens/oprf.ts';
import type { WorkerPool } from '../pool/pool.ts';
import { trainOptions, type TrainOptions } from '../../models/train.ts';

export type DecryptMode = 'seal' | 'sum' | 'sign';

/** How long a bank-signed verify request may be used for token evaluations. */
export const BANK_REQUEST_TTL_MS = 15 * 60_000;

export interface DecryptRequest {
  type: 'safehouse.custodian.decrypt.v1';
  paramsId: string;
  provider: string;
  jobId: string;
  /** Hash of the job request (and through it the model hash): peers agree on what is being computed. */
  jobHash: string;
  /** Label of this request inside the job (e.g. "score/tax/block/0"); bound into sealed boxes. */
  label: string;
  mode: DecryptMode;
  /** SHA-256 (hex) of the serialized ciphertext sent with the request. */
  ciphertext: string;
  recipient?: { party: string; x25519: string };
  groupSize?: number;
}

export interface DecryptResponse {
  type: 'safehouse.custodian.response.v1';
  provider: string;
  jobId: string;
  label: string;
  /** SHA-256 of the canonical signed request. */
  requestHash: string;
  mode: DecryptMode;
  sealed?: SealedBox;
  /** `sum` mode: group sums of (v + m) mod t, as decimal strings. */
  sums?: string[];
}

/**
 * Engine → custodian: domain transfer (DESIGN §4.3). The custodian decrypts a masked vector v + m under its own key,
 * moves slots (`moves`: [from, to] pairs, relaying the vector into another provider's subject layout, zeros elsewhere)
 * and encrypts the result under the target provider's public key. The engine then subtracts the moved mask.
 */
export interface TransferRequest {
  type: 'safehouse.custodian.transfer.v1';
  paramsId: string;
  provider: string;
  jobId: string;
  jobHash: string;
  label: string;
  ciphertext: string;
  target: { provider: string; bfvPublicKey: string };
  moves: Array<[from: number, to: number]>;
}

export interface TransferResponse {
  type: 'safehouse.custodian.transfer.response.v1';
  provider: string;
  jobId: string;
  label: string;
  requestHash: string;
  /** SHA-256 of the returned ciphertext (sent alongside). */
  ciphertext: string;
}

/** Engine → custodian: evaluate blinded token claims (RFC 9497 POPRF, DESIGN §4.4). */
export interface TokenEvalRequest {
  type: 'safehouse.custodian.oprf.v1';
  suite: 'P256-SHA256';
  mode: 'POPRF';
  provider: string;
  jobId: string;
  /** SHA-256 of the canonical bank-signed verify request this evaluation serves. */
  jobHash: string;
  field: string;
  epoch: number;
  label: string;
  /** Blinded points (hex), each tagged with the bank-signed claim it serves. */
  elements: Array<{ claimId: string; blinded: string }>;
}

export interface TokenEvalResponse {
  type: 'safehouse.custodian.oprf.response.v1';
  provider: string;
  jobId: string;
  label: string;
  requestHash: string;
  evaluated: string[];
  /** One batch DLEQ proof (hex) over all elements. */
  proof: string;
}

/** The bank-signed request a token evaluation must be counted against (see protocols/verify.ts). */
export interface BankClaims {
  body: { type: string; jobId: string; bank: string; claims: Array<{ claimId: string; provider: string; field: string; op: string; count: number }> };
  signer: string;
  signature: string;
}

/**
 * A bank-signed job request (score, verify or train) as the bank signed it. The engine shows it to every custodian the
 * job involves before asking for anything (`openJob`); every later request names it by `jobHash` = SHA-256 of its
 * canonical form, and the custodian answers only within the budget it derives from the job itself.
 */
export interface BankJob {
  body: { type: string; jobId: string; bank: string; requestedAt: string; [k: string]: unknown };
  signer: string;
  signature: string;
}

/** Job request types a custodian accepts, and the label prefix each job's requests must use. */
const JOB_TYPES: Record<string, 'score' | 'verify' | 'train'> = {
  'safehouse.score.request.v1': 'score', 'safehouse.verify.request.v1': 'verify', 'safehouse.train.request.v1': 'train',
};

interface OpenJob {
  jobId: string;
  kind: 'score' | 'verify' | 'train';
  /** Largest number of decryptions/transfers the job can need from this custodian. */
  budget: number;
  used: number;
  labels: Set<string>;
  /** train: iterations, columns (all parts) and this provider's columns (transfers). */
  iterations?: number;
  columns?: number;
  ownColumns?: number;
}

export interface Custodian {
  readonly provider: string;
  readonly paramsId: string;
  /** Serialized BFV public key (what the engine re-randomizes with and other providers transfer to). */
  readonly bfvPublicKey: Uint8Array;
  /** Ed25519 key the custodian signs responses with. */
  readonly signingPublicKey: Uint8Array;
  /**
   * Show the custodian the bank-signed job a series of requests serves (idempotent). The custodian checks the bank's
   * signature against the public registry, that the request is fresh and that it involves this provider, and derives
   * the job's budget; decryptions and transfers naming any other job hash are refused.
   * @throws SH_ERR_BAD_SIGNATURE, SH_ERR_PARAMS_MISMATCH, SH_ERR_VERIFY_BUDGET (stale request)
   */
  openJob(job: BankJob): Promise<void>;
  decrypt(request: Signed<DecryptRequest>, ciphertext: Uint8Array): Promise<Signed<DecryptResponse>>;
  /**
   * Evaluate blinded token claims in one batch with a DLEQ proof, refusing more evaluations per claim than the
   * bank-signed request allows (SH_ERR_VERIFY_BUDGET) and identity or invalid points (SH_ERR_TOKEN_INVALID).
   */
  evaluateTokens(request: Signed<TokenEvalRequest>, bankRequest: BankClaims): Promise<Signed<TokenEvalResponse>>;
  /** Domain transfer with relayout (DESIGN §4.3): returns Enc_target(π(v + m)) and a signed receipt. */
  transfer(request: Signed<TransferRequest>, ciphertext: Uint8Array, targetPublicKey: Uint8Array): Promise<{ response: Signed<TransferResponse>; ciphertext: Uint8Array }>;
}

export interface CustodianKeys {
  bfvSecretKey: Uint8Array;
  bfvPublicKey: Uint8Array;
  ed25519SecretKey: Uint8Array;
  ed25519PublicKey: Uint8Array;
  /** RFC 9497 POPRF key pair (P256-SHA256) for token fields. */
  oprfSecretKey?: Uint8Array;
  oprfPublicKey?: Uint8Array;
}

export interface CustodianView {
  label: string;
  mode: DecryptMode;
  /** The residues the custodian decrypted, exactly as it sees them. */
  values: BigUint64Array;
}

export interface LocalCustodianOptions {
  provider: string;
  params: ParamSet;
  keys: CustodianKeys;
  /** Engine Ed25519 public key: only requests it signed are answered. */
  enginePublicKey: Uint8Array;
  /** JSONL file for the custodian's own request log. */
  logFile?: string;
  /** Test hook: receives the custodian's view of every decryption. */
  observe?: (view: CustodianView) => void;
  /** Looks up a bank's registered Ed25519 key (the platform's public registry) to check bank-signed requests. */
  bankKey?: (bank: string) => Uint8Array | undefined;
  /** Pool for OPRF evaluations (P-256 scalar multiplications, ~2.3 ms each); in-process when absent. */
  pool?: WorkerPool;
}

/**
 * What a job may ask of one custodian, from the bank-signed request alone: `score` — one decryption per subject at
 * most (one per block touched in practice); `verify` — two comparisons per value the bank signed for this provider's
 * claims;
 * `train` — per iteration one sum per column and one for the residuals, per block of the cohort, plus one transfer per
 * own column and block pair. Labels are checked against the job's shape and answered once each.
 */
function jobBudget(kind: OpenJob['kind'], body: BankJob['body'], provider: string): OpenJob {
  const base = { jobId: body.jobId, kind, used: 0, labels: new Set<string>() };
  const subjects = Array.isArray(body.subjects) ? body.subjects.length : 0;
  if (kind === 'score') return { ...base, budget: subjects };
  if (kind === 'verify') {
    const claims = Array.isArray(body.claims) ? (body.claims as Array<{ provider?: string; count?: number }>) : [];
    // A numeric eq/ne is two comparisons (≥ and ≤) per value; each decryption answers at least one comparison.
    return { ...base, budget: 2 * claims.filter((c) => c?.provider === provider).reduce((a, c) => a + (Number.isInteger(c.count) && c.count! > 0 ? c.count! : 0), 0) };
  }
  const parts = [{ provider: body.provider, fields: body.fields }, ...(Array.isArray(body.others) ? body.others : [])] as Array<{ provider: string; fields: unknown }>;
  // A binned field has at most `bins` quantile bins, or one column per label of an enum (≤ 256, sandbox/catalog.ts).
  const width = body.features === 'standardized' ? 1 : 256;
  const cols = (p: { fields: unknown }) => (Array.isArray(p.fields) ? p.fields.length : 0) * width;
  const columns = parts.reduce((a, p) => a + cols(p), 0);
  const own = parts.find((p) => p.provider === provider);
  if (!own) return { ...base, budget: 0 };
  const iterations = trainOptions(body.options as Partial<TrainOptions> | undefined).iterations;
  const holder = body.provider === provider;
  const ownColumns = cols(own);
  const budget = holder ? iterations * (columns + 1) * subjects : ownColumns * subjects;
  return { ...base, budget, iterations: holder ? iterations : 0, columns, ownColumns: holder ? 0 : ownColumns };
}

export class LocalCustodian implements Custodian {
  readonly provider: string;
  readonly paramsId: string;
  readonly bfvPublicKey: Uint8Array;
  readonly signingPublicKey: Uint8Array;
  private readonly params: ParamSet;
  private readonly keys: CustodianKeys;
  private readonly enginePublicKey: Uint8Array;
  private readonly logFile: string | undefined;
  private readonly observe: ((view: CustodianView) => void) | undefined;
  private readonly bankKey: ((bank: string) => Uint8Array | undefined) | undefined;
  private readonly pool: WorkerPool | undefined;
  /** Evaluations already answered per job and claim: the bank-signed count bounds their sum. */
  private readonly evaluations = new Map<string, Map<string, number>>();
  private readonly targetKeys = new Map<string, PublicKey>();
  /** Bank requests already verified, by object identity → canonical hash. Only in-process callers pass the same object twice (HTTP gives a new one per call), and they share the process anyway. */
  private readonly checkedBankRequests = new WeakMap<object, string>();
  /** The BFV secret key for this custodian's own pool: in shared memory (tasks share it, not copy 270 KB each), hashed once. */
  private poolKey: { bytes: Uint8Array; hash: string } | undefined;
  /** Bank-signed jobs shown by the engine, by job hash (rebuilt from the log after a restart). */
  private readonly jobs = new Map<string, OpenJob>();
  private jobsLoaded = false;
  private state: Promise<{ ops: BlockOps; sk: SecretKey; decryptor: Decryptor }> | undefined;

  constructor(opts: LocalCustodianOptions) {
    this.provider = opts.provider;
    this.params = opts.params;
    this.paramsId = opts.params.id;
    this.keys = opts.keys;
    this.bfvPublicKey = opts.keys.bfvPublicKey;
    this.signingPublicKey = opts.keys.ed25519PublicKey;
    this.enginePublicKey = opts.enginePublicKey;
    this.logFile = opts.logFile;
    this.observe = opts.observe;
    this.bankKey = opts.bankKey;
    this.pool = opts.pool;
  }

  private init() {
    this.state ??= heContext(this.params).then((he) => {
      const ops = new BlockOps(he);
      const sk = ops.loadSecretKey(this.keys.bfvSecretKey);
      return { ops, sk, decryptor: new he.seal.Decryptor(he.context, sk) };
    });
    return this.state;
  }

  async openJob(job: BankJob): Promise<void> {
    const kind = JOB_TYPES[job?.body?.type];
    if (!kind) fail('SH_ERR_PARAMS_MISMATCH', `custodian ${this.provider}: ${JSON.stringify(job?.body?.type)} is not a bank job request`);
    const bankKey = this.bankKey?.(job.signer);
    if (!bankKey) fail('SH_ERR_BAD_SIGNATURE', `custodian ${this.provider}: unknown bank ${JSON.stringify(job.signer)}`);
    requireSignature(job, bankKey, job.body.type, `custodian ${this.provider}: bank job`);
    if (job.body.bank !== job.signer) fail('SH_ERR_BAD_SIGNATURE', `custodian ${this.provider}: job names bank ${job.body.bank} but is signed by ${job.signer}`);
    const jobHash = sha256Hex(canonicalize(job));
    this.loadJobs();
    if (this.jobs.has(jobHash)) return;
    const requestedAt = Date.parse(job.body.requestedAt);
    if (!Number.isFinite(requestedAt) || Math.abs(Date.now() - requestedAt) > BANK_REQUEST_TTL_MS) {
      fail('SH_ERR_VERIFY_BUDGET', `custodian ${this.provider}: the bank request of job ${job.body.jobId} is not fresh (requestedAt ${JSON.stringify(job.body.requestedAt)})`);
    }
    const open = jobBudget(kind, job.body, this.provider);
    if (open.budget === 0) fail('SH_ERR_PARAMS_MISMATCH', `custodian ${this.provider}: job ${job.body.jobId} does not involve provider ${this.provider}`);
    this.jobs.set(jobHash, open);
    this.log({ at: new Date().toISOString(), opened: jobHash, jobId: open.jobId, kind, bank: job.signer, budget: open.budget, ...(open.iterations !== undefined ? { iterations: open.iterations, columns: open.columns, ownColumns: open.ownColumns } : {}) });
  }

  /**
   * A decryption or transfer must name an opened bank-signed job, use a label of that job's shape not answered before,
   * and stay within the job's budget. @throws SH_ERR_PARAMS_MISMATCH, SH_ERR_VERIFY_BUDGET
   */
  private admit(jobHash: string, jobId: string, label: string, mode: string): OpenJob {
    this.loadJobs();
    const job = this.jobs.get(jobHash);
    const refuse = (code: 'SH_ERR_PARAMS_MISMATCH' | 'SH_ERR_VERIFY_BUDGET', why: string): never => {
      this.log({ at: new Date().toISOString(), jobId, jobHash, label, mode, refused: code });
      return fail(code, `custodian ${this.provider}: ${why}`, { job: jobId });
    };
    if (!job || job.jobId !== jobId) return refuse('SH_ERR_PARAMS_MISMATCH', `request ${label} names no bank-signed job shown to this custodian`);
    if (typeof label !== 'string' || !label.startsWith(`${job.kind}/`)) return refuse('SH_ERR_PARAMS_MISMATCH', `label ${JSON.stringify(label)} is not a ${job.kind} label`);
    if (job.kind === 'train') {
      const it = /^train\/([^/]+)\/it\/(\d+)\/block\/\d+\/(D|X(\d+)D)$/.exec(label);
      const tr = /^train\/([^/]+)\/transfer\/([^/]+)\/(\d+)\/from\/\d+\/to\/\d+$/.exec(label);
      const ok = it ? it[1] === jobId && mode === 'sum' && Number(it[2]) < job.iterations! && (it[4] === undefined || Number(it[4]) < job.columns!)
        : tr ? tr[1] === jobId && mode === 'transfer' && tr[2] === this.provider && Number(tr[3]) < job.ownColumns! : false;
      if (!ok) return refuse('SH_ERR_PARAMS_MISMATCH', `label ${JSON.stringify(label)} is outside job ${jobId} (iterations, columns, mode)`);
    } else if ((job.kind === 'score' && mode !== 'seal') || (job.kind === 'verify' && mode !== 'sign')) {
      return refuse('SH_ERR_PARAMS_MISMATCH', `a ${job.kind} job does not use mode ${mode}`);
    }
    if (job.labels.has(label)) return refuse('SH_ERR_VERIFY_BUDGET', `label ${label} of job ${jobId} was already answered`);
    if (job.used >= job.budget) return refuse('SH_ERR_VERIFY_BUDGET', `job ${jobId} has used its ${job.budget} decryption(s)`);
    return job;
  }

  private spend(job: OpenJob, label: string): void {
    job.used++;
    job.labels.add(label);
  }

  /** Rebuild opened jobs and their answered labels from the custodian's own log (once per process). */
  private loadJobs(): void {
    if (this.jobsLoaded) return;
    this.jobsLoaded = true;
    if (!this.logFile || !existsSync(this.logFile)) return;
    const byId = new Map<string, OpenJob>();
    for (const line of readFileSync(this.logFile, 'utf8').split('\n')) {
      if (!line) continue;
      try {
        const e = JSON.parse(line) as Record<string, unknown>;
        if (typeof e.opened === 'string') {
          const j: OpenJob = { jobId: String(e.jobId), kind: e.kind as OpenJob['kind'], budget: Number(e.budget), used: 0, labels: new Set(),
            ...(e.iterations !== undefined ? { iterations: Number(e.iterations), columns: Number(e.columns), ownColumns: Number(e.ownColumns) } : {}) };
          this.jobs.set(e.opened, j);
          byId.set(j.jobId, j);
        } else if (typeof e.responseHash === 'string' && typeof e.label === 'string' && e.mode !== 'oprf') {
          const j = byId.get(String(e.jobId));
          if (j) this.spend(j, e.label);
        }
      } catch {
        // a torn last line after a crash: ignore it
      }
    }
  }

  async decrypt(request: Signed<DecryptRequest>, ciphertext: Uint8Array): Promise<Signed<DecryptResponse>> {
    // 1. Who is asking, and do we agree on what is computed — all before SEAL sees the ciphertext.
    requireSignature(request, this.enginePublicKey, 'safehouse.custodian.decrypt.v1', `custodian ${this.provider}`);
    const req = request.body;
    if (req.paramsId !== this.paramsId) fail('SH_ERR_PARAMS_MISMATCH', `custodian ${this.provider} uses ${this.paramsId}, request names ${req.paramsId}`);
    paramSet(req.paramsId);
    if (req.provider !== this.provider) fail('SH_ERR_PARAMS_MISMATCH', `request for ${req.provider} sent to custodian ${this.provider}`);
    if (!/^[0-9a-f]{64}$/.test(req.jobHash)) fail('SH_ERR_PARAMS_MISMATCH', `"jobHash" expected a SHA-256 hex digest`);
    const job = this.admit(req.jobHash, req.jobId, req.label, req.mode);
    if (ciphertext.length > this.params.maxCiphertextBytes) {
      fail('SH_ERR_CIPHERTEXT_SIZE', `"ciphertext" expected at most ${this.params.maxCiphertextBytes} bytes, got ${ciphertext.length}`, { bytes: ciphertext.length });
    }
    if (sha256Hex(ciphertext) !== req.ciphertext) fail('SH_ERR_CIPHERTEXT_INVALID', `"ciphertext" does not match the hash in the signed request (${req.label})`);
    if ((req.mode === 'seal' || req.mode === 'sign') && !req.recipient) fail('SH_ERR_INVALID_ARGUMENT', `"recipient" is required for mode ${req.mode}`);
    if (req.mode === 'sum' && !(Number.isInteger(req.groupSize) && req.groupSize! >= 1 && this.params.slots % req.groupSize! === 0)) {
      fail('SH_ERR_INVALID_ARGUMENT', `"groupSize" expected a divisor of ${this.params.slots}, got ${req.groupSize}`);
    }
    const requestHash = sha256Hex(canonicalize(request));

    // 2. Decrypt, refusing ciphertexts that skipped re-randomization/modulus switching or lack the noise margin.
    // Joint-training products (feature × residual) arrive unrelinearized (size 3) and are only summed, never returned.
    const values = await this.decryptChecked(ciphertext, req.label, req.mode === 'sum' ? 3 : 2);
    this.observe?.({ label: req.label, mode: req.mode, values: values.slice() });

    // 3. Answer in the requested mode; v itself never leaves.
    const t = this.params.t;
    const body: DecryptResponse = { type: 'safehouse.custodian.response.v1', provider: this.provider, jobId: req.jobId, label: req.label, requestHash, mode: req.mode };
    const boxContext = { jobId: req.jobId, jobHash: req.jobHash, provider: this.provider, label: req.label, mode: req.mode, recipient: req.recipient?.party ?? '' };
    if (req.mode === 'seal') {
      body.sealed = sealTo(hexToBytes(req.recipient!.x25519), new Uint8Array(values.buffer, values.byteOffset, values.byteLength), boxContext);
    } else if (req.mode === 'sign') {
      const bits = new Uint8Array(Math.ceil(values.length / 8));
      for (let i = 0; i < values.length; i++) if (centered(values[i]!, t) >= 0n) bits[i >> 3]! |= 1 << (i & 7);
      body.sealed = sealTo(hexToBytes(req.recipient!.x25519), bits, boxContext);
    } else {
      const g = req.groupSize!;
      const sums: string[] = [];
      for (let s = 0; s < values.length; s += g) {
        let acc = 0n;
        for (let i = s; i < s + g; i++) acc += values[i]!;
        sums.push((acc % t).toString());
      }
      body.sums = sums;
    }
    values.fill(0n);
    const response = signJson(body, this.provider, this.keys.ed25519SecretKey);
    this.spend(job, req.label);
    this.log({ at: new Date().toISOString(), jobId: req.jobId, jobHash: req.jobHash, label: req.label, mode: req.mode, requestHash, responseHash: sha256Hex(canonicalize(response)) });
    return response;
  }

  async transfer(request: Signed<TransferRequest>, ciphertext: Uint8Array, targetPublicKey: Uint8Array): Promise<{ response: Signed<TransferResponse>; ciphertext: Uint8Array }> {
    requireSignature(request, this.enginePublicKey, 'safehouse.custodian.transfer.v1', `custodian ${this.provider}`);
    const req = request.body;
    if (req.paramsId !== this.paramsId) fail('SH_ERR_PARAMS_MISMATCH', `custodian ${this.provider} uses ${this.paramsId}, request names ${req.paramsId}`);
    if (req.provider !== this.provider) fail('SH_ERR_PARAMS_MISMATCH', `transfer for ${req.provider} sent to custodian ${this.provider}`);
    const job = this.admit(req.jobHash, req.jobId, req.label, 'transfer');
    if (ciphertext.length > this.params.maxCiphertextBytes) fail('SH_ERR_CIPHERTEXT_SIZE', `"ciphertext" expected at most ${this.params.maxCiphertextBytes} bytes, got ${ciphertext.length}`);
    if (sha256Hex(ciphertext) !== req.ciphertext) fail('SH_ERR_CIPHERTEXT_INVALID', `"ciphertext" does not match the hash in the signed request (${req.label})`);
    if (sha256Hex(targetPublicKey) !== req.target.bfvPublicKey) fail('SH_ERR_PARAMS_MISMATCH', `target public key does not match the signed request (${req.label})`);
    const n = this.params.slots;
    const seen = new Set<number>();
    if (!Array.isArray(req.moves) || req.moves.length === 0) fail('SH_ERR_INVALID_ARGUMENT', '"moves" expected a non-empty list');
    for (const [from, to] of req.moves) {
      if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || from >= n || to < 0 || to >= n || seen.has(to)) fail('SH_ERR_INVALID_ARGUMENT', `"moves" has an invalid or repeated slot pair [${from}, ${to}]`);
      seen.add(to);
    }
    const values = await this.decryptChecked(ciphertext, req.label, 2);
    const { ops } = await this.init();
    this.observe?.({ label: req.label, mode: 'sum', values: values.slice() });
    const moved = new BigUint64Array(n);
    for (const [from, to] of req.moves) moved[to] = values[from]!;
    values.fill(0n);
    // Target keys are cached by hash: a training job transfers every column of a provider to the same key holder.
    let pk = this.targetKeys.get(req.target.bfvPublicKey);
    if (!pk) {
      pk = ops.loadPublicKey(targetPublicKey);
      this.targetKeys.set(req.target.bfvPublicKey, pk);
    }
    const encryptor = new ops.he.seal.Encryptor(ops.he.context, pk);
    const pt = ops.encode(moved);
    const out = new ops.he.seal.Ciphertext();
    let bytes: Uint8Array;
    try {
      encryptor.encrypt(pt, out);
      bytes = ops.save(out);
    } finally {
      moved.fill(0n);
      out.delete();
      pt.delete();
      encryptor.delete();
    }
    const requestHash = sha256Hex(canonicalize(request));
    const body: TransferResponse = { type: 'safehouse.custodian.transfer.response.v1', provider: this.provider, jobId: req.jobId, label: req.label, requestHash, ciphertext: sha256Hex(bytes) };
    const response = signJson(body, this.provider, this.keys.ed25519SecretKey);
    this.spend(job, req.label);
    this.log({ at: new Date().toISOString(), jobId: req.jobId, jobHash: req.jobHash, label: req.label, mode: 'transfer', target: req.target.provider, requestHash, responseHash: sha256Hex(canonicalize(response)) });
    return { response, ciphertext: bytes };
  }

  async evaluateTokens(request: Signed<TokenEvalRequest>, bankRequest: BankClaims): Promise<Signed<TokenEvalResponse>> {
    requireSignature(request, this.enginePublicKey, 'safehouse.custodian.oprf.v1', `custodian ${this.provider}`);
    const req = request.body;
    if (req.provider !== this.provider) fail('SH_ERR_PARAMS_MISMATCH', `token request for ${req.provider} sent to custodian ${this.provider}`);
    if (req.suite !== TOKEN_SUITE || req.mode !== TOKEN_MODE) fail('SH_ERR_PARAMS_MISMATCH', `custodian ${this.provider} evaluates ${TOKEN_SUITE} ${TOKEN_MODE}, request names ${req.suite} ${req.mode}`);
    if (!this.keys.oprfSecretKey) fail('SH_ERR_INVALID_ARGUMENT', `custodian ${this.provider} has no OPRF key`);
    // The bank's own signature over its claims, and the engine's request bound to exactly that document.
    // A job's batches all carry the same bank request: in process it is the same object, checked (signature, hash) once.
    let bankHash = this.checkedBankRequests.get(bankRequest);
    if (bankHash === undefined) {
      const bankKey = this.bankKey?.(bankRequest?.signer);
      if (!bankKey) fail('SH_ERR_BAD_SIGNATURE', `custodian ${this.provider}: unknown bank ${JSON.stringify(bankRequest?.signer)}`);
      requireSignature(bankRequest, bankKey, 'safehouse.verify.request.v1', `custodian ${this.provider}: bank request`);
      bankHash = sha256Hex(canonicalize(bankRequest));
      this.checkedBankRequests.set(bankRequest, bankHash);
    }
    if (bankHash !== req.jobHash || bankRequest.body.jobId !== req.jobId) fail('SH_ERR_PARAMS_MISMATCH', `token request ${req.label} is not bound to the bank-signed request`);
    if (!Array.isArray(req.elements) || req.elements.length === 0 || req.elements.length > 4096) fail('SH_ERR_INVALID_ARGUMENT', `"elements" expected 1..4096 blinded points, got ${req.elements?.length}`);
    const allowed = new Map(bankRequest.body.claims.filter((c) => c.provider === this.provider && c.field === req.field && (c.op === 'eq' || c.op === 'in')).map((c) => [c.claimId, c.count]));
    // A signed request is honoured only while fresh, and the counts survive restarts (rebuilt from the custodian's own
    // log), so one bank-signed request can never buy more evaluations than it names.
    const requestedAt = Date.parse((bankRequest.body as { requestedAt?: string }).requestedAt ?? '');
    if (!Number.isFinite(requestedAt) || Math.abs(Date.now() - requestedAt) > BANK_REQUEST_TTL_MS) {
      fail('SH_ERR_VERIFY_BUDGET', `custodian ${this.provider}: the bank request of job ${req.jobId} is not fresh (requestedAt ${JSON.stringify((bankRequest.body as { requestedAt?: string }).requestedAt)})`);
    }
    this.loadEvaluations();
    const used = this.evaluations.get(req.jobId) ?? new Map<string, number>();
    const next = new Map(used);
    for (const el of req.elements) {
      const n = (next.get(el.claimId) ?? 0) + 1;
      const limit = allowed.get(el.claimId);
      if (limit === undefined || n > limit) {
        this.log({ at: new Date().toISOString(), jobId: req.jobId, label: req.label, refused: 'SH_ERR_VERIFY_BUDGET', claim: el.claimId });
        fail('SH_ERR_VERIFY_BUDGET', `custodian ${this.provider}: claim ${el.claimId} asks for evaluation ${n}, the bank signed for ${limit ?? 0} on ${req.field}`, { claim: el.claimId });
      }
      next.set(el.claimId, n);
    }
    const blinded = req.elements.map((el) => {
      if (typeof el.blinded !== 'string' || !/^[0-9a-f]+$/.test(el.blinded) || el.blinded.length % 2) fail('SH_ERR_TOKEN_INVALID', `blinded element for ${el.claimId} is not hex`);
      return hexToBytes(el.blinded);
    });
    const info = tokenInfo(this.provider, req.field, req.epoch);
    const out = this.pool
      ? await this.pool.run<{ evaluated: Uint8Array[]; proof: Uint8Array }>({ op: 'oprf', fn: 'evaluateBlinded', secretKey: this.keys.oprfSecretKey, info, blinded })
      : evaluateBlinded(this.keys.oprfSecretKey, info, blinded);
    this.evaluations.set(req.jobId, next);
    const requestHash = sha256Hex(canonicalize(request));
    const body: TokenEvalResponse = { type: 'safehouse.custodian.oprf.response.v1', provider: this.provider, jobId: req.jobId, label: req.label, requestHash, evaluated: out.evaluated.map((e) => bytesToHex(e)), proof: bytesToHex(out.proof) };
    const response = signJson(body, this.provider, this.keys.ed25519SecretKey);
    const perClaim: Record<string, number> = {};
    for (const el of req.elements) perClaim[el.claimId] = (perClaim[el.claimId] ?? 0) + 1;
    this.log({ at: new Date().toISOString(), jobId: req.jobId, label: req.label, mode: 'oprf', elements: blinded.length, evaluations: perClaim, requestHash, responseHash: sha256Hex(canonicalize(response)) });
    return response;
  }

  /**
   * Load (size-capped, after the caller checked hash and signature), refuse anything not at the transfer level or below
   * the noise margin, decrypt and decode.
   */
  private async decryptChecked(ciphertext: Uint8Array, label: string, maxSize: number): Promise<BigUint64Array> {
    // With a pool (the provider's own worker threads), decryption runs there, off the custodian's request thread.
    if (this.pool) {
      this.poolKey ??= sharedKey(this.keys.bfvSecretKey);
      return this.pool.run<BigUint64Array>({ op: 'decrypt', paramsId: this.paramsId, secretKey: this.poolKey.bytes, keyHash: this.poolKey.hash, ciphertext, label, maxSize });
    }
    const { ops, decryptor } = await this.init();
    return checkedDecrypt(ops, decryptor, this.params, ciphertext, label, maxSize);
  }

  private evaluationsLoaded = false;

  /** Rebuild per-claim evaluation counts from the custodian's own log (once per process). */
  private loadEvaluations(): void {
    if (this.evaluationsLoaded) return;
    this.evaluationsLoaded = true;
    if (!this.logFile || !existsSync(this.logFile)) return;
    const cutoff = Date.now() - 2 * BANK_REQUEST_TTL_MS;
    for (const line of readFileSync(this.logFile, 'utf8').split('\n')) {
      if (!line.includes('"evaluations"')) continue;
      try {
        const e = JSON.parse(line) as { at: string; jobId: string; evaluations: Record<string, number> };
        if (Date.parse(e.at) < cutoff) continue;
        const m = this.evaluations.get(e.jobId) ?? new Map<string, number>();
        for (const [claim, n] of Object.entries(e.evaluations)) m.set(claim, (m.get(claim) ?? 0) + n);
        this.evaluations.set(e.jobId, m);
      } catch {
        // a torn last line after a crash: ignore it
      }
    }
  }

  private log(entry: Record<string, unknown>): void {
    if (!this.logFile) return;
    mkdirSync(dirname(this.logFile), { recursive: true });
    appendFileSync(this.logFile, canonicalize(entry) + '\n');
  }

  /** Free the WASM objects holding the secret key. JS cannot wipe copies the GC may have made of the key bytes. */
  async dispose(): Promise<void> {
    if (!this.state) return;
    const { ops, sk, decryptor } = await this.state;
    for (const pk of this.targetKeys.values()) pk.delete();
    this.targetKeys.clear();
    decryptor.delete();
    sk.delete();
    ops.dispose();
    this.state = undefined;
  }
}

/**
 * Load (size-capped, after the caller checked hash and signature), refuse anything not at the transfer level or below
 * the noise margin, decrypt and decode. Shared by the custodian's thread and its pool's workers (engine/pool/worker.ts).
 * @throws SH_ERR_CIPHERTEXT_SIZE, SH_ERR_CIPHERTEXT_INVALID, SH_ERR_NOISE_BUDGET
 */
export function checkedDecrypt(ops: BlockOps, decryptor: Decryptor, params: ParamSet, ciphertext: Uint8Array, label: string, maxSize: number): BigUint64Array {
  const ct: Ciphertext = ops.load(ciphertext, `ciphertext for ${label}`, maxSize);
  try {
    const level = ops.chainIndex(ct);
    if (level !== params.transferChainIndex) {
      fail('SH_ERR_CIPHERTEXT_INVALID', `ciphertext for ${label} is at level ${level}, expected the transfer level ${params.transferChainIndex} (re-randomize and switch down first)`);
    }
    const budget = sealCall('SH_ERR_CIPHERTEXT_INVALID', 'noise budget', () => decryptor.invariantNoiseBudget(ct));
    if (budget < params.minNoiseBudget) {
      fail('SH_ERR_NOISE_BUDGET', `ciphertext for ${label} has ${budget} bits of noise budget, the minimum is ${params.minNoiseBudget}`, { budget });
    }
    const pt = new ops.he.seal.Plaintext();
    try {
      sealCall('SH_ERR_CIPHERTEXT_INVALID', 'decrypt', () => decryptor.decrypt(ct, pt));
      return ops.decode(pt);
    } finally {
      pt.delete();
    }
  } finally {
    ct.delete();
  }
}

/** A copy of `key` in a SharedArrayBuffer (passed to worker tasks without copying) and its SHA-256 (the workers' cache key). */
function sharedKey(key: Uint8Array): { bytes: Uint8Array; hash: string } {
  const bytes = new Uint8Array(new SharedArrayBuffer(key.length));
  bytes.set(key);
  return { bytes, hash: sha256Hex(key) };
}
