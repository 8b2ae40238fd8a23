import { describe, expect, it } from 'vitest';
import { isCoded } from '../../core/errors.ts';
import type { FieldClass, FieldOp } from '../../sandbox/catalog.ts';
import { CATALOG, classAllows, decimalToScaled, getCategory, validateSchema } from '../../sandbox/catalog.ts';
import { thrownCode as code } from '../fixtures/expect.ts';

/** The error's message, for checking that it names the field. */
function message(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as Error).message;
  }
  return '';
}

describe('catalog (国办发〔2021〕52号 sharing list)', () => {
  it('has every category with fields, each field well formed and of an allowed class', () => {
    expect(CATALOG.map((c) => c.id)).toEqual(['tax', 'utilities', 'housing_fund', 'social_insurance', 'property']);
    const names = new Set<string>();
    for (const c of CATALOG) {
      expect(c.fields.length).toBeGreaterThan(0);
      expect(getCategory(c.id)).toBe(c);
      for (const f of c.fields) {
        expect(f.name).toMatch(/^[a-z][a-z0-9_]{0,47}$/);
        expect(names.has(f.name), `${f.name} unique across the catalog`).toBe(false);
        names.add(f.name);
        expect(c.allowedClasses).toContain(f.class);
        // Every standard field passes validation on its own, unchanged.
        expect(validateSchema({ category: c.id, fields: [{ name: f.name }] }).fields[0]).toEqual(f);
        if (f.type === 'id') {
          expect([f.min, f.max, f.class]).toEqual(['', '', 'VERIFY_ONLY']);
          continue;
        }
        const lo = decimalToScaled(f.min, f.decimals);
        const hi = decimalToScaled(f.max, f.decimals);
        expect(lo !== undefined && hi !== undefined && lo <= hi, f.name).toBe(true);
        if (f.type !== 'decimal') expect(f.decimals).toBe(0);
        if (f.type === 'bool') expect([f.min, f.max]).toEqual(['0', '1']);
        if (f.type === 'enum') expect([f.min, f.max]).toEqual(['0', String(f.values!.length - 1)]);
      }
    }
    expect(names).toContain('tax_credit_grade');
    expect(names).toContain('property_cert_no');
  });

  it('is frozen', () => {
    expect(Object.isFrozen(CATALOG)).toBe(true);
    expect(Object.isFrozen(getCategory('tax').fields[0])).toBe(true);
  });

  it('refuses an unknown category', () => {
    expect(code(() => getCategory('credit_card'))).toBe('SH_ERR_UNKNOWN_CATEGORY');
    expect(code(() => validateSchema({ category: 'credit_card', fields: [{ name: 'x' }] }))).toBe(
      'SH_ERR_UNKNOWN_CATEGORY',
    );
  });
});

describe('classAllows (分级分类)', () => {
  it('is the table of docs/design.md §2', () => {
    const ops: FieldOp[] = ['score', 'train', 'verify', 'return'];
    const table: Record<FieldClass, boolean[]> = {
      PUBLIC: [true, true, true, true],
      AUTH_QUERY: [true, true, true, true],
      VERIFY_ONLY: [false, false, true, false],
      MODEL_ONLY: [true, true, false, false],
    };
    for (const [cls, row] of Object.entries(table)) {
      expect(
        ops.map((op) => classAllows(cls as FieldClass, op)),
        cls,
      ).toEqual(row);
    }
  });

  it('refuses unknown classes and operations', () => {
    expect(code(() => classAllows('SECRET' as FieldClass, 'score'))).toBe('SH_ERR_INVALID_ARGUMENT');
    expect(code(() => classAllows('toString' as FieldClass, 'score'))).toBe('SH_ERR_INVALID_ARGUMENT');
    expect(code(() => classAllows('PUBLIC', 'delete' as FieldOp))).toBe('SH_ERR_INVALID_ARGUMENT');
  });
});

describe('validateSchema: standard fields', () => {
  it('fills a standard field from its name', () => {
    const s = validateSchema({ category: 'tax', fields: [{ name: 'vat_paid_12m' }, { name: 'tax_credit_grade' }] });
    expect(s.category).toBe('tax');
    expect(s.fields[0]).toEqual({
      name: 'vat_paid_12m',
      label: '近一年增值税实缴金额',
      type: 'decimal',
      decimals: 2,
      min: '0',
      max: '1000000',
      class: 'MODEL_ONLY',
      unit: '万元',
    });
    expect(s.fields[1]!.values).toEqual(['A', 'B', 'M', 'C', 'D']);
    expect(Object.isFrozen(s.fields[1]!.values)).toBe(false); // a copy, not the catalog's array
  });

  it('accepts restated catalog values and narrowed bounds, normalized', () => {
    const s = validateSchema({
      category: 'utilities',
      fields: [
        {
          name: 'electricity_fee_avg_12m',
          type: 'decimal',
          decimals: 2,
          class: 'MODEL_ONLY',
          unit: '元',
          min: '10.50',
          max: 500000,
        },
      ],
    });
    expect(s.fields[0]).toMatchObject({ min: '10.5', max: '500000' });
  });

  it('refuses widening bounds and changing type, decimals, class or unit', () => {
    const f = (extra: object) => () =>
      validateSchema({ category: 'tax', fields: [{ name: 'vat_paid_12m', ...extra }] });
    expect(code(f({ max: '1000000.01' }))).toBe('SH_ERR_SCHEMA_INVALID');
    expect(code(f({ min: '-1' }))).toBe('SH_ERR_SCHEMA_INVALID');
    expect(code(f({ type: 'int' }))).toBe('SH_ERR_SCHEMA_INVALID');
    expect(code(f({ decimals: 4 }))).toBe('SH_ERR_SCHEMA_INVALID');
    expect(code(f({ class: 'PUBLIC' }))).toBe('SH_ERR_SCHEMA_INVALID');
    expect(code(f({ unit: '元' }))).toBe('SH_ERR_SCHEMA_INVALID');
    expect(message(f({ unit: '元' }))).toContain('"fields.vat_paid_12m.unit"');
    expect(
      code(() => validateSchema({ category: 'tax', fields: [{ name: 'tax_credit_grade', values: ['A', 'B'] }] })),
    ).toBe('SH_ERR_SCHEMA_INVALID');
    expect(code(() => validateSchema({ category: 'property', fields: [{ name: 'property_cert_no', min: '0' }] }))).toBe(
      'SH_ERR_SCHEMA_INVALID',
    );
  });
});

describe('validateSchema: provider fields', () => {
  it('accepts fully specified own fields of each type', () => {
    const s = validateSchema({
      category: 'tax',
      fields: [
        {
          name: 'invoice_count_12m',
          type: 'int',
          decimals: 0,
          min: 0,
          max: '1000000',
          class: 'MODEL_ONLY',
          label: '近一年开票张数',
        },
        { name: 'refund_ratio', type: 'decimal', decimals: 4, min: '-1', max: '1.0000', class: 'AUTH_QUERY' },
        { name: 'export_flag', type: 'bool', decimals: 0, class: 'PUBLIC' },
        {
          name: 'taxpayer_kind',
          type: 'enum',
          decimals: 0,
          class: 'AUTH_QUERY',
          values: ['一般纳税人', '小规模纳税人'],
        },
        { name: 'tax_account_no', type: 'id', decimals: 0, class: 'VERIFY_ONLY' },
      ],
    });
    expect(s.fields.map((f) => [f.name, f.label, f.min, f.max])).toEqual([
      ['invoice_count_12m', '近一年开票张数', '0', '1000000'],
      ['refund_ratio', 'refund_ratio', '-1', '1'],
      ['export_flag', 'export_flag', '0', '1'],
      ['taxpayer_kind', 'taxpayer_kind', '0', '1'],
      ['tax_account_no', 'tax_account_no', '', ''],
    ]);
  });

  it('refuses a class the category does not allow', () => {
    const own = { name: 'meter_count', type: 'int', decimals: 0, min: '0', max: '100' };
    expect(code(() => validateSchema({ category: 'utilities', fields: [{ ...own, class: 'PUBLIC' }] }))).toBe(
      'SH_ERR_FIELD_CLASS_NOT_ALLOWED',
    );
    expect(
      code(() =>
        validateSchema({
          category: 'property',
          fields: [{ name: 'deed_no', type: 'id', decimals: 0, class: 'MODEL_ONLY' }],
        }),
      ),
    ).toBe('SH_ERR_FIELD_CLASS_NOT_ALLOWED');
  });

  it('refuses each malformed schema with SH_ERR_SCHEMA_INVALID naming the field', () => {
    const own = { name: 'meter_count', type: 'int', decimals: 0, min: '0', max: '100', class: 'MODEL_ONLY' };
    const cases: [string, unknown][] = [
      ['schema', null],
      ['extra', { category: 'tax', fields: [own], extra: 1 }],
      ['fields', { category: 'tax', fields: [] }],
      ['fields', { category: 'tax' }],
      ['fields[0]', { category: 'tax', fields: ['meter_count'] }],
      ['fields[0].name', { category: 'tax', fields: [{ ...own, name: 'Meter' }] }],
      ['fields[0].name', { category: 'tax', fields: [{ ...own, name: 'a'.repeat(49) }] }],
      ['fields.uscc.name', { category: 'tax', fields: [{ ...own, name: 'uscc' }] }],
      ['fields[1].name', { category: 'tax', fields: [own, own] }],
      ['fields.meter_count.colour', { category: 'tax', fields: [{ ...own, colour: 'red' }] }],
      ['fields.hf_arrears.name', { category: 'tax', fields: [{ ...own, name: 'hf_arrears' }] }],
      ['fields.meter_count.type', { category: 'tax', fields: [{ ...own, type: 'float' }] }],
      ['fields.meter_count.type', { category: 'tax', fields: [{ ...own, type: undefined }] }],
      ['fields.meter_count.class', { category: 'tax', fields: [{ ...own, class: undefined }] }],
      ['fields.meter_count.decimals', { category: 'tax', fields: [{ ...own, decimals: undefined }] }],
      ['fields.meter_count.decimals', { category: 'tax', fields: [{ ...own, type: 'decimal', decimals: 7 }] }],
      ['fields.meter_count.decimals', { category: 'tax', fields: [{ ...own, decimals: 2 }] }],
      ['fields.meter_count.min', { category: 'tax', fields: [{ ...own, min: undefined }] }],
      ['fields.meter_count.max', { category: 'tax', fields: [{ ...own, max: undefined }] }],
      ['fields.meter_count.min', { category: 'tax', fields: [{ ...own, min: '101' }] }],
      ['fields.meter_count.min', { category: 'tax', fields: [{ ...own, min: '0.5' }] }],
      ['fields.meter_count.max', { category: 'tax', fields: [{ ...own, type: 'decimal', decimals: 1, max: 0.5 }] }],
      ['fields.meter_count.max', { category: 'tax', fields: [{ ...own, max: '1e3' }] }],
      ['fields.meter_count.max', { category: 'tax', fields: [{ ...own, max: '0100' }] }],
      ['fields.meter_count.max', { category: 'tax', fields: [{ ...own, max: 2 ** 60 }] }],
      [
        'fields.meter_count.values',
        { category: 'tax', fields: [{ ...own, type: 'enum', min: undefined, max: undefined }] },
      ],
      [
        'fields.meter_count.values',
        { category: 'tax', fields: [{ ...own, type: 'enum', min: undefined, max: undefined, values: ['a', 'a'] }] },
      ],
      ['fields.meter_count.values', { category: 'tax', fields: [{ ...own, values: ['a'] }] }],
      [
        'fields.meter_count.max',
        { category: 'tax', fields: [{ ...own, type: 'enum', min: '0', max: '2', values: ['a', 'b'] }] },
      ],
      ['fields.meter_count.max', { category: 'tax', fields: [{ ...own, type: 'bool', min: undefined, max: '2' }] }],
      [
        'fields.meter_count.min',
        { category: 'tax', fields: [{ ...own, type: 'id', class: 'VERIFY_ONLY', max: undefined }] },
      ],
      ['fields.meter_count.label', { category: 'tax', fields: [{ ...own, label: '' }] }],
      ['fields.meter_count.unit', { category: 'tax', fields: [{ ...own, unit: 5 }] }],
    ];
    for (const [path, input] of cases) {
      let err: unknown;
      try {
        validateSchema(input);
      } catch (e) {
        err = e;
      }
      expect(isCoded(err, 'SH_ERR_SCHEMA_INVALID'), `${path}: ${String(err)}`).toBe(true);
      expect((err as Error).message, path).toContain(`"${path}"`);
    }
  });
});

describe('decimalToScaled', () => {
  it('is exact and refuses excess places', () => {
    expect(decimalToScaled('12.5', 2)).toBe(1250n);
    expect(decimalToScaled('-0.000001', 6)).toBe(-1n);
    expect(decimalToScaled('1000000', 2)).toBe(100000000n);
    expect(decimalToScaled('0.125', 2)).toBeUndefined();
    expect(decimalToScaled('1.', 2)).toBeUndefined();
    expect(decimalToScaled('+1', 2)).toBeUndefined();
  });
});
