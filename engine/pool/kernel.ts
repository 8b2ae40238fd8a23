/**
 * Pool kernels: the functions worker threads run, each a named export of a protocol's (or component's) `kernels.ts`
 * wrapped by `defineKernel`, and called from the main thread through a `KernelRef` (`pool.run(ref, task)`, piscina's
 * per-task `filename` + `name`). A kernel module is loaded only in the workers; callers import its types alone, so a
 * worker loads exactly the kernels it is asked to run, and the main thread never loads a kernel module for its sake.
 *
 * Errors: a coded `SafehouseError` thrown in a kernel crosses the thread boundary as plain data (`TaskError`) and the
 * pool rebuilds it with its code; a WebAssembly exception (not structured-cloneable) becomes SH_ERR_INTERNAL. After
 * every task the worker records its SEAL WASM memory in the pool's shared telemetry array (pool.ts `wasmBytes`).
 */
import { move, transferableSymbol, valueSymbol, workerData } from 'piscina';
import { SafehouseError } from '../../core/errors.ts';
import { sealMemoryBytes } from '../he/seal.ts';

export interface TaskError {
  error: { code: string; message: string; details: Record<string, unknown> };
}

/** A kernel as the worker runs it. `R` is what the caller receives (a kernel may return a piscina `move` wrapper). */
export type KernelFn<T, R> = ((task: T) => Promise<R | TaskError>) & { readonly __result?: R };

/** What a caller names to run a kernel: its module and export name, typed by the kernel's task and result. */
export interface KernelRef<T, R> {
  readonly filename: string;
  readonly name: string;
  readonly __types?: (task: T) => R;
}

/**
 * A reference to kernel `name` of the module at `url`, typed from the kernel itself (a type-only import).
 * @example import type * as K from './kernels.ts'; const evalBlock = kernelRef<typeof K.evalBlock>(new URL('./kernels.ts', import.meta.url), 'evalBlock');
 */
export function kernelRef<F extends KernelFn<never, unknown>>(
  url: URL,
  name: string,
): KernelRef<Parameters<F>[0], F extends KernelFn<never, infer R> ? R : never> {
  return { filename: url.href, name };
}

/** This worker's slot in the pool's shared memory-telemetry array (undefined outside a pool worker). */
const telemetry = (workerData as { memory?: Int32Array } | undefined)?.memory;
let telemetrySlot = 0;

/**
 * Wrap a kernel: coded errors become data, telemetry is recorded after each task.
 * @example export const warm = defineKernel<{ paramsId: string }, true>(async (t) => { await blockOps(t.paramsId); return true; });
 */
export function defineKernel<T, R>(fn: (task: T) => unknown): KernelFn<T, R> {
  return (async (task: T) => {
    try {
      return (await fn(task)) as R;
    } catch (err) {
      if (err instanceof SafehouseError)
        return { error: { code: err.code, message: err.message, details: { ...err.details } } } satisfies TaskError;
      if (err instanceof Error) throw err;
      // WASM exceptions and other non-Error values cannot be structured-cloned: report them as coded internal errors.
      return {
        error: { code: 'SH_ERR_INTERNAL', message: `worker task failed: ${String(err)}`, details: {} },
      } satisfies TaskError;
    } finally {
      if (telemetry) {
        telemetrySlot ||= Atomics.add(telemetry, 0, 1) + 1;
        if (telemetrySlot < telemetry.length)
          Atomics.store(telemetry, telemetrySlot, Math.ceil(sealMemoryBytes() / 65536));
      }
    }
  }) as KernelFn<T, R>;
}

/** `{ ciphertext, rerandomizer }` with both buffers transferred to the caller, not copied (≈ 0.6 MB per block). */
export function moveBoth(ciphertext: Uint8Array, rerandomizer: Uint8Array): unknown {
  return move({
    [transferableSymbol]: [ciphertext.buffer, rerandomizer.buffer],
    [valueSymbol]: { ciphertext, rerandomizer },
  } as never);
}
