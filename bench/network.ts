/**
 * Network round trip of one verification claim on loopback: a bank client signs a one-claim verify request, submits it
 * to the real engine server (api/server/index.ts `EngineServer`), polls the job, fetches the result and opens it. Every
 * provider's custodian runs behind its own HTTP server (api/custodian-http.ts `buildCustodianServer` around the
 * provider's `LocalCustodian`; engine side `HttpCustodian`). The same one-claim verification is also run in process
 * (embedded `sh.verify`, no HTTP), so the ratio network ÷ embedded can be read off one run.
 *
 * Two claim kinds:
 * - numeric: `gte` on `months_continuous_tax` — one masked comparison in a worker, one custodian `sign` decryption;
 * - token: `eq` on `property_cert_no` — one OPRF evaluation at the custodian (blinded point + DLEQ proof).
 *
 * Tiers, each per claim kind:
 * - embedded: `sh.verify` with the in-process `LocalCustodian`s (sequential, then 4 concurrent callers);
 * - embedded engine + HTTP custodians: `sh.verify` after the custodians are moved behind HTTP (isolates their cost);
 * - network, client default polling: api/client/bank.ts `verify` (polls at 50 ms, doubling to 500 ms);
 * - network, 5 ms polling: the same requests, polled every 5 ms, with a per-phase breakdown.
 * The network tiers run sequentially and with 4 concurrent clients.
 *
 * Client, engine server and custodian servers share this one Node process, so the figures are the whole CPU cost of a
 * round trip on one machine, not a distributed deployment. Worker threads: 2 for the engine (masked comparison) and 2
 * for the providers (the custodian's OPRF evaluation); the custodian's decryption, the ledger, sealing, signing and all
 * HTTP handling run on the main thread.
 *
 * All cases share one engine, and every job appends to the ledger and ends with a checkpoint whose cost grows with the
 * ledger, so the cases are interleaved: each pass runs a slice of 10 round trips of every case (order reversed on odd
 * passes), and every case ends with the same number of round trips over the same range of ledger sizes.
 *
 * Every answer is compared with the plaintext predicate (models/plain.ts `claimPlain`); mismatches must be 0.
 *
 * Usage: `node bench/network.ts [--quick]`. Environment: `BENCH_NETWORK_ROUNDS` (most round trips per case, default
 * 200), `BENCH_NETWORK_SECONDS` (time budget in seconds per case on average, default 20; `--quick` makes it 5; the run
 * stops after the pass that reaches it), `BENCH_NETWORK_SUBJECTS` (default 2000), `BENCH_NETWORK_JSON=path` (also write
 * the report as JSON).
 * Longer than 400 lines: one benchmark script: every phase (embedded, in-process server, HTTP custodians, several
 * callers) measures the same claim on the same fixture set up once at its start.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Safehouse, type ConsentGrant } from '../api/embedded.ts';
import { demoPlaintext } from '../api/demo.ts';
import { demoGrants, generateDemo, generateClaims, DEMO_BANK, DEMO_PURPOSE, type DemoClaim } from '../api/demo-data.ts';
import { buildCustodianServer, HttpCustodian } from '../api/custodian-http.ts';
import { EngineServer } from '../api/server/index.ts';
import { Client, verify as clientVerify, newJobId, type JobView } from '../api/client/index.ts';
import { claimPlain } from '../models/plain.ts';
import { normalizeId, idRuleFor } from '../engine/tokens/normalize.ts';
import { ed25519KeyPair } from '../core/sign.ts';
import { buildVerifyRequest, openVerifyResult } from '../engine/protocols/verify/bank.ts';
import { type ClaimResult, type VerifyResult } from '../engine/protocols/verify/messages.ts';
import type { Custodian } from '../engine/custodian/messages.ts';
import type { PartyKeys } from '../api/wallet.ts';
import { formatTable, fmt, machineFacts, type MachineFacts } from './report.ts';

type Kind = 'numeric' | 'token';

export interface LatencyStats {
  n: number;
  meanMs: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  minMs: number;
}

/** Phases of a 5 ms-polled network round trip, ms (means in a report). */
export type NetworkPhases = {
  /** Build + sign the request, POST /v1/bank/jobs until its 202. */
  submitMs: number;
  /** From the 202 to the first poll that saw `done`. */
  waitMs: number;
  /** The server's own record: finishedAt − createdAt (millisecond timestamps; queueing included). */
  serverJobMs: number;
  /** GET /v1/bank/jobs/:id/result. */
  resultMs: number;
  /** openVerifyResult on the bank side. */
  openMs: number;
  polls: number;
};

/** Phases of an embedded round trip, ms, from `sh.verify`'s progress callbacks. */
export type EmbeddedPhases = {
  /** Build + sign the request, check signature, claims, commitments (until progress `check`). */
  checkMs: number;
  /** Consent, budget, job record, ledger entries, escrow sealed to the auditor (until the first `tokens` progress). */
  recordMs: number;
  /** The cryptographic part: OPRF at the custodian (token) or masked comparison + custodian `sign` decryption (numeric). */
  cryptoMs: number;
  /** Of `cryptoMs`, the time spent in calls to the custodian (openJob, decrypt, evaluateTokens; over HTTP where it is). */
  custodianMs: number;
  /** Seal the direct answers, job summary, ledger entry and the signed checkpoint (until progress `done`). */
  finishMs: number;
  /** openVerifyResult on the bank side. */
  openMs: number;
};

type Phases = Record<string, number>;

export interface CaseResult {
  name: string;
  kind: Kind;
  tier: 'embedded' | 'embedded+http-custodians' | 'network-default-poll' | 'network-5ms-poll' | 'network-crowd';
  concurrency: number;
  roundTrips: number;
  seconds: number;
  /** Completed claims per second (round trips / wall time of the case). */
  perSecond: number;
  latency: LatencyStats;
  mismatches: number;
  answers: Record<string, number>;
  /** Ledger entries when the case's first and last counted round trip ran (each job appends about 6 entries). */
  ledgerSizes: [number, number];
  /** Mean phases: `NetworkPhases` for 5 ms-polled cases, `EmbeddedPhases` for sequential embedded ones. */
  breakdown?: Phases;
}

export interface NetworkReport {
  subjects: number;
  roundsPerCase: number;
  /** Time budget: the run stops after the pass in which the cases' total time reaches secondsPerCase × cases. */
  secondsPerCase: number;
  warmupPerCase: number;
  /** Round trips per case per pass (cases are interleaved pass by pass). */
  slice: number;
  passes: number;
  /** Cost of a ledger checkpoint (re-read every leaf hash, Merkle root, consistency proof) before each pass. */
  checkpoints: Array<{ pass: number; ledgerSize: number; checkpointMs: number }>;
  cases: CaseResult[];
  /**
   * 64 stock clients (api/client, unchanged) at once against a server with the default rate limits: the clients wait
   * out every 429 (retry-after + jitter), so none may throw; latency includes those waits.
   */
  crowd: { clients: number; roundTrips: number; thrown: number; codes: Record<string, number>; case: CaseResult };
  ratios: Array<{ kind: Kind; name: string; value: number; formula: string }>;
  mismatches: number;
  totalSeconds: number;
  setupSeconds: number;
  /** Load average when the run started (`machine` is taken at the end). */
  loadAtStart: number[];
  machine: MachineFacts;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function stats(ms: number[]): LatencyStats {
  const s = [...ms].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!;
  return {
    n: s.length,
    meanMs: s.reduce((a, b) => a + b, 0) / Math.max(1, s.length),
    p50Ms: q(0.5),
    p90Ms: q(0.9),
    p99Ms: q(0.99),
    maxMs: s[s.length - 1] ?? 0,
    minMs: s[0] ?? 0,
  };
}

/** One round trip: returns the answer to the single claim and, for the 5 ms-polled client, the phase breakdown. */
type RoundTrip = (claim: DemoClaim) => Promise<{ answer: ClaimResult; phases?: Phases }>;

interface CaseState {
  name: string;
  kind: Kind;
  tier: CaseResult['tier'];
  concurrency: number;
  custodians: 'local' | 'http';
  rt: RoundTrip;
  lat: number[];
  answers: Record<string, number>;
  mismatches: number;
  spentMs: number;
  sums: Phases;
  withPhases: number;
  ledgerFirst: number;
  ledgerLast: number;
}

/**
 * One slice of a case: `count` counted round trips, with
 * `concurrency` callers taking claims from the kind's shared counter; `warmup` uncounted round trips first.
 */
async function runSlice(
  c: CaseState,
  o: {
    count: number;
    warmup: number;
    claims: readonly DemoClaim[];
    next: { i: number };
    want: (c: DemoClaim) => string;
    ledgerSize: () => number;
  },
): Promise<void> {
  const take = () => o.claims[o.next.i++ % o.claims.length]!;
  for (let i = 0; i < o.warmup; i++) {
    const claim = take();
    const r = await c.rt(claim);
    if (r.answer !== o.want(claim))
      throw new Error(`${c.name}: warm-up answer ${r.answer} for ${claim.claimId}, expected ${o.want(claim)}`);
  }
  if (c.lat.length === 0) c.ledgerFirst = o.ledgerSize();
  let started = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (started < o.count) {
      started++;
      const claim = take();
      const t = performance.now();
      const r = await c.rt(claim);
      c.lat.push(performance.now() - t);
      c.answers[r.answer] = (c.answers[r.answer] ?? 0) + 1;
      if (r.answer !== o.want(claim)) c.mismatches++;
      if (r.phases) {
        c.withPhases++;
        for (const [k, v] of Object.entries(r.phases)) c.sums[k] = (c.sums[k] ?? 0) + v;
      }
    }
  };
  await Promise.all(Array.from({ length: c.concurrency }, worker));
  c.spentMs += performance.now() - t0;
  c.ledgerLast = o.ledgerSize();
}

function caseResult(c: CaseState): CaseResult {
  const seconds = c.spentMs / 1000;
  return {
    name: c.name,
    kind: c.kind,
    tier: c.tier,
    concurrency: c.concurrency,
    roundTrips: c.lat.length,
    seconds,
    perSecond: c.lat.length / seconds,
    latency: stats(c.lat),
    mismatches: c.mismatches,
    answers: c.answers,
    ledgerSizes: [c.ledgerFirst, c.ledgerLast],
    ...(c.withPhases
      ? { breakdown: Object.fromEntries(Object.entries(c.sums).map(([k, v]) => [k, v / c.withPhases])) }
      : {}),
  };
}

/** A custodian that adds the time of every call to `clock.ms` (the engine only uses the `Custodian` interface). */
function timedCustodian(c: Custodian, clock: { ms: number }): Custodian {
  const time = async <T>(f: () => Promise<T>): Promise<T> => {
    const t = performance.now();
    try {
      return await f();
    } finally {
      clock.ms += performance.now() - t;
    }
  };
  return {
    provider: c.provider,
    paramsId: c.paramsId,
    bfvPublicKey: c.bfvPublicKey,
    signingPublicKey: c.signingPublicKey,
    openJob: (job) => time(() => c.openJob(job)),
    ledgerState: () => time(() => c.ledgerState()),
    follow: (u) => time(() => c.follow(u)),
    decrypt: (request, ciphertext) => time(() => c.decrypt(request, ciphertext)),
    evaluateTokens: (request, bankRequest) => time(() => c.evaluateTokens(request, bankRequest)),
    transfer: (request, ciphertext, target) => time(() => c.transfer(request, ciphertext, target)),
  };
}

/** Submit, poll every `pollMs` (bounded), fetch the result and open it, timing each phase. */
async function tightVerify(
  client: Client,
  keys: PartyKeys,
  claim: DemoClaim,
  pollMs: number,
  timeoutMs = 60_000,
): Promise<{ answer: ClaimResult; phases: NetworkPhases }> {
  const t0 = performance.now();
  const jobId = newJobId('verify');
  const { signed, openings } = buildVerifyRequest(
    { jobId, bank: keys.id, purpose: DEMO_PURPOSE, claims: [claim], requestedAt: new Date().toISOString() },
    keys.ed25519.secretKey,
  );
  await client.post('/v1/bank/jobs', { kind: 'verify', request: signed, openings });
  const t1 = performance.now();
  let polls = 0;
  let view: JobView & { createdAt?: string; finishedAt?: string | null };
  for (;;) {
    view = await client.get<JobView>(`/v1/bank/jobs/${encodeURIComponent(jobId)}`);
    polls++;
    if (view.status === 'done') break;
    if (view.status === 'failed') throw new Error(`job ${jobId} failed: ${JSON.stringify(view.error)}`);
    if (performance.now() - t1 > timeoutMs)
      throw new Error(`job ${jobId} not done after ${timeoutMs} ms (status ${view.status})`);
    await sleep(pollMs);
  }
  const t2 = performance.now();
  const result = await client.get<VerifyResult>(`/v1/bank/jobs/${encodeURIComponent(jobId)}/result`);
  const t3 = performance.now();
  const answers = openVerifyResult(result, keys.id, keys.x25519!.secretKey, [claim.claimId]);
  const t4 = performance.now();
  const serverJobMs =
    view.finishedAt && view.createdAt ? Date.parse(view.finishedAt) - Date.parse(view.createdAt) : Number.NaN;
  return {
    answer: answers.get(claim.claimId)!,
    phases: { submitMs: t1 - t0, waitMs: t2 - t1, serverJobMs, resultMs: t3 - t2, openMs: t4 - t3, polls },
  };
}

export async function runNetwork(
  opts: {
    subjects?: number;
    rounds?: number;
    seconds?: number;
    warmup?: number;
    slice?: number;
    log?: (line: string) => void;
  } = {},
): Promise<NetworkReport> {
  const tStart = performance.now();
  const loadAtStart = machineFacts().loadAverage;
  const log = opts.log ?? ((line: string) => console.error(line));
  const subjects = opts.subjects ?? 2000;
  const rounds = opts.rounds ?? 200;
  const seconds = opts.seconds ?? 20;
  const warmup = opts.warmup ?? 3;
  const slice = opts.slice ?? 10;
  const home = mkdtempSync(join(tmpdir(), 'safehouse-bench-network-'));
  const servers: FastifyInstance[] = [];
  let server: EngineServer | undefined;
  let limited: EngineServer | undefined;
  let sh: Safehouse | undefined;
  try {
    // ---- setup: the demo's parties, ingest and consents (api/demo.ts), with a verification budget that cannot run out.
    const data = generateDemo(subjects);
    sh = await Safehouse.open({
      home,
      create: true,
      poolSize: 2,
      policy: { verifyUnitsPerWindow: 1_000_000, tokenEvaluationsPerWindow: 1_000_000, scoreModelsPerSubject: 1_000 },
    });
    await sh.addParty('bank', DEMO_BANK);
    await sh.addParty('auditor', 'auditor_pboc');
    for (const p of Object.values(data.providers)) await sh.addParty('provider', p.provider);
    for (const p of Object.values(data.providers)) await sh.ingest(p.provider, p.schema, p.csv);
    const grants: ConsentGrant[] = demoGrants(data, sh.engine.now());
    for (let i = 0; i < grants.length; i += 2000) sh.grantConsents(grants.slice(i, i + 2000));
    for (const u of data.subjects) if (data.plan.get(u) === 'REVOKED') sh.revoke({ subject: u, bank: DEMO_BANK });
    await sh.syncCustodians(); // each custodian follows the ledger as it grows

    // ---- claims: only subjects whose consent is OK, so every claim reaches the cryptographic path.
    const all = generateClaims(data, 20_000);
    const ok = (c: DemoClaim) => data.plan.get(c.subject) === 'OK';
    const pools: Record<Kind, DemoClaim[]> = {
      numeric: all.filter((c) => ok(c) && c.field === 'months_continuous_tax' && c.op === 'gte'),
      token: all.filter(
        (c) => ok(c) && c.field === 'property_cert_no' && c.op === 'eq' && data.property.has(c.subject),
      ),
    };
    for (const k of ['numeric', 'token'] as const)
      if (pools[k].length < 50) throw new Error(`only ${pools[k].length} ${k} claims`);

    // ---- the plaintext truth for each claim.
    const { tables, fieldSpecs } = demoPlaintext(sh, data);
    const wantCache = new Map<DemoClaim, string>();
    const want = (c: DemoClaim): string => {
      let w = wantCache.get(c);
      if (w === undefined) {
        w = claimPlain(
          fieldSpecs.get(`${c.provider}/${c.field}`)!,
          tables.get(c.provider)!.get(c.subject)?.get(c.field),
          c.op,
          c.values,
          (v) => normalizeId(idRuleFor(c.field), v),
        );
        wantCache.set(c, w);
      }
      return w;
    };
    const setupSeconds = (performance.now() - tStart) / 1000;
    log(
      `setup: ${subjects} subjects, ${pools.numeric.length} numeric and ${pools.token.length} token claims available, ${fmt(setupSeconds)} s`,
    );

    // ---- custodians behind HTTP on loopback (test/api/custodian-http.test.ts); the in-process ones are kept, so each case
    // can connect the set it measures. Then the engine server, with limits that never throttle the bench.
    // Both sets are wrapped to time the engine's calls to them (sequential embedded cases report it).
    const clock = { ms: 0 };
    const inProcess = Object.values(data.providers).map((p) => sh!.engine.registry.custodian(p.provider));
    const local = inProcess.map((c) => timedCustodian(c, clock));
    const remote: Custodian[] = [];
    for (const c of inProcess) {
      const app = buildCustodianServer(c, sh.engine.keys.ed25519.publicKey);
      const url = await app.listen({ host: '127.0.0.1', port: 0 });
      servers.push(app);
      remote.push(timedCustodian(await HttpCustodian.connect(url, sh.engine.keys.ed25519.secretKey), clock));
    }
    server = new EngineServer({
      engine: sh.engine,
      adminPublicKey: ed25519KeyPair().publicKey,
      rateLimit: { burst: 1e9, perSecond: 1e9 },
      ipRateLimit: { burst: 1e9, perSecond: 1e9 },
    });
    const url = await server.listen(0);
    const keys = sh.wallet.get(DEMO_BANK)!;
    const client = new Client(url, keys);
    const s = sh;
    const embeddedRt: RoundTrip = async (c) => ({
      answer: (await s.verify(DEMO_BANK, DEMO_PURPOSE, [c])).results.get(c.claimId)!,
    });
    // Sequential embedded round trips also time their phases through the progress callbacks.
    const embeddedPhasedRt: RoundTrip = async (c) => {
      const t0 = performance.now();
      clock.ms = 0;
      const at: Partial<Record<'check' | 'crypto' | 'last' | 'done', number>> = {};
      const r = await s.verify(DEMO_BANK, DEMO_PURPOSE, [c], (p) => {
        const now = performance.now();
        if (p.phase === 'check') at.check = now;
        else if (p.phase === 'done') at.done = now;
        else {
          at.crypto ??= now;
          at.last = now;
        }
      });
      const t1 = performance.now();
      const { check = t0, crypto = check, last = crypto, done = last } = at;
      const phases: EmbeddedPhases = {
        checkMs: check - t0,
        recordMs: crypto - check,
        cryptoMs: last - crypto,
        custodianMs: clock.ms,
        finishMs: done - last,
        openMs: t1 - done,
      };
      return { answer: r.results.get(c.claimId)!, phases };
    };
    const defaultRt: RoundTrip = async (c) => ({
      answer: (await clientVerify(client, DEMO_PURPOSE, [c])).results.get(c.claimId)!,
    });
    const tightRt: RoundTrip = async (c) => tightVerify(client, keys, c, 5);
    log(`engine server at ${url}; custodians at ${servers.length} loopback ports`);

    const states: CaseState[] = [];
    const add = (
      kind: Kind,
      name: string,
      tier: CaseResult['tier'],
      concurrency: number,
      custodians: 'local' | 'http',
      rt: RoundTrip,
    ) =>
      states.push({
        name: `${kind}: ${name}`,
        kind,
        tier,
        concurrency,
        custodians,
        rt,
        lat: [],
        answers: {},
        mismatches: 0,
        spentMs: 0,
        sums: {},
        withPhases: 0,
        ledgerFirst: 0,
        ledgerLast: 0,
      });
    for (const kind of ['numeric', 'token'] as const) {
      add(kind, 'embedded', 'embedded', 1, 'local', embeddedPhasedRt);
      add(kind, 'embedded ×4', 'embedded', 4, 'local', embeddedRt);
      add(kind, 'embedded + HTTP custodians', 'embedded+http-custodians', 1, 'http', embeddedPhasedRt);
      add(kind, 'network, client default polling', 'network-default-poll', 1, 'http', defaultRt);
      add(kind, 'network, client default polling ×4', 'network-default-poll', 4, 'http', defaultRt);
      add(kind, 'network, 5 ms polling', 'network-5ms-poll', 1, 'http', tightRt);
      add(kind, 'network, 5 ms polling ×4', 'network-5ms-poll', 4, 'http', tightRt);
    }

    // ---- passes: every case runs one slice per pass, in alternating order, so every case gets the same number of
    // round trips over the same range of ledger sizes (each job appends entries and ends with a checkpoint that costs
    // O(ledger size)), and machine noise falls on all cases alike. The run stops after the pass in which the cases'
    // total time reaches `seconds` × the number of cases, or when every case has `rounds` round trips.
    const next: Record<Kind, { i: number }> = { numeric: { i: 0 }, token: { i: 0 } };
    const ledgerSize = () => s.engine.ledger.size();
    const checkpoints: NetworkReport['checkpoints'] = [];
    // Nothing was appended since the last job's checkpoint, so this verifies and recomputes at full O(n) cost, then
    // returns the stored note without signing; median of 3 after one untimed call.
    const checkpointMs = () => {
      s.engine.ledger.checkpoint();
      return stats(
        Array.from({ length: 3 }, () => {
          const t = performance.now();
          s.engine.ledger.checkpoint();
          return performance.now() - t;
        }),
      ).p50Ms;
    };
    const budgetMs = seconds * 1000 * states.length;
    const spent = () => states.reduce((a, c) => a + c.spentMs, 0);
    let pass = 0;
    for (; states[0]!.lat.length < rounds && spent() < budgetMs; pass++) {
      checkpoints.push({ pass, ledgerSize: ledgerSize(), checkpointMs: checkpointMs() });
      const order = pass % 2 === 0 ? states : [...states].reverse();
      for (const c of order) {
        for (const cu of c.custodians === 'local' ? local : remote)
          if (s.engine.registry.custodian(cu.provider) !== cu) s.engine.registry.connectCustodian(cu);
        await runSlice(c, {
          count: Math.min(slice, rounds - c.lat.length),
          warmup: pass === 0 ? warmup : 0,
          claims: pools[c.kind],
          next: next[c.kind],
          want,
          ledgerSize,
        });
      }
      log(
        `  pass ${pass}: ${states[0]!.lat.length} round trips per case, ledger ${ledgerSize()} entries, checkpoint ${fmt(checkpoints.at(-1)!.checkpointMs)} ms, ${fmt(spent() / 1000)} of ${fmt(budgetMs / 1000)} s`,
      );
    }
    checkpoints.push({ pass, ledgerSize: ledgerSize(), checkpointMs: checkpointMs() });

    // ---- 64 stock clients at once, against a second server on the same engine with the default rate limits.
    for (const cu of remote)
      if (s.engine.registry.custodian(cu.provider) !== cu) s.engine.registry.connectCustodian(cu);
    limited = new EngineServer({ engine: s.engine, adminPublicKey: ed25519KeyPair().publicKey });
    const limitedUrl = await limited.listen(0);
    const CROWD = 64;
    const crowdClients = Array.from({ length: CROWD }, () => new Client(limitedUrl, keys));
    let turn = 0;
    let thrown = 0;
    const codes: Record<string, number> = {};
    const crowdRt: RoundTrip = async (c) => {
      const cl = crowdClients[turn++ % CROWD]!;
      try {
        return { answer: (await clientVerify(cl, DEMO_PURPOSE, [c])).results.get(c.claimId)! };
      } catch (err) {
        thrown++;
        const code = (err as { code?: string }).code ?? 'uncoded';
        codes[code] = (codes[code] ?? 0) + 1;
        return { answer: `error:${code}` as unknown as ClaimResult };
      }
    };
    const crowdState: CaseState = {
      name: `numeric: network, ${CROWD} stock clients, default rate limits`,
      kind: 'numeric',
      tier: 'network-crowd',
      concurrency: CROWD,
      custodians: 'http',
      rt: crowdRt,
      lat: [],
      answers: {},
      mismatches: 0,
      spentMs: 0,
      sums: {},
      withPhases: 0,
      ledgerFirst: 0,
      ledgerLast: 0,
    };
    await runSlice(crowdState, {
      count: CROWD * 3,
      warmup: 0,
      claims: pools.numeric,
      next: next.numeric,
      want,
      ledgerSize,
    });
    const crowd = {
      clients: CROWD,
      roundTrips: crowdState.lat.length,
      thrown,
      codes,
      case: caseResult(crowdState),
    };
    log(
      `  ${crowdState.name}: ${crowd.roundTrips} round trips, ${thrown} thrown, p50 ${fmt(crowd.case.latency.p50Ms)} ms, p99 ${fmt(crowd.case.latency.p99Ms)} ms`,
    );
    const cases = states.map(caseResult);
    for (const c of cases)
      log(
        `  ${c.name}: ${c.roundTrips} round trips in ${fmt(c.seconds)} s, ${fmt(c.perSecond)}/s, p50 ${fmt(c.latency.p50Ms)} ms, p99 ${fmt(c.latency.p99Ms)} ms, mismatches ${c.mismatches}`,
      );

    // ---- ratios, within this run.
    const ratios: NetworkReport['ratios'] = [];
    for (const kind of ['numeric', 'token'] as const) {
      const get = (tier: CaseResult['tier'], c: number) =>
        cases.find((x) => x.kind === kind && x.tier === tier && x.concurrency === c)!;
      const emb = get('embedded', 1);
      const pair = (name: string, x: CaseResult, formula: string) => {
        ratios.push({
          kind,
          name: `${name}, p50`,
          value: x.latency.p50Ms / emb.latency.p50Ms,
          formula: `${formula} p50 / embedded p50`,
        });
        ratios.push({
          kind,
          name: `${name}, req/s`,
          value: emb.perSecond / x.perSecond,
          formula: `embedded req/s / ${formula} req/s`,
        });
      };
      pair('embedded + HTTP custodians ÷ embedded', get('embedded+http-custodians', 1), 'embedded+HTTP custodians');
      pair('network 5 ms polling ÷ embedded', get('network-5ms-poll', 1), 'network 5 ms polling');
      pair('network default polling ÷ embedded', get('network-default-poll', 1), 'network default polling');
      const e4 = get('embedded', 4);
      const n4 = get('network-5ms-poll', 4);
      ratios.push({
        kind,
        name: 'network 5 ms polling ×4 ÷ embedded ×4, req/s',
        value: e4.perSecond / n4.perSecond,
        formula: 'embedded ×4 req/s / network 5 ms ×4 req/s',
      });
      ratios.push({
        kind,
        name: 'network 5 ms polling: ×4 ÷ ×1, req/s',
        value: n4.perSecond / get('network-5ms-poll', 1).perSecond,
        formula: 'speed-up from 4 concurrent clients',
      });
    }
    return {
      subjects,
      roundsPerCase: rounds,
      secondsPerCase: seconds,
      warmupPerCase: warmup,
      slice,
      passes: pass,
      checkpoints,
      cases,
      crowd,
      ratios,
      mismatches: cases.reduce((a, c) => a + c.mismatches, 0) + crowd.case.mismatches,
      totalSeconds: (performance.now() - tStart) / 1000,
      setupSeconds,
      loadAtStart,
      machine: machineFacts(),
    };
  } finally {
    await limited?.close();
    await server?.close();
    for (const s of servers) await s.close();
    await sh?.close();
    rmSync(home, { recursive: true, force: true });
  }
}

export function printNetwork(r: NetworkReport, out: (s: string) => void = console.log): void {
  const m = r.machine;
  out(
    `\nNetwork round trip, one claim per job — ${r.subjects} subjects; ${r.passes} interleaved passes of ${r.slice} round trips per case (limits: ${r.roundsPerCase} round trips, ${r.secondsPerCase} s per case on average; ${r.warmupPerCase} warm-up round trips per case not counted)`,
  );
  out(
    `machine: ${m.cpuModel}, ${m.cores} cores, ${m.totalMemoryGiB} GiB, Node ${m.node}, load average ${r.loadAtStart.join(' ')} at the start, ${m.loadAverage.join(' ')} at the end, ${m.date}\n`,
  );
  out(
    formatTable(
      ['case', 'n', 'req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'mismatches', 'ledger entries'],
      r.cases.map((c) => [
        c.name,
        c.roundTrips,
        fmt(c.perSecond),
        fmt(c.latency.p50Ms),
        fmt(c.latency.p90Ms),
        fmt(c.latency.p99Ms),
        fmt(c.latency.maxMs),
        c.mismatches,
        `${c.ledgerSizes[0]}–${c.ledgerSizes[1]}`,
      ]),
    ),
  );
  const emb = r.cases.filter((c) => c.breakdown && c.tier.startsWith('embedded'));
  if (emb.length) {
    out('\nWhere an embedded round trip goes (means, ms, from the progress callbacks of sh.verify)\n');
    out(
      formatTable(
        [
          'case',
          'total',
          'sign+check',
          'consent+record',
          'crypto',
          'of which custodian',
          'seal+ledger+checkpoint',
          'open',
        ],
        emb.map((c) => {
          const b = c.breakdown!;
          return [
            c.name,
            fmt(c.latency.meanMs),
            fmt(b.checkMs!),
            fmt(b.recordMs!),
            fmt(b.cryptoMs!),
            fmt(b.custodianMs!),
            fmt(b.finishMs!),
            fmt(b.openMs!),
          ];
        }),
      ),
    );
  }
  const cr = r.crowd.case;
  out(
    `\n${r.crowd.clients} stock clients at once, default rate limits: ${r.crowd.roundTrips} round trips, ${r.crowd.thrown} thrown` +
      `${
        r.crowd.thrown
          ? ` (${Object.entries(r.crowd.codes)
              .map(([k, v]) => `${v} ${k}`)
              .join(', ')})`
          : ''
      }, ` +
      `${fmt(cr.perSecond)}/s, p50 ${fmt(cr.latency.p50Ms)} ms, p99 ${fmt(cr.latency.p99Ms)} ms, max ${fmt(cr.latency.maxMs)} ms, mismatches ${cr.mismatches}`,
  );
  const net = r.cases.filter((c) => c.breakdown && c.tier === 'network-5ms-poll');
  if (net.length) {
    out(
      '\nWhere a 5 ms-polled network round trip goes (means, ms; server job = finishedAt − createdAt, 1 ms resolution, queueing included)\n',
    );
    out(
      formatTable(
        ['case', 'total', 'sign+submit', 'wait for done', 'server job', 'fetch result', 'open', 'polls'],
        net.map((c) => {
          const b = c.breakdown!;
          return [
            c.name,
            fmt(c.latency.meanMs),
            fmt(b.submitMs!),
            fmt(b.waitMs!),
            fmt(b.serverJobMs!),
            fmt(b.resultMs!),
            fmt(b.openMs!),
            fmt(b.polls!, 2),
          ];
        }),
      ),
    );
  }
  out(
    '\nLedger checkpoint (what every job ends with: re-read all leaf hashes, Merkle root, consistency proof), before each pass\n',
  );
  out(
    formatTable(
      ['pass', 'ledger entries', 'checkpoint ms'],
      r.checkpoints.map((c) => [c.pass, c.ledgerSize, fmt(c.checkpointMs)]),
    ),
  );
  out('\nRatios (within this run; p50 ratios are network p50 ÷ embedded p50, req/s ratios embedded ÷ network)\n');
  out(
    formatTable(
      ['claim', 'ratio', 'value'],
      r.ratios.map((x) => [x.kind, x.name, fmt(x.value)]),
    ),
  );
  out(`\nanswers: ${r.cases.map((c) => `${c.name} ${JSON.stringify(c.answers)}`).join('; ')}`);
  out(
    `mismatches against the plaintext predicate: ${r.mismatches}; setup ${fmt(r.setupSeconds)} s, total ${fmt(r.totalSeconds)} s`,
  );
}

if (import.meta.main) {
  const quick = process.argv.includes('--quick');
  const r = await runNetwork({
    subjects: Number(process.env.BENCH_NETWORK_SUBJECTS ?? 2000),
    rounds: Number(process.env.BENCH_NETWORK_ROUNDS ?? 200),
    seconds: Number(process.env.BENCH_NETWORK_SECONDS ?? (quick ? 5 : 20)),
  });
  printNetwork(r);
  if (process.env.BENCH_NETWORK_JSON) writeFileSync(process.env.BENCH_NETWORK_JSON, JSON.stringify(r, null, 2));
  if (r.mismatches !== 0) {
    console.error(`network: ${r.mismatches} answers differ from the plaintext predicate`);
    process.exitCode = 1;
  }
}
