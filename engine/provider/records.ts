/**
 * A provider's own records beside its keys and tables (never the engine's): its policy (`policy.json`, the limits its
 * custodian and its model reviews apply, over sandbox/policy.ts defaults) and every model it has approved
 * (`approvals.jsonl`, one line per approval with the bank, its group and the model), so a new approval is reviewed
 * against the group's whole history as the provider itself recorded it — an engine that forgot or hid a model
 * changes nothing.
 */
import { appendFileSync, existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fail, isCoded } from '../../core/errors.ts';
import { providerPolicy, type ProviderPolicy } from '../../sandbox/policy.ts';
import type { ModelSpec } from '../../models/model.ts';

export interface ApprovalRecord {
  at: string;
  modelId: string;
  modelHash: string;
  bank: string;
  group: string;
  model: ModelSpec;
}

export class ProviderRecords {
  readonly dir: string;
  private cache: { mtimeMs: number; size: number; hashes: Set<string>; specs: Map<string, ModelSpec> } | undefined;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** The provider's limits: `policy.json` over the defaults, then `overrides`. @throws SH_ERR_INVALID_ARGUMENT */
  policy(overrides: Partial<ProviderPolicy> = {}): ProviderPolicy {
    const file = join(this.dir, 'policy.json');
    let own: Partial<ProviderPolicy> = {};
    if (existsSync(file)) {
      try {
        own = JSON.parse(readFileSync(file, 'utf8')) as Partial<ProviderPolicy>;
      } catch (err) {
        fail('SH_ERR_INVALID_ARGUMENT', `${file}: not JSON (${(err as Error).message})`, { file });
      }
      if (!own || typeof own !== 'object' || Array.isArray(own))
        fail('SH_ERR_INVALID_ARGUMENT', `${file}: expected an object of policy limits`, { file });
      const known = new Set(Object.keys(providerPolicy()));
      for (const k of Object.keys(own))
        if (!known.has(k))
          fail('SH_ERR_INVALID_ARGUMENT', `${file}: "${k}" is not a provider policy limit`, { file, field: k });
    }
    try {
      return providerPolicy({ ...own, ...overrides });
    } catch (err) {
      if (isCoded(err)) fail('SH_ERR_INVALID_ARGUMENT', `${file}: ${err.message}`, { file });
      throw err;
    }
  }

  /** Models this provider approved for banks of `group`, oldest first. */
  approvals(group: string): ApprovalRecord[] {
    const file = join(this.dir, 'approvals.jsonl');
    if (!existsSync(file)) return [];
    const out: ApprovalRecord[] = [];
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      const r = JSON.parse(line) as ApprovalRecord;
      if (r.group === group) out.push(r);
    }
    return out;
  }

  /** Hashes of every model this provider approved (re-read when the file changes). */
  approvedHashes(): Set<string> {
    const file = join(this.dir, 'approvals.jsonl');
    const st = statSync(file, { throwIfNoEntry: false });
    if (!st) return new Set();
    if (this.cache?.mtimeMs !== st.mtimeMs || this.cache.size !== st.size) {
      const hashes = new Set<string>();
      const specs = new Map<string, ModelSpec>();
      for (const line of readFileSync(file, 'utf8').split('\n')) {
        if (!line.trim()) continue;
        const r = JSON.parse(line) as ApprovalRecord;
        hashes.add(String(r.modelHash));
        if (r.model) specs.set(String(r.modelHash), r.model);
      }
      this.cache = { mtimeMs: st.mtimeMs, size: st.size, hashes, specs };
    }
    return this.cache.hashes;
  }

  /** An approved model as the provider reviewed it. */
  model(modelHash: string): ModelSpec | undefined {
    this.approvedHashes();
    return this.cache?.specs.get(modelHash);
  }

  /** Record an approval once the engine accepted it. */
  recordApproval(r: Omit<ApprovalRecord, 'at'>): void {
    appendFileSync(join(this.dir, 'approvals.jsonl'), JSON.stringify({ at: new Date().toISOString(), ...r }) + '\n', {
      mode: 0o600,
    });
  }
}
