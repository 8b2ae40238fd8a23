/**
 * Normalization of string-id values before they become OPRF tokens (docs/design.md §2, §4.4, §5 Verification).
 *
 * A token matches only if the provider's upload and the bank's claim hash exactly the same bytes, so the same
 * certificate number, account number or organization name typed two ways must normalize to one string. Both sides
 * call {@link normalizeId} with the rule of the field ({@link idRuleFor}); `tokenInput` (./oprf.ts) refuses a value
 * that is not already normalized, so a forgotten call fails loudly instead of silently never matching.
 *
 * Rules (every rule is tested in test/engine/tokens/normalize.test.ts):
 *
 * 1. All rules, in this order:
 *    a. Unicode NFKC (UAX #15). Full-width ASCII becomes half-width (`０１２ＡＢ（）` → `012AB()`), compatibility
 *       forms are unfolded (`①` → `1`, `㍿` → `株式会社`, vertical/small bracket forms → their plain brackets), and
 *       canonically equivalent inputs (`é` precomposed or `e` + U+0301) become the same string.
 *    b. Remove every White_Space character (space, tab, CR/LF, NBSP U+00A0, U+3000 ideographic space, U+2000–U+200A,
 *       NEL U+0085 …) and every Default_Ignorable_Code_Point (zero-width space/non-joiner/joiner U+200B–U+200D,
 *       BOM U+FEFF, word joiner U+2060, soft hyphen U+00AD, bidi marks U+200E/U+200F/U+202A–U+202E, variation
 *       selectors …). These are invisible, so two values that look the same on screen compare equal.
 *       Using the two Unicode properties rather than a hand-made list also catches the other invisible characters
 *       that copy-paste from Word, Excel or PDF leaves behind.
 *    c. the rule-specific step (below);
 *    d. NFKC again, so that characters brought together by b or c compose (`e`, space, U+0301 → `é`);
 *    e. uppercase ASCII letters a–z only (no locale-dependent Unicode case mapping: `ß`, Turkish `i` are untouched);
 *    f. NFKC once more (an uppercase letter may compose where the lowercase did not: `i` + U+0307 → `İ`).
 *    The pass a–f is repeated until the string no longer changes (two passes for everything we have seen, the
 *    second only confirming), which makes normalization idempotent by construction:
 *    `normalizeId(r, normalizeId(r, x)) === normalizeId(r, x)` (property-tested).
 * 2. `certificate` (不动产权证书号, e.g. `粤(2021)深圳市不动产权第0123456号`): remove the book-title brackets
 *    《 》 〈 〉 and map bracket variants 〔〕 【】 〖〗 〘〙 and `[ ]` (NFKC's image of ［］) to ASCII `( )`. Chinese
 *    characters and digits are kept as they are: `《粤（2021）深圳市不动产权第 0123456 号》` and
 *    `粤〔2021〕深圳市不动产权第0123456号` both give `粤(2021)深圳市不动产权第0123456号`.
 * 3. `account` (水电户号, bank account numbers): remove the separators `-` `_` `.` `/` and the Unicode dashes
 *    U+2010–U+2015 and U+2212 (after NFKC, so full-width `－＿．／` are covered too).
 * 4. `name` (抵押权人, organization names): map bracket variants to `( )` as for certificates
 *    (`中国工商银行股份有限公司深圳【分行】` → `中国工商银行股份有限公司深圳(分行)`); nothing else, so `-`, `.` and
 *    《》 inside a name are significant.
 * 5. `generic` (any id field without a rule of its own): step 1 only.
 *
 * Refused with SH_ERR_ID_VALUE: a result that is empty, longer than {@link MAX_ID_LENGTH} code points, or that still
 * contains a control character (C0/C1, e.g. NUL) or a lone surrogate — such a value is corrupt, not an id. Inputs
 * longer than {@link MAX_ID_INPUT} UTF-16 units are refused before any work is done.
 */
import { describe, fail } from '../../core/errors.ts';

/** How a field's values are normalized; see the file header. */
export type IdRule = 'certificate' | 'account' | 'name' | 'generic';

const RULES: readonly IdRule[] = ['certificate', 'account', 'name', 'generic'];

/**
 * The catalog's string-id fields (sandbox/catalog.ts, type `id`) and their rules. A field not listed here is
 * normalized with `generic`; test/engine/tokens/normalize.test.ts fails when the catalog gains an id field that is not
 * listed, so that adding one is a decision about its rule.
 */
export const ID_RULES: Readonly<Record<string, IdRule>> = Object.freeze({
  property_cert_no: 'certificate',
  mortgage_holder: 'name',
});

/** Longest normalized id, in Unicode code points (certificate numbers are ~25, organization names < 100). */
export const MAX_ID_LENGTH = 256;
/** Longest raw input accepted, in UTF-16 code units: bounds the work done on a hostile cell. */
export const MAX_ID_INPUT = 4096;

const INVISIBLE = /[\p{White_Space}\p{Default_Ignorable_Code_Point}]/gu;
const BOOK_TITLE = /[《》〈〉]/g;
const OPEN = /[[〔【〖〘]/g;
const CLOSE = /[\]〕】〗〙]/g;
const SEPARATORS = /[-_./\u2010-\u2015\u2212]/g;
const LOWER_ASCII = /[a-z]+/g;
const CORRUPT = /[\p{Cc}\p{Cs}]/u;
const MAX_PASSES = 4;

/**
 * The normalization rule for an id field: its entry in {@link ID_RULES}, or `generic`.
 * @throws SafehouseError SH_ERR_INVALID_ARGUMENT when `field` is not a string.
 * @example idRuleFor('property_cert_no') === 'certificate'; idRuleFor('anything_else') === 'generic'
 */
export function idRuleFor(field: string): IdRule {
  if (typeof field !== 'string') fail('SH_ERR_INVALID_ARGUMENT', `"field" expected a string, got ${describe(field)}`);
  return Object.hasOwn(ID_RULES, field) ? ID_RULES[field]! : 'generic';
}

/**
 * Normalize an id value under `rule` (rules in the file header). Deterministic and idempotent.
 *
 * @throws SafehouseError SH_ERR_ID_VALUE when the result is empty, longer than 256 code points, contains a control
 *   character or lone surrogate, or the input is longer than 4096 UTF-16 units; SH_ERR_INVALID_ARGUMENT for an
 *   unknown rule or a value that is not a string.
 * @example normalizeId('certificate', '《粤（2021）深圳市不动产权第 0123456 号》') === '粤(2021)深圳市不动产权第0123456号'
 * @example normalizeId('account', '4400-1234 5678／90') === '44001234567890'
 */
export function normalizeId(rule: IdRule, value: string): string {
  if (!RULES.includes(rule))
    fail('SH_ERR_INVALID_ARGUMENT', `"rule" expected one of ${RULES.join(', ')}, got ${describe(rule)}`);
  if (typeof value !== 'string') fail('SH_ERR_INVALID_ARGUMENT', `"value" expected a string, got ${describe(value)}`);
  if (value.length > MAX_ID_INPUT) {
    fail('SH_ERR_ID_VALUE', `"value" expected at most ${MAX_ID_INPUT} characters, got ${value.length}`, {
      rule,
      length: value.length,
    });
  }
  let s = value;
  let stable = false;
  for (let i = 0; i < MAX_PASSES && !stable; i++) {
    const next = pass(rule, s);
    stable = next === s;
    s = next;
  }
  // Unreachable in practice (the second pass is a no-op); refusing beats returning a value that is not a fixed point.
  if (!stable) fail('SH_ERR_ID_VALUE', `"value" does not normalize to a stable form under rule ${rule}`, { rule });
  if (s === '') fail('SH_ERR_ID_VALUE', `"value" is empty after ${rule} normalization`, { rule });
  if (CORRUPT.test(s)) fail('SH_ERR_ID_VALUE', `"value" contains a control character or lone surrogate`, { rule });
  const n = [...s].length; // code points, not UTF-16 units
  if (n > MAX_ID_LENGTH) {
    fail('SH_ERR_ID_VALUE', `"value" expected at most ${MAX_ID_LENGTH} characters after normalization, got ${n}`, {
      rule,
      length: n,
    });
  }
  return s;
}

/** One pass of steps a–f (file header). */
function pass(rule: IdRule, value: string): string {
  let s = value.normalize('NFKC').replace(INVISIBLE, '');
  switch (rule) {
    case 'certificate':
      s = s.replace(BOOK_TITLE, '').replace(OPEN, '(').replace(CLOSE, ')');
      break;
    case 'name':
      s = s.replace(OPEN, '(').replace(CLOSE, ')');
      break;
    case 'account':
      s = s.replace(SEPARATORS, '');
      break;
    case 'generic':
      break;
  }
  s = s.normalize('NFKC').replace(LOWER_ASCII, (m) => m.toUpperCase());
  return s.normalize('NFKC');
}
