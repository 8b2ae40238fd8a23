/**
 * `npm run demo:network`: Safehouse as separate processes on 127.0.0.1 — the engine (`safehouse serve`), two provider
 * custodians (`safehouse custodian`), and bank, enterprise, provider and auditor clients (`safehouse … --server`) —
 * running consent → ingest → joint training → model approval → scoring → verification → audit verify, then stopping
 * everything. Data: UCI German Credit (../shared/data) split between two providers and the bank (models/german.ts);
 * three integer fields are offered for verification (class AUTH_QUERY) so yes/no claims can be made on them.
 *
 * Every result is checked against plaintext: scores against the trained scorecard evaluated on the providers' CSVs,
 * claim answers against the predicate on the same values. The e2e test (test/network-e2e.test.ts) runs the same
 * scenario and compares it with embedded mode.
 * Longer than 400 lines: one scripted run of every process (engine, two custodians, each party's client) in order,
 * with its checks.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { germanSplit, GERMAN_PATH } from '../models/german.ts';
import { parseCsv, toCsv } from '../core/csv.ts';
import { mulberry32 } from '../core/rng.ts';

const BIN = resolve(import.meta.dirname, 'bin', 'safehouse.js');
export const NET_BANK = 'bank_gc';
export const NET_AUDITOR = 'auditor_pboc';
export const NET_PURPOSE = 'model_training';
/** Integer fields offered for verification in this scenario. */
export const NET_VERIFY_FIELDS: Record<string, string> = {
  gc_duration_months: 'gc_provider',
  gc_credit_amount: 'gc_provider',
  gc_age: 'gc_provider2',
};

export interface Scenario {
  dir: string;
  providers: Array<{ provider: string; schemaFile: string; csvFile: string; category: string; schema: unknown }>;
  subjectsFile: string;
  labelsFile: string;
  consentsFile: string;
  claimsFile: string;
  fields: string;
  /** Plaintext truth for the claims. */
  expectedClaims: Map<string, 'yes' | 'no' | 'no_data'>;
  /** Subjects that granted no consent (refused with NO_CONSENT). */
  withoutConsent: string[];
  values: Map<string, Map<string, string>>;
}

/** Write the scenario's files (schemas, tables, labels, consents, claims) into `dir`. */
export function writeScenario(dir: string, o: { claims?: number; seed?: number } = {}): Scenario {
  mkdirSync(dir, { recursive: true });
  const gc = germanSplit({ seed: 7, providers: 2 });
  const rnd = mulberry32(o.seed ?? 5);
  const providers = gc.providers.map((p) => {
    const schema = structuredClone(p.schema) as unknown as {
      category: string;
      fields: Array<{ name: string; class: string }>;
    };
    for (const f of schema.fields) if (f.name in NET_VERIFY_FIELDS) f.class = 'AUTH_QUERY';
    const schemaFile = join(dir, `${p.provider}.schema.json`);
    const csvFile = join(dir, `${p.provider}.csv`);
    writeFileSync(schemaFile, JSON.stringify(schema, null, 2) + '\n');
    writeFileSync(csvFile, p.csv);
    return {
      provider: p.provider,
      schemaFile,
      csvFile,
      category: schema.category,
      fields: schema.fields.map((f) => f.name),
      csv: p.csv,
      schema,
    };
  });
  const values = new Map<string, Map<string, string>>();
  for (const p of providers) {
    const csv = parseCsv(p.csv);
    for (const row of csv.rows) {
      const m = values.get(row[0]!) ?? new Map<string, string>();
      csv.header.forEach((h, i) => {
        if (i > 0) m.set(h, row[i]!);
      });
      values.set(row[0]!, m);
    }
  }
  const withoutConsent = gc.subjects.filter((_, i) => i % 97 === 13);
  const skip = new Set(withoutConsent);
  const subjectsFile = join(dir, 'subjects.txt');
  writeFileSync(subjectsFile, gc.subjects.join('\n') + '\n');
  const labelsFile = join(dir, 'labels.csv');
  writeFileSync(labelsFile, gc.labelsCsv);
  const consentsFile = join(dir, 'consents.csv');
  writeFileSync(
    consentsFile,
    toCsv(
      ['uscc', 'bank', 'purpose', 'categories', 'ops', 'days'],
      gc.subjects
        .filter((u) => !skip.has(u))
        .map((u) => [
          u,
          NET_BANK,
          NET_PURPOSE,
          providers.map((p) => p.category).join(';'),
          'train;score;verify',
          '365',
        ]),
    ),
  );
  // Claims: numeric comparisons on the verifiable fields, thresholds near the data so both answers occur.
  const ops = ['gte', 'lte', 'eq', 'ne', 'between'] as const;
  const claims: string[][] = [];
  const expected = new Map<string, 'yes' | 'no' | 'no_data'>();
  const consented = gc.subjects.filter((u) => !skip.has(u));
  const fieldNames = Object.keys(NET_VERIFY_FIELDS);
  for (let i = 0; i < (o.claims ?? 40); i++) {
    const u = consented[Math.floor(rnd() * consented.length)]!;
    const field = fieldNames[i % fieldNames.length]!;
    const op = ops[Math.floor(rnd() * ops.length)]!;
    const actual = Number(values.get(u)!.get(field));
    const near = (x: number) => Math.max(0, Math.round(x * (0.8 + 0.4 * rnd())));
    const a = rnd() < 0.3 ? actual : near(actual);
    const b = Math.max(a, near(actual) + 1);
    const id = `c${String(i).padStart(4, '0')}`;
    claims.push([id, u, NET_VERIFY_FIELDS[field]!, field, op, String(a), op === 'between' ? String(b) : '']);
    const yes =
      op === 'gte'
        ? actual >= a
        : op === 'lte'
          ? actual <= a
          : op === 'eq'
            ? actual === a
            : op === 'ne'
              ? actual !== a
              : actual >= a && actual <= b;
    expected.set(id, yes ? 'yes' : 'no');
  }
  const claimsFile = join(dir, 'claims.csv');
  writeFileSync(claimsFile, toCsv(['claim_id', 'uscc', 'provider', 'field', 'op', 'value', 'value2'], claims));
  const fields = providers.flatMap((p) => p.fields.map((f) => `${p.provider}.${f}`)).join(',');
  writeFileSync(join(dir, 'fields.txt'), fields + '\n');
  return {
    dir,
    providers: providers.map(({ provider, schemaFile, csvFile, category, schema }) => ({
      provider,
      schemaFile,
      csvFile,
      category,
      schema,
    })),
    subjectsFile,
    labelsFile,
    consentsFile,
    claimsFile,
    fields,
    expectedClaims: expected,
    withoutConsent,
    values,
  };
}

/** Run the CLI as a child process; resolves with stdout, rejects with the coded stderr. */
export function cli(args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  return new Promise((done, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 10 * 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) done(out);
      else
        reject(
          Object.assign(
            new Error(
              `safehouse ${args.slice(0, 2).join(' ')} exited ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}`,
            ),
            { stderr: err, code },
          ),
        );
    });
  });
}

/** Start a long-running CLI server process and wait for its "listening on URL" line. */
export function startServer(
  args: string[],
  timeoutMs = 60_000,
  logFile?: string,
): Promise<{ url: string; child: ChildProcess; stop: () => Promise<void> }> {
  return new Promise((done, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    // The server's own output (its structured logs are on stderr), kept for the operator when a file is given.
    if (logFile) {
      child.stdout.on('data', (d: Buffer) => appendFileSync(logFile, d));
      child.stderr.on('data', (d: Buffer) => appendFileSync(logFile, d));
    }
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${args[0]} did not start in ${timeoutMs} ms: ${err}`));
    }, timeoutMs);
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/[0-9.]+:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        const stop = () =>
          new Promise<void>((closed) => {
            if (child.exitCode !== null) return closed();
            const kill = setTimeout(() => child.kill('SIGKILL'), 30_000);
            child.once('exit', () => {
              clearTimeout(kill);
              closed();
            });
            child.kill('SIGTERM');
          });
        done({ url: m[1]!, child, stop });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (!/listening on/.test(out)) reject(new Error(`${args[0]} exited ${code}: ${err.trim()}`));
    });
  });
}

export interface NetworkRun {
  scores: Map<string, { status: string; score: string }>;
  claims: Map<string, string>;
  model: unknown;
  audit: string;
  replay: string;
  report: { subject: string; entries: number };
  /** `safehouse evaluate` on the hold-out subjects `train` wrote, once the providers approved the model. */
  evaluate: {
    jobId: string;
    model: string;
    holdout: number;
    scored: number;
    notScored: Record<string, number>;
    holdoutAuc: number;
    holdoutKs: number;
  };
  seconds: Record<string, number>;
  scenario: Scenario;
}

/** The whole multi-process scenario. `keep` leaves the directory for inspection. */
export async function runNetwork(
  o: { dir?: string; iterations?: number; claims?: number; log?: (line: string) => void } = {},
): Promise<NetworkRun> {
  const log = o.log ?? (() => {});
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), 'safehouse-net-'));
  const sc = writeScenario(join(dir, 'data'), o.claims !== undefined ? { claims: o.claims } : {});
  const home = join(dir, 'engine');
  const keys = join(dir, 'keys');
  mkdirSync(keys, { recursive: true });
  const logs = join(dir, 'logs');
  mkdirSync(logs, { recursive: true });
  const seconds: Record<string, number> = {};
  const step = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
    const t = performance.now();
    const r = await f();
    seconds[name] = Number(((performance.now() - t) / 1000).toFixed(2));
    log(`${name.padEnd(22)} ${seconds[name]} s`);
    return r;
  };
  const servers: Array<{ stop: () => Promise<void> }> = [];
  try {
    const engine = await step('engine start', () =>
      startServer(['serve', '--home', home, '--port', '0', '--init'], 60_000, join(logs, 'engine.log')),
    );
    servers.push(engine);
    const S = ['--server', engine.url];
    const admin = ['--as', 'admin', '--key', join(home, 'admin.key')];
    const bank = ['--as', NET_BANK, '--key', join(keys, `${NET_BANK}.key`)];
    const auditor = ['--as', NET_AUDITOR, '--key', join(keys, `${NET_AUDITOR}.key`)];
    await step('keys + registration', async () => {
      // The registrar (real-name registration) certifies the bank's and every enterprise's key; custodians pin it.
      await cli(['keygen', '--role', 'registrar', '--id', 'registrar', '--out', join(keys, 'registrar.key')]);
      await cli(['party', 'add', ...S, ...admin, '--public', join(keys, 'registrar.key.pub')]);
      await cli(['keygen', '--role', 'bank', '--id', NET_BANK, '--out', join(keys, `${NET_BANK}.key`)]);
      await cli(['keygen', '--role', 'auditor', '--id', NET_AUDITOR, '--out', join(keys, `${NET_AUDITOR}.key`)]);
      await cli(['keygen', '--role', 'enterprise', '--ids', sc.subjectsFile, '--out', join(keys, 'enterprises')]);
      for (const p of sc.providers)
        await cli(['keygen', '--role', 'provider', '--id', p.provider, '--out', join(keys, p.provider)]);
      const certify = ['--registrar', join(keys, 'registrar.key')];
      await cli(['party', 'add', ...S, ...admin, '--public', `${join(keys, NET_BANK)}.key.pub`, ...certify]);
      await cli(['party', 'add', ...S, ...admin, '--public', `${join(keys, NET_AUDITOR)}.key.pub`]);
      for (const p of sc.providers) await cli(['party', 'add', ...S, ...admin, '--public', join(keys, p.provider)]);
      await cli(['party', 'add', ...S, ...admin, '--public', join(keys, 'enterprises'), ...certify]);
    });
    await step('custodians start', async () => {
      for (const p of sc.providers)
        servers.push(
          await startServer(
            [
              'custodian',
              '--provider',
              p.provider,
              '--keys',
              join(keys, p.provider),
              '--engine',
              engine.url,
              '--registrar-key',
              join(keys, 'registrar.key.pub'),
              '--port',
              '0',
            ],
            60_000,
            join(logs, `custodian-${p.provider}.log`),
          ),
        );
    });
    await step('provider ingest', async () => {
      for (const p of sc.providers)
        log(
          '  ' +
            (
              await cli([
                'provider',
                'ingest',
                ...S,
                '--as',
                p.provider,
                '--key',
                join(keys, p.provider),
                '--schema',
                p.schemaFile,
                '--csv',
                p.csvFile,
              ])
            ).trim(),
        );
    });
    await step('consent grant', () =>
      cli(['consent', 'grant', ...S, '--key', join(keys, 'enterprises'), '--file', sc.consentsFile]),
    );
    const modelFile = join(dir, 'model.json');
    const trained = await step('joint training', () =>
      cli([
        'train',
        ...S,
        ...bank,
        '--providers',
        sc.providers.map((p) => p.provider).join(','),
        '--purpose',
        NET_PURPOSE,
        '--labels',
        sc.labelsFile,
        '--fields',
        sc.fields,
        '--out',
        modelFile,
        '--iterations',
        String(o.iterations ?? 10),
        '--model-id',
        'gc-network-v1',
        '--json',
      ]),
    );
    log('  ' + trained.trim());
    await step('model register+approve', async () => {
      await cli(['model', 'register', ...S, ...bank, '--file', modelFile]);
      for (const p of sc.providers)
        await cli([
          'model',
          'approve',
          ...S,
          '--as',
          p.provider,
          '--key',
          join(keys, p.provider),
          '--model',
          'gc-network-v1',
        ]);
    });
    // Hold-out metrics, the bank's second step of training in network mode (train wrote model.holdout.txt).
    const evaluated = JSON.parse(
      await step('hold-out evaluation', () =>
        cli([
          'evaluate',
          ...S,
          ...bank,
          '--model',
          'gc-network-v1',
          '--labels',
          sc.labelsFile,
          '--holdout',
          join(dir, 'model.holdout.txt'),
          '--purpose',
          NET_PURPOSE,
          '--json',
        ]),
      ),
    ) as NetworkRun['evaluate'];
    log(`  hold-out AUC ${evaluated.holdoutAuc.toFixed(4)}, KS ${evaluated.holdoutKs.toFixed(4)}`);
    const scoresFile = join(dir, 'scores.csv');
    log(
      '  ' +
        (
          await step('scoring', () =>
            cli([
              'score',
              ...S,
              ...bank,
              '--model',
              'gc-network-v1',
              '--purpose',
              NET_PURPOSE,
              '--subjects',
              sc.subjectsFile,
              '--out',
              scoresFile,
            ]),
          )
        ).trim(),
    );
    const resultsFile = join(dir, 'results.csv');
    log(
      '  ' +
        (
          await step('verification', () =>
            cli(['verify', ...S, ...bank, '--purpose', NET_PURPOSE, '--claims', sc.claimsFile, '--out', resultsFile]),
          )
        ).trim(),
    );
    const audit = (await step('audit verify', () => cli(['audit', 'verify', ...S, ...auditor]))).trim();
    log('  ' + audit);
    // The auditor replays every job on its own replica (exits non-zero on any mismatch).
    const replay = (await step('audit replay', () => cli(['audit', 'replay', ...S, ...auditor, '--all']))).trim();
    log('  ' + replay.split('\n').join('\n  '));
    const subject = sc.providers.length ? readFileSync(sc.subjectsFile, 'utf8').split('\n')[0]! : '';
    const report = JSON.parse(
      await cli(['report', ...S, '--as', subject, '--key', join(keys, 'enterprises', `${subject}.key`), '--json']),
    ) as { subject: string; entries: unknown[] };
    const scores = new Map(
      parseCsv(readFileSync(scoresFile, 'utf8')).rows.map((r) => [r[0]!, { status: r[1]!, score: r[2]! }]),
    );
    const claims = new Map(parseCsv(readFileSync(resultsFile, 'utf8')).rows.map((r) => [r[0]!, r[1]!]));
    return {
      scores,
      claims,
      model: JSON.parse(readFileSync(modelFile, 'utf8')),
      audit,
      replay,
      report: { subject: report.subject, entries: report.entries.length },
      evaluate: evaluated,
      seconds,
      scenario: sc,
    };
  } finally {
    await Promise.all(servers.reverse().map((s) => s.stop()));
    if (!o.dir) rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const { existsSync } = await import('node:fs');
  const { parseArgs } = await import('node:util');
  let args: { files?: string; keep?: string };
  try {
    args = parseArgs({ options: { files: { type: 'string' }, keep: { type: 'string' } }, strict: true }).values;
  } catch {
    process.stderr.write('SH_ERR_INVALID_ARGUMENT: usage: npm run demo:network [-- --files DIR | --keep DIR]\n');
    process.exit(2);
  }
  if (!existsSync(GERMAN_PATH)) {
    process.stderr.write(
      `SH_ERR_INVALID_ARGUMENT: the network demo reads ${GERMAN_PATH} (../shared/data); it is not there\n`,
    );
    process.exit(1);
  }
  if (args.files) {
    // Only the scenario's input files, for running the parties by hand (README "Network mode").
    const sc = writeScenario(resolve(args.files));
    process.stdout.write(
      `wrote ${sc.dir}: ${sc.providers.map((p) => `${p.provider}.schema.json ${p.provider}.csv`).join(' ')} ` +
        `subjects.txt consents.csv labels.csv claims.csv fields.txt (${readFileSync(sc.subjectsFile, 'utf8').trim().split('\n').length} subjects)\n`,
    );
    process.exit(0);
  }
  if (args.keep && existsSync(args.keep)) {
    process.stderr.write(`SH_ERR_ALREADY_EXISTS: ${args.keep} exists; --keep writes a new directory\n`);
    process.exit(2);
  }
  const { evaluatePlain } = await import('../models/plain.ts');
  const { parseModel } = await import('../models/model.ts');
  const { validateSchema } = await import('../sandbox/catalog.ts');
  const t0 = performance.now();
  const r = await runNetwork({
    log: (l) => process.stdout.write(l + '\n'),
    ...(args.keep ? { dir: resolve(args.keep) } : {}),
  });
  // Plaintext checks: the trained scorecard on the providers' own values; the claims' predicates.
  const model = parseModel(r.model);
  const specs = new Map(
    r.scenario.providers.flatMap((p) =>
      validateSchema(p.schema).fields.map((f) => [`${p.provider}/${f.name}`, f] as const),
    ),
  );
  let mismatches = 0;
  for (const [u, s] of r.scores) {
    if (s.status !== 'OK') continue;
    const v = r.scenario.values.get(u)!;
    const plain = evaluatePlain(
      model,
      (p, f) => specs.get(`${p}/${f}`)!,
      (_p, f) => v.get(f),
    );
    if (plain.status !== 'OK' || plain.score !== s.score) mismatches++;
  }
  const claimMismatches = [...r.scenario.expectedClaims].filter(([id, want]) => r.claims.get(id) !== want).length;
  const refused = [...r.scores.values()].filter((s) => s.status !== 'OK').length;
  process.stdout.write(
    `scores: ${r.scores.size - refused} scored, ${refused} refused (expected ${r.scenario.withoutConsent.length}), ${mismatches} differ from plaintext\n`,
  );
  process.stdout.write(
    `claims: ${r.claims.size}, ${claimMismatches} differ from plaintext; access report of ${r.report.subject}: ${r.report.entries} entries\n`,
  );
  process.stdout.write(
    `network demo: ${((performance.now() - t0) / 1000).toFixed(1)} s; all processes stopped` +
      (args.keep
        ? `; kept ${resolve(args.keep)} (data/, engine/, keys/, logs/, model.json, scores.csv, results.csv)`
        : '') +
      '\n',
  );
  process.exitCode =
    mismatches === 0 &&
    claimMismatches === 0 &&
    refused === r.scenario.withoutConsent.length &&
    r.audit.startsWith('ledger intact') &&
    !/NOT ALL MATCH/.test(r.replay)
      ? 0
      : 1;
}
