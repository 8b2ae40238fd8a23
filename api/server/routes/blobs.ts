/**
 * `PUT /v1/blobs/{hash}`: a provider's column blobs and a bank's label blobs, one content-addressed blob per request,
 * staged for the party until the signed statement naming them arrives (api/server/staging.ts).
 */
import { fail } from '../../../core/errors.ts';
import { sha256Hex } from '../../../core/hash.ts';
import { HashParams } from '../schemas.ts';
import type { RouteContext } from '../route.ts';

export function blobRoutes({ route, staging }: RouteContext): void {
  route<Buffer, { hash: string }>(
    'PUT',
    '/v1/blobs/:hash',
    'provider|bank',
    'Stage one content-addressed blob (application/octet-stream)',
    { params: HashParams, status: 201, binary: true },
    async (req) => {
      if (!(req.body instanceof Buffer))
        fail('SH_ERR_UNSUPPORTED_MEDIA_TYPE', 'a blob is sent as application/octet-stream');
      const bytes = new Uint8Array(req.body);
      if (sha256Hex(bytes) !== req.params.hash)
        fail('SH_ERR_CIPHERTEXT_INVALID', `blob does not hash to ${req.params.hash}`);
      staging.stage(req.party.id, req.params.hash, bytes);
      return { hash: req.params.hash, bytes: bytes.length };
    },
  );
}
