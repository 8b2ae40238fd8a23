/**
 * Scoring, the bank's side: sign the request; open the custodians' sealed vectors and unmask the scores of the
 * subjects the engine gave an unmask value — only those whose consent covered the job.
 */
import { centered, formatFixed } from '../../../core/fixed.ts';
import { openSealed } from '../../../core/sealbox.ts';
import { signJson, type Signed } from '../../../core/sign.ts';
import type { ScoreRequest, ScoreResult, ScoreStatus } from './messages.ts';

/** A signed score request. @example buildScoreRequest({ jobId, bank: 'b1', modelId, modelHash, purpose, subjects }, sk) */
export function buildScoreRequest(
  r: {
    jobId: string;
    bank: string;
    modelId: string;
    modelHash: string;
    purpose: string;
    subjects: string[];
    requestedAt?: string;
  },
  bankSecretKey: Uint8Array,
): Signed<ScoreRequest> {
  const body: ScoreRequest = {
    type: 'safehouse.score.request.v1',
    jobId: r.jobId,
    bank: r.bank,
    modelId: r.modelId,
    modelHash: r.modelHash,
    purpose: r.purpose,
    subjects: r.subjects,
    requestedAt: r.requestedAt ?? new Date().toISOString(),
  };
  return signJson(body, r.bank, bankSecretKey);
}

/**
 * Open the sealed vectors and unmask the scores of OK subjects: score = centered(Σ (v + m)[slot] − U) / 10^scale.
 * @throws SH_ERR_SEALED_BOX when a box was not sealed to this key or was altered.
 */
export function openScoreResult(
  result: ScoreResult,
  bank: string,
  bankX25519Secret: Uint8Array,
): Array<{ uscc: string; status: ScoreStatus; score: string }> {
  const t = BigInt(result.t);
  const vectors = result.boxes.map((b) => {
    const bytes = openSealed(bankX25519Secret, b.sealed, {
      jobId: result.jobId,
      jobHash: result.jobHash,
      provider: b.provider,
      label: b.label,
      mode: 'seal',
      recipient: bank,
    });
    const copy = new Uint8Array(bytes);
    return new BigUint64Array(copy.buffer, 0, copy.length / 8);
  });
  return result.subjects.map((s) => {
    if (s.status !== 'OK') return { uscc: s.uscc, status: s.status, score: '' };
    let acc = -BigInt(s.unmask!);
    for (const [box, slot] of s.refs!) acc += vectors[box]![slot]!;
    return { uscc: s.uscc, status: 'OK', score: formatFixed(centered(acc, t), result.scale) };
  });
}
