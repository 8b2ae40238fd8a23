/**
 * The custodian's own copy of what the ledger says (docs/trust.md): it follows the engine's ledger as a monitor, so
 * that who may be answered for what comes from signed statements it checked itself, never from the engine's word.
 *
 * The engine sends every leaf (the RFC 8785 text the ledger hashes) in order, with a signed checkpoint after the last
 * one. The monitor keeps the RFC 6962 compact range of the leaves it accepted (one hash per perfect subtree on the
 * right edge) and accepts new leaves only when they extend that range to exactly the signed root: so the ledger it
 * follows is an extension of the last checkpoint it saw (a rewritten or truncated ledger, a dropped revocation, a
 * leaf inserted out of order cannot give that root), and every leaf it acts on is included in a signed tree.
 * From the leaves it keeps:
 *  - banks and enterprises whose keys the **registrar** certified (the registrar key is the custodian's own pin; a
 *    key the operator registered without a certificate is ignored);
 *  - consents and revocations whose enterprise signatures verify with those keys (checked once, when followed);
 *  - the hashes of bank-signed job requests the engine ledgered (`job.requested`): a job not in the ledger is not
 *    answered;
 *  - each provider's first registered BFV public-key hash (the only keys a domain transfer may target).
 * After a restart the copy is rebuilt from leaf 0; the journal keeps the last accepted (size, root), and the rebuilt
 * tree must pass through it.
 */
import { fail } from '../../core/errors.ts';
import { bytesToHex, hexToBytes } from '../../core/sign.ts';
import {
  checkedConsentJudge,
  verifyConsentSignature,
  verifyRevocation,
  type ConsentRequest,
  type ConsentStatement,
  type ConsentStatus,
  type SignedConsent,
  type SignedRevocation,
} from '../../sandbox/consent.ts';
import { checkCertificate } from '../../sandbox/registrar.ts';
import { verifyCheckpoint } from '../ledger/checkpoint.ts';
import { EMPTY_ROOT, leafHash, nodeHash } from '../ledger/merkle.ts';

/** Engine → custodian: the next leaves of the ledger, from leaf `from`, and (on the last batch) a signed checkpoint. */
export interface LedgerUpdate {
  from: number;
  entries: string[];
  checkpoint?: string;
}

/** What the custodian pins: the ledger's checkpoint key and the registrar's key. */
export interface LedgerTrust {
  /** signed-note key name and origin of the ledger's checkpoints. */
  keyName: string;
  publicKey: Uint8Array;
  registrarKey: Uint8Array;
}

/** Most leaves one update may carry, and the largest leaf accepted (the engine pages a long backlog). */
export const MAX_UPDATE_ENTRIES = 5000;
export const MAX_LEAF_BYTES = 64 * 1024;

export interface CertifiedBank {
  ed25519: Uint8Array;
  x25519: string;
  group: string;
}

const utf8 = new TextEncoder();

export class LedgerMonitor {
  private readonly trust: LedgerTrust;
  /** Right-edge perfect subtrees of the accepted prefix, largest first: [level, hash]. */
  private range: Array<[number, Uint8Array]> = [];
  private accepted = 0;
  /** Leaves received after the accepted prefix, waiting for a checkpoint. */
  private pending: string[] = [];
  /** A (size, root) the rebuilt tree must pass through (the last one accepted before a restart). */
  private readonly expected: { size: number; root: string } | undefined;
  private readonly onAccept: (size: number, root: string) => void;

  readonly banks = new Map<string, CertifiedBank>();
  private readonly enterprises = new Map<string, Uint8Array>();
  private readonly providers = new Map<string, string>();
  private readonly consents = new Map<string, ConsentStatement[]>();
  private readonly revokedAt = new Map<string, number>();
  private readonly jobs = new Set<string>();
  /** Jobs seen finishing since the last `drainFinished` (job id → failed?, code). */
  private finished = new Map<string, { failed: boolean; code: string }>();
  /** Leaves the monitor could not trust (uncertified keys, bad signatures), by kind: the provider's evidence. */
  readonly ignored: Record<string, number> = {};

  constructor(
    trust: LedgerTrust,
    opts: { expected?: { size: number; root: string }; onAccept?: (size: number, root: string) => void } = {},
  ) {
    this.trust = trust;
    this.expected = opts.expected;
    this.onAccept = opts.onAccept ?? (() => {});
  }

  /** Jobs whose `job.completed` or `job.failed` leaf was accepted since the last call. */
  drainFinished(): Map<string, { failed: boolean; code: string }> {
    const out = this.finished;
    this.finished = new Map();
    return out;
  }

  /** The accepted prefix: the engine sends leaves from here. */
  state(): { size: number } {
    return { size: this.accepted };
  }

  /**
   * Take the next leaves. `from` is the accepted size (starting over any pending leaves) or the end of the pending
   * ones; with a checkpoint, the accepted range plus every pending leaf must hash to its signed root, else all pending
   * leaves are dropped. @throws SH_ERR_INVALID_ARGUMENT, SH_ERR_BAD_SIGNATURE, SH_ERR_LEDGER_INCONSISTENT
   */
  follow(u: LedgerUpdate): { size: number } {
    if (!u || typeof u !== 'object' || !Array.isArray(u.entries))
      fail('SH_ERR_INVALID_ARGUMENT', '"entries" expected a list of ledger leaves');
    if (u.entries.length > MAX_UPDATE_ENTRIES)
      fail('SH_ERR_INVALID_ARGUMENT', `"entries" expected at most ${MAX_UPDATE_ENTRIES} leaves per update`);
    if (u.from === this.accepted) this.pending = [];
    else if (u.from !== this.accepted + this.pending.length)
      fail(
        'SH_ERR_INVALID_ARGUMENT',
        `"from" expected ${this.accepted} (or ${this.accepted + this.pending.length} to continue), got ${u.from}`,
        { expectedFrom: this.accepted },
      );
    for (const e of u.entries)
      if (typeof e !== 'string' || e.length > MAX_LEAF_BYTES)
        fail('SH_ERR_INVALID_ARGUMENT', `a ledger leaf is not a string of at most ${MAX_LEAF_BYTES} characters`);
    this.pending.push(...u.entries);
    if (u.checkpoint === undefined) return { size: this.accepted };
    let cp: ReturnType<typeof verifyCheckpoint>;
    try {
      cp = verifyCheckpoint(u.checkpoint, this.trust.keyName, this.trust.publicKey);
    } catch (err) {
      this.pending = [];
      if ((err as { code?: string }).code === 'SH_ERR_LEDGER_TAMPERED')
        fail('SH_ERR_INVALID_ARGUMENT', '"checkpoint" is not a signed checkpoint note', {}, err);
      throw err;
    }
    const leaves = this.pending;
    this.pending = [];
    if (cp.origin !== this.trust.keyName || cp.size !== this.accepted + leaves.length)
      fail(
        'SH_ERR_LEDGER_INCONSISTENT',
        `the checkpoint is for ${cp.origin} size ${cp.size}; the custodian holds ${this.accepted} leaves and was sent ${leaves.length}`,
      );
    const range = this.range.map(([l, h]) => [l, h] as [number, Uint8Array]);
    let size = this.accepted;
    for (const text of leaves) {
      push(range, leafHash(utf8.encode(text)));
      size++;
      if (this.expected && size === this.expected.size && bytesToHex(rootOf(range)) !== this.expected.root)
        fail(
          'SH_ERR_LEDGER_INCONSISTENT',
          `the ledger at size ${size} is not the one this custodian accepted before (root ${this.expected.root.slice(0, 16)}…)`,
        );
    }
    const root = rootOf(range);
    if (bytesToHex(root) !== bytesToHex(cp.rootHash))
      fail(
        'SH_ERR_LEDGER_INCONSISTENT',
        `the ledger leaves sent do not extend the custodian's checkpoint (size ${this.accepted}) to the signed root of size ${cp.size}`,
      );
    for (const text of leaves) this.apply(text);
    this.range = range;
    this.accepted = size;
    this.onAccept(size, bytesToHex(root));
    return { size };
  }

  /** Whether a restarted monitor has caught up with what it held before (only then can it judge anything). */
  caughtUp(): boolean {
    return !this.expected || this.accepted >= this.expected.size;
  }

  /** Whether the bank-signed request with this hash was ledgered (`job.requested`) in the followed ledger. */
  ledgered(jobHash: string): boolean {
    return this.jobs.has(jobHash);
  }

  bank(id: string): CertifiedBank | undefined {
    return this.banks.get(id);
  }

  /** The BFV public-key hash a provider first registered with (transfers may target only it). */
  providerKey(id: string): string | undefined {
    return this.providers.get(id);
  }

  /** A subject's consent status, judged from the custodian's own copy (sandbox/consent.ts, same rules as the engine). */
  consent(q: ConsentRequest): ConsentStatus {
    try {
      return this.consentJudge(q)(q.subject);
    } catch {
      return 'NO_CONSENT';
    }
  }

  /**
   * {@link consent} for many subjects of one request (its terms checked once).
   * @throws SH_ERR_INVALID_ARGUMENT for malformed terms
   */
  consentJudge(terms: Omit<ConsentRequest, 'subject'>): (subject: string) => ConsentStatus {
    const judge = checkedConsentJudge(terms);
    return (subject) =>
      this.enterprises.has(subject)
        ? judge(subject, this.consents.get(subject) ?? [], this.revokedAt).status
        : 'NO_CONSENT';
  }

  private skip(kind: string): void {
    this.ignored[kind] = (this.ignored[kind] ?? 0) + 1;
  }

  private apply(text: string): void {
    let e: Record<string, unknown>;
    try {
      e = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return this.skip('malformed');
    }
    const kind = String(e.kind);
    if (kind === 'job.requested') {
      if (typeof e.jobHash === 'string') this.jobs.add(e.jobHash);
    } else if (kind === 'job.completed' || kind === 'job.failed') {
      if (typeof e.jobId === 'string')
        this.finished.set(e.jobId, { failed: kind === 'job.failed', code: String(e.code ?? '') });
    } else if (kind === 'party.registered') {
      const party = String(e.party);
      if (e.role === 'provider') {
        if (!this.providers.has(party) && typeof e.bfvPublicKey === 'string') this.providers.set(party, e.bfvPublicKey);
      } else if (e.role === 'bank' || e.role === 'enterprise') {
        const cert = checkCertificate(e.certificate, this.trust.registrarKey, {
          party,
          role: e.role,
          ed25519: String(e.ed25519),
        });
        if (!cert) return this.skip(`${e.role} without certificate`);
        if (e.role === 'bank') {
          if (!this.banks.has(party))
            this.banks.set(party, { ed25519: hexToBytes(cert.ed25519), x25519: cert.x25519!, group: cert.group! });
        } else if (!this.enterprises.has(party)) this.enterprises.set(party, hexToBytes(cert.ed25519));
      }
    } else if (kind === 'consent.granted') {
      const key = this.enterprises.get(String(e.subject));
      const signed = {
        statement: {
          id: e.consentId,
          subject: e.subject,
          grantee: e.grantee,
          purpose: e.purpose,
          categories: e.categories,
          operations: e.operations,
          notBefore: e.notBefore,
          notAfter: e.notAfter,
          nonce: e.nonce,
        },
        signature: e.signature,
      } as SignedConsent;
      if (!key || !verifyConsentSignature(signed, key)) return this.skip('consent not signed by a certified key');
      const list = this.consents.get(signed.statement.subject);
      if (list) list.push(signed.statement);
      else this.consents.set(signed.statement.subject, [signed.statement]);
    } else if (kind === 'consent.revoked') {
      const key = this.enterprises.get(String(e.subject));
      const signed = {
        statement: { consentId: e.consentId, subject: e.subject, revokedAt: e.revokedAt, nonce: e.nonce },
        signature: e.signature,
      } as SignedRevocation;
      if (!key || !verifyRevocation(signed, key)) return this.skip('revocation not signed by a certified key');
      const at = Date.parse(signed.statement.revokedAt);
      const before = this.revokedAt.get(signed.statement.consentId);
      if (before === undefined || at < before) this.revokedAt.set(signed.statement.consentId, at);
    }
  }
}

/** Append a leaf hash to a compact range (merging equal-level subtrees). */
function push(range: Array<[number, Uint8Array]>, hash: Uint8Array): void {
  let level = 0;
  let h = hash;
  while (range.length && range[range.length - 1]![0] === level) {
    h = nodeHash(range.pop()![1], h);
    level++;
  }
  range.push([level, h]);
}

/** RFC 6962 root of the leaves a compact range covers: fold the right-edge subtrees from the smallest. */
function rootOf(range: ReadonlyArray<[number, Uint8Array]>): Uint8Array {
  if (range.length === 0) return EMPTY_ROOT;
  let acc = range[range.length - 1]![1];
  for (let i = range.length - 2; i >= 0; i--) acc = nodeHash(range[i]![1], acc);
  return acc;
}
