/**
 * The custodian's own log (JSONL, RFC 8785 lines): every opened job with its allowance, every answered request
 * (request and response hashes), every refusal. It is the custodian's memory: after a restart the opened jobs, the
 * labels already answered and the token evaluations already given are rebuilt from it, so a replayed request buys
 * nothing. A torn last line (a crash mid-write) is skipped.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { canonicalize } from '../../core/jcs.ts';
import type { JobKind, OpenJob } from './rules.ts';
import type { SpendRecord } from './budget.ts';

/** Members of an `opened` line that are not protocol limits. */
const OPENED_KEYS = new Set(['at', 'opened', 'jobId', 'kind', 'bank', 'budget', 'group']);

export class CustodianJournal {
  readonly file: string | undefined;

  constructor(file: string | undefined) {
    this.file = file;
  }

  append(entry: Record<string, unknown>): void {
    if (!this.file) return;
    mkdirSync(dirname(this.file), { recursive: true });
    appendFileSync(this.file, canonicalize(entry) + '\n');
  }

  private lines(): Array<Record<string, unknown>> {
    if (!this.file || !existsSync(this.file)) return [];
    const out: Array<Record<string, unknown>> = [];
    for (const line of readFileSync(this.file, 'utf8').split('\n')) {
      if (!line) continue;
      try {
        out.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // a torn last line after a crash: ignore it
      }
    }
    return out;
  }

  /** Opened jobs by job hash, each with the labels it has answered (decryptions and transfers). */
  openedJobs(): Map<string, OpenJob> {
    const jobs = new Map<string, OpenJob>();
    const byId = new Map<string, OpenJob>();
    for (const e of this.lines()) {
      if (typeof e.opened === 'string') {
        // Protocol state: `state`, or (journals from before it) the numeric limits written beside the job.
        let state = e.state as Record<string, unknown> | undefined;
        if (!state || typeof state !== 'object') {
          state = {};
          for (const [k, v] of Object.entries(e)) if (!OPENED_KEYS.has(k) && typeof v === 'number') state[k] = v;
        }
        const j: OpenJob = {
          jobId: String(e.jobId),
          kind: e.kind as JobKind,
          budget: Number(e.budget),
          state,
          refused: Array.isArray(e.refused) ? (e.refused as string[]) : [],
          used: 0,
          labels: new Set(),
          zeros: new Set(),
        };
        const r = e.recipient as { party?: unknown; x25519?: unknown } | undefined;
        if (typeof r?.party === 'string' && typeof r.x25519 === 'string')
          j.recipient = { party: r.party, x25519: r.x25519 };
        if (e.reasons && typeof e.reasons === 'object') j.reasons = e.reasons as Record<string, string>;
        jobs.set(e.opened, j);
        byId.set(j.jobId, j);
      } else if (typeof e.responseHash === 'string' && typeof e.label === 'string' && e.mode !== 'oprf') {
        const j = byId.get(String(e.jobId));
        if (j) {
          j.used++;
          j.labels.add(e.label);
          if (e.zero === true) j.zeros.add(e.label);
        }
      }
    }
    return jobs;
  }

  /** The last ledger (size, root) the custodian accepted (its monitor must pass through it again after a restart). */
  lastLedger(): { size: number; root: string } | undefined {
    let last: { size: number; root: string } | undefined;
    for (const e of this.lines()) {
      const l = e.ledger as { size?: unknown; root?: unknown } | undefined;
      if (l && typeof l.size === 'number' && typeof l.root === 'string') last = { size: l.size, root: l.root };
    }
    return last;
  }

  /** Every budget spend the journal holds (written with the jobs that spent them), less the jobs refunded. */
  spendRecords(): Array<SpendRecord & { at: string }> {
    const out: Array<SpendRecord & { at: string }> = [];
    const lines = this.lines();
    const refunded = new Set(lines.filter((e) => typeof e.refunded === 'string').map((e) => e.refunded as string));
    for (const e of lines) {
      if (typeof e.opened !== 'string' || !Array.isArray(e.spent) || typeof e.at !== 'string') continue;
      if (refunded.has(e.opened)) continue;
      for (const r of e.spent as SpendRecord[]) out.push({ ...r, at: e.at });
    }
    return out;
  }

  /** Job hashes whose budget was given back (a failed job this custodian answered nothing for). */
  refunded(): Set<string> {
    return new Set(
      this.lines()
        .filter((e) => typeof e.refunded === 'string')
        .map((e) => e.refunded as string),
    );
  }

  /** Ids of jobs with at least one answer given (decryption, transfer or token evaluation). */
  answeredJobIds(): Set<string> {
    return new Set(
      this.lines()
        .filter((e) => typeof e.responseHash === 'string')
        .map((e) => String(e.jobId)),
    );
  }

  /** Token evaluations answered per job and claim, from entries after `since` (ms since the epoch). */
  evaluations(since: number): Map<string, Map<string, number>> {
    const out = new Map<string, Map<string, number>>();
    for (const e of this.lines()) {
      if (!e.evaluations || typeof e.at !== 'string' || Date.parse(e.at) < since) continue;
      const m = out.get(String(e.jobId)) ?? new Map<string, number>();
      for (const [claim, n] of Object.entries(e.evaluations as Record<string, number>))
        m.set(claim, (m.get(claim) ?? 0) + n);
      out.set(String(e.jobId), m);
    }
    return out;
  }
}
