/**
 * JSON on the wire and in result files: bigints (model weights, gradient sums) travel as `{ "$bigint": "123" }` and
 * Uint8Arrays as `{ "$bytes": "<base64>" }`, so a result read back is the value that was written.
 */
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
