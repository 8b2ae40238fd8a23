/**
 * Federation parameter sets (docs/design.md §3). Every party builds its SEAL context from one of these, and every custodian
 * call carries the parameter-set id so peers refuse mismatches.
 *
 * `bfv-8192-t40-v1`: BFV, N = 8192, coefficient modulus CoeffModulus.BFVDefault(8192, tc128) = primes of
 * 43+43+44+44+44 bits (218 bits, 128-bit classical security per the HomomorphicEncryption.org standard), plain modulus
 * t = PlainModulus.Batching(8192, 40) = 1099511480321, the largest 40-bit prime ≡ 1 (mod 2N), so 8192 batching slots.
 *
 * Transfer level: before anything leaves the engine, ciphertexts are switched down to chain index 1 (two primes).
 * Measured with node-seal 7 after a weighted sum: 38 bits of noise budget and 214 KB (zstd) there; chain index 0 leaves
 * 0 bits and decrypts to garbage. Key holders refuse ciphertexts with less than `minNoiseBudget` bits left.
 */
import { fail } from '../../core/errors.ts';
import { loadSeal, type Seal } from './seal.ts';
import type { SEALContext } from 'node-seal';

export interface ParamSet {
  readonly id: string;
  readonly polyModulusDegree: number;
  readonly plainBits: number;
  /** The plain modulus, checked against what SEAL derives. */
  readonly t: bigint;
  readonly slots: number;
  /** Chain index ciphertexts are switched to before they leave the engine. */
  readonly transferChainIndex: number;
  /** Minimum invariant noise budget (bits) a key holder accepts before decrypting. */
  readonly minNoiseBudget: number;
  /** Largest serialized ciphertext accepted, in bytes (fresh public-key encryption, uncompressed, plus slack). */
  readonly maxCiphertextBytes: number;
  /** Largest serialized BFV public key accepted (two polynomials over every prime, the special one included, plus slack). */
  readonly maxPublicKeyBytes: number;
}

export const BFV_8192_T40: ParamSet = Object.freeze({
  id: 'bfv-8192-t40-v1',
  polyModulusDegree: 8192,
  plainBits: 40,
  t: 1099511480321n,
  slots: 8192,
  transferChainIndex: 1,
  minNoiseBudget: 8,
  maxCiphertextBytes: 2 * 8192 * 4 * 8 + 4096,
  maxPublicKeyBytes: 2 * 8192 * 5 * 8 + 4096,
});

export const PARAM_SETS: ReadonlyMap<string, ParamSet> = new Map([[BFV_8192_T40.id, BFV_8192_T40]]);

/** Look up a parameter set by id. @throws SH_ERR_PARAMS_MISMATCH for an unknown id. */
export function paramSet(id: string): ParamSet {
  const p = PARAM_SETS.get(id);
  if (!p)
    fail(
      'SH_ERR_PARAMS_MISMATCH',
      `"paramsId" expected one of ${[...PARAM_SETS.keys()].join(', ')}, got ${JSON.stringify(id)}`,
    );
  return p;
}

/** A (block, slot) position passed between threads as block · SLOT_STRIDE + slot (every set's slot count is below it). */
export const SLOT_STRIDE = 1 << 16;

export interface HeContext {
  readonly seal: Seal;
  readonly params: ParamSet;
  readonly context: SEALContext;
}

const contexts = new Map<string, Promise<HeContext>>();

/**
 * The process-wide SEAL context for a parameter set, verified to be 128-bit secure and to have the expected t.
 * @throws SH_ERR_PARAMS_INSECURE when SEAL does not confirm 128-bit security or the parameters are not set.
 * @example const { seal, context } = await heContext(BFV_8192_T40)
 */
export function heContext(params: ParamSet = BFV_8192_T40): Promise<HeContext> {
  let c = contexts.get(params.id);
  if (!c) {
    c = build(params);
    contexts.set(params.id, c);
    c.catch(() => contexts.delete(params.id));
  }
  return c;
}

async function build(params: ParamSet): Promise<HeContext> {
  const seal = await loadSeal();
  const parms = new seal.EncryptionParameters(seal.SchemeType.bfv);
  parms.setPolyModulusDegree(params.polyModulusDegree);
  parms.setCoeffModulus(seal.CoeffModulus.BFVDefault(params.polyModulusDegree, seal.SecLevelType.tc128));
  const plain = seal.PlainModulus.Batching(params.polyModulusDegree, params.plainBits);
  if (plain.value() !== params.t) {
    fail(
      'SH_ERR_PARAMS_INSECURE',
      `parameter set ${params.id}: SEAL derived t = ${plain.value()}, expected ${params.t}`,
    );
  }
  parms.setPlainModulus(plain);
  const context = new seal.SEALContext(parms, true, seal.SecLevelType.tc128);
  const q = context.firstContextData().qualifiers();
  if (!context.parametersSet() || q.securityLevel.value !== 128 || !q.usingBatching) {
    fail('SH_ERR_PARAMS_INSECURE', `parameter set ${params.id} does not give a 128-bit secure batching context`);
  }
  return { seal, params, context };
}
