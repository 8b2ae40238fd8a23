/**
 * End-to-end run: `runDemo` (api/demo.ts) — three providers ingest, consents, model approval, encrypted scoring of every
 * subject, the same scorecard on the plaintext CSVs, ledger audit — with timings per phase and peak memory.
 *
 * Usage: `node bench/e2e.ts [subjects]` or `BENCH_SUBJECTS=20000 node bench/e2e.ts` (default 20000).
 * `BENCH_E2E_JSON=path` also writes the report as JSON (bench/run.ts uses this to run e2e in a fresh process, so the
 * primitives' WASM heap, which never shrinks, does not inflate the peak RSS measured here).
 *
 * Peak memory is reported two ways: `process.memoryUsage.rss()` sampled every 50 ms from a sampler thread (so a busy
 * main thread does not stall sampling), and the kernel's `process.resourceUsage().maxRSS` (whole process, incl. the
 * worker pool's threads).
 */
import { writeFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { runDemo, type DemoSummary } from '../api/demo.ts';
import { formatTable, fmt, machineFacts, type MachineFacts } from './report.ts';

export interface E2eReport {
  subjects: number;
  poolSize: number;
  matchesPlaintext: boolean;
  scored: number;
  refused: Record<string, number>;
  ledgerOk: boolean;
  totalSeconds: number;
  phases: Array<{ phase: string; seconds: number; secondsPer1000: number }>;
  encryptedScoringSeconds: number;
  plaintextScoringSeconds: number;
  /** encryptedScoringSeconds / plaintextScoringSeconds. */
  encryptedVsPlaintextScoring: number;
  memory: {
    rssAtStartMiB: number;
    /** Peak of the 50 ms RSS samples. */
    sampledPeakRssMiB: number;
    samples: number;
    /** process.resourceUsage().maxRSS (KiB on Linux), in MiB. */
    maxRssMiB: number;
  };
  machine: MachineFacts;
}

const SAMPLER = `
const { parentPort, workerData } = require('node:worker_threads');
let peak = 0, n = 0;
const tick = () => { const r = process.memoryUsage.rss(); if (r > peak) peak = r; n++; };
tick();
const iv = setInterval(tick, workerData.intervalMs);
parentPort.on('message', () => { clearInterval(iv); tick(); parentPort.postMessage({ peak, n }); });
`;

function startRssSampler(intervalMs = 50): () => Promise<{ peak: number; n: number }> {
  const w = new Worker(SAMPLER, { eval: true, workerData: { intervalMs } });
  return () =>
    new Promise((resolve, reject) => {
      w.once('message', (m: { peak: number; n: number }) => {
        void w.terminate();
        resolve(m);
      });
      w.once('error', reject);
      w.postMessage('stop');
    });
}

const MiB = 2 ** 20;

export async function runE2e(subjects: number, opts: { log?: (line: string) => void } = {}): Promise<E2eReport> {
  if (!Number.isInteger(subjects) || subjects < 1)
    throw new RangeError(`"subjects" expected a positive integer, got ${subjects}`);
  const log = opts.log ?? ((line: string) => console.error(line));
  const rssAtStart = process.memoryUsage.rss();
  const stopSampler = startRssSampler();
  let lastPct = -1;
  let summary: DemoSummary;
  let sampled: { peak: number; n: number };
  try {
    summary = await runDemo({
      subjects,
      progress: (label, done, total) => {
        const pct = Math.floor((10 * done) / total);
        if (label.startsWith('score') && pct !== lastPct) {
          lastPct = pct;
          log(`  ${label} ${done}/${total}`);
        }
      },
    });
  } finally {
    sampled = await stopSampler();
  }
  const phases = Object.entries(summary.timings).map(([phase, seconds]) => ({
    phase,
    seconds,
    secondsPer1000: (seconds / subjects) * 1000,
  }));
  phases.push({ phase: 'total', seconds: summary.seconds, secondsPer1000: (summary.seconds / subjects) * 1000 });
  return {
    subjects: summary.subjects,
    poolSize: availableParallelism(),
    matchesPlaintext: summary.matchesPlaintext,
    scored: summary.scored,
    refused: summary.refused,
    ledgerOk: summary.ledger.ok,
    totalSeconds: summary.seconds,
    phases,
    encryptedScoringSeconds: summary.encryptedScoringSeconds,
    plaintextScoringSeconds: summary.plaintextScoringSeconds,
    encryptedVsPlaintextScoring: summary.encryptedScoringSeconds / summary.plaintextScoringSeconds,
    memory: {
      rssAtStartMiB: rssAtStart / MiB,
      sampledPeakRssMiB: sampled.peak / MiB,
      samples: sampled.n,
      maxRssMiB: process.resourceUsage().maxRSS / 1024,
    },
    machine: machineFacts(),
  };
}

export function printE2e(r: E2eReport, out: (s: string) => void = console.log): void {
  out(
    `\nEnd to end — runDemo, ${r.subjects} subjects (${r.scored} scored, refused ${JSON.stringify(r.refused)}), worker pool ${r.poolSize}; matches plaintext: ${r.matchesPlaintext}, ledger ok: ${r.ledgerOk}\n`,
  );
  out(
    formatTable(
      ['phase', 'seconds', 's / 1000 subjects'],
      r.phases.map((p) => [p.phase, fmt(p.seconds), fmt(p.secondsPer1000)]),
    ),
  );
  out(
    `\nencrypted / plaintext scoring: ${fmt(r.encryptedVsPlaintextScoring)} (${fmt(r.encryptedScoringSeconds)} s vs ${fmt(r.plaintextScoringSeconds)} s)`,
  );
  out(
    `memory: RSS at start ${fmt(r.memory.rssAtStartMiB)} MiB, sampled peak ${fmt(r.memory.sampledPeakRssMiB)} MiB (${r.memory.samples} samples @ 50 ms), maxRSS ${fmt(r.memory.maxRssMiB)} MiB`,
  );
}

if (import.meta.main) {
  const n = Number(process.argv[2] ?? process.env.BENCH_SUBJECTS ?? 20000);
  const r = await runE2e(n);
  printE2e(r);
  if (process.env.BENCH_E2E_JSON) writeFileSync(process.env.BENCH_E2E_JSON, JSON.stringify(r, null, 2));
  if (!r.matchesPlaintext || !r.ledgerOk) {
    console.error('e2e: encrypted scores do not match the plaintext evaluation or the ledger does not verify');
    process.exitCode = 1;
  }
}
