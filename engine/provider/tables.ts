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

interface Loaded {
  mtimeMs: number;
  size: number;
  datasetId: string;
  category: string;
  subjects: readonly string[];
  types: Map<string, 'id' | 'numeric'>;
}

export class ProviderTables implements ProviderData {
  private readonly dir: string;
  private readonly loaded = new Map<string, Loaded>();

  private readonly records: ProviderRecords;

  constructor(dir: string) {
    this.dir = dir;
    this.records = new ProviderRecords(dir);
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
    return this.records.modelFields(modelHash).filter((f) => this.tables().some((t) => t.types.has(f)));
  }

  layout(datasetId: string): ((row: number) => string | undefined) | undefined {
    const subjects = this.tables().find((t) => t.datasetId === datasetId)?.subjects;
    return subjects ? (row) => subjects[row] : undefined;
  }
}
