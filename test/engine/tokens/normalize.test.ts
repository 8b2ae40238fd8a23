// Id normalization before tokenization (engine/tokens/normalize.ts): every rule of the file header with its
// examples, the refusals, the catalog ⇄ ID_RULES agreement, and idempotence as a property over random strings.
import { describe, expect, it } from 'vitest';
import {
  ID_RULES,
  MAX_ID_INPUT,
  MAX_ID_LENGTH,
  idRuleFor,
  normalizeId,
  type IdRule,
} from '../../../engine/tokens/normalize.ts';
import { CATALOG } from '../../../sandbox/catalog.ts';
import { mulberry32 } from '../../../core/rng.ts';
import { isCoded } from '../../../core/errors.ts';
import { expectCode } from '../../fixtures/expect.ts';

const RULES: IdRule[] = ['certificate', 'account', 'name', 'generic'];
const CERT = '粤(2021)深圳市不动产权第0123456号';

describe('normalizeId: all rules', () => {
  it.each(RULES)('%s: NFKC turns full-width ASCII into half-width', (rule) => {
    expect(normalizeId(rule, '０１２ＡＢ')).toBe('012AB');
    // brackets: generic keeps ASCII (), the bracket rules map them to () anyway
    expect(normalizeId(rule, '０１２ＡＢ（）')).toBe('012AB()');
  });

  it.each(RULES)('%s: removes whitespace of every kind and zero-width characters', (rule) => {
    const messy = ' A\u3000B\u00A0C\tD\nE\r\nF\u200BG\u200CH\u200DI\uFEFFJ\u2003K\u0085L\u2060M ';
    expect(normalizeId(rule, messy)).toBe('ABCDEFGHIJKLM');
  });

  it.each(RULES)('%s: uppercases ASCII letters only', (rule) => {
    expect(normalizeId(rule, 'abc xyz')).toBe('ABCXYZ');
    expect(normalizeId(rule, 'ａｂｃ')).toBe('ABC'); // full-width lowercase: NFKC, then uppercase
    expect(normalizeId(rule, 'straße')).toBe('STRAßE'); // ß has no locale-free one-letter uppercase: untouched
    expect(normalizeId(rule, 'é')).toBe('é'); // not ASCII: untouched
  });

  it.each(RULES)('%s: canonically equivalent inputs give the same id', (rule) => {
    expect(normalizeId(rule, 'caf\u00E9')).toBe(normalizeId(rule, 'cafe\u0301'));
    // …also when only whitespace separated the base letter and its combining mark
    expect(normalizeId(rule, 'cafe \u0301')).toBe(normalizeId(rule, 'caf\u00E9'));
    expect(normalizeId(rule, 'ｶﾞ')).toBe('ガ'); // half-width katakana + voiced mark → one full-width character
  });

  it.each(RULES)('%s: refuses values that are empty after normalization', (rule) => {
    for (const v of ['', ' ', '\u3000\u200B\uFEFF', '\t\n']) expectCode(() => normalizeId(rule, v), 'SH_ERR_ID_VALUE');
  });

  it.each(RULES)('%s: refuses results longer than 256 code points, counting after whitespace removal', (rule) => {
    expect(normalizeId(rule, '7'.repeat(MAX_ID_LENGTH))).toHaveLength(MAX_ID_LENGTH);
    expectCode(() => normalizeId(rule, '7'.repeat(MAX_ID_LENGTH + 1)), 'SH_ERR_ID_VALUE');
    expect(normalizeId(rule, '7 '.repeat(MAX_ID_LENGTH))).toHaveLength(MAX_ID_LENGTH);
    // code points, not UTF-16 units: 256 astral characters (512 units) are allowed
    expect([...normalizeId(rule, '𠀀'.repeat(MAX_ID_LENGTH))]).toHaveLength(MAX_ID_LENGTH);
    expectCode(() => normalizeId(rule, ' '.repeat(MAX_ID_INPUT + 1)), 'SH_ERR_ID_VALUE');
  });

  it.each(RULES)('%s: refuses control characters and lone surrogates', (rule) => {
    expectCode(() => normalizeId(rule, 'AB\u0000C'), 'SH_ERR_ID_VALUE');
    expectCode(() => normalizeId(rule, 'AB\u007FC'), 'SH_ERR_ID_VALUE');
    expectCode(() => normalizeId(rule, 'AB\uD800C'), 'SH_ERR_ID_VALUE');
  });

  it('refuses an unknown rule or a value that is not a string (programmer errors)', () => {
    expectCode(() => normalizeId('phone' as IdRule, '1'), 'SH_ERR_INVALID_ARGUMENT');
    expectCode(() => normalizeId('generic', 12 as unknown as string), 'SH_ERR_INVALID_ARGUMENT');
    expectCode(() => normalizeId('generic', null as unknown as string), 'SH_ERR_INVALID_ARGUMENT');
  });
});

describe('normalizeId: certificate (不动产权证书号)', () => {
  it('removes book-title brackets and unifies bracket variants to ASCII ()', () => {
    expect(normalizeId('certificate', '《粤（2021）深圳市不动产权第 0123456 号》')).toBe(CERT);
    expect(normalizeId('certificate', '粤〔2021〕深圳市不动产权第0123456号')).toBe(CERT);
    expect(normalizeId('certificate', '粤【2021】深圳市不动产权第0123456号')).toBe(CERT);
    expect(normalizeId('certificate', '粤［2021］深圳市不动产权第0123456号')).toBe(CERT);
    expect(normalizeId('certificate', '粤[2021]深圳市不动产权第0123456号')).toBe(CERT);
    expect(normalizeId('certificate', '〈粤(2021)深圳市不动产权第0123456号〉')).toBe(CERT);
    expect(normalizeId('certificate', '粤﹝2021﹞深圳市不动产权第０１２３４５６号')).toBe(CERT); // small forms via NFKC
    expect(normalizeId('certificate', ` ${CERT}\u200B`)).toBe(CERT);
  });

  it('keeps Chinese characters and digits as they are, and the value is its own normal form', () => {
    expect(normalizeId('certificate', CERT)).toBe(CERT);
    expect(normalizeId('certificate', '京(2019)朝阳区不动产权第0000001号')).toBe('京(2019)朝阳区不动产权第0000001号');
  });

  it('refuses a value made only of brackets', () => {
    expectCode(() => normalizeId('certificate', '《 》'), 'SH_ERR_ID_VALUE');
  });
});

describe('normalizeId: account (水电户号, bank accounts)', () => {
  it('removes - _ . / (half- and full-width) and Unicode dashes', () => {
    expect(normalizeId('account', '4400-1234_5678.90/12')).toBe('4400123456789012');
    expect(normalizeId('account', '４４００－１２３４＿５６７８．９０／１２')).toBe('4400123456789012');
    expect(normalizeId('account', '6222 0212 3456 7890 123')).toBe('6222021234567890123');
    expect(normalizeId('account', '0755\u2013123\u2014456\u2212789')).toBe('0755123456789');
    expect(normalizeId('account', 'sz-dl-00123')).toBe('SZDL00123');
  });

  it('does not unify brackets (not part of the account rule)', () => {
    expect(normalizeId('account', '（12）')).toBe('(12)');
    expect(normalizeId('account', '【12】')).toBe('【12】');
  });

  it('refuses a value made only of separators', () => {
    expectCode(() => normalizeId('account', '-- / ..'), 'SH_ERR_ID_VALUE');
  });
});

describe('normalizeId: name (抵押权人, organizations)', () => {
  it('unifies bracket variants to () and nothing else', () => {
    const want = '中国工商银行股份有限公司深圳(分行)';
    expect(normalizeId('name', '中国工商银行股份有限公司深圳（分行）')).toBe(want);
    expect(normalizeId('name', '中国工商银行股份有限公司深圳【分行】')).toBe(want);
    expect(normalizeId('name', '中国工商银行股份有限公司 深圳〔分行〕')).toBe(want);
    expect(normalizeId('name', want)).toBe(want);
    // separators and book-title brackets are significant in names
    expect(normalizeId('name', 'A-B.C/D_E《F》')).toBe('A-B.C/D_E《F》');
    expect(normalizeId('name', 'Industrial and Commercial Bank of China')).toBe('INDUSTRIALANDCOMMERCIALBANKOFCHINA');
  });
});

describe('normalizeId: generic', () => {
  it('applies the all-rules part only', () => {
    expect(normalizeId('generic', '０１２ＡＢ（）')).toBe('012AB()');
    expect(normalizeId('generic', '粤〔2021〕-1')).toBe('粤〔2021〕-1');
    expect(normalizeId('generic', '《a-b》')).toBe('《A-B》');
  });
});

describe('ID_RULES and idRuleFor', () => {
  it('maps the catalog id fields to their rules and anything else to generic', () => {
    expect(idRuleFor('property_cert_no')).toBe('certificate');
    expect(idRuleFor('mortgage_holder')).toBe('name');
    expect(idRuleFor('utility_account_no')).toBe('generic');
    expect(idRuleFor('constructor')).toBe('generic'); // no prototype lookups
    expect(idRuleFor('__proto__')).toBe('generic');
    expect(Object.isFrozen(ID_RULES)).toBe(true);
  });

  it('every id field of the catalog has a rule, and every rule entry is a catalog id field', () => {
    const idFields = CATALOG.flatMap((c) => c.fields.filter((f) => f.type === 'id').map((f) => f.name)).sort();
    expect(Object.keys(ID_RULES).sort()).toEqual(idFields);
    for (const r of Object.values(ID_RULES)) expect(RULES).toContain(r);
  });
});

describe('normalizeId: idempotence (property, seeded)', () => {
  // An adversarial alphabet: everything the rules touch, plus characters whose NFKC forms contain spaces or compose
  // with neighbours once something between them is removed.
  const ALPHABET = [
    ...'aAzZ09-_./()[]{}<>=',
    ...'０１ＡＢａｂ（）［］－＿．／',
    ...'《》〈〉〔〕【】〖〗〘〙﹝﹞︵︶︹︺',
    ' ',
    '\t',
    '\n',
    '\u00A0',
    '\u3000',
    '\u2003',
    '\u0085',
    '\u200B',
    '\u200C',
    '\u200D',
    '\uFEFF',
    '\u2060',
    '\u00AD',
    '\u200E',
    '\u0301',
    '\u0308',
    '\u0338',
    '\u0307',
    '\u3099',
    '\u309A',
    '\uFE00',
    'e',
    'i',
    'ı',
    'ß',
    '\u00A8',
    '\u00B4',
    '½',
    '①',
    '㍿',
    '℡',
    'ﬁ',
    'Ⅻ',
    'ｶ',
    'ﾞ',
    'か',
    'ᄀ',
    'ᅡ',
    'ᆨ',
    '가',
    '粤',
    '第',
    '号',
    '号',
    '\u2010',
    '\u2014',
    '\u2212',
    '〜',
    '𠀀',
    'é',
    'Å',
    '\u212B',
  ];

  it.each(RULES)('%s: normalizeId(normalizeId(x)) === normalizeId(x) for 3000 random strings', (rule) => {
    const rng = mulberry32(0x5afe + rule.length);
    let checked = 0;
    for (let n = 0; n < 3000; n++) {
      const len = 1 + Math.floor(rng() * 12);
      let x = '';
      for (let i = 0; i < len; i++) x += ALPHABET[Math.floor(rng() * ALPHABET.length)]!;
      let once: string;
      try {
        once = normalizeId(rule, x);
      } catch (err) {
        expect(isCoded(err, 'SH_ERR_ID_VALUE'), `${JSON.stringify(x)}: ${String(err)}`).toBe(true); // the one refusal
        continue;
      }
      expect(normalizeId(rule, once), JSON.stringify(x)).toBe(once);
      // the invariants the rules promise hold on every output
      expect(once).toBe(once.normalize('NFKC'));
      expect(once).not.toMatch(/[\p{White_Space}\p{Default_Ignorable_Code_Point}a-z]/u);
      if (rule === 'certificate') expect(once).not.toMatch(/[《》〈〉〔〕【】〖〗〘〙[\]]/);
      if (rule === 'name') expect(once).not.toMatch(/[〔〕【】〖〗〘〙[\]]/);
      if (rule === 'account') expect(once).not.toMatch(/[-_./]/);
      checked++;
    }
    expect(checked).toBeGreaterThan(2500);
  });
});
