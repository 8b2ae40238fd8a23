/**
 * The admin's routes: registering parties with their public keys, enterprises in bulk (real-name registration), and
 * listing the registered parties (docs/design.md §1).
 */
import { Type } from '@sinclair/typebox';
import { fail } from '../../../core/errors.ts';
import { hexToBytes } from '../../../core/sign.ts';
import type { PartyRole } from '../../../engine/registry.ts';
import { ADMIN_ID } from '../auth.ts';
import { Obj, PARTY_ID } from '../schemas.ts';
import type { RouteContext } from '../route.ts';
import { partyView } from './public.ts';
import type { Certificate } from '../../../sandbox/registrar.ts';

/** A registrar certificate (sandbox/registrar.ts): checked by the registry with the registered registrar's key. */
const Certificate = Type.Object(
  {
    body: Type.Object({ type: Type.Literal('safehouse.registrar.certificate.v1') }, { additionalProperties: true }),
    signer: Type.String({ pattern: PARTY_ID }),
    signature: Type.String({ pattern: '^[0-9a-f]{128}$' }),
  },
  { additionalProperties: false, description: 'safehouse.registrar.certificate.v1 (sandbox/registrar.ts)' },
);

export function adminRoutes({ engine: e, route }: RouteContext): void {
  route<{
    id: string;
    role: PartyRole;
    ed25519: string;
    x25519?: string;
    bfvPublicKey?: string;
    oprfPublicKey?: string;
    group?: string;
    certificate?: unknown;
  }>(
    'POST',
    '/v1/admin/parties',
    'admin',
    'Register a party and its public keys',
    {
      status: 201,
      body: Obj({
        id: Type.String({ pattern: PARTY_ID }),
        role: Type.Union(['provider', 'bank', 'enterprise', 'auditor', 'registrar'].map((r) => Type.Literal(r))),
        ed25519: Type.String({ pattern: '^[0-9a-f]{64}$' }),
        x25519: Type.Optional(Type.String({ pattern: '^[0-9a-f]{64}$' })),
        bfvPublicKey: Type.Optional(Type.String({ maxLength: 2_000_000, pattern: '^[A-Za-z0-9+/]*={0,2}$' })),
        oprfPublicKey: Type.Optional(Type.String({ pattern: '^[0-9a-f]{66}$' })),
        group: Type.Optional(Type.String({ pattern: PARTY_ID, description: "a bank's group (legal entity)" })),
        certificate: Type.Optional(Certificate),
      }),
    },
    async (req) => {
      const b = req.body;
      // `admin` is the admin's key id in request signatures; `engine` signs the engine's own statements and requests.
      if (b.id === ADMIN_ID || b.id === 'engine') fail('SH_ERR_INVALID_ARGUMENT', `"id" ${b.id} is reserved`);
      e.registry.registerParty({
        id: b.id,
        role: b.role,
        ed25519: hexToBytes(b.ed25519),
        ...(b.x25519 ? { x25519: hexToBytes(b.x25519) } : {}),
        ...(b.bfvPublicKey ? { bfvPublicKey: new Uint8Array(Buffer.from(b.bfvPublicKey, 'base64')) } : {}),
        ...(b.oprfPublicKey ? { oprfPublicKey: hexToBytes(b.oprfPublicKey) } : {}),
        ...(b.group ? { group: b.group } : {}),
        ...(b.certificate ? { certificate: b.certificate as Certificate } : {}),
      });
      return partyView(e, b.id);
    },
  );
  route<{ enterprises: Array<{ uscc: string; ed25519: string; certificate?: unknown }> }>(
    'POST',
    '/v1/admin/enterprises',
    'admin',
    'Register enterprises (real-name registration) in bulk',
    {
      body: Obj({
        enterprises: Type.Array(
          Obj({
            uscc: Type.String({ minLength: 18, maxLength: 18 }),
            ed25519: Type.String({ pattern: '^[0-9a-f]{64}$' }),
            certificate: Type.Optional(Certificate),
          }),
          { maxItems: 100_000 },
        ),
      }),
    },
    async (req) => {
      e.registry.registerEnterprises(
        req.body.enterprises.map((x) => ({
          uscc: x.uscc,
          ed25519: hexToBytes(x.ed25519),
          ...(x.certificate ? { certificate: x.certificate as Certificate } : {}),
        })),
      );
      return { registered: req.body.enterprises.length };
    },
  );
  route('GET', '/v1/admin/parties', 'admin', 'List the registered parties (enterprises excepted)', {}, async () => ({
    parties: e.registry.parties().map((p) => partyView(e, p.id)),
  }));
}
