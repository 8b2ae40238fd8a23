/**
 * Embedded mode: one process plays every party over one data directory. Each method acts *as* a party — it loads that
 * party's keys from the wallet, builds the signed message the party would send, and hands it to the engine — so the
 * engine code path is the one a networked deployment uses. The CLI, the demo and the tests all go through here.
 * Longer than 400 lines: one method per party action (registrar, provider, enterprise, bank), each a thin signed
 * wrapper over the engine, sharing the wallet and the providers' agents.
 */
import { join } from 'node:path';
import { existsSync, readFileSync } from 'node:fs';
import { fail } from '../core/errors.ts';
import { Engine, LEDGER_ORIGIN } from '../engine/engine.ts';
import { issueCertificate, type Certificate } from '../sandbox/registrar.ts';
import type { PartyRole } from '../engine/registry.ts';
import { ProviderAgent } from '../engine/provider/agent.ts';
import type { ProviderTable } from '../engine/provider/table.ts';
import type { CustodianView } from '../engine/custodian/messages.ts';
import { WorkerPool } from '../engine/pool/pool.ts';
import { generateOprfKeyPair } from '../engine/tokens/oprf.ts';
import { signJson } from '../core/sign.ts';
import { buildScoreRequest, openScoreResult } from '../engine/protocols/score/bank.ts';
import { runScoreJob } from '../engine/protocols/score/run.ts';
import { feedCustodian } from '../engine/protocols/job.ts';
import { type ScoreProgress, type ScoreResult, type ScoreStatus } from '../engine/protocols/score/messages.ts';
import { buildTrainRequest, encryptLabels } from '../engine/protocols/train/bank.ts';
import { type TrainObserver } from '../engine/protocols/train/engine.ts';
import { planTraining } from '../engine/protocols/train/plan.ts';
import { checkTrainingPart } from '../engine/protocols/train/provider.ts';
import { runTrainJob } from '../engine/protocols/train/run.ts';
import type { TrainOutcome, TrainProgress } from '../engine/protocols/train/messages.ts';
import type { TrainOptions } from '../models/train.ts';
import { buildVerifyRequest, openVerifyResult } from '../engine/protocols/verify/bank.ts';
import { runVerifyJob } from '../engine/protocols/verify/run.ts';
import {
  type Claim,
  type ClaimResult,
  type VerifyProgress,
  type VerifyResult,
} from '../engine/protocols/verify/messages.ts';
import { createConsent, createRevocation, type ConsentOp, type SignedConsent } from '../sandbox/consent.ts';
import { parseUscc } from '../sandbox/uscc.ts';
import { parseModel, type CompiledModel } from '../models/model.ts';
import { Wallet } from './wallet.ts';
import type { Policy, ProviderPolicy } from '../sandbox/policy.ts';
import { ProviderRecords } from '../engine/provider/records.ts';
import type { ApprovalReview } from '../engine/protocols/score/provider.ts';

/** The registrar's party id in embedded mode. */
const REGISTRAR = 'registrar';

export interface EmbeddedOptions {
  home: string;
  create?: boolean;
  poolSize?: number;
  /** The engine's policy; its provider limits also apply at every custodian unless `providerPolicy` overrides them. */
  policy?: Partial<Policy>;
  /** Limits every provider's custodian enforces (sandbox/policy.ts ProviderPolicy). */
  providerPolicy?: Partial<ProviderPolicy>;
  /** Clock of the engine and every custodian (tests of sliding windows); default the system clock. */
  now?: () => Date;
  /** Test hook: every custodian's view of what it decrypts. */
  observe?: (provider: string, view: CustodianView) => void;
}

export interface ConsentGrant {
  subject: string;
  bank: string;
  purpose: string;
  categories: string[];
  operations: ConsentOp[];
  days: number;
  /** Start of validity; default now. */
  notBefore?: Date;
}

export class Safehouse {
  readonly engine: Engine;
  readonly wallet: Wallet;
  private readonly opts: EmbeddedOptions;
  private providerPool: WorkerPool | undefined;
  private readonly agents = new Map<string, ProviderAgent>();

  private constructor(engine: Engine, wallet: Wallet, opts: EmbeddedOptions) {
    this.engine = engine;
    this.wallet = wallet;
    this.opts = opts;
  }

  /** Open (or create) a data directory in embedded mode and connect the custodians of its providers. */
  static async open(opts: EmbeddedOptions): Promise<Safehouse> {
    const engine = Engine.open({
      home: opts.home,
      create: opts.create,
      ...(opts.poolSize ? { poolSize: opts.poolSize } : {}),
      ...(opts.policy ? { policy: opts.policy } : {}),
      ...(opts.now ? { now: opts.now } : {}),
    });
    const sh = new Safehouse(engine, new Wallet(opts.home), opts);
    sh.ensureRegistrar();
    for (const p of engine.registry.parties('provider')) sh.connect(p.id);
    return sh;
  }

  /**
   * The registrar (real-name registration, sandbox/registrar.ts), played here like every other party: its key in the
   * wallet, registered with the engine once. Custodians pin this key, not the engine's registry.
   */
  private ensureRegistrar(): void {
    const reg = this.engine.registry.registrar();
    const k = this.wallet.get(REGISTRAR) ?? this.wallet.create(REGISTRAR, 'registrar');
    if (!reg) this.engine.registry.registerParty({ id: REGISTRAR, role: 'registrar', ed25519: k.ed25519.publicKey });
  }

  /**
   * Bring every custodian's copy of the ledger up to date now (docs/trust.md). Jobs do this themselves before they
   * show a request; a custodian that follows the ledger as it grows spares the next job a bulk import's catch-up (one
   * signature verification per new consent, at each custodian).
   */
  async syncCustodians(): Promise<void> {
    for (const p of this.engine.registry.parties('provider'))
      if (this.engine.registry.hasCustodian(p.id)) await feedCustodian(this.engine, p.id);
  }

  /** The registrar certifies a bank's or enterprise's keys (its real-name registration). */
  certify(p: {
    party: string;
    role: 'bank' | 'enterprise';
    ed25519: Uint8Array;
    x25519?: Uint8Array;
    group?: string;
  }): Certificate {
    const k = this.wallet.require(REGISTRAR, 'registrar');
    return issueCertificate(p, { id: REGISTRAR, secretKey: k.ed25519.secretKey }, this.engine.now());
  }

  async close(): Promise<void> {
    await this.engine.close();
    await this.providerPool?.close();
    this.wallet.close();
  }

  /** Prepare the engine (consent and subject indexes, SEAL in every worker) and the providers' pools now, as a server does at start. */
  async warmUp(): Promise<void> {
    await Promise.all([this.engine.warmUp(), this.pool.warmUp(this.engine.params.id)]);
  }

  /** SEAL WASM memory of every worker, engine pool and providers' pool (WorkerPool.wasmBytes). */
  workerMemory(): { engine: number[]; providers: number[] } {
    return { engine: this.engine.pool.wasmBytes(), providers: this.providerPool?.wasmBytes() ?? [] };
  }

  private get pool(): WorkerPool {
    this.providerPool ??= new WorkerPool(this.opts.poolSize ? { size: this.opts.poolSize } : {});
    return this.providerPool;
  }

  /** The provider's side in embedded mode (its keys from the wallet, its custodian, its pool). */
  agent(id: string): ProviderAgent {
    let a = this.agents.get(id);
    if (!a) {
      const k = this.wallet.require(id, 'provider');
      const dir = this.wallet.providerDir(id);
      const sk = this.wallet.readSecret(join(dir, 'bfv.sk'));
      const pk = this.wallet.readSecret(join(dir, 'bfv.pk'));
      const oprfSk = this.wallet.readSecret(join(dir, 'oprf.sk'));
      const oprfPk = this.wallet.readSecret(join(dir, 'oprf.pk'));
      if (!sk || !pk) fail('SH_ERR_UNKNOWN_PARTY', `provider ${id} has no BFV keys in the wallet`, { party: id });
      a = new ProviderAgent(
        id,
        this.engine.params,
        {
          bfvSecretKey: sk,
          bfvPublicKey: pk,
          ed25519SecretKey: k.ed25519.secretKey,
          ed25519PublicKey: k.ed25519.publicKey,
          ...(oprfSk && oprfPk ? { oprfSecretKey: oprfSk, oprfPublicKey: oprfPk } : {}),
        },
        this.pool,
      );
      this.agents.set(id, a);
    }
    return a;
  }

  private connect(provider: string): void {
    const a = this.agent(provider);
    const observe = this.opts.observe;
    this.engine.registry.connectCustodian(
      a.custodian(this.engine.keys.ed25519.publicKey, {
        logFile: join(this.wallet.providerDir(provider), 'custodian.log'),
        tablesDir: this.wallet.providerDir(provider),
        // What the provider pins itself: the ledger's checkpoint key and the registrar's key (docs/trust.md).
        trust: {
          keyName: LEDGER_ORIGIN,
          publicKey: this.engine.keys.ed25519.publicKey,
          registrarKey: this.wallet.require(REGISTRAR, 'registrar').ed25519.publicKey,
        },
        policy: { ...this.opts.policy, ...this.opts.providerPolicy },
        ...(this.opts.now ? { now: this.opts.now } : {}),
        ...(observe ? { observe: (v: CustodianView) => observe(provider, v) } : {}),
      }),
    );
  }

  /** `safehouse party add`: create the party's keys (in its wallet) and register the public halves. */
  async addParty(role: PartyRole, id: string, opts: { group?: string } = {}): Promise<void> {
    if (role === 'enterprise') parseUscc(id);
    if (this.engine.registry.party(id))
      fail('SH_ERR_ALREADY_EXISTS', `party ${id} is already registered`, { party: id });
    const k = this.wallet.create(id, role);
    if (role === 'provider') {
      const dir = this.wallet.providerDir(id);
      let pk = this.wallet.readSecret(join(dir, 'bfv.pk'));
      if (!pk || !this.wallet.readSecret(join(dir, 'bfv.sk'))) {
        const keys = await ProviderAgent.generateBfvKeys(this.engine.params);
        this.wallet.writeSecret(join(dir, 'bfv.sk'), keys.secretKey);
        this.wallet.writeSecret(join(dir, 'bfv.pk'), keys.publicKey);
        keys.secretKey.fill(0);
        pk = keys.publicKey;
      }
      let oprfPk = this.wallet.readSecret(join(dir, 'oprf.pk'));
      if (!oprfPk || !this.wallet.readSecret(join(dir, 'oprf.sk'))) {
        const kp = generateOprfKeyPair();
        this.wallet.writeSecret(join(dir, 'oprf.sk'), kp.secretKey);
        this.wallet.writeSecret(join(dir, 'oprf.pk'), kp.publicKey);
        oprfPk = kp.publicKey;
      }
      this.engine.registry.registerParty({
        id,
        role,
        ed25519: k.ed25519.publicKey,
        bfvPublicKey: pk,
        oprfPublicKey: oprfPk,
      });
      this.connect(id);
      return;
    }
    const certified = role === 'bank' || role === 'enterprise';
    this.engine.registry.registerParty({
      id,
      role,
      ed25519: k.ed25519.publicKey,
      ...(k.x25519 ? { x25519: k.x25519.publicKey } : {}),
      ...(opts.group ? { group: opts.group } : {}),
      ...(certified
        ? {
            certificate: this.certify({
              party: id,
              role,
              ed25519: k.ed25519.publicKey,
              ...(k.x25519 ? { x25519: k.x25519.publicKey } : {}),
              ...(opts.group ? { group: opts.group } : {}),
            }),
          }
        : {}),
    });
  }

  /** `safehouse provider ingest`: as the provider, validate + encrypt + sign; the engine verifies and stores. */
  async ingest(
    provider: string,
    schema: unknown,
    csvText: string,
  ): Promise<{ datasetId: string; subjects: number; blocks: number; version: number }> {
    this.engine.registry.requireParty(provider, 'provider');
    const agent = this.agent(provider);
    const datasetId = `${provider}.${(schema as { category?: string })?.category ?? 'x'}.${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
    const up = await agent.prepareUpload(schema, csvText, datasetId);
    const ds = this.engine.datasets.acceptUpload(up.manifest, up.blobs);
    this.wallet.writeSecret(join(this.wallet.providerDir(provider), `${ds.category}.json`), JSON.stringify(up.table));
    return { datasetId: ds.id, subjects: ds.subjects, blocks: ds.blocks, version: ds.version };
  }

  /**
   * `safehouse consent grant`: as each enterprise (its key created on first use, standing in for real-name
   * registration), sign consents; the engine verifies and records them all or none.
   */
  grantConsents(grants: readonly ConsentGrant[]): SignedConsent[] {
    const subjects = grants.map((g) => parseUscc(g.subject));
    const keys = this.wallet.ensureEnterprises(subjects);
    this.engine.registry.registerEnterprises(
      [...new Set(subjects)]
        .filter((s) => !this.engine.registry.party(s))
        .map((s) => {
          const ed25519 = keys.get(s)!.ed25519.publicKey;
          return { uscc: s, ed25519, certificate: this.certify({ party: s, role: 'enterprise', ed25519 }) };
        }),
    );
    const signed = grants.map((g, i) => {
      const nb = g.notBefore ?? this.engine.now();
      if (!Number.isFinite(g.days) || g.days <= 0)
        fail('SH_ERR_CONSENT_INVALID', `"days" expected a positive number, got ${g.days}`);
      return createConsent(
        {
          subject: subjects[i]!,
          grantee: g.bank,
          purpose: g.purpose,
          categories: g.categories,
          operations: g.operations,
          notBefore: nb,
          notAfter: new Date(nb.getTime() + g.days * 86_400_000),
        },
        keys.get(subjects[i]!)!.ed25519.secretKey,
      );
    });
    this.engine.consents.add(signed);
    return signed;
  }

  /** `safehouse consent revoke --id` / `--subject --bank`: the enterprise signs a revocation for each matching consent. */
  revoke(sel: { consentId: string } | { subject: string; bank: string }): string[] {
    let targets: Array<{ id: string; subject: string }>;
    if ('consentId' in sel) {
      const subject = this.engine.consents.subjectOf(sel.consentId);
      if (!subject) fail('SH_ERR_CONSENT_NOT_FOUND', `no consent ${sel.consentId}`, { consent: sel.consentId });
      targets = [{ id: sel.consentId, subject }];
    } else {
      const subject = parseUscc(sel.subject);
      targets = this.engine.consents.of(subject, sel.bank).map((c) => ({ id: c.statement.id, subject }));
      if (targets.length === 0) fail('SH_ERR_CONSENT_NOT_FOUND', `no consent of ${subject} for ${sel.bank}`);
    }
    for (const t of targets) {
      const k = this.wallet.require(t.subject, 'enterprise');
      this.engine.consents.revoke(createRevocation(t.id, t.subject, k.ed25519.secretKey, this.engine.now()));
    }
    return targets.map((t) => t.id);
  }

  /** `safehouse model register`: as the bank. */
  registerModel(bank: string, modelJson: unknown): CompiledModel {
    const k = this.wallet.require(bank, 'bank');
    const spec = parseModel(modelJson);
    return this.engine.models.register(
      signJson({ type: 'safehouse.model.register.v1', bank, model: spec }, bank, k.ed25519.secretKey),
    );
  }

  /** `safehouse model approve`: as the provider, review the model, derive its bin columns, sign the approval. */
  async approveModel(provider: string, modelId: string): Promise<ApprovalReview> {
    const m = this.engine.models.get(modelId);
    if (!m) fail('SH_ERR_NOT_FOUND', `no model ${JSON.stringify(modelId)} is registered`, { model: modelId });
    const agent = this.agent(provider);
    const fields = m.spec.terms.filter((t) => t.provider === provider).map((t) => t.field);
    if (fields.length === 0) fail('SH_ERR_INVALID_ARGUMENT', `model ${modelId} does not use provider ${provider}`);
    const ds = this.engine.datasets.withField(provider, fields[0]!);
    if (!ds) fail('SH_ERR_UNKNOWN_FIELD', `provider ${provider} has no dataset with ${fields[0]}`);
    const tablePath = join(this.wallet.providerDir(provider), `${ds.category}.json`);
    if (!existsSync(tablePath))
      fail('SH_ERR_MODEL_STALE', `provider ${provider} has no local copy of dataset ${ds.id}`);
    const table = JSON.parse(readFileSync(tablePath, 'utf8')) as ProviderTable;
    if (table.datasetId !== ds.id)
      fail(
        'SH_ERR_MODEL_STALE',
        `provider ${provider}'s local table is ${table.datasetId}, engine's current dataset is ${ds.id}`,
      );
    // The provider reviews with its own policy and its own record of what it approved for the bank's group.
    const records = new ProviderRecords(this.wallet.providerDir(provider));
    const group = this.engine.registry.groupOf(m.bank);
    const { approval, blobs, review } = await agent.approve(m.spec, table, {
      policy: records.policy({ ...this.opts.policy, ...this.opts.providerPolicy }),
      group,
      earlier: records.approvals(group).map((r) => r.model),
    });
    this.engine.models.approve(approval, blobs);
    records.recordApproval({ modelId, modelHash: m.hash, bank: m.bank, group, model: m.spec });
    return review;
  }

  /** `safehouse score`: as the bank, sign the request; the engine runs it; the bank opens the result. */
  async score(
    bank: string,
    modelId: string,
    purpose: string,
    subjects: string[],
    onProgress?: (p: ScoreProgress) => void,
  ): Promise<{
    jobId: string;
    rows: Array<{ uscc: string; status: ScoreStatus; score: string }>;
    result: ScoreResult;
  }> {
    const k = this.wallet.require(bank, 'bank');
    const m = this.engine.models.get(modelId);
    if (!m) fail('SH_ERR_NOT_FOUND', `no model ${JSON.stringify(modelId)} is registered`, { model: modelId });
    const jobId = this.engine.jobs.newId('score');
    const signed = buildScoreRequest(
      { jobId, bank, modelId, modelHash: m.hash, purpose, subjects, requestedAt: this.engine.now().toISOString() },
      k.ed25519.secretKey,
    );
    const result = await runScoreJob(this.engine, signed, onProgress ? { onProgress } : {});
    return { jobId, rows: openScoreResult(result, bank, k.x25519!.secretKey), result };
  }

  /** `safehouse verify`: as the bank, sign the claims (values committed); the engine runs them; the bank opens the answers. */
  async verify(
    bank: string,
    purpose: string,
    claims: readonly Claim[],
    onProgress?: (p: VerifyProgress) => void,
  ): Promise<{ jobId: string; results: Map<string, ClaimResult>; result: VerifyResult }> {
    const k = this.wallet.require(bank, 'bank');
    const jobId = this.engine.jobs.newId('verify');
    const { signed, openings } = buildVerifyRequest(
      { jobId, bank, purpose, claims, requestedAt: this.engine.now().toISOString() },
      k.ed25519.secretKey,
    );
    const result = await runVerifyJob(this.engine, signed, openings, onProgress ? { onProgress } : {});
    return {
      jobId,
      results: openVerifyResult(
        result,
        bank,
        k.x25519!.secretKey,
        claims.map((c) => c.claimId),
      ),
      result,
    };
  }

  /**
   * `safehouse train` (one provider): as the bank, sign the request; the engine plans it (consent op `train`, cohort
   * minimum); as the provider, bin and encrypt the cohort's one-hot columns; as the bank, encrypt the labels under the
   * provider's key; then the engine iterates with masked `sum` decryptions at the custodian.
   */
  async train(r: {
    bank: string;
    provider: string;
    purpose: string;
    fields: string[];
    others?: Array<{ provider: string; fields: string[] }>;
    subjects: string[];
    labels: ReadonlyMap<string, 0 | 1>;
    bins?: number;
    features?: 'binned' | 'standardized';
    options?: Partial<TrainOptions>;
    onProgress?: (p: TrainProgress) => void;
    /** Engine-side test hook: each iteration's model and noisy gradient sums (the bank gets only the final model). */
    observe?: TrainObserver;
  }): Promise<TrainOutcome> {
    const k = this.wallet.require(r.bank, 'bank');
    const jobId = this.engine.jobs.newId('train');
    const signed = buildTrainRequest(
      {
        jobId,
        bank: r.bank,
        purpose: r.purpose,
        provider: r.provider,
        fields: r.fields,
        ...(r.others?.length ? { others: r.others } : {}),
        ...(r.features ? { features: r.features } : {}),
        subjects: r.subjects,
        bins: r.bins ?? 5,
        options: r.options ?? {},
        requestedAt: this.engine.now().toISOString(),
      },
      k.ed25519.secretKey,
    );
    const plan = await planTraining(this.engine, signed);
    // As the bank: its labels under the key holder's public key, at the cohort's slots.
    const labels = await encryptLabels(
      this.engine.params,
      this.engine.registry.bfvPublicKey(plan.provider),
      plan,
      r.labels,
      r.bank,
      k.ed25519.secretKey,
    );
    // As each provider: its columns from its own table, after checking the part is the bank-signed job's.
    const columns = async (provider: string, part: Parameters<typeof checkTrainingPart>[2], request: typeof signed) => {
      checkTrainingPart(provider, request, part);
      const ds = this.engine.datasets.get(part.datasetId)!;
      const tablePath = join(this.wallet.providerDir(provider), `${ds.category}.json`);
      if (!existsSync(tablePath))
        fail('SH_ERR_MODEL_STALE', `provider ${provider} has no local copy of dataset ${ds.id}`);
      return this.agent(provider).prepareTraining(part, JSON.parse(readFileSync(tablePath, 'utf8')) as ProviderTable);
    };
    return runTrainJob(
      this.engine,
      plan,
      { columns, labels: labels.signed, labelBlobs: labels.blobs },
      { ...(r.onProgress ? { onIteration: r.onProgress } : {}), ...(r.observe ? { observe: r.observe } : {}) },
    );
  }

  /** The provider's own table (embedded mode stand-in for its system of record), for plaintext comparisons. */
  providerTable(provider: string, category: string): ProviderTable {
    return JSON.parse(
      readFileSync(join(this.wallet.providerDir(provider), `${category}.json`), 'utf8'),
    ) as ProviderTable;
  }
}
