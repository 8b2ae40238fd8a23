/**
 * The engine (平台) over one data directory: a thin facade that opens the store, the ledger and the engine's signing key
 * and holds the components — `registry` (parties, custodians), `datasets` (uploads, subject index, columns, tokens),
 * `consents`, `models` (registration, approvals), `jobs`, `budgets` (verification) and `retention`. It holds no
 * decryption key of anyone (docs/design.md §1): it stores ciphertexts and public keys and talks to custodians through
 * signed requests. Every state change is validated completely first, then written in one SQLite transaction together
 * with its ledger leaf, so bad input changes nothing. The protocols (engine/protocols/) run jobs over these components.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fail } from '../core/errors.ts';
import { ed25519KeyPair, ed25519PublicKey, bytesToHex, hexToBytes } from '../core/sign.ts';
import { policy as fillPolicy, type Policy } from '../sandbox/policy.ts';
import { Store } from './store/store.ts';
import { Ledger } from './ledger/ledger.ts';
import { WorkerPool } from './pool/pool.ts';
import { BFV_8192_T40, type ParamSet } from './he/params.ts';
import { Registry } from './registry.ts';
import { Datasets } from './datasets.ts';
import { Consents } from './consents.ts';
import { Models } from './models.ts';
import { Jobs } from './jobs.ts';
import { VerifyBudgets } from './budgets.ts';
import { Retention } from './retention.ts';
import type { EngineContext } from './context.ts';

export interface EngineOptions {
  home: string;
  create?: boolean;
  params?: ParamSet;
  policy?: Partial<Policy>;
  poolSize?: number;
  now?: () => Date;
}

/** The ledger's checkpoint origin (C2SP tlog-checkpoint) and signed-note key name. */
export const LEDGER_ORIGIN = 'safehouse.local/ledger';

/**
 * The engine's signing key (`<home>/engine.key`): made with a new data directory; for one that already has a ledger,
 * a missing or unreadable key is refused — a new key would not verify the ledger's checkpoints or match what every
 * custodian pinned. @throws SH_ERR_KEY_FILE
 */
function engineKey(store: Store): Uint8Array {
  const keyFile = join(store.home, 'engine.key');
  if (!existsSync(keyFile)) {
    if (store.getMeta('params'))
      fail('SH_ERR_KEY_FILE', `${keyFile} is missing; this data directory's ledger is signed with it`, {
        file: 'engine.key',
      });
    const kp = ed25519KeyPair();
    writeFileSync(keyFile, JSON.stringify({ ed25519: bytesToHex(kp.secretKey) }), { mode: 0o600 });
  }
  let hex: unknown;
  try {
    hex = (JSON.parse(readFileSync(keyFile, 'utf8')) as { ed25519?: unknown }).ed25519;
  } catch (err) {
    return fail('SH_ERR_KEY_FILE', `${keyFile} is not a JSON key file`, { file: 'engine.key' }, err);
  }
  if (typeof hex !== 'string' || !/^[0-9a-f]{64}$/.test(hex))
    fail('SH_ERR_KEY_FILE', `${keyFile}: "ed25519" expected 32 bytes of hex`, { file: 'engine.key' });
  return hexToBytes(hex as string);
}

export class Engine implements EngineContext {
  readonly store: Store;
  readonly ledger: Ledger;
  readonly params: ParamSet;
  readonly policy: Policy;
  readonly now: () => Date;
  readonly keys: { ed25519: { secretKey: Uint8Array; publicKey: Uint8Array } };
  readonly registry: Registry;
  readonly datasets: Datasets;
  readonly consents: Consents;
  readonly models: Models;
  readonly jobs: Jobs;
  readonly budgets: VerifyBudgets;
  readonly retention: Retention;
  private poolInstance: WorkerPool | undefined;
  private readonly poolSize: number | undefined;

  private constructor(opts: EngineOptions, store: Store) {
    this.store = store;
    this.params = opts.params ?? BFV_8192_T40;
    this.policy = fillPolicy(opts.policy);
    this.now = opts.now ?? (() => new Date());
    this.poolSize = opts.poolSize;
    const sk = engineKey(store);
    const kp = { secretKey: sk, publicKey: ed25519PublicKey(sk) };
    this.keys = { ed25519: kp };
    this.ledger = new Ledger(store.db, {
      origin: LEDGER_ORIGIN,
      keyName: LEDGER_ORIGIN,
      secretKey: kp.secretKey,
      publicKey: kp.publicKey,
      now: this.now,
    });
    this.registry = new Registry(this);
    this.datasets = new Datasets(this, this.registry);
    this.consents = new Consents(this, this.registry);
    this.consents.useDatasets(this.datasets);
    this.models = new Models(this, this.registry, this.datasets);
    this.jobs = new Jobs(this);
    this.budgets = new VerifyBudgets(this);
    this.retention = new Retention(this, this.jobs);
  }

  /** Open a data directory (`create` initializes it). @throws SH_ERR_HOME_NOT_INITIALIZED, SH_ERR_PARAMS_MISMATCH */
  static open(opts: EngineOptions): Engine {
    const store = Store.open(opts.home, { create: opts.create });
    try {
      const e = new Engine(opts, store);
      if (!store.getMeta('params')) {
        store.setMeta('params', e.params.id);
        store.setMeta('created_at', e.now().toISOString());
        e.ledger.append('engine.initialized', {
          paramsId: e.params.id,
          engineKey: bytesToHex(e.keys.ed25519.publicKey),
        });
        e.ledger.checkpoint();
      } else if (store.getMeta('params') !== e.params.id) {
        fail(
          'SH_ERR_PARAMS_MISMATCH',
          `data directory uses ${store.getMeta('params')}, engine configured for ${e.params.id}`,
        );
      }
      return e;
    } catch (err) {
      store.close();
      throw err;
    }
  }

  /**
   * Prepare what every job reads, before the first one: the consent index and the subject index of each current
   * dataset, and SEAL in every worker. A server does this when it starts; a job would otherwise pay it.
   */
  async warmUp(): Promise<void> {
    this.consents.warm();
    this.datasets.warm();
    await this.pool.warmUp(this.params.id);
  }

  get pool(): WorkerPool {
    this.poolInstance ??= new WorkerPool(this.poolSize === undefined ? {} : { size: this.poolSize });
    return this.poolInstance;
  }

  async close(): Promise<void> {
    await this.registry.disconnectAll();
    await this.poolInstance?.close();
    this.poolInstance = undefined;
    this.store.close();
  }

  /**
   * What a server checks before it listens (docs/operations.md "Start-up checks"): SQLite's quick_check, then the
   * whole ledger — every leaf hash, tree node and checkpoint signature — so a damaged or rewritten store is refused at
   * start rather than found by the first request.
   * @throws SH_ERR_STORE_DAMAGED, SH_ERR_LEDGER_TAMPERED
   */
  startupCheck(): { ledgerSize: number } {
    this.store.quickCheck();
    const r = this.ledger.verify();
    if (!r.ok)
      fail('SH_ERR_LEDGER_TAMPERED', `the ledger does not verify: ${r.reason}`, {
        ...(r.index !== undefined ? { index: r.index } : {}),
      });
    return { ledgerSize: r.size };
  }

  /** Ledger verification (auditor): recompute the tree, check every checkpoint signature. */
  auditVerify() {
    return this.ledger.verify();
  }
}
