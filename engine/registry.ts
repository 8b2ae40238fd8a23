/**
 * The public registry (docs/design.md §1): every party's role and public keys — Ed25519 for signatures, X25519 for
 * banks and auditors (sealed results, escrow), a provider's BFV public key (stored as a blob) and RFC 9497 POPRF key —
 * and the custodians connected for providers. The engine holds no secret key of any party.
 */
import { fail } from '../core/errors.ts';
import { sha256Hex } from '../core/hash.ts';
import { bytesToHex, hexToBytes } from '../core/sign.ts';
import { parseUscc } from '../sandbox/uscc.ts';
import { requireCertificate, type Certificate } from '../sandbox/registrar.ts';
import type { Custodian } from './custodian/messages.ts';
import type { EngineContext } from './context.ts';

export type PartyRole = 'provider' | 'bank' | 'enterprise' | 'auditor' | 'registrar';

export interface PartyRecord {
  id: string;
  role: PartyRole;
  ed25519: Uint8Array;
  x25519?: Uint8Array;
  bfvPublicKeyBlob?: string;
  /** RFC 9497 POPRF public key (33-byte compressed P-256 point) of a provider with token fields. */
  oprfPublicKey?: Uint8Array;
  /**
   * A bank's group (its legal entity: every branch or identity of one bank shares it); its own id unless registered
   * with one. Budgets and the model-history rule count per group, so more identities buy nothing (docs/privacy.md).
   */
  group?: string;
  /** Banks and enterprises: the registrar's certificate of this key (sandbox/registrar.ts), when one was given. */
  certificate?: Certificate;
}

const PARTY_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;
const ROLES: readonly PartyRole[] = ['provider', 'bank', 'enterprise', 'auditor', 'registrar'];

interface PartyRow {
  bank_group: string | null;
  role: string;
  ed25519_pub: string;
  x25519_pub: string | null;
  bfv_pub: string | null;
  oprf_pub: string | null;
  cert_json: string | null;
}

export class Registry {
  private readonly ctx: EngineContext;
  private readonly connected = new Map<string, Custodian>();

  constructor(ctx: EngineContext) {
    this.ctx = ctx;
  }

  /**
   * Register a party's public keys. Providers also publish their BFV public key. Registering the same party with the
   * same key again is a no-op.
   * @throws SH_ERR_INVALID_ARGUMENT, SH_ERR_ALREADY_EXISTS, SH_ERR_USCC_* (an enterprise id is its USCC)
   */
  registerParty(p: {
    id: string;
    role: PartyRole;
    ed25519: Uint8Array;
    x25519?: Uint8Array;
    bfvPublicKey?: Uint8Array;
    oprfPublicKey?: Uint8Array;
    /** Banks only: the group (legal entity) the bank identity belongs to; default its own id. */
    group?: string;
    /** Banks and enterprises: the registrar's certificate (required once a registrar is registered). */
    certificate?: Certificate;
  }): PartyRecord {
    if (!PARTY_ID.test(p.id)) fail('SH_ERR_INVALID_ARGUMENT', `"id" expected ${PARTY_ID}, got ${JSON.stringify(p.id)}`);
    if (!ROLES.includes(p.role))
      fail(
        'SH_ERR_INVALID_ARGUMENT',
        `"role" expected provider|bank|enterprise|auditor|registrar, got ${JSON.stringify(p.role)}`,
      );
    if (p.ed25519.length !== 32)
      fail('SH_ERR_INVALID_ARGUMENT', `"ed25519" expected 32 bytes, got ${p.ed25519.length}`);
    if ((p.role === 'bank' || p.role === 'auditor') && p.x25519?.length !== 32)
      fail('SH_ERR_INVALID_ARGUMENT', `"x25519" expected 32 bytes for a ${p.role}`);
    if (p.role === 'provider' && !p.bfvPublicKey)
      fail('SH_ERR_INVALID_ARGUMENT', '"bfvPublicKey" is required for a provider');
    if (p.bfvPublicKey && p.bfvPublicKey.length > this.ctx.params.maxPublicKeyBytes)
      fail(
        'SH_ERR_INVALID_ARGUMENT',
        `"bfvPublicKey" expected at most ${this.ctx.params.maxPublicKeyBytes} bytes, got ${p.bfvPublicKey.length}`,
      );
    if (p.oprfPublicKey && (p.role !== 'provider' || p.oprfPublicKey.length !== 33))
      fail('SH_ERR_INVALID_ARGUMENT', `"oprfPublicKey" expected a 33-byte P-256 point of a provider`);
    if (p.role === 'enterprise') parseUscc(p.id);
    if (p.group !== undefined && (p.role !== 'bank' || !PARTY_ID.test(p.group)))
      fail(
        'SH_ERR_INVALID_ARGUMENT',
        `"group" expected a party-id-like name of a bank's group, got ${JSON.stringify(p.group)}`,
      );
    if (p.role === 'registrar' && this.parties('registrar').length)
      fail('SH_ERR_ALREADY_EXISTS', 'a registrar is already registered', { party: p.id });
    const cert =
      p.role === 'bank' || p.role === 'enterprise'
        ? this.checkedCertificate(p.certificate, {
            party: p.id,
            role: p.role,
            ed25519: bytesToHex(p.ed25519),
            ...(p.role === 'bank' ? { x25519: bytesToHex(p.x25519!), group: p.group ?? p.id } : {}),
          })
        : undefined;
    const group = p.role === 'bank' ? (p.group ?? p.id) : null;
    const existing = this.party(p.id);
    if (existing) {
      if (existing.role === p.role && bytesToHex(existing.ed25519) === bytesToHex(p.ed25519)) return existing;
      fail('SH_ERR_ALREADY_EXISTS', `party ${p.id} is already registered`, { party: p.id });
    }
    const { store, ledger, params, now } = this.ctx;
    return store.transaction(() => {
      const bfv = p.bfvPublicKey ? store.putBlob(p.bfvPublicKey) : null;
      const oprf = p.oprfPublicKey ? bytesToHex(p.oprfPublicKey) : null;
      store.db
        .prepare(
          'INSERT INTO parties (id, role, ed25519_pub, x25519_pub, bfv_pub, params_id, oprf_pub, created_at, bank_group, cert_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
        )
        .run(
          p.id,
          p.role,
          bytesToHex(p.ed25519),
          p.x25519 ? bytesToHex(p.x25519) : null,
          bfv,
          bfv ? params.id : null,
          oprf,
          now().toISOString(),
          group,
          cert ? JSON.stringify(cert) : null,
        );
      ledger.append(
        'party.registered',
        {
          party: p.id,
          role: p.role,
          ed25519: bytesToHex(p.ed25519),
          ...(bfv ? { bfvPublicKey: bfv } : {}),
          ...(oprf ? { oprfPublicKey: oprf } : {}),
          ...(p.x25519 ? { x25519: bytesToHex(p.x25519) } : {}),
          ...(group ? { group } : {}),
          ...(cert ? { certificate: cert } : {}),
        },
        p.role === 'enterprise' ? [p.id] : [],
      );
      return this.party(p.id)!;
    });
  }

  /** Register many enterprises at once (bulk consent grants); already-registered ones are skipped. */
  registerEnterprises(list: ReadonlyArray<{ uscc: string; ed25519: Uint8Array; certificate?: Certificate }>): void {
    // A subject named twice in one batch (several consents) is registered once, with its first key.
    const seen = new Set<string>();
    const fresh = list.filter((e) => !seen.has(e.uscc) && (seen.add(e.uscc), !this.party(e.uscc)));
    for (const e of fresh) parseUscc(e.uscc);
    if (fresh.length === 0) return;
    const registrar = this.registrar();
    const certs = fresh.map((e) =>
      this.checkedCertificate(
        e.certificate,
        { party: e.uscc, role: 'enterprise', ed25519: bytesToHex(e.ed25519) },
        registrar,
      ),
    );
    const { store, ledger, now } = this.ctx;
    store.transaction(() => {
      const ins = store.db.prepare(
        "INSERT INTO parties (id, role, ed25519_pub, created_at, cert_json) VALUES (?, 'enterprise', ?, ?, ?)",
      );
      const at = now().toISOString();
      fresh.forEach((e, i) => ins.run(e.uscc, bytesToHex(e.ed25519), at, certs[i] ? JSON.stringify(certs[i]) : null));
      ledger.appendMany(
        fresh.map((e, i) => ({
          kind: 'party.registered',
          event: {
            party: e.uscc,
            role: 'enterprise',
            ed25519: bytesToHex(e.ed25519),
            ...(certs[i] ? { certificate: certs[i] } : {}),
          },
          subjects: [e.uscc],
        })),
      );
    });
  }

  /**
   * The certificate to store with a bank's or enterprise's key: once a registrar is registered, one it signed for
   * exactly this party, role and keys is required (custodians check it again with the registrar key they pin).
   * @throws SH_ERR_CERT_INVALID
   */
  private checkedCertificate(
    cert: Certificate | undefined,
    want: { party: string; role: 'bank' | 'enterprise'; ed25519: string; x25519?: string; group?: string },
    registrar: PartyRecord | undefined = this.registrar(),
  ): Certificate | undefined {
    if (!registrar) return cert;
    requireCertificate(cert, registrar.ed25519, want);
    if (cert!.signer !== registrar.id)
      fail(
        'SH_ERR_CERT_INVALID',
        `${want.role} ${want.party}: certificate signed by ${cert!.signer}, not the registrar`,
      );
    return cert;
  }

  /** The registered registrar (real-name registration authority), if any. */
  registrar(): PartyRecord | undefined {
    const row = this.ctx.store.stmt("SELECT id FROM parties WHERE role = 'registrar' LIMIT 1").get() as
      { id: string } | undefined;
    return row ? this.party(row.id) : undefined;
  }

  party(id: string): PartyRecord | undefined {
    if (typeof id !== 'string') return undefined;
    const r = this.ctx.store
      .stmt('SELECT role, ed25519_pub, x25519_pub, bfv_pub, oprf_pub, bank_group, cert_json FROM parties WHERE id = ?')
      .get(id) as PartyRow | undefined;
    if (!r) return undefined;
    return {
      id,
      role: r.role as PartyRole,
      ed25519: hexToBytes(r.ed25519_pub),
      ...(r.x25519_pub ? { x25519: hexToBytes(r.x25519_pub) } : {}),
      ...(r.bfv_pub ? { bfvPublicKeyBlob: r.bfv_pub } : {}),
      ...(r.oprf_pub ? { oprfPublicKey: hexToBytes(r.oprf_pub) } : {}),
      ...(r.role === 'bank' ? { group: r.bank_group ?? id } : {}),
      ...(r.cert_json ? { certificate: JSON.parse(r.cert_json) as Certificate } : {}),
    };
  }

  /** A bank's group (its own id unless it was registered with one). @throws SH_ERR_UNKNOWN_PARTY, SH_ERR_PARTY_ROLE */
  groupOf(bank: string): string {
    return this.requireParty(bank, 'bank').group!;
  }

  /** The banks of a group (ids, sorted). */
  banksOf(group: string): string[] {
    return (
      this.ctx.store.db
        .prepare("SELECT id FROM parties WHERE role = 'bank' AND COALESCE(bank_group, id) = ? ORDER BY id")
        .all(group) as Array<{ id: string }>
    ).map((r) => r.id);
  }

  /** @throws SH_ERR_UNKNOWN_PARTY, SH_ERR_PARTY_ROLE */
  requireParty(id: string, role: PartyRole): PartyRecord {
    const p = this.party(id);
    if (!p) fail('SH_ERR_UNKNOWN_PARTY', `no party ${JSON.stringify(id)} is registered`, { party: id });
    if (p.role !== role) fail('SH_ERR_PARTY_ROLE', `party ${id} is a ${p.role}, not a ${role}`, { party: id });
    return p;
  }

  /** Registered parties other than enterprises (of one role, or all), by id. */
  parties(role?: PartyRole): PartyRecord[] {
    const db = this.ctx.store.db;
    const rows = (
      role
        ? db.prepare("SELECT id FROM parties WHERE role = ? AND role != 'enterprise' ORDER BY id").all(role)
        : db.prepare("SELECT id FROM parties WHERE role != 'enterprise' ORDER BY id").all()
    ) as Array<{ id: string }>;
    return rows.map((r) => this.party(r.id)!);
  }

  /** A provider's BFV public key (the bytes its blob holds). */
  bfvPublicKey(provider: string): Uint8Array {
    return this.ctx.store.getBlob(this.requireParty(provider, 'provider').bfvPublicKeyBlob!);
  }

  /**
   * Connect a provider's custodian. Its parameter set and BFV public key must match what the provider registered.
   * @throws SH_ERR_PARAMS_MISMATCH, SH_ERR_UNKNOWN_PARTY, SH_ERR_PARTY_ROLE
   */
  connectCustodian(c: Custodian): void {
    const p = this.requireParty(c.provider, 'provider');
    if (c.paramsId !== this.ctx.params.id)
      fail('SH_ERR_PARAMS_MISMATCH', `custodian ${c.provider} uses ${c.paramsId}, engine uses ${this.ctx.params.id}`);
    if (sha256Hex(c.bfvPublicKey) !== p.bfvPublicKeyBlob)
      fail('SH_ERR_PARAMS_MISMATCH', `custodian ${c.provider} holds a different BFV key than the one registered`);
    this.connected.set(c.provider, c);
  }

  /** @throws SH_ERR_UNKNOWN_PARTY when no custodian is connected for the provider */
  custodian(provider: string): Custodian {
    const c = this.connected.get(provider);
    if (!c) fail('SH_ERR_UNKNOWN_PARTY', `no custodian connected for provider ${provider}`, { provider });
    return c;
  }

  /** Whether a custodian is connected for the provider (the server reconnects registered ones lazily). */
  hasCustodian(provider: string): boolean {
    return this.connected.has(provider);
  }

  /** Disconnect every custodian, letting in-process ones free their key material. */
  async disconnectAll(): Promise<void> {
    for (const c of this.connected.values()) await (c as { dispose?: () => Promise<void> }).dispose?.();
    this.connected.clear();
  }
}
