/**
 * SEAL runtime: node-seal 7 (Microsoft SEAL 4.1.2 compiled to WebAssembly), loaded once per process or worker.
 *
 * We import the default `node-seal` entry, which throws on transparent ciphertexts (STYLE §8: safe default).
 * node-seal 7's WASM uses the new exception-handling proposal, which is why Node.js 24 is required.
 * WASM exceptions surface as `WebAssembly.Exception` objects without a message; `sealCall` turns them into coded
 * errors so no raw runtime error reaches a caller.
 */
import SEAL from 'node-seal';
import type { MainModule } from 'node-seal';
import { fail, SafehouseError, type ErrorCode } from '../errors.ts';

export type Seal = MainModule;

let runtime: Promise<Seal> | undefined;

/** The process-wide SEAL module (loaded on first call, then cached). @throws SH_ERR_SEAL_RUNTIME */
export function loadSeal(): Promise<Seal> {
  runtime ??= SEAL().catch((err: unknown) => {
    runtime = undefined;
    return fail('SH_ERR_SEAL_RUNTIME', 'node-seal failed to load (Node.js >= 24 is required)', {}, err);
  });
  return runtime;
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
    if (/deleted object|instance already deleted/i.test(text)) fail('SH_ERR_HANDLE_DELETED', `${what}: SEAL object used after delete()`, {}, err);
    return fail(code, `${what}: SEAL rejected the operation`, {}, err);
  }
}
