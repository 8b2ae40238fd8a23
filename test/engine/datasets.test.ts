/**
 * Provider ingest (docs/design.md §2, §7): a CSV is validated completely before anything is encrypted, and an upload is
 * checked completely (signature, schema, every blob's hash and size, the subject index) before anything is written.
 * Every refusal carries its code (row errors name the line and field) and leaves no dataset, subject, column, blob
 * file or ledger entry behind. A valid re-ingest creates the next version and retires the previous one.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Safehouse } from '../../api/embedded.ts';
import { ProviderAgent, type ProviderUpload } from '../../engine/provider/agent.ts';
import { WorkerPool } from '../../engine/pool/pool.ts';
import { signJson, type Signed } from '../../core/sign.ts';
import { sha256Hex } from '../../core/hash.ts';
import type { UploadManifest } from '../../engine/datasets.ts';
import { buildCsv, coded, distinctUsccs, randomCell, seededRng, storeCounts } from '../fixtures/protocol.ts';
import { validateSchema } from '../../sandbox/catalog.ts';

const TAXI = 'tax_i';
const UTILI = 'util_i';
const PROPI = 'prop_i';
const TAX_SCHEMA = {
  category: 'tax',
  fields: [
    { name: 'months_continuous_tax' },
    { name: 'tax_penalties_3y' },
    { name: 'vat_paid_12m' },
    { name: 'tax_credit_grade' },
    { name: 'tax_arrears' },
  ],
};
const TAX_FIELDS = validateSchema(TAX_SCHEMA).fields;
const NAMES = TAX_FIELDS.map((f) => f.name);

const rng = seededRng(424242);
const SUBJECTS = distinctUsccs(10, rng);
const rows = () =>
  SUBJECTS.map((u) => ({ uscc: u, cells: Object.fromEntries(TAX_FIELDS.map((f) => [f.name, randomCell(f, rng)])) }));
const GOOD = buildCsv(NAMES, rows());
const lines = GOOD.trimEnd().split(/\r?\n/);
/** GOOD with data row `i` (0-based; file line i + 2) replaced. */
const withRow = (i: number, row: string) => [...lines.slice(0, i + 1), row, ...lines.slice(i + 2)].join('\n') + '\n';
const cellsOf = (i: number) => lines[i + 1]!.split(',');
const withCell = (i: number, field: string, value: string) => {
  const c = cellsOf(i);
  c[NAMES.indexOf(field) + 1] = value;
  return withRow(i, c.join(','));
};

let home: string;
let sh: Safehouse;
let pool: WorkerPool;
let agent: ProviderAgent;

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'sh-test-'));
  sh = await Safehouse.open({ home, create: true, poolSize: 2 });
  for (const p of [TAXI, UTILI, PROPI]) await sh.addParty('provider', p);
  // The provider's own agent, to build uploads the engine must refuse (as a network peer could send them).
  const dir = sh.wallet.providerDir(TAXI);
  const k = sh.wallet.require(TAXI, 'provider');
  pool = new WorkerPool({ size: 1 });
  agent = new ProviderAgent(
    TAXI,
    sh.engine.params,
    {
      bfvSecretKey: sh.wallet.readSecret(join(dir, 'bfv.sk'))!,
      bfvPublicKey: sh.wallet.readSecret(join(dir, 'bfv.pk'))!,
      ed25519SecretKey: k.ed25519.secretKey,
      ed25519PublicKey: k.ed25519.publicKey,
    },
    pool,
  );
});

afterAll(async () => {
  await pool?.close();
  await sh?.close();
  if (home) rmSync(home, { recursive: true, force: true });
});

/** `act` is refused with `code` (and `details`) and nothing the engine or the provider's wallet stores changes. */
async function refusedIngest(act: () => Promise<unknown>, code: string, details?: Record<string, unknown>) {
  const before = storeCounts(sh);
  const table = existsSync(join(sh.wallet.providerDir(TAXI), 'tax.json'));
  await expect(act()).rejects.toMatchObject({ ...coded(code), ...(details ? { details } : {}) });
  expect(storeCounts(sh)).toEqual(before);
  expect(existsSync(join(sh.wallet.providerDir(TAXI), 'tax.json'))).toBe(table);
}
const ingestTax =
  (csv: string, schema: unknown = TAX_SCHEMA) =>
  () =>
    sh.ingest(TAXI, schema, csv);

describe('ingest: bad CSV rows are refused with coded errors, nothing stored', () => {
  it('USCC check characters (GB 32100 position 18, GB 11714 position 17) → SH_ERR_USCC_CHECK', async () => {
    const u = SUBJECTS[7]!;
    const wrong18 = u.slice(0, 17) + (u[17] === '0' ? '1' : '0');
    await refusedIngest(ingestTax(withRow(7, [wrong18, ...cellsOf(7).slice(1)].join(','))), 'SH_ERR_USCC_CHECK', {
      line: 9,
      field: 'uscc',
    });
    const wrong17 = u.slice(0, 16) + (u[16] === '0' ? '1' : '0') + u[17];
    await refusedIngest(ingestTax(withRow(7, [wrong17, ...cellsOf(7).slice(1)].join(','))), 'SH_ERR_USCC_CHECK', {
      line: 9,
    });
  });

  it('USCC format (length, alphabet, division digits) → SH_ERR_USCC_FORMAT', async () => {
    const u = SUBJECTS[8]!;
    for (const bad of [
      u.slice(0, 17),
      `${u}0`,
      `${u.slice(0, 10)}I${u.slice(11)}`,
      `${u.slice(0, 3)}A${u.slice(4)}`,
      '',
    ]) {
      await refusedIngest(ingestTax(withRow(8, [bad, ...cellsOf(8).slice(1)].join(','))), 'SH_ERR_USCC_FORMAT', {
        line: 10,
        field: 'uscc',
      });
    }
  });

  it('a value outside the field bounds, with too many decimals, or of the wrong type → SH_ERR_CSV_VALUE naming line and field', async () => {
    await refusedIngest(ingestTax(withCell(6, 'months_continuous_tax', '121')), 'SH_ERR_CSV_VALUE', {
      field: 'months_continuous_tax',
      line: 8,
    });
    await expect(ingestTax(withCell(6, 'months_continuous_tax', '121'))()).rejects.toThrow(/\(line 8\)/);
    await refusedIngest(ingestTax(withCell(6, 'vat_paid_12m', '-0.01')), 'SH_ERR_CSV_VALUE', { field: 'vat_paid_12m' });
    await refusedIngest(ingestTax(withCell(6, 'vat_paid_12m', '1000000.01')), 'SH_ERR_CSV_VALUE', {
      field: 'vat_paid_12m',
    });
    await refusedIngest(ingestTax(withCell(6, 'vat_paid_12m', '12.345')), 'SH_ERR_CSV_VALUE', {
      field: 'vat_paid_12m',
      line: 8,
    });
    await refusedIngest(ingestTax(withCell(6, 'months_continuous_tax', '12.5')), 'SH_ERR_CSV_VALUE', {
      field: 'months_continuous_tax',
    });
    await refusedIngest(ingestTax(withCell(6, 'months_continuous_tax', '1e2')), 'SH_ERR_CSV_VALUE');
    await refusedIngest(ingestTax(withCell(6, 'tax_arrears', 'yes')), 'SH_ERR_CSV_VALUE', {
      field: 'tax_arrears',
      line: 8,
    });
    await refusedIngest(ingestTax(withCell(6, 'tax_credit_grade', 'Z')), 'SH_ERR_CSV_VALUE', {
      field: 'tax_credit_grade',
    });
    // Narrowed schema bounds are the field's bounds.
    const narrow = {
      ...TAX_SCHEMA,
      fields: TAX_SCHEMA.fields.map((f) => (f.name === 'tax_penalties_3y' ? { ...f, max: '5' } : f)),
    };
    await refusedIngest(ingestTax(withCell(6, 'tax_penalties_3y', '6'), narrow), 'SH_ERR_CSV_VALUE', {
      field: 'tax_penalties_3y',
    });
  });

  it('a column the schema does not declare → SH_ERR_CSV_UNKNOWN_FIELD', async () => {
    const csv = buildCsv(
      [...NAMES, 'favorite_color'],
      rows().map((r) => ({ ...r, cells: { ...r.cells, favorite_color: '1' } })),
    );
    await refusedIngest(ingestTax(csv), 'SH_ERR_CSV_UNKNOWN_FIELD', { line: 1, field: 'favorite_color' });
    // A catalog field of the same category that this schema does not declare is just as unknown.
    const csv2 = buildCsv(
      [...NAMES, 'cit_paid_12m'],
      rows().map((r) => ({ ...r, cells: { ...r.cells, cit_paid_12m: '1' } })),
    );
    await refusedIngest(ingestTax(csv2), 'SH_ERR_CSV_UNKNOWN_FIELD', { field: 'cit_paid_12m' });
  });

  it('a subject twice (also in another spelling of the same USCC) → SH_ERR_CSV_DUPLICATE_SUBJECT', async () => {
    await refusedIngest(
      ingestTax(withRow(5, [SUBJECTS[1]!, ...cellsOf(5).slice(1)].join(','))),
      'SH_ERR_CSV_DUPLICATE_SUBJECT',
      { line: 7 },
    );
    await refusedIngest(
      ingestTax(withRow(5, [` ${SUBJECTS[1]!.toLowerCase()} `, ...cellsOf(5).slice(1)].join(','))),
      'SH_ERR_CSV_DUPLICATE_SUBJECT',
      { line: 7 },
    );
  });

  it('malformed CSV (unterminated quote, column count, missing schema column, header) → SH_ERR_CSV_MALFORMED', async () => {
    await refusedIngest(ingestTax(withCell(4, 'tax_credit_grade', '"A')), 'SH_ERR_CSV_MALFORMED');
    await refusedIngest(ingestTax(withRow(4, cellsOf(4).slice(0, -1).join(','))), 'SH_ERR_CSV_MALFORMED', { line: 6 });
    await refusedIngest(ingestTax(withRow(4, [...cellsOf(4), '1'].join(','))), 'SH_ERR_CSV_MALFORMED', { line: 6 });
    await refusedIngest(ingestTax(buildCsv(NAMES.slice(1), rows())), 'SH_ERR_CSV_MALFORMED', { field: NAMES[0]! });
    await refusedIngest(
      ingestTax(GOOD.replace(/^uscc,months_continuous_tax/, 'months_continuous_tax,uscc')),
      'SH_ERR_CSV_MALFORMED',
      { line: 1 },
    );
    await refusedIngest(ingestTax(withRow(4, '')), 'SH_ERR_CSV_MALFORMED');
  });

  it('schemas: unknown category → SH_ERR_UNKNOWN_CATEGORY; a class the category does not allow → SH_ERR_FIELD_CLASS_NOT_ALLOWED', async () => {
    await refusedIngest(ingestTax(GOOD, { ...TAX_SCHEMA, category: 'crypto_assets' }), 'SH_ERR_UNKNOWN_CATEGORY');
    // Utilities hold no PUBLIC fields; id fields must be VERIFY_ONLY.
    const own = (cls: string, type = 'int') => ({
      category: 'utilities',
      fields: [
        { name: 'utility_arrears' },
        {
          name: 'meter_count',
          label: '表计数',
          type,
          decimals: 0,
          min: type === 'id' ? '' : '0',
          max: type === 'id' ? '' : '100',
          class: cls,
        },
      ],
    });
    const csv = 'uscc,utility_arrears,meter_count\n' + SUBJECTS.map((u) => `${u},0,3`).join('\n') + '\n';
    const before = storeCounts(sh);
    await expect(sh.ingest(UTILI, own('PUBLIC'), csv)).rejects.toMatchObject({
      ...coded('SH_ERR_FIELD_CLASS_NOT_ALLOWED'),
      details: { field: 'meter_count', category: 'utilities', class: 'PUBLIC' },
    });
    await expect(sh.ingest(UTILI, own('MODEL_ONLY', 'id'), csv)).rejects.toMatchObject(
      coded('SH_ERR_FIELD_CLASS_NOT_ALLOWED'),
    );
    // Standard fields keep their catalog class and unit; bounds may only narrow.
    await expect(
      sh.ingest(UTILI, { category: 'utilities', fields: [{ name: 'utility_arrears', class: 'PUBLIC' }] }, csv),
    ).rejects.toMatchObject(coded('SH_ERR_SCHEMA_INVALID'));
    await expect(
      sh.ingest(UTILI, { category: 'utilities', fields: [{ name: 'utility_arrears_months', max: '13' }] }, csv),
    ).rejects.toMatchObject(coded('SH_ERR_SCHEMA_INVALID'));
    expect(storeCounts(sh)).toEqual(before);
  });

  it('token (id) columns: values become OPRF tokens (no column), an invalid id value is refused with its line, empty cells are missing', async () => {
    const schema = {
      category: 'property',
      fields: [{ name: 'property_cert_no' }, { name: 'property_count' }, { name: 'mortgage_registered' }],
    };
    const csv = (cert: (i: number) => string) =>
      'uscc,property_cert_no,property_count,mortgage_registered\n' +
      SUBJECTS.map((u, i) => `${u},${cert(i)},${i},${i % 2}`).join('\n') +
      '\n';
    const before = storeCounts(sh);
    // A value that normalizes to nothing (only spaces and 《》) is refused, naming line and field; nothing is stored.
    await expect(
      sh.ingest(
        PROPI,
        schema,
        csv((i) => (i === 3 ? '《 》' : '')),
      ),
    ).rejects.toMatchObject({ ...coded('SH_ERR_CSV_VALUE'), details: { field: 'property_cert_no', line: 5 } });
    expect(storeCounts(sh)).toEqual(before);
    const ds = await sh.ingest(
      PROPI,
      schema,
      csv((i) =>
        i === 3
          ? '粤(2021)深圳市不动产权第0000001号;粤(2021)深圳市不动产权第0000002号'
          : i === 4
            ? '粤(2022)深圳市不动产权第0000003号'
            : '',
      ),
    );
    expect(ds).toMatchObject({ subjects: 10, blocks: 1, version: 1 });
    const cols = sh.engine.store.db
      .prepare('SELECT column_name FROM columns WHERE dataset_id = ? ORDER BY column_name')
      .all(ds.datasetId) as Array<{ column_name: string }>;
    expect(cols.map((c) => c.column_name)).toEqual(['mortgage_registered', 'property_count']);
    const tokens = sh.engine.store.db
      .prepare('SELECT COUNT(*) AS n FROM tokens WHERE dataset_id = ? AND field = ?')
      .get(ds.datasetId, 'property_cert_no') as { n: number };
    expect(tokens.n).toBe(3);
    const missing = sh.engine.datasets.subjectSlots(ds.datasetId, [SUBJECTS[3]!, SUBJECTS[5]!]);
    expect(missing.get(SUBJECTS[3]!)!.missing.has('property_cert_no')).toBe(false);
    expect(missing.get(SUBJECTS[5]!)!.missing.has('property_cert_no')).toBe(true);
  });
});

describe('ingest: uploads are checked before anything is written', () => {
  let v1: string;
  let up: ProviderUpload;
  const resign = (
    body: UploadManifest,
    signer = TAXI,
    sk = sh.wallet.require(TAXI, 'provider').ed25519.secretKey,
  ): Signed<UploadManifest> => signJson(body, signer, sk);
  const flip = (b: Uint8Array) => {
    const c = b.slice();
    c[Math.floor(c.length / 2)]! ^= 0x01;
    return c;
  };

  beforeAll(async () => {
    const r = await sh.ingest(TAXI, TAX_SCHEMA, GOOD);
    expect(r).toMatchObject({ subjects: 10, blocks: 1, version: 1 });
    v1 = r.datasetId;
    up = await agent.prepareUpload(TAX_SCHEMA, GOOD, `${TAXI}.tax.direct`);
  });

  const accept = (manifest: Signed<UploadManifest>, blobs: Map<string, Uint8Array>) => async () =>
    sh.engine.datasets.acceptUpload(manifest, blobs);

  it('a column blob altered after signing → SH_ERR_CIPHERTEXT_INVALID', async () => {
    const col = up.manifest.body.columns[2]!.blob;
    await refusedIngest(
      accept(up.manifest, new Map(up.blobs).set(col, flip(up.blobs.get(col)!))),
      'SH_ERR_CIPHERTEXT_INVALID',
    );
    const idx = up.manifest.body.subjectsBlob;
    await refusedIngest(
      accept(up.manifest, new Map(up.blobs).set(idx, flip(up.blobs.get(idx)!))),
      'SH_ERR_CIPHERTEXT_INVALID',
    );
  });

  it('a manifest altered after signing, or signed by someone else → SH_ERR_BAD_SIGNATURE', async () => {
    const body = up.manifest.body;
    for (const altered of [
      { ...body, subjectCount: body.subjectCount + 1 },
      { ...body, stats: { ...body.stats, vat_paid_12m: { count: 10, std: 0.001 } } },
      {
        ...body,
        schema: {
          ...body.schema,
          fields: body.schema.fields.map((f) => (f.name === 'months_continuous_tax' ? { ...f, max: '60' } : f)),
        },
      },
      { ...body, columns: [...body.columns].reverse() },
    ]) {
      await refusedIngest(accept({ ...up.manifest, body: altered }, up.blobs), 'SH_ERR_BAD_SIGNATURE');
    }
    const other = sh.wallet.require(UTILI, 'provider').ed25519.secretKey;
    await refusedIngest(accept(resign(body, TAXI, other), up.blobs), 'SH_ERR_BAD_SIGNATURE');
    // util_i's genuine signature over a manifest naming tax_i.
    await refusedIngest(accept(resign(body, UTILI, other), up.blobs), 'SH_ERR_BAD_SIGNATURE');
  });

  it('an oversized ciphertext → SH_ERR_CIPHERTEXT_SIZE, even when correctly hashed and signed', async () => {
    const big = new Uint8Array(sh.engine.params.maxCiphertextBytes + 1).fill(7);
    const h = sha256Hex(big);
    const body = {
      ...up.manifest.body,
      columns: up.manifest.body.columns.map((c, i) => (i === 0 ? { ...c, blob: h } : c)),
    };
    await refusedIngest(accept(resign(body), new Map(up.blobs).set(h, big)), 'SH_ERR_CIPHERTEXT_SIZE', {
      bytes: big.length,
    });
  });

  it('a signed manifest that is internally inconsistent is refused too (blobs, columns, index, params)', async () => {
    const body = up.manifest.body;
    const blobs = new Map(up.blobs);
    blobs.delete(body.columns[1]!.blob);
    await refusedIngest(accept(up.manifest, blobs), 'SH_ERR_INVALID_ARGUMENT');
    await refusedIngest(
      accept(resign({ ...body, columns: body.columns.slice(1) }), up.blobs),
      'SH_ERR_INVALID_ARGUMENT',
    );
    await refusedIngest(accept(resign({ ...body, subjectCount: 11 }), up.blobs), 'SH_ERR_INVALID_ARGUMENT');
    await refusedIngest(accept(resign({ ...body, paramsId: 'bfv-16384-t60-v1' }), up.blobs), 'SH_ERR_PARAMS_MISMATCH');
    await refusedIngest(accept(resign({ ...body, datasetId: v1 }), up.blobs), 'SH_ERR_ALREADY_EXISTS');
    // A re-hashed, re-signed subject index with an invalid USCC: the engine checks the index itself.
    const index = JSON.parse(new TextDecoder().decode(up.blobs.get(body.subjectsBlob)!)) as Array<
      [string, number, number, string]
    >;
    const u = index[4]![0];
    index[4]![0] = u.slice(0, 17) + (u[17] === '0' ? '1' : '0');
    const ib = new TextEncoder().encode(JSON.stringify(index));
    await refusedIngest(
      accept(resign({ ...body, subjectsBlob: sha256Hex(ib) }), new Map(up.blobs).set(sha256Hex(ib), ib)),
      'SH_ERR_USCC_CHECK',
    );
    index[4]![0] = index[3]![0];
    const dup = new TextEncoder().encode(JSON.stringify(index));
    await refusedIngest(
      accept(resign({ ...body, subjectsBlob: sha256Hex(dup) }), new Map(up.blobs).set(sha256Hex(dup), dup)),
      'SH_ERR_CSV_DUPLICATE_SUBJECT',
    );
  });

  it('the untampered upload is accepted as version 2; a valid re-ingest creates version 3 and retires the others', async () => {
    const before = storeCounts(sh);
    const ds = sh.engine.datasets.acceptUpload(up.manifest, up.blobs);
    expect(ds).toMatchObject({ version: 2, subjects: 10, blocks: 1, provider: TAXI, category: 'tax' });
    const after = storeCounts(sh);
    expect(after.datasets).toBe(before.datasets + 1);
    expect(after.dataset_subjects).toBe(before.dataset_subjects + 10);
    expect(after.columns).toBe(before.columns + NAMES.length);
    expect(after.ledger).toBe(before.ledger + 1);
    // Symmetric encryption is randomized: new ciphertexts, new blob files (index bytes are identical: no new file).
    expect(after.blobFiles).toBe(before.blobFiles + NAMES.length);
    expect(sh.engine.ledger.entry(after.ledger - 1)).toMatchObject({ kind: 'dataset.uploaded' });

    const changed = buildCsv(NAMES, rows().slice(0, 7));
    const r3 = await sh.ingest(TAXI, TAX_SCHEMA, changed);
    expect(r3).toMatchObject({ subjects: 7, version: 3 });
    const current = sh.engine.datasets.current(TAXI);
    expect(current.map((d) => [d.id, d.version])).toEqual([[r3.datasetId, 3]]);
    const versions = sh.engine.store.db
      .prepare('SELECT id, version, current FROM datasets WHERE provider = ? ORDER BY version')
      .all(TAXI);
    expect(versions).toEqual([
      { id: v1, version: 1, current: 0 },
      { id: ds.id, version: 2, current: 0 },
      { id: r3.datasetId, version: 3, current: 1 },
    ]);
    expect(sh.engine.auditVerify().ok).toBe(true);
  });
});
