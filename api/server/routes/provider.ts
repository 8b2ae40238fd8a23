/**
 * A provider's routes: submitting a signed upload manifest (its blobs staged first), listing its current datasets,
 * reviewing a model that uses it and approving it with the derived columns, and telling the engine where its
 * custodian listens (docs/design.md §1, §2).
 */
import { Type } from '@sinclair/typebox';
import { fail } from '../../../core/errors.ts';
import type { Signed } from '../../../core/sign.ts';
import { Obj, SignedDoc, JobParams } from '../schemas.ts';
import type { RouteContext } from '../route.ts';

export function providerRoutes({ engine: e, route, staging, custodians }: RouteContext): void {
  route<{ manifest: Signed<never> }>(
    'POST',
    '/v1/provider/datasets',
    'provider',
    'Submit a signed upload manifest (its blobs staged first)',
    { status: 201, body: Obj({ manifest: SignedDoc }) },
    async (req) => {
      if (req.body.manifest.signer !== req.party.id)
        fail('SH_ERR_FORBIDDEN', `provider ${req.party.id} may not submit ${req.body.manifest.signer}'s upload`);
      const ds = e.datasets.acceptUpload(req.body.manifest, staging.of(req.party.id));
      staging.clear(req.party.id);
      return { datasetId: ds.id, subjects: ds.subjects, blocks: ds.blocks, version: ds.version, category: ds.category };
    },
  );
  route('GET', '/v1/provider/datasets', 'provider', "The provider's current datasets", {}, async (req) => ({
    datasets: e.datasets.current(req.party.id).map((d) => ({
      id: d.id,
      category: d.category,
      version: d.version,
      subjects: d.subjects,
      blocks: d.blocks,
      fields: d.schema.fields.map((f) => f.name),
    })),
  }));
  route<unknown, { id: string }>(
    'GET',
    '/v1/provider/models/:id',
    'provider',
    'A registered model, for review before approval',
    { params: JobParams },
    async (req) => {
      const m = e.models.get(req.params.id);
      if (!m)
        fail('SH_ERR_NOT_FOUND', `no model ${JSON.stringify(req.params.id)} is registered`, { model: req.params.id });
      if (!m.spec.terms.some((t) => t.provider === req.party.id))
        fail('SH_ERR_FORBIDDEN', `model ${req.params.id} does not use provider ${req.party.id}`);
      return { spec: m.spec, hash: m.hash, bank: m.bank };
    },
  );
  route<{ approval: Signed<never> }>(
    'POST',
    '/v1/provider/approvals',
    'provider',
    'Approve a model: signed statement with derived columns (staged first)',
    { status: 201, body: Obj({ approval: SignedDoc }) },
    async (req) => {
      if (req.body.approval.signer !== req.party.id)
        fail('SH_ERR_FORBIDDEN', `provider ${req.party.id} may not submit ${req.body.approval.signer}'s approval`);
      // The engine looks these up in its database: a missing or non-string id would be an uncoded 500 there.
      const a = req.body.approval.body as {
        modelId?: unknown;
        modelHash?: unknown;
        datasetId?: unknown;
        derived?: unknown;
      };
      const derivedOk =
        Array.isArray(a.derived) &&
        a.derived.every(
          (c: { column?: unknown; block?: unknown; blob?: unknown } | null) =>
            typeof c === 'object' &&
            c !== null &&
            typeof c.column === 'string' &&
            Number.isInteger(c.block) &&
            typeof c.blob === 'string',
        );
      if (
        typeof a.modelId !== 'string' ||
        typeof a.modelHash !== 'string' ||
        typeof a.datasetId !== 'string' ||
        !derivedOk
      )
        fail(
          'SH_ERR_INVALID_ARGUMENT',
          'an approval expected "modelId", "modelHash" and "datasetId" strings and "derived" as a list of { column, block, blob }',
        );
      e.models.approve(req.body.approval, staging.of(req.party.id));
      staging.clear(req.party.id);
      return { approved: true };
    },
  );
  route<{ url: string }>(
    'POST',
    '/v1/provider/custodian',
    'provider',
    "Tell the engine where the provider's custodian listens",
    { body: Obj({ url: Type.String({ maxLength: 300, pattern: '^https?://' }) }) },
    async (req) => {
      if (!URL.canParse(req.body.url))
        fail('SH_ERR_INVALID_ARGUMENT', `"url" expected an http(s) URL, got ${JSON.stringify(req.body.url)}`);
      await custodians.register(req.party.id, req.body.url);
      return { connected: true };
    },
  );
}
