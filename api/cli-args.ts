/** Argument and input-file parsing shared by the CLI's embedded and client modes. */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { SafehouseError, isCoded } from '../core/errors.ts';
import { parseCsv } from '../core/csv.ts';
import type { ConsentGrant } from './embedded.ts';
import type { ConsentOp } from '../sandbox/consent.ts';
import type { Claim } from '../engine/protocols/verify/messages.ts';

export type Opts = Record<string, string | boolean | undefined>;

export function need(o: Opts, name: string): string {
  const v = o[name];
  if (typeof v !== 'string' || v === '')
    throw new SafehouseError('SH_ERR_INVALID_ARGUMENT', `"--${name}" is required`, { option: name });
  return v;
}

export function list(s: string, sep: string | RegExp = ','): string[] {
  return s
    .split(sep)
    .map((x) => x.trim())
    .filter(Boolean);
}

export function readText(path: string, what: string): string {
  try {
    return readFileSync(resolve(path), 'utf8');
  } catch (err) {
    throw new SafehouseError(
      'SH_ERR_INVALID_ARGUMENT',
      `cannot read ${what} ${path}`,
      { option: what },
      { cause: err },
    );
  }
}

export function readJson(path: string, what: string): unknown {
  try {
    return JSON.parse(readText(path, what));
  } catch (err) {
    if (isCoded(err)) throw err;
    throw new SafehouseError(
      'SH_ERR_INVALID_ARGUMENT',
      `${what} ${path} is not valid JSON`,
      { option: what },
      { cause: err },
    );
  }
}

export function progressBar(label: string, done: number, total: number): void {
  if (!process.stderr.isTTY && done !== total) return;
  const width = 30;
  const filled = total === 0 ? width : Math.round((Math.min(done, total) / total) * width);
  process.stderr.write(
    `\r${label.padEnd(16)} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}${done === total ? '\n' : ''}`,
  );
}

export function subjectsOf(o: Opts): string[] {
  return readText(need(o, 'subjects'), 'subjects')
    .split(/\r?\n/)
    .map((s) => s.trim())
    .filter(Boolean);
}

/** `consent grant`: one grant from options, or many from `--file` (header uscc,bank,purpose,categories,ops,days). */
export function grantsOf(o: Opts): ConsentGrant[] {
  if (o.file) {
    const csv = parseCsv(readText(o.file as string, 'file'), {
      requiredHeader: ['uscc', 'bank', 'purpose', 'categories', 'ops', 'days'],
    });
    const col = (r: string[], h: string) => r[csv.header.indexOf(h)]!;
    return csv.rows.map((r) => ({
      subject: col(r, 'uscc'),
      bank: col(r, 'bank'),
      purpose: col(r, 'purpose'),
      categories: list(col(r, 'categories'), ';'),
      operations: list(col(r, 'ops'), ';') as ConsentOp[],
      days: Number(col(r, 'days')),
    }));
  }
  return [
    {
      subject: need(o, 'subject'),
      bank: need(o, 'bank'),
      purpose: need(o, 'purpose'),
      categories: list(need(o, 'categories')),
      operations: list(need(o, 'ops')) as ConsentOp[],
      days: Number(need(o, 'days')),
    },
  ];
}

/** `verify --claims` (header claim_id,uscc,provider,field,op,value[,value2]; `in` values separated by ;). */
export function claimsOf(o: Opts): Claim[] {
  const csv = parseCsv(readText(need(o, 'claims'), 'claims'), {
    requiredHeader: ['claim_id', 'uscc', 'provider', 'field', 'op', 'value'],
  });
  const col = (h: string) => csv.header.indexOf(h);
  return csv.rows.map((r) => {
    const op = r[col('op')]!.trim() as Claim['op'];
    const value = r[col('value')]!;
    const value2 = col('value2') >= 0 ? r[col('value2')]! : '';
    const values = op === 'in' ? list(value, ';') : op === 'between' ? [value, value2] : [value];
    return {
      claimId: r[col('claim_id')]!.trim(),
      subject: r[col('uscc')]!.trim(),
      provider: r[col('provider')]!.trim(),
      field: r[col('field')]!.trim(),
      op,
      values,
    };
  });
}

/** `train`: providers, their fields (`--fields P1.a,P2.b`) and the labels file (uscc,label; 1 = default). */
export function trainInputsOf(o: Opts): {
  provider: string;
  fields: string[];
  others: Array<{ provider: string; fields: string[] }>;
  labels: Map<string, 0 | 1>;
} {
  const providers = list(need(o, 'providers'));
  const byProvider = new Map<string, string[]>(providers.map((p) => [p, []]));
  for (const f of list(need(o, 'fields'))) {
    const dot = f.indexOf('.');
    const [p, name] = dot > 0 ? [f.slice(0, dot), f.slice(dot + 1)] : [providers[0]!, f];
    if (!byProvider.has(p))
      throw new SafehouseError(
        'SH_ERR_INVALID_ARGUMENT',
        `"--fields" entry ${f} names provider ${p}, which is not in --providers`,
      );
    byProvider.get(p)!.push(name);
  }
  for (const [p, fs] of byProvider)
    if (fs.length === 0)
      throw new SafehouseError('SH_ERR_INVALID_ARGUMENT', `"--fields" names no field of provider ${p}`);
  const provider = providers[0]!;
  const csv = parseCsv(readText(need(o, 'labels'), 'labels'), { requiredHeader: ['uscc', 'label'] });
  const labels = new Map<string, 0 | 1>();
  csv.rows.forEach((row, i) => {
    const y = row[csv.header.indexOf('label')]!.trim();
    if (y !== '0' && y !== '1')
      throw new SafehouseError(
        'SH_ERR_CSV_VALUE',
        `line ${csv.lines[i]}: "label" expected 0 or 1, got ${JSON.stringify(y)}`,
        { line: csv.lines[i]!, field: 'label' },
      );
    labels.set(row[csv.header.indexOf('uscc')]!.trim(), y === '1' ? 1 : 0);
  });
  return {
    provider,
    fields: byProvider.get(provider)!,
    others: providers.slice(1).map((p) => ({ provider: p, fields: byProvider.get(p)! })),
    labels,
  };
}

export function featuresOf(o: Opts): 'binned' | 'standardized' | undefined {
  if (o.features === undefined) return undefined;
  if (o.features === 'standardized' || o.features === 'binned') return o.features;
  throw new SafehouseError(
    'SH_ERR_INVALID_ARGUMENT',
    `"--features" expected binned or standardized, got ${o.features}`,
  );
}

export function numOpt(o: Opts, name: string): number | undefined {
  if (o[name] === undefined) return undefined;
  const n = Number(o[name]);
  if (!Number.isFinite(n))
    throw new SafehouseError('SH_ERR_INVALID_ARGUMENT', `"--${name}" expected a number, got ${o[name]}`, {
      option: name,
    });
  return n;
}
