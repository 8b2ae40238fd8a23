/**
 * The strict CSV reader behind every CSV the CLI reads (datasets, consents, claims), and the matching writer.
 * RFC 4180, read strictly so that a file means one thing or is refused:
 * - comma separator; records end in CRLF or LF (a bare CR outside quotes is refused); the final line end is optional;
 * - a field is quoted only if its first character is `"`; inside, `""` is a quote and commas, CR and LF are data;
 *   a quote inside an unquoted field, or anything but a comma or line end after a closing quote, is refused;
 * - a UTF-8 BOM at the very start is dropped; empty lines at the end are ignored, an empty line elsewhere is refused;
 * - the first record is the header: names are trimmed, must be non-empty and unique; every row has as many
 *   fields as the header. Cells are returned as written (not trimmed): callers decide.
 * Line numbers are 1-based physical lines (LF-counted, so a quoted newline advances them); columns are 1-based
 * UTF-16 positions within the line.
 */
import { describe, fail } from './errors.ts';

/** A parsed CSV file. */
export interface CsvTable {
  /** Trimmed, non-empty, unique column names. */
  header: string[];
  /** Data rows, each with exactly `header.length` cells, untrimmed. */
  rows: string[][];
  /** 1-based line number of each row's first line (rows[i] starts on line lines[i]). */
  lines: number[];
}

/** Limits and checks for `parseCsv`; every field is optional. */
export interface CsvOptions {
  /** Most data rows accepted (header not counted). Default 1 000 000. */
  maxRows?: number;
  /** Longest cell accepted, in UTF-16 code units after unquoting; applies to header cells too. Default 65 536. */
  maxFieldLength?: number;
  /** Column names that must all be present, in any order; other columns are allowed. Default none. */
  requiredHeader?: string[];
}

const DEFAULTS: Required<CsvOptions> = { maxRows: 1_000_000, maxFieldLength: 65_536, requiredHeader: [] };
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const QUOTE = 0x22;
const COMMA = 0x2c;
const CR = 0x0d;
const LF = 0x0a;

/**
 * Parse CSV text (rules in the file header).
 * @throws SafehouseError SH_ERR_CSV_MALFORMED with details `{ line, column? }` (and `expected`/`got` for a column
 *   count, `missing` for a required column) for any rule broken, a limit exceeded or a lone surrogate;
 *   SH_ERR_INVALID_ARGUMENT for a non-string `text` or bad options.
 * @example parseCsv('uscc,revenue\r\n91350100M000100Y43,"1,200"\r\n').rows // [['91350100M000100Y43', '1,200']]
 */
export function parseCsv(text: string, opts?: CsvOptions): CsvTable {
  if (typeof text !== 'string') fail('SH_ERR_INVALID_ARGUMENT', `"text" expected string, got ${describe(text)}`);
  const o = checkOptions(opts);
  const bad = LONE_SURROGATE.exec(text);
  if (bad) {
    const at = lineOf(text, bad.index);
    malformed(`invalid Unicode (lone surrogate) on line ${at}`, at);
  }

  const n = text.length;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  let lineStart = i;
  const col = (at: number): number => at - lineStart + 1;

  /** Read one record starting at `i`; leaves `i` after its line end. `starts` gets each field's column. */
  const readRecord = (starts: number[]): string[] => {
    const fields: string[] = [];
    for (;;) {
      starts.push(col(i));
      let value: string;
      if (text.charCodeAt(i) === QUOTE) {
        const openLine = line;
        const openCol = col(i);
        let parts = '';
        let from = ++i;
        for (;;) {
          if (i >= n) malformed(`unterminated quoted field opened on line ${openLine}`, openLine, openCol);
          const c = text.charCodeAt(i);
          if (c === QUOTE) {
            if (text.charCodeAt(i + 1) !== QUOTE) break;
            parts += text.slice(from, i + 1);
            from = i += 2;
          } else {
            if (c === LF) {
              line++;
              lineStart = i + 1;
            }
            i++;
          }
          if (i - from + parts.length > o.maxFieldLength) tooLong(openLine, openCol);
        }
        value = parts + text.slice(from, i++);
        const c = text.charCodeAt(i);
        if (i < n && c !== COMMA && c !== LF && c !== CR) {
          malformed(`characters after a closing quote on line ${line}`, line, col(i));
        }
      } else {
        const from = i;
        for (; i < n; i++) {
          const c = text.charCodeAt(i);
          if (c === COMMA || c === LF || c === CR) break;
          if (c === QUOTE) malformed(`a quote inside an unquoted field on line ${line}`, line, col(i));
        }
        value = text.slice(from, i);
      }
      if (value.length > o.maxFieldLength) tooLong(line, starts[starts.length - 1]!);
      fields.push(value);
      if (i >= n) return fields;
      const c = text.charCodeAt(i);
      if (c === COMMA) {
        i++;
        continue;
      }
      if (c === CR && text.charCodeAt(i + 1) !== LF)
        malformed(`a bare CR (not followed by LF) on line ${line}`, line, col(i));
      i += c === CR ? 2 : 1;
      line++;
      lineStart = i;
      return fields;
    }
  };

  /** At the start of a record: true when the rest is only empty lines (end of file), error when a record follows. */
  const atBlankLine = (): boolean => {
    const c = text.charCodeAt(i);
    if (c !== LF && !(c === CR && text.charCodeAt(i + 1) === LF)) return false;
    if (/^(?:\r?\n)*$/.test(text.slice(i))) return true;
    return malformed(`empty line ${line} (empty lines are allowed only at the end)`, line);
  };

  if (i >= n || atBlankLine()) malformed('the file is empty: expected a header on line 1', 1);
  const starts: number[] = [];
  const header = readRecord(starts).map((h) => h.trim());
  const seen = new Map<string, number>();
  header.forEach((name, k) => {
    if (name === '') malformed(`empty header cell ${k + 1} on line 1`, 1, starts[k]!);
    const prev = seen.get(name);
    if (prev !== undefined)
      malformed(`duplicate header name "${name}" (cells ${prev + 1} and ${k + 1}) on line 1`, 1, starts[k]!);
    seen.set(name, k);
  });
  const missing = o.requiredHeader.filter((name) => !seen.has(name));
  if (missing.length > 0) {
    fail(
      'SH_ERR_CSV_MALFORMED',
      `header on line 1 is missing required column(s) ${missing.map((m) => `"${m}"`).join(', ')}`,
      {
        line: 1,
        missing: missing.join(','),
      },
    );
  }

  const rows: string[][] = [];
  const lines: number[] = [];
  while (i < n && !atBlankLine()) {
    const rowLine = line;
    if (rows.length >= o.maxRows) malformed(`more than ${o.maxRows} data rows (line ${rowLine})`, rowLine);
    starts.length = 0;
    const row = readRecord(starts);
    if (row.length !== header.length) {
      fail('SH_ERR_CSV_MALFORMED', `line ${rowLine} has ${row.length} fields, the header has ${header.length}`, {
        line: rowLine,
        expected: header.length,
        got: row.length,
      });
    }
    rows.push(row);
    lines.push(rowLine);
  }
  return { header, rows, lines };
}

/**
 * Decode UTF-8 bytes strictly, then `parseCsv`. A BOM is dropped; invalid UTF-8 is refused with its line number.
 * @throws SafehouseError SH_ERR_CSV_MALFORMED for invalid UTF-8 and everything `parseCsv` refuses;
 *   SH_ERR_INVALID_ARGUMENT when `buf` is not a Uint8Array or for bad options.
 * @example parseCsvBytes(await readFile('claims.csv'), { requiredHeader: ['subject', 'field', 'op', 'value'] })
 */
export function parseCsvBytes(buf: Uint8Array, opts?: CsvOptions): CsvTable {
  if (!(buf instanceof Uint8Array)) fail('SH_ERR_INVALID_ARGUMENT', `"buf" expected Uint8Array, got ${describe(buf)}`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch (err) {
    const line = badUtf8Line(buf);
    return fail('SH_ERR_CSV_MALFORMED', `invalid UTF-8 on line ${line}`, { line }, err);
  }
  return parseCsv(text, opts);
}

/**
 * Write a table as CSV that `parseCsv` reads back to the same header and rows: LF line ends, a final LF, and a cell
 * quoted when it contains a comma, quote, CR or LF (or is the only, empty, cell of its row, which would otherwise be
 * an empty line). No formula-injection escaping: the output is for Safehouse, not for spreadsheets.
 * @throws SafehouseError SH_ERR_INVALID_ARGUMENT for non-string cells, a row of the wrong length, a lone surrogate,
 *   or a header name that is empty, untrimmed or repeated.
 * @example toCsv(['name', 'note'], [['a', 'x,y']]) === 'name,note\na,"x,y"\n'
 */
export function toCsv(header: string[], rows: string[][]): string {
  if (!Array.isArray(header) || header.length === 0) {
    fail('SH_ERR_INVALID_ARGUMENT', `"header" expected a non-empty array of strings, got ${describe(header)}`);
  }
  if (!Array.isArray(rows)) fail('SH_ERR_INVALID_ARGUMENT', `"rows" expected an array of rows, got ${describe(rows)}`);
  checkCells(header, 'header');
  header.forEach((name, k) => {
    if (name === '' || name.trim() !== name || header.indexOf(name) !== k) {
      fail(
        'SH_ERR_INVALID_ARGUMENT',
        `"header[${k}]" expected a non-empty, trimmed, unique name, got ${describe(name)}`,
      );
    }
  });
  const out = [writeRow(header)];
  rows.forEach((row, r) => {
    if (!Array.isArray(row) || row.length !== header.length) {
      fail(
        'SH_ERR_INVALID_ARGUMENT',
        `"rows[${r}]" expected an array of ${header.length} strings, got ${describe(row)}`,
      );
    }
    checkCells(row, `rows[${r}]`);
    out.push(writeRow(row));
  });
  return out.join('\n') + '\n';
}

function writeRow(cells: string[]): string {
  if (cells.length === 1 && cells[0] === '') return '""';
  return cells.map((c) => (/[",\r\n]/.test(c) ? `"${c.replaceAll('"', '""')}"` : c)).join(',');
}

function checkCells(cells: unknown[], name: string): void {
  cells.forEach((c, k) => {
    if (typeof c !== 'string' || LONE_SURROGATE.test(c)) {
      fail('SH_ERR_INVALID_ARGUMENT', `"${name}[${k}]" expected a well-formed string, got ${describe(c)}`);
    }
  });
}

function checkOptions(opts: CsvOptions | undefined): Required<CsvOptions> {
  if (opts === undefined) return DEFAULTS;
  if (opts === null || typeof opts !== 'object')
    fail('SH_ERR_INVALID_ARGUMENT', `"opts" expected an object, got ${describe(opts)}`);
  const unknown = Object.keys(opts).find((k) => !(k in DEFAULTS));
  if (unknown !== undefined) fail('SH_ERR_INVALID_ARGUMENT', `"opts.${unknown}" is not an option of parseCsv`);
  const o = { ...DEFAULTS };
  for (const key of ['maxRows', 'maxFieldLength'] as const) {
    const v = opts[key];
    if (v === undefined) continue;
    if (!Number.isSafeInteger(v) || v < 1)
      fail('SH_ERR_INVALID_ARGUMENT', `"opts.${key}" expected a positive integer, got ${describe(v)}`);
    o[key] = v;
  }
  const req = opts.requiredHeader;
  if (req !== undefined) {
    if (!Array.isArray(req) || !req.every((h) => typeof h === 'string' && h !== '' && h.trim() === h)) {
      fail(
        'SH_ERR_INVALID_ARGUMENT',
        `"opts.requiredHeader" expected an array of trimmed non-empty names, got ${describe(req)}`,
      );
    }
    o.requiredHeader = [...req];
  }
  return o;
}

function malformed(message: string, line: number, column?: number): never {
  return fail('SH_ERR_CSV_MALFORMED', message, column === undefined ? { line } : { line, column });
}

function tooLong(line: number, column: number): never {
  return malformed(`a field longer than the limit on line ${line}`, line, column);
}

function lineOf(text: string, index: number): number {
  let line = 1;
  for (let p = text.indexOf('\n'); p !== -1 && p < index; p = text.indexOf('\n', p + 1)) line++;
  return line;
}

/** Line of the first invalid UTF-8 sequence. LF (0x0a) never occurs inside a multi-byte sequence, so lines decode alone. */
function badUtf8Line(buf: Uint8Array): number {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let line = 1;
  for (let start = 0; start <= buf.length; line++) {
    let end = buf.indexOf(LF, start);
    if (end === -1) end = buf.length;
    try {
      decoder.decode(buf.subarray(start, end));
    } catch {
      return line;
    }
    start = end + 1;
  }
  return line;
}
