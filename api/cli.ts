/**
 * `safehouse` CLI, embedded mode on a data directory (`--home DIR`, default ./.safehouse). Each command acts as the
 * party it names (keys from the wallet) and exits non-zero with `CODE: message` on stderr when it fails.
 */
import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { SafehouseError } from '../core/errors.ts';
import { Safehouse } from './embedded.ts';
import { toCsv } from '../core/csv.ts';
import {
  need,
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
import { replayJob } from '../engine/audit/replay.ts';
import { accessReport } from '../engine/audit/report.ts';
import { parseUscc } from '../sandbox/uscc.ts';
import { runNetworkCommand, NETWORK_USAGE, NETWORK_OPTIONS } from './cli-network.ts';
import { runDemo } from './demo.ts';
import { runTrain } from './train-run.ts';
import type { PartyRole } from '../engine/registry.ts';

const USAGE = `safehouse — privacy-preserving computation for SME credit-information sharing (数据安全屋)

  safehouse init [--home DIR]
  safehouse party add --role provider|bank|enterprise|auditor --id ID
  safehouse provider ingest --provider ID --schema schema.json --csv data.csv
  safehouse consent grant --subject USCC --bank ID --purpose P --categories a,b --ops score[,verify,train] --days N
  safehouse consent grant --file consents.csv        (header uscc,bank,purpose,categories,ops,days; lists use ;)
  safehouse consent revoke --id CONSENT_ID | --subject USCC --bank ID
  safehouse model register --bank ID --file model.json
  safehouse model approve --provider ID --model MODEL_ID
  safehouse score --bank ID --model MODEL_ID --purpose P --subjects subjects.txt --out scores.csv
  safehouse verify --bank ID --purpose P --claims claims.csv --out results.csv
                                                   (header claim_id,uscc,provider,field,op,value[,value2]; in: a;b;c)
  safehouse train --bank ID --providers P1[,P2] --purpose model_training --labels labels.csv --fields P1.a,P2.b,...
                  --out model.json [--features binned|standardized] [--iterations N] [--bins K] [--seed S] [--model-id ID]
                  [--pdo 20 --base-score 600 --base-odds 50] [--json]      (labels.csv: uscc,label; 1 = default)
  safehouse audit verify
  safehouse report --subject USCC [--json]         (an enterprise's access report: consents, jobs, outcomes, proofs)
  safehouse retention purge [--days N]             (replay material of jobs finished N days ago; default policy 365)
  safehouse audit replay --job JOB_ID | --all [--since LEDGER_INDEX] [--auditor ID] [--json]
                                                   (exit 1 on any mismatch; missing = purged or not replayable)
  safehouse demo [--subjects N] [--json]

Every command accepts --home DIR (default ./.safehouse).
${NETWORK_USAGE}`;

const OPTIONS = {
  home: { type: 'string' },
  role: { type: 'string' },
  id: { type: 'string' },
  provider: { type: 'string' },
  schema: { type: 'string' },
  csv: { type: 'string' },
  subject: { type: 'string' },
  bank: { type: 'string' },
  purpose: { type: 'string' },
  categories: { type: 'string' },
  ops: { type: 'string' },
  days: { type: 'string' },
  file: { type: 'string' },
  model: { type: 'string' },
  subjects: { type: 'string' },
  out: { type: 'string' },
  claims: { type: 'string' },
  providers: { type: 'string' },
  labels: { type: 'string' },
  fields: { type: 'string' },
  iterations: { type: 'string' },
  bins: { type: 'string' },
  seed: { type: 'string' },
  'model-id': { type: 'string' },
  pdo: { type: 'string' },
  'base-score': { type: 'string' },
  'base-odds': { type: 'string' },
  features: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  all: { type: 'boolean' },
  since: { type: 'string' },
  job: { type: 'string' },
  auditor: { type: 'string' },
  ...NETWORK_OPTIONS,
} as const;

/** Job ids with a `job.requested` ledger entry at or after `since`, in ledger order. */
function jobsSince(sh: Safehouse, since: number): string[] {
  return sh.engine.ledger.entriesOfKind('job.requested', since).map((e) => String(e.body.jobId));
}

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new SafehouseError('SH_ERR_INVALID_ARGUMENT', (err as Error).message);
  }
  const o = parsed.values as Opts;
  const [cmd, sub] = parsed.positionals;
  if (o.help || !cmd) {
    process.stdout.write(USAGE + '\n');
    return cmd || o.help ? 0 : 1;
  }
  const home = resolve((o.home as string | undefined) ?? './.safehouse');
  const key =
    sub && !['init', 'score', 'verify', 'train', 'demo', 'serve', 'custodian', 'keygen', 'report'].includes(cmd)
      ? `${cmd} ${sub}`
      : cmd;

  const net = await runNetworkCommand(key, o, home);
  if (net !== undefined) return net;

  if (key === 'demo') {
    const n = o.subjects === undefined ? 10000 : Number(o.subjects);
    if (!Number.isInteger(n) || n < 0 || n > 200_000)
      throw new SafehouseError(
        'SH_ERR_INVALID_ARGUMENT',
        `"--subjects" expected an integer in [0, 200000], got ${o.subjects}`,
      );
    const summary = await runDemo({
      subjects: n,
      ...(o.home ? { home } : {}),
      ...(o.json ? {} : { log: (l: string) => process.stdout.write(l + '\n'), progress: progressBar }),
    });
    if (o.json) process.stdout.write(JSON.stringify(summary) + '\n');
    else {
      process.stdout.write(
        `scored ${summary.scored}/${summary.subjects}; refused ${JSON.stringify(summary.refused)} (generator made ${JSON.stringify(summary.expectedRefused)})\n`,
      );
      process.stdout.write(
        `matches plaintext: ${summary.matchesPlaintext}; ledger ${summary.ledger.ok ? 'intact' : 'BROKEN'} (${summary.ledger.size} entries)\n`,
      );
      process.stdout.write(
        `verification: ${summary.verification.claims} claims ${JSON.stringify(summary.verification.results)}, matches plaintext: ${summary.verification.matchesPlaintext} (${summary.verification.seconds}s)\n`,
      );
      if ('holdoutAuc' in summary.training)
        process.stdout.write(
          `training: ${summary.training.iterations} iterations, hold-out AUC ${summary.training.holdoutAuc.toFixed(4)} (plaintext ${summary.training.plaintextAuc.toFixed(4)}), ${summary.training.seconds}s\n`,
        );
      else process.stdout.write(`training: skipped (${summary.training.skipped})\n`);
      process.stdout.write(
        `encrypted scoring ${summary.encryptedScoringSeconds}s vs plaintext ${summary.plaintextScoringSeconds}s; whole demo ${summary.seconds}s\n`,
      );
    }
    const trainOk =
      !('holdoutAuc' in summary.training) ||
      Math.abs(summary.training.holdoutAuc - summary.training.plaintextAuc) <= 0.01;
    if (!o.json)
      process.stdout.write(
        `audit replay: ${summary.replay.jobs} jobs, ${summary.replay.allMatch ? 'every step matches' : 'NOT ALL MATCH'}; access reports of ${summary.accessReports.subjects} subjects ${summary.accessReports.exact ? 'list exactly the jobs that touched them' : `differ for ${summary.accessReports.mismatches}`}\n`,
      );
    return summary.matchesPlaintext &&
      summary.verification.matchesPlaintext &&
      trainOk &&
      summary.ledger.ok &&
      summary.replay.allMatch &&
      summary.accessReports.exact
      ? 0
      : 1;
  }

  const sh = await Safehouse.open({ home, create: key === 'init' });
  try {
    switch (key) {
      case 'init':
        process.stdout.write(`initialized ${home} (parameters ${sh.engine.params.id})\n`);
        return 0;
      case 'party add': {
        const role = need(o, 'role') as PartyRole;
        if (!['provider', 'bank', 'enterprise', 'auditor'].includes(role))
          throw new SafehouseError(
            'SH_ERR_INVALID_ARGUMENT',
            `"--role" expected provider|bank|enterprise|auditor, got ${role}`,
          );
        await sh.addParty(role, need(o, 'id'));
        process.stdout.write(`registered ${role} ${o.id}\n`);
        return 0;
      }
      case 'provider ingest': {
        const r = await sh.ingest(
          need(o, 'provider'),
          readJson(need(o, 'schema'), 'schema'),
          readText(need(o, 'csv'), 'csv'),
        );
        process.stdout.write(
          `ingested ${r.subjects} subjects in ${r.blocks} block(s) as dataset ${r.datasetId} (version ${r.version})\n`,
        );
        return 0;
      }
      case 'consent grant': {
        const grants = grantsOf(o);
        const signed = sh.grantConsents(grants);
        for (const c of signed)
          process.stdout.write(
            `${c.statement.id} ${c.statement.subject} → ${c.statement.grantee} until ${c.statement.notAfter}\n`,
          );
        return 0;
      }
      case 'consent revoke': {
        const ids = o.id
          ? sh.revoke({ consentId: o.id as string })
          : sh.revoke({ subject: need(o, 'subject'), bank: need(o, 'bank') });
        process.stdout.write(`revoked ${ids.join(', ')}\n`);
        return 0;
      }
      case 'model register': {
        const m = sh.registerModel(need(o, 'bank'), readJson(need(o, 'file'), 'file'));
        process.stdout.write(
          `registered model ${m.spec.id} hash ${m.hash} (scale 10^${m.scale}, |score·10^${m.scale}| ≤ ${m.bound})\n`,
        );
        return 0;
      }
      case 'model approve': {
        await sh.approveModel(need(o, 'provider'), need(o, 'model'));
        process.stdout.write(`provider ${o.provider} approved model ${o.model}\n`);
        return 0;
      }
      case 'score': {
        const subjects = subjectsOf(o);
        const out = need(o, 'out');
        const { jobId, rows } = await sh.score(need(o, 'bank'), need(o, 'model'), need(o, 'purpose'), subjects, (p) => {
          if (p.phase === 'compute') progressBar('scoring blocks', p.done, p.total);
        });
        writeFileSync(
          resolve(out),
          toCsv(
            ['uscc', 'status', 'score'],
            rows.map((r) => [r.uscc, r.status, r.score]),
          ),
        );
        const ok = rows.filter((r) => r.status === 'OK').length;
        process.stdout.write(`job ${jobId}: ${ok} scored, ${rows.length - ok} refused → ${out}\n`);
        return 0;
      }
      case 'verify': {
        const claims = claimsOf(o);
        const out = need(o, 'out');
        const { jobId, results } = await sh.verify(need(o, 'bank'), need(o, 'purpose'), claims, (p) => {
          if (p.phase !== 'check' && p.phase !== 'done') progressBar(`verify ${p.phase}`, p.done, p.total);
        });
        writeFileSync(
          resolve(out),
          toCsv(
            ['claim_id', 'result'],
            claims.map((c) => [c.claimId, results.get(c.claimId) ?? '']),
          ),
        );
        const counts: Record<string, number> = {};
        for (const r of results.values()) counts[r] = (counts[r] ?? 0) + 1;
        process.stdout.write(`job ${jobId}: ${claims.length} claims ${JSON.stringify(counts)} → ${out}\n`);
        return 0;
      }
      case 'train': {
        const { provider, fields, others, labels } = trainInputsOf(o);
        const num = (name: string) => numOpt(o, name);
        const out = need(o, 'out');
        const modelId = (o['model-id'] as string | undefined) ?? out.replace(/^.*[\\/]/, '').replace(/\.json$/i, '');
        const iterations = num('iterations');
        const pdo = num('pdo');
        const r = await runTrain(sh, {
          bank: need(o, 'bank'),
          provider,
          purpose: need(o, 'purpose'),
          fields,
          ...(others.length ? { others } : {}),
          labels,
          modelId,
          ...(featuresOf(o) ? { features: featuresOf(o)! } : {}),
          ...(num('seed') !== undefined ? { seed: num('seed')! } : {}),
          ...(num('bins') !== undefined ? { bins: num('bins')! } : {}),
          ...(iterations !== undefined ? { options: { iterations } } : {}),
          ...(pdo !== undefined
            ? { pdo: { pdo, baseScore: num('base-score') ?? 600, baseOdds: num('base-odds') ?? 50 } }
            : {}),
          ...(o.json
            ? {}
            : {
                onProgress: (p: { iteration: number; iterations: number }) =>
                  progressBar('training', p.iteration, p.iterations),
              }),
        });
        writeFileSync(resolve(out), JSON.stringify(r.model, null, 2) + '\n');
        const summary = {
          iterations: r.iterations,
          trainAuc: r.trainAuc,
          holdoutAuc: r.holdoutAuc,
          plaintextAuc: r.plaintextAuc,
          holdoutKs: r.holdoutKs,
          cohort: r.cohort,
          excluded: r.excluded,
          seconds: r.seconds,
          secondsPerIteration: r.secondsPerIteration,
          jobId: r.jobId,
          model: r.model.id,
        };
        process.stdout.write(
          o.json
            ? JSON.stringify(summary) + '\n'
            : `job ${r.jobId}: ${r.iterations} iterations on ${r.cohort} subjects; hold-out AUC ${r.holdoutAuc.toFixed(4)} (plaintext ${r.plaintextAuc.toFixed(4)}), KS ${r.holdoutKs.toFixed(4)} → ${out}\n`,
        );
        return 0;
      }
      case 'audit verify': {
        const r = sh.engine.auditVerify();
        if (r.ok) {
          process.stdout.write(
            `ledger intact: ${r.size} entries, ${r.checkpoints} signed checkpoints, root ${r.root}\n`,
          );
          return 0;
        }
        process.stderr.write(
          `${r.code}: ledger check failed at ${r.index !== undefined ? `entry ${r.index}` : `checkpoint ${r.checkpointSize}`}: ${r.reason}\n`,
        );
        return 2;
      }
      case 'report': {
        // The enterprise's access report (embedded mode reads the engine's ledger; `--server` checks every proof).
        const r = accessReport(sh.engine, parseUscc(need(o, 'subject')));
        if (o.json) process.stdout.write(JSON.stringify(r) + '\n');
        else {
          for (const e of r.entries) {
            const who =
              e.what === 'job'
                ? `${e.operation} job ${e.jobId} by ${e.bank} for ${e.purpose} [${(e.fields ?? []).join(', ')}] → ${e.outcome}`
                : e.what === 'consent'
                  ? `consent ${e.consentId} to ${e.bank} for ${e.purpose} (${e.operation}; ${(e.fields ?? []).join(', ')})`
                  : `revocation of ${e.consentId}`;
            process.stdout.write(`${e.at} #${e.index} ${who}\n`);
          }
          process.stdout.write(
            `${r.entries.length} entries, each with an inclusion proof in the signed checkpoint of ${r.size} entries\n`,
          );
        }
        return 0;
      }
      case 'retention purge': {
        const days = o.days === undefined ? undefined : Number(o.days);
        const r = sh.engine.retention.purge(days);
        process.stdout.write(
          `purged ${r.blobs} blob(s) of ${r.jobs.length} job(s) finished more than ${days ?? sh.engine.policy.blobRetentionDays} day(s) ago; the ledger records it\n`,
        );
        return 0;
      }
      case 'audit replay': {
        // As an auditor (its X25519 key opens the seeds escrowed to it): one job, or every job (since a ledger index).
        const auditors = sh.engine.registry.parties('auditor').map((p) => p.id);
        const id = (o.auditor as string | undefined) ?? (auditors.length === 1 ? auditors[0]! : need(o, 'auditor'));
        const k = sh.wallet.require(id, 'auditor');
        const since = o.since === undefined ? 0 : Number(o.since);
        if (!Number.isInteger(since) || since < 0)
          throw new SafehouseError('SH_ERR_INVALID_ARGUMENT', `"--since" expected a ledger index, got ${o.since}`);
        const ids = o.all ? jobsSince(sh, since) : [need(o, 'job')];
        const reports = [];
        for (const [i, jobId] of ids.entries()) {
          reports.push(await replayJob(sh.engine, jobId, { id, x25519SecretKey: k.x25519!.secretKey }));
          if (o.all && !o.json) progressBar('replaying jobs', i + 1, ids.length);
        }
        if (o.json) process.stdout.write(JSON.stringify(reports) + '\n');
        else
          for (const r of reports) {
            process.stdout.write(`${r.jobId} (${r.kind}): ${r.ok ? 'all steps match' : 'NOT ALL MATCH'}\n`);
            for (const st of r.steps)
              if (!o.all || st.status !== 'match')
                process.stdout.write(`  ${st.status.padEnd(8)} ${st.step}${st.detail ? ` — ${st.detail}` : ''}\n`);
          }
        return reports.some((r) => r.steps.some((st) => st.status === 'mismatch')) ? 1 : 0;
      }
      default:
        throw new SafehouseError(
          'SH_ERR_INVALID_ARGUMENT',
          `unknown command ${JSON.stringify([cmd, sub].filter(Boolean).join(' '))}; see safehouse --help`,
        );
    }
  } finally {
    await sh.close();
  }
}

export async function run(argv: string[]): Promise<void> {
  try {
    process.exitCode = await main(argv);
  } catch (err) {
    if (err instanceof SafehouseError) {
      const p = err.toPublic();
      process.stderr.write(`${p.code}: ${p.message}\n`);
      if (err.kind === 'internal' && err.cause)
        process.stderr.write(`  cause: ${String((err.cause as Error)?.message ?? err.cause)}\n`);
    } else {
      process.stderr.write(`SH_ERR_INTERNAL: ${(err as Error)?.stack ?? String(err)}\n`);
    }
    process.exitCode = 1;
  }
}

if (import.meta.main) await run(process.argv.slice(2));
