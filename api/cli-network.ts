/**
 * The CLI's network commands: `serve` (the engine server), `custodian` (a provider's custodian process),
 * `keygen` (a party's own keys), and client mode — every party command with `--server URL --as PARTY --key FILE`
 * (providers: `--key` is their key directory; bulk consent grants: a directory of enterprise key files).
 */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { SafehouseError, fail } from '../core/errors.ts';
import { Engine } from '../engine/engine.ts';
import { BFV_8192_T40 } from '../engine/he/params.ts';
import { toScorecard, toLinear } from '../models/export.ts';
import { trainOptions } from '../models/train.ts';
import { trainTestSplit } from '../models/german.ts';
import { toCsv } from '../core/csv.ts';
import {
  need,
  list,
  readJson,
  readText,
  progressBar,
  subjectsOf,
  grantsOf,
  claimsOf,
  trainInputsOf,
  featuresOf,
  numOpt,
  type Opts,
} from './cli-args.ts';
import { EngineServer, adminKey } from './server/index.ts';
import { startCustodian } from './custodian-process.ts';
import { keygen, keygenEnterprises, readPublic } from './keys.ts';
import {
  replayRemote,
  jobsOf,
  clientFor,
  registerParties,
  ProviderClient,
  registerModel,
  score,
  verify,
  train,
  grantConsents,
  revokeConsents,
  enterpriseKeys,
  auditVerify,
  accessReport,
} from './client/index.ts';
import type { Role } from './wallet.ts';

export const NETWORK_OPTIONS = {
  server: { type: 'string' },
  as: { type: 'string' },
  key: { type: 'string' },
  public: { type: 'string' },
  keys: { type: 'string' },
  engine: { type: 'string' },
  port: { type: 'string' },
  host: { type: 'string' },
  ids: { type: 'string' },
  'engine-key': { type: 'string' },
  'pool-size': { type: 'string' },
  state: { type: 'string' },
} as const;

export const NETWORK_USAGE = `
Network mode (each party in its own place; servers bind 127.0.0.1 unless --host is given):
  safehouse serve --home DIR --port P                 engine server; admin key in DIR/admin.key; OpenAPI at /docs
  safehouse keygen --role bank|auditor|enterprise --id ID --out FILE     (writes FILE and FILE.pub)
  safehouse keygen --role provider --id ID --out DIR                      (ed25519, BFV, OPRF keys; DIR/public.json)
  safehouse keygen --role enterprise --ids usccs.txt --out DIR            (DIR/<USCC>.key each)
  safehouse custodian --provider ID --keys DIR --engine URL --port P      (a provider's key holder)
  Client mode: add --server URL --as PARTY --key FILE to a party command:
    party add --public FILE|DIR (as admin) · provider ingest / model approve (--key = provider key DIR) ·
    model register · score · verify · train (as a bank) · consent grant / revoke (as the enterprise; with --file,
    --key DIR of enterprise key files) · report (as the enterprise) · audit verify (as an auditor)`;

function port(o: Opts): number {
  const p = Number(need(o, 'port'));
  if (!Number.isInteger(p) || p < 0 || p > 65535)
    throw new SafehouseError('SH_ERR_INVALID_ARGUMENT', `"--port" expected 0..65535, got ${o.port}`, {
      option: 'port',
    });
  return p;
}

/** Run until SIGINT/SIGTERM, then shut down gracefully. */
async function untilSignal(close: () => Promise<void>): Promise<number> {
  await new Promise<void>((done) => {
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
  await close();
  return 0;
}

/** @returns the exit code, or undefined when the command is not a network command. */
export async function runNetworkCommand(key: string, o: Opts, home: string): Promise<number | undefined> {
  const out = (line: string) => process.stdout.write(line + '\n');
  if (key === 'serve') {
    const engine = Engine.open({ home, create: true, ...(o['pool-size'] ? { poolSize: Number(o['pool-size']) } : {}) });
    const admin = adminKey(home);
    const server = new EngineServer({
      engine,
      adminPublicKey: admin.publicKey,
      log: (l) => process.stderr.write(l + '\n'),
    });
    const url = await server.listen(port(o), (o.host as string | undefined) ?? '127.0.0.1');
    out(
      `safehouse engine listening on ${url} (parameters ${engine.params.id}; admin key ${admin.path}; OpenAPI ${url}/docs)`,
    );
    return untilSignal(async () => {
      await server.close();
      await engine.close();
    });
  }
  if (key === 'custodian') {
    const c = await startCustodian({
      ...(o.provider ? { provider: o.provider as string } : {}),
      keysDir: resolve(need(o, 'keys')),
      engine: need(o, 'engine'),
      port: port(o),
      ...(o.host ? { host: o.host as string } : {}),
      ...(o['engine-key'] ? { engineKey: o['engine-key'] as string } : {}),
    });
    out(`custodian of ${o.provider ?? 'provider'} listening on ${c.url}, registered with ${o.engine}`);
    return untilSignal(c.close);
  }
  if (key === 'keygen') {
    const role = need(o, 'role') as Role;
    if (!['provider', 'bank', 'enterprise', 'auditor'].includes(role))
      throw new SafehouseError(
        'SH_ERR_INVALID_ARGUMENT',
        `"--role" expected provider|bank|enterprise|auditor, got ${role}`,
      );
    if (o.ids) {
      if (role !== 'enterprise') throw new SafehouseError('SH_ERR_INVALID_ARGUMENT', '"--ids" is for enterprises');
      const pubs = keygenEnterprises(list(readText(o.ids as string, 'ids'), /\r?\n/), resolve(need(o, 'out')));
      out(`${pubs.length} enterprise key files in ${o.out}`);
      return 0;
    }
    // Provider BFV keys are made for the federation's parameter set (the engine refuses others at registration).
    const pub = await keygen(role, need(o, 'id'), resolve(need(o, 'out')), BFV_8192_T40);
    out(JSON.stringify(pub).length > 400 ? `keys for ${role} ${pub.id} in ${o.out}` : JSON.stringify(pub));
    return 0;
  }
  if (!o.server) return undefined;

  const server = o.server as string;
  const as = o.as as string | undefined;
  switch (key) {
    case 'party add': {
      const admin = clientFor(server, as, need(o, 'key'));
      const ids = await registerParties(admin, readPublic(resolve(need(o, 'public'))));
      out(ids.length === 1 ? `registered ${ids[0]}` : `registered ${ids.length} parties`);
      return 0;
    }
    case 'provider ingest': {
      const p = new ProviderClient(server, resolve(need(o, 'key')));
      try {
        if (as !== undefined && as !== p.client.id)
          fail('SH_ERR_INVALID_ARGUMENT', `"--as" ${as} does not match the key directory's party ${p.client.id}`);
        const r = await p.ingest(readJson(need(o, 'schema'), 'schema'), readText(need(o, 'csv'), 'csv'));
        out(`ingested ${r.subjects} subjects in ${r.blocks} block(s) as dataset ${r.datasetId} (version ${r.version})`);
      } finally {
        await p.close();
      }
      return 0;
    }
    case 'model approve': {
      const p = new ProviderClient(server, resolve(need(o, 'key')));
      try {
        await p.approve(need(o, 'model'));
        out(`provider ${p.client.id} approved model ${o.model}`);
      } finally {
        await p.close();
      }
      return 0;
    }
    case 'model register': {
      const m = await registerModel(clientFor(server, as, need(o, 'key')), readJson(need(o, 'file'), 'file'));
      out(`registered model ${m.id} hash ${m.hash} (scale 10^${m.scale}, |score·10^${m.scale}| ≤ ${m.bound})`);
      return 0;
    }
    case 'score': {
      const outFile = need(o, 'out');
      const { jobId, rows } = await score(
        clientFor(server, as, need(o, 'key')),
        need(o, 'model'),
        need(o, 'purpose'),
        subjectsOf(o),
        (p) => {
          if (p.phase === 'compute') progressBar('scoring blocks', p.done, p.total);
        },
      );
      writeFileSync(
        resolve(outFile),
        toCsv(
          ['uscc', 'status', 'score'],
          rows.map((r) => [r.uscc, r.status, r.score]),
        ),
      );
      const ok = rows.filter((r) => r.status === 'OK').length;
      out(`job ${jobId}: ${ok} scored, ${rows.length - ok} refused → ${outFile}`);
      return 0;
    }
    case 'verify': {
      const claims = claimsOf(o);
      const outFile = need(o, 'out');
      const { jobId, results } = await verify(clientFor(server, as, need(o, 'key')), need(o, 'purpose'), claims);
      writeFileSync(
        resolve(outFile),
        toCsv(
          ['claim_id', 'result'],
          claims.map((c) => [c.claimId, results.get(c.claimId) ?? '']),
        ),
      );
      const counts: Record<string, number> = {};
      for (const r of results.values()) counts[r] = (counts[r] ?? 0) + 1;
      out(`job ${jobId}: ${claims.length} claims ${JSON.stringify(counts)} → ${outFile}`);
      return 0;
    }
    case 'train': {
      // As in embedded mode: a seeded stratified 70/30 split; the model is trained on the 70 %. Hold-out metrics come
      // from scoring the hold-out subjects once the providers have approved the model (their step, not the bank's).
      const bank = clientFor(server, as, need(o, 'key'));
      const { provider, fields, others, labels } = trainInputsOf(o);
      const outFile = need(o, 'out');
      const modelId = (o['model-id'] as string | undefined) ?? outFile.replace(/^.*[\\/]/, '').replace(/\.json$/i, '');
      const { train: trainSet, test } = trainTestSplit([...labels.keys()], labels, {
        seed: numOpt(o, 'seed') ?? 42,
        testFraction: 0.3,
      });
      const iterations = numOpt(o, 'iterations');
      const features = featuresOf(o);
      const t0 = performance.now();
      const outcome = await train(bank, {
        provider,
        purpose: need(o, 'purpose'),
        fields,
        ...(others.length ? { others } : {}),
        subjects: trainSet,
        labels,
        bins: numOpt(o, 'bins') ?? 5,
        ...(features ? { features } : {}),
        ...(iterations !== undefined ? { options: { iterations } } : {}),
        ...(o.json
          ? {}
          : {
              onProgress: (p: { phase: string; done: number; total: number }) => {
                if (p.phase === 'iterate') progressBar('training', p.done, p.total);
              },
            }),
      });
      const opts = trainOptions(iterations !== undefined ? { iterations } : {});
      const pdo = numOpt(o, 'pdo');
      const model =
        features === 'standardized'
          ? toLinear(modelId, outcome.bins, outcome.model, opts.scaleBits)
          : toScorecard(
              modelId,
              outcome.bins,
              outcome.model,
              opts.scaleBits,
              pdo !== undefined
                ? { pdo, baseScore: numOpt(o, 'base-score') ?? 600, baseOdds: numOpt(o, 'base-odds') ?? 50 }
                : undefined,
            );
      writeFileSync(resolve(outFile), JSON.stringify(model, null, 2) + '\n');
      writeFileSync(resolve(`${outFile}.holdout.txt`), test.join('\n') + '\n');
      const summary = {
        jobId: outcome.jobId,
        model: model.id,
        iterations: outcome.iterations,
        cohort: outcome.cohort,
        excluded: Object.keys(outcome.excluded).length,
        holdout: test.length,
        seconds: Number(((performance.now() - t0) / 1000).toFixed(3)),
      };
      out(
        o.json
          ? JSON.stringify(summary)
          : `job ${outcome.jobId}: ${outcome.iterations} iterations on ${outcome.cohort} subjects → ${outFile} (hold-out subjects → ${outFile}.holdout.txt)`,
      );
      return 0;
    }
    case 'consent grant': {
      const grants = grantsOf(o);
      const keyOf = enterpriseKeys(resolve(need(o, 'key')));
      if (as !== undefined && grants.some((g) => g.subject !== as))
        fail('SH_ERR_FORBIDDEN', `--as ${as} may grant its own consents only`);
      const signed = await grantConsents(server, grants, keyOf);
      if (signed.length <= 20)
        for (const c of signed)
          out(`${c.statement.id} ${c.statement.subject} → ${c.statement.grantee} until ${c.statement.notAfter}`);
      else out(`granted ${signed.length} consents`);
      return 0;
    }
    case 'consent revoke': {
      const ent = clientFor(server, as, need(o, 'key'));
      const ids = await revokeConsents(ent, o.id ? { consentId: o.id as string } : { bank: need(o, 'bank') });
      out(`revoked ${ids.join(', ')}`);
      return 0;
    }
    case 'report': {
      const ent = clientFor(server, as, need(o, 'key'));
      const r = await accessReport(ent, o['engine-key'] as string | undefined);
      if (o.json) out(JSON.stringify(r));
      else {
        for (const e of r.entries)
          out(
            `${e.at} #${e.index} ${e.what === 'job' ? `${e.operation} job ${e.jobId} by ${e.bank} for ${e.purpose} → ${e.outcome}` : e.what === 'consent' ? `consent ${e.consentId} to ${e.bank} for ${e.purpose}` : `revocation of ${e.consentId}`}`,
          );
        out(`${r.entries.length} entries, each proven included in the signed checkpoint of ${r.size} entries`);
      }
      return 0;
    }
    case 'audit replay': {
      // On the auditor's machine: verified ledger + the job's bundle + blobs → a local replica → the same replay.
      const auditor = clientFor(server, as, need(o, 'key'));
      const ids = o.all
        ? await jobsOf(auditor, numOpt(o, 'since') ?? 0, o['engine-key'] as string | undefined)
        : [need(o, 'job')];
      const reports = [];
      for (const [i, id] of ids.entries()) {
        reports.push(await replayRemote(auditor, id, o['engine-key'] ? { engineKey: o['engine-key'] as string } : {}));
        if (o.all && !o.json) progressBar('replaying jobs', i + 1, ids.length);
      }
      if (o.json) out(JSON.stringify(reports));
      else
        for (const r of reports) {
          out(`${r.jobId} (${r.kind}): ${r.ok ? 'all steps match' : 'NOT ALL MATCH'}`);
          for (const st of r.steps)
            if (!o.all || st.status !== 'match')
              out(`  ${st.status.padEnd(8)} ${st.step}${st.detail ? ` — ${st.detail}` : ''}`);
        }
      return reports.some((r) => r.steps.some((st) => st.status === 'mismatch')) ? 1 : 0;
    }
    case 'audit verify': {
      const keyFile = need(o, 'key');
      const r = await auditVerify(
        clientFor(server, as, keyFile),
        o['engine-key'] as string | undefined,
        resolve((o.state as string | undefined) ?? `${keyFile}.checkpoint.json`),
      );
      if (r.ok) {
        out(
          `ledger intact: ${r.size} entries, ${r.checkpoints} signed checkpoints, root ${r.root} (verified on the auditor's side${r.consistentWith !== undefined ? `; consistent with the checkpoint of ${r.consistentWith} seen before` : ''})`,
        );
        return 0;
      }
      process.stderr.write(
        `${r.code}: ledger check failed at ${r.index !== undefined ? `entry ${r.index}` : `checkpoint ${r.checkpointSize}`}: ${r.reason}\n`,
      );
      return 2;
    }
    default:
      throw new SafehouseError(
        'SH_ERR_INVALID_ARGUMENT',
        `command ${JSON.stringify(key)} has no client mode; see safehouse --help`,
      );
  }
}
