/**
 * 统一社会信用代码 (Unified Social Credit Code, USCC): the key of every subject (docs/design.md §2).
 *
 * GB 32100-2015 layout, 18 characters from a 31-character alphabet (digits and capitals without I, O, Z, S, V):
 *   pos 1     登记管理部门代码 (registration authority: 1 机构编制, 5 民政, 9 工商/市场监管, Y 其他 …)
 *   pos 2     机构类别代码 (organization type: for authority 9, 1 企业, 2 个体工商户, 3 农民专业合作社)
 *   pos 3–8   登记管理机关行政区划码 (GB/T 2260 administrative division, six digits)
 *   pos 9–17  主体标识码 = 组织机构代码 (GB 11714-1997: eight characters + its own check character)
 *   pos 18    GB 32100 check character
 *
 * What is validated, and why no more:
 *  - length 18, the GB 32100 alphabet, positions 3–8 are digits (SH_ERR_USCC_FORMAT);
 *  - the GB 11714 check character at position 17 over positions 9–16 (SH_ERR_USCC_CHECK);
 *  - the GB 32100 check character at position 18 over positions 1–17 (SH_ERR_USCC_CHECK).
 * Authority/type codes and the division code are not checked against their code tables: the tables change
 * (divisions are merged and renamed; codes keep the division of the year they were issued), and a stale table
 * would refuse real enterprises. Both check characters were confirmed on 50 published codes (see
 * test/sandbox/uscc.test.ts). A few codes issued by early pilot registries (e.g. Xiamen's 91350211M00013FA1N)
 * do not satisfy GB 32100 and are refused, as the national standard requires.
 */
import { fail, describe } from '../core/errors.ts';

/** GB 32100-2015 §4 code alphabet; a character's value is its index (0–30). */
export const USCC_ALPHABET = '0123456789ABCDEFGHJKLMNPQRTUWXY';

/** GB 32100-2015 §5 weights W_i = 3^(i−1) mod 31 for positions 1..17. */
const WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28] as const;
/** GB 11714-1997 weights for the eight body characters of an organization code. */
const ORG_WEIGHTS = [3, 7, 9, 10, 5, 8, 4, 2] as const;

const FORMAT = /^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$/;
const FIRST17 = /^[0-9A-HJ-NPQRTUWXY]{17}$/;

/**
 * The GB 32100-2015 check character for the first 17 characters: C18 = alphabet[(31 − Σ W_i·c_i mod 31) mod 31].
 *
 * @throws SafehouseError SH_ERR_USCC_FORMAT when `first17` is not 17 characters of the alphabet.
 * @example usccCheckChar('91350100M000100Y4') === '3'
 */
export function usccCheckChar(first17: string): string {
  if (typeof first17 !== 'string' || !FIRST17.test(first17)) {
    fail('SH_ERR_USCC_FORMAT', `"first17" expected 17 characters of ${USCC_ALPHABET}, got ${describe(first17)}`);
  }
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += WEIGHTS[i]! * USCC_ALPHABET.indexOf(first17[i]!);
  return USCC_ALPHABET[(31 - (sum % 31)) % 31]!;
}

/**
 * The GB 11714-1997 check character of an organization code body (8 characters; digit = its value, letter A–Z =
 * 10–35): C9 = 11 − (Σ W_i·c_i mod 11), where 10 is written 'X' and 11 is written '0'.
 *
 * @throws SafehouseError SH_ERR_USCC_FORMAT when `body8` is not 8 digits or capital letters.
 * @example orgCodeCheckChar('M000100Y') === '4'
 */
export function orgCodeCheckChar(body8: string): string {
  if (typeof body8 !== 'string' || !/^[0-9A-Z]{8}$/.test(body8)) {
    fail('SH_ERR_USCC_FORMAT', `"body8" expected 8 digits or capital letters, got ${describe(body8)}`);
  }
  let sum = 0;
  for (let i = 0; i < 8; i++) {
    const ch = body8.charCodeAt(i);
    sum += ORG_WEIGHTS[i]! * (ch <= 57 ? ch - 48 : ch - 55);
  }
  const c = 11 - (sum % 11);
  return c === 10 ? 'X' : c === 11 ? '0' : String(c);
}

/**
 * Parse a USCC: trim, uppercase, check format and both check characters (GB 32100-2015, GB 11714-1997), and
 * return the canonical 18-character form used everywhere else (subject index, consents, ledger).
 *
 * @throws SafehouseError SH_ERR_USCC_FORMAT (not a string, wrong length, alphabet, non-digit division code);
 *   SH_ERR_USCC_CHECK (wrong organization-code or GB 32100 check character).
 * @example parseUscc(' 91350100m000100y43 ') === '91350100M000100Y43'
 */
export function parseUscc(s: string): string {
  if (typeof s !== 'string') fail('SH_ERR_USCC_FORMAT', `"uscc" expected a string, got ${describe(s)}`);
  const u = s.trim().toUpperCase();
  if (u.length !== 18) {
    fail('SH_ERR_USCC_FORMAT', `"uscc" expected 18 characters, got ${u.length}`, { length: u.length });
  }
  if (!FORMAT.test(u)) {
    fail(
      'SH_ERR_USCC_FORMAT',
      `"uscc" expected GB 32100 characters (${USCC_ALPHABET}; digits at 3–8), got ${describe(u)}`,
      {
        uscc: u,
      },
    );
  }
  const org = orgCodeCheckChar(u.slice(8, 16));
  if (u[16] !== org) {
    fail('SH_ERR_USCC_CHECK', `"uscc" expected organization-code check character ${org} at position 17, got ${u[16]}`, {
      uscc: u,
    });
  }
  const c18 = usccCheckChar(u.slice(0, 17));
  if (u[17] !== c18) {
    fail('SH_ERR_USCC_CHECK', `"uscc" expected check character ${c18}, got ${u[17]}`, { uscc: u });
  }
  return u;
}

/**
 * True when `s` is a valid USCC per {@link parseUscc} (after trimming and uppercasing). Never throws.
 * @example isValidUscc('91350100M000100Y43') === true
 */
export function isValidUscc(s: unknown): boolean {
  try {
    parseUscc(s as string);
    return true;
  } catch {
    return false;
  }
}

/** Real GB/T 2260 county-level divisions, so generated codes look like registrations in those districts. */
const DIVISIONS = [
  '110105',
  '110108',
  '110115',
  '120116',
  '310104',
  '310115',
  '320505',
  '330106',
  '330110',
  '340104',
  '350102',
  '350203',
  '370202',
  '420111',
  '440106',
  '440300',
  '440305',
  '500112',
  '510107',
  '610113',
] as const;

function cryptoRng(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0]! / 2 ** 32;
}

/**
 * A realistic, valid USCC for test data and demos: authority '9' (市场监管), type '1' (企业), a real division code,
 * an organization code — eight digits (pre-2015 style) or 'MA' + six characters (2015+ style) — with its
 * GB 11714 check character, then the GB 32100 check character.
 *
 * `rng` returns uniform numbers in [0, 1); the default uses crypto.getRandomValues. Pass a seeded one for
 * reproducible fixtures.
 *
 * @throws never for an rng that returns values in [0, 1).
 * @example isValidUscc(randomUscc()) === true
 */
export function randomUscc(rng: () => number = cryptoRng): string {
  const pick = (alphabet: string | readonly string[]): string => alphabet[Math.floor(rng() * alphabet.length)]!;
  let body = '';
  if (rng() < 0.5) {
    for (let i = 0; i < 8; i++) body += pick('0123456789');
  } else {
    body = 'MA';
    for (let i = 0; i < 6; i++) body += pick(USCC_ALPHABET); // 2015+ codes draw from the USCC alphabet
  }
  const first17 = '91' + pick(DIVISIONS) + body + orgCodeCheckChar(body);
  return first17 + usccCheckChar(first17);
}

/**
 * Parse a job's subject list: each USCC validated (the error names its index), duplicates removed, order kept.
 * @throws SH_ERR_USCC_FORMAT, SH_ERR_USCC_CHECK with `{ index }`.
 */
export function parseSubjectList(list: readonly string[]): string[] {
  return [
    ...new Set(
      list.map((s, i) => {
        try {
          return parseUscc(s);
        } catch (err) {
          const e = err as { code: 'SH_ERR_USCC_FORMAT'; message: string };
          return fail(e.code, `subjects[${i}]: ${e.message}`, { index: i }, err);
        }
      }),
    ),
  ];
}
