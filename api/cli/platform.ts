/**
 * Set-up and the platform operator's commands: `init`, `party add` (embedded: the party's keys made in the wallet;
 * client mode: the admin registers a party from its public keys), `serve` (the engine server), `keygen` (a party's
 * own keys for client mode), `retention purge`, `backup`, `restore` and `demo`.
 */
import { resolve } from 'node:path';
import { SafehouseError } from '../../core/errors.ts';
import { Engine } from '../../engine/engine.ts';
import { backupHome, restoreHome } from '../../engine/store/backup.ts';
import { BFV_8192_T40 } from '../../engine/he/params.ts';
import type { PartyRole } from '../../engine/registry.ts';
import { EngineServer, adminKey } from '../server/index.ts';
import { keygen, keygenEnterprises, readKeyFile, readPublic } from '../keys.ts';
import { registerParties } from '../client/index.ts';
import { runDemo } from '../demo.ts';
import type { Role } from '../wallet.ts';
import { client, progress, untilSignal, withSafehouse, type Handler } from './context.ts';
import { subjectList } from './inputs.ts';

export const HANDLERS: Record<string, Handler> = {
  async init({ args, out }) {
    return withSafehouse(
      args,
      async (sh) => {
        out(`initialized ${args.home} (parameters ${sh.engine.params.id})`);
        return 0;
      },
      { create: true },
    );
  },

  async 'party add'({ args, out }) {
    if (args.mode === 'client') {
      const group = args.optString('group');
      const registrar = args.optString('registrar');
      const ids = await registerParties(client(args), readPublic(resolve(args.string('public'))), {
        ...(group ? { group } : {}),
        ...(registrar ? { registrar: readKeyFile(resolve(registrar)) } : {}),
      });
      out(ids.length === 1 ? `registered ${ids[0]}` : `registered ${ids.length} parties`);
      return 0;
    }
    const role = args.string('role') as PartyRole;
    return withSafehouse(args, async (sh) => {
      const group = args.optString('group');
      await sh.addParty(role, args.string('id'), group ? { group } : {});
      out(`registered ${role} ${args.string('id')}`);
      return 0;
    });
  },

  async serve({ args, out }) {
    const pool = args.optNumber('pool-size');
    // A missing or empty engine.db is never silently a new engine (a new, empty ledger): --init says it is meant.
    const engine = Engine.open({ home: args.home, create: args.flag('init'), ...(pool ? { poolSize: pool } : {}) });
    try {
      engine.startupCheck();
    } catch (err) {
      await engine.close();
      throw err;
    }
    const admin = adminKey(args.home);
    const server = new EngineServer({
      engine,
      adminPublicKey: admin.publicKey,
      // JSON lines on stderr (docs/operations.md "Logs, health and metrics"); SAFEHOUSE_LOG_LEVEL=silent turns them off.
      logLevel: process.env.SAFEHOUSE_LOG_LEVEL ?? 'info',
      // Replay blobs older than the policy's retention, hourly; SAFEHOUSE_BLOB_BUDGET_BYTES adds a size limit.
      retention: {
        everyMs: 3_600_000,
        ...(Number(process.env.SAFEHOUSE_BLOB_BUDGET_BYTES) > 0
          ? { maxBlobBytes: Number(process.env.SAFEHOUSE_BLOB_BUDGET_BYTES) }
          : {}),
      },
    });
    // Consent and subject indexes in memory, SEAL in every worker: the first job does not pay for them.
    await engine.warmUp();
    const url = await server.listen(args.number('port'), args.string('host'));
    out(
      `safehouse engine listening on ${url} (parameters ${engine.params.id}; admin key ${admin.path}; OpenAPI ${url}/docs)`,
    );
    return untilSignal(async () => {
      await server.close();
      await engine.close();
    });
  },

  async wait({ args, out }) {
    const url = args.string('url');
    let base: URL;
    try {
      base = new URL(url);
    } catch {
      throw new SafehouseError('SH_ERR_INVALID_ARGUMENT', `"--url" expected a URL, got ${JSON.stringify(url)}`, {
        option: 'url',
      });
    }
    // An engine answers GET /v1/info, a custodian GET /v1/custodian/info; poll both until one does.
    const deadline = Date.now() + 1000 * args.number('timeout');
    for (;;) {
      for (const path of ['/v1/info', '/v1/custodian/info']) {
        const ok = await fetch(new URL(path, base), { signal: AbortSignal.timeout(2000) }).then(
          (r) => r.ok,
          () => false,
        );
        if (ok) {
          out(`${base.origin} answers ${path}`);
          return 0;
        }
      }
      if (Date.now() > deadline)
        throw new SafehouseError(
          'SH_ERR_UNAVAILABLE',
          `nothing answered at ${base.origin} within ${args.number('timeout')} s`,
        );
      await new Promise((r) => setTimeout(r, 200));
    }
  },

  async keygen({ args, out }) {
    const role = args.string('role') as Role;
    const dest = args.string('out');
    const ids = args.optString('ids');
    if (ids !== undefined) {
      if (role !== 'enterprise')
        throw new SafehouseError(
          'SH_ERR_INVALID_ARGUMENT',
          `--ids is for --role enterprise (one key file per USCC), not ${role}; use --id`,
          { option: 'ids' },
        );
      const pubs = keygenEnterprises(subjectList(ids, 'ids'), resolve(dest));
      out(`${pubs.length} enterprise key files in ${dest}`);
      return 0;
    }
    // Provider BFV keys are made for the federation's parameter set (the engine refuses others at registration).
    const pub = await keygen(role, args.string('id'), resolve(dest), BFV_8192_T40);
    out(JSON.stringify(pub).length > 400 ? `keys for ${role} ${pub.id} in ${dest}` : JSON.stringify(pub));
    return 0;
  },

  async 'retention purge'({ args, out }) {
    return withSafehouse(args, async (sh) => {
      const days = args.optNumber('days');
      const r = sh.engine.retention.purge(days);
      out(
        `purged ${r.blobs} blob(s) of ${r.jobs.length} job(s) finished more than ${days ?? sh.engine.policy.blobRetentionDays} day(s) ago; the ledger records it`,
      );
      return 0;
    });
  },

  async backup({ args, out }) {
    const m = await backupHome(resolve(args.home), resolve(args.string('out')));
    out(
      `backup ${resolve(args.string('out'))}: ${m.ledgerEntries} ledger entries, ${m.blobs} blobs (${m.files.join(', ')}); check it with \`safehouse audit verify --home ${resolve(args.string('out'))}\``,
    );
    return 0;
  },

  async restore({ args, out }) {
    const home = resolve(args.home);
    restoreHome(resolve(args.string('from')), home);
    const engine = Engine.open({ home, poolSize: 1 });
    try {
      const { ledgerSize } = engine.startupCheck();
      out(
        `restored ${home}: database sound, ledger of ${ledgerSize} entries verifies; start it with \`safehouse serve --home ${home}\``,
      );
    } finally {
      await engine.close();
    }
    return 0;
  },

  async demo({ args, out }) {
    const json = args.flag('json');
    const bar = new Map<string, (done: number, total: number) => void>();
    const summary = await runDemo({
      subjects: args.number('subjects'),
      ...(args.has('home') ? { home: args.home } : {}),
      ...(json
        ? {}
        : {
            log: out,
            progress: (label: string, done: number, total: number) => {
              if (!bar.has(label)) bar.set(label, progress(label));
              bar.get(label)!(done, total);
            },
          }),
    });
    const t = summary.training;
    // The gradients are exact plus the key holder's journaled noise (the replay checks that); the AUC moves with the
    // noise (measured −0.03 … +0.02 on German Credit), so only a model the noise ruined fails the demo.
    const trainOk = !('holdoutAuc' in t) || t.holdoutAuc >= t.plaintextAuc - 0.1;
    if (json) out(JSON.stringify(summary));
    else {
      const v = summary.verification;
      out(
        `scored ${summary.scored}/${summary.subjects}; refused ${JSON.stringify(summary.refused)} (generator made ${JSON.stringify(summary.expectedRefused)})`,
      );
      out(
        `matches plaintext: ${summary.matchesPlaintext}; ledger ${summary.ledger.ok ? 'intact' : 'BROKEN'} (${summary.ledger.size} entries)`,
      );
      out(
        `verification: ${v.claims} claims ${JSON.stringify(v.results)}, matches plaintext: ${v.matchesPlaintext} (${v.seconds}s)`,
      );
      out(
        'holdoutAuc' in t
          ? `training: ${t.iterations} iterations, hold-out AUC ${t.holdoutAuc.toFixed(4)} (plaintext ${t.plaintextAuc.toFixed(4)}; privacy noise ε = ${t.privacy.epsilon}), ${t.seconds}s`
          : `training: skipped (${t.skipped})`,
      );
      out(
        `encrypted scoring ${summary.encryptedScoringSeconds}s vs plaintext ${summary.plaintextScoringSeconds}s; whole demo ${summary.seconds}s`,
      );
      const r = summary.accessReports;
      out(
        `audit replay: ${summary.replay.jobs} jobs, ${summary.replay.allMatch ? 'every step matches' : 'NOT ALL MATCH'}; access reports of ${r.subjects} subjects ${r.exact ? 'list exactly the jobs that touched them' : `differ for ${r.mismatches}`}`,
      );
    }
    return summary.matchesPlaintext &&
      summary.verification.matchesPlaintext &&
      trainOk &&
      summary.ledger.ok &&
      summary.replay.allMatch &&
      summary.accessReports.exact
      ? 0
      : 1;
  },
};
