/**
 * The input files the CLI reads — subject lists, consents.csv, claims.csv, labels.csv, hold-out lists, schemas and
 * models — read and checked before anything is sent or stored, so that a bad file changes nothing. Every error names
 * the file and, for a line-based file, the line (`file:line: message`, details `{ file, line }`), keeping the code of
 * the check that failed (docs/errors.md).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ed25519 } from '@noble/curves/ed25519.js';
import { SafehouseError, isCoded } from '../../core/errors.ts';
import { parseCsv, type CsvTable } from '../../core/csv.ts';
import { parseUscc } from '../../sandbox/uscc.ts';
import { createConsent, type ConsentOp } from '../../sandbox/consent.ts';
import type { ConsentGrant } from '../embedded.ts';
import type { Claim } from '../../engine/protocols/verify/messages.ts';

/** `err` with `file` (and its line) in front of its message; the same code and details, plus `file` and `line`. */
export function located(err: unknown, file: string, line?: number): unknown {
  if (!(err instanceof SafehouseError) || err.details.file !== undefined) return err;
  const l = line ?? (typeof err.details.line === 'number' ? err.details.line : undefined);
  const where = l === undefined ? file : `${file}:${l}`;
  const message = err.message.replace(/^line \d+: /, '');
  return new SafehouseError(
    err.code,
    `${where}: ${message}`,
    { ...err.details, file, ...(l === undefined ? {} : { line: l }) },
    { cause: err },
  );
}

/** Run `f` on `file`'s contents, locating its errors in the file. */
export function inFile<T>(file: string, f: () => T, line?: number): T {
  try {
    return f();
  } catch (err) {
    throw located(err, file, line);
  }
}

export function readText(path: string, option: string): string {
  try {
    return readFileSync(resolve(path), 'utf8');
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : 'cannot read it';
    throw new SafehouseError(
      'SH_ERR_INVALID_ARGUMENT',
      `--${option} ${path}: ${why}`,
      { option, file: path },
      { cause: err },
    );
  }
}

export function readJson(path: string, option: string): unknown {
  const text = readText(path, option);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new SafehouseError(
      'SH_ERR_INVALID_ARGUMENT',
      `--${option} ${path} is not valid JSON (${(err as Error).message})`,
      { option, file: path },
      { cause: err },
    );
  }
}

function csvOf(path: string, option: string, requiredHeader: string[]): CsvTable {
  const text = readText(path, option);
  return inFile(path, () => parseCsv(text, { requiredHeader }));
}

function list(s: string, sep: string): string[] {
  return s
    .split(sep)
    .map((x) => x.trim())
    .filter(Boolean);
}

const lineError = (code: 'SH_ERR_CSV_VALUE' | 'SH_ERR_INVALID_ARGUMENT', file: string, line: number, message: string) =>
  new SafehouseError(code, `${file}:${line}: ${message}`, { file, line });

/** A list of USCCs, one a line (blank lines skipped), in canonical form; a repeated subject is refused. */
export function subjectList(path: string, option: string): string[] {
  const seen = new Map<string, number>();
  readText(path, option)
    .split('\n')
    .forEach((raw, i) => {
      const s = raw.trim();
      if (s === '') return;
      const u = inFile(path, () => parseUscc(s), i + 1);
      const first = seen.get(u);
      if (first !== undefined)
        throw lineError('SH_ERR_INVALID_ARGUMENT', path, i + 1, `subject ${u} repeats line ${first}`);
      seen.set(u, i + 1);
    });
  return [...seen.keys()];
}

/**
 * `consent grant --file` (header uscc,bank,purpose,categories,ops,days; lists separated by ;). Each row is checked
 * by the same validation a signed consent gets (sandbox/consent.ts), signed with a throwaway key, so that a bad row
 * is named by its line before any enterprise key is made or anything is recorded.
 */
export function grantsFile(path: string): ConsentGrant[] {
  const csv = csvOf(path, 'file', ['uscc', 'bank', 'purpose', 'categories', 'ops', 'days']);
  const col = (r: string[], h: string) => r[csv.header.indexOf(h)]!.trim();
  const probe = ed25519.utils.randomSecretKey();
  const now = new Date();
  return csv.rows.map((r, i) => {
    const line = csv.lines[i]!;
    const days = col(r, 'days');
    if (!/^\d+$/.test(days) || Number(days) < 1 || Number(days) > 36_500)
      throw lineError(
        'SH_ERR_CSV_VALUE',
        path,
        line,
        `"days" expected an integer from 1 to 36500, got ${JSON.stringify(days)}`,
      );
    const grant: ConsentGrant = {
      subject: inFile(path, () => parseUscc(col(r, 'uscc')), line),
      bank: col(r, 'bank'),
      purpose: col(r, 'purpose'),
      categories: list(col(r, 'categories'), ';'),
      operations: list(col(r, 'ops'), ';') as ConsentOp[],
      days: Number(days),
    };
    inFile(
      path,
      () =>
        createConsent(
          {
            subject: grant.subject,
            grantee: grant.bank,
            purpose: grant.purpose,
            categories: grant.categories,
            operations: grant.operations,
            notBefore: now,
            notAfter: new Date(now.getTime() + grant.days * 86_400_000),
          },
          probe,
        ),
      line,
    );
    return grant;
  });
}

const CLAIM_OPS = ['eq', 'ne', 'gte', 'lte', 'between', 'in'];

/** `verify --claims` (header claim_id,uscc,provider,field,op,value[,value2]; `in` values separated by ;). */
export function claimsFile(path: string): { claims: Claim[]; lines: number[] } {
  const csv = csvOf(path, 'claims', ['claim_id', 'uscc', 'provider', 'field', 'op', 'value']);
  const col = (h: string) => csv.header.indexOf(h);
  const seen = new Map<string, number>();
  const claims = csv.rows.map((r, i): Claim => {
    const line = csv.lines[i]!;
    const at = (m: string) => lineError('SH_ERR_CSV_VALUE', path, line, m);
    const claimId = r[col('claim_id')]!.trim();
    if (claimId === '') throw at('"claim_id" is empty');
    if (seen.has(claimId)) throw at(`claim id ${claimId} repeats line ${seen.get(claimId)}`);
    seen.set(claimId, line);
    const op = r[col('op')]!.trim();
    if (!CLAIM_OPS.includes(op)) throw at(`"op" expected one of ${CLAIM_OPS.join(', ')}, got ${JSON.stringify(op)}`);
    const value = r[col('value')]!;
    const value2 = col('value2') >= 0 ? r[col('value2')]! : '';
    if (op === 'between' && value2.trim() === '') throw at('op between needs value2 (the upper bound)');
    return {
      claimId,
      subject: inFile(path, () => parseUscc(r[col('uscc')]!), line),
      provider: r[col('provider')]!.trim(),
      field: r[col('field')]!.trim(),
      op: op as Claim['op'],
      values: op === 'in' ? list(value, ';') : op === 'between' ? [value, value2] : [value],
    };
  });
  return { claims, lines: csv.lines };
}

/**
 * A claim the engine refused (its error names the claim by id or position, `claims[i] (id): …`), located at its
 * line of the claims file.
 */
export function locateClaim(err: unknown, path: string, claims: readonly Claim[], lines: readonly number[]): unknown {
  if (!isCoded(err)) return err;
  const ref = err.details.claim;
  const i = typeof ref === 'number' ? ref : claims.findIndex((c) => c.claimId === ref);
  if (i < 0 || lines[i] === undefined) return err;
  const bare = new SafehouseError(err.code, err.message.replace(/^claims\[\d+\](?: \([^)]*\))?: /, ''), err.details, {
    cause: err,
  });
  return located(bare, path, lines[i]);
}

/** labels.csv: uscc,label with label 1 (default) or 0 (good), one row per subject. */
export function labelsFile(path: string): Map<string, 0 | 1> {
  const csv = csvOf(path, 'labels', ['uscc', 'label']);
  const labels = new Map<string, 0 | 1>();
  const lineOf = new Map<string, number>();
  csv.rows.forEach((row, i) => {
    const line = csv.lines[i]!;
    const u = inFile(path, () => parseUscc(row[csv.header.indexOf('uscc')]!), line);
    const y = row[csv.header.indexOf('label')]!.trim();
    if (y !== '0' && y !== '1')
      throw new SafehouseError(
        'SH_ERR_CSV_VALUE',
        `${path}:${line}: "label" expected 0 or 1, got ${JSON.stringify(y)}`,
        {
          file: path,
          line,
          field: 'label',
        },
      );
    if (lineOf.has(u)) throw lineError('SH_ERR_CSV_VALUE', path, line, `subject ${u} repeats line ${lineOf.get(u)}`);
    lineOf.set(u, line);
    labels.set(u, y === '1' ? 1 : 0);
  });
  return labels;
}

/** The hold-out list of `safehouse evaluate`: subjects, each with a label in `labels`. */
export function holdoutFile(path: string, labels: ReadonlyMap<string, 0 | 1>, labelsPath: string): string[] {
  const subjects = subjectList(path, 'holdout');
  const text = readText(path, 'holdout').split('\n');
  for (const u of subjects)
    if (!labels.has(u)) {
      const line = text.findIndex((l) => l.trim().toUpperCase() === u) + 1;
      throw new SafehouseError(
        'SH_ERR_INVALID_ARGUMENT',
        `${path}:${line}: subject ${u} has no label in ${labelsPath}`,
        {
          option: 'holdout',
          file: path,
          line,
        },
      );
    }
  return subjects;
}

/** `train --providers P1,P2 --fields P1.a,P2.b`: the key holder's fields and the others'. */
export function trainFields(
  providers: readonly string[],
  fieldList: readonly string[],
): { provider: string; fields: string[]; others: Array<{ provider: string; fields: string[] }> } {
  const byProvider = new Map<string, string[]>(providers.map((p) => [p, []]));
  for (const f of fieldList) {
    const dot = f.indexOf('.');
    const [p, name] = dot > 0 ? [f.slice(0, dot), f.slice(dot + 1)] : [providers[0]!, f];
    if (!byProvider.has(p))
      throw new SafehouseError(
        'SH_ERR_INVALID_ARGUMENT',
        `"--fields" entry ${f} names provider ${p}, which is not in --providers (${providers.join(', ')})`,
        { option: 'fields' },
      );
    byProvider.get(p)!.push(name);
  }
  for (const [p, fs] of byProvider)
    if (fs.length === 0)
      throw new SafehouseError('SH_ERR_INVALID_ARGUMENT', `"--fields" names no field of provider ${p}`, {
        option: 'fields',
      });
  return {
    provider: providers[0]!,
    fields: byProvider.get(providers[0]!)!,
    others: providers.slice(1).map((p) => ({ provider: p, fields: byProvider.get(p)! })),
  };
}
