/**
 * The enterprise's commands: `consent grant` (授权, one consent from options or a batch from a CSV file, each signed
 * by its enterprise's key), `consent revoke` and `report` (its access report, docs/design.md §8: every ledger entry
 * that named it, one line each, whatever its kind).
 */
import { resolve } from 'node:path';
import { ed25519 } from '@noble/curves/ed25519.js';
import { SafehouseError } from '../../core/errors.ts';
import { createConsent, type ConsentOp, type SignedConsent } from '../../sandbox/consent.ts';
import { parseUscc } from '../../sandbox/uscc.ts';
import { accessReport, describeEntry } from '../../engine/audit/report.ts';
import { accessReport as checkedReport, enterpriseKeys, grantConsents, revokeConsents } from '../client/index.ts';
import type { ConsentGrant } from '../embedded.ts';
import { client, withSafehouse, type Handler } from './context.ts';
import { grantsFile } from './inputs.ts';
import type { Args } from './parse.ts';

/** The option's USCC in canonical form; a bad one is a usage error naming the option. */
function usccOption(args: Args, name: string): string {
  const v = args.string(name);
  try {
    return parseUscc(v);
  } catch (err) {
    const e = err as SafehouseError;
    throw new SafehouseError(e.code, `--${name}: ${e.message}`, { ...e.details, option: name }, { cause: err });
  }
}

/** The consents to grant: a checked file, or one from the options (checked the same way, before anything is made). */
function grantsOf(args: Args): ConsentGrant[] {
  const file = args.optString('file');
  if (file !== undefined) return grantsFile(file);
  const g: ConsentGrant = {
    subject: usccOption(args, 'subject'),
    bank: args.string('bank'),
    purpose: args.string('purpose'),
    categories: args.list('categories'),
    operations: args.list('ops') as ConsentOp[],
    days: args.number('days'),
  };
  const now = new Date();
  createConsent(
    {
      subject: g.subject,
      grantee: g.bank,
      purpose: g.purpose,
      categories: g.categories,
      operations: g.operations,
      notBefore: now,
      notAfter: new Date(now.getTime() + g.days * 86_400_000),
    },
    ed25519.utils.randomSecretKey(),
  );
  return [g];
}

function printGrants(out: (l: string) => void, signed: readonly SignedConsent[]): void {
  if (signed.length <= 20)
    for (const c of signed)
      out(`${c.statement.id} ${c.statement.subject} → ${c.statement.grantee} until ${c.statement.notAfter}`);
  else out(`granted ${signed.length} consents of ${new Set(signed.map((c) => c.statement.subject)).size} enterprises`);
}

export const HANDLERS: Record<string, Handler> = {
  async 'consent grant'({ args, out }) {
    const grants = grantsOf(args);
    if (args.mode === 'client') {
      const keyOf = enterpriseKeys(resolve(args.string('key')));
      const as = args.optString('as');
      if (as !== undefined && grants.some((g) => g.subject !== as))
        throw new SafehouseError('SH_ERR_FORBIDDEN', `--as ${as} may grant its own consents only`);
      printGrants(out, await grantConsents(args.string('server'), grants, keyOf));
      return 0;
    }
    return withSafehouse(args, async (sh) => {
      printGrants(out, sh.grantConsents(grants));
      return 0;
    });
  },

  async 'consent revoke'({ args, out }) {
    const id = args.optString('id');
    if (args.mode === 'client') {
      const ids = await revokeConsents(client(args), id ? { consentId: id } : { bank: args.string('bank') });
      out(`revoked ${ids.join(', ')}`);
      return 0;
    }
    const subject = id ? undefined : usccOption(args, 'subject');
    return withSafehouse(args, async (sh) => {
      const ids = id ? sh.revoke({ consentId: id }) : sh.revoke({ subject: subject!, bank: args.string('bank') });
      out(`revoked ${ids.join(', ')}`);
      return 0;
    });
  },

  async report({ args, out }) {
    const print = (r: {
      size: number;
      entries: Array<Parameters<typeof describeEntry>[0] & { at: string; index: number }>;
    }) => {
      if (args.flag('json')) return out(JSON.stringify(r));
      for (const e of r.entries) out(`${e.at} #${e.index} ${describeEntry(e)}`);
      out(
        `${r.entries.length} entries, each proven included in the signed checkpoint of ${r.size} entries${args.mode === 'client' ? ' (checked on your side)' : ''}`,
      );
    };
    if (args.mode === 'client') {
      print(await checkedReport(client(args), args.optString('engine-key')));
      return 0;
    }
    const subject = usccOption(args, 'subject');
    return withSafehouse(args, async (sh) => {
      print(accessReport(sh.engine, subject));
      return 0;
    });
  },
};
