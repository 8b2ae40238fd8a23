/**
 * End-to-end verification (数据核验, docs/design.md §5): one job of `claims` claims — half token claims (`eq`/`in` on
 * property_cert_no / mortgage_holder → OPRF token membership), half numeric (`gte`/`lte`/`between`/`eq`/`ne` on
 * AUTH_QUERY fields → masked comparison, custodian mode `sign`) — through `Safehouse.verify` on a fresh temporary home,
 * checked claim by claim against `claimPlain` on the providers' plaintext CSVs (refusals included).
 *
 * Data: the demo's generators (api/demo-data.ts): `generateDemo(subjects)` (four providers, a consent plan with
 * NO_CONSENT / EXPIRED / REVOKED / OUT_OF_SCOPE subjects), `generateClaims(data, claims)` (even claims are token claims,
 * odd ones numeric), `demoGrants` for the consents.
 *
 * Timed as engine work: the `sh.verify` call only — the bank signs the request, the engine runs the job (consents,
 * budget, tokens, numeric blocks, custodian calls, ledger) and the bank opens the sealed answers. Parties, ingest and
 * consents are setup (reported in `phases`, not in `engineSeconds`).
 *
 * Usage: `node bench/e2e-verify.ts [claims] [--pool N] [--subjects N]` (default 10000 claims; subjects default to
 * max(10000, 2·claims) capped at 20000). Prints the result JSON; `BENCH_E2E_JSON=path` also writes it there.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
import { join } from 'node:path';
import { Safehouse } from '../api/embedded.ts';
import { demoPlaintext } from '../api/demo.ts';
import {
  generateDemo,
  generateClaims,
  demoGrants,
  DEMO_BANK,
  DEMO_PURPOSE,
  OUT_OF_SCOPE_CATEGORIES,
} from '../api/demo-data.ts';
import { claimPlain } from '../models/plain.ts';
import { normalizeId, idRuleFor } from '../engine/tokens/normalize.ts';
import type { VerifyProgress, VerifyResult } from '../engine/protocols/verify/messages.ts';
import { benchArgs, type E2eResult } from './report.ts';

/** Token claims are evaluated in chunks of this many blinded elements (engine/protocols/verify.ts `BATCH`). */
const TOKEN_BATCH = 512;
/** The custodian's cap on one evaluation request (engine/custodian/custodian.ts): the minimum possible batching. */
const TOKEN_BATCH_MAX = 4096;

const sec = (ms: number) => Number((ms / 1000).toFixed(3));

export async function runVerifyE2e(opts: {
  claims: number;
  poolSize?: number;
  subjects?: number;
  log?: (line: string) => void;
}): Promise<E2eResult> {
  const nClaims = opts.claims;
  if (!Number.isInteger(nClaims) || nClaims < 2)
    throw new RangeError(`"claims" expected an integer ≥ 2, got ${nClaims}`);
  const nSubjects = opts.subjects ?? Math.min(20_000, Math.max(10_000, 2 * nClaims));
  const log = opts.log ?? (() => {});
  const phases: Record<string, number> = {};
  const lap = (name: string, since: number) => {
    phases[name] = sec(performance.now() - since);
  };
  const home = mkdtempSync(join(tmpdir(), 'safehouse-e2e-verify-'));
  let sh: Safehouse | undefined;
  try {
    let t = performance.now();
    const data = generateDemo(nSubjects);
    const claims = generateClaims(data, nClaims);
    lap('setup.generate', t);

    t = performance.now();
    sh = await Safehouse.open({
      home,
      create: true,
      ...(opts.poolSize ? { poolSize: opts.poolSize } : {}),
      policy: {
        verifyUnitsPerWindow: 1_000_000,
        tokenEvaluationsPerWindow: 1_000_000,
        maxClaimsPerJob: Math.max(200_000, nClaims),
      },
    });
    await sh.addParty('bank', DEMO_BANK);
    await sh.addParty('auditor', 'auditor_bench');
    for (const p of Object.values(data.providers)) await sh.addParty('provider', p.provider);
    lap('setup.parties', t);

    t = performance.now();
    const blocksOf: Record<string, number> = {};
    for (const p of Object.values(data.providers)) {
      const r = await sh.ingest(p.provider, p.schema, p.csv);
      blocksOf[p.provider] = r.blocks;
      log(`ingest ${p.provider}: ${r.subjects} subjects in ${r.blocks} block(s)`);
    }
    lap('setup.ingest', t);

    t = performance.now();
    const grants = demoGrants(data, sh.engine.now());
    for (let i = 0; i < grants.length; i += 2000) sh.grantConsents(grants.slice(i, i + 2000));
    let revoked = 0;
    for (const u of data.subjects)
      if (data.plan.get(u) === 'REVOKED') {
        sh.revoke({ subject: u, bank: DEMO_BANK });
        revoked++;
      }
    lap('setup.consents', t);
    log(`consents: ${grants.length} granted, ${revoked} revoked`);

    // Checkpoint the setup's ledger entries now, as a running engine would have: otherwise the job's closing
    // checkpoint would hash every consent leaf of the setup inside the timed section.
    t = performance.now();
    sh.engine.ledger.checkpoint();
    lap('setup.checkpoint', t);

    // Each provider's custodian follows the ledger as it grows (each consent's signature verified once, there).
    t = performance.now();
    await sh.syncCustodians();
    lap('setup.custodians-follow', t);

    t = performance.now();
    await sh.warmUp();
    lap('setup.warmUp', t);

    // --- the timed engine section: sign → engine job → bank opens -------------------------------------------------
    const seen = new Map<VerifyProgress['phase'], number>();
    const onProgress = (p: VerifyProgress) => {
      if (seen.has(p.phase)) return;
      seen.set(p.phase, performance.now());
      log(`verify: ${p.phase} (${p.total})`);
    };
    const rssBefore = process.resourceUsage().maxRSS / 1024;
    const load0 = loadavg()[0]!;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const { results: got, result } = await sh.verify(DEMO_BANK, DEMO_PURPOSE, claims, onProgress);
    const t1 = performance.now();
    const cpu = process.cpuUsage(cpu0);
    const load1 = loadavg()[0]!;
    const engineSeconds = sec(t1 - t0);
    // Sub-phases from the job's own progress events (first event of each phase marks its start).
    const mark = (ph: VerifyProgress['phase']) => seen.get(ph);
    const points: Array<[string, number | undefined]> = [
      ['verify.sign+check+consent+record', mark('tokens') ?? mark('numeric') ?? mark('done')],
      ['verify.tokens', mark('numeric') ?? mark('done')],
      ['verify.numeric+seal+checkpoint', mark('done')],
      ['verify.bankOpens', t1],
    ];
    let prev = t0;
    for (const [name, at] of points)
      if (at !== undefined) {
        phases[name] = sec(at - prev);
        prev = at;
      }
    log(`verify: ${engineSeconds} s`);

    // --- plaintext truth ------------------------------------------------------------------------------------------
    t = performance.now();
    const { tables, fieldSpecs } = demoPlaintext(sh, data);
    lap('plaintext.buildTables', t);
    const categoryOf = new Map(Object.entries(data.providers).map(([cat, p]) => [p.provider, cat]));
    // Timed: per claim, the consent decision (the generator's plan, applied per category as the engine does), the CSV
    // cell lookup, id normalization and the predicate (claimPlain). Not included: consent signature checks.
    const tp = performance.now();
    const expected = new Map<string, string>();
    for (const c of claims) {
      const plan = data.plan.get(c.subject)!;
      const category = categoryOf.get(c.provider)!;
      const refused =
        plan === 'OK'
          ? undefined
          : plan === 'OUT_OF_SCOPE'
            ? OUT_OF_SCOPE_CATEGORIES.includes(category)
              ? undefined
              : plan
            : plan;
      const f = fieldSpecs.get(`${c.provider}/${c.field}`)!;
      expected.set(
        c.claimId,
        refused
          ? `refused:${refused}`
          : claimPlain(f, tables.get(c.provider)!.get(c.subject)?.get(c.field), c.op, c.values, (v) =>
              normalizeId(idRuleFor(c.field), v),
            ),
      );
    }
    const plaintextSeconds = Number(((performance.now() - tp) / 1000).toFixed(4));
    phases['plaintext.claims'] = plaintextSeconds;

    // --- checks ---------------------------------------------------------------------------------------------------
    let mismatches = 0;
    const firstBad: string[] = [];
    const counts: Record<string, number> = {};
    const isToken = (c: { provider: string; field: string }) =>
      fieldSpecs.get(`${c.provider}/${c.field}`)!.type === 'id';
    for (const c of claims) {
      const r = got.get(c.claimId) ?? '(none)';
      const key = `${isToken(c) ? 'token' : 'numeric'}:${r}`;
      counts[key] = (counts[key] ?? 0) + 1;
      if (r !== expected.get(c.claimId)) {
        mismatches++;
        if (firstBad.length < 5)
          firstBad.push(`${c.claimId} ${c.provider}/${c.field} ${c.op} got ${r} want ${expected.get(c.claimId)}`);
      }
    }
    const tokenClaims = claims.filter(isToken);
    const numericClaims = claims.filter((c) => !isToken(c));
    const shape = verifyShape(result, claims, got, isToken, data.plan, categoryOf);
    const ok = mismatches === 0 && got.size === claims.length && shape.roundsMinimal;
    const detail = ok
      ? `all ${claims.length} answers equal the plaintext predicate (${Object.entries(counts)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')}); numeric rounds per block are minimal`
      : `${mismatches} mismatches of ${claims.length}, ${got.size} answered${shape.roundsMinimal ? '' : ', numeric rounds not minimal'}; ${firstBad.join('; ')}`;

    let ledgerLeaves: number | string = 'n/a';
    try {
      ledgerLeaves = (
        sh.engine.store.db
          .prepare('SELECT COUNT(*) AS n FROM ledger_entries WHERE body LIKE ?')
          .get(`%${result.jobId}%`) as { n: number }
      ).n;
    } catch {
      /* ledger schema changed: leave it out */
    }

    const numEvaluated = numericClaims.filter((c) => {
      const r = got.get(c.claimId);
      return r === 'yes' || r === 'no';
    }).length;
    const tokEvaluated = tokenClaims.filter((c) => {
      const r = got.get(c.claimId);
      return r === 'yes' || r === 'no';
    }).length;
    return {
      name: 'verify',
      description: `One verification job of ${claims.length} claims (${tokenClaims.length} token eq/in claims via RFC 9497 POPRF, ${numericClaims.length} numeric gte/lte/between/eq/ne claims via masked BFV comparison, mode sign) over ${nSubjects} demo subjects through Safehouse.verify, checked claim by claim against claimPlain on the plaintext CSVs.`,
      size: {
        claims: claims.length,
        tokenClaims: tokenClaims.length,
        numericClaims: numericClaims.length,
        subjects: nSubjects,
        blocks: Object.values(blocksOf).reduce((a, b) => a + b, 0),
        tokenElements: shape.tokenElements,
        tokenBatches: shape.tokenBatches,
        numericBlocks: shape.numericBlocks,
        numericGroups: shape.numericGroups,
      },
      engineSeconds,
      phases,
      ops: shape.ops,
      plaintextSeconds,
      peakRssMiB: Number((process.resourceUsage().maxRSS / 1024).toFixed(1)),
      checks: { ok, detail },
      extra: {
        claimsPerSecond: Number((claims.length / engineSeconds).toFixed(1)),
        // Per phase: token claims over the token phase, numeric claims over the numeric phase (they run one after the other).
        tokenClaimsPerSecond: phases['verify.tokens']
          ? Number((tokenClaims.length / phases['verify.tokens']).toFixed(1))
          : 'n/a',
        numericClaimsPerSecond: phases['verify.numeric+seal+checkpoint']
          ? Number((numericClaims.length / phases['verify.numeric+seal+checkpoint']).toFixed(1))
          : 'n/a',
        engineCpuSeconds: Number(((cpu.user + cpu.system) / 1e6).toFixed(2)),
        engineCpuPerWall: Number(((cpu.user + cpu.system) / 1e6 / engineSeconds).toFixed(2)),
        loadAverage1m: `${load0.toFixed(2)} → ${load1.toFixed(2)}`,
        tokenClaimsEvaluated: tokEvaluated,
        numericClaimsEvaluated: numEvaluated,
        msPerClaim: Number(((1000 * engineSeconds) / claims.length).toFixed(3)),
        tokenPhaseMsPerElement:
          phases['verify.tokens'] !== undefined && shape.tokenElements
            ? Number(((1000 * phases['verify.tokens']) / shape.tokenElements).toFixed(3))
            : 'n/a',
        numericPhaseMsPerBlock:
          phases['verify.numeric+seal+checkpoint'] !== undefined && shape.numericBlocks
            ? Number(((1000 * phases['verify.numeric+seal+checkpoint']) / shape.numericBlocks).toFixed(1))
            : 'n/a',
        numericBlocksTouched: shape.numericBlocks,
        numericGroupsTouched: shape.numericGroups,
        tokenBatches: shape.tokenBatches,
        tokenBatchesAtCustodianCap: shape.tokenBatchesMin,
        consentChecksPerSubjectCategory: shape.consentPairs,
        consentChecksPerSubject: shape.consentSubjects,
        ledgerLeavesOfJob: ledgerLeaves,
        poolSize: sh.engine.pool.size,
        rssBeforeVerifyMiB: Number(rssBefore.toFixed(1)),
        plaintextVsEngine: Number((engineSeconds / Math.max(plaintextSeconds, 1e-6)).toFixed(0)),
      },
    };
  } finally {
    await sh?.close();
    rmSync(home, { recursive: true, force: true });
  }
}

/**
 * The job's shape and the minimal operation counts it needs (docs/design.md §4–§5), derived from the input claims, the answers
 * and the result's sealed boxes (one box per numeric (dataset, field, block, round) ciphertext).
 *
 * Per job:
 *   bank: 1 ed25519.sign (the request); engine: 1 ed25519.verify (the request); each custodian involved: 1 ed25519.verify
 *   of the bank-signed request (openJob / token budget), once per job; 1 x25519.seal of the engine-determined answers to
 *   the bank; 1 x25519.seal per auditor (escrowed seed and openings, one box would do); ledger leaves job.requested,
 *   verify.budget_used, job.escrowed, job.completed (+ verify.budget_exceeded if any); 1 ed25519.sign (checkpoint).
 * Consent (docs/design.md §6): 1 ed25519.verify per consent checked, per distinct (subject, category) as the job checks them
 *   (subjects with no consent for this bank have nothing to verify), + 1 per revocation checked (REVOKED subjects).
 *   (Per distinct subject would suffice — one statement covers all categories — reported in extra.)
 * Token claims (§4.4), per blinded element (one per claimed value, claims the engine evaluated: consent OK, with data):
 *   1 oprf.blind (engine), 1 oprf.evaluate (custodian, batched with one DLEQ proof), 1 oprf.finalize (engine, incl.
 *   the batch proof check). Per batch (512 elements as the code chunks, per (provider, field)): the custodian call —
 *   engine signs the request, custodian verifies it, custodian signs the response, engine verifies it (2 sign +
 *   2 verify) and 2 ledger leaves (request, response).
 * Numeric claims (§5), per (dataset, field, block, round) ciphertext — rounds = the most comparisons any one slot needs
 *   in that block (eq/ne/between = 2, gte/lte = 1), checked below against the result:
 *   engine: 2 seal.encode (multiplier vector r·d, offset vector r' − r·d·c), 1 multiplyPlainVector (r ⊙ Enc(x)),
 *   1 addPlain (offsets), 1 encryptZero + 1 add (re-randomize), 1 modSwitchToTransfer;
 *   custodian: 1 decrypt + 1 decode, 1 x25519.seal (sign bits to the bank); signatures 2 sign + 2 verify as above;
 *   2 ledger leaves.
 * Not priced here: the bank opening sealed boxes, SHA-256 of ciphertexts and requests, commitments of claim values.
 */
function verifyShape(
  result: VerifyResult,
  claims: ReadonlyArray<{ claimId: string; subject: string; provider: string; field: string; values: string[] }>,
  got: ReadonlyMap<string, string>,
  isToken: (c: { provider: string; field: string }) => boolean,
  plan: ReadonlyMap<string, string>,
  categoryOf: ReadonlyMap<string, string>,
): {
  ops: Record<string, number>;
  tokenElements: number;
  tokenBatches: number;
  tokenBatchesMin: number;
  numericBlocks: number;
  numericGroups: number;
  roundsMinimal: boolean;
  consentPairs: number;
  consentSubjects: number;
} {
  // Token elements per (provider, field) group, for evaluated claims (answer yes/no).
  const elementsByGroup = new Map<string, number>();
  for (const c of claims) {
    if (!isToken(c)) continue;
    const r = got.get(c.claimId);
    if (r !== 'yes' && r !== 'no') continue;
    const g = `${c.provider}/${c.field}`;
    elementsByGroup.set(g, (elementsByGroup.get(g) ?? 0) + c.values.length);
  }
  const tokenElements = [...elementsByGroup.values()].reduce((a, b) => a + b, 0);
  const tokenBatches = [...elementsByGroup.values()].reduce((a, n) => a + Math.ceil(n / TOKEN_BATCH), 0);
  const tokenBatchesMin = [...elementsByGroup.values()].reduce((a, n) => a + Math.ceil(n / TOKEN_BATCH_MAX), 0);

  // Numeric: one box per (dataset, field, block, round); rounds per group must equal the largest slot multiplicity.
  const numericBlocks = result.boxes.length;
  const groups = new Map<string, { rounds: Set<number>; perSlot: Map<number, number> }>();
  const groupOf = (b: VerifyResult['boxes'][number]) => `${b.datasetId}/${b.field}/${b.block}`;
  for (const b of result.boxes) {
    const g = groups.get(groupOf(b)) ?? { rounds: new Set<number>(), perSlot: new Map<number, number>() };
    g.rounds.add(b.round);
    groups.set(groupOf(b), g);
  }
  for (const n of result.numeric) {
    for (const [box, slot] of n.parts) {
      const g = groups.get(groupOf(result.boxes[box]!))!;
      g.perSlot.set(slot, (g.perSlot.get(slot) ?? 0) + 1);
    }
  }
  const roundsMinimal = [...groups.values()].every((g) => g.rounds.size === Math.max(0, ...g.perSlot.values()));

  // Consent checks: distinct (subject, category) pairs with at least one consent for this bank; revocations checked.
  const pairs = new Set<string>();
  const subjects = new Set<string>();
  let revocationChecks = 0;
  for (const c of claims) {
    const p = plan.get(c.subject)!;
    if (p === 'NO_CONSENT') continue;
    const key = `${c.subject}/${categoryOf.get(c.provider)}`;
    if (!pairs.has(key) && p === 'REVOKED') revocationChecks++;
    pairs.add(key);
    subjects.add(c.subject);
  }

  const custodians = new Set<string>([
    ...result.boxes.map((b) => b.provider),
    ...claims.filter((c) => isToken(c) && elementsByGroup.has(`${c.provider}/${c.field}`)).map((c) => c.provider),
  ]);
  const auditors = 1;
  const calls = tokenBatches + numericBlocks;
  const ops: Record<string, number> = {
    'seal.encode': 2 * numericBlocks,
    'seal.multiplyPlainVector': numericBlocks,
    'seal.addPlain': numericBlocks,
    'seal.encryptZero': numericBlocks,
    'seal.add': numericBlocks,
    'seal.modSwitchToTransfer': numericBlocks,
    'seal.decrypt': numericBlocks,
    'seal.decode': numericBlocks,
    'oprf.blind': tokenElements,
    'oprf.evaluate': tokenElements,
    'oprf.finalize': tokenElements,
    'ed25519.sign': 1 + 2 * calls + 1,
    'ed25519.verify': 1 + custodians.size + 2 * calls + pairs.size + revocationChecks,
    'x25519.seal': numericBlocks + 1 + auditors,
    'sha256.leaf': 4 + ([...got.values()].includes('over_budget') ? 1 : 0) + 2 * calls,
  };
  for (const k of Object.keys(ops)) if (ops[k] === 0) delete ops[k];
  return {
    ops,
    tokenElements,
    tokenBatches,
    tokenBatchesMin,
    numericBlocks,
    numericGroups: groups.size,
    roundsMinimal,
    consentPairs: pairs.size,
    consentSubjects: subjects.size,
  };
}

if (import.meta.main) {
  const { positional, flag } = benchArgs(process.argv.slice(2));
  const claims = Number(positional[0] ?? 10_000);
  const poolSize = flag('--pool');
  const subjects = flag('--subjects');
  const wall = performance.now();
  const r = await runVerifyE2e({
    claims,
    ...(poolSize ? { poolSize } : {}),
    ...(subjects ? { subjects } : {}),
    log: (line) => console.error(line),
  });
  r.extra.wallSeconds = sec(performance.now() - wall);
  const json = JSON.stringify(r, null, 2);
  console.log(json);
  if (process.env.BENCH_E2E_JSON) writeFileSync(process.env.BENCH_E2E_JSON, json + '\n');
  if (!r.checks.ok) process.exitCode = 1;
}
