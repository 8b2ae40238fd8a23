/**
 * The provider's side (数据提供单位): turns its table into a signed, encrypted upload, reviews and approves models
 * (engine/protocols/score/provider.ts), prepares its training columns (engine/protocols/train/provider.ts), and runs
 * its custodian with every protocol's rules. It holds the BFV and OPRF secret keys and its own records; the engine
 * only ever receives ciphertexts, the subject index, sorted token sets and published field statistics.
 *
 * Encoding: column-wise, one BFV ciphertext per field per block of `slots` subjects, slot i of block b = row
 * b·slots + i of the CSV (docs/design.md §2). Missing cells encode as 0 and are listed in the subject index, so a model
 * can refuse or substitute them. Encryption is symmetric (seeded), half the size of public-key encryption.
 */
import { fail } from '../../core/errors.ts';
import { sha256Hex } from '../../core/hash.ts';
import { toSlot } from '../../core/fixed.ts';
import { signJson, type Signed } from '../../core/sign.ts';
import { validateSchema } from '../../sandbox/catalog.ts';
import type { ProviderPolicy } from '../../sandbox/policy.ts';
import type { ModelSpec } from '../../models/model.ts';
import { heContext, type ParamSet } from '../he/params.ts';
import { generateBfvKeys } from '../he/block.ts';
import { tokenInfo, tokenInput, TOKEN_EPOCH } from '../tokens/oprf.ts';
import { kernelRef } from '../pool/kernel.ts';
import type { WorkerPool } from '../pool/pool.ts';
import { LocalCustodian } from '../custodian/custodian.ts';
import type { CustodianKeys, CustodianView } from '../custodian/messages.ts';
import type { LedgerTrust } from '../custodian/monitor.ts';
import type { UploadManifest } from '../datasets.ts';
import type { ApprovalStatement } from '../models.ts';
import { CUSTODIAN_RULES } from '../protocols/index.ts';
import { approveModel, type ApprovalReview } from '../protocols/score/provider.ts';
import { prepareTrainingColumns, type TrainingPart } from '../protocols/train/provider.ts';
import type { TrainColumns } from '../protocols/train/messages.ts';
import type * as Kernels from './kernels.ts';
import type { ProviderSide } from './side.ts';
import { encodeTable, fieldStats, type ProviderTable } from './table.ts';
import { ProviderTables } from './tables.ts';
import { ProviderRecords } from './records.ts';

const KERNELS = new URL('./kernels.ts', import.meta.url);
export const encryptKernel = kernelRef<typeof Kernels.encrypt>(KERNELS, 'encrypt');
const evaluateKernel = kernelRef<typeof Kernels.evaluate>(KERNELS, 'evaluate');

export interface ProviderUpload {
  manifest: Signed<UploadManifest>;
  blobs: Map<string, Uint8Array>;
  table: ProviderTable;
}

export class ProviderAgent implements ProviderSide {
  readonly id: string;
  readonly params: ParamSet;
  readonly keys: CustodianKeys;
  private readonly pool: WorkerPool;

  constructor(id: string, params: ParamSet, keys: CustodianKeys, pool: WorkerPool) {
    this.id = id;
    this.params = params;
    this.keys = keys;
    this.pool = pool;
  }

  /** New BFV key pair for a provider (its custodian keeps the secret half). */
  static async generateBfvKeys(params: ParamSet): Promise<{ secretKey: Uint8Array; publicKey: Uint8Array }> {
    return generateBfvKeys(await heContext(params));
  }

  /**
   * Validate a CSV completely against the schema, then encode, encrypt and sign it. Nothing is produced unless every
   * row is valid.
   * @throws SH_ERR_SCHEMA_INVALID, SH_ERR_CSV_MALFORMED, SH_ERR_CSV_UNKNOWN_FIELD, SH_ERR_CSV_VALUE,
   *   SH_ERR_USCC_FORMAT, SH_ERR_USCC_CHECK, SH_ERR_CSV_DUPLICATE_SUBJECT (each naming the line and field)
   */
  async prepareUpload(schemaInput: unknown, csvText: string, datasetId: string): Promise<ProviderUpload> {
    const schema = validateSchema(schemaInput);
    const table = encodeTable(schema, csvText, datasetId, this.params.t);
    const slots = this.params.slots;
    const n = table.subjects.length;
    const blocks = Math.ceil(n / slots);
    const numeric = schema.fields.filter((f) => f.type !== 'id');
    const blobs = new Map<string, Uint8Array>();
    const tasks: Array<Promise<UploadManifest['columns'][number]>> = [];
    for (const f of numeric) {
      for (let b = 0; b < blocks; b++) {
        const vec = new BigUint64Array(slots);
        const col = table.values[f.name]!;
        for (let i = b * slots; i < Math.min(n, (b + 1) * slots); i++) {
          const v = col[i];
          if (v !== null && v !== undefined) vec[i - b * slots] = toSlot(BigInt(v), this.params.t);
        }
        tasks.push(
          this.encrypt(vec).then((bytes) => {
            const blob = sha256Hex(bytes);
            blobs.set(blob, bytes);
            return { column: f.name, block: b, blob };
          }),
        );
      }
    }
    const idFields = schema.fields.filter((f) => f.type === 'id');
    if (idFields.length > 0 && !this.keys.oprfSecretKey)
      fail('SH_ERR_INVALID_ARGUMENT', `provider ${this.id} has no OPRF key for token fields`);
    const tokenTasks = idFields.map(async (f) => {
      const tokens = await this.tokensFor(f.name, table.subjects, table.ids[f.name]!);
      const bytes = new Uint8Array(tokens.length * 32);
      tokens.forEach((t, i) => bytes.set(t, i * 32));
      const blob = sha256Hex(bytes);
      blobs.set(blob, bytes);
      return { field: f.name, epoch: TOKEN_EPOCH, count: tokens.length, blob };
    });
    const columns = await this.pool.all(tasks);
    const tokens = await this.pool.all(tokenTasks);
    const missingOf = (i: number) =>
      [
        ...numeric.filter((f) => table.values[f.name]![i] === null).map((f) => f.name),
        ...idFields.filter((f) => table.ids[f.name]![i]!.length === 0).map((f) => f.name),
      ].join(';');
    const index = table.subjects.map((u, i) => [u, Math.floor(i / slots), i % slots, missingOf(i)]);
    const indexBytes = new TextEncoder().encode(JSON.stringify(index));
    const subjectsBlob = sha256Hex(indexBytes);
    blobs.set(subjectsBlob, indexBytes);
    const manifest: UploadManifest = {
      type: 'safehouse.upload.v1',
      provider: this.id,
      category: schema.category,
      datasetId,
      paramsId: this.params.id,
      schema,
      subjectsBlob,
      subjectCount: n,
      blocks,
      columns,
      tokens,
      stats: fieldStats(numeric, table),
      createdAt: new Date().toISOString(),
    };
    return { manifest: signJson(manifest, this.id, this.keys.ed25519SecretKey), blobs, table };
  }

  /**
   * RFC 9497 POPRF tokens of (subject, field, normalized value) under this provider's OPRF key, computed by the key
   * holder itself (non-interactive evaluation), in pool-sized chunks. Returned sorted, so the upload's order says
   * nothing about which subject a token belongs to.
   */
  private async tokensFor(
    field: string,
    subjects: readonly string[],
    values: ReadonlyArray<readonly string[]>,
  ): Promise<Uint8Array[]> {
    const info = tokenInfo(this.id, field, TOKEN_EPOCH);
    const inputs = subjects.flatMap((u, i) => values[i]!.map((v) => tokenInput(u, field, v)));
    const chunks: Array<Promise<Uint8Array[]>> = [];
    for (let i = 0; i < inputs.length; i += 512) {
      chunks.push(
        this.pool.run(evaluateKernel, { secretKey: this.keys.oprfSecretKey!, info, inputs: inputs.slice(i, i + 512) }),
      );
    }
    const out = (await this.pool.all(chunks)).flat();
    return out.sort((a, b) => Buffer.compare(a, b));
  }

  encrypt(values: BigUint64Array): Promise<Uint8Array> {
    return this.pool.run(
      encryptKernel,
      { paramsId: this.params.id, secretKey: this.keys.bfvSecretKey.slice(), values },
      [values.buffer as ArrayBuffer],
    );
  }

  all<T>(tasks: ReadonlyArray<Promise<T>>): Promise<T[]> {
    return this.pool.all(tasks);
  }

  /**
   * Approve a model: review it with this provider's own schema and statistics, derive its scorecard bin columns.
   * @throws SH_ERR_INVALID_ARGUMENT, SH_ERR_MODEL_* (engine/protocols/score/provider.ts)
   */
  approve(
    spec: ModelSpec,
    table: ProviderTable,
    opts: { policy?: ProviderPolicy; group?: string; earlier?: readonly ModelSpec[] } = {},
  ): Promise<{ approval: Signed<ApprovalStatement>; blobs: Map<string, Uint8Array>; review: ApprovalReview }> {
    return approveModel(this, spec, table, opts);
  }

  /** This provider's part of a planned training job (engine/protocols/train/provider.ts). */
  prepareTraining(
    part: TrainingPart,
    table: ProviderTable,
  ): Promise<{ signed: Signed<TrainColumns>; blobs: Map<string, Uint8Array> }> {
    return prepareTrainingColumns(this, part, table);
  }

  /** This provider's custodian, answering only requests signed with `enginePublicKey`, by every protocol's rules. */
  custodian(
    enginePublicKey: Uint8Array,
    opts: {
      logFile?: string;
      observe?: (v: CustodianView) => void;
      /** What the custodian pins: the ledger's checkpoint key and the registrar's key (docs/trust.md). */
      trust?: LedgerTrust;
      /** The folder holding this provider's own tables (`<category>.json`), which its custodian reads. */
      tablesDir?: string;
      /** This provider's limits (sandbox/policy.ts). */
      policy?: Partial<ProviderPolicy>;
      now?: () => Date;
    } = {},
  ): LocalCustodian {
    const { tablesDir, policy, ...rest } = opts;
    return new LocalCustodian({
      provider: this.id,
      params: this.params,
      keys: this.keys,
      rules: CUSTODIAN_RULES,
      enginePublicKey,
      pool: this.pool,
      ...(tablesDir ? { data: new ProviderTables(tablesDir, this.params.t, this.id) } : {}),
      // The provider's own limits: its policy.json (beside its tables) under any explicit overrides.
      policy: tablesDir ? new ProviderRecords(tablesDir).policy(policy) : (policy ?? {}),
      ...rest,
    });
  }
}
