/**
 * Providers' custodians, reached over HTTP (api/custodian-http.ts). A provider tells the engine where its custodian
 * listens (`POST /v1/provider/custodian`); the address is kept in the server's own `api_custodians` table, so that
 * after a restart the custodian is reconnected lazily, the first time a job needs it.
 */
import { fail, isCoded } from '../../core/errors.ts';
import type { Engine } from '../../engine/engine.ts';
import { HttpCustodian } from '../custodian-http.ts';

export class Custodians {
  private readonly engine: Engine;

  constructor(engine: Engine) {
    this.engine = engine;
    engine.store.db.exec(
      'CREATE TABLE IF NOT EXISTS api_custodians (provider TEXT PRIMARY KEY, url TEXT NOT NULL, registered_at TEXT NOT NULL);',
    );
  }

  /** Connects the provider's custodian at `url` (it must answer as that provider) and remembers the address. */
  async register(provider: string, url: string): Promise<void> {
    await this.connect(provider, url);
    this.engine.store.db
      .prepare(
        'INSERT INTO api_custodians (provider, url, registered_at) VALUES (?, ?, ?) ON CONFLICT(provider) DO UPDATE SET url = excluded.url, registered_at = excluded.registered_at',
      )
      .run(provider, url, new Date().toISOString());
  }

  /** Reconnect custodians registered in an earlier run (lazily, before a job needs them). */
  async ensure(providers: Iterable<string>): Promise<void> {
    for (const p of new Set(providers)) {
      // Not a provider at all is the caller's mistake, coded as such (SH_ERR_UNKNOWN_PARTY / SH_ERR_PARTY_ROLE).
      this.engine.registry.requireParty(p, 'provider');
      try {
        this.engine.registry.custodian(p);
        continue;
      } catch {
        // not connected in this process yet
      }
      const row = this.engine.store.db.prepare('SELECT url FROM api_custodians WHERE provider = ?').get(p) as
        { url: string } | undefined;
      if (!row)
        fail('SH_ERR_UNAVAILABLE', `provider ${p} has not registered a custodian (run \`safehouse custodian\`)`, {
          provider: p,
        });
      await this.connect(p, row.url);
    }
  }

  private async connect(provider: string, url: string): Promise<void> {
    let c: HttpCustodian;
    try {
      c = await HttpCustodian.connect(url, this.engine.keys.ed25519.secretKey);
    } catch (err) {
      if (isCoded(err)) throw err;
      return fail('SH_ERR_UNAVAILABLE', `custodian of ${provider} at ${url} cannot be reached`, { provider }, err);
    }
    if (c.provider !== provider)
      fail('SH_ERR_FORBIDDEN', `the custodian at ${url} is ${c.provider}'s, not ${provider}'s`);
    this.engine.registry.connectCustodian(c);
  }
}
