/**
 * The typebox schemas more than one part of the server uses: party and job ids, content hashes, a signed statement,
 * the coded error body and a job's view. Route bodies used once stay next to their route. Every object is strict
 * (`additionalProperties: false`), and the same schemas make the OpenAPI document (docs/design.md §9).
 */
import { Type, type TSchema } from '@sinclair/typebox';

export const HEX64 = '^[0-9a-f]{64}$';
export const PARTY_ID = '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$';
/** A job id as a bank chooses it (checked again on the signed request itself, api/server/jobs.ts). */
export const JOB_ID = '^[A-Za-z0-9_.:-]{1,96}$';

export const Obj = <T extends Record<string, TSchema>>(p: T) => Type.Object(p, { additionalProperties: false });
/** A signed statement: the body's own shape is checked by the engine function that takes it. */
export const SignedDoc = Obj({
  body: Type.Object({}, { additionalProperties: true }),
  signer: Type.String({ pattern: PARTY_ID }),
  signature: Type.String({ pattern: '^[0-9a-f]{128}$' }),
});
export const ErrorBody = Obj({
  code: Type.String(),
  message: Type.String(),
  details: Type.Object({}, { additionalProperties: true }),
});
export const IdParams = Obj({ id: Type.String({ pattern: PARTY_ID }) });
export const JobParams = Obj({ id: Type.String({ pattern: JOB_ID }) });
export const HashParams = Obj({ hash: Type.String({ pattern: HEX64 }) });
export const JobView = Obj({
  jobId: Type.String(),
  kind: Type.String(),
  bank: Type.String(),
  status: Type.String(),
  progress: Type.Union([Type.Null(), Obj({ phase: Type.String(), done: Type.Integer(), total: Type.Integer() })]),
  error: Type.Union([Type.Null(), ErrorBody]),
  createdAt: Type.String(),
  finishedAt: Type.Union([Type.Null(), Type.String()]),
  plan: Type.Optional(Type.Object({}, { additionalProperties: true })),
});
