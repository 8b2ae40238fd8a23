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

export function canonicalize(value: unknown): string {
  return ser(value, []);
}

/**
 * `at` is the path of `v` as a stack of keys/indices, turned into text only for an error message (building a path
 * string per element cost more than serializing it: a 100 000-subject job request is hashed several times).
 */
function ser(v: unknown, at: Array<string | number>): string {
  if (v === null) return 'null';
  switch (typeof v) {
    case 'boolean':
      return v ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(v)) fail('SH_ERR_INVALID_ARGUMENT', `"${pathText(at)}" expected a finite number, got ${v}`);
      return JSON.stringify(v);
    case 'string':
      if (!v.isWellFormed()) fail('SH_ERR_INVALID_ARGUMENT', `"${pathText(at)}" expected well-formed Unicode`);
      return JSON.stringify(v);
    case 'object': {
      if (Array.isArray(v)) {
        let out = '[';
        for (let i = 0; i < v.length; i++) {
          at.push(i);
          out += (i ? ',' : '') + ser(v[i] === undefined ? null : v[i], at);
          at.pop();
        }
        return out + ']';
      }
      if (ArrayBuffer.isView(v))
        fail('SH_ERR_INVALID_ARGUMENT', `"${pathText(at)}" expected JSON, got binary (encode it)`);
      const obj = v as Record<string, unknown>;
      // The default sort compares UTF-16 code units, which is RFC 8785 §3.2.3's order (and faster than a comparator).
      const keys = Object.keys(obj)
        .filter((k) => obj[k] !== undefined)
        .sort();
      let out = '{';
      for (let i = 0; i < keys.length; i++) {
        const k = keys[i]!;
        const name = ser(k, at);
        at.push(k);
        out += (i ? ',' : '') + name + ':' + ser(obj[k], at);
        at.pop();
      }
      return out + '}';
    }
    default:
      return fail('SH_ERR_INVALID_ARGUMENT', `"${pathText(at)}" expected JSON, got ${typeof v}`);
  }
}

function pathText(at: ReadonlyArray<string | number>): string {
  return '$' + at.map((k) => (typeof k === 'number' ? `[${k}]` : `.${k}`)).join('');
}

/** UTF-8 bytes of the canonical form: what gets signed and hashed. */
export function canonicalBytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(canonicalize(value));
}
