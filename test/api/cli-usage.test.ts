/**
 * The CLI a newcomer meets, through `node api/bin/safehouse.js`: the overview and every command's help exit 0; a
 * mistyped command or option gets a coded error with the closest valid name and a pointer to the command's help,
 * never the argument parser's own text; bad values list the valid values or range; every such error exits 2 and
 * leaves the data directory exactly as it was.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COMMANDS } from '../../api/cli/commands.ts';
import { handlerOf } from '../../api/cli/index.ts';
import { closest, distance } from '../../api/cli/parse.ts';
import { CATALOG } from '../../sandbox/catalog.ts';
import { snapshot } from '../fixtures/files.ts';

const BIN = join(import.meta.dirname, '..', '..', 'api', 'bin', 'safehouse.js');
let home: string;

function run(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** A bad command line: exit 2, one coded line on stderr, nothing on stdout, the data directory untouched. */
function refused(args: string[], code = 'SH_ERR_INVALID_ARGUMENT'): string {
  const before = snapshot(home);
  const r = run(...args, '--home', home);
  expect(r.code, r.err).toBe(2);
  expect(r.out).toBe('');
  expect(r.err).toMatch(new RegExp(`^${code}: [^\\n]+\\n$`));
  // Node's parser text never reaches the user.
  expect(r.err).not.toMatch(/Unknown option '|To specify|ambiguous|positional argument|ERR_PARSE_ARGS/);
  expect(snapshot(home)).toEqual(before);
  return r.err;
}

beforeAll(() => {
  home = mkdtempSync(join(tmpdir(), 'sh-cli-usage-'));
  expect(run('init', '--home', home).code).toBe(0);
});
afterAll(() => rmSync(home, { recursive: true, force: true }));

describe('help', () => {
  it('bare `safehouse` and `safehouse --help` print the commands grouped by party and exit 0', () => {
    const bare = run();
    expect(bare.code).toBe(0);
    expect(bare.err).toBe('');
    for (const title of ['Set-up and the platform operator', 'Data provider', 'Enterprise', 'Bank:', 'Auditor:'])
      expect(bare.out).toContain(title);
    for (const c of COMMANDS) expect(bare.out).toMatch(new RegExp(`^  ${c.name} `, 'm'));
    expect(bare.out).toContain('Exit codes: 0');
    expect(run('--help').out).toBe(bare.out);
    expect(run('help').out).toBe(bare.out);
  });

  it("every command's --help gives its usage, every option with its type, and an example; exit 0", () => {
    for (const c of COMMANDS) {
      const r = run(...c.name.split(' '), '--help');
      expect(r.code, c.name).toBe(0);
      expect(r.out, c.name).toMatch(new RegExp(`^safehouse ${c.name} — `));
      expect(r.out, c.name).toContain(`safehouse ${c.name} `);
      for (const o of c.options) expect(r.out, `${c.name} --${o.name}`).toContain(`--${o.name}`);
      expect(r.out, c.name).toMatch(/^Examples?:\n  safehouse /m);
    }
    const score = run('score', '--help').out;
    expect(score).toMatch(/--out FILE .*required/);
    expect(score).toContain('client mode:');
    expect(run('train', '--help').out).toMatch(/--iterations N .*an integer from 1 to 10000; default 30/);
    expect(run('help', 'score').out).toBe(score);
    expect(run('score', '-h').out).toBe(score);
    // --help wins over anything else on the line, even a bad option.
    expect(run('score', '--subjcts', 'x', '--help').out).toBe(score);
    expect(run('consent').out).toContain('consent grant');
  });

  it('every command in the table has a handler', async () => {
    for (const c of COMMANDS) expect(await handlerOf(c), c.name).toBeTypeOf('function');
  });
});

describe('bad usage: coded errors, exit 2, nothing changed', () => {
  it('an unknown command suggests the closest one', () => {
    expect(refused(['scroe'])).toContain('unknown command "scroe"; did you mean "score"?');
    expect(refused(['consent', 'grnt'])).toContain('did you mean "consent grant"?');
    expect(refused(['consnt', 'revoke'])).toContain('did you mean "consent revoke"?');
    expect(refused(['frobnicate'])).toMatch(/unknown command "frobnicate"; see safehouse --help/);
    expect(refused(['help', 'evalute'])).toContain('did you mean "evaluate"?');
  });

  it("an unknown option names it, the command's closest option, and the command's help", () => {
    const err = refused(['score', '--bank', 'b', '--subjcts', 's.txt']);
    expect(err).toContain('unknown option --subjcts for safehouse score; did you mean --subjects?');
    expect(err).toContain('safehouse score --help');
    expect(refused(['train', '--iteration', '5'])).toContain('did you mean --iterations?');
    // An option of the other mode says which mode it belongs to.
    expect(refused(['score', '--as', 'bank_x', '--key', 'k'])).toContain(
      '--as belongs to client mode (with --server URL)',
    );
    expect(refused(['score', '--server', 'http://127.0.0.1:1', '--bank', 'b'])).toContain(
      '--bank belongs to embedded mode',
    );
    expect(refused(['init', '--server', 'http://127.0.0.1:1'])).toContain('safehouse init has no client mode');
    expect(refused(['score', 'extra'])).toContain('unexpected argument "extra"');
    expect(refused(['score', '--bank'])).toContain('--bank needs a value (ID)');
    expect(refused(['score', '--bank', '--json'])).toContain('--bank needs a value (ID), got the option --json');
    expect(refused(['audit', 'replay', '--all', '--all'])).toContain('--all is given twice');
  });

  it('bad values list the valid range or values', () => {
    expect(refused(['consent', 'grant', '--days', '-5'])).toContain(
      '"--days" expected an integer from 1 to 36500, got "-5"',
    );
    expect(refused(['consent', 'grant', '--days', '1.5'])).toContain('got "1.5"');
    expect(refused(['retention', 'purge', '--days', '-1'])).toContain('expected an integer from 0 to 36500');
    expect(refused(['train', '--iterations', '0'])).toContain('"--iterations" expected an integer from 1 to 10000');
    expect(refused(['train', '--bins', 'five'])).toContain('"--bins" expected an integer from 2 to 20, got "five"');
    expect(refused(['demo', '--subjects', '-3'])).toContain('"--subjects" expected an integer from 0 to 200000');
    expect(refused(['party', 'add', '--role', 'wizard', '--id', 'x'])).toContain(
      '"--role" expected one of provider, bank, enterprise, auditor, got "wizard"',
    );
    expect(refused(['party', 'add', '--role', 'bnak', '--id', 'x'])).toContain('did you mean bank?');
    expect(refused(['train', '--features', 'raw'])).toContain('"--features" expected one of binned, standardized');
    const ids = CATALOG.map((c) => c.id).join(', ');
    const err = refused([
      'consent',
      'grant',
      '--subject',
      '91440106096544255B',
      '--bank',
      'bank_x',
      '--purpose',
      'sme_credit_line',
      '--categories',
      'taxes',
      '--ops',
      'score',
      '--days',
      '30',
    ]);
    expect(err).toContain(`catalog category ids (${ids}), got "taxes"; did you mean tax?`);
    expect(refused(['consent', 'grant', '--ops', 'scroe'])).toContain('did you mean score?');
  });

  it('missing options and alternatives are named', () => {
    expect(refused(['score', '--bank', 'b'])).toMatch(/safehouse score needs --model ID, --purpose P, --subjects FILE/);
    expect(refused(['consent', 'grant'])).toContain('needs --file FILE, or --subject USCC');
    expect(refused(['consent', 'grant', '--file', 'f.csv', '--subject', 'x'])).toContain(
      '--file and --subject cannot be combined',
    );
    expect(refused(['audit', 'replay'])).toContain('needs --job JOB_ID, or --all');
    expect(refused(['--bogus'])).toContain('no command given');
  });
});

describe('suggestions', () => {
  it('edit distance counts a transposition as one edit', () => {
    expect(distance('scroe', 'score')).toBe(1);
    expect(distance('subjcts', 'subjects')).toBe(1);
    expect(closest('scroe', ['score', 'verify', 'train'])).toBe('score');
    expect(closest('zzz', ['score', 'verify'])).toBeUndefined();
    expect(closest('taxes', ['tax', 'utilities'])).toBe('tax');
  });
});

describe('data directory from $SAFEHOUSE_HOME, and `wait` for a server', () => {
  it('embedded commands use $SAFEHOUSE_HOME when --home is not given; --home wins over it', () => {
    const env = mkdtempSync(join(tmpdir(), 'sh-env-home-'));
    try {
      const withEnv = (...args: string[]) =>
        spawnSync(process.execPath, [BIN, ...args], {
          encoding: 'utf8',
          env: { ...process.env, SAFEHOUSE_HOME: join(env, 'h') },
        });
      const r = withEnv('init');
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain(join(env, 'h'));
      expect(withEnv('audit', 'verify').status).toBe(0);
      // --home names another, uninitialized directory: refused, and $SAFEHOUSE_HOME is left alone.
      const other = withEnv('audit', 'verify', '--home', join(env, 'other'));
      expect(other.status).toBe(2);
      expect(other.stderr).toMatch(/^SH_ERR_HOME_NOT_INITIALIZED: /);
    } finally {
      rmSync(env, { recursive: true, force: true });
    }
  });

  it('wait: a bad URL is a usage error (2); nothing answering is SH_ERR_UNAVAILABLE (1) within the timeout', () => {
    const bad = run('wait', '--url', 'not a url');
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/^SH_ERR_INVALID_ARGUMENT: "--url" expected a URL/);
    const none = run('wait', '--url', 'http://127.0.0.1:9', '--timeout', '1');
    expect(none.code).toBe(1);
    expect(none.err).toMatch(/^SH_ERR_UNAVAILABLE: nothing answered at http:\/\/127\.0\.0\.1:9 within 1 s/);
    expect(run('wait', '--url', 'http://127.0.0.1:9', '--timeout', '0').code).toBe(2);
  });
});
