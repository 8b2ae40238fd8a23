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
import { providerKeys } from './keys.ts';

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
  poolSize?: number;
  /** The provider's limits (sandbox/policy.ts ProviderPolicy); defaults when absent. */
  policy?: Partial<ProviderPolicy>;
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
  const bankKeys = new Map<string, Uint8Array>();
  const bankGroups = new Map<string, string>();
  const custodian = agent.custodian(enginePk, {
    logFile: join(o.keysDir, 'custodian.log'),
    tablesDir: o.keysDir,
    bankKey: (b) => bankKeys.get(b),
    bankGroup: (b) => bankGroups.get(b),
    ...(o.policy ? { policy: o.policy } : {}),
  });
  const resolveBank = async (bank: string) => {
    if (bankKeys.has(bank) || !/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/.test(bank)) return;
    try {
      const p = await client.get<{ role: string; ed25519: string; group?: string }>(
        `/v1/parties/${encodeURIComponent(bank)}`,
      );
      if (p.role === 'bank') {
        bankKeys.set(bank, hexToBytes(p.ed25519));
        bankGroups.set(bank, p.group ?? bank);
      }
    } catch {
      // unknown party: openJob then refuses with SH_ERR_BAD_SIGNATURE
    }
  };
  const tableOf = (datasetId: string): ProviderTable => {
    for (const f of readdirSync(o.keysDir)) {
      if (!f.endsWith('.json') || f === 'key.json' || f === 'public.json') continue;
      const t = JSON.parse(readFileSync(join(o.keysDir, f), 'utf8')) as ProviderTable;
      if (t.datasetId === datasetId) return t;
    }
    return fail('SH_ERR_MODEL_STALE', `provider ${id} has no local copy of dataset ${datasetId}`);
  };
  const app = buildCustodianServer(custodian, enginePk, {
    resolveBank,
    extend: (server, authed) => {
      server.post('/v1/custodian/training', async (req) => {
        const b = authed<{ part: TrainingPart; request: Signed<TrainRequest> }>(req);
        await resolveBank(b.request?.signer);
        await custodian.openJob(b.request);
        const part = b.part;
        checkTrainingPart(id, b.request, part);
        const c = await agent.prepareTraining(part, tableOf(part.datasetId));
        return { signed: c.signed, blobs: Object.fromEntries([...c.blobs].map(([h, bytes]) => [h, b64(bytes)])) };
      });
    },
  });
  const host = o.host ?? '127.0.0.1';
  await app.listen({ port: o.port, host });
  const addr = app.server.address();
  const url = `http://${host}:${typeof addr === 'object' && addr ? addr.port : o.port}`;
  await client.post('/v1/provider/custodian', { url });
  return {
    url,
    close: async () => {
      await app.close();
      await custodian.dispose();
      await pool.close();
    },
  };
}
