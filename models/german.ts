/**
 * UCI Statlog (German Credit Data) as a vertical-split joint-training fixture (docs/design.md §5 acceptance data set).
 *
 * Source: Hofmann, H. (1994), UCI Machine Learning Repository, doi:10.24432/C5NC77, CC BY 4.0; the file and its
 * checks are described in ../shared/data/credit/PROVENANCE.md, the codes in german.doc. The data is read from the
 * shared directory beside the checkout and never copied into the repository.
 *
 * german.data: 1000 rows of 20 attributes + class, space separated, symbolic codes (A11 …) for the qualitative
 * attributes. Class 1 = good, 2 = bad (700 / 300); here label 1 = bad (default), 0 = good, as everywhere in Safehouse.
 *
 * The split: every row gets a deterministic, distinct, valid USCC; the bank keeps the labels (and may use the
 * attributes the providers do not hold, exposed as `bankFeatures`); a provider holds eleven attributes as its own
 * MODEL_ONLY fields (names prefixed `gc_`) in category `tax`; with `providers: 2` some of them move to a second
 * provider in category `utilities`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, fail } from '../core/errors.ts';
import { toCsv } from '../core/csv.ts';
import { mulberry32 } from '../core/rng.ts';
import { randomUscc } from '../sandbox/uscc.ts';
import { validateSchema, type DatasetSchema } from '../sandbox/catalog.ts';
import { encodeValue } from '../sandbox/values.ts';

/** Default location: `../shared/data/credit/german.data` beside the repository checkout. */
export const GERMAN_PATH = resolve(import.meta.dirname, '..', '..', 'shared', 'data', 'credit', 'german.data');

const codes = (prefix: string, from: number, to: number): string[] =>
  Array.from({ length: to - from + 1 }, (_, i) => `${prefix}${from + i}`);

/**
 * The 20 attributes of german.data in file order (attribute k at index k−1), each numeric or with its codes
 * from german.doc §7. Purpose lists A47 although german.doc doubts it occurs ("vacation - does not exist?").
 */
export const GERMAN_ATTRIBUTES: ReadonlyArray<{ attr: string; name: string; codes?: readonly string[] }> = [
  { attr: 'A1', name: 'checking_status', codes: codes('A1', 1, 4) },
  { attr: 'A2', name: 'duration_months' },
  { attr: 'A3', name: 'credit_history', codes: codes('A3', 0, 4) },
  { attr: 'A4', name: 'purpose', codes: codes('A4', 0, 10) },
  { attr: 'A5', name: 'credit_amount' },
  { attr: 'A6', name: 'savings', codes: codes('A6', 1, 5) },
  { attr: 'A7', name: 'employment_since', codes: codes('A7', 1, 5) },
  { attr: 'A8', name: 'installment_rate' },
  { attr: 'A9', name: 'personal_status', codes: codes('A9', 1, 5) },
  { attr: 'A10', name: 'other_debtors', codes: codes('A10', 1, 3) },
  { attr: 'A11', name: 'residence_since' },
  { attr: 'A12', name: 'property', codes: codes('A12', 1, 4) },
  { attr: 'A13', name: 'age' },
  { attr: 'A14', name: 'other_installment_plans', codes: codes('A14', 1, 3) },
  { attr: 'A15', name: 'housing', codes: codes('A15', 1, 3) },
  { attr: 'A16', name: 'existing_credits' },
  { attr: 'A17', name: 'job', codes: codes('A17', 1, 4) },
  { attr: 'A18', name: 'dependents' },
  { attr: 'A19', name: 'telephone', codes: codes('A19', 1, 2) },
  { attr: 'A20', name: 'foreign_worker', codes: codes('A20', 1, 2) },
];

/** One applicant: attributes as written (attributes[k−1] = attribute Ak) and label 1 = bad, 0 = good. */
export interface GermanRow {
  attributes: readonly string[];
  label: 0 | 1;
}

/**
 * Read and check german.data (21 whitespace-separated tokens per line: attribute codes from german.doc, non-negative
 * integers for the numeric attributes, class 1 or 2).
 * @throws SH_ERR_NOT_FOUND when the file is missing (the message says where it was looked for);
 *   SH_ERR_CSV_MALFORMED with `{ line }` for a malformed line.
 * @example loadGerman().filter((r) => r.label === 1).length === 300
 */
export function loadGerman(path: string = GERMAN_PATH): GermanRow[] {
  if (typeof path !== 'string' || path === '')
    fail('SH_ERR_INVALID_ARGUMENT', `"path" expected a file path, got ${describe(path)}`);
  if (!existsSync(path)) {
    fail(
      'SH_ERR_NOT_FOUND',
      `German Credit data not found at ${path}: it is read from ../shared/data/credit/german.data beside the checkout (UCI doi:10.24432/C5NC77), or pass a path`,
      { path },
    );
  }
  const lines = readFileSync(path, 'utf8').split('\n');
  while (lines.length > 0 && lines[lines.length - 1]!.trim() === '') lines.pop();
  return lines.map((text, i) => {
    const line = i + 1;
    const bad = (msg: string): never => fail('SH_ERR_CSV_MALFORMED', `german.data line ${line}: ${msg}`, { line });
    const tok = text.trim().split(/\s+/);
    if (tok.length !== 21) bad(`expected 21 values, got ${tok.length}`);
    GERMAN_ATTRIBUTES.forEach((a, k) => {
      const v = tok[k]!;
      if (a.codes ? !a.codes.includes(v) : !/^(0|[1-9][0-9]{0,8})$/.test(v)) {
        bad(
          `attribute ${a.attr} (${a.name}) expected ${a.codes ? a.codes.join('|') : 'a non-negative integer'}, got ${JSON.stringify(v)}`,
        );
      }
    });
    const cls = tok[20];
    if (cls !== '1' && cls !== '2') bad(`class expected 1 (good) or 2 (bad), got ${JSON.stringify(cls)}`);
    return { attributes: tok.slice(0, 20), label: cls === '2' ? 1 : 0 };
  });
}

/** A provider field: its german.data attribute number (1..20) and the field as the provider declares it in its schema. */
export interface GermanField {
  attr: number;
  field: Record<string, unknown>;
}

const int = (attr: number, name: string, label: string, min: string, max: string, unit?: string): GermanField => ({
  attr,
  field: { name, label, type: 'int', decimals: 0, min, max, class: 'MODEL_ONLY', ...(unit ? { unit } : {}) },
});
const enm = (attr: number, name: string, label: string): GermanField => ({
  attr,
  field: {
    name,
    label,
    type: 'enum',
    decimals: 0,
    class: 'MODEL_ONLY',
    values: [...GERMAN_ATTRIBUTES[attr - 1]!.codes!],
  },
});

/**
 * The eleven provider-held attributes, in the order of the provider's schema. Bounds are generous domain bounds, not
 * the observed range (duration 4..72, amount 250..18424, age 19..75 in the file). Enum values are german.doc's codes.
 */
export const GERMAN_PROVIDER_FIELDS: readonly GermanField[] = [
  int(2, 'gc_duration_months', 'Duration in months', '0', '120', '月'),
  int(5, 'gc_credit_amount', 'Credit amount', '0', '100000', 'DM'),
  int(8, 'gc_installment_rate', 'Installment rate (% of disposable income, 1..4)', '1', '4'),
  int(11, 'gc_residence_since', 'Present residence since (1..4)', '1', '4'),
  int(13, 'gc_age', 'Age in years', '18', '100', '岁'),
  int(16, 'gc_existing_credits', 'Number of existing credits at this bank', '1', '4'),
  int(18, 'gc_dependents', 'People liable to provide maintenance for', '1', '2'),
  enm(1, 'gc_checking_status', 'Status of existing checking account'),
  enm(3, 'gc_credit_history', 'Credit history'),
  enm(6, 'gc_savings', 'Savings account/bonds'),
  enm(7, 'gc_employment', 'Present employment since'),
];

/** Fields the second provider holds when `providers: 2` (the applicant's profile; the first keeps the credit file). */
export const GERMAN_SECOND_PROVIDER_FIELDS: readonly string[] = [
  'gc_age',
  'gc_residence_since',
  'gc_dependents',
  'gc_employment',
  'gc_savings',
];

/** Attributes no provider holds: the bank's own application data (codes as written). */
const BANK_ATTRIBUTES = [4, 9, 10, 12, 14, 15, 17, 19, 20];

/** Party id of the (first) provider: category `tax`, own fields. */
export const GERMAN_PROVIDER = 'gc_provider';
/** Party id of the second provider with `providers: 2`: category `utilities`, own fields. */
export const GERMAN_PROVIDER2 = 'gc_provider2';

/** One provider's share of the split: its validated schema and its dataset CSV (`uscc` + its fields). */
export interface GermanProviderData {
  provider: string;
  schema: DatasetSchema;
  csv: string;
}

/** The vertical split of German Credit (see the file header). */
export interface GermanSplit {
  /** One USCC per row of german.data, in file order. */
  subjects: string[];
  /** uscc → 1 (bad) or 0 (good). */
  labels: Map<string, 0 | 1>;
  providers: GermanProviderData[];
  /** `uscc,label` (the bank's label file). */
  labelsCsv: string;
  /** uscc → the bank's own attributes (purpose, personal_status, …: german.doc codes), not used by the providers. */
  bankFeatures: Map<string, Readonly<Record<string, string>>>;
}

/**
 * Split German Credit vertically between the bank and one or two providers. Deterministic for a seed: the USCCs come
 * from one `mulberry32(seed)` stream through `randomUscc`, skipping repeats.
 * `providers: 1`: gc_provider (category tax) holds all eleven {@link GERMAN_PROVIDER_FIELDS}.
 * `providers: 2`: gc_provider2 (category utilities) holds `secondProviderFields` (default
 * {@link GERMAN_SECOND_PROVIDER_FIELDS}), gc_provider the rest. Each schema passes `validateSchema` (it is its output).
 * @throws SH_ERR_INVALID_ARGUMENT (seed, providers, field list), loadGerman's errors, SH_ERR_CSV_VALUE when a value
 *   falls outside its field's bounds.
 * @example germanSplit({ seed: 7, providers: 1 }).providers[0].provider === 'gc_provider'
 */
export function germanSplit(o: {
  seed: number;
  providers: 1 | 2;
  path?: string;
  secondProviderFields?: readonly string[];
}): GermanSplit {
  if (typeof o !== 'object' || o === null)
    fail('SH_ERR_INVALID_ARGUMENT', `"options" expected an object, got ${describe(o)}`);
  if (!Number.isSafeInteger(o.seed))
    fail('SH_ERR_INVALID_ARGUMENT', `"seed" expected an integer, got ${describe(o.seed)}`);
  if (o.providers !== 1 && o.providers !== 2)
    fail('SH_ERR_INVALID_ARGUMENT', `"providers" expected 1 or 2, got ${describe(o.providers)}`);
  const rows = loadGerman(o.path);
  const rng = mulberry32(o.seed);
  const seen = new Set<string>();
  const subjects: string[] = [];
  while (subjects.length < rows.length) {
    const u = randomUscc(rng);
    if (!seen.has(u)) {
      seen.add(u);
      subjects.push(u);
    }
  }
  const labels = new Map(subjects.map((u, i) => [u, rows[i]!.label]));

  const second = new Set(o.providers === 2 ? (o.secondProviderFields ?? GERMAN_SECOND_PROVIDER_FIELDS) : []);
  const names = GERMAN_PROVIDER_FIELDS.map((f) => f.field.name as string);
  for (const n of second)
    if (!names.includes(n))
      fail(
        'SH_ERR_INVALID_ARGUMENT',
        `"secondProviderFields" expected names from ${names.join(', ')}, got ${describe(n)}`,
      );
  if (o.providers === 2 && (second.size === 0 || second.size === names.length)) {
    fail(
      'SH_ERR_INVALID_ARGUMENT',
      `"secondProviderFields" expected a non-empty proper subset of the ${names.length} provider fields, got ${second.size}`,
    );
  }
  const parts: Array<{ provider: string; category: string; fields: GermanField[] }> = [
    {
      provider: GERMAN_PROVIDER,
      category: 'tax',
      fields: GERMAN_PROVIDER_FIELDS.filter((f) => !second.has(f.field.name as string)),
    },
  ];
  if (o.providers === 2)
    parts.push({
      provider: GERMAN_PROVIDER2,
      category: 'utilities',
      fields: GERMAN_PROVIDER_FIELDS.filter((f) => second.has(f.field.name as string)),
    });

  const providers = parts.map((p): GermanProviderData => {
    const schema = validateSchema({ category: p.category, fields: p.fields.map((f) => f.field) });
    const cells = rows.map((r, i) => [
      subjects[i]!,
      ...p.fields.map((f, k) => {
        const v = r.attributes[f.attr - 1]!;
        encodeValue(schema.fields[k]!, v, i + 1); // bounds check: a value outside the declared field is refused here
        return v;
      }),
    ]);
    return { provider: p.provider, schema, csv: toCsv(['uscc', ...schema.fields.map((f) => f.name)], cells) };
  });

  const bankFeatures = new Map(
    subjects.map((u, i) => [
      u,
      Object.freeze(
        Object.fromEntries(BANK_ATTRIBUTES.map((a) => [GERMAN_ATTRIBUTES[a - 1]!.name, rows[i]!.attributes[a - 1]!])),
      ),
    ]),
  );
  const labelsCsv = toCsv(
    ['uscc', 'label'],
    subjects.map((u) => [u, String(labels.get(u))]),
  );
  return { subjects, labels, providers, labelsCsv, bankFeatures };
}

/**
 * Seeded train / hold-out split, **stratified** by label: within each class, subjects are sorted by USCC, shuffled
 * (Fisher–Yates with one `mulberry32(seed)` stream, bad class first) and the first round(testFraction·n_class) go to
 * the test set. The result depends only on the set of subjects and the seed, not on their order; both lists keep
 * the order of `subjects`.
 * @throws SH_ERR_INVALID_ARGUMENT for a subject without a label, a repeated subject, a bad seed or testFraction
 *   outside (0, 1).
 * @example trainTestSplit(gc.subjects, gc.labels, { seed: 42, testFraction: 0.3 }).test.length === 300
 */
export function trainTestSplit(
  subjects: readonly string[],
  labels: ReadonlyMap<string, 0 | 1>,
  o: { seed: number; testFraction?: number },
): { train: string[]; test: string[] } {
  if (!Number.isSafeInteger(o.seed))
    fail('SH_ERR_INVALID_ARGUMENT', `"seed" expected an integer, got ${describe(o.seed)}`);
  const f = o.testFraction ?? 0.3;
  if (typeof f !== 'number' || !(f > 0 && f < 1))
    fail('SH_ERR_INVALID_ARGUMENT', `"testFraction" expected a number in (0, 1), got ${describe(f)}`);
  const byClass: [string[], string[]] = [[], []];
  const seen = new Set<string>();
  for (const u of subjects) {
    const l = labels.get(u);
    if (l !== 0 && l !== 1)
      fail('SH_ERR_INVALID_ARGUMENT', `"labels" expected a 0/1 label for every subject, got none for ${u}`);
    if (seen.has(u)) fail('SH_ERR_INVALID_ARGUMENT', `"subjects" expected distinct subjects, got ${u} twice`);
    seen.add(u);
    byClass[l].push(u);
  }
  const rng = mulberry32(o.seed);
  const test = new Set<string>();
  for (const cls of [byClass[1], byClass[0]]) {
    const xs = [...cls].sort();
    for (let i = xs.length - 1; i > 0; i--) {
      const j = Math.floor(rng() * (i + 1));
      [xs[i], xs[j]] = [xs[j]!, xs[i]!];
    }
    for (const u of xs.slice(0, Math.round(xs.length * f))) test.add(u);
  }
  return { train: subjects.filter((u) => !test.has(u)), test: subjects.filter((u) => test.has(u)) };
}
