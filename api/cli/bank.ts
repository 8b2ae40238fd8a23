/**
 * The bank's commands `model register`, `score` and `verify` (training and hold-out evaluation are in train.ts).
 * Results are opened with the bank's own X25519 key and written to `--out`; a one-line summary says what the
 * statuses in the file mean, since a refused subject's row has a status and no score.
 */
import { toCsv } from '../../core/csv.ts';
import { parseModel } from '../../models/model.ts';
import { registerModel, score, verify } from '../client/index.ts';
import { checkOutputs, client, counts, progress, withSafehouse, writeOutput, type Handler } from './context.ts';
import { claimsFile, inFile, locateClaim, readJson, subjectList } from './inputs.ts';

export const HANDLERS: Record<string, Handler> = {
  async 'model register'({ args, out }) {
    const file = args.string('file');
    const json = readJson(file, 'file');
    inFile(file, () => parseModel(json));
    const m =
      args.mode === 'client'
        ? await registerModel(client(args), json)
        : await withSafehouse(args, async (sh) => {
            const c = sh.registerModel(args.string('bank'), json);
            return { id: c.spec.id, hash: c.hash, scale: c.scale, bound: String(c.bound) };
          });
    out(`registered model ${m.id} hash ${m.hash} (scale 10^${m.scale}, |score·10^${m.scale}| ≤ ${m.bound})`);
    return 0;
  },

  async score({ args, out }) {
    const outFile = args.string('out');
    const subjects = subjectList(args.string('subjects'), 'subjects');
    checkOutputs(args, [outFile]);
    const [model, purpose] = [args.string('model'), args.string('purpose')];
    const bar = progress('scoring blocks');
    const onProgress = (p: { phase: string; done: number; total: number }) => {
      if (p.phase === 'compute') bar(p.done, p.total);
    };
    const { jobId, rows } =
      args.mode === 'client'
        ? await score(client(args), model, purpose, subjects, onProgress)
        : await withSafehouse(args, (sh) => sh.score(args.string('bank'), model, purpose, subjects, onProgress));
    writeOutput(
      outFile,
      toCsv(
        ['uscc', 'status', 'score'],
        rows.map((r) => [r.uscc, r.status, r.score]),
      ),
    );
    const ok = rows.filter((r) => r.status === 'OK').length;
    out(
      `job ${jobId}: ${ok} scored, ${rows.length - ok} not scored → ${outFile} (status ${counts(rows.map((r) => r.status))}; only OK rows have a score: a refused subject, or one without the data the model needs, has an empty score)`,
    );
    return 0;
  },

  async verify({ args, out }) {
    const outFile = args.string('out');
    const claimsPath = args.string('claims');
    const { claims, lines } = claimsFile(claimsPath);
    checkOutputs(args, [outFile]);
    const purpose = args.string('purpose');
    const bars = new Map<string, (done: number, total: number) => void>();
    const onProgress = (p: { phase: string; done: number; total: number }) => {
      if (p.phase === 'check' || p.phase === 'done') return;
      if (!bars.has(p.phase)) bars.set(p.phase, progress(`verify ${p.phase}`));
      bars.get(p.phase)!(p.done, p.total);
    };
    let r: { jobId: string; results: Map<string, string> };
    try {
      r = await (args.mode === 'client'
        ? verify(client(args), purpose, claims, onProgress)
        : withSafehouse(args, (sh) => sh.verify(args.string('bank'), purpose, claims, onProgress)));
    } catch (err) {
      throw locateClaim(err, claimsPath, claims, lines);
    }
    const answers = claims.map((c) => r.results.get(c.claimId) ?? '');
    writeOutput(
      outFile,
      toCsv(
        ['claim_id', 'result'],
        claims.map((c, i) => [c.claimId, answers[i]!]),
      ),
    );
    out(
      `job ${r.jobId}: ${claims.length} claims → ${outFile} (${counts(answers)}; refused:<status> is the subject's consent status, over_budget a spent verification budget)`,
    );
    return 0;
  },
};
