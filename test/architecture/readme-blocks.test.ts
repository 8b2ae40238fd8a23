/**
 * README's walkthroughs run as written: the shell blocks of "The CLI (embedded mode)" and "Network mode" are taken
 * from README.md as they are and run by bash from the repository root (where `npx safehouse` resolves), with a
 * scratch TMPDIR (their `mktemp -d`), so the README cannot drift from the CLI again. Each must exit 0, print what its
 * last steps promise, stop every process it started, and leave the source tree as it found it (homes, keys and
 * outputs all live under the scratch folder).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..', '..');
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

/** The ```sh blocks of one `## ` section, in order. */
export function shellBlocks(readme: string, heading: string): string[] {
  const start = readme.indexOf(`\n${heading}`);
  if (start < 0) return [];
  const end = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

/** Files git sees as new or changed (the source tree's state). */
function treeState(): string {
  return spawnSync('git', ['status', '--porcelain', '--untracked-files=all'], { cwd: ROOT, encoding: 'utf8' }).stdout;
}

/** Run a script with bash in its own process group; kill the group afterwards (background servers included). */
function runScript(script: string, tmp: string, timeoutMs: number): Promise<{ code: number | null; out: string }> {
  return new Promise((done) => {
    const child = spawn('bash', ['-c', `set -euo pipefail\n${script}`], {
      cwd: ROOT,
      detached: true,
      env: {
        ...process.env,
        TMPDIR: tmp,
        PATH: `${dirname(process.execPath)}:${process.env.PATH}`,
        SAFEHOUSE_HOME: '',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const kill = () => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // the group has already exited
      }
    };
    const timer = setTimeout(kill, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      kill();
      done({ code, out });
    });
  });
}

let tmp: string;
let before: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'sh-readme-'));
  before = treeState();
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('README walkthroughs run as written', () => {
  it('finds the blocks the way the README writes them', () => {
    expect(
      shellBlocks('# x\n## A\n```sh\necho 1\n```\ntext\n```sh\necho 2\n```\n## B\n```sh\necho 3\n```\n', '## A'),
    ).toEqual(['echo 1\n', 'echo 2\n']);
    expect(shellBlocks(README, '## The CLI (embedded mode)').length).toBeGreaterThanOrEqual(2);
    expect(shellBlocks(README, '## Network mode').length).toBeGreaterThanOrEqual(1);
  });

  it('The CLI (embedded mode): the examples walkthrough and German Credit training', { timeout: 600_000 }, async () => {
    const r = await runScript(shellBlocks(README, '## The CLI (embedded mode)').join('\n'), tmp, 540_000);
    expect(r.code, r.out.slice(-3000)).toBe(0);
    expect(r.out).toMatch(/ledger intact/);
    expect(r.out).toMatch(/job\(s\) replayed: every step matches/);
    expect(r.out).toMatch(/hold-out AUC 0\.\d+/);
    expect(treeState()).toBe(before);
  });

  it('Network mode: engine, two custodians and every party as separate processes', { timeout: 600_000 }, async () => {
    const r = await runScript(shellBlocks(README, '## Network mode').join('\n'), tmp, 540_000);
    expect(r.code, r.out.slice(-3000)).toBe(0);
    expect(r.out).toMatch(/hold-out AUC 0\.\d+, KS 0\.\d+/);
    expect(r.out).toMatch(/verified on the auditor's side/);
    expect(r.out).toMatch(/job\(s\) replayed: every step matches/);
    expect(treeState()).toBe(before);
    // Every process the block started is gone (it kills them; the group kill above is the backstop).
    const left = spawnSync('pgrep', ['-f', `safehouse(\\.js)? (serve|custodian) .*${tmp}`], {
      encoding: 'utf8',
    }).stdout.trim();
    expect(left).toBe('');
  });
});
