/**
 * The `safehouse` command table: every command, the party that runs it, its options (type, range or values,
 * required or default, help text), which options it needs in each mode, and an example. The parser (parse.ts), the
 * help pages (help.ts) and the dispatcher (index.ts) all read this one table, so a command's help cannot drift from
 * what it accepts.
 *
 * Modes: `embedded` (one process plays every party on a data directory, `--home`), `client` (one party against an
 * engine server: `--server URL --as PARTY --key FILE`, README "Network mode") and `local` (a process of its own that
 * needs neither: the engine server, a custodian, key generation).
 * Longer than 400 lines: it is the one table every command reads from; splitting it would split what the help pages
 * and the parser must agree on.
 */
import {
  AS,
  BANK,
  BANK_KEY,
  CATEGORY_IDS,
  CLIENT,
  EMB,
  ENGINE_KEY,
  FORCE,
  HOME,
  HOST,
  JSON_OUT,
  LABELS,
  LIST,
  OUT,
  PORT,
  PURPOSE,
  REQ,
  ROLES,
  STATUSES,
  at,
  choice,
  flag,
  int,
  key,
  num,
  str,
  CLI,
  type CommandSpec,
  type Mode,
  type OptionSpec,
  type Party,
} from './options.ts';

export type { CommandSpec, Mode, OptionSpec, OptionType, Party } from './options.ts';

export const PARTIES: ReadonlyArray<{ party: Party; title: string }> = [
  { party: 'platform', title: 'Set-up and the platform operator' },
  { party: 'provider', title: 'Data provider (tax bureau, utility, housing-fund centre, property registry)' },
  { party: 'enterprise', title: 'Enterprise (the data subject, by its USCC)' },
  { party: 'bank', title: 'Bank' },
  { party: 'auditor', title: 'Auditor' },
];

export const COMMANDS: readonly CommandSpec[] = [
  // ------------------------------------------------------------------ platform
  {
    name: 'init',
    summary: 'create a data directory for embedded mode',
    ...at('platform', 'platform', 'embedded'),
    options: [HOME],
    examples: ['safehouse init --home ./.safehouse'],
  },
  {
    name: 'party add',
    summary: 'register a party (embedded: create its keys in the wallet; client mode: as admin, from its public keys)',
    ...at('platform', 'platform', 'embedded', 'client'),
    options: [
      HOME,
      choice('role', 'ROLE', ROLES, "the party's role", { ...REQ, ...EMB }),
      str('id', 'ID', "the party's id (an enterprise's is its USCC)", { ...REQ, ...EMB }),
      ...CLIENT,
      key('the admin key file (<engine home>/admin.key)'),
      str('public', 'FILE|DIR', 'a .pub file, a provider key directory or a directory of enterprise keys', {
        ...REQ,
        ...CLI,
      }),
      str('group', 'G', "a bank's group — its legal entity; budgets and model checks count per group", {
        defaultText: "the bank's own id",
      }),
      str(
        'registrar',
        'FILE',
        "client mode: the registrar's key file — it certifies each bank's and enterprise's key",
        {
          ...CLI,
        },
      ),
    ],
    examples: [
      'safehouse party add --role bank --id bank_icbc_sz',
      'safehouse party add --server http://127.0.0.1:8700 --as admin --key engine/admin.key --public bank_gc.key.pub',
    ],
  },
  {
    name: 'serve',
    summary: 'run the engine server (admin key in DIR/admin.key, OpenAPI at /docs)',
    ...at('platform', 'platform', 'local'),
    options: [
      { ...HOME, mode: 'local' },
      PORT,
      HOST,
      int('pool-size', 'N', [1, 256], 'worker threads', { defaultText: 'the number of cores' }),
      flag('init', 'create the data directory if it has no engine database (a new engine with an empty ledger)'),
    ],
    examples: ['safehouse serve --home engine --port 8700 --init', 'safehouse serve --home engine --port 8700'],
  },
  {
    name: 'wait',
    summary: 'wait until an engine server or a custodian answers (for scripts that start them in the background)',
    ...at('platform', 'platform', 'local'),
    options: [
      str('url', 'URL', 'the engine server or custodian', REQ),
      int('timeout', 'S', [1, 3600], 'seconds to wait before giving up', { default: 60 }),
    ],
    examples: ['safehouse wait --url http://127.0.0.1:8700'],
  },
  {
    name: 'keygen',
    summary: "make a party's own keys for client mode (the public half goes to the admin)",
    ...at('platform', 'platform', 'local'),
    options: [
      choice('role', 'ROLE', [...ROLES, 'registrar'], "the party's role", REQ),
      str('id', 'ID', "the party's id"),
      str('ids', 'FILE', 'enterprises: a file of USCCs, one a line (one <USCC>.key each)'),
      str('out', 'PATH', 'the key file (FILE and FILE.pub), or for a provider or --ids a directory', REQ),
    ],
    oneOf: [['id'], ['ids']],
    examples: [
      'safehouse keygen --role bank --id bank_gc --out bank_gc.key',
      'safehouse keygen --role provider --id gc_provider --out gc_provider/',
      'safehouse keygen --role enterprise --ids subjects.txt --out enterprises/',
    ],
  },
  {
    name: 'retention purge',
    summary: 'delete the replay material of old jobs (recorded in the ledger)',
    ...at('platform', 'platform', 'embedded'),
    options: [
      HOME,
      int('days', 'N', [0, 36_500], 'purge jobs finished more than N days ago', { defaultText: "the policy's 365" }),
    ],
    examples: ['safehouse retention purge --days 365'],
  },
  {
    name: 'backup',
    summary: "copy the engine's data directory while it runs (SQLite online backup, then blobs, keys and results)",
    ...at('platform', 'platform', 'local'),
    options: [{ ...HOME, mode: 'local' }, str('out', 'DIR', 'a new directory for the backup', REQ)],
    examples: ['safehouse backup --home engine --out backups/2026-12-04'],
  },
  {
    name: 'restore',
    summary: 'make a data directory from a backup, then check it as `serve` would (quick_check, the whole ledger)',
    ...at('platform', 'platform', 'local'),
    options: [{ ...HOME, mode: 'local' }, str('from', 'DIR', 'the backup directory', REQ)],
    examples: ['safehouse restore --from backups/2026-12-04 --home engine'],
  },
  {
    name: 'demo',
    summary: 'the whole flow on synthetic data, checked against plaintext (exit 1 if any check fails)',
    ...at('platform', 'platform', 'embedded'),
    options: [
      str('home', 'DIR', 'the data directory', { defaultText: 'a temporary one', ...EMB }),
      int('subjects', 'N', [0, 200_000], 'enterprises to generate', { default: 10_000 }),
      JSON_OUT,
    ],
    examples: ['safehouse demo --subjects 2000 --json'],
  },
  // ------------------------------------------------------------------ provider
  {
    name: 'provider ingest',
    summary: "encrypt a table under the provider's own keys and upload it",
    ...at('provider', 'provider', 'embedded', 'client'),
    options: [
      HOME,
      str('provider', 'ID', 'the provider (its keys from the wallet)', { ...REQ, ...EMB }),
      ...CLIENT,
      key("the provider's key directory (from keygen)"),
      str('schema', 'FILE', 'the dataset schema (JSON; examples/tax.schema.json)', REQ),
      str('csv', 'FILE', 'the table: UTF-8 CSV with uscc as the first column', REQ),
    ],
    examples: [
      'safehouse provider ingest --provider sz_tax_bureau --schema examples/tax.schema.json --csv examples/tax.csv',
    ],
  },
  {
    name: 'model approve',
    summary: "review a bank's model on the provider's own statistics and sign the approval",
    ...at('provider', 'provider', 'embedded', 'client'),
    options: [
      HOME,
      str('provider', 'ID', 'the provider approving', { ...REQ, ...EMB }),
      ...CLIENT,
      key("the provider's key directory"),
      str('model', 'ID', 'the registered model', REQ),
    ],
    examples: ['safehouse model approve --provider sz_tax_bureau --model sme-scorecard-v1'],
  },
  {
    name: 'custodian',
    summary: "run a provider's custodian (the holder of its secret keys) against an engine server",
    ...at('provider', 'provider', 'local'),
    options: [
      str('provider', 'ID', 'the provider (checked against the keys)'),
      str('keys', 'DIR', "the provider's key directory", REQ),
      str('engine', 'URL', 'the engine server', REQ),
      str('registrar-key', 'FILE', "the registrar's public key file (.pub) this custodian pins", REQ),
      str('policy', 'FILE', "the provider's own limits (JSON: budgets, windows, cohort minimum; docs/privacy.md)", {
        defaultText: 'the defaults of sandbox/policy.ts',
      }),
      PORT,
      HOST,
      { ...ENGINE_KEY, mode: 'local' },
    ],
    examples: [
      'safehouse custodian --provider gc_provider --keys gc_provider/ --registrar-key registrar.key.pub --engine http://127.0.0.1:8700 --port 8701',
    ],
  },
  // ------------------------------------------------------------------ enterprise
  {
    name: 'consent grant',
    summary: 'sign consents (授权) for a bank, a purpose, categories and operations',
    ...at('enterprise', 'enterprise', 'embedded', 'client'),
    options: [
      HOME,
      str('file', 'FILE', 'many consents: CSV uscc,bank,purpose,categories,ops,days (lists separated by ;)'),
      str('subject', 'USCC', 'the enterprise'),
      str('bank', 'ID', 'the bank it authorizes'),
      str('purpose', 'P', 'the purpose'),
      LIST('categories', 'a,b', 'data categories', CATEGORY_IDS, 'catalog category ids'),
      LIST('ops', 'a,b', 'operations', ['score', 'verify', 'train'], 'operations'),
      int('days', 'N', [1, 36_500], 'days the consent is valid'),
      ...CLIENT,
      key("the enterprise's key file, or with --file a directory of <USCC>.key files"),
    ],
    oneOf: [['file'], ['subject', 'bank', 'purpose', 'categories', 'ops', 'days']],
    examples: [
      'safehouse consent grant --file examples/consents.csv',
      'safehouse consent grant --subject 91440106096544255B --bank bank_icbc_sz --purpose sme_credit_line --categories tax,utilities --ops score,verify --days 365',
    ],
    notes: [`Categories: ${CATEGORY_IDS.join(', ')}. Operations: score, verify, train.`],
  },
  {
    name: 'consent revoke',
    summary: 'revoke consents: one by id, or every consent to a bank',
    ...at('enterprise', 'enterprise', 'embedded', 'client'),
    options: [
      HOME,
      str('id', 'CONSENT_ID', 'the consent'),
      str('subject', 'USCC', 'the enterprise', EMB),
      str('bank', 'ID', 'revoke every consent to this bank'),
      ...CLIENT,
      key("the enterprise's key file"),
    ],
    oneOf: [['id'], ['subject', 'bank']],
    examples: ['safehouse consent revoke --subject 91610113175132523Q --bank bank_icbc_sz'],
  },
  {
    name: 'report',
    summary: "an enterprise's access report: every ledger entry that named it, with inclusion proofs",
    ...at('enterprise', 'enterprise', 'embedded', 'client'),
    options: [
      HOME,
      str('subject', 'USCC', 'the enterprise', { ...REQ, ...EMB }),
      ...CLIENT,
      key("the enterprise's key file"),
      ENGINE_KEY,
      JSON_OUT,
    ],
    examples: [
      'safehouse report --subject 91440106096544255B',
      'safehouse report --server http://127.0.0.1:8700 --as 91440106096544255B --key enterprises/91440106096544255B.key',
    ],
  },
  // ------------------------------------------------------------------ bank
  {
    name: 'model register',
    summary: 'register a model (vetted and bound-checked; providers then approve it)',
    ...at('bank', 'bank', 'embedded', 'client'),
    options: [HOME, BANK, ...CLIENT, BANK_KEY, str('file', 'FILE', 'the model (JSON)', REQ)],
    examples: ['safehouse model register --bank bank_icbc_sz --file examples/scorecard.json'],
  },
  {
    name: 'score',
    summary: 'score subjects with an approved model; only the bank can open the scores',
    ...at('bank', 'bank', 'embedded', 'client'),
    options: [
      HOME,
      BANK,
      ...CLIENT,
      BANK_KEY,
      str('model', 'ID', 'the approved model', REQ),
      PURPOSE,
      str('subjects', 'FILE', 'USCCs, one a line', REQ),
      OUT('scores CSV uscc,status,score'),
      FORCE,
    ],
    examples: [
      'safehouse score --bank bank_icbc_sz --model sme-scorecard-v1 --purpose sme_credit_line --subjects examples/subjects.txt --out scores.csv',
    ],
    notes: [`status is ${STATUSES};`, 'only OK rows have a score: the engine sends the bank nothing for the others.'],
  },
  {
    name: 'verify',
    summary: 'yes/no verification of claims (数据核验) on token and numeric fields',
    ...at('bank', 'bank', 'embedded', 'client'),
    options: [
      HOME,
      BANK,
      ...CLIENT,
      BANK_KEY,
      PURPOSE,
      str('claims', 'FILE', 'CSV claim_id,uscc,provider,field,op,value[,value2] (op in: values separated by ;)', REQ),
      OUT('answers CSV claim_id,result'),
      FORCE,
    ],
    examples: [
      'safehouse verify --bank bank_icbc_sz --purpose sme_credit_line --claims examples/claims.csv --out results.csv',
    ],
    notes: [
      'ops: eq, ne, gte, lte, between (value2), in (tokens and values); result: yes, no, no_data,',
      "refused:<consent status>, over_budget (the field's verification budget for the subject is spent over the last windowDays, at the engine or the provider).",
    ],
  },
  {
    name: 'train',
    summary: "joint training (联合建模) on the bank's labels and providers' encrypted fields",
    ...at('bank', 'train', 'embedded', 'client'),
    options: [
      HOME,
      BANK,
      ...CLIENT,
      BANK_KEY,
      { ...str('providers', 'P1,P2', 'the providers; the first holds the keys', REQ), type: 'list' },
      PURPOSE,
      LABELS,
      { ...str('fields', 'P1.a,P2.b', 'the fields, each as provider.field', REQ), type: 'list' },
      OUT('the model (JSON); the hold-out subjects go beside it, FILE without .json + .holdout.txt'),
      choice(
        'features',
        'KIND',
        ['binned', 'standardized'],
        'binned: a scorecard; standardized: linear on raw values',
        {
          default: 'binned',
        },
      ),
      int('iterations', 'N', [1, 10_000], 'most training iterations', { default: 30 }),
      int('bins', 'K', [2, 20], 'bins per field (binned features)', { default: 5 }),
      int('seed', 'S', [0, 2 ** 32 - 1], 'seed of the stratified 70/30 train/hold-out split', { default: 42 }),
      str('model-id', 'ID', 'the model id (default: the --out file name without .json)'),
      num('pdo', 'PDO points instead of a logit (points to double the odds)', { above: 0 }),
      num('base-score', 'with --pdo: the score at --base-odds', { default: 600 }),
      num('base-odds', 'with --pdo: odds good:bad at --base-score', { default: 50, above: 0 }),
      JSON_OUT,
      FORCE,
    ],
    examples: [
      'safehouse train --bank bank_gc --providers gc_provider --purpose model_training --labels gc/labels.csv --fields "$(cat gc/fields.txt)" --out gc/model.json',
    ],
    notes: [
      'The labels are split 70/30 (stratified, --seed); the model is trained on the 70 %. Embedded mode also',
      'registers the model, has the providers approve it and prints the hold-out AUC and KS; in client mode the',
      'providers approve it themselves, then `safehouse evaluate` prints them (train prints the commands).',
    ],
  },
  {
    name: 'evaluate',
    summary: 'hold-out AUC and KS of an approved model, from scores the scoring protocol returns to the bank',
    ...at('bank', 'train', 'embedded', 'client'),
    options: [
      HOME,
      BANK,
      ...CLIENT,
      BANK_KEY,
      str('model', 'ID', 'the approved model', REQ),
      LABELS,
      str('holdout', 'FILE', 'the hold-out subjects, one a line (`safehouse train` writes them)', REQ),
      PURPOSE,
      choice(
        'scale',
        'KIND',
        ['logit', 'points'],
        'logit: higher = riskier; points (a PDO scorecard): higher = better',
        {
          default: 'logit',
        },
      ),
      { ...OUT('also write the hold-out scores, CSV uscc,status,score'), required: false },
      JSON_OUT,
      FORCE,
    ],
    examples: [
      'safehouse evaluate --bank bank_gc --model model --labels gc/labels.csv --holdout gc/model.holdout.txt --purpose model_training',
    ],
  },
  // ------------------------------------------------------------------ auditor
  {
    name: 'audit verify',
    summary: 'recompute the ledger (Merkle tree, signed checkpoints); exit 1 if it fails',
    ...at('auditor', 'auditor', 'embedded', 'client'),
    options: [
      HOME,
      ...CLIENT,
      key("the auditor's key file"),
      ENGINE_KEY,
      str('state', 'FILE', 'the last checkpoint seen, which the ledger must extend', {
        defaultText: '<key file>.checkpoint.json',
        ...CLI,
      }),
    ],
    examples: [
      'safehouse audit verify',
      'safehouse audit verify --server http://127.0.0.1:8700 --as auditor_pboc --key auditor_pboc.key',
    ],
  },
  {
    name: 'audit replay',
    summary: 'replay jobs step by step from the escrowed seeds; exit 1 unless every step matches',
    ...at('auditor', 'auditor', 'embedded', 'client'),
    options: [
      HOME,
      str('job', 'JOB_ID', 'one job'),
      flag('all', 'every job (since --since)'),
      int('since', 'INDEX', [0], 'with --all: jobs requested at or after this ledger index', { default: 0 }),
      str('auditor', 'ID', 'the auditor (its key opens the seeds)', { defaultText: 'the only registered one', ...EMB }),
      ...CLIENT,
      key("the auditor's key file"),
      ENGINE_KEY,
      JSON_OUT,
    ],
    oneOf: [['job'], ['all']],
    examples: ['safehouse audit replay --all', 'safehouse audit replay --job score_20250101120000_1a2b3c4d'],
    notes: [
      'missing: the material to check a step is not there (purged by retention, or no seed escrowed to this auditor,',
      'which happens to an auditor registered after the job); it is not a match, so the exit code is 1.',
    ],
  },
];

/** The groups of two-word commands (`consent` of `consent grant`). */
export const GROUPS: ReadonlyMap<string, readonly CommandSpec[]> = (() => {
  const m = new Map<string, CommandSpec[]>();
  for (const c of COMMANDS) {
    const [g, sub] = c.name.split(' ');
    if (sub) m.set(g!, [...(m.get(g!) ?? []), c]);
  }
  return m;
})();

export function command(name: string): CommandSpec | undefined {
  return COMMANDS.find((c) => c.name === name);
}

/** The options of `c` in `mode`. */
export function optionsFor(c: CommandSpec, mode: Mode): OptionSpec[] {
  return c.options.filter((o) => o.mode === undefined || o.mode === mode);
}

/** Every option name with its type, across commands (to skip option values while finding the command words). */
export const VALUE_OPTIONS: ReadonlySet<string> = new Set(
  COMMANDS.flatMap((c) => c.options.filter((o) => o.type !== 'boolean').map((o) => o.name)),
);
