/**
 * RFC 8785 JSON Canonicalization Scheme (JCS). Used for everything that is signed or hashed: consents, revocations,
 * ledger leaves, job requests, upload manifests.
 *
 * - object members sorted by the UTF-16 code units of their names (RFC 8785 §3.2.3);
 * - numbers serialized as ECMAScript Number.prototype.toString does (§3.2.2.3), which is what JSON.stringify uses;
 *   non-finite numbers are refused;
 * - strings escaped as JSON.stringify does (§3.2.2.2); lone surrogates are refused (§3.2.2.2 requires well-formed
 *   Unicode);
 * - `undefined` members are dropped (as JSON.stringify does); bigint is refused: encode big values as strings.
 *
 * @throws SafehouseError SH_ERR_INVALID_ARGUMENT for values JSON cannot represent.
 * @example canonicalize({ b: 1, a: [true, null] }) === '{"a":[true,null],"b":1}'
 */
import { fail } from './errors.ts';

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function canonicalize(value: unknown): string {
  return ser(value, '$');
}

function ser(v: unknown, path: string): string {
  if (v === null) return 'null';
  switch (typeof v) {
    case 'boolean':
      return v ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(v)) fail('SH_ERR_INVALID_ARGUMENT', `"${path}" expected a finite number, got ${v}`);
      return JSON.stringify(v);
    case 'string':
      if (LONE_SURROGATE.test(v)) fail('SH_ERR_INVALID_ARGUMENT', `"${path}" expected well-formed Unicode`);
      return JSON.stringify(v);
    case 'object': {
      if (Array.isArray(v)) return '[' + v.map((x, i) => ser(x === undefined ? null : x, `${path}[${i}]`)).join(',') + ']';
      if (ArrayBuffer.isView(v)) fail('SH_ERR_INVALID_ARGUMENT', `"${path}" expected JSON, got binary (encode it)`);
      const obj = v as Record<string, unknown>;
      const keys = Object.keys(obj)
        .filter((k) => obj[k] !== undefined)
        .sort(compareUtf16);
      return '{' + keys.map((k) => ser(k, path) + ':' + ser(obj[k], `${path}.${k}`)).join(',') + '}';
    }
    default:
      return fail('SH_ERR_INVALID_ARGUMENT', `"${path}" expected JSON, got ${typeof v}`);
  }
}

/** RFC 8785 §3.2.3: compare property names as arrays of UTF-16 code units. */
function compareUtf16(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = a.charCodeAt(i) - b.charCodeAt(i);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/** UTF-8 bytes of the canonical form: what gets signed and hashed. */
export function canonicalBytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(canonicalize(value));
}
