/**
 * The server's job queue. Jobs are asynchronous: `POST /v1/bank/jobs` → 202 `{ jobId }` → `GET /v1/bank/jobs/{id}`
 * (status, progress) → `GET /v1/bank/jobs/{id}/result`. Records live in the engine database (the server's own
 * `api_jobs` table) and results under `<home>/results/`, so a restart loses nothing; on shutdown the running job
 * finishes and queued jobs are parked, then resumed at the next start (a request that went stale meanwhile then
 * fails with its coded error). A job the engine recorded before a crash is delivered if it finished, resumed if it
 * can be (scoring, verification), or failed once (training) — docs/operations.md "Crash safety". Jobs run a few at a
 * time (lanes), through the same protocol pipelines as embedded mode (engine/protocols/<score|verify|train>/run.ts,
 * docs/design.md §10).
 */
import { join } from 'node:path';
import { mkdirSync, readFileSync, writeFileSync, renameSync } from 'node:fs';
import { SafehouseError, fail, ERRORS, isCoded, storageFull, type ErrorCode } from '../../core/errors.ts';
import { requireSignature, type Signed } from '../../core/sign.ts';
import type { Engine } from '../../engine/engine.ts';
import type { ClaimOpenings } from '../../engine/protocols/verify/messages.ts';
import { planTraining } from '../../engine/protocols/train/plan.ts';
import type { TrainingColumnsSource } from '../../engine/protocols/train/run.ts';
import type { TrainPlan, TrainLabels } from '../../engine/protocols/train/messages.ts';
import { toJson, fromJson } from '../wire.ts';
import { canonicalize } from '../../core/jcs.ts';
import { JOB_ID } from './schemas.ts';
import type { Custodians } from './custodians.ts';
import type { JobEvent } from './observe.ts';
import { executeJob, refusalsOf } from './job-run.ts';

export type JobKind = 'score' | 'verify' | 'train';
export type JobStatus = 'queued' | 'running' | 'awaiting-labels' | 'done' | 'failed' | 'parked';
export interface JobRow {
  id: string;
  kind: JobKind;
  bank: string;
  status: JobStatus;
  progress: { phase: string; done: number; total: number } | null;
  error: { code: string; message: string; details: Record<string, unknown> } | null;
  createdAt: string;
  finishedAt: string | null;
}
/** A job as the bank submits it (`POST /v1/bank/jobs`). */
export interface JobSubmission {
  kind: JobKind;
  request: Signed<never>;
  openings?: ClaimOpenings;
}

const REQUEST_TYPES: Record<JobKind, string> = {
  score: 'safehouse.score.request.v1',
  verify: 'safehouse.verify.request.v1',
  train: 'safehouse.train.request.v1',
};

export class JobQueue {
  private readonly engine: Engine;
  private readonly custodians: Custodians;
  private readonly trainingColumns: TrainingColumnsSource | undefined;
  private readonly log: (line: string) => void;
  private readonly onEvent: (e: JobEvent) => void;
  private readonly resultsDir: string;
  private readonly queue: string[] = [];
  /** Jobs run in `lanes` at once: a job stuck on a slow custodian (bounded by its timeouts) holds one lane only. */
  private readonly lanes: number;
  private readonly active = new Set<Promise<void>>();
  private stopped = false;

  constructor(
    engine: Engine,
    custodians: Custodians,
    opts: {
      trainingColumns?: TrainingColumnsSource | undefined;
      log: (line: string) => void;
      lanes?: number;
      /** Job started / finished (structured logs and metrics, api/server/observe.ts). */
      onEvent?: (e: JobEvent) => void;
    },
  ) {
    this.lanes = Math.max(1, opts.lanes ?? 3);
    this.engine = engine;
    this.custodians = custodians;
    this.trainingColumns = opts.trainingColumns;
    this.log = opts.log;
    this.onEvent = opts.onEvent ?? (() => {});
    this.resultsDir = join(engine.store.home, 'results');
    mkdirSync(this.resultsDir, { recursive: true });
    engine.store.db
      .exec(`CREATE TABLE IF NOT EXISTS api_jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, bank TEXT NOT NULL,
      status TEXT NOT NULL, progress_json TEXT, error_json TEXT, submit_json TEXT NOT NULL, plan_json TEXT, created_at TEXT NOT NULL, finished_at TEXT);`);
  }

  /** Jobs parked by a previous shutdown (or cut off by a crash while running) go back in the queue. */
  resume(): void {
    const again = this.engine.store.db
      .prepare("SELECT id FROM api_jobs WHERE status IN ('queued', 'parked', 'running') ORDER BY created_at")
      .all() as Array<{ id: string }>;
    for (const r of again) this.enqueue(r.id);
  }

  /** Shutdown: take no more jobs and park the queued ones; the running one finishes (`idle()`). */
  park(): void {
    this.stopped = true;
    const parked = this.queue.splice(0);
    const park = this.engine.store.db.prepare(
      "UPDATE api_jobs SET status = 'parked' WHERE id = ? AND status = 'queued'",
    );
    for (const id of parked) park.run(id);
  }

  /** Settles when the running jobs (if any) have finished. */
  idle(): Promise<void> | undefined {
    return this.active.size ? Promise.all([...this.active]).then(() => undefined) : undefined;
  }

  /** Jobs waiting for a lane. */
  depth(): number {
    return this.queue.length;
  }

  /** Jobs running now. */
  runningCount(): number {
    return this.active.size;
  }

  /** Check what can be checked at once (signature, bank, id, training plan), then queue. */
  async submit(bank: string, b: JobSubmission): Promise<{ jobId: string; status: JobStatus }> {
    const e = this.engine;
    const request = b.request as unknown as Signed<{ type: string; jobId: string; bank: string }>;
    if (request.signer !== bank || request.body.bank !== bank)
      fail('SH_ERR_FORBIDDEN', `bank ${bank} may submit its own requests only`);
    requireSignature(
      request,
      e.registry.requireParty(bank, 'bank').ed25519,
      REQUEST_TYPES[b.kind],
      `${b.kind} request by ${bank}`,
    );
    const jobId = request.body.jobId;
    if (typeof jobId !== 'string' || !new RegExp(JOB_ID).test(jobId))
      fail('SH_ERR_INVALID_ARGUMENT', '"jobId" expected 1..96 characters [A-Za-z0-9_.:-]');
    // The same signed request again (a client that lost the answer, or resubmits after a crash) is the same job.
    const known = e.store.db.prepare('SELECT kind, status, submit_json FROM api_jobs WHERE id = ?').get(jobId) as
      { kind: string; status: JobStatus; submit_json: string } | undefined;
    if (known) {
      const before = JSON.parse(known.submit_json) as { request: unknown };
      if (known.kind === b.kind && canonicalize(before.request) === canonicalize(b.request))
        return { jobId, status: known.status };
      fail('SH_ERR_ALREADY_EXISTS', `job ${jobId} already exists with another request`, { job: jobId });
    }
    if (e.jobs.get(jobId)) fail('SH_ERR_ALREADY_EXISTS', `job ${jobId} already exists`, { job: jobId });
    if (b.kind === 'verify' && !b.openings) fail('SH_ERR_INVALID_ARGUMENT', '"openings" is required for a verify job');
    let plan: TrainPlan | undefined;
    if (b.kind === 'train') {
      // The planner looks providers and fields up in the database: malformed ones get a coded 400, not a driver error.
      const t = request.body as { provider?: unknown; fields?: unknown; others?: unknown; subjects?: unknown };
      const part = (p: unknown) =>
        typeof p === 'object' &&
        p !== null &&
        typeof (p as { provider?: unknown }).provider === 'string' &&
        Array.isArray((p as { fields?: unknown }).fields) &&
        (p as { fields: unknown[] }).fields.every((f) => typeof f === 'string');
      if (
        !part(t) ||
        !(t.others === undefined || (Array.isArray(t.others) && t.others.every(part))) ||
        !Array.isArray(t.subjects)
      )
        fail(
          'SH_ERR_INVALID_ARGUMENT',
          'a training request expected "provider" and "fields" (strings), "others" as a list of { provider, fields } and a "subjects" list',
        );
      // The plan shows the job to every provider's custodian: after a restart they are reconnected first.
      const others = (t.others ?? []) as Array<{ provider: string }>;
      await this.custodians.ensure([t.provider as string, ...others.map((o) => o.provider)]);
      plan = await planTraining(e, request as never);
    }
    const status: JobStatus = plan ? 'awaiting-labels' : 'queued';
    e.store.db
      .prepare(
        'INSERT INTO api_jobs (id, kind, bank, status, submit_json, plan_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      )
      .run(
        jobId,
        b.kind,
        bank,
        status,
        JSON.stringify({ request: b.request, ...(b.openings ? { openings: b.openings } : {}) }),
        plan ? toJson(plan) : null,
        new Date().toISOString(),
      );
    if (status === 'queued') this.enqueue(jobId);
    return { jobId, status };
  }

  /** One of the bank's jobs (SH_ERR_NOT_FOUND, or SH_ERR_FORBIDDEN for another bank's). */
  own(id: string, bank: string): JobRow {
    const r = this.engine.store.db.prepare('SELECT * FROM api_jobs WHERE id = ?').get(id) as
      Record<string, string | null> | undefined;
    if (!r) fail('SH_ERR_NOT_FOUND', `no job ${JSON.stringify(id)}`, { job: id });
    if (r.bank !== bank) fail('SH_ERR_FORBIDDEN', `job ${id} belongs to another bank`, { job: id });
    return {
      id: r.id!,
      kind: r.kind as JobKind,
      bank: r.bank!,
      status: r.status as JobStatus,
      progress: r.progress_json ? JSON.parse(r.progress_json) : null,
      error: r.error_json ? JSON.parse(r.error_json) : null,
      createdAt: r.created_at!,
      finishedAt: r.finished_at ?? null,
    };
  }

  /** A job's status and progress; a training job awaiting labels shows the plan the bank encrypts its labels for. */
  view(job: JobRow, withPlan: boolean): Record<string, unknown> {
    const view: Record<string, unknown> = {
      jobId: job.id,
      kind: job.kind,
      bank: job.bank,
      status: job.status,
      progress: job.progress,
      error: job.error,
      createdAt: job.createdAt,
      finishedAt: job.finishedAt,
    };
    if (withPlan && job.kind === 'train' && job.status === 'awaiting-labels') {
      const plan = JSON.parse(
        (
          this.engine.store.db.prepare('SELECT plan_json FROM api_jobs WHERE id = ?').get(job.id) as {
            plan_json: string;
          }
        ).plan_json,
      ) as TrainPlan;
      view.plan = {
        jobId: plan.jobId,
        provider: plan.provider,
        features: plan.features,
        options: plan.options,
        cohort: plan.cohort,
        excluded: plan.excluded,
      };
    }
    return view;
  }

  /** Keeps a training job's label blobs as its inputs (`<home>/results/<id>.inputs/`), for when it runs. */
  saveInputs(id: string, blobs: readonly string[], staged: Map<string, Uint8Array>): void {
    const dir = this.inputsDir(id);
    mkdirSync(dir, { recursive: true });
    for (const b of blobs) writeFileSync(join(dir, b), staged.get(b)!);
  }

  /** A planned training job got its signed labels: it joins the queue. */
  queueLabelled(id: string, labels: Signed<TrainLabels>): void {
    this.engine.store.db
      .prepare(
        "UPDATE api_jobs SET status = 'queued', submit_json = json_set(submit_json, '$.labels', json(?)) WHERE id = ?",
      )
      .run(JSON.stringify(labels), id);
    this.enqueue(id);
  }

  /** A finished job's result; a failed job answers with its own coded error. */
  result(job: JobRow): unknown {
    if (job.status === 'failed')
      throw new SafehouseError(
        (job.error!.code in ERRORS ? job.error!.code : 'SH_ERR_INTERNAL') as ErrorCode,
        job.error!.message,
        job.error!.details as never,
      );
    if (job.status !== 'done') fail('SH_ERR_JOB_NOT_READY', `job ${job.id} is ${job.status}`, { status: job.status });
    return fromJson(readFileSync(join(this.resultsDir, `${job.id}.json`), 'utf8'));
  }

  private inputsDir(id: string): string {
    return join(this.resultsDir, `${id}.inputs`);
  }

  private enqueue(id: string): void {
    if (this.stopped) return;
    this.engine.store.db
      .prepare("UPDATE api_jobs SET status = 'queued' WHERE id = ? AND status IN ('parked', 'running')")
      .run(id);
    if (this.queue.includes(id)) return;
    this.queue.push(id);
    this.fill();
  }

  /** Start queued jobs while a lane is free. */
  private fill(): void {
    while (!this.stopped && this.queue.length && this.active.size < this.lanes) {
      const id = this.queue.shift()!;
      const p: Promise<void> = this.run(id).finally(() => {
        this.active.delete(p);
        this.fill();
      });
      this.active.add(p);
    }
  }

  private async run(id: string): Promise<void> {
    const db = this.engine.store.db;
    const row = db.prepare('SELECT kind, bank, submit_json, plan_json FROM api_jobs WHERE id = ?').get(id) as {
      kind: JobKind;
      bank: string;
      submit_json: string;
      plan_json: string | null;
    };
    db.prepare("UPDATE api_jobs SET status = 'running' WHERE id = ?").run(id);
    const t0 = performance.now();
    const phases: Record<string, number> = {};
    let phase: { name: string; at: number } | undefined;
    this.onEvent({ event: 'job.started', job: id, kind: row.kind, bank: row.bank });
    const finish = (status: string, code?: string) => {
      const now = performance.now();
      if (phase) phases[phase.name] = (phases[phase.name] ?? 0) + (now - phase.at) / 1000;
      this.onEvent({
        event: 'job.finished',
        job: id,
        kind: row.kind,
        bank: row.bank,
        status,
        ...(code ? { code } : {}),
        seconds: (now - t0) / 1000,
        phases: Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, Math.round(v * 1000) / 1000])),
        refusals: refusalsOf(this.engine, id),
      });
    };
    // Progress goes to the database at most every 200 ms, and always when a phase completes.
    let last = 0;
    const progress = (p: { phase: string; done: number; total: number }) => {
      const now = performance.now();
      if (phase?.name !== p.phase) {
        if (phase) phases[phase.name] = (phases[phase.name] ?? 0) + (now - phase.at) / 1000;
        phase = { name: p.phase, at: now };
      }
      if (now - last < 200 && p.done !== p.total) return;
      last = now;
      db.prepare('UPDATE api_jobs SET progress_json = ? WHERE id = ?').run(
        JSON.stringify({ phase: p.phase, done: p.done, total: p.total }),
        id,
      );
    };
    try {
      const submitted = JSON.parse(row.submit_json) as {
        request: Signed<never>;
        openings?: ClaimOpenings;
        labels?: Signed<TrainLabels>;
      };
      const result = await executeJob(
        { engine: this.engine, custodians: this.custodians, trainingColumns: this.trainingColumns },
        { id, kind: row.kind, planJson: row.plan_json, submitted, inputsDir: this.inputsDir(id) },
        progress,
      );
      // Written aside and renamed, so a result file is never seen half-written.
      const file = join(this.resultsDir, `${id}.json`);
      writeFileSync(`${file}.tmp`, toJson(result));
      renameSync(`${file}.tmp`, file);
      db.prepare("UPDATE api_jobs SET status = 'done', finished_at = ? WHERE id = ?").run(new Date().toISOString(), id);
      finish('done');
    } catch (raw) {
      const err = storageFull(raw) ?? raw;
      const pub = isCoded(err)
        ? err.toPublic()
        : { code: 'SH_ERR_INTERNAL', message: ERRORS.SH_ERR_INTERNAL.summary, details: {} };
      if (!isCoded(err) || err.kind === 'internal') this.log(`job ${id}: ${(err as Error)?.stack ?? String(err)}`);
      this.recordFailure(id, err, pub, 0);
      finish('failed', String(pub.code));
    }
  }

  /**
   * Fail a job once, in the engine (a recorded job the protocol did not fail yet: the disk filled mid-step) and in the
   * queue. When nothing can be written (a full disk) it is tried again every 5 s for 10 minutes; a server restarted
   * meanwhile settles the job at its start.
   */
  private recordFailure(id: string, err: unknown, pub: Record<string, unknown>, attempt: number): void {
    try {
      if (this.engine.jobs.get(id)?.status === 'running') this.engine.jobs.fail(id, err);
      this.engine.store.db
        .prepare("UPDATE api_jobs SET status = 'failed', error_json = ?, finished_at = ? WHERE id = ?")
        .run(JSON.stringify(pub), new Date().toISOString(), id);
    } catch (again) {
      this.log(`job ${id}: its failure could not be recorded yet: ${(again as Error)?.message ?? String(again)}`);
      if (attempt < 120 && !this.stopped)
        setTimeout(() => this.recordFailure(id, err, pub, attempt + 1), 5_000).unref();
    }
  }
}
