/**
 * Joint training, the auditor's replay (docs/protocols.md "Auditor replay"): request and escrow, the cohort size, then
 * every iteration after decryption — the custodian's signed masked group sums (kept as blobs) minus the masks derived
 * from the escrowed seed give the gradient sums, which must hash as ledgered (`train.iteration`), and the fixed-point
 * update gives the next model; the last one must be the delivered model (`job.completed` modelHash). Also: every block
 * of the bank's labels passed the key holder's 0/1 check before any sum (`labels`), and each iteration's declared
 * residual bound and the custodian's noise σ are the ones the recomputed model and the job's (ε, δ) give. The products'
 * ciphertexts are not replayed bit for bit: their re-randomizers (iterations × columns × blocks encryptions of zero,
 * ≈ 0.4 MB each) are not kept; nor are domain-transfer ciphertexts.
 */
import { canonicalize } from '../../../core/jcs.ts';
import { sha256Hex } from '../../../core/hash.ts';
import { centered } from '../../../core/fixed.ts';
import { verifyJson, type Signed } from '../../../core/sign.ts';
import type { SealedBox } from '../../../core/sealbox.ts';
import { maxAbsD, sumGroupSize, trainOptions, updateModel, type FixedModel } from '../../../models/train.ts';
import { STD_CLIP, type BinSpec } from '../../../models/features.ts';
import { deriveMaskKey } from '../../he/mask.ts';
import { cohortMaskVector } from './engine.ts';
import { blobOrMissing, checkRequestAndEscrow, type ReplayContext, type StepStatus } from '../../audit/steps.ts';
import {
  columnBitsOf,
  iterationSigma,
  parseIterationLabel,
  parseLabelCheckLabel,
  type TrainRequest,
} from './messages.ts';

/** What a training job keeps for replay. */
export interface StoredTrain {
  signed: Signed<TrainRequest>;
  escrow?: Array<{ auditor: string; sealed: SealedBox }>;
  bins?: BinSpec[];
  cohort?: number;
  /** The cohort's slots in the key holder's layout, per block (masks cover these only). */
  cohortSlots?: Record<string, number[]>;
  /** The (ε, δ) the key holder's custodian said its noise gives. */
  privacy?: { epsilon: number; delta: number };
}

export async function replayTrain(ctx: ReplayContext<StoredTrain>): Promise<void> {
  const { engine, stored, events, requested, add } = ctx;
  const seed = checkRequestAndEscrow(ctx);
  if (!seed || !stored.bins || stored.cohort === undefined) {
    add('iterations', 'missing', 'no seed or stored bins to replay with');
    return;
  }
  // The cohort is ledgered once the custodians answered (`train.planned`; in the request entry before that existed).
  const ledgered = events.find((e) => e.kind === 'train.planned')?.body.cohort ?? requested.body.cohort;
  if (stored.cohort !== ledgered)
    add('cohort', 'mismatch', `stored cohort ${stored.cohort}, ledgered ${String(ledgered)}`);
  else add('cohort', 'match');
  const req = stored.signed.body;
  const o = trainOptions(req.options);
  const t = engine.params.t;
  const cb = columnBitsOf({ features: req.features ?? 'binned' });
  const colMax = cb ? BigInt(STD_CLIP) : 1n;
  const nCols = stored.bins.reduce((a, b) => a + b.bins.length, 0);
  const groups: number[][] = [];
  let next = 0;
  for (const b of stored.bins) groups.push(b.bins.map(() => next++));
  const provider = engine.registry.party(req.provider);
  const responses = new Map(
    events.filter((e) => e.kind === 'custodian.response').map((e) => [String(e.body.label), e]),
  );
  const cohortMasks = new Map<number, BigUint64Array>();
  for (const [b, slots] of Object.entries(stored.cohortSlots ?? {})) {
    const v = new BigUint64Array(engine.params.slots);
    for (const i of slots) v[i] = 1n;
    cohortMasks.set(Number(b), v);
  }
  // labels: every block of the cohort was shown 0/1 by the key holder before any sum.
  const checks = [...responses].filter(([label]) => parseLabelCheckLabel(label));
  const checked = new Set(checks.filter(([, r]) => r.body.zero === true).map(([l]) => parseLabelCheckLabel(l)!.block));
  const missing = [...cohortMasks.keys()].filter((b) => !checked.has(b));
  if (missing.length) add('labels', 'mismatch', `label block(s) ${missing.join(', ')} were not shown to be 0/1`);
  else add('labels', 'match');
  const fields = [req.fields, ...(req.others ?? []).map((x) => x.fields)].reduce((a, f) => a + f.length, 0);
  let model: FixedModel = { W0: 0n, W: new Array<bigint>(nCols).fill(0n) };
  const iterations = events.filter((e) => e.kind === 'train.iteration');
  for (const ev of iterations) {
    const it = Number(ev.body.iteration);
    const step = `iteration ${it}`;
    const bound = maxAbsD(model, groups, o.scaleBits, cb, colMax);
    const sigma = stored.privacy
      ? iterationSigma({
          bound,
          features: req.features ?? 'binned',
          fields,
          iterations: o.iterations,
          ...stored.privacy,
        })
      : 0;
    const margin = 2n * BigInt(Math.ceil(12 * sigma) + 1);
    const g = sumGroupSize(bound * colMax, t - margin, engine.params.slots);
    if (g !== ev.body.groupSize) {
      add(step, 'mismatch', `group size ${g} recomputed, ${String(ev.body.groupSize)} used`);
      break;
    }
    if (String(ev.body.bound) !== bound.toString()) {
      add(step, 'mismatch', `residual bound ${bound} recomputed, ${String(ev.body.bound)} declared to the custodian`);
      break;
    }
    const used = (ev.body.sigma ?? []) as number[];
    if (used.length !== 1 || Math.abs(used[0]! - sigma) > 1e-9 * Math.max(1, sigma)) {
      add(
        step,
        'mismatch',
        `noise σ ${sigma} expected from (ε, δ) and the bound, the custodian added ${used.join(', ')}`,
      );
      break;
    }
    let G0 = 0n;
    const G = new Array<bigint>(nCols).fill(0n);
    let problem: [StepStatus, string] | undefined;
    for (const [label, r] of responses) {
      const m = parseIterationLabel(label);
      if (!m || m.iteration !== it) continue;
      const bytes = blobOrMissing(engine, r.body.responseHash);
      if (bytes === 'missing' || bytes === 'corrupt') {
        problem =
          bytes === 'missing'
            ? ['missing', `the custodian's sums for ${label} are not stored`]
            : ['mismatch', `the stored sums for ${label} do not hash as ledgered`];
        break;
      }
      const response = JSON.parse(new TextDecoder().decode(bytes)) as Signed<{
        type: string;
        label: string;
        sums?: string[];
      }>;
      if (
        !provider ||
        !verifyJson(response, provider.ed25519) ||
        response.body.label !== label ||
        !response.body.sums
      ) {
        problem = ['mismatch', `the stored sums for ${label} are not the custodian's signed answer`];
        break;
      }
      const mask = cohortMaskVector(
        deriveMaskKey(seed, label),
        t,
        cohortMasks.get(m.block) ?? new BigUint64Array(engine.params.slots),
      );
      let total = 0n;
      response.body.sums.forEach((sv, j) => {
        let ms = 0n;
        for (let i = j * g; i < (j + 1) * g; i++) ms += mask[i]!;
        total += centered(BigInt(sv) - ms, t);
      });
      if (m.column === undefined) G0 += total;
      else G[m.column]! += total;
    }
    if (problem) {
      add(step, problem[0], problem[1]);
      break;
    }
    if (sha256Hex(canonicalize({ G0: G0.toString(), G: G.map(String) })) !== ev.body.gradientsHash) {
      add(step, 'mismatch', 'the gradient sums differ from the ledgered ones');
      break;
    }
    const upd = updateModel(model, { G0, G }, stored.cohort, it, o, cb);
    model = upd.model;
    add(step, 'match');
  }
  const completed = events.find((e) => e.kind === 'job.completed');
  const modelHash = sha256Hex(
    canonicalize({ W0: model.W0.toString(), W: model.W.map(String), scaleBits: o.scaleBits, bins: stored.bins }),
  );
  if (!completed) add('model', 'missing', 'the job did not complete');
  else if (ctx.steps().some((x) => x.step.startsWith('iteration') && x.status !== 'match'))
    add('model', 'missing', 'an iteration could not be replayed');
  else
    add(
      'model',
      modelHash === completed.body.modelHash ? 'match' : 'mismatch',
      modelHash === completed.body.modelHash ? undefined : 'the replayed model is not the delivered one',
    );
}
