/**
 * The CLI's input files, outputs and checks on a real data directory: a bad row of consents.csv, claims.csv,
 * labels.csv or a subjects file is named by file and line before anything changes; `--out` never overwrites an
 * existing file without `--force`; the access report has a sensible line for every entry kind an enterprise meets;
 * `audit replay` exits 1 when a step is `missing` (an auditor registered after a job has no escrow for it).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { snapshot } from '../fixtures/files.ts';

const BIN = join(import.meta.dirname, '..', '..', 'api', 'bin', 'safehouse.js');
const EX = join(import.meta.dirname, '..', '..', 'examples');
const BANK = 'bank_icbc_sz';
const SUBJECT = '91440106096544255B';
let home: string;
let files: string;

function sh(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args, '--home', home], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** A refused input: exit 2, the coded error, the data directory unchanged. */
function refused(args: string[], code: string): string {
  const before = snapshot(home);
  const r = sh(...args);
  expect(r.code, r.err).toBe(2);
  expect(r.err).toMatch(new RegExp(`^${code}: `));
  expect(snapshot(home)).toEqual(before);
  return r.err;
}

function file(name: string, text: string): string {
  const p = join(files, name);
  writeFileSync(p, text);
  return p;
}

const verifyArgs = (claims: string, out: string) => [
  'verify',
  '--bank',
  BANK,
  '--purpose',
  'sme_credit_line',
  '--claims',
  claims,
  '--out',
  out,
];

beforeAll(() => {
  home = mkdtempSync(join(tmpdir(), 'sh-cli-inputs-'));
  files = mkdtempSync(join(tmpdir(), 'sh-cli-inputs-files-'));
  expect(sh('init').code).toBe(0);
  for (const [role, id] of [
    ['bank', BANK],
    ['auditor', 'auditor_pboc'],
    ['provider', 'sz_tax_bureau'],
  ])
    expect(sh('party', 'add', '--role', role!, '--id', id!).code).toBe(0);
  const ingest = sh(
    'provider',
    'ingest',
    '--provider',
    'sz_tax_bureau',
    '--schema',
    join(EX, 'tax.schema.json'),
    '--csv',
    join(EX, 'tax.csv'),
  );
  expect(ingest.err).toBe('');
});
afterAll(() => {
  rmSync(home, { recursive: true, force: true });
  rmSync(files, { recursive: true, force: true });
});

describe('input files: errors name the file and the line, and change nothing', () => {
  it('consents.csv: a bad category on line 3 lists the catalog ids; a bad USCC, days or header too', () => {
    const header = 'uscc,bank,purpose,categories,ops,days\n';
    const ok = `${SUBJECT},${BANK},sme_credit_line,tax,score;verify,365\n`;
    const bad = file('consents.csv', header + ok + `91610113175132523Q,${BANK},sme_credit_line,taxes,score,365\n`);
    const err = refused(['consent', 'grant', '--file', bad], 'SH_ERR_CONSENT_INVALID');
    expect(err).toContain(`${bad}:3: "categories[0]" expected one of the catalog's category ids (tax, utilities,`);
    expect(err).toContain('got "taxes"');
    const uscc = file('consents-uscc.csv', header + `9144010609654425XB,${BANK},p,tax,score,365\n`);
    expect(refused(['consent', 'grant', '--file', uscc], 'SH_ERR_USCC_CHECK')).toContain(`${uscc}:2: `);
    const days = file('consents-days.csv', header + ok + ok.replace(',365', ',-5'));
    expect(refused(['consent', 'grant', '--file', days], 'SH_ERR_CSV_VALUE')).toContain(
      `${days}:3: "days" expected an integer from 1 to 36500, got "-5"`,
    );
    const ops = file('consents-ops.csv', header + ok.replace('score;verify', 'score;scroe'));
    expect(refused(['consent', 'grant', '--file', ops], 'SH_ERR_CONSENT_INVALID')).toContain(
      `${ops}:2: "operations[1]"`,
    );
    const noHeader = file('consents-header.csv', 'uscc,bank\n');
    expect(refused(['consent', 'grant', '--file', noHeader], 'SH_ERR_CSV_MALFORMED')).toContain(`${noHeader}:1: `);
    expect(refused(['consent', 'grant', '--file', join(files, 'nope.csv')], 'SH_ERR_INVALID_ARGUMENT')).toContain(
      'no such file',
    );
  });

  it('subjects files, claims.csv and labels.csv', () => {
    const subjects = file('subjects.txt', `${SUBJECT}\n\n91440106096544255X\n`);
    const args = ['--bank', BANK, '--model', 'm', '--purpose', 'p', '--out', join(files, 's.csv')];
    expect(refused(['score', '--subjects', subjects, ...args], 'SH_ERR_USCC_CHECK')).toContain(`${subjects}:3: `);
    const twice = file('twice.txt', `${SUBJECT}\n${SUBJECT}\n`);
    expect(refused(['score', '--subjects', twice, ...args], 'SH_ERR_INVALID_ARGUMENT')).toContain(
      `${twice}:2: subject ${SUBJECT} repeats line 1`,
    );
    const claims = file(
      'claims.csv',
      `claim_id,uscc,provider,field,op,value\nc1,${SUBJECT},sz_tax_bureau,x,greater,1\n`,
    );
    expect(refused(verifyArgs(claims, join(files, 'r.csv')), 'SH_ERR_CSV_VALUE')).toContain(
      `${claims}:2: "op" expected one of eq, ne, gte, lte, between, in, got "greater"`,
    );
    // A claim the engine refuses is located at its line too.
    const field = file(
      'claims-field.csv',
      `claim_id,uscc,provider,field,op,value\nc1,${SUBJECT},sz_tax_bureau,tax_arrears,eq,false\nc2,${SUBJECT},sz_tax_bureau,nope,eq,1\n`,
    );
    const out = join(files, 'r.csv');
    const before = snapshot(home);
    const r = sh(...verifyArgs(field, out));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(new RegExp(`^SH_ERR_UNKNOWN_FIELD: ${field}:3: provider sz_tax_bureau has no field nope`));
    expect(snapshot(home)).toEqual(before);
    const labels = file('labels.csv', `uscc,label\n${SUBJECT},1\n91610113175132523Q,yes\n`);
    const holdout = file('holdout.txt', `${SUBJECT}\n`);
    const ev = ['evaluate', '--bank', BANK, '--model', 'm', '--purpose', 'p', '--holdout', holdout];
    expect(refused([...ev, '--labels', labels], 'SH_ERR_CSV_VALUE')).toContain(
      `${labels}:3: "label" expected 0 or 1, got "yes"`,
    );
    const labels2 = file('labels2.csv', `uscc,label\n91610113175132523Q,1\n`);
    expect(refused([...ev, '--labels', labels2], 'SH_ERR_INVALID_ARGUMENT')).toContain(
      `${holdout}:1: subject ${SUBJECT} has no label in ${labels2}`,
    );
  });
});

describe('outputs, the access report and audit replay', () => {
  const claims = () =>
    file(
      'budget.csv',
      'claim_id,uscc,provider,field,op,value\n' +
        Array.from({ length: 11 }, (_, i) => `b${i},${SUBJECT},sz_tax_bureau,months_continuous_tax,gte,${i}`).join(
          '\n',
        ) +
        '\n',
    );

  it('--out is never overwritten without --force; the refusal runs nothing', () => {
    expect(sh('consent', 'grant', '--file', join(EX, 'consents.csv')).code).toBe(0);
    const out = join(files, 'results.csv');
    const first = sh(...verifyArgs(claims(), out));
    expect(first.err).not.toMatch(/SH_ERR/);
    expect(first.code).toBe(0);
    // One line says what the answers in the file mean.
    expect(first.out).toMatch(/^job verify_\S+: 11 claims → .*\(yes 10, over_budget 1; refused:<status> is/);
    const written = readFileSync(out, 'utf8');
    const err = refused(verifyArgs(claims(), out), 'SH_ERR_ALREADY_EXISTS');
    expect(err).toContain(`${out} already exists; nothing was run or written`);
    expect(err).toContain('--force');
    expect(readFileSync(out, 'utf8')).toBe(written);
    const forced = sh(...verifyArgs(claims(), out), '--force');
    expect(forced.code).toBe(0);
    expect(readFileSync(out, 'utf8')).toMatch(/^claim_id,result\n/);
    expect(forced.out.split(' ')[1]).not.toBe(first.out.split(' ')[1]); // a new job
    // A missing directory is refused before the job too.
    refused(verifyArgs(claims(), join(files, 'no', 'such', 'dir.csv')), 'SH_ERR_INVALID_ARGUMENT');
  });

  it('score prints the statuses and why a refused row has no score', () => {
    writeFileSync(join(files, 'm.json'), JSON.stringify(tinyModel()));
    expect(sh('model', 'register', '--bank', BANK, '--file', join(files, 'm.json')).code).toBe(0);
    expect(sh('model', 'approve', '--provider', 'sz_tax_bureau', '--model', 'tax-only').code).toBe(0);
    const r = sh(
      'score',
      '--bank',
      BANK,
      '--model',
      'tax-only',
      '--purpose',
      'sme_credit_line',
      '--subjects',
      join(EX, 'subjects.txt'),
      '--out',
      join(files, 'scores.csv'),
    );
    expect(r.err).not.toMatch(/SH_ERR/);
    expect(r.out).toMatch(/scored, \d+ not scored → .*\(status OK \d+, .*NO_CONSENT \d+.*only OK rows have a score/);
  });

  it('the access report prints a line for every entry kind: registration, consent, jobs, budget', () => {
    const r = sh('report', '--subject', SUBJECT);
    expect(r.code).toBe(0);
    expect(r.out).not.toContain('undefined');
    expect(r.out).toMatch(/#\d+ registered as enterprise \(Ed25519 key [0-9a-f]{16}…\)\n/);
    expect(r.out).toMatch(/#\d+ consent c_[0-9a-f]{32} to bank_icbc_sz for sme_credit_line \(score,verify; tax, /);
    expect(r.out).toMatch(/#\d+ verify job verify_\S+ by bank_icbc_sz for sme_credit_line \[sz_tax_bureau\.\S+\] → /);
    expect(r.out).toMatch(/#\d+ verification budget spent in job verify_\S+ \(window since \S+\): claims beyond it/);
    expect(r.out).toMatch(/#\d+ score job score_\S+ by bank_icbc_sz .* → delivered\n/);
    expect(r.out).toMatch(/\d+ entries, each proven included in the signed checkpoint of \d+ entries\n$/);
  });

  it('audit replay exits 1 when a step is missing: an auditor registered after the jobs has no escrow for them', () => {
    const ok = sh('audit', 'replay', '--all');
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(/job\(s\) replayed: every step matches\n$/);
    expect(sh('party', 'add', '--role', 'auditor', '--id', 'auditor_late').code).toBe(0);
    // Two auditors now: the replaying one must be named.
    expect(sh('audit', 'replay', '--all').err).toMatch(/^SH_ERR_INVALID_ARGUMENT: several auditors are registered/);
    const late = sh('audit', 'replay', '--all', '--auditor', 'auditor_late');
    expect(late.code).toBe(1);
    expect(late.out).toMatch(/^ {2}missing {2}escrow — no seed escrowed to auditor_late$/m);
    expect(late.out).toMatch(/not fully replayed: \d+ step\(s\) missing \(.*an auditor registered after the job\)\n$/);
    const json = sh('audit', 'replay', '--all', '--auditor', 'auditor_late', '--json');
    expect(json.code).toBe(1);
    expect(JSON.parse(json.out)).toEqual(expect.arrayContaining([expect.objectContaining({ ok: false })]));
    expect(json.err).toContain('not fully replayed');
    expect(sh('audit', 'replay', '--all', '--auditor', 'auditor_pboc').code).toBe(0);
  });
});

/**
 * A linear model on three tax fields of the example table, within the parameter set's bound, each field carrying
 * about a third of the score variance (docs/design.md §7: no field may carry more than 80 %).
 */
function tinyModel() {
  return {
    id: 'tax-only',
    kind: 'linear',
    intercept: '1',
    terms: [
      { provider: 'sz_tax_bureau', field: 'vat_paid_12m', weight: '0.002' },
      { provider: 'sz_tax_bureau', field: 'months_continuous_tax', weight: '0.0025' },
      { provider: 'sz_tax_bureau', field: 'tax_penalties_3y', weight: '0.25' },
    ],
  };
}
