/**
 * Issue 6, done-when: every job `safehouse demo` produces replays `match` at every step, and every demo subject's
 * access report lists exactly the jobs the generator's plan says touched it (runDemo checks both and reports them).
 * Training is left out here (its replay is tested in test/engine/protocols/train.test.ts; the CI demo run includes it).
 */
import { describe, it, expect } from 'vitest';
import { runDemo } from '../../api/demo.ts';

describe('safehouse demo: audit replay and access reports', () => {
  it('all jobs replay match; access reports are exact; scores and claims equal plaintext', async () => {
    const s = await runDemo({ subjects: 500, claims: 120, train: false, poolSize: 2 });
    expect(s.matchesPlaintext).toBe(true);
    expect(s.verification.matchesPlaintext).toBe(true);
    expect(s.replay).toMatchObject({ jobs: 2, allMatch: true, notMatching: [] });
    expect(s.replay.steps).toBeGreaterThan(10);
    expect(s.accessReports).toEqual({ subjects: 500, exact: true, mismatches: 0 });
    expect(s.ledger.ok).toBe(true);
  }, 300_000);
});
