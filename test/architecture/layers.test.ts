/**
 * The import order of the source tree (docs/design.md §10): core ← sandbox ← models ← engine ← api. A file may import
 * its own layer or a lower one, never a higher one (type-only imports included: a type pulls the module's meaning
 * with it). bench/, test/ and examples/ sit above everything. The test reads every import specifier of every .ts file.
 */
import { describe, it, expect } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..', '..');
const LAYERS = ['core', 'sandbox', 'models', 'engine', 'api'] as const;

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const f of readdirSync(dir)) {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) out.push(...tsFiles(p));
    else if (f.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** Every relative module specifier of a file: static imports and re-exports, dynamic import(), new URL(…, import.meta.url). */
export function relativeImports(source: string): string[] {
  const specs: string[] = [];
  for (const m of source.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)(['"])(\.[^'"]+)\1/g)) specs.push(m[2]!);
  for (const m of source.matchAll(/new URL\((['"])(\.[^'"]+)\1,\s*import\.meta\.url\)/g)) specs.push(m[2]!);
  return specs;
}

const layerOf = (path: string): number => LAYERS.indexOf(relative(ROOT, path).split('/')[0] as (typeof LAYERS)[number]);

describe('layers: core ← sandbox ← models ← engine ← api', () => {
  const files = LAYERS.flatMap((l) => tsFiles(join(ROOT, l)));

  it('finds the source tree and reads imports the way the modules write them', () => {
    expect(files.length).toBeGreaterThan(40);
    expect(
      relativeImports(
        "import { a } from '../x.ts';\nexport { b } from './y.ts';\nconst m = await import('../z.ts');\nnew URL('./w.ts', import.meta.url)",
      ),
    ).toEqual(['../x.ts', './y.ts', '../z.ts', './w.ts']);
  });

  it('no module imports a layer above its own', () => {
    const violations: string[] = [];
    for (const file of files) {
      const own = layerOf(file);
      for (const spec of relativeImports(readFileSync(file, 'utf8'))) {
        const target = resolve(dirname(file), spec);
        const layer = layerOf(target);
        if (layer === -1) violations.push(`${relative(ROOT, file)} imports ${spec}, outside the layered tree`);
        else if (layer > own)
          violations.push(
            `${relative(ROOT, file)} (${LAYERS[own]}) imports ${relative(ROOT, target)} (${LAYERS[layer]})`,
          );
      }
    }
    expect(violations).toEqual([]);
  });

  it('inside engine/: primitives and components import no protocol; no protocol imports another', () => {
    const rel = (p: string) => relative(ROOT, p).split('/').join('/');
    const protocolOf = (p: string) => /^engine\/protocols\/([^/]+)\//.exec(rel(p))?.[1];
    // Modules that may use the protocols: the protocols themselves, their registry, the auditor's dispatcher and
    // reports, and the provider's agent (which runs every protocol's provider side and custodian rules).
    const top = (p: string) =>
      rel(p).startsWith('engine/protocols/') ||
      ['engine/audit/replay.ts', 'engine/audit/report.ts', 'engine/provider/agent.ts'].includes(rel(p));
    const violations: string[] = [];
    for (const file of files.filter((f) => rel(f).startsWith('engine/'))) {
      for (const spec of relativeImports(readFileSync(file, 'utf8'))) {
        const target = resolve(dirname(file), spec);
        if (!rel(target).startsWith('engine/')) continue;
        if (!top(file) && top(target)) violations.push(`${rel(file)} imports ${rel(target)}`);
        const a = protocolOf(file);
        const b = protocolOf(target);
        if (a && b && a !== b) violations.push(`${rel(file)} (protocol ${a}) imports ${rel(target)} (protocol ${b})`);
      }
    }
    expect(violations).toEqual([]);
    expect(
      files.some((f) => protocolOf(f) === 'score') &&
        files.some((f) => protocolOf(f) === 'verify') &&
        files.some((f) => protocolOf(f) === 'train'),
    ).toBe(true);
  });

  it('catches a violation (the check itself can fail)', () => {
    const file = join(ROOT, 'core', 'x.ts');
    const target = resolve(dirname(file), '../engine/engine.ts');
    expect(layerOf(target)).toBeGreaterThan(layerOf(file));
  });
});
