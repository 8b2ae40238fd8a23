/**
 * A malicious platform operator (docs/trust.md): it holds the engine's keys and database and may collude with a bank.
 * Each attack goes through the real custodian interface with requests signed by the engine's key, or edits the
 * engine's own store as an insider would; the provider's custodian must refuse from its own state:
 *  1. a bank-signed job the engine never ledgered → SH_ERR_JOB_NOT_LEDGERED;
 *  2. sealing to the operator's own X25519 key instead of the bank's certified one → SH_ERR_RECIPIENT;
 *  3. a score label for a block that holds none of the job's subjects → refused;
 *  4. an enterprise key the operator registered itself (no registrar certificate) and a consent signed with it →
 *     the engine says OK, the custodian says NO_CONSENT and blinds the slot, so the unmask value decodes noise;
 *  5. a revocation the operator hides from the engine's consent check → the custodian saw it in the ledger: REVOKED;
 *  6. a ledger copy with the revocation leaf dropped → SH_ERR_LEDGER_INCONSISTENT;
 *  7. a training sum over groups of one subject → refused (the protocol fixes the size from the declared bound);
 *  8. a domain transfer re-encrypting a provider's column under the operator's own BFV key → refused;
 *  9. a raw column sent under a score label to the bank's own certified key (engine + bank colluding) → refused:
 *     the custodian checks every answered slot against the approved model's partial score on its own records.
 * Before this issue the custodian took bank keys and consents on the engine's word, sealed to any recipient named,
 * accepted any group size and block number, and answered any job shown to it: each of these attacks got values.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { canonicalize } from '../../core/jcs.ts';
import { sha256Hex } from '../../core/hash.ts';
import { bytesToHex, ed25519KeyPair, signJson, type Signed } from '../../core/sign.ts';
import { x25519KeyPair } from '../../core/sealbox.ts';
import { createConsent } from '../../sandbox/consent.ts';
import { buildScoreRequest } from '../../engine/protocols/score/bank.ts';
import { feedCustodian } from '../../engine/protocols/job.ts';
import { LEDGER_ORIGIN } from '../../engine/engine.ts';
import type { Custodian, DecryptRequest, TransferRequest } from '../../engine/custodian/messages.ts';
import { BlockOps } from '../../engine/he/block.ts';
import { heContext } from '../../engine/he/params.ts';
import { ProviderAgent } from '../../engine/provider/agent.ts';
import { iterationLabel, labelCheckLabel, transferLabel } from '../../engine/protocols/train/messages.ts';
import { PROPERTY, SECRET, captureSeeds, readEverySlot, replay, truth } from './fixture.ts';
import { BANK, PURPOSE, TAX, codeOf, linear, openWorld, type World } from './fixture.ts';

let w: World;
let tax: Custodian;
const WEIGHTS = { vat_paid_12m: '0.001', cit_paid_12m: '0.002', taxable_sales_12m: '0.0001' };
const MODEL = linear('me-1', WEIGHTS);

beforeAll(async () => {
  // A training cohort of 60 is allowed here (the provider's minimum, 200 by default, is tested in test/attacks/train).
  w = await openWorld({ subjects: 60, policy: { minTrainingCohort: 20 } });
  w.sh.registerModel(BANK, MODEL);
  await w.sh.approveModel(TAX, MODEL.id);
  tax = w.sh.engine.registry.custodian(TAX);
}, 120_000);
afterAll(async () => w?.close());

const bankKey = () => w.sh.wallet.require(BANK, 'bank').ed25519.secretKey;
const scoreRequest = (subjects: string[]) =>
  buildScoreRequest(
    {
      jobId: w.sh.engine.jobs.newId('score'),
      bank: BANK,
      modelId: MODEL.id,
      modelHash: w.sh.engine.models.get(MODEL.id)!.hash,
      purpose: PURPOSE,
      subjects,
      requestedAt: w.sh.engine.now().toISOString(),
    },
    bankKey(),
  );
/** The operator ledgers a request itself (as the engine would) and feeds the custodian. */
async function ledger(job: Signed<{ jobId: string }>): Promise<string> {
  const jobHash = sha256Hex(canonicalize(job));
  w.sh.engine.ledger.append('job.requested', { jobId: job.body.jobId, jobHash });
  await feedCustodian(w.sh.engine, TAX);
  return jobHash;
}
const datasetId = () => w.sh.engine.datasets.withField(TAX, 'vat_paid_12m')!.id;
const engineSigned = (body: Omit<DecryptRequest, 'type' | 'paramsId' | 'provider'>) =>
  signJson<DecryptRequest>(
    { type: 'safehouse.custodian.decrypt.v1', paramsId: w.sh.engine.params.id, provider: TAX, ...body },
    'engine',
    w.sh.engine.keys.ed25519.secretKey,
  );

describe('a malicious engine against the provider’s custodian', () => {
  it('a fresh bank-signed job that is not in the ledger is not opened', async () => {
    const job = scoreRequest(w.subjects.slice(0, 5));
    await feedCustodian(w.sh.engine, TAX);
    expect(await codeOf(() => tax.openJob(job))).toBe('SH_ERR_JOB_NOT_LEDGERED');
    await ledger(job);
    expect(await codeOf(() => tax.openJob(job))).toBeUndefined();
  });

  it("seals only to the signing bank's certified key; a block without the job's subjects is refused", async () => {
    const job = scoreRequest(w.subjects.slice(0, 5));
    const jobHash = await ledger(job);
    await tax.openJob(job);
    const operator = x25519KeyPair();
    const ct = new Uint8Array(randomBytes(64)); // never parsed: the recipient is checked first
    const req = (label: string, recipient: { party: string; x25519: string }) =>
      engineSigned({
        jobId: job.body.jobId,
        jobHash,
        label,
        mode: 'seal',
        ciphertext: sha256Hex(ct),
        recipient,
      });
    const own = req(`score/${TAX}/${datasetId()}/block/0`, { party: BANK, x25519: bytesToHex(operator.publicKey) });
    expect(await codeOf(() => tax.decrypt(own, ct))).toBe('SH_ERR_RECIPIENT');
    const renamed = req(`score/${TAX}/${datasetId()}/block/0`, {
      party: 'operator',
      x25519: bytesToHex(operator.publicKey),
    });
    expect(await codeOf(() => tax.decrypt(renamed, ct))).toBe('SH_ERR_RECIPIENT');
    // The bank's certified key, but a block with none of the job's subjects (60 subjects: all in block 0).
    const elsewhere = req(`score/${TAX}/${datasetId()}/block/3`, {
      party: BANK,
      x25519: bytesToHex(w.sh.wallet.require(BANK, 'bank').x25519!.publicKey),
    });
    expect(await codeOf(() => tax.decrypt(elsewhere, ct))).toBe('SH_ERR_PARAMS_MISMATCH');
    // The custodian's log says so (the provider's own evidence).
    const log = (await import('node:fs')).readFileSync(`${w.sh.wallet.providerDir(TAX)}/custodian.log`, 'utf8');
    expect(log).toContain('"refused":"SH_ERR_RECIPIENT"');
  });

  it('an enterprise key the operator registered itself buys no consent: the custodian blinds the subject', async () => {
    // The operator swaps a subject's key in its own registry and signs a consent for a new purpose with it.
    const u = w.subjects[10]!;
    const fake = ed25519KeyPair();
    w.sh.engine.store.db.prepare('UPDATE parties SET ed25519_pub = ? WHERE id = ?').run(bytesToHex(fake.publicKey), u);
    const now = w.sh.engine.now();
    const forged = createConsent(
      {
        subject: u,
        grantee: BANK,
        purpose: 'operator_purpose',
        categories: ['tax'],
        operations: ['score'],
        notBefore: now,
        notAfter: new Date(now.getTime() + 86_400_000),
      },
      fake.secretKey,
    );
    w.sh.engine.consents.add([forged]); // the engine's own check passes: the key is the one it holds
    const seeds = captureSeeds(w);
    const res = await w.sh.score(BANK, MODEL.id, 'operator_purpose', [u, w.subjects[11]!]);
    const row = res.rows.find((r) => r.uscc === u)!;
    // The engine alone would have scored it; the custodian found no consent signed by a certified key.
    expect(row.status).toBe('OUT_OF_SCOPE'); // its real consents (certified key) cover another purpose
    expect(row.score).toBe('');
    // Nothing was asked of the custodian for it (no subject of the job is allowed): no box, nothing to unmask.
    expect(res.result.boxes).toHaveLength(0);
    expect(readEverySlot(w, BANK, res.result, seeds.at(-1)!).size).toBe(0);
  });

  it('a revocation hidden from the engine is still seen by the custodian (its own ledger copy)', async () => {
    const u = w.subjects[20]!;
    w.sh.revoke({ subject: u, bank: BANK });
    // The operator deletes the revocation from the engine's consent tables (the ledger leaf stays: it is signed).
    w.sh.engine.store.db.prepare('DELETE FROM revocations WHERE subject = ?').run(u);
    const seeds = captureSeeds(w);
    const res = await w.sh.score(BANK, MODEL.id, PURPOSE, [u, w.subjects[21]!]);
    expect(res.rows.find((r) => r.uscc === u)!.status).toBe('REVOKED');
    expect(res.rows.find((r) => r.uscc === w.subjects[21]!)!.status).toBe('OK');
    // The operator hands the bank every mask of the block (it has the job seed): the revoked subject's slot is noise,
    // the consented one decodes to its true partial score.
    const slots = readEverySlot(w, BANK, res.result, seeds.at(-1)!);
    const row = (s: string) => w.subjects.indexOf(s);
    expect(slots.get(row(w.subjects[21]!))).toBe(truth(w, WEIGHTS, w.subjects[21]!));
    expect(slots.get(row(u))).not.toBe(truth(w, WEIGHTS, u));
    // The auditor's replay reads the custodian's reason from the ledger and agrees with the result.
    expect(await replay(w.sh, res.jobId)).toMatchObject({ ok: true });
  });

  it('verification: a hidden revocation is refused by the custodian too (refused:REVOKED), and the replay agrees', async () => {
    const u = w.subjects[30]!;
    w.sh.revoke({ subject: u, bank: BANK });
    w.sh.engine.store.db.prepare('DELETE FROM revocations WHERE subject = ?').run(u);
    const claim = (subject: string, id: string) => ({
      claimId: id,
      subject,
      provider: TAX,
      field: SECRET,
      op: 'gte' as const,
      values: ['0'],
    });
    const { results, jobId } = await w.sh.verify(BANK, PURPOSE, [claim(u, 'hidden'), claim(w.subjects[31]!, 'other')]);
    expect(results.get('hidden')).toBe('refused:REVOKED');
    expect(results.get('other')).toBe('yes');
    const ledgered = w.sh.engine.ledger.jobEntries(jobId).find((e) => e.kind === 'verify.custodian_refused');
    expect(ledgered?.body.reasons).toEqual({ hidden: 'REVOKED' });
    expect(await replay(w.sh, jobId)).toMatchObject({ ok: true });
  });

  it('a ledger copy without the revocation leaf does not reach the signed root: SH_ERR_LEDGER_INCONSISTENT', async () => {
    // A new custodian of the same provider (its own log), pinned like the real one, fed by a withholding engine.
    const fresh = (w.sh as unknown as { agent(id: string): { custodian(pk: Uint8Array, o: object): Custodian } })
      .agent(TAX)
      .custodian(w.sh.engine.keys.ed25519.publicKey, {
        trust: {
          keyName: LEDGER_ORIGIN,
          publicKey: w.sh.engine.keys.ed25519.publicKey,
          registrarKey: w.sh.wallet.require('registrar', 'registrar').ed25519.publicKey,
        },
      });
    w.sh.engine.ledger.checkpoint();
    const cp = w.sh.engine.ledger.latestCheckpoint()!;
    const leaves = w.sh.engine.ledger.leafTexts(0, cp.size).map((l) => l.body);
    const withheld = leaves.filter((l) => !l.includes('"kind":"consent.revoked"'));
    expect(withheld.length).toBeLessThan(leaves.length);
    let code: string | undefined;
    for (let from = 0; from < withheld.length; from += 2000) {
      const entries = withheld.slice(from, from + 2000);
      code = await codeOf(() =>
        fresh.follow({ from, entries, ...(from + 2000 >= withheld.length ? { checkpoint: cp.note } : {}) }),
      );
    }
    expect(code).toBe('SH_ERR_LEDGER_INCONSISTENT');
    expect((await fresh.ledgerState()).size).toBe(0);
    // Sent honestly, the same custodian accepts every leaf.
    await feedCustodian(w.sh.engine, TAX, fresh);
    expect((await fresh.ledgerState()).size).toBe(cp.size);
  });

  it('training: groups of one subject are refused; so is a transfer to a key the bank did not name', async () => {
    const jobId = w.sh.engine.jobs.newId('train');
    const job = signJson(
      {
        type: 'safehouse.train.request.v1',
        jobId,
        bank: BANK,
        purpose: PURPOSE,
        provider: TAX,
        fields: ['vat_paid_12m', 'cit_paid_12m', 'taxable_sales_12m'],
        others: [{ provider: PROPERTY, fields: ['property_count'] }],
        bins: 4,
        options: { iterations: 10 },
        subjects: w.subjects,
        requestedAt: w.sh.engine.now().toISOString(),
      },
      BANK,
      bankKey(),
    );
    const jobHash = await ledger(job);
    await feedCustodian(w.sh.engine, PROPERTY);
    await tax.openJob(job);
    const prop = w.sh.engine.registry.custodian(PROPERTY);
    await prop.openJob(job);
    // A valid ciphertext under the tax bureau's key (an encryption of zero, switched down as the engine does).
    const he = await heContext(w.sh.engine.params);
    const ops = new BlockOps(he);
    const pk = ops.loadPublicKey(w.sh.engine.registry.bfvPublicKey(TAX));
    const zero = () => {
      const ct = new he.seal.Ciphertext();
      const enc = new he.seal.Encryptor(he.context, pk);
      enc.encryptZero(ct);
      enc.delete();
      ops.rerandomizeForTransfer(ct, pk);
      const bytes = ops.save(ct);
      ct.delete();
      return bytes;
    };
    const check = zero();
    const checked = await tax.decrypt(
      engineSigned({
        jobId,
        jobHash,
        label: labelCheckLabel(jobId, 0),
        mode: 'zero',
        ciphertext: sha256Hex(check),
      }),
      check,
    );
    expect(checked.body.zero).toBe(true);
    const sum = zero();
    const perSubject = engineSigned({
      jobId,
      jobHash,
      label: iterationLabel(jobId, 0, 0),
      mode: 'sum',
      ciphertext: sha256Hex(sum),
      groupSize: 1,
      bound: (1n << 18n).toString(),
    });
    let err: unknown;
    await tax.decrypt(perSubject, sum).catch((e) => (err = e));
    expect(err).toMatchObject({ code: 'SH_ERR_PARAMS_MISMATCH' });
    expect((err as Error).message).toMatch(/group size 1 .*the protocol fixes \d+/);

    // The property registry's custodian re-encrypts its column only under the key holder's registered key.
    const operatorKeys = await ProviderAgent.generateBfvKeys(w.sh.engine.params);
    const ct = new Uint8Array(randomBytes(64));
    const transfer = (target: { provider: string; bfvPublicKey: string }) =>
      signJson<TransferRequest>(
        {
          type: 'safehouse.custodian.transfer.v1',
          paramsId: w.sh.engine.params.id,
          provider: PROPERTY,
          jobId,
          jobHash,
          label: transferLabel(jobId, PROPERTY, 0, 0, 0),
          ciphertext: sha256Hex(ct),
          target,
          moves: [[0, 0]],
        },
        'engine',
        w.sh.engine.keys.ed25519.secretKey,
      );
    for (const target of [
      { provider: TAX, bfvPublicKey: sha256Hex(operatorKeys.publicKey) },
      { provider: 'operator', bfvPublicKey: sha256Hex(operatorKeys.publicKey) },
    ]) {
      const refused = await prop.transfer(transfer(target), ct, operatorKeys.publicKey).catch((e: Error) => e);
      expect(refused).toMatchObject({ code: 'SH_ERR_PARAMS_MISMATCH' });
      expect((refused as Error).message).toMatch(
        /the job's key holder is attack_tax_bureau with the key it registered/,
      );
    }
    pk.delete();
    ops.dispose();
  });

  it('one label asked twice at once (two ciphertexts, two noise draws) is answered once; the answer kept is the same bytes', async () => {
    const jobId = w.sh.engine.jobs.newId('train');
    const job = signJson(
      {
        type: 'safehouse.train.request.v1',
        jobId,
        bank: BANK,
        purpose: PURPOSE,
        provider: TAX,
        fields: ['vat_paid_12m'],
        bins: 4,
        options: { iterations: 10 },
        subjects: w.subjects,
        requestedAt: w.sh.engine.now().toISOString(),
      },
      BANK,
      bankKey(),
    );
    const jobHash = await ledger(job);
    await tax.openJob(job);
    const he = await heContext(w.sh.engine.params);
    const ops = new BlockOps(he);
    const pk = ops.loadPublicKey(w.sh.engine.registry.bfvPublicKey(TAX));
    const zero = () => {
      const ct = new he.seal.Ciphertext();
      const enc = new he.seal.Encryptor(he.context, pk);
      enc.encryptZero(ct);
      enc.delete();
      ops.rerandomizeForTransfer(ct, pk);
      const bytes = ops.save(ct);
      ct.delete();
      return bytes;
    };
    const label = labelCheckLabel(jobId, 0);
    const ask = (ct: Uint8Array) =>
      tax.decrypt(engineSigned({ jobId, jobHash, label, mode: 'zero', ciphertext: sha256Hex(ct) }), ct);
    const [a, b] = await Promise.allSettled([ask(zero()), ask(zero())]);
    const answered = [a, b].filter((r) => r.status === 'fulfilled');
    const refused = [a, b].filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
    expect(answered).toHaveLength(1);
    expect(refused.map((r) => (r.reason as { code?: string }).code)).toEqual(['SH_ERR_CUSTODIAN_BUDGET']);
    expect(String((refused[0]!.reason as Error).message)).toMatch(/being answered/);
    // Later attempts are refused too; what the custodian gives again is the answer it gave, byte for byte.
    expect(await codeOf(() => ask(zero()))).toBe('SH_ERR_CUSTODIAN_BUDGET');
    const kept = await tax.answered!(jobHash, label);
    expect(canonicalize(kept!.response)).toBe(
      canonicalize((answered[0] as PromiseFulfilledResult<unknown>).value as object),
    );
    pk.delete();
    ops.dispose();
  });

  it('a raw column under a score label, even to the bank itself, is refused after the custodian checks it', async () => {
    const job = scoreRequest(w.subjects.slice(0, 30));
    const jobHash = await ledger(job);
    await tax.openJob(job);
    const ds = datasetId();
    // The operator takes the stored vat_paid_12m column of block 0, re-randomizes and switches it down as the engine
    // would, and names the bank's real key: the bank would read 30 raw values (on the code before this issue, 60 of 60
    // came back to the operator's own key).
    const he = await heContext(w.sh.engine.params);
    const ops = new BlockOps(he);
    const pk = ops.loadPublicKey(w.sh.engine.registry.bfvPublicKey(TAX));
    const ct = ops.load(w.sh.engine.store.getBlob(w.sh.engine.datasets.columnBlob(ds, 'vat_paid_12m', 0)!));
    ops.rerandomizeForTransfer(ct, pk);
    const bytes = ops.save(ct);
    ct.delete();
    pk.delete();
    ops.dispose();
    const raw = engineSigned({
      jobId: job.body.jobId,
      jobHash,
      label: `score/${TAX}/${ds}/block/0`,
      mode: 'seal',
      ciphertext: sha256Hex(bytes),
      recipient: { party: BANK, x25519: bytesToHex(w.sh.wallet.require(BANK, 'bank').x25519!.publicKey) },
      maskKey: bytesToHex(randomBytes(32)),
    });
    const refused = await tax.decrypt(raw, bytes).catch((e: Error) => e);
    expect(refused).toMatchObject({ code: 'SH_ERR_PARAMS_MISMATCH' });
    expect((refused as Error).message).toMatch(/is not the approved model's partial score/);
    // Without a mask key the custodian cannot check, so it does not answer either.
    const { maskKey: _k, ...noKey } = raw.body;
    const unchecked = engineSigned({ ...noKey, label: `score/${TAX}/${ds}/block/0` });
    expect(await codeOf(() => tax.decrypt(unchecked, bytes))).toBe('SH_ERR_PARAMS_MISMATCH');
  });
});
