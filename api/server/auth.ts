/**
 * Who is calling, and may it call this route: every route but the public ones takes an RFC 9421 signature by a
 * registered party or the admin (api/httpsig.ts; docs/protocols.md "Network transport"), then the per-party rate
 * limit, then the route's role check — all before the schema validation and the handler (docs/design.md §9).
 */
import type { FastifyInstance } from 'fastify';
import { fail } from '../../core/errors.ts';
import type { Engine } from '../../engine/engine.ts';
import type { PartyRole } from '../../engine/registry.ts';
import { RequestVerifier } from '../httpsig.ts';

/** The admin's key id: the admin is not a registered party; its public key is given to the server. */
export const ADMIN_ID = 'admin';

declare module 'fastify' {
  interface FastifyRequest {
    rawBody?: Buffer;
    party?: { id: string; role: PartyRole | 'admin' };
  }
}

/**
 * Installs the check as a `preValidation` hook. A route's `config.role` is `public`, `any`, or roles joined by `|`;
 * the signature covers the raw body bytes (`rawBody`, kept by the body parsers).
 */
export function authenticate(
  app: FastifyInstance,
  opts: { engine: Engine; adminPublicKey: Uint8Array; limitParty: (id: string) => void },
): void {
  const { engine } = opts;
  const verifier = new RequestVerifier({
    keyOf: (id) => (id === ADMIN_ID ? opts.adminPublicKey : engine.registry.party(id)?.ed25519),
  });
  app.addHook('preValidation', async (req) => {
    const cfg = req.routeOptions.config as { role?: string } | undefined;
    if (!cfg?.role || cfg.role === 'public') return;
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
    const id = verifier.verify({
      method: req.method,
      url: req.url,
      authority: headers.host ?? '',
      body: req.rawBody ? new Uint8Array(req.rawBody) : new Uint8Array(0),
      headers,
    });
    const role = id === ADMIN_ID ? 'admin' : engine.registry.party(id)!.role;
    req.party = { id, role };
    opts.limitParty(id);
    const allowed = cfg.role.split('|');
    if (!allowed.includes('any') && !allowed.includes(role))
      fail(
        'SH_ERR_PARTY_ROLE',
        `${req.method} ${req.routeOptions.url} is for ${cfg.role.replace('|', ' or ')}, ${id} is ${role === 'admin' ? 'the admin' : `a ${role}`}`,
        { party: id },
      );
  });
}
