/**
 * The provider's side (数据提供单位): turns its table into a signed, encrypted upload, derives the bin-indicator
 * columns of scorecards it approves, and runs its custodian. It holds the BFV secret key and its own records; the
 * engine only ever receives ciphertexts, the subject index and published field statistics.
 *
 * Encoding: column-wise, one BFV ciphertext per field per block of `slots` subjects, slot i of block b = row
 * b·slots + i of the CSV (DESIGN §2). Missing cells encode as 0 and are listed in the subject index, so a model can
 * refuse or substitute them. Encryption is symmetric (seeded), half the size of public-key encryption (DESIGN §3).
 */
import { fail, isCoded } from '../../core/errors.ts';
import { sha256Hex } from '../../core/hash.ts';
import { canonicalize } from '../../core/jcs.ts';
import { toSlot } from '../../core/fixed.ts';
import { heContext, type ParamSet } from '../he/params.ts';
import { generateBfvKeys } from '../he/block.ts';
import { WorkerPool } from '../pool/pool.ts';
import { signJson, type Signed } from '../../core/sign.ts';
import { LocalCustodian, type CustodianKeys, type CustodianView } from './custodian.ts';
import { normalizeId, idRuleFor } from '../tokens/normalize.ts';
import { tokenInfo, tokenInput } from '../tokens/oprf.ts';
import { parseCsv } from '../../core/csv.ts';
import { validateSchema, type DatasetSchema, type FieldSpec } from '../../sandbox/catalog.ts';
import { parseUscc } from '../../sandbox/uscc.ts';
import { encodeValue } from '../../sandbox/values.ts';
import { modelHash, isScorecardTerm, binColumn, binIndex, compileModel, type ModelSpec } from '../../models/model.ts';
import { vetModel } from '../../sandbox/vetting.ts';
import { DEFAULT_POLICY, type Policy } from '../../sandbox/policy.ts';
import type { UploadManifest } from '../datasets.ts';
import type { ApprovalStatement } from '../models.ts';
import type { TrainColumns } from '../protocols/train.ts';
import { quantileBins, binOf, standardizedValue, type BinSpec } from '../../models/train.ts';

/** The provider's own encoded table (its system of record), kept on the provider's side. */
export interface ProviderTable {
  datasetId: string;
  category: string;
  schema: DatasetSchema;
  subjects: string[];
  /** field → fixed-point values as decimal strings, null = missing. */
  values: Record<string, Array<string | null>>;
  /** id field → normalized values per subject (a cell may list several, separated by ';'); [] = missing. */
  ids: Record<string, string[][]>;
}

/** Token key epoch: tokens are computed under POPRF info (provider, field, epoch); rotation bumps it. */
export const TOKEN_EPOCH = 1;

export interface ProviderUpload {
  manifest: Signed<UploadManifest>;
  blobs: Map<string, Uint8Array>;
  table: ProviderTable;
}

export class ProviderAgent {
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
        tasks.push(this.encrypt(vec).then((bytes) => {
          const blob = sha256Hex(bytes);
          blobs.set(blob, bytes);
          return { column: f.name, block: b, blob };
        }));
      }
    }
    const idFields = schema.fields.filter((f) => f.type === 'id');
    if (idFields.length > 0 && !this.keys.oprfSecretKey) fail('SH_ERR_INVALID_ARGUMENT', `provider ${this.id} has no OPRF key for token fields`);
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
    const missingOf = (i: number) => [
      ...numeric.filter((f) => table.values[f.name]![i] === null).map((f) => f.name),
      ...idFields.filter((f) => table.ids[f.name]![i]!.length === 0).map((f) => f.name),
    ].join(';');
    const index = table.subjects.map((u, i) => [u, Math.floor(i / slots), i % slots, missingOf(i)]);
    const indexBytes = new TextEncoder().encode(JSON.stringify(index));
    const subjectsBlob = sha256Hex(indexBytes);
    blobs.set(subjectsBlob, indexBytes);
    const manifest: UploadManifest = {
      type: 'safehouse.upload.v1', provider: this.id, category: schema.category, datasetId, paramsId: this.params.id,
      schema, subjectsBlob, subjectCount: n, blocks, columns, tokens, stats: fieldStats(numeric, table), createdAt: new Date().toISOString(),
    };
    return { manifest: signJson(manifest, this.id, this.keys.ed25519SecretKey), blobs, table };
  }

  /**
   * RFC 9497 POPRF tokens of (subject, field, normalized value) under this provider's OPRF key, computed by the key
   * holder itself (non-interactive evaluation), in pool-sized chunks. Returned sorted, so the upload's order says
   * nothing about which subject a token belongs to.
   */
  private async tokensFor(field: string, subjects: readonly string[], values: ReadonlyArray<readonly string[]>): Promise<Uint8Array[]> {
    const info = tokenInfo(this.id, field, TOKEN_EPOCH);
    const inputs = subjects.flatMap((u, i) => values[i]!.map((v) => tokenInput(u, field, v)));
    const chunks: Array<Promise<Uint8Array[]>> = [];
    for (let i = 0; i < inputs.length; i += 512) {
      chunks.push(this.pool.run<Uint8Array[]>({ op: 'oprf', fn: 'evaluate', secretKey: this.keys.oprfSecretKey!, info, inputs: inputs.slice(i, i + 512) }));
    }
    const out = (await this.pool.all(chunks)).flat();
    return out.sort((a, b) => Buffer.compare(a, b));
  }

  private encrypt(values: BigUint64Array): Promise<Uint8Array> {
    return this.pool.run<Uint8Array>({ op: 'encrypt', paramsId: this.params.id, secretKey: this.keys.bfvSecretKey.slice(), values }, [values.buffer as ArrayBuffer]);
  }

  /**
   * Approve a model: the provider recomputes its hash (so it signs exactly what it reviewed) and, for each of its
   * scorecard terms, derives one indicator column per bin from its own records, encrypted like any other column.
   * @throws SH_ERR_INVALID_ARGUMENT when the model does not use this provider or the table lacks a field.
   */
  async approve(spec: ModelSpec, table: ProviderTable, policy: Policy = DEFAULT_POLICY): Promise<{ approval: Signed<ApprovalStatement>; blobs: Map<string, Uint8Array> }> {
    const hash = modelHash(spec);
    if (!spec.terms.some((t) => t.provider === this.id)) fail('SH_ERR_INVALID_ARGUMENT', `model ${spec.id} does not use provider ${this.id}`);
    // The provider's own review, independent of the engine's: its terms must compile against its own schema and pass
    // the anti-extraction rules with its own (unrounded) statistics.
    const mine: ModelSpec = { ...spec, intercept: '0', terms: spec.terms.filter((t) => t.provider === this.id) };
    const stats = fieldStats(table.schema.fields.filter((f) => f.type !== 'id'), table);
    const own = (provider: string, name: string) => {
      const f = provider === this.id ? table.schema.fields.find((x) => x.name === name) : undefined;
      return f && stats[name] ? { ...f, std: stats[name].std } : f;
    };
    vetModel(compileModel(mine, own, this.params.t), policy);
    const slots = this.params.slots;
    const n = table.subjects.length;
    const blocks = Math.ceil(n / slots);
    const blobs = new Map<string, Uint8Array>();
    const tasks: Array<Promise<ApprovalStatement['derived'][number]>> = [];
    spec.terms.forEach((term, i) => {
      if (term.provider !== this.id || !isScorecardTerm(term)) return;
      const f = table.schema.fields.find((x) => x.name === term.field);
      const col = table.values[term.field];
      if (!f || !col) fail('SH_ERR_INVALID_ARGUMENT', `provider ${this.id}'s dataset ${table.datasetId} has no field ${term.field}`);
      const bins = col.map((v) => (v === null ? -1 : binIndex(term.bins, BigInt(v), f.decimals)));
      term.bins.forEach((_, j) => {
        for (let b = 0; b < blocks; b++) {
          const vec = new BigUint64Array(slots);
          for (let s = b * slots; s < Math.min(n, (b + 1) * slots); s++) if (bins[s] === j) vec[s - b * slots] = 1n;
          const column = binColumn(hash, i, j);
          tasks.push(this.encrypt(vec).then((bytes) => {
            const blob = sha256Hex(bytes);
            blobs.set(blob, bytes);
            return { column, block: b, blob };
          }));
        }
      });
    });
    const derived = await this.pool.all(tasks);
    const body: ApprovalStatement = { type: 'safehouse.approval.v1', provider: this.id, modelId: spec.id, modelHash: hash, datasetId: table.datasetId, derived, approvedAt: new Date().toISOString() };
    return { approval: signJson(body, this.id, this.keys.ed25519SecretKey), blobs };
  }

  /**
   * Joint training (DESIGN §5), the provider's part: bin each field from its own cohort records and encrypt one-hot
   * 0/1 columns for the cohort only (column i = bin i, fields in order), zeros at every other slot. The bin edges are
   * aggregates and are signed into the statement; no row leaves.
   * @throws SH_ERR_PARAMS_MISMATCH when the engine's slot map disagrees with this provider's own layout.
   */
  async prepareTraining(plan: { jobId: string; datasetId: string; fields: readonly string[]; bins: number; features?: 'binned' | 'standardized'; cohort: ReadonlyArray<{ uscc: string; block: number; slot: number }> }, table: ProviderTable): Promise<{ signed: Signed<TrainColumns>; blobs: Map<string, Uint8Array> }> {
    if (table.datasetId !== plan.datasetId) fail('SH_ERR_MODEL_STALE', `provider ${this.id}'s table is ${table.datasetId}, the job uses ${plan.datasetId}`);
    const slots = this.params.slots;
    const row = new Map(table.subjects.map((u, i) => [u, i]));
    for (const c of plan.cohort) {
      if (row.get(c.uscc) !== c.block * slots + c.slot) fail('SH_ERR_PARAMS_MISMATCH', `subject ${c.uscc} is not at block ${c.block} slot ${c.slot} of ${this.id}'s dataset`);
    }
    const standardized = plan.features === 'standardized';
    // Standardization uses this provider's published statistics (the same numbers the engine holds), not the cohort's.
    const published = standardized ? fieldStats(table.schema.fields.filter((f) => f.type !== 'id'), table) : {};
    const bins: BinSpec[] = plan.fields.map((name) => {
      const f = table.schema.fields.find((x) => x.name === name);
      const col = table.values[name];
      if (!f || !col) fail('SH_ERR_UNKNOWN_FIELD', `provider ${this.id}'s dataset has no numeric field ${name}`, { field: name });
      if (standardized) return { provider: this.id, field: name, decimals: f.decimals, bins: [{ lo: null, hi: null }], standardize: { mean: published[name]!.mean, std: published[name]!.std } };
      const values = plan.cohort.map((c) => { const v = col[row.get(c.uscc)!]; return v === null || v === undefined ? null : BigInt(v); });
      return { provider: this.id, field: name, decimals: f.decimals, bins: quantileBins(f, values, plan.bins) };
    });
    const blocks = [...new Set(plan.cohort.map((c) => c.block))].sort((a, b) => a - b);
    const blobs = new Map<string, Uint8Array>();
    const tasks: Array<Promise<TrainColumns['columns'][number]>> = [];
    let index = 0;
    for (const spec of bins) {
      const col = table.values[spec.field]!;
      const raw = plan.cohort.map((c) => { const v = col[row.get(c.uscc)!]; return v === null || v === undefined ? null : BigInt(v); });
      const which = raw.map((v) => binOf(spec.bins, v, spec.decimals));
      const std = spec.standardize;
      spec.bins.forEach((_, j) => {
        const i = index++;
        for (const block of blocks) {
          const vec = new BigUint64Array(slots);
          plan.cohort.forEach((c, k) => {
            if (c.block !== block) return;
            if (std) vec[c.slot] = toSlot(BigInt(standardizedValue(raw[k]!, spec.decimals, std.mean, std.std)), this.params.t);
            else if (which[k] === j) vec[c.slot] = 1n;
          });
          tasks.push(this.encrypt(vec).then((bytes) => {
            const blob = sha256Hex(bytes);
            blobs.set(blob, bytes);
            return { index: i, block, blob };
          }));
        }
      });
    }
    const columns = await this.pool.all(tasks);
    const body: TrainColumns = { type: 'safehouse.train.columns.v1', jobId: plan.jobId, provider: this.id, datasetId: plan.datasetId, bins, columns };
    return { signed: signJson(body, this.id, this.keys.ed25519SecretKey), blobs };
  }

  /** This provider's custodian, answering only requests signed with `enginePublicKey`. */
  custodian(enginePublicKey: Uint8Array, opts: { logFile?: string; observe?: (v: CustodianView) => void; bankKey?: (bank: string) => Uint8Array | undefined } = {}): LocalCustodian {
    return new LocalCustodian({ provider: this.id, params: this.params, keys: this.keys, enginePublicKey, pool: this.pool, ...opts });
  }
}

/**
 * Parse and validate a provider CSV (`uscc,<field>...`) into fixed-point values.
 * @throws coded CSV/USCC errors naming the line and field; nothing is returned unless every row is valid.
 */
export function encodeTable(schema: DatasetSchema, csvText: string, datasetId: string, t: bigint): ProviderTable {
  const csv = parseCsv(csvText, { requiredHeader: ['uscc'] });
  if (csv.header[0] !== 'uscc') fail('SH_ERR_CSV_MALFORMED', `"header" expected uscc as the first column, got ${JSON.stringify(csv.header[0])}`, { line: 1 });
  const byName = new Map(schema.fields.map((f) => [f.name, f]));
  const cols = csv.header.slice(1).map((h) => {
    const f = byName.get(h);
    if (!f) fail('SH_ERR_CSV_UNKNOWN_FIELD', `column ${JSON.stringify(h)} is not a field of the ${schema.category} schema`, { line: 1, field: h });
    return f;
  });
  const numeric = schema.fields.filter((f) => f.type !== 'id');
  for (const f of numeric) if (!csv.header.includes(f.name)) fail('SH_ERR_CSV_MALFORMED', `schema field ${f.name} has no column in the CSV`, { line: 1, field: f.name });
  const half = (t - 1n) / 2n;
  const subjects: string[] = [];
  const seen = new Set<string>();
  const values: Record<string, Array<string | null>> = Object.fromEntries(numeric.map((f) => [f.name, [] as Array<string | null>]));
  const ids: Record<string, string[][]> = Object.fromEntries(schema.fields.filter((f) => f.type === 'id').map((f) => [f.name, [] as string[][]]));
  csv.rows.forEach((row, r) => {
    const line = csv.lines[r]!;
    let uscc: string;
    try {
      uscc = parseUscc(row[0]!);
    } catch (err) {
      const e = err as { code: 'SH_ERR_USCC_FORMAT'; message: string };
      return fail(e.code, `line ${line}: ${e.message}`, { line, field: 'uscc' }, err);
    }
    if (seen.has(uscc)) fail('SH_ERR_CSV_DUPLICATE_SUBJECT', `line ${line}: subject ${uscc} appears twice`, { line });
    seen.add(uscc);
    subjects.push(uscc);
    cols.forEach((f, c) => {
      if (f.type === 'id') {
        ids[f.name]!.push(parseIdCell(f.name, row[c + 1]!, line));
        return;
      }
      const v = encodeValue(f, row[c + 1]!, line);
      if (v !== null && (v > half || -v > half)) fail('SH_ERR_CSV_VALUE', `line ${line}: "${f.name}" does not fit the plain modulus`, { line, field: f.name });
      values[f.name]!.push(v === null ? null : v.toString());
    });
  });
  for (const f of schema.fields) if (f.type === 'id' && !cols.includes(f)) ids[f.name] = subjects.map(() => []);
  return { datasetId, category: schema.category, schema, subjects, values, ids };
}

/** An id cell: one value, or several separated by ';', each normalized by its field's rule; '' = none. */
function parseIdCell(field: string, cell: string, line: number): string[] {
  if (cell.trim() === '') return [];
  const out = new Set<string>();
  for (const part of cell.split(';')) {
    try {
      out.add(normalizeId(idRuleFor(field), part));
    } catch (err) {
      if (isCoded(err)) fail('SH_ERR_CSV_VALUE', `line ${line}: "${field}" ${err.message}`, { line, field }, err);
      throw err;
    }
  }
  return [...out];
}

/** Published statistics: count, mean and population std (field units), the last two rounded to 3 significant digits. */
function fieldStats(fields: readonly FieldSpec[], table: ProviderTable): Record<string, { count: number; std: number; mean: number }> {
  const out: Record<string, { count: number; std: number; mean: number }> = {};
  for (const f of fields) {
    const xs = table.values[f.name]!.filter((v): v is string => v !== null).map((v) => Number(v) / 10 ** f.decimals);
    const mean = xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
    const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, xs.length));
    out[f.name] = { count: xs.length, std: Number(sd.toPrecision(3)), mean: Number(mean.toPrecision(3)) };
  }
  return out;
}

export function tableHash(table: ProviderTable): string {
  return sha256Hex(canonicalize(table));
}
