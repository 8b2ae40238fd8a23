/**
 * The pool's own kernel: load SEAL and a parameter set's context in a worker before the first job needs it.
 * Protocol kernels live with their protocols (engine/protocols/<p>/kernels.ts), the custodian's in
 * engine/custodian/kernels.ts, the provider's in engine/provider/kernels.ts.
 */
import { defineKernel } from './kernel.ts';
import { blockOps } from './worker-cache.ts';

export const warm = defineKernel<{ paramsId: string }, true>(async (task) => {
  await blockOps(task.paramsId);
  return true;
});
