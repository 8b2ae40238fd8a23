/**
 * Client mode pieces not covered by the multi-process e2e test: key files (keygen, public halves, refusal to
 * overwrite), admin registration from public files, an enterprise granting and revoking its own consent over HTTP and
 * reading its access report, and the auditor's own ledger verification catching a rewritten entry.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync, readFileSync, writeFileSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../../engine/engine.ts';
import { BFV_8192_T40 } from '../../engine/he/params.ts';
import { EngineServer, adminKey } from '../../api/server/index.ts';
import {
  Client,
  registerParties,
  grantConsents,
  revokeConsents,
  enterpriseKeys,
  auditVerify,
  accessReport,
} from '../../api/client/index.ts';
import { keygen, keygenEnterprises, readKeyFile, readPublic } from '../../api/keys.ts';
import { randomUscc } from '../../sandbox/uscc.ts';
import { mulberry32 } from '../../core/rng.ts';

let dir: string;
let engine: Engine;
let server: EngineServer;
let url: string;
let admin: Client;
const BANK = 'bank_cm';
const AUDITOR = 'auditor_cm';
let usccs: string[];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sh-client-'));
  engine = Engine.open({ home: join(dir, 'engine'), create: true, poolSize: 1 });
  const ak = adminKey(engine.store.home);
  server = new EngineServer({ engine, adminPublicKey: ak.publicKey });
  url = await server.listen(0);
  admin = new Client(url, readKeyFile(ak.path));
  await keygen('bank', BANK, join(dir, `${BANK}.key`), BFV_8192_T40);
  await keygen('auditor', AUDITOR, join(dir, `${AUDITOR}.key`), BFV_8192_T40);
  usccs = Array.from({ length: 3 }, (_, i) => randomUscc(mulberry32(i + 1)));
  keygenEnterprises(usccs, join(dir, 'ent'));
});

afterAll(async () => {
  await server.close();
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('client mode', () => {
  it('key files: secret 0600, public half beside it, no overwrite; the admin registers from public files', async () => {
    const file = join(dir, `${BANK}.key`);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const pub = JSON.parse(readFileSync(`${file}.pub`, 'utf8')) as Record<string, string>;
    expect(Object.keys(pub).sort()).toEqual(['ed25519', 'id', 'role', 'x25519']);
    expect(readFileSync(`${file}.pub`, 'utf8')).not.toContain('secretKey');
    await expect(keygen('bank', BANK, file, BFV_8192_T40)).rejects.toMatchObject({ code: 'SH_ERR_ALREADY_EXISTS' });
    // A bank cannot register parties; the admin can.
    const bank = new Client(url, readKeyFile(file));
    await expect(registerParties(bank, readPublic(`${file}.pub`))).rejects.toMatchObject({
      code: 'SH_ERR_BAD_SIGNATURE',
    });
    await registerParties(admin, [
      ...readPublic(`${file}.pub`),
      ...readPublic(join(dir, `${AUDITOR}.key.pub`)),
      ...readPublic(join(dir, 'ent')),
    ]);
    expect(engine.registry.party(BANK)?.role).toBe('bank');
    expect(usccs.every((u) => engine.registry.party(u)?.role === 'enterprise')).toBe(true);
    // Now registered, the bank is authenticated but still not an admin.
    await expect(registerParties(bank, readPublic(`${file}.pub`))).rejects.toMatchObject({ code: 'SH_ERR_PARTY_ROLE' });
  });

  it('an enterprise grants and revokes its own consent over HTTP and sees both in its access report', async () => {
    const keyOf = enterpriseKeys(join(dir, 'ent'));
    const [u] = usccs as [string];
    const [c] = await grantConsents(
      url,
      [{ subject: u, bank: BANK, purpose: 'sme_credit_line', categories: ['tax'], operations: ['score'], days: 30 }],
      keyOf,
    );
    expect(engine.consents.of(u, BANK).map((x) => x.statement.id)).toEqual([c!.statement.id]);
    // An enterprise submitting a consent for another subject (signed with its own key) is refused; nothing is stored.
    await expect(
      grantConsents(
        url,
        [{ subject: usccs[1]!, bank: BANK, purpose: 'p', categories: ['tax'], operations: ['score'], days: 1 }],
        () => keyOf(u),
      ),
    ).rejects.toMatchObject({ code: 'SH_ERR_FORBIDDEN' });
    expect(engine.consents.of(usccs[1]!)).toEqual([]);
    // A key directory without the subject's key is a coded error on the client side.
    expect(() => keyOf(randomUscc(mulberry32(99)))).toThrow(expect.objectContaining({ code: 'SH_ERR_UNKNOWN_PARTY' }));
    const ent = new Client(url, keyOf(u));
    expect(await revokeConsents(ent, { bank: BANK })).toEqual([c!.statement.id]);
    const status = engine.consents.statuses(
      { bank: BANK, purpose: 'sme_credit_line', operation: 'score', categories: ['tax'], at: new Date() },
      [u],
    );
    expect(status.get(u)?.status).toBe('REVOKED');
    const report = await ent.get<{ subject: string; entries: Array<{ kind: string }> }>('/v1/enterprise/report');
    expect(report.subject).toBe(u);
    expect(report.entries.map((e) => e.kind)).toEqual(expect.arrayContaining(['consent.granted', 'consent.revoked']));
    // Checked on the enterprise's side: every entry proven included in the signed checkpoint.
    const checked = await accessReport(ent);
    expect(checked.entries.map((e) => e.index)).toEqual(
      report.entries.map((e) => (e as unknown as { index: number }).index),
    );
    await expect(accessReport(ent, '11'.repeat(32))).rejects.toMatchObject({ code: 'SH_ERR_BAD_SIGNATURE' }); // checkpoint not signed by the pinned key
    // An enterprise may fetch inclusion proofs of its own entries only.
    const mine = checked.entries[0]!.index;
    await expect(ent.get(`/v1/auditor/proofs/inclusion?index=${mine}`)).resolves.toMatchObject({ index: mine });
    await expect(ent.get('/v1/auditor/proofs/inclusion?index=0')).rejects.toMatchObject({ code: 'SH_ERR_FORBIDDEN' });
  });

  it('the auditor keeps the last checkpoint it saw and requires each new one to extend it', async () => {
    const auditor = new Client(url, readKeyFile(join(dir, `${AUDITOR}.key`)));
    const state = join(dir, 'auditor.checkpoint.json');
    const first = await auditVerify(auditor, undefined, state);
    expect(first).toMatchObject({ ok: true });
    expect((first as { consistentWith?: number }).consistentWith).toBeUndefined();
    await grantConsents(
      url,
      [
        {
          subject: usccs[2]!,
          bank: BANK,
          purpose: 'sme_credit_line',
          categories: ['tax'],
          operations: ['score'],
          days: 30,
        },
      ],
      enterpriseKeys(join(dir, 'ent')),
    );
    const second = await auditVerify(auditor, undefined, state);
    expect(second).toMatchObject({ ok: true, consistentWith: (first as { size: number }).size });
    expect((second as { size: number }).size).toBeGreaterThan((first as { size: number }).size);
    // A remembered checkpoint the ledger does not extend (another root at that size) is an inconsistency.
    const saved = JSON.parse(readFileSync(state, 'utf8')) as { size: number; root: string };
    writeFileSync(state, JSON.stringify({ ...saved, root: 'ab'.repeat(32) }));
    expect(await auditVerify(auditor, undefined, state)).toMatchObject({
      ok: false,
      code: 'SH_ERR_LEDGER_INCONSISTENT',
    });
    writeFileSync(state, JSON.stringify({ ...saved, size: saved.size + 1000 }));
    expect(await auditVerify(auditor, undefined, state)).toMatchObject({
      ok: false,
      code: 'SH_ERR_LEDGER_INCONSISTENT',
    });
  });

  it('the auditor verifies the ledger on its own side and catches a rewritten entry', async () => {
    const auditor = new Client(url, readKeyFile(join(dir, `${AUDITOR}.key`)));
    const ok = await auditVerify(auditor);
    expect(ok).toMatchObject({ ok: true });
    const size = (ok as { size: number }).size;
    expect(size).toBe(engine.ledger.size());
    // A wrong pinned engine key is caught at entry 0.
    expect(await auditVerify(auditor, '00'.repeat(32))).toMatchObject({
      ok: false,
      code: 'SH_ERR_LEDGER_TAMPERED',
      index: 0,
    });
    // Rewrite one entry's body behind the engine's back: the served entries no longer hash to the signed root.
    const row = engine.store.db.prepare('SELECT idx, body FROM ledger_entries WHERE idx = 1').get() as {
      idx: number;
      body: string;
    };
    engine.store.db.prepare('UPDATE ledger_entries SET body = ? WHERE idx = 1').run(`${row.body} `);
    try {
      expect(await auditVerify(auditor)).toMatchObject({ ok: false, code: 'SH_ERR_LEDGER_TAMPERED' });
    } finally {
      engine.store.db.prepare('UPDATE ledger_entries SET body = ? WHERE idx = 1').run(row.body);
    }
    expect(existsSync(join(dir, 'engine', 'admin.key'))).toBe(true);
  });
});
