/**
 * Piscina worker (DESIGN §9): loads SEAL once, caches the context, BlockOps and keys by hash, and runs one block task
 * at a time. Tasks carry file paths + hashes for stored ciphertexts (the worker verifies the hash before SEAL sees a
 * byte) and serialized results come back as transferable buffers.
 */
import { move } from 'piscina';
import { createHash } from 'node:crypto';
import type { PublicKey, SecretKey, Encryptor } from 'node-seal';
import { heContext, paramSet } from '../he/params.ts';
import { BlockOps } from '../he/block.ts';
import { maskVector } from '../he/mask.ts';
import { readBlobVerified } from '../store/store.ts';
import { SafehouseError } from '../errors.ts';
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
}

/** RFC 9497 POPRF work (engine/tokens/oprf.ts), moved off the main thread: ~2.3 ms per element on P-256. */
export type OprfTask =
  | { op: 'oprf'; fn: 'evaluate'; secretKey: Uint8Array; info: Uint8Array; inputs: Uint8Array[] }
  | { op: 'oprf'; fn: 'blind'; publicKey: Uint8Array; info: Uint8Array; inputs: Uint8Array[] }
  | { op: 'oprf'; fn: 'evaluateBlinded'; secretKey: Uint8Array; info: Uint8Array; blinded: Uint8Array[] }
  | { op: 'oprf'; fn: 'finalize'; publicKey: Uint8Array; info: Uint8Array; inputs: Uint8Array[]; blinded: Blinded[]; evaluated: Uint8Array[]; proof: Uint8Array };

export type Task = EvalBlockTask | EncryptTask | CompareBlockTask | OprfTask;

export interface TaskError { error: { code: string; message: string; details: Record<string, unknown> } }

export default async function run(task: Task): Promise<unknown> {
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
      default:
        throw new Error(`unknown task ${(task as { op: string }).op}`);
    }
  } catch (err) {
    // Coded errors cross the thread boundary as plain data and are rebuilt by the pool.
    if (err instanceof SafehouseError) return { error: { code: err.code, message: err.message, details: { ...err.details } } } satisfies TaskError;
    throw err;
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
      o.rerandomizeForTransfer(acc, pk);
      const bytes = o.save(acc);
      return move(bytes);
    } finally {
      acc.delete();
    }
  } finally {
    for (const ct of cts) ct.delete();
  }
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
    o.rerandomizeForTransfer(ct, pk);
    return move(o.save(ct));
  } finally {
    ct.delete();
  }
}

function oprf(task: OprfTask): unknown {
  switch (task.fn) {
    case 'evaluate':
      return evaluateTokens(task.secretKey, task.info, task.inputs);
    case 'blind':
      return blindInputs(task.publicKey, task.info, task.inputs);
    case 'evaluateBlinded':
      return evaluateBlinded(task.secretKey, task.info, task.blinded);
    case 'finalize':
      return finalizeTokens(task.inputs, task.blinded, task.evaluated, task.proof, task.publicKey, task.info);
  }
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
