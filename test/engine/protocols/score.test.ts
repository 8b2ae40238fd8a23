/**
 * Multi-provider scoring (docs/design.md §5, engine/protocols/score.ts), asserted as a protocol: encrypted == plaintext for
 * every row (exact score strings from models/plain.ts on the same CSV cells), the per-subject consent statuses, the
 * block boundaries (0, 1, 8192, 8193+ subjects), and each party's view — the custodian sees uniform residues and
 * never a partial sum, the bank gets nothing for refused subjects and cannot open boxes sealed to someone else, the
 * engine stores no score. Also: approval, model-hash pinning, request signatures, consent signatures and the ledger.
 * Longer than 400 lines: one protocol's suite over one shared fixture (four providers, every consent status), so the
 * views, edge cases and attacks run against the same engine state.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Safehouse, type ConsentGrant } from '../../../api/embedded.ts';
import { buildScoreRequest, openScoreResult } from '../../../engine/protocols/score/bank.ts';
import { runScoreJob } from '../../../engine/protocols/score/run.ts';
import { type ScoreResult } from '../../../engine/protocols/score/messages.ts';
import type { ProviderTable } from '../../../engine/provider/table.ts';
import type { CustodianView } from '../../../engine/custodian/messages.ts';
import { openSealed, x25519KeyPair, type SealedBox } from '../../../core/sealbox.ts';
import { ed25519KeyPair } from '../../../core/sign.ts';
import { deriveMaskKey, maskVector } from '../../../engine/he/mask.ts';
import { sha256Hex } from '../../../core/hash.ts';
import { parseModel, type ModelSpec } from '../../../models/model.ts';
import { createConsent, type SignedConsent } from '../../../sandbox/consent.ts';
import { validateSchema } from '../../../sandbox/catalog.ts';
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
} from '../../fixtures/protocol.ts';

const BANK = 'bank_a';
const OTHER_BANK = 'bank_b';
const AUDITOR = 'auditor_x';
const PURPOSE = 'sme_credit';
const TAX = 'tax_bureau';
const UTIL = 'power_water';
const HF = 'housing_fund_center';
const SI = 'social_security';
const DAY = 86_400_000;

// ---------------------------------------------------------------- schemas (bounds narrowed where weights need room)

const SCHEMAS = {
  [TAX]: {
    category: 'tax',
    fields: [
      { name: 'tax_credit_grade' },
      { name: 'vat_paid_12m' },
      { name: 'months_continuous_tax' },
      // A provider's own field with a negative lower bound: centered decoding of negative partials.
      {
        name: 'net_margin_pct',
        label: '净利润率',
        type: 'decimal',
        decimals: 2,
        min: '-100',
        max: '100',
        class: 'MODEL_ONLY',
        unit: '%',
      },
    ],
  },
  [UTIL]: {
    category: 'utilities',
    fields: [
      { name: 'electricity_fee_avg_12m', max: '1000000' },
      { name: 'water_fee_avg_12m', max: '100000' },
      { name: 'utility_arrears_months' },
    ],
  },
  [HF]: {
    category: 'housing_fund',
    fields: [
      { name: 'hf_contributors', max: '5000' },
      { name: 'hf_monthly_amount', max: '10000000' },
      { name: 'hf_months_continuous' },
    ],
  },
  [SI]: {
    category: 'social_insurance',
    fields: [{ name: 'si_contributors', max: '2000' }, { name: 'si_months_continuous' }, { name: 'si_arrears' }],
  },
} as const;
const FIELDS = Object.fromEntries(Object.entries(SCHEMAS).map(([p, s]) => [p, validateSchema(s).fields])) as Record<
  string,
  ReturnType<typeof validateSchema>['fields']
>;

// ---------------------------------------------------------------- models

/** Linear over 3 providers: negative weights, 6-decimal weights, |w|·range balanced so vetting passes. */
const LINEAR = {
  id: 'lin-3p',
  kind: 'linear',
  intercept: '-12.345678',
  terms: [
    { provider: TAX, field: 'vat_paid_12m', weight: '0.000123' },
    { provider: TAX, field: 'months_continuous_tax', weight: '-0.987654' },
    { provider: TAX, field: 'net_margin_pct', weight: '-0.456789' },
    { provider: UTIL, field: 'electricity_fee_avg_12m', weight: '0.000111' },
    { provider: UTIL, field: 'water_fee_avg_12m', weight: '-0.000987' },
    { provider: UTIL, field: 'utility_arrears_months', weight: '-7.654321' },
    { provider: HF, field: 'hf_contributors', weight: '0.023457' },
    { provider: HF, field: 'hf_monthly_amount', weight: '0.000011' },
    { provider: HF, field: 'hf_months_continuous', weight: '0.271828' },
  ],
};

const bins = (...edges: Array<[string | null, string | null, string]>) =>
  edges.map(([lo, hi, points]) => ({ lo, hi, points }));
/** Scorecard: open-ended bins, decimal points, missingPoints on the utilities and two housing-fund terms. */
const SCORECARD = {
  id: 'card-3p',
  kind: 'scorecard',
  intercept: '300.5',
  terms: [
    {
      provider: TAX,
      field: 'tax_credit_grade',
      bins: bins([null, '1', '30'], ['1', '3', '15.5'], ['3', null, '-10.25']),
    },
    {
      provider: TAX,
      field: 'months_continuous_tax',
      bins: bins([null, '12', '0'], ['12', '60', '10.000001'], ['60', null, '20']),
    },
    {
      provider: TAX,
      field: 'net_margin_pct',
      bins: bins([null, '-10.5', '-15.5'], ['-10.5', '0', '-3.25'], ['0', '25.75', '5'], ['25.75', null, '12.5']),
    },
    {
      provider: UTIL,
      field: 'electricity_fee_avg_12m',
      bins: bins([null, '500', '2'], ['500', '3000.5', '12.75'], ['3000.5', null, '20']),
      missingPoints: '-1.5',
    },
    {
      provider: UTIL,
      field: 'water_fee_avg_12m',
      bins: bins([null, '100', '3'], ['100', '600', '8'], ['600', null, '12']),
      missingPoints: '0',
    },
    {
      provider: UTIL,
      field: 'utility_arrears_months',
      bins: bins([null, '1', '15'], ['1', '3', '0'], ['3', null, '-10.333333']),
      missingPoints: '-5',
    },
    {
      provider: HF,
      field: 'hf_contributors',
      bins: bins([null, '5', '0'], ['5', '20', '8'], ['20', null, '15']),
      missingPoints: '-5',
    },
    {
      provider: HF,
      field: 'hf_monthly_amount',
      bins: bins([null, '1000', '1'], ['1000', '100000.5', '6.5'], ['100000.5', null, '9']),
      missingPoints: '-2.5',
    },
    {
      provider: HF,
      field: 'hf_months_continuous',
      bins: bins([null, '12', '-5'], ['12', '48', '6'], ['48', null, '14.25']),
    },
  ],
};

/** Cheap model for the block-boundary jobs: one provider, three integer fields. */
const BIG = {
  id: 'big-linear',
  kind: 'linear',
  intercept: '1.5',
  terms: [
    { provider: SI, field: 'si_contributors', weight: '0.05' },
    { provider: SI, field: 'si_months_continuous', weight: '-0.3' },
    { provider: SI, field: 'si_arrears', weight: '25' },
  ],
};

// ---------------------------------------------------------------- subjects and their rows

const rng = seededRng(0x5afe);
const [
  MIN,
  MAX,
  MIXED,
  NO_UTIL,
  EMPTY_A,
  EMPTY_B,
  NOWHERE,
  NOCONSENT,
  EXPIRED,
  REVOKED,
  OOS_PURPOSE,
  OOS_CATEGORY,
  OOS_OPERATION,
  BADSIG,
  ...REST
] = distinctUsccs(14 + 28, rng);
const RANDOM = REST.slice(0, 20);
const EDGE = REST.slice(20, 28);
const REFUSED = new Map<string, string>([
  [NOCONSENT!, 'NO_CONSENT'],
  [EXPIRED!, 'EXPIRED'],
  [REVOKED!, 'REVOKED'],
  [OOS_PURPOSE!, 'OUT_OF_SCOPE'],
  [OOS_CATEGORY!, 'OUT_OF_SCOPE'],
  [OOS_OPERATION!, 'OUT_OF_SCOPE'],
  [BADSIG!, 'BAD_SIGNATURE'],
]);
const ALL_SMALL = [MIN!, MAX!, MIXED!, NO_UTIL!, EMPTY_A!, EMPTY_B!, NOWHERE!, ...REFUSED.keys(), ...RANDOM, ...EDGE];
const CONSENTED = ALL_SMALL.filter((u) => !REFUSED.has(u));

/** Bin edges of the scorecard per field: edge rows sit exactly on them (even rows) or one unit below (odd rows). */
const EDGES = new Map<string, string[]>(
  SCORECARD.terms.map((t) => [t.field, t.bins.map((b) => b.lo).filter((x): x is string => x !== null)]),
);

function rowFor(provider: string, u: string): Record<string, string> | undefined {
  const fields = FIELDS[provider]!;
  if (u === NOWHERE || (u === NO_UTIL && provider === UTIL)) return undefined;
  const cells: Record<string, string> = {};
  const negWeight = new Set(LINEAR.terms.filter((t) => t.weight.startsWith('-')).map((t) => t.field));
  for (const f of fields) {
    if (u === MIN) cells[f.name] = boundCell(f, 'min');
    else if (u === MAX) cells[f.name] = boundCell(f, 'max');
    else if (u === MIXED)
      cells[f.name] = boundCell(f, negWeight.has(f.name) ? 'max' : 'min'); // the most negative linear score
    else if (EDGE.includes(u) && EDGES.has(f.name)) {
      const k = EDGE.indexOf(u);
      const edges = EDGES.get(f.name)!;
      const e = edges[Math.floor(k / 2) % edges.length]!;
      if (f.type === 'enum') cells[f.name] = f.values![Number(e) - (k % 2)]!;
      else {
        const unit = 10 ** -f.decimals;
        cells[f.name] = k % 2 === 0 ? e : (Number(e) - unit).toFixed(f.decimals);
      }
    } else cells[f.name] = randomCell(f, rng);
  }
  if (u === EMPTY_A && provider === HF) cells.hf_monthly_amount = ''; // scorecard term with missingPoints
  if (u === EMPTY_B && provider === HF) cells.hf_months_continuous = ''; // scorecard term without missingPoints
  return cells;
}

function table(provider: string, subjects: readonly string[]): PlainTable {
  const rows = subjects.flatMap((u) => {
    const cells = rowFor(provider, u);
    return cells ? [{ uscc: u, cells }] : [];
  });
  return {
    provider,
    schema: SCHEMAS[provider as keyof typeof SCHEMAS],
    csv: buildCsv(
      FIELDS[provider]!.map((f) => f.name),
      rows,
    ),
  };
}

const TABLES = [table(TAX, ALL_SMALL), table(UTIL, ALL_SMALL), table(HF, ALL_SMALL)];
const world = new PlainWorld();
for (const t of TABLES) world.add(t);

// ---------------------------------------------------------------- set-up

interface SeenView extends CustodianView {
  provider: string;
}
let home: string;
let sh: Safehouse;
const views: SeenView[] = [];
/** Every OK score string any job of this file returned, to look for in the engine's records. */
const seenScores = new Set<string>();

async function score(model: string, subjects: string[]) {
  const r = await sh.score(BANK, model, PURPOSE, subjects);
  for (const row of r.rows) if (row.status === 'OK') seenScores.add(row.score);
  return r;
}

function expectRowsEqual(
  rows: Array<{ uscc: string; status: string; score: string }>,
  expected: Array<{ uscc: string; status: string; score: string }>,
) {
  expect(rows.length).toBe(expected.length);
  const mismatches = rows.filter(
    (r, i) => r.uscc !== expected[i]!.uscc || r.status !== expected[i]!.status || r.score !== expected[i]!.score,
  );
  expect(mismatches).toEqual([]);
}

const grant = (subject: string, over: Partial<ConsentGrant> = {}): ConsentGrant => ({
  subject,
  bank: BANK,
  purpose: PURPOSE,
  categories: ['tax', 'utilities', 'housing_fund'],
  operations: ['score'],
  days: 365,
  ...over,
});

/** A consent for `subject` signed with its wallet key, then altered after signing (signature and id kept). */
function tamperedConsent(subject: string): SignedConsent {
  const k = sh.wallet.require(subject, 'enterprise');
  const now = sh.engine.now();
  const c = createConsent(
    {
      subject,
      grantee: BANK,
      purpose: PURPOSE,
      categories: ['tax', 'utilities', 'housing_fund'],
      operations: ['score'],
      notBefore: now,
      notAfter: new Date(now.getTime() + 30 * DAY),
    },
    k.ed25519.secretKey,
  );
  return { ...c, statement: { ...c.statement, notAfter: new Date(now.getTime() + 3650 * DAY).toISOString() } };
}

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'sh-test-'));
  sh = await Safehouse.open({
    home,
    create: true,
    poolSize: 2,
    observe: (provider, v) => views.push({ provider, ...v }),
  });
  await sh.addParty('bank', BANK);
  await sh.addParty('bank', OTHER_BANK);
  await sh.addParty('auditor', AUDITOR);
  for (const p of [TAX, UTIL, HF, SI]) await sh.addParty('provider', p);
  for (const t of TABLES) await sh.ingest(t.provider, t.schema, t.csv);

  const now = sh.engine.now();
  sh.grantConsents([
    ...CONSENTED.map((u) => grant(u)),
    grant(EXPIRED!, { notBefore: new Date(now.getTime() - 60 * DAY), days: 30 }),
    grant(REVOKED!),
    grant(OOS_PURPOSE!, { purpose: 'mortgage_refinance' }),
    grant(OOS_CATEGORY!, { categories: ['tax', 'utilities'] }),
    grant(OOS_OPERATION!, { operations: ['verify'] }),
  ]);
  sh.revoke({ subject: REVOKED!, bank: BANK });
  // BAD_SIGNATURE: the subject is registered, but its only consent row was altered in the engine's store.
  const keys = sh.wallet.ensureEnterprises([BADSIG!]);
  const badsigKey = keys.get(BADSIG!)!.ed25519.publicKey;
  sh.engine.registry.registerEnterprises([
    {
      uscc: BADSIG!,
      ed25519: badsigKey,
      certificate: sh.certify({ party: BADSIG!, role: 'enterprise', ed25519: badsigKey }),
    },
  ]);
  const bad = tamperedConsent(BADSIG!);
  sh.engine.store.db
    .prepare('INSERT INTO consents (id, subject, grantee, signed_json, created_at) VALUES (?, ?, ?, ?, ?)')
    .run(bad.statement.id, BADSIG!, BANK, JSON.stringify(bad), now.toISOString());

  for (const m of [LINEAR, SCORECARD]) {
    sh.registerModel(BANK, m);
    for (const p of [TAX, UTIL, HF]) await sh.approveModel(p, m.id);
  }
});

afterAll(async () => {
  await sh?.close();
  if (home) rmSync(home, { recursive: true, force: true });
});

// ---------------------------------------------------------------- tests

describe('score: encrypted == plaintext', () => {
  it('linear model over 3 providers (negative, 6-decimal weights; values at the field bounds); every consent status in one job', async () => {
    const spec = parseModel(LINEAR);
    const { rows, result } = await score(LINEAR.id, ALL_SMALL);
    expectRowsEqual(rows, world.expected(spec, ALL_SMALL, REFUSED));

    const status = new Map(rows.map((r) => [r.uscc, r.status]));
    expect(new Set(rows.map((r) => r.status))).toEqual(
      new Set(['OK', 'NO_CONSENT', 'EXPIRED', 'REVOKED', 'OUT_OF_SCOPE', 'BAD_SIGNATURE', 'NO_DATA']),
    );
    for (const [u, s] of REFUSED) expect(status.get(u), u).toBe(s);
    // Bounds: the all-min, all-max and most-negative rows are scored (and matched exactly above).
    for (const u of [MIN!, MAX!, MIXED!]) expect(status.get(u)).toBe('OK');
    // The bound rows by hand, independent of plain.ts: −12.345678 + Σ w·x with x at min / max / (max where w < 0).
    const byId = new Map(rows.map((r) => [r.uscc, r.score]));
    expect(byId.get(MIN!)).toBe('33.333222'); // only net_margin_pct = −100 is non-zero: −0.456789 · −100 = 45.6789
    expect(byId.get(MAX!)).toBe('192.04817');
    expect(byId.get(MIXED!)).toBe('-367.09491');
    // A linear term has no missing value: no row at a provider, or an empty cell, gives NO_DATA.
    for (const u of [NO_UTIL!, EMPTY_A!, EMPTY_B!, NOWHERE!]) expect(status.get(u), u).toBe('NO_DATA');
    // One box per provider (one block each); every OK subject is read from all three.
    expect(result.boxes.map((b) => b.provider).sort()).toEqual([HF, UTIL, TAX].sort());
    for (const s of result.subjects.filter((x) => x.status === 'OK')) expect(s.refs!.length).toBe(3);
  });

  it('scorecard: open-ended bins, decimal points, bin edges, missingPoints for missing rows and empty cells', async () => {
    const spec = parseModel(SCORECARD);
    const { rows } = await score(SCORECARD.id, ALL_SMALL);
    expectRowsEqual(rows, world.expected(spec, ALL_SMALL, REFUSED));
    const status = new Map(rows.map((r) => [r.uscc, r.status]));
    expect(status.get(NO_UTIL!)).toBe('OK'); // every utilities term has missingPoints
    expect(status.get(EMPTY_A!)).toBe('OK'); // hf_monthly_amount has missingPoints
    expect(status.get(EMPTY_B!)).toBe('NO_DATA'); // hf_months_continuous has none
    expect(status.get(NOWHERE!)).toBe('NO_DATA'); // tax terms have none
    for (const u of EDGE) expect(status.get(u)).toBe('OK');
    // One row by hand, independent of plain.ts: the all-max row. 300.5 + grade D (idx 4) −10.25 + months 120 → 20
    // + margin 100 → 12.5 + electricity 1e6 → 20 + water 1e5 → 12 + arrears 12 → −10.333333 + contributors 5000 → 15
    // + amount 1e7 → 9 + hf months 360 → 14.25.
    expect(rows.find((r) => r.uscc === MAX)!.score).toBe('382.666667');
  });

  it('0 subjects: an empty job, no custodian call', async () => {
    const before = views.length;
    const logs = [TAX, UTIL, HF].map((p) => readFileSync(join(sh.wallet.providerDir(p), 'custodian.log'), 'utf8'));
    const { rows, result, jobId } = await score(LINEAR.id, []);
    expect(rows).toEqual([]);
    expect(result.boxes).toEqual([]);
    expect(result.subjects).toEqual([]);
    expect(views.length).toBe(before);
    expect([TAX, UTIL, HF].map((p) => readFileSync(join(sh.wallet.providerDir(p), 'custodian.log'), 'utf8'))).toEqual(
      logs,
    );
    const job = sh.engine.store.db.prepare('SELECT status FROM jobs WHERE id = ?').get(jobId) as { status: string };
    expect(job.status).toBe('completed');
  });

  it('1 subject', async () => {
    const u = RANDOM[3]!;
    const before = views.length;
    const { rows, result } = await score(LINEAR.id, [u]);
    expectRowsEqual(rows, world.expected(parseModel(LINEAR), [u]));
    expect(rows[0]!.status).toBe('OK');
    expect(result.boxes.length).toBe(3);
    expect(views.length - before).toBe(3);
  });

  it('a refused-only job touches no block: no box, no custodian call', async () => {
    const before = views.length;
    const { rows, result } = await score(LINEAR.id, [NOCONSENT!, EXPIRED!, NOWHERE!]);
    expect(rows.map((r) => r.status)).toEqual(['NO_CONSENT', 'EXPIRED', 'NO_DATA']);
    expect(result.boxes).toEqual([]);
    expect(views.length).toBe(before);
  });
});

describe('score: views', () => {
  it('custodian: decrypts v + m with m uniform (escrowed seed replays it); never the raw partial sums', async () => {
    const before = views.length;
    const { result, jobId } = await score(LINEAR.id, ALL_SMALL);
    const seen = views.slice(before);
    expect(seen.map((v) => v.provider).sort()).toEqual([HF, UTIL, TAX].sort());
    expect(seen.every((v) => v.mode === 'seal' && v.values.length === sh.engine.params.slots)).toBe(true);

    // The auditor's escrowed seed gives the masks: decrypted − mask must be exactly the true partial Σ w·x per slot,
    // which proves the partials computed here in plaintext are the ones the custodian would otherwise have seen.
    const t = sh.engine.params.t;
    const job = sh.engine.store.db.prepare('SELECT request_json FROM jobs WHERE id = ?').get(jobId) as {
      request_json: string;
    };
    const { escrow } = JSON.parse(job.request_json) as { escrow: Array<{ auditor: string; sealed: SealedBox }> };
    expect(escrow.map((e) => e.auditor)).toEqual([AUDITOR]);
    const seed = openSealed(sh.wallet.require(AUDITOR, 'auditor').x25519!.secretKey, escrow[0]!.sealed, {
      type: 'safehouse.escrow.v1',
      jobId,
      jobHash: result.jobHash,
    });
    const compiled = sh.engine.models.compiled(LINEAR.id);
    const samples: bigint[] = [];
    for (const v of seen) {
      const ds = sh.engine.datasets.current(v.provider)[0]!;
      const tbl = JSON.parse(
        readFileSync(join(sh.wallet.providerDir(v.provider), `${ds.category}.json`), 'utf8'),
      ) as ProviderTable;
      const raw = new BigUint64Array(v.values.length);
      for (const term of compiled.terms.filter((x) => x.provider === v.provider)) {
        const col = tbl.values[term.field]!;
        col.forEach((x, i) => {
          raw[i] = (((raw[i]! + term.columns[0]!.multiplier * BigInt(x ?? '0')) % t) + t) % t;
        });
      }
      const mask = maskVector(deriveMaskKey(seed, `${jobId}/${v.label}`), t, v.values.length);
      let replayed = 0;
      let equalRaw = 0;
      for (let i = 0; i < v.values.length; i++) {
        if ((v.values[i]! - mask[i]! + t) % t === raw[i]) replayed++;
        if (v.values[i] === raw[i]) equalRaw++;
      }
      expect(replayed, `${v.label}: v + m − m == Σ w·x`).toBe(v.values.length);
      expect(raw.some((x) => x !== 0n)).toBe(true);
      // Equality at a slot needs m = 0 there: probability 1/t ≈ 9·10^-13 per slot.
      expect(equalRaw, `${v.label}: slots equal to the raw partial`).toBeLessThanOrEqual(1);
      samples.push(...v.values);
      const mean = v.values.reduce((a, x) => a + Number(x) / Number(t), 0) / v.values.length;
      expect(Math.abs(mean - 0.5), `${v.label} mean`).toBeLessThan(0.02);
    }

    // Uniformity of everything the custodians decrypted: top 4 bits → 16 bins, χ² with 15 d.o.f.
    const counts = new Array<number>(16).fill(0);
    for (const x of samples) counts[Number((x * 16n) / t)]!++;
    const expectedPerBin = samples.length / 16;
    const chi2 = counts.reduce((a, c) => a + (c - expectedPerBin) ** 2 / expectedPerBin, 0);
    const mean = samples.reduce((a, x) => a + Number(x) / Number(t), 0) / samples.length;
    console.log(
      `custodian view: n = ${samples.length} residues, chi2(15 d.o.f., 16 bins) = ${chi2.toFixed(2)} (critical 0.001: 37.70), mean v/t = ${mean.toFixed(5)}`,
    );
    expect(samples.length).toBeGreaterThanOrEqual(8192);
    expect(chi2).toBeLessThan(50);
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.02);
  });

  it('bank: nothing for refused subjects, boxes open only with its own key and name; engine: no score stored', async () => {
    const { result, rows } = await score(SCORECARD.id, ALL_SMALL);
    for (const s of result.subjects) {
      if (s.status === 'OK') {
        expect(typeof s.unmask).toBe('string');
        expect(s.refs!.length).toBeGreaterThan(0);
      } else {
        expect(Object.keys(s).sort(), `${s.uscc} ${s.status}`).toEqual(['status', 'uscc']);
      }
    }
    expect(rows.filter((r) => r.status !== 'OK').every((r) => r.score === '')).toBe(true);

    const other = x25519KeyPair();
    expect(() => openScoreResult(result, BANK, other.secretKey)).toThrow(
      expect.objectContaining(coded('SH_ERR_SEALED_BOX')),
    );
    expect(() => openScoreResult(result, OTHER_BANK, sh.wallet.require(OTHER_BANK, 'bank').x25519!.secretKey)).toThrow(
      expect.objectContaining(coded('SH_ERR_SEALED_BOX')),
    );
    // The right key under another recipient name fails too: boxes are bound to the job, provider, label and recipient.
    expect(() => openScoreResult(result, OTHER_BANK, sh.wallet.require(BANK, 'bank').x25519!.secretKey)).toThrow(
      expect.objectContaining(coded('SH_ERR_SEALED_BOX')),
    );
    const forged: ScoreResult = { ...result, jobId: `${result.jobId}x` };
    expect(() => openScoreResult(forged, BANK, sh.wallet.require(BANK, 'bank').x25519!.secretKey)).toThrow(
      expect.objectContaining(coded('SH_ERR_SEALED_BOX')),
    );

    // The engine's records of every job so far — job rows and the whole ledger — hold no score.
    expect(seenScores.size).toBeGreaterThan(40);
    const db = sh.engine.store.db;
    const records: unknown[] = [];
    for (const r of db.prepare('SELECT request_json, summary_json FROM jobs').all() as Array<{
      request_json: string;
      summary_json: string | null;
    }>) {
      records.push(JSON.parse(r.request_json), r.summary_json ? JSON.parse(r.summary_json) : null);
    }
    for (const r of db.prepare('SELECT body FROM ledger_entries ORDER BY idx').all() as Array<{ body: string }>)
      records.push(JSON.parse(r.body));
    const leaks: string[] = [];
    const walk = (x: unknown): void => {
      if (Array.isArray(x)) x.forEach(walk);
      else if (x !== null && typeof x === 'object') Object.values(x).forEach(walk);
      else {
        const s = String(x);
        for (const sc of seenScores) {
          // Exact leaf match always; substring match for scores with ≥ 5 decimals (cannot occur in hex or timestamps by chance).
          if (s === sc || ((sc.split('.')[1] ?? '').length >= 5 && s.includes(sc)))
            leaks.push(`${sc} in ${s.slice(0, 80)}`);
        }
      }
    };
    records.forEach(walk);
    expect(leaks).toEqual([]);
  });
});

describe('score: who may run what', () => {
  const LATE = { ...LINEAR, id: 'lin-3p-late', intercept: '1' };

  it('a model needs the approval of every provider it uses', async () => {
    sh.registerModel(BANK, LATE);
    const jobs = storeCounts(sh).jobs;
    await expect(sh.score(BANK, LATE.id, PURPOSE, [RANDOM[0]!])).rejects.toMatchObject(
      coded('SH_ERR_MODEL_NOT_APPROVED'),
    );
    await sh.approveModel(TAX, LATE.id);
    await sh.approveModel(UTIL, LATE.id);
    await expect(sh.score(BANK, LATE.id, PURPOSE, [RANDOM[0]!])).rejects.toMatchObject({
      code: 'SH_ERR_MODEL_NOT_APPROVED',
      details: { provider: HF },
    });
    expect(storeCounts(sh).jobs).toBe(jobs);
    await sh.approveModel(HF, LATE.id);
    const { rows } = await score(LATE.id, [RANDOM[0]!]);
    expectRowsEqual(rows, world.expected(parseModel(LATE), [RANDOM[0]!]));
  });

  it('a request pins the model hash; a different hash is refused before anything runs', async () => {
    const k = sh.wallet.require(BANK, 'bank');
    const before = storeCounts(sh);
    const req = {
      jobId: sh.engine.jobs.newId('score'),
      bank: BANK,
      modelId: LINEAR.id,
      modelHash: sha256Hex('another model'),
      purpose: PURPOSE,
      subjects: [RANDOM[0]!],
    };
    await expect(runScoreJob(sh.engine, buildScoreRequest(req, k.ed25519.secretKey))).rejects.toMatchObject(
      coded('SH_ERR_PARAMS_MISMATCH'),
    );
    // The hash of another registered model does not fit either.
    const other = sh.engine.models.get(SCORECARD.id)!.hash;
    await expect(
      runScoreJob(sh.engine, buildScoreRequest({ ...req, modelHash: other }, k.ed25519.secretKey)),
    ).rejects.toMatchObject(coded('SH_ERR_PARAMS_MISMATCH'));
    expect(storeCounts(sh)).toEqual(before);
    // The pinned hash runs.
    const ok = await runScoreJob(
      sh.engine,
      buildScoreRequest({ ...req, modelHash: sh.engine.models.get(LINEAR.id)!.hash }, k.ed25519.secretKey),
    );
    expect(ok.subjects[0]!.status).toBe('OK');
  });

  it('forged or altered bank requests are refused with SH_ERR_BAD_SIGNATURE', async () => {
    const k = sh.wallet.require(BANK, 'bank');
    const before = storeCounts(sh);
    const req = {
      jobId: sh.engine.jobs.newId('score'),
      bank: BANK,
      modelId: LINEAR.id,
      modelHash: sh.engine.models.get(LINEAR.id)!.hash,
      purpose: PURPOSE,
      subjects: [RANDOM[1]!],
    };
    // Signed with a key that is not bank_a's.
    await expect(runScoreJob(sh.engine, buildScoreRequest(req, ed25519KeyPair().secretKey))).rejects.toMatchObject(
      coded('SH_ERR_BAD_SIGNATURE'),
    );
    // Signed by bank_b (its real key) but naming bank_a.
    const byB = buildScoreRequest(req, sh.wallet.require(OTHER_BANK, 'bank').ed25519.secretKey);
    await expect(runScoreJob(sh.engine, { ...byB, signer: OTHER_BANK })).rejects.toMatchObject(
      coded('SH_ERR_BAD_SIGNATURE'),
    );
    // Genuine signature, body altered afterwards (more subjects).
    const genuine = buildScoreRequest(req, k.ed25519.secretKey);
    await expect(
      runScoreJob(sh.engine, { ...genuine, body: { ...genuine.body, subjects: [...req.subjects, RANDOM[2]!] } }),
    ).rejects.toMatchObject(coded('SH_ERR_BAD_SIGNATURE'));
    // A bank cannot run another bank's model.
    const kb = sh.wallet.require(OTHER_BANK, 'bank');
    await expect(
      runScoreJob(sh.engine, buildScoreRequest({ ...req, bank: OTHER_BANK }, kb.ed25519.secretKey)),
    ).rejects.toMatchObject(coded('SH_ERR_PARTY_ROLE'));
    expect(storeCounts(sh)).toEqual(before);
  });

  it('the engine owns the clock: a backdated or future-dated request is refused, a replayed one runs once', async () => {
    const k = sh.wallet.require(BANK, 'bank');
    const now = sh.engine.now().getTime();
    const base = {
      bank: BANK,
      modelId: LINEAR.id,
      modelHash: sh.engine.models.get(LINEAR.id)!.hash,
      purpose: PURPOSE,
      subjects: [EXPIRED!],
    };
    const before = storeCounts(sh);
    // EXPIRED's consent ran from 60 to 30 days ago: a request dated 45 days ago would fall inside its window.
    for (const [at, code] of [
      [new Date(now - 45 * DAY).toISOString(), 'SH_ERR_REQUEST_STALE'],
      [new Date(now + 10 * 60_000).toISOString(), 'SH_ERR_REQUEST_STALE'],
      ['yesterday', 'SH_ERR_INVALID_ARGUMENT'],
    ] as const) {
      const signed = buildScoreRequest(
        { ...base, jobId: sh.engine.jobs.newId('score'), requestedAt: at },
        k.ed25519.secretKey,
      );
      await expect(runScoreJob(sh.engine, signed), at).rejects.toMatchObject(coded(code));
    }
    expect(storeCounts(sh)).toEqual(before);
    const signed = buildScoreRequest(
      { ...base, jobId: sh.engine.jobs.newId('score'), requestedAt: new Date(now).toISOString() },
      k.ed25519.secretKey,
    );
    expect((await runScoreJob(sh.engine, signed)).subjects).toEqual([{ uscc: EXPIRED, status: 'EXPIRED' }]);
    const once = storeCounts(sh);
    await expect(runScoreJob(sh.engine, signed)).rejects.toMatchObject({
      ...coded('SH_ERR_ALREADY_EXISTS'),
      details: { job: signed.body.jobId },
    });
    expect(storeCounts(sh)).toEqual(once);
    // The same signed request twice at once (consent checks await the pool): one runs, the other is refused, coded.
    const twice = buildScoreRequest(
      { ...base, jobId: sh.engine.jobs.newId('score'), requestedAt: new Date(now).toISOString() },
      k.ed25519.secretKey,
    );
    const both = await Promise.allSettled([runScoreJob(sh.engine, twice), runScoreJob(sh.engine, twice)]);
    expect(both.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect((both.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason).toMatchObject(
      coded('SH_ERR_ALREADY_EXISTS'),
    );
    expect(sh.engine.store.db.prepare('SELECT COUNT(*) AS n FROM jobs WHERE id = ?').get(twice.body.jobId)).toEqual({
      n: 1,
    });
  });

  it('consents: addConsents refuses tampered signatures (all or nothing) — BAD_SIGNATURE is only reachable by editing the store', async () => {
    const u = RANDOM[5]!;
    const k = sh.wallet.require(u, 'enterprise');
    const now = sh.engine.now();
    const input = {
      subject: u,
      grantee: BANK,
      purpose: 'working_capital',
      categories: ['tax'],
      operations: ['score' as const],
      notBefore: now,
      notAfter: new Date(now.getTime() + 30 * DAY),
    };
    const valid = createConsent(input, k.ed25519.secretKey);
    const flipped: SignedConsent = {
      ...valid,
      signature: (valid.signature[0] === '0' ? '1' : '0') + valid.signature.slice(1),
    };
    // Content changed, id recomputed, signed by someone else's key (a forger cannot produce the subject's signature).
    const forged = createConsent(
      { ...input, notAfter: new Date(now.getTime() + 3650 * DAY) },
      ed25519KeyPair().secretKey,
    );
    const before = storeCounts(sh);
    expect(() => sh.engine.consents.add([flipped])).toThrow(expect.objectContaining(coded('SH_ERR_BAD_SIGNATURE')));
    expect(() => sh.engine.consents.add([forged])).toThrow(expect.objectContaining(coded('SH_ERR_BAD_SIGNATURE')));
    expect(() => sh.engine.consents.add([valid, forged])).toThrow(
      expect.objectContaining(coded('SH_ERR_BAD_SIGNATURE')),
    );
    // Content changed after signing with the id left as it was: refused as malformed (the id is content-derived).
    expect(() => sh.engine.consents.add([tamperedConsent(u)])).toThrow(
      expect.objectContaining(coded('SH_ERR_CONSENT_INVALID')),
    );
    expect(storeCounts(sh)).toEqual(before);
    expect(
      sh.engine.store.db
        .prepare('SELECT COUNT(*) AS n FROM consents WHERE id IN (?, ?)')
        .get(valid.statement.id, forged.statement.id),
    ).toEqual({ n: 0 });
  });
});

describe('score: block boundaries (one provider, cheap model)', () => {
  const N = 8200;
  let big: string[];
  const noConsent = new Set<string>();
  const bigWorld = new PlainWorld();

  beforeAll(async () => {
    const r = seededRng(8192);
    big = distinctUsccs(N, r, new Set(ALL_SMALL));
    const t = {
      provider: SI,
      schema: SCHEMAS[SI],
      csv: buildCsv(
        FIELDS[SI]!.map((f) => f.name),
        big.map((u) => ({ uscc: u, cells: Object.fromEntries(FIELDS[SI]!.map((f) => [f.name, randomCell(f, r)])) })),
      ),
    };
    bigWorld.add(t);
    const ds = await sh.ingest(SI, t.schema, t.csv);
    expect(ds.blocks).toBe(2);
    for (const u of big.slice(8195, 8198)) noConsent.add(u);
    sh.grantConsents(big.filter((u) => !noConsent.has(u)).map((u) => grant(u, { categories: ['social_insurance'] })));
    sh.registerModel(BANK, BIG);
    await sh.approveModel(SI, BIG.id);
  });

  it('exactly 8192 subjects: one full block, one box, one custodian call', async () => {
    const subjects = big.slice(0, 8192);
    const before = views.length;
    const { rows, result } = await score(BIG.id, subjects);
    expectRowsEqual(rows, bigWorld.expected(parseModel(BIG), subjects));
    expect(rows.every((r) => r.status === 'OK')).toBe(true);
    expect(result.boxes.map((b) => b.block)).toEqual([0]);
    expect(views.length - before).toBe(1);
    result.subjects.forEach((s, i) => expect(s.refs).toEqual([[0, i]]));
  });

  it('8200 subjects (more than one block), some refused: two boxes, every row == plaintext', async () => {
    const { rows, result } = await score(BIG.id, big);
    const refused = new Map([...noConsent].map((u) => [u, 'NO_CONSENT']));
    expectRowsEqual(rows, bigWorld.expected(parseModel(BIG), big, refused));
    expect(rows.filter((r) => r.status === 'OK').length).toBe(N - 3);
    expect(result.boxes.map((b) => b.block)).toEqual([0, 1]);
    expect(result.subjects[8192]!.refs).toEqual([[1, 0]]);
  });
});

describe('score: ledger and access report', () => {
  it('verifies after the jobs, lists each job in the subject access report, and locates a rewritten entry', () => {
    const report = sh.engine.auditVerify();
    expect(report.ok).toBe(true);

    const jobs = sh.engine.store.db
      .prepare("SELECT id FROM jobs WHERE kind = 'score' ORDER BY created_at")
      .all() as Array<{ id: string }>;
    const access = sh.engine.ledger.subjectEntries(RANDOM[3]!);
    const requested = access.filter((e) => e.kind === 'job.requested').map((e) => e.body.jobId);
    expect(requested.length).toBeGreaterThanOrEqual(5);
    for (const id of requested) expect(jobs.map((j) => j.id)).toContain(id);
    // A refused subject's access report also records the job that asked for it.
    expect(sh.engine.ledger.subjectEntries(NOCONSENT!).some((e) => e.kind === 'job.requested')).toBe(true);

    const target = access.find((e) => e.kind === 'job.requested')!.index;
    sh.engine.store.db
      .prepare('UPDATE ledger_entries SET body = replace(body, \'"job":"score"\', \'"job":"verify"\') WHERE idx = ?')
      .run(target);
    const after = sh.engine.auditVerify();
    expect(after).toMatchObject({ ok: false, index: target, code: 'SH_ERR_LEDGER_TAMPERED' });
  });
});
