/**
 * Key files for networked parties: what each party keeps on its own systems when it talks to a Safehouse
 * server instead of sharing an embedded wallet.
 *
 * - A party key file (`bank1.key`): JSON `{ id, role, ed25519: { secretKey, publicKey }, x25519?: {…} }`, hex, 0600.
 *   Its public half is written beside it as `bank1.key.pub` (`{ id, role, ed25519, x25519? }`) for the admin.
 * - A provider key directory: `key.json` (as above), `bfv.sk`, `bfv.pk`, `oprf.sk`, `oprf.pk`, `public.json` (with
 *   `bfvPublicKey` base64 and `oprfPublicKey` hex), the provider's own encoded tables `<category>.json` and the
 *   custodian's log. The provider's CLI (ingest, approve) and its custodian process use the same directory.
 * - An enterprise key directory: one `<USCC>.key` per enterprise, for bulk consent grants.
 * JavaScript cannot wipe key copies the GC may have made; treat these files as secret.
 */
import { join, dirname } from 'node:path';
import { existsSync, mkdirSync, readFileSync, writeFileSync, renameSync, statSync, readdirSync } from 'node:fs';
import { fail } from '../core/errors.ts';
import { ed25519KeyPair, bytesToHex, hexToBytes } from '../core/sign.ts';
import { x25519KeyPair } from '../core/sealbox.ts';
import { generateOprfKeyPair } from '../engine/tokens/oprf.ts';
import { ProviderAgent } from '../engine/provider/agent.ts';
import { parseUscc } from '../sandbox/uscc.ts';
import type { ParamSet } from '../engine/he/params.ts';
import type { PartyKeys, Role } from './wallet.ts';

export interface PublicKeys {
  id: string;
  role: string;
  ed25519: string;
  x25519?: string;
  bfvPublicKey?: string;
  oprfPublicKey?: string;
}

function writeSecret(path: string, data: Uint8Array | string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, data, { mode: 0o600 });
  renameSync(tmp, path);
}

function keyJson(k: PartyKeys): string {
  return (
    JSON.stringify(
      {
        id: k.id,
        role: k.role,
        ed25519: { secretKey: bytesToHex(k.ed25519.secretKey), publicKey: bytesToHex(k.ed25519.publicKey) },
        ...(k.x25519
          ? { x25519: { secretKey: bytesToHex(k.x25519.secretKey), publicKey: bytesToHex(k.x25519.publicKey) } }
          : {}),
      },
      null,
      2,
    ) + '\n'
  );
}

function publicOf(k: PartyKeys): PublicKeys {
  return {
    id: k.id,
    role: k.role,
    ed25519: bytesToHex(k.ed25519.publicKey),
    ...(k.x25519 ? { x25519: bytesToHex(k.x25519.publicKey) } : {}),
  };
}

function fresh(id: string, role: Role): PartyKeys {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/.test(id))
    fail('SH_ERR_INVALID_ARGUMENT', `"id" expected a party id, got ${JSON.stringify(id)}`);
  if (role === 'enterprise') parseUscc(id);
  const x = role === 'bank' || role === 'auditor' ? x25519KeyPair() : undefined;
  return { id, role, ed25519: ed25519KeyPair(), ...(x ? { x25519: x } : {}) };
}

/**
 * `safehouse keygen`: a party key file (banks, auditors, enterprises) or a provider key directory (with BFV and OPRF
 * keys). Refuses to overwrite. Returns the public keys to hand to the admin.
 */
export async function keygen(role: Role, id: string, out: string, params: ParamSet): Promise<PublicKeys> {
  const k = fresh(id, role);
  if (role === 'provider') {
    if (existsSync(join(out, 'key.json'))) fail('SH_ERR_ALREADY_EXISTS', `${out} already holds provider keys`);
    const bfv = await ProviderAgent.generateBfvKeys(params);
    const oprf = generateOprfKeyPair();
    writeSecret(join(out, 'key.json'), keyJson(k));
    writeSecret(join(out, 'bfv.sk'), bfv.secretKey);
    writeSecret(join(out, 'bfv.pk'), bfv.publicKey);
    writeSecret(join(out, 'oprf.sk'), oprf.secretKey);
    writeSecret(join(out, 'oprf.pk'), oprf.publicKey);
    bfv.secretKey.fill(0);
    const pub: PublicKeys = {
      ...publicOf(k),
      bfvPublicKey: Buffer.from(bfv.publicKey).toString('base64'),
      oprfPublicKey: bytesToHex(oprf.publicKey),
    };
    writeFileSync(join(out, 'public.json'), JSON.stringify(pub) + '\n');
    return pub;
  }
  if (existsSync(out)) fail('SH_ERR_ALREADY_EXISTS', `${out} already exists`);
  writeSecret(out, keyJson(k));
  const pub = publicOf(k);
  writeFileSync(`${out}.pub`, JSON.stringify(pub) + '\n');
  return pub;
}

/** Many enterprise key files at once (`<dir>/<USCC>.key`), for demos and bulk real-name registration. */
export function keygenEnterprises(usccs: readonly string[], dir: string): PublicKeys[] {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return usccs.map((u) => {
    const id = parseUscc(u);
    const path = join(dir, `${id}.key`);
    if (existsSync(path)) return publicOf(readKeyFile(path));
    const k = fresh(id, 'enterprise');
    writeSecret(path, keyJson(k));
    return publicOf(k);
  });
}

/** Read a party key file, or `key.json` of a key directory. @throws SH_ERR_INVALID_ARGUMENT */
export function readKeyFile(path: string): PartyKeys {
  const file = existsSync(path) && statSync(path).isDirectory() ? join(path, 'key.json') : path;
  let j: {
    id?: unknown;
    role?: unknown;
    ed25519?: { secretKey?: unknown; publicKey?: unknown };
    x25519?: { secretKey?: unknown; publicKey?: unknown };
  };
  try {
    j = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    return fail('SH_ERR_INVALID_ARGUMENT', `cannot read key file ${file}`, { option: 'key' }, err);
  }
  const hex = (v: unknown, n: number, what: string) => {
    if (typeof v !== 'string' || !new RegExp(`^[0-9a-f]{${2 * n}}$`).test(v))
      fail('SH_ERR_INVALID_ARGUMENT', `key file ${file}: "${what}" expected ${n} bytes of hex`, { option: 'key' });
    return hexToBytes(v as string);
  };
  if (typeof j.id !== 'string' || typeof j.role !== 'string')
    fail('SH_ERR_INVALID_ARGUMENT', `key file ${file}: "id" and "role" are required`, { option: 'key' });
  return {
    id: j.id as string,
    role: j.role as Role,
    ed25519: {
      secretKey: hex(j.ed25519?.secretKey, 32, 'ed25519.secretKey'),
      publicKey: hex(j.ed25519?.publicKey, 32, 'ed25519.publicKey'),
    },
    ...(j.x25519
      ? {
          x25519: {
            secretKey: hex(j.x25519.secretKey, 32, 'x25519.secretKey'),
            publicKey: hex(j.x25519.publicKey, 32, 'x25519.publicKey'),
          },
        }
      : {}),
  };
}

/** Public keys to register: a `.pub` file, a provider directory's `public.json`, or every `*.key` of a directory. */
export function readPublic(path: string): PublicKeys[] {
  if (existsSync(path) && statSync(path).isDirectory()) {
    if (existsSync(join(path, 'public.json')))
      return [JSON.parse(readFileSync(join(path, 'public.json'), 'utf8')) as PublicKeys];
    return readdirSync(path)
      .filter((f) => f.endsWith('.key'))
      .sort()
      .map((f) => publicOf(readKeyFile(join(path, f))));
  }
  try {
    return [JSON.parse(readFileSync(path, 'utf8')) as PublicKeys];
  } catch (err) {
    return fail('SH_ERR_INVALID_ARGUMENT', `cannot read public key file ${path}`, { option: 'public' }, err);
  }
}

/** A provider key directory's secrets for its agent and custodian. */
export function providerKeys(dir: string): {
  party: PartyKeys;
  bfvSecretKey: Uint8Array;
  bfvPublicKey: Uint8Array;
  oprfSecretKey: Uint8Array;
  oprfPublicKey: Uint8Array;
} {
  const party = readKeyFile(dir);
  if (party.role !== 'provider')
    fail('SH_ERR_PARTY_ROLE', `${dir} holds keys of a ${party.role}, not a provider`, { party: party.id });
  const read = (f: string) => {
    const p = join(dir, f);
    if (!existsSync(p))
      fail('SH_ERR_INVALID_ARGUMENT', `provider key directory ${dir} has no ${f}`, { option: 'keys' });
    return new Uint8Array(readFileSync(p));
  };
  return {
    party,
    bfvSecretKey: read('bfv.sk'),
    bfvPublicKey: read('bfv.pk'),
    oprfSecretKey: read('oprf.sk'),
    oprfPublicKey: read('oprf.pk'),
  };
}

export { writeSecret };
