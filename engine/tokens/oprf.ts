/**
 * OPRF tokens for string-id fields (docs/design.md §2, §4.4 token membership, §5 Verification): RFC 9497, suite
 * P256-SHA256, POPRF mode (mode 0x02: verifiable, with a public `info` input), through @noble/curves' `p256_oprf`.
 *
 *   token = POPRF_k(info, input) = SHA-256(len‖input ‖ len‖info ‖ len‖(1/(k + m))·HashToGroup(input) ‖ "Finalize")
 *   info  = JCS {t: "safehouse.token.v1", provider, field, epoch}           (m = HashToScalar("Info"‖len‖info))
 *   input = JCS {s: USCC, f: field, v: normalizeId(idRuleFor(field), value)}
 *
 * (JCS is RFC 8785 canonical JSON, ../jcs.ts; normalization is ./normalize.ts.)
 *
 * Who runs what:
 * - the **provider** holds the key pair and tokenizes its own table non-interactively: {@link evaluateTokens};
 * - the **engine** blinds a bank's claims with the provider's *published* public key: {@link blindInputs};
 * - the provider's **custodian** evaluates the blinded batch and proves it used its key: {@link evaluateBlinded};
 * - the **engine** checks the batch DLEQ proof and unblinds: {@link finalizeTokens}. The tokens it gets are exactly
 *   the provider's uploaded tokens for the same (subject, field, value), so membership is a lookup.
 * Views: the custodian sees `info` (provider, field, epoch: public by design) and uniformly random blinded points;
 * the engine sees tokens, never the key, so it cannot tokenize a guessed value offline — every guess costs a
 * custodian evaluation, which the custodian logs and bounds by the bank's signed budget (docs/design.md §4.4, §7). That is
 * the reason for an OPRF rather than a keyed hash the engine could compute: ids such as certificate numbers have
 * little entropy. `info` binds provider, field and key epoch, so tokens of the same value under another provider,
 * field or epoch are unrelated, and a proof made for one `info` never verifies for another.
 *
 * Why P-256 rather than ristretto255 (the RFC's first suite: 32-byte elements, and about twice as fast in noble —
 * measured on this machine, POPRF per element with a batch of 64: Evaluate 2.4 vs 1.2 ms, BlindEvaluate 2.4 vs
 * 1.2 ms, Finalize 2.7 vs 1.4 ms; the ~2.2–2.7 ms of P-256 is fine for verification claims): the custodian's
 * BlindEvaluate multiplies a point chosen by someone else (the blinded element) by a scalar derived from its
 * long-lived key, 1/(k + m). @noble/curves 2.4.0 documents (README, "Constant-timeness") that secret scalars are
 * masked as s + r·n with a random 128-bit r, which "applies to all multiplications on cofactor-1 curves (p256, p384,
 * p521, secp256k1), and to base-point multiplications everywhere", and lists as a known limitation that "on cofactored
 * Edwards curves (ed25519, ed448), multiplying a non-base point by a secret scalar is not blinded", which "matters
 * for protocols that multiply arbitrary Edwards/Ristretto points by long-lived secret scalars" — our case exactly.
 * The same README says its timing harness detects that difference but the authors could not extract Edwards scalars
 * in a realistic setting, and that no JS library can promise constant time (JIT, GC); P-256 is chosen as the better
 * documented of two best-effort options, not as a guarantee. noble's POPRF also inverts k + m with a Fermat
 * (fixed-exponent) inversion rather than the input-dependent Euclidean one (abstract/oprf.js, `invertSecret`).
 * Cost per element: see test/engine/tokens/oprf.test.ts, which prints it (about 2.2 ms to evaluate, blind or
 * blind-evaluate and 2.7 ms to finalize, on the 2-core development machine).
 *
 * Errors: an element that is malformed, not on the curve or the identity → SH_ERR_TOKEN_INVALID (checked for the
 * whole batch before any evaluation or verification); a proof that is malformed or does not verify →
 * SH_ERR_TOKEN_PROOF; wrong types, batch sizes, secret-key or blind bytes (the caller's own values) →
 * SH_ERR_INVALID_ARGUMENT.
 *
 * Secrets: the secret key and the blinds are the caller's to keep and wipe (`fill(0)`); the engine should drop each
 * `Blinded` once its batch is finalized. noble turns them into bigints for the arithmetic, which JS cannot wipe.
 */
import { p256, p256_hasher, p256_oprf } from '@noble/curves/nist.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { describe, fail } from '../../core/errors.ts';
import { canonicalBytes } from '../../core/jcs.ts';
import { parseUscc } from '../../sandbox/uscc.ts';
import { idRuleFor, normalizeId } from './normalize.ts';

/** RFC 9497 §4.3 ciphersuite identifier. */
export const TOKEN_SUITE = 'P256-SHA256';
/** RFC 9497 §3.3.3 partially-oblivious mode (modeVOPRF + public info). */
export const TOKEN_MODE = 'POPRF';
/** Most elements in one blinded batch (one DLEQ proof each); callers split larger claim sets. */
export const MAX_TOKEN_BATCH = 4096;
/** Bytes of a token (SHA-256 output, RFC 9497 §4.3 Nh). */
export const TOKEN_BYTES = 32;

/** Token key epoch: tokens are computed under POPRF info (provider, field, epoch); rotating a provider's OPRF key bumps it. */
export const TOKEN_EPOCH = 1;

/** A provider's OPRF key pair: a 32-byte scalar and its 33-byte SEC1-compressed public point (RFC 9497 §3.2). */
export interface OprfKeyPair {
  secretKey: Uint8Array;
  publicKey: Uint8Array;
}

/**
 * One blinded input, kept by the engine between {@link blindInputs} and {@link finalizeTokens}. Only `blinded` is
 * sent to the custodian; `blind` is secret. `tweakedKey` (pkS + m·G, RFC 9497 §3.3.3) is informational:
 * finalizeTokens recomputes it from the published key and `info` and never trusts this copy.
 */
export interface Blinded {
  blind: Uint8Array;
  blinded: Uint8Array;
  tweakedKey: Uint8Array;
}

const { Point } = p256;
const { Fn } = Point;
const SCALAR_BYTES = 32;
const ELEMENT_BYTES = 33;
const PROOF_BYTES = 64;
const MAX_RFC_INPUT = 0xffff; // RFC 9497 §1.2: inputs are length-prefixed with two bytes
const ENC = new TextEncoder();
/** RFC 9497 §3.1 contextString for POPRF: "OPRFV1-" ‖ I2OSP(0x02, 1) ‖ "-" ‖ identifier. */
const CONTEXT = new Uint8Array([...ENC.encode('OPRFV1-'), 0x02, ...ENC.encode('-' + TOKEN_SUITE)]);
const HASH_TO_SCALAR_DST = new Uint8Array([...ENC.encode('HashToScalar-'), ...CONTEXT]);

/**
 * A fresh random OPRF key pair (RFC 9497 §3.2 GenerateKeyPair); the provider publishes `publicKey` with each key
 * epoch and keeps `secretKey` in its custodian.
 * @example const { secretKey, publicKey } = generateOprfKeyPair(); // 32 and 33 bytes
 */
export function generateOprfKeyPair(): OprfKeyPair {
  const { secretKey, publicKey } = p256_oprf.poprf(new Uint8Array(0)).generateKeyPair();
  return { secretKey, publicKey };
}

/**
 * The POPRF public input binding a token to one provider, field and key epoch: RFC 8785 canonical JSON of
 * `{t: 'safehouse.token.v1', provider, field, epoch}`.
 * @throws SafehouseError SH_ERR_INVALID_ARGUMENT for an empty or over-long provider/field, or an epoch that is not a
 *   non-negative safe integer.
 * @example tokenInfo('tax-bureau', 'property_cert_no', 3) // bytes of {"epoch":3,"field":"property_cert_no",...}
 */
export function tokenInfo(provider: string, field: string, epoch: number): Uint8Array {
  checkName(provider, 'provider');
  checkName(field, 'field');
  if (!Number.isSafeInteger(epoch) || epoch < 0) {
    fail('SH_ERR_INVALID_ARGUMENT', `"epoch" expected a non-negative safe integer, got ${describe(epoch)}`);
  }
  return canonicalBytes({ t: 'safehouse.token.v1', provider, field, epoch });
}

/**
 * The private OPRF input for one (subject, field, value): RFC 8785 canonical JSON of `{s: uscc, f: field, v}`.
 * The USCC is put in canonical form; the value must already be normalized with the field's rule, so that provider
 * and engine cannot disagree silently.
 * @throws SafehouseError SH_ERR_USCC_FORMAT / SH_ERR_USCC_CHECK for a bad USCC; SH_ERR_ID_VALUE when
 *   `normalizedValue` is not `normalizeId(idRuleFor(field), normalizedValue)`; SH_ERR_INVALID_ARGUMENT for a bad field.
 * @example tokenInput('91350100M000100Y43', 'property_cert_no', normalizeId('certificate', '粤（2021）…第1号'))
 */
export function tokenInput(uscc: string, field: string, normalizedValue: string): Uint8Array {
  const s = parseUscc(uscc);
  checkName(field, 'field');
  const rule = idRuleFor(field);
  if (normalizeId(rule, normalizedValue) !== normalizedValue) {
    fail(
      'SH_ERR_ID_VALUE',
      `"value" is not normalized for field ${field} (rule ${rule}): pass normalizeId(idRuleFor(field), value)`,
      {
        field,
        rule,
      },
    );
  }
  return canonicalBytes({ s, f: field, v: normalizedValue });
}

/**
 * Tokens computed by the key holder itself, non-interactively (RFC 9497 §3.3.3 POPRF Evaluate): what a provider
 * uploads for its own table. Equal to what {@link finalizeTokens} yields for the same inputs.
 * @throws SafehouseError SH_ERR_INVALID_ARGUMENT for a secret key that is not a 32-byte scalar in [1, n−1], an
 *   input over 65535 bytes, or a batch outside 1..4096.
 * @example const tokens = evaluateTokens(keys.secretKey, tokenInfo('registry', 'property_cert_no', 1), [input]);
 */
export function evaluateTokens(secretKey: Uint8Array, info: Uint8Array, inputs: Uint8Array[]): Uint8Array[] {
  checkSecretScalar(secretKey, 'secretKey');
  checkInfo(info);
  checkBatch(inputs, 'inputs');
  inputs.forEach((x, i) => checkInput(x, `inputs[${i}]`));
  const poprf = p256_oprf.poprf(info);
  return inputs.map((x) => poprf.evaluate(secretKey, x));
}

/**
 * Engine side, step 1 (RFC 9497 §3.3.3 Blind): blind each input with a fresh random scalar against the provider's
 * published key. Send only the `blinded` fields to the custodian; keep the rest for {@link finalizeTokens}.
 * @throws SafehouseError SH_ERR_TOKEN_INVALID for a public key that is not a 33-byte compressed P-256 point (or whose
 *   tweaked key is the identity); SH_ERR_INVALID_ARGUMENT for a bad input or batch size.
 * @example const b = blindInputs(provider.publicKey, info, inputs); send(b.map((x) => x.blinded));
 */
export function blindInputs(
  publicKey: Uint8Array,
  info: Uint8Array,
  inputs: Uint8Array[],
  blindKey?: Uint8Array,
): Blinded[] {
  checkInfo(info);
  checkBatch(inputs, 'inputs');
  inputs.forEach((x, i) => checkInput(x, `inputs[${i}]`));
  tweakedKeyFor(publicKey, info); // coded refusal of a bad key before noble sees it
  if (blindKey !== undefined && blindKey.length !== 32)
    fail('SH_ERR_INVALID_ARGUMENT', `"blindKey" expected 32 bytes, got ${blindKey.length}`);
  const poprf = p256_oprf.poprf(info);
  return inputs.map((x, i) => {
    const { blind, blinded, tweakedKey } = blindKey
      ? poprf.blind(x, publicKey, seededRng(blindKey, i))
      : poprf.blind(x, publicKey);
    return { blind, blinded, tweakedKey };
  });
}

/**
 * Deterministic randomness for blinds derived from a job seed (so an auditor holding the escrowed seed can recompute
 * the blinded elements; RFC 9497 leaves the source of the blind to the client): HKDF-SHA256 of the key, with the
 * element index and a counter as info, one 32-byte block per call (noble draws the scalar by rejection sampling).
 */
function seededRng(key: Uint8Array, index: number): (n?: number) => Uint8Array<ArrayBuffer> {
  let counter = 0;
  return (n = 32) =>
    new Uint8Array(
      hkdf(sha256, key, undefined, new TextEncoder().encode(`safehouse.blind.v1/${index}/${counter++}`), n),
    );
}

/**
 * Custodian side (RFC 9497 §3.3.3 BlindEvaluate, batched per §2.2): evaluate every blinded element with
 * 1/(k + m) and one DLEQ proof for the whole batch against the tweaked key. Every element is decoded and checked
 * first; one bad element refuses the batch before any secret-key operation.
 * @throws SafehouseError SH_ERR_TOKEN_INVALID for an element that is not a 33-byte compressed point on P-256 (the
 *   identity has no such encoding); SH_ERR_INVALID_ARGUMENT for a bad secret key or a batch outside 1..4096.
 * @example const { evaluated, proof } = evaluateBlinded(keys.secretKey, info, blindedFromEngine);
 */
export function evaluateBlinded(
  secretKey: Uint8Array,
  info: Uint8Array,
  blinded: Uint8Array[],
): { evaluated: Uint8Array[]; proof: Uint8Array } {
  checkSecretScalar(secretKey, 'secretKey');
  checkInfo(info);
  checkBatch(blinded, 'blinded');
  blinded.forEach((b, i) => decodeElement(b, `blinded[${i}]`));
  const { evaluated, proof } = p256_oprf.poprf(info).blindEvaluateBatch(secretKey, blinded);
  return { evaluated, proof };
}

/**
 * Engine side, step 2 (RFC 9497 §3.3.3 Finalize, batched): verify the custodian's batch DLEQ proof against the
 * tweaked key recomputed from the provider's published `publicKey` and `info`, then unblind and hash. Returns one
 * 32-byte token per input, equal to {@link evaluateTokens}' for the same input.
 * @throws SafehouseError SH_ERR_TOKEN_PROOF when the proof is malformed or does not verify (another key, another
 *   info, another batch, elements altered or reordered); SH_ERR_TOKEN_INVALID for a malformed, off-curve or identity
 *   public key, blinded or evaluated element; SH_ERR_INVALID_ARGUMENT for mismatched batch sizes or bad blinds.
 * @example const tokens = finalizeTokens(inputs, b, res.evaluated, res.proof, provider.publicKey, info);
 */
export function finalizeTokens(
  inputs: Uint8Array[],
  blinded: Blinded[],
  evaluated: Uint8Array[],
  proof: Uint8Array,
  publicKey: Uint8Array,
  info: Uint8Array,
): Uint8Array[] {
  checkInfo(info);
  checkBatch(inputs, 'inputs');
  checkBatch(blinded, 'blinded', inputs.length);
  checkBatch(evaluated, 'evaluated', inputs.length);
  const tweakedKey = tweakedKeyFor(publicKey, info);
  const items = inputs.map((input, i) => {
    checkInput(input, `inputs[${i}]`);
    const b = blinded[i];
    if (typeof b !== 'object' || b === null)
      fail('SH_ERR_INVALID_ARGUMENT', `"blinded[${i}]" expected an object, got ${describe(b)}`);
    checkSecretScalar(b.blind, `blinded[${i}].blind`);
    decodeElement(b.blinded, `blinded[${i}].blinded`);
    decodeElement(evaluated[i]!, `evaluated[${i}]`);
    return { input, blind: b.blind, blinded: b.blinded, evaluated: evaluated[i]! };
  });
  checkBytes(proof, 'proof');
  if (proof.length !== PROOF_BYTES)
    fail('SH_ERR_TOKEN_PROOF', `"proof" expected ${PROOF_BYTES} bytes, got ${proof.length}`);
  try {
    return p256_oprf.poprf(info).finalizeBatch(items, proof, tweakedKey);
  } catch (err) {
    // Everything else was validated above: what noble can still refuse is the proof (a scalar ≥ n, or c ≠ c').
    return fail(
      'SH_ERR_TOKEN_PROOF',
      'the DLEQ proof does not verify against the provider key and info for this batch',
      {
        elements: inputs.length,
      },
      err,
    );
  }
}

// --- helpers ---------------------------------------------------------------------------------------------------

/** RFC 9497 §3.3.3: tweakedKey = G·HashToScalar("Info" ‖ I2OSP(len(info), 2) ‖ info) + pkS, never the identity. */
function tweakedKeyFor(publicKey: Uint8Array, info: Uint8Array): Uint8Array {
  const pk = decodeElement(publicKey, 'publicKey');
  const framed = new Uint8Array(4 + 2 + info.length);
  framed.set(ENC.encode('Info'), 0);
  framed[4] = info.length >>> 8;
  framed[5] = info.length & 0xff;
  framed.set(info, 6);
  const m = p256_hasher.hashToScalar(framed, { DST: HASH_TO_SCALAR_DST });
  const tweaked = Point.BASE.multiply(m).add(pk);
  if (tweaked.is0()) fail('SH_ERR_TOKEN_INVALID', '"publicKey" gives the identity as tweaked key for this info');
  return tweaked.toBytes(true);
}

/** RFC 9497 §2.1 DeserializeElement with the §3.3 wire rules: 33-byte SEC1 compressed, on the curve, not identity. */
function decodeElement(bytes: Uint8Array, name: string): ReturnType<typeof Point.fromBytes> {
  checkBytes(bytes, name);
  if (bytes.length !== ELEMENT_BYTES)
    fail('SH_ERR_TOKEN_INVALID', `"${name}" expected ${ELEMENT_BYTES} bytes, got ${bytes.length}`);
  let p;
  try {
    p = Point.fromBytes(bytes);
  } catch (err) {
    return fail('SH_ERR_TOKEN_INVALID', `"${name}" is not a compressed point on P-256`, {}, err);
  }
  if (p.is0()) fail('SH_ERR_TOKEN_INVALID', `"${name}" is the identity element`);
  return p;
}

function checkSecretScalar(bytes: Uint8Array, name: string): void {
  checkBytes(bytes, name);
  if (bytes.length !== SCALAR_BYTES)
    fail('SH_ERR_INVALID_ARGUMENT', `"${name}" expected ${SCALAR_BYTES} bytes, got ${bytes.length}`);
  let x = 0n;
  for (const b of bytes) x = (x << 8n) | BigInt(b);
  // Not secret-independent timing, but only the range is tested: a comparison, not arithmetic on the key.
  if (x === 0n || x >= Fn.ORDER) fail('SH_ERR_INVALID_ARGUMENT', `"${name}" expected a P-256 scalar in [1, n-1]`);
}

function checkBatch(list: unknown, name: string, expected?: number): void {
  if (!Array.isArray(list)) fail('SH_ERR_INVALID_ARGUMENT', `"${name}" expected an array, got ${describe(list)}`);
  if (expected !== undefined && list.length !== expected) {
    fail('SH_ERR_INVALID_ARGUMENT', `"${name}" expected ${expected} elements (one per input), got ${list.length}`);
  }
  if (list.length < 1 || list.length > MAX_TOKEN_BATCH) {
    fail('SH_ERR_INVALID_ARGUMENT', `"${name}" expected 1..${MAX_TOKEN_BATCH} elements, got ${list.length}`);
  }
}

function checkInput(bytes: Uint8Array, name: string): void {
  checkBytes(bytes, name);
  if (bytes.length > MAX_RFC_INPUT)
    fail('SH_ERR_INVALID_ARGUMENT', `"${name}" expected at most ${MAX_RFC_INPUT} bytes, got ${bytes.length}`);
}

function checkInfo(info: Uint8Array): void {
  checkInput(info, 'info');
}

function checkName(value: string, name: string): void {
  if (typeof value !== 'string' || value.length < 1 || value.length > 128) {
    fail('SH_ERR_INVALID_ARGUMENT', `"${name}" expected a string of 1..128 characters, got ${describe(value)}`);
  }
}

function checkBytes(value: unknown, name: string): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array))
    fail('SH_ERR_INVALID_ARGUMENT', `"${name}" expected Uint8Array, got ${describe(value)}`);
}
