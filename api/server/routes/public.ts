/**
 * Routes anyone may call: the engine's parameters and keys (`GET /v1/info`, unsigned), and a registered party's
 * public keys (`GET /v1/parties/{id}`, the public registry; any signed party). The party view is shared with the
 * admin's routes.
 */
import { fail } from '../../../core/errors.ts';
import { bytesToHex } from '../../../core/sign.ts';
import type { Engine } from '../../../engine/engine.ts';
import { IdParams } from '../schemas.ts';
import type { RouteContext } from '../route.ts';

const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');

/** A registered party's public keys as the API shows them (hex, the BFV key inline as base64). */
export function partyView(e: Engine, id: string) {
  const p = e.registry.party(id);
  if (!p) fail('SH_ERR_UNKNOWN_PARTY', `no party ${JSON.stringify(id)} is registered`, { party: id });
  return {
    id: p.id,
    role: p.role,
    ed25519: bytesToHex(p.ed25519),
    ...(p.x25519 ? { x25519: bytesToHex(p.x25519) } : {}),
    ...(p.bfvPublicKeyBlob ? { bfvPublicKey: b64(e.store.getBlob(p.bfvPublicKeyBlob)) } : {}),
    ...(p.oprfPublicKey ? { oprfPublicKey: bytesToHex(p.oprfPublicKey) } : {}),
    ...(p.group ? { group: p.group } : {}),
  };
}

export function publicRoutes({ engine: e, route }: RouteContext): void {
  route('GET', '/v1/info', 'public', 'Engine parameters, public keys and policy', {}, async () => ({
    paramsId: e.params.id,
    slots: e.params.slots,
    t: e.params.t.toString(),
    engine: { ed25519: bytesToHex(e.keys.ed25519.publicKey) },
    policy: e.policy,
    ledgerOrigin: 'safehouse.local/ledger',
  }));
  route(
    'GET',
    '/v1/parties/:id',
    'any',
    "A registered party's public keys (the public registry)",
    { params: IdParams },
    async (req) => partyView(e, req.params.id),
  );
}
