/**
 * A provider's policy (sandbox/policy.ts) and its own policy.json (engine/provider/records.ts): defaults, overrides,
 * and a coded refusal for every bad value — including a per-job ε no subject's budget could ever pay.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_PROVIDER_POLICY, providerPolicy } from '../../sandbox/policy.ts';
import { ProviderRecords } from '../../engine/provider/records.ts';

const code = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
};

const dir = mkdtempSync(join(tmpdir(), 'sh-policy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('provider policy', () => {
  it('defaults, and overrides taken as given', () => {
    expect(providerPolicy()).toEqual(DEFAULT_PROVIDER_POLICY);
    expect(providerPolicy({ trainEpsilon: 64, trainSubjectEpsilon: 128 })).toMatchObject({
      trainEpsilon: 64,
      trainSubjectEpsilon: 128,
    });
  });

  it('bad values are SH_ERR_INVALID_ARGUMENT', () => {
    for (const bad of [
      { windowDays: 0 },
      { scoreModelsPerSubject: 2.5 },
      { minUnexplainedShare: 0 },
      { trainDelta: 1.5 },
      { trainEpsilon: -1 },
      { trainSubjectEpsilon: Number.POSITIVE_INFINITY },
      // One job would cost more than the window allows any subject.
      { trainEpsilon: 64 },
      { trainEpsilon: 20, trainSubjectEpsilon: 10 },
    ])
      expect(
        code(() => providerPolicy(bad)),
        JSON.stringify(bad),
      ).toBe('SH_ERR_INVALID_ARGUMENT');
  });

  it("policy.json beside the provider's keys: read over the defaults; unknown keys and bad JSON are refused", () => {
    const file = join(dir, 'policy.json');
    const records = new ProviderRecords(dir);
    expect(records.policy()).toEqual(DEFAULT_PROVIDER_POLICY);
    writeFileSync(file, JSON.stringify({ trainEpsilon: 4 }));
    expect(records.policy().trainEpsilon).toBe(4);
    for (const text of ['{', '[1]', JSON.stringify({ trainEpsylon: 4 }), JSON.stringify({ trainEpsilon: 32 })]) {
      writeFileSync(file, text);
      expect(
        code(() => records.policy()),
        text,
      ).toBe('SH_ERR_INVALID_ARGUMENT');
    }
  });
});
