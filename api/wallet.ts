/**
 * Embedded-mode wallet: the key material each party would keep on its own systems, kept here in `<home>/wallet/`
 * so one machine can play every party. The engine never opens it: `safehouse` CLI commands acting *as* a party
 * (provider ingest, consent grant, score as the bank) read the party's keys from here and talk to the engine through
 * the same signed messages a remote party would send.
 *
 * Layout: wallet.db (party keys), providers/<id>/bfv.sk (BFV secret key), providers/<id>/<category>.json (the
 * provider's own encoded table, its system of record, used when it derives approved-model features),
 * providers/<id>/custodian.log (the custodian's request log).
 * Files are written 0600. JS cannot wipe key copies the GC may have made; treat the wallet as secret.
 */
import { DatabaseSync } from 'node:sqlite';
import { mkdirSync, readFileSync, writeFileSync, existsSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { fail } from '../core/errors.ts';
import { ed25519KeyPair, bytesToHex, hexToBytes } from '../core/sign.ts';
import { x25519KeyPair } from '../core/sealbox.ts';

export type Role = 'provider' | 'bank' | 'enterprise' | 'auditor' | 'engine' | 'registrar';
export const ROLES: readonly Role[] = ['provider', 'bank', 'enterprise', 'auditor'];

export interface PartyKeys {
  id: string;
  role: Role;
  ed25519: { secretKey: Uint8Array; publicKey: Uint8Array };
  x25519?: { secretKey: Uint8Array; publicKey: Uint8Array };
}

export class Wallet {
  readonly dir: string;
  private readonly db: DatabaseSync;

  constructor(home: string) {
    this.dir = join(home, 'wallet');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    this.db = new DatabaseSync(join(this.dir, 'wallet.db'));
    this.db.exec(`PRAGMA journal_mode = WAL;
      CREATE TABLE IF NOT EXISTS keys (id TEXT PRIMARY KEY, role TEXT NOT NULL, ed_sk TEXT NOT NULL, ed_pk TEXT NOT NULL,
        x_sk TEXT, x_pk TEXT, created_at TEXT NOT NULL)`);
  }

  close(): void {
    if (this.db.isOpen) this.db.close();
  }

  /** Create keys for a party (X25519 too for banks, auditors, engine). Idempotent for the same role. */
  create(id: string, role: Role): PartyKeys {
    const existing = this.get(id);
    if (existing) {
      if (existing.role !== role)
        fail('SH_ERR_ALREADY_EXISTS', `party ${id} already exists with role ${existing.role}`, { party: id });
      return existing;
    }
    const ed = ed25519KeyPair();
    const x = role === 'bank' || role === 'auditor' || role === 'engine' ? x25519KeyPair() : undefined;
    this.db
      .prepare('INSERT INTO keys (id, role, ed_sk, ed_pk, x_sk, x_pk, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(
        id,
        role,
        bytesToHex(ed.secretKey),
        bytesToHex(ed.publicKey),
        x ? bytesToHex(x.secretKey) : null,
        x ? bytesToHex(x.publicKey) : null,
        new Date().toISOString(),
      );
    return { id, role, ed25519: ed, ...(x ? { x25519: x } : {}) };
  }

  /** Create many enterprise keys in one transaction (bulk consent grants). */
  ensureEnterprises(ids: readonly string[]): Map<string, PartyKeys> {
    const out = new Map<string, PartyKeys>();
    this.db.exec('BEGIN');
    try {
      for (const id of ids) if (!out.has(id)) out.set(id, this.get(id) ?? this.create(id, 'enterprise'));
      this.db.exec('COMMIT');
    } catch (err) {
      this.db.exec('ROLLBACK');
      throw err;
    }
    return out;
  }

  get(id: string): PartyKeys | undefined {
    const r = this.db.prepare('SELECT * FROM keys WHERE id = ?').get(id) as Record<string, string | null> | undefined;
    if (!r) return undefined;
    return {
      id,
      role: r.role as Role,
      ed25519: { secretKey: hexToBytes(r.ed_sk!), publicKey: hexToBytes(r.ed_pk!) },
      ...(r.x_sk ? { x25519: { secretKey: hexToBytes(r.x_sk), publicKey: hexToBytes(r.x_pk!) } } : {}),
    };
  }

  /** @throws SH_ERR_UNKNOWN_PARTY, SH_ERR_PARTY_ROLE */
  require(id: string, role: Role): PartyKeys {
    const k = this.get(id);
    if (!k)
      fail(
        'SH_ERR_UNKNOWN_PARTY',
        `no keys for party ${JSON.stringify(id)} in this wallet (run \`safehouse party add --role ${role} --id ${id}\`)`,
        { party: id },
      );
    if (k.role !== role) fail('SH_ERR_PARTY_ROLE', `party ${id} is a ${k.role}, not a ${role}`, { party: id });
    return k;
  }

  providerDir(id: string): string {
    const d = join(this.dir, 'providers', id);
    mkdirSync(d, { recursive: true, mode: 0o700 });
    return d;
  }

  writeSecret(path: string, data: Uint8Array | string): void {
    const tmp = `${path}.tmp`;
    writeFileSync(tmp, data, { mode: 0o600 });
    renameSync(tmp, path);
  }

  readSecret(path: string): Uint8Array | undefined {
    return existsSync(path) ? new Uint8Array(readFileSync(path)) : undefined;
  }
}
