/**
 * The auditor's commands: `audit verify` (the whole ledger recomputed: tree, entries, signed checkpoints) and
 * `audit replay` (each job re-checked step by step from the seed escrowed to the auditor, docs/protocols.md "Auditor
 * replay"). Both exit 1 when the check does not pass; for a replay that is any step not `match` — a `missing` step
 * (purged material, or no seed escrowed to this auditor) is not evidence of tampering, but it is not a check either.
 */
import { resolve } from 'node:path';
import { replayJob, type ReplayReport } from '../../engine/audit/replay.ts';
import { auditVerify, jobsOf, replayRemote } from '../client/index.ts';
import { SafehouseError } from '../../core/errors.ts';
import { client, progress, withSafehouse, type Handler } from './context.ts';
import type { Args } from './parse.ts';

type VerifyResult =
  | { ok: true; size: number; checkpoints: number; root: string; consistentWith?: number }
  | { ok: false; code: string; reason: string; index?: number; checkpointSize?: number };

function printVerify(r: VerifyResult, out: (l: string) => void, suffix: string): number {
  if (r.ok) {
    out(`ledger intact: ${r.size} entries, ${r.checkpoints} signed checkpoints, root ${r.root}${suffix}`);
    return 0;
  }
  process.stderr.write(
    `${r.code}: ledger check failed at ${r.index !== undefined ? `entry ${r.index}` : `checkpoint ${r.checkpointSize}`}: ${r.reason}\n`,
  );
  return 1;
}

/** Print the reports; the exit code is 1 unless every step of every job matched, and the last line says why. */
function printReplay(args: Args, reports: readonly ReplayReport[], out: (l: string) => void): number {
  const all = args.flag('all');
  if (args.flag('json')) out(JSON.stringify(reports));
  else
    for (const r of reports) {
      out(`${r.jobId} (${r.kind}): ${r.ok ? 'all steps match' : 'NOT ALL MATCH'}`);
      for (const st of r.steps)
        if (!all || st.status !== 'match')
          out(`  ${st.status.padEnd(8)} ${st.step}${st.detail ? ` — ${st.detail}` : ''}`);
    }
  const steps = reports.flatMap((r) => r.steps);
  const mismatched = steps.filter((s) => s.status === 'mismatch').length;
  const missing = steps.filter((s) => s.status === 'missing').length;
  const failed = reports.filter((r) => r.steps.some((s) => s.status !== 'match')).length;
  if (failed === 0) {
    if (!args.flag('json')) out(`${reports.length} job(s) replayed: every step matches`);
    return 0;
  }
  const why = [
    mismatched
      ? `${mismatched} step(s) mismatch (a recomputation disagrees with the record: treat it as tampering)`
      : '',
    missing
      ? `${missing} step(s) missing (the material to check them is not there: purged by retention, or no seed escrowed to this auditor, as for an auditor registered after the job)`
      : '',
  ].filter(Boolean);
  // With --json, stdout stays one JSON document; the reason goes to stderr.
  const line = `${failed} of ${reports.length} job(s) not fully replayed: ${why.join('; ')}`;
  if (args.flag('json')) process.stderr.write(line + '\n');
  else out(line);
  return 1;
}

export const HANDLERS: Record<string, Handler> = {
  async 'audit verify'({ args, out }) {
    if (args.mode === 'client') {
      const keyFile = args.string('key');
      const r = await auditVerify(
        client(args),
        args.optString('engine-key'),
        resolve(args.optString('state') ?? `${keyFile}.checkpoint.json`),
      );
      return printVerify(
        r,
        out,
        ` (verified on the auditor's side${r.ok && r.consistentWith !== undefined ? `; consistent with the checkpoint of ${r.consistentWith} seen before` : ''})`,
      );
    }
    return withSafehouse(args, async (sh) => printVerify(sh.engine.auditVerify(), out, ''));
  },

  async 'audit replay'({ args, out }) {
    const since = args.number('since');
    const bar = progress('replaying jobs');
    const reports: ReplayReport[] = [];
    if (args.mode === 'client') {
      const auditor = client(args);
      const engineKey = args.optString('engine-key');
      const ids = args.flag('all') ? await jobsOf(auditor, since, engineKey) : [args.string('job')];
      for (const [i, id] of ids.entries()) {
        reports.push(await replayRemote(auditor, id, engineKey ? { engineKey } : {}));
        if (args.flag('all') && !args.flag('json')) bar(i + 1, ids.length);
      }
      return printReplay(args, reports, out);
    }
    return withSafehouse(args, async (sh) => {
      // As an auditor: its X25519 key opens the seeds escrowed to it.
      const auditors = sh.engine.registry.parties('auditor').map((p) => p.id);
      const id = args.optString('auditor') ?? (auditors.length === 1 ? auditors[0] : undefined);
      if (id === undefined)
        throw new SafehouseError(
          'SH_ERR_INVALID_ARGUMENT',
          auditors.length === 0
            ? 'no auditor is registered (safehouse party add --role auditor --id ID)'
            : `several auditors are registered (${auditors.join(', ')}); name one with --auditor`,
          { option: 'auditor' },
        );
      const k = sh.wallet.require(id, 'auditor');
      const ids = args.flag('all')
        ? sh.engine.ledger.entriesOfKind('job.requested', since).map((e) => String(e.body.jobId))
        : [args.string('job')];
      for (const [i, jobId] of ids.entries()) {
        reports.push(await replayJob(sh.engine, jobId, { id, x25519SecretKey: k.x25519!.secretKey }));
        if (args.flag('all') && !args.flag('json')) bar(i + 1, ids.length);
      }
      return printReplay(args, reports, out);
    });
  },
};
