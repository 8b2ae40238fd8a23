/**
 * SEAL runtime: node-seal 7 (Microsoft SEAL 4.1.2 compiled to WebAssembly), loaded once per process or worker.
 *
 * We import the default `node-seal` entry, which throws on transparent ciphertexts — the safe default.
 * node-seal 7's WASM uses the new exception-handling proposal, which is why Node.js 24 is required.
 * WASM exceptions surface as `WebAssembly.Exception` objects without a message; `sealCall` turns them into coded
 * errors so no raw runtime error reaches a caller.
 */
import SEAL from 'node-seal';
import type { MainModule } from 'node-seal';
import { fail, SafehouseError, type ErrorCode } from '../../core/errors.ts';

export type Seal = MainModule;

let runtime: Promise<Seal> | undefined;
/** The WebAssembly namespace (not in this project's TypeScript libs): only what the memory capture touches. */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
const Wasm = (
  globalThis as unknown as {
    WebAssembly: Record<string, unknown> & { Memory: abstract new (...a: never[]) => WasmMemory };
  }
).WebAssembly;
let memory: WasmMemory | undefined;

/** The process-wide SEAL module (loaded on first call, then cached). @throws SH_ERR_SEAL_RUNTIME */
export function loadSeal(): Promise<Seal> {
  runtime ??= withMemoryCapture(() => SEAL()).catch((err: unknown) => {
    runtime = undefined;
    return fail('SH_ERR_SEAL_RUNTIME', 'node-seal failed to load (Node.js >= 24 is required)', {}, err);
  });
  return runtime;
}

/**
 * Bytes of this thread's SEAL WebAssembly memory (0 before SEAL is loaded). WASM memory only grows, so this is the
 * high-water mark of SEAL's heap: flat over a long job means SEAL objects are freed and reused.
 */
export function sealMemoryBytes(): number {
  return memory?.buffer.byteLength ?? 0;
}

/**
 * node-seal does not export its WebAssembly.Memory; note it when the module is instantiated (the wrapper is removed
 * again right after, and only observes the result).
 */
async function withMemoryCapture(load: () => Promise<Seal>): Promise<Seal> {
  const wasm = Wasm as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  const originals = { instantiate: wasm.instantiate!, instantiateStreaming: wasm.instantiateStreaming! };
  for (const name of ['instantiate', 'instantiateStreaming'] as const) {
    const original = originals[name];
    if (typeof original !== 'function') continue;
    wasm[name] = async function (this: unknown, ...args: unknown[]) {
      const r = (await original.apply(this, args)) as { instance?: { exports?: object }; exports?: object };
      const exports = (r.instance ?? r).exports ?? {};
      for (const v of Object.values(exports)) if (v instanceof Wasm.Memory) memory = v as WasmMemory;
      return r;
    };
  }
  try {
    return await load();
  } finally {
    wasm.instantiate = originals.instantiate;
    if (originals.instantiateStreaming) wasm.instantiateStreaming = originals.instantiateStreaming;
  }
}

/**
 * Run a SEAL call, mapping WASM exceptions and use-after-delete to coded errors.
 * @example const ct = sealCall('SH_ERR_CIPHERTEXT_INVALID', 'ciphertext', () => { c.loadFromArray(ctx, bytes); return c; })
 */
export function sealCall<T>(code: ErrorCode, what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof SafehouseError) throw err;
    const text = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    // embind: "Cannot pass deleted object as a pointer of type X" (a method or argument), "X instance already
    // deleted" (delete() twice).
    if (/deleted object|instance already deleted/i.test(text))
      fail('SH_ERR_HANDLE_DELETED', `${what}: SEAL object used after delete()`, {}, err);
    return fail(code, `${what}: SEAL rejected the operation`, {}, err);
  }
}
