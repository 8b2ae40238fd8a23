/**
 * The bank's joint training (联合建模) and hold-out evaluation. Both modes split the labels 70/30 (stratified,
 * seeded), train on the 70 % and write the model and the hold-out subjects beside it. Embedded mode then plays the
 * providers too — registers the model, approves it as each of them, scores and prints hold-out AUC and KS
 * (api/train-run.ts). In client mode the bank cannot approve for the providers, so training stops at the model and
 * prints the next commands; `safehouse evaluate`, once they have approved, scores the hold-out subjects through the
 * normal scoring protocol and prints the same metrics in the same form.
 */
import { basename } from 'node:path';
import { SafehouseError } from '../../core/errors.ts';
import { toCsv } from '../../core/csv.ts';
import { toScorecard, toLinear } from '../../models/export.ts';
import { trainOptions } from '../../models/train.ts';
import { trainTestSplit } from '../../models/german.ts';
import { runTrain, runEvaluate, type ScoreScale } from '../train-run.ts';
import { evaluate, train } from '../client/index.ts';
import { checkOutputs, client, counts, progress, withSafehouse, writeOutput, type Handler } from './context.ts';
import { holdoutFile, labelsFile, trainFields } from './inputs.ts';
import type { Args } from './parse.ts';

/** The hold-out list beside the model: `model.json` → `model.holdout.txt`. */
export function holdoutPathOf(out: string): string {
  return `${out.replace(/\.json$/i, '')}.holdout.txt`;
}

/** A shell word for the next-command lines (quoted when it has characters a shell would read). */
function sh(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

function excludedCounts(excluded: Record<string, string>): Record<string, number> {
  const m: Record<string, number> = {};
  for (const st of Object.values(excluded)) m[st] = (m[st] ?? 0) + 1;
  return m;
}

function trainRequest(args: Args) {
  const features = args.string('features') as 'binned' | 'standardized';
  const pdo = args.optNumber('pdo');
  if (pdo !== undefined && features === 'standardized')
    throw new SafehouseError(
      'SH_ERR_INVALID_ARGUMENT',
      '--pdo makes scorecard points; it applies to --features binned, not to a linear model (standardized)',
      { option: 'pdo' },
    );
  const outFile = args.string('out');
  return {
    outFile,
    holdoutPath: holdoutPathOf(outFile),
    labelsPath: args.string('labels'),
    labels: labelsFile(args.string('labels')),
    ...trainFields(args.list('providers'), args.list('fields')),
    purpose: args.string('purpose'),
    modelId: args.optString('model-id') ?? basename(outFile).replace(/\.json$/i, ''),
    features,
    scaling:
      pdo === undefined ? undefined : { pdo, baseScore: args.number('base-score'), baseOdds: args.number('base-odds') },
    iterations: args.number('iterations'),
    bins: args.number('bins'),
    seed: args.number('seed'),
  };
}

export const HANDLERS: Record<string, Handler> = {
  async train({ args, out }) {
    const q = trainRequest(args);
    checkOutputs(args, [q.outFile, q.holdoutPath]);
    const bar = progress('training');
    const json = args.flag('json');
    const t0 = performance.now();
    if (args.mode === 'embedded') {
      const r = await withSafehouse(args, (sh) => {
        // Embedded training registers the model: an id in use would fail only after the job, so it is refused first.
        if (sh.engine.models.get(q.modelId))
          throw new SafehouseError(
            'SH_ERR_ALREADY_EXISTS',
            `model ${q.modelId} is already registered; choose another --model-id (or --out file name)`,
            { option: 'model-id', model: q.modelId },
          );
        return runTrain(sh, {
          bank: args.string('bank'),
          provider: q.provider,
          purpose: q.purpose,
          fields: q.fields,
          ...(q.others.length ? { others: q.others } : {}),
          labels: q.labels,
          modelId: q.modelId,
          features: q.features,
          seed: q.seed,
          bins: q.bins,
          options: { iterations: q.iterations },
          ...(q.scaling ? { pdo: q.scaling } : {}),
          onProgress: (p) => bar(p.iteration, p.iterations),
        });
      });
      writeOutput(q.outFile, JSON.stringify(r.model, null, 2) + '\n');
      writeOutput(q.holdoutPath, r.holdout.join('\n') + '\n');
      const summary = {
        iterations: r.iterations,
        trainAuc: r.trainAuc,
        holdoutAuc: r.holdoutAuc,
        plaintextAuc: r.plaintextAuc,
        holdoutKs: r.holdoutKs,
        privacy: r.privacy,
        cohort: r.cohort,
        excluded: r.excluded,
        training: r.training.length,
        holdout: r.holdout.length,
        holdoutFile: q.holdoutPath,
        seconds: r.seconds,
        secondsPerIteration: r.secondsPerIteration,
        jobId: r.jobId,
        model: r.model.id,
      };
      if (json) out(JSON.stringify(summary));
      else {
        out(
          `job ${r.jobId}: ${r.iterations} iterations on ${r.cohort} subjects; hold-out AUC ${r.holdoutAuc.toFixed(4)} (plaintext ${r.plaintextAuc.toFixed(4)}), KS ${r.holdoutKs.toFixed(4)}; (ε, δ) = (${r.privacy.epsilon}, ${r.privacy.delta}) per subject → ${q.outFile}`,
        );
        out(
          `model ${r.model.id} registered and approved; ${r.holdout.length} hold-out subjects → ${q.holdoutPath} (safehouse evaluate recomputes the hold-out metrics from them)`,
        );
      }
      return 0;
    }

    // Client mode: as in embedded mode, a seeded stratified 70/30 split; the model is trained on the 70 %.
    const bank = client(args);
    const { train: trainSet, test } = trainTestSplit([...q.labels.keys()], q.labels, {
      seed: q.seed,
      testFraction: 0.3,
    });
    const outcome = await train(bank, {
      provider: q.provider,
      purpose: q.purpose,
      fields: q.fields,
      ...(q.others.length ? { others: q.others } : {}),
      subjects: trainSet,
      labels: q.labels,
      bins: q.bins,
      features: q.features,
      options: { iterations: q.iterations },
      onProgress: (p) => {
        if (p.phase === 'iterate') bar(p.done, p.total);
      },
    });
    const scaleBits = trainOptions({ iterations: q.iterations }).scaleBits;
    const model =
      q.features === 'standardized'
        ? toLinear(q.modelId, outcome.bins, outcome.model, scaleBits)
        : toScorecard(q.modelId, outcome.bins, outcome.model, scaleBits, q.scaling);
    writeOutput(q.outFile, JSON.stringify(model, null, 2) + '\n');
    writeOutput(q.holdoutPath, test.join('\n') + '\n');
    const S = `--server ${sh(args.string('server'))}`;
    const bankArgs = `${S} --as ${sh(bank.id)} --key ${sh(args.string('key'))}`;
    const next = [
      `safehouse model register ${bankArgs} --file ${sh(q.outFile)}`,
      ...[q.provider, ...q.others.map((o) => o.provider)].map(
        (p) => `safehouse model approve ${S} --as ${sh(p)} --key <${p}'s key directory> --model ${sh(model.id)}`,
      ),
      `safehouse evaluate ${bankArgs} --model ${sh(model.id)} --labels ${sh(q.labelsPath)} --holdout ${sh(q.holdoutPath)} --purpose ${sh(q.purpose)}${q.scaling ? ' --scale points' : ''}`,
    ];
    const excluded = excludedCounts(outcome.excluded);
    const summary = {
      jobId: outcome.jobId,
      model: model.id,
      iterations: outcome.iterations,
      cohort: outcome.cohort,
      excluded,
      training: trainSet.length,
      holdout: test.length,
      holdoutFile: q.holdoutPath,
      seconds: Number(((performance.now() - t0) / 1000).toFixed(3)),
      next,
    };
    if (json) out(JSON.stringify(summary));
    else {
      out(
        `job ${outcome.jobId}: ${outcome.iterations} iterations on ${outcome.cohort} of the ${trainSet.length} training subjects${Object.keys(excluded).length ? ` (excluded: ${counts(Object.values(outcome.excluded))})` : ''} → ${q.outFile}`,
      );
      out(`${test.length} hold-out subjects → ${q.holdoutPath}`);
      out('Hold-out AUC and KS come from scoring, which needs every provider to approve the model first. Next:');
      for (const l of next) out(`  ${l}`);
    }
    return 0;
  },

  async evaluate({ args, out }) {
    const labelsPath = args.string('labels');
    const labels = labelsFile(labelsPath);
    const holdout = holdoutFile(args.string('holdout'), labels, labelsPath);
    const outFile = args.optString('out');
    if (outFile !== undefined) checkOutputs(args, [outFile]);
    const bar = progress('scoring blocks');
    const req = {
      modelId: args.string('model'),
      purpose: args.string('purpose'),
      holdout,
      labels,
      scale: args.string('scale') as ScoreScale,
      onProgress: (p: { phase: string; done: number; total: number }) => {
        if (p.phase === 'compute') bar(p.done, p.total);
      },
    };
    const {
      jobId,
      rows,
      metrics: m,
    } = args.mode === 'client'
      ? await evaluate(client(args), req)
      : await withSafehouse(args, (sh) => runEvaluate(sh, { bank: args.string('bank'), ...req }));
    if (outFile !== undefined)
      writeOutput(
        outFile,
        toCsv(
          ['uscc', 'status', 'score'],
          rows.map((r) => [r.uscc, r.status, r.score]),
        ),
      );
    if (args.flag('json'))
      out(
        JSON.stringify({
          jobId,
          model: req.modelId,
          holdout: holdout.length,
          scored: m.scored,
          notScored: m.notScored,
          holdoutAuc: m.auc,
          holdoutKs: m.ks,
          ...(outFile !== undefined ? { out: outFile } : {}),
        }),
      );
    else {
      out(
        `job ${jobId}: ${m.scored} of ${holdout.length} hold-out subjects scored; hold-out AUC ${m.auc.toFixed(4)}, KS ${m.ks.toFixed(4)}${outFile !== undefined ? ` → ${outFile}` : ''}`,
      );
      const left = Object.entries(m.notScored);
      if (left.length) out(`not scored, so left out of the metrics: ${left.map(([k, n]) => `${k} ${n}`).join(', ')}`);
    }
    return 0;
  },
};
