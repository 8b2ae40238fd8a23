/**
 * The provider as its protocol parts see it (upload, scorecard approval, training columns): its id, parameter set and
 * keys, and encryption of one block under its own secret key in its own pool. `ProviderAgent` (agent.ts) is the one
 * implementation; the protocols take this interface so they need not know how the provider runs.
 */
import type { ParamSet } from '../he/params.ts';
import type { CustodianKeys } from '../custodian/messages.ts';

export interface ProviderSide {
  readonly id: string;
  readonly params: ParamSet;
  readonly keys: CustodianKeys;
  /** Symmetric (seeded) BFV encryption of one block of slot values under the provider's secret key. */
  encrypt(values: BigUint64Array): Promise<Uint8Array>;
  /** Wait for every task; reject with the first failure (WorkerPool.all). */
  all<T>(tasks: ReadonlyArray<Promise<T>>): Promise<T[]>;
}
