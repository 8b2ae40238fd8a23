/**
 * The auditor's routes: raw material to verify on the auditor's side (docs/design.md §8) — ledger entries (canonical
 * bodies), every signed checkpoint, a job's stored request and summary, stored blobs, inclusion and consistency proofs
 * (RFC 9162 §2.1.3–2.1.4) against a signed checkpoint, and a job's replay bundle (api/server/bundle.ts). Inclusion
 * proofs are open to enterprises too, for the entries of their own access report.
 */
import { existsSync } from 'node:fs';
import { Type } from '@sinclair/typebox';
import { fail } from '../../../core/errors.ts';
import { bytesToHex } from '../../../core/sign.ts';
import { Obj, JobParams, HashParams, HEX64 } from '../schemas.ts';
import { auditBundle } from '../bundle.ts';
import { BLOB_BATCH, blobFrames } from '../../wire.ts';
import type { RouteContext } from '../route.ts';

const Range = Obj({
  from: Type.Optional(Type.String({ pattern: '^[0-9]{1,12}$' })),
  limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,6}$' })),
});
/** Optional decimal query parameters (ledger indexes and tree sizes). */
const Q = (...names: string[]) =>
  Obj(Object.fromEntries(names.map((n) => [n, Type.Optional(Type.String({ pattern: '^[0-9]{1,12}$' }))])));
const hexes = (xs: readonly Uint8Array[]) => xs.map((x) => bytesToHex(x));
const num = (v: string | undefined, what: string, dflt?: number): number => {
  if (v === undefined) {
    if (dflt === undefined) fail('SH_ERR_INVALID_ARGUMENT', `"${what}" is required`);
    return dflt!;
  }
  return Number(v);
};

export function auditorRoutes({ engine: e, route }: RouteContext): void {
  route<unknown, Record<string, string>, { from?: string; limit?: string }>(
    'GET',
    '/v1/auditor/ledger',
    'auditor',
    'Ledger entries (canonical bodies) from an index',
    { querystring: Range },
    async (req) => {
      const from = Number(req.query.from ?? 0);
      const limit = Math.min(Number(req.query.limit ?? 10_000), 10_000);
      return { size: e.ledger.size(), entries: e.ledger.leafTexts(from, limit) };
    },
  );
  route('GET', '/v1/auditor/checkpoints', 'auditor', 'Every signed checkpoint (C2SP signed notes)', {}, async () => {
    e.ledger.checkpoint();
    return { checkpoints: e.ledger.checkpointNotes() };
  });
  route<unknown, { id: string }>(
    'GET',
    '/v1/auditor/jobs/:id',
    'auditor',
    "A job's stored request and summary (transcript)",
    { params: JobParams },
    async (req) => {
      const job = e.jobs.get(req.params.id);
      if (!job) fail('SH_ERR_NOT_FOUND', `no job ${JSON.stringify(req.params.id)}`, { job: req.params.id });
      return {
        id: job.id,
        kind: job.kind,
        bank: job.bank,
        status: job.status,
        request: job.request,
        summary: job.summary,
        createdAt: job.createdAt,
        finishedAt: job.finishedAt,
      };
    },
  );
  route<unknown, { hash: string }>(
    'GET',
    '/v1/auditor/blobs/:hash',
    'auditor',
    'A stored blob (application/octet-stream)',
    { params: HashParams },
    async (req) => {
      if (!existsSync(e.store.blobPath(req.params.hash))) fail('SH_ERR_NOT_FOUND', `no blob ${req.params.hash}`);
      return e.store.getBlob(req.params.hash);
    },
  );
  route<{ hashes: string[] }>(
    'POST',
    '/v1/auditor/blobs/batch',
    'auditor',
    `Up to ${BLOB_BATCH} stored blobs in one answer (application/octet-stream frames: hash, length, bytes)`,
    { body: Obj({ hashes: Type.Array(Type.String({ pattern: HEX64 }), { minItems: 1, maxItems: BLOB_BATCH }) }) },
    async (req) => {
      const blobs = [...new Set(req.body.hashes)].map((hash) => {
        if (!existsSync(e.store.blobPath(hash))) fail('SH_ERR_NOT_FOUND', `no blob ${hash}`, { blob: hash });
        return { hash, bytes: e.store.getBlob(hash) };
      });
      return blobFrames(blobs);
    },
  );

  route<unknown, Record<string, string>, { index?: string; size?: string }>(
    'GET',
    '/v1/auditor/proofs/inclusion',
    'auditor|enterprise',
    'Inclusion proof of one ledger entry in the tree of `size` entries (default: the latest checkpoint)',
    { querystring: Q('index', 'size') },
    async (req) => {
      const cp = e.ledger.checkpoint();
      const latest = e.ledger.latestCheckpoint()!.size;
      const size = num(req.query.size, 'size', latest);
      const index = num(req.query.index, 'index');
      if (!(size <= latest && index < size))
        fail('SH_ERR_INVALID_ARGUMENT', `expected index < size ≤ ${latest}, got index ${index}, size ${size}`);
      if (req.party.role === 'enterprise') {
        if (!e.ledger.touches(index, req.party.id))
          fail('SH_ERR_FORBIDDEN', `ledger entry ${index} is not in ${req.party.id}'s access report`);
      }
      const body = e.ledger.leafText(index);
      return {
        index,
        size,
        body,
        proof: hexes(e.ledger.inclusionProof(index, size)),
        checkpoint: size === latest ? cp : null,
      };
    },
  );
  route<unknown, Record<string, string>, { from?: string; to?: string }>(
    'GET',
    '/v1/auditor/proofs/consistency',
    'auditor',
    'Consistency proof between the trees of `from` and `to` entries (default to: the latest checkpoint)',
    { querystring: Q('from', 'to') },
    async (req) => {
      const cp = e.ledger.checkpoint();
      const latest = e.ledger.latestCheckpoint()!.size;
      const to = num(req.query.to, 'to', latest);
      const from = num(req.query.from, 'from');
      if (!(from <= to && to <= latest))
        fail('SH_ERR_INVALID_ARGUMENT', `expected from ≤ to ≤ ${latest}, got from ${from}, to ${to}`);
      return { from, to, proof: hexes(e.ledger.consistencyProof(from, to)), checkpoint: to === latest ? cp : null };
    },
  );

  route<unknown, { id: string }>(
    'GET',
    '/v1/auditor/jobs/:id/bundle',
    'auditor',
    'The rows a replay of this job reads, and the blobs it needs (by hash)',
    { params: JobParams },
    async (req) => auditBundle(e, req.params.id),
  );
}
