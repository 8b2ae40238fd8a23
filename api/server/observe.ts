/**
 * What an operator sees of the engine server (docs/operations.md "Logs, health and metrics"):
 *  - one structured log line (fastify's pino, JSON) per request — request id, route pattern (never the raw URL: path
 *    parameters may be an enterprise's USCC), method, status, error code, duration, the calling party — and per job
 *    (started, finished: kind, status, code, seconds per phase). An enterprise is logged by a pseudonym (the first 12
 *    hex of SHA-256 of its USCC); no message of a coded error is logged (messages name values), nor a body;
 *  - `GET /healthz` (the process answers), `GET /readyz` (it can serve: not shutting down, its database answers;
 *    503 otherwise; each custodian's circuit state beside it);
 *  - `GET /metrics`, Prometheus text format: queue depth, running jobs, job durations by kind and status and by phase,
 *    custodian calls, errors, retries, latency and circuit state per provider, budget refusals, requests by route
 *    and status, ledger size. Counts only — no party, subject or value is a label.
 */
import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { Engine } from '../../engine/engine.ts';
import { HttpCustodian } from '../custodian-http.ts';

/** How a party appears in logs: enterprises (whose id is their USCC) by pseudonym, every other party by its id. */
export function logParty(id: string | undefined, role?: string): string | undefined {
  if (id === undefined) return undefined;
  if (role === 'enterprise' || /^[0-9A-HJ-NPQRTUWXY]{18}$/.test(id))
    return `enterprise#${createHash('sha256').update(id).digest('hex').slice(0, 12)}`;
  return id;
}

const BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

class Histogram {
  readonly counts = new Array<number>(BUCKETS.length).fill(0);
  sum = 0;
  count = 0;
  observe(v: number): void {
    this.sum += v;
    this.count++;
    for (let i = 0; i < BUCKETS.length; i++) if (v <= BUCKETS[i]!) this.counts[i]!++;
  }
}

const labelText = (labels: Record<string, string>) => {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, '_')}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
};

/** A small metric registry (counters and histograms keyed by label sets) rendered as Prometheus text. */
export class Metrics {
  private readonly counters = new Map<string, { help: string; values: Map<string, number> }>();
  private readonly histograms = new Map<string, { help: string; values: Map<string, Histogram> }>();

  inc(name: string, help: string, labels: Record<string, string> = {}, by = 1): void {
    let c = this.counters.get(name);
    if (!c) this.counters.set(name, (c = { help, values: new Map() }));
    const k = labelText(labels);
    c.values.set(k, (c.values.get(k) ?? 0) + by);
  }

  observe(name: string, help: string, labels: Record<string, string>, seconds: number): void {
    let h = this.histograms.get(name);
    if (!h) this.histograms.set(name, (h = { help, values: new Map() }));
    const k = labelText(labels);
    let hist = h.values.get(k);
    if (!hist) h.values.set(k, (hist = new Histogram()));
    hist.observe(seconds);
  }

  render(gauges: Array<{ name: string; help: string; values: Array<[Record<string, string>, number]> }>): string {
    const out: string[] = [];
    for (const g of gauges) {
      out.push(`# HELP ${g.name} ${g.help}`, `# TYPE ${g.name} gauge`);
      for (const [l, v] of g.values) out.push(`${g.name}${labelText(l)} ${v}`);
    }
    for (const [name, c] of this.counters) {
      out.push(`# HELP ${name} ${c.help}`, `# TYPE ${name} counter`);
      for (const [l, v] of c.values) out.push(`${name}${l} ${v}`);
    }
    for (const [name, h] of this.histograms) {
      out.push(`# HELP ${name} ${h.help}`, `# TYPE ${name} histogram`);
      for (const [l, hist] of h.values) {
        const inner = l ? l.slice(1, -1) + ',' : '';
        BUCKETS.forEach((b, i) => out.push(`${name}_bucket{${inner}le="${b}"} ${hist.counts[i]}`));
        out.push(`${name}_bucket{${inner}le="+Inf"} ${hist.count}`);
        out.push(`${name}_sum${l} ${hist.sum.toFixed(6)}`, `${name}_count${l} ${hist.count}`);
      }
    }
    return out.join('\n') + '\n';
  }
}

/** A job event from the queue (api/server/jobs.ts). */
export interface JobEvent {
  event: 'job.started' | 'job.finished';
  job: string;
  kind: string;
  bank: string;
  status?: string;
  code?: string;
  seconds?: number;
  /** Seconds per protocol phase (consent, compute, tokens, numeric, iterate …). */
  phases?: Record<string, number>;
  /** Budget refusals the job met (over-budget claims and subjects, by where they were refused). */
  refusals?: Record<string, number>;
}

export interface ObserveSources {
  engine: Engine;
  metrics: Metrics;
  queue: () => { queued: number; running: number };
  closing: () => boolean;
}

/** Request logs, health, readiness and metrics on `app`. */
export function observe(app: FastifyInstance, s: ObserveSources): void {
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    const status = reply.statusCode;
    const seconds = reply.elapsedTime / 1000;
    s.metrics.inc('safehouse_http_requests_total', 'HTTP requests by route and status', {
      route,
      method: req.method,
      status: String(status),
    });
    s.metrics.observe('safehouse_http_request_seconds', 'HTTP request durations by route', { route }, seconds);
    const code = (reply as unknown as { shCode?: string }).shCode;
    req.log.info(
      {
        route,
        method: req.method,
        status,
        ms: Math.round(reply.elapsedTime * 10) / 10,
        ...(req.party ? { party: logParty(req.party.id, req.party.role) } : {}),
        ...(code ? { code } : {}),
      },
      'request',
    );
  });
  app.get('/healthz', { config: { role: 'public' } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { config: { role: 'public' } }, async (_req, reply) => {
    const problems: string[] = [];
    if (s.closing()) problems.push('shutting down');
    try {
      s.engine.store.db.prepare('SELECT 1').get();
    } catch {
      problems.push('the database does not answer');
    }
    const custodians = custodianStats(s.engine).map(([provider, st]) => ({ provider, circuitOpen: st.breakerOpen }));
    if (problems.length) void reply.status(503);
    return { status: problems.length ? 'not ready' : 'ready', problems, custodians, ...s.queue() };
  });
  app.get('/metrics', { config: { role: 'public' } }, async (_req, reply) => {
    const q = s.queue();
    const cs = custodianStats(s.engine);
    const per = (f: (st: HttpCustodian['stats']) => number): Array<[Record<string, string>, number]> =>
      cs.map(([provider, st]) => [{ provider }, f(st)]);
    void reply.type('text/plain; version=0.0.4');
    return s.metrics.render([
      { name: 'safehouse_jobs_queued', help: 'Jobs waiting for a lane', values: [[{}, q.queued]] },
      { name: 'safehouse_jobs_running', help: 'Jobs running now', values: [[{}, q.running]] },
      { name: 'safehouse_ledger_entries', help: 'Ledger leaves', values: [[{}, s.engine.ledger.size()]] },
      { name: 'safehouse_custodian_calls', help: 'Calls to each custodian (attempts)', values: per((x) => x.calls) },
      { name: 'safehouse_custodian_errors', help: 'Calls that failed', values: per((x) => x.errors) },
      { name: 'safehouse_custodian_retries', help: 'Calls retried after no answer', values: per((x) => x.retries) },
      { name: 'safehouse_custodian_seconds', help: 'Seconds spent in calls', values: per((x) => x.seconds) },
      {
        name: 'safehouse_custodian_circuit_open',
        help: '1 while the circuit is open',
        values: per((x) => +x.breakerOpen),
      },
    ]);
  });
}

/** Each connected networked custodian's call statistics. */
function custodianStats(engine: Engine): Array<[string, HttpCustodian['stats']]> {
  const out: Array<[string, HttpCustodian['stats']]> = [];
  for (const p of engine.registry.parties('provider')) {
    if (!engine.registry.hasCustodian(p.id)) continue;
    const c = engine.registry.custodian(p.id);
    if (c instanceof HttpCustodian) out.push([p.id, c.stats]);
  }
  return out;
}

/** Record a finished job's metrics. */
export function jobMetrics(m: Metrics, e: JobEvent): void {
  if (e.event !== 'job.finished') return;
  m.observe(
    'safehouse_job_seconds',
    'Job durations by kind and ending',
    { kind: e.kind, status: e.status ?? '' },
    e.seconds ?? 0,
  );
  for (const [phase, s] of Object.entries(e.phases ?? {}))
    m.observe('safehouse_job_phase_seconds', 'Job phase durations by kind and phase', { kind: e.kind, phase }, s);
  if (e.code) m.inc('safehouse_job_failures_total', 'Failed jobs by kind and code', { kind: e.kind, code: e.code });
  for (const [where, n] of Object.entries(e.refusals ?? {}))
    m.inc('safehouse_budget_refusals_total', 'Subjects or claims refused for budget, by where', { where }, n);
}
