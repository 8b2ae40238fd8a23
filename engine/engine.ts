/**
 * The engine (平台): registry, uploads, consents, models, jobs and the ledger over one data directory. It holds no
 * decryption key of anyone (DESIGN §1): it stores ciphertexts and public keys, and talks to custodians through signed
 * requests. Every state change is validated completely first, then written in one SQLite transaction together with
 * its ledger leaf, so bad input changes nothing.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fail } from '../core/errors.ts';
import { Store, SUBJECT_SLOTS_SQL } from './store/store.ts';
import { sha256Hex } from '../core/hash.ts';
import { Ledger } from './ledger/ledger.ts';
import { WorkerPool } from './pool/pool.ts';
import { BFV_8192_T40, SLOT_STRIDE, type ParamSet } from './he/params.ts';
import { ed25519KeyPair, ed25519PublicKey, requireSignature, bytesToHex, hexToBytes, type Signed } from '../core/sign.ts';
import { x25519KeyPair } from '../core/sealbox.ts';
import type { Custodian } from './custodian/custodian.ts';
import { validateSchema, type DatasetSchema, type FieldSpec } from '../sandbox/catalog.ts';
import { parseUscc } from '../sandbox/uscc.ts';
import {
  validateConsentStatement, validateRevocationStatement, verifyConsentSignature, verifyRevocation,
  consentStatus, CONSENT_STATUSES, type SignedConsent, type SignedRevocation, type ConsentOp, type ConsentStatus,
} from '../sandbox/consent.ts';
import { policy as fillPolicy, type Policy } from '../sandbox/policy.ts';
import { vetModel } from '../sandbox/vetting.ts';
import { parseModel, compileModel, isScorecardTerm, binColumn, type CompiledModel, type ModelSpec } from '../models/model.ts';

export type PartyRole = 'provider' | 'bank' | 'enterprise' | 'auditor';

export interface PartyRecord {
  id: string;
  role: PartyRole;
  ed25519: Uint8Array;
  x25519?: Uint8Array;
  bfvPublicKeyBlob?: string;
  /** RFC 9497 POPRF public key (33-byte compressed P-256 point) of a provider with token fields. */
  oprfPublicKey?: Uint8Array;
}

export interface UploadManifest {
  type: 'safehouse.upload.v1';
  provider: string;
  category: string;
  datasetId: string;
  paramsId: string;
  schema: DatasetSchema;
  /** Blob of the subject index: JSON [[uscc, block, slot, "field;field" (missing fields)], ...]. */
  subjectsBlob: string;
  subjectCount: number;
  blocks: number;
  columns: Array<{ column: string; block: number; blob: string }>;
  /** RFC 9497 POPRF tokens per id field: a blob of sorted 32-byte outputs (DESIGN §2, §4.4). */
  tokens: Array<{ field: string; epoch: number; count: number; blob: string }>;
  /** Published field statistics (count of present values, mean and population std in field units, 3 digits). */
  stats: Record<string, { count: number; std: number; mean?: number }>;
  createdAt: string;
}

export interface ApprovalStatement {
  type: 'safehouse.approval.v1';
  provider: string;
  modelId: string;
  modelHash: string;
  datasetId: string;
  /** Derived scorecard bin-indicator columns for this provider's terms. */
  derived: Array<{ column: string; block: number; blob: string }>;
  approvedAt: string;
}

export interface ModelRegistration {
  type: 'safehouse.model.register.v1';
  bank: string;
  model: ModelSpec;
}

export interface DatasetRecord {
  id: string;
  provider: string;
  category: string;
  version: number;
  schema: DatasetSchema;
  subjects: number;
  blocks: number;
  stats: UploadManifest['stats'];
}

export interface SubjectSlot {
  block: number;
  slot: number;
  missing: Set<string>;
}

export interface EngineOptions {
  home: string;
  create?: boolean;
  params?: ParamSet;
  policy?: Partial<Policy>;
  poolSize?: number;
  now?: () => Date;
}

const ORIGIN = 'safehouse.local/ledger';
const PARTY_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;

/** Subjects per batched SQL query (json_each list). */
const SQL_CHUNK = 5000;
/** Fewest subjects per consent-check task in the pool (below this, messaging costs more than it spreads). */
const CONSENT_CHUNK_MIN = 256;

export class Engine {
  readonly store: Store;
  readonly ledger: Ledger;
  readonly params: ParamSet;
  readonly policy: Policy;
  readonly now: () => Date;
  readonly keys: { ed25519: { secretKey: Uint8Array; publicKey: Uint8Array } };
  private poolInstance: WorkerPool | undefined;
  private readonly poolSize: number | undefined;
  private readonly custodians = new Map<string, Custodian>();

  private constructor(opts: EngineOptions, store: Store) {
    this.store = store;
    this.params = opts.params ?? BFV_8192_T40;
    this.policy = fillPolicy(opts.policy);
    this.now = opts.now ?? (() => new Date());
    this.poolSize = opts.poolSize;
    const keyFile = join(store.home, 'engine.key');
    if (!existsSync(keyFile)) {
      const kp = ed25519KeyPair();
      writeFileSync(keyFile, JSON.stringify({ ed25519: bytesToHex(kp.secretKey) }), { mode: 0o600 });
    }
    const sk = hexToBytes((JSON.parse(readFileSync(keyFile, 'utf8')) as { ed25519: string }).ed25519);
    const kp = { secretKey: sk, publicKey: ed25519PublicKey(sk) };
    this.keys = { ed25519: kp };
    this.ledger = new Ledger(store.db, { origin: ORIGIN, keyName: ORIGIN, secretKey: kp.secretKey, publicKey: kp.publicKey, now: this.now });
  }

  /** Open a data directory (`create` initializes it). @throws SH_ERR_HOME_NOT_INITIALIZED */
  static open(opts: EngineOptions): Engine {
    const store = Store.open(opts.home, { create: opts.create });
    try {
      const e = new Engine(opts, store);
      if (!store.getMeta('params')) {
        store.setMeta('params', e.params.id);
        store.setMeta('created_at', e.now().toISOString());
        e.ledger.append('engine.initialized', { paramsId: e.params.id, engineKey: bytesToHex(e.keys.ed25519.publicKey) });
        e.ledger.checkpoint();
      } else if (store.getMeta('params') !== e.params.id) {
        fail('SH_ERR_PARAMS_MISMATCH', `data directory uses ${store.getMeta('params')}, engine configured for ${e.params.id}`);
      }
      return e;
    } catch (err) {
      store.close();
      throw err;
    }
  }

  get pool(): WorkerPool {
    this.poolInstance ??= new WorkerPool(this.poolSize === undefined ? {} : { size: this.poolSize });
    return this.poolInstance;
  }

  async close(): Promise<void> {
    for (const c of this.custodians.values()) await (c as { dispose?: () => Promise<void> }).dispose?.();
    this.custodians.clear();
    await this.poolInstance?.close();
    this.poolInstance = undefined;
    this.store.close();
  }

  // ---------------------------------------------------------------- parties

  /**
   * Register a party's public keys (DESIGN §1). Providers also publish their BFV public key.
   * @throws SH_ERR_INVALID_ARGUMENT, SH_ERR_ALREADY_EXISTS
   */
  registerParty(p: { id: string; role: PartyRole; ed25519: Uint8Array; x25519?: Uint8Array; bfvPublicKey?: Uint8Array; oprfPublicKey?: Uint8Array }): PartyRecord {
    if (!PARTY_ID.test(p.id)) fail('SH_ERR_INVALID_ARGUMENT', `"id" expected ${PARTY_ID}, got ${JSON.stringify(p.id)}`);
    if (!['provider', 'bank', 'enterprise', 'auditor'].includes(p.role)) fail('SH_ERR_INVALID_ARGUMENT', `"role" expected provider|bank|enterprise|auditor, got ${JSON.stringify(p.role)}`);
    if (p.ed25519.length !== 32) fail('SH_ERR_INVALID_ARGUMENT', `"ed25519" expected 32 bytes, got ${p.ed25519.length}`);
    if ((p.role === 'bank' || p.role === 'auditor') && p.x25519?.length !== 32) fail('SH_ERR_INVALID_ARGUMENT', `"x25519" expected 32 bytes for a ${p.role}`);
    if (p.role === 'provider' && !p.bfvPublicKey) fail('SH_ERR_INVALID_ARGUMENT', '"bfvPublicKey" is required for a provider');
    if (p.oprfPublicKey && (p.role !== 'provider' || p.oprfPublicKey.length !== 33)) fail('SH_ERR_INVALID_ARGUMENT', `"oprfPublicKey" expected a 33-byte P-256 point of a provider`);
    if (p.role === 'enterprise') parseUscc(p.id);
    const existing = this.party(p.id);
    if (existing) {
      if (existing.role === p.role && bytesToHex(existing.ed25519) === bytesToHex(p.ed25519)) return existing;
      fail('SH_ERR_ALREADY_EXISTS', `party ${p.id} is already registered`, { party: p.id });
    }
    return this.store.transaction(() => {
      const bfv = p.bfvPublicKey ? this.store.putBlob(p.bfvPublicKey) : null;
      const oprf = p.oprfPublicKey ? bytesToHex(p.oprfPublicKey) : null;
      this.store.db.prepare('INSERT INTO parties (id, role, ed25519_pub, x25519_pub, bfv_pub, params_id, oprf_pub, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)').run(
        p.id, p.role, bytesToHex(p.ed25519), p.x25519 ? bytesToHex(p.x25519) : null, bfv, bfv ? this.params.id : null, oprf, this.now().toISOString());
      this.ledger.append('party.registered', { party: p.id, role: p.role, ed25519: bytesToHex(p.ed25519), ...(bfv ? { bfvPublicKey: bfv } : {}), ...(oprf ? { oprfPublicKey: oprf } : {}) }, p.role === 'enterprise' ? [p.id] : []);
      return this.party(p.id)!;
    });
  }

  /** Register many enterprises at once (bulk consent grants); already-registered ones are skipped. */
  registerEnterprises(list: ReadonlyArray<{ uscc: string; ed25519: Uint8Array }>): void {
    // A subject named twice in one batch (several consents) is registered once, with its first key.
    const seen = new Set<string>();
    const fresh = list.filter((e) => !seen.has(e.uscc) && (seen.add(e.uscc), !this.party(e.uscc)));
    for (const e of fresh) parseUscc(e.uscc);
    if (fresh.length === 0) return;
    this.store.transaction(() => {
      const ins = this.store.db.prepare("INSERT INTO parties (id, role, ed25519_pub, created_at) VALUES (?, 'enterprise', ?, ?)");
      const at = this.now().toISOString();
      for (const e of fresh) ins.run(e.uscc, bytesToHex(e.ed25519), at);
      this.ledger.appendMany(fresh.map((e) => ({ kind: 'party.registered', event: { party: e.uscc, role: 'enterprise', ed25519: bytesToHex(e.ed25519) }, subjects: [e.uscc] })));
    });
  }

  party(id: string): PartyRecord | undefined {
    if (typeof id !== 'string') return undefined;
    const r = this.store.stmt('SELECT * FROM parties WHERE id = ?').get(id) as Record<string, string | null> | undefined;
    if (!r) return undefined;
    return {
      id, role: r.role as PartyRole, ed25519: hexToBytes(r.ed25519_pub!),
      ...(r.x25519_pub ? { x25519: hexToBytes(r.x25519_pub) } : {}),
      ...(r.bfv_pub ? { bfvPublicKeyBlob: r.bfv_pub } : {}),
      ...(r.oprf_pub ? { oprfPublicKey: hexToBytes(r.oprf_pub) } : {}),
    };
  }

  /**
   * Refuse a job id already recorded: a signed request runs once. Jobs check before any work and again inside the
   * transaction that records them (their consent checks await the pool, so the same request may arrive twice meanwhile).
   * @throws SH_ERR_ALREADY_EXISTS
   */
  requireNewJob(jobId: string): void {
    if (this.store.stmt('SELECT 1 FROM jobs WHERE id = ?').get(jobId)) fail('SH_ERR_ALREADY_EXISTS', `job ${jobId} already exists; a signed request runs once`, { job: jobId });
  }

  /** @throws SH_ERR_UNKNOWN_PARTY, SH_ERR_PARTY_ROLE */
  requireParty(id: string, role: PartyRole): PartyRecord {
    const p = this.party(id);
    if (!p) fail('SH_ERR_UNKNOWN_PARTY', `no party ${JSON.stringify(id)} is registered`, { party: id });
    if (p.role !== role) fail('SH_ERR_PARTY_ROLE', `party ${id} is a ${p.role}, not a ${role}`, { party: id });
    return p;
  }

  parties(role?: PartyRole): PartyRecord[] {
    const rows = (role
      ? this.store.db.prepare("SELECT id FROM parties WHERE role = ? AND role != 'enterprise' ORDER BY id").all(role)
      : this.store.db.prepare("SELECT id FROM parties WHERE role != 'enterprise' ORDER BY id").all()) as Array<{ id: string }>;
    return rows.map((r) => this.party(r.id)!);
  }

  /**
   * Connect a provider's custodian. Its parameter set and BFV public key must match what the provider registered.
   * @throws SH_ERR_PARAMS_MISMATCH
   */
  connectCustodian(c: Custodian): void {
    const p = this.requireParty(c.provider, 'provider');
    if (c.paramsId !== this.params.id) fail('SH_ERR_PARAMS_MISMATCH', `custodian ${c.provider} uses ${c.paramsId}, engine uses ${this.params.id}`);
    if (sha256Hex(c.bfvPublicKey) !== p.bfvPublicKeyBlob) fail('SH_ERR_PARAMS_MISMATCH', `custodian ${c.provider} holds a different BFV key than the one registered`);
    this.custodians.set(c.provider, c);
  }

  custodian(provider: string): Custodian {
    const c = this.custodians.get(provider);
    if (!c) fail('SH_ERR_UNKNOWN_PARTY', `no custodian connected for provider ${provider}`, { provider });
    return c;
  }

  // ---------------------------------------------------------------- uploads

  /**
   * Accept a provider's signed upload: signature first, then schema (catalog), then every blob's hash and size,
   * then the subject index; only then are blobs and metadata written (one transaction, one ledger leaf).
   * @throws SH_ERR_BAD_SIGNATURE, SH_ERR_SCHEMA_INVALID, SH_ERR_PARAMS_MISMATCH, SH_ERR_CIPHERTEXT_SIZE,
   *   SH_ERR_CIPHERTEXT_INVALID, SH_ERR_USCC_*, SH_ERR_INVALID_ARGUMENT
   */
  acceptUpload(signed: Signed<UploadManifest>, blobs: ReadonlyMap<string, Uint8Array>): DatasetRecord {
    const provider = this.requireParty(signed.signer, 'provider');
    requireSignature(signed, provider.ed25519, 'safehouse.upload.v1', `upload from ${signed.signer}`);
    const m = signed.body;
    if (m.provider !== provider.id) fail('SH_ERR_BAD_SIGNATURE', `upload names provider ${m.provider} but is signed by ${provider.id}`);
    if (m.paramsId !== this.params.id) fail('SH_ERR_PARAMS_MISMATCH', `upload uses ${m.paramsId}, engine uses ${this.params.id}`);
    const schema = validateSchema(m.schema);
    if (schema.category !== m.category) fail('SH_ERR_SCHEMA_INVALID', `manifest category ${m.category} differs from schema category ${schema.category}`);
    if (!/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/.test(m.datasetId) || this.dataset(m.datasetId)) fail('SH_ERR_ALREADY_EXISTS', `dataset id ${m.datasetId} is invalid or taken`);
    const fetchBlob = (hash: string, what: string, cap?: number): Uint8Array => {
      const b = blobs.get(hash);
      if (!b) fail('SH_ERR_INVALID_ARGUMENT', `${what}: blob ${hash} is not in the upload`);
      if (cap !== undefined && b.length > cap) fail('SH_ERR_CIPHERTEXT_SIZE', `${what}: ${b.length} bytes exceeds the cap of ${cap}`, { bytes: b.length });
      if (sha256Hex(b) !== hash) fail('SH_ERR_CIPHERTEXT_INVALID', `${what}: bytes do not hash to ${hash}`);
      return b;
    };
    const index = parseSubjectIndex(fetchBlob(m.subjectsBlob, 'subject index'), this.params.slots, schema);
    if (index.length !== m.subjectCount) fail('SH_ERR_INVALID_ARGUMENT', `subject index holds ${index.length} subjects, manifest says ${m.subjectCount}`);
    const blocks = Math.ceil(index.length / this.params.slots);
    if (blocks !== m.blocks) fail('SH_ERR_INVALID_ARGUMENT', `manifest says ${m.blocks} blocks, subjects need ${blocks}`);
    const numeric = schema.fields.filter((f) => f.type !== 'id');
    const want = new Set(numeric.flatMap((f) => Array.from({ length: blocks }, (_, b) => `${f.name}#${b}`)));
    for (const c of m.columns) {
      if (!want.delete(`${c.column}#${c.block}`)) fail('SH_ERR_INVALID_ARGUMENT', `column ${c.column} block ${c.block} is not expected or repeated`);
      fetchBlob(c.blob, `column ${c.column} block ${c.block}`, this.params.maxCiphertextBytes);
    }
    if (want.size > 0) fail('SH_ERR_INVALID_ARGUMENT', `upload lacks columns: ${[...want].slice(0, 5).join(', ')}`);
    const idFields = new Set(schema.fields.filter((f) => f.type === 'id').map((f) => f.name));
    const tokenSets = (m.tokens ?? []).map((tk) => {
      if (!idFields.delete(tk.field)) fail('SH_ERR_INVALID_ARGUMENT', `token set for ${tk.field} is not an id field of the schema or is repeated`);
      if (!provider.oprfPublicKey) fail('SH_ERR_INVALID_ARGUMENT', `provider ${provider.id} published no OPRF key`);
      const b = fetchBlob(tk.blob, `tokens of ${tk.field}`);
      if (!Number.isInteger(tk.count) || b.length !== tk.count * 32) fail('SH_ERR_TOKEN_INVALID', `tokens of ${tk.field}: ${b.length} bytes is not ${tk.count} × 32`);
      return { field: tk.field, bytes: b };
    });
    if (idFields.size > 0) fail('SH_ERR_INVALID_ARGUMENT', `upload lacks token sets for: ${[...idFields].join(', ')}`);

    const written: string[] = [];
    try {
      return this.store.transaction(() => {
        for (const hash of [m.subjectsBlob, ...m.columns.map((c) => c.blob), ...(m.tokens ?? []).map((t) => t.blob)]) {
          if (!existsSync(this.store.blobPath(hash))) written.push(hash);
          this.store.putBlob(blobs.get(hash)!);
        }
        const prev = this.store.db.prepare('SELECT MAX(version) AS v FROM datasets WHERE provider = ? AND category = ?').get(m.provider, m.category) as { v: number | null };
        const version = (prev.v ?? 0) + 1;
        this.store.db.prepare('UPDATE datasets SET current = 0 WHERE provider = ? AND category = ?').run(m.provider, m.category);
        this.store.db.prepare('INSERT INTO datasets (id, provider, category, version, schema_json, manifest_json, signature, params_id, subjects, blocks, stats_json, created_at, current) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)').run(
          m.datasetId, m.provider, m.category, version, JSON.stringify(schema), JSON.stringify(m), signed.signature, m.paramsId, index.length, blocks, JSON.stringify(m.stats), this.now().toISOString());
        const insS = this.store.db.prepare('INSERT INTO dataset_subjects (dataset_id, uscc, block, slot, missing) VALUES (?, ?, ?, ?, ?)');
        for (const s of index) insS.run(m.datasetId, s.uscc, s.block, s.slot, s.missing);
        const insC = this.store.db.prepare('INSERT INTO columns (dataset_id, column_name, block, blob) VALUES (?, ?, ?, ?)');
        for (const c of m.columns) insC.run(m.datasetId, c.column, c.block, c.blob);
        const insT = this.store.db.prepare('INSERT OR IGNORE INTO tokens (dataset_id, field, token) VALUES (?, ?, ?)');
        for (const tk of tokenSets) for (let o = 0; o < tk.bytes.length; o += 32) insT.run(m.datasetId, tk.field, tk.bytes.subarray(o, o + 32));
        this.ledger.append('dataset.uploaded', { provider: m.provider, category: m.category, datasetId: m.datasetId, version, manifest: sha256Hex(JSON.stringify(m)), signature: signed.signature, subjects: index.length, blocks });
        return this.dataset(m.datasetId)!;
      });
    } catch (err) {
      for (const h of written) this.store.dropBlob(h);
      throw err;
    }
  }

  dataset(id: string): DatasetRecord | undefined {
    const r = this.store.db.prepare('SELECT * FROM datasets WHERE id = ?').get(id) as Record<string, string | number> | undefined;
    return r ? toDataset(r) : undefined;
  }

  currentDatasets(provider?: string): DatasetRecord[] {
    const rows = (provider
      ? this.store.db.prepare('SELECT * FROM datasets WHERE current = 1 AND provider = ? ORDER BY provider, category').all(provider)
      : this.store.db.prepare('SELECT * FROM datasets WHERE current = 1 ORDER BY provider, category').all()) as Array<Record<string, string | number>>;
    return rows.map(toDataset);
  }

  /** The current dataset of `provider` that declares `field` (one category per dataset). */
  datasetWithField(provider: string, field: string): DatasetRecord | undefined {
    return this.currentDatasets(provider).find((d) => d.schema.fields.some((f) => f.name === field));
  }

  fieldLookup = (provider: string, field: string): (FieldSpec & { std?: number }) | undefined => {
    const d = this.datasetWithField(provider, field);
    const f = d?.schema.fields.find((x) => x.name === field);
    if (!d || !f) return undefined;
    const std = d.stats[field]?.std;
    return std === undefined ? f : { ...f, std };
  };

  subjectSlots(datasetId: string, usccs: readonly string[]): Map<string, SubjectSlot> {
    const out = new Map<string, SubjectSlot>();
    // Batched: one query per chunk of subjects (a point query per subject costs ~10 µs each at 100 000 subjects).
    const q = this.store.stmt(SUBJECT_SLOTS_SQL);
    const none = new Set<string>();
    for (let i = 0; i < usccs.length; i += SQL_CHUNK) {
      for (const r of q.all(JSON.stringify(usccs.slice(i, i + SQL_CHUNK)), datasetId) as Array<{ uscc: string; block: number; slot: number; missing: string }>) {
        out.set(r.uscc, { block: r.block, slot: r.slot, missing: r.missing ? new Set(r.missing.split(';')) : none });
      }
    }
    // Callers iterate in request order.
    return new Map(usccs.filter((u) => out.has(u)).map((u) => [u, out.get(u)!]));
  }

  /** Whether a finalized token is in a dataset's token set for a field. */
  hasToken(datasetId: string, field: string, token: Uint8Array): boolean {
    return this.store.stmt('SELECT 1 FROM tokens WHERE dataset_id = ? AND field = ? AND token = ?').get(datasetId, field, token) !== undefined;
  }

  columnBlob(datasetId: string, column: string, block: number): string | undefined {
    const r = this.store.stmt('SELECT blob FROM columns WHERE dataset_id = ? AND column_name = ? AND block = ?').get(datasetId, column, block) as { blob: string } | undefined;
    return r?.blob;
  }

  // ---------------------------------------------------------------- consents

  /**
   * Record signed consents (DESIGN §6). Each is validated and its signature checked against the subject's registered
   * key before anything is written; all land in one transaction or none do.
   * @throws SH_ERR_CONSENT_INVALID, SH_ERR_BAD_SIGNATURE, SH_ERR_UNKNOWN_PARTY, SH_ERR_ALREADY_EXISTS
   */
  addConsents(list: readonly SignedConsent[]): void {
    for (const c of list) {
      const st = validateConsentStatement(c.statement);
      const subject = this.requireParty(st.subject, 'enterprise');
      this.requireParty(st.grantee, 'bank');
      if (!verifyConsentSignature(c, subject.ed25519)) fail('SH_ERR_BAD_SIGNATURE', `consent ${st.id} is not signed by ${st.subject}'s registered key`, { consent: st.id });
    }
    this.store.transaction(() => {
      const ins = this.store.db.prepare('INSERT INTO consents (id, subject, grantee, signed_json, created_at) VALUES (?, ?, ?, ?, ?)');
      const at = this.now().toISOString();
      for (const c of list) {
        try {
          ins.run(c.statement.id, c.statement.subject, c.statement.grantee, JSON.stringify(c), at);
        } catch (err) {
          fail('SH_ERR_ALREADY_EXISTS', `consent ${c.statement.id} is already recorded`, { consent: c.statement.id }, err);
        }
      }
      this.ledger.appendMany(list.map((c) => ({
        kind: 'consent.granted',
        event: { consentId: c.statement.id, subject: c.statement.subject, grantee: c.statement.grantee, purpose: c.statement.purpose, categories: c.statement.categories, operations: c.statement.operations, notBefore: c.statement.notBefore, notAfter: c.statement.notAfter, signature: c.signature },
        subjects: [c.statement.subject],
      })));
    });
    // A bulk import is checkpointed now, so the next job's checkpoint hashes only that job's own entries.
    this.ledger.checkpoint();
  }

  /** @throws SH_ERR_CONSENT_INVALID, SH_ERR_CONSENT_NOT_FOUND, SH_ERR_BAD_SIGNATURE */
  addRevocation(r: SignedRevocation): void {
    const st = validateRevocationStatement(r.statement);
    const row = this.store.db.prepare('SELECT subject FROM consents WHERE id = ?').get(st.consentId) as { subject: string } | undefined;
    if (!row || row.subject !== st.subject) fail('SH_ERR_CONSENT_NOT_FOUND', `no consent ${st.consentId} of subject ${st.subject}`, { consent: st.consentId });
    const subject = this.requireParty(st.subject, 'enterprise');
    if (!verifyRevocation(r, subject.ed25519)) fail('SH_ERR_BAD_SIGNATURE', `revocation of ${st.consentId} is not signed by ${st.subject}'s registered key`);
    this.store.transaction(() => {
      this.store.db.prepare('INSERT INTO revocations (consent_id, subject, signed_json, created_at) VALUES (?, ?, ?, ?)').run(st.consentId, st.subject, JSON.stringify(r), this.now().toISOString());
      this.ledger.append('consent.revoked', { consentId: st.consentId, subject: st.subject, revokedAt: st.revokedAt, signature: r.signature }, [st.subject]);
    });
  }

  consentsOf(subject: string, grantee?: string): SignedConsent[] {
    const rows = (grantee
      ? this.store.stmt('SELECT signed_json FROM consents WHERE subject = ? AND grantee = ?').all(subject, grantee)
      : this.store.stmt('SELECT signed_json FROM consents WHERE subject = ?').all(subject)) as Array<{ signed_json: string }>;
    return rows.map((r) => JSON.parse(r.signed_json) as SignedConsent);
  }

  /**
   * Per-subject consent status for a job (DESIGN §6), for many subjects: rows are read in batches and each subject's
   * statements (signature checks included) are judged by `consentStatus` in the worker pool, in parallel. Same
   * answers as {@link consentStatuses} (test/consent-parallel.test.ts).
   */
  async consentStatusesParallel(req: { bank: string; purpose: string; operation: ConsentOp; categories: string[]; at: Date }, subjects: readonly string[]): Promise<Map<string, { status: ConsentStatus; consentId?: string }>> {
    return (await this.subjectsParallel(req, subjects, [])).consent;
  }

  /**
   * Consent statuses as {@link consentStatusesParallel}, plus each subject's slot in each of `datasetIds` (as
   * {@link subjectSlots}; with `slotsOf: 'OK'` only for subjects whose consent is OK), all read and judged in the pool: every per-subject step of a large job runs on the workers
   * (their own read-only connections to this database; WAL: committed data only), this thread only hands out lists.
   */
  async subjectsParallel(req: { bank: string; purpose: string; operation: ConsentOp; categories: string[]; at: Date }, subjects: readonly string[], datasetIds: readonly string[], opts: { slotsOf?: 'all' | 'OK' } = {}): Promise<{ consent: Map<string, { status: ConsentStatus; consentId?: string }>; slots: Array<Map<string, SubjectSlot>> }> {
    const request = { bank: req.bank, purpose: req.purpose, operation: req.operation, categories: req.categories, at: req.at.toISOString() };
    type Out = { codes: Uint8Array; ids: string; slots: Array<{ pos: Int32Array; missing: Record<number, string> }> };
    const chunks: Array<Promise<Out>> = [];
    // A multiple of the pool size in equal chunks, so no worker is left alone with the last one.
    const chunkSize = Math.max(CONSENT_CHUNK_MIN, Math.ceil(subjects.length / (this.pool.size * 8)));
    for (let i = 0; i < subjects.length; i += chunkSize) {
      chunks.push(this.pool.run<Out>({ op: 'consent', dbPath: this.store.dbPath, request, subjects: subjects.slice(i, i + chunkSize), datasets: [...datasetIds], slotsOfOkOnly: opts.slotsOf === 'OK' }));
    }
    const consent = new Map<string, { status: ConsentStatus; consentId?: string }>();
    const slots = datasetIds.map(() => new Map<string, SubjectSlot>());
    const none = new Set<string>();
    (await this.pool.all(chunks)).forEach((r, c) => {
      const ids = r.ids.split('\n');
      r.codes.forEach((code, j) => {
        const status = CONSENT_STATUSES[code]!;
        consent.set(subjects[c * chunkSize + j]!, ids[j] ? { status, consentId: ids[j] } : { status });
      });
      r.slots.forEach(({ pos, missing }, d) => pos.forEach((p, j) => {
        if (p < 0) return;
        const m = missing[j];
        slots[d]!.set(subjects[c * chunkSize + j]!, { block: Math.floor(p / SLOT_STRIDE), slot: p % SLOT_STRIDE, missing: m ? new Set(m.split(';')) : none });
      }));
    });
    return { consent, slots };
  }

  /** Per-subject consent status for a job (DESIGN §6). */
  consentStatuses(req: { bank: string; purpose: string; operation: ConsentOp; categories: string[]; at: Date }, subjects: readonly string[]): Map<string, { status: ConsentStatus; consentId?: string }> {
    const out = new Map<string, { status: ConsentStatus; consentId?: string }>();
    const revQ = this.store.db.prepare('SELECT signed_json FROM revocations WHERE subject = ?');
    for (const s of subjects) {
      const party = this.party(s);
      const candidates = this.consentsOf(s, req.bank);
      const revs = candidates.length ? (revQ.all(s) as Array<{ signed_json: string }>).map((r) => JSON.parse(r.signed_json) as SignedRevocation) : [];
      out.set(s, consentStatus({ subject: s, ...req }, candidates, revs, party?.role === 'enterprise' ? party.ed25519 : undefined));
    }
    return out;
  }

  // ---------------------------------------------------------------- models

  /**
   * Register a bank's model: parse, compile against the current datasets (fields exist and may be scored, bound
   * calculator), vet (anti-extraction), pin its hash. Providers then approve it.
   * @throws SH_ERR_BAD_SIGNATURE, SH_ERR_MODEL_*, SH_ERR_UNKNOWN_FIELD, SH_ERR_BOUND_OVERFLOW, SH_ERR_ALREADY_EXISTS
   */
  registerModel(signed: Signed<ModelRegistration>): CompiledModel {
    const bank = this.requireParty(signed.signer, 'bank');
    requireSignature(signed, bank.ed25519, 'safehouse.model.register.v1', `model registration by ${signed.signer}`);
    if (signed.body.bank !== bank.id) fail('SH_ERR_BAD_SIGNATURE', `registration names bank ${signed.body.bank} but is signed by ${bank.id}`);
    const spec = parseModel(signed.body.model);
    const compiled = compileModel(spec, this.fieldLookup, this.params.t);
    vetModel(compiled, this.policy);
    for (const p of new Set(spec.terms.map((t) => t.provider))) this.requireParty(p, 'provider');
    if (this.store.db.prepare('SELECT 1 FROM models WHERE id = ?').get(spec.id)) fail('SH_ERR_ALREADY_EXISTS', `model ${spec.id} is already registered; register a new version under a new id`, { model: spec.id });
    this.store.transaction(() => {
      this.store.db.prepare('INSERT INTO models (id, bank, kind, spec_json, hash, scale, bound, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)').run(
        spec.id, bank.id, spec.kind, JSON.stringify(spec), compiled.hash, compiled.scale, compiled.bound.toString(), this.now().toISOString());
      this.ledger.append('model.registered', { modelId: spec.id, bank: bank.id, hash: compiled.hash, modelKind: spec.kind, providers: [...new Set(spec.terms.map((t) => t.provider))], signature: signed.signature });
    });
    return compiled;
  }

  model(id: string): { spec: ModelSpec; hash: string; bank: string } | undefined {
    if (typeof id !== 'string') return undefined;
    const r = this.store.db.prepare('SELECT spec_json, hash, bank FROM models WHERE id = ?').get(id) as { spec_json: string; hash: string; bank: string } | undefined;
    return r ? { spec: JSON.parse(r.spec_json) as ModelSpec, hash: r.hash, bank: r.bank } : undefined;
  }

  /** Compile a registered model against the current datasets. @throws SH_ERR_NOT_FOUND and compile errors */
  compiledModel(id: string): CompiledModel {
    const m = this.model(id);
    if (!m) fail('SH_ERR_NOT_FOUND', `no model ${JSON.stringify(id)} is registered`, { model: id });
    const c = compileModel(m.spec, this.fieldLookup, this.params.t);
    if (c.hash !== m.hash) fail('SH_ERR_PARAMS_MISMATCH', `model ${id} hash changed`);
    return c;
  }

  /**
   * Record a provider's signed approval, with the derived bin columns its scorecard terms need.
   * @throws SH_ERR_BAD_SIGNATURE, SH_ERR_NOT_FOUND, SH_ERR_PARAMS_MISMATCH, SH_ERR_MODEL_STALE, SH_ERR_CIPHERTEXT_*
   */
  approveModel(signed: Signed<ApprovalStatement>, blobs: ReadonlyMap<string, Uint8Array>): void {
    const provider = this.requireParty(signed.signer, 'provider');
    requireSignature(signed, provider.ed25519, 'safehouse.approval.v1', `approval by ${signed.signer}`);
    const a = signed.body;
    if (a.provider !== provider.id) fail('SH_ERR_BAD_SIGNATURE', `approval names ${a.provider} but is signed by ${provider.id}`);
    const compiled = this.compiledModel(a.modelId);
    if (compiled.hash !== a.modelHash) fail('SH_ERR_PARAMS_MISMATCH', `approval is for model hash ${a.modelHash.slice(0, 12)}…, registered model is ${compiled.hash.slice(0, 12)}…`);
    const mine = compiled.terms.filter((t) => t.provider === provider.id);
    if (mine.length === 0) fail('SH_ERR_INVALID_ARGUMENT', `model ${a.modelId} does not use provider ${provider.id}`);
    const ds = this.dataset(a.datasetId);
    if (!ds || ds.provider !== provider.id) fail('SH_ERR_NOT_FOUND', `dataset ${a.datasetId} of ${provider.id} not found`);
    const want = new Set<string>();
    compiled.spec.terms.forEach((term, i) => {
      if (term.provider !== provider.id || !isScorecardTerm(term)) return;
      const d = this.datasetWithField(provider.id, term.field);
      if (d?.id !== ds.id) fail('SH_ERR_MODEL_STALE', `approval's dataset ${ds.id} is not the current dataset holding ${term.field}`);
      term.bins.forEach((_, j) => { for (let b = 0; b < ds.blocks; b++) want.add(`${binColumn(compiled.hash, i, j)}#${b}`); });
    });
    for (const c of a.derived) {
      if (!want.delete(`${c.column}#${c.block}`)) fail('SH_ERR_INVALID_ARGUMENT', `derived column ${c.column} block ${c.block} is not expected`);
      const b = blobs.get(c.blob);
      if (!b) fail('SH_ERR_INVALID_ARGUMENT', `derived column blob ${c.blob} is not in the upload`);
      if (b.length > this.params.maxCiphertextBytes) fail('SH_ERR_CIPHERTEXT_SIZE', `derived column ${c.column}: ${b.length} bytes exceeds the cap`);
      if (sha256Hex(b) !== c.blob) fail('SH_ERR_CIPHERTEXT_INVALID', `derived column ${c.column}: bytes do not hash to ${c.blob}`);
    }
    if (want.size) fail('SH_ERR_INVALID_ARGUMENT', `approval lacks derived columns: ${[...want].slice(0, 3).join(', ')}`);
    this.store.transaction(() => {
      for (const c of a.derived) {
        this.store.putBlob(blobs.get(c.blob)!);
        this.store.db.prepare('INSERT OR REPLACE INTO columns (dataset_id, column_name, block, blob) VALUES (?, ?, ?, ?)').run(ds.id, c.column, c.block, c.blob);
      }
      this.store.db.prepare('INSERT OR REPLACE INTO approvals (model_id, provider, model_hash, signed_json, created_at) VALUES (?, ?, ?, ?, ?)').run(a.modelId, provider.id, a.modelHash, JSON.stringify(signed), this.now().toISOString());
      this.ledger.append('model.approved', { modelId: a.modelId, provider: provider.id, modelHash: a.modelHash, datasetId: ds.id, derivedColumns: a.derived.length, signature: signed.signature });
    });
  }

  approvals(modelId: string): Map<string, string> {
    const rows = this.store.db.prepare('SELECT provider, model_hash FROM approvals WHERE model_id = ?').all(modelId) as Array<{ provider: string; model_hash: string }>;
    return new Map(rows.map((r) => [r.provider, r.model_hash]));
  }

  // ---------------------------------------------------------------- jobs

  newJobId(kind: string): string {
    return `${kind}_${this.now().toISOString().replace(/[-:.TZ]/g, '').slice(0, 14)}_${randomBytes(4).toString('hex')}`;
  }

  /** Random 32-byte job seed; masks derive from it (DESIGN §4.2) and it is escrowed to the auditors. */
  newJobSeed(): Uint8Array {
    return new Uint8Array(randomBytes(32));
  }

  /**
   * Retention (issue 6): delete the replay material of jobs finished more than `days` ago — the blobs their ledger
   * events name (re-randomizers, stored results, training inputs; never dataset columns or keys) — and record in the
   * ledger what was purged. Ledger entries are never deleted; a replay of a purged job reports `missing`.
   * @returns the purged jobs and blob count
   */
  purgeJobBlobs(days: number = this.policy.blobRetentionDays): { jobs: string[]; blobs: number } {
    if (!Number.isFinite(days) || days < 0) fail('SH_ERR_INVALID_ARGUMENT', `"days" expected a number ≥ 0, got ${days}`);
    const cutoff = new Date(this.now().getTime() - days * 86_400_000).toISOString();
    const jobs = (this.store.db.prepare("SELECT id FROM jobs WHERE finished_at IS NOT NULL AND finished_at <= ? AND status != 'purged' ORDER BY finished_at").all(cutoff) as Array<{ id: string }>).map((r) => r.id);
    if (jobs.length === 0) return { jobs, blobs: 0 };
    const kept = new Set((this.store.db.prepare('SELECT blob FROM columns WHERE dataset_id NOT LIKE ?').all('%:labels') as Array<{ blob: string }>).map((r) => r.blob));
    const hashes = new Set<string>();
    const q = this.store.db.prepare('SELECT body FROM ledger_entries WHERE body LIKE ?');
    for (const id of jobs) {
      for (const r of q.all(`%"jobId":${JSON.stringify(id)}%`) as Array<{ body: string }>) {
        const b = JSON.parse(r.body) as Record<string, unknown>;
        if (b.jobId !== id) continue;
        for (const k of ['rerandomizer', 'resultHash', 'ciphertext']) {
          const h = b[k];
          if (typeof h === 'string' && /^[0-9a-f]{64}$/.test(h) && !kept.has(h)) hashes.add(h);
        }
      }
      for (const r of this.store.db.prepare('SELECT blob FROM columns WHERE dataset_id = ? OR column_name LIKE ?').all(`${id}:labels`, `train/${id}/%`) as Array<{ blob: string }>) hashes.add(r.blob);
    }
    const purged = [...hashes].filter((h) => existsSync(this.store.blobPath(h))).sort();
    this.store.transaction(() => {
      const mark = this.store.db.prepare("UPDATE jobs SET status = 'purged' WHERE id = ?");
      for (const id of jobs) mark.run(id);
      this.ledger.append('retention.purged', { jobs, before: cutoff, blobs: purged.length, blobsHash: sha256Hex(purged.join('\n')) });
    });
    for (const h of purged) this.store.dropBlob(h);
    this.ledger.checkpoint();
    return { jobs, blobs: purged.length };
  }

  /** Ledger verification (auditor): recompute the tree, check every checkpoint signature. */
  auditVerify() {
    return this.ledger.verify();
  }

  /** A fresh X25519 key pair (for parties created by tests and the embedded CLI). */
  static x25519KeyPair = x25519KeyPair;
}

function toDataset(r: Record<string, string | number>): DatasetRecord {
  return {
    id: r.id as string, provider: r.provider as string, category: r.category as string, version: r.version as number,
    schema: JSON.parse(r.schema_json as string) as DatasetSchema, subjects: r.subjects as number, blocks: r.blocks as number,
    stats: JSON.parse(r.stats_json as string) as UploadManifest['stats'],
  };
}

function parseSubjectIndex(bytes: Uint8Array, slots: number, schema: DatasetSchema): Array<{ uscc: string; block: number; slot: number; missing: string }> {
  let rows: unknown;
  try {
    rows = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    return fail('SH_ERR_INVALID_ARGUMENT', 'subject index is not valid JSON', {}, err);
  }
  if (!Array.isArray(rows)) fail('SH_ERR_INVALID_ARGUMENT', 'subject index expected an array');
  const names = new Set(schema.fields.map((f) => f.name));
  const seen = new Set<string>();
  return rows.map((r: unknown, i: number) => {
    if (!Array.isArray(r) || r.length !== 4) fail('SH_ERR_INVALID_ARGUMENT', `subject index row ${i} expected [uscc, block, slot, missing]`);
    const [u, block, slot, missing] = r as [string, number, number, string];
    const uscc = parseUscc(u);
    if (seen.has(uscc)) fail('SH_ERR_CSV_DUPLICATE_SUBJECT', `subject ${uscc} appears twice in the index`);
    seen.add(uscc);
    if (block !== Math.floor(i / slots) || slot !== i % slots) fail('SH_ERR_INVALID_ARGUMENT', `subject index row ${i} has position (${block}, ${slot}), expected (${Math.floor(i / slots)}, ${i % slots})`);
    if (typeof missing !== 'string' || (missing && missing.split(';').some((f) => !names.has(f)))) fail('SH_ERR_INVALID_ARGUMENT', `subject index row ${i} names unknown missing fields`);
    return { uscc, block, slot, missing };
  });
}
