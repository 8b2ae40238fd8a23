/**
 * HTTP Message Signatures (RFC 9421) with Ed25519 for the network API: every request is signed by the
 * calling party's Ed25519 key over its method, path (with query), authority and body digest, with `created` and a
 * `nonce`; the verifier refuses stale, future-dated and replayed signatures.
 *
 * - Covered components: `"@method" "@authority" "@path" "@query" "content-digest"` (RFC 9421 §2.2; the body digest is
 *   RFC 9530 `Content-Digest: sha-256=:base64:` and is checked against the body).
 * - Signature parameters (§2.3): `created` (UNIX seconds), `nonce` (128-bit random, base64url), `keyid` (the party id),
 *   `alg="ed25519"` (§3.3.6).
 * - Headers: `Signature-Input: sig1=(…);created=…;nonce="…";keyid="…";alg="ed25519"`, `Signature: sig1=:base64:`.
 * Signing uses @noble/curves; verification uses node:crypto (engine/crypto/sign.ts `ed25519Verify`).
 */
import { createHash, randomBytes } from 'node:crypto';
import { fail } from '../core/errors.ts';
import { ed25519Verify } from '../core/sign.ts';
import { ed25519Sign } from '../core/sign.ts';

export interface HttpRequestParts {
  method: string;
  /** Absolute URL or path with query, e.g. `http://127.0.0.1:8080/v1/bank/jobs?x=1`. */
  url: string;
  /** Host[:port] the request is sent to (the `@authority` component). */
  authority: string;
  body?: Uint8Array;
  headers?: Record<string, string>;
}

const COMPONENTS = ['@method', '@authority', '@path', '@query', 'content-digest'] as const;
const LABEL = 'sig1';

/** RFC 9530 Content-Digest value for a body (an absent body digests as empty). */
export function contentDigest(body: Uint8Array | undefined): string {
  return `sha-256=:${createHash('sha256')
    .update(body ?? new Uint8Array(0))
    .digest('base64')}:`;
}

function pathAndQuery(url: string): { path: string; query: string } {
  const u = new URL(url, 'http://placeholder');
  return { path: u.pathname, query: u.search === '' ? '?' : u.search };
}

/** RFC 9421 §2.5 signature base. */
function signatureBase(
  p: { method: string; authority: string; path: string; query: string; digest: string },
  params: string,
): string {
  const values: Record<(typeof COMPONENTS)[number], string> = {
    '@method': p.method.toUpperCase(),
    '@authority': p.authority.toLowerCase(),
    '@path': p.path,
    '@query': p.query,
    'content-digest': p.digest,
  };
  return COMPONENTS.map((c) => `"${c}": ${values[c]}`).join('\n') + `\n"@signature-params": ${params}`;
}

function paramsString(created: number, nonce: string, keyid: string): string {
  return `(${COMPONENTS.map((c) => `"${c}"`).join(' ')});created=${created};nonce="${nonce}";keyid="${keyid}";alg="ed25519"`;
}

/**
 * Sign a request: returns the headers to add (`content-digest`, `signature-input`, `signature`).
 * @example const h = signRequest({ method: 'POST', url: '/v1/bank/jobs', authority: '127.0.0.1:8080', body }, 'bank1', sk)
 */
export function signRequest(
  req: HttpRequestParts,
  keyid: string,
  secretKey: Uint8Array,
  now: Date = new Date(),
): Record<string, string> {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/.test(keyid))
    fail('SH_ERR_INVALID_ARGUMENT', `"keyid" expected a party id, got ${JSON.stringify(keyid)}`);
  const created = Math.floor(now.getTime() / 1000);
  const nonce = randomBytes(16).toString('base64url');
  const digest = contentDigest(req.body);
  const params = paramsString(created, nonce, keyid);
  const base = signatureBase(
    { method: req.method, authority: req.authority, ...pathAndQuery(req.url), digest },
    params,
  );
  const sig = ed25519Sign(new TextEncoder().encode(base), secretKey);
  return {
    'content-digest': digest,
    'signature-input': `${LABEL}=${params}`,
    signature: `${LABEL}=:${Buffer.from(sig).toString('base64')}:`,
  };
}

/**
 * Where a verifier remembers the nonces it accepted. `claim` records one and says whether it was new; `forget` drops
 * those created before a time (UNIX seconds). The engine server keeps them in its database, so a request captured
 * before a restart is still refused after it (api/server/auth.ts).
 */
export interface NonceStore {
  claim(id: string, created: number): boolean;
  forget(before: number): void;
}

/** Nonces in memory (a process that restarts forgets them: use a persistent store where that matters). */
export class MemoryNonces implements NonceStore {
  private readonly seen = new Map<string, number>();

  claim(id: string, created: number): boolean {
    if (this.seen.has(id)) return false;
    this.seen.set(id, created);
    return true;
  }

  forget(before: number): void {
    // Insertion order is close to creation order: stop at the first nonce still in the window.
    for (const [n, at] of this.seen) {
      if (at >= before) break;
      this.seen.delete(n);
    }
  }
}

export interface VerifierOptions {
  /** Public key of a registered party, or undefined. */
  keyOf: (keyid: string) => Uint8Array | undefined;
  /** Accepted nonces (default: in memory). */
  nonces?: NonceStore;
  /** Largest accepted |now − created|, seconds. Default 300. */
  maxSkewSeconds?: number;
  now?: () => Date;
}

/**
 * Verifies signed requests and remembers nonces for the skew window, so a captured request cannot be replayed.
 * Every failure is SH_ERR_BAD_SIGNATURE with a reason naming what failed (missing header, digest, stale, replay, key).
 */
export class RequestVerifier {
  private readonly keyOf: (keyid: string) => Uint8Array | undefined;
  private readonly maxSkew: number;
  private readonly now: () => Date;
  private readonly nonces: NonceStore;
  private lastForget = 0;

  constructor(opts: VerifierOptions) {
    this.keyOf = opts.keyOf;
    this.nonces = opts.nonces ?? new MemoryNonces();
    this.maxSkew = opts.maxSkewSeconds ?? 300;
    this.now = opts.now ?? (() => new Date());
    if (!Number.isInteger(this.maxSkew) || this.maxSkew < 1)
      fail('SH_ERR_INVALID_ARGUMENT', `"maxSkewSeconds" expected a positive integer, got ${this.maxSkew}`);
  }

  /** @returns the verified party id (`keyid`). @throws SH_ERR_BAD_SIGNATURE */
  verify(req: HttpRequestParts): string {
    const h = Object.fromEntries(Object.entries(req.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
    const bad = (why: string): never => fail('SH_ERR_BAD_SIGNATURE', `request signature: ${why}`);
    const input = h['signature-input'];
    const signature = h['signature'];
    if (!input || !signature) return bad('Signature and Signature-Input headers are required');
    const m =
      /^sig1=(\((?:"[^"]+"(?: "[^"]+")*)?\));created=(\d{1,12});nonce="([A-Za-z0-9_-]{16,64})";keyid="([A-Za-z0-9][A-Za-z0-9_.:-]{0,127})";alg="ed25519"$/.exec(
        input,
      );
    if (!m) return bad('Signature-Input is malformed or does not use ed25519');
    const [, list, createdText, nonce, keyid] = m as unknown as [string, string, string, string, string];
    if (list !== `(${COMPONENTS.map((c) => `"${c}"`).join(' ')})`)
      bad('the covered components must be @method @authority @path @query content-digest');
    const sm = /^sig1=:([A-Za-z0-9+/]+={0,2}):$/.exec(signature);
    if (!sm) return bad('Signature is malformed');
    const digest = h['content-digest'];
    if (digest !== contentDigest(req.body)) bad('Content-Digest does not match the body');
    const created = Number(createdText);
    const now = Math.floor(this.now().getTime() / 1000);
    if (Math.abs(now - created) > this.maxSkew)
      bad(`created ${created} is outside ±${this.maxSkew} s of the server clock (stale or future-dated)`);
    const key = this.keyOf(keyid);
    if (!key) bad(`unknown keyid ${JSON.stringify(keyid)}`);
    const base = signatureBase(
      { method: req.method, authority: req.authority, ...pathAndQuery(req.url), digest: digest! },
      paramsString(created, nonce, keyid),
    );
    if (!ed25519Verify(new Uint8Array(Buffer.from(sm[1]!, 'base64')), new TextEncoder().encode(base), key!))
      bad(`signature by ${keyid} does not verify`);
    // Replay: a nonce is accepted once while its signature could still be fresh (older ones are forgotten each minute).
    if (now - this.lastForget >= 60) {
      this.nonces.forget(now - 2 * this.maxSkew);
      this.lastForget = now;
    }
    if (!this.nonces.claim(`${keyid}\u0000${nonce}`, created)) bad('nonce already used (replayed request)');
    return keyid;
  }
}
