/**
 * A real ledger for tests and benchmarks that drive a custodian directly (without an engine): an in-memory RFC 6962
 * ledger with a checkpoint key, a registrar, the registrar-certified bank and the `job.requested` leaves of the given
 * bank-signed jobs — what the custodian needs to see before it answers (engine/custodian/monitor.ts). `update` is what
 * the engine would send it.
 */
import { DatabaseSync } from 'node:sqlite';
import { canonicalize } from '../../core/jcs.ts';
import { sha256Hex } from '../../core/hash.ts';
import { bytesToHex, ed25519KeyPair } from '../../core/sign.ts';
import { issueCertificate } from '../../sandbox/registrar.ts';
import { Ledger } from '../../engine/ledger/ledger.ts';
import type { LedgerTrust, LedgerUpdate } from '../../engine/custodian/monitor.ts';

export function trustedLedger(o: {
  bank: { id: string; ed25519: Uint8Array; x25519: Uint8Array; group?: string };
  jobs: ReadonlyArray<object>;
}): { trust: LedgerTrust; update: LedgerUpdate } {
  const key = ed25519KeyPair();
  const registrar = ed25519KeyPair();
  const ledger = new Ledger(new DatabaseSync(':memory:'), {
    origin: 'safehouse.test/ledger',
    keyName: 'safehouse.test/ledger',
    secretKey: key.secretKey,
    publicKey: key.publicKey,
  });
  const certificate = issueCertificate(
    {
      party: o.bank.id,
      role: 'bank',
      ed25519: o.bank.ed25519,
      x25519: o.bank.x25519,
      group: o.bank.group ?? o.bank.id,
    },
    { id: 'registrar', secretKey: registrar.secretKey },
  );
  ledger.append('party.registered', {
    party: o.bank.id,
    role: 'bank',
    ed25519: bytesToHex(o.bank.ed25519),
    x25519: bytesToHex(o.bank.x25519),
    certificate,
  });
  for (const job of o.jobs)
    ledger.append('job.requested', {
      jobId: (job as { body?: { jobId?: string } }).body?.jobId,
      jobHash: sha256Hex(canonicalize(job)),
    });
  const note = ledger.checkpoint();
  return {
    trust: { keyName: 'safehouse.test/ledger', publicKey: key.publicKey, registrarKey: registrar.publicKey },
    update: { from: 0, entries: ledger.leafTexts(0, ledger.size()).map((l) => l.body), checkpoint: note },
  };
}
