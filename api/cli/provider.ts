/**
 * The data provider's commands: `provider ingest` (its table encrypted under its own keys and uploaded),
 * `model approve` (a bank's model reviewed on its own statistics, the approval signed) and `custodian` (the process
 * that holds its secret keys and answers the engine only for bank-signed jobs, docs/design.md §4.2).
 */
import type { ApprovalReview } from '../../engine/protocols/score/provider.ts';
import { resolve } from 'node:path';
import { readFileSync } from 'node:fs';
import { providerPolicy, type ProviderPolicy } from '../../sandbox/policy.ts';
import { SafehouseError, isCoded } from '../../core/errors.ts';
import { validateSchema } from '../../sandbox/catalog.ts';
import { ProviderClient } from '../client/index.ts';
import { startCustodian } from '../custodian-process.ts';
import { untilSignal, withSafehouse, type Handler } from './context.ts';
import { inFile, located, readJson, readText } from './inputs.ts';
import type { Args } from './parse.ts';

/** The errors of a table's own rows and cells: they are located in the CSV file. */
const IN_CSV = [
  'SH_ERR_CSV_MALFORMED',
  'SH_ERR_CSV_UNKNOWN_FIELD',
  'SH_ERR_CSV_VALUE',
  'SH_ERR_CSV_DUPLICATE_SUBJECT',
  'SH_ERR_USCC_FORMAT',
  'SH_ERR_USCC_CHECK',
  'SH_ERR_ID_VALUE',
] as const;

/** The provider's client in client mode, its key directory checked against `--as`. */
function providerClient(args: Args): ProviderClient {
  const p = new ProviderClient(args.string('server'), resolve(args.string('key')));
  const as = args.optString('as');
  if (as !== undefined && as !== p.client.id)
    throw new SafehouseError(
      'SH_ERR_INVALID_ARGUMENT',
      `"--as" ${as} does not match the key directory's party ${p.client.id}`,
      {
        option: 'as',
      },
    );
  return p;
}

export const HANDLERS: Record<string, Handler> = {
  async 'provider ingest'({ args, out }) {
    const schemaFile = args.string('schema');
    const csvFile = args.string('csv');
    const schema = readJson(schemaFile, 'schema');
    inFile(schemaFile, () => validateSchema(schema));
    const csv = readText(csvFile, 'csv');
    // The table's own errors (cells, subjects, header) are located in the CSV file.
    const ingest = async (
      f: () => Promise<{ datasetId: string; subjects: number; blocks: number; version: number }>,
    ) => {
      try {
        const r = await f();
        out(`ingested ${r.subjects} subjects in ${r.blocks} block(s) as dataset ${r.datasetId} (version ${r.version})`);
        return 0;
      } catch (err) {
        const inCsv = isCoded(err) && (IN_CSV as readonly string[]).includes(err.code);
        throw inCsv ? located(err, csvFile) : err;
      }
    };
    if (args.mode === 'client') {
      const p = providerClient(args);
      try {
        return await ingest(() => p.ingest(schema, csv));
      } finally {
        await p.close();
      }
    }
    return withSafehouse(args, (sh) => ingest(() => sh.ingest(args.string('provider'), schema, csv)));
  },

  async 'model approve'({ args, out }) {
    const model = args.string('model');
    if (args.mode === 'client') {
      const p = providerClient(args);
      try {
        printReview(out, p.client.id, model, await p.approve(model));
      } finally {
        await p.close();
      }
      return 0;
    }
    return withSafehouse(args, async (sh) => {
      printReview(out, args.string('provider'), model, await sh.approveModel(args.string('provider'), model));
      return 0;
    });
  },

  async custodian({ args, out }) {
    const provider = args.optString('provider');
    const engineKey = args.optString('engine-key');
    const policyFile = args.optString('policy');
    let policy: Partial<ProviderPolicy> | undefined;
    if (policyFile !== undefined) {
      try {
        policy = JSON.parse(readFileSync(resolve(policyFile), 'utf8')) as Partial<ProviderPolicy>;
      } catch (err) {
        throw new SafehouseError(
          'SH_ERR_INVALID_ARGUMENT',
          `"--policy" ${policyFile} is not a JSON file of the provider's limits`,
          { option: 'policy' },
          { cause: err },
        );
      }
      providerPolicy(policy); // checked before the custodian starts: a bad limit is a coded error, not a late one
    }
    const c = await startCustodian({
      ...(policy ? { policy } : {}),
      logLevel: process.env.SAFEHOUSE_LOG_LEVEL ?? 'info',
      ...(provider ? { provider } : {}),
      keysDir: resolve(args.string('keys')),
      engine: args.string('engine'),
      registrarKey: resolve(args.string('registrar-key')),
      port: args.number('port'),
      host: args.string('host'),
      ...(engineKey ? { engineKey } : {}),
    });
    out(`custodian of ${provider ?? 'provider'} listening on ${c.url}, registered with ${args.string('engine')}`);
    return untilSignal(c.close);
  },
};

/** What the provider's review applied and found (its own policy, the group's history it counted). */
function printReview(out: (line: string) => void, provider: string, model: string, r: ApprovalReview): void {
  const p = r.policy;
  const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
  out(`provider ${provider} approved model ${model} for group ${r.group}`);
  out(
    `  your policy: ≥ ${p.minFieldsPerProvider} fields and ≤ ${pct(p.maxFieldVarianceShare)} of the variance per field in one model; every field keeps ≥ ${pct(p.minUnexplainedShare)} unexplained by all of the group's models together`,
  );
  out(
    `  per subject and bank group over ${p.windowDays} days: ${p.scoreModelsPerSubject} scoring models, ${p.verifyUnitsPerWindow} verification units and ${p.tokenEvaluationsPerWindow} token evaluations per field, training ε ${p.trainSubjectEpsilon} (ε ${p.trainEpsilon}, δ ${p.trainDelta} per job)`,
  );
  out(
    `  counted with ${r.earlier.length} earlier model(s) of the group${r.earlier.length ? `: ${r.earlier.join(', ')}` : ''}`,
  );
  const least = [...r.exposure].sort((a, b) => a.unexplained - b.unexplained).slice(0, 3);
  if (least.length)
    out(
      `  least hidden: ${least.map((e) => `${e.field} ${(e.unexplained * 100).toFixed(1)}% unexplained`).join(', ')}`,
    );
}
