/**
 * Piscina worker (DESIGN §9): loads SEAL once, caches the context, BlockOps and keys by hash, and runs one block task
 * at a time. Tasks carry file paths + hashes for stored ciphertexts (the worker verifies the hash before SEAL sees a
 * byte) and serialized results come back as transferable buffers.
 */
import { move, transferableSymbol, valueSymbol, workerData } from 'piscina';
import { createHash } from 'node:crypto';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { Ciphertext, PublicKey, SecretKey, Encryptor, Decryptor } from 'node-seal';
import { toSlot } from '../../core/fixed.ts';
import { heContext, paramSet, SLOT_STRIDE } from '../he/params.ts';
import { BlockOps } from '../he/block.ts';
import { maskVector } from '../he/mask.ts';
import { readBlobVerified, SUBJECT_SLOTS_SQL } from '../store/store.ts';
import { sealMemoryBytes } from '../he/seal.ts';
import { SafehouseError } from '../../core/errors.ts';
import { consentStatus, CONSENT_STATUSES, type ConsentOp, type SignedConsent, type SignedRevocation } from '../../sandbox/consent.ts';
import { hexToBytes } from '../../core/sign.ts';
import { checkedDecrypt } from '../custodian/custodian.ts';
import { evaluateTokens, blindInputs, evaluateBlinded, finalizeTokens, type Blinded } from '../tokens/oprf.ts';

const ops = new Map<string, Promise<BlockOps>>();
const publicKeys = new Map<string, PublicKey>();
const encryptors = new Map<string, Encryptor>();

async function blockOps(paramsId: string): Promise<BlockOps> {
  let o = ops.get(paramsId);
  if (!o) {
    o = heContext(paramSet(paramsId)).then((he) => new BlockOps(he));
    ops.set(paramsId, o);
  }
  return o;
}

export interface EvalBlockTask {
  op: 'evalBlock';
  paramsId: string;
  /** The key holder's BFV public key, as a stored blob. */
  publicKey: { path: string; hash: string };
  columns: Array<{ path: string; hash: string; multiplier: string }>;
  /** Mask key (DESIGN §4.2); the mask vector is added before re-randomization. */
  maskKey: Uint8Array;
  /** Auditor replay: add this logged encryption of zero instead of a fresh one. */
  rerandomizer?: Uint8Array;
}

export interface EncryptTask {
  op: 'encrypt';
  paramsId: string;
  /** The provider's serialized BFV secret key (provider-side pools only) — symmetric, seeded encryption halves size. */
  secretKey: Uint8Array;
  values: BigUint64Array;
}

/** Masked comparison block (DESIGN §5 verification): Enc(m ⊙ x + o), then re-randomized for transfer. */
export interface CompareBlockTask {
  op: 'compareBlock';
  paramsId: string;
  publicKey: { path: string; hash: string };
  column: { path: string; hash: string };
  /** Per-slot multiplier r·d mod t (0 for unused slots). */
  multipliers: BigUint64Array;
  /** Per-slot offset r' − r·d·c mod t (uniform for unused slots). */
  offsets: BigUint64Array;
  /** Auditor replay: add this logged encryption of zero instead of a fresh one. */
  rerandomizer?: Uint8Array;
}

/** RFC 9497 POPRF work (engine/tokens/oprf.ts), moved off the main thread: ~2.3 ms per element on P-256. */
export type OprfTask =
  | { op: 'oprf'; fn: 'evaluate'; secretKey: Uint8Array; info: Uint8Array; inputs: Uint8Array[] }
  | { op: 'oprf'; fn: 'blind'; publicKey: Uint8Array; info: Uint8Array; inputs: Uint8Array[]; blindKey?: Uint8Array }
  | { op: 'oprf'; fn: 'evaluateBlinded'; secretKey: Uint8Array; info: Uint8Array; blinded: Uint8Array[] }
  | { op: 'oprf'; fn: 'finalize'; publicKey: Uint8Array; info: Uint8Array; inputs: Uint8Array[]; blinded: Blinded[]; evaluated: Uint8Array[]; proof: Uint8Array };

/**
 * Joint-training gradient block (DESIGN §5): D = Σ W_b·X_b + L + W0·T (L = the bank's Enc(s·(2 − 4y)), T the cohort
 * indicator), then D and each X_b ⊙ D, every one masked, re-randomized and switched down for a `sum` decryption.
 */
export interface GradBlockTask {
  op: 'gradBlock';
  paramsId: string;
  publicKey: { path: string; hash: string };
  columns: Array<{ path: string; hash: string }>;
  labels: { path: string; hash: string };
  weights: string[];
  intercept: string;
  cohort: BigUint64Array;
  /** Whether to return D itself (for G_0), and which products X_b·D to return (tasks of one block split the columns). */
  withD: boolean;
  products: number[];
  /** One mask key per output, in output order: [D (if withD), X_b·D for b in products]. */
  maskKeys: Uint8Array[];
}

/** Domain transfer, engine side: mask a stored column under its owner's key for transfer, or remove a moved mask. */
export type TransferTask =
  | { op: 'maskForTransfer'; paramsId: string; publicKey: { path: string; hash: string }; column: { path: string; hash: string }; maskKey: Uint8Array }
  | { op: 'subtractVector'; paramsId: string; ciphertexts: Uint8Array[]; values: BigUint64Array };

/**
 * Consent checks for a chunk of subjects (DESIGN §6): the worker reads each subject's registered key, consents to the
 * bank and revocations from the engine's database (read-only connection) and judges them with `consentStatus`,
 * Ed25519 signature checks included — the per-subject part of a large job, spread over the pool.
 */
export interface ConsentTask {
  op: 'consent';
  dbPath: string;
  request: { bank: string; purpose: string; operation: ConsentOp; categories: string[]; at: string };
  subjects: string[];
  /** Also each subject's [block, slot, missing fields] in each of these datasets (null where it has no row). */
  datasets: string[];
  /** Slots only for subjects whose status is OK (null for the others). */
  slotsOfOkOnly?: boolean;
}

/**
 * Custodian decryption in the provider's own pool (never the engine's): the provider's secret key, the ciphertext the
 * custodian already hash-checked against the signed request; checks as `checkedDecrypt`, returns the decoded slots.
 */
export interface DecryptTask {
  op: 'decrypt';
  paramsId: string;
  /** The custodian's key in shared memory (not copied per task); loaded into SEAL once per worker, by `keyHash`. */
  secretKey: Uint8Array;
  keyHash: string;
  ciphertext: Uint8Array;
  label: string;
  maxSize: number;
}

/** Load SEAL and the parameter set's context in this worker now, not inside the first job. */
export interface WarmTask { op: 'warm'; paramsId: string }

export type Task = WarmTask | DecryptTask | EvalBlockTask | EncryptTask | CompareBlockTask | OprfTask | GradBlockTask | TransferTask | ConsentTask;

export interface TaskError { error: { code: string; message: string; details: Record<string, unknown> } }

/** This worker's slot in the pool's shared memory-telemetry array (pool.ts `wasmBytes`). */
const telemetry = (workerData as { memory?: Int32Array } | undefined)?.memory;
const telemetrySlot = telemetry ? Atomics.add(telemetry, 0, 1) + 1 : 0;

export default async function run(task: Task): Promise<unknown> {
  try {
    return await runTask(task);
  } finally {
    if (telemetry && telemetrySlot < telemetry.length) Atomics.store(telemetry, telemetrySlot, Math.ceil(sealMemoryBytes() / 65536));
  }
}

async function runTask(task: Task): Promise<unknown> {
  try {
    switch (task.op) {
      case 'evalBlock':
        return await evalBlock(task);
      case 'encrypt':
        return await encrypt(task);
      case 'compareBlock':
        return await compareBlock(task);
      case 'oprf':
        return oprf(task);
      case 'decrypt': {
        const o = await blockOps(task.paramsId);
        const values = checkedDecrypt(o, decryptorFor(o, task.secretKey, task.keyHash), o.he.params, task.ciphertext, task.label, task.maxSize);
        return move(values as never);
      }
      case 'warm':
        await blockOps(task.paramsId);
        return true;
      case 'consent':
        return consentChunk(task);
      case 'gradBlock':
        return await gradBlock(task);
      case 'maskForTransfer': {
        const o = await blockOps(task.paramsId);
        const pk = await publicKeyFor(o, task.publicKey);
        const ct = o.load(readBlobVerified(task.column.path, task.column.hash), 'column for transfer');
        try {
          o.addVector(ct, maskVector(task.maskKey, o.he.params.t, o.slots));
          o.rerandomizeForTransfer(ct, pk);
          return move(o.save(ct));
        } finally {
          ct.delete();
        }
      }
      case 'subtractVector': {
        const o = await blockOps(task.paramsId);
        const cts = task.ciphertexts.map((b) => o.load(b, 'transferred ciphertext'));
        try {
          const t = o.he.params.t;
          for (const c of cts.slice(1)) o.evaluator.addInplace(cts[0]!, c);
          o.addVector(cts[0]!, task.values.map((v) => (v === 0n ? 0n : t - v)));
          return move(o.save(cts[0]!));
        } finally {
          for (const c of cts) c.delete();
        }
      }
      default:
        throw new Error(`unknown task ${(task as { op: string }).op}`);
    }
  } catch (err) {
    // Coded errors cross the thread boundary as plain data and are rebuilt by the pool.
    if (err instanceof SafehouseError) return { error: { code: err.code, message: err.message, details: { ...err.details } } } satisfies TaskError;
    if (err instanceof Error) throw err;
    // WASM exceptions and other non-Error values cannot be structured-cloned: report them as coded internal errors.
    return { error: { code: 'SH_ERR_INTERNAL', message: `worker task ${task.op} failed: ${String(err)}`, details: {} } } satisfies TaskError;
  }
}

async function evalBlock(task: EvalBlockTask): Promise<unknown> {
  const o = await blockOps(task.paramsId);
  const pk = await publicKeyFor(o, task.publicKey);
  const cts = task.columns.map((c) => o.load(readBlobVerified(c.path, c.hash), `column ${c.hash.slice(0, 12)}`));
  try {
    const acc = o.linear(cts.map((ct, i) => ({ ct, multiplier: BigInt(task.columns[i]!.multiplier) })));
    try {
      o.addVector(acc, maskVector(task.maskKey, o.he.params.t, o.slots));
      // The fresh encryption of zero is returned with the result so the engine can log it for replay (issue 6).
      if (task.rerandomizer) {
        o.rerandomizeWith(acc, task.rerandomizer);
        return move(o.save(acc));
      }
      const zero = o.rerandomizeLogged(acc, pk);
      return moveBoth(o.save(acc), zero);
    } finally {
      acc.delete();
    }
  } finally {
    for (const ct of cts) ct.delete();
  }
}

/** `{ ciphertext, rerandomizer }` with both buffers transferred to the caller, not copied (≈ 0.6 MB per block). */
function moveBoth(ciphertext: Uint8Array, rerandomizer: Uint8Array): unknown {
  return move({ [transferableSymbol]: [ciphertext.buffer, rerandomizer.buffer], [valueSymbol]: { ciphertext, rerandomizer } } as never);
}

async function publicKeyFor(o: BlockOps, ref: { path: string; hash: string }): Promise<PublicKey> {
  let pk = publicKeys.get(ref.hash);
  if (!pk) {
    pk = o.loadPublicKey(readBlobVerified(ref.path, ref.hash));
    publicKeys.set(ref.hash, pk);
  }
  return pk;
}

async function compareBlock(task: CompareBlockTask): Promise<unknown> {
  const o = await blockOps(task.paramsId);
  const pk = await publicKeyFor(o, task.publicKey);
  const ct = o.load(readBlobVerified(task.column.path, task.column.hash), `column ${task.column.hash.slice(0, 12)}`);
  try {
    o.multiplyVector(ct, task.multipliers);
    o.addVector(ct, task.offsets);
    // As evalBlock: the fresh encryption of zero is returned for the ledger, or a logged one replayed.
    if (task.rerandomizer) {
      o.rerandomizeWith(ct, task.rerandomizer);
      return move(o.save(ct));
    }
    const zero = o.rerandomizeLogged(ct, pk);
    return moveBoth(o.save(ct), zero);
  } finally {
    ct.delete();
  }
}

const databases = new Map<string, { db: DatabaseSync; keys: StatementSync; consents: StatementSync; revocations: StatementSync; slots: StatementSync }>();

function consentChunk(task: ConsentTask): unknown {
  let d = databases.get(task.dbPath);
  if (!d) {
    const db = new DatabaseSync(task.dbPath, { readOnly: true });
    db.exec('PRAGMA cache_size = -32768;');
    d = {
      db,
      keys: db.prepare("SELECT p.id, p.ed25519_pub FROM json_each(?) AS j CROSS JOIN parties AS p ON p.id = j.value WHERE p.role = 'enterprise'"),
      // The subject list drives each loop (CROSS JOIN: index lookups, never a scan per chunk). Consents in rowid order,
      // as the engine's one-subject query reads them (consentStatus takes the first that fits).
      consents: db.prepare('SELECT c.subject, c.signed_json FROM json_each(?) AS j CROSS JOIN consents AS c ON c.subject = j.value AND c.grantee = ? ORDER BY c.rowid'),
      revocations: db.prepare('SELECT r.subject, r.signed_json FROM json_each(?) AS j CROSS JOIN revocations AS r ON r.subject = j.value'),
      slots: db.prepare(SUBJECT_SLOTS_SQL),
    };
    databases.set(task.dbPath, d);
  }
  const list = JSON.stringify(task.subjects);
  const keys = new Map((d.keys.all(list) as Array<{ id: string; ed25519_pub: string }>).map((r) => [r.id, r.ed25519_pub]));
  const consents = new Map<string, SignedConsent[]>();
  for (const r of d.consents.all(list, task.request.bank) as Array<{ subject: string; signed_json: string }>) {
    const l = consents.get(r.subject);
    if (l) l.push(JSON.parse(r.signed_json) as SignedConsent);
    else consents.set(r.subject, [JSON.parse(r.signed_json) as SignedConsent]);
  }
  const revs = new Map<string, SignedRevocation[]>();
  for (const r of d.revocations.all(list) as Array<{ subject: string; signed_json: string }>) {
    if (!consents.has(r.subject)) continue;
    const l = revs.get(r.subject);
    if (l) l.push(JSON.parse(r.signed_json) as SignedRevocation);
    else revs.set(r.subject, [JSON.parse(r.signed_json) as SignedRevocation]);
  }
  const r = task.request;
  const req = { bank: r.bank, purpose: r.purpose, operation: r.operation, categories: r.categories, at: new Date(r.at) };
  const statuses = task.subjects.map((s) => {
    const key = keys.get(s);
    return consentStatus({ subject: s, ...req }, consents.get(s) ?? [], revs.get(s) ?? [], key === undefined ? undefined : hexToBytes(key));
  });
  // Compact answer (typed arrays are transferred, not cloned object by object on the engine's thread).
  const codes = Uint8Array.from(statuses, (st) => CONSENT_STATUSES.indexOf(st.status));
  const ids = statuses.map((st) => st.consentId ?? '').join('\n');
  const slots = task.datasets.map((ds) => {
    const pos = new Int32Array(task.subjects.length).fill(-1);
    const missing: Record<number, string> = {};
    const index = new Map(task.subjects.map((s, k) => [s, k]));
    for (const r of d.slots.all(list, ds) as Array<{ uscc: string; block: number; slot: number; missing: string }>) {
      const k = index.get(r.uscc)!;
      if (task.slotsOfOkOnly && codes[k] !== 0) continue;
      pos[k] = r.block * SLOT_STRIDE + r.slot;
      if (r.missing) missing[k] = r.missing;
    }
    return { pos, missing };
  });
  return move({ [transferableSymbol]: [codes.buffer, ...slots.map((x) => x.pos.buffer)], [valueSymbol]: { codes, ids, slots } } as never);
}

const ciphertexts = new Map<string, Ciphertext>();
const MAX_CACHED_CIPHERTEXTS = 256; // ~430 KB each in WASM memory: ≤ ~110 MB per worker

/**
 * A stored ciphertext, loaded once per worker (hash-verified on first load). Beyond the cap the oldest entries not
 * `pinned` by the running task are freed (a task needing more than the cap keeps all of its own).
 */
function cachedCiphertext(o: BlockOps, ref: { path: string; hash: string }, what: string, pinned: ReadonlySet<string>): Ciphertext {
  let ct = ciphertexts.get(ref.hash);
  if (!ct) {
    ct = o.load(readBlobVerified(ref.path, ref.hash), `${what} ${ref.hash.slice(0, 12)}`);
    for (const [hash, old] of ciphertexts) {
      if (ciphertexts.size < MAX_CACHED_CIPHERTEXTS) break;
      if (pinned.has(hash)) continue;
      ciphertexts.delete(hash);
      old.delete();
    }
    ciphertexts.set(ref.hash, ct);
  }
  return ct;
}

async function gradBlock(task: GradBlockTask): Promise<unknown> {
  const o = await blockOps(task.paramsId);
  const pk = await publicKeyFor(o, task.publicKey);
  const t = o.he.params.t;
  // Training reads the same columns and labels every iteration: keep them loaded (content-addressed, so a cached
  // ciphertext is exactly the verified blob). Measured on German Credit: 1.10 → 1.02 s per iteration.
  const pinned = new Set([task.labels.hash, ...task.columns.map((c) => c.hash)]);
  const xs = task.columns.map((c) => cachedCiphertext(o, c, 'training column', pinned));
  const labels = cachedCiphertext(o, task.labels, 'label ciphertext', pinned);
  const out: Uint8Array[] = [];
  try {
    const terms = xs.map((ct, i) => ({ ct, multiplier: BigInt(task.weights[i]!) })).filter((x) => x.multiplier !== 0n);
    // copy(), not clone(): embind clone() is another handle to the same ciphertext, which D is about to change.
    const d = terms.length ? o.linear(terms) : labels.copy();
    try {
      if (terms.length) o.evaluator.addInplace(d, labels);
      const w0 = BigInt(task.intercept);
      if (w0 !== 0n) o.addVector(d, task.cohort.map((v) => (v ? toSlot(w0, t) : 0n)));
      const emit = (ct: Ciphertext, k: number) => {
        o.addVector(ct, maskVector(task.maskKeys[k]!, t, o.slots));
        o.rerandomizeForTransfer(ct, pk);
        out.push(o.save(ct));
      };
      const first = task.withD ? 1 : 0;
      task.products.forEach((b, k) => {
        const p = o.multiply(xs[b]!, d);
        try {
          emit(p, first + k);
        } finally {
          p.delete();
        }
      });
      if (task.withD) {
        emit(d, 0);
        out.unshift(out.pop()!);
      }
    } finally {
      d.delete();
    }
  } finally {
    // xs and labels belong to the cache.
  }
  return out; // structured-cloned: one copy of ~0.3 MB per product
}

function oprf(task: OprfTask): unknown {
  switch (task.fn) {
    case 'evaluate':
      return evaluateTokens(task.secretKey, task.info, task.inputs);
    case 'blind':
      return blindInputs(task.publicKey, task.info, task.inputs, task.blindKey);
    case 'evaluateBlinded':
      return evaluateBlinded(task.secretKey, task.info, task.blinded);
    case 'finalize':
      return finalizeTokens(task.inputs, task.blinded, task.evaluated, task.proof, task.publicKey, task.info);
  }
}

const decryptors = new Map<string, Decryptor>();

/** A Decryptor per secret key, kept for the worker's life like the encryptors; the key is hashed only when first loaded. */
function decryptorFor(o: BlockOps, secretKey: Uint8Array, keyHash: string): Decryptor {
  let d = decryptors.get(keyHash);
  if (!d) {
    if (createHash('sha256').update(secretKey).digest('hex') !== keyHash) throw new SafehouseError('SH_ERR_INVALID_ARGUMENT', 'decrypt task: the secret key does not match its hash');
    const sk = o.loadSecretKey(secretKey);
    d = new o.he.seal.Decryptor(o.he.context, sk);
    sk.delete();
    decryptors.set(keyHash, d);
  }
  return d;
}

async function encrypt(task: EncryptTask): Promise<unknown> {
  const o = await blockOps(task.paramsId);
  const keyHash = createHash('sha256').update(task.secretKey).digest('hex');
  let enc = encryptors.get(keyHash);
  if (!enc) {
    const sk: SecretKey = o.loadSecretKey(task.secretKey);
    const kg = new o.he.seal.KeyGenerator(o.he.context, sk);
    const pk = kg.createPublicKey();
    enc = new o.he.seal.Encryptor(o.he.context, pk, sk);
    pk.delete();
    kg.delete();
    sk.delete();
    encryptors.set(keyHash, enc);
  }
  const pt = o.encode(task.values);
  try {
    const ser = enc.encryptSymmetricSerializable(pt);
    try {
      return move(ser.saveToArray(o.he.seal.ComprModeType.zstd) as Uint8Array);
    } finally {
      ser.delete();
    }
  } finally {
    pt.delete();
    task.secretKey.fill(0);
  }
}
