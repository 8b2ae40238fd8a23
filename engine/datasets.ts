/**
 * Datasets (docs/design.md §2): a provider's signed, content-addressed uploads — one BFV ciphertext per numeric field
 * per block of `slots` subjects, the subject index (USCC → block, slot, missing fields), RFC 9497 token sets of id
 * fields and published field statistics — plus the derived and per-job columns built on them. Every upload is
 * validated completely (signature, schema, every blob's hash and size, the subject index) before anything is written;
 * then blobs, rows and its ledger leaf land in one transaction.
 */
import { existsSync } from 'node:fs';
import { fail } from '../core/errors.ts';
import { sha256Hex } from '../core/hash.ts';
import { requireSignature, type Signed } from '../core/sign.ts';
import { validateSchema, type DatasetSchema, type FieldSpec } from '../sandbox/catalog.ts';
import { parseUscc } from '../sandbox/uscc.ts';
import type { Registry } from './registry.ts';
import type { EngineContext } from './context.ts';

export interface UploadManifest {
  type: 'safehouse.upload.v1';
  provider: string;
  category: string;
  datasetId: string;
  paramsId: string;
  schema: DatasetSchema;
  /** Blob of the subject index: JSON [[uscc, block, slot, "field;field" (missing fields)], ...]. */
  subjectsBlob: string;
  subjectCount: number;
  blocks: number;
  columns: Array<{ column: string; block: number; blob: string }>;
  /** RFC 9497 POPRF tokens per id field: a blob of sorted 32-byte outputs (docs/design.md §2, §4.4). */
  tokens: Array<{ field: string; epoch: number; count: number; blob: string }>;
  /** Published field statistics (count of present values, mean and population std in field units, 3 digits). */
  stats: Record<string, { count: number; std: number; mean?: number }>;
  createdAt: string;
}

export interface DatasetRecord {
  id: string;
  provider: string;
  category: string;
  version: number;
  schema: DatasetSchema;
  subjects: number;
  blocks: number;
  stats: UploadManifest['stats'];
}

export interface SubjectSlot {
  block: number;
  slot: number;
  missing: Set<string>;
}

/** Datasets whose subject index is kept in memory (a job reads the current dataset of each provider it uses). */
const SLOT_INDEXES = 8;

export class Datasets {
  private readonly ctx: EngineContext;
  private readonly registry: Registry;

  constructor(ctx: EngineContext, registry: Registry) {
    this.ctx = ctx;
    this.registry = registry;
  }

  /**
   * Accept a provider's signed upload: signature first, then schema (catalog), then every blob's hash and size,
   * then the subject index; only then are blobs and metadata written (one transaction, one ledger leaf).
   * @throws SH_ERR_BAD_SIGNATURE, SH_ERR_SCHEMA_INVALID, SH_ERR_PARAMS_MISMATCH, SH_ERR_CIPHERTEXT_SIZE,
   *   SH_ERR_CIPHERTEXT_INVALID, SH_ERR_USCC_*, SH_ERR_INVALID_ARGUMENT
   */
  acceptUpload(signed: Signed<UploadManifest>, blobs: ReadonlyMap<string, Uint8Array>): DatasetRecord {
    const provider = this.registry.requireParty(signed.signer, 'provider');
    requireSignature(signed, provider.ed25519, 'safehouse.upload.v1', `upload from ${signed.signer}`);
    const m = signed.body;
    if (m.provider !== provider.id)
      fail('SH_ERR_BAD_SIGNATURE', `upload names provider ${m.provider} but is signed by ${provider.id}`);
    if (m.paramsId !== this.ctx.params.id)
      fail('SH_ERR_PARAMS_MISMATCH', `upload uses ${m.paramsId}, engine uses ${this.ctx.params.id}`);
    const schema = validateSchema(m.schema);
    if (schema.category !== m.category)
      fail('SH_ERR_SCHEMA_INVALID', `manifest category ${m.category} differs from schema category ${schema.category}`);
    if (!/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/.test(m.datasetId) || this.get(m.datasetId))
      fail('SH_ERR_ALREADY_EXISTS', `dataset id ${m.datasetId} is invalid or taken`);
    const fetchBlob = (hash: string, what: string, cap?: number): Uint8Array => {
      const b = blobs.get(hash);
      if (!b) fail('SH_ERR_INVALID_ARGUMENT', `${what}: blob ${hash} is not in the upload`);
      if (cap !== undefined && b.length > cap)
        fail('SH_ERR_CIPHERTEXT_SIZE', `${what}: ${b.length} bytes exceeds the cap of ${cap}`, { bytes: b.length });
      if (sha256Hex(b) !== hash) fail('SH_ERR_CIPHERTEXT_INVALID', `${what}: bytes do not hash to ${hash}`);
      return b;
    };
    const index = parseSubjectIndex(fetchBlob(m.subjectsBlob, 'subject index'), this.ctx.params.slots, schema);
    if (index.length !== m.subjectCount)
      fail('SH_ERR_INVALID_ARGUMENT', `subject index holds ${index.length} subjects, manifest says ${m.subjectCount}`);
    const blocks = Math.ceil(index.length / this.ctx.params.slots);
    if (blocks !== m.blocks)
      fail('SH_ERR_INVALID_ARGUMENT', `manifest says ${m.blocks} blocks, subjects need ${blocks}`);
    const numeric = schema.fields.filter((f) => f.type !== 'id');
    const want = new Set(numeric.flatMap((f) => Array.from({ length: blocks }, (_, b) => `${f.name}#${b}`)));
    for (const c of m.columns) {
      if (!want.delete(`${c.column}#${c.block}`))
        fail('SH_ERR_INVALID_ARGUMENT', `column ${c.column} block ${c.block} is not expected or repeated`);
      fetchBlob(c.blob, `column ${c.column} block ${c.block}`, this.ctx.params.maxCiphertextBytes);
    }
    if (want.size > 0) fail('SH_ERR_INVALID_ARGUMENT', `upload lacks columns: ${[...want].slice(0, 5).join(', ')}`);
    const idFields = new Set(schema.fields.filter((f) => f.type === 'id').map((f) => f.name));
    const tokenSets = (m.tokens ?? []).map((tk) => {
      if (!idFields.delete(tk.field))
        fail('SH_ERR_INVALID_ARGUMENT', `token set for ${tk.field} is not an id field of the schema or is repeated`);
      if (!provider.oprfPublicKey) fail('SH_ERR_INVALID_ARGUMENT', `provider ${provider.id} published no OPRF key`);
      const b = fetchBlob(tk.blob, `tokens of ${tk.field}`);
      if (!Number.isInteger(tk.count) || b.length !== tk.count * 32)
        fail('SH_ERR_TOKEN_INVALID', `tokens of ${tk.field}: ${b.length} bytes is not ${tk.count} × 32`);
      return { field: tk.field, bytes: b };
    });
    if (idFields.size > 0) fail('SH_ERR_INVALID_ARGUMENT', `upload lacks token sets for: ${[...idFields].join(', ')}`);

    const written: string[] = [];
    try {
      const accepted = this.ctx.store.transaction(() => {
        for (const hash of [m.subjectsBlob, ...m.columns.map((c) => c.blob), ...(m.tokens ?? []).map((t) => t.blob)]) {
          if (!existsSync(this.ctx.store.blobPath(hash))) written.push(hash);
          this.ctx.store.putBlob(blobs.get(hash)!);
        }
        const prev = this.ctx.store.db
          .prepare('SELECT MAX(version) AS v FROM datasets WHERE provider = ? AND category = ?')
          .get(m.provider, m.category) as { v: number | null };
        const version = (prev.v ?? 0) + 1;
        this.ctx.store.db
          .prepare('UPDATE datasets SET current = 0 WHERE provider = ? AND category = ?')
          .run(m.provider, m.category);
        this.ctx.store.db
          .prepare(
            'INSERT INTO datasets (id, provider, category, version, schema_json, manifest_json, signature, params_id, subjects, blocks, stats_json, created_at, current) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)',
          )
          .run(
            m.datasetId,
            m.provider,
            m.category,
            version,
            JSON.stringify(schema),
            JSON.stringify(m),
            signed.signature,
            m.paramsId,
            index.length,
            blocks,
            JSON.stringify(m.stats),
            this.ctx.now().toISOString(),
          );
        const insS = this.ctx.store.db.prepare(
          'INSERT INTO dataset_subjects (dataset_id, uscc, block, slot, missing) VALUES (?, ?, ?, ?, ?)',
        );
        for (const s of index) insS.run(m.datasetId, s.uscc, s.block, s.slot, s.missing);
        const insC = this.ctx.store.db.prepare(
          'INSERT INTO columns (dataset_id, column_name, block, blob) VALUES (?, ?, ?, ?)',
        );
        for (const c of m.columns) insC.run(m.datasetId, c.column, c.block, c.blob);
        const insT = this.ctx.store.db.prepare(
          'INSERT OR IGNORE INTO tokens (dataset_id, field, token) VALUES (?, ?, ?)',
        );
        for (const tk of tokenSets)
          for (let o = 0; o < tk.bytes.length; o += 32) insT.run(m.datasetId, tk.field, tk.bytes.subarray(o, o + 32));
        this.ctx.ledger.append('dataset.uploaded', {
          provider: m.provider,
          category: m.category,
          datasetId: m.datasetId,
          version,
          manifest: sha256Hex(JSON.stringify(m)),
          signature: signed.signature,
          subjects: index.length,
          blocks,
        });
        return this.get(m.datasetId)!;
      });
      // The first job on the new dataset finds its subject index in memory already.
      this.keepSlotIndex(m.datasetId, this.slotIndexFrom(index));
      return accepted;
    } catch (err) {
      for (const h of written) this.ctx.store.dropBlob(h);
      throw err;
    }
  }

  get(id: string): DatasetRecord | undefined {
    const r = this.ctx.store.db.prepare('SELECT * FROM datasets WHERE id = ?').get(id) as
      Record<string, string | number> | undefined;
    return r ? toDataset(r) : undefined;
  }

  /** The current (latest) dataset of every provider, or of one. */
  current(provider?: string): DatasetRecord[] {
    const rows = (
      provider
        ? this.ctx.store.db
            .prepare('SELECT * FROM datasets WHERE current = 1 AND provider = ? ORDER BY provider, category')
            .all(provider)
        : this.ctx.store.db.prepare('SELECT * FROM datasets WHERE current = 1 ORDER BY provider, category').all()
    ) as Array<Record<string, string | number>>;
    return rows.map(toDataset);
  }

  /** The current dataset of `provider` that declares `field` (one category per dataset). */
  withField(provider: string, field: string): DatasetRecord | undefined {
    return this.current(provider).find((d) => d.schema.fields.some((f) => f.name === field));
  }

  fieldLookup = (provider: string, field: string): (FieldSpec & { std?: number }) | undefined => {
    const d = this.withField(provider, field);
    const f = d?.schema.fields.find((x) => x.name === field);
    if (!d || !f) return undefined;
    const std = d.stats[field]?.std;
    return std === undefined ? f : { ...f, std };
  };

  /**
   * Each listed subject's slot in a dataset (subjects it does not hold are left out), in the order of `usccs`. A
   * dataset's subject index never changes once accepted, so it is read once into memory (the last few datasets used).
   */
  subjectSlots(datasetId: string, usccs: readonly string[]): Map<string, SubjectSlot> {
    const all = this.slotIndex(datasetId);
    const out = new Map<string, SubjectSlot>();
    for (const u of usccs) {
      const sl = all.get(u);
      if (sl) out.set(u, sl);
    }
    return out;
  }

  private readonly slotIndexes = new Map<string, Map<string, SubjectSlot>>();

  /** Read the subject index of every current dataset into memory now rather than in the next job. */
  warm(): void {
    for (const d of this.current().slice(0, SLOT_INDEXES)) this.slotIndex(d.id);
  }

  private slotIndex(datasetId: string): Map<string, SubjectSlot> {
    const m = this.slotIndexes.get(datasetId);
    if (m) {
      this.slotIndexes.delete(datasetId); // most recently used last
      this.slotIndexes.set(datasetId, m);
      return m;
    }
    const rows = this.ctx.store
      .stmt('SELECT uscc, block, slot, missing FROM dataset_subjects WHERE dataset_id = ?')
      .all(datasetId) as Array<{ uscc: string; block: number; slot: number; missing: string }>;
    const read = this.slotIndexFrom(rows);
    // An unknown dataset is not kept (it may be accepted later under that id).
    if (read.size > 0) this.keepSlotIndex(datasetId, read);
    return read;
  }

  private slotIndexFrom(
    rows: Iterable<{ uscc: string; block: number; slot: number; missing: string }>,
  ): Map<string, SubjectSlot> {
    const none = new Set<string>();
    const m = new Map<string, SubjectSlot>();
    for (const r of rows)
      m.set(r.uscc, { block: r.block, slot: r.slot, missing: r.missing ? new Set(r.missing.split(';')) : none });
    return m;
  }

  private keepSlotIndex(datasetId: string, m: Map<string, SubjectSlot>): void {
    this.slotIndexes.set(datasetId, m);
    while (this.slotIndexes.size > SLOT_INDEXES) this.slotIndexes.delete(this.slotIndexes.keys().next().value!);
  }

  /** Whether a finalized token is in a dataset's token set for a field. */
  hasToken(datasetId: string, field: string, token: Uint8Array): boolean {
    return (
      this.ctx.store
        .stmt('SELECT 1 FROM tokens WHERE dataset_id = ? AND field = ? AND token = ?')
        .get(datasetId, field, token) !== undefined
    );
  }

  columnBlob(datasetId: string, column: string, block: number): string | undefined {
    const r = this.ctx.store
      .stmt('SELECT blob FROM columns WHERE dataset_id = ? AND column_name = ? AND block = ?')
      .get(datasetId, column, block) as { blob: string } | undefined;
    return r?.blob;
  }

  /**
   * Store columns derived from or built for a dataset (scorecard bin indicators at approval, a training job's inputs)
   * — blobs already hash-checked by the caller, who runs this inside its own transaction with its ledger leaf.
   */
  putColumns(
    datasetId: string,
    columns: ReadonlyArray<{ column: string; block: number; blob: string; bytes: Uint8Array }>,
    opts: { replace?: boolean } = {},
  ): void {
    const { store } = this.ctx;
    const ins = store.stmt(
      opts.replace
        ? 'INSERT OR REPLACE INTO columns (dataset_id, column_name, block, blob) VALUES (?, ?, ?, ?)'
        : 'INSERT INTO columns (dataset_id, column_name, block, blob) VALUES (?, ?, ?, ?)',
    );
    for (const c of columns) {
      store.putBlob(c.bytes);
      ins.run(datasetId, c.column, c.block, c.blob);
    }
  }
}

function toDataset(r: Record<string, string | number>): DatasetRecord {
  return {
    id: r.id as string,
    provider: r.provider as string,
    category: r.category as string,
    version: r.version as number,
    schema: JSON.parse(r.schema_json as string) as DatasetSchema,
    subjects: r.subjects as number,
    blocks: r.blocks as number,
    stats: JSON.parse(r.stats_json as string) as UploadManifest['stats'],
  };
}

function parseSubjectIndex(
  bytes: Uint8Array,
  slots: number,
  schema: DatasetSchema,
): Array<{ uscc: string; block: number; slot: number; missing: string }> {
  let rows: unknown;
  try {
    rows = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    return fail('SH_ERR_INVALID_ARGUMENT', 'subject index is not valid JSON', {}, err);
  }
  if (!Array.isArray(rows)) fail('SH_ERR_INVALID_ARGUMENT', 'subject index expected an array');
  const names = new Set(schema.fields.map((f) => f.name));
  const seen = new Set<string>();
  return rows.map((r: unknown, i: number) => {
    if (!Array.isArray(r) || r.length !== 4)
      fail('SH_ERR_INVALID_ARGUMENT', `subject index row ${i} expected [uscc, block, slot, missing]`);
    const [u, block, slot, missing] = r as [string, number, number, string];
    const uscc = parseUscc(u);
    if (seen.has(uscc)) fail('SH_ERR_CSV_DUPLICATE_SUBJECT', `subject ${uscc} appears twice in the index`);
    seen.add(uscc);
    if (block !== Math.floor(i / slots) || slot !== i % slots)
      fail(
        'SH_ERR_INVALID_ARGUMENT',
        `subject index row ${i} has position (${block}, ${slot}), expected (${Math.floor(i / slots)}, ${i % slots})`,
      );
    if (typeof missing !== 'string' || (missing && missing.split(';').some((f) => !names.has(f))))
      fail('SH_ERR_INVALID_ARGUMENT', `subject index row ${i} names unknown missing fields`);
    return { uscc, block, slot, missing };
  });
}
