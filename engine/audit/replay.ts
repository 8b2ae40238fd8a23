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
  return steps.report(jobId, job.kind);
}
