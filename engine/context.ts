/**
 * What every engine component (registry, datasets, consents, models, jobs, retention) shares: the data directory's
 * store and ledger, the parameter set, the filled policy, the clock and the worker pool. `Engine` implements it and
 * hands itself to each component, so a component never reaches for another's tables.
 */
import type { Store } from './store/store.ts';
import type { Ledger } from './ledger/ledger.ts';
import type { WorkerPool } from './pool/pool.ts';
import type { ParamSet } from './he/params.ts';
import type { Policy } from '../sandbox/policy.ts';

export interface EngineContext {
  readonly store: Store;
  readonly ledger: Ledger;
  readonly params: ParamSet;
  readonly policy: Policy;
  readonly now: () => Date;
  /** The engine's worker pool (created on first use). */
  readonly pool: WorkerPool;
}
