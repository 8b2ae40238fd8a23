/**
 * Models (docs/design.md §7): a bank's registered model — parsed, compiled against the current datasets (fields exist
 * and may be scored, the bound calculator passes), vetted against the anti-extraction rules, hash-pinned — and each
 * provider's signed approval of that hash, with the scorecard bin-indicator columns it derives from its own records.
 */
import { fail, isCoded } from '../core/errors.ts';
import { sha256Hex } from '../core/hash.ts';
import { requireSignature, type Signed } from '../core/sign.ts';
import { vetModel } from '../sandbox/vetting.ts';
import { vetHistory, type HistoryModel } from '../sandbox/history.ts';
import { historyModel } from '../models/history.ts';
import {
  parseModel,
  compileModel,
  isScorecardTerm,
  binColumn,
  type CompiledModel,
  type ModelSpec,
} from '../models/model.ts';
import type { Registry } from './registry.ts';
import type { Datasets } from './datasets.ts';
import type { EngineContext } from './context.ts';

export interface ApprovalStatement {
  type: 'safehouse.approval.v1';
  provider: string;
  modelId: string;
  modelHash: string;
  datasetId: string;
  /** Derived scorecard bin-indicator columns for this provider's terms. */
  derived: Array<{ column: string; block: number; blob: string }>;
  approvedAt: string;
}

export interface ModelRegistration {
  type: 'safehouse.model.register.v1';
  bank: string;
  model: ModelSpec;
}

export interface RegisteredModel {
  spec: ModelSpec;
  hash: string;
  bank: string;
}

export class Models {
  private readonly ctx: EngineContext;
  private readonly registry: Registry;
  private readonly datasets: Datasets;

  constructor(ctx: EngineContext, registry: Registry, datasets: Datasets) {
    this.ctx = ctx;
    this.registry = registry;
    this.datasets = datasets;
  }

  /**
   * Register a bank's model: parse, compile against the current datasets (fields exist and may be scored, bound
   * calculator), vet (anti-extraction), pin its hash. Providers then approve it.
   * @throws SH_ERR_BAD_SIGNATURE, SH_ERR_MODEL_*, SH_ERR_UNKNOWN_FIELD, SH_ERR_BOUND_OVERFLOW, SH_ERR_ALREADY_EXISTS
   */
  register(signed: Signed<ModelRegistration>): CompiledModel {
    const bank = this.registry.requireParty(signed.signer, 'bank');
    requireSignature(signed, bank.ed25519, 'safehouse.model.register.v1', `model registration by ${signed.signer}`);
    if (signed.body.bank !== bank.id)
      fail('SH_ERR_BAD_SIGNATURE', `registration names bank ${signed.body.bank} but is signed by ${bank.id}`);
    const spec = parseModel(signed.body.model);
    const compiled = compileModel(spec, this.datasets.fieldLookup, this.ctx.params.t);
    vetModel(compiled, this.ctx.policy);
    for (const p of new Set(spec.terms.map((t) => t.provider))) this.registry.requireParty(p, 'provider');
    // The group's whole history counts: with every model its banks registered, no field may be isolated.
    vetHistory(
      historyModel(compiled),
      this.groupHistory(bank.id),
      this.ctx.policy.minUnexplainedShare,
      this.registry.groupOf(bank.id),
    );
    if (this.ctx.store.db.prepare('SELECT 1 FROM models WHERE id = ?').get(spec.id))
      fail('SH_ERR_ALREADY_EXISTS', `model ${spec.id} is already registered; register a new version under a new id`, {
        model: spec.id,
      });
    this.ctx.store.transaction(() => {
      this.ctx.store.db
        .prepare(
          'INSERT INTO models (id, bank, kind, spec_json, hash, scale, bound, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
        )
        .run(
          spec.id,
          bank.id,
          spec.kind,
          JSON.stringify(spec),
          compiled.hash,
          compiled.scale,
          compiled.bound.toString(),
          this.ctx.now().toISOString(),
        );
      this.ctx.ledger.append('model.registered', {
        modelId: spec.id,
        bank: bank.id,
        hash: compiled.hash,
        modelKind: spec.kind,
        providers: [...new Set(spec.terms.map((t) => t.provider))],
        signature: signed.signature,
      });
    });
    return compiled;
  }

  /**
   * Every model registered by a bank of `bank`'s group, as the history rule reads it (compiled against the current
   * datasets; a model that no longer compiles cannot be scored and is left out).
   */
  groupHistory(bank: string): HistoryModel[] {
    const banks = this.registry.banksOf(this.registry.groupOf(bank));
    const out: HistoryModel[] = [];
    const rows = this.ctx.store.db
      .prepare(
        `SELECT spec_json FROM models WHERE bank IN (${banks.map(() => '?').join(', ')}) ORDER BY created_at, id`,
      )
      .all(...banks) as Array<{ spec_json: string }>;
    for (const r of rows) {
      try {
        out.push(
          historyModel(
            compileModel(JSON.parse(r.spec_json) as ModelSpec, this.datasets.fieldLookup, this.ctx.params.t),
          ),
        );
      } catch (err) {
        if (!isCoded(err)) throw err;
      }
    }
    return out;
  }

  get(id: string): RegisteredModel | undefined {
    if (typeof id !== 'string') return undefined;
    const r = this.ctx.store.db.prepare('SELECT spec_json, hash, bank FROM models WHERE id = ?').get(id) as
      { spec_json: string; hash: string; bank: string } | undefined;
    return r ? { spec: JSON.parse(r.spec_json) as ModelSpec, hash: r.hash, bank: r.bank } : undefined;
  }

  /** Compile a registered model against the current datasets. @throws SH_ERR_NOT_FOUND and compile errors */
  compiled(id: string): CompiledModel {
    const m = this.get(id);
    if (!m) fail('SH_ERR_NOT_FOUND', `no model ${JSON.stringify(id)} is registered`, { model: id });
    const c = compileModel(m.spec, this.datasets.fieldLookup, this.ctx.params.t);
    if (c.hash !== m.hash) fail('SH_ERR_PARAMS_MISMATCH', `model ${id} hash changed`);
    return c;
  }

  /**
   * Record a provider's signed approval, with the derived bin columns its scorecard terms need.
   * @throws SH_ERR_BAD_SIGNATURE, SH_ERR_NOT_FOUND, SH_ERR_PARAMS_MISMATCH, SH_ERR_MODEL_STALE, SH_ERR_CIPHERTEXT_*
   */
  approve(signed: Signed<ApprovalStatement>, blobs: ReadonlyMap<string, Uint8Array>): void {
    const provider = this.registry.requireParty(signed.signer, 'provider');
    requireSignature(signed, provider.ed25519, 'safehouse.approval.v1', `approval by ${signed.signer}`);
    const a = signed.body;
    if (a.provider !== provider.id)
      fail('SH_ERR_BAD_SIGNATURE', `approval names ${a.provider} but is signed by ${provider.id}`);
    const compiled = this.compiled(a.modelId);
    if (compiled.hash !== a.modelHash)
      fail(
        'SH_ERR_PARAMS_MISMATCH',
        `approval is for model hash ${a.modelHash.slice(0, 12)}…, registered model is ${compiled.hash.slice(0, 12)}…`,
      );
    const mine = compiled.terms.filter((t) => t.provider === provider.id);
    if (mine.length === 0) fail('SH_ERR_INVALID_ARGUMENT', `model ${a.modelId} does not use provider ${provider.id}`);
    const ds = this.datasets.get(a.datasetId);
    if (!ds || ds.provider !== provider.id)
      fail('SH_ERR_NOT_FOUND', `dataset ${a.datasetId} of ${provider.id} not found`);
    const want = new Set<string>();
    compiled.spec.terms.forEach((term, i) => {
      if (term.provider !== provider.id || !isScorecardTerm(term)) return;
      const d = this.datasets.withField(provider.id, term.field);
      if (d?.id !== ds.id)
        fail('SH_ERR_MODEL_STALE', `approval's dataset ${ds.id} is not the current dataset holding ${term.field}`);
      term.bins.forEach((_, j) => {
        for (let b = 0; b < ds.blocks; b++) want.add(`${binColumn(compiled.hash, i, j)}#${b}`);
      });
    });
    for (const c of a.derived) {
      if (!want.delete(`${c.column}#${c.block}`))
        fail('SH_ERR_INVALID_ARGUMENT', `derived column ${c.column} block ${c.block} is not expected`);
      const b = blobs.get(c.blob);
      if (!b) fail('SH_ERR_INVALID_ARGUMENT', `derived column blob ${c.blob} is not in the upload`);
      if (b.length > this.ctx.params.maxCiphertextBytes)
        fail('SH_ERR_CIPHERTEXT_SIZE', `derived column ${c.column}: ${b.length} bytes exceeds the cap`);
      if (sha256Hex(b) !== c.blob)
        fail('SH_ERR_CIPHERTEXT_INVALID', `derived column ${c.column}: bytes do not hash to ${c.blob}`);
    }
    if (want.size)
      fail('SH_ERR_INVALID_ARGUMENT', `approval lacks derived columns: ${[...want].slice(0, 3).join(', ')}`);
    this.ctx.store.transaction(() => {
      this.datasets.putColumns(
        ds.id,
        a.derived.map((c) => ({ ...c, bytes: blobs.get(c.blob)! })),
        { replace: true },
      );
      this.ctx.store.db
        .prepare(
          'INSERT OR REPLACE INTO approvals (model_id, provider, model_hash, signed_json, created_at) VALUES (?, ?, ?, ?, ?)',
        )
        .run(a.modelId, provider.id, a.modelHash, JSON.stringify(signed), this.ctx.now().toISOString());
      this.ctx.ledger.append('model.approved', {
        modelId: a.modelId,
        provider: provider.id,
        modelHash: a.modelHash,
        datasetId: ds.id,
        derivedColumns: a.derived.length,
        signature: signed.signature,
      });
    });
  }

  /** Provider → the model hash it approved. */
  approvals(modelId: string): Map<string, string> {
    const rows = this.ctx.store.db
      .prepare('SELECT provider, model_hash FROM approvals WHERE model_id = ?')
      .all(modelId) as Array<{ provider: string; model_hash: string }>;
    return new Map(rows.map((r) => [r.provider, r.model_hash]));
  }
}
