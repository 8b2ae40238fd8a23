/**
 * Scoring's messages (docs/protocols.md "Scoring"): the bank-signed request, what the bank receives, and the label of
 * each custodian request — built and parsed here only, so the custodian's rules read exactly what the engine wrote.
 */
import type { SealedBox } from '../../../core/sealbox.ts';
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
