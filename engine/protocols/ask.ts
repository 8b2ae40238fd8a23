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
}

/** @throws SH_ERR_BAD_SIGNATURE when the answer is unsigned, signed by another key, or not bound to this request; custodian errors. */
export async function askCustodian<B, T>(engine: Engine, ask: Ask<B, T>): Promise<T> {
  const signed = signJson(ask.body, 'engine', engine.keys.ed25519.secretKey);
  const answer = await ask.send(engine.registry.custodian(ask.provider), signed);
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
  const { jobId, label } = ask.body;
  engine.ledger.appendMany([
    {
      kind: 'custodian.request',
      event: { jobId, provider: ask.provider, label, ...ask.requestEvent, requestHash: response.body.requestHash },
    },
    { kind: 'custodian.response', event: { jobId, provider: ask.provider, label, ...ask.responseEvent(answer) } },
  ]);
  return answer;
}

/** The canonical bytes of a signed response, kept as a blob for replay (the custodian's signed sums or evaluations). */
export function responseBytes(response: unknown): Uint8Array {
  return new TextEncoder().encode(canonicalize(response));
}
