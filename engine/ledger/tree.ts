/**
 * The stored tree's pure pieces, used by the Ledger (ledger.ts): the in-memory node cache, the RFC 6962 frontier of a
 * tree size (the perfect subtrees that make it up), and the small row readers and argument checks the Ledger shares.
 */
import type { SQLOutputValue } from 'node:sqlite';
import { describe, fail } from '../../core/errors.ts';
import { HASH_SIZE } from './merkle.ts';
import type { LedgerReport } from './ledger.ts';

/**
 * In-memory copy of node hashes, one growable flat buffer (32 bytes a node) and presence map per level; level 0
 * holds leaf hashes. Returned hashes are views: callers copy before handing them out.
 */
export class NodeCache {
  readonly #levels: Array<{ data: Uint8Array; have: Uint8Array }> = [];

  get(level: number, idx: number): Uint8Array | undefined {
    const l = this.#levels[level];
    if (!l || idx >= l.have.length || l.have[idx] !== 1) return undefined;
    return l.data.subarray(idx * HASH_SIZE, (idx + 1) * HASH_SIZE);
  }

  set(level: number, idx: number, hash: Uint8Array): void {
    let l = this.#levels[level];
    if (!l || idx >= l.have.length) {
      const capacity = Math.max(64, idx + 1, 2 * (l?.have.length ?? 0));
      const grown = { data: new Uint8Array(capacity * HASH_SIZE), have: new Uint8Array(capacity) };
      if (l) {
        grown.data.set(l.data);
        grown.have.set(l.have);
      }
      for (let k = this.#levels.length; k < level; k++)
        this.#levels.push({ data: new Uint8Array(0), have: new Uint8Array(0) });
      this.#levels[level] = l = grown;
    }
    l.data.set(hash, idx * HASH_SIZE);
    l.have[idx] = 1;
  }
}

/** The perfect aligned subtrees that make up [0, size), largest first, as [level, idx] (bits of size, high to low). */
export function frontier(size: number): Array<[level: number, idx: number]> {
  const out: Array<[number, number]> = [];
  let start = 0;
  for (let level = 52; level >= 0; level--) {
    const w = 2 ** level;
    if (size - start >= w) {
      out.push([level, start / w]);
      start += w;
    }
  }
  return out;
}

/** log2(w) if w is a power of two (w ≥ 1), else -1. */
export function exactLog2(w: number): number {
  let level = 0;
  while (w > 1 && w % 2 === 0) [w, level] = [w / 2, level + 1];
  return w === 1 ? level : -1;
}

/** The entries under node (level, idx), as `a..b`. */
export function span(level: number, idx: number): string {
  const w = 2 ** level;
  return `${idx * w}..${(idx + 1) * w - 1}`;
}

export function tampered(where: { index?: number; checkpointSize?: number }, reason: string): LedgerReport {
  return { ok: false, ...where, code: 'SH_ERR_LEDGER_TAMPERED', reason };
}

export function checkIndex(v: unknown, name: string): asserts v is number {
  if (!Number.isSafeInteger(v) || (v as number) < 0)
    fail('SH_ERR_INVALID_ARGUMENT', `"${name}" expected a non-negative integer, got ${describe(v)}`);
}

export function checkSize(v: unknown, name: string, max: number): asserts v is number {
  checkIndex(v, name);
  if (v > max) fail('SH_ERR_INVALID_ARGUMENT', `"${name}" expected at most ${max}, got ${v}`, { [name]: v, max });
}

export function parseBody(index: number, body: SQLOutputValue | undefined): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(str(body));
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // fall through: reported below with the entry's index
  }
  return fail('SH_ERR_LEDGER_TAMPERED', `ledger entry ${index} has a body that is not a JSON object`, { index });
}

export function str(v: SQLOutputValue | undefined): string {
  return typeof v === 'string' ? v : String(v);
}

export function bytes(v: SQLOutputValue | undefined): Uint8Array {
  return v instanceof Uint8Array ? v : new Uint8Array(0);
}
