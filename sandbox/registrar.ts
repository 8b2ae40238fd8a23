/**
 * The registrar (docs/trust.md): the identity authority that certifies who holds a key — real-name registration of a
 * bank or an enterprise (for an enterprise, standing in for its 电子营业执照 / electronic business licence). It is not
 * the platform: the engine stores and ledgers certificates, but every custodian checks them with the registrar key it
 * pins itself, so an operator that registers its own key for a USCC or invents a bank gains nothing.
 *
 * A certificate is an Ed25519-signed statement (RFC 8785 canonical JSON, core/sign.ts) binding a party id (a bank's
 * id, an enterprise's USCC) to its role, its Ed25519 key, a bank's X25519 sealing key and its group (legal entity:
 * every identity of one bank shares it, so budgets count per group whatever identities the bank holds).
 */
import { fail } from '../core/errors.ts';
import { bytesToHex, signJson, verifyJson, type Signed } from '../core/sign.ts';

export const CERTIFICATE_TYPE = 'safehouse.registrar.certificate.v1';

export interface CertificateBody {
  type: typeof CERTIFICATE_TYPE;
  /** Party id: a bank's id or an enterprise's USCC. */
  party: string;
  role: 'bank' | 'enterprise';
  /** Lowercase hex Ed25519 public key. */
  ed25519: string;
  /** Banks: lowercase hex X25519 key that results are sealed to. */
  x25519?: string;
  /** Banks: the group (legal entity). */
  group?: string;
  issuedAt: string;
}

export type Certificate = Signed<CertificateBody>;

/** The registrar signs a certificate (its id is the signer). */
export function issueCertificate(
  p: { party: string; role: 'bank' | 'enterprise'; ed25519: Uint8Array; x25519?: Uint8Array; group?: string },
  registrar: { id: string; secretKey: Uint8Array },
  at: Date = new Date(),
): Certificate {
  const body: CertificateBody = {
    type: CERTIFICATE_TYPE,
    party: p.party,
    role: p.role,
    ed25519: bytesToHex(p.ed25519),
    ...(p.x25519 ? { x25519: bytesToHex(p.x25519) } : {}),
    ...(p.role === 'bank' ? { group: p.group ?? p.party } : {}),
    issuedAt: at.toISOString(),
  };
  return signJson(body, registrar.id, registrar.secretKey);
}

/**
 * The certificate's body if `cert` is a registrar-signed certificate of `party` in `role` for exactly these keys;
 * undefined otherwise (never throws: a custodian following the ledger skips what it cannot trust).
 */
export function checkCertificate(
  cert: unknown,
  registrarKey: Uint8Array,
  want: { party: string; role: 'bank' | 'enterprise'; ed25519?: string },
): CertificateBody | undefined {
  const c = cert as Certificate | undefined;
  const b = c?.body;
  if (!b || typeof b !== 'object' || b.type !== CERTIFICATE_TYPE) return undefined;
  if (b.party !== want.party || b.role !== want.role) return undefined;
  if (typeof b.ed25519 !== 'string' || !/^[0-9a-f]{64}$/.test(b.ed25519)) return undefined;
  if (want.ed25519 !== undefined && b.ed25519 !== want.ed25519) return undefined;
  if (b.role === 'bank' && (typeof b.x25519 !== 'string' || !/^[0-9a-f]{64}$/.test(b.x25519))) return undefined;
  if (b.role === 'bank' && (typeof b.group !== 'string' || b.group.length === 0 || b.group.length > 64))
    return undefined;
  try {
    return verifyJson(c!, registrarKey) ? b : undefined;
  } catch {
    return undefined;
  }
}

/** As checkCertificate, throwing the reason. @throws SH_ERR_CERT_INVALID */
export function requireCertificate(
  cert: unknown,
  registrarKey: Uint8Array,
  want: { party: string; role: 'bank' | 'enterprise'; ed25519: string; x25519?: string; group?: string },
): CertificateBody {
  const b = checkCertificate(cert, registrarKey, want);
  if (!b)
    fail(
      'SH_ERR_CERT_INVALID',
      `${want.role} ${want.party}: no certificate from the registrar binds this key (real-name registration first)`,
      { party: want.party },
    );
  if (want.x25519 !== undefined && b.x25519 !== want.x25519)
    fail('SH_ERR_CERT_INVALID', `bank ${want.party}: the certificate names a different X25519 key`, {
      party: want.party,
    });
  if (want.group !== undefined && b.group !== want.group)
    fail('SH_ERR_CERT_INVALID', `bank ${want.party}: the certificate names group ${b.group}, not ${want.group}`, {
      party: want.party,
    });
  return b;
}
