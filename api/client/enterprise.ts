/**
 * Client mode, the enterprise's side: grant and revoke its own consents (each signed by its own key) and read its
 * access report, every entry checked against its inclusion proof and a signed checkpoint.
 */
import { join } from 'node:path';
import { existsSync, statSync } from 'node:fs';
import { fail } from '../../core/errors.ts';
import { hexToBytes } from '../../core/sign.ts';
import { createConsent, createRevocation, type SignedConsent } from '../../sandbox/consent.ts';
import { parseUscc } from '../../sandbox/uscc.ts';
import { leafHash, verifyInclusion } from '../../engine/ledger/merkle.ts';
import { verifyCheckpoint } from '../../engine/ledger/checkpoint.ts';
import { readKeyFile } from '../keys.ts';
import type { PartyKeys } from '../wallet.ts';
import type { ConsentGrant } from '../embedded.ts';
import type { AccessEntry, AccessReport } from '../../engine/audit/report.ts';
import { Client } from './http.ts';

// ---------------------------------------------------------------- enterprise

/** Grant consents, each signed by its enterprise with its own key (`keyOf`), one request per enterprise. */
export async function grantConsents(
  server: string,
  grants: readonly ConsentGrant[],
  keyOf: (uscc: string) => PartyKeys,
): Promise<SignedConsent[]> {
  const bySubject = new Map<string, SignedConsent[]>();
  const out: SignedConsent[] = [];
  for (const g of grants) {
    const subject = parseUscc(g.subject);
    const k = keyOf(subject);
    if (!Number.isFinite(g.days) || g.days <= 0)
      fail('SH_ERR_CONSENT_INVALID', `"days" expected a positive number, got ${g.days}`);
    const nb = g.notBefore ?? new Date();
    const c = createConsent(
      {
        subject,
        grantee: g.bank,
        purpose: g.purpose,
        categories: g.categories,
        operations: g.operations,
        notBefore: nb,
        notAfter: new Date(nb.getTime() + g.days * 86_400_000),
      },
      k.ed25519.secretKey,
    );
    bySubject.set(subject, [...(bySubject.get(subject) ?? []), c]);
    out.push(c);
  }
  for (const [subject, consents] of bySubject) {
    const c = new Client(server, keyOf(subject));
    for (let i = 0; i < consents.length; i += 1000)
      await c.post('/v1/enterprise/consents', { consents: consents.slice(i, i + 1000) });
  }
  return out;
}

export async function revokeConsents(ent: Client, sel: { consentId?: string; bank?: string }): Promise<string[]> {
  const { consents } = await ent.get<{ consents: SignedConsent[] }>('/v1/enterprise/consents');
  const targets = consents.filter((c) =>
    sel.consentId ? c.statement.id === sel.consentId : c.statement.grantee === sel.bank,
  );
  if (targets.length === 0)
    fail(
      'SH_ERR_CONSENT_NOT_FOUND',
      sel.consentId ? `no consent ${sel.consentId} of ${ent.id}` : `no consent of ${ent.id} for ${sel.bank}`,
    );
  await ent.post('/v1/enterprise/revocations', {
    revocations: targets.map((t) => createRevocation(t.statement.id, ent.id, ent.keys.ed25519.secretKey, new Date())),
  });
  return targets.map((t) => t.statement.id);
}

/** A directory of `<USCC>.key` files, or a single enterprise key file. */
export function enterpriseKeys(path: string): (uscc: string) => PartyKeys {
  const cache = new Map<string, PartyKeys>();
  return (uscc) => {
    let k = cache.get(uscc);
    if (!k) {
      const isDir = existsSync(path) && statSync(path).isDirectory();
      if (isDir && !existsSync(join(path, `${uscc}.key`)))
        fail('SH_ERR_UNKNOWN_PARTY', `no key for enterprise ${uscc} in ${path}`, { party: uscc });
      k = readKeyFile(isDir ? join(path, `${uscc}.key`) : path);
      if (k.id !== uscc) fail('SH_ERR_UNKNOWN_PARTY', `no key for enterprise ${uscc} in ${path}`, { party: uscc });
      cache.set(uscc, k);
    }
    return k;
  };
}

export async function accessReport(
  ent: Client,
  engineKey?: string,
): Promise<{ subject: string; size: number; entries: Array<Omit<AccessEntry, 'leaf' | 'proof'>> }> {
  const info = await ent.info();
  const r = await ent.get<AccessReport>('/v1/enterprise/report');
  const cp = verifyCheckpoint(r.checkpoint, info.ledgerOrigin, hexToBytes(engineKey ?? info.engine.ed25519));
  for (const e of r.entries) {
    const leaf = leafHash(new TextEncoder().encode(e.leaf));
    if (!verifyInclusion(leaf, e.index, cp.size, e.proof.map(hexToBytes), cp.rootHash))
      fail('SH_ERR_LEDGER_TAMPERED', `report entry ${e.index} is not included in checkpoint ${cp.size}`, {
        index: e.index,
      });
    const parsed = JSON.parse(e.leaf) as { kind?: string };
    if (parsed.kind !== e.kind)
      fail('SH_ERR_LEDGER_TAMPERED', `report entry ${e.index} does not match its leaf`, { index: e.index });
  }
  return {
    subject: r.subject,
    size: cp.size,
    entries: r.entries.map(({ leaf: _leaf, proof: _proof, ...rest }) => rest),
  };
}
