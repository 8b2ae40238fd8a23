/**
 * README's architecture block is the source tree: every folder it names exists and every folder of core/, sandbox/,
 * models/, engine/ and api/ has its line; where a line lists .ts files, they are exactly the folder's .ts files.
 * A folder is written `name/` at two spaces of indent per level below its parent.
 */
import { describe, it, expect } from 'vitest';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..', '..');
const SOURCE = ['core', 'sandbox', 'models', 'engine', 'api'];

/** The README's architecture block: folder path → the .ts names its line lists (continuation lines included). */
export function architectureBlock(readme: string): Map<string, string[]> {
  const section = readme.slice(readme.indexOf('## Architecture'));
  const block = /```\n([\s\S]*?)```/.exec(section)?.[1] ?? '';
  const out = new Map<string, string[]>();
  const stack: string[] = [];
  let current = '';
  for (const line of block.split('\n')) {
    const m = /^( *)([a-z][a-z0-9_-]*)\/(\s|$)/.exec(line);
    if (m) {
      const depth = m[1]!.length / 2;
      stack.length = depth;
      stack.push(m[2]!);
      current = stack.join('/');
      out.set(current, []);
    }
    if (current) out.get(current)!.push(...[...line.matchAll(/(?:^|\s)([a-z][a-z0-9-]*\.ts)\b/g)].map((x) => x[1]!));
  }
  return out;
}

function dirs(dir: string): string[] {
  return readdirSync(join(ROOT, dir))
    .filter((f) => statSync(join(ROOT, dir, f)).isDirectory())
    .flatMap((f) => [`${dir}/${f}`, ...dirs(`${dir}/${f}`)]);
}

describe('README architecture block', () => {
  const tree = architectureBlock(readFileSync(join(ROOT, 'README.md'), 'utf8'));

  it('names folders that exist and .ts files that exist in them', () => {
    expect(tree.size).toBeGreaterThan(15);
    const wrong: string[] = [];
    for (const [dir, files] of tree) {
      if (!existsSync(join(ROOT, dir))) wrong.push(`${dir}/ does not exist`);
      for (const f of files) if (!existsSync(join(ROOT, dir, f))) wrong.push(`${dir}/${f} does not exist`);
    }
    expect(wrong).toEqual([]);
  });

  it('has a line for every source folder; a line that lists files lists all of them', () => {
    const missing: string[] = [];
    for (const d of [...SOURCE, ...SOURCE.flatMap((s) => dirs(s))]) if (!tree.has(d)) missing.push(`${d}/ has no line`);
    for (const [dir, files] of tree) {
      if (files.length === 0 || !existsSync(join(ROOT, dir))) continue;
      for (const f of readdirSync(join(ROOT, dir)).filter((x) => x.endsWith('.ts')))
        if (!files.includes(f)) missing.push(`${dir}/${f} is not listed`);
    }
    expect(missing).toEqual([]);
  });

  it('parses nesting by indent (the check itself can fail)', () => {
    const t = architectureBlock('## Architecture\n```\nengine/  a.ts\n  he/  b.ts\napi/\n```\n');
    expect([...t.keys()]).toEqual(['engine', 'engine/he', 'api']);
    expect(t.get('engine/he')).toEqual(['b.ts']);
  });
});
