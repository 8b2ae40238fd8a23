/**
 * A provider's own tables as its custodian reads them (engine/custodian/rules.ts `ProviderData`): the `<category>.json`
 * files the provider side writes next to its keys when it ingests (its system of record). From them the custodian
 * knows which of its fields are token fields and, per dataset, which subject each slot holds, and from the provider's
 * approvals (records.ts) which models it approved — facts it must not take from the engine. Tables are re-read only
 * when they change.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ProviderData } from '../custodian/rules.ts';
import type { ProviderTable } from './table.ts';
import { ProviderRecords } from './records.ts';
import { binIndex, compileModel, isScorecardTerm, type CompiledModel, type ModelSpec } from '../../models/model.ts';

interface Loaded {
  mtimeMs: number;
  size: number;
  table: ProviderTable;
  /** Partial scores per approved model hash, computed once per load of the table. */
  partials: Map<string, BigInt64Array | undefined>;
  datasetId: string;
  category: string;
  subjects: readonly string[];
  rows?: Map<string, number>;
  types: Map<string, 'id' | 'numeric'>;
}

export class ProviderTables implements ProviderData {
  private readonly dir: string;
  private readonly loaded = new Map<string, Loaded>();

  private readonly records: ProviderRecords;
  private readonly t: bigint;
  private readonly provider: string;

  constructor(dir: string, t: bigint, provider: string) {
    this.dir = dir;
    this.t = t;
    this.provider = provider;
    this.records = new ProviderRecords(dir);
  }

  /**
   * The approved model's partial score of each row of a dataset, from the provider's own records: its own terms
   * compiled against its own schema (intercept 0), on the values it uploaded — a scorecard term gives the points of
   * the row's bin, a missing value 0 (its points go in the engine's unmask offset, as in the encrypted column).
   */
  partialScore(modelHash: string, datasetId: string): ((row: number) => bigint) | undefined {
    const loaded = this.tables().find((t) => t.datasetId === datasetId);
    if (!loaded) return undefined;
    // Computed once per (model, load of the table): every block of every job with the model reads the same vector.
    let partials = loaded.partials.get(modelHash);
    if (!loaded.partials.has(modelHash)) {
      partials = this.computePartials(modelHash, loaded.table);
      loaded.partials.set(modelHash, partials);
    }
    const p = partials;
    return p ? (row) => (row < p.length ? p[row]! : 0n) : undefined;
  }

  private computePartials(modelHash: string, table: ProviderTable): BigInt64Array | undefined {
    const spec = this.records.model(modelHash);
    if (!spec) return undefined;
    const mine: ModelSpec = { ...spec, intercept: '0', terms: spec.terms.filter((t) => t.provider === this.provider) };
    if (mine.terms.length === 0) return undefined;
    let compiled: CompiledModel;
    try {
      compiled = compileModel(mine, (_p, name) => table.schema.fields.find((f) => f.name === name), this.t);
    } catch {
      return undefined;
    }
    // |partial| ≤ the compiled bound ≤ (t − 1)/2 < 2^63: a signed 64-bit vector holds it exactly.
    const out = new BigInt64Array(table.subjects.length);
    compiled.terms.forEach((term, i) => {
      const values = table.values[term.field] ?? [];
      const src = mine.terms[i]!;
      const pts = term.columns.map((c) => c.multiplier);
      for (let row = 0; row < out.length; row++) {
        const v = values[row];
        if (v == null) continue;
        if (!isScorecardTerm(src)) out[row]! += pts[0]! * BigInt(v);
        else {
          const j = binIndex(src.bins, BigInt(v), term.spec.decimals);
          if (j >= 0) out[row]! += pts[j]!;
        }
      }
    });
    return out;
  }

  private tables(): Loaded[] {
    let names: string[];
    try {
      names = readdirSync(this.dir).filter((f) => f.endsWith('.json') && f !== 'key.json' && f !== 'public.json');
    } catch {
      return [];
    }
    const out: Loaded[] = [];
    for (const name of names) {
      const file = join(this.dir, name);
      const st = statSync(file, { throwIfNoEntry: false });
      if (!st) continue;
      let l = this.loaded.get(file);
      if (!l || l.mtimeMs !== st.mtimeMs || l.size !== st.size) {
        let t: ProviderTable;
        try {
          t = JSON.parse(readFileSync(file, 'utf8')) as ProviderTable;
        } catch {
          continue; // not one of the provider's tables
        }
        if (typeof t?.datasetId !== 'string' || !Array.isArray(t.subjects) || !Array.isArray(t.schema?.fields))
          continue;
        l = {
          mtimeMs: st.mtimeMs,
          size: st.size,
          table: t,
          partials: new Map(),
          datasetId: t.datasetId,
          category: String(t.category),
          subjects: t.subjects,
          types: new Map(t.schema.fields.map((f) => [f.name, f.type === 'id' ? 'id' : 'numeric'] as const)),
        };
        this.loaded.set(file, l);
      }
      out.push(l);
    }
    return out;
  }

  approvedModel(modelHash: string): boolean {
    return this.records.approvedHashes().has(modelHash);
  }

  fieldType(field: string): 'id' | 'numeric' | undefined {
    for (const t of this.tables()) {
      const ty = t.types.get(field);
      if (ty) return ty;
    }
    return undefined;
  }

  datasetWith(field: string): string | undefined {
    return this.tables().find((t) => t.types.has(field))?.datasetId;
  }

  categoryOf(field: string): string | undefined {
    return this.tables().find((t) => t.types.has(field))?.category;
  }

  modelFields(modelHash: string): string[] {
    const spec = this.records.model(modelHash);
    if (!spec) return [];
    return [...new Set(spec.terms.filter((t) => t.provider === this.provider).map((t) => t.field))];
  }

  rows(datasetId: string): ReadonlyMap<string, number> | undefined {
    const l = this.tables().find((t) => t.datasetId === datasetId);
    if (!l) return undefined;
    return (l.rows ??= new Map(l.subjects.map((s, i) => [s, i])));
  }

  /** Every table read (a changed file again) and, for every model this provider approved, its partial scores. */
  warm(): void {
    for (const l of this.tables()) {
      this.rows(l.datasetId);
      for (const hash of this.records.approvedHashes()) this.partialScore(hash, l.datasetId);
    }
  }

  layout(datasetId: string): ((row: number) => string | undefined) | undefined {
    const subjects = this.tables().find((t) => t.datasetId === datasetId)?.subjects;
    return subjects ? (row) => subjects[row] : undefined;
  }
}
