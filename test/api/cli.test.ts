/**
 * The CLI contract, end to end through `node api/bin/safehouse.js` on a temporary data directory: the example files
 * score exactly like the plaintext reference, failures exit non-zero with a coded error on stderr, and a tampered
 * ledger makes `audit verify` fail.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { parseCsv } from '../../core/csv.ts';
import { parseModel } from '../../models/model.ts';
import { evaluatePlain, claimPlain } from '../../models/plain.ts';
import { normalizeId, idRuleFor } from '../../engine/tokens/normalize.ts';
import { validateSchema, type FieldSpec } from '../../sandbox/catalog.ts';

const BIN = join(import.meta.dirname, '..', '..', 'api', 'bin', 'safehouse.js');
const EX = join(import.meta.dirname, '..', '..', 'examples');
let home: string;

function sh(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args, '--home', home], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

beforeAll(() => {
  home = mkdtempSync(join(tmpdir(), 'sh-cli-'));
});
afterAll(() => rmSync(home, { recursive: true, force: true }));

describe('safehouse CLI (embedded mode)', () => {
  it('refuses to work on an uninitialized home', () => {
    const r = sh('audit', 'verify');
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/^SH_ERR_HOME_NOT_INITIALIZED: /);
  });

  it('runs the README walkthrough and matches the plaintext scorecard', () => {
    expect(sh('init').code).toBe(0);
    for (const [role, id] of [
      ['bank', 'bank_icbc_sz'],
      ['auditor', 'auditor_pboc'],
      ['provider', 'sz_tax_bureau'],
      ['provider', 'sz_power_water'],
      ['provider', 'sz_housing_fund'],
      ['provider', 'sz_property_registry'],
    ]) {
      const r = sh('party', 'add', '--role', role!, '--id', id!);
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
    }
    const providers = {
      tax: 'sz_tax_bureau',
      utilities: 'sz_power_water',
      housing_fund: 'sz_housing_fund',
      property: 'sz_property_registry',
    } as const;
    for (const [cat, p] of Object.entries(providers)) {
      expect(
        sh(
          'provider',
          'ingest',
          '--provider',
          p,
          '--schema',
          join(EX, `${cat}.schema.json`),
          '--csv',
          join(EX, `${cat}.csv`),
        ).code,
      ).toBe(0);
    }
    expect(sh('consent', 'grant', '--file', join(EX, 'consents.csv')).code).toBe(0);
    const subjects = readFileSync(join(EX, 'subjects.txt'), 'utf8').trim().split('\n');
    expect(sh('consent', 'revoke', '--subject', subjects[1]!, '--bank', 'bank_icbc_sz').code).toBe(0);
    expect(sh('model', 'register', '--bank', 'bank_icbc_sz', '--file', join(EX, 'scorecard.json')).code).toBe(0);
    // Scoring before every provider approved is refused.
    const out = join(home, 'scores.csv');
    const early = sh(
      'score',
      '--bank',
      'bank_icbc_sz',
      '--model',
      'sme-scorecard-v1',
      '--purpose',
      'sme_credit_line',
      '--subjects',
      join(EX, 'subjects.txt'),
      '--out',
      out,
    );
    expect(early.code).not.toBe(0);
    expect(early.err).toMatch(/^SH_ERR_MODEL_NOT_APPROVED: /);
    for (const p of ['sz_tax_bureau', 'sz_power_water', 'sz_housing_fund'])
      expect(sh('model', 'approve', '--provider', p, '--model', 'sme-scorecard-v1').code).toBe(0);
    const r = sh(
      'score',
      '--bank',
      'bank_icbc_sz',
      '--model',
      'sme-scorecard-v1',
      '--purpose',
      'sme_credit_line',
      '--subjects',
      join(EX, 'subjects.txt'),
      '--out',
      out,
    );
    expect(r.code).toBe(0);

    // Plaintext reference on the same files.
    const spec = parseModel(JSON.parse(readFileSync(join(EX, 'scorecard.json'), 'utf8')));
    const fields = new Map<string, FieldSpec>();
    const cells = new Map<string, Map<string, Map<string, string>>>();
    for (const [cat, p] of Object.entries(providers)) {
      for (const f of validateSchema(JSON.parse(readFileSync(join(EX, `${cat}.schema.json`), 'utf8'))).fields)
        fields.set(`${p}/${f.name}`, f);
      const csv = parseCsv(readFileSync(join(EX, `${cat}.csv`), 'utf8'));
      cells.set(p, new Map(csv.rows.map((row) => [row[0]!, new Map(csv.header.map((h, i) => [h, row[i]!]))])));
    }
    const consented = new Set(parseCsv(readFileSync(join(EX, 'consents.csv'), 'utf8')).rows.map((row) => row[0]!));
    const got = parseCsv(readFileSync(out, 'utf8'));
    expect(got.header).toEqual(['uscc', 'status', 'score']);
    expect(got.rows.length).toBe(subjects.length);
    for (const [uscc, status, score] of got.rows) {
      const want = uscc === subjects[1] ? 'REVOKED' : consented.has(uscc!) ? 'OK' : 'NO_CONSENT';
      expect(status).toBe(want);
      if (status !== 'OK') {
        expect(score).toBe('');
        continue;
      }
      const e = evaluatePlain(
        spec,
        (p, f) => fields.get(`${p}/${f}`)!,
        (p, f) => (cells.get(p)!.has(uscc!) ? (cells.get(p)!.get(uscc!)!.get(f) ?? '') : undefined),
      );
      expect(e).toEqual({ status: 'OK', score });
    }

    // Verification (数据核验) of the example claims, against the plaintext predicate on the same CSVs.
    const results = join(home, 'results.csv');
    const v = sh(
      'verify',
      '--bank',
      'bank_icbc_sz',
      '--purpose',
      'sme_credit_line',
      '--claims',
      join(EX, 'claims.csv'),
      '--out',
      results,
    );
    expect(v.err).not.toMatch(/SH_ERR/);
    expect(v.code).toBe(0);
    const claims = parseCsv(readFileSync(join(EX, 'claims.csv'), 'utf8'));
    const answers = new Map(parseCsv(readFileSync(results, 'utf8')).rows.map(([id, r]) => [id!, r!]));
    expect(answers.size).toBe(claims.rows.length);
    const seen = new Set<string>();
    for (const [id, uscc, provider, field, op, value, value2] of claims.rows) {
      const values = op === 'in' ? value!.split(';') : op === 'between' ? [value!, value2!] : [value!];
      const f = fields.get(`${provider}/${field}`)!;
      const want =
        uscc === subjects[1]
          ? 'refused:REVOKED'
          : !consented.has(uscc!)
            ? 'refused:NO_CONSENT'
            : claimPlain(f, cells.get(provider!)!.get(uscc!)?.get(field!), op as 'eq', values, (x) =>
                normalizeId(idRuleFor(field!), x),
              );
      expect(answers.get(id!), `claim ${id} ${op} ${values.join('|')}`).toBe(want);
      seen.add(answers.get(id!)!);
    }
    expect(seen.has('yes') && seen.has('no')).toBe(true);

    const audit = sh('audit', 'verify');
    expect(audit.code).toBe(0);
    expect(audit.out).toMatch(/ledger intact: \d+ entries/);
  });

  it('exits non-zero with a coded error for bad input and changes nothing', () => {
    const before = sh('audit', 'verify').out;
    const bad = join(home, 'bad.csv');
    writeFileSync(bad, 'uscc,tax_credit_grade\n91350100M000100Y44,A\n');
    const r = sh(
      'provider',
      'ingest',
      '--provider',
      'sz_tax_bureau',
      '--schema',
      join(EX, 'tax.schema.json'),
      '--csv',
      bad,
    );
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/^SH_ERR_(USCC_CHECK|CSV_MALFORMED): /);
    expect(sh('party', 'add', '--role', 'wizard', '--id', 'x').err).toMatch(/^SH_ERR_INVALID_ARGUMENT: /);
    expect(sh('frobnicate').err).toMatch(/^SH_ERR_INVALID_ARGUMENT: unknown command/);
    expect(sh('audit', 'verify').out).toBe(before);
  });

  it('audit verify fails and names the entry when the ledger is tampered', () => {
    const db = new DatabaseSync(join(home, 'engine.db'));
    db.prepare(
      "UPDATE ledger_entries SET body = replace(body, 'sme_credit_line', 'sme_credit_lint') WHERE idx = (SELECT MIN(idx) FROM ledger_entries WHERE kind = 'consent.granted')",
    ).run();
    db.close();
    const r = sh('audit', 'verify');
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/^SH_ERR_LEDGER_TAMPERED: ledger check failed at entry \d+/);
  });
});
