import { describe, expect, it } from 'vitest';
import { isCoded } from '../../core/errors.ts';
import { thrownCode as code } from '../fixtures/expect.ts';
import {
  USCC_ALPHABET,
  isValidUscc,
  orgCodeCheckChar,
  parseUscc,
  randomUscc,
  usccCheckChar,
} from '../../sandbox/uscc.ts';

/**
 * Published USCCs of real registrations, as quoted in open-source validators' test suites and documentation
 * (e.g. hutool's CreditCodeUtilTest: 91310115591693856A, 91310110666007217T). Authorities 1 (机构编制), 5 (民政),
 * 9 (市场监管); types 1/2/3; pre-2015 numeric and 2015+ "MA/MB/MJ" subject codes. Each was checked by
 * sandbox/uscc.ts and against an independent scratch implementation of both check rules.
 */
const PUBLISHED = [
  '91350100M000100Y43',
  '91110105771583283D',
  '91110000802100433B',
  '91110108740084270C',
  '112302070019030687',
  '91110108735106340Y',
  '911101077776591113',
  '51610700305332460K',
  '91440300359143307G',
  '11610923MB2900168E',
  '1134082855783407XL',
  '91341000MA2N0ABGXX',
  '91110228397176695A',
  '91110111567495091J',
  '51100000500019541K',
  '11330283002982634F',
  '92510100MA61WJ3204',
  '52610500MJU60350X1',
  '91510000779827684C',
  '1142092201131905X1',
  '91440300311906854A',
  '51140200MJ1693047P',
  '913101135696449862',
  '91460600MA5RC30P9Y',
  '11991000010647510A',
  '91110113766754543Y',
  '121526004609138637',
  '52440111MJK9980480',
  '91330200750364874C',
  '52120000MJ0529018E',
  '91350200776049653A',
  '91350500798359476R',
  '91350503MA31DKY80A',
  '91350200MA31E12PXF',
  '91440101MA5CJQ4N59',
  '913502000728319549',
  '123502001549897397',
  '91350503MA31DNG762',
  '913502115628130384',
  '9135021359498494XQ',
  '91350203MA31NDF85F',
  '91350203MA32AXT97E',
  '91350203MA31XXW31H',
  '91350206MA31LUJ437',
  '91350213678251743X',
  '91350200MA2YJ1XR9G',
  '91310115591693856A',
  '91310110666007217T',
  '91440300708461136T',
  '91110108551385082Q',
];

/** Codes from early pilot registries (Fujian, 2015) that are quoted as real but violate GB 32100's check rule. */
const PILOT_NONCONFORMING = ['91350211M00013FA1N', '91350200M000000510', '91350128M00000019A', '91350203M0001QAY9B'];

/** mulberry32: a small seeded PRNG for reproducible generated codes. */
function seeded(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

describe('GB 32100-2015 check character', () => {
  it('matches the hand computation for 91350100M000100Y43', () => {
    // values 9,1,3,5,0,1,0,0,M=21,0,0,0,1,0,0,Y=30,4 × weights 1,3,9,27,19,26,16,17,20,29,25,13,8,24,10,30,28
    // = 9+3+27+135+26+420+8+900+112 = 1640; 1640 mod 31 = 28; 31 − 28 = 3 → '3'.
    expect(usccCheckChar('91350100M000100Y4')).toBe('3');
    // GB 11714: M=22,0,0,0,1,0,0,Y=34 × 3,7,9,10,5,8,4,2 = 66+5+68 = 139; 139 mod 11 = 7; 11 − 7 = 4 → '4'.
    expect(orgCodeCheckChar('M000100Y')).toBe('4');
  });

  it('accepts every published code', () => {
    for (const u of PUBLISHED) {
      expect(parseUscc(u), u).toBe(u);
      expect(isValidUscc(u), u).toBe(true);
      expect(usccCheckChar(u.slice(0, 17))).toBe(u[17]);
    }
  });

  it('refuses pilot-era codes that violate the check rule', () => {
    for (const u of PILOT_NONCONFORMING)
      expect(
        code(() => parseUscc(u)),
        u,
      ).toBe('SH_ERR_USCC_CHECK');
  });

  it('trims and uppercases to the canonical form', () => {
    expect(parseUscc('  91350100m000100y43\n')).toBe('91350100M000100Y43');
  });

  it('refuses usccCheckChar input that is not 17 alphabet characters', () => {
    expect(code(() => usccCheckChar('91350100M000100Y'))).toBe('SH_ERR_USCC_FORMAT');
    expect(code(() => usccCheckChar('91350100M000100I4'))).toBe('SH_ERR_USCC_FORMAT');
  });
});

describe('GB 11714-1997 organization code check character', () => {
  it("writes 10 as 'X' and 11 as '0'", () => {
    expect(orgCodeCheckChar('55783407')).toBe('X'); // from the published 1134082855783407XL
    expect(orgCodeCheckChar('00000000')).toBe('0');
  });

  it('refuses a code whose position 17 is wrong even when position 18 is recomputed to match', () => {
    const first16 = '91350100M000100Y';
    for (const c of USCC_ALPHABET) {
      if (c === '4') continue;
      const first17 = first16 + c;
      expect(
        code(() => parseUscc(first17 + usccCheckChar(first17))),
        c,
      ).toBe('SH_ERR_USCC_CHECK');
    }
  });
});

describe('corruptions', () => {
  const samples = [
    '91350100M000100Y43',
    '91310115591693856A',
    '1134082855783407XL',
    '91440101MA5CJQ4N59',
    '52610500MJU60350X1',
  ];

  it('detects every single-character substitution at every position', () => {
    for (const u of samples) {
      for (let i = 0; i < 18; i++) {
        const chars = i >= 2 && i <= 7 ? '0123456789' : USCC_ALPHABET;
        for (const c of chars) {
          if (c === u[i]) continue;
          const bad = u.slice(0, i) + c + u.slice(i + 1);
          expect(
            code(() => parseUscc(bad)),
            bad,
          ).toBe('SH_ERR_USCC_CHECK');
        }
      }
    }
  });

  it('detects every adjacent transposition within positions 1–17', () => {
    for (const u of samples) {
      for (let i = 0; i < 16; i++) {
        if (u[i] === u[i + 1]) continue;
        const bad = u.slice(0, i) + u[i + 1] + u[i] + u.slice(i + 2);
        expect(isValidUscc(bad), bad).toBe(false);
      }
    }
  });

  it('reports format errors for length, alphabet and the division digits', () => {
    expect(code(() => parseUscc('91350100M000100Y4'))).toBe('SH_ERR_USCC_FORMAT');
    expect(code(() => parseUscc('91350100M000100Y433'))).toBe('SH_ERR_USCC_FORMAT');
    expect(code(() => parseUscc(''))).toBe('SH_ERR_USCC_FORMAT');
    for (const c of 'IOZSV')
      expect(
        code(() => parseUscc('91350100M000100' + c + '43')),
        c,
      ).toBe('SH_ERR_USCC_FORMAT');
    expect(code(() => parseUscc('9135A100M000100Y43'))).toBe('SH_ERR_USCC_FORMAT');
    expect(code(() => parseUscc('91350100M000-00Y43'))).toBe('SH_ERR_USCC_FORMAT');
    expect(code(() => parseUscc(913501 as unknown as string))).toBe('SH_ERR_USCC_FORMAT');
    expect(isValidUscc(null)).toBe(false);
  });
});

describe('randomUscc', () => {
  it('produces valid, realistic codes of both subject-code styles', () => {
    const rng = seeded(20240601);
    let ma = 0;
    for (let i = 0; i < 2000; i++) {
      const u = randomUscc(rng);
      expect(parseUscc(u), u).toBe(u);
      expect(u.slice(0, 2)).toBe('91');
      expect(u.slice(2, 8)).toMatch(/^[1-6]\d{5}$/);
      if (u.slice(8, 10) === 'MA') ma++;
      else expect(u.slice(8, 16)).toMatch(/^\d{8}$/);
    }
    expect(ma).toBeGreaterThan(800);
    expect(ma).toBeLessThan(1200);
  });

  it('is reproducible with a seeded rng and valid with the default one', () => {
    expect(randomUscc(seeded(7))).toBe(randomUscc(seeded(7)));
    expect(isValidUscc(randomUscc())).toBe(true);
  });
});
