/**
 * The provider's own table (its system of record, kept on the provider's side, never sent): a CSV validated
 * completely against the schema and encoded to fixed-point values (numeric fields) or normalized ids (id fields),
 * and the field statistics it publishes (count, mean, population std — rounded to 3 significant digits).
 */
import { fail, isCoded } from '../../core/errors.ts';
import { sha256Hex } from '../../core/hash.ts';
import { canonicalize } from '../../core/jcs.ts';
import { parseCsv } from '../../core/csv.ts';
import type { DatasetSchema, FieldSpec } from '../../sandbox/catalog.ts';
import { parseUscc } from '../../sandbox/uscc.ts';
import { encodeValue } from '../../sandbox/values.ts';
import { normalizeId, idRuleFor } from '../tokens/normalize.ts';

/** The provider's own encoded table (its system of record), kept on the provider's side. */
export interface ProviderTable {
  datasetId: string;
  category: string;
  schema: DatasetSchema;
  subjects: string[];
  /** field → fixed-point values as decimal strings, null = missing. */
  values: Record<string, Array<string | null>>;
  /** id field → normalized values per subject (a cell may list several, separated by ';'); [] = missing. */
  ids: Record<string, string[][]>;
}

/**
 * Parse and validate a provider CSV (`uscc,<field>...`) into fixed-point values.
 * @throws coded CSV/USCC errors naming the line and field; nothing is returned unless every row is valid.
 */
export function encodeTable(schema: DatasetSchema, csvText: string, datasetId: string, t: bigint): ProviderTable {
  const csv = parseCsv(csvText, { requiredHeader: ['uscc'] });
  if (csv.header[0] !== 'uscc')
    fail('SH_ERR_CSV_MALFORMED', `"header" expected uscc as the first column, got ${JSON.stringify(csv.header[0])}`, {
      line: 1,
    });
  const byName = new Map(schema.fields.map((f) => [f.name, f]));
  const cols = csv.header.slice(1).map((h) => {
    const f = byName.get(h);
    if (!f)
      fail('SH_ERR_CSV_UNKNOWN_FIELD', `column ${JSON.stringify(h)} is not a field of the ${schema.category} schema`, {
        line: 1,
        field: h,
      });
    return f;
  });
  const numeric = schema.fields.filter((f) => f.type !== 'id');
  for (const f of numeric)
    if (!csv.header.includes(f.name))
      fail('SH_ERR_CSV_MALFORMED', `schema field ${f.name} has no column in the CSV`, { line: 1, field: f.name });
  const half = (t - 1n) / 2n;
  const subjects: string[] = [];
  const seen = new Set<string>();
  const values: Record<string, Array<string | null>> = Object.fromEntries(
    numeric.map((f) => [f.name, [] as Array<string | null>]),
  );
  const ids: Record<string, string[][]> = Object.fromEntries(
    schema.fields.filter((f) => f.type === 'id').map((f) => [f.name, [] as string[][]]),
  );
  csv.rows.forEach((row, r) => {
    const line = csv.lines[r]!;
    let uscc: string;
    try {
      uscc = parseUscc(row[0]!);
    } catch (err) {
      const e = err as { code: 'SH_ERR_USCC_FORMAT'; message: string };
      return fail(e.code, `line ${line}: ${e.message}`, { line, field: 'uscc' }, err);
    }
    if (seen.has(uscc)) fail('SH_ERR_CSV_DUPLICATE_SUBJECT', `line ${line}: subject ${uscc} appears twice`, { line });
    seen.add(uscc);
    subjects.push(uscc);
    cols.forEach((f, c) => {
      if (f.type === 'id') {
        ids[f.name]!.push(parseIdCell(f.name, row[c + 1]!, line));
        return;
      }
      const v = encodeValue(f, row[c + 1]!, line);
      if (v !== null && (v > half || -v > half))
        fail('SH_ERR_CSV_VALUE', `line ${line}: "${f.name}" does not fit the plain modulus`, { line, field: f.name });
      values[f.name]!.push(v === null ? null : v.toString());
    });
  });
  for (const f of schema.fields) if (f.type === 'id' && !cols.includes(f)) ids[f.name] = subjects.map(() => []);
  return { datasetId, category: schema.category, schema, subjects, values, ids };
}

/** An id cell: one value, or several separated by ';', each normalized by its field's rule; '' = none. */
function parseIdCell(field: string, cell: string, line: number): string[] {
  if (cell.trim() === '') return [];
  const out = new Set<string>();
  for (const part of cell.split(';')) {
    try {
      out.add(normalizeId(idRuleFor(field), part));
    } catch (err) {
      if (isCoded(err)) fail('SH_ERR_CSV_VALUE', `line ${line}: "${field}" ${err.message}`, { line, field }, err);
      throw err;
    }
  }
  return [...out];
}

/** Published statistics: count, mean and population std (field units), the last two rounded to 3 significant digits. */
export function fieldStats(
  fields: readonly FieldSpec[],
  table: ProviderTable,
): Record<string, { count: number; std: number; mean: number }> {
  const out: Record<string, { count: number; std: number; mean: number }> = {};
  for (const f of fields) {
    const xs = table.values[f.name]!.filter((v): v is string => v !== null).map((v) => Number(v) / 10 ** f.decimals);
    const mean = xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
    const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, xs.length));
    out[f.name] = { count: xs.length, std: Number(sd.toPrecision(3)), mean: Number(mean.toPrecision(3)) };
  }
  return out;
}

export function tableHash(table: ProviderTable): string {
  return sha256Hex(canonicalize(table));
}
