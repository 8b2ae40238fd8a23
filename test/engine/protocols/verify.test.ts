/**
 * Data verification (数据核验, docs/design.md §5, engine/protocols/verify.ts) asserted as a protocol: every claim op against
 * the plaintext predicate (models/plain.ts `claimPlain`) on random data with rows at the field bounds and thresholds
 * at, around and outside them; the per-claim results (no_data, refused:<status>, over_budget and the budget ledger);
 * refusals before any work; the DLEQ proof and the custodian's per-claim evaluation counts; and each party's view —
 * the custodian sees r·(x−c)+r' with r spread over [1, R] and fresh blinded points, the engine stores no unkeyed hash
 * of any USCC or id value, the bank gets one answer per claim and nothing else — the ledger, block boundaries, the
 * bound calculator (a field too wide for masked comparison is refused before any work) and concurrent budgets.
 * Budgets: the file runs with 1000 units per subject and field (many claims per subject and field) and reopens the same
 * data directory with 2 units (verifyUnitsPerWindow, tokenEvaluationsPerWindow) for the budget tests at the end.
 * Longer than 400 lines: one protocol's suite over one shared fixture (a demo population, four providers and their
 * tokens, ≈ 30 s to build), so each attack and edge case runs against the same engine state instead of rebuilding it.
 */
import { feedCustodian } from '../../../engine/protocols/job.ts';
import { LEDGER_ORIGIN } from '../../../engine/engine.ts';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { p256, p256_hasher } from '@noble/curves/nist.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { Safehouse, type ConsentGrant } from '../../../api/embedded.ts';
import { buildVerifyRequest, openVerifyResult } from '../../../engine/protocols/verify/bank.ts';
import { comparisonRange } from '../../../engine/protocols/verify/claims.ts';
import { runVerifyJob } from '../../../engine/protocols/verify/run.ts';
import { type Claim, type ClaimOp, type ClaimResult } from '../../../engine/protocols/verify/messages.ts';
import type {
  BankClaims,
  Custodian,
  CustodianView,
  TokenEvalRequest,
  TokenEvalResponse,
} from '../../../engine/custodian/messages.ts';
import { TOKEN_EPOCH } from '../../../engine/tokens/oprf.ts';
import {
  blindInputs,
  evaluateBlinded,
  finalizeTokens,
  generateOprfKeyPair,
  tokenInfo,
  tokenInput,
} from '../../../engine/tokens/oprf.ts';
import { idRuleFor, normalizeId } from '../../../engine/tokens/normalize.ts';
import { bytesToHex, ed25519KeyPair, hexToBytes, signJson, type Signed } from '../../../core/sign.ts';
import { x25519KeyPair } from '../../../core/sealbox.ts';
import { canonicalize } from '../../../core/jcs.ts';
import { sha256Hex } from '../../../core/hash.ts';
import { centered, formatFixed, parseFixed } from '../../../core/fixed.ts';
import { claimPlain } from '../../../models/plain.ts';
import { createConsent, type SignedConsent } from '../../../sandbox/consent.ts';
import { validateSchema, type FieldSpec } from '../../../sandbox/catalog.ts';
import { encodeValue } from '../../../sandbox/values.ts';
import type { Policy } from '../../../sandbox/policy.ts';
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

const BANK = 'bank_v';
const OTHER_BANK = 'bank_w';
const PURPOSE = 'sme_credit_check';
const TAX = 'tax_bureau';
const PROP = 'property_registry';
const DAY = 86_400_000;
const CERT = 'property_cert_no';
const HOLDER = 'mortgage_holder';

// ---------------------------------------------------------------- schemas

const SCHEMAS = {
  [TAX]: {
    category: 'tax',
    fields: [
      { name: 'tax_credit_grade' },
      { name: 'months_continuous_tax' },
      { name: 'tax_arrears' },
      { name: 'vat_paid_12m', max: '1000' }, // MODEL_ONLY: scored, never verified
      // Provider-defined AUTH_QUERY fields (category tax allows the class): a negative lower bound, and a wide range (small R).
      {
        name: 'net_margin_pct',
        label: '净利润率',
        type: 'decimal',
        decimals: 2,
        min: '-100',
        max: '100',
        class: 'AUTH_QUERY',
        unit: '%',
      },
      {
        name: 'overdue_tax_amount',
        label: '欠税金额',
        type: 'decimal',
        decimals: 2,
        min: '0',
        max: '1000000',
        class: 'AUTH_QUERY',
        unit: '元',
      },
    ],
  },
  [PROP]: {
    category: 'property',
    fields: [
      { name: CERT },
      { name: HOLDER },
      { name: 'property_area_sqm', max: '100000' },
      { name: 'property_count', max: '50' },
      { name: 'mortgage_registered' },
    ],
  },
} as const;
const FIELDS = Object.fromEntries(Object.entries(SCHEMAS).map(([p, s]) => [p, validateSchema(s).fields])) as Record<
  string,
  FieldSpec[]
>;
const spec = (provider: string, field: string) => FIELDS[provider]!.find((f) => f.name === field)!;
const spec2 = (provider: string, field: string) => world.spec(provider, field);
/** The verifiable numeric fields (AUTH_QUERY int, decimal, enum, bool). */
const NUMERIC: Array<[string, string]> = [
  [TAX, 'tax_credit_grade'],
  [TAX, 'months_continuous_tax'],
  [TAX, 'tax_arrears'],
  [TAX, 'net_margin_pct'],
  [TAX, 'overdue_tax_amount'],
  [PROP, 'property_count'],
  [PROP, 'mortgage_registered'],
];

// ---------------------------------------------------------------- subjects and rows

const rng = seededRng(0x7e41f1);
const ALL = distinctUsccs(160 + 13, rng);
/** POOL[i]: every field at min when i % 8 == 0, at max when i % 8 == 1, random otherwise. */
const POOL = ALL.slice(0, 160);
const [
  NOWHERE,
  EMPTY,
  NOPROP,
  NOCONSENT,
  EXPIRED,
  REVOKED,
  OOS_OP,
  OOS_CAT,
  OOS_PURPOSE,
  BADSIG,
  BUDGET_A,
  BUDGET_B,
  SPARE,
] = ALL.slice(160) as [
  string,
  string,
  string,
  string,
  string,
  string,
  string,
  string,
  string,
  string,
  string,
  string,
  string,
];
const REFUSED = new Map<string, string>([
  [NOCONSENT, 'NO_CONSENT'],
  [EXPIRED, 'EXPIRED'],
  [REVOKED, 'REVOKED'],
  [OOS_OP, 'OUT_OF_SCOPE'],
  [OOS_PURPOSE, 'OUT_OF_SCOPE'],
  [BADSIG, 'BAD_SIGNATURE'],
]);
const kindOf = (u: string): 'min' | 'max' | 'random' => {
  const i = POOL.indexOf(u);
  return i >= 0 && i % 8 === 0 ? 'min' : i >= 0 && i % 8 === 1 ? 'max' : 'random';
};
const MIN_ROWS = POOL.filter((u) => kindOf(u) === 'min');
const MAX_ROWS = POOL.filter((u) => kindOf(u) === 'max');
const RANDOM_ROWS = POOL.filter((u) => kindOf(u) === 'random');

const HOLDERS = [
  '中国工商银行股份有限公司深圳分行',
  '招商银行股份有限公司深圳分行(营业部)',
  '平安银行股份有限公司深圳分行',
  '深圳农村商业银行股份有限公司',
  '中国建设银行股份有限公司深圳市分行(福田支行)',
];
const fullWidth = (s: string, re: RegExp) => s.replace(re, (ch) => String.fromCharCode(ch.charCodeAt(0) + 0xfee0));
const fakeCert = () =>
  `${rng() < 0.5 ? '粤' : '京'}(${2012 + Math.floor(rng() * 13)})${rng() < 0.5 ? '深圳市' : '朝阳区'}不动产权第${String(Math.floor(rng() * 1e7)).padStart(7, '0')}号`;

/** Certificate numbers (normalized form) and mortgage holder ('' = none) per subject with a property row. */
const property = new Map<string, { certs: string[]; holder: string }>();

function taxRow(u: string): Record<string, string> | undefined {
  if (u === NOWHERE) return undefined;
  const k = kindOf(u);
  const cells: Record<string, string> = {};
  for (const f of FIELDS[TAX]!) cells[f.name] = k === 'random' ? randomCell(f, rng) : boundCell(f, k);
  if (u === EMPTY) Object.assign(cells, { months_continuous_tax: '', net_margin_pct: '', overdue_tax_amount: '' });
  return cells;
}

function propRow(u: string): Record<string, string> | undefined {
  if (u === NOWHERE || u === NOPROP) return undefined;
  const k = kindOf(u);
  if (POOL.includes(u) && k === 'random' && rng() < 0.35) return undefined;
  const cells: Record<string, string> = {};
  for (const f of FIELDS[PROP]!)
    if (f.type !== 'id') cells[f.name] = k === 'random' ? randomCell(f, rng) : boundCell(f, k);
  if (u === EMPTY) {
    Object.assign(cells, { [CERT]: '', [HOLDER]: '', property_count: '' });
    return cells;
  }
  const certs = Array.from({ length: 1 + Math.floor(rng() * 3) }, fakeCert); // multi-valued cells: 1–3 certificates
  const holder = rng() < 0.6 ? HOLDERS[Math.floor(rng() * HOLDERS.length)]! : '';
  property.set(u, { certs, holder });
  // The provider's own spelling varies too: full-width brackets, 〔〕; both sides normalize.
  cells[CERT] = certs
    .map((c, i) => (i % 3 === 1 ? fullWidth(c, /[()]/g) : i % 3 === 2 ? c.replace('(', '〔').replace(')', '〕') : c))
    .join(';');
  cells[HOLDER] = rng() < 0.5 ? holder.replace('(', '（').replace(')', '）') : holder;
  return cells;
}

function table(provider: string, rowOf: (u: string) => Record<string, string> | undefined): PlainTable {
  const rows = ALL.flatMap((u) => {
    const cells = rowOf(u);
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
const TABLES = [table(TAX, taxRow), table(PROP, propRow)];
const world = new PlainWorld();
for (const t of TABLES) world.add(t);
const WITH_PROPERTY = POOL.filter((u) => property.has(u));
const NO_PROPERTY = POOL.filter((u) => !property.has(u));

// ---------------------------------------------------------------- set-up

interface SeenView extends CustodianView {
  provider: string;
}
interface TokenCall {
  request: Signed<TokenEvalRequest>;
  bank: BankClaims;
}
type Tamper = (res: Signed<TokenEvalResponse>, req: Signed<TokenEvalRequest>) => Signed<TokenEvalResponse>;

let home: string;
let sh: Safehouse;
const views: SeenView[] = [];
/** Every token evaluation request the property registry's custodian received (recorded by a delegating wrapper). */
const tokenCalls: TokenCall[] = [];
let tamper: Tamper | undefined;
/** The real (unwrapped) custodian of the property registry. */
let realProp: Custodian;
/** Every claim of this file that got an answer, for the bank-view and scan tests. */
const allClaims: Claim[] = [];

let nextClaim = 0;
const claim = (subject: string, provider: string, field: string, op: ClaimOp, values: string[]): Claim => ({
  claimId: `c${++nextClaim}`,
  subject,
  provider,
  field,
  op,
  values,
});
const normalizer = (field: string) => (v: string) => normalizeId(idRuleFor(field), v);
const expected = (c: Claim): ClaimResult =>
  claimPlain(
    world.spec(c.provider, c.field),
    world.cell(c.provider, c.subject, c.field),
    c.op,
    c.values,
    normalizer(c.field),
  );

async function verify(claims: Claim[], bank = BANK) {
  const r = await sh.verify(bank, PURPOSE, claims);
  allClaims.push(...claims);
  return r;
}

function mismatches(
  claims: readonly Claim[],
  results: ReadonlyMap<string, ClaimResult>,
  want: (c: Claim) => ClaimResult = expected,
) {
  return claims
    .filter((c) => results.get(c.claimId) !== want(c))
    .map((c) => ({
      ...c,
      got: results.get(c.claimId),
      want: want(c),
      cell: world.cell(c.provider, c.subject, c.field),
    }));
}

function installWrapper(): void {
  const real = sh.engine.registry.custodian(PROP);
  realProp = real;
  const wrapper: Custodian & { dispose(): Promise<void> } = {
    provider: real.provider,
    paramsId: real.paramsId,
    bfvPublicKey: real.bfvPublicKey,
    signingPublicKey: real.signingPublicKey,
    openJob: (job, o) => real.openJob(job, o),
    ledgerState: () => real.ledgerState(),
    follow: (u) => real.follow(u),
    decrypt: (request, ct) => real.decrypt(request, ct),
    transfer: (request, ct, pk) => real.transfer(request, ct, pk),
    evaluateTokens: async (request, bank) => {
      tokenCalls.push({ request: structuredClone(request), bank: structuredClone(bank) });
      const res = await real.evaluateTokens(request, bank);
      return tamper ? tamper(res, request) : res;
    },
    dispose: async () => {
      await (real as { dispose?: () => Promise<void> }).dispose?.();
    },
  };
  sh.engine.registry.connectCustodian(wrapper);
}

const open = (policy: Partial<Policy>) =>
  Safehouse.open({ home, create: true, poolSize: 2, policy, observe: (provider, v) => views.push({ provider, ...v }) });

const grant = (subject: string, over: Partial<ConsentGrant> = {}): ConsentGrant => ({
  subject,
  bank: BANK,
  purpose: PURPOSE,
  categories: ['tax', 'property'],
  operations: ['verify', 'score'],
  days: 365,
  ...over,
});

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'sh-verify-'));
  sh = await open({ verifyUnitsPerWindow: 1000, tokenEvaluationsPerWindow: 1000 });
  await sh.addParty('bank', BANK);
  await sh.addParty('bank', OTHER_BANK);
  await sh.addParty('provider', TAX);
  await sh.addParty('provider', PROP);
  for (const t of TABLES) await sh.ingest(t.provider, t.schema, t.csv);
  installWrapper();

  const now = sh.engine.now();
  sh.grantConsents([
    ...[...POOL, NOWHERE, EMPTY, NOPROP, BUDGET_A, BUDGET_B, SPARE].map((u) => grant(u)),
    grant(EXPIRED, { notBefore: new Date(now.getTime() - 60 * DAY), days: 30 }),
    grant(REVOKED),
    grant(OOS_OP, { operations: ['score'] }),
    grant(OOS_CAT, { categories: ['property'] }),
    grant(OOS_PURPOSE, { purpose: 'mortgage_refinance' }),
  ]);
  sh.revoke({ subject: REVOKED, bank: BANK });
  // BAD_SIGNATURE: a registered subject whose only consent row was altered in the engine's store after signing.
  const keys = sh.wallet.ensureEnterprises([BADSIG]);
  const badsigKey = keys.get(BADSIG)!.ed25519.publicKey;
  sh.engine.registry.registerEnterprises([
    {
      uscc: BADSIG,
      ed25519: badsigKey,
      certificate: sh.certify({ party: BADSIG, role: 'enterprise', ed25519: badsigKey }),
    },
  ]);
  const c = createConsent(
    {
      subject: BADSIG,
      grantee: BANK,
      purpose: PURPOSE,
      categories: ['tax'],
      operations: ['verify'],
      notBefore: now,
      notAfter: new Date(now.getTime() + 30 * DAY),
    },
    keys.get(BADSIG)!.ed25519.secretKey,
  );
  const bad: SignedConsent = { ...c, statement: { ...c.statement, categories: ['tax', 'property'] } };
  sh.engine.store.db
    .prepare('INSERT INTO consents (id, subject, grantee, signed_json, created_at) VALUES (?, ?, ?, ?, ?)')
    .run(bad.statement.id, BADSIG, BANK, JSON.stringify(bad), now.toISOString());
});

afterAll(async () => {
  await sh?.close();
  if (home) rmSync(home, { recursive: true, force: true });
});

// ---------------------------------------------------------------- thresholds

/** A claimed value derived from the subject's value x (fixed-point) and the field's bounds; undefined = not expressible. */
function threshold(f: FieldSpec, x: bigint, kind: string): string | undefined {
  const d = f.decimals;
  const min = parseFixed(f.min, d);
  const max = parseFixed(f.max, d);
  if (f.type === 'bool') return kind === 'x' ? String(x) : kind;
  if (f.type === 'enum') {
    const [form, rel] = kind.split(':') as [string, string];
    const i = rel === 'x' ? x : rel === 'x+1' ? x + 1n : rel === 'x-1' ? x - 1n : rel === 'min' ? min : max;
    if (i < min || i > max) return undefined;
    return form === 'label' ? f.values![Number(i)]! : String(i);
  }
  const fmt = (v: bigint, places = d) => formatFixed(v, places);
  switch (kind) {
    case 'x':
      return fmt(x);
    case 'x+u':
      return fmt(x + 1n);
    case 'x-u':
      return fmt(x - 1n);
    case 'min':
      return fmt(min);
    case 'max':
      return fmt(max);
    case 'min-u':
      return fmt(min - 1n);
    case 'max+u':
      return fmt(max + 1n);
    case 'far-below':
      return fmt(min - 10n ** BigInt(d + 6) - 7n);
    case 'far-above':
      return fmt(max + 10n ** BigInt(d + 9) + 3n);
    case 'huge-below':
      return `-1${'0'.repeat(40)}.5`;
    case 'huge-above':
      return `1${'0'.repeat(40)}`;
    // More decimals than the field holds (12.345 on a 2-dp field).
    case 'x+half':
      return fmt(x * 10n + 5n, d + 1);
    case 'x-half':
      return fmt(x * 10n - 5n, d + 1);
    case 'x+tiny':
      return fmt(x * 1000n + 1n, d + 3);
    case 'x-tiny':
      return fmt(x * 1000n - 1n, d + 3);
    case 'x-padded': {
      const s = fmt(x);
      return s.includes('.') ? `${s}0` : `${s}.00`;
    } // 12.340 == 12.34
    case 'x-signed':
      return x >= 0n ? `+${fmt(x)}` : ` ${fmt(x)} `;
    default:
      throw new Error(`unknown threshold kind ${kind}`);
  }
}

interface Combo {
  op: ClaimOp;
  kinds: string[];
}
function combosFor(f: FieldSpec): Combo[] {
  const single = (kinds: string[]) =>
    kinds.flatMap((k) => (['eq', 'ne', 'gte', 'lte'] as const).map((op): Combo => ({ op, kinds: [k] })));
  const between = (pairs: Array<[string, string]>) => pairs.map((p): Combo => ({ op: 'between', kinds: p }));
  if (f.type === 'bool')
    return [
      ...single(['x', 'true', 'false', '1', '0', 'TRUE', 'False']),
      ...between([
        ['0', '1'],
        ['1', '1'],
        ['true', 'false'],
        ['false', 'false'],
        ['x', 'x'],
      ]),
    ];
  if (f.type === 'enum') {
    return [
      ...single([
        'label:x',
        'index:x',
        'label:x+1',
        'label:x-1',
        'index:x+1',
        'index:x-1',
        'label:min',
        'label:max',
        'index:min',
        'index:max',
      ]),
      ...between([
        ['label:x', 'label:x'],
        ['label:x-1', 'label:x+1'],
        ['index:min', 'index:max'],
        ['label:max', 'label:min'],
        ['index:x', 'label:max'],
        ['label:min', 'index:x'],
      ]),
    ];
  }
  return [
    ...single([
      'x',
      'x+u',
      'x-u',
      'min',
      'max',
      'min-u',
      'max+u',
      'far-below',
      'far-above',
      'huge-below',
      'huge-above',
      'x+half',
      'x-half',
      'x+tiny',
      'x-tiny',
      'x-padded',
      'x-signed',
    ]),
    ...between([
      ['x', 'x'],
      ['x-u', 'x+u'],
      ['x+u', 'max+u'],
      ['min-u', 'x-u'],
      ['min', 'max'],
      ['far-below', 'far-above'],
      ['x-half', 'x+half'],
      ['x+half', 'x+half'],
      ['max', 'min'],
      ['x', 'max'],
      ['min', 'x'],
      ['x+tiny', 'far-above'],
    ]),
  ];
}

/** A uniform random claimed value, a little beyond the bounds on both sides for int/decimal. */
function randomThreshold(f: FieldSpec): string {
  if (f.type === 'bool') return ['true', 'false', '1', '0', 'TRUE', 'False'][Math.floor(rng() * 6)]!;
  if (f.type === 'enum')
    return rng() < 0.5
      ? f.values![Math.floor(rng() * f.values!.length)]!
      : String(Math.floor(rng() * f.values!.length));
  const min = parseFixed(f.min, f.decimals);
  const max = parseFixed(f.max, f.decimals);
  const pad = (max - min) / 8n + 1n;
  return formatFixed(min - pad + BigInt(Math.floor(rng() * Number(max - min + 2n * pad + 1n))), f.decimals);
}

const valueOf = (provider: string, u: string, field: string): bigint =>
  encodeValue(spec(provider, field), world.cell(provider, u, field)!)!;

// ---------------------------------------------------------------- 1. every op vs the plaintext predicate

describe('verify: encrypted == plaintext predicate', () => {
  it('numeric ops eq/ne/gte/lte/between on int, decimal (negative min), enum and bool: at, ±1 unit, bounds, outside, extra decimals', async () => {
    const claims: Claim[] = [];
    const tally = new Map<string, number>();
    for (const [provider, field] of NUMERIC) {
      const f = spec(provider, field);
      const has = (u: string) => world.cell(provider, u, field) !== undefined && world.cell(provider, u, field) !== '';
      const add = (u: string, cb: Combo) => {
        const x = valueOf(provider, u, field);
        const values = cb.kinds.map((k) => threshold(f, x, k));
        if (values.some((v) => v === undefined)) return;
        claims.push(claim(u, provider, field, cb.op, values as string[]));
      };
      const combos = combosFor(f);
      const groups: Array<[string[], number[]]> = [
        [MIN_ROWS.filter(has), [0]],
        [MAX_ROWS.filter(has), [0]],
        [RANDOM_ROWS.filter(has), [0, 60]],
      ];
      for (const [group, offsets] of groups)
        for (const off of offsets) combos.forEach((cb, k) => add(group[(k + off) % group.length]!, cb));
      for (const u of RANDOM_ROWS.filter(has)) {
        const op = (['eq', 'ne', 'gte', 'lte', 'between'] as const)[Math.floor(rng() * 5)]!;
        claims.push(
          claim(
            u,
            provider,
            field,
            op,
            op === 'between' ? [randomThreshold(f), randomThreshold(f)] : [randomThreshold(f)],
          ),
        );
      }
    }
    const { results, result } = await verify(claims);
    expect(results.size).toBe(claims.length);
    expect(mismatches(claims, results)).toEqual([]);

    // Coverage: every field saw every op, and both answers; values at the bounds were claimed.
    for (const [provider, field] of NUMERIC) {
      const mine = claims.filter((c) => c.field === field);
      expect(new Set(mine.map((c) => c.op)), field).toEqual(new Set(['eq', 'ne', 'gte', 'lte', 'between']));
      expect(new Set(mine.map(expected)), field).toEqual(new Set(['yes', 'no']));
      for (const u of [MIN_ROWS[0]!, MAX_ROWS[0]!])
        expect(
          mine.some((c) => c.subject === u),
          `${field} at a bound`,
        ).toBe(true);
      for (const r of ['yes', 'no'])
        tally.set(`${provider}/${field} ${r}`, mine.filter((c) => expected(c) === r).length);
      // R per field is the bound calculator's: the largest R with R·(D + 1) ≤ (t − 1)/2, D = max − min + 1.
      const f = spec(provider, field);
      const D = parseFixed(f.max, f.decimals) - parseFixed(f.min, f.decimals) + 1n;
      const R = BigInt(result.ranges[`${provider}/${field}`]!);
      expect(R).toBe(comparisonRange(sh.engine, f));
      expect(
        R * (D + 1n) <= (sh.engine.params.t - 1n) / 2n && (R + 1n) * (D + 1n) > (sh.engine.params.t - 1n) / 2n,
      ).toBe(true);
    }
    // Extra decimals are answered exactly and `eq` on them never needs the custodian.
    const extra = claims.filter((c) =>
      c.values.some((v) => (v.split('.')[1] ?? '').length > spec(c.provider, c.field).decimals),
    );
    expect(extra.length).toBeGreaterThan(100);
    console.log(
      `numeric claims: ${claims.length} (${extra.length} with more decimals than the field), ${result.boxes.length} sign boxes`,
    );
    console.log('measured R (custodian leakage bound) per field:', JSON.stringify(result.ranges, null, 1));
    console.log('answers per field:', JSON.stringify(Object.fromEntries(tally)));
  });

  const CERT_RETYPE: Array<(s: string) => string> = [
    (s) => fullWidth(s, /[0-9()]/g), // full-width digits and brackets
    (s) => `《${s}》`,
    (s) => ` ${s.replace('第', '第 ').replace('号', ' 号')}\u3000`,
    (s) => s.replace('(', '〔').replace(')', '〕'),
    (s) => s.replace('(', '【').replace(')', '】').replace('第', '第\u200b'),
    (s) => `《${fullWidth(s, /[0-9]/g)}》`,
  ];
  const HOLDER_RETYPE: Array<(s: string) => string> = [
    (s) => s.replace('(', '（').replace(')', '）'),
    (s) => s.replace('(', '【').replace(')', '】'),
    (s) => `${s.slice(0, 4)} ${s.slice(4)}\u00a0`,
    (s) => s.replace('(', '〔').replace(')', '〕'),
    (s) => s,
  ];

  it('token ops eq/in on certificate numbers and mortgage holders: retyped true values, false values, in-list positions, multi-valued cells', async () => {
    const claims: Array<Claim & { intended: ClaimResult }> = [];
    const push = (c: Claim, intended: ClaimResult) => claims.push({ ...c, intended });
    WITH_PROPERTY.forEach((u, i) => {
      const { certs, holder } = property.get(u)!;
      const retype = CERT_RETYPE[i % CERT_RETYPE.length]!;
      const other = property.get(WITH_PROPERTY[(i + 1) % WITH_PROPERTY.length]!)!.certs[0]!;
      push(claim(u, PROP, CERT, 'eq', [retype(certs[i % certs.length]!)]), 'yes');
      const menu: Array<() => void> = [
        () => push(claim(u, PROP, CERT, 'eq', [fakeCert()]), 'no'),
        () => push(claim(u, PROP, CERT, 'eq', [other]), 'no'), // another subject's real certificate: tokens bind the subject
        () => {
          const list = [fakeCert(), fakeCert(), fakeCert()];
          list.splice(i % 4, 0, CERT_RETYPE[(i + 2) % CERT_RETYPE.length]!(certs[certs.length - 1]!)); // true value at position 0..3
          push(claim(u, PROP, CERT, 'in', list), 'yes');
        },
        () => push(claim(u, PROP, CERT, 'in', [fakeCert(), other]), 'no'),
        () =>
          push(
            claim(u, PROP, HOLDER, 'eq', [HOLDER_RETYPE[i % HOLDER_RETYPE.length]!(holder || HOLDERS[0]!)]),
            holder ? 'yes' : 'no_data',
          ),
        () =>
          push(
            claim(u, PROP, HOLDER, 'in', [
              HOLDERS.find((h) => h !== holder)!,
              HOLDER_RETYPE[(i + 1) % HOLDER_RETYPE.length]!(holder || HOLDERS[1]!),
            ]),
            holder ? 'yes' : 'no_data',
          ),
        () => push(claim(u, PROP, HOLDER, 'eq', [HOLDERS.find((h) => h !== holder)!]), holder ? 'no' : 'no_data'),
      ];
      for (let k = 0; k < 3; k++) menu[(i + k * 2) % menu.length]!();
      if (certs.length > 1) push(claim(u, PROP, CERT, 'eq', [certs[1]!]), 'yes'); // the second value of a multi-valued cell
    });
    for (const u of NO_PROPERTY.slice(0, 6)) {
      push(claim(u, PROP, CERT, 'eq', [fakeCert()]), 'no_data');
      push(claim(u, PROP, HOLDER, 'in', [HOLDERS[0]!, HOLDERS[1]!]), 'no_data');
    }
    // The written-down intention and the plaintext reference agree (guards the fixture itself).
    expect(
      claims.filter((c) => expected(c) !== c.intended).map((c) => [c.subject, c.field, c.values, c.intended]),
    ).toEqual([]);
    const calls = tokenCalls.length;
    const { results } = await verify(claims);
    expect(mismatches(claims, results)).toEqual([]);
    const count = (r: ClaimResult) => claims.filter((c) => c.intended === r).length;
    expect(count('yes')).toBeGreaterThan(100);
    expect(count('no')).toBeGreaterThan(50);
    expect(count('no_data')).toBeGreaterThan(10);
    // Every in-list value and every eq value of an answered claim went to the custodian, once.
    const sent = tokenCalls.slice(calls).flatMap((t) => t.request.body.elements);
    expect(sent.length).toBe(claims.filter((c) => c.intended !== 'no_data').reduce((a, c) => a + c.values.length, 0));
    console.log(
      `token claims: ${claims.length} (yes ${count('yes')}, no ${count('no')}, no_data ${count('no_data')}), ${sent.length} blinded elements in ${tokenCalls.length - calls} custodian calls`,
    );
  });
});

// ---------------------------------------------------------------- 2. results per claim

describe('verify: one result per claim', () => {
  it('no_data (no row, empty cell), refused:<status> for each consent status, per category', async () => {
    const x = (u: string, f: string) => world.cell(TAX, u, f)!;
    const cert = property.get(OOS_CAT)!.certs[0]!;
    const table: Array<[Claim, ClaimResult]> = [
      [claim(NOWHERE, TAX, 'months_continuous_tax', 'gte', ['0']), 'no_data'],
      [claim(NOWHERE, PROP, CERT, 'eq', [fakeCert()]), 'no_data'],
      [claim(EMPTY, TAX, 'months_continuous_tax', 'gte', ['0']), 'no_data'],
      [claim(EMPTY, TAX, 'net_margin_pct', 'lte', ['100']), 'no_data'],
      [claim(EMPTY, TAX, 'overdue_tax_amount', 'between', ['-1', '2000000']), 'no_data'],
      [claim(EMPTY, TAX, 'tax_arrears', 'eq', [x(EMPTY, 'tax_arrears')]), 'yes'],
      [claim(EMPTY, PROP, CERT, 'eq', [fakeCert()]), 'no_data'],
      [claim(EMPTY, PROP, HOLDER, 'eq', [HOLDERS[0]!]), 'no_data'],
      [claim(EMPTY, PROP, 'property_count', 'gte', ['0']), 'no_data'],
      [claim(NOPROP, PROP, 'property_count', 'gte', ['0']), 'no_data'],
      [claim(NOPROP, PROP, CERT, 'in', [fakeCert(), fakeCert()]), 'no_data'],
      [claim(NOPROP, TAX, 'months_continuous_tax', 'eq', [x(NOPROP, 'months_continuous_tax')]), 'yes'],
      ...[...REFUSED].flatMap(([u, st]): Array<[Claim, ClaimResult]> => [
        [claim(u, TAX, 'months_continuous_tax', 'gte', ['0']), `refused:${st}` as ClaimResult],
        [claim(u, PROP, CERT, 'eq', [property.get(u)!.certs[0]!]), `refused:${st}` as ClaimResult],
        [claim(u, PROP, 'mortgage_registered', 'eq', ['true']), `refused:${st}` as ClaimResult],
      ]),
      // Consent for the property category only: tax claims are out of scope, property claims are answered.
      [claim(OOS_CAT, TAX, 'months_continuous_tax', 'gte', ['0']), 'refused:OUT_OF_SCOPE'],
      [claim(OOS_CAT, TAX, 'tax_credit_grade', 'ne', ['A']), 'refused:OUT_OF_SCOPE'],
      [claim(OOS_CAT, PROP, 'property_count', 'gte', ['0']), 'yes'],
      [claim(OOS_CAT, PROP, CERT, 'eq', [`《${cert}》`]), 'yes'],
    ];
    const claims = table.map(([c]) => c);
    const { results, result } = await verify(claims);
    expect(claims.map((c) => [c.subject, c.field, results.get(c.claimId)])).toEqual(
      table.map(([c, r]) => [c.subject, c.field, r]),
    );
    expect(new Set(results.values())).toEqual(
      new Set([
        'yes',
        'no_data',
        'refused:NO_CONSENT',
        'refused:EXPIRED',
        'refused:REVOKED',
        'refused:OUT_OF_SCOPE',
        'refused:BAD_SIGNATURE',
      ]),
    );
    // Refused and no_data claims are never compared: they are answered directly, with no slot in any sign box.
    const numericIds = new Set(result.numeric.map((n) => n.claimId));
    for (const [c, r] of table) if (r !== 'yes') expect(numericIds.has(c.claimId), c.claimId).toBe(false);
    // Refused claims spend no budget; no_data claims do (the bank learned that the provider has no value).
    const used = (u: string, provider: string, field: string) =>
      (
        sh.engine.store.db
          .prepare(
            'SELECT SUM(units) AS used FROM verify_spend WHERE bank_group = ? AND subject = ? AND provider = ? AND field = ?',
          )
          .get(BANK, u, provider, field) as { used: number | null }
      ).used ?? undefined;
    for (const u of REFUSED.keys()) expect(used(u, TAX, 'months_continuous_tax'), u).toBeUndefined();
    expect(used(OOS_CAT, TAX, 'months_continuous_tax')).toBeUndefined();
    expect(used(NOWHERE, TAX, 'months_continuous_tax')).toBe(1);
    expect(used(OOS_CAT, PROP, CERT)).toBe(1);

    // Another bank without any consent of the subject.
    const other = await verify(
      [claim(POOL[2]!, TAX, 'months_continuous_tax', 'gte', ['0']), claim(POOL[2]!, PROP, CERT, 'eq', ['x'])],
      OTHER_BANK,
    );
    expect([...other.results.values()]).toEqual(['refused:NO_CONSENT', 'refused:NO_CONSENT']);
  });
  it('an empty job: completed, no custodian call, nothing to answer', async () => {
    const before = { views: views.length, calls: tokenCalls.length };
    const { results, result, jobId } = await verify([]);
    expect(results.size).toBe(0);
    expect(result.boxes).toEqual([]);
    expect(result.numeric).toEqual([]);
    expect({ views: views.length, calls: tokenCalls.length }).toEqual(before);
    expect(sh.engine.store.db.prepare('SELECT status FROM jobs WHERE id = ?').get(jobId)).toMatchObject({
      status: 'completed',
    });
  });
});

// ---------------------------------------------------------------- 3. refusals before any work

describe('verify: refusals before any work', () => {
  const bankKey = () => sh.wallet.require(BANK, 'bank').ed25519.secretKey;
  const request = (claims: Claim[], over: { jobId?: string; requestedAt?: string; key?: Uint8Array } = {}) =>
    buildVerifyRequest(
      {
        jobId: over.jobId ?? sh.engine.jobs.newId('verify'),
        bank: BANK,
        purpose: PURPOSE,
        claims,
        requestedAt: over.requestedAt ?? sh.engine.now().toISOString(),
      },
      over.key ?? bankKey(),
    );
  const logs = () =>
    [TAX, PROP].map((p) => {
      const f = join(sh.wallet.providerDir(p), 'custodian.log');
      return existsSync(f) ? readFileSync(f, 'utf8') : '';
    });
  const budget = () =>
    sh.engine.store.db.prepare('SELECT * FROM verify_spend ORDER BY bank_group, subject, provider, field, at').all();
  /** Valid claims that would need both custodians, placed before the bad one: the whole batch is checked first. */
  const valid = () => [
    claim(POOL[3]!, TAX, 'net_margin_pct', 'gte', ['0']),
    claim(WITH_PROPERTY[0]!, PROP, CERT, 'eq', [property.get(WITH_PROPERTY[0]!)!.certs[0]!]),
  ];

  async function refusedBeforeWork(run: () => Promise<unknown>, code: string, what: string) {
    const before = {
      counts: storeCounts(sh),
      views: views.length,
      calls: tokenCalls.length,
      logs: logs(),
      budget: budget(),
    };
    await expect(run(), what).rejects.toMatchObject(coded(code));
    expect(
      { counts: storeCounts(sh), views: views.length, calls: tokenCalls.length, logs: logs(), budget: budget() },
      what,
    ).toEqual(before);
  }

  it('bad claims: MODEL_ONLY field, op not allowed for the type, unknown field, bad USCC, bad values', async () => {
    const bad: Array<[Claim, string]> = [
      [claim(POOL[3]!, TAX, 'vat_paid_12m', 'gte', ['1']), 'SH_ERR_VERIFY_FIELD_CLASS'],
      [claim(WITH_PROPERTY[1]!, PROP, 'property_area_sqm', 'lte', ['100']), 'SH_ERR_VERIFY_FIELD_CLASS'],
      [claim(WITH_PROPERTY[1]!, PROP, CERT, 'gte', ['1']), 'SH_ERR_CLAIM_INVALID'],
      [claim(WITH_PROPERTY[1]!, PROP, HOLDER, 'between', ['a', 'b']), 'SH_ERR_CLAIM_INVALID'],
      [claim(POOL[3]!, TAX, 'months_continuous_tax', 'in', ['1', '2']), 'SH_ERR_CLAIM_INVALID'],
      [claim(POOL[3]!, TAX, 'no_such_field', 'eq', ['1']), 'SH_ERR_UNKNOWN_FIELD'],
      [claim(POOL[3]!, TAX, 'property_count', 'eq', ['1']), 'SH_ERR_UNKNOWN_FIELD'], // another provider's field
      [
        claim(`${POOL[3]!.slice(0, 17)}${POOL[3]![17] === '0' ? '1' : '0'}`, TAX, 'months_continuous_tax', 'gte', [
          '1',
        ]),
        'SH_ERR_USCC_CHECK',
      ],
      [claim(POOL[3]!, 'no_such_provider', 'months_continuous_tax', 'gte', ['1']), 'SH_ERR_UNKNOWN_PARTY'],
      [claim(POOL[3]!, TAX, 'net_margin_pct', 'gte', ['1e3']), 'SH_ERR_CLAIM_INVALID'],
      [claim(POOL[3]!, TAX, 'tax_credit_grade', 'eq', ['Z']), 'SH_ERR_CLAIM_INVALID'],
      [claim(POOL[3]!, TAX, 'tax_credit_grade', 'eq', ['5']), 'SH_ERR_CLAIM_INVALID'], // index out of range
      [claim(POOL[3]!, TAX, 'tax_arrears', 'eq', ['yes']), 'SH_ERR_CLAIM_INVALID'],
      [claim(POOL[3]!, TAX, 'months_continuous_tax', 'between', ['1']), 'SH_ERR_CLAIM_INVALID'],
      [claim(POOL[3]!, TAX, 'months_continuous_tax', 'eq', ['1', '2']), 'SH_ERR_CLAIM_INVALID'],
      [claim(WITH_PROPERTY[1]!, PROP, CERT, 'in', Array.from({ length: 17 }, fakeCert)), 'SH_ERR_CLAIM_INVALID'],
      [claim(WITH_PROPERTY[1]!, PROP, CERT, 'eq', ['《 》']), 'SH_ERR_CLAIM_INVALID'], // empty after normalization
    ];
    for (const [c, code] of bad) {
      const { signed, openings } = request([...valid(), c]);
      await refusedBeforeWork(
        () => runVerifyJob(sh.engine, signed, openings),
        code,
        `${c.field} ${c.op} ${JSON.stringify(c.values).slice(0, 40)}`,
      );
    }
  });

  it('commitment openings that do not match, forged or altered signatures, stale requests, reused job ids', async () => {
    const claims = valid();
    const { signed, openings } = request(claims);
    const id = claims[0]!.claimId;
    await refusedBeforeWork(
      () => runVerifyJob(sh.engine, signed, { ...openings, [id]: { ...openings[id]!, values: ['5'] } }),
      'SH_ERR_CLAIM_INVALID',
      'other value',
    );
    await refusedBeforeWork(
      () => runVerifyJob(sh.engine, signed, { ...openings, [id]: { ...openings[id]!, salt: '00'.repeat(16) } }),
      'SH_ERR_CLAIM_INVALID',
      'other salt',
    );
    const { [id]: _dropped, ...missing } = openings;
    await refusedBeforeWork(() => runVerifyJob(sh.engine, signed, missing), 'SH_ERR_CLAIM_INVALID', 'no opening');
    // Another claim's (valid) opening does not open this one: the claim id is committed too.
    const id2 = claims[1]!.claimId;
    await refusedBeforeWork(
      () => runVerifyJob(sh.engine, signed, { ...openings, [id]: openings[id2]! }),
      'SH_ERR_CLAIM_INVALID',
      'swapped opening',
    );

    const forged = request(claims, { key: ed25519KeyPair().secretKey });
    await refusedBeforeWork(
      () => runVerifyJob(sh.engine, forged.signed, forged.openings),
      'SH_ERR_BAD_SIGNATURE',
      'forged',
    );
    const altered = {
      ...signed,
      body: { ...signed.body, claims: signed.body.claims.map((c) => ({ ...c, count: c.count + 1 })) },
    };
    await refusedBeforeWork(
      () => runVerifyJob(sh.engine, altered, openings),
      'SH_ERR_BAD_SIGNATURE',
      'altered after signing',
    );
    const byOther = buildVerifyRequest(
      { jobId: sh.engine.jobs.newId('verify'), bank: BANK, purpose: PURPOSE, claims },
      sh.wallet.require(OTHER_BANK, 'bank').ed25519.secretKey,
    );
    await refusedBeforeWork(
      () => runVerifyJob(sh.engine, { ...byOther.signed, signer: OTHER_BANK }, byOther.openings),
      'SH_ERR_BAD_SIGNATURE',
      'signed by another bank',
    );

    const now = sh.engine.now().getTime();
    for (const [at, code] of [
      [new Date(now - 45 * DAY).toISOString(), 'SH_ERR_REQUEST_STALE'],
      [new Date(now + 10 * 60_000).toISOString(), 'SH_ERR_REQUEST_STALE'],
      ['yesterday', 'SH_ERR_INVALID_ARGUMENT'],
    ] as const) {
      const r = request(claims, { requestedAt: at });
      await refusedBeforeWork(() => runVerifyJob(sh.engine, r.signed, r.openings), code, at);
    }

    const once = await runVerifyJob(sh.engine, signed, openings);
    allClaims.push(...claims);
    expect(openVerifyResult(once, BANK, sh.wallet.require(BANK, 'bank').x25519!.secretKey).size).toBe(2);
    await refusedBeforeWork(() => runVerifyJob(sh.engine, signed, openings), 'SH_ERR_ALREADY_EXISTS', 'replayed');
    const sameId = request([claim(POOL[4]!, TAX, 'months_continuous_tax', 'gte', ['1'])], { jobId: signed.body.jobId });
    await refusedBeforeWork(
      () => runVerifyJob(sh.engine, sameId.signed, sameId.openings),
      'SH_ERR_ALREADY_EXISTS',
      'reused job id',
    );
  });
});

// ---------------------------------------------------------------- 4. DLEQ at the protocol level

describe("verify: the engine checks the custodian's DLEQ proof", () => {
  const providerKey = () => sh.wallet.require(PROP, 'provider').ed25519.secretKey;
  const resign = (body: TokenEvalResponse) => signJson(body, PROP, providerKey());
  const oprfSecret = () => sh.wallet.readSecret(join(sh.wallet.providerDir(PROP), 'oprf.sk'))!;
  const TAMPERS: Array<[string, Tamper]> = [
    [
      'a flipped proof bit',
      (res) => {
        const p = hexToBytes(res.body.proof);
        p[40]! ^= 0x01;
        return resign({ ...res.body, proof: bytesToHex(p) });
      },
    ],
    [
      'two evaluated elements swapped',
      (res) => {
        const e = [...res.body.evaluated];
        [e[0], e[1]] = [e[1]!, e[0]!];
        return resign({ ...res.body, evaluated: e });
      },
    ],
    [
      "another key's evaluation (with a valid proof for that key)",
      (res, req) => {
        const other = generateOprfKeyPair();
        const out = evaluateBlinded(
          other.secretKey,
          tokenInfo(PROP, req.body.field, req.body.epoch),
          req.body.elements.map((x) => hexToBytes(x.blinded)),
        );
        return resign({ ...res.body, evaluated: out.evaluated.map(bytesToHex), proof: bytesToHex(out.proof) });
      },
    ],
    [
      'the right key under another info (key epoch)',
      (res, req) => {
        const out = evaluateBlinded(
          oprfSecret(),
          tokenInfo(PROP, req.body.field, req.body.epoch + 1),
          req.body.elements.map((x) => hexToBytes(x.blinded)),
        );
        return resign({ ...res.body, evaluated: out.evaluated.map(bytesToHex), proof: bytesToHex(out.proof) });
      },
    ],
  ];

  for (const [name, fn] of TAMPERS) {
    it(`${name}: SH_ERR_TOKEN_PROOF, job.failed, nothing for the bank`, async () => {
      const u = WITH_PROPERTY[5]!;
      const claims = [
        claim(u, PROP, CERT, 'eq', [property.get(u)!.certs[0]!]),
        claim(u, PROP, CERT, 'in', [fakeCert(), fakeCert()]),
      ];
      const { signed, openings } = buildVerifyRequest(
        {
          jobId: sh.engine.jobs.newId('verify'),
          bank: BANK,
          purpose: PURPOSE,
          claims,
          requestedAt: sh.engine.now().toISOString(),
        },
        sh.wallet.require(BANK, 'bank').ed25519.secretKey,
      );
      tamper = fn;
      try {
        await expect(runVerifyJob(sh.engine, signed, openings)).rejects.toMatchObject(coded('SH_ERR_TOKEN_PROOF'));
      } finally {
        tamper = undefined;
      }
      const jobId = signed.body.jobId;
      const row = sh.engine.store.db.prepare('SELECT status, summary_json FROM jobs WHERE id = ?').get(jobId) as {
        status: string;
        summary_json: string | null;
      };
      expect(row).toEqual({ status: 'failed', summary_json: null });
      const entries = ledgerOf(jobId);
      expect(entries.filter((e) => e.kind === 'job.failed').map((e) => e.body.code)).toEqual(['SH_ERR_TOKEN_PROOF']);
      expect(entries.some((e) => e.kind === 'job.completed')).toBe(false);
      // The custodian was asked and answered (the engine logs both before it checks the proof).
      expect(entries.filter((e) => e.kind === 'custodian.request' || e.kind === 'custodian.response').length).toBe(2);
    });
  }

  it('untampered again: the same claims verify', async () => {
    const u = WITH_PROPERTY[5]!;
    const claims = [
      claim(u, PROP, CERT, 'eq', [property.get(u)!.certs[0]!]),
      claim(u, PROP, CERT, 'in', [fakeCert(), fakeCert()]),
    ];
    const { results } = await verify(claims);
    expect([...results.values()]).toEqual(['yes', 'no']);
  });
});

function ledgerOf(jobId: string): Array<{ kind: string; body: Record<string, unknown> }> {
  const rows = sh.engine.store.db.prepare('SELECT kind, body FROM ledger_entries ORDER BY idx').all() as Array<{
    kind: string;
    body: string;
  }>;
  return rows
    .map((r) => ({ kind: r.kind, body: JSON.parse(r.body) as Record<string, unknown> }))
    .filter((e) => e.body.jobId === jobId);
}

// ---------------------------------------------------------------- 5. custodian count enforcement

/** Ledger a bank-signed request the way the engine does before showing it to a custodian, and feed the custodian. */
async function ledgerJob(bankReq: BankClaims): Promise<void> {
  sh.engine.ledger.append('job.requested', { jobId: bankReq.body.jobId, jobHash: sha256Hex(canonicalize(bankReq)) });
  await feedCustodian(sh.engine, PROP);
}

describe('verify: the custodian counts evaluations against the bank-signed request', () => {
  it('more elements than signed, unknown claims, other fields, altered bank request, unbound jobHash, identity points', async () => {
    const u = WITH_PROPERTY[7]!;
    const cert = property.get(u)!.certs[0]!;
    const claims = [
      claim(u, PROP, CERT, 'eq', [cert]), // count 1
      claim(u, PROP, CERT, 'in', [fakeCert(), cert]), // count 2
      claim(u, PROP, HOLDER, 'eq', [HOLDERS[0]!]),
      claim(u, PROP, 'property_count', 'gte', ['1']), // numeric: never a token evaluation
    ];
    const [eqC, inC, holderC, numC] = claims.map((c) => c.claimId) as [string, string, string, string];
    const { signed: bankReq } = buildVerifyRequest(
      {
        jobId: sh.engine.jobs.newId('verify'),
        bank: BANK,
        purpose: PURPOSE,
        claims,
        requestedAt: sh.engine.now().toISOString(),
      },
      sh.wallet.require(BANK, 'bank').ed25519.secretKey,
    );
    const jobId = bankReq.body.jobId;
    const jobHash = sha256Hex(canonicalize(bankReq));
    // Asked directly (not through runVerifyJob), so the test ledgers the request as the engine would.
    await ledgerJob(bankReq);
    const oprfPk = sh.engine.registry.party(PROP)!.oprfPublicKey!;
    const info = tokenInfo(PROP, CERT, TOKEN_EPOCH);
    const inputs = [
      tokenInput(u, CERT, normalizeId('certificate', cert)),
      tokenInput(u, CERT, normalizeId('certificate', fakeCert())),
      tokenInput(u, CERT, normalizeId('certificate', fakeCert())),
    ];
    const blinded = blindInputs(oprfPk, info, inputs);
    const hex = blinded.map((b) => bytesToHex(b.blinded));
    let n = 0;
    const engineReq = (
      elements: TokenEvalRequest['elements'],
      over: Partial<TokenEvalRequest> = {},
      key = sh.engine.keys.ed25519.secretKey,
    ) =>
      signJson<TokenEvalRequest>(
        {
          type: 'safehouse.custodian.oprf.v1',
          suite: 'P256-SHA256',
          mode: 'POPRF',
          provider: PROP,
          jobId,
          jobHash,
          field: CERT,
          epoch: TOKEN_EPOCH,
          label: `test/${++n}`,
          elements,
          ...over,
        },
        'engine',
        key,
      );
    const refuse = (req: Signed<TokenEvalRequest>, code: string, bank: BankClaims = bankReq) =>
      expect(realProp.evaluateTokens(req, bank)).rejects.toMatchObject(coded(code));

    await refuse(
      engineReq([
        { claimId: eqC, blinded: hex[0]! },
        { claimId: eqC, blinded: hex[1]! },
      ]),
      'SH_ERR_CUSTODIAN_BUDGET',
    );
    await refuse(engineReq([{ claimId: 'c-not-signed', blinded: hex[0]! }]), 'SH_ERR_CUSTODIAN_BUDGET');
    await refuse(engineReq([{ claimId: numC, blinded: hex[0]! }]), 'SH_ERR_CUSTODIAN_BUDGET');
    await refuse(engineReq([{ claimId: holderC, blinded: hex[0]! }]), 'SH_ERR_CUSTODIAN_BUDGET'); // a holder claim's budget on the cert field
    await refuse(engineReq([{ claimId: eqC, blinded: hex[0]! }], { field: HOLDER }), 'SH_ERR_CUSTODIAN_BUDGET'); // a cert claim evaluated as holder
    const alteredBank = {
      ...bankReq,
      body: { ...bankReq.body, claims: bankReq.body.claims.map((c) => ({ ...c, count: 16 })) },
    };
    await refuse(
      engineReq([{ claimId: eqC, blinded: hex[0]! }], { jobHash: sha256Hex(canonicalize(alteredBank)) }),
      'SH_ERR_BAD_SIGNATURE',
      alteredBank,
    );
    await refuse(
      engineReq([{ claimId: eqC, blinded: hex[0]! }], { jobHash: sha256Hex('another request') }),
      'SH_ERR_PARAMS_MISMATCH',
    );
    await refuse(engineReq([{ claimId: eqC, blinded: hex[0]! }], { jobId: `${jobId}x` }), 'SH_ERR_PARAMS_MISMATCH');
    await refuse(
      engineReq([{ claimId: eqC, blinded: hex[0]! }], {}, ed25519KeyPair().secretKey),
      'SH_ERR_BAD_SIGNATURE',
    );
    await refuse(engineReq([{ claimId: inC, blinded: '00' }]), 'SH_ERR_TOKEN_INVALID'); // the identity point
    // One bad element refuses the whole batch: x ≥ p is no point (note 02‖00…00 *is* one: b is a square mod p).
    await refuse(
      engineReq([
        { claimId: inC, blinded: hex[1]! },
        { claimId: inC, blinded: `02${'ff'.repeat(32)}` },
      ]),
      'SH_ERR_TOKEN_INVALID',
    );
    await refuse(engineReq([{ claimId: inC, blinded: `05${hex[1]!.slice(2)}` }]), 'SH_ERR_TOKEN_INVALID');

    // None of the refusals used up a count: each signed evaluation is still available, exactly once.
    const res = await realProp.evaluateTokens(engineReq([{ claimId: eqC, blinded: hex[0]! }]), bankReq);
    const [token] = finalizeTokens(
      [inputs[0]!],
      [blinded[0]!],
      res.body.evaluated.map(hexToBytes),
      hexToBytes(res.body.proof),
      oprfPk,
      info,
    );
    expect(sh.engine.datasets.hasToken(sh.engine.datasets.withField(PROP, CERT)!.id, CERT, token!)).toBe(true);
    await refuse(engineReq([{ claimId: eqC, blinded: hex[0]! }]), 'SH_ERR_CUSTODIAN_BUDGET'); // counted across requests of the job
    await realProp.evaluateTokens(
      engineReq([
        { claimId: inC, blinded: hex[1]! },
        { claimId: inC, blinded: hex[2]! },
      ]),
      bankReq,
    );
    await refuse(engineReq([{ claimId: inC, blinded: hex[1]! }]), 'SH_ERR_CUSTODIAN_BUDGET');
  });

  it('a stale bank request buys nothing; counts survive a custodian restart (rebuilt from its own log)', async () => {
    const u = WITH_PROPERTY[8]!;
    const cert = property.get(u)!.certs[0]!;
    const claims = [claim(u, PROP, CERT, 'eq', [cert])];
    const bankSk = sh.wallet.require(BANK, 'bank').ed25519.secretKey;
    const oprfPk = sh.engine.registry.party(PROP)!.oprfPublicKey!;
    const info = tokenInfo(PROP, CERT, TOKEN_EPOCH);
    const [b] = blindInputs(oprfPk, info, [tokenInput(u, CERT, normalizeId('certificate', cert))]);
    const ask = (custodian: Custodian, bankReq: BankClaims) =>
      custodian.evaluateTokens(
        signJson<TokenEvalRequest>(
          {
            type: 'safehouse.custodian.oprf.v1',
            suite: 'P256-SHA256',
            mode: 'POPRF',
            provider: PROP,
            jobId: bankReq.body.jobId,
            jobHash: sha256Hex(canonicalize(bankReq)),
            field: CERT,
            epoch: TOKEN_EPOCH,
            label: 'test/restart',
            elements: [{ claimId: claims[0]!.claimId, blinded: bytesToHex(b!.blinded) }],
          },
          'engine',
          sh.engine.keys.ed25519.secretKey,
        ),
        bankReq,
      );
    const stale = buildVerifyRequest(
      {
        jobId: sh.engine.jobs.newId('verify'),
        bank: BANK,
        purpose: PURPOSE,
        claims,
        requestedAt: new Date(Date.now() - 60 * 60_000).toISOString(),
      },
      bankSk,
    ).signed;
    await expect(ask(realProp, stale)).rejects.toMatchObject(coded('SH_ERR_REQUEST_STALE'));
    const fresh = buildVerifyRequest(
      {
        jobId: sh.engine.jobs.newId('verify'),
        bank: BANK,
        purpose: PURPOSE,
        claims,
        requestedAt: new Date().toISOString(),
      },
      bankSk,
    ).signed;
    await ledgerJob(fresh);
    await ask(realProp, fresh);
    // A new custodian process with the same keys and log: the signed count is already spent.
    const restarted = (sh as unknown as { agent(id: string): { custodian(pk: Uint8Array, o: object): Custodian } })
      .agent(PROP)
      .custodian(sh.engine.keys.ed25519.publicKey, {
        logFile: join(sh.wallet.providerDir(PROP), 'custodian.log'),
        trust: {
          keyName: LEDGER_ORIGIN,
          publicKey: sh.engine.keys.ed25519.publicKey,
          registrarKey: sh.wallet.require('registrar', 'registrar').ed25519.publicKey,
        },
      });
    // It rebuilds its copy of the ledger from leaf 0, through the root it accepted before the restart.
    await feedCustodian(sh.engine, PROP, restarted);
    await expect(ask(restarted, fresh)).rejects.toMatchObject(coded('SH_ERR_CUSTODIAN_BUDGET'));
  });
});

// ---------------------------------------------------------------- 6. what each party is not given

const ENC = new TextEncoder();
const CONTEXT = new Uint8Array([...ENC.encode('OPRFV1-'), 0x02, ...ENC.encode('-P256-SHA256')]);
const cat = (...xs: Uint8Array[]) => new Uint8Array(xs.flatMap((x) => [...x]));
const i2osp2 = (n: number) => new Uint8Array([n >>> 8, n & 0xff]);
/** RFC 9497 HashToGroup for P256-SHA256 (RFC 9380 P256_XMD:SHA-256_SSWU_RO_ with the POPRF DST): the unblinded point. */
const hashToGroup = (input: Uint8Array) =>
  p256_hasher.hashToCurve(input, { DST: cat(ENC.encode('HashToGroup-'), CONTEXT) });
/** RFC 9497 POPRF Evaluate written out from the key (only to prove hashToGroup above is the one the protocol uses). */
function evaluateByHand(sk: Uint8Array, info: Uint8Array, input: Uint8Array): Uint8Array {
  const Fn = p256.Point.Fn;
  const m = p256_hasher.hashToScalar(cat(ENC.encode('Info'), i2osp2(info.length), info), {
    DST: cat(ENC.encode('HashToScalar-'), CONTEXT),
  });
  const k = Fn.fromBytes(sk);
  const n = hashToGroup(input)
    .multiply(Fn.inv(Fn.add(k, m)))
    .toBytes(true);
  return sha256(
    cat(i2osp2(input.length), input, i2osp2(info.length), info, i2osp2(n.length), n, ENC.encode('Finalize')),
  );
}

describe('verify: views', () => {
  it("custodian (numeric): r·d·(x−c) + r' has the sign of d·(x−c), |v| ≥ |x−c|, v/(x−c) spread over [1, R]; unused slots uniform", async () => {
    const claims: Claim[] = [];
    const plan = new Map<string, Array<{ d: 1n | -1n; c: bigint }>>(); // claimId → comparisons by round
    const f = spec(TAX, 'net_margin_pct');
    const g = spec(TAX, 'months_continuous_tax');
    const inRange = (h: FieldSpec) => {
      const lo = parseFixed(h.min, h.decimals) - 1n;
      return lo + BigInt(Math.floor(rng() * Number(parseFixed(h.max, h.decimals) + 2n - lo)));
    };
    for (const u of POOL) {
      const lo = inRange(f);
      const hi = inRange(f);
      const c1 = claim(u, TAX, f.name, 'between', [formatFixed(lo, 2), formatFixed(hi, 2)]);
      plan.set(c1.claimId, [
        { d: 1n, c: lo },
        { d: -1n, c: hi },
      ]);
      const th = inRange(g);
      const op = rng() < 0.5 ? 'gte' : 'lte';
      const c2 = claim(u, TAX, g.name, op, [String(th)]);
      plan.set(c2.claimId, [{ d: op === 'gte' ? 1n : -1n, c: th }]);
      claims.push(c1, c2);
    }
    const before = views.length;
    const { results, result } = await verify(claims);
    expect(mismatches(claims, results)).toEqual([]);
    const seen = views.slice(before);
    expect(seen.every((v) => v.provider === TAX && v.mode === 'sign')).toBe(true);
    expect(seen.length).toBe(3); // net_margin rounds 0 and 1, months round 0

    const t = sh.engine.params.t;
    const ds = sh.engine.datasets.withField(TAX, f.name)!;
    const slots = sh.engine.datasets.subjectSlots(ds.id, POOL);
    const ratios = new Map<string, number[]>();
    /** (v mod |x−c|)/|x−c| for |x−c| ≥ 100: r' ∈ [0, r) keeps v from being a multiple of x − c (which would hand the custodian c). */
    const residues: number[] = [];
    const unusedMeans: number[] = [];
    let checked = 0;
    for (const v of seen) {
      const [, , , field, , block, , round] = v.label.split('/');
      expect(block).toBe('0');
      const R = Number(result.ranges[`${TAX}/${field}`]!);
      const used = new Set<number>();
      for (const c of claims.filter((x) => x.field === field)) {
        const cmp = plan.get(c.claimId)![Number(round)];
        if (!cmp) continue;
        const slot = slots.get(c.subject)!.slot;
        used.add(slot);
        const delta = cmp.d * (valueOf(TAX, c.subject, field!) - cmp.c);
        const val = centered(v.values[slot]!, t);
        expect(val >= 0n, `${c.claimId} sign`).toBe(delta >= 0n);
        if (delta !== 0n) {
          expect(val < 0n ? -val : val, `${c.claimId} |v| ≥ |x − c|`).toBeGreaterThanOrEqual(
            delta < 0n ? -delta : delta,
          );
          const ratio = Number(val) / Number(delta);
          expect(ratio > 0 && ratio < 2 * R).toBe(true);
          ratios.set(field!, [...(ratios.get(field!) ?? []), ratio]);
          const abs = delta < 0n ? -delta : delta;
          if (abs >= 100n) residues.push(Number(((val % abs) + abs) % abs) / Number(abs));
        } else {
          expect(val >= 0n && val < BigInt(R)).toBe(true); // v = r' ∈ [0, r)
        }
        checked++;
      }
      let sum = 0;
      let n = 0;
      for (let i = 0; i < v.values.length; i++)
        if (!used.has(i)) {
          sum += Number(v.values[i]!) / Number(t);
          n++;
        }
      unusedMeans.push(sum / n);
      expect(Math.abs(sum / n - 0.5), `${v.label}: unused slots mean v/t`).toBeLessThan(0.05);
    }
    expect(checked).toBe(POOL.length * 3);
    expect(residues.length).toBeGreaterThan(200);
    expect(residues.filter((x) => x === 0).length / residues.length).toBeLessThan(0.05);
    expect(Math.abs(residues.reduce((a, x) => a + x, 0) / residues.length - 0.5)).toBeLessThan(0.1);

    const r = ratios.get(f.name)!.sort((a, b) => a - b);
    const R = Number(result.ranges[`${TAX}/${f.name}`]!);
    expect(r.length).toBeGreaterThanOrEqual(200);
    const q = (p: number) => r[Math.floor(p * (r.length - 1))]!;
    const bins = new Array<number>(10).fill(0);
    for (const x of r) bins[Math.min(9, Math.floor((x / R) * 5))]!++;
    console.log(
      `custodian view, ${TAX}/${f.name}: R = ${R}, ${r.length} comparisons with x ≠ c; v/(x−c) in units of R: quartiles ${(q(0.25) / R).toFixed(3)} ${(q(0.5) / R).toFixed(3)} ${(q(0.75) / R).toFixed(3)}`,
    );
    console.log(
      `  histogram of v/((x−c)·R) over [0, 2) in 0.2 steps: ${bins.join(' ')}; unused-slot means v/t: ${unusedMeans.map((m) => m.toFixed(4)).join(' ')}`,
    );
    // r uniform on [1, R]: quartiles near R/4, R/2, 3R/4 — not concentrated.
    expect(q(0.25) < q(0.5) && q(0.5) < q(0.75)).toBe(true);
    expect(q(0.75) - q(0.25)).toBeGreaterThan(0.3 * R);
    expect(r[0]! / R).toBeLessThan(0.1);
    expect(r[r.length - 1]! / R).toBeGreaterThan(0.9);
  });

  it('custodian (tokens): fresh blinded points, never the hash-to-curve of the input; no claimed value in any form', async () => {
    const u = WITH_PROPERTY[9]!;
    const cert = property.get(u)!.certs[0]!;
    const raw = `《${fullWidth(cert, /[0-9()]/g)}》`;
    const norm = normalizeId('certificate', raw);
    expect(norm).toBe(cert);
    const input = tokenInput(u, CERT, norm);
    // hashToGroup here is the protocol's: evaluating by hand from it gives the provider's uploaded token.
    const info = tokenInfo(PROP, CERT, TOKEN_EPOCH);
    const sk = sh.wallet.readSecret(join(sh.wallet.providerDir(PROP), 'oprf.sk'))!;
    expect(
      sh.engine.datasets.hasToken(sh.engine.datasets.withField(PROP, CERT)!.id, CERT, evaluateByHand(sk, info, input)),
    ).toBe(true);
    const unblinded = bytesToHex(hashToGroup(input).toBytes(true));

    const elements: string[] = [];
    for (let job = 0; job < 2; job++) {
      const calls = tokenCalls.length;
      const c = { ...claim(u, PROP, CERT, 'eq', [raw]), claimId: 'same-claim' };
      const { results } = await verify([c]);
      expect(results.get('same-claim')).toBe('yes');
      const mine = tokenCalls.slice(calls);
      expect(mine.length).toBe(1);
      const { request, bank } = mine[0]!;
      expect(request.body.elements.length).toBe(1);
      elements.push(request.body.elements[0]!.blinded);
      // What the custodian is sent, as text: no claimed value, raw or normalized, in any encoding we can think of.
      const text = JSON.stringify({ request, bank });
      const forms = [
        raw,
        norm,
        cert,
        fullWidth(cert, /[0-9()]/g),
        bytesToHex(ENC.encode(norm)),
        Buffer.from(norm).toString('base64'),
        bytesToHex(input),
        Buffer.from(input).toString('base64'),
        sha256Hex(ENC.encode(norm)),
        sha256Hex(input),
        cert.match(/第(\d+)号/)![1]!,
      ];
      for (const s of forms) expect(text.includes(s), s).toBe(false);
    }
    expect(elements[0]).not.toBe(elements[1]);
    for (const e of elements) expect(e).not.toBe(unblinded);
    // Across every request of this file: no element is the unblinded point of any true value we claimed.
    const known = new Set(
      [...property].flatMap(([s, p]) =>
        p.certs.map((x) => bytesToHex(hashToGroup(tokenInput(s, CERT, x)).toBytes(true))),
      ),
    );
    const all = tokenCalls.flatMap((t) => t.request.body.elements.map((x) => x.blinded));
    expect(all.length).toBeGreaterThan(300);
    expect(all.filter((x) => known.has(x))).toEqual([]);
    expect(new Set(all).size).toBe(all.length); // blinding is fresh for every element
  });

  it('bank: another key opens nothing; the result carries one answer per claim and no claimed or provider value', async () => {
    const u = WITH_PROPERTY[11]!;
    const { certs, holder } = property.get(u)!;
    const months = world.cell(TAX, u, 'months_continuous_tax')!;
    const margin = world.cell(TAX, u, 'net_margin_pct')!;
    const claims = [
      claim(u, PROP, CERT, 'eq', [`《${certs[0]!}》`]),
      claim(u, PROP, HOLDER, 'eq', [holder || HOLDERS[2]!]),
      claim(u, TAX, 'months_continuous_tax', 'eq', [months]),
      claim(u, TAX, 'net_margin_pct', 'between', ['-12.34', '56.78']),
      claim(u, TAX, 'tax_credit_grade', 'ne', ['M']),
      claim(NOCONSENT, TAX, 'months_continuous_tax', 'gte', ['0']),
    ];
    const { result, results } = await verify(claims);
    expect(mismatches(claims.slice(0, 5), results)).toEqual([]);
    expect([...results.keys()].sort()).toEqual(claims.map((c) => c.claimId).sort());

    expect(() => openVerifyResult(result, BANK, x25519KeyPair().secretKey)).toThrow(
      expect.objectContaining(coded('SH_ERR_SEALED_BOX')),
    );
    expect(() => openVerifyResult(result, OTHER_BANK, sh.wallet.require(OTHER_BANK, 'bank').x25519!.secretKey)).toThrow(
      expect.objectContaining(coded('SH_ERR_SEALED_BOX')),
    );
    expect(() => openVerifyResult(result, OTHER_BANK, sh.wallet.require(BANK, 'bank').x25519!.secretKey)).toThrow(
      expect.objectContaining(coded('SH_ERR_SEALED_BOX')),
    );
    expect(() =>
      openVerifyResult(
        { ...result, jobId: `${result.jobId}x` },
        BANK,
        sh.wallet.require(BANK, 'bank').x25519!.secretKey,
      ),
    ).toThrow(expect.objectContaining(coded('SH_ERR_SEALED_BOX')));

    // The shape is fixed: sealed boxes, where to read each numeric answer, and R per field. Nothing else.
    expect(Object.keys(result).sort()).toEqual(['boxes', 'direct', 'jobHash', 'jobId', 'numeric', 'ranges', 'type']);
    expect(Object.keys(result.direct).sort()).toEqual(['ct', 'epk', 'nonce', 'v']);
    for (const b of result.boxes)
      expect(Object.keys(b).sort()).toEqual(['block', 'datasetId', 'field', 'label', 'provider', 'round', 'sealed']);
    for (const n of result.numeric) expect(Object.keys(n).sort()).toEqual(['claimId', 'negate', 'parts']);
    const text = JSON.stringify(result);
    for (const s of [certs[0]!, holder, ...HOLDERS, '12.34', '56.78', margin].filter((s) => s.length >= 4))
      expect(text.includes(s), s).toBe(false);
    const leaves: unknown[] = [];
    const walk = (x: unknown, key = ''): void => {
      if (key === 'parts' || key === 'block' || key === 'round') return; // slot/box indexes, not values
      if (Array.isArray(x)) x.forEach((y) => walk(y));
      else if (x !== null && typeof x === 'object') for (const [k, y] of Object.entries(x)) walk(y, k);
      else leaves.push(x);
    };
    walk(result);
    const strs = leaves.filter((x): x is string => typeof x === 'string');
    for (const s of [months, margin, 'M', ...claims.flatMap((c) => c.values)]) expect(strs, s).not.toContain(s);
    expect(new Set(results.values())).toEqual(new Set([...claims.slice(0, 5).map(expected), 'refused:NO_CONSENT']));
    expect(result.boxes.length).toBeGreaterThan(0);
  });

  it('scan: no unkeyed hash (SHA-256/512, SHA-1, MD5, SHA3-256; hex, base64) of any USCC, id value or token input in the engine store', async () => {
    // A scoring job too, so its records are scanned as well.
    const MODEL = {
      id: 'tax-lin',
      kind: 'linear',
      intercept: '1',
      terms: [
        { provider: TAX, field: 'months_continuous_tax', weight: '0.01' },
        { provider: TAX, field: 'net_margin_pct', weight: '0.006' },
        { provider: TAX, field: 'vat_paid_12m', weight: '0.0012' },
      ],
    };
    sh.registerModel(BANK, MODEL);
    await sh.approveModel(TAX, MODEL.id);
    const scored = await sh.score(BANK, MODEL.id, PURPOSE, POOL.slice(0, 40));
    expect(scored.rows.filter((r) => r.status === 'OK').length).toBe(40);
    expect(
      (
        sh.engine.store.db
          .prepare("SELECT COUNT(*) AS n FROM jobs WHERE kind = 'verify' AND status = 'completed'")
          .get() as { n: number }
      ).n,
    ).toBeGreaterThan(5);

    // What to look for: every USCC; every id value as the provider wrote it (cell and parts), normalized, and as
    // claimed; the token input bytes of each.
    const strings = new Set<string>(ALL);
    const inputs: Uint8Array[] = [];
    for (const u of ALL) {
      for (const field of [CERT, HOLDER]) {
        const cell = world.cell(PROP, u, field);
        if (!cell) continue;
        strings.add(cell);
        for (const part of cell.split(';')) {
          const n = normalizeId(idRuleFor(field), part);
          strings.add(part).add(n);
          inputs.push(tokenInput(u, field, n));
        }
      }
    }
    for (const c of allClaims.filter((x) => x.field === CERT || x.field === HOLDER)) {
      for (const v of c.values) {
        let n: string;
        try {
          n = normalizeId(idRuleFor(c.field), v);
        } catch {
          continue;
        }
        strings.add(v).add(n);
        try {
          inputs.push(tokenInput(c.subject, c.field, n));
        } catch {
          /* a bad USCC of a refused claim */
        }
      }
    }
    const preimages = [...[...strings].map((s) => ENC.encode(s)), ...inputs];
    const hex = new Set<string>();
    const b64 = new Set<string>();
    const raw = new Map<number, Uint8Array[]>();
    for (const p of preimages) {
      for (const alg of ['sha256', 'sha512', 'sha1', 'md5', 'sha3-256']) {
        const d = createHash(alg).update(p).digest();
        hex.add(d.toString('hex'));
        b64.add(d.toString('base64')).add(d.toString('base64').replace(/=+$/, '')).add(d.toString('base64url'));
        const key = d.readUInt32BE(0);
        raw.set(key, [...(raw.get(key) ?? []), new Uint8Array(d)]);
      }
    }
    const hexLens = [...new Set([...hex].map((h) => h.length))];
    const b64Lens = [...new Set([...b64].map((h) => h.length))];
    const leaks: string[] = [];
    const scanText = (s: string, where: string) => {
      for (const m of s.matchAll(/[0-9a-fA-F]{32,}/g)) {
        const run = m[0].toLowerCase();
        for (const L of hexLens)
          for (let i = 0; i + L <= run.length; i++) if (hex.has(run.slice(i, i + L))) leaks.push(`hex in ${where}`);
      }
      for (const m of s.matchAll(/[A-Za-z0-9+/_-]{20,}={0,2}/g)) {
        const run = m[0];
        for (const L of b64Lens)
          for (let i = 0; i + L <= run.length; i++) if (b64.has(run.slice(i, i + L))) leaks.push(`base64 in ${where}`);
      }
    };
    /** No id value in clear either (USCCs are stored by design: the subject index). */
    const clearIds = [...strings].filter((v) => !ALL.includes(v) && [...v].length >= 8);
    const scanClear = (s: string, where: string) => {
      for (const v of clearIds) if (s.includes(v)) leaks.push(`clear id value in ${where}`);
    };
    /** For binary payloads: every certificate number and holder name contains one of these (UTF-8 and UTF-16LE). */
    const MARKERS = ['不动产权', '银行', '公司'].flatMap((m) => [Buffer.from(m, 'utf8'), Buffer.from(m, 'utf16le')]);
    const scanBytes = (b: Uint8Array, where: string) => {
      const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
      for (let i = 0; i + 16 <= b.length; i++) {
        const cands = raw.get(view.getUint32(i));
        if (cands?.some((d) => i + d.length <= b.length && d.every((x, j) => b[i + j] === x)))
          leaks.push(`raw digest in ${where} at ${i}`);
      }
      scanText(Buffer.from(b).toString('latin1'), where);
      scanText(Buffer.from(b).toString('utf8'), where);
      for (const m of MARKERS)
        if (Buffer.from(b.buffer, b.byteOffset, b.byteLength).indexOf(m) >= 0) leaks.push(`id text in ${where}`);
    };

    // The scanner finds what it looks for (upper-case hex, unpadded base64, raw bytes), then starts clean.
    const probe = createHash('sha256').update(ALL[0]!).digest();
    scanText(`x${probe.toString('hex').toUpperCase()}y`, 'probe');
    scanText(`"${createHash('md5').update(inputs[0]!).digest('base64').replace(/=+$/, '')}"`, 'probe');
    scanBytes(new Uint8Array([1, 2, 3, ...createHash('sha3-256').update(ALL[1]!).digest(), 4]), 'probe');
    scanBytes(Buffer.from(`{"v":"${property.values().next().value!.certs[0]}"}`), 'probe');
    expect(leaks).toEqual(['hex in probe', 'base64 in probe', 'raw digest in probe at 3', 'id text in probe']);
    leaks.length = 0;

    const db = sh.engine.store.db;
    const tables = (
      db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Array<{ name: string }>
    ).map((r) => r.name);
    expect(tables).toEqual(
      expect.arrayContaining(['tokens', 'verify_spend', 'jobs', 'ledger_entries', 'consents', 'dataset_subjects']),
    );
    let cells = 0;
    for (const name of tables) {
      for (const row of db.prepare(`SELECT * FROM "${name}"`).all() as Array<Record<string, unknown>>) {
        for (const [col, v] of Object.entries(row)) {
          cells++;
          if (typeof v === 'string') {
            scanText(v, `${name}.${col}`);
            scanClear(v, `${name}.${col}`);
          } else if (v instanceof Uint8Array) scanBytes(v, `${name}.${col}`);
        }
      }
    }
    // Every blob file. (`<home>/wallet` is the parties' own storage — keys, the providers' tables, custodian logs —
    // which the engine never opens; it is not part of the engine store and is not scanned.)
    let files = 0;
    let bytes = 0;
    const walkDir = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) walkDir(p);
        else {
          const b = readFileSync(p);
          files++;
          bytes += b.length;
          scanBytes(b, p.slice(home.length));
        }
      }
    };
    walkDir(join(home, 'blobs'));
    console.log(
      `scan: ${preimages.length} preimages × 5 hashes; ${tables.length} tables, ${cells} cells; ${files} blob files, ${(bytes / 1e6).toFixed(1)} MB; leaks: ${leaks.length}`,
    );
    expect(files).toBeGreaterThan(5);
    expect(leaks).toEqual([]);
  });
});

// ---------------------------------------------------------------- 7. ledger

describe('verify: ledger', () => {
  it('verifies; the access report lists verify jobs; custodian request/response entries per batch and block', async () => {
    const u = WITH_PROPERTY[13]!;
    const claims = [
      claim(u, PROP, CERT, 'eq', [property.get(u)!.certs[0]!]),
      claim(u, PROP, HOLDER, 'eq', [HOLDERS[3]!]),
      claim(u, TAX, 'months_continuous_tax', 'gte', ['12']),
      claim(u, TAX, 'net_margin_pct', 'between', ['-10', '10']),
      claim(u, TAX, 'net_margin_pct', 'lte', ['0']), // same slot again: a second round
      claim(NOCONSENT, TAX, 'months_continuous_tax', 'gte', ['12']),
    ];
    const { jobId, result } = await verify(claims);
    expect(sh.engine.auditVerify()).toMatchObject({ ok: true });

    for (const s of [u, NOCONSENT]) {
      const access = sh.engine.ledger.subjectEntries(s);
      expect(
        access.filter((e) => e.kind === 'job.requested').map((e) => e.body.jobId),
        s,
      ).toContain(jobId);
    }
    const entries = ledgerOf(jobId);
    expect(entries.map((e) => e.kind)).toEqual(
      expect.arrayContaining([
        'job.requested',
        'verify.budget_used',
        'custodian.request',
        'custodian.response',
        'job.completed',
      ]),
    );
    const req = entries.filter((e) => e.kind === 'custodian.request');
    const res = entries.filter((e) => e.kind === 'custodian.response');
    // One per token batch (one per (provider, field) here) and one per sign box (field, block, round).
    expect(
      req
        .filter((e) => e.body.mode === 'oprf')
        .map((e) => e.body.label)
        .sort(),
    ).toEqual([`verify/${PROP}/${CERT}/tokens/0`, `verify/${PROP}/${HOLDER}/tokens/0`].sort());
    expect(
      req
        .filter((e) => e.body.mode === 'sign')
        .map((e) => e.body.label)
        .sort(),
    ).toEqual(result.boxes.map((b) => b.label).sort());
    // net_margin_pct: between (2 comparisons) + lte (1) at one slot → 3 rounds.
    expect(result.boxes.map((b) => `${b.field}/${b.round}`).sort()).toEqual([
      'months_continuous_tax/0',
      'net_margin_pct/0',
      'net_margin_pct/1',
      'net_margin_pct/2',
    ]);
    expect(res.map((e) => e.body.label).sort()).toEqual(req.map((e) => e.body.label).sort());
    // Logged on both sides: every request hash is in the custodian's own log.
    const logs = [TAX, PROP].map((p) => readFileSync(join(sh.wallet.providerDir(p), 'custodian.log'), 'utf8')).join('');
    for (const e of req) expect(logs.includes(e.body.requestHash as string), e.body.label as string).toBe(true);
    const completed = entries.find((e) => e.kind === 'job.completed')!;
    expect(completed.body.ranges).toEqual(result.ranges);
  });
});

// ---------------------------------------------------------------- block boundaries

describe('verify: block boundaries (8200 subjects, two blocks)', () => {
  const UTIL = 'power_water';
  const UTIL_SCHEMA = {
    category: 'utilities',
    fields: [{ name: 'utility_arrears_months' }, { name: 'utility_arrears' }],
  };
  let edge: string[];

  beforeAll(async () => {
    const r = seededRng(8192);
    const big = distinctUsccs(8200, r, new Set(ALL));
    const fields = validateSchema(UTIL_SCHEMA).fields;
    const cellOf = (f: FieldSpec, i: number) =>
      i === 8191 ? boundCell(f, 'max') : i === 8192 ? boundCell(f, 'min') : randomCell(f, r);
    const t: PlainTable = {
      provider: UTIL,
      schema: UTIL_SCHEMA,
      csv: buildCsv(
        fields.map((f) => f.name),
        big.map((u, i) => ({ uscc: u, cells: Object.fromEntries(fields.map((f) => [f.name, cellOf(f, i)])) })),
      ),
    };
    world.add(t);
    await sh.addParty('provider', UTIL);
    const ds = await sh.ingest(UTIL, t.schema, t.csv);
    expect(ds.blocks).toBe(2);
    edge = [big[0]!, big[8191]!, big[8192]!, big[8199]!];
    sh.grantConsents(edge.map((u) => grant(u, { categories: ['utilities'] })));
  });

  it('subjects at slots 0 and 8191 of block 0 and 0 and 7 of block 1: each answer is read from its own block', async () => {
    const claims: Claim[] = [];
    for (const u of edge) {
      const months = spec2(UTIL, 'utility_arrears_months');
      const x = encodeValue(months, world.cell(UTIL, u, months.name)!)!;
      for (const cb of combosFor(months).filter((_, k) => k % 5 === edge.indexOf(u))) {
        const values = cb.kinds.map((k) => threshold(months, x, k));
        if (values.every((v) => v !== undefined)) claims.push(claim(u, UTIL, months.name, cb.op, values as string[]));
      }
      claims.push(
        claim(u, UTIL, 'utility_arrears', 'eq', [world.cell(UTIL, u, 'utility_arrears')!]),
        claim(u, UTIL, 'utility_arrears', 'ne', ['true']),
      );
    }
    const before = views.length;
    const { results, result } = await verify(claims);
    expect(mismatches(claims, results)).toEqual([]);
    expect(new Set(result.boxes.map((b) => b.block))).toEqual(new Set([0, 1]));
    expect(new Set(views.slice(before).map((v) => v.label.split('/')[5]))).toEqual(new Set(['0', '1']));
    const ds = sh.engine.datasets.withField(UTIL, 'utility_arrears')!;
    const slots = sh.engine.datasets.subjectSlots(ds.id, edge);
    expect(edge.map((u) => [slots.get(u)!.block, slots.get(u)!.slot])).toEqual([
      [0, 0],
      [0, 8191],
      [1, 0],
      [1, 7],
    ]);
    for (const n of result.numeric) {
      const c = claims.find((x) => x.claimId === n.claimId)!;
      const sl = slots.get(c.subject)!;
      for (const [box, slot] of n.parts)
        expect([result.boxes[box]!.block, result.boxes[box]!.field, slot]).toEqual([sl.block, c.field, sl.slot]);
    }
    console.log(
      `block boundaries: ${claims.length} claims, ${result.boxes.length} sign boxes over blocks ${[...new Set(result.boxes.map((b) => b.block))].join(', ')}`,
    );
  });
});

// ---------------------------------------------------------------- bound calculator

describe('verify: the bound calculator refuses before any work', () => {
  const SI = 'social_security';
  // A provider-defined field so wide that no R ≥ 2 keeps |r·(x−c) + r'| < t/2: (0..10^10 yuan at 0.01) = 10^12 units.
  const SI_SCHEMA = {
    category: 'social_insurance',
    fields: [
      { name: 'si_contributors' },
      {
        name: 'si_registered_capital',
        label: '注册资本',
        type: 'decimal',
        decimals: 2,
        min: '0',
        max: '10000000000',
        class: 'AUTH_QUERY',
        unit: '元',
      },
    ],
  };
  const subjects = () => [POOL[20]!, POOL[21]!];

  beforeAll(async () => {
    const fields = validateSchema(SI_SCHEMA).fields;
    const t: PlainTable = {
      provider: SI,
      schema: SI_SCHEMA,
      csv: buildCsv(
        fields.map((f) => f.name),
        subjects().map((u, i) => ({
          uscc: u,
          cells: { si_contributors: String(10 + i), si_registered_capital: '5000000.5' },
        })),
      ),
    };
    world.add(t);
    await sh.addParty('provider', SI);
    await sh.ingest(SI, t.schema, t.csv);
    sh.grantConsents(subjects().map((u) => grant(u, { categories: ['social_insurance', 'property'] })));
  });

  it('a field whose range leaves R < minComparisonR: SH_ERR_BOUND_OVERFLOW, no job, no budget spent, no custodian call', async () => {
    const u = subjects()[0]!;
    expect(() => comparisonRange(sh.engine, spec2(SI, 'si_registered_capital'))).toThrow(
      expect.objectContaining(coded('SH_ERR_BOUND_OVERFLOW')),
    );
    const claims = [
      claim(u, PROP, CERT, 'eq', [property.get(u)?.certs[0] ?? fakeCert()]),
      claim(u, SI, 'si_contributors', 'gte', ['10']),
      claim(u, SI, 'si_registered_capital', 'gte', ['1000000']),
    ];
    const { signed, openings } = buildVerifyRequest(
      {
        jobId: sh.engine.jobs.newId('verify'),
        bank: BANK,
        purpose: PURPOSE,
        claims,
        requestedAt: sh.engine.now().toISOString(),
      },
      sh.wallet.require(BANK, 'bank').ed25519.secretKey,
    );
    const before = {
      counts: storeCounts(sh),
      views: views.length,
      calls: tokenCalls.length,
      budget: sh.engine.store.db.prepare('SELECT * FROM verify_spend').all(),
    };
    await expect(runVerifyJob(sh.engine, signed, openings)).rejects.toMatchObject(coded('SH_ERR_BOUND_OVERFLOW'));
    expect({
      counts: storeCounts(sh),
      views: views.length,
      calls: tokenCalls.length,
      budget: sh.engine.store.db.prepare('SELECT * FROM verify_spend').all(),
    }).toEqual(before);
    // Without the wide field the same claims run.
    const { results } = await verify(claims.slice(0, 2));
    expect(mismatches(claims.slice(0, 2), results)).toEqual([]);
  });
});

// ---------------------------------------------------------------- 2b. budgets (reopened with 2 units per window)

describe('verify: budget per bank group, subject and field over a sliding window; a claim costs what it answers', () => {
  beforeAll(async () => {
    await sh.close();
    sh = await open({ verifyUnitsPerWindow: 2, tokenEvaluationsPerWindow: 2 });
    installWrapper();
  });
  const spent = (subjects: string[]) =>
    (
      sh.engine.store.db
        .prepare(
          `SELECT subject, provider, field, SUM(units) AS used FROM verify_spend WHERE bank_group = ? AND subject IN (${subjects.map(() => '?').join(', ')}) GROUP BY subject, provider, field ORDER BY subject, provider, field`,
        )
        .all(BANK, ...subjects) as Array<Record<string, unknown>>
    ).map((r) => ({ ...r }));

  it('over_budget across two jobs and within one job; gte/lte cost 1, eq/ne/between 2, a token claim one per value; verify.budget_exceeded with SH_ERR_VERIFY_BUDGET', async () => {
    const A = BUDGET_A;
    const B = BUDGET_B;
    const m = (u: string) => world.cell(TAX, u, 'months_continuous_tax')!;
    const certA = property.get(A)?.certs[0] ?? fakeCert();
    const job1 = [
      claim(A, TAX, 'months_continuous_tax', 'gte', ['0']), // 1 unit
      claim(B, TAX, 'months_continuous_tax', 'eq', [m(B)]), // 2 units: B's budget for the field is spent
    ];
    const r1 = await verify(job1);
    expect([...job1.map((c) => r1.results.get(c.claimId))]).toEqual(['yes', 'yes']);

    const calls = tokenCalls.length;
    const job2 = [
      claim(A, TAX, 'months_continuous_tax', 'lte', ['120']), // A's 2nd unit: answered
      claim(A, TAX, 'months_continuous_tax', 'ne', [m(A)]), // 2 more: over (across jobs)
      claim(A, TAX, 'net_margin_pct', 'gte', ['-100']), // another field: its own budget
      claim(A, PROP, CERT, 'eq', [certA]), // a token claim: 1 unit
      claim(A, PROP, CERT, 'in', [fakeCert(), certA]), // two values, 2 units: over within the job, never sent
      claim(A, PROP, CERT, 'eq', [certA]), // the field's 2nd unit
      claim(B, TAX, 'months_continuous_tax', 'gte', ['0']), // over: B's eq cost 2
      claim(B, TAX, 'net_margin_pct', 'between', ['-100', '100']), // 2 units on another field
      claim(NOCONSENT, TAX, 'months_continuous_tax', 'gte', ['0']), // refused before the budget is looked at
    ];
    const r2 = await verify(job2);
    const has = property.has(A) ? 'yes' : 'no_data';
    const want2 = ['yes', 'over_budget', 'yes', has, 'over_budget', has, 'over_budget', 'yes', 'refused:NO_CONSENT'];
    expect(job2.map((c) => r2.results.get(c.claimId))).toEqual(want2);
    const sent = tokenCalls.slice(calls).flatMap((t) => t.request.body.elements.map((e) => e.claimId));
    expect(sent).not.toContain(job2[4]!.claimId);
    expect(r2.result.numeric.map((n) => n.claimId)).not.toContain(job2[1]!.claimId);

    const job3 = [
      claim(A, TAX, 'months_continuous_tax', 'gte', ['1']),
      claim(A, TAX, 'net_margin_pct', 'lte', ['100']),
    ];
    const r3 = await verify(job3);
    expect(job3.map((c) => r3.results.get(c.claimId))).toEqual(['over_budget', 'yes']);

    const exceeded = [r1, r2, r3].map((r) =>
      ledgerOf(r.jobId)
        .filter((e) => e.kind === 'verify.budget_exceeded')
        .map((e) => e.body),
    );
    expect(exceeded[0]).toEqual([]);
    expect(exceeded[1]).toEqual([
      expect.objectContaining({
        code: 'SH_ERR_VERIFY_BUDGET',
        claims: [job2[1]!.claimId, job2[4]!.claimId, job2[6]!.claimId],
      }),
    ]);
    expect(exceeded[2]).toEqual([
      expect.objectContaining({ code: 'SH_ERR_VERIFY_BUDGET', claims: [job3[0]!.claimId] }),
    ]);
    // The job's units and window are in the ledger.
    const used2 = ledgerOf(r2.jobId).find((e) => e.kind === 'verify.budget_used')!.body;
    expect(used2).toMatchObject({ units: 1 + 1 + 1 + 1 + 2, window: { days: 30 } });
    expect(sh.engine.ledger.subjectEntries(A).filter((e) => e.kind === 'verify.budget_exceeded').length).toBe(2);

    const want = [
      { subject: A, provider: PROP, field: CERT, used: 2 },
      { subject: A, provider: TAX, field: 'months_continuous_tax', used: 2 },
      { subject: A, provider: TAX, field: 'net_margin_pct', used: 2 },
      { subject: B, provider: TAX, field: 'months_continuous_tax', used: 2 },
      { subject: B, provider: TAX, field: 'net_margin_pct', used: 2 },
    ].sort((x, y) => (x.subject + x.provider + x.field < y.subject + y.provider + y.field ? -1 : 1));
    expect(spent([A, B, NOCONSENT])).toEqual(want);
    // The honest engine refused first, so no custodian had to.
    expect([r1, r2, r3].flatMap((r) => ledgerOf(r.jobId).filter((e) => e.kind === 'verify.custodian_refused'))).toEqual(
      [],
    );
    // Another bank's budget for the same subject and field is its own (it is refused here for lack of consent, not budget).
    const other = await verify([claim(A, TAX, 'months_continuous_tax', 'gte', ['0'])], OTHER_BANK);
    expect([...other.results.values()]).toEqual(['refused:NO_CONSENT']);
    expect(sh.engine.auditVerify()).toMatchObject({ ok: true });
  });
  it('two jobs started together share one budget', async () => {
    const mk = () => [
      claim(SPARE, TAX, 'tax_arrears', 'eq', ['true']),
      claim(SPARE, TAX, 'tax_arrears', 'eq', ['false']),
    ];
    const [j1, j2] = await Promise.all([verify(mk()), verify(mk())]);
    // Each eq costs 2: one claim of the first job is answered, everything else is over budget.
    const answers = [...j1.results.values(), ...j2.results.values()];
    expect(answers.filter((a) => a === 'over_budget')).toHaveLength(3);
    expect(answers.filter((a) => a === 'yes' || a === 'no')).toHaveLength(1);
    expect(spent([SPARE])).toEqual([{ subject: SPARE, provider: TAX, field: 'tax_arrears', used: 2 }]);
  });
});
