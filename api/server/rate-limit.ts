/**
 * Rate limits (docs/design.md §9): a token bucket per client address, taken before authentication so that unsigned
 * floods are refused before any signature is checked, and one per authenticated party, taken once the signature names
 * it. An empty bucket is SH_ERR_RATE_LIMITED (429) with the seconds until the next token (the `retry-after` header).
 */
import type { FastifyInstance } from 'fastify';
import { fail } from '../../core/errors.ts';

export interface BucketSize {
  burst: number;
  perSecond: number;
}

export class Bucket {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly burst: number;
  private readonly perSecond: number;
  constructor(burst: number, perSecond: number) {
    this.burst = burst;
    this.perSecond = perSecond;
  }
  /** Takes a token for `key`: 0 when one was there, else the whole seconds until there is one. */
  take(key: string): number {
    const now = performance.now() / 1000;
    const b = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    b.tokens = Math.min(this.burst, b.tokens + (now - b.at) * this.perSecond);
    b.at = now;
    this.buckets.set(key, b);
    // Full buckets carry no state worth keeping: dropping them bounds the map under many distinct keys.
    if (this.buckets.size > 100_000)
      for (const [k, v] of this.buckets) if (v.tokens >= this.burst) this.buckets.delete(k);
    if (b.tokens < 1) return Math.ceil((1 - b.tokens) / this.perSecond);
    b.tokens -= 1;
    return 0;
  }
}

/**
 * Installs the per-address limit as an `onRequest` hook and returns the per-party one, for the authentication hook
 * to take once it knows the party (api/server/auth.ts).
 */
export function rateLimits(
  app: FastifyInstance,
  opts: { perAddress?: BucketSize; perParty?: BucketSize },
): { party: (id: string) => void } {
  const ipBucket = new Bucket(opts.perAddress?.burst ?? 2000, opts.perAddress?.perSecond ?? 1000);
  const partyBucket = new Bucket(opts.perParty?.burst ?? 400, opts.perParty?.perSecond ?? 200);
  app.addHook('onRequest', async (req) => {
    const wait = ipBucket.take(req.ip);
    if (wait) fail('SH_ERR_RATE_LIMITED', `too many requests from ${req.ip}`, { retryAfterSeconds: wait });
  });
  return {
    party: (id) => {
      const wait = partyBucket.take(id);
      if (wait) fail('SH_ERR_RATE_LIMITED', `too many requests from ${id}`, { retryAfterSeconds: wait });
    },
  };
}
