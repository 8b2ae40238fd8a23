/**
 * The bank's hold-out metrics from scoring rows (api/train-run.ts `holdoutMetrics`): AUC/KS over the scored subjects,
 * the statuses of the rest counted, and a refusal that says why when too few were scored.
 */
import { describe, it, expect } from 'vitest';
import { holdoutMetrics } from '../../api/train-run.ts';
import { auc } from '../../models/metrics.ts';

const subjects = ['a', 'b', 'c', 'd', 'e'];
const labels = new Map<string, 0 | 1>([
  ['a', 1],
  ['b', 0],
  ['c', 1],
  ['d', 0],
  ['e', 1],
]);

describe('holdoutMetrics', () => {
  it('scores the OK rows only and counts the others by status', () => {
    const rows = [
      { uscc: 'a', status: 'OK' as const, score: '2.5' },
      { uscc: 'b', status: 'OK' as const, score: '-1' },
      { uscc: 'c', status: 'OK' as const, score: '0.5' },
      { uscc: 'd', status: 'OVER_BUDGET' as const, score: '' },
    ];
    const m = holdoutMetrics(rows, subjects, labels, 'logit');
    expect(m.scored).toBe(3);
    expect(m.notScored).toEqual({ OVER_BUDGET: 1, NOT_RETURNED: 1 });
    expect(m.auc).toBe(auc([2.5, -1, 0.5], [1, 0, 1]));
    // Points: higher is better, so the order flips.
    expect(holdoutMetrics(rows, subjects, labels, 'points').auc).toBe(auc([-2.5, 1, -0.5], [1, 0, 1]));
  });

  it('too few scored: a coded error that names the statuses (budget, not only consent)', () => {
    const rows = subjects.map((u, i) => ({
      uscc: u,
      status: (i === 0 ? 'OK' : 'OVER_BUDGET') as 'OK' | 'OVER_BUDGET',
      score: i === 0 ? '1' : '',
    }));
    let err: (Error & { code?: string }) | undefined;
    try {
      holdoutMetrics(rows, subjects, labels, 'logit');
    } catch (e) {
      err = e as Error & { code?: string };
    }
    expect(err?.code).toBe('SH_ERR_INVALID_ARGUMENT');
    expect(err?.message).toMatch(/1 of 5 scored \(OVER_BUDGET 4\)/);
    expect(err?.message).toMatch(/scoreModelsPerSubject/);
  });
});
