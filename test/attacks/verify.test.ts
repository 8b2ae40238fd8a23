/**
 * Verification attacks (docs/privacy.md "Verification"), each run as the attacker would, on a VERIFY_ONLY amount of
 * 0 … 100 000 (17 bits) and on a property certificate number (a token field):
 *  1. binary search across a budget boundary — spend a budget just before a fixed epoch ends, again just after;
 *  2. three-way answers — `between` answers below / inside / above, worth log2(3) bits, for the price of one;
 *  3. several identities of one bank group, each with its own budget;
 *  4. token guessing — `in` claims of 16 candidate values each;
 *  5. a colluding operator who resets the engine's own budget counts: each custodian keeps its own.
 * The bound asserted: within one window a bank group learns at most `verifyUnitsPerWindow` bits about one subject's
 * field (an interval no narrower than range / 2^units) and tests at most `tokenEvaluationsPerWindow` candidate values
 * of a token field. On the code before issue 13 each attack pins the value.
 */
import { describe, it, expect, beforeAll, afterAll, afterEach, vi } from 'vitest';
import type { Claim, ClaimOp, ClaimResult } from '../../engine/protocols/verify/messages.ts';
import { DEFAULT_POLICY } from '../../sandbox/policy.ts';
import { BANK, BRANCH, PROPERTY, PURPOSE, SECRET, TAX, openWorld, replay, type World } from './fixture.ts';

const UNITS = DEFAULT_POLICY.verifyUnitsPerWindow;
const TOKENS = DEFAULT_POLICY.tokenEvaluationsPerWindow;
const RANGE = 100_001;

let w: World;
beforeAll(async () => {
  w = await openWorld();
}, 120_000);
afterAll(async () => w?.close());
afterEach(() => vi.useRealTimers());

let n = 0;
const jobs: string[] = [];
async function ask(bank: string, subject: string, provider: string, field: string, op: ClaimOp, values: string[]) {
  const c: Claim = { claimId: `a${++n}`, subject, provider, field, op, values };
  const r = await w.sh.verify(bank, PURPOSE, [c]);
  jobs.push(r.jobId);
  return r.results.get(c.claimId) as ClaimResult;
}

/** Binary search with `gte` claims until the budget refuses; the interval [lo, hi] still holding the value. */
async function binarySearch(banks: string[], subject: string, lo: number, hi: number, between?: () => void) {
  let answered = 0;
  for (const bank of banks) {
    for (;;) {
      if (lo === hi) return { lo, hi, answered };
      const mid = Math.ceil((lo + hi) / 2);
      const r = await ask(bank, subject, TAX, SECRET, 'gte', [String(mid)]);
      if (r === 'over_budget') break;
      answered++;
      if (r === 'yes') lo = mid;
      else hi = mid - 1;
    }
    between?.();
  }
  return { lo, hi, answered };
}

const DAY = 86_400_000;
/** A time 1 hour before a fixed 30-day epoch boundary (where the old budgets refilled), after now. */
function beforeBoundary(): number {
  const epoch = 30 * DAY;
  let b = Math.ceil(Date.now() / epoch) * epoch;
  if (b - Date.now() < 2 * 3_600_000) b += epoch;
  return b - 3_600_000;
}

describe('attack: binary search on a VERIFY_ONLY amount', () => {
  it('spending the budget on both sides of an epoch boundary: still one budget (sliding window)', async () => {
    const u = w.subjects[0]!;
    const at = beforeBoundary();
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(at);
    let steps = 0;
    const r = await binarySearch([BANK, BANK], u, 0, 100_000, () => {
      // After the first budget runs out: two hours later, across the boundary.
      if (steps++ === 0) vi.setSystemTime(at + 2 * 3_600_000);
    });
    vi.useRealTimers();
    const truth = w.tax.get(u)![SECRET]!;
    expect(truth).toBeGreaterThanOrEqual(r.lo);
    expect(truth).toBeLessThanOrEqual(r.hi);
    expect({ answered: r.answered, pinned: r.lo === r.hi }).toEqual({ answered: UNITS, pinned: false });
    expect(r.hi - r.lo + 1).toBeGreaterThanOrEqual(Math.floor(RANGE / 2 ** UNITS));
  });

  it('between answers three ways and costs two units: no more than the bound', async () => {
    const u = w.subjects[1]!;
    let lo = 0;
    let hi = 100_000;
    let answered = 0;
    for (;;) {
      if (hi - lo < 3) break;
      const a = lo + Math.floor((hi - lo + 1) / 3);
      const b = lo + Math.floor((2 * (hi - lo + 1)) / 3) - 1;
      const r = await ask(BANK, u, TAX, SECRET, 'between', [String(a), String(b)]);
      if (r === 'over_budget') break;
      answered++;
      if (r === 'yes') [lo, hi] = [a, b];
      else {
        // 'no' leaves below-or-above; one gte settles it (one more unit).
        const g = await ask(BANK, u, TAX, SECRET, 'gte', [String(a)]);
        if (g === 'over_budget') break;
        answered++;
        if (g === 'yes') lo = b + 1;
        else hi = a - 1;
      }
    }
    const truth = w.tax.get(u)![SECRET]!;
    expect(truth >= lo && truth <= hi).toBe(true);
    expect(hi - lo + 1).toBeGreaterThanOrEqual(Math.floor(RANGE / 2 ** UNITS));
    // The ledger charged each between two units.
    const spent = w.sh.engine.store.db
      .prepare('SELECT SUM(units) AS u FROM verify_spend WHERE subject = ? AND field = ?')
      .get(u, SECRET) as { u: number };
    expect(spent.u).toBeLessThanOrEqual(UNITS);
    void answered;
  });

  it("a second identity of the bank's group shares the group's budget", async () => {
    const u = w.subjects[2]!;
    const r = await binarySearch([BANK, BRANCH], u, 0, 100_000);
    expect(r.answered).toBe(UNITS);
    expect(r.hi - r.lo + 1).toBeGreaterThanOrEqual(Math.floor(RANGE / 2 ** UNITS));
  });
});

describe('attack: guessing a token value with in claims', () => {
  it('candidates tested per window are bounded by tokenEvaluationsPerWindow, whatever the claim sizes', async () => {
    const u = w.subjects.find((s) => (w.certs.get(s) ?? []).length > 0)!;
    const real = w.certs.get(u)![0]!;
    // 200 plausible candidates, the real one at position 100.
    const guesses = Array.from({ length: 200 }, (_, i) =>
      i === 100 ? real : real.replace(/\d(?=\D*$)/, String((i % 9) + 1)) + `X${i}`,
    );
    let tested = 0;
    let found = false;
    let size = 16;
    let next = 0;
    while (next < guesses.length && size >= 1) {
      const batch = guesses.slice(next, next + size);
      const r = await ask(BANK, u, PROPERTY, 'property_cert_no', batch.length === 1 ? 'eq' : 'in', batch);
      if (r === 'over_budget') {
        size = Math.floor(size / 2);
        continue;
      }
      tested += batch.length;
      next += batch.length;
      if (r === 'yes') {
        found = true;
        break;
      }
    }
    expect({ tested, found }).toEqual({ tested: TOKENS, found: false });
  });
});

describe('attack: an operator who resets the engine budget', () => {
  it("the custodian's own count refuses past the provider's limit (verify.custodian_refused)", async () => {
    const u = w.subjects[3]!;
    const first = await binarySearch([BANK], u, 0, 100_000);
    expect(first.answered).toBe(UNITS);
    // The platform operator forgets every budget it kept.
    for (const table of ['verify_spend', 'verify_budget'])
      try {
        w.sh.engine.store.db.exec(`DELETE FROM ${table}`);
      } catch {
        // the other schema's table
      }
    const again = await binarySearch([BANK], u, first.lo, first.hi);
    expect(again.answered).toBe(0);
    const refused = w.sh.engine.ledger.subjectEntries(u).filter((e) => e.kind === 'verify.custodian_refused');
    expect(refused.length).toBeGreaterThan(0);
    expect(refused[0]!.body).toMatchObject({ code: 'SH_ERR_CUSTODIAN_BUDGET', providers: [TAX] });
    expect(again.hi - again.lo + 1).toBeGreaterThanOrEqual(Math.floor(RANGE / 2 ** UNITS));
  });

  it('every job of these attacks replays exactly', async () => {
    for (const j of jobs.slice(-12)) expect(await replay(w.sh, j), j).toMatchObject({ ok: true });
  });
});
