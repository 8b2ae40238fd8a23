/**
 * Primitive costs for one block (8192 subjects × 6 fields, bfv-8192-t40-v1), benchmark.js:
 *  - raw node-seal operations the engine is built from;
 *  - the engine's own wrappers: BlockOps.linear, the full per-block step of the worker (linear + mask + rerandomize +
 *    save, as engine/pool/worker.ts evalBlock does after loading the columns), the custodian's masked decryption;
 *  - per-subject equivalents: the same weighted sum with the Paillier baseline (bench/paillier.ts, timed one subject
 *    per iteration over a 64-subject sample) and in plaintext bigint.
 * Before timing, the BFV pipeline and the Paillier baseline are checked against the plaintext weighted sums.
 *
 * Standalone: `node bench/primitives.ts` (BENCH_MAX_TIME=seconds per case, default 1).
 * Longer than 400 lines: one block's anatomy, measured step by step on one key set so the steps' costs add up to the
 * whole.
 */
import { trustedLedger } from '../test/helpers/trust.ts';
import type { Ciphertext, Plaintext } from 'node-seal';
import { heContext, BFV_8192_T40 } from '../engine/he/params.ts';
import { BlockOps, generateBfvKeys, type LinearTerm } from '../engine/he/block.ts';
import { deriveMaskKey, maskVector } from '../engine/he/mask.ts';
import { centered, toSlot } from '../core/fixed.ts';
import { CUSTODIAN_RULES } from '../engine/protocols/index.ts';
import { LocalCustodian } from '../engine/custodian/custodian.ts';
import { type DecryptRequest } from '../engine/custodian/messages.ts';
import { ed25519KeyPair, signJson, requireSignature, bytesToHex } from '../core/sign.ts';
import { x25519KeyPair, openSealed, sealTo } from '../core/sealbox.ts';
import { sha256Hex } from '../core/hash.ts';
import { canonicalize } from '../core/jcs.ts';
import { generatePaillierKeys, paillierSelfCheck, Paillier, modPowJs, modPowOpenSsl } from './paillier.ts';
import { runBenchmarks, formatTable, fmt, type BenchCase, type BenchResult, type Ratio } from './report.ts';
import { mulberry32 } from '../core/rng.ts';

/** Signed fixed-point multipliers (scorecard points × 100 scale), two negative; none is ±1 so every term multiplies. */
export const WEIGHTS: readonly bigint[] = [1550n, -2000n, 6000n, 1200n, -3000n, 1425n];
const FIELDS = WEIGHTS.length;
/** Field values are drawn from [0, 2^20): |Σ w·x| ≤ 6·6000·2^20 ≈ 3.8·10^10 < t/2 ≈ 5.5·10^11. */
const VALUE_BITS = 20;
/** Subjects in the Paillier sample (timed one per iteration, reported per subject). */
export const PAILLIER_SAMPLE = 64;

export interface PrimitivesReport {
  config: {
    paramsId: string;
    slots: number;
    fields: number;
    weights: string[];
    valueBits: number;
    paillier: { nBits: number; sample: number; backends: string[] };
    benchmark: { maxTimeSeconds: number; minSamples: number };
  };
  checks: { bfvSlots: number; custodianSlots: number; paillier: number };
  results: BenchResult[];
  perSubjectUs: Record<string, number>;
  ratios: Ratio[];
}

export async function runPrimitives(
  opts: { maxTime?: number; minSamples?: number; log?: (line: string) => void } = {},
): Promise<PrimitivesReport> {
  const log = opts.log ?? ((line: string) => console.log(line));
  const maxTime = opts.maxTime ?? Number(process.env.BENCH_MAX_TIME ?? 1);
  const minSamples = opts.minSamples ?? 5;

  // ---- setup: context, keys, data ---------------------------------------------------------------------------------
  const he = await heContext(BFV_8192_T40);
  const { seal, context, params } = he;
  const t = params.t;
  const ops = new BlockOps(he);
  const slots = ops.slots;
  const keys = generateBfvKeys(he);
  const pk = ops.loadPublicKey(keys.publicKey);
  const sk = ops.loadSecretKey(keys.secretKey);
  const rnd = mulberry32(20261123);
  const columns: bigint[][] = Array.from({ length: FIELDS }, () =>
    Array.from({ length: slots }, () => BigInt(Math.floor(rnd() * 2 ** VALUE_BITS))),
  );
  const expected = Array.from({ length: slots }, (_, i) =>
    columns.reduce((acc, col, f) => acc + WEIGHTS[f]! * col[i]!, 0n),
  );

  const toFree: { delete(): void }[] = [];
  const keep = <T extends { delete(): void }>(x: T): T => (toFree.push(x), x);

  // Columns as the engine sees them: provider-side symmetric (seeded) encryption, serialized, loaded by the engine.
  const providerEnc = keep(new seal.Encryptor(context, pk, sk));
  const columnBytes = columns.map((col) => {
    const pt = ops.encode(BigUint64Array.from(col, (x) => toSlot(x, t)));
    const ser = providerEnc.encryptSymmetricSerializable(pt);
    const bytes = ser.saveToArray(seal.ComprModeType.zstd) as Uint8Array;
    ser.delete();
    pt.delete();
    return bytes;
  });
  const cts: Ciphertext[] = columnBytes.map((b, f) => keep(ops.load(b, `column ${f}`)));
  const terms: LinearTerm[] = cts.map((ct, f) => ({ ct, multiplier: WEIGHTS[f]! }));
  const maskKey = deriveMaskKey(new Uint8Array(32).fill(7), 'bench/provider/block/0');
  const mask = maskVector(maskKey, t, slots);

  const engineStep = (): Uint8Array => {
    const acc = ops.linear(terms);
    try {
      ops.addVector(acc, maskVector(maskKey, t, slots));
      ops.rerandomizeForTransfer(acc, pk);
      return ops.save(acc);
    } finally {
      acc.delete();
    }
  };

  // ---- correctness before timing: the timed pipeline computes Σ w·x exactly ----------------------------------------
  const decryptor = keep(new seal.Decryptor(context, sk));
  const transferBytes = engineStep();
  const ctTransfer = keep(ops.load(transferBytes, 'transfer ciphertext'));
  const unmask = (vals: BigUint64Array, what: string): number => {
    for (let i = 0; i < slots; i++) {
      const v = centered(BigInt(vals[i]!) - mask[i]!, t);
      if (v !== expected[i])
        throw new Error(`BFV self-check failed (${what}) at slot ${i}: got ${v}, expected ${expected[i]}`);
    }
    return slots;
  };
  const ptCheck = keep(new seal.Plaintext());
  decryptor.decrypt(ctTransfer, ptCheck);
  const bfvSlots = unmask(ops.decode(ptCheck), 'engine step, raw decrypt');
  const transferBudget = decryptor.invariantNoiseBudget(ctTransfer);

  const engineKeys = ed25519KeyPair();
  const custKeys = ed25519KeyPair();
  const bank = x25519KeyPair();
  const bankSigning = ed25519KeyPair();
  // The custodian answers only for a bank-signed job shown to it, one decryption per label, at most one per subject
  // named: a score job naming enough subjects for every benchmark iteration, each iteration a new label.
  const job = signJson(
    {
      type: 'safehouse.score.request.v1',
      jobId: 'bench-job',
      bank: 'bench_bank',
      modelId: 'bench',
      modelHash: '0'.repeat(64),
      purpose: 'bench',
      subjects: Array.from({ length: 200_000 }, (_, i) => `s${i}`),
      requestedAt: new Date().toISOString(),
    },
    'bench_bank',
    bankSigning.secretKey,
  );
  const ledger = trustedLedger({
    bank: { id: 'bench_bank', ed25519: bankSigning.publicKey, x25519: bank.publicKey },
    jobs: [job],
  });
  const custodian = new LocalCustodian({
    provider: 'bench_provider',
    params,
    keys: {
      bfvSecretKey: keys.secretKey.slice(),
      bfvPublicKey: keys.publicKey,
      ed25519SecretKey: custKeys.secretKey,
      ed25519PublicKey: custKeys.publicKey,
    },
    // The HE cost only: every subject has consent (the custodian's own consent check is a map look-up per subject).
    rules: CUSTODIAN_RULES.map((r) => ({
      ...r,
      verify: undefined,
      allowance: (b, ctx) => r.allowance(b, { ...ctx, consent: () => 'OK' }),
    })),
    enginePublicKey: engineKeys.publicKey,
    trust: ledger.trust,
    // Every slot of the bench dataset holds one of the job's subjects, so the custodian's per-slot check runs and
    // overwrites nothing.
    data: {
      approvedModel: () => true,
      datasetWith: () => 'bench',
      fieldType: () => 'numeric',
      layout: (id) => (id === 'bench' ? (row) => `s${row % 200_000}` : undefined),
      categoryOf: () => 'tax',
      modelFields: () => ['f'],
      partialScore: () => undefined,
    },
    policy: { scoreModelsPerSubject: 1 },
  });
  await custodian.follow(ledger.update);
  await custodian.openJob(job);
  const jobHash = sha256Hex(canonicalize(job));
  let labelNo = 0;
  const decryptRequest = () =>
    signJson<DecryptRequest>(
      {
        type: 'safehouse.custodian.decrypt.v1',
        paramsId: params.id,
        provider: 'bench_provider',
        jobId: 'bench-job',
        jobHash,
        label: `score/bench_provider/bench/block/${labelNo++}`,
        mode: 'seal',
        ciphertext: sha256Hex(transferBytes),
        recipient: { party: 'bench_bank', x25519: bytesToHex(bank.publicKey) },
      },
      'engine',
      engineKeys.secretKey,
    );
  const signedRequest = decryptRequest();
  const request = signedRequest.body;
  const response = await custodian.decrypt(signedRequest, transferBytes);
  const opened = openSealed(bank.secretKey, response.body.sealed!, {
    jobId: request.jobId,
    jobHash: request.jobHash,
    provider: request.provider,
    label: request.label,
    mode: 'seal',
    recipient: 'bench_bank',
  });
  const custodianSlots = unmask(new BigUint64Array(Uint8Array.from(opened).buffer), 'custodian seal mode');

  const { publicKey: ppk, secretKey: psk } = generatePaillierKeys(1024);
  const sampleSubjects = Array.from({ length: PAILLIER_SAMPLE }, (_, i) => columns.map((col) => col[i]!));
  const paillierChecks = paillierSelfCheck(ppk, psk, sampleSubjects.slice(0, 3), WEIGHTS);
  const pJs = new Paillier(ppk, psk, modPowJs);
  const pSsl = new Paillier(ppk, psk, modPowOpenSsl);
  // Setup encryption with the faster backend; ciphertexts are interchangeable.
  const pCts = sampleSubjects.map((xs) => xs.map((x) => pSsl.encrypt(x)));
  const pMasks = sampleSubjects.map(() => BigInt(Math.floor(rnd() * 2 ** 40)));
  log(
    `self-checks passed: BFV engine step ${bfvSlots} slots (noise budget at transfer level ${transferBudget} bits), custodian ${custodianSlots} slots, Paillier ${paillierChecks} checks`,
  );

  // ---- raw SEAL fixtures -------------------------------------------------------------------------------------------
  const encoder = ops.encoder;
  const evaluator = ops.evaluator;
  const encodeFull = (v: BigUint64Array): Plaintext => {
    const pt = keep(new seal.Plaintext());
    encoder.encode(v, pt);
    return pt;
  };
  const constPt = encodeFull(new BigUint64Array(slots).fill(toSlot(WEIGHTS[0]!, t)));
  const maskVec = maskVector(maskKey, t, slots);
  const vecPt = encodeFull(maskVec);
  const scratchPt = keep(new seal.Plaintext());
  const dest = keep(new seal.Ciphertext());
  const dest2 = keep(new seal.Ciphertext());
  const scratch = keep(new seal.Ciphertext());
  const pkEnc = keep(new seal.Encryptor(context, pk));
  const transferParms = keep(ctTransfer.parmsId());
  const constPts = WEIGHTS.map((w) => encodeFull(new BigUint64Array(slots).fill(toSlot(w < 0n ? -w : w, t))));
  const sum = keep(ops.linear(terms));
  const ptDec = keep(new seal.Plaintext());

  let pi = 0;
  const nextSubject = () => (pi = (pi + 1) % PAILLIER_SAMPLE);
  const plainOut: bigint[] = new Array<bigint>(slots);
  const plainOutNum = new Float64Array(slots);
  const weightsNum = Float64Array.from(WEIGHTS, Number);
  const columnsNum = columns.map((col) => Float64Array.from(col, Number));
  const sealedPayload = new Uint8Array(slots * 8);

  const cases: BenchCase[] = [
    // raw node-seal
    {
      group: 'seal',
      name: 'seal multiplyPlain (constant plaintext)',
      fn: () => evaluator.multiplyPlain(cts[0]!, constPt, dest),
    },
    {
      group: 'seal',
      name: 'seal multiplyPlain (full vector plaintext)',
      fn: () => evaluator.multiplyPlain(cts[0]!, vecPt, dest),
    },
    { group: 'seal', name: 'seal add', fn: () => evaluator.add(cts[0]!, cts[1]!, dest) },
    { group: 'seal', name: 'seal addPlain (full vector)', fn: () => evaluator.addPlain(cts[0]!, vecPt, dest) },
    {
      group: 'seal',
      name: 'seal addPlain (full vector) at transfer level',
      note: 'the same mask add after switching down (2 primes instead of 4)',
      fn: () => evaluator.addPlain(ctTransfer, vecPt, dest),
    },
    { group: 'seal', name: 'seal encode (full vector)', fn: () => encoder.encode(maskVec, scratchPt) },
    {
      group: 'seal',
      name: 'seal new Encryptor(publicKey) + delete',
      fn: () => new seal.Encryptor(context, pk).delete(),
    },
    { group: 'seal', name: 'seal encryptZero (public key)', fn: () => pkEnc.encryptZero(dest) },
    {
      group: 'seal',
      name: 'seal encrypt(mask plaintext) (public key)',
      note: 'would replace encryptZero + addPlain of the mask in one call',
      fn: () => pkEnc.encrypt(vecPt, dest),
    },
    {
      group: 'seal',
      name: 'seal modSwitchToNext (fresh level 3→2)',
      fn: () => evaluator.cipherModSwitchToNext(cts[0]!, dest2),
    },
    {
      group: 'seal',
      name: 'seal modSwitchTo transfer level (3→1)',
      fn: () => evaluator.cipherModSwitchTo(sum, transferParms, dest2),
    },
    {
      group: 'seal',
      name: 'seal serialize zstd (transfer level)',
      fn: () => void ctTransfer.saveToArray(seal.ComprModeType.zstd),
    },
    {
      group: 'seal',
      name: 'seal serialize none (transfer level)',
      fn: () => void ctTransfer.saveToArray(seal.ComprModeType.none),
    },
    {
      group: 'seal',
      name: 'raw linear (6 multiplyPlain + 5 add/sub, hand-written)',
      note: 'same sequence as BlockOps.linear with preallocated outputs, no checks',
      fn: () => {
        evaluator.multiplyPlain(cts[0]!, constPts[0]!, dest);
        for (let f = 1; f < FIELDS; f++) {
          const w = WEIGHTS[f]!;
          evaluator.multiplyPlain(cts[f]!, constPts[f]!, dest2);
          if (w < 0n) evaluator.subInplace(dest, dest2);
          else evaluator.addInplace(dest, dest2);
        }
      },
    },
    {
      group: 'seal',
      name: 'seal decrypt + decode (transfer level)',
      fn: () => {
        decryptor.decrypt(ctTransfer, ptDec);
        void encoder.decodeBigUint64(ptDec);
      },
    },
    {
      group: 'seal',
      name: 'seal invariantNoiseBudget (transfer level)',
      fn: () => void decryptor.invariantNoiseBudget(ctTransfer),
    },
    // engine wrappers
    {
      group: 'engine',
      name: 'engine BlockOps.load (one column)',
      note: 'per column; the worker loads 6 per block (hash check not included)',
      fn: () => ops.load(columnBytes[0]!).delete(),
    },
    {
      group: 'engine',
      name: 'engine BlockOps.chainIndex',
      note: 'called ~5× per rerandomizeForTransfer',
      fn: () => void ops.chainIndex(sum),
    },
    {
      group: 'engine',
      name: 'engine maskVector (HKDF key → AES-CTR, 8192 slots)',
      fn: () => void maskVector(maskKey, t, slots),
    },
    { group: 'engine', name: 'engine BlockOps.linear (6 terms, signed)', fn: () => ops.linear(terms).delete() },
    {
      group: 'engine',
      name: 'engine rerandomizeForTransfer (+ assign copy)',
      note: 'includes a ciphertext copy to restore the level-3 input each iteration',
      fn: () => {
        scratch.assign(sum);
        ops.rerandomizeForTransfer(scratch, pk);
      },
    },
    { group: 'engine', name: 'engine block step (linear + mask + rerandomize + save)', fn: () => void engineStep() },
    {
      group: 'engine',
      name: 'custodian decrypt (seal mode, full request)',
      note: 'signature + hash checks, load, noise budget, decrypt, decode, seal to bank, sign (each with a new label: includes the engine signing that request, ≈ 0.03 ms)',
      async: () => custodian.decrypt(decryptRequest(), transferBytes),
    },
    // where the custodian's time goes besides decrypt + decode
    {
      group: 'custodian',
      name: 'custodian part: verify request signature (Ed25519)',
      fn: () => requireSignature(signedRequest, engineKeys.publicKey, 'safehouse.custodian.decrypt.v1', 'bench'),
    },
    { group: 'custodian', name: 'custodian part: sha256 of ciphertext', fn: () => void sha256Hex(transferBytes) },
    {
      group: 'custodian',
      name: 'custodian part: BlockOps.load (transfer level)',
      fn: () => ops.load(transferBytes).delete(),
    },
    {
      group: 'custodian',
      name: 'custodian part: sealTo bank (X25519 + AES-GCM, 64 KiB)',
      fn: () => void sealTo(bank.publicKey, sealedPayload, { jobId: 'bench-job', label: 'x' }),
    },
    {
      group: 'custodian',
      name: 'custodian part: JCS + sha256 of response (log hash)',
      note: 'computed even without a log file',
      fn: () => void sha256Hex(canonicalize(response)),
    },
    {
      group: 'custodian',
      name: 'custodian part: sign response (Ed25519)',
      fn: () => void signJson(response.body, 'bench_provider', custKeys.secretKey),
    },
    // per-subject baselines
    {
      group: 'paillier',
      name: 'paillier weighted sum, 1 subject (JS BigInt)',
      fn: () => void pJs.weightedSum(pCts[nextSubject()]!, WEIGHTS),
    },
    {
      group: 'paillier',
      name: 'paillier encrypt, 1 value (JS BigInt)',
      fn: () => void pJs.encrypt(pMasks[nextSubject()]!),
    },
    {
      group: 'paillier',
      name: 'paillier decrypt CRT, 1 value (JS BigInt)',
      fn: () => void pJs.decryptCrt(pCts[nextSubject()]![0]!),
    },
    {
      group: 'paillier',
      name: 'paillier pipeline, 1 subject (JS BigInt)',
      note: 'Σ w·Enc(x) · Enc(mask) (fresh r^n = rerandomized), then CRT decrypt: the analogue of block step + custodian',
      fn: () => {
        const i = nextSubject();
        void pJs.decryptCrt(pJs.add(pJs.weightedSum(pCts[i]!, WEIGHTS), pJs.encrypt(pMasks[i]!)));
      },
    },
    {
      group: 'paillier',
      name: 'paillier weighted sum, 1 subject (OpenSSL modexp)',
      fn: () => void pSsl.weightedSum(pCts[nextSubject()]!, WEIGHTS),
    },
    {
      group: 'paillier',
      name: 'paillier pipeline, 1 subject (OpenSSL modexp)',
      note: 'as above with OpenSSL BN_mod_exp: a stand-in for GMP-backed Paillier (FATE uses gmpy2)',
      fn: () => {
        const i = nextSubject();
        void pSsl.decryptCrt(pSsl.add(pSsl.weightedSum(pCts[i]!, WEIGHTS), pSsl.encrypt(pMasks[i]!)));
      },
    },
    {
      group: 'plaintext',
      name: 'plaintext bigint weighted sum, 8192 subjects',
      fn: () => {
        for (let i = 0; i < slots; i++) {
          let acc = 0n;
          for (let f = 0; f < FIELDS; f++) acc += WEIGHTS[f]! * columns[f]![i]!;
          plainOut[i] = acc;
        }
      },
    },
    {
      group: 'plaintext',
      name: 'plaintext float64 weighted sum, 8192 subjects',
      note: 'reference only: exact here (|Σ| < 2^53), not how the product computes',
      fn: () => {
        for (let i = 0; i < slots; i++) {
          let acc = 0;
          for (let f = 0; f < FIELDS; f++) acc += weightsNum[f]! * columnsNum[f]![i]!;
          plainOutNum[i] = acc;
        }
      },
    },
  ];

  log(`timing ${cases.length} cases (benchmark.js, maxTime ${maxTime}s, minSamples ${minSamples})…`);
  let results: BenchResult[];
  try {
    results = await runBenchmarks(cases, { maxTime, minSamples, log });
  } finally {
    await custodian.dispose();
    for (const x of toFree.reverse()) x.delete();
    ops.dispose();
  }
  if (plainOut[0] !== expected[0] || BigInt(plainOutNum[slots - 1]!) !== expected[slots - 1])
    throw new Error('plaintext bench computed a different sum');

  // ---- derived per-subject costs and ratios ------------------------------------------------------------------------
  const ms = (name: string): number => {
    const r = results.find((x) => x.name === name);
    if (!r) throw new Error(`no result named ${name}`);
    return r.meanMs;
  };
  const mulConst = ms('seal multiplyPlain (constant plaintext)');
  const add = ms('seal add');
  const linear = ms('engine BlockOps.linear (6 terms, signed)');
  const rawLinear = ms('raw linear (6 multiplyPlain + 5 add/sub, hand-written)');
  const step = ms('engine block step (linear + mask + rerandomize + save)');
  const custodianMs = ms('custodian decrypt (seal mode, full request)');
  const decDecode = ms('seal decrypt + decode (transfer level)');
  const budget = ms('seal invariantNoiseBudget (transfer level)');
  const custodianParts =
    ms('custodian part: verify request signature (Ed25519)') +
    ms('custodian part: sha256 of ciphertext') +
    ms('custodian part: BlockOps.load (transfer level)') +
    budget +
    decDecode +
    ms('custodian part: sealTo bank (X25519 + AES-GCM, 64 KiB)') +
    ms('custodian part: sign response (Ed25519)') +
    ms('custodian part: JCS + sha256 of response (log hash)');
  const rerand = ms('engine rerandomizeForTransfer (+ assign copy)');
  const rawRerand =
    ms('seal new Encryptor(publicKey) + delete') +
    ms('seal encryptZero (public key)') +
    add +
    ms('seal modSwitchTo transfer level (3→1)');
  const rawMask =
    ms('engine maskVector (HKDF key → AES-CTR, 8192 slots)') +
    ms('seal encode (full vector)') +
    ms('seal addPlain (full vector)');
  const rawStepParts = rawLinear + rawMask + rawRerand + ms('seal serialize zstd (transfer level)');
  const perSubjectUs: Record<string, number> = {
    bfvLinear: (linear / slots) * 1000,
    bfvStepPlusCustodian: ((step + custodianMs) / slots) * 1000,
    paillierWeightedSumJs: ms('paillier weighted sum, 1 subject (JS BigInt)') * 1000,
    paillierPipelineJs: ms('paillier pipeline, 1 subject (JS BigInt)') * 1000,
    paillierWeightedSumOpenSsl: ms('paillier weighted sum, 1 subject (OpenSSL modexp)') * 1000,
    paillierPipelineOpenSsl: ms('paillier pipeline, 1 subject (OpenSSL modexp)') * 1000,
    plaintextBigint: (ms('plaintext bigint weighted sum, 8192 subjects') / slots) * 1000,
    plaintextFloat64: (ms('plaintext float64 weighted sum, 8192 subjects') / slots) * 1000,
  };
  const ps = perSubjectUs;
  const ratios: Ratio[] = [
    {
      name: 'wrapper overhead: linear vs raw ops summed',
      value: linear / (FIELDS * mulConst + (FIELDS - 1) * add),
      formula: 'engine linear / (6×multiplyPlain(const) + 5×add)',
    },
    {
      name: 'wrapper overhead: linear vs hand-written raw linear',
      value: linear / rawLinear,
      formula: 'engine linear / raw linear (same calls, preallocated outputs)',
    },
    {
      name: 'rerandomize vs its raw parts',
      value: rerand / rawRerand,
      formula: 'engine rerandomizeForTransfer / (new Encryptor + encryptZero + add + modSwitchTo 3→1)',
      note: 'the engine side includes one ciphertext copy',
    },
    {
      name: 'block step vs its raw parts',
      value: step / rawStepParts,
      formula: 'engine step / (raw linear + maskVector + encode + addPlain + rerandomize parts + serialize zstd)',
    },
    {
      name: 'custodian vs raw decrypt+decode',
      value: custodianMs / decDecode,
      formula: 'custodian.decrypt / (decrypt + decode)',
      note: `invariantNoiseBudget alone is ${fmt(budget / decDecode, 2)}× decrypt+decode`,
    },
    {
      name: 'custodian vs the sum of its measured parts',
      value: custodianMs / custodianParts,
      formula:
        'custodian.decrypt / (verify + sha256 + load + noise budget + decrypt/decode + sealTo + sign + log hash)',
      note: `of the parts: signing the response ${fmt((100 * ms('custodian part: sign response (Ed25519)')) / custodianParts, 2)}% (the ~87 KB base64 box is inside the signed JSON), verifying the request ${fmt((100 * ms('custodian part: verify request signature (Ed25519)')) / custodianParts, 2)}%, sealTo ${fmt((100 * ms('custodian part: sealTo bank (X25519 + AES-GCM, 64 KiB)')) / custodianParts, 2)}%, load ${fmt((100 * ms('custodian part: BlockOps.load (transfer level)')) / custodianParts, 2)}%, noise budget ${fmt((100 * budget) / custodianParts, 2)}%, decrypt+decode ${fmt((100 * decDecode) / custodianParts, 2)}%`,
    },
    {
      name: 'Paillier vs encrypted, weighted sum only (JS)',
      value: ps.paillierWeightedSumJs! / ps.bfvLinear!,
      formula: 'per subject: Paillier weighted sum / (engine linear / 8192)',
      note: '> 1: Paillier is slower',
    },
    {
      name: 'Paillier vs encrypted, full pipeline (JS)',
      value: ps.paillierPipelineJs! / ps.bfvStepPlusCustodian!,
      formula: 'per subject: Paillier (Σ w·Enc(x)·Enc(m) + CRT decrypt) / ((step + custodian) / 8192)',
    },
    {
      name: 'Paillier vs encrypted, full pipeline (OpenSSL)',
      value: ps.paillierPipelineOpenSsl! / ps.bfvStepPlusCustodian!,
      formula: 'as above, Paillier exponentiations in OpenSSL',
    },
    {
      name: 'encrypted vs plaintext, weighted sum only',
      value: ps.bfvLinear! / ps.plaintextBigint!,
      formula: 'per subject: (engine linear / 8192) / plaintext bigint',
    },
    {
      name: 'encrypted vs plaintext, full pipeline',
      value: ps.bfvStepPlusCustodian! / ps.plaintextBigint!,
      formula: 'per subject: ((step + custodian) / 8192) / plaintext bigint',
    },
    {
      name: 'encrypted vs plaintext float64, full pipeline',
      value: ps.bfvStepPlusCustodian! / ps.plaintextFloat64!,
      formula: 'per subject: ((step + custodian) / 8192) / plaintext float64 (reference)',
    },
    {
      name: 'mask addPlain at transfer level vs at fresh level',
      value: ms('seal addPlain (full vector) at transfer level') / ms('seal addPlain (full vector)'),
      formula: 'addPlain on a 2-prime ciphertext / addPlain on a 4-prime ciphertext',
      note: '< 1: adding the mask after the modulus switch would be cheaper',
    },
    {
      name: 'block step shares: linear / mask / rerandomize / save',
      value: linear / step,
      formula: 'engine linear / engine step (first share)',
      note: `shares of the step: linear ${fmt((100 * linear) / step, 2)}%, mask (maskVector+encode+addPlain) ${fmt((100 * rawMask) / step, 2)}%, rerandomize ${fmt((100 * rawRerand) / step, 2)}%, serialize ${fmt((100 * ms('seal serialize zstd (transfer level)')) / step, 2)}%`,
    },
    {
      name: 'mask via encrypt(mask) vs encryptZero + addPlain',
      value:
        ms('seal encrypt(mask plaintext) (public key)') /
        (ms('seal encryptZero (public key)') + ms('seal addPlain (full vector)')),
      formula: 'encrypt(pt) / (encryptZero + addPlain)',
      note: '< 1 would mean folding the mask into the fresh encryption saves time',
    },
  ];

  return {
    config: {
      paramsId: params.id,
      slots,
      fields: FIELDS,
      weights: WEIGHTS.map(String),
      valueBits: VALUE_BITS,
      paillier: {
        nBits: ppk.n.toString(2).length,
        sample: PAILLIER_SAMPLE,
        backends: ['JS BigInt (fixed-window modPow)', 'OpenSSL BN_mod_exp via node:crypto DH'],
      },
      benchmark: { maxTimeSeconds: maxTime, minSamples },
    },
    checks: { bfvSlots, custodianSlots, paillier: paillierChecks },
    results,
    perSubjectUs,
    ratios,
  };
}

export function printPrimitives(r: PrimitivesReport, out: (s: string) => void = console.log): void {
  out(
    `\nPrimitives — one block: ${r.config.slots} subjects × ${r.config.fields} fields, ${r.config.paramsId}; weights ${r.config.weights.join(', ')}`,
  );
  out(
    `Paillier rows are per subject (n = ${r.config.paillier.nBits} bits), timed one subject per iteration over a ${r.config.paillier.sample}-subject sample.\n`,
  );
  out(
    formatTable(
      ['group', 'case', 'ops/sec', 'mean ms', '±%', 'n'],
      r.results.map((x) => [x.group, x.name, fmt(x.hz), fmt(x.meanMs), fmt(x.rme, 2), x.samples]),
    ),
  );
  out('\nPer-subject cost (µs; BFV and plaintext = block time / 8192, Paillier scaled from its 64-subject sample):\n');
  out(
    formatTable(
      ['what', 'µs / subject'],
      Object.entries(r.perSubjectUs).map(([k, v]) => [k, fmt(v)]),
    ),
  );
  out('\nRatios (same run):\n');
  out(
    formatTable(
      ['ratio', 'value', 'formula'],
      r.ratios.map((x) => [x.name, fmt(x.value), x.formula + (x.note ? ` — ${x.note}` : '')]),
    ),
  );
}

if (import.meta.main) {
  const r = await runPrimitives();
  printPrimitives(r);
}
