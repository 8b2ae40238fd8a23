/**
 * The custodian's answers, kept while their job runs (docs/operations.md "Crash safety"). A label of a job is answered
 * once (engine/custodian/custodian.ts `admit`); when the engine crashes after the custodian answered but before it
 * recorded the answer, the resumed job asks `answered(jobHash, label)` and gets the very request and response given
 * the first time — the same bytes, so nothing new is decrypted, noised or evaluated. The answer is written (aside,
 * then renamed) before the journal marks the label answered, so a crash between the two leaves a label that counts as
 * answered and has its answer. The answers of a job are dropped once the ledger shows the job finished.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { canonicalize } from '../../core/jcs.ts';
import { sha256Hex } from '../../core/hash.ts';

/** One answered request: the engine-signed request, the provider-signed response, and any ciphertext returned. */
export interface StoredAnswer {
  request: unknown;
  response: unknown;
  /** Base64 of the ciphertext a transfer returns. */
  ciphertext?: string;
}

export class AnswerStore {
  private readonly dir: string | undefined;
  private readonly memory = new Map<string, StoredAnswer>();

  /** `dir` undefined: answers are kept in memory (a custodian without a journal file, in tests). */
  constructor(dir: string | undefined) {
    this.dir = dir;
  }

  private file(jobHash: string, label: string): string {
    return join(this.dir!, jobHash, `${sha256Hex(label)}.json`);
  }

  put(jobHash: string, label: string, answer: StoredAnswer): void {
    if (!this.dir) {
      this.memory.set(`${jobHash}\u0000${label}`, answer);
      return;
    }
    const file = this.file(jobHash, label);
    mkdirSync(join(this.dir, jobHash), { recursive: true });
    writeFileSync(`${file}.tmp`, canonicalize(answer));
    renameSync(`${file}.tmp`, file);
  }

  has(jobHash: string, label: string): boolean {
    if (!this.dir) return this.memory.has(`${jobHash}\u0000${label}`);
    return typeof label === 'string' && /^[0-9a-f]{64}$/.test(jobHash) && existsSync(this.file(jobHash, label));
  }

  get(jobHash: string, label: string): StoredAnswer | undefined {
    if (!this.dir) return this.memory.get(`${jobHash}\u0000${label}`);
    if (!this.has(jobHash, label)) return undefined;
    try {
      return JSON.parse(readFileSync(this.file(jobHash, label), 'utf8')) as StoredAnswer;
    } catch {
      return undefined;
    }
  }

  /** Forget a finished job's answers. */
  drop(jobHash: string): void {
    if (!this.dir) {
      for (const k of [...this.memory.keys()]) if (k.startsWith(`${jobHash}\u0000`)) this.memory.delete(k);
      return;
    }
    if (/^[0-9a-f]{64}$/.test(jobHash)) rmSync(join(this.dir, jobHash), { recursive: true, force: true });
  }
}
