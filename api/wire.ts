/**
 * What travels on the wire besides the signed statements: JSON in which bigints (model weights, gradient sums) are
 * `{ "$bigint": "123" }` and Uint8Arrays `{ "$bytes": "<base64>" }`, so a result read back is the value that was
 * written; and the framing of a batch of blobs for an auditor's replay.
 */
import { fail } from '../core/errors.ts';

export function toJson(value: unknown): string {
  return JSON.stringify(value, function (this: unknown, _k, v: unknown) {
    if (typeof v === 'bigint') return { $bigint: v.toString() };
    if (v instanceof Uint8Array) return { $bytes: Buffer.from(v).toString('base64') };
    return v;
  });
}

export function fromJson(text: string): unknown {
  return JSON.parse(text, (k, v: unknown) => {
    if (k === '__proto__' || k === 'constructor') return undefined;
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const keys = Object.keys(v);
      if (
        keys.length === 1 &&
        keys[0] === '$bigint' &&
        typeof (v as { $bigint: unknown }).$bigint === 'string' &&
        /^-?\d+$/.test((v as { $bigint: string }).$bigint)
      )
        return BigInt((v as { $bigint: string }).$bigint);
      if (keys.length === 1 && keys[0] === '$bytes' && typeof (v as { $bytes: unknown }).$bytes === 'string')
        return new Uint8Array(Buffer.from((v as { $bytes: string }).$bytes, 'base64'));
    }
    return v;
  });
}

/** Blobs per batch request: a training job's bundle names ≈ 1 500 blobs of ≤ 0.5 MB each. */
export const BLOB_BATCH = 64;

/**
 * Blobs as one octet stream of frames: 32-byte SHA-256, 4-byte big-endian length, the bytes (the client checks every
 * hash). One request per BLOB_BATCH blobs keeps a long replay well inside the per-party rate limit.
 */
export function blobFrames(blobs: ReadonlyArray<{ hash: string; bytes: Uint8Array }>): Uint8Array {
  const out = new Uint8Array(blobs.reduce((a, b) => a + 36 + b.bytes.length, 0));
  let o = 0;
  for (const b of blobs) {
    out.set(Buffer.from(b.hash, 'hex'), o);
    new DataView(out.buffer).setUint32(o + 32, b.bytes.length);
    out.set(b.bytes, o + 36);
    o += 36 + b.bytes.length;
  }
  return out;
}

/** The frames of a blob batch (`blobFrames`): hash → bytes. */
export function readFrames(bytes: Uint8Array): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let o = 0;
  while (o + 36 <= bytes.length) {
    const hash = Buffer.from(bytes.subarray(o, o + 32)).toString('hex');
    const n = view.getUint32(o + 32);
    if (o + 36 + n > bytes.length) fail('SH_ERR_BLOB_CORRUPT', 'a blob batch from the engine is truncated');
    out.set(hash, bytes.slice(o + 36, o + 36 + n));
    o += 36 + n;
  }
  if (o !== bytes.length) fail('SH_ERR_BLOB_CORRUPT', 'a blob batch from the engine has trailing bytes');
  return out;
}
