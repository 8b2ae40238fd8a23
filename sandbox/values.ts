/**
 * Cell → fixed-point integer, per field type (CLI contract of `provider ingest`): numbers with at most `decimals`
 * places, bool as true/false or 1/0, enum as one of its labels (encoded as the label's index), empty = missing.
 * Values outside the field's [min, max] are refused. Used by the provider when it encodes a dataset and by the
 * plaintext reference evaluation, so both read a CSV cell the same way.
 */
import { fail } from '../core/errors.ts';
import { parseFixed } from '../core/fixed.ts';
import type { FieldSpec } from './catalog.ts';

/**
 * @returns value·10^decimals, or null for an empty (missing) cell.
 * @throws SH_ERR_CSV_VALUE naming the field, with `{ field, line }` in details when a line is given.
 * @example encodeValue({ type: 'decimal', decimals: 2, min: '0', max: '100', ... }, '12.5') === 1250n
 */
export function encodeValue(spec: FieldSpec, cell: string, line?: number): bigint | null {
  const text = cell.trim();
  if (text === '') return null;
  const at = line === undefined ? '' : ` (line ${line})`;
  const d: Record<string, string | number> = line === undefined ? { field: spec.name } : { field: spec.name, line };
  let v: bigint;
  switch (spec.type) {
    case 'bool': {
      const t = text.toLowerCase();
      if (t === 'true' || t === '1') v = 1n;
      else if (t === 'false' || t === '0') v = 0n;
      else
        return fail(
          'SH_ERR_CSV_VALUE',
          `"${spec.name}" expected true/false or 1/0, got ${JSON.stringify(cell)}${at}`,
          d,
        );
      break;
    }
    case 'enum': {
      const i = (spec.values ?? []).indexOf(text);
      if (i < 0)
        return fail(
          'SH_ERR_CSV_VALUE',
          `"${spec.name}" expected one of ${(spec.values ?? []).join('|')}, got ${JSON.stringify(cell)}${at}`,
          d,
        );
      v = BigInt(i);
      break;
    }
    case 'int':
    case 'decimal':
      try {
        v = parseFixed(text, spec.decimals, spec.name, 'SH_ERR_CSV_VALUE');
      } catch (err) {
        return fail('SH_ERR_CSV_VALUE', `${(err as Error).message}${at}`, d, err);
      }
      break;
    default:
      return fail(
        'SH_ERR_CSV_VALUE',
        `"${spec.name}" is a token (id) field; token upload is not part of numeric ingest${at}`,
        d,
      );
  }
  const min = parseFixed(spec.min, spec.decimals);
  const max = parseFixed(spec.max, spec.decimals);
  if (v < min || v > max) {
    fail(
      'SH_ERR_CSV_VALUE',
      `"${spec.name}" expected a value in [${spec.min}, ${spec.max}], got ${JSON.stringify(cell)}${at}`,
      d,
    );
  }
  return v;
}
