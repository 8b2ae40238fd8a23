/**
 * What every protocol's auditor replay shares (engine/protocols/<p>/replay.ts): the step vocabulary — each step ends
 * `match`, `mismatch` (the recomputation disagrees with what was logged: treat as tampering) or `missing` (material
 * needed for the step is gone, e.g. purged after retention — not evidence of tampering) — a job's ledger events, blobs
 * read with their hash checked, and the request and escrow steps every job kind starts with. A replay trusts nothing
 * the engine computed: it reads the signed statements, the ledger and content-addressed blobs.
 */
import { existsSync } from 'node:fs';
import { canonicalize } from '../../core/jcs.ts';
import { isCoded } from '../../core/errors.ts';
import { sha256Hex } from '../../core/hash.ts';
import { verifyJson, type Signed } from '../../core/sign.ts';
import { openSealed, type SealedBox } from '../../core/sealbox.ts';
import type { Engine } from '../engine.ts';

export type StepStatus = 'match' | 'mismatch' | 'missing';
export interface ReplayStep {
  step: string;
  status: StepStatus;
  detail?: string;
}
export interface ReplayReport {
  jobId: string;
  kind: string;
  ok: boolean;
  steps: ReplayStep[];
}
export interface Auditor {
  id: string;
  x25519SecretKey: Uint8Array;
}

export interface LedgerEvent {
  index: number;
  kind: string;
  body: Record<string, unknown>;
}

/** What a protocol's replay is given: the job's stored material and ledger events, and where to report steps. */
export interface ReplayContext<S> {
  engine: Engine;
  jobId: string;
  auditor: Auditor;
  /** The job's stored replay material (the bank-signed request, escrow boxes, per-protocol extras). */
  stored: S;
  /** Every ledger event of the job, in order. */
  events: LedgerEvent[];
  /** Its `job.requested` event. */
  requested: LedgerEvent;
  add(step: string, status: StepStatus, detail?: string): void;
  /** The steps reported so far. */
  steps(): readonly ReplayStep[];
}

/** Collects steps; `report()` is ok when every step matched. */
export class Steps {
  readonly steps: ReplayStep[] = [];
  add = (step: string, status: StepStatus, detail?: string): void => {
    this.steps.push({ step, status, ...(detail ? { detail } : {}) });
  };
  /** Remove the steps `which` selects; how many were removed. */
  drop(which: (s: ReplayStep) => boolean): number {
    const kept = this.steps.filter((s) => !which(s));
    const n = this.steps.length - kept.length;
    this.steps.splice(0, this.steps.length, ...kept);
    return n;
  }

  report(jobId: string, kind: string): ReplayReport {
    return { jobId, kind, ok: this.steps.every((s) => s.status === 'match'), steps: this.steps };
  }
}

/** Every ledger event of one job, in order (through the ledger's job index). */
export function jobEvents(engine: Engine, jobId: string): LedgerEvent[] {
  return engine.ledger.jobEntries(jobId).map((e) => ({ index: e.index, kind: e.kind, body: e.body }));
}

/** A blob by its address: its bytes, `missing` (not stored) or `corrupt` (does not hash to its address). */
export function blobOrMissing(engine: Engine, hash: unknown): Uint8Array | 'missing' | 'corrupt' {
  if (typeof hash !== 'string' || !/^[0-9a-f]{64}$/.test(hash) || !existsSync(engine.store.blobPath(hash)))
    return 'missing';
  try {
    return engine.store.getBlob(hash);
  } catch (err) {
    if (isCoded(err, 'SH_ERR_BLOB_CORRUPT')) return 'corrupt';
    throw err;
  }
}

/**
 * Replay one job. `auditor` is the replaying auditor's id and X25519 secret key (to open the escrowed seed).

/** The `request` and `escrow` steps every job kind starts with; returns the seed when the escrow opens. */
export function checkRequestAndEscrow(
  ctx: ReplayContext<{ signed: Signed<{ type: string }>; escrow?: Array<{ auditor: string; sealed: SealedBox }> }>,
): Uint8Array | undefined {
  const { engine, jobId, auditor, stored, requested, add } = ctx;
  const signed = stored.signed;
  const bank = engine.registry.party(signed.signer);
  if (!bank || !verifyJson(signed, bank.ed25519))
    add('request', 'mismatch', 'the bank signature over the stored request does not verify');
  else if (sha256Hex(canonicalize(signed)) !== requested.body.jobHash)
    add('request', 'mismatch', 'the stored request does not hash to the ledgered jobHash');
  else add('request', 'match');
  const mine = stored.escrow?.find((x) => x.auditor === auditor.id);
  const escrowed = ctx.events.find((e) => e.kind === 'job.escrowed') ?? requested;
  const ledgered = (escrowed.body.escrow as Array<{ auditor: string; hash: string }> | undefined)?.find(
    (x) => x.auditor === auditor.id,
  );
  if (!mine || !ledgered) {
    add('escrow', 'missing', `no seed escrowed to ${auditor.id}`);
    return undefined;
  }
  let seed: Uint8Array | undefined;
  try {
    seed = openSealed(auditor.x25519SecretKey, mine.sealed, {
      type: 'safehouse.escrow.v1',
      jobId,
      jobHash: requested.body.jobHash,
    });
  } catch {
    add('escrow', 'mismatch', 'the escrowed seed does not open for this auditor');
    return undefined;
  }
  // A replaced box still opens (it is sealed to the auditor's public key), so its hash is what pins the seed; the
  // steps are replayed with it anyway and mismatch too.
  if (sha256Hex(canonicalize(mine.sealed)) !== ledgered.hash)
    add('escrow', 'mismatch', 'the stored escrow box is not the ledgered one');
  else add('escrow', 'match');
  return seed;
}

/** A recomputation that threw: a mismatch naming the code. */
export function failedDetail(err: unknown): string {
  return `recomputation failed: ${isCoded(err) ? err.code : 'error'}`;
}
