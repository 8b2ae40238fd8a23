/**
 * A long job does not grow memory: scoring jobs over 50 blocks (409 600 rows, one consented subject per
 * block), sampling after every block each worker's SEAL WebAssembly memory (engine pool and the provider's pool, where
 * the custodian decrypts) and the process RSS (after a main-thread GC). WASM memory must not grow at all after the
 * first 10 blocks (it never shrinks, so any leaked ciphertext, plaintext or key would show as growth). RSS is judged
 * over a second 50-block job, after the first has warmed the allocators and the workers' JS heaps (measured: the
 * first job's RSS creeps up ~0.5 MiB per block until the worker heaps settle, the second stays within ~1 MiB); it must
 * stay within 16 MiB, less than one leaked ciphertext per block would add. The scores are checked against plaintext.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Safehouse } from '../../../api/embedded.ts';
import { randomUscc } from '../../../sandbox/uscc.ts';
import { mulberry32 } from '../../../core/rng.ts';
import { formatFixed } from '../../../core/fixed.ts';

const BLOCKS = 50;
const SLOTS = 8192;
const WARM_UP = 10;
const BANK = 'bank_long';
const PROVIDER = 'tax_long';
const FIELDS = ['lj_a', 'lj_b', 'lj_c'];
const WEIGHTS = ['0.5', '-1.25', '2'];

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

let home: string;
let sh: Safehouse;
const rows: string[] = [];
const values: number[][] = [];

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'safehouse-long-'));
  sh = await Safehouse.open({ home, create: true, poolSize: 2 });
  await sh.addParty('bank', BANK);
  await sh.addParty('provider', PROVIDER);
  const rnd = mulberry32(50);
  const seen = new Set<string>();
  const lines = ['uscc,' + FIELDS.join(',')];
  while (rows.length < BLOCKS * SLOTS) {
    const u = randomUscc(rnd);
    if (seen.has(u)) continue;
    seen.add(u);
    const v = FIELDS.map(() => Math.floor(rnd() * 1001));
    rows.push(u);
    values.push(v);
    lines.push(`${u},${v.join(',')}`);
  }
  const schema = {
    category: 'tax',
    fields: FIELDS.map((name) => ({
      name,
      label: name,
      type: 'int',
      decimals: 0,
      min: '0',
      max: '1000',
      class: 'MODEL_ONLY',
    })),
  };
  const up = await sh.ingest(PROVIDER, schema, lines.join('\n') + '\n');
  expect(up.blocks).toBe(BLOCKS);
  sh.registerModel(BANK, {
    id: 'long-linear',
    kind: 'linear',
    intercept: '1',
    terms: FIELDS.map((field, i) => ({ provider: PROVIDER, field, weight: WEIGHTS[i]! })),
  });
  await sh.approveModel(PROVIDER, 'long-linear');
}, 600_000);

afterAll(async () => {
  await sh?.close();
  rmSync(home, { recursive: true, force: true });
});

describe('long job: 50 blocks', () => {
  it('WASM memory flat and RSS bounded after warm-up; scores equal plaintext', async () => {
    // One subject per block, at a different slot in each.
    const picked = Array.from({ length: BLOCKS }, (_, b) => b * SLOTS + ((b * 163) % SLOTS));
    const subjects = picked.map((i) => rows[i]!);
    sh.grantConsents(
      subjects.map((u) => ({
        subject: u,
        bank: BANK,
        purpose: 'sme_credit_line',
        categories: ['tax'],
        operations: ['score'],
        days: 30,
      })),
    );
    await sh.warmUp();
    const run = async () => {
      const samples: Array<{ engine: number[]; providers: number[]; rss: number }> = [];
      const job = await sh.score(BANK, 'long-linear', 'sme_credit_line', subjects, (p) => {
        if (p.phase !== 'compute' || p.done === 0) return;
        gc();
        samples.push({ ...sh.workerMemory(), rss: process.memoryUsage.rss() });
      });
      return { ...job, samples };
    };
    const first = await run();
    const { rows: out, result, samples } = await run();
    expect(first.samples).toHaveLength(BLOCKS);
    expect(result.boxes).toHaveLength(BLOCKS);
    expect(samples).toHaveLength(BLOCKS);
    // Scores equal the plaintext linear model (weights at scale 10^6).
    const w = WEIGHTS.map((x) => BigInt(Math.round(Number(x) * 1e6)));
    out.forEach((r, k) => {
      const v = values[picked[k]!]!;
      const want = 1_000_000n + v.reduce((acc, x, f) => acc + w[f]! * BigInt(x), 0n);
      expect(r).toEqual({ uscc: subjects[k], status: 'OK', score: formatFixed(want, result.scale) });
    });
    const warm = first.samples[WARM_UP - 1]!;
    const last = samples.at(-1)!;
    const total = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    // Every worker that ran a task reported its memory; after warm-up no worker's WASM memory grew.
    expect(warm.engine.length).toBeGreaterThan(0);
    expect(warm.providers.length).toBeGreaterThan(0);
    for (const s of [...first.samples.slice(WARM_UP), ...samples]) {
      expect(total(s.engine)).toBe(total(warm.engine));
      expect(total(s.providers)).toBe(total(warm.providers));
    }
    // RSS over the second job: one leaked ciphertext (~430 KB) per block would add ≥ 21 MiB.
    const rss = samples.map((s) => s.rss);
    expect(Math.max(...rss) - rss[0]!).toBeLessThan(16 * 2 ** 20);
    const mib = (b: number) => (b / 2 ** 20).toFixed(0);
    console.log(
      `long job: WASM per worker after block ${WARM_UP}: engine ${warm.engine.map(mib)} MiB, providers ${warm.providers.map(mib)} MiB, unchanged through block ${2 * BLOCKS}; RSS job 1 ${mib(first.samples[0]!.rss)} → ${mib(first.samples.at(-1)!.rss)} MiB, job 2 ${mib(rss[0]!)} → max ${mib(Math.max(...rss))} MiB`,
    );
  }, 600_000);
});
