/**
 * One engine → custodian step, as every protocol takes it: sign the request with the engine's key, send it to the
 * provider's custodian, require an answer signed by the provider's registered key and bound to exactly this request
 * (its `requestHash`), and ledger the pair (`custodian.request` / `custodian.response`, hashes and replay references
 * only — never a value).
 */
import { fail } from '../../core/errors.ts';
import { canonicalize } from '../../core/jcs.ts';
import { sha256Hex } from '../../core/hash.ts';
import { signJson, verifyJson, type Signed } from '../../core/sign.ts';
import type { Engine } from '../engine.ts';
import type { Custodian } from '../custodian/messages.ts';

export interface Ask<B, T> {
  provider: string;
  /** The engine's request body (signed here with the engine's key). */
  body: B & { type: string; jobId: string; label: string };
  /** Send the signed request; return the custodian's answer. */
  send: (custodian: Custodian, signed: Signed<B & { type: string }>) => Promise<T>;
  /** The signed response inside the answer. */
  response: (answer: T) => Signed<{ type: string; requestHash: string }>;
  /** Protocol checks of the answer beyond signature and binding (e.g. a sealed box is present). */
  complete: (answer: T) => boolean;
  /** Members of the `custodian.request` leaf besides jobId, provider, label and requestHash (mode, ciphertext …). */
  requestEvent: Record<string, unknown>;
  /** Members of the `custodian.response` leaf besides jobId, provider and label (responseHash, sealed …). */
  responseEvent: (answer: T) => Record<string, unknown>;
  /** Called when the first run's answer is taken instead: drop what was made for this request (its blobs). */
  discard?: () => void;
  /** The answer from what the custodian kept of it (default: the signed response itself). */
  fromStored?: (stored: { response: unknown; ciphertext?: string }) => T;
}

/** Members of a request that differ between a job's first run and its resumption (fresh encryption randomness). */
const RERUN_FREE = new Set(['ciphertext', 'rerandomizer']);

/**
 * @throws SH_ERR_BAD_SIGNATURE when the answer is unsigned, signed by another key, or not bound to this request;
 *   custodian errors.
 */
export async function askCustodian<B, T>(engine: Engine, ask: Ask<B, T>): Promise<T> {
  const { jobId, label } = ask.body;
  const custodian = engine.registry.custodian(ask.provider);
  const resuming = engine.jobs.resuming.has(jobId);
  // A resumed job first takes what the custodian already answered for this label (a label is answered once).
  if (resuming) {
    const kept = await takeAnswered(engine, ask, custodian);
    if (kept) return kept;
  }
  const signed = signJson(ask.body, 'engine', engine.keys.ed25519.secretKey);
  let answer: T;
  try {
    answer = await ask.send(custodian, signed);
  } catch (err) {
    // "Already answered" or "being answered": an earlier attempt reached the custodian (a retry after a lost answer,
    // or the first run's request of a resumed job) — take that answer once it is there.
    if ((err as { code?: string }).code === 'SH_ERR_CUSTODIAN_BUDGET') {
      for (let i = 0; i < 6; i++) {
        const kept = await takeAnswered(engine, ask, custodian);
        if (kept) return kept;
        await new Promise((r) => setTimeout(r, 250 * 2 ** i));
      }
    }
    throw err;
  }
  checkAnswer(engine, ask, signed, answer);
  ledgerPair(engine, ask, answer, signed.body as Record<string, unknown>, sha256Hex(canonicalize(signed)));
  return answer;
}

/** The answer must be signed by the provider's registered key, bound to exactly `signed`, and complete. */
function checkAnswer<B, T>(engine: Engine, ask: Ask<B, T>, signed: Signed<unknown>, answer: T): void {
  const response = ask.response(answer);
  const provider = engine.registry.requireParty(ask.provider, 'provider');
  if (
    !verifyJson(response, provider.ed25519) ||
    response.body.requestHash !== sha256Hex(canonicalize(signed)) ||
    !ask.complete(answer)
  ) {
    fail(
      'SH_ERR_BAD_SIGNATURE',
      `custodian ${ask.provider} answered ${ask.body.label} with an unsigned or mismatched response`,
    );
  }
}

/** The ledger pair of one answered request (once per label: a resumed job does not write it twice). */
function ledgerPair<B, T>(
  engine: Engine,
  ask: Ask<B, T>,
  answer: T,
  requestBody: Record<string, unknown>,
  requestHash: string,
): void {
  const { jobId, label } = ask.body;
  if (
    engine.jobs.resuming.has(jobId) &&
    engine.ledger
      .jobEntries(jobId)
      .some((e) => e.kind === 'custodian.response' && e.body.label === label && e.body.provider === ask.provider)
  )
    return;
  // The request's own hashes (ciphertext, re-randomizer) when it is the first run's, adopted on resumption.
  const own: Record<string, unknown> = {};
  for (const k of RERUN_FREE) if (k in ask.requestEvent && requestBody[k] !== undefined) own[k] = requestBody[k];
  engine.ledger.appendMany([
    {
      kind: 'custodian.request',
      event: { jobId, provider: ask.provider, label, ...ask.requestEvent, ...own, requestHash },
    },
    { kind: 'custodian.response', event: { jobId, provider: ask.provider, label, ...ask.responseEvent(answer) } },
  ]);
}

/**
 * What the custodian answered the first run for this label, when it did: the request must be the engine's own,
 * signed with its key and equal to this one but for what fresh randomness changes (ciphertext, re-randomizer), and the
 * response must be bound to it. Nothing is decrypted twice; the job continues with the first answer.
 */
async function takeAnswered<B, T>(engine: Engine, ask: Ask<B, T>, custodian: Custodian): Promise<T | undefined> {
  const jobHash = (ask.body as { jobHash?: unknown }).jobHash;
  if (!custodian.answered || typeof jobHash !== 'string') return undefined;
  const kept = await custodian.answered(jobHash, ask.body.label);
  if (!kept) return undefined;
  const original = kept.request as Signed<{ type: string } & Record<string, unknown>>;
  const same = (body: Record<string, unknown>) =>
    canonicalize(Object.fromEntries(Object.entries(body).filter(([k]) => !RERUN_FREE.has(k))));
  if (
    !original?.body ||
    original.signer !== 'engine' ||
    !verifyJson(original, engine.keys.ed25519.publicKey) ||
    same(original.body) !== same(ask.body as unknown as Record<string, unknown>)
  )
    fail(
      'SH_ERR_BAD_SIGNATURE',
      `custodian ${ask.provider} kept an answer to ${ask.body.label} for a request this engine did not make`,
    );
  const answer = ask.fromStored ? ask.fromStored(kept) : (kept.response as T);
  checkAnswer(engine, ask, original, answer);
  ask.discard?.();
  ledgerPair(engine, ask, answer, original.body, sha256Hex(canonicalize(original)));
  return answer;
}

/** The canonical bytes of a signed response, kept as a blob for replay (the custodian's signed sums or evaluations). */
export function responseBytes(response: unknown): Uint8Array {
  return new TextEncoder().encode(canonicalize(response));
}
