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
import { feedCustodian } from '../../engine/protocols/job.ts';
import { join } from 'node:path';
import { mkdirSync, readFileSync, writeFileSync, renameSync } from 'node:fs';
import { SafehouseError, fail, ERRORS, isCoded, storageFull, type ErrorCode } from '../../core/errors.ts';
import { requireSignature, type Signed } from '../../core/sign.ts';
import type { Engine } from '../../engine/engine.ts';
import { runScoreJob } from '../../engine/protocols/score/run.ts';
import type { ScoreRequest } from '../../engine/protocols/score/messages.ts';
import { runVerifyJob } from '../../engine/protocols/verify/run.ts';
import type { VerifyRequest, ClaimOpenings } from '../../engine/protocols/verify/messages.ts';
import { planTraining } from '../../engine/protocols/train/plan.ts';
import { runTrainJob, type TrainingColumnsSource } from '../../engine/protocols/train/run.ts';
import type { TrainPlan, TrainRequest, TrainLabels, TrainingPart } from '../../engine/protocols/train/messages.ts';
import type { HttpCustodian } from '../custodian-http.ts';
import { toJson, fromJson } from '../wire.ts';
import { canonicalize } from '../../core/jcs.ts';
import type { TrainOutcome } from '../../engine/protocols/train/messages.ts';
import { JOB_ID } from './schemas.ts';
import type { Custodians } from './custodians.ts';
import type { JobEvent } from './observe.ts';

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

  /** A finished job's result from what the engine kept of it (the server crashed before it wrote its copy). */
  private delivered(kind: JobKind, summary: Record<string, unknown>): unknown {
    const blob = kind === 'train' ? summary.outcomeBlob : summary.resultHash;
    if (typeof blob !== 'string' || !this.engine.store.hasBlob(blob))
      fail('SH_ERR_BLOB_MISSING', `the result of this ${kind} job is no longer kept`);
    const kept = JSON.parse(new TextDecoder().decode(this.engine.store.getBlob(blob))) as Record<string, unknown>;
    if (kind !== 'train') return kept;
    const m = kept.model as { W0: string; W: string[] };
    return { ...kept, model: { W0: BigInt(m.W0), W: m.W.map((w) => BigInt(w)) } } as TrainOutcome;
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
      // A job the engine recorded before a crash: deliver it if it finished, resume it if it can, else fail it once.
      const recorded = this.engine.jobs.get(id);
      const resume = !!recorded && recorded.status !== 'planned';
      let result: unknown;
      if (recorded?.status === 'completed' || recorded?.status === 'purged') {
        result = this.delivered(recorded.kind, recorded.summary ?? {});
      } else if (recorded?.status === 'failed') {
        const failed = this.engine.ledger.jobEntries(id).find((x) => x.kind === 'job.failed');
        const code = String(failed?.body.code ?? 'SH_ERR_INTERNAL');
        throw new SafehouseError(
          (code in ERRORS ? code : 'SH_ERR_INTERNAL') as ErrorCode,
          `job ${id} failed (${code}) before the server restarted`,
          { job: id },
        );
      } else if (resume && row.kind === 'train') {
        // Training keeps no resumable state between iterations: it fails once; custodians refund what they did not answer.
        const err = new SafehouseError(
          'SH_ERR_INTERRUPTED',
          `training job ${id} was cut off by a restart at ${recorded!.status === 'ready' ? 'its inputs' : 'its iterations'}`,
          { job: id },
        );
        this.engine.jobs.fail(id, err);
        throw err;
      } else if (row.kind === 'score') {
        const req = submitted.request as unknown as Signed<ScoreRequest>;
        const m = this.engine.models.get(req.body.modelId);
        if (m) await this.custodians.ensure(m.spec.terms.map((t) => t.provider));
        result = await runScoreJob(this.engine, req, {
          resume,
          onProgress: (p) => progress({ phase: p.phase, done: p.done, total: p.total }),
        });
      } else if (row.kind === 'verify') {
        const req = submitted.request as unknown as Signed<VerifyRequest>;
        await this.custodians.ensure(req.body.claims.map((c) => c.provider));
        result = await runVerifyJob(this.engine, req, submitted.openings ?? {}, {
          resume,
          onProgress: (p) => progress({ phase: p.phase, done: p.done, total: p.total }),
        });
      } else {
        const plan = fromJson(row.plan_json!) as TrainPlan;
        await this.custodians.ensure([plan.provider, ...plan.others.map((o) => o.provider)]);
        // Each provider's columns from its custodian (unless a source was given), the bank's labels as it uploaded them.
        const columns =
          this.trainingColumns ??
          (async (provider: string, part: TrainingPart, request: Signed<TrainRequest>) => {
            // A custodian restarted since the plan rebuilds its ledger copy first (it opens the job again).
            await feedCustodian(this.engine, provider);
            return (this.engine.registry.custodian(provider) as HttpCustodian).trainingColumns(part, request);
          });
        const labels = submitted.labels!;
        const dir = this.inputsDir(id);
        const labelBlobs = new Map(
          labels.body.blocks.map((b) => [b.blob, new Uint8Array(readFileSync(join(dir, b.blob)))] as const),
        );
        result = await runTrainJob(
          this.engine,
          plan,
          { columns, labels, labelBlobs },
          { onProgress: (p) => progress(p) },
        );
      }
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

/** Subjects and claims a job had refused for budget, by where (the engine's budget, a custodian's). */
function refusalsOf(engine: Engine, id: string): Record<string, number> {
  const out: Record<string, number> = {};
  let entries: ReturnType<Engine['ledger']['jobEntries']>;
  try {
    entries = engine.ledger.jobEntries(id);
  } catch {
    return out;
  }
  for (const e of entries) {
    const n = (k: string) => (Array.isArray(e.body[k]) ? (e.body[k] as unknown[]).length : 0);
    if (e.kind === 'verify.budget_exceeded') out.engine = (out.engine ?? 0) + n('claims');
    else if (e.kind === 'verify.custodian_refused') out.custodian = (out.custodian ?? 0) + n('claims');
    else if (e.kind === 'score.custodian_refused') out.custodian = (out.custodian ?? 0) + n('refused');
  }
  return out;
}
