/**
 * The network deployment the crash and stall tests run against (test/crash/run.ts, test/api/custodian-stall.test.ts):
 * the engine (`safehouse serve`) and the two German Credit providers' custodians (`safehouse custodian`) as processes
 * on fixed ports of 127.0.0.1 — fixed so that a killed process comes back at the same address — with the parties'
 * keys, both datasets ingested, the enterprises' consents granted and a trained model registered and approved, all
 * through the CLI as an operator would. Every process's output goes to `<dir>/logs/<name>.log`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { NET_AUDITOR, NET_BANK, NET_PURPOSE, cli, writeScenario, type Scenario } from '../../api/demo-network.ts';

const BIN = resolve(import.meta.dirname, '../../api/bin/safehouse.js');
export const MODEL_ID = 'gc-crash-v1';
/** The provider that only ingests (its datasets are used by no model, so re-ingesting it stales nothing). */
export const INGEST = 'crash_ingest';

/** A server process (engine or custodian) that can be killed, stopped and started again with the same arguments. */
export class Proc {
  child: ChildProcess | undefined;
  starts = 0;
  readonly name: string;
  readonly args: () => string[];
  private readonly logs: string;
  private readonly env: NodeJS.ProcessEnv;
  constructor(name: string, args: () => string[], logs: string, env: NodeJS.ProcessEnv = {}) {
    this.name = name;
    this.args = args;
    this.logs = logs;
    this.env = env;
  }

  start(timeoutMs = 120_000): Promise<void> {
    this.starts++;
    const args = this.args();
    return new Promise((done, reject) => {
      const child = spawn(process.execPath, [BIN, ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, ...this.env },
      });
      this.child = child;
      const log = join(this.logs, `${this.name}.log`);
      appendFileSync(log, `--- start ${this.starts}: ${args.join(' ')}\n`);
      let out = '';
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`${this.name} did not start within ${timeoutMs} ms`));
      }, timeoutMs);
      child.stderr!.on('data', (d: Buffer) => appendFileSync(log, d));
      child.stdout!.on('data', (d: Buffer) => {
        appendFileSync(log, d);
        out += d.toString();
        if (/listening on/.test(out)) {
          clearTimeout(timer);
          done();
        }
      });
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        if (!/listening on/.test(out)) reject(new Error(`${this.name} exited ${code ?? signal} before listening`));
      });
    });
  }

  /** `kill -9`, resolved when the process is gone. */
  kill9(): Promise<void> {
    const c = this.child!;
    return new Promise((done) => {
      if (c.exitCode !== null || c.signalCode !== null) return done();
      c.once('exit', () => done());
      c.kill('SIGKILL');
    });
  }

  /** SIGSTOP / SIGCONT: the process stays, and answers nothing while stopped. */
  pause(): void {
    this.child!.kill('SIGSTOP');
  }
  resume(): void {
    this.child!.kill('SIGCONT');
  }

  /** Graceful stop (SIGTERM; SIGKILL after 30 s). */
  stop(): Promise<void> {
    const c = this.child;
    return new Promise((done) => {
      if (!c || c.exitCode !== null || c.signalCode !== null) return done();
      const t = setTimeout(() => c.kill('SIGKILL'), 30_000);
      c.once('exit', () => {
        clearTimeout(t);
        done();
      });
      c.kill('SIGCONT');
      c.kill('SIGTERM');
    });
  }
}

export interface Deployment {
  dir: string;
  logs: string;
  sc: Scenario;
  home: string;
  keys: string;
  url: string;
  engine: Proc;
  custodians: Proc[];
  modelFile: string;
  /** Stop every process. */
  stop(): Promise<void>;
}

/**
 * Start and populate the deployment in `dir`. `engineEnv` goes to the engine process (e.g. the custodian client's
 * timeouts); the custodians run with generous limits of their own so that many rounds of jobs fit in one window.
 */
export async function deploy(
  dir: string,
  o: { port: number; engineEnv?: NodeJS.ProcessEnv; iterations?: number },
): Promise<Deployment> {
  const logs = join(dir, 'logs');
  mkdirSync(logs, { recursive: true });
  const sc = writeScenario(join(dir, 'data'), { claims: 800 });
  const home = join(dir, 'engine');
  const keys = join(dir, 'keys');
  mkdirSync(keys, { recursive: true });
  const url = `http://127.0.0.1:${o.port}`;
  const S = ['--server', url];
  const engine: Proc = new Proc(
    'engine',
    (): string[] => [
      'serve',
      '--home',
      home,
      '--port',
      String(o.port),
      '--pool-size',
      '2',
      ...(engine.starts === 1 ? ['--init'] : []),
    ],
    logs,
    o.engineEnv,
  );
  const policyFile = join(dir, 'provider-policy.json');
  writeFileSync(
    policyFile,
    JSON.stringify({ trainSubjectEpsilon: 1000, verifyUnitsPerWindow: 1000, tokenEvaluationsPerWindow: 1000 }),
  );
  const custodians = sc.providers.map(
    (p, i) =>
      new Proc(
        `custodian-${p.provider}`,
        () => [
          'custodian',
          '--provider',
          p.provider,
          '--keys',
          join(keys, p.provider),
          '--engine',
          url,
          '--registrar-key',
          join(keys, 'registrar.key.pub'),
          '--policy',
          policyFile,
          '--port',
          String(o.port + 1 + i),
        ],
        logs,
      ),
  );
  await engine.start();
  const admin = ['--as', 'admin', '--key', join(home, 'admin.key')];
  await cli(['keygen', '--role', 'registrar', '--id', 'registrar', '--out', join(keys, 'registrar.key')]);
  await cli(['party', 'add', ...S, ...admin, '--public', join(keys, 'registrar.key.pub')]);
  await cli(['keygen', '--role', 'bank', '--id', NET_BANK, '--out', join(keys, `${NET_BANK}.key`)]);
  await cli(['keygen', '--role', 'auditor', '--id', NET_AUDITOR, '--out', join(keys, `${NET_AUDITOR}.key`)]);
  await cli(['keygen', '--role', 'enterprise', '--ids', sc.subjectsFile, '--out', join(keys, 'enterprises')]);
  for (const p of [...sc.providers.map((x) => x.provider), INGEST])
    await cli(['keygen', '--role', 'provider', '--id', p, '--out', join(keys, p)]);
  const certify = ['--registrar', join(keys, 'registrar.key')];
  await cli(['party', 'add', ...S, ...admin, '--public', `${join(keys, NET_BANK)}.key.pub`, ...certify]);
  await cli(['party', 'add', ...S, ...admin, '--public', `${join(keys, NET_AUDITOR)}.key.pub`]);
  for (const p of [...sc.providers.map((x) => x.provider), INGEST])
    await cli(['party', 'add', ...S, ...admin, '--public', join(keys, p)]);
  await cli(['party', 'add', ...S, ...admin, '--public', join(keys, 'enterprises'), ...certify]);
  for (const c of custodians) await c.start();
  for (const p of sc.providers)
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
    ]);
  await cli(['consent', 'grant', ...S, '--key', join(keys, 'enterprises'), '--file', sc.consentsFile]);
  const bankArgs = ['--as', NET_BANK, '--key', join(keys, `${NET_BANK}.key`)];
  const modelFile = join(dir, 'model.json');
  await cli([
    'train',
    ...S,
    ...bankArgs,
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
    String(o.iterations ?? 4),
    '--model-id',
    MODEL_ID,
  ]);
  await cli(['model', 'register', ...S, ...bankArgs, '--file', modelFile]);
  for (const p of sc.providers)
    await cli(['model', 'approve', ...S, '--as', p.provider, '--key', join(keys, p.provider), '--model', MODEL_ID]);
  return {
    dir,
    logs,
    sc,
    home,
    keys,
    url,
    engine,
    custodians,
    modelFile,
    stop: async () => {
      await Promise.all([...custodians, engine].map((p) => p.stop()));
    },
  };
}
