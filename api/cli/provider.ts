/**
 * The data provider's commands: `provider ingest` (its table encrypted under its own keys and uploaded),
 * `model approve` (a bank's model reviewed on its own statistics, the approval signed) and `custodian` (the process
 * that holds its secret keys and answers the engine only for bank-signed jobs, docs/design.md §4.2).
 */
import { resolve } from 'node:path';
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
        await p.approve(model);
        out(`provider ${p.client.id} approved model ${model}`);
      } finally {
        await p.close();
      }
      return 0;
    }
    return withSafehouse(args, async (sh) => {
      await sh.approveModel(args.string('provider'), model);
      out(`provider ${args.string('provider')} approved model ${model}`);
      return 0;
    });
  },

  async custodian({ args, out }) {
    const provider = args.optString('provider');
    const engineKey = args.optString('engine-key');
    const c = await startCustodian({
      ...(provider ? { provider } : {}),
      keysDir: resolve(args.string('keys')),
      engine: args.string('engine'),
      port: args.number('port'),
      host: args.string('host'),
      ...(engineKey ? { engineKey } : {}),
    });
    out(`custodian of ${provider ?? 'provider'} listening on ${c.url}, registered with ${args.string('engine')}`);
    return untilSignal(c.close);
  },
};
