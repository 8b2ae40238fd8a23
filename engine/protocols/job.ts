/**
 * What every protocol's engine side does the same way: admit a bank-signed request (the preamble), escrow a job's
 * secrets to the auditors, and finish a job whose custodian phase failed.
 */
import { fail } from '../../core/errors.ts';
import { canonicalize } from '../../core/jcs.ts';
import { sha256Hex } from '../../core/hash.ts';
import { sealTo, type SealedBox } from '../../core/sealbox.ts';
import { requireSignature, type Signed } from '../../core/sign.ts';
import type { Engine } from '../engine.ts';
import type { PartyRecord } from '../registry.ts';
import type { BankJobBody, Custodian, OpenedJob, OpenOptions } from '../custodian/messages.ts';

/** Largest difference between a request's `requestedAt` and the engine's clock that a job accepts. */
export const MAX_REQUEST_SKEW_MS = 5 * 60_000;

export interface Admitted<T> {
  bank: PartyRecord;
  req: T;
  /** SHA-256 of the canonical signed request: what every custodian request of the job names. */
  jobHash: string;
  at: Date;
}

/**
 * The preamble of every bank job, before any work: the signer is a registered bank and signed this request type, the
 * request names that bank, (for jobs that return sealed results) the bank has an X25519 key, the request was made now
 * — consents are judged as of `requestedAt` (so a replay gets the same statuses), and a backdated request could reach
 * into an expired or revoked consent's window — and its job id is new.
 * @throws SH_ERR_UNKNOWN_PARTY, SH_ERR_PARTY_ROLE, SH_ERR_BAD_SIGNATURE, SH_ERR_INVALID_ARGUMENT, SH_ERR_REQUEST_STALE,
 *   SH_ERR_ALREADY_EXISTS
 */
export function admitBankRequest<T extends BankJobBody>(
  engine: Engine,
  signed: Signed<T>,
  type: T['type'],
  what: string,
  opts: { sealedResults: boolean; resume?: boolean },
): Admitted<T> {
  const bank = engine.registry.requireParty(signed.signer, 'bank');
  requireSignature(signed, bank.ed25519, type, `${what} request by ${signed.signer}`);
  const req = signed.body;
  if (req.bank !== bank.id) fail('SH_ERR_BAD_SIGNATURE', `request names bank ${req.bank} but is signed by ${bank.id}`);
  if (opts.sealedResults && !bank.x25519)
    fail('SH_ERR_INVALID_ARGUMENT', `bank ${bank.id} has no X25519 key to receive results`);
  const at = new Date(req.requestedAt);
  if (!Number.isFinite(at.getTime()))
    fail('SH_ERR_INVALID_ARGUMENT', `"requestedAt" expected an ISO 8601 time, got ${JSON.stringify(req.requestedAt)}`);
  const jobHash = sha256Hex(canonicalize(signed));
  if (opts.resume) {
    // Resuming after a crash: the job was admitted (fresh, new) when it was recorded; it must be that very request.
    const job = engine.jobs.get(req.jobId);
    const recorded = job?.request.signed;
    if (!job || job.status !== 'running' || !recorded || sha256Hex(canonicalize(recorded)) !== jobHash)
      fail('SH_ERR_INVALID_ARGUMENT', `job ${req.jobId} is not a recorded running job of this request to resume`, {
        job: req.jobId,
      });
    return { bank, req, jobHash, at };
  }
  if (Math.abs(at.getTime() - engine.now().getTime()) > MAX_REQUEST_SKEW_MS) {
    fail(
      'SH_ERR_REQUEST_STALE',
      `"requestedAt" expected within ${MAX_REQUEST_SKEW_MS / 60_000} minutes of the engine's clock, got ${JSON.stringify(req.requestedAt)}`,
    );
  }
  engine.jobs.requireNew(req.jobId);
  return { bank, req, jobHash, at };
}

export interface EscrowBox {
  auditor: string;
  sealed: SealedBox;
}

/** Seal `secret` to every registered auditor, bound to the job (context `type`, jobId, jobHash). */
export function escrowToAuditors(
  engine: Engine,
  secret: Uint8Array,
  context: { type: string; jobId: string; jobHash: string },
): EscrowBox[] {
  return engine.registry
    .parties('auditor')
    .filter((a) => a.x25519)
    .map((a) => ({ auditor: a.id, sealed: sealTo(a.x25519!, secret, context) }));
}

/** What the ledger keeps of escrow boxes: who can open one, and its hash. */
export function escrowHashes(escrow: readonly EscrowBox[]): Array<{ auditor: string; hash: string }> {
  return escrow.map((e) => ({ auditor: e.auditor, hash: sha256Hex(canonicalize(e.sealed)) }));
}

/** Run a recorded job's work; on any failure the job is failed (status, `job.failed` with the code, checkpoint) and the error rethrown. */
export async function failOnError<T>(engine: Engine, jobId: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    engine.jobs.fail(jobId, err);
    throw err;
  }
}

/** Ledger leaves per update sent to a custodian (it refuses more than MAX_UPDATE_ENTRIES). */
const FOLLOW_BATCH = 2000;

/** One ledger feed at a time per custodian (concurrent jobs would interleave their batches). */
const feeding = new WeakMap<object, Promise<unknown>>();

/**
 * Bring a custodian's copy of the ledger up to the latest checkpoint (checkpointing first if entries are newer):
 * every leaf from the size it holds, in batches, the signed checkpoint with the last (docs/trust.md).
 * @throws SH_ERR_LEDGER_INCONSISTENT when the custodian holds more than the ledger (a rewritten ledger)
 */
export async function feedCustodian(
  engine: Engine,
  provider: string,
  c: Custodian = engine.registry.custodian(provider),
): Promise<void> {
  // A custodian restarted between the state it reported and the leaves sent holds fewer leaves than it said: it says
  // where it stands (`expectedFrom`) and the feed starts again from there.
  const run = async () => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await feed();
      } catch (err) {
        const e = err as { code?: string; details?: { expectedFrom?: unknown } };
        if (attempt >= 3 || e.code !== 'SH_ERR_INVALID_ARGUMENT' || typeof e.details?.expectedFrom !== 'number')
          throw err;
      }
    }
  };
  const feed = async () => {
    let cp = engine.ledger.latestCheckpoint();
    if (!cp || cp.size < engine.ledger.size()) {
      engine.ledger.checkpoint();
      cp = engine.ledger.latestCheckpoint()!;
    }
    const { size } = await c.ledgerState();
    if (size > cp.size)
      fail(
        'SH_ERR_LEDGER_INCONSISTENT',
        `custodian ${provider} holds ${size} ledger leaves, more than the engine's ${cp.size}: the ledger was rolled back`,
      );
    for (let from = size; from < cp.size; from += FOLLOW_BATCH) {
      const n = Math.min(FOLLOW_BATCH, cp.size - from);
      const entries = engine.ledger.leafTexts(from, n).map((l) => l.body);
      await c.follow({ from, entries, ...(from + n >= cp.size ? { checkpoint: cp.note } : {}) });
    }
  };
  const prev = feeding.get(c) ?? Promise.resolve();
  const next = prev.then(run, run);
  feeding.set(
    c,
    next.catch(() => undefined),
  );
  await next;
}

/** Show a bank-signed job to a provider's custodian once its copy of the ledger holds the job's request. */
export async function openAtCustodian(
  engine: Engine,
  provider: string,
  signed: Signed<BankJobBody>,
  opts: OpenOptions = {},
): Promise<OpenedJob> {
  await feedCustodian(engine, provider);
  return engine.registry.custodian(provider).openJob(signed, opts);
}
