/**
 * The attacks' world (test/attacks/): a tax bureau whose table holds the demo's tax fields plus a VERIFY_ONLY amount
 * of 0…100 000 (a value a bank may only ask yes/no questions about), the demo's property registry (token fields), a
 * hostile bank group — two identities of one legal entity — with every subject's consent, and an unrelated bank.
 * Every attack runs through the embedded mode's public methods (what a bank, a provider or the platform operator can
 * call), never by reaching into the engine, except where the test plays the platform operator itself and says so.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Safehouse } from '../../api/embedded.ts';
import { generateDemo } from '../../api/demo-data.ts';
import { mulberry32 } from '../../core/rng.ts';
import type { Policy } from '../../sandbox/policy.ts';
import { replayJob, type ReplayReport } from '../../engine/audit/replay.ts';
import { centered } from '../../core/fixed.ts';
import { openSealed } from '../../core/sealbox.ts';
import { deriveMaskKey, maskVector } from '../../engine/he/mask.ts';
import type { ScoreResult } from '../../engine/protocols/score/messages.ts';

export const TAX = 'attack_tax_bureau';
export const PROPERTY = 'sz_property_registry';
/** The hostile bank and a second identity of the same legal entity (its branch). */
export const BANK = 'bank_hostile';
export const BRANCH = 'bank_hostile_branch';
export const GROUP = 'hostile_group';
export const PURPOSE = 'sme_credit_line';
/** VERIFY_ONLY, 0 … 100 000 (17 bits): the value the verification attacks try to pin. */
export const SECRET = 'arrears_amount';
export const AUDITOR = 'auditor_attacks';

export const TAX_SCHEMA = {
  category: 'tax',
  fields: [
    { name: 'vat_paid_12m' },
    { name: 'cit_paid_12m' },
    { name: 'taxable_sales_12m' },
    { name: 'months_continuous_tax' },
    { name: 'tax_arrears' },
    { name: 'tax_penalties_3y' },
    { name: SECRET, label: '欠税金额', type: 'int', decimals: 0, min: '0', max: '100000', class: 'VERIFY_ONLY' },
  ],
};

export interface World {
  sh: Safehouse;
  home: string;
  subjects: string[];
  /** The tax bureau's true values (what every attack tries to recover), as numbers. */
  tax: Map<string, Record<string, number>>;
  /** Each subject's property certificate numbers. */
  certs: Map<string, string[]>;
  close(): Promise<void>;
}

export async function openWorld(opts: { subjects?: number; policy?: Partial<Policy> } = {}): Promise<World> {
  const n = opts.subjects ?? 300;
  const home = mkdtempSync(join(tmpdir(), 'sh-attack-'));
  const sh = await Safehouse.open({ home, create: true, poolSize: 2, ...(opts.policy ? { policy: opts.policy } : {}) });
  const demo = generateDemo(n);
  const rnd = mulberry32(7);
  const tax = new Map<string, Record<string, number>>();
  const rows = ['uscc,' + TAX_SCHEMA.fields.map((f) => f.name).join(',')];
  for (const u of demo.subjects) {
    const r = {
      vat_paid_12m: Math.round(rnd() * 5_000_00) / 100,
      cit_paid_12m: Math.round(rnd() * 2_000_00) / 100,
      taxable_sales_12m: Math.round(rnd() * 80_000_00) / 100,
      months_continuous_tax: Math.floor(rnd() * 121),
      tax_arrears: rnd() < 0.2 ? 1 : 0,
      tax_penalties_3y: Math.floor(rnd() * 5),
      [SECRET]: Math.floor(rnd() * 100_001),
    };
    tax.set(u, r);
    rows.push(
      [
        u,
        r.vat_paid_12m.toFixed(2),
        r.cit_paid_12m.toFixed(2),
        r.taxable_sales_12m.toFixed(2),
        r.months_continuous_tax,
        r.tax_arrears ? 'true' : 'false',
        r.tax_penalties_3y,
        r[SECRET],
      ].join(','),
    );
  }
  await sh.addParty('bank', BANK, { group: GROUP });
  await sh.addParty('bank', BRANCH, { group: GROUP });
  await sh.addParty('bank', 'bank_unrelated');
  await sh.addParty('auditor', AUDITOR);
  await sh.addParty('provider', TAX);
  await sh.addParty('provider', PROPERTY);
  await sh.ingest(TAX, TAX_SCHEMA, rows.join('\n') + '\n');
  await sh.ingest(PROPERTY, demo.providers.property.schema, demo.providers.property.csv);
  const grants = [BANK, BRANCH, 'bank_unrelated'].flatMap((bank) =>
    demo.subjects.map((subject) => ({
      subject,
      bank,
      purpose: PURPOSE,
      categories: ['tax', 'property'],
      operations: ['score' as const, 'verify' as const, 'train' as const],
      days: 365,
    })),
  );
  sh.grantConsents(grants);
  const certs = new Map([...demo.property].map(([u, p]) => [u, p.certs]));
  return {
    sh,
    home,
    subjects: demo.subjects,
    tax,
    certs,
    close: async () => {
      await sh.close();
      rmSync(home, { recursive: true, force: true });
    },
  };
}

/** The auditor's replay of a job: every step must match (refusals and recorded noise included). */
export async function replay(sh: Safehouse, jobId: string): Promise<ReplayReport> {
  const k = sh.wallet.require(AUDITOR, 'auditor');
  return replayJob(sh.engine, jobId, { id: AUDITOR, x25519SecretKey: k.x25519!.secretKey });
}

/** The error code a call fails with (undefined when it succeeds). */
export async function codeOf(f: () => unknown): Promise<string | undefined> {
  try {
    await f();
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

/** A linear model over the tax bureau's fields. */
export function linear(id: string, weights: Record<string, string>) {
  return {
    id,
    kind: 'linear' as const,
    intercept: '0',
    terms: Object.entries(weights).map(([field, weight]) => ({ provider: TAX, field, weight })),
  };
}

/** Play the operator: capture the job seed the engine draws, so every slot's mask can be derived. */
export function captureSeeds(w: World): Uint8Array[] {
  const seeds: Uint8Array[] = [];
  const jobs = w.sh.engine.jobs as unknown as { newSeed(): Uint8Array };
  const draw = jobs.newSeed.bind(jobs);
  jobs.newSeed = () => {
    const s = draw();
    seeds.push(s.slice());
    return s;
  };
  return seeds;
}

/** What bank + operator read from every slot of every box: centered(v + m − m) = Σ w·x of the slot's row. */
export function readEverySlot(w: World, bank: string, result: ScoreResult, seed: Uint8Array): Map<number, bigint> {
  const t = BigInt(result.t);
  const k = w.sh.wallet.require(bank, 'bank');
  const out = new Map<number, bigint>();
  for (const b of result.boxes) {
    const bytes = new Uint8Array(
      openSealed(k.x25519!.secretKey, b.sealed, {
        jobId: result.jobId,
        jobHash: result.jobHash,
        provider: b.provider,
        label: b.label,
        mode: 'seal',
        recipient: bank,
      }),
    );
    const v = new BigUint64Array(bytes.buffer, 0, bytes.length / 8);
    const m = maskVector(deriveMaskKey(seed, `${result.jobId}/${b.label}`), t, v.length);
    for (let i = 0; i < v.length; i++) out.set(b.block * v.length + i, centered((v[i]! - m[i]! + t) % t, t));
  }
  return out;
}

/** The true Σ w·x at scale 10^8 (weights ·10^6, amounts ·10^2) for subject `u` of the tax table. */
export function truth(w: World, weights: Record<string, string>, u: string): bigint {
  const t = w.tax.get(u)!;
  let s = 0n;
  for (const [f, wt] of Object.entries(weights))
    s += BigInt(Math.round(Number(wt) * 1e6)) * BigInt(Math.round(t[f]! * 100));
  return s;
}
