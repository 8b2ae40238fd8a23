/**
 * Paillier baseline (benchmarks only; comparison code stays in bench/, never in runtime dependencies).
 *
 * The classical additively homomorphic scheme (Paillier, EUROCRYPT 1999) that banks' federated platforms such as FATE
 * use for vertical models. g = n + 1, so Enc(m; r) = (1 + m·n) · r^n mod n², and the scalar multiply of a ciphertext
 * by k is c^k mod n². Plaintexts live in Z_n and are read back centered (values above n/2 are negative).
 *
 * This is a *baseline*, not a product: it is correct and reasonably tuned (fixed-window exponentiation, CRT
 * decryption, one modular inverse per weighted sum however many weights are negative — python-paillier / FATE take one
 * inverse per negative scalar), but it has no constant-time guarantees and no key hygiene.
 *
 * Exponentiation is pluggable. `modPowJs` is pure JS BigInt (what the bench reports as "Paillier"). FATE runs on
 * gmpy2 (GMP), which is several times faster than BigInt for 2048–4096-bit moduli, so `modPowOpenSsl` offers native
 * big-number exponentiation from OpenSSL (Node's finite-field Diffie–Hellman computeSecret computes base^priv mod p
 * for any odd modulus) as a fairer stand-in for a GMP-backed Paillier. Both are checked against each other.
 */
import { createDiffieHellman, generatePrimeSync, randomBytes, type DiffieHellman } from 'node:crypto';

export type ModPow = (base: bigint, exponent: bigint, modulus: bigint) => bigint;

export interface PaillierPublicKey {
  readonly n: bigint;
  readonly n2: bigint;
}

export interface PaillierSecretKey {
  readonly p: bigint;
  readonly q: bigint;
  /** λ = lcm(p − 1, q − 1) and μ = λ⁻¹ mod n (valid for g = n + 1). */
  readonly lambda: bigint;
  readonly mu: bigint;
  /** CRT decryption constants (Paillier §7): p², q², h_p, h_q and q⁻¹ mod p. */
  readonly p2: bigint;
  readonly q2: bigint;
  readonly hp: bigint;
  readonly hq: bigint;
  readonly qInvP: bigint;
}

/** Fixed-window (5-bit) square-and-multiply on JS BigInt. */
export function modPowJs(base: bigint, exponent: bigint, modulus: bigint): bigint {
  if (modulus === 1n) return 0n;
  if (exponent < 0n) throw new RangeError(`"exponent" expected ≥ 0, got ${exponent}`);
  let b = base % modulus;
  if (b < 0n) b += modulus;
  if (exponent < 32n) {
    // Small scalars (weights): plain binary method, no table.
    let r = 1n;
    for (let e = exponent; e > 0n; e >>= 1n) {
      if (e & 1n) r = (r * b) % modulus;
      if (e > 1n) b = (b * b) % modulus;
    }
    return r;
  }
  const W = exponent.toString(2).length > 256 ? 5 : 3;
  const table: bigint[] = [1n, b];
  for (let i = 2; i < 1 << W; i++) table.push((table[i - 1]! * b) % modulus);
  const bits = exponent.toString(2);
  const padded = '0'.repeat((W - (bits.length % W)) % W) + bits;
  let r = 1n;
  for (let i = 0; i < padded.length; i += W) {
    if (i) for (let k = 0; k < W; k++) r = (r * r) % modulus;
    const d = parseInt(padded.slice(i, i + W), 2);
    if (d) r = (r * table[d]!) % modulus;
  }
  return r;
}

const dhByModulus = new Map<bigint, DiffieHellman>();

/**
 * base^exponent mod modulus with OpenSSL's BN_mod_exp, through Node's finite-field DH (`computeSecret` = peer^priv mod
 * p). OpenSSL rejects peers outside (1, p − 1) and tiny private keys, so those cases (and even moduli) use `modPowJs`.
 * Cached DH objects are per modulus; not for concurrent use (the private key is set per call).
 */
export function modPowOpenSsl(base: bigint, exponent: bigint, modulus: bigint): bigint {
  let b = base % modulus;
  if (b < 0n) b += modulus;
  if (b <= 1n || b >= modulus - 1n || exponent < 2n || (modulus & 1n) === 0n) return modPowJs(b, exponent, modulus);
  let dh = dhByModulus.get(modulus);
  if (!dh) {
    dh = createDiffieHellman(toBytes(modulus), toBytes(2n));
    dhByModulus.set(modulus, dh);
  }
  dh.setPrivateKey(toBytes(exponent));
  return fromBytes(dh.computeSecret(toBytes(b)));
}

/** a⁻¹ mod m (extended Euclid). @throws RangeError when gcd(a, m) ≠ 1. */
export function modInverse(a: bigint, m: bigint): bigint {
  let [r0, r1] = [((a % m) + m) % m, m];
  let [s0, s1] = [1n, 0n];
  while (r1 !== 0n) {
    const qt = r0 / r1;
    [r0, r1] = [r1, r0 - qt * r1];
    [s0, s1] = [s1, s0 - qt * s1];
  }
  if (r0 !== 1n) throw new RangeError('"a" expected to be invertible modulo m');
  return ((s0 % m) + m) % m;
}

function gcd(a: bigint, b: bigint): bigint {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** Key pair with two `primeBits`-bit primes (default 1024 → 2048-bit n, the size FATE uses by default). */
export function generatePaillierKeys(primeBits = 1024): { publicKey: PaillierPublicKey; secretKey: PaillierSecretKey } {
  let p: bigint;
  let q: bigint;
  do {
    p = generatePrimeSync(primeBits, { bigint: true });
    q = generatePrimeSync(primeBits, { bigint: true });
  } while (p === q || gcd(p * q, (p - 1n) * (q - 1n)) !== 1n);
  const n = p * q;
  const n2 = n * n;
  const lambda = ((p - 1n) * (q - 1n)) / gcd(p - 1n, q - 1n);
  const mu = modInverse(lambda % n, n);
  const p2 = p * p;
  const q2 = q * q;
  // h_p = L_p(g^(p−1) mod p²)⁻¹ mod p with L_p(x) = (x − 1)/p.
  const hp = modInverse((modPowJs(n + 1n, p - 1n, p2) - 1n) / p, p);
  const hq = modInverse((modPowJs(n + 1n, q - 1n, q2) - 1n) / q, q);
  return { publicKey: { n, n2 }, secretKey: { p, q, lambda, mu, p2, q2, hp, hq, qInvP: modInverse(q, p) } };
}

/** Paillier operations over one key pair with a chosen exponentiation backend. */
export class Paillier {
  readonly publicKey: PaillierPublicKey;
  readonly secretKey: PaillierSecretKey | undefined;
  readonly modPow: ModPow;

  constructor(publicKey: PaillierPublicKey, secretKey?: PaillierSecretKey, modPow: ModPow = modPowJs) {
    this.publicKey = publicKey;
    this.secretKey = secretKey;
    this.modPow = modPow;
  }

  /** A uniformly random unit of Z_n (r^n is the expensive part of every encryption). */
  private randomUnit(): bigint {
    const { n } = this.publicKey;
    const bytes = Math.ceil(n.toString(2).length / 8) + 16;
    for (;;) {
      const r = fromBytes(randomBytes(bytes)) % n;
      if (r > 1n && gcd(r, n) === 1n) return r;
    }
  }

  /** Enc(m) = (1 + m·n) · r^n mod n², m signed with |m| < n/2. */
  encrypt(m: bigint): bigint {
    const { n, n2 } = this.publicKey;
    const mm = ((m % n) + n) % n;
    return (((1n + mm * n) % n2) * this.modPow(this.randomUnit(), n, n2)) % n2;
  }

  /** Fresh randomness on an existing ciphertext (multiply by an encryption of zero). */
  rerandomize(c: bigint): bigint {
    const { n, n2 } = this.publicKey;
    return (c * this.modPow(this.randomUnit(), n, n2)) % n2;
  }

  /** Enc(a) · Enc(b) = Enc(a + b). */
  add(a: bigint, b: bigint): bigint {
    return (a * b) % this.publicKey.n2;
  }

  /** Enc(a) · (1 + k·n) = Enc(a + k) (no fresh randomness). */
  addPlain(c: bigint, k: bigint): bigint {
    const { n, n2 } = this.publicKey;
    return (c * ((1n + (((k % n) + n) % n) * n) % n2)) % n2;
  }

  /** Enc(k·a): c^k, or (c⁻¹)^|k| for negative k (python-paillier's rule, avoids an n-bit exponent). */
  mulScalar(c: bigint, k: bigint): bigint {
    const { n2 } = this.publicKey;
    return k >= 0n ? this.modPow(c, k, n2) : this.modPow(modInverse(c, n2), -k, n2);
  }

  /** Enc(Σ w_i·x_i): positive and negative terms are accumulated apart, then one inverse for all negative ones. */
  weightedSum(cts: readonly bigint[], weights: readonly bigint[]): bigint {
    if (cts.length !== weights.length)
      throw new RangeError(`"weights" expected ${cts.length} entries, got ${weights.length}`);
    const { n2 } = this.publicKey;
    let pos = 1n;
    let neg = 1n;
    for (let i = 0; i < cts.length; i++) {
      const w = weights[i]!;
      if (w > 0n) pos = (pos * this.modPow(cts[i]!, w, n2)) % n2;
      else if (w < 0n) neg = (neg * this.modPow(cts[i]!, -w, n2)) % n2;
    }
    return neg === 1n ? pos : (pos * modInverse(neg, n2)) % n2;
  }

  /** m = L(c^λ mod n²)·μ mod n, centered. */
  decrypt(c: bigint): bigint {
    const sk = this.requireSecret();
    const { n, n2 } = this.publicKey;
    const u = this.modPow(c, sk.lambda, n2);
    return center((((u - 1n) / n) * sk.mu) % n, n);
  }

  /** CRT decryption (Paillier §7): two half-size exponentiations mod p² and q², ~3–4× faster. */
  decryptCrt(c: bigint): bigint {
    const sk = this.requireSecret();
    const mp = (((this.modPow(c % sk.p2, sk.p - 1n, sk.p2) - 1n) / sk.p) * sk.hp) % sk.p;
    const mq = (((this.modPow(c % sk.q2, sk.q - 1n, sk.q2) - 1n) / sk.q) * sk.hq) % sk.q;
    const h = ((((mp - mq) % sk.p) + sk.p) * sk.qInvP) % sk.p;
    return center(mq + h * sk.q, this.publicKey.n);
  }

  private requireSecret(): PaillierSecretKey {
    if (!this.secretKey) throw new TypeError('"secretKey" expected for decryption');
    return this.secretKey;
  }
}

function center(m: bigint, n: bigint): bigint {
  return m > n / 2n ? m - n : m;
}

function toBytes(x: bigint): Buffer {
  const hex = x.toString(16);
  return Buffer.from(hex.length % 2 ? '0' + hex : hex, 'hex');
}

function fromBytes(b: Uint8Array): bigint {
  return b.length === 0 ? 0n : BigInt('0x' + Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex'));
}

/**
 * Self-check run before timing: decrypt(Σ w·Enc(x)) equals Σ w·x (signed weights, both decryptions, both backends),
 * plus the homomorphic add/addPlain/rerandomize identities. Returns the number of checks; throws on the first failure.
 */
export function paillierSelfCheck(
  publicKey: PaillierPublicKey,
  secretKey: PaillierSecretKey,
  subjects: readonly (readonly bigint[])[],
  weights: readonly bigint[],
): number {
  let checks = 0;
  const expectEq = (what: string, got: bigint, want: bigint) => {
    if (got !== want) throw new Error(`Paillier self-check failed: ${what}: got ${got}, expected ${want}`);
    checks++;
  };
  for (const backend of [modPowJs, modPowOpenSsl]) {
    const P = new Paillier(publicKey, secretKey, backend);
    for (const [si, xs] of subjects.entries()) {
      const cts = xs.map((x) => P.encrypt(x));
      const want = xs.reduce((acc, x, i) => acc + weights[i]! * x, 0n);
      const sum = P.weightedSum(cts, weights);
      expectEq(`${backend.name} subject ${si} decrypt`, P.decrypt(sum), want);
      expectEq(`${backend.name} subject ${si} decryptCrt`, P.decryptCrt(P.rerandomize(sum)), want);
      expectEq(
        `${backend.name} subject ${si} add/addPlain`,
        P.decryptCrt(P.addPlain(P.add(cts[0]!, cts[1]!), -7n)),
        xs[0]! + xs[1]! - 7n,
      );
      expectEq(`${backend.name} subject ${si} mulScalar`, P.decryptCrt(P.mulScalar(cts[2]!, -3n)), -3n * xs[2]!);
    }
  }
  const { n2 } = publicKey;
  const base = (publicKey.n * 7n + 12345n) % n2;
  expectEq('modPowOpenSsl = modPowJs', modPowOpenSsl(base, publicKey.n, n2), modPowJs(base, publicKey.n, n2));
  return checks;
}
