/**
 * Micro-suite: the cost of each cryptographic operation the protocols are built from, measured with
 * benchmark.js on this machine in this run. The end-to-end runs count how many of each operation a job minimally
 * needs; `bound = Σ count × cost` is then the time a perfect engine would spend on cryptography alone, and the
 * engine's time ÷ bound is its overhead (bench/run.ts).
 *
 * Every case times the library call itself (node-seal, @noble/curves, node:crypto), not the engine's wrapper:
 *  - SEAL at the federation parameters (bfv-8192-t40-v1: N = 8192, BFVDefault(8192), 40-bit batching t), operands at
 *    the level the protocols use them (fresh ciphertexts for evaluation, the transfer level for decryption);
 *  - RFC 9497 P256-SHA256 POPRF: Blind per element, BlindEvaluate and Finalize batched (one DLEQ proof per batch of
 *    `OPRF_BATCH`), reported per element;
 *  - Ed25519 sign / verify through node:crypto on a consent-sized statement (what the engine uses), noble for scale;
 *  - X25519 sealed box (ephemeral DH + HKDF-SHA256 + AES-256-GCM) of one 8192-slot vector (64 KiB);
 *  - SHA-256 RFC 6962 leaf (0x00 ‖ ~300-byte body) and node (0x01 ‖ 64 bytes) hashing.
 *
 * Standalone: `node bench/micro.ts [--quick]` prints the table and the cost map as JSON (BENCH_MICRO_JSON=path writes it).
 * Longer than 400 lines: one benchmark.js suite whose cases share the keys, ciphertexts and vectors built at its
 * start.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  sign as nodeSign,
  verify as nodeVerify,
  randomBytes,
} from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Ciphertext } from 'node-seal';
import { ed25519 } from '@noble/curves/ed25519.js';
import { p256_oprf } from '@noble/curves/nist.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { heContext, BFV_8192_T40 } from '../engine/he/params.ts';
import { BlockOps, generateBfvKeys } from '../engine/he/block.ts';
import { toSlot } from '../core/fixed.ts';
import { sha256Hex } from '../core/hash.ts';
import { readBlobVerified } from '../engine/store/store.ts';
import { x25519KeyPair, sealTo, openSealed } from '../core/sealbox.ts';
import { generateOprfKeyPair, tokenInfo } from '../engine/tokens/oprf.ts';
import { mulberry32 } from '../core/rng.ts';
import { formatTable, fmt, runBenchmarks, type BenchCase, type BenchResult } from './report.ts';

/** Elements per OPRF batch (one DLEQ proof each); the verification job batches per provider and field. */
export const OPRF_BATCH = 256;

/** Operation names used as keys of `costs` and of every end-to-end run's `ops` counts. */
export const OP_NAMES = [
  'seal.encode',
  'seal.decode',
  'seal.encrypt',
  'seal.encryptZero',
  'seal.encryptSymmetric',
  'seal.multiplyPlainConst',
  'seal.multiplyPlainVector',
  'seal.add',
  'seal.addPlain',
  'seal.multiply',
  'seal.multiplyRelin',
  'seal.modSwitchToTransfer',
  'seal.decrypt',
  'seal.decrypt3',
  'seal.load',
  'seal.save',
  'oprf.blind',
  'oprf.evaluate',
  'oprf.finalize',
  'ed25519.sign',
  'ed25519.verify',
  'x25519.seal',
  'x25519.open',
  'sha256.leaf',
  'sha256.node',
] as const;
export type OpName = (typeof OP_NAMES)[number];

export interface MicroReport {
  paramsId: string;
  oprfBatch: number;
  maxTimeSeconds: number;
  /** Milliseconds per operation (per element for OPRF). */
  costs: Record<OpName, number>;
  results: BenchResult[];
}

export async function runMicro(
  opts: { maxTime?: number; minSamples?: number; log?: (line: string) => void } = {},
): Promise<MicroReport> {
  const log = opts.log ?? ((line: string) => console.log(line));
  const maxTime = opts.maxTime ?? Number(process.env.BENCH_MAX_TIME ?? 1);
  const minSamples = opts.minSamples ?? 5;
  const he = await heContext(BFV_8192_T40);
  const { seal, context, params } = he;
  const ops = new BlockOps(he);
  const keys = generateBfvKeys(he);
  const pk = ops.loadPublicKey(keys.publicKey);
  const sk = ops.loadSecretKey(keys.secretKey);
  const kg = new seal.KeyGenerator(context, sk);
  const relin = kg.createRelinKeys();
  const encryptor = new seal.Encryptor(context, pk, sk);
  const decryptor = new seal.Decryptor(context, sk);
  const ev = ops.evaluator;
  const rnd = mulberry32(7);
  const vec = () =>
    BigUint64Array.from({ length: ops.slots }, () => toSlot(BigInt(Math.floor(rnd() * 2 ** 20)), params.t));
  const ptA = ops.encode(vec());
  const ptB = ops.encode(vec());
  const ptConst = ops.constant(1550n);
  const fresh = (pt = ptA): Ciphertext => {
    const c = new seal.Ciphertext();
    encryptor.encryptSymmetric(pt, c);
    return c;
  };
  const a = fresh(ptA);
  const b = fresh(ptB);
  const dest = new seal.Ciphertext();
  const dest3 = new seal.Ciphertext();
  const out = new seal.Plaintext();
  // Transfer level (chain index params.transferChainIndex): what the custodian decrypts.
  const transferParms = (() => {
    let data = context.firstContextData();
    while (data.chainIndex() > params.transferChainIndex) {
      const next = data.nextContextData();
      data.delete();
      data = next;
    }
    const id = data.parmsId();
    data.delete();
    return id;
  })();
  // A stored column as a provider uploads it (symmetric, seeded, zstd) in a blob file: what a job reads per column.
  const storedDir = mkdtempSync(join(tmpdir(), 'safehouse-micro-'));
  const stored = (() => {
    const ser = encryptor.encryptSymmetricSerializable(ptA);
    try {
      return ser.saveToArray(seal.ComprModeType.zstd) as Uint8Array;
    } finally {
      ser.delete();
    }
  })();
  const storedRef = { path: join(storedDir, 'column'), hash: sha256Hex(stored) };
  writeFileSync(storedRef.path, stored);
  const atTransfer = new seal.Ciphertext();
  ev.cipherModSwitchTo(a, transferParms, atTransfer);
  const product = new seal.Ciphertext();
  ev.multiply(a, b, product);
  const product3 = new seal.Ciphertext();
  ev.cipherModSwitchTo(product, transferParms, product3);
  // Sanity: the operands decrypt to what they should (a benchmark of a broken pipeline is worse than none).
  decryptor.decrypt(atTransfer, out);
  const back = ops.decode(out);
  const want = ops.decode(ptA);
  for (let i = 0; i < 64; i++)
    if (back[i] !== want[i]) throw new Error('micro: transfer-level decryption does not round-trip');

  // OPRF: a batch of OPRF_BATCH inputs under one key and info.
  const oprfKeys = generateOprfKeyPair();
  const info = tokenInfo('sz_property_registry', 'property_cert_no', 1);
  const poprf = p256_oprf.poprf(info);
  const inputs = Array.from({ length: OPRF_BATCH }, (_, i) =>
    new TextEncoder().encode(
      `91440300MA5${String(i).padStart(7, '0')}|property_cert_no|粤(2020)深圳市不动产权第${String(1000000 + i)}号`,
    ),
  );
  const blinds = inputs.map((x) => poprf.blind(x, oprfKeys.publicKey));
  const evaluated = poprf.blindEvaluateBatch(
    oprfKeys.secretKey,
    blinds.map((x) => x.blinded),
  );
  const finalizeItems = inputs.map((input, i) => ({
    input,
    blind: blinds[i]!.blind,
    blinded: blinds[i]!.blinded,
    evaluated: evaluated.evaluated[i]!,
  }));
  const tweaked = blinds[0]!.tweakedKey;
  const tokens = poprf.finalizeBatch(finalizeItems, evaluated.proof, tweaked);
  if (tokens.length !== OPRF_BATCH) throw new Error('micro: OPRF batch did not finalize');

  // Ed25519: a consent-sized statement (RFC 8785 JSON, ~420 bytes).
  const statement = new TextEncoder().encode(
    JSON.stringify({
      type: 'safehouse.consent.v1',
      id: 'c'.repeat(64),
      subject: '91440300MA5F000001',
      grantee: 'bank_icbc_sz',
      purpose: 'sme_credit_line',
      categories: ['housing_fund', 'property', 'tax', 'utilities'],
      operations: ['score', 'verify'],
      notBefore: '2026-11-23T00:00:00.000Z',
      notAfter: '2027-11-23T00:00:00.000Z',
      nonce: '0'.repeat(32),
    }),
  );
  const edSeed = new Uint8Array(randomBytes(32));
  const edPriv = createPrivateKey({
    key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), edSeed]),
    format: 'der',
    type: 'pkcs8',
  });
  const edPub = createPublicKey(edPriv);
  const edSig = nodeSign(null, statement, edPriv);
  if (!nodeVerify(null, statement, edPub, edSig)) throw new Error('micro: Ed25519 does not verify');
  const edPubRaw = ed25519.getPublicKey(edSeed);
  // Verification from the 32-byte encoded key (RFC 8032 §5.1.7 step 1 decodes A): each subject has its own key, so
  // the engine imports a key per consent. 64 distinct signers, cycled.
  const SPKI = Buffer.from('302a300506032b6570032100', 'hex');
  const signers = Array.from({ length: 64 }, () => {
    const seed = randomBytes(32);
    const priv = createPrivateKey({
      key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]),
      format: 'der',
      type: 'pkcs8',
    });
    const der = createPublicKey(priv).export({ format: 'der', type: 'spki' });
    return { der: Buffer.concat([SPKI, der.subarray(SPKI.length)]), sig: nodeSign(null, statement, priv) };
  });
  let signer = 0;

  const bank = x25519KeyPair();
  const vector = new Uint8Array(ops.slots * 8).fill(7);
  const box = sealTo(bank.publicKey, vector, { jobId: 'j' });
  const leaf = new Uint8Array(301).fill(0x41);
  leaf[0] = 0;
  const nodeIn = new Uint8Array(65).fill(0x42);
  nodeIn[0] = 1;

  const cases: BenchCase[] = [
    {
      name: 'seal.encode',
      group: 'seal',
      fn: () => {
        ops.encoder.encode(want, out);
      },
    },
    {
      name: 'seal.decode',
      group: 'seal',
      fn: () => {
        ops.encoder.decodeBigUint64(ptA);
      },
    },
    {
      name: 'seal.encrypt',
      group: 'seal',
      fn: () => {
        encryptor.encrypt(ptA, dest);
      },
      note: 'public key, full vector',
    },
    {
      name: 'seal.encryptZero',
      group: 'seal',
      fn: () => {
        encryptor.encryptZero(dest);
      },
      note: 'public key (re-randomizer)',
    },
    {
      name: 'seal.encryptSymmetric',
      group: 'seal',
      fn: () => {
        encryptor.encryptSymmetric(ptA, dest);
      },
      note: 'secret key (uploads; serialized seeded, half size)',
    },
    {
      name: 'seal.multiplyPlainConst',
      group: 'seal',
      fn: () => {
        ev.multiplyPlain(a, ptConst, dest);
      },
      note: 'one non-zero coefficient',
    },
    {
      name: 'seal.multiplyPlainVector',
      group: 'seal',
      fn: () => {
        ev.multiplyPlain(a, ptB, dest);
      },
    },
    {
      name: 'seal.add',
      group: 'seal',
      fn: () => {
        ev.add(a, b, dest);
      },
    },
    {
      name: 'seal.addPlain',
      group: 'seal',
      fn: () => {
        ev.addPlain(a, ptB, dest);
      },
      note: 'full vector',
    },
    {
      name: 'seal.multiply',
      group: 'seal',
      fn: () => {
        ev.multiply(a, b, dest3);
      },
      note: 'ct × ct, size 3, no relinearization',
    },
    {
      name: 'seal.multiplyRelin',
      group: 'seal',
      fn: () => {
        ev.multiply(a, b, dest3);
        ev.relinearize(dest3, relin, dest);
      },
    },
    {
      name: 'seal.modSwitchToTransfer',
      group: 'seal',
      fn: () => {
        ev.cipherModSwitchTo(a, transferParms, dest);
      },
      note: `fresh → chain index ${params.transferChainIndex}`,
    },
    {
      name: 'seal.decrypt',
      group: 'seal',
      fn: () => {
        decryptor.decrypt(atTransfer, out);
      },
      note: 'size 2 at the transfer level',
    },
    {
      name: 'seal.load',
      group: 'seal',
      fn: () => {
        ops.load(readBlobVerified(storedRef.path, storedRef.hash), 'column').delete();
      },
      note: 'a stored column: read, SHA-256 checked, deserialized',
    },
    {
      name: 'seal.save',
      group: 'seal',
      fn: () => {
        ops.save(atTransfer);
      },
      note: 'serialize (zstd) at the transfer level',
    },
    {
      name: 'seal.decrypt3',
      group: 'seal',
      fn: () => {
        decryptor.decrypt(product3, out);
      },
      note: 'size 3 at the transfer level',
    },
    {
      name: 'oprf.blind',
      group: 'oprf',
      fn: () => {
        poprf.blind(inputs[0]!, oprfKeys.publicKey);
      },
      note: 'per element',
    },
    {
      name: 'oprf.evaluate',
      group: 'oprf',
      fn: () => {
        poprf.blindEvaluateBatch(
          oprfKeys.secretKey,
          blinds.map((x) => x.blinded),
        );
      },
      note: `batch of ${OPRF_BATCH} with one DLEQ proof`,
    },
    {
      name: 'oprf.finalize',
      group: 'oprf',
      fn: () => {
        poprf.finalizeBatch(finalizeItems, evaluated.proof, tweaked);
      },
      note: `batch of ${OPRF_BATCH}, proof verified`,
    },
    {
      name: 'ed25519.sign',
      group: 'ec',
      fn: () => {
        nodeSign(null, statement, edPriv);
      },
      note: 'node:crypto, 420-byte statement',
    },
    {
      name: 'ed25519.verify',
      group: 'ec',
      fn: () => {
        const x = signers[signer++ & 63]!;
        if (!nodeVerify(null, statement, createPublicKey({ key: x.der, format: 'der', type: 'spki' }), x.sig))
          throw new Error('verify');
      },
      note: 'node:crypto, from the 32-byte key (a new signer each time)',
    },
    {
      name: 'ed25519.verify (key cached)',
      group: 'ec',
      fn: () => {
        nodeVerify(null, statement, edPub, edSig);
      },
      note: 'node:crypto, key already imported',
    },
    {
      name: 'ed25519.verify (noble)',
      group: 'ec',
      fn: () => {
        ed25519.verify(edSig, statement, edPubRaw);
      },
      note: 'for scale; the engine uses node:crypto',
    },
    {
      name: 'x25519.seal',
      group: 'ec',
      fn: () => {
        sealTo(bank.publicKey, vector, { jobId: 'j' });
      },
      note: '64 KiB vector: ephemeral X25519 + HKDF + AES-256-GCM',
    },
    {
      name: 'x25519.open',
      group: 'ec',
      fn: () => {
        openSealed(bank.secretKey, box, { jobId: 'j' });
      },
      note: 'X25519 + HKDF + AES-256-GCM',
    },
    {
      name: 'sha256.leaf',
      group: 'hash',
      fn: () => {
        createHash('sha256').update(leaf).digest();
      },
      note: 'node:crypto, 0x00 ‖ 300-byte body',
    },
    {
      name: 'sha256.leaf (noble)',
      group: 'hash',
      fn: () => {
        sha256(leaf);
      },
    },
    {
      name: 'sha256.node',
      group: 'hash',
      fn: () => {
        createHash('sha256').update(nodeIn).digest();
      },
      note: 'node:crypto, 0x01 ‖ 64 bytes',
    },
    {
      name: 'sha256.node (noble)',
      group: 'hash',
      fn: () => {
        sha256(nodeIn);
      },
    },
  ];
  const results = await runBenchmarks(cases, { maxTime, minSamples, log });
  rmSync(storedDir, { recursive: true, force: true });
  const mean = (name: string) => results.find((r) => r.name === name)!.meanMs;
  const costs = Object.fromEntries(OP_NAMES.map((op) => [op, mean(op)])) as Record<OpName, number>;
  for (const op of ['oprf.evaluate', 'oprf.finalize'] as const) costs[op] /= OPRF_BATCH;
  // The cheaper SHA-256 of the two is the bound's price (the bound is what the best available library would cost).
  costs['sha256.leaf'] = Math.min(costs['sha256.leaf'], mean('sha256.leaf (noble)'));
  costs['sha256.node'] = Math.min(costs['sha256.node'], mean('sha256.node (noble)'));

  for (const x of [
    a,
    b,
    dest,
    dest3,
    atTransfer,
    product,
    product3,
    ptA,
    ptB,
    out,
    relin,
    kg,
    encryptor,
    decryptor,
    pk,
    sk,
  ])
    x.delete();
  ops.dispose();
  return { paramsId: params.id, oprfBatch: OPRF_BATCH, maxTimeSeconds: maxTime, costs, results };
}

export function printMicro(r: MicroReport): void {
  console.log(`\nMicro-suite (${r.paramsId}; OPRF per element in batches of ${r.oprfBatch}):\n`);
  console.log(
    formatTable(
      ['op', 'ms per op', '±%', 'samples', 'note'],
      r.results.map((x) => {
        const perElement = x.name === 'oprf.evaluate' || x.name === 'oprf.finalize';
        return [x.name, fmt(perElement ? x.meanMs / r.oprfBatch : x.meanMs), fmt(x.rme, 2), x.samples, x.note ?? ''];
      }),
    ),
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const quick = process.argv.includes('--quick');
  const r = await runMicro({ maxTime: quick ? 0.25 : undefined });
  printMicro(r);
  console.log(JSON.stringify(r.costs, null, 2));
  if (process.env.BENCH_MICRO_JSON) writeFileSync(process.env.BENCH_MICRO_JSON, JSON.stringify(r, null, 2) + '\n');
}
