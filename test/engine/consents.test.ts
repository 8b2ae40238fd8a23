/**
 * Consents.jobStatuses (the in-memory consent index, engine/consent-index.ts) gives exactly the answers of
 * Consents.statuses (rows read and judged in SQLite) for every status (docs/design.md §6): OK, NO_CONSENT, EXPIRED,
 * REVOKED, OUT_OF_SCOPE, BAD_SIGNATURE (a stored statement altered behind the engine), unregistered subjects, several
 * consents per subject; and it stays coherent with the store — the engine's own grants and revocations applied in
 * place, any other connection's writes (rows, keys) seen by the next job.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Safehouse } from '../../api/embedded.ts';
import { randomUscc } from '../../sandbox/uscc.ts';
import { mulberry32 } from '../../core/rng.ts';

const BANK = 'bank_p';
const DAY = 86_400_000;
let home: string;
let sh: Safehouse;
const subjects: string[] = [];

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'safehouse-consent-par-'));
  sh = await Safehouse.open({ home, create: true, poolSize: 2 });
  await sh.addParty('bank', BANK);
  const rnd = mulberry32(5);
  const seen = new Set<string>();
  while (subjects.length < 4100) {
    const u = randomUscc(rnd);
    if (!seen.has(u)) {
      seen.add(u);
      subjects.push(u);
    }
  }
  const now = sh.engine.now();
  const grants = [];
  for (const [i, u] of subjects.entries()) {
    const kind = i % 7;
    if (kind === 0) continue; // NO_CONSENT (and unregistered)
    const base = {
      subject: u,
      bank: BANK,
      purpose: 'sme_credit_line',
      categories: ['tax', 'utilities'],
      operations: ['score' as const],
      days: 30,
    };
    if (kind === 1)
      grants.push({ ...base, notBefore: new Date(now.getTime() - 90 * DAY) }); // EXPIRED
    else if (kind === 2)
      grants.push({ ...base, categories: ['tax'] }); // OUT_OF_SCOPE for tax + utilities
    else if (kind === 3)
      grants.push(base, { ...base, operations: ['verify' as const] }); // two consents, one fits
    else grants.push(base);
  }
  sh.grantConsents(grants);
  for (const [i, u] of subjects.entries()) if (i % 7 === 4 && i % 3 === 0) sh.revoke({ subject: u, bank: BANK }); // REVOKED
  // BAD_SIGNATURE: a stored statement altered behind the engine's back.
  const victims = subjects.filter((_, i) => i % 7 === 5 && i % 2 === 0);
  const upd = sh.engine.store.db.prepare(
    'UPDATE consents SET signed_json = replace(signed_json, \'"purpose":"sme_credit_line"\', \'"purpose":"sme_credit_linf"\') WHERE subject = ?',
  );
  for (const u of victims) upd.run(u);
}, 240_000);

afterAll(async () => {
  await sh?.close();
  rmSync(home, { recursive: true, force: true });
});

describe('the consent index', () => {
  it('equals consentStatuses for every subject and status, across chunk boundaries', async () => {
    const req = {
      bank: BANK,
      purpose: 'sme_credit_line',
      operation: 'score' as const,
      categories: ['tax', 'utilities'],
      at: sh.engine.now(),
    };
    const stranger = randomUscc(mulberry32(99));
    const list = [...subjects, stranger];
    const par = sh.engine.consents.jobStatuses(req, list);
    const seq = sh.engine.consents.statuses(req, list);
    expect([...par.keys()]).toEqual(list);
    expect(par).toEqual(seq);
    const counts: Record<string, number> = {};
    for (const v of par.values()) counts[v.status] = (counts[v.status] ?? 0) + 1;
    for (const st of ['OK', 'NO_CONSENT', 'EXPIRED', 'REVOKED', 'OUT_OF_SCOPE', 'BAD_SIGNATURE'])
      expect(counts[st], st).toBeGreaterThan(10);
    // Both equal what the fixture made of each subject, not only each other.
    const planned = (i: number): string => {
      switch (i % 7) {
        case 0:
          return 'NO_CONSENT';
        case 1:
          return 'EXPIRED';
        case 2:
          return 'OUT_OF_SCOPE';
        case 4:
          return i % 3 === 0 ? 'REVOKED' : 'OK';
        case 5:
          return i % 2 === 0 ? 'BAD_SIGNATURE' : 'OK';
        default:
          return 'OK';
      }
    };
    subjects.forEach((u, i) => expect(par.get(u)!.status, `subject ${i}`).toBe(planned(i)));
    expect(par.get(stranger)).toEqual({ status: 'NO_CONSENT' });
  });

  it('another bank, purpose or operation changes the answers the same way', async () => {
    for (const req of [
      {
        bank: 'bank_other',
        purpose: 'sme_credit_line',
        operation: 'score' as const,
        categories: ['tax'],
        at: sh.engine.now(),
      },
      { bank: BANK, purpose: 'other_purpose', operation: 'score' as const, categories: ['tax'], at: sh.engine.now() },
      {
        bank: BANK,
        purpose: 'sme_credit_line',
        operation: 'verify' as const,
        categories: ['tax'],
        at: sh.engine.now(),
      },
    ]) {
      const some = subjects.slice(0, 300);
      expect(sh.engine.consents.jobStatuses(req, some)).toEqual(sh.engine.consents.statuses(req, some));
    }
  });

  it('jobSubjects: the same statuses, and the same slots as subjectSlots (rows present, missing cells, absent subjects)', async () => {
    await sh.addParty('provider', 'tax_p');
    const rows = subjects.filter((_, i) => i % 5 !== 1); // some subjects have no row
    const csv =
      [
        'uscc,months_continuous_tax,tax_arrears',
        ...rows.map((u, i) => `${u},${i % 11 === 0 ? '' : i % 120},${i % 2 ? 'true' : 'false'}`),
      ].join('\n') + '\n';
    const up = await sh.ingest(
      'tax_p',
      { category: 'tax', fields: [{ name: 'months_continuous_tax' }, { name: 'tax_arrears' }] },
      csv,
    );
    const req = {
      bank: BANK,
      purpose: 'sme_credit_line',
      operation: 'score' as const,
      categories: ['tax', 'utilities'],
      at: sh.engine.now(),
    };
    const got = sh.engine.consents.jobSubjects(req, subjects, [up.datasetId, up.datasetId]);
    expect(got.consent).toEqual(sh.engine.consents.statuses(req, subjects));
    const want = sh.engine.datasets.subjectSlots(up.datasetId, subjects);
    expect(want.size).toBe(rows.length);
    expect([...want.values()].some((x) => x.missing.size > 0)).toBe(true);
    for (const slots of got.slots) expect(slots).toEqual(want);
    // slotsOf 'OK': the same slots, for subjects whose consent is OK only.
    const okOnly = sh.engine.consents.jobSubjects(req, subjects, [up.datasetId], { slotsOf: 'OK' });
    const okSubjects = subjects.filter((u) => got.consent.get(u)!.status === 'OK');
    expect(okOnly.slots[0]).toEqual(new Map([...want].filter(([u]) => okSubjects.includes(u))));
    expect(okOnly.slots[0]!.size).toBeLessThan(want.size);
  });

  it("each signature is verified once: a recorded row counts only while its statement and the subject's key are unchanged", async () => {
    const req = {
      bank: BANK,
      purpose: 'sme_credit_line',
      operation: 'score' as const,
      categories: ['tax', 'utilities'],
      at: sh.engine.now(),
    };
    const u = subjects.find((_, i) => i % 7 === 6)!;
    expect(sh.engine.consents.statuses(req, [u]).get(u)!.status).toBe('OK');
    // The operator swaps the subject's key in the registry: the row's recorded hash no longer matches, the signature
    // is checked again against the new key, and fails.
    const row = sh.engine.store.db.prepare('SELECT ed25519_pub FROM parties WHERE id = ?').get(u) as {
      ed25519_pub: string;
    };
    const other = sh.engine.store.db.prepare('SELECT ed25519_pub FROM parties WHERE id = ?').get(subjects[1]!) as {
      ed25519_pub: string;
    };
    sh.engine.store.db.prepare('UPDATE parties SET ed25519_pub = ? WHERE id = ?').run(other.ed25519_pub, u);
    try {
      expect(sh.engine.consents.statuses(req, [u]).get(u)!.status).toBe('BAD_SIGNATURE');
      expect(sh.engine.consents.jobStatuses(req, [u]).get(u)!.status).toBe('BAD_SIGNATURE');
    } finally {
      sh.engine.store.db.prepare('UPDATE parties SET ed25519_pub = ? WHERE id = ?').run(row.ed25519_pub, u);
    }
    expect(sh.engine.consents.statuses(req, [u]).get(u)!.status).toBe('OK');
  });

  it("stays coherent: the engine's own grants and revocations, and another connection's writes, reach the next job", async () => {
    const req = {
      bank: BANK,
      purpose: 'sme_credit_line',
      operation: 'score' as const,
      categories: ['tax'],
      at: new Date(sh.engine.now().getTime() + 60_000), // after the grant below
    };
    const u = subjects[0]!; // no consent in the fixture
    expect(sh.engine.consents.jobStatuses(req, [u]).get(u)!.status).toBe('NO_CONSENT');
    sh.grantConsents([
      { subject: u, bank: BANK, purpose: 'sme_credit_line', categories: ['tax'], operations: ['score'], days: 30 },
    ]);
    expect(sh.engine.consents.jobStatuses(req, [u]).get(u)!.status).toBe('OK');
    sh.revoke({ subject: u, bank: BANK });
    expect(sh.engine.consents.jobStatuses(req, [u]).get(u)!.status).toBe('REVOKED');
    // Another connection (another engine process on the same store) deletes the revocation and alters a consent.
    const v = subjects.find((_, i) => i % 7 === 6)!;
    expect(sh.engine.consents.jobStatuses(req, [v]).get(v)!.status).toBe('OK');
    const other = new DatabaseSync(sh.engine.store.dbPath);
    try {
      other.prepare('DELETE FROM revocations WHERE subject = ?').run(u);
      other
        .prepare(
          'UPDATE consents SET signed_json = replace(signed_json, \'"purpose":"sme_credit_line"\', \'"purpose":"sme_credit_lin"\') WHERE subject = ?',
        )
        .run(v);
    } finally {
      other.close();
    }
    const after = sh.engine.consents.jobStatuses(req, [u, v]);
    expect(after).toEqual(sh.engine.consents.statuses(req, [u, v]));
    expect(after.get(u)!.status).toBe('OK');
    expect(after.get(v)!.status).toBe('BAD_SIGNATURE');
  });

  it('an empty subject list', async () => {
    expect(
      sh.engine.consents.jobStatuses(
        { bank: BANK, purpose: 'sme_credit_line', operation: 'score', categories: ['tax'], at: sh.engine.now() },
        [],
      ).size,
    ).toBe(0);
  });
});
