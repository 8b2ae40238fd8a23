/**
 * Engine HE primitives against plaintext (every operation compared with the same map over the plaintext array): every operation on
 * ciphertexts is compared with the same map over the plaintext array, mod t, read back centered.
 *
 * The test plays the key holder: it generates the BFV keys with `generateBfvKeys` and builds its own Decryptor, so it
 * can measure noise budgets and check what the engine computed. The custodian section drives `LocalCustodian` with
 * properly prepared ciphertexts (linear → mask → re-randomize → save) in each mode and checks every refusal, and that
 * the custodian's own view is v + m, never v (docs/design.md §4.2; secretflow's "the party not meant to receive output gets
 * nothing").
 *
 * Measured figures are printed (console.log) so a reader can compare them with params.ts and docs/design.md §4.2.
 * Longer than 400 lines: the HE primitives, the custodian's refusals and the pool share one SEAL context and key set
 * (key generation dominates the setup); the describe blocks follow docs/design.md §4.
 */
import { trustedLedger } from '../helpers/trust.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Ciphertext, Decryptor, Encryptor, PublicKey, SecretKey } from 'node-seal';
import { isCoded, type ErrorCode } from '../../core/errors.ts';
import { BFV_8192_T40, heContext, paramSet, type HeContext, type ParamSet } from '../../engine/he/params.ts';
import { BlockOps, generateBfvKeys } from '../../engine/he/block.ts';
import { sealCall } from '../../engine/he/seal.ts';
import { centered, formatFixed, parseFixed, pow10, toSlot } from '../../core/fixed.ts';
import { deriveMaskKey, maskVector } from '../../engine/he/mask.ts';
import { LocalCustodian } from '../../engine/custodian/custodian.ts';
import { type CustodianView, type DecryptRequest } from '../../engine/custodian/messages.ts';
import { bytesToHex, ed25519KeyPair, signJson, verifyJson, type Signed } from '../../core/sign.ts';
import { openSealed, x25519KeyPair } from '../../core/sealbox.ts';
import { canonicalize } from '../../core/jcs.ts';
import { sha256Hex } from '../../core/hash.ts';
import { WorkerPool } from '../../engine/pool/pool.ts';
import type { EvalBlockTask } from '../../engine/protocols/score/kernels.ts';
import type { EncryptTask } from '../../engine/provider/kernels.ts';
import { evalBlock } from '../../engine/protocols/score/engine.ts';
import { encryptKernel } from '../../engine/provider/agent.ts';
import { CUSTODIAN_RULES } from '../../engine/protocols/index.ts';
import { expectCode } from '../fixtures/expect.ts';
import { rhoFor } from '../../sandbox/dp.ts';

const T = BFV_8192_T40.t;
const HALF = (T - 1n) / 2n;
const N = BFV_8192_T40.slots;

// ---------------------------------------------------------------------------------------------------------------------
// helpers

async function expectReject(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (!isCoded(err, code)) throw err;
    return;
  }
  expect.fail(`expected a rejection with ${code}, the promise resolved`);
}

/** Uniform random bigint in [lo, hi] (inclusive). */
function randBig(lo: bigint, hi: bigint): bigint {
  const span = hi - lo + 1n;
  const bytes = Math.ceil(span.toString(2).length / 8) + 8; // 64 extra bits: bias < 2^-64
  return lo + (BigInt('0x' + randomBytes(bytes).toString('hex')) % span);
}

/** n signed values uniform in [−bound, bound]. */
function randVec(n: number, bound: bigint): bigint[] {
  return Array.from({ length: n }, () => randBig(-bound, bound));
}

function slots(values: readonly bigint[]): BigUint64Array {
  return BigUint64Array.from(values, (v) => toSlot(v, T));
}

// ---------------------------------------------------------------------------------------------------------------------
// shared key-holder state (the test plays the custodian's key holder)

let he: HeContext;
let ops: BlockOps;
let keys: { secretKey: Uint8Array; publicKey: Uint8Array };
let pk: PublicKey;
let sk: SecretKey;
let encryptor: Encryptor;
let decryptor: Decryptor;
const live: Ciphertext[] = [];

/** Encrypt a signed vector (padded with zeros to N slots) under the test's public key. */
function enc(values: readonly bigint[]): Ciphertext {
  const pt = ops.encode(slots(values));
  const ct = new he.seal.Ciphertext();
  try {
    encryptor.encrypt(pt, ct);
  } finally {
    pt.delete();
  }
  live.push(ct);
  return ct;
}

/** Decrypt to residues in [0, t). */
function decRaw(ct: Ciphertext): BigUint64Array {
  const pt = new he.seal.Plaintext();
  try {
    decryptor.decrypt(ct, pt);
    return ops.decode(pt);
  } finally {
    pt.delete();
  }
}

/** Decrypt and read back centered. */
function dec(ct: Ciphertext): bigint[] {
  return Array.from(decRaw(ct), (u) => centered(u, T));
}

function track(ct: Ciphertext): Ciphertext {
  live.push(ct);
  return ct;
}

beforeAll(async () => {
  he = await heContext();
  ops = new BlockOps(he);
  keys = generateBfvKeys(he);
  pk = ops.loadPublicKey(keys.publicKey);
  sk = ops.loadSecretKey(keys.secretKey);
  encryptor = new he.seal.Encryptor(he.context, pk);
  decryptor = new he.seal.Decryptor(he.context, sk);
});

afterAll(() => {
  for (const ct of live) if (!ct.isDeleted()) ct.delete();
  encryptor?.delete();
  decryptor?.delete();
  pk?.delete();
  sk?.delete();
  ops?.dispose();
});

// ---------------------------------------------------------------------------------------------------------------------

describe('params: bfv-8192-t40-v1 (docs/design.md §3)', () => {
  it('builds a 128-bit batching context with t = 1099511480321 and 8192 slots', async () => {
    expect(he.params).toBe(BFV_8192_T40);
    expect(await heContext()).toBe(he); // one context per process
    expect(paramSet('bfv-8192-t40-v1')).toBe(BFV_8192_T40);
    expect(T).toBe(1099511480321n);
    expect(he.context.parametersSet()).toBe(true);
    const first = he.context.firstContextData();
    expect(first.qualifiers().securityLevel.value).toBe(128);
    expect(first.qualifiers().usingBatching).toBe(true);
    expect(first.parms().plainModulus().value()).toBe(T);
    expect(he.context.keyContextData().totalCoeffModulusBitCount()).toBe(218);
    expect(first.chainIndex()).toBe(3); // fresh ciphertexts; transfer level is 1
    expect(ops.slots).toBe(8192);
    expect(BFV_8192_T40.slots).toBe(8192);
    // t is the batching prime: 40 bits, ≡ 1 (mod 2N), and passes a Fermat test in a few bases.
    expect(T < 1n << 40n && T >= 1n << 39n).toBe(true);
    expect(T % (2n * 8192n)).toBe(1n);
    for (const a of [2n, 3n, 5n, 7n, 11n]) expect(modPow(a, T - 1n, T)).toBe(1n);
  });

  it('refuses an unknown parameter-set id and a set whose t SEAL does not derive', async () => {
    expectCode(() => paramSet('bfv-16384-t60-v1'), 'SH_ERR_PARAMS_MISMATCH');
    const wrong: ParamSet = { ...BFV_8192_T40, id: 'test-wrong-t', t: 1099511627689n };
    await expectReject(heContext(wrong), 'SH_ERR_PARAMS_INSECURE');
  });
});

function modPow(b: bigint, e: bigint, m: bigint): bigint {
  let r = 1n;
  b %= m;
  while (e > 0n) {
    if (e & 1n) r = (r * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return r;
}

// ---------------------------------------------------------------------------------------------------------------------

describe('codec: exact decimal fixed point and residues mod t', () => {
  it('parseFixed / formatFixed on known values, incl. negatives and trailing zeros', () => {
    const cases: Array<[string, number, bigint, string]> = [
      ['0', 0, 0n, '0'],
      ['-0', 2, 0n, '0'],
      ['12', 0, 12n, '12'],
      ['12.0', 0, 12n, '12'],
      ['12.5', 2, 1250n, '12.5'],
      ['+12.50', 2, 1250n, '12.5'],
      ['-1.25', 3, -1250n, '-1.25'],
      ['-0.005', 3, -5n, '-0.005'],
      ['0.000001', 6, 1n, '0.000001'],
      ['  7.10  ', 1, 71n, '7.1'],
      ['549755740160', 0, HALF, '549755740160'],
      ['-549755.740160', 6, -HALF, '-549755.74016'],
    ];
    for (const [text, d, v, back] of cases) {
      expect(parseFixed(text, d), text).toBe(v);
      expect(formatFixed(v, d), text).toBe(back);
    }
    expect(pow10(0)).toBe(1n);
    expect(pow10(6)).toBe(1_000_000n);
    expectCode(() => pow10(-1), 'SH_ERR_INVALID_ARGUMENT');
    expectCode(() => pow10(1.5), 'SH_ERR_INVALID_ARGUMENT');
  });

  it('too many decimals or malformed text → a coded error naming the field', () => {
    for (const [text, d] of [
      ['1.234', 2],
      ['0.5', 0],
      ['-0.0000001', 6],
    ] as const) {
      try {
        parseFixed(text, d, 'income');
        expect.fail(`${text} accepted`);
      } catch (err) {
        expect(isCoded(err, 'SH_ERR_INVALID_ARGUMENT')).toBe(true);
        expect((err as Error).message).toMatch(/"income" expected at most/);
        expect((err as { details: object }).details).toEqual({ field: 'income' });
      }
    }
    expectCode(() => parseFixed('1.2345678', 6, 'w', 'SH_ERR_MODEL_PRECISION'), 'SH_ERR_MODEL_PRECISION');
    for (const bad of ['', '.5', '5.', '1e3', '0x10', '1,5', '--1', 'NaN', '1 2']) {
      expectCode(() => parseFixed(bad, 6, 'x', 'SH_ERR_CSV_VALUE'), 'SH_ERR_CSV_VALUE');
    }
  });

  it('property: parseFixed(formatFixed(v, s), s) === v for random bigints and scales', () => {
    for (let i = 0; i < 2000; i++) {
      const scale = randomInt(0, 13);
      const v = randBig(-(1n << 80n), 1n << 80n) >> BigInt(randomInt(0, 80));
      const text = formatFixed(v, scale);
      expect(text).toMatch(/^-?\d+(\.\d*[1-9])?$/);
      expect(parseFixed(text, scale)).toBe(v);
      // Extra trailing zeros never count as decimals.
      expect(parseFixed(text.includes('.') ? text + '000' : text + '.000', scale)).toBe(v);
      if (scale > 0 && v % 10n !== 0n) expectCode(() => parseFixed(text, scale - 1), 'SH_ERR_INVALID_ARGUMENT');
    }
  });

  it('toSlot / centered: boundaries ±(t−1)/2 and the wrap just past them', () => {
    expect(toSlot(0n, T)).toBe(0n);
    expect(toSlot(-1n, T)).toBe(T - 1n);
    expect(toSlot(T, T)).toBe(0n);
    expect(toSlot(-T, T)).toBe(0n);
    expect(centered(HALF, T)).toBe(HALF);
    expect(centered(-HALF, T)).toBe(-HALF);
    expect(toSlot(-HALF, T)).toBe(HALF + 1n);
    expect(centered(HALF + 1n, T)).toBe(-HALF); // the first residue past (t−1)/2 reads as negative
    expect(centered(T - 1n, T)).toBe(-1n);
    expect(centered(-HALF - 1n, T)).toBe(HALF); // one past the negative bound wraps to the positive one
    expect(centered(HALF + 1n + T * 5n, T)).toBe(-HALF);
  });

  it('property: centered(toSlot(x)) === x for |x| ≤ (t−1)/2; toSlot ∈ [0, t); centered ≡ input (mod t)', () => {
    for (let i = 0; i < 5000; i++) {
      const x = randBig(-HALF, HALF);
      const s = toSlot(x, T);
      expect(s >= 0n && s < T).toBe(true);
      expect(centered(s, T)).toBe(x);
      const y = randBig(-(1n << 100n), 1n << 100n);
      const c = centered(y, T);
      expect(c >= -HALF && c <= HALF).toBe(true);
      expect((y - c) % T).toBe(0n);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------------

describe('BlockOps.linear: Σ m·x (docs/design.md §4.1) equals the plaintext sum mod t, centered', () => {
  it('random vectors within bounds and random signed multipliers: exact integer sums', () => {
    // Bound: Σ|m|·B < t/2, so the centered result is the true integer sum, not just its residue.
    const B = 1n << 20n;
    const special = [1n, -1n, 0n, 2n, -2n, (1n << 14n) - 1n];
    for (let trial = 0; trial < 4; trial++) {
      const k = 2 + trial;
      const xs = Array.from({ length: k }, () => randVec(N, B));
      const ms = Array.from({ length: k }, (_, i) =>
        i < special.length && trial % 2 === 0
          ? special[(i + trial) % special.length]!
          : randBig(-(1n << 14n), 1n << 14n),
      );
      if (!ms.some((m) => m !== 0n)) ms[0] = 3n;
      let bound = 0n;
      for (const m of ms) bound += (m < 0n ? -m : m) * B;
      expect(bound < HALF).toBe(true);
      const cts = xs.map((x) => enc(x));
      const out = track(ops.linear(cts.map((ct, i) => ({ ct, multiplier: ms[i]! }))));
      const want = Array.from({ length: N }, (_, s) => xs.reduce((acc, x, i) => acc + ms[i]! * x[s]!, 0n));
      expect(dec(out)).toEqual(want);
      // Inputs are not modified.
      expect(dec(cts[0]!)).toEqual(xs[0]);
    }
  });

  it('large multipliers up to ~2^30 (incl. negative, ±1 and 0 skipped): equal mod t', () => {
    const B = 1n << 30n;
    const cases: bigint[][] = [
      [1n << 30n, -(1n << 30n) + 7n, 1n, -1n, 0n],
      [-1n, randBig(-(1n << 30n), 1n << 30n), 0n, -(1n << 29n)],
      [0n, 0n, randBig(1n << 29n, 1n << 30n)],
      [randBig(-(1n << 30n), 1n << 30n), randBig(-(1n << 30n), 1n << 30n), randBig(-(1n << 30n), 1n << 30n)],
    ];
    for (const ms of cases) {
      const xs = ms.map(() => randVec(N, B));
      const cts = xs.map((x) => enc(x));
      const out = track(ops.linear(cts.map((ct, i) => ({ ct, multiplier: ms[i]! }))));
      const want = Array.from({ length: N }, (_, s) =>
        centered(
          xs.reduce((acc, x, i) => acc + ms[i]! * x[s]!, 0n),
          T,
        ),
      );
      expect(dec(out)).toEqual(want);
      const budget = decryptor.invariantNoiseBudget(out);
      expect(budget).toBeGreaterThan(BFV_8192_T40.minNoiseBudget);
    }
  });

  it('the same ciphertext twice, short vectors (zero padded), and the multiplier bound (t−1)/2 itself', () => {
    const x = randVec(100, 1000n);
    const ct = enc(x);
    const out = track(
      ops.linear([
        { ct, multiplier: 5n },
        { ct, multiplier: -3n },
        { ct, multiplier: HALF },
      ]),
    );
    const got = dec(out);
    expect(got.slice(0, 100)).toEqual(x.map((v) => centered(2n * v + HALF * v, T)));
    expect(got.slice(100).every((v) => v === 0n)).toBe(true);
  });

  it('empty or all-zero multipliers → SH_ERR_INVALID_ARGUMENT; |m| > (t−1)/2 → SH_ERR_BOUND_OVERFLOW', () => {
    const ct = enc([1n, 2n, 3n]);
    expectCode(() => ops.linear([]), 'SH_ERR_INVALID_ARGUMENT');
    expectCode(
      () =>
        ops.linear([
          { ct, multiplier: 0n },
          { ct, multiplier: 0n },
        ]),
      'SH_ERR_INVALID_ARGUMENT',
    );
    expectCode(() => ops.linear([{ ct, multiplier: HALF + 1n }]), 'SH_ERR_BOUND_OVERFLOW');
    expectCode(() => ops.linear([{ ct, multiplier: -(HALF + 1n) }]), 'SH_ERR_BOUND_OVERFLOW');
    expectCode(
      () =>
        ops.linear([
          { ct, multiplier: 2n },
          { ct, multiplier: T },
        ]),
      'SH_ERR_BOUND_OVERFLOW',
    );
    expect(dec(ct).slice(0, 3)).toEqual([1n, 2n, 3n]);
  });

  it('addVector and multiplyVector match the slot-wise plaintext map', () => {
    const x = randVec(N, 1n << 20n);
    const a = randVec(N, 1n << 38n);
    const r = randVec(N, 1n << 16n);
    const ct = enc(x);
    ops.addVector(ct, slots(a));
    expect(dec(ct)).toEqual(x.map((v, i) => centered(v + a[i]!, T)));
    ops.multiplyVector(ct, slots(r));
    expect(dec(ct)).toEqual(x.map((v, i) => centered((v + a[i]!) * r[i]!, T)));
    expectCode(() => ops.addVector(ct, new BigUint64Array(N + 1)), 'SH_ERR_INVALID_ARGUMENT');
  });
});

// ---------------------------------------------------------------------------------------------------------------------

describe('BlockOps.rerandomizeForTransfer (docs/design.md §4.2)', () => {
  it('switches to the transfer level, keeps the vector, leaves ≥ minNoiseBudget bits and shrinks the ciphertext', () => {
    const xs = [randVec(N, 1n << 20n), randVec(N, 1n << 20n), randVec(N, 1n << 20n)];
    const ms = [123_456n, -(1n << 18n), 1n];
    const ct = track(ops.linear(xs.map((x, i) => ({ ct: enc(x), multiplier: ms[i]! }))));
    const want = dec(ct);
    const before = ops.save(ct).length;
    const budgetBefore = decryptor.invariantNoiseBudget(ct);
    expect(ops.chainIndex(ct)).toBe(3);
    ops.rerandomizeForTransfer(ct, pk);
    const after = ops.save(ct).length;
    const budget = decryptor.invariantNoiseBudget(ct);
    console.log(
      `rerandomizeForTransfer after a 3-term weighted sum: chain index 3 → ${ops.chainIndex(ct)}, noise budget ${budgetBefore} → ${budget} bits (min ${BFV_8192_T40.minNoiseBudget}), serialized ${before} → ${after} bytes (zstd)`,
    );
    expect(ops.chainIndex(ct)).toBe(BFV_8192_T40.transferChainIndex);
    expect(dec(ct)).toEqual(want);
    expect(budget).toBeGreaterThanOrEqual(BFV_8192_T40.minNoiseBudget);
    expect(after).toBeLessThan(before);
    expect(after).toBeLessThanOrEqual(BFV_8192_T40.maxCiphertextBytes);
    // What goes over the wire loads back and still decrypts.
    const back = track(ops.load(ops.save(ct)));
    expect(ops.chainIndex(back)).toBe(BFV_8192_T40.transferChainIndex);
    expect(dec(back)).toEqual(want);
  });

  it('two re-randomizations of the same ciphertext serialize differently and decrypt the same', () => {
    const x = randVec(N, 1n << 30n);
    const base = enc(x);
    const a = track(base.copy());
    const b = track(base.copy());
    ops.rerandomizeForTransfer(a, pk);
    ops.rerandomizeForTransfer(b, pk);
    const sa = ops.save(a);
    const sb = ops.save(b);
    expect(Buffer.from(sa).equals(Buffer.from(sb))).toBe(false);
    expect(dec(a)).toEqual(x);
    expect(dec(b)).toEqual(x);
    console.log(
      `rerandomizeForTransfer of a fresh encryption: noise budget ${decryptor.invariantNoiseBudget(a)} bits, ${sa.length} bytes`,
    );
  });

  it('refuses a ciphertext already below the transfer level (SH_ERR_NOISE_BUDGET)', () => {
    const ct = enc([1n]);
    while (ops.chainIndex(ct) > 0) ops.evaluator.cipherModSwitchToNextInplace(ct);
    expectCode(() => ops.rerandomizeForTransfer(ct, pk), 'SH_ERR_NOISE_BUDGET');
  });
});

// ---------------------------------------------------------------------------------------------------------------------

describe('BlockOps.load and freed handles', () => {
  it('round trips a saved ciphertext', () => {
    const x = randVec(N, 1000n);
    const ct = track(ops.load(ops.save(enc(x))));
    expect(dec(ct)).toEqual(x);
  });

  it('oversized bytes → SH_ERR_CIPHERTEXT_SIZE before SEAL parses anything', () => {
    const cap = BFV_8192_T40.maxCiphertextBytes;
    // The same zero bytes at the cap reach SEAL (and fail there); one byte more never does.
    expectCode(() => ops.load(new Uint8Array(cap)), 'SH_ERR_CIPHERTEXT_INVALID');
    expectCode(() => ops.load(new Uint8Array(cap + 1)), 'SH_ERR_CIPHERTEXT_SIZE');
    const good = ops.save(enc([42n]));
    const padded = new Uint8Array(cap + 1);
    padded.set(good);
    expectCode(() => ops.load(padded), 'SH_ERR_CIPHERTEXT_SIZE');
  });

  it('truncated or garbage bytes → SH_ERR_CIPHERTEXT_INVALID', () => {
    const good = ops.save(enc([42n]));
    for (const n of [0, 1, 15, 16, 100, good.length >> 1, good.length - 1]) {
      expectCode(() => ops.load(good.subarray(0, n)), 'SH_ERR_CIPHERTEXT_INVALID');
    }
    expectCode(() => ops.load(new Uint8Array(randomBytes(4096))), 'SH_ERR_CIPHERTEXT_INVALID');
  });

  it('use after delete() surfaces SH_ERR_HANDLE_DELETED through sealCall', () => {
    const ct = enc([1n, 2n]).copy();
    ct.delete();
    expectCode(() => ops.save(ct), 'SH_ERR_HANDLE_DELETED');
    expectCode(
      () => sealCall('SH_ERR_INTERNAL', 'linear', () => ops.linear([{ ct, multiplier: 3n }])),
      'SH_ERR_HANDLE_DELETED',
    );
    expectCode(() => sealCall('SH_ERR_INTERNAL', 'chain index', () => ops.chainIndex(ct)), 'SH_ERR_HANDLE_DELETED');
    expectCode(
      () => sealCall('SH_ERR_INTERNAL', 'noise budget', () => decryptor.invariantNoiseBudget(ct)),
      'SH_ERR_HANDLE_DELETED',
    );
    expectCode(() => sealCall('SH_ERR_INTERNAL', 'delete', () => ct.delete()), 'SH_ERR_HANDLE_DELETED');
    // Other SEAL failures keep the caller's code.
    expectCode(
      () =>
        sealCall('SH_ERR_CIPHERTEXT_INVALID', 'load', () =>
          new he.seal.Ciphertext().loadFromArray(he.context, new Uint8Array(8)),
        ),
      'SH_ERR_CIPHERTEXT_INVALID',
    );
  });
});

// ---------------------------------------------------------------------------------------------------------------------

describe('mask: HKDF-SHA256 key, AES-256-CTR stream, uniform mod t (docs/design.md §4.2)', () => {
  const seed = new Uint8Array(32).map((_, i) => i * 7 + 1);

  it('is deterministic for the same seed and label, different otherwise', () => {
    const k1 = deriveMaskKey(seed, 'job/j1/provider/tax/block/0');
    expect(k1.length).toBe(32);
    expect(deriveMaskKey(seed, 'job/j1/provider/tax/block/0')).toEqual(k1);
    const k2 = deriveMaskKey(seed, 'job/j1/provider/tax/block/1');
    expect(bytesToHex(k2)).not.toBe(bytesToHex(k1));
    const other = seed.slice();
    other[31]! ^= 1;
    expect(bytesToHex(deriveMaskKey(other, 'job/j1/provider/tax/block/0'))).not.toBe(bytesToHex(k1));
    const m1 = maskVector(k1, T, N);
    expect(maskVector(k1, T, N)).toEqual(m1);
    const m2 = maskVector(k2, T, N);
    let same = 0;
    for (let i = 0; i < N; i++) if (m1[i] === m2[i]) same++;
    expect(same).toBe(0);
    // A shorter vector is a prefix of the longer one (replay does not depend on the length asked for).
    expect(maskVector(k1, T, 100)).toEqual(m1.slice(0, 100));
  });

  it('all values < t and roughly uniform (chi-square on 16 buckets of 8192×4 samples)', () => {
    const buckets = new Array<number>(16).fill(0);
    let total = 0;
    for (let b = 0; b < 4; b++) {
      for (const v of maskVector(deriveMaskKey(seed, `uniformity/${b}`), T, N)) {
        expect(v < T).toBe(true);
        buckets[Number((v * 16n) / T)]!++;
        total++;
      }
    }
    const expected = total / 16;
    const chi2 = buckets.reduce((acc, o) => acc + (o - expected) ** 2 / expected, 0);
    // 15 degrees of freedom: mean 15, P(χ² > 50) ≈ 1e-5.
    console.log(`mask uniformity: χ² = ${chi2.toFixed(2)} over 16 buckets of ${total} samples`);
    expect(chi2).toBeLessThan(50);
  });

  it('small moduli draw only bitlen(t) bits: t = 65537 and t = 3 finish and stay uniform', () => {
    for (const t of [65537n, 3n]) {
      const v = maskVector(deriveMaskKey(seed, `small/${t}`), t, N);
      expect(v.every((x) => x < t)).toBe(true);
      const mean = v.reduce((a, x) => a + Number(x), 0) / N / Number(t - 1n);
      expect(Math.abs(mean - 0.5)).toBeLessThan(0.03);
    }
  });

  it('refuses a short seed, a key that is not 32 bytes and t ≥ 2^40', () => {
    expectCode(() => deriveMaskKey(new Uint8Array(31), 'x'), 'SH_ERR_INVALID_ARGUMENT');
    expectCode(() => maskVector(new Uint8Array(16), T, 8), 'SH_ERR_INVALID_ARGUMENT');
    expectCode(() => maskVector(new Uint8Array(32), 1n << 40n, 8), 'SH_ERR_INVALID_ARGUMENT');
    expectCode(() => maskVector(new Uint8Array(32), 1n, 8), 'SH_ERR_INVALID_ARGUMENT');
  });
});

// ---------------------------------------------------------------------------------------------------------------------

describe('LocalCustodian: masked decryption in each mode, and every refusal (docs/design.md §4.2)', () => {
  const engineKeys = ed25519KeyPair();
  const custodianSigning = ed25519KeyPair();
  const bank = x25519KeyPair();
  const seed = new Uint8Array(randomBytes(32));
  const views: CustodianView[] = [];
  // The custodian answers only for bank-signed jobs it was shown: one per decryption mode (score → seal, verify →
  // sign, train → sum), each with room for every decryption below.
  const bankSigning = ed25519KeyPair();
  const now = new Date().toISOString();
  const someSubjects = Array.from({ length: 1000 }, (_, i) => `s${i}`);
  type Mode = DecryptRequest['mode'];
  const jobs: Partial<Record<Mode, Signed<{ type: string; jobId: string; bank: string; requestedAt: string }>>> &
    Record<Exclude<Mode, 'zero'>, Signed<{ type: string; jobId: string; bank: string; requestedAt: string }>> = {
    seal: signJson(
      {
        type: 'safehouse.score.request.v1',
        jobId: 'job-he-seal',
        bank: 'bank-a',
        requestedAt: now,
        subjects: someSubjects,
      },
      'bank-a',
      bankSigning.secretKey,
    ),
    sign: signJson(
      {
        type: 'safehouse.verify.request.v1',
        jobId: 'job-he-sign',
        bank: 'bank-a',
        requestedAt: now,
        // One between claim per subject: each subject's slot is answered in rounds 0 and 1 of a block.
        claims: someSubjects.map((subject, i) => ({
          claimId: `c${i}`,
          subject,
          provider: 'tax',
          field: 'f',
          op: 'between',
          count: 2,
        })),
      },
      'bank-a',
      bankSigning.secretKey,
    ),
    sum: signJson(
      {
        type: 'safehouse.train.request.v1',
        jobId: 'job-he-sum',
        bank: 'bank-a',
        requestedAt: now,
        provider: 'tax',
        fields: ['f'],
        bins: 2,
        options: { iterations: 64 },
        subjects: someSubjects,
      },
      'bank-a',
      bankSigning.secretKey,
    ),
  };
  // The label check (mode `zero`) belongs to the training job.
  jobs.zero = jobs.sum;
  const jobHashOf = (mode: Mode) => sha256Hex(canonicalize(jobs[mode]));
  /** The tests' label names, mapped to labels of each job's shape (each answered once). */
  const labels = new Map<string, string>();
  const L = (name: string, mode: Mode): string => {
    const key = `${mode}\u0000${name}`;
    let l = labels.get(key);
    if (!l) {
      const n = labels.size;
      l =
        mode === 'seal'
          ? `score/tax/he/block/${n}`
          : mode === 'sign'
            ? `verify/tax/he/f/block/${n >> 1}/round/${n & 1}`
            : mode === 'zero'
              ? 'train/job-he-sum/labels/block/0'
              : `train/job-he-sum/it/${n}/block/0/D`;
      labels.set(key, l);
    }
    return l;
  };
  let custodian: LocalCustodian;
  const ledger = trustedLedger({
    bank: { id: 'bank-a', ed25519: bankSigning.publicKey, x25519: bank.publicKey },
    jobs: [jobs.seal, jobs.sign, jobs.sum],
  });
  const custodianLog = join(mkdtempSync(join(tmpdir(), 'sh-he-custodian-')), 'custodian.log');

  beforeAll(async () => {
    custodian = new LocalCustodian({
      provider: 'tax',
      params: BFV_8192_T40,
      keys: {
        bfvSecretKey: keys.secretKey,
        bfvPublicKey: keys.publicKey,
        ed25519SecretKey: custodianSigning.secretKey,
        ed25519PublicKey: custodianSigning.publicKey,
      },
      // These tests check the HE path; the custodian's own consent and partial-score checks are tested with the protocols and in
      // test/attacks/malicious-engine.test.ts, so every subject here has consent.
      rules: CUSTODIAN_RULES.map((r) => ({
        ...r,
        verify: undefined,
        allowance: (b, ctx) => r.allowance(b, { ...ctx, consent: () => 'OK' }),
      })),
      enginePublicKey: engineKeys.publicKey,
      observe: (v) => views.push(v),
      trust: ledger.trust,
      logFile: custodianLog,
      // The provider's layout of dataset `he`: every slot holds one of the jobs' subjects, so no slot is overwritten
      // and these tests see every decrypted value (the overwriting is tested with the protocols and in test/attacks/).
      data: {
        approvedModel: () => true,
        datasetWith: () => 'he',
        fieldType: () => 'numeric',
        layout: (id) => (id === 'he' ? (row) => someSubjects[row % 1000] : undefined),
        categoryOf: () => 'tax',
        modelFields: () => ['f'],
        partialScore: () => undefined,
      },
    });
    await custodian.follow(ledger.update);
    for (const job of new Set(Object.values(jobs))) await custodian.openJob(job as never);
    // Training sums of block 0 are answered only after its labels passed the check: an encryption of zeros does.
    const zero = enc(new Array<bigint>(N).fill(0n));
    ops.rerandomizeForTransfer(zero, pk);
    const bytes = ops.save(zero);
    zero.delete();
    const checked = await custodian.decrypt(
      request(bytes, { label: 'check', mode: 'zero', recipient: undefined }),
      bytes,
    );
    expect(checked.body.zero).toBe(true);
  });
  /** The noise the custodian journaled for a training sum (its own record; the engine never sees it). */
  const noiseOf = (label: string): bigint[] => {
    const lines = readFileSync(custodianLog, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { label?: string; noise?: string[] });
    return (lines.reverse().find((l) => l.label === label)?.noise ?? []).map(BigInt);
  };
  afterAll(async () => {
    await custodian?.dispose();
  });

  function request(
    bytes: Uint8Array,
    over: Partial<DecryptRequest> = {},
    signer = engineKeys.secretKey,
  ): Signed<DecryptRequest> {
    const { label: name, ...rest } = over;
    const mode = over.mode ?? 'seal';
    const body: DecryptRequest = {
      type: 'safehouse.custodian.decrypt.v1',
      paramsId: BFV_8192_T40.id,
      provider: 'tax',
      jobId: jobs[mode]!.body.jobId,
      jobHash: jobHashOf(mode),
      mode: 'seal',
      ciphertext: sha256Hex(bytes),
      recipient: { party: 'bank-a', x25519: bytesToHex(bank.publicKey) },
      ...rest,
      label: L(name ?? 'he/tax/block/0', mode),
    };
    return signJson(body, 'engine', signer);
  }

  /** The engine side: Enc(Σ m·x) → + mask → re-randomize → switch down → bytes. Returns v (centered) and the mask. */
  function prepare(label: string, x: bigint[], multiplier: bigint) {
    const mask = maskVector(deriveMaskKey(seed, label), T, N);
    const ct = ops.linear([{ ct: enc(x), multiplier }]);
    try {
      ops.addVector(ct, mask);
      ops.rerandomizeForTransfer(ct, pk);
      return { bytes: ops.save(ct), mask, v: x.map((xi) => centered(multiplier * xi, T)) };
    } finally {
      ct.delete();
    }
  }

  function boxContext(label: string, mode: DecryptRequest['mode'], recipient = 'bank-a') {
    return {
      jobId: jobs[mode]!.body.jobId,
      jobHash: jobHashOf(mode),
      provider: 'tax',
      label: L(label, mode),
      mode,
      recipient,
    };
  }

  it('seal: the bank opens v + m and unmasks v; the custodian saw v + m, never v; others cannot open the box', async () => {
    const label = 'he/tax/block/seal';
    const { bytes, mask, v } = prepare(label, randVec(N, 1n << 25n), -777n);
    const req = request(bytes, { label });
    const n = views.length;
    const res = await custodian.decrypt(req, bytes);
    expect(verifyJson(res, custodian.signingPublicKey)).toBe(true);
    expect(res.body).toMatchObject({
      type: 'safehouse.custodian.response.v1',
      provider: 'tax',
      jobId: 'job-he-seal',
      label: L(label, 'seal'),
      mode: 'seal',
      requestHash: sha256Hex(canonicalize(req)),
    });
    expect(res.body.sums).toBeUndefined();
    const opened = openSealed(bank.secretKey, res.body.sealed!, boxContext(label, 'seal'));
    expect(opened.length).toBe(N * 8);
    const got = new BigUint64Array(opened.buffer, opened.byteOffset, N);
    const vm = v.map((vi, i) => (toSlot(vi, T) + mask[i]!) % T);
    expect(Array.from(got)).toEqual(vm);
    expect(Array.from(got, (u, i) => centered(u - mask[i]!, T))).toEqual(v);
    // The custodian's view: exactly v + m, and no slot of it equals v.
    expect(views.length).toBe(n + 1);
    const view = views[n]!;
    expect(view).toMatchObject({ label: L(label, 'seal'), mode: 'seal' });
    expect(Array.from(view.values)).toEqual(vm);
    let equalToV = 0;
    for (let i = 0; i < N; i++) if (view.values[i] === toSlot(v[i]!, T)) equalToV++;
    expect(equalToV).toBe(0);
    // The engine (or anyone but the named bank) cannot open the box, nor can the bank under another context.
    expectCode(
      () => openSealed(x25519KeyPair().secretKey, res.body.sealed!, boxContext(label, 'seal')),
      'SH_ERR_SEALED_BOX',
    );
    expectCode(
      () => openSealed(bank.secretKey, res.body.sealed!, boxContext('he/tax/block/other', 'seal')),
      'SH_ERR_SEALED_BOX',
    );
  });

  it('sum: group sums of v + m mod t minus Σ m per group equal the plaintext group sums plus the journaled noise', async () => {
    const x = randVec(N, 1n << 24n);
    // The group size is the protocol's for the declared bound (here one group of 8192); a finer one is refused.
    for (const g of [64, 1]) {
      const label = `he/tax/block/sum/${g}`;
      const { bytes } = prepare(label, x, 3n);
      await expect(
        custodian.decrypt(
          request(bytes, { label, mode: 'sum', groupSize: g, recipient: undefined, bound: '131072' }),
          bytes,
        ),
      ).rejects.toThrow(new RegExp(`group size ${g} .*the protocol fixes 8192`));
    }
    for (const g of [8192]) {
      const label = `he/tax/block/sum/${g}`;
      const { bytes, mask, v } = prepare(label, x, 3n);
      const res = await custodian.decrypt(
        request(bytes, { label, mode: 'sum', groupSize: g, recipient: undefined, bound: '131072' }),
        bytes,
      );
      expect(res.body.sealed).toBeUndefined();
      const sums = res.body.sums!;
      expect(sums.length).toBe(N / g);
      // σ from (ε, δ) = (8, 1e-5), 64 iterations, one field and the bound B = 2s = 131072: Δ = 2B·√(1 + 1)
      // (sandbox/dp.ts).
      expect(res.body.sigma).toBeCloseTo(2 * 131072 * Math.sqrt(2) * Math.sqrt(64 / (2 * rhoFor(8, 1e-5))), 6);
      const noise = noiseOf(L(label, 'sum'));
      expect(noise).toHaveLength(N / g);
      for (let k = 0; k < sums.length; k++) {
        let m = 0n;
        let want = 0n;
        for (let i = k * g; i < (k + 1) * g; i++) {
          m += mask[i]!;
          want += v[i]!;
        }
        expect(BigInt(sums[k]!) < T).toBe(true);
        expect(centered(BigInt(sums[k]!) - m - noise[k]!, T)).toBe(want);
      }
    }
  });

  it('sign: bits equal x ≥ c for Enc(r⊙(x−c)+r′), at and around the threshold', async () => {
    for (const c of [123_456n, -5_000n, 0n]) {
      const label = `he/tax/block/sign/${c}`;
      // The first slots sit at c−3 … c+3; the rest are spread around c.
      const x = Array.from({ length: N }, (_, i) => (i < 7 * 8 ? c + BigInt((i % 7) - 3) : c + randBig(-1000n, 1000n)));
      const r = Array.from({ length: N }, () => randBig(1n, 1n << 24n));
      const r2 = r.map((ri) => randBig(0n, ri - 1n)); // 0 ≤ r′ < r keeps the sign of r·(x−c) for integers
      const ct = enc(x);
      ops.addVector(ct, slots(new Array<bigint>(N).fill(-c)));
      ops.multiplyVector(ct, slots(r));
      ops.addVector(ct, slots(r2));
      ops.rerandomizeForTransfer(ct, pk);
      const bytes = ops.save(ct);
      console.log(
        `sign-mode ciphertext (c = ${c}) after r⊙(x−c)+r′ and re-randomization: ${decryptor.invariantNoiseBudget(ct)} bits of noise budget, ${bytes.length} bytes`,
      );
      const n = views.length;
      const res = await custodian.decrypt(request(bytes, { label, mode: 'sign' }), bytes);
      const bits = openSealed(bank.secretKey, res.body.sealed!, boxContext(label, 'sign'));
      expect(bits.length).toBe(N / 8);
      const got = Array.from({ length: N }, (_, i) => ((bits[i >> 3]! >> (i & 7)) & 1) === 1);
      expect(got).toEqual(x.map((xi) => xi >= c));
      // The custodian saw r·(x−c)+r′, not x.
      expect(Array.from(views[n]!.values, (u) => centered(u, T))).toEqual(x.map((xi, i) => r[i]! * (xi - c) + r2[i]!));
    }
  });

  describe('refusals (nothing reaches the decryptor: the custodian view stays empty)', () => {
    let good: ReturnType<typeof prepare>;
    beforeAll(() => {
      good = prepare('he/tax/block/refusals', randVec(N, 1000n), 1n);
    });

    async function refused(p: Promise<unknown>, code: ErrorCode) {
      const n = views.length;
      await expectReject(p, code);
      expect(views.length).toBe(n);
    }

    it('a request signed by another key, of another type, or altered after signing → SH_ERR_BAD_SIGNATURE', async () => {
      await refused(
        custodian.decrypt(request(good.bytes, {}, ed25519KeyPair().secretKey), good.bytes),
        'SH_ERR_BAD_SIGNATURE',
      );
      const other = signJson(
        { ...request(good.bytes).body, type: 'safehouse.score.request.v1' as const },
        'engine',
        engineKeys.secretKey,
      );
      await refused(custodian.decrypt(other as unknown as Signed<DecryptRequest>, good.bytes), 'SH_ERR_BAD_SIGNATURE');
      const altered = request(good.bytes);
      altered.body = { ...altered.body, label: 'he/tax/block/elsewhere' };
      await refused(custodian.decrypt(altered, good.bytes), 'SH_ERR_BAD_SIGNATURE');
    });

    it('wrong paramsId, provider or jobHash → SH_ERR_PARAMS_MISMATCH', async () => {
      await refused(
        custodian.decrypt(request(good.bytes, { paramsId: 'bfv-16384-t60-v1' }), good.bytes),
        'SH_ERR_PARAMS_MISMATCH',
      );
      await refused(
        custodian.decrypt(request(good.bytes, { provider: 'utility' }), good.bytes),
        'SH_ERR_PARAMS_MISMATCH',
      );
      await refused(
        custodian.decrypt(request(good.bytes, { jobHash: 'not-a-hash' }), good.bytes),
        'SH_ERR_PARAMS_MISMATCH',
      );
    });

    it('ciphertext bytes not matching the signed hash → SH_ERR_CIPHERTEXT_INVALID', async () => {
      const flipped = good.bytes.slice();
      flipped[flipped.length >> 1]! ^= 1;
      await refused(custodian.decrypt(request(good.bytes), flipped), 'SH_ERR_CIPHERTEXT_INVALID');
    });

    it('a ciphertext not switched down to the transfer level → SH_ERR_CIPHERTEXT_INVALID', async () => {
      const mask = maskVector(deriveMaskKey(seed, 'he/tax/block/level'), T, N);
      const ct = track(ops.linear([{ ct: enc(randVec(N, 1000n)), multiplier: 2n }]));
      ops.addVector(ct, mask);
      for (const level of [3, 2, 0]) {
        while (ops.chainIndex(ct) > level) ops.evaluator.cipherModSwitchToNextInplace(ct);
        expect(ops.chainIndex(ct)).toBe(level);
        const bytes = ops.save(ct);
        await refused(custodian.decrypt(request(bytes), bytes), 'SH_ERR_CIPHERTEXT_INVALID');
      }
    });

    it('oversized ciphertext (hash signed) → SH_ERR_CIPHERTEXT_SIZE', async () => {
      const big = new Uint8Array(BFV_8192_T40.maxCiphertextBytes + 1);
      big.set(good.bytes);
      await refused(custodian.decrypt(request(big), big), 'SH_ERR_CIPHERTEXT_SIZE');
    });

    it('sum with a groupSize not dividing 8192, or seal without a recipient → SH_ERR_INVALID_ARGUMENT', async () => {
      for (const groupSize of [100, 0, 3, 16384, 1.5]) {
        await refused(
          custodian.decrypt(request(good.bytes, { mode: 'sum', groupSize, bound: '131072' }), good.bytes),
          'SH_ERR_INVALID_ARGUMENT',
        );
      }
      await refused(
        custodian.decrypt(request(good.bytes, { mode: 'sum', recipient: undefined, bound: '131072' }), good.bytes),
        'SH_ERR_INVALID_ARGUMENT',
      );
      await refused(
        custodian.decrypt(request(good.bytes, { recipient: undefined }), good.bytes),
        'SH_ERR_INVALID_ARGUMENT',
      );
    });

    it('a transfer-level ciphertext without the noise margin → SH_ERR_NOISE_BUDGET', async () => {
      // Burn the budget with full-vector products (~45 bits each, measured) and a constant, then switch down.
      const ct = enc(randVec(N, 10n));
      ops.multiplyVector(ct, maskVector(deriveMaskKey(seed, 'burn/0'), T, N));
      ops.multiplyVector(ct, maskVector(deriveMaskKey(seed, 'burn/1'), T, N));
      // A constant 2^k costs k bits; stop with ~4 bits left.
      for (let left = decryptor.invariantNoiseBudget(ct); left > 6; left = decryptor.invariantNoiseBudget(ct)) {
        ops.evaluator.multiplyPlainInplace(ct, ops.constant(1n << BigInt(Math.min(left - 4, 38))));
      }
      ops.rerandomizeForTransfer(ct, pk);
      const budget = decryptor.invariantNoiseBudget(ct);
      console.log(
        `burnt ciphertext at the transfer level: ${budget} bits of noise budget (custodian minimum ${BFV_8192_T40.minNoiseBudget})`,
      );
      expect(budget).toBeLessThan(BFV_8192_T40.minNoiseBudget);
      const bytes = ops.save(ct);
      await refused(custodian.decrypt(request(bytes), bytes), 'SH_ERR_NOISE_BUDGET');
    });
  });
});

// ---------------------------------------------------------------------------------------------------------------------

describe('WorkerPool (docs/design.md §9)', () => {
  let pool: WorkerPool;
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sh-he-pool-'));
    pool = new WorkerPool({ size: 1 });
  });
  afterAll(async () => {
    await pool?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function blob(bytes: Uint8Array): { path: string; hash: string } {
    const hash = sha256Hex(bytes);
    const path = join(dir, hash);
    writeFileSync(path, bytes);
    return { path, hash };
  }

  it('validates options up front', () => {
    expectCode(() => new WorkerPool({ size: 0 }), 'SH_ERR_INVALID_ARGUMENT');
    expectCode(() => new WorkerPool({ size: 1.5 }), 'SH_ERR_INVALID_ARGUMENT');
    expectCode(() => new WorkerPool({ size: 65 }), 'SH_ERR_INVALID_ARGUMENT');
    expectCode(() => new WorkerPool({ size: 1, maxOldGenerationSizeMb: 10 }), 'SH_ERR_INVALID_ARGUMENT');
    expect(pool.size).toBe(1);
  });

  it('evalBlock in a worker equals Σ m·x + mask at the transfer level', async () => {
    const xs = [randVec(N, 1n << 20n), randVec(N, 1n << 20n)];
    const ms = [-12_345n, 1n << 16n];
    const maskKey = deriveMaskKey(new Uint8Array(32).fill(9), 'pool/block/0');
    const task: EvalBlockTask = {
      paramsId: BFV_8192_T40.id,
      publicKey: blob(keys.publicKey),
      columns: xs.map((x, i) => ({ ...blob(ops.save(enc(x))), multiplier: ms[i]!.toString() })),
      maskKey,
    };
    const out = (await pool.run(evalBlock, task)) as { ciphertext: Uint8Array; rerandomizer: Uint8Array };
    const bytes = out.ciphertext;
    const ct = track(ops.load(bytes));
    expect(ops.chainIndex(ct)).toBe(BFV_8192_T40.transferChainIndex);
    // Replay: the same task with the logged encryption of zero gives the same bytes; another zero does not.
    expect(
      Buffer.from((await pool.run(evalBlock, { ...task, rerandomizer: out.rerandomizer })) as Uint8Array).equals(
        Buffer.from(bytes),
      ),
    ).toBe(true);
    const other = (await pool.run(evalBlock, task)) as { ciphertext: Uint8Array; rerandomizer: Uint8Array };
    expect(
      Buffer.from((await pool.run(evalBlock, { ...task, rerandomizer: other.rerandomizer })) as Uint8Array).equals(
        Buffer.from(bytes),
      ),
    ).toBe(false);
    const mask = maskVector(maskKey, T, N);
    const got = Array.from(decRaw(ct), (u, i) => centered(u - mask[i]!, T));
    expect(got).toEqual(Array.from({ length: N }, (_, s) => ms[0]! * xs[0]![s]! + ms[1]! * xs[1]![s]!));
  });

  it('encrypt in a worker (symmetric, seeded) decrypts to the values', async () => {
    const x = randVec(N, 1n << 30n);
    const task: EncryptTask = { paramsId: BFV_8192_T40.id, secretKey: keys.secretKey.slice(), values: slots(x) };
    const bytes = await pool.run(encryptKernel, task);
    expect(dec(track(ops.load(bytes)))).toEqual(x);
  });

  it('a coded failure in the worker rejects with its code (run rejects, never throws)', async () => {
    const pkBlob = blob(keys.publicKey);
    const wrongHash = sha256Hex('not the public key');
    const corrupt: EvalBlockTask = {
      paramsId: BFV_8192_T40.id,
      publicKey: { path: pkBlob.path, hash: wrongHash },
      columns: [],
      maskKey: new Uint8Array(32),
    };
    let p: Promise<unknown> | undefined;
    expect(() => {
      p = pool.run(evalBlock, corrupt);
    }).not.toThrow();
    await expectReject(p!, 'SH_ERR_BLOB_CORRUPT');
    const missing: EvalBlockTask = { ...corrupt, publicKey: { path: join(dir, 'nope'), hash: wrongHash } };
    await expectReject(pool.run(evalBlock, missing), 'SH_ERR_BLOB_MISSING');
    await expectReject(pool.run(evalBlock, { ...corrupt, paramsId: 'bfv-16384-t60-v1' }), 'SH_ERR_PARAMS_MISMATCH');
    // A column whose file was altered after it was stored.
    const col = blob(ops.save(enc([1n])));
    writeFileSync(col.path, new Uint8Array(16));
    await expectReject(
      pool.run(evalBlock, { ...corrupt, publicKey: pkBlob, columns: [{ ...col, multiplier: '1' }] }),
      'SH_ERR_BLOB_CORRUPT',
    );
    // The pool still works after failures.
    const ok = await pool.run(encryptKernel, {
      paramsId: BFV_8192_T40.id,
      secretKey: keys.secretKey.slice(),
      values: slots([5n]),
    });
    expect(dec(track(ops.load(ok)))[0]).toBe(5n);
  });
});
