/**
 * canonicalScoreResult writes the same RFC 8785 text as canonicalize for every shape a score result's subjects take
 * (OK with refs and unmask, refused with a status only, no refs, empty refs) and for anything off that shape.
 */
import { describe, expect, it } from 'vitest';
import { canonicalize } from '../../../core/jcs.ts';
import { canonicalScoreResult, type ScoreResult } from '../../../engine/protocols/score/messages.ts';

const base: ScoreResult = {
  type: 'safehouse.score.result.v1',
  jobId: 'job-1',
  jobHash: 'ab'.repeat(32),
  modelId: 'm "quoted" \u00e9',
  paramsId: 'bfv-8192-t40-v1',
  t: '1099511922689',
  scale: 6,
  boxes: [],
  subjects: [],
};

describe('canonicalScoreResult', () => {
  it('equals canonicalize for every subject shape', () => {
    const r: ScoreResult = {
      ...base,
      subjects: [
        {
          uscc: '91440300MA5F000001',
          status: 'OK',
          refs: [
            [0, 5],
            [13, 8191],
          ],
          unmask: '123456789',
        },
        { uscc: '91440300MA5F000002', status: 'NO_CONSENT' },
        { uscc: '91440300MA5F000003', status: 'OK', refs: [], unmask: '0' },
        { uscc: '91440300MA5F000004', status: 'OVER_BUDGET' },
        { uscc: '91440300MA5F000005', status: 'OK', unmask: '7' },
      ],
    };
    expect(canonicalScoreResult(r)).toBe(canonicalize(r));
    expect(canonicalScoreResult(base)).toBe(canonicalize(base));
  });

  it('falls back to canonicalize for anything off the fixed shape', () => {
    const odd = {
      ...base,
      subjects: [
        { uscc: 'x', status: 'OK', refs: [[1.5, 2]], unmask: '1' },
        { uscc: 'y', status: 'OK', extra: true },
        { uscc: 'z', status: 'OK', refs: [[1, 2, 3]] },
      ],
    } as unknown as ScoreResult;
    expect(canonicalScoreResult(odd)).toBe(canonicalize(odd));
  });
});
