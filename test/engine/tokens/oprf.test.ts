// RFC 9497 tokens (engine/tokens/oprf.ts): the official P256-SHA256 vectors of Appendix A.3 (test/vectors/
// rfc9497-p256.json) through noble's API with the vectors' blinds and proof scalars, then through Safehouse's API;
// the blind → evaluate → finalize round trip against the key holder's own evaluation; the corrupted-proof matrix
// (SH_ERR_TOKEN_PROOF); invalid elements (SH_ERR_TOKEN_INVALID); domain separation by provider, field and epoch.
// Longer than 400 lines: the RFC 9497 vectors, the round trip and the corrupted-proof matrix use the same vector file
// and key fixtures.
import { beforeAll, describe, expect, it } from 'vitest';
import { p256, p256_oprf } from '@noble/curves/nist.js';
import {
  MAX_TOKEN_BATCH,
  TOKEN_BYTES,
  TOKEN_MODE,
  TOKEN_SUITE,
  blindInputs,
  evaluateBlinded,
  evaluateTokens,
  finalizeTokens,
  generateOprfKeyPair,
  tokenInfo,
  tokenInput,
  type Blinded,
  type OprfKeyPair,
} from '../../../engine/tokens/oprf.ts';
import { normalizeId } from '../../../engine/tokens/normalize.ts';
import { randomUscc } from '../../../sandbox/uscc.ts';
import { mulberry32 } from '../../../core/rng.ts';
import { expectCode } from '../../fixtures/expect.ts';
import vectors from '../../vectors/rfc9497-p256.json' with { type: 'json' };

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const N = p256.Point.Fn.ORDER;
const P = p256.Point.Fp.ORDER;

/**
 * noble draws a scalar as mapHashToField(rng(48)) = (x mod (n−1)) + 1, so returning the 48-byte encoding of
 * `scalar − 1` makes it draw exactly `scalar` (noble's own test/rfc9497-oprf.test.ts does the same).
 */
function fixedScalars(...scalarsHex: string[]): (len?: number) => Uint8Array<ArrayBuffer> {
  const queue = scalarsHex.map((h) => {
    const out = new Uint8Array(48);
    let v = BigInt('0x' + h) - 1n;
    for (let i = 47; i >= 0; i--, v >>= 8n) out[i] = Number(v & 0xffn);
    return out;
  });
  return (len) => {
    const next = queue.shift();
    if (next === undefined || next.length !== len)
      throw new Error(`fixed RNG: expected ${next?.length} bytes, asked ${len}`);
    return next;
  };
}

function modPow(b: bigint, e: bigint, m: bigint): bigint {
  let r = 1n;
  for (b %= m; e > 0n; e >>= 1n, b = (b * b) % m) if (e & 1n) r = (r * b) % m;
  return r;
}

/** 0x02 ‖ x for the first x whose x³ − 3x + b is a non-residue mod p: no point of P-256 has this x (Euler). */
function offCurvePoint(): Uint8Array {
  const b = p256.Point.CURVE().b;
  for (let x = 1n; ; x++) {
    const rhs = (((x * x * x - 3n * x + b) % P) + P) % P;
    if (modPow(rhs, (P - 1n) / 2n, P) === P - 1n) {
      const out = new Uint8Array(33);
      out[0] = 0x02;
      out.set(unhex(x.toString(16).padStart(64, '0')), 1);
      return out;
    }
  }
}

const IDENTITY_1 = new Uint8Array([0x00]); // SEC1's encoding of the point at infinity
const IDENTITY_33 = new Uint8Array(33); // …and the 33-byte all-zero string a naive encoder might send
const OFF_CURVE = offCurvePoint();
const X_TOO_BIG = new Uint8Array([0x02, ...new Uint8Array(32).fill(0xff)]); // x ≥ p
const BAD_ELEMENTS: Array<[string, Uint8Array]> = [
  ['identity as one 0x00 byte', IDENTITY_1],
  ['identity as 33 zero bytes', IDENTITY_33],
  ['a point not on the curve', OFF_CURVE],
  ['x ≥ p', X_TOO_BIG],
  ['an uncompressed (65-byte) point', p256.Point.BASE.toBytes(false)],
  ['a 32-byte string', new Uint8Array(32).fill(7)],
];

describe("RFC 9497 Appendix A.3 vectors, P256-SHA256, through noble with the vectors' blinds", () => {
  const { OPRF, VOPRF, POPRF } = vectors.modes;

  it('the suite and mode Safehouse uses are the ones the vectors test', () => {
    expect(vectors.suite).toBe(TOKEN_SUITE);
    expect(TOKEN_MODE).toBe('POPRF');
  });

  it('A.3.1 OPRF mode: DeriveKeyPair, Blind, BlindEvaluate, Finalize, Evaluate', () => {
    const keys = p256_oprf.oprf.deriveKeyPair(unhex(OPRF.Seed), unhex(OPRF.KeyInfo));
    expect(hex(keys.secretKey)).toBe(OPRF.skSm);
    for (const t of OPRF.tests) {
      const input = unhex(t.Input[0]!);
      const b = p256_oprf.oprf.blind(input, fixedScalars(t.Blind[0]!));
      expect(hex(b.blind)).toBe(t.Blind[0]);
      expect(hex(b.blinded)).toBe(t.BlindedElement[0]);
      const ev = p256_oprf.oprf.blindEvaluate(keys.secretKey, b.blinded);
      expect(hex(ev)).toBe(t.EvaluationElement[0]);
      expect(hex(p256_oprf.oprf.finalize(input, b.blind, ev))).toBe(t.Output[0]);
    }
  });

  it('A.3.2 VOPRF mode: batched BlindEvaluate reproduces the proof; FinalizeBatch verifies it', () => {
    const keys = p256_oprf.voprf.deriveKeyPair(unhex(VOPRF.Seed), unhex(VOPRF.KeyInfo));
    expect(hex(keys.secretKey)).toBe(VOPRF.skSm);
    expect(hex(keys.publicKey)).toBe(VOPRF.pkSm);
    for (const t of VOPRF.tests) {
      const inputs = t.Input.map(unhex);
      const blinds = inputs.map((x, i) => p256_oprf.voprf.blind(x, fixedScalars(t.Blind[i]!)));
      expect(blinds.map((b) => hex(b.blinded))).toEqual(t.BlindedElement);
      const res = p256_oprf.voprf.blindEvaluateBatch(
        keys.secretKey,
        keys.publicKey,
        blinds.map((b) => b.blinded),
        fixedScalars(t.ProofRandomScalar),
      );
      expect(res.evaluated.map(hex)).toEqual(t.EvaluationElement);
      expect(hex(res.proof)).toBe(t.Proof);
      const items = inputs.map((input, i) => ({
        input,
        blind: unhex(t.Blind[i]!),
        blinded: unhex(t.BlindedElement[i]!),
        evaluated: unhex(t.EvaluationElement[i]!),
      }));
      expect(p256_oprf.voprf.finalizeBatch(items, keys.publicKey, unhex(t.Proof)).map(hex)).toEqual(t.Output);
    }
  });

  it('A.3.3 POPRF mode: Blind (with tweaked key), batched BlindEvaluate, FinalizeBatch, Evaluate', () => {
    const keys = p256_oprf.poprf(new Uint8Array(0)).deriveKeyPair(unhex(POPRF.Seed), unhex(POPRF.KeyInfo));
    expect(hex(keys.secretKey)).toBe(POPRF.skSm);
    expect(hex(keys.publicKey)).toBe(POPRF.pkSm);
    for (const t of POPRF.tests) {
      const poprf = p256_oprf.poprf(unhex(t.Info));
      const inputs = t.Input.map(unhex);
      const blinds = inputs.map((x, i) => poprf.blind(x, keys.publicKey, fixedScalars(t.Blind[i]!)));
      expect(blinds.map((b) => hex(b.blinded))).toEqual(t.BlindedElement);
      const res = poprf.blindEvaluateBatch(
        keys.secretKey,
        blinds.map((b) => b.blinded),
        fixedScalars(t.ProofRandomScalar),
      );
      expect(res.evaluated.map(hex)).toEqual(t.EvaluationElement);
      expect(hex(res.proof)).toBe(t.Proof);
      const items = inputs.map((input, i) => ({
        input,
        blind: blinds[i]!.blind,
        blinded: blinds[i]!.blinded,
        evaluated: res.evaluated[i]!,
      }));
      expect(poprf.finalizeBatch(items, res.proof, blinds[0]!.tweakedKey).map(hex)).toEqual(t.Output);
      expect(inputs.map((x) => hex(poprf.evaluate(keys.secretKey, x)))).toEqual(t.Output);
    }
  });
});

describe("RFC 9497 A.3.3 POPRF vectors through Safehouse's API", () => {
  const V = vectors.modes.POPRF;
  const sk = unhex(V.skSm);
  const pk = unhex(V.pkSm);

  it.each(V.tests.map((t) => [t.name, t] as const))('%s', (_name, t) => {
    const info = unhex(t.Info);
    const inputs = t.Input.map(unhex);
    // the key holder's own evaluation
    expect(evaluateTokens(sk, info, inputs).map(hex)).toEqual(t.Output);
    // the custodian's evaluation is deterministic in the elements; its proof uses a fresh r, so it is checked by use
    const res = evaluateBlinded(sk, info, t.BlindedElement.map(unhex));
    expect(res.evaluated.map(hex)).toEqual(t.EvaluationElement);
    // the engine finalizes the RFC's own transcript. The tweakedKey carried along is garbage on purpose:
    // finalizeTokens recomputes it from pkSm and Info, so this also checks that derivation against the RFC.
    const blinded: Blinded[] = t.Blind.map((b, i) => ({
      blind: unhex(b),
      blinded: unhex(t.BlindedElement[i]!),
      tweakedKey: new Uint8Array(33),
    }));
    expect(finalizeTokens(inputs, blinded, t.EvaluationElement.map(unhex), unhex(t.Proof), pk, info).map(hex)).toEqual(
      t.Output,
    );
    expect(finalizeTokens(inputs, blinded, res.evaluated, res.proof, pk, info).map(hex)).toEqual(t.Output);
    // and the RFC's proof does not verify for any other info
    expectCode(
      () => finalizeTokens(inputs, blinded, t.EvaluationElement.map(unhex), unhex(t.Proof), pk, utf8('test infO')),
      'SH_ERR_TOKEN_PROOF',
    );
  });
});

const rng = mulberry32(9497);
const SUBJECTS = Array.from({ length: 4 }, () => randomUscc(rng));
const CERTS = [
  '《粤（2021）深圳市不动产权第 0123456 号》',
  '粤〔2020〕广州市不动产权第0000001号',
  '京(2019)朝阳区不动产权第0000002号',
  '沪(2022)浦东新区不动产权第0765432号',
];

function inputsFor(field = 'property_cert_no'): Uint8Array[] {
  return SUBJECTS.map((s, i) => tokenInput(s, field, normalizeId('certificate', CERTS[i]!)));
}

describe('tokenInfo and tokenInput', () => {
  it('tokenInfo is the canonical JSON of {t, provider, field, epoch}', () => {
    expect(new TextDecoder().decode(tokenInfo('registry-sz', 'property_cert_no', 3))).toBe(
      '{"epoch":3,"field":"property_cert_no","provider":"registry-sz","t":"safehouse.token.v1"}',
    );
  });

  it('tokenInfo refuses empty names and epochs that are not non-negative safe integers', () => {
    for (const epoch of [-1, 1.5, Number.NaN, 2 ** 53])
      expectCode(() => tokenInfo('p', 'f', epoch), 'SH_ERR_INVALID_ARGUMENT');
    expectCode(() => tokenInfo('', 'f', 0), 'SH_ERR_INVALID_ARGUMENT');
    expectCode(() => tokenInfo('p', '', 0), 'SH_ERR_INVALID_ARGUMENT');
    expectCode(() => tokenInfo('p', 'x'.repeat(129), 0), 'SH_ERR_INVALID_ARGUMENT');
  });

  it('tokenInput is the canonical JSON of {s, f, v} with the USCC in canonical form', () => {
    const v = normalizeId('certificate', CERTS[0]!);
    const bytes = tokenInput('91350100M000100Y43', 'property_cert_no', v);
    expect(new TextDecoder().decode(bytes)).toBe(`{"f":"property_cert_no","s":"91350100M000100Y43","v":"${v}"}`);
    expect(tokenInput(' 91350100m000100y43 ', 'property_cert_no', v)).toEqual(bytes);
  });

  it('tokenInput refuses a bad USCC and a value that is not normalized for its field', () => {
    expectCode(() => tokenInput('91350100M000100Y44', 'property_cert_no', 'X'), 'SH_ERR_USCC_CHECK');
    expectCode(() => tokenInput('91350100M000100Y43', 'property_cert_no', CERTS[0]!), 'SH_ERR_ID_VALUE');
    expectCode(() => tokenInput('91350100M000100Y43', 'property_cert_no', '粤〔2021〕1号'), 'SH_ERR_ID_VALUE');
    expectCode(() => tokenInput('91350100M000100Y43', 'mortgage_holder', '工行 深圳'), 'SH_ERR_ID_VALUE');
    expectCode(() => tokenInput('91350100M000100Y43', 'mortgage_holder', ''), 'SH_ERR_ID_VALUE');
    // `generic` fields keep 〔〕, so the same string is normalized there
    expect(tokenInput('91350100M000100Y43', 'other_id', '粤〔2021〕1号')).toBeInstanceOf(Uint8Array);
  });
});

describe('blind → evaluate → finalize', () => {
  let keys: OprfKeyPair;
  let other: OprfKeyPair;
  let info: Uint8Array;
  let inputs: Uint8Array[];
  let blinded: Blinded[];
  let evaluated: Uint8Array[];
  let proof: Uint8Array;
  let expected: Uint8Array[];

  beforeAll(() => {
    keys = generateOprfKeyPair();
    other = generateOprfKeyPair();
    info = tokenInfo('registry-sz', 'property_cert_no', 1);
    inputs = inputsFor();
    blinded = blindInputs(keys.publicKey, info, inputs);
    ({ evaluated, proof } = evaluateBlinded(
      keys.secretKey,
      info,
      blinded.map((b) => b.blinded),
    ));
    expected = evaluateTokens(keys.secretKey, info, inputs);
  });

  const finalize = (
    o: Partial<{
      inputs: Uint8Array[];
      blinded: Blinded[];
      evaluated: Uint8Array[];
      proof: Uint8Array;
      publicKey: Uint8Array;
      info: Uint8Array;
    }> = {},
  ): Uint8Array[] =>
    finalizeTokens(
      o.inputs ?? inputs,
      o.blinded ?? blinded,
      o.evaluated ?? evaluated,
      o.proof ?? proof,
      o.publicKey ?? keys.publicKey,
      o.info ?? info,
    );

  it('key pairs are a 32-byte scalar and a 33-byte compressed point', () => {
    expect(keys.secretKey).toHaveLength(32);
    expect(keys.publicKey).toHaveLength(33);
    expect([0x02, 0x03]).toContain(keys.publicKey[0]);
    expect(hex(keys.publicKey)).not.toBe(hex(other.publicKey));
  });

  it("finalized tokens equal the key holder's evaluateTokens, 32 bytes each, distinct per input", () => {
    const tokens = finalize();
    expect(tokens.map(hex)).toEqual(expected.map(hex));
    for (const t of tokens) expect(t).toHaveLength(TOKEN_BYTES);
    expect(new Set(tokens.map(hex)).size).toBe(inputs.length);
  });

  it('blinding is randomized: the custodian sees fresh points each time, the tokens stay the same', () => {
    const again = blindInputs(keys.publicKey, info, inputs);
    expect(again.map((b) => hex(b.blinded))).not.toEqual(blinded.map((b) => hex(b.blinded)));
    const res = evaluateBlinded(
      keys.secretKey,
      info,
      again.map((b) => b.blinded),
    );
    expect(finalizeTokens(inputs, again, res.evaluated, res.proof, keys.publicKey, info).map(hex)).toEqual(
      expected.map(hex),
    );
  });

  it("a batch of one works, and the tweakedKey carried in Blinded is the RFC's pkS + m·G", () => {
    const b = blindInputs(keys.publicKey, info, inputs.slice(0, 1));
    const noble = p256_oprf.poprf(info).blind(inputs[0]!, keys.publicKey);
    expect(hex(b[0]!.tweakedKey)).toBe(hex(noble.tweakedKey));
    const res = evaluateBlinded(keys.secretKey, info, [b[0]!.blinded]);
    expect(finalizeTokens(inputs.slice(0, 1), b, res.evaluated, res.proof, keys.publicKey, info).map(hex)).toEqual([
      hex(expected[0]!),
    ]);
  });

  describe('a proof that does not fit → SH_ERR_TOKEN_PROOF', () => {
    it('one flipped bit anywhere in the proof (c or s)', () => {
      for (const bit of [0, 7, 100, 255, 256, 300, 511]) {
        const forged = proof.slice();
        forged[bit >> 3]! ^= 1 << (bit & 7);
        expectCode(() => finalize({ proof: forged }), 'SH_ERR_TOKEN_PROOF');
      }
    });

    it('a malformed proof: wrong length, all zero, scalars ≥ n', () => {
      expectCode(() => finalize({ proof: proof.slice(0, 63) }), 'SH_ERR_TOKEN_PROOF');
      expectCode(() => finalize({ proof: new Uint8Array(65) }), 'SH_ERR_TOKEN_PROOF');
      expectCode(() => finalize({ proof: new Uint8Array(64) }), 'SH_ERR_TOKEN_PROOF');
      expectCode(() => finalize({ proof: new Uint8Array(64).fill(0xff) }), 'SH_ERR_TOKEN_PROOF');
      const sTooBig = proof.slice();
      sTooBig.set(unhex(N.toString(16)), 32);
      expectCode(() => finalize({ proof: sTooBig }), 'SH_ERR_TOKEN_PROOF');
    });

    it('evaluation and proof by another key, checked against the published key', () => {
      const res = evaluateBlinded(
        other.secretKey,
        info,
        blinded.map((b) => b.blinded),
      );
      expectCode(() => finalize({ evaluated: res.evaluated, proof: res.proof }), 'SH_ERR_TOKEN_PROOF');
      // mixing: the right elements with the other key's proof, and the other key's elements with the right proof
      expectCode(() => finalize({ proof: res.proof }), 'SH_ERR_TOKEN_PROOF');
      expectCode(() => finalize({ evaluated: res.evaluated }), 'SH_ERR_TOKEN_PROOF');
      // a Blinded carrying the other key's tweaked key does not help: finalizeTokens recomputes it
      const forgedTweak = blinded.map((b) => ({
        ...b,
        tweakedKey: blindInputs(other.publicKey, info, inputs.slice(0, 1))[0]!.tweakedKey,
      }));
      expectCode(
        () => finalize({ blinded: forgedTweak, evaluated: res.evaluated, proof: res.proof }),
        'SH_ERR_TOKEN_PROOF',
      );
      // while the same answer verifies against the key that made it
      expect(finalize({ evaluated: res.evaluated, proof: res.proof, publicKey: other.publicKey })).toHaveLength(
        inputs.length,
      );
    });

    it('a proof made for a different batch, or for part of this one', () => {
      const b2 = blindInputs(keys.publicKey, info, inputs);
      const res2 = evaluateBlinded(
        keys.secretKey,
        info,
        b2.map((b) => b.blinded),
      );
      expectCode(() => finalize({ proof: res2.proof }), 'SH_ERR_TOKEN_PROOF');
      expectCode(() => finalize({ blinded: b2, proof: proof }), 'SH_ERR_TOKEN_PROOF');
      expectCode(
        () => finalize({ inputs: inputs.slice(1), blinded: blinded.slice(1), evaluated: evaluated.slice(1) }),
        'SH_ERR_TOKEN_PROOF',
      );
    });

    it('evaluated points swapped between two elements, or whole elements reordered', () => {
      const swapped = evaluated.slice();
      [swapped[0], swapped[1]] = [swapped[1]!, swapped[0]!];
      expectCode(() => finalize({ evaluated: swapped }), 'SH_ERR_TOKEN_PROOF');
      const order = [1, 0, 2, 3];
      expectCode(
        () =>
          finalize({
            inputs: order.map((i) => inputs[i]!),
            blinded: order.map((i) => blinded[i]!),
            evaluated: order.map((i) => evaluated[i]!),
          }),
        'SH_ERR_TOKEN_PROOF',
      );
    });

    it('a different info: another field, epoch or provider', () => {
      for (const wrong of [
        tokenInfo('registry-sz', 'mortgage_holder', 1),
        tokenInfo('registry-sz', 'property_cert_no', 2),
        tokenInfo('registry-gz', 'property_cert_no', 1),
      ]) {
        expectCode(() => finalize({ info: wrong }), 'SH_ERR_TOKEN_PROOF');
        // …and the custodian evaluating under the wrong info is caught the same way
        const res = evaluateBlinded(
          keys.secretKey,
          wrong,
          blinded.map((b) => b.blinded),
        );
        expectCode(() => finalize({ evaluated: res.evaluated, proof: res.proof }), 'SH_ERR_TOKEN_PROOF');
      }
    });
  });

  describe('an element that is not a valid point → SH_ERR_TOKEN_INVALID', () => {
    it.each(BAD_ELEMENTS)('%s as a blinded element at the custodian (whole batch refused)', (_name, bad) => {
      const batch = [...blinded.map((b) => b.blinded), bad];
      expectCode(() => evaluateBlinded(keys.secretKey, info, batch), 'SH_ERR_TOKEN_INVALID');
      expectCode(() => evaluateBlinded(keys.secretKey, info, [bad]), 'SH_ERR_TOKEN_INVALID');
    });

    it.each(BAD_ELEMENTS)('%s as an evaluated element at the engine', (_name, bad) => {
      const ev = evaluated.slice();
      ev[2] = bad;
      expectCode(() => finalize({ evaluated: ev }), 'SH_ERR_TOKEN_INVALID');
    });

    it.each(BAD_ELEMENTS)('%s as a blinded element at the engine', (_name, bad) => {
      const bl = blinded.map((b, i) => (i === 1 ? { ...b, blinded: bad } : b));
      expectCode(() => finalize({ blinded: bl }), 'SH_ERR_TOKEN_INVALID');
    });

    it.each(BAD_ELEMENTS)("%s as the provider's public key", (_name, bad) => {
      expectCode(() => blindInputs(bad, info, inputs), 'SH_ERR_TOKEN_INVALID');
      expectCode(() => finalize({ publicKey: bad }), 'SH_ERR_TOKEN_INVALID');
    });

    it('the message names the element and the expected length', () => {
      try {
        finalize({ publicKey: keys.publicKey.slice(1) });
        expect.fail('accepted a 32-byte public key');
      } catch (err) {
        expect((err as Error).message).toBe('"publicKey" expected 33 bytes, got 32');
      }
      try {
        evaluateBlinded(keys.secretKey, info, [blinded[0]!.blinded, OFF_CURVE]);
        expect.fail('accepted an off-curve point');
      } catch (err) {
        expect((err as Error).message).toContain('"blinded[1]"');
      }
    });
  });

  describe('programmer errors → SH_ERR_INVALID_ARGUMENT', () => {
    it('batch sizes: empty, over the maximum, or not one per input', () => {
      expectCode(() => blindInputs(keys.publicKey, info, []), 'SH_ERR_INVALID_ARGUMENT');
      expectCode(() => evaluateTokens(keys.secretKey, info, []), 'SH_ERR_INVALID_ARGUMENT');
      expectCode(() => evaluateBlinded(keys.secretKey, info, []), 'SH_ERR_INVALID_ARGUMENT');
      const tooMany = Array.from({ length: MAX_TOKEN_BATCH + 1 }, () => inputs[0]!);
      expectCode(() => blindInputs(keys.publicKey, info, tooMany), 'SH_ERR_INVALID_ARGUMENT');
      expectCode(
        () =>
          evaluateBlinded(
            keys.secretKey,
            info,
            tooMany.map(() => blinded[0]!.blinded),
          ),
        'SH_ERR_INVALID_ARGUMENT',
      );
      expectCode(() => finalize({ evaluated: evaluated.slice(1) }), 'SH_ERR_INVALID_ARGUMENT');
      expectCode(() => finalize({ blinded: blinded.slice(1) }), 'SH_ERR_INVALID_ARGUMENT');
      expectCode(() => finalize({ inputs: [...inputs, inputs[0]!] }), 'SH_ERR_INVALID_ARGUMENT');
      expectCode(() => blindInputs(keys.publicKey, info, 'x' as unknown as Uint8Array[]), 'SH_ERR_INVALID_ARGUMENT');
    });

    it('secret keys and blinds that are not scalars in [1, n−1]; inputs that are not bytes', () => {
      for (const sk of [
        keys.secretKey.slice(1),
        new Uint8Array(32),
        unhex(N.toString(16)),
        new Uint8Array(32).fill(0xff),
      ]) {
        expectCode(() => evaluateTokens(sk, info, inputs), 'SH_ERR_INVALID_ARGUMENT');
        expectCode(() => evaluateBlinded(sk, info, [blinded[0]!.blinded]), 'SH_ERR_INVALID_ARGUMENT');
        expectCode(
          () => finalize({ blinded: blinded.map((b, i) => (i === 0 ? { ...b, blind: sk } : b)) }),
          'SH_ERR_INVALID_ARGUMENT',
        );
      }
      expectCode(
        () => evaluateTokens(keys.secretKey, info, ['abc' as unknown as Uint8Array]),
        'SH_ERR_INVALID_ARGUMENT',
      );
      expectCode(() => evaluateTokens(keys.secretKey, info, [new Uint8Array(0x10000)]), 'SH_ERR_INVALID_ARGUMENT');
      expectCode(() => finalize({ proof: 'x' as unknown as Uint8Array }), 'SH_ERR_INVALID_ARGUMENT');
      expectCode(
        () => finalize({ blinded: [null as unknown as Blinded, ...blinded.slice(1)] }),
        'SH_ERR_INVALID_ARGUMENT',
      );
    });
  });

  it('tokens differ across providers, fields, epochs and subjects for the same value, and repeat otherwise', () => {
    const value = normalizeId('certificate', CERTS[0]!);
    const subject = SUBJECTS[0]!;
    const tok = (provider: string, field: string, epoch: number, s = subject, k = keys): string =>
      hex(evaluateTokens(k.secretKey, tokenInfo(provider, field, epoch), [tokenInput(s, field, value)])[0]!);
    const base = tok('registry-sz', 'property_cert_no', 1);
    const variants = [
      tok('registry-gz', 'property_cert_no', 1), // another provider name (same key)
      tok('registry-sz', 'property_cert_no_2', 1), // another field (its rule is generic; the value is still normal)
      tok('registry-sz', 'property_cert_no', 2), // another epoch
      tok('registry-sz', 'property_cert_no', 1, SUBJECTS[1]!), // another subject
      tok('registry-sz', 'property_cert_no', 1, subject, other), // another key
    ];
    expect(new Set([base, ...variants]).size).toBe(1 + variants.length);
    expect(tok('registry-sz', 'property_cert_no', 1)).toBe(base);
  });

  it('cost per element (printed, not asserted)', () => {
    const n = 64;
    const many = Array.from({ length: n }, (_, i) =>
      tokenInput(SUBJECTS[i % SUBJECTS.length]!, 'property_cert_no', `${CERTS.length}X${i}`),
    );
    const time = (f: () => unknown): number => {
      const t0 = performance.now();
      f();
      return (performance.now() - t0) / n;
    };
    evaluateTokens(keys.secretKey, info, many.slice(0, 4)); // warm up noble's precomputes
    let b: Blinded[] = [];
    let res: { evaluated: Uint8Array[]; proof: Uint8Array } = { evaluated: [], proof: new Uint8Array(0) };
    const ms = {
      evaluateTokens: time(() => evaluateTokens(keys.secretKey, info, many)),
      blindInputs: time(() => (b = blindInputs(keys.publicKey, info, many))),
      evaluateBlinded: time(
        () =>
          (res = evaluateBlinded(
            keys.secretKey,
            info,
            b.map((x) => x.blinded),
          )),
      ),
      finalizeTokens: time(() => finalizeTokens(many, b, res.evaluated, res.proof, keys.publicKey, info)),
    };
    console.log(
      `RFC 9497 ${TOKEN_SUITE} ${TOKEN_MODE}, batch of ${n}, ms per element: ` +
        Object.entries(ms)
          .map(([k, v]) => `${k} ${v.toFixed(2)}`)
          .join(', '),
    );
    expect(Object.values(ms).every((v) => v > 0)).toBe(true);
  });
});
