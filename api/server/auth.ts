/**
 * Who is calling, and may it call this route: every route but the public ones takes an RFC 9421 signature by a
 * registered party or the admin (api/httpsig.ts; docs/protocols.md "Network transport"), then the per-party rate
 * limit, then the route's role check — all before the schema validation and the handler (docs/design.md §9).
 */
import type { FastifyInstance } from 'fastify';
import { fail, storageFull } from '../../core/errors.ts';
import type { Engine } from '../../engine/engine.ts';
import type { PartyRole } from '../../engine/registry.ts';
import { MemoryNonces, RequestVerifier, type NonceStore } from '../httpsig.ts';

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
    nonces: storedNonces(engine),
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

/**
 * Accepted nonces in the engine's database (`api_nonces`), so a signed request captured before a restart is refused
 * after it as well: the restarted server still knows every nonce of the last 2 × skew window.
 */
function storedNonces(engine: Engine): NonceStore {
  const db = engine.store.db;
  db.exec('CREATE TABLE IF NOT EXISTS api_nonces (id TEXT PRIMARY KEY, created INTEGER NOT NULL) WITHOUT ROWID;');
  const claim = db.prepare('INSERT INTO api_nonces (id, created) VALUES (?, ?) ON CONFLICT(id) DO NOTHING');
  const forget = db.prepare('DELETE FROM api_nonces WHERE created < ?');
  // A full disk must not stop reads (job status, results): nonces then go to memory until writes work again.
  const spill = new MemoryNonces();
  return {
    claim: (id, created) => {
      if (!spill.claim(id, created)) return false;
      try {
        return Number(claim.run(id, created).changes) === 1;
      } catch (err) {
        if (storageFull(err)) return true;
        throw err;
      }
    },
    forget: (before) => {
      spill.forget(before);
      try {
        forget.run(before);
      } catch (err) {
        if (!storageFull(err)) throw err;
      }
    },
  };
}
