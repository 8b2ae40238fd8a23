/**
 * Auditor replay of a job (docs/protocols.md "Auditor replay"): from the ledger, the stored bank-signed request, the
 * blobs and what was escrowed to the auditor at job time (the job seed, and for verification the claim openings),
 * re-check every step the job took and compare what was sent to the custodians and to the bank. Each protocol's steps
 * are in its own folder (engine/protocols/<p>/replay.ts); this module finds the job and dispatches by kind.
 */
import type { Engine } from '../engine.ts';
import { REPLAYS } from '../protocols/index.ts';
import { jobEvents, Steps, type Auditor, type ReplayReport } from './steps.ts';

export type { ReplayReport, ReplayStep, StepStatus } from './steps.ts';

/**
 * Replay one job. `auditor` is the replaying auditor's id and X25519 secret key (to open the escrowed seed).
 * A job with no stored request or no `job.requested` entry reports its `request` step `missing`.
 */
export async function replayJob(engine: Engine, jobId: string, auditor: Auditor): Promise<ReplayReport> {
  const job = engine.jobs.get(jobId);
  const steps = new Steps();
  const events = jobEvents(engine, jobId);
  const requested = events.find((e) => e.kind === 'job.requested');
  if (!job || !requested) {
    steps.add('request', 'missing', job ? 'no job.requested entry in the ledger' : 'no stored request');
    return steps.report(jobId, job?.kind ?? 'unknown');
  }
  const replay = REPLAYS[job.kind];
  if (!replay) {
    steps.add('request', 'missing', `replay of ${job.kind} jobs is not implemented`);
    return steps.report(jobId, job.kind);
  }
  try {
    await replay({
      engine,
      jobId,
      auditor,
      stored: job.request as never,
      events,
      requested,
      add: steps.add,
      steps: () => steps.steps,
    });
  } catch (err) {
    // One job that cannot be replayed is that job's finding, not the end of an `--all` run.
    const code = (err as { code?: string }).code ?? 'SH_ERR_INTERNAL';
    steps.add('replay', 'mismatch', `the replay stopped: ${code} ${(err as Error).message ?? ''}`.trim());
  }
  outcome(steps, events);
  return steps.report(jobId, job.kind);
}

/**
 * A failed job delivered nothing: the material of the steps after its failure (escrow, iterations, result, answers,
 * a trained model) is not expected, so its absence is dropped and the failure is a step of its own, matching when it is ledgered once with its code.
 * A job with no ending at all (cut off and never resumed or failed) is `missing`.
 */
function outcome(steps: Steps, events: ReadonlyArray<{ kind: string; body: Record<string, unknown> }>) {
  const completed = events.filter((e) => e.kind === 'job.completed');
  const failed = events.filter((e) => e.kind === 'job.failed');
  if (completed.length + failed.length === 0) {
    steps.add('outcome', 'missing', 'the job has not finished (no job.completed or job.failed)');
    return;
  }
  if (completed.length + failed.length > 1) {
    steps.add('outcome', 'mismatch', `the job finished ${completed.length + failed.length} times`);
    return;
  }
  if (!failed.length) return;
  // Material the job would have made after the point it failed at (escrow, iterations, result) is not expected.
  const dropped = steps.drop((s) => s.status === 'missing' && s.step !== 'request');
  steps.add(
    'outcome',
    'match',
    `failed with ${String(failed[0]!.body.code)}; nothing was delivered${dropped ? ` (${dropped} step(s) after the failure not expected)` : ''}`,
  );
}
