/**
 * Scoring at the custodian — what a provider's custodian sees and allows in a scoring job.
 *
 * Sees: the bank-signed request (bank, model id and pinned hash, purpose, the subject list); per (its dataset, touched
 * block) one ciphertext of Σ w·x + m, re-randomized and switched down, which it decrypts to v + m — uniform mod t,
 * because m is a fresh uniform mask from the job seed it never learns. It never sees a raw partial sum, a score, or
 * which subjects the engine refused.
 * Allows: a job opened with the bank's signature (`safehouse.score.request.v1`, fresh, naming the signer), at most one
 * decryption per requested subject, each label of the form `score/<its own provider>/<dataset>/block/<b>` answered
 * once, mode `seal` only — v + m sealed to the party the engine names.
 */
import type { CustodianRules } from '../../custodian/rules.ts';
import { SCORE_REQUEST_TYPE, parseScoreLabel } from './messages.ts';

export const scoreRules: CustodianRules = {
  kind: 'score',
  requestType: SCORE_REQUEST_TYPE,
  allowance(body) {
    return { budget: Array.isArray(body.subjects) ? body.subjects.length : 0 };
  },
  refuse(_job, label, mode, provider) {
    const l = label.startsWith('score/') ? parseScoreLabel(label) : undefined;
    if (!label.startsWith('score/')) return `label ${JSON.stringify(label)} is not a score label`;
    if (mode !== 'seal') return `a score job does not use mode ${mode}`;
    if (!l || l.provider !== provider)
      return `label ${JSON.stringify(label)} is not one of provider ${provider}'s score blocks`;
    return undefined;
  },
};
