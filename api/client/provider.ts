/**
 * Client mode, the provider's side: its agent with keys from its own key directory, its own tables beside them, the
 * signed upload and the model review and approval (engine/protocols/score/provider.ts), over the engine's API.
 */
import { join } from 'node:path';
import { existsSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { fail } from '../../core/errors.ts';
import { paramSet, type ParamSet } from '../../engine/he/params.ts';
import { ProviderAgent } from '../../engine/provider/agent.ts';
import { type ProviderTable } from '../../engine/provider/table.ts';
import { WorkerPool } from '../../engine/pool/pool.ts';
import { type ModelSpec } from '../../models/model.ts';
import { providerKeys, writeSecret } from '../keys.ts';
import { ProviderRecords } from '../../engine/provider/records.ts';
import type { ApprovalReview } from '../../engine/protocols/score/provider.ts';
import { Client } from './http.ts';

// ---------------------------------------------------------------- provider

/** The provider side: its agent (keys from its directory) and its own tables. */
export class ProviderClient {
  readonly client: Client;
  readonly dir: string;
  private agentInstance: ProviderAgent | undefined;
  private pool: WorkerPool | undefined;
  private params: ParamSet | undefined;

  constructor(server: string, keysDir: string) {
    const k = providerKeys(keysDir);
    this.client = new Client(server, k.party);
    this.dir = keysDir;
  }

  async agent(): Promise<ProviderAgent> {
    if (!this.agentInstance) {
      this.params = paramSet((await this.client.info()).paramsId);
      const k = providerKeys(this.dir);
      this.pool = new WorkerPool({ size: 2 });
      this.agentInstance = new ProviderAgent(
        k.party.id,
        this.params,
        {
          bfvSecretKey: k.bfvSecretKey,
          bfvPublicKey: k.bfvPublicKey,
          ed25519SecretKey: k.party.ed25519.secretKey,
          ed25519PublicKey: k.party.ed25519.publicKey,
          oprfSecretKey: k.oprfSecretKey,
          oprfPublicKey: k.oprfPublicKey,
        },
        this.pool,
      );
    }
    return this.agentInstance;
  }

  async close(): Promise<void> {
    await this.pool?.close();
  }

  async ingest(
    schema: unknown,
    csvText: string,
  ): Promise<{ datasetId: string; subjects: number; blocks: number; version: number; category: string }> {
    const agent = await this.agent();
    const datasetId = `${agent.id}.${(schema as { category?: string })?.category ?? 'x'}.${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
    const up = await agent.prepareUpload(schema, csvText, datasetId);
    await this.client.putBlobs(up.blobs);
    const ds = await this.client.post<{
      datasetId: string;
      subjects: number;
      blocks: number;
      version: number;
      category: string;
    }>('/v1/provider/datasets', { manifest: up.manifest });
    writeSecret(join(this.dir, `${ds.category}.json`), JSON.stringify(up.table));
    return ds;
  }

  table(category: string): ProviderTable {
    const p = join(this.dir, `${category}.json`);
    if (!existsSync(p))
      fail(
        'SH_ERR_MODEL_STALE',
        `provider ${this.client.id} has no local copy of its ${category} dataset in ${this.dir}`,
      );
    return JSON.parse(readFileSync(p, 'utf8')) as ProviderTable;
  }

  async approve(modelId: string): Promise<ApprovalReview> {
    const agent = await this.agent();
    const { spec, bank, hash } = await this.client.get<{ spec: ModelSpec; bank: string; hash: string }>(
      `/v1/provider/models/${encodeURIComponent(modelId)}`,
    );
    const { datasets } = await this.client.get<{ datasets: Array<{ id: string; category: string; fields: string[] }> }>(
      '/v1/provider/datasets',
    );
    const field = spec.terms.find((t) => t.provider === agent.id)!.field;
    const ds = datasets.find((d) => d.fields.includes(field));
    if (!ds) fail('SH_ERR_UNKNOWN_FIELD', `provider ${agent.id} has no dataset with ${field}`);
    const table = this.table(ds.category);
    if (table.datasetId !== ds.id)
      fail(
        'SH_ERR_MODEL_STALE',
        `provider ${agent.id}'s local table is ${table.datasetId}, the engine's current dataset is ${ds.id}`,
      );
    // Reviewed with the provider's own policy and its own record of what it approved for the bank's group (the
    // group from the public registry).
    const records = new ProviderRecords(this.dir);
    const party = await this.client.get<{ group?: string }>(`/v1/parties/${encodeURIComponent(bank)}`);
    const group = party.group ?? bank;
    const { approval, blobs, review } = await agent.approve(spec, table, {
      policy: records.policy(),
      group,
      earlier: records.approvals(group).map((r) => r.model),
    });
    await this.client.putBlobs(blobs);
    await this.client.post('/v1/provider/approvals', { approval });
    records.recordApproval({ modelId, modelHash: hash, bank, group, model: spec });
    return review;
  }
}
