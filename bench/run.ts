/**
 * `npm run bench`: primitives (benchmark.js, this process) then the end-to-end demo run (a fresh child process, so its
 * peak RSS is not inflated by the primitives' WASM heap), a readable summary, and bench/out/report.json.
 *
 * Environment: BENCH_SUBJECTS (e2e subjects, default 5000 here to keep the combined run short; e2e.ts alone defaults to
 * 20000), BENCH_MAX_TIME (seconds per benchmark.js case, default 1).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runPrimitives, printPrimitives } from './primitives.ts';
import { printE2e, type E2eReport } from './e2e.ts';
import { formatTable, fmt, machineFacts } from './report.ts';

const started = performance.now();
const machine = machineFacts();
console.log(`Safehouse bench — ${machine.cpuModel}, ${machine.cores} cores, ${machine.totalMemoryGiB} GiB, Node ${machine.node}, load ${machine.loadAverage.join(' ')}, ${machine.date}`);
console.log('The machine may be shared: compare ratios from one run, not absolute times across runs.\n');

const primitives = await runPrimitives({ log: (line) => console.log(line) });
printPrimitives(primitives);

const subjects = Number(process.env.BENCH_SUBJECTS ?? 5000);
console.log(`\nend-to-end: node bench/e2e.ts ${subjects} (child process)…`);
const tmp = mkdtempSync(join(tmpdir(), 'safehouse-bench-'));
const jsonPath = join(tmp, 'e2e.json');
let e2e: E2eReport;
try {
  const child = spawnSync(process.execPath, [fileURLToPath(new URL('./e2e.ts', import.meta.url)), String(subjects)], {
    env: { ...process.env, BENCH_E2E_JSON: jsonPath },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  if (child.status !== 0) throw new Error(`bench/e2e.ts exited with ${child.status ?? child.signal}`);
  e2e = JSON.parse(readFileSync(jsonPath, 'utf8')) as E2eReport;
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
printE2e(e2e);

const summary: Array<[string, number, string]> = [
  ...primitives.ratios.map((r): [string, number, string] => [r.name, r.value, r.formula]),
  ['e2e encrypted vs plaintext scoring', e2e.encryptedVsPlaintextScoring, `runDemo score / plaintext phases, ${e2e.subjects} subjects`],
];
console.log('\nSummary of ratios (this run):\n');
console.log(formatTable(['ratio', 'value'], summary.map(([n, v]) => [n, fmt(v)])));

const outDir = fileURLToPath(new URL('./out/', import.meta.url));
mkdirSync(outDir, { recursive: true });
const report = {
  machine,
  note: 'Shared, noisy machine: use the ratios (measured within this run), not the absolute times.',
  wallSeconds: Number(((performance.now() - started) / 1000).toFixed(1)),
  primitives,
  e2e,
};
writeFileSync(join(outDir, 'report.json'), JSON.stringify(report, null, 2) + '\n');
console.log(`\nwrote ${join(outDir, 'report.json')} (${report.wallSeconds} s)`);
