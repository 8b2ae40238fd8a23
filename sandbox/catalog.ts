/**
 * The field catalog and its classes: 分级分类 (docs/design.md §2, §7).
 *
 * Categories and standard fields follow the national credit-information sharing list (国办发〔2021〕52号,
 * 《加强信用信息共享应用促进中小微企业融资实施方案》 annex 信用信息共享清单): 纳税, 水电气, 住房公积金, 社会保险,
 * 不动产. A field's **class** fixes the operations allowed on it, and {@link classAllows} is the only place that
 * decides this; everything else (model vetting, verification, output policy) asks it.
 *
 * Values are fixed-point: a field with `decimals` d stores round-free integers value·10^d, so `min`/`max` are exact
 * decimal strings (never floats). The bound calculator, not this module, checks that bounds fit the plain modulus.
 * Longer than 400 lines: most of the file is the sharing catalog itself, as data (categories, fields, classes,
 * bounds).
 */
import { fail, describe } from '../core/errors.ts';

export type FieldType = 'int' | 'decimal' | 'bool' | 'enum' | 'id';
export type FieldClass = 'PUBLIC' | 'AUTH_QUERY' | 'VERIFY_ONLY' | 'MODEL_ONLY';
/** One field of a category. `values` are enum labels, encoded as their index 0..k−1. id fields have min = max = "". */
export interface FieldSpec {
  name: string;
  label: string;
  type: FieldType;
  decimals: number;
  min: string;
  max: string;
  class: FieldClass;
  unit?: string;
  values?: string[];
}
export interface CategorySpec {
  id: string;
  label: string;
  allowedClasses: FieldClass[];
  fields: FieldSpec[];
}
/** A provider's validated schema for one dataset (one category). */
export interface DatasetSchema {
  category: string;
  fields: FieldSpec[];
}
/** Operations a field may take part in (docs/design.md §5): model scoring, joint training, yes/no verification, raw return. */
export type FieldOp = 'score' | 'train' | 'verify' | 'return';

const FIELD_TYPES: readonly FieldType[] = ['int', 'decimal', 'bool', 'enum', 'id'];
const FIELD_CLASSES: readonly FieldClass[] = ['PUBLIC', 'AUTH_QUERY', 'VERIFY_ONLY', 'MODEL_ONLY'];

/**
 * 分级分类: the operations each class allows (docs/design.md §2). AUTH_QUERY's `return` is further conditioned on the
 * subject's consent, which sandbox/consent.ts checks per subject; this table only says it is not forbidden outright.
 */
const CLASS_OPS: Readonly<Record<FieldClass, readonly FieldOp[]>> = {
  PUBLIC: ['score', 'train', 'verify', 'return'],
  AUTH_QUERY: ['score', 'train', 'verify', 'return'],
  VERIFY_ONLY: ['verify'],
  MODEL_ONLY: ['score', 'train'],
};

/**
 * Whether fields of class `cls` may take part in operation `op` (docs/design.md §2: the single enforcement point of 分级分类).
 * PUBLIC: everything; AUTH_QUERY: everything, `return` only with consent (checked by the caller per subject);
 * VERIFY_ONLY: `verify` only (yes/no answers); MODEL_ONLY: `score` and `train` only (inside approved models).
 *
 * @throws SafehouseError SH_ERR_INVALID_ARGUMENT for an unknown class or operation.
 * @example classAllows('MODEL_ONLY', 'return') === false
 */
export function classAllows(cls: FieldClass, op: FieldOp): boolean {
  const ops = CLASS_OPS[cls];
  if (!FIELD_CLASSES.includes(cls) || ops === undefined) {
    fail('SH_ERR_INVALID_ARGUMENT', `"cls" expected one of ${FIELD_CLASSES.join(', ')}, got ${describe(cls)}`);
  }
  if (!(['score', 'train', 'verify', 'return'] as const).includes(op)) {
    fail('SH_ERR_INVALID_ARGUMENT', `"op" expected score, train, verify or return, got ${describe(op)}`);
  }
  return ops.includes(op);
}

// --- catalog --------------------------------------------------------------------------------------------------

const num = (
  name: string,
  label: string,
  type: 'int' | 'decimal',
  decimals: number,
  min: string,
  max: string,
  cls: FieldClass,
  unit?: string,
): FieldSpec => ({ name, label, type, decimals, min, max, class: cls, ...(unit === undefined ? {} : { unit }) });
const bool = (name: string, label: string, cls: FieldClass): FieldSpec => ({
  name,
  label,
  type: 'bool',
  decimals: 0,
  min: '0',
  max: '1',
  class: cls,
});
const enm = (name: string, label: string, values: string[], cls: FieldClass): FieldSpec => ({
  name,
  label,
  type: 'enum',
  decimals: 0,
  min: '0',
  max: String(values.length - 1),
  class: cls,
  values,
});
/** String ids are uploaded only as OPRF tokens (docs/design.md §2), so membership tests are all that can be done with them. */
const id = (name: string, label: string): FieldSpec => ({
  name,
  label,
  type: 'id',
  decimals: 0,
  min: '',
  max: '',
  class: 'VERIFY_ONLY',
});

const RESTRICTED: FieldClass[] = ['AUTH_QUERY', 'VERIFY_ONLY', 'MODEL_ONLY'];

/**
 * The categories and their standard fields (国办发〔2021〕52号 annex). Field names are unique across the whole
 * catalog, so a model or claim naming a field is unambiguous. Amounts: 万元 for annual tax, 元 for monthly fees.
 * Tax allows PUBLIC provider fields because part of tax credit information is published by law (A级纳税人名单,
 * 重大税收违法失信主体); the others hold data released only with the subject's authorization.
 *
 * @example CATALOG.map((c) => c.id) // ['tax', 'utilities', 'housing_fund', 'social_insurance', 'property']
 */
export const CATALOG: readonly CategorySpec[] = deepFreeze([
  {
    id: 'tax',
    label: '纳税',
    allowedClasses: ['PUBLIC', ...RESTRICTED],
    fields: [
      enm('tax_credit_grade', '纳税信用等级', ['A', 'B', 'M', 'C', 'D'], 'AUTH_QUERY'),
      num('vat_paid_12m', '近一年增值税实缴金额', 'decimal', 2, '0', '1000000', 'MODEL_ONLY', '万元'),
      num('cit_paid_12m', '近一年企业所得税实缴金额', 'decimal', 2, '0', '1000000', 'MODEL_ONLY', '万元'),
      num('taxable_sales_12m', '近一年应税销售收入', 'decimal', 2, '0', '10000000', 'MODEL_ONLY', '万元'),
      num('months_continuous_tax', '连续正常缴税月数', 'int', 0, '0', '120', 'AUTH_QUERY', '月'),
      bool('tax_arrears', '当前是否欠税', 'AUTH_QUERY'),
      num('tax_penalties_3y', '近三年税务行政处罚次数', 'int', 0, '0', '100', 'AUTH_QUERY', '次'),
    ],
  },
  {
    id: 'utilities',
    label: '水电气',
    allowedClasses: [...RESTRICTED],
    fields: [
      num('electricity_kwh_avg_12m', '近一年月均用电量', 'decimal', 2, '0', '100000000', 'MODEL_ONLY', '千瓦时'),
      num('electricity_fee_avg_12m', '近一年月均电费', 'decimal', 2, '0', '100000000', 'MODEL_ONLY', '元'),
      num('water_m3_avg_12m', '近一年月均用水量', 'decimal', 2, '0', '10000000', 'MODEL_ONLY', '立方米'),
      num('water_fee_avg_12m', '近一年月均水费', 'decimal', 2, '0', '10000000', 'MODEL_ONLY', '元'),
      num('gas_m3_avg_12m', '近一年月均用气量', 'decimal', 2, '0', '10000000', 'MODEL_ONLY', '立方米'),
      num('gas_fee_avg_12m', '近一年月均燃气费', 'decimal', 2, '0', '10000000', 'MODEL_ONLY', '元'),
      num('utility_arrears_months', '近一年水电气欠费月数', 'int', 0, '0', '12', 'AUTH_QUERY', '月'),
      bool('utility_arrears', '当前是否欠缴水电气费', 'AUTH_QUERY'),
    ],
  },
  {
    id: 'housing_fund',
    label: '住房公积金',
    allowedClasses: [...RESTRICTED],
    fields: [
      num('hf_contributors', '住房公积金缴存人数', 'int', 0, '0', '1000000', 'AUTH_QUERY', '人'),
      num('hf_monthly_amount', '住房公积金月缴存额', 'decimal', 2, '0', '1000000000', 'MODEL_ONLY', '元'),
      num('hf_months_continuous', '住房公积金连续缴存月数', 'int', 0, '0', '360', 'AUTH_QUERY', '月'),
      bool('hf_arrears', '当前是否欠缴住房公积金', 'AUTH_QUERY'),
    ],
  },
  {
    id: 'social_insurance',
    label: '社会保险',
    allowedClasses: [...RESTRICTED],
    fields: [
      num('si_contributors', '社会保险参保人数', 'int', 0, '0', '1000000', 'AUTH_QUERY', '人'),
      num('si_monthly_base_total', '社会保险月缴费基数合计', 'decimal', 2, '0', '1000000000', 'MODEL_ONLY', '元'),
      num('si_months_continuous', '社会保险连续缴费月数', 'int', 0, '0', '360', 'AUTH_QUERY', '月'),
      bool('si_arrears', '当前是否欠缴社会保险费', 'AUTH_QUERY'),
    ],
  },
  {
    id: 'property',
    label: '不动产',
    allowedClasses: [...RESTRICTED],
    fields: [
      id('property_cert_no', '不动产权证书号'),
      id('mortgage_holder', '抵押权人'),
      num('property_area_sqm', '不动产建筑面积合计', 'decimal', 2, '0', '10000000', 'MODEL_ONLY', '平方米'),
      num('property_count', '不动产权利数量', 'int', 0, '0', '10000', 'AUTH_QUERY', '处'),
      bool('mortgage_registered', '是否已办理抵押登记', 'AUTH_QUERY'),
    ],
  },
]);

function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === 'object') {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

/** Standard field name → [category id, spec], for the cross-category name check. */
const STANDARD = new Map<string, [string, FieldSpec]>(
  CATALOG.flatMap((c) => c.fields.map((f) => [f.name, [c.id, f]] as [string, [string, FieldSpec]])),
);

/**
 * The category with this id.
 *
 * @throws SafehouseError SH_ERR_UNKNOWN_CATEGORY when the catalog has no such category.
 * @example getCategory('tax').label === '纳税'
 */
export function getCategory(id: string): CategorySpec {
  const c = CATALOG.find((x) => x.id === id);
  if (c === undefined) {
    fail(
      'SH_ERR_UNKNOWN_CATEGORY',
      `"category" expected one of ${CATALOG.map((x) => x.id).join(', ')}, got ${describe(id)}`,
      {
        category: String(id),
      },
    );
  }
  return c;
}

// --- exact decimals -------------------------------------------------------------------------------------------

const DECIMAL = /^-?(0|[1-9][0-9]{0,23})(\.[0-9]{1,6})?$/;

/**
 * The fixed-point integer value·10^decimals of an exact decimal string with at most `decimals` places.
 * Returns undefined when `s` is not such a string (callers raise their own coded error naming the field).
 *
 * @example decimalToScaled('12.5', 2) === 1250n
 */
export function decimalToScaled(s: string, decimals: number): bigint | undefined {
  if (typeof s !== 'string' || !DECIMAL.test(s)) return undefined;
  const neg = s.startsWith('-');
  const [ip, fp = ''] = (neg ? s.slice(1) : s).split('.');
  if (fp.length > decimals) return undefined;
  const v = BigInt(ip! + fp.padEnd(decimals, '0'));
  return neg ? -v : v;
}

/** The shortest decimal string of value·10^−decimals (no trailing fraction zeros, no "-0"). */
function scaledToDecimal(v: bigint, decimals: number): string {
  const neg = v < 0n;
  const digits = (neg ? -v : v).toString().padStart(decimals + 1, '0');
  const ip = digits.slice(0, digits.length - decimals);
  const fp = digits.slice(digits.length - decimals).replace(/0+$/, '');
  return (neg ? '-' : '') + ip + (fp === '' ? '' : '.' + fp);
}

// --- schema validation ----------------------------------------------------------------------------------------

const NAME = /^[a-z][a-z0-9_]{0,47}$/;
const FIELD_KEYS = new Set(['name', 'label', 'type', 'decimals', 'min', 'max', 'class', 'unit', 'values']);
const MAX_FIELDS = 256;

function invalid(path: string, msg: string, field?: string): never {
  return fail('SH_ERR_SCHEMA_INVALID', `"${path}" ${msg}`, field === undefined ? { path } : { path, field });
}

const isRecord = (x: unknown): x is Record<string, unknown> => x !== null && typeof x === 'object' && !Array.isArray(x);

/**
 * Validate a provider's dataset schema into a filled {@link DatasetSchema} (docs/design.md §2; fields from the catalog).
 *
 * Input: `{ category, fields: [{ name, type?, decimals?, min?, max?, class?, label?, unit?, values? }] }`.
 * - A **standard field** of the category may give only `name`; the rest is filled from the catalog. Anything it
 *   does give must equal the catalog (type, decimals, class, label, unit, values: a provider must not relabel 万元
 *   as 元), except `min`/`max`, which may narrow the catalog bounds.
 * - A provider's **own field** must give type, decimals, class (in the category's `allowedClasses`), and for
 *   int/decimal min and max. bool/enum/id bounds follow from the type and may be omitted (or narrowed); enum needs
 *   `values`; id fields must be VERIFY_ONLY (they are stored as OPRF tokens, so only membership can be tested).
 *   Its name must not be a standard field of another category.
 * - Names `^[a-z][a-z0-9_]{0,47}$`, unique, not `uscc` (the subject key column); decimals 0..6 (0 unless
 *   decimal); bounds are exact decimal strings with at most `decimals` places (JSON numbers only if they are safe
 *   integers), min ≤ max; unknown keys are refused. Output bounds are normalized ("10.50" → "10.5").
 *
 * @throws SafehouseError SH_ERR_SCHEMA_INVALID (naming the field), SH_ERR_UNKNOWN_CATEGORY,
 *   SH_ERR_FIELD_CLASS_NOT_ALLOWED.
 * @example validateSchema({ category: 'tax', fields: [{ name: 'tax_arrears' }] }).fields[0].type === 'bool'
 */
export function validateSchema(input: unknown): DatasetSchema {
  if (!isRecord(input)) invalid('schema', `expected an object, got ${describe(input)}`);
  for (const k of Object.keys(input)) if (k !== 'category' && k !== 'fields') invalid(k, 'is not a schema key');
  if (typeof input.category !== 'string') invalid('category', `expected a string, got ${describe(input.category)}`);
  const cat = getCategory(input.category);
  const raw = input.fields;
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > MAX_FIELDS) {
    invalid('fields', `expected an array of 1..${MAX_FIELDS} fields, got ${describe(raw)}`);
  }
  const seen = new Set<string>();
  const fields = raw.map((f, i) => {
    const spec = validateField(f, i, cat);
    if (seen.has(spec.name))
      invalid(`fields[${i}].name`, `expected a unique name, got duplicate "${spec.name}"`, spec.name);
    seen.add(spec.name);
    return spec;
  });
  return { category: cat.id, fields };
}

function validateField(f: unknown, i: number, cat: CategorySpec): FieldSpec {
  if (!isRecord(f)) return invalid(`fields[${i}]`, `expected an object, got ${describe(f)}`);
  if (typeof f.name !== 'string' || !NAME.test(f.name)) {
    invalid(`fields[${i}].name`, `expected ^[a-z][a-z0-9_]{0,47}$, got ${describe(f.name)}`);
  }
  const name = f.name as string;
  const at = (k: string): string => `fields.${name}.${k}`;
  if (name === 'uscc') invalid(at('name'), 'expected a field name, got the reserved subject column "uscc"', name);
  for (const k of Object.keys(f)) if (!FIELD_KEYS.has(k)) invalid(at(k), 'is not a field key', name);

  const std = cat.fields.find((x) => x.name === name);
  if (std !== undefined) {
    for (const k of ['type', 'decimals', 'class', 'label', 'unit', 'values'] as const) {
      if (f[k] !== undefined && JSON.stringify(f[k]) !== JSON.stringify(std[k])) {
        invalid(
          at(k),
          `expected the catalog's ${JSON.stringify(std[k] ?? null)} for standard field, got ${describe(f[k])}`,
          name,
        );
      }
    }
    return { ...std, ...bounds(f, std, at, name), ...(std.values ? { values: [...std.values] } : {}) };
  }

  const other = STANDARD.get(name);
  if (other !== undefined) invalid(at('name'), `is a standard field of category ${other[0]}, not ${cat.id}`, name);
  const type = f.type as FieldType;
  if (!FIELD_TYPES.includes(type))
    invalid(at('type'), `expected one of ${FIELD_TYPES.join(', ')}, got ${describe(f.type)}`, name);
  const cls = f.class as FieldClass;
  if (!FIELD_CLASSES.includes(cls))
    invalid(at('class'), `expected one of ${FIELD_CLASSES.join(', ')}, got ${describe(f.class)}`, name);
  if (!cat.allowedClasses.includes(cls)) {
    fail(
      'SH_ERR_FIELD_CLASS_NOT_ALLOWED',
      `"${at('class')}" expected one of ${cat.allowedClasses.join(', ')} for category ${cat.id}, got ${cls}`,
      { field: name, category: cat.id, class: cls },
    );
  }
  if (type === 'id' && cls !== 'VERIFY_ONLY') {
    fail('SH_ERR_FIELD_CLASS_NOT_ALLOWED', `"${at('class')}" expected VERIFY_ONLY for an id field, got ${cls}`, {
      field: name,
      category: cat.id,
      class: cls,
    });
  }
  const decimals = f.decimals;
  if (typeof decimals !== 'number' || !Number.isInteger(decimals) || decimals < 0 || decimals > 6) {
    invalid(at('decimals'), `expected an integer 0..6, got ${describe(decimals)}`, name);
  }
  if (type !== 'decimal' && decimals !== 0)
    invalid(at('decimals'), `expected 0 for type ${type}, got ${decimals}`, name);
  const label = f.label ?? name;
  if (typeof label !== 'string' || label.length === 0 || label.length > 64) {
    invalid(at('label'), `expected a string of 1..64 characters, got ${describe(label)}`, name);
  }
  if (f.unit !== undefined && (typeof f.unit !== 'string' || f.unit.length === 0 || f.unit.length > 16)) {
    invalid(at('unit'), `expected a string of 1..16 characters, got ${describe(f.unit)}`, name);
  }
  let values: string[] | undefined;
  if (type === 'enum') {
    const v = f.values;
    if (
      !Array.isArray(v) ||
      v.length === 0 ||
      v.length > 256 ||
      !v.every((x) => typeof x === 'string' && x.length > 0 && x.length <= 64) ||
      new Set(v).size !== v.length
    ) {
      invalid(at('values'), `expected 1..256 distinct labels of 1..64 characters, got ${describe(v)}`, name);
    }
    values = [...(v as string[])];
  } else if (f.values !== undefined) {
    invalid(at('values'), `expected no values for type ${type}, got ${describe(f.values)}`, name);
  }
  // The type's full range: the outer limit for bool/enum/id, whose bounds may be omitted.
  const outer: FieldSpec = {
    name,
    label: label as string,
    type,
    decimals: decimals as number,
    class: cls,
    min: type === 'bool' || type === 'enum' ? '0' : '',
    max: type === 'bool' ? '1' : type === 'enum' ? String(values!.length - 1) : '',
  };
  if (type === 'int' || type === 'decimal') {
    if (f.min === undefined) invalid(at('min'), 'expected a decimal string, got nothing', name);
    if (f.max === undefined) invalid(at('max'), 'expected a decimal string, got nothing', name);
  }
  return {
    ...outer,
    ...bounds(f, outer, at, name),
    ...(f.unit === undefined ? {} : { unit: f.unit as string }),
    ...(values === undefined ? {} : { values }),
  };
}

/**
 * The field's [min, max]: given bounds parsed exactly and checked to lie within `outer` (the catalog's bounds, or
 * the type's range; an int/decimal own field has no outer bounds), min ≤ max; omitted bounds default to `outer`.
 */
function bounds(
  f: Record<string, unknown>,
  outer: FieldSpec,
  at: (k: string) => string,
  name: string,
): { min: string; max: string } {
  if (outer.type === 'id') {
    for (const k of ['min', 'max'] as const) {
      if (f[k] !== undefined && f[k] !== '') invalid(at(k), `expected "" for an id field, got ${describe(f[k])}`, name);
    }
    return { min: '', max: '' };
  }
  const d = outer.decimals;
  const parse = (k: 'min' | 'max'): bigint | undefined => {
    let v = f[k];
    if (v === undefined) return outer[k] === '' ? undefined : decimalToScaled(outer[k], d);
    if (typeof v === 'number') {
      if (!Number.isSafeInteger(v))
        invalid(at(k), `expected a decimal string (numbers only as safe integers), got ${v}`, name);
      v = String(v);
    }
    const s = decimalToScaled(v as string, d);
    if (s === undefined)
      invalid(at(k), `expected a decimal string with at most ${d} decimal places, got ${describe(v)}`, name);
    return s;
  };
  const lo = parse('min')!;
  const hi = parse('max')!;
  const oLo = outer.min === '' ? undefined : decimalToScaled(outer.min, d)!;
  const oHi = outer.max === '' ? undefined : decimalToScaled(outer.max, d)!;
  if (oLo !== undefined && lo < oLo)
    invalid(at('min'), `expected ≥ ${outer.min} (bounds may only narrow), got ${scaledToDecimal(lo, d)}`, name);
  if (oHi !== undefined && hi > oHi)
    invalid(at('max'), `expected ≤ ${outer.max} (bounds may only narrow), got ${scaledToDecimal(hi, d)}`, name);
  if (lo > hi) invalid(at('min'), `expected ≤ max ${scaledToDecimal(hi, d)}, got ${scaledToDecimal(lo, d)}`, name);
  return { min: scaledToDecimal(lo, d), max: scaledToDecimal(hi, d) };
}
