/**
 * Scoring's messages (docs/protocols.md "Scoring"): the bank-signed request, what the bank receives, and the label of
 * each custodian request — built and parsed here only, so the custodian's rules read exactly what the engine wrote.
 */
import type { SealedBox } from '../../../core/sealbox.ts';
import { canonicalize } from '../../../core/jcs.ts';
import type { ConsentStatus } from '../../../sandbox/consent.ts';

export const SCORE_REQUEST_TYPE = 'safehouse.score.request.v1';

/** `OVER_BUDGET`: a provider's custodian refused the subject under its own scoring budget (docs/privacy.md). */
export type ScoreStatus = ConsentStatus | 'NO_DATA' | 'OVER_BUDGET';

export interface ScoreRequest {
  type: 'safehouse.score.request.v1';
  jobId: string;
  bank: string;
  modelId: string;
  modelHash: string;
  purpose: string;
  subjects: string[];
  requestedAt: string;
}

export interface ScoreBox {
  provider: string;
  datasetId: string;
  block: number;
  label: string;
  sealed: SealedBox;
}

/** What the bank receives. */
export interface ScoreResult {
  type: 'safehouse.score.result.v1';
  jobId: string;
  jobHash: string;
  modelId: string;
  paramsId: string;
  t: string;
  scale: number;
  boxes: ScoreBox[];
  subjects: Array<{ uscc: string; status: ScoreStatus; refs?: Array<[box: number, slot: number]>; unmask?: string }>;
}

export interface ScoreProgress {
  phase: 'consent' | 'compute' | 'done';
  done: number;
  total: number;
}

/** The custodian request for one (provider dataset, block): `score/<provider>/<datasetId>/block/<block>`. */
export function scoreLabel(provider: string, datasetId: string, block: number): string {
  return `score/${provider}/${datasetId}/block/${block}`;
}

/** Inverse of {@link scoreLabel}; undefined for anything else. */
export function parseScoreLabel(label: string): { provider: string; datasetId: string; block: number } | undefined {
  const m = /^score\/([^/]+)\/([^/]+)\/block\/(0|[1-9]\d{0,8})$/.exec(label);
  return m ? { provider: m[1]!, datasetId: m[2]!, block: Number(m[3]) } : undefined;
}

/**
 * The RFC 8785 text of a score result, as `canonicalize(result)` gives it (test/engine/protocols/score-result.test.ts),
 * written directly for the per-subject entries — members in code-unit order `refs`, `status`, `unmask`, `uscc` —
 * instead of sorting the keys of 100 000 objects. Anything not of that fixed shape goes through `canonicalize`.
 */
export function canonicalScoreResult(r: ScoreResult): string {
  const MARK = '"subjects":[]';
  const head = canonicalize({ ...r, subjects: [] });
  const at = head.indexOf(MARK);
  const parts: string[] = new Array(r.subjects.length);
  for (let i = 0; i < r.subjects.length; i++) {
    const s = r.subjects[i]!;
    const keys = Object.keys(s);
    const expected = 2 + (s.refs === undefined ? 0 : 1) + (s.unmask === undefined ? 0 : 1);
    if (keys.length !== expected || typeof s.uscc !== 'string' || typeof s.status !== 'string') {
      parts[i] = canonicalize(s);
      continue;
    }
    let o = '{';
    if (s.refs !== undefined) {
      let refs = '';
      for (const ref of s.refs) {
        const [b, sl] = ref;
        if (ref.length !== 2 || !Number.isSafeInteger(b) || !Number.isSafeInteger(sl)) {
          refs = '';
          break;
        }
        refs += (refs ? ',[' : '[') + b + ',' + sl + ']';
      }
      if (!refs && s.refs.length) {
        parts[i] = canonicalize(s);
        continue;
      }
      o += '"refs":[' + refs + '],';
    }
    o += '"status":' + canonicalize(s.status);
    if (s.unmask !== undefined) o += ',"unmask":' + canonicalize(s.unmask);
    parts[i] = o + ',"uscc":' + canonicalize(s.uscc) + '}';
  }
  return head.slice(0, at) + '"subjects":[' + parts.join(',') + ']' + head.slice(at + MARK.length);
}
