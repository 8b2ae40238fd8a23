/**
 * Blob staging: a provider's column blobs and a bank's label blobs arrive one `PUT /v1/blobs/{hash}` at a time,
 * before the signed statement that names them (an upload manifest, an approval, training labels). They wait here, in
 * memory and per party, until that statement is accepted, which consumes them.
 */
import { fail } from '../../core/errors.ts';

/** What one party may hold staged at a time. */
const STAGED_LIMIT = 1024 * 1024 * 1024;

export class Staging {
  private readonly staged = new Map<string, Map<string, Uint8Array>>();

  stage(party: string, hash: string, bytes: Uint8Array): void {
    const m = this.staged.get(party) ?? new Map<string, Uint8Array>();
    let total = bytes.length;
    for (const b of m.values()) total += b.length;
    if (total > STAGED_LIMIT)
      fail(
        'SH_ERR_BODY_TOO_LARGE',
        `party ${party} has more than 1 GiB of staged blobs; submit the statement that uses them first`,
      );
    m.set(hash, bytes);
    this.staged.set(party, m);
  }

  /** The party's staged blobs by hash (empty when none). */
  of(party: string): Map<string, Uint8Array> {
    return this.staged.get(party) ?? new Map();
  }

  /** How many parties hold staged blobs. */
  get size(): number {
    return this.staged.size;
  }

  /** Drops the party's staged blobs once the statement that used them is accepted. */
  clear(party: string): void {
    this.staged.delete(party);
  }
}
