import { describe, expect, it } from 'vitest';
import { parseCsv, parseCsvBytes, toCsv, type CsvOptions } from '../../core/csv.ts';
import { isCoded, type ErrorCode } from '../../core/errors.ts';

function thrown(fn: () => unknown, code: ErrorCode): { message: string; details: Record<string, unknown> } {
  try {
    fn();
  } catch (err) {
    if (!isCoded(err, code)) throw err;
    return { message: err.message, details: { ...err.details } };
  }
  return expect.fail(`expected ${code}, nothing was thrown`);
}

/** Expect SH_ERR_CSV_MALFORMED with these details and a message naming the line. */
function malformed(text: string, details: Record<string, unknown>, opts?: CsvOptions): string {
  const e = thrown(() => parseCsv(text, opts), 'SH_ERR_CSV_MALFORMED');
  expect(e.details).toEqual(details);
  expect(e.message).toContain(`line ${String(details['line'])}`);
  return e.message;
}

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

describe('parseCsv: RFC 4180 records', () => {
  it('reads LF, CRLF and mixed line ends, with or without a final newline', () => {
    const want = {
      header: ['a', 'b'],
      rows: [
        ['1', '2'],
        ['3', '4'],
      ],
      lines: [2, 3],
    };
    expect(parseCsv('a,b\n1,2\n3,4\n')).toEqual(want);
    expect(parseCsv('a,b\n1,2\n3,4')).toEqual(want);
    expect(parseCsv('a,b\r\n1,2\r\n3,4\r\n')).toEqual(want);
    expect(parseCsv('a,b\r\n1,2\r\n3,4')).toEqual(want);
    expect(parseCsv('a,b\n1,2\r\n3,4\n')).toEqual(want);
  });

  it('reads a header-only file', () => {
    expect(parseCsv('a,b\n')).toEqual({ header: ['a', 'b'], rows: [], lines: [] });
    expect(parseCsv('a')).toEqual({ header: ['a'], rows: [], lines: [] });
  });

  it('reads empty cells, including a trailing empty cell', () => {
    expect(parseCsv('a,b,c\n,,\n1,,\n,,3').rows).toEqual([
      ['', '', ''],
      ['1', '', ''],
      ['', '', '3'],
    ]);
  });

  it('unquotes quoted fields: "" escapes, commas, LF and CRLF inside quotes', () => {
    const t = parseCsv('id,note\r\n1,"say ""hi"", ok"\r\n2,"two\nlines"\r\n3,"crlf\r\ninside"\r\n4,""\r\n5,""""\r\n');
    expect(t.rows).toEqual([
      ['1', 'say "hi", ok'],
      ['2', 'two\nlines'],
      ['3', 'crlf\r\ninside'],
      ['4', ''],
      ['5', '"'],
    ]);
    expect(t.lines).toEqual([2, 3, 5, 7, 8]);
  });

  it('reports each row at its first physical line', () => {
    const t = parseCsv('a,b\n"x\n\n\ny",1\n2,"p\nq"\n3,4\n');
    expect(t.lines).toEqual([2, 6, 8]);
  });

  it('drops a UTF-8 BOM at the start only', () => {
    expect(parseCsv('\uFEFFuscc,name\n1,甲\n').header).toEqual(['uscc', 'name']);
    expect(parseCsv('a\n\uFEFFx\n').rows).toEqual([['\uFEFFx']]);
  });

  it('trims header names but not cells', () => {
    const t = parseCsv(' uscc , revenue\t\n  91350100M000100Y43 , 12 \n');
    expect(t.header).toEqual(['uscc', 'revenue']);
    expect(t.rows).toEqual([['  91350100M000100Y43 ', ' 12 ']]);
  });
});

describe('parseCsv: empty lines', () => {
  it('ignores empty lines at the end', () => {
    for (const tail of ['\n', '\n\n', '\n\n\n', '\r\n\r\n', '\r\n\n\r\n']) {
      expect(parseCsv(`a,b\n1,2${tail}`).rows).toEqual([['1', '2']]);
    }
    expect(parseCsv('a,b\n\n\n').rows).toEqual([]);
  });

  it('refuses an empty line in the middle', () => {
    malformed('a,b\n1,2\n\n3,4\n', { line: 3 });
    malformed('a,b\r\n\r\n1,2\r\n', { line: 2 });
    malformed('a\n1\n\n2\n', { line: 3 });
  });

  it('refuses an empty file', () => {
    for (const t of ['', '\uFEFF', '\n', '\r\n\r\n']) malformed(t, { line: 1 });
  });

  it('keeps a whitespace-only line as data (cells are not trimmed)', () => {
    expect(parseCsv('a\n  \nb\n').rows).toEqual([['  '], ['b']]);
    malformed('a,b\n  \n', { line: 2, expected: 2, got: 1 });
  });
});

describe('parseCsv: malformed input', () => {
  it('refuses an unterminated quote, naming where it opened', () => {
    const m = malformed('a,b\n1,"open\nstill open\n', { line: 2, column: 3 });
    expect(m).toMatch(/unterminated/);
    malformed('"a', { line: 1, column: 1 });
  });

  it('refuses a quote inside an unquoted field', () => {
    expect(malformed('a,b\n1,x"y\n', { line: 2, column: 4 })).toMatch(/quote inside an unquoted field/);
    malformed('a,b\n1, "y"\n', { line: 2, column: 4 });
    malformed('a,b"\n', { line: 1, column: 4 });
  });

  it('refuses characters after a closing quote', () => {
    expect(malformed('a,b\n"x"y,1\n', { line: 2, column: 4 })).toMatch(/after a closing quote/);
    malformed('a,b\n"x" ,1\n', { line: 2, column: 4 });
    malformed('a,b\n1,"p\nq"r\n', { line: 3, column: 3 });
  });

  it('refuses a bare CR outside quotes', () => {
    malformed('a,b\r1,2\n', { line: 1, column: 4 });
    malformed('a,b\n1,"x"\r2,3\n', { line: 2, column: 6 });
  });

  it('refuses a row whose column count differs from the header', () => {
    expect(malformed('a,b\n1,2\n1,2,3\n', { line: 3, expected: 2, got: 3 })).toMatch(/3 fields.*header has 2/);
    malformed('a,b\n1\n', { line: 2, expected: 2, got: 1 });
    malformed('a,b\n1,2,\n', { line: 2, expected: 2, got: 3 });
  });

  it('refuses empty and duplicate header names (after trimming)', () => {
    malformed('a,,c\n', { line: 1, column: 3 });
    malformed('a,  ,c\n', { line: 1, column: 3 });
    malformed('a,""\n', { line: 1, column: 3 });
    expect(malformed('a,b,a\n', { line: 1, column: 5 })).toMatch(/duplicate header name "a"/);
    malformed('a,b, b \n', { line: 1, column: 5 });
  });

  it('refuses a lone surrogate in string input', () => {
    malformed('a,b\n1,\uD800x\n', { line: 2 });
  });
});

describe('parseCsv: limits and options', () => {
  it('enforces maxRows (header not counted)', () => {
    expect(parseCsv('a\n1\n2\n3\n', { maxRows: 3 }).rows).toHaveLength(3);
    malformed('a\n1\n2\n3\n4\n', { line: 5 }, { maxRows: 3 });
  });

  it('enforces maxFieldLength on unquoted, quoted and header cells, after unquoting', () => {
    const o = { maxFieldLength: 4 };
    expect(parseCsv('abcd\nwxyz\n""""""""""\n', o).rows).toEqual([['wxyz'], ['""""']]);
    malformed('a,b\n1,12345\n', { line: 2, column: 3 }, o);
    malformed('a,b\n1,"12\n345"\n', { line: 2, column: 3 }, o);
    malformed('abcde\n', { line: 1, column: 1 }, o);
  });

  it('checks requiredHeader as a set: all present, any order, extras allowed', () => {
    const req = { requiredHeader: ['subject', 'field', 'op', 'value'] };
    expect(parseCsv('value,op,note,field,subject\n', req).header).toHaveLength(5);
    const e = thrown(() => parseCsv('subject,op\n', req), 'SH_ERR_CSV_MALFORMED');
    expect(e.details).toEqual({ line: 1, missing: 'field,value' });
    expect(e.message).toContain('"field", "value"');
  });

  it('validates options up front', () => {
    const bad: unknown[] = [
      { maxRows: 0 },
      { maxRows: 1.5 },
      { maxFieldLength: -1 },
      { maxFieldLength: '10' },
      { requiredHeader: 'a' },
      { requiredHeader: [' a'] },
      { maxRow: 3 },
      null,
    ];
    for (const o of bad) thrown(() => parseCsv('a\n', o as CsvOptions), 'SH_ERR_INVALID_ARGUMENT');
    thrown(() => parseCsv(utf8('a') as unknown as string), 'SH_ERR_INVALID_ARGUMENT');
  });

  it('parses a 20 000-row file', () => {
    const parts = ['uscc,revenue,note\r\n'];
    for (let r = 0; r < 20_000; r++) parts.push(`S${r},${r * 7},${r % 10 === 0 ? `"row ${r}, ""tenth"""` : ''}\r\n`);
    const t = parseCsv(parts.join(''));
    expect(t.rows).toHaveLength(20_000);
    expect(t.lines[19_999]).toBe(20_001);
    expect(t.rows[0]).toEqual(['S0', '0', 'row 0, "tenth"']);
    expect(t.rows[12_345]).toEqual(['S12345', String(12_345 * 7), '']);
    expect(t.rows[19_990]).toEqual(['S19990', String(19_990 * 7), 'row 19990, "tenth"']);
  });
});

describe('parseCsvBytes: strict UTF-8', () => {
  it('decodes UTF-8 and drops a BOM', () => {
    const bytes = new Uint8Array([0xef, 0xbb, 0xbf, ...utf8('名称,额度\n甲公司,"1,000"\n')]);
    expect(parseCsvBytes(bytes)).toEqual({ header: ['名称', '额度'], rows: [['甲公司', '1,000']], lines: [2] });
  });

  it('refuses invalid UTF-8, naming the line', () => {
    const cases: [number[], number][] = [
      [[...utf8('a,b\n1,'), 0xff, ...utf8('\n')], 2], // invalid byte
      [[...utf8('a,b\n1,2\n3,'), 0xc0, 0xaf], 3], // overlong "/"
      [[...utf8('a,b\n1,'), 0xe4, 0xb8], 2], // truncated at end of file
      [[...utf8('a,b\n1,'), 0xed, 0xa0, 0x80, ...utf8('\n')], 2], // encoded surrogate
      [[0xe4, ...utf8('a,b\n')], 1],
    ];
    for (const [bytes, line] of cases) {
      const e = thrown(() => parseCsvBytes(new Uint8Array(bytes)), 'SH_ERR_CSV_MALFORMED');
      expect(e.details).toEqual({ line });
      expect(e.message).toContain(`line ${line}`);
    }
  });

  it('passes options through and checks its argument', () => {
    malformed('a\n1\n2\n', { line: 3 }, { maxRows: 1 });
    thrown(() => parseCsvBytes(utf8('a\n1\n2\n'), { maxRows: 1 }), 'SH_ERR_CSV_MALFORMED');
    thrown(() => parseCsvBytes('a\n' as unknown as Uint8Array), 'SH_ERR_INVALID_ARGUMENT');
  });
});

describe('toCsv', () => {
  it('quotes only cells with a comma, quote, CR or LF; LF line ends; final newline', () => {
    expect(
      toCsv(
        ['a', 'b'],
        [
          ['x,y', 'say "hi"'],
          ['p\nq', 'r\rs'],
          ['plain', ''],
        ],
      ),
    ).toBe('a,b\n"x,y","say ""hi"""\n"p\nq","r\rs"\nplain,\n');
    expect(toCsv(['a'], [])).toBe('a\n');
  });

  it('quotes the only, empty cell of a row so it is not an empty line', () => {
    const text = toCsv(['a'], [['x'], [''], ['y']]);
    expect(text).toBe('a\nx\n""\ny\n');
    expect(parseCsv(text).rows).toEqual([['x'], [''], ['y']]);
  });

  it('round trips awkward cells through parseCsv and parseCsvBytes', () => {
    const header = ['统一社会信用代码', 'note', 'empty', 'q'];
    const rows = [
      ['91350100M000100Y43', 'a,b,c', '', '"'],
      ['', '', '', ''],
      ['x', 'line1\nline2\r\nline3\r', ' padded ', '""quoted""'],
      ['厦门某某科技有限公司', '营业收入，万元', '😀', ',"\n'],
      ['\uFEFFbom-like', '=1+1', '\t', "'"],
    ];
    const text = toCsv(header, rows);
    expect(parseCsv(text)).toEqual({ header, rows, lines: [2, 3, 4, 7, 9] });
    expect(parseCsvBytes(utf8(text)).rows).toEqual(rows);
  });

  it('refuses input it could not write back faithfully', () => {
    const bad: [unknown, unknown][] = [
      [[], []],
      [['a', 'a'], []],
      [[' a'], []],
      [[''], []],
      [['a', 'b'], [['1']]],
      [['a'], [[1]]],
      [['a'], [['\uDC00']]],
      [['a'], 'rows'],
    ];
    for (const [h, r] of bad) thrown(() => toCsv(h as string[], r as string[][]), 'SH_ERR_INVALID_ARGUMENT');
  });
});
