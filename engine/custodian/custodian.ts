/**
 * The custodian: a provider's key-holding service (docs/design.md §1, §4). It holds the provider's BFV secret key and
 * RFC 9497 POPRF key and answers only **masked** requests, only for bank-signed jobs, within what each job allows:
 *  - `openJob`: the engine shows the bank-signed request; the custodian checks the bank's signature with the key from
 *    the public registry, that the bank named is the signer, that the request is fresh, and asks the protocol's rules
 *    (engine/protocols/<p>/custodian.ts) what the job allows it to answer;
 *  - `decrypt` (modes `seal` | `sum` | `sign`), `transfer`: engine-signed, naming an opened job; parameter set, job,
 *    label (the rules' shape, answered once) and budget are checked and the ciphertext's hash compared with the signed
 *    request **before** SEAL deserializes a byte; the level and noise margin before decrypting;
 *  - `evaluateTokens`: blinded points, at most the evaluations per claim the bank signed for (the rules count them).
 * v itself never leaves: `seal` seals v + m to the named recipient, `sum` returns group sums of v + m, `sign` seals one
 * sign bit per slot. Every answer is signed with the provider's key and logged with every refusal in the custodian's
 * own journal, from which it rebuilds its state after a restart.
 *
 * `observe` (tests) receives the residues exactly as the custodian sees them: uniform for `seal`/`sum` because the
 * engine adds a fresh uniform mask, r·(x−c)+r' for `sign`.
 * Longer than 400 lines: the custodian is the provider's security boundary; its entry points share one admission state
 * (opened jobs, answered labels, budgets), and every check the key holder makes should be readable in one file.
 */
import type { Decryptor, PublicKey, SecretKey } from 'node-seal';
import { randomFillSync } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fail } from '../../core/errors.ts';
import { canonicalize } from '../../core/jcs.ts';
import { sha256Hex } from '../../core/hash.ts';
import { centered } from '../../core/fixed.ts';
import { sealTo } from '../../core/sealbox.ts';
import { requireSignature, signJson, hexToBytes, bytesToHex, type Signed } from '../../core/sign.ts';
import { BlockOps } from '../he/block.ts';
import { heContext, paramSet, type ParamSet } from '../he/params.ts';
import { TOKEN_SUITE, TOKEN_MODE, tokenInfo, evaluateBlinded } from '../tokens/oprf.ts';
import { kernelRef } from '../pool/kernel.ts';
import type { WorkerPool } from '../pool/pool.ts';
import type * as Kernels from './kernels.ts';
import { checkedDecrypt } from './decrypt.ts';
import { CustodianJournal } from './journal.ts';
import { AnswerStore, type StoredAnswer } from './answers.ts';
import type { CustodianRules, OpenJob, ProviderData } from './rules.ts';
import { CustodianBudget } from './budget.ts';
import { LedgerMonitor, type LedgerTrust, type LedgerUpdate } from './monitor.ts';
import { providerPolicy, type ProviderPolicy } from '../../sandbox/policy.ts';
import {
  BANK_REQUEST_TTL_MS,
  type BankClaims,
  type BankJob,
  type Custodian,
  type CustodianKeys,
  type CustodianView,
  type DecryptMode,
  type DecryptRequest,
  type DecryptResponse,
  type OpenedJob,
  type OpenOptions,
  type TokenEvalRequest,
  type TokenEvalResponse,
  type TransferRequest,
  type TransferResponse,
} from './messages.ts';

const KERNELS = new URL('./kernels.ts', import.meta.url);
const decryptKernel = kernelRef<typeof Kernels.decrypt>(KERNELS, 'decrypt');
const evaluateKernel = kernelRef<typeof Kernels.evaluateBlinded>(KERNELS, 'evaluateBlinded');

export interface LocalCustodianOptions {
  provider: string;
  params: ParamSet;
  keys: CustodianKeys;
  /** The protocols this custodian serves (engine/protocols/index.ts `CUSTODIAN_RULES`). */
  rules: readonly CustodianRules[];
  /** Engine Ed25519 public key: only requests it signed are answered. */
  enginePublicKey: Uint8Array;
  /** JSONL file for the custodian's own request log. */
  logFile?: string;
  /** Test hook: receives the custodian's view of every decryption. */
  observe?: (view: CustodianView) => void;
  /**
   * What the custodian pins (docs/trust.md): the ledger's checkpoint key and the registrar's key. It follows the
   * ledger itself and takes banks, enterprises, consents and ledgered jobs only from it; without a pin it answers
   * no job.
   */
  trust?: LedgerTrust;
  /** The provider's own pool for decryptions and OPRF evaluations; in-process when absent. */
  pool?: WorkerPool;
  /** The provider's own limits (defaults: sandbox/policy.ts DEFAULT_PROVIDER_POLICY). */
  policy?: Partial<ProviderPolicy>;
  /**
   * The provider's own data as the custodian reads it (field types, each dataset's subject layout) — from the
   * provider's tables (engine/provider/tables.ts). Without it the custodian cannot tell whose slot is whose and refuses
   * every answer that needs to (scoring).
   */
  data?: ProviderData;
  /** Clock (tests); default the system clock. */
  now?: () => Date;
}

export class LocalCustodian implements Custodian {
  readonly provider: string;
  readonly paramsId: string;
  readonly bfvPublicKey: Uint8Array;
  readonly signingPublicKey: Uint8Array;
  private readonly params: ParamSet;
  private readonly keys: CustodianKeys;
  private readonly rules: ReadonlyMap<string, CustodianRules>;
  private readonly enginePublicKey: Uint8Array;
  private readonly journal: CustodianJournal;
  private readonly observe: ((view: CustodianView) => void) | undefined;
  private monitor: LedgerMonitor | undefined;
  private readonly trust: LedgerTrust | undefined;
  private readonly pool: WorkerPool | undefined;
  readonly policy: ProviderPolicy;
  private readonly data: ProviderData;
  private readonly now: () => Date;
  private readonly budgets: CustodianBudget;
  /** Answers of running jobs, given again (not recomputed) to an engine resuming a job after a crash. */
  private readonly answers: AnswerStore;
  /** Evaluations already answered per job and claim: the bank-signed count bounds their sum (rebuilt from the journal). */
  private evaluations: Map<string, Map<string, number>> | undefined;
  private readonly targetKeys = new Map<string, PublicKey>();
  /** Bank requests already verified, by object identity → canonical hash. Only in-process callers pass the same object twice (HTTP gives a new one per call), and they share the process anyway. */
  private readonly checkedBankRequests = new WeakMap<object, string>();
  /** The BFV secret key for this custodian's own pool: in shared memory (tasks share it, not copy 270 KB each), hashed once. */
  private poolKey: { bytes: Uint8Array; hash: string } | undefined;
  /** (job hash, label) of decryptions and transfers admitted and still being answered. */
  private readonly inflight = new Set<string>();
  /** Bank-signed jobs shown by the engine, by job hash (rebuilt from the journal after a restart, on first use). */
  private readonly jobs = new Map<string, OpenJob>();
  private jobsLoaded = false;
  private state: Promise<{ ops: BlockOps; sk: SecretKey; decryptor: Decryptor }> | undefined;

  constructor(opts: LocalCustodianOptions) {
    this.provider = opts.provider;
    this.params = opts.params;
    this.paramsId = opts.params.id;
    this.keys = opts.keys;
    this.rules = new Map(opts.rules.map((r) => [r.requestType, r]));
    this.bfvPublicKey = opts.keys.bfvPublicKey;
    this.signingPublicKey = opts.keys.ed25519PublicKey;
    this.enginePublicKey = opts.enginePublicKey;
    this.journal = new CustodianJournal(opts.logFile);
    this.observe = opts.observe;
    this.trust = opts.trust;
    this.pool = opts.pool;
    this.policy = providerPolicy(opts.policy);
    this.data = opts.data ?? {
      fieldType: () => undefined,
      layout: () => undefined,
      approvedModel: () => false,
      datasetWith: () => undefined,
      categoryOf: () => undefined,
      modelFields: () => [],
      partialScore: () => undefined,
    };
    this.now = opts.now ?? (() => new Date());
    this.budgets = new CustodianBudget(this.journal);
    this.answers = new AnswerStore(opts.logFile ? join(dirname(opts.logFile), 'answers') : undefined);
  }

  private init() {
    this.state ??= heContext(this.params).then((he) => {
      const ops = new BlockOps(he);
      const sk = ops.loadSecretKey(this.keys.bfvSecretKey);
      return { ops, sk, decryptor: new he.seal.Decryptor(he.context, sk) };
    });
    return this.state;
  }

  private openJobs(): Map<string, OpenJob> {
    if (!this.jobsLoaded) {
      this.jobsLoaded = true;
      for (const [hash, job] of this.journal.openedJobs()) this.jobs.set(hash, job);
    }
    return this.jobs;
  }

  /** The custodian's copy of the ledger (rebuilt from leaf 0 after a restart, through the last root it accepted). */
  private ledger(): LedgerMonitor {
    if (!this.trust)
      fail(
        'SH_ERR_JOB_NOT_LEDGERED',
        `custodian ${this.provider} pins no ledger key and registrar: it follows no ledger`,
      );
    if (this.monitor) return this.monitor;
    const expected = this.journal.lastLedger();
    this.monitor = new LedgerMonitor(this.trust, {
      ...(expected ? { expected } : {}),
      onAccept: (size, root) => this.journal.append({ at: new Date().toISOString(), ledger: { size, root } }),
    });
    return this.monitor;
  }

  /** How many ledger leaves this custodian has accepted (the engine sends the rest). */
  async ledgerState(): Promise<{ size: number }> {
    return this.ledger().state();
  }

  /**
   * Follow the ledger: the next leaves and, on the last batch, a signed checkpoint they must hash to.
   * @throws SH_ERR_LEDGER_INCONSISTENT, SH_ERR_BAD_SIGNATURE, SH_ERR_INVALID_ARGUMENT
   */
  async follow(update: LedgerUpdate): Promise<{ size: number }> {
    try {
      const out = this.ledger().follow(update);
      // The ledger announces uploads and approvals: the provider's tables are re-read here if they changed, not in a
      // job; after a restart the journal's opened jobs and budgets are rebuilt here too.
      this.data.warm?.();
      this.openJobs();
      this.settle();
      this.budgets.warm();
      return out;
    } catch (err) {
      if ((err as { code?: string }).code === 'SH_ERR_LEDGER_INCONSISTENT')
        this.journal.append({
          at: new Date().toISOString(),
          refused: 'SH_ERR_LEDGER_INCONSISTENT',
          from: update?.from,
        });
      throw err;
    }
  }

  async openJob(job: BankJob, opts: OpenOptions = {}): Promise<OpenedJob> {
    const rules = this.rules.get(job?.body?.type);
    if (!rules)
      fail(
        'SH_ERR_PARAMS_MISMATCH',
        `custodian ${this.provider}: ${JSON.stringify(job?.body?.type)} is not a bank job request`,
      );
    const ledger = this.ledger();
    // The bank as the registrar certified it (key, sealing key, group), from the custodian's own copy of the ledger.
    const bank = ledger.bank(job.signer);
    if (!bank)
      fail(
        'SH_ERR_CERT_INVALID',
        `custodian ${this.provider}: ${JSON.stringify(job.signer)} is no bank the registrar certified (in the ledger it follows)`,
      );
    requireSignature(job, bank.ed25519, job.body.type, `custodian ${this.provider}: bank job`);
    if (job.body.bank !== job.signer)
      fail(
        'SH_ERR_BAD_SIGNATURE',
        `custodian ${this.provider}: job names bank ${job.body.bank} but is signed by ${job.signer}`,
      );
    const jobHash = sha256Hex(canonicalize(job));
    const jobs = this.openJobs();
    const known = jobs.get(jobHash);
    if (known) return opened(known);
    this.requireFresh(job.body, job.body.jobId);
    if (!ledger.caughtUp() || !ledger.ledgered(jobHash))
      fail(
        'SH_ERR_JOB_NOT_LEDGERED',
        `custodian ${this.provider}: the bank request of job ${job.body.jobId} is not in the ledger it follows (${ledger.state().size} leaves)`,
        { job: job.body.jobId },
      );
    const now = this.now();
    const group = bank.group;
    const at = new Date(job.body.requestedAt);
    const purpose = String((job.body as { purpose?: unknown }).purpose ?? '');
    // One judge per (operation, categories) asked: the request's terms are checked once, not per subject.
    const judges = new Map<string, (subject: string) => string>();
    const allowance = rules.allowance(job.body as BankJob['body'] & Record<string, unknown>, {
      provider: this.provider,
      group,
      consent: (subject, operation, categories) => {
        if (categories.length === 0) return 'OUT_OF_SCOPE';
        const key = `${operation}\u0000${categories.join('\u0000')}`;
        let judge = judges.get(key);
        if (!judge) {
          judge = ledger.consentJudge({ bank: job.signer, purpose, operation, categories, at });
          judges.set(key, judge);
        }
        return judge(subject);
      },
      policy: this.policy,
      budget: this.budgets,
      now,
      data: this.data,
      skip: new Set(Array.isArray(opts.skip) ? opts.skip.filter((x) => typeof x === 'string') : []),
    });
    if (allowance.budget === 0)
      fail(
        'SH_ERR_PARAMS_MISMATCH',
        `custodian ${this.provider}: job ${job.body.jobId} does not involve provider ${this.provider}`,
      );
    const open: OpenJob = {
      jobId: job.body.jobId,
      kind: rules.kind,
      budget: allowance.budget,
      state: allowance.state ?? {},
      refused: allowance.refused ?? [],
      used: 0,
      labels: new Set(),
      zeros: new Set(),
      recipient: { party: job.signer, x25519: bank.x25519 },
      ...(allowance.reasons && Object.keys(allowance.reasons).length ? { reasons: allowance.reasons } : {}),
    };
    if (allowance.privacy) open.state.privacy = allowance.privacy;
    jobs.set(jobHash, open);
    const spent = allowance.spend ?? [];
    this.budgets.add(spent, now.getTime());
    this.journal.append({
      at: now.toISOString(),
      opened: jobHash,
      jobId: open.jobId,
      kind: open.kind,
      bank: job.signer,
      group,
      budget: open.budget,
      state: open.state,
      recipient: open.recipient,
      ...(open.refused.length ? { refused: open.refused } : {}),
      ...(open.reasons ? { reasons: open.reasons } : {}),
      ...(spent.length ? { spent } : {}),
    });
    return opened(open);
  }

  /**
   * Log a request the job's rules refuse (the provider's own record) and refuse it.
   * @throws SH_ERR_PARAMS_MISMATCH, or the code given
   */
  private refuseRequest(
    req: { jobId: string; jobHash: string; label: string },
    mode: DecryptMode | 'transfer',
    why: string,
    code: 'SH_ERR_PARAMS_MISMATCH' | 'SH_ERR_RECIPIENT' = 'SH_ERR_PARAMS_MISMATCH',
  ): never {
    this.journal.append({
      at: new Date().toISOString(),
      jobId: req.jobId,
      jobHash: req.jobHash,
      label: req.label,
      mode,
      refused: code,
    });
    fail(code, `custodian ${this.provider}: ${why}`, { job: req.jobId });
  }

  /** A bank-signed request is honoured only within BANK_REQUEST_TTL_MS of its signing. @throws SH_ERR_REQUEST_STALE */
  private requireFresh(body: { requestedAt?: unknown }, jobId: string): void {
    const requestedAt = Date.parse(String(body.requestedAt ?? ''));
    if (!Number.isFinite(requestedAt) || Math.abs(this.now().getTime() - requestedAt) > BANK_REQUEST_TTL_MS) {
      fail(
        'SH_ERR_REQUEST_STALE',
        `custodian ${this.provider}: the bank request of job ${jobId} is not fresh (requestedAt ${JSON.stringify(body.requestedAt)})`,
        { job: jobId },
      );
    }
  }

  /**
   * A decryption or transfer must name an opened bank-signed job, have a label its protocol's rules admit, not
   * answered before, and stay within the job's budget. @throws SH_ERR_PARAMS_MISMATCH, SH_ERR_CUSTODIAN_BUDGET
   */
  private admit(
    jobHash: string,
    jobId: string,
    label: string,
    mode: DecryptMode | 'transfer',
    held: { key?: string },
  ): OpenJob {
    const job = this.openJobs().get(jobHash);
    const refuse = (code: 'SH_ERR_PARAMS_MISMATCH' | 'SH_ERR_CUSTODIAN_BUDGET', why: string): never => {
      this.journal.append({ at: new Date().toISOString(), jobId, jobHash, label, mode, refused: code });
      return fail(code, `custodian ${this.provider}: ${why}`, { job: jobId });
    };
    if (!job || job.jobId !== jobId)
      return refuse('SH_ERR_PARAMS_MISMATCH', `request ${label} names no bank-signed job shown to this custodian`);
    const outside =
      typeof label === 'string'
        ? this.rulesOf(job).refuse(job, label, mode, this.provider)
        : `label ${JSON.stringify(label)} is not a string`;
    if (outside) return refuse('SH_ERR_PARAMS_MISMATCH', outside);
    if (job.labels.has(label) || this.answers.has(jobHash, label))
      return refuse('SH_ERR_CUSTODIAN_BUDGET', `label ${label} of job ${jobId} was already answered`);
    // Two requests for one label at once would both pass the check above before either is answered.
    if (this.inflight.has(`${jobHash}\u0000${label}`))
      return refuse('SH_ERR_CUSTODIAN_BUDGET', `label ${label} of job ${jobId} is being answered`);
    if (job.used + this.inflightOf(jobHash) >= job.budget)
      return refuse('SH_ERR_CUSTODIAN_BUDGET', `job ${jobId} has used its ${job.budget} decryption(s)`);
    held.key = `${jobHash}\u0000${label}`;
    this.inflight.add(held.key);
    return job;
  }

  /** Labels of a job admitted and not yet answered or refused. */
  private inflightOf(jobHash: string): number {
    let n = 0;
    for (const k of this.inflight) if (k.startsWith(`${jobHash}\u0000`)) n++;
    return n;
  }

  private rulesOf(job: OpenJob): CustodianRules {
    for (const r of this.rules.values()) if (r.kind === job.kind) return r;
    return fail('SH_ERR_PARAMS_MISMATCH', `custodian ${this.provider} has no rules for ${job.kind} jobs`);
  }

  private spend(job: OpenJob, label: string): void {
    job.used++;
    job.labels.add(label);
  }

  async decrypt(request: Signed<DecryptRequest>, ciphertext: Uint8Array): Promise<Signed<DecryptResponse>> {
    const held: { key?: string } = {};
    try {
      return await this.decryptHeld(request, ciphertext, held);
    } finally {
      if (held.key) this.inflight.delete(held.key);
    }
  }

  private async decryptHeld(
    request: Signed<DecryptRequest>,
    ciphertext: Uint8Array,
    held: { key?: string },
  ): Promise<Signed<DecryptResponse>> {
    // 1. Who is asking, and do we agree on what is computed — all before SEAL sees the ciphertext.
    requireSignature(request, this.enginePublicKey, 'safehouse.custodian.decrypt.v1', `custodian ${this.provider}`);
    const req = request.body;
    if (req.paramsId !== this.paramsId)
      fail('SH_ERR_PARAMS_MISMATCH', `custodian ${this.provider} uses ${this.paramsId}, request names ${req.paramsId}`);
    paramSet(req.paramsId);
    if (req.provider !== this.provider)
      fail('SH_ERR_PARAMS_MISMATCH', `request for ${req.provider} sent to custodian ${this.provider}`);
    if (!/^[0-9a-f]{64}$/.test(req.jobHash)) fail('SH_ERR_PARAMS_MISMATCH', `"jobHash" expected a SHA-256 hex digest`);
    const job = this.admit(req.jobHash, req.jobId, req.label, req.mode, held);
    if (ciphertext.length > this.params.maxCiphertextBytes) {
      fail(
        'SH_ERR_CIPHERTEXT_SIZE',
        `"ciphertext" expected at most ${this.params.maxCiphertextBytes} bytes, got ${ciphertext.length}`,
        { bytes: ciphertext.length },
      );
    }
    if (sha256Hex(ciphertext) !== req.ciphertext)
      fail('SH_ERR_CIPHERTEXT_INVALID', `"ciphertext" does not match the hash in the signed request (${req.label})`);
    if ((req.mode === 'seal' || req.mode === 'sign') && !req.recipient)
      fail('SH_ERR_INVALID_ARGUMENT', `"recipient" is required for mode ${req.mode}`);
    // Only the bank that signed the job, at the sealing key the registrar certified for it.
    if (
      (req.mode === 'seal' || req.mode === 'sign') &&
      (!job.recipient || req.recipient!.party !== job.recipient.party || req.recipient!.x25519 !== job.recipient.x25519)
    )
      this.refuseRequest(
        req,
        req.mode,
        `${req.label} names recipient ${JSON.stringify(req.recipient!.party)}; it seals only to the certified key of bank ${job.recipient?.party}`,
        'SH_ERR_RECIPIENT',
      );
    if (
      req.mode === 'sum' &&
      !(Number.isInteger(req.groupSize) && req.groupSize! >= 1 && this.params.slots % req.groupSize! === 0)
    ) {
      fail('SH_ERR_INVALID_ARGUMENT', `"groupSize" expected a divisor of ${this.params.slots}, got ${req.groupSize}`);
    }
    const requestHash = sha256Hex(canonicalize(request));
    let noise: bigint[] | undefined;

    // 2. Decrypt, refusing ciphertexts that skipped re-randomization/modulus switching or lack the noise margin.
    // Joint-training products (feature × residual) arrive unrelinearized (size 3) and are only summed, never returned.
    // The noise of a training sum is fixed before anything is decrypted (a refusal decrypts nothing).
    const sigma =
      req.mode === 'sum' ? (this.rulesOf(job).noise?.(job, req.label, req, this.policy, this.params) ?? 0) : 0;
    if (typeof sigma === 'string') {
      this.refuseRequest(req, req.mode, sigma);
    }
    // Slots of subjects outside the job's allowance are overwritten before anything is answered; a label whose block
    // holds none of them is refused before anything is decrypted.
    const blind = this.rulesOf(job).blind?.(job, req.label, this.data, this.params.slots);
    if (typeof blind === 'string') this.refuseRequest(req, req.mode, blind);
    const values = await this.decryptChecked(ciphertext, req.label, req.mode === 'sum' || req.mode === 'zero' ? 3 : 2);
    this.observe?.({ label: req.label, mode: req.mode, values: values.slice() });
    // What was decrypted must be what the job computes on the slots answered (scoring: the approved model's partial).
    const hidden = blind?.length ? new Set(blind) : undefined;
    const wrong = this.rulesOf(job).verify?.(
      job,
      req.label,
      values,
      (i) => !hidden?.has(i),
      req,
      this.data,
      this.params,
    );
    if (wrong) {
      values.fill(0n);
      this.refuseRequest(req, req.mode, wrong);
    }
    // Sums and the label check are over the job's subjects only (the engine masks only those slots): every other slot
    // is dropped (0); a sealed or signed answer gets uniform values there instead.
    if (blind?.length) {
      if (req.mode === 'sum' || req.mode === 'zero') for (const i of blind) values[i] = 0n;
      else uniformSlots(values, blind, this.params.t);
    }

    // 3. Answer in the requested mode; v itself never leaves.
    const t = this.params.t;
    const body: DecryptResponse = {
      type: 'safehouse.custodian.response.v1',
      provider: this.provider,
      jobId: req.jobId,
      label: req.label,
      requestHash,
      mode: req.mode,
    };
    const boxContext = {
      jobId: req.jobId,
      jobHash: req.jobHash,
      provider: this.provider,
      label: req.label,
      mode: req.mode,
      recipient: req.recipient?.party ?? '',
    };
    if (req.mode === 'seal') {
      body.sealed = sealTo(
        hexToBytes(req.recipient!.x25519),
        new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
        boxContext,
      );
    } else if (req.mode === 'sign') {
      const bits = new Uint8Array(Math.ceil(values.length / 8));
      for (let i = 0; i < values.length; i++) if (centered(values[i]!, t) >= 0n) bits[i >> 3]! |= 1 << (i & 7);
      body.sealed = sealTo(hexToBytes(req.recipient!.x25519), bits, boxContext);
    } else if (req.mode === 'zero') {
      body.zero = values.every((v) => v === 0n);
    } else {
      const g = req.groupSize!;
      const sums: string[] = [];
      for (let s = 0; s < values.length; s += g) {
        let acc = 0n;
        for (let i = s; i < s + g; i++) acc += values[i]!;
        sums.push((acc % t).toString());
      }
      if (sigma > 0) {
        noise = gaussianNoise(sums.length, sigma);
        sums.forEach((v, j) => (sums[j] = ((((BigInt(v) + noise![j]!) % t) + t) % t).toString()));
        body.sigma = sigma;
      }
      body.sums = sums;
    }
    values.fill(0n);
    const response = signJson(body, this.provider, this.keys.ed25519SecretKey);
    this.answers.put(req.jobHash, req.label, { request, response });
    this.spend(job, req.label);
    if (body.zero === true) job.zeros.add(req.label);
    // The noise drawn is the provider's own record (with the engine's noisy sums it would give the exact ones).
    this.journal.append({
      at: new Date().toISOString(),
      jobId: req.jobId,
      jobHash: req.jobHash,
      label: req.label,
      mode: req.mode,
      requestHash,
      responseHash: sha256Hex(canonicalize(response)),
      ...(body.zero !== undefined ? { zero: body.zero } : {}),
      ...(noise ? { sigma, noise: noise.map(String) } : {}),
    });
    return response;
  }

  async transfer(
    request: Signed<TransferRequest>,
    ciphertext: Uint8Array,
    targetPublicKey: Uint8Array,
  ): Promise<{ response: Signed<TransferResponse>; ciphertext: Uint8Array }> {
    const held: { key?: string } = {};
    try {
      return await this.transferHeld(request, ciphertext, targetPublicKey, held);
    } finally {
      if (held.key) this.inflight.delete(held.key);
    }
  }

  private async transferHeld(
    request: Signed<TransferRequest>,
    ciphertext: Uint8Array,
    targetPublicKey: Uint8Array,
    held: { key?: string },
  ): Promise<{ response: Signed<TransferResponse>; ciphertext: Uint8Array }> {
    requireSignature(request, this.enginePublicKey, 'safehouse.custodian.transfer.v1', `custodian ${this.provider}`);
    const req = request.body;
    if (req.paramsId !== this.paramsId)
      fail('SH_ERR_PARAMS_MISMATCH', `custodian ${this.provider} uses ${this.paramsId}, request names ${req.paramsId}`);
    if (req.provider !== this.provider)
      fail('SH_ERR_PARAMS_MISMATCH', `transfer for ${req.provider} sent to custodian ${this.provider}`);
    const job = this.admit(req.jobHash, req.jobId, req.label, 'transfer', held);
    if (ciphertext.length > this.params.maxCiphertextBytes)
      fail(
        'SH_ERR_CIPHERTEXT_SIZE',
        `"ciphertext" expected at most ${this.params.maxCiphertextBytes} bytes, got ${ciphertext.length}`,
      );
    if (sha256Hex(ciphertext) !== req.ciphertext)
      fail('SH_ERR_CIPHERTEXT_INVALID', `"ciphertext" does not match the hash in the signed request (${req.label})`);
    if (sha256Hex(targetPublicKey) !== req.target.bfvPublicKey)
      fail('SH_ERR_PARAMS_MISMATCH', `target public key does not match the signed request (${req.label})`);
    // Only to the key holder the bank named, under the BFV key that provider registered (the custodian's ledger copy).
    const holder = job.state.holder;
    if (
      typeof holder !== 'string' ||
      req.target.provider !== holder ||
      this.ledger().providerKey(holder) !== req.target.bfvPublicKey
    )
      this.refuseRequest(
        req,
        'transfer',
        `transfer ${req.label} targets ${JSON.stringify(req.target.provider)}'s key ${String(req.target.bfvPublicKey).slice(0, 12)}…; the job's key holder is ${String(holder)} with the key it registered`,
      );
    const n = this.params.slots;
    const seen = new Set<number>();
    if (!Array.isArray(req.moves) || req.moves.length === 0)
      fail('SH_ERR_INVALID_ARGUMENT', '"moves" expected a non-empty list');
    for (const [from, to] of req.moves) {
      if (
        !Number.isInteger(from) ||
        !Number.isInteger(to) ||
        from < 0 ||
        from >= n ||
        to < 0 ||
        to >= n ||
        seen.has(to)
      )
        fail('SH_ERR_INVALID_ARGUMENT', `"moves" has an invalid or repeated slot pair [${from}, ${to}]`);
      seen.add(to);
    }
    const outside = this.rulesOf(job).moves?.(job, req.label, req.moves, this.data, n);
    if (outside) {
      this.refuseRequest(req, 'transfer', outside);
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
    const body: TransferResponse = {
      type: 'safehouse.custodian.transfer.response.v1',
      provider: this.provider,
      jobId: req.jobId,
      label: req.label,
      requestHash,
      ciphertext: sha256Hex(bytes),
    };
    const response = signJson(body, this.provider, this.keys.ed25519SecretKey);
    this.answers.put(req.jobHash, req.label, {
      request,
      response,
      ciphertext: Buffer.from(bytes).toString('base64'),
    });
    this.spend(job, req.label);
    this.journal.append({
      at: new Date().toISOString(),
      jobId: req.jobId,
      jobHash: req.jobHash,
      label: req.label,
      mode: 'transfer',
      target: req.target.provider,
      requestHash,
      responseHash: sha256Hex(canonicalize(response)),
    });
    return { response, ciphertext: bytes };
  }

  async evaluateTokens(request: Signed<TokenEvalRequest>, bankRequest: BankClaims): Promise<Signed<TokenEvalResponse>> {
    requireSignature(request, this.enginePublicKey, 'safehouse.custodian.oprf.v1', `custodian ${this.provider}`);
    const req = request.body;
    if (req.provider !== this.provider)
      fail('SH_ERR_PARAMS_MISMATCH', `token request for ${req.provider} sent to custodian ${this.provider}`);
    if (req.suite !== TOKEN_SUITE || req.mode !== TOKEN_MODE)
      fail(
        'SH_ERR_PARAMS_MISMATCH',
        `custodian ${this.provider} evaluates ${TOKEN_SUITE} ${TOKEN_MODE}, request names ${req.suite} ${req.mode}`,
      );
    if (!this.keys.oprfSecretKey) fail('SH_ERR_INVALID_ARGUMENT', `custodian ${this.provider} has no OPRF key`);
    // The protocol with token claims (verification) says which bank request type carries them and what it allows.
    const rules = [...this.rules.values()].find((r) => r.tokenAllowance);
    if (!rules?.tokenAllowance)
      fail('SH_ERR_PARAMS_MISMATCH', `custodian ${this.provider} serves no protocol with token claims`);
    // The bank's own signature over its claims, and the engine's request bound to exactly that document.
    // A job's batches all carry the same bank request: in process it is the same object, checked (signature, hash) once.
    let bankHash = this.checkedBankRequests.get(bankRequest);
    if (bankHash === undefined) {
      const bank = this.ledger().bank(bankRequest?.signer);
      if (!bank)
        fail(
          'SH_ERR_CERT_INVALID',
          `custodian ${this.provider}: ${JSON.stringify(bankRequest?.signer)} is no bank the registrar certified`,
        );
      requireSignature(bankRequest, bank.ed25519, rules.requestType, `custodian ${this.provider}: bank request`);
      bankHash = sha256Hex(canonicalize(bankRequest));
      this.checkedBankRequests.set(bankRequest, bankHash);
    }
    if (bankHash !== req.jobHash || bankRequest.body.jobId !== req.jobId)
      fail('SH_ERR_PARAMS_MISMATCH', `token request ${req.label} is not bound to the bank-signed request`);
    if (!Array.isArray(req.elements) || req.elements.length === 0 || req.elements.length > 4096)
      fail('SH_ERR_INVALID_ARGUMENT', `"elements" expected 1..4096 blinded points, got ${req.elements?.length}`);
    // The bank-signed request opens the job here if the engine has not shown it yet (the same checks as openJob).
    await this.openJob(bankRequest);
    const job = this.openJobs().get(bankHash)!;
    const allowed = rules.tokenAllowance(job, bankRequest, this.provider, req.field);
    // A signed request is honoured only while fresh, and the counts survive restarts (rebuilt from the journal), so one
    // bank-signed request can never buy more evaluations than it names.
    this.requireFresh(bankRequest.body, req.jobId);
    this.evaluations ??= this.journal.evaluations(this.now().getTime() - 2 * BANK_REQUEST_TTL_MS);
    const used = this.evaluations.get(req.jobId) ?? new Map<string, number>();
    const next = new Map(used);
    for (const el of req.elements) {
      const n = (next.get(el.claimId) ?? 0) + 1;
      const limit = allowed.get(el.claimId);
      if (limit === undefined || n > limit) {
        this.journal.append({
          at: new Date().toISOString(),
          jobId: req.jobId,
          label: req.label,
          refused: 'SH_ERR_CUSTODIAN_BUDGET',
          claim: el.claimId,
        });
        fail(
          'SH_ERR_CUSTODIAN_BUDGET',
          `custodian ${this.provider}: claim ${el.claimId} asks for evaluation ${n}, the bank signed for ${limit ?? 0} on ${req.field}`,
          { claim: el.claimId },
        );
      }
      next.set(el.claimId, n);
    }
    const blinded = req.elements.map((el) => {
      if (typeof el.blinded !== 'string' || !/^[0-9a-f]+$/.test(el.blinded) || el.blinded.length % 2)
        fail('SH_ERR_TOKEN_INVALID', `blinded element for ${el.claimId} is not hex`);
      return hexToBytes(el.blinded);
    });
    const info = tokenInfo(this.provider, req.field, req.epoch);
    const out = this.pool
      ? await this.pool.run(evaluateKernel, { secretKey: this.keys.oprfSecretKey, info, blinded })
      : evaluateBlinded(this.keys.oprfSecretKey, info, blinded);
    this.evaluations.set(req.jobId, next);
    const requestHash = sha256Hex(canonicalize(request));
    const body: TokenEvalResponse = {
      type: 'safehouse.custodian.oprf.response.v1',
      provider: this.provider,
      jobId: req.jobId,
      label: req.label,
      requestHash,
      evaluated: out.evaluated.map((e) => bytesToHex(e)),
      proof: bytesToHex(out.proof),
    };
    const response = signJson(body, this.provider, this.keys.ed25519SecretKey);
    this.answers.put(req.jobHash, req.label, { request, response });
    const perClaim: Record<string, number> = {};
    for (const el of req.elements) perClaim[el.claimId] = (perClaim[el.claimId] ?? 0) + 1;
    this.journal.append({
      at: new Date().toISOString(),
      jobId: req.jobId,
      label: req.label,
      mode: 'oprf',
      elements: blinded.length,
      evaluations: perClaim,
      requestHash,
      responseHash: sha256Hex(canonicalize(response)),
    });
    return response;
  }

  /**
   * The answer already given to `label` of an opened, unfinished job — the same request and response (and a
   * transfer's ciphertext), for an engine that crashed before it recorded them. Nothing is decrypted again.
   */
  async answered(jobHash: string, label: string): Promise<StoredAnswer | undefined> {
    if (typeof jobHash !== 'string' || typeof label !== 'string' || !this.openJobs().has(jobHash)) return undefined;
    return this.answers.get(jobHash, label);
  }

  /**
   * Jobs the ledger shows finished: their kept answers are dropped, and a failed job this custodian released
   * nothing for (no decryption, transfer or evaluation answered) gets its budget back — it bought nothing here.
   * Idempotent: a restarted custodian re-reads the whole ledger and settles the same jobs the same way.
   */
  private settle(): void {
    const finished = this.ledger().drainFinished();
    if (!finished.size) return;
    const refunded = this.journal.refunded();
    let changed = false;
    let answeredIds: Set<string> | undefined;
    for (const [hash, job] of this.openJobs()) {
      const end = finished.get(job.jobId);
      if (!end) continue;
      this.answers.drop(hash);
      if (!end.failed || refunded.has(hash)) continue;
      answeredIds ??= this.journal.answeredJobIds();
      if (job.used > 0 || answeredIds.has(job.jobId)) continue;
      this.journal.append({ at: new Date().toISOString(), refunded: hash, jobId: job.jobId, code: end.code });
      changed = true;
    }
    if (changed) this.budgets.reload();
  }

  /** Decrypt with the key holder's checks: in the provider's own pool when it has one, else on this thread. */
  private async decryptChecked(ciphertext: Uint8Array, label: string, maxSize: number): Promise<BigUint64Array> {
    if (this.pool) {
      this.poolKey ??= sharedKey(this.keys.bfvSecretKey);
      return this.pool.run(decryptKernel, {
        paramsId: this.paramsId,
        secretKey: this.poolKey.bytes,
        keyHash: this.poolKey.hash,
        ciphertext,
        label,
        maxSize,
      });
    }
    const { ops, decryptor } = await this.init();
    return checkedDecrypt(ops, decryptor, this.params, ciphertext, label, maxSize);
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

/** A copy of `key` in a SharedArrayBuffer (passed to worker tasks without copying) and its SHA-256 (the workers' cache key). */
function sharedKey(key: Uint8Array): { bytes: Uint8Array; hash: string } {
  const bytes = new Uint8Array(new SharedArrayBuffer(key.length));
  bytes.set(key);
  return { bytes, hash: sha256Hex(key) };
}

/** Overwrite `slots` of `values` with independent uniform values mod t (rejection sampling on 64-bit draws). */
export function uniformSlots(values: BigUint64Array, slots: readonly number[], t: bigint): void {
  const limit = (1n << 64n) - ((1n << 64n) % t);
  const draws = new BigUint64Array(slots.length + 64);
  let k = draws.length;
  for (const i of slots) {
    let r: bigint;
    do {
      if (k === draws.length) {
        randomFillSync(draws);
        k = 0;
      }
      r = draws[k++]!;
    } while (r >= limit);
    values[i] = r % t;
  }
  draws.fill(0n);
}

/** What openJob answers for an opened job (the same every time it is shown). */
function opened(job: OpenJob): OpenedJob {
  const privacy = job.state.privacy as OpenedJob['privacy'];
  return {
    refused: [...job.refused],
    ...(job.reasons ? { reasons: { ...job.reasons } } : {}),
    ...(privacy ? { privacy } : {}),
  };
}

/**
 * `n` independent samples of a Gaussian of standard deviation σ rounded to integers (Box–Muller on 53-bit uniforms
 * from the system CSPRNG), truncated at 12σ (the truncation adds < 10⁻³² to δ).
 */
export function gaussianNoise(n: number, sigma: number): bigint[] {
  const out: bigint[] = [];
  const u = new BigUint64Array(2);
  const unit = () => {
    randomFillSync(u);
    return [Number(u[0]! >> 11n) / 2 ** 53, Number(u[1]! >> 11n) / 2 ** 53];
  };
  while (out.length < n) {
    const [a, b] = unit();
    if (a === 0) continue;
    const r = Math.sqrt(-2 * Math.log(a!));
    for (const z of [r * Math.cos(2 * Math.PI * b!), r * Math.sin(2 * Math.PI * b!)])
      if (out.length < n && Math.abs(z) <= 12) out.push(BigInt(Math.round(z * sigma)));
  }
  return out;
}
