/**
 * `safehouse custodian --provider ID --keys DIR --engine URL --port P`: a provider's custodian as its own process. It
 * holds the provider's BFV and OPRF secrets (from its key directory), fetches bank keys from the engine's public
 * registry, answers the engine's signed requests (api/custodian-http.ts) only for bank-signed jobs within their
 * budgets, prepares the provider's training columns from its own tables, logs every request to `DIR/custodian.log`,
 * and tells the engine where it listens.
 */
import { join } from 'node:path';
import { readdirSync, readFileSync } from 'node:fs';
import { fail } from '../core/errors.ts';
import { hexToBytes, type Signed } from '../core/sign.ts';
import { paramSet } from '../engine/he/params.ts';
import { ProviderAgent } from '../engine/provider/agent.ts';
import { type ProviderTable } from '../engine/provider/table.ts';
import { WorkerPool } from '../engine/pool/pool.ts';
import type { TrainRequest, TrainingPart } from '../engine/protocols/train/messages.ts';
import { buildCustodianServer, b64 } from './custodian-http.ts';
import { checkTrainingPart } from '../engine/protocols/train/provider.ts';
import { Client } from './client/index.ts';
import type { ProviderPolicy } from '../sandbox/policy.ts';
import { providerKeys, readPublic } from './keys.ts';
import { LEDGER_ORIGIN } from '../engine/engine.ts';

export interface CustodianProcess {
  url: string;
  close(): Promise<void>;
}

export async function startCustodian(o: {
  provider?: string;
  keysDir: string;
  engine: string;
  port: number;
  host?: string;
  engineKey?: string;
  /** The registrar's public key file (.pub): the custodian pins it and trusts no bank or enterprise key it did not certify. */
  registrarKey: string;
  poolSize?: number;
  /** The provider's limits (sandbox/policy.ts ProviderPolicy); defaults when absent. */
  policy?: Partial<ProviderPolicy>;
  /** Structured request logs on stderr at this level (the `custodian` command: SAFEHOUSE_LOG_LEVEL, default info). */
  logLevel?: string;
}): Promise<CustodianProcess> {
  const k = providerKeys(o.keysDir);
  const id = k.party.id;
  if (o.provider !== undefined && o.provider !== id)
    fail('SH_ERR_INVALID_ARGUMENT', `"--provider" ${o.provider} does not match the keys in ${o.keysDir} (${id})`, {
      option: 'provider',
    });
  const client = new Client(o.engine, k.party);
  const info = await client.info();
  if (o.engineKey && o.engineKey !== info.engine.ed25519)
    fail('SH_ERR_BAD_SIGNATURE', `the engine at ${o.engine} announces a different key than --engine-key`);
  const enginePk = hexToBytes(o.engineKey ?? info.engine.ed25519);
  const params = paramSet(info.paramsId);
  const pool = new WorkerPool({ size: o.poolSize ?? 2 });
  const agent = new ProviderAgent(
    id,
    params,
    {
      bfvSecretKey: k.bfvSecretKey,
      bfvPublicKey: k.bfvPublicKey,
      ed25519SecretKey: k.party.ed25519.secretKey,
      ed25519PublicKey: k.party.ed25519.publicKey,
      oprfSecretKey: k.oprfSecretKey,
      oprfPublicKey: k.oprfPublicKey,
    },
    pool,
  );
  const registrar = readPublic(o.registrarKey)[0];
  if (registrar?.role !== 'registrar' || !/^[0-9a-f]{64}$/.test(registrar.ed25519))
    fail('SH_ERR_INVALID_ARGUMENT', `"--registrar-key" ${o.registrarKey} is not a registrar's public key file`, {
      option: 'registrar-key',
    });
  // The custodian pins the ledger key (the engine's, --engine-key or what it announced at first start) and the
  // registrar's; banks, enterprises, consents and jobs come only from the ledger it follows (docs/trust.md).
  const custodian = agent.custodian(enginePk, {
    logFile: join(o.keysDir, 'custodian.log'),
    tablesDir: o.keysDir,
    trust: { keyName: LEDGER_ORIGIN, publicKey: enginePk, registrarKey: hexToBytes(registrar.ed25519) },
    ...(o.policy ? { policy: o.policy } : {}),
  });
  const tableOf = (datasetId: string): ProviderTable => {
    for (const f of readdirSync(o.keysDir)) {
      if (!f.endsWith('.json') || f === 'key.json' || f === 'public.json') continue;
      const t = JSON.parse(readFileSync(join(o.keysDir, f), 'utf8')) as ProviderTable;
      if (t.datasetId === datasetId) return t;
    }
    return fail('SH_ERR_MODEL_STALE', `provider ${id} has no local copy of dataset ${datasetId}`);
  };
  const app = buildCustodianServer(custodian, enginePk, {
    ...(o.logLevel ? { logLevel: o.logLevel } : {}),
    extend: (server, authed) => {
      server.post('/v1/custodian/training', async (req) => {
        const b = authed<{ part: TrainingPart; request: Signed<TrainRequest> }>(req);
        await custodian.openJob(b.request);
        const part = b.part;
        checkTrainingPart(id, b.request, part);
        const c = await agent.prepareTraining(part, tableOf(part.datasetId));
        return { signed: c.signed, blobs: Object.fromEntries([...c.blobs].map(([h, bytes]) => [h, b64(bytes)])) };
      });
    },
  });
  const host = o.host ?? '127.0.0.1';
  const close = async () => {
    await app.close();
    await custodian.dispose();
    await pool.close();
  };
  let url: string;
  try {
    await app.listen({ port: o.port, host });
    const addr = app.server.address();
    url = `http://${host}:${typeof addr === 'object' && addr ? addr.port : o.port}`;
    // A custodian the engine does not know answers no job: if it cannot register, it does not keep its port either.
    await client.post('/v1/provider/custodian', { url });
  } catch (err) {
    await close();
    throw err;
  }
  return { url, close };
}
