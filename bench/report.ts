/**
 * Shared bits of the bench: result shapes, machine facts, a small text-table printer and a benchmark.js runner.
 */
import os from 'node:os';
import Benchmark from 'benchmark';

export interface BenchResult {
  name: string;
  group: string;
  /** Operations per second (benchmark.js `hz`). */
  hz: number;
  /** Mean time per operation, ms. */
  meanMs: number;
  /** Relative margin of error, percent (95%). */
  rme: number;
  samples: number;
  note?: string;
}

export interface Ratio {
  name: string;
  value: number;
  /** How the ratio was formed, e.g. "engine linear / (6×multiplyPlain + 5×add)". */
  formula: string;
  note?: string;
}

/** One end-to-end run (bench/e2e-*.ts); bench/run.ts prices `ops` with the micro-suite's costs. */
export interface E2eResult {
  name: string;
  /** One sentence: what was run. */
  description: string;
  size: Record<string, number>;
  /** The timed engine section. */
  engineSeconds: number;
  /** Seconds per phase (setup included, not part of engineSeconds). */
  phases: Record<string, number>;
  /** The minimal number of each cryptographic operation (bench/micro.ts OP_NAMES) the protocol needs for this job. */
  ops: Record<string, number>;
  /** The same computation without encryption, timed in the same process. */
  plaintextSeconds: number;
  /** process.resourceUsage().maxRSS of the run's process, MiB. */
  peakRssMiB: number;
  checks: { ok: boolean; detail: string };
  extra: Record<string, number | string>;
}

/** Command-line arguments of a bench script: positional values and `--flag value` pairs. */
export function benchArgs(argv: readonly string[]): {
  positional: string[];
  flag: (name: string) => number | undefined;
  has: (name: string) => boolean;
} {
  const positional = argv.filter(
    (a, i) => !a.startsWith('--') && !(i > 0 && argv[i - 1]!.startsWith('--') && /^\d/.test(a)),
  );
  return {
    positional,
    flag: (name) => {
      const i = argv.indexOf(name);
      return i >= 0 ? Number(argv[i + 1]) : undefined;
    },
    has: (name) => argv.includes(name),
  };
}

export function peakRssMiB(): number {
  return Number((process.resourceUsage().maxRSS / 1024).toFixed(1));
}

export interface MachineFacts {
  cpuModel: string;
  cores: number;
  availableParallelism: number;
  totalMemoryGiB: number;
  node: string;
  platform: string;
  arch: string;
  loadAverage: number[];
  date: string;
}

export function machineFacts(): MachineFacts {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    availableParallelism: os.availableParallelism(),
    totalMemoryGiB: Number((os.totalmem() / 2 ** 30).toFixed(1)),
    node: process.version,
    platform: os.platform(),
    arch: os.arch(),
    loadAverage: os.loadavg().map((x) => Number(x.toFixed(2))),
    date: new Date().toISOString(),
  };
}

/** Plain-text table; columns whose cells are all numbers (or '') are right-aligned. */
export function formatTable(headers: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const cells = rows.map((r) => r.map((c) => String(c)));
  const numeric = headers.map((_, i) =>
    rows.every((r) => typeof r[i] === 'number' || r[i] === '' || /^[\d.,×%+-]+$/.test(String(r[i]))),
  );
  const width = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]) =>
    r
      .map((c, i) => (numeric[i] ? c.padStart(width[i]!) : c.padEnd(width[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), width.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)].join('\n');
}

/** Number with about `sig` significant digits, no exponent for the ranges we print. */
export function fmt(x: number, sig = 3): string {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 10 ** sig) return Math.round(x).toLocaleString('en-US');
  const decimals = Math.min(8, Math.max(0, sig - 1 - Math.floor(Math.log10(a))));
  return x.toFixed(decimals);
}

export interface BenchCase {
  name: string;
  group: string;
  /** Synchronous body, timed as is. */
  fn?: () => void;
  /** Asynchronous body (benchmark.js deferred mode). */
  async?: () => Promise<unknown>;
  note?: string;
}

/**
 * Run cases with benchmark.js, one after another, synchronously. Any error inside a case fails the whole run (a
 * benchmark that silently measured an exception is worse than none).
 */
export function runBenchmarks(
  cases: readonly BenchCase[],
  opts: { maxTime: number; minSamples: number; log: (line: string) => void },
): Promise<BenchResult[]> {
  return new Promise((resolve, reject) => {
    const suite = new Benchmark.Suite('safehouse');
    const byName = new Map(cases.map((c) => [c.name, c]));
    const failures: unknown[] = [];
    for (const c of cases) {
      const options = { maxTime: opts.maxTime, minSamples: opts.minSamples };
      if (c.async) {
        const body = c.async;
        suite.add(c.name, {
          ...options,
          defer: true,
          fn: function (deferred: Benchmark.Deferred) {
            body().then(
              () => deferred.resolve(),
              (err: unknown) => {
                failures.push(err);
                deferred.resolve();
              },
            );
          },
        });
      } else if (c.fn) {
        suite.add(c.name, c.fn, options);
      } else {
        reject(new TypeError(`case "${c.name}" expected fn or async`));
        return;
      }
    }
    suite.on('cycle', (ev: Benchmark.Event) => {
      const b = ev.target as unknown as Benchmark;
      opts.log(
        `  ${b.name}: ${fmt(b.hz ?? 0)} ops/s, ${fmt((b.stats?.mean ?? 0) * 1000)} ms ±${fmt(b.stats?.rme ?? 0, 2)}% (${b.stats?.sample.length ?? 0} samples)`,
      );
    });
    suite.on('error', (ev: Benchmark.Event) => failures.push((ev.target as unknown as Benchmark).error));
    suite.on('complete', () => {
      if (failures.length) {
        reject(failures[0] instanceof Error ? failures[0] : new Error(String(failures[0])));
        return;
      }
      const out: BenchResult[] = [];
      suite.forEach((b: Benchmark) => {
        const c = byName.get(String(b.name))!;
        out.push({
          name: c.name,
          group: c.group,
          hz: b.hz,
          meanMs: b.stats.mean * 1000,
          rme: b.stats.rme,
          samples: b.stats.sample.length,
          ...(c.note ? { note: c.note } : {}),
        });
      });
      resolve(out);
    });
    suite.run({ async: false });
  });
}
