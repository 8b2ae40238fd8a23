/**
 * Synthetic but realistic demo data: enterprises with valid USCCs, three providers' tables (tax, utilities, housing
 * fund) with correlated values in the catalog's units, a consent plan with known refusals, and a scorecard of the
 * kind Chinese banks use. Deterministic for a given seed (mulberry32), so a run can be reproduced.
 * Longer than 400 lines: one seeded generator: the four providers' tables, the consent plan and the claims draw from
 * one random stream, and every test and benchmark is pinned to the data it produces.
 */
import { toCsv } from '../core/csv.ts';
import { randomUscc } from '../sandbox/uscc.ts';
import { mulberry32 } from '../core/rng.ts';

export type PlannedStatus = 'OK' | 'NO_CONSENT' | 'EXPIRED' | 'REVOKED' | 'OUT_OF_SCOPE';

export interface DemoData {
  subjects: string[];
  plan: Map<string, PlannedStatus>;
  providers: Record<
    'tax' | 'utilities' | 'housing_fund' | 'property',
    { provider: string; schema: unknown; csv: string }
  >;
  model: unknown;
  /** Property registry rows (certificate numbers, mortgage holder) for making realistic claims. */
  property: Map<string, { certs: string[]; holder: string }>;
}

/** Categories an OUT_OF_SCOPE consent leaves out (the others are granted). */
export const OUT_OF_SCOPE_CATEGORIES = ['tax', 'utilities'];
export const ALL_CATEGORIES = ['tax', 'utilities', 'housing_fund', 'property'];

const BANKS = [
  '中国工商银行股份有限公司深圳分行',
  '中国建设银行股份有限公司深圳市分行',
  '招商银行股份有限公司深圳分行',
  '平安银行股份有限公司深圳分行',
  '深圳农村商业银行股份有限公司',
];

export const DEMO_BANK = 'bank_icbc_sz';
export const DEMO_PURPOSE = 'sme_credit_line';
export const DEMO_MODEL_ID = 'sme-scorecard-v1';

export function generateDemo(n: number, seed = 20261123): DemoData {
  const rnd = mulberry32(seed);
  const normal = () => Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd());
  const lognormal = (mu: number, sigma: number) => Math.exp(mu + sigma * normal());
  const clamp = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x));
  const seen = new Set<string>();
  const subjects: string[] = [];
  while (subjects.length < n) {
    const u = randomUscc(rnd);
    if (!seen.has(u)) {
      seen.add(u);
      subjects.push(u);
    }
  }
  const tax: string[][] = [];
  const util: string[][] = [];
  const hf: string[][] = [];
  const prop: string[][] = [];
  const property = new Map<string, { certs: string[]; holder: string }>();
  const plan = new Map<string, PlannedStatus>();
  for (const u of subjects) {
    const size = lognormal(0, 1.2); // enterprise size factor
    const health = normal(); // latent credit quality
    const vat = clamp(lognormal(Math.log(18 * size), 0.5), 0, 999999);
    const grade = health > 0.9 ? 'A' : health > -0.3 ? 'B' : health > -0.9 ? 'M' : health > -1.8 ? 'C' : 'D';
    const months = Math.round(clamp(60 + 30 * health + 20 * normal(), 0, 120));
    const arrears = health < -1.5 && rnd() < 0.6;
    tax.push([
      u,
      grade,
      vat.toFixed(2),
      (vat * clamp(0.25 + 0.1 * normal(), 0, 1)).toFixed(2),
      (vat * 7.5).toFixed(2),
      String(months),
      arrears ? 'true' : 'false',
      String(Math.max(0, Math.round(-health + normal() * 0.7 - 1))),
    ]);
    if (rnd() < 0.95) {
      const kwh = clamp(lognormal(Math.log(3000 * size), 0.4), 0, 99999999);
      const water = clamp(lognormal(Math.log(80 * size), 0.5), 0, 9999999);
      const gas = rnd() < 0.3 ? 0 : clamp(lognormal(Math.log(150 * size), 0.6), 0, 9999999);
      const am = health < -1.2 ? Math.round(clamp(3 * rnd() - health, 0, 12)) : 0;
      // Some utility rows leave the gas columns empty (no gas connection recorded).
      const gasCells = rnd() < 0.05 ? ['', ''] : [gas.toFixed(2), (gas * 3.2).toFixed(2)];
      util.push([
        u,
        kwh.toFixed(2),
        (kwh * 0.75).toFixed(2),
        water.toFixed(2),
        (water * 4.1).toFixed(2),
        ...gasCells,
        String(am),
        am > 0 ? '1' : '0',
      ]);
    }
    if (rnd() < 0.9) {
      const staff = Math.max(1, Math.round(lognormal(Math.log(12 * size), 0.4)));
      const hfMonths = Math.round(clamp(48 + 24 * health + 24 * normal(), 0, 360));
      hf.push([
        u,
        String(staff),
        (staff * clamp(700 + 300 * normal(), 200, 5000)).toFixed(2),
        String(hfMonths),
        health < -1.6 && rnd() < 0.5 ? 'true' : 'false',
      ]);
    }
    if (rnd() < 0.35) {
      const certs = Array.from(
        { length: rnd() < 0.25 ? 2 : 1 },
        () =>
          `粤(${2012 + Math.floor(rnd() * 13)})深圳市不动产权第${String(Math.floor(rnd() * 1e7)).padStart(7, '0')}号`,
      );
      const holder = rnd() < 0.55 ? BANKS[Math.floor(rnd() * BANKS.length)]! : '';
      property.set(u, { certs, holder });
      prop.push([
        u,
        certs.join(';'),
        holder,
        clamp(lognormal(Math.log(800 * size), 0.6), 10, 9999999).toFixed(2),
        String(certs.length),
        holder ? 'true' : 'false',
      ]);
    }
    const r = rnd();
    plan.set(
      u,
      r < 0.82 ? 'OK' : r < 0.87 ? 'NO_CONSENT' : r < 0.92 ? 'EXPIRED' : r < 0.96 ? 'REVOKED' : 'OUT_OF_SCOPE',
    );
  }
  return {
    subjects,
    plan,
    providers: {
      tax: {
        provider: 'sz_tax_bureau',
        schema: {
          category: 'tax',
          fields: [
            'tax_credit_grade',
            'vat_paid_12m',
            'cit_paid_12m',
            'taxable_sales_12m',
            'months_continuous_tax',
            'tax_arrears',
            'tax_penalties_3y',
          ].map((name) => ({ name })),
        },
        csv: toCsv(
          [
            'uscc',
            'tax_credit_grade',
            'vat_paid_12m',
            'cit_paid_12m',
            'taxable_sales_12m',
            'months_continuous_tax',
            'tax_arrears',
            'tax_penalties_3y',
          ],
          tax,
        ),
      },
      utilities: {
        provider: 'sz_power_water',
        schema: {
          category: 'utilities',
          fields: [
            'electricity_kwh_avg_12m',
            'electricity_fee_avg_12m',
            'water_m3_avg_12m',
            'water_fee_avg_12m',
            'gas_m3_avg_12m',
            'gas_fee_avg_12m',
            'utility_arrears_months',
            'utility_arrears',
          ].map((name) => ({ name })),
        },
        csv: toCsv(
          [
            'uscc',
            'electricity_kwh_avg_12m',
            'electricity_fee_avg_12m',
            'water_m3_avg_12m',
            'water_fee_avg_12m',
            'gas_m3_avg_12m',
            'gas_fee_avg_12m',
            'utility_arrears_months',
            'utility_arrears',
          ],
          util,
        ),
      },
      housing_fund: {
        provider: 'sz_housing_fund',
        schema: {
          category: 'housing_fund',
          fields: ['hf_contributors', 'hf_monthly_amount', 'hf_months_continuous', 'hf_arrears'].map((name) => ({
            name,
          })),
        },
        csv: toCsv(['uscc', 'hf_contributors', 'hf_monthly_amount', 'hf_months_continuous', 'hf_arrears'], hf),
      },
      property: {
        provider: 'sz_property_registry',
        schema: {
          category: 'property',
          fields: [
            'property_cert_no',
            'mortgage_holder',
            'property_area_sqm',
            'property_count',
            'mortgage_registered',
          ].map((name) => ({ name })),
        },
        csv: toCsv(
          ['uscc', 'property_cert_no', 'mortgage_holder', 'property_area_sqm', 'property_count', 'mortgage_registered'],
          prop,
        ),
      },
    },
    model: demoScorecard(),
    property,
  };
}

/** The demo scorecard: bins → points per field, missing values scored explicitly where a provider may lack a row. */
export function demoScorecard(): unknown {
  return {
    id: DEMO_MODEL_ID,
    kind: 'scorecard',
    intercept: '300',
    terms: [
      {
        provider: 'sz_tax_bureau',
        field: 'tax_credit_grade',
        bins: [
          { lo: null, hi: '1', points: '60' },
          { lo: '1', hi: '2', points: '45' },
          { lo: '2', hi: '3', points: '30' },
          { lo: '3', hi: '4', points: '10' },
          { lo: '4', hi: null, points: '-20' },
        ],
      },
      {
        provider: 'sz_tax_bureau',
        field: 'vat_paid_12m',
        bins: [
          { lo: null, hi: '5', points: '5' },
          { lo: '5', hi: '20.5', points: '15.5' },
          { lo: '20.5', hi: '80', points: '25' },
          { lo: '80', hi: null, points: '35' },
        ],
      },
      {
        provider: 'sz_tax_bureau',
        field: 'months_continuous_tax',
        bins: [
          { lo: null, hi: '12', points: '0' },
          { lo: '12', hi: '36', points: '10' },
          { lo: '36', hi: null, points: '20' },
        ],
      },
      {
        provider: 'sz_tax_bureau',
        field: 'tax_arrears',
        bins: [
          { lo: null, hi: '1', points: '10' },
          { lo: '1', hi: null, points: '-30' },
        ],
      },
      {
        provider: 'sz_power_water',
        field: 'electricity_fee_avg_12m',
        bins: [
          { lo: null, hi: '500', points: '2' },
          { lo: '500', hi: '3000', points: '12' },
          { lo: '3000', hi: null, points: '20' },
        ],
        missingPoints: '0',
      },
      {
        provider: 'sz_power_water',
        field: 'water_fee_avg_12m',
        bins: [
          { lo: null, hi: '100', points: '3' },
          { lo: '100', hi: '600', points: '8' },
          { lo: '600', hi: null, points: '12' },
        ],
        missingPoints: '0',
      },
      {
        provider: 'sz_power_water',
        field: 'utility_arrears_months',
        bins: [
          { lo: null, hi: '1', points: '15' },
          { lo: '1', hi: '3', points: '0' },
          { lo: '3', hi: null, points: '-25' },
        ],
        missingPoints: '-5',
      },
      {
        provider: 'sz_housing_fund',
        field: 'hf_contributors',
        bins: [
          { lo: null, hi: '5', points: '0' },
          { lo: '5', hi: '20', points: '8' },
          { lo: '20', hi: null, points: '15' },
        ],
        missingPoints: '-5',
      },
      {
        provider: 'sz_housing_fund',
        field: 'hf_months_continuous',
        bins: [
          { lo: null, hi: '12', points: '-5' },
          { lo: '12', hi: '48', points: '6' },
          { lo: '48', hi: null, points: '14.25' },
        ],
        missingPoints: '-5',
      },
      {
        provider: 'sz_housing_fund',
        field: 'hf_arrears',
        bins: [
          { lo: null, hi: '1', points: '10' },
          { lo: '1', hi: null, points: '-20' },
        ],
        missingPoints: '0',
      },
    ],
  };
}

export interface DemoClaim {
  claimId: string;
  subject: string;
  provider: string;
  field: string;
  op: 'eq' | 'in' | 'ne' | 'gte' | 'lte' | 'between';
  values: string[];
}

/** How a person might type a certificate number: full-width digits and brackets, 《》, stray spaces. */
function retype(cert: string, rnd: () => number): string {
  const r = rnd();
  if (r < 0.25) return cert.replace(/[0-9()]/g, (ch) => String.fromCharCode(ch.charCodeAt(0) + 0xfee0));
  if (r < 0.45) return `《${cert}》`;
  if (r < 0.6) return cert.replace('第', '第 ').replace('号', ' 号');
  if (r < 0.7) return cert.replace('(', '〔').replace(')', '〕');
  return cert;
}

/**
 * `n` verification claims, half on token fields (certificate numbers, mortgage holders: true values retyped, false
 * values, `in` lists) and half numeric (AUTH_QUERY fields, thresholds at and around real values and bounds).
 */
export function generateClaims(data: DemoData, n: number, seed = 99): DemoClaim[] {
  const rnd = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const withProperty = [...data.property.keys()];
  const claims: DemoClaim[] = [];
  const fakeCert = () =>
    `粤(${2012 + Math.floor(rnd() * 13)})深圳市不动产权第${String(Math.floor(rnd() * 1e7)).padStart(7, '0')}号`;
  const P = data.providers;
  const numeric: Array<() => Omit<DemoClaim, 'claimId' | 'subject'>> = [
    () => ({
      provider: P.tax.provider,
      field: 'months_continuous_tax',
      op: 'gte',
      values: [pick(['12', '24', '36', '0', '120', '60'])],
    }),
    () => ({
      provider: P.tax.provider,
      field: 'tax_credit_grade',
      op: pick(['eq', 'ne'] as const),
      values: [pick(['A', 'B', 'M', 'C', 'D'])],
    }),
    () => ({ provider: P.tax.provider, field: 'tax_arrears', op: 'eq', values: [pick(['false', 'true', '0'])] }),
    () => ({ provider: P.tax.provider, field: 'tax_penalties_3y', op: 'lte', values: [pick(['0', '1', '2', '100'])] }),
    () => ({
      provider: P.utilities.provider,
      field: 'utility_arrears_months',
      op: pick(['lte', 'eq'] as const),
      values: [pick(['0', '1', '3', '12'])],
    }),
    () => ({
      provider: P.housing_fund.provider,
      field: 'hf_contributors',
      op: 'between',
      values: [pick(['1', '5', '10']), pick(['20', '50', '1000000'])],
    }),
    () => ({
      provider: P.housing_fund.provider,
      field: 'hf_months_continuous',
      op: 'gte',
      values: [pick(['6', '12', '36.5', '360'])],
    }),
    () => ({ provider: P.property.provider, field: 'property_count', op: 'gte', values: [pick(['1', '2'])] }),
    () => ({
      provider: P.property.provider,
      field: 'mortgage_registered',
      op: 'eq',
      values: [pick(['true', 'false'])],
    }),
  ];
  for (let i = 0; i < n; i++) {
    const claimId = `c${String(i + 1).padStart(6, '0')}`;
    if (i % 2 === 0) {
      // Token claims mostly about enterprises the registry knows, some about ones it does not.
      const subject = rnd() < 0.85 && withProperty.length ? pick(withProperty) : pick(data.subjects);
      const rec = data.property.get(subject);
      if (rnd() < 0.7) {
        const truth = rec && rnd() < 0.6;
        const value = truth ? retype(pick(rec.certs), rnd) : fakeCert();
        if (rnd() < 0.3)
          claims.push({
            claimId,
            subject,
            provider: P.property.provider,
            field: 'property_cert_no',
            op: 'in',
            values: [fakeCert(), value, fakeCert()],
          });
        else
          claims.push({
            claimId,
            subject,
            provider: P.property.provider,
            field: 'property_cert_no',
            op: 'eq',
            values: [value],
          });
      } else {
        const value = rec?.holder && rnd() < 0.6 ? rec.holder.replace('(', '（') : pick(BANKS);
        claims.push({
          claimId,
          subject,
          provider: P.property.provider,
          field: 'mortgage_holder',
          op: 'eq',
          values: [value],
        });
      }
    } else {
      claims.push({ claimId, subject: pick(data.subjects), ...pick(numeric)() });
    }
  }
  return claims;
}

/**
 * The consents the demo's plan calls for: none for NO_CONSENT, 30 days ending a month ago for EXPIRED, only tax and
 * utilities for OUT_OF_SCOPE, otherwise a year for every category (REVOKED subjects are revoked afterwards).
 */
export function demoGrants(
  data: DemoData,
  now: Date,
): Array<{
  subject: string;
  bank: string;
  purpose: string;
  operations: Array<'score' | 'verify'>;
  categories: string[];
  days: number;
  notBefore?: Date;
}> {
  const day = 86_400_000;
  const grants = [];
  for (const u of data.subjects) {
    const plan = data.plan.get(u)!;
    if (plan === 'NO_CONSENT') continue;
    const base = {
      subject: u,
      bank: DEMO_BANK,
      purpose: DEMO_PURPOSE,
      operations: ['score' as const, 'verify' as const],
      categories: ALL_CATEGORIES,
      days: 365,
    };
    if (plan === 'EXPIRED') grants.push({ ...base, days: 30, notBefore: new Date(now.getTime() - 60 * day) });
    else if (plan === 'OUT_OF_SCOPE') grants.push({ ...base, categories: OUT_OF_SCOPE_CATEGORIES });
    else grants.push(base);
  }
  return grants;
}
