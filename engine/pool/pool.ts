/**
 * Worker pool (docs/design.md §9): piscina, size = core count by default. Tasks name a kernel (pool/kernel.ts): a
 * named export of a kernels module, loaded by each worker on first use; each worker initializes SEAL once
 * (pool/worker-cache.ts). Options are validated up front into a filled defaults object; `run` rejects, never throws.
 */
import { Piscina } from 'piscina';
import { availableParallelism } from 'node:os';
import { SafehouseError, fail, type ErrorCode } from '../../core/errors.ts';
import { kernelRef, type KernelRef, type TaskError } from './kernel.ts';
import type * as PoolKernels from './kernels.ts';

const warm = kernelRef<typeof PoolKernels.warm>(new URL('./kernels.ts', import.meta.url), 'warm');

export interface PoolOptions {
  /** Worker threads; default: the number of cores. */
  size?: number;
  /** Per-worker old-generation heap cap in MB (resource limit); default 1024. */
  maxOldGenerationSizeMb?: number;
}

const kDefaults = { size: availableParallelism(), maxOldGenerationSizeMb: 1024 };

export class WorkerPool {
  private readonly piscina: Piscina;
  readonly size: number;
  /** [0]: workers that ran a task; [1 + k]: worker k's SEAL WASM memory in 64 KiB pages after its last task (kernel.ts). */
  private readonly memory = new Int32Array(new SharedArrayBuffer(4 * (1 + 256)));

  constructor(opts: PoolOptions = {}) {
    const o = { ...kDefaults, ...opts };
    if (!Number.isInteger(o.size) || o.size < 1 || o.size > 64)
      fail('SH_ERR_INVALID_ARGUMENT', `"size" expected an integer in [1, 64], got ${o.size}`);
    if (!Number.isInteger(o.maxOldGenerationSizeMb) || o.maxOldGenerationSizeMb < 64) {
      fail(
        'SH_ERR_INVALID_ARGUMENT',
        `"maxOldGenerationSizeMb" expected an integer ≥ 64, got ${o.maxOldGenerationSizeMb}`,
      );
    }
    this.size = o.size;
    this.piscina = new Piscina({
      filename: warm.filename,
      name: warm.name,
      minThreads: o.size,
      maxThreads: o.size,
      idleTimeout: 60_000,
      resourceLimits: { maxOldGenerationSizeMb: o.maxOldGenerationSizeMb },
      workerData: { memory: this.memory },
    });
    // Late messages from tasks still running when the pool is destroyed are not errors of any caller.
    this.piscina.on('error', () => {});
  }

  /**
   * Run one task on kernel `ref`; coded errors raised in the worker are rebuilt here with their code.
   * @example await pool.run(evalBlock, { paramsId, publicKey, columns, maskKey })
   */
  async run<T, R>(ref: KernelRef<T, R>, task: T, transfer?: ArrayBuffer[]): Promise<R> {
    const out = (await this.piscina.run(task, {
      filename: ref.filename,
      name: ref.name,
      ...(transfer ? { transferList: transfer as never } : {}),
    })) as R | TaskError;
    if (out && typeof out === 'object' && 'error' in (out as object)) {
      const e = (out as TaskError).error;
      throw new SafehouseError(e.code as ErrorCode, e.message, e.details as Record<string, string | number | boolean>);
    }
    return out as R;
  }

  /** Run many tasks; waits for all of them (none left running), then rejects with the first failure, if any. */
  async all<T>(tasks: ReadonlyArray<Promise<T>>): Promise<T[]> {
    const settled = await Promise.allSettled(tasks);
    const bad = settled.find((r) => r.status === 'rejected');
    if (bad) throw (bad as PromiseRejectedResult).reason;
    return settled.map((r) => (r as PromiseFulfilledResult<T>).value);
  }

  /**
   * Each worker's SEAL WASM memory in bytes as of its last finished task (workers that have not run one are left
   * out). Synchronous: a long job's progress callback can sample it between blocks.
   */
  wasmBytes(): number[] {
    const n = Math.min(Atomics.load(this.memory, 0), this.memory.length - 1);
    return Array.from({ length: n }, (_, k) => Atomics.load(this.memory, 1 + k) * 65536).filter((b) => b > 0);
  }

  /**
   * Load SEAL and the context in every worker (each takes a few hundred ms the first time): a server calls this at
   * start so its first job does not pay for it. Tasks are spread over idle workers, one per worker.
   */
  async warmUp(paramsId: string): Promise<void> {
    await this.all(Array.from({ length: this.size }, () => this.run(warm, { paramsId })));
  }

  async close(): Promise<void> {
    await this.piscina.destroy();
  }
}
