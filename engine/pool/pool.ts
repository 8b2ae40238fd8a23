/**
 * Worker pool (DESIGN §9): piscina, size = core count by default; each worker initializes SEAL once (worker.ts).
 * Options are validated up front into a filled defaults object (STYLE §5); `run` rejects, never throws.
 */
import { Piscina } from 'piscina';
import { availableParallelism } from 'node:os';
import { SafehouseError, fail, type ErrorCode } from '../../core/errors.ts';
import type { Task, TaskError } from './worker.ts';

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
  /** [0]: workers started; [1 + k]: worker k's SEAL WASM memory in 64 KiB pages after its last task (worker.ts). */
  private readonly memory = new Int32Array(new SharedArrayBuffer(4 * (1 + 256)));

  constructor(opts: PoolOptions = {}) {
    const o = { ...kDefaults, ...opts };
    if (!Number.isInteger(o.size) || o.size < 1 || o.size > 64) fail('SH_ERR_INVALID_ARGUMENT', `"size" expected an integer in [1, 64], got ${o.size}`);
    if (!Number.isInteger(o.maxOldGenerationSizeMb) || o.maxOldGenerationSizeMb < 64) {
      fail('SH_ERR_INVALID_ARGUMENT', `"maxOldGenerationSizeMb" expected an integer ≥ 64, got ${o.maxOldGenerationSizeMb}`);
    }
    this.size = o.size;
    this.piscina = new Piscina({
      filename: new URL('./worker.ts', import.meta.url).href,
      minThreads: o.size,
      maxThreads: o.size,
      idleTimeout: 60_000,
      resourceLimits: { maxOldGenerationSizeMb: o.maxOldGenerationSizeMb },
      workerData: { memory: this.memory },
    });
    // Late messages from tasks still running when the pool is destroyed are not errors of any caller.
    this.piscina.on('error', () => {});
  }

  /** Run one task; coded errors raised in the worker are rebuilt here with their code. */
  async run<T>(task: Task, transfer?: ArrayBuffer[]): Promise<T> {
    const out = (await this.piscina.run(task, transfer ? { transferList: transfer as never } : undefined)) as T | TaskError;
    if (out && typeof out === 'object' && 'error' in (out as object)) {
      const e = (out as TaskError).error;
      throw new SafehouseError(e.code as ErrorCode, e.message, e.details as Record<string, string | number | boolean>);
    }
    return out as T;
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
    await this.all(Array.from({ length: this.size }, () => this.run({ op: 'warm', paramsId })));
  }

  async close(): Promise<void> {
    await this.piscina.destroy();
  }
}
