/**
 * An enterprise's routes (docs/design.md §6, §8): granting and revoking its consents (each statement signed by the
 * enterprise itself), reading them back, and its access report — every ledger entry that named it, each with an
 * inclusion proof. An enterprise reads and writes its own records only.
 */
import { Type } from '@sinclair/typebox';
import { fail } from '../../../core/errors.ts';
import type { SignedConsent, SignedRevocation } from '../../../sandbox/consent.ts';
import { accessReport } from '../../../engine/audit/report.ts';
import { Obj } from '../schemas.ts';
import type { RouteContext } from '../route.ts';

const Statement = (extra: string) =>
  Obj({
    statement: Type.Object(
      { subject: Type.String({ minLength: 18, maxLength: 18 }) },
      { additionalProperties: true, description: extra },
    ),
    signature: Type.String({ pattern: '^[0-9a-f]{128}$' }),
  });
const Subject = Obj({ subject: Type.Optional(Type.String({ minLength: 18, maxLength: 18 })) });

/** The subject a read is for: the calling enterprise, which may name itself (`?subject=`) but nobody else. */
const own = (req: { party: { id: string }; query: { subject?: string } }) => {
  if (req.query.subject !== undefined && req.query.subject !== req.party.id)
    fail('SH_ERR_FORBIDDEN', `enterprise ${req.party.id} may read its own records only`);
  return req.party.id;
};

export function enterpriseRoutes({ engine: e, route }: RouteContext): void {
  route<{ consents: SignedConsent[] }>(
    'POST',
    '/v1/enterprise/consents',
    'enterprise',
    'Grant consents (each signed by the enterprise)',
    {
      status: 201,
      body: Obj({
        consents: Type.Array(Statement('ConsentStatement (sandbox/consent.ts)'), { minItems: 1, maxItems: 1000 }),
      }),
    },
    async (req) => {
      for (const c of req.body.consents)
        if (c.statement.subject !== req.party.id)
          fail('SH_ERR_FORBIDDEN', `enterprise ${req.party.id} may grant consents for itself only`);
      e.consents.add(req.body.consents);
      return { ids: req.body.consents.map((c) => c.statement.id) };
    },
  );
  route<{ revocations: SignedRevocation[] }>(
    'POST',
    '/v1/enterprise/revocations',
    'enterprise',
    'Revoke consents (each revocation signed by the enterprise)',
    {
      status: 201,
      body: Obj({
        revocations: Type.Array(Statement('RevocationStatement (sandbox/consent.ts)'), { minItems: 1, maxItems: 1000 }),
      }),
    },
    async (req) => {
      for (const r of req.body.revocations)
        if (r.statement.subject !== req.party.id)
          fail('SH_ERR_FORBIDDEN', `enterprise ${req.party.id} may revoke its own consents only`);
      for (const r of req.body.revocations) e.consents.revoke(r);
      return { revoked: req.body.revocations.map((r) => r.statement.consentId) };
    },
  );
  route<unknown, Record<string, string>, { subject?: string }>(
    'GET',
    '/v1/enterprise/consents',
    'enterprise',
    "The enterprise's consents",
    { querystring: Subject },
    async (req) => ({ consents: e.consents.of(own(req)) }),
  );
  route<unknown, Record<string, string>, { subject?: string }>(
    'GET',
    '/v1/enterprise/report',
    'enterprise',
    'Every ledger entry that touched the enterprise (its access report)',
    { querystring: Subject },
    async (req) => {
      // Each entry with its exact leaf body and an inclusion proof against the latest signed checkpoint.
      return accessReport(e, own(req));
    },
  );
}
