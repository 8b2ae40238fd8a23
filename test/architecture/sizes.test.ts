/**
 * No file over about 400 lines without a reason stated at its top: a long file is either split where its parts can be
 * read apart, or says in its header comment (a line starting `Longer than 400 lines:`) why it is one piece.
 */
import { describe, it, expect } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..', '..');
const DIRS = ['core', 'sandbox', 'models', 'engine', 'api', 'bench', 'test', 'examples'];
/** "About 400": a file may run a little over before it must explain itself. */
const LIMIT = 440;

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const f of readdirSync(dir)) {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) out.push(...tsFiles(p));
    else if (f.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** The file's first comment block (its header). */
export function header(source: string): string {
  const m = /^\s*(\/\*\*?[\s\S]*?\*\/|(?:\/\/[^\n]*\n)+)/.exec(source);
  return m ? m[1]! : '';
}

describe('file sizes', () => {
  it(`every .ts file over ${LIMIT} lines states in its header why it is one piece`, () => {
    const unexplained: string[] = [];
    for (const file of DIRS.flatMap((d) => tsFiles(join(ROOT, d)))) {
      const source = readFileSync(file, 'utf8');
      const lines = source.split('\n').length;
      if (lines > LIMIT && !/^\s*(\*|\/\/)\s*Longer than 400 lines:\s*\S/m.test(header(source)))
        unexplained.push(`${relative(ROOT, file)} (${lines} lines)`);
    }
    expect(unexplained).toEqual([]);
  });

  it('reads a header the way files write it', () => {
    expect(header('/**\n * A module.\n * Longer than 400 lines: one table.\n */\nexport {};')).toContain(
      'Longer than 400 lines: one table.',
    );
    expect(header('// a\n// Longer than 400 lines: b\nconst x = 1;')).toContain('Longer than 400 lines: b');
    expect(header('const x = 1;\n/** later */')).toBe('');
  });
});
