/**
 * The vocabulary of the command table (commands.ts): what an option and a command are, constructors that keep one
 * option to one line of the table, and the options many commands share (the data directory, the client-mode
 * connection, the bank, outputs).
 */
import { CATALOG } from '../../sandbox/catalog.ts';

export type Mode = 'embedded' | 'client' | 'local';
export type OptionType = 'string' | 'int' | 'number' | 'boolean' | 'enum' | 'list';
export type Party = 'platform' | 'provider' | 'enterprise' | 'bank' | 'auditor';

export interface OptionSpec {
  readonly name: string;
  readonly type: OptionType;
  /** The value's placeholder in usage lines (ID, FILE, N …). */
  readonly arg?: string;
  readonly help: string;
  readonly required?: boolean;
  readonly default?: string | number;
  /** Said in help where the default is not a constant of the CLI (the output policy's, a temporary directory). */
  readonly defaultText?: string;
  /** Integer and number ranges; `above` is an exclusive lower bound. */
  readonly min?: number;
  readonly max?: number;
  readonly above?: number;
  /** The values an `enum` takes, or that every item of a `list` must be. */
  readonly values?: readonly string[];
  /** What the values are, for error messages ("catalog category ids"). */
  readonly valuesName?: string;
  /** The only mode the option belongs to; by default every mode of its command. */
  readonly mode?: Mode;
}

export interface CommandSpec {
  /** One or two words: `score`, `consent grant`. */
  readonly name: string;
  readonly party: Party;
  readonly summary: string;
  readonly modes: readonly Mode[];
  readonly options: readonly OptionSpec[];
  /** Alternatives of which exactly one is given, each as a whole (options of another mode are left out). */
  readonly oneOf?: ReadonlyArray<readonly string[]>;
  /** The module of api/cli/ holding its handler. */
  readonly module: 'platform' | 'provider' | 'enterprise' | 'bank' | 'train' | 'auditor';
  readonly examples: readonly string[];
  /** Lines printed under the options (file formats, what the output means). */
  readonly notes?: readonly string[];
}

export const ROLES = ['provider', 'bank', 'enterprise', 'auditor'] as const;
export const CATEGORY_IDS = CATALOG.map((c) => c.id);

// Constructors that keep one option to one line of the table.
type More = Partial<Omit<OptionSpec, 'name' | 'type' | 'arg' | 'help'>>;
export const REQ = { required: true } as const;
export const EMB = { mode: 'embedded' } as const;
export const CLI = { mode: 'client' } as const;
export const str = (name: string, arg: string, help: string, more: More = {}): OptionSpec => ({
  name,
  type: 'string',
  arg,
  help,
  ...more,
});
export const int = (
  name: string,
  arg: string,
  [min, max]: [number, number?],
  help: string,
  more: More = {},
): OptionSpec => ({
  name,
  type: 'int',
  arg,
  help,
  min,
  ...(max === undefined ? {} : { max }),
  ...more,
});
export const num = (name: string, help: string, more: More = {}): OptionSpec => ({
  name,
  type: 'number',
  arg: 'X',
  help,
  ...more,
});
export const choice = (
  name: string,
  arg: string,
  values: readonly string[],
  help: string,
  more: More = {},
): OptionSpec => ({
  name,
  type: 'enum',
  arg,
  help,
  values,
  ...more,
});
export const flag = (name: string, help: string): OptionSpec => ({ name, type: 'boolean', help });
export const at = (party: Party, module: CommandSpec['module'], ...modes: Mode[]) => ({ party, module, modes });

export const HOME = str('home', 'DIR', 'the data directory', {
  defaultText: '$SAFEHOUSE_HOME, else ./.safehouse',
  ...EMB,
});
export const SERVER = str('server', 'URL', 'the engine server', { ...REQ, ...CLI });
export const AS = str('as', 'PARTY', 'your party id, checked against the key file', CLI);
export const key = (help: string) => str('key', 'FILE', help, { ...REQ, ...CLI });
export const CLIENT = [SERVER, AS];
export const ENGINE_KEY = str(
  'engine-key',
  'HEX',
  "the engine's Ed25519 key to pin (default: what GET /v1/info says)",
  CLI,
);
export const JSON_OUT = flag('json', 'print JSON instead of text');
export const FORCE = flag('force', 'overwrite output files that already exist');
export const BANK = str('bank', 'ID', 'the bank acting (its keys from the wallet)', { ...REQ, ...EMB });
export const BANK_KEY = key("the bank's key file");
export const PURPOSE = str('purpose', 'P', 'the purpose the subjects consented to (e.g. sme_credit_line)', REQ);
export const OUT = (what: string) => str('out', 'FILE', `${what}; an existing file is refused unless --force`, REQ);
export const PORT = int('port', 'P', [0, 65535], 'the port (0: any free one)', REQ);
export const HOST = str('host', 'ADDR', 'the address to bind', { default: '127.0.0.1' });
export const LIST = (name: string, arg: string, help: string, values: string[], valuesName: string) =>
  ({ name, type: 'list', arg, help, values, valuesName }) as const satisfies OptionSpec;
export const LABELS = str('labels', 'FILE', 'CSV uscc,label (1 = default, 0 = good)', REQ);
export const STATUSES =
  "OK, NO_DATA, OVER_BUDGET (a provider refused: the subject was scored with too many of your group's models this window) or a consent status (NO_CONSENT, EXPIRED, REVOKED, OUT_OF_SCOPE, BAD_SIGNATURE)";
