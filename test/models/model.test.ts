/**
 * Model vetting and the bound calculator (docs/design.md §3, §7; models/model.ts, sandbox/vetting.ts) through
 * `Safehouse.registerModel`: every refusal carries its code and leaves no row in `models` and no ledger entry; a model
 * exactly at the bound limit |score|·10^scale = (t−1)/2 passes and scores exactly at its extremes (encrypted ==
 * plaintext), one unit more is refused.
 * Longer than 400 lines: every rule of model parsing, compilation and the bound calculator, each with its refusal,
 * against one field catalog.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Safehouse } from '../../api/embedded.ts';
import { parseModel } from '../../models/model.ts';
import { validateSchema } from '../../sandbox/catalog.ts';
import {
  boundCell,
  buildCsv,
  coded,
  distinctUsccs,
  PlainWorld,
  randomCell,
  seededRng,
  storeCounts,
  type PlainTable,
} from '../fixtures/protocol.ts';

const BANK = 'bank_m';
const PURPOSE = 'sme_credit';
const TAXP = 'tax_p';
const HFP = 'hf_p';
const PROP = 'prop_p';

const SCHEMAS: Record<string, unknown> = {
  [TAXP]: {
    category: 'tax',
    fields: [
      { name: 'months_continuous_tax' },
      { name: 'tax_penalties_3y' },
      { name: 'tax_credit_grade' },
      { name: 'vat_paid_12m' },
    ],
  },
  // hf_contributors keeps the catalog bound [0, 1000000].
  [HFP]: {
    category: 'housing_fund',
    fields: [{ name: 'hf_contributors' }, { name: 'hf_months_continuous' }, { name: 'hf_arrears' }],
  },
  // A token (id) field and a provider's own VERIFY_ONLY numeric field: neither may enter a model.
  [PROP]: {
    category: 'property',
    fields: [
      { name: 'property_cert_no' },
      {
        name: 'building_floors',
        label: '建筑层数',
        type: 'int',
        decimals: 0,
        min: '0',
        max: '200',
        class: 'VERIFY_ONLY',
      },
      { name: 'property_count' },
      { name: 'property_area_sqm' },
    ],
  },
};

const rng = seededRng(7_000_001);
const [MAXROW, MINROW, ...OTHERS] = distinctUsccs(24, rng);
const SUBJECTS = [MAXROW!, MINROW!, ...OTHERS];

function table(provider: string): PlainTable {
  const fields = validateSchema(SCHEMAS[provider]).fields.filter((f) => f.type !== 'id');
  const rows = SUBJECTS.map((u) => ({
    uscc: u,
    cells: Object.fromEntries(
      fields.map((f) => [
        f.name,
        u === MAXROW ? boundCell(f, 'max') : u === MINROW ? boundCell(f, 'min') : randomCell(f, rng),
      ]),
    ),
  }));
  return {
    provider,
    schema: SCHEMAS[provider],
    csv: buildCsv(
      fields.map((f) => f.name),
      rows,
    ),
  };
}
const TABLES = [table(TAXP), table(HFP), table(PROP)];
const world = new PlainWorld();
for (const t of TABLES) world.add(t);

const T = 1099511480321n;
const HALF = (T - 1n) / 2n; // 549755740160

const lin = (id: string, terms: Array<[string, string, string]>, intercept = '0') => ({
  id,
  kind: 'linear',
  intercept,
  terms: terms.map(([provider, field, weight]) => ({ provider, field, weight })),
});

/**
 * Exactly at the limit, scale 6 (integer fields): 183251·10^6 + 509154000·360 + 183209300160·1 = 549755740160 = (t−1)/2.
 * |w|·σ is balanced enough for the variance rule (hf_arrears carries ~60%).
 */
const AT_LIMIT = lin('at-limit', [
  [HFP, 'hf_contributors', '0.183251'],
  [HFP, 'hf_months_continuous', '509.154'],
  [HFP, 'hf_arrears', '183209.30016'],
]);
const AT_LIMIT_NEG = lin('at-limit-neg', [
  [HFP, 'hf_contributors', '-0.183251'],
  [HFP, 'hf_months_continuous', '-509.154'],
  [HFP, 'hf_arrears', '-183209.30016'],
]);

let home: string;
let sh: Safehouse;

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'sh-test-'));
  sh = await Safehouse.open({ home, create: true, poolSize: 2 });
  await sh.addParty('bank', BANK);
  for (const p of [TAXP, HFP, PROP]) await sh.addParty('provider', p);
  for (const t of TABLES) await sh.ingest(t.provider, t.schema, t.csv);
  sh.grantConsents(
    SUBJECTS.map((subject) => ({
      subject,
      bank: BANK,
      purpose: PURPOSE,
      categories: ['housing_fund'],
      operations: ['score' as const],
      days: 30,
    })),
  );
});

/**
 * A bank of its own group, with the same consents: these tests register many models over the same three fields,
 * which one group may not (the model-history rule, docs/privacy.md) — each such model gets its own bank.
 */
let banks = 0;
async function ownBank(): Promise<string> {
  const bank = `bank_m${++banks}`;
  await sh.addParty('bank', bank);
  sh.grantConsents(
    SUBJECTS.map((subject) => ({
      subject,
      bank,
      purpose: PURPOSE,
      categories: ['housing_fund'],
      operations: ['score' as const],
      days: 30,
    })),
  );
  return bank;
}

afterAll(async () => {
  await sh?.close();
  if (home) rmSync(home, { recursive: true, force: true });
});

/** Registration is refused with `code` (and details, if given) and leaves the store and ledger as they were. */
function refused(model: unknown, code: string, details?: Record<string, unknown>) {
  const before = storeCounts(sh);
  const id = (model as { id: string }).id;
  let err: unknown;
  try {
    sh.registerModel(BANK, model);
  } catch (e) {
    err = e;
  }
  expect(err, `${id} should be refused with ${code}`).toMatchObject({
    ...coded(code),
    ...(details ? { details } : {}),
  });
  expect(storeCounts(sh), `${id} left a trace`).toEqual(before);
  expect(sh.engine.models.get(id)).toBeUndefined();
  return err as Error;
}

describe('model vetting: refusals change nothing', () => {
  it('bound calculator: huge weights on a field with max 1e6 → SH_ERR_BOUND_OVERFLOW', () => {
    const err = refused(
      lin('huge', [
        [HFP, 'hf_contributors', '1000'],
        [HFP, 'hf_months_continuous', '1'],
        [HFP, 'hf_arrears', '1'],
      ]),
      'SH_ERR_BOUND_OVERFLOW',
    );
    expect(err.message).toContain(HALF.toString());
    // One unit of the last place above the limit.
    refused({ ...AT_LIMIT, id: 'limit-plus-one', intercept: '0.000001' }, 'SH_ERR_BOUND_OVERFLOW', {
      bound: (HALF + 1n).toString(),
      limit: HALF.toString(),
    });
    refused({ ...AT_LIMIT_NEG, id: 'limit-neg-minus-one', intercept: '-0.000001' }, 'SH_ERR_BOUND_OVERFLOW');
    // A decimal field raises the scale to 10^8: vat_paid_12m (≤ 1e6, 2 places) with weight 1 already overflows.
    refused(
      lin('scale', [
        [TAXP, 'vat_paid_12m', '1'],
        [TAXP, 'months_continuous_tax', '1'],
        [TAXP, 'tax_penalties_3y', '1'],
      ]),
      'SH_ERR_BOUND_OVERFLOW',
    );
  });

  it('more than 6 decimals in a weight, point or intercept → SH_ERR_MODEL_PRECISION', async () => {
    refused(
      lin('seven', [
        [HFP, 'hf_contributors', '0.1234567'],
        [HFP, 'hf_months_continuous', '1'],
        [HFP, 'hf_arrears', '1'],
      ]),
      'SH_ERR_MODEL_PRECISION',
    );
    refused(
      lin(
        'seven-icpt',
        [
          [HFP, 'hf_contributors', '0.1'],
          [HFP, 'hf_months_continuous', '1'],
          [HFP, 'hf_arrears', '1'],
        ],
        '0.0000001',
      ),
      'SH_ERR_MODEL_PRECISION',
    );
    refused(
      {
        id: 'seven-pts',
        kind: 'scorecard',
        intercept: '0',
        terms: [
          {
            provider: HFP,
            field: 'hf_contributors',
            bins: [
              { lo: null, hi: '5', points: '1.0000001' },
              { lo: '5', hi: null, points: '2' },
            ],
          },
          {
            provider: HFP,
            field: 'hf_months_continuous',
            bins: [
              { lo: null, hi: '12', points: '1' },
              { lo: '12', hi: null, points: '2' },
            ],
          },
          {
            provider: HFP,
            field: 'hf_arrears',
            bins: [
              { lo: null, hi: '1', points: '1' },
              { lo: '1', hi: null, points: '2' },
            ],
          },
        ],
      },
      'SH_ERR_MODEL_PRECISION',
    );
    refused(
      {
        id: 'seven-missing',
        kind: 'scorecard',
        intercept: '0',
        terms: [
          {
            provider: HFP,
            field: 'hf_contributors',
            bins: [
              { lo: null, hi: '5', points: '1' },
              { lo: '5', hi: null, points: '2' },
            ],
            missingPoints: '0.0000005',
          },
          {
            provider: HFP,
            field: 'hf_months_continuous',
            bins: [
              { lo: null, hi: '12', points: '1' },
              { lo: '12', hi: null, points: '2' },
            ],
          },
          {
            provider: HFP,
            field: 'hf_arrears',
            bins: [
              { lo: null, hi: '1', points: '1' },
              { lo: '1', hi: null, points: '2' },
            ],
          },
        ],
      },
      'SH_ERR_MODEL_PRECISION',
    );
    // Trailing zeros are not precision: 0.1000000 is 0.1.
    const ok = sh.registerModel(
      await ownBank(),
      lin('trailing-zeros', [
        [HFP, 'hf_contributors', '0.0003600000'],
        [HFP, 'hf_months_continuous', '1.0000000'],
        [HFP, 'hf_arrears', '200'],
      ]),
    );
    expect(ok.scale).toBe(6);
  });

  it('a field no current dataset of that provider declares → SH_ERR_UNKNOWN_FIELD', () => {
    const base: Array<[string, string, string]> = [
      [HFP, 'hf_contributors', '0.1'],
      [HFP, 'hf_months_continuous', '1'],
    ];
    refused(lin('unknown-a', [...base, [HFP, 'no_such_field', '1']]), 'SH_ERR_UNKNOWN_FIELD', {
      provider: HFP,
      field: 'no_such_field',
    });
    // A catalog field of another category, and a field of another provider.
    refused(lin('unknown-b', [...base, [HFP, 'si_contributors', '1']]), 'SH_ERR_UNKNOWN_FIELD');
    refused(lin('unknown-c', [...base, [HFP, 'months_continuous_tax', '1']]), 'SH_ERR_UNKNOWN_FIELD');
    refused(lin('unknown-d', [...base, ['ghost_provider', 'hf_arrears', '1']]), 'SH_ERR_UNKNOWN_FIELD');
  });

  it('VERIFY_ONLY and token (id) fields → SH_ERR_MODEL_FIELD_CLASS', () => {
    refused(
      lin('cls-a', [
        [PROP, 'property_count', '1'],
        [PROP, 'property_area_sqm', '0.01'],
        [PROP, 'building_floors', '1'],
      ]),
      'SH_ERR_MODEL_FIELD_CLASS',
      { field: 'building_floors' },
    );
    refused(
      lin('cls-b', [
        [PROP, 'property_count', '1'],
        [PROP, 'property_area_sqm', '0.01'],
        [PROP, 'property_cert_no', '1'],
      ]),
      'SH_ERR_MODEL_FIELD_CLASS',
      { field: 'property_cert_no' },
    );
    refused(
      {
        id: 'cls-c',
        kind: 'scorecard',
        intercept: '0',
        terms: [
          {
            provider: PROP,
            field: 'building_floors',
            bins: [
              { lo: null, hi: '10', points: '1' },
              { lo: '10', hi: null, points: '5' },
            ],
          },
          {
            provider: PROP,
            field: 'property_count',
            bins: [
              { lo: null, hi: '2', points: '1' },
              { lo: '2', hi: null, points: '5' },
            ],
          },
          {
            provider: PROP,
            field: 'property_area_sqm',
            bins: [
              { lo: null, hi: '100', points: '1' },
              { lo: '100', hi: null, points: '5' },
            ],
          },
        ],
      },
      'SH_ERR_MODEL_FIELD_CLASS',
    );
  });

  it('fewer than 3 effective fields of a provider → SH_ERR_MODEL_EXTRACTION', () => {
    refused(
      lin('two', [
        [HFP, 'hf_contributors', '0.1'],
        [HFP, 'hf_months_continuous', '1'],
      ]),
      'SH_ERR_MODEL_EXTRACTION',
      { provider: HFP, fields: 2 },
    );
    refused(
      lin('zero-weight', [
        [HFP, 'hf_contributors', '0.1'],
        [HFP, 'hf_months_continuous', '1'],
        [HFP, 'hf_arrears', '0'],
      ]),
      'SH_ERR_MODEL_EXTRACTION',
      { provider: HFP, fields: 2 },
    );
    // Three fine fields at one provider do not cover two at another.
    refused(
      lin('mixed', [
        [HFP, 'hf_contributors', '0.00036'],
        [HFP, 'hf_months_continuous', '1'],
        [HFP, 'hf_arrears', '200'],
        [TAXP, 'months_continuous_tax', '1'],
        [TAXP, 'tax_penalties_3y', '1'],
      ]),
      'SH_ERR_MODEL_EXTRACTION',
      { provider: TAXP },
    );
    // A scorecard term whose bins all give the same points does not count.
    refused(
      {
        id: 'flat-bins',
        kind: 'scorecard',
        intercept: '0',
        terms: [
          {
            provider: HFP,
            field: 'hf_contributors',
            bins: [
              { lo: null, hi: '5', points: '3' },
              { lo: '5', hi: null, points: '3' },
            ],
          },
          {
            provider: HFP,
            field: 'hf_months_continuous',
            bins: [
              { lo: null, hi: '12', points: '1' },
              { lo: '12', hi: null, points: '2' },
            ],
          },
          {
            provider: HFP,
            field: 'hf_arrears',
            bins: [
              { lo: null, hi: '1', points: '1' },
              { lo: '1', hi: null, points: '2' },
            ],
          },
        ],
      },
      'SH_ERR_MODEL_EXTRACTION',
      { provider: HFP, fields: 2 },
    );
  });

  it('digit packing (one field dominates the variance) → SH_ERR_MODEL_EXTRACTION', () => {
    // score = months·1000 + penalties + grade/1000: each field readable from its own digits.
    refused(
      lin('packing', [
        [TAXP, 'months_continuous_tax', '1000'],
        [TAXP, 'tax_penalties_3y', '1'],
        [TAXP, 'tax_credit_grade', '0.001'],
      ]),
      'SH_ERR_MODEL_EXTRACTION',
      { provider: TAXP, field: 'months_continuous_tax' },
    );
    refused(
      {
        id: 'packing-card',
        kind: 'scorecard',
        intercept: '0',
        terms: [
          {
            provider: TAXP,
            field: 'months_continuous_tax',
            bins: [
              { lo: null, hi: '60', points: '0' },
              { lo: '60', hi: null, points: '100000' },
            ],
          },
          {
            provider: TAXP,
            field: 'tax_penalties_3y',
            bins: [
              { lo: null, hi: '1', points: '0' },
              { lo: '1', hi: null, points: '10' },
            ],
          },
          {
            provider: TAXP,
            field: 'tax_credit_grade',
            bins: [
              { lo: null, hi: '2', points: '0' },
              { lo: '2', hi: null, points: '1' },
            ],
          },
        ],
      },
      'SH_ERR_MODEL_EXTRACTION',
      { provider: TAXP, field: 'months_continuous_tax' },
    );
  });

  it('bins not contiguous, overlapping, unsorted or not covering the field → SH_ERR_MODEL_INVALID', () => {
    const card = (id: string, monthsBins: Array<[string | null, string | null]>) => ({
      id,
      kind: 'scorecard',
      intercept: '0',
      terms: [
        {
          provider: TAXP,
          field: 'months_continuous_tax',
          bins: monthsBins.map(([lo, hi], j) => ({ lo, hi, points: String(j * 5) })),
        },
        {
          provider: TAXP,
          field: 'tax_penalties_3y',
          bins: [
            { lo: null, hi: '1', points: '5' },
            { lo: '1', hi: null, points: '0' },
          ],
        },
        {
          provider: TAXP,
          field: 'tax_credit_grade',
          bins: [
            { lo: null, hi: '2', points: '5' },
            { lo: '2', hi: null, points: '0' },
          ],
        },
      ],
    });
    refused(
      card('gap', [
        [null, '10'],
        ['20', null],
      ]),
      'SH_ERR_MODEL_INVALID',
    );
    refused(
      card('overlap', [
        [null, '20'],
        ['10', null],
      ]),
      'SH_ERR_MODEL_INVALID',
    );
    refused(
      card('unsorted', [
        ['60', null],
        [null, '60'],
      ]),
      'SH_ERR_MODEL_INVALID',
    );
    refused(
      card('short-top', [
        [null, '10'],
        ['10', '120'],
      ]),
      'SH_ERR_MODEL_INVALID',
    ); // 120 itself is outside [10, 120)
    refused(
      card('short-bottom', [
        ['1', '10'],
        ['10', null],
      ]),
      'SH_ERR_MODEL_INVALID',
    ); // 0 is not covered
    refused(
      card('empty-bin', [
        [null, '10'],
        ['10', '10'],
        ['10', null],
      ]),
      'SH_ERR_MODEL_INVALID',
    );
    refused(
      card('edge-precision', [
        [null, '10.5'],
        ['10.5', null],
      ]),
      'SH_ERR_MODEL_INVALID',
    ); // an integer field has no 10.5
    // The same scorecard with sound bins passes: closed ends are fine when they cover [min, max].
    expect(
      sh.registerModel(
        BANK,
        card('sound', [
          ['0', '10'],
          ['10', '121'],
        ]),
      ).hash,
    ).toMatch(/^[0-9a-f]{64}$/);
  });

  it('malformed model files → SH_ERR_MODEL_INVALID', () => {
    refused({ ...lin('kind', [[HFP, 'hf_contributors', '1']]), kind: 'neural' }, 'SH_ERR_MODEL_INVALID');
    refused({ ...AT_LIMIT, id: 'extra', owner: 'x' }, 'SH_ERR_MODEL_INVALID');
    refused(
      lin('float', [
        [HFP, 'hf_contributors', '1e-7'],
        [HFP, 'hf_months_continuous', '1'],
        [HFP, 'hf_arrears', '1'],
      ]),
      'SH_ERR_MODEL_INVALID',
    );
    refused(
      lin('repeat', [
        [HFP, 'hf_contributors', '1'],
        [HFP, 'hf_contributors', '2'],
        [HFP, 'hf_arrears', '1'],
      ]),
      'SH_ERR_MODEL_INVALID',
    );
    refused({ id: 'no-terms', kind: 'linear', intercept: '0', terms: [] }, 'SH_ERR_MODEL_INVALID');
  });
});

describe('bound limit: a model at exactly (t−1)/2 scores exactly', () => {
  it.each([
    ['at-limit', '549755.74016', AT_LIMIT],
    ['at-limit-neg', '-549755.74016', AT_LIMIT_NEG],
  ])('%s: registered with bound (t−1)/2, max row scores %s, encrypted == plaintext', async (_name, extreme, model) => {
    const bank = await ownBank();
    const compiled = sh.registerModel(bank, model);
    expect(compiled.bound).toBe(HALF);
    expect(compiled.scale).toBe(6);
    await sh.approveModel(HFP, model.id);
    const { rows } = await sh.score(bank, model.id, PURPOSE, SUBJECTS);
    expect(rows).toEqual(world.expected(parseModel(model), SUBJECTS));
    expect(rows[0]).toEqual({ uscc: MAXROW, status: 'OK', score: extreme });
    expect(rows[1]).toEqual({ uscc: MINROW, status: 'OK', score: '0' });
  });

  // Multipliers of magnitude 1 take the no-multiply paths of the linear evaluation (assign / add / subtract / negate).
  it.each([
    [
      'unit',
      '1.49964',
      lin('unit', [
        [HFP, 'hf_contributors', '0.000001'],
        [HFP, 'hf_months_continuous', '-0.000001'],
        [HFP, 'hf_arrears', '0.5'],
      ]),
    ],
    [
      'unit-neg-first',
      '-0.14',
      lin('unit-neg-first', [
        [HFP, 'hf_contributors', '-0.000001'],
        [HFP, 'hf_months_continuous', '0.001'],
        [HFP, 'hf_arrears', '0.5'],
      ]),
    ],
  ])('%s multipliers: max row scores %s, encrypted == plaintext', async (_name, extreme, model) => {
    const bank = await ownBank();
    sh.registerModel(bank, model);
    await sh.approveModel(HFP, model.id);
    const { rows } = await sh.score(bank, model.id, PURPOSE, SUBJECTS);
    expect(rows).toEqual(world.expected(parseModel(model), SUBJECTS));
    expect(rows[0]!.score).toBe(extreme);
  });
});
