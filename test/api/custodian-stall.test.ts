/**
 * A stalled custodian (docs/operations.md "Custodian outages"): the network deployment as processes, one provider's
 * custodian SIGSTOPped — it keeps its port and answers nothing. Before, the engine's fetch had no timeout: a job that
 * needed it held the single job queue 300 s, and a job for the *other* provider then failed its freshness check.
 * Now the job that needs the stopped custodian fails once, coded SH_ERR_UNAVAILABLE naming it, in a bounded time (the
 * engine here runs with 2 s timeouts and 4 s of retries); a job that needs only the other provider is answered, equal
 * to the plaintext, while it is still stopped; the other custodian gives back the budget of the failed job (it
 * answered nothing for it); and once the custodian runs again (SIGCONT) the next job needing it succeeds.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NET_BANK, NET_PURPOSE } from '../../api/demo-network.ts';
import { Client, newJobId } from '../../api/client/http.ts';
import { submitJob } from '../../api/client/bank.ts';
import { readKeyFile } from '../../api/keys.ts';
import { parseCsv } from '../../core/csv.ts';
import { buildScoreRequest, openScoreResult } from '../../engine/protocols/score/bank.ts';
import type { ScoreResult } from '../../engine/protocols/score/messages.ts';
import { buildVerifyRequest, openVerifyResult } from '../../engine/protocols/verify/bank.ts';
import type { Claim, ClaimOp, VerifyResult } from '../../engine/protocols/verify/messages.ts';
import { evaluatePlain } from '../../models/plain.ts';
import { parseModel } from '../../models/model.ts';
import { validateSchema } from '../../sandbox/catalog.ts';
import { MODEL_ID, deploy, type Deployment } from '../crash/deployment.ts';

let dir: string;
let d: Deployment;
let bank: Client;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sh-stall-'));
  d = await deploy(dir, {
    port: 18740,
    iterations: 2,
    engineEnv: {
      SAFEHOUSE_CUSTODIAN_TIMEOUT_MS: '2000',
      SAFEHOUSE_CUSTODIAN_RETRY_MS: '4000',
      SAFEHOUSE_CUSTODIAN_COOLDOWN_MS: '3000',
    },
  });
  bank = new Client(d.url, readKeyFile(join(d.keys, `${NET_BANK}.key`)));
}, 300_000);

afterAll(async () => {
  await d?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function score(
  subjects: string[],
): Promise<{ jobId: string; rows?: ReturnType<typeof openScoreResult>; code?: string }> {
  const m = await bank.get<{ hash: string }>(`/v1/bank/models/${MODEL_ID}`);
  const jobId = newJobId('score');
  const signed = buildScoreRequest(
    { jobId, bank: NET_BANK, modelId: MODEL_ID, modelHash: m.hash, purpose: NET_PURPOSE, subjects },
    bank.keys.ed25519.secretKey,
  );
  await submitJob(bank, { kind: 'score', request: signed });
  try {
    await bank.waitJob(jobId, { timeoutMs: 180_000 });
  } catch (err) {
    return { jobId, code: (err as { code?: string }).code ?? String(err) };
  }
  const result = await bank.get<ScoreResult>(`/v1/bank/jobs/${jobId}/result`);
  return { jobId, rows: openScoreResult(result, NET_BANK, bank.keys.x25519!.secretKey) };
}

function plainScore(u: string): string {
  const model = parseModel(JSON.parse(readFileSync(d.modelFile, 'utf8')));
  const specs = new Map(
    d.sc.providers.flatMap((p) => validateSchema(p.schema).fields.map((f) => [`${p.provider}/${f.name}`, f] as const)),
  );
  const v = d.sc.values.get(u)!;
  const plain = evaluatePlain(
    model,
    (p, f) => specs.get(`${p}/${f}`)!,
    (_p, f) => v.get(f),
  );
  return plain.status === 'OK' ? plain.score : '';
}

describe('a SIGSTOPped custodian', () => {
  it('fails the job that needs it once, coded and bounded; jobs for the other provider go on; it recovers on SIGCONT', async () => {
    const consenting = [...d.sc.values.keys()].filter((u) => !d.sc.withoutConsent.includes(u));
    const stalled = d.custodians[1]!; // gc_provider2
    const other = d.sc.providers[0]!.provider; // gc_provider
    stalled.pause();
    try {
      // The scoring job needs both providers: it fails once, naming the stopped custodian.
      const failed = await score(consenting.slice(0, 50));
      expect(failed.code).toBe('SH_ERR_UNAVAILABLE');
      const view = await bank.get<{ error: { message: string; details: { provider?: string } } }>(
        `/v1/bank/jobs/${failed.jobId}`,
      );
      expect(view.error.details.provider ?? view.error.message).toContain(d.sc.providers[1]!.provider);

      // A verification job on the other provider's fields only is answered while the custodian is still stopped.
      const rows = parseCsv(readFileSync(d.sc.claimsFile, 'utf8'))
        .rows.filter((r) => r[2] === other)
        .slice(0, 6);
      const claims: Claim[] = rows.map((r) => ({
        claimId: r[0]!,
        subject: r[1]!,
        provider: r[2]!,
        field: r[3]!,
        op: r[4] as ClaimOp,
        values: r[6] ? [r[5]!, r[6]] : [r[5]!],
      }));
      const jobId = newJobId('verify');
      const { signed, openings } = buildVerifyRequest(
        { jobId, bank: NET_BANK, purpose: NET_PURPOSE, claims },
        bank.keys.ed25519.secretKey,
      );
      await submitJob(bank, { kind: 'verify', request: signed, openings });
      await bank.waitJob(jobId, { timeoutMs: 180_000 });
      const answers = openVerifyResult(
        await bank.get<VerifyResult>(`/v1/bank/jobs/${jobId}/result`),
        NET_BANK,
        bank.keys.x25519!.secretKey,
        claims.map((c) => c.claimId),
      );
      expect(claims.map((c) => answers.get(c.claimId))).toEqual(claims.map((c) => d.sc.expectedClaims.get(c.claimId)));

      // The other custodian was shown the failed job and answered nothing for it: it gives its budget back.
      const journal = readFileSync(join(d.keys, other, 'custodian.log'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(journal.filter((e) => e.jobId === failed.jobId && e.refunded)).toHaveLength(1);
    } finally {
      stalled.resume();
    }
    // Running again: after the breaker's cool-down the next job that needs it is scored, equal to the plaintext.
    await new Promise((r) => setTimeout(r, 3500));
    const ok = await score(consenting.slice(50, 90));
    expect(ok.code).toBeUndefined();
    expect(ok.rows!.map((r) => [r.uscc, r.status, r.score])).toEqual(
      consenting.slice(50, 90).map((u) => [u, 'OK', plainScore(u)]),
    );
  }, 400_000);
});
