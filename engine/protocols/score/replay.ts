/**
 * Scoring, the auditor's replay (docs/protocols.md "Auditor replay"):
 *  - `request`, `escrow`: the bank's signature over the stored request and its hash equal to the ledgered `jobHash`;
 *    the auditor's sealed seed opens and hashes as ledgered;
 *  - `model`: the registered model recompiles to the hash the request pinned, approved by every provider it uses;
 *  - `consent`: each subject's consent status re-derived as of `requestedAt` from the signed consents and
 *    revocations; the hash of the consent ids used equals the ledgered one;
 *  - `block <label>`: Σ w·x over the stored columns + the mask from the seed + the logged re-randomizer, switched
 *    down — the bytes must hash to the ciphertext the custodian was sent;
 *  - `result`: the stored result hashes as ledgered, its statuses (with the custodians' ledgered refusals) and unmask values U equal the recomputation (masks
 *    from the seed, offsets from the model), and its sealed boxes are the custodians' ledgered answers.
 */
import { canonicalize } from '../../../core/jcs.ts';
import { sha256Hex } from '../../../core/hash.ts';
import { toSlot } from '../../../core/fixed.ts';
import type { Signed } from '../../../core/sign.ts';
import type { SealedBox } from '../../../core/sealbox.ts';
import { compileModel, type CompiledModel } from '../../../models/model.ts';
import { deriveMaskKey, maskVector } from '../../he/mask.ts';
import {
  blobOrMissing,
  checkRequestAndEscrow,
  failedDetail,
  type ReplayContext,
  type StepStatus,
} from '../../audit/steps.ts';
import { evalBlock, scoreStatuses } from './engine.ts';
import { parseScoreLabel, type ScoreRequest, type ScoreResult } from './messages.ts';

/** What a scoring job keeps for replay. */
export interface StoredScore {
  signed: Signed<ScoreRequest>;
  escrow?: Array<{ auditor: string; sealed: SealedBox }>;
}

export async function replayScore(ctx: ReplayContext<StoredScore>): Promise<void> {
  const { engine, jobId, stored, events, requested, add } = ctx;
  const req = stored.signed.body;
  const seed = checkRequestAndEscrow(ctx);

  // model
  const m = engine.models.get(req.modelId);
  let model: CompiledModel | undefined;
  if (!m) add('model', 'missing', `model ${req.modelId} is not stored`);
  else {
    model = compileModel(m.spec, engine.datasets.fieldLookup, engine.params.t);
    const approvals = engine.models.approvals(req.modelId);
    const unapproved = [...new Set(model.terms.map((t) => t.provider))].filter((p) => approvals.get(p) !== model!.hash);
    if (model.hash !== req.modelHash)
      add(
        'model',
        'mismatch',
        `the stored model compiles to ${model.hash.slice(0, 12)}…, the request pinned ${req.modelHash.slice(0, 12)}…`,
      );
    else if (unapproved.length) add('model', 'mismatch', `not approved by ${unapproved.join(', ')}`);
    else add('model', 'match');
  }

  // consent (as of the request's time)
  const subjects = req.subjects;
  const blockEvents = events.filter((e) => e.kind === 'custodian.request');
  const datasets = new Map<string, { provider: string; terms: CompiledModel['terms'] }>();
  for (const e of blockEvents) {
    const datasetId = parseScoreLabel(String(e.body.label))?.datasetId ?? '';
    if (model)
      datasets.set(datasetId, {
        provider: String(e.body.provider),
        terms: model.terms.filter((t) => t.provider === e.body.provider),
      });
  }
  // The categories of the datasets the job read; with no block asked (every subject refused), those of the model's.
  const read = [...datasets.keys()].map((id) => engine.datasets.get(id)?.category);
  const modelCategories = (model?.terms ?? []).map((t) => engine.datasets.withField(t.provider, t.field)?.category);
  const categories = [...new Set((read.length ? read : modelCategories).filter((c): c is string => !!c))].sort();
  const consent = engine.consents.statuses(
    { bank: req.bank, purpose: req.purpose, operation: 'score', categories, at: new Date(req.requestedAt) },
    subjects,
    // What the engine knew when it recorded the job: a consent granted later (even out of scope) changes nothing.
    String(requested.body.at),
  );
  const ok = subjects.filter((s) => consent.get(s)?.status === 'OK');
  const groups = [...datasets].map(([datasetId, d]) => ({
    datasetId,
    ...d,
    slots: engine.datasets.subjectSlots(datasetId, ok),
  }));
  const { status, offsets } = model
    ? scoreStatuses(model, groups, subjects, consent)
    : { status: new Map<string, string>(), offsets: new Map<string, bigint>() };
  const consentIds = subjects
    .filter((s) => status.get(s) === 'OK')
    .map((s) => consent.get(s)!.consentId!)
    .sort();
  if (sha256Hex(consentIds.join('\n')) !== requested.body.consentIds)
    add('consent', 'mismatch', 'the consents valid at the request time are not the ones the job used');
  else add('consent', 'match');
  // Subjects a custodian refused are OVER_BUDGET in the result, or the consent status the custodian found itself
  // (the ledger names them and the reasons).
  for (const e of events.filter((e) => e.kind === 'score.custodian_refused')) {
    const reasons = (e.body.reasons ?? {}) as Record<string, string>;
    for (const u of (e.body.refused as string[] | undefined) ?? [])
      if (status.get(u) === 'OK') status.set(u, reasons[u] ?? 'OVER_BUDGET');
  }

  // blocks: recompute the ciphertext each custodian was sent
  const masks = new Map<string, BigUint64Array>();
  for (const e of blockEvents) {
    const label = String(e.body.label);
    const step = `block ${label}`;
    const parsed = parseScoreLabel(label);
    if (!parsed) {
      add(step, 'mismatch', 'the label is not a score block');
      continue;
    }
    const { provider, datasetId, block } = parsed;
    if (!seed || !model) {
      add(step, 'missing', 'no seed or model to replay with');
      continue;
    }
    const maskKey = deriveMaskKey(seed, `${jobId}/${label}`);
    masks.set(`${datasetId}#${block}`, maskVector(maskKey, engine.params.t, engine.params.slots));
    const rerandomizer = blobOrMissing(engine, e.body.rerandomizer);
    if (rerandomizer === 'missing') {
      add(step, 'missing', 're-randomizer blob not stored');
      continue;
    }
    if (rerandomizer === 'corrupt') {
      add(step, 'mismatch', 're-randomizer blob does not hash to its address');
      continue;
    }
    const columns: Array<{ path: string; hash: string; multiplier: string }> = [];
    let problem: StepStatus | undefined;
    for (const term of model.terms.filter((t) => t.provider === provider)) {
      for (const c of term.columns) {
        const blob = engine.datasets.columnBlob(datasetId!, c.column, block);
        const bytes = blobOrMissing(engine, blob);
        if (bytes === 'missing') problem ??= 'missing';
        else if (bytes === 'corrupt') problem = 'mismatch';
        else columns.push({ path: engine.store.blobPath(blob!), hash: blob!, multiplier: c.multiplier.toString() });
      }
    }
    if (problem) {
      add(
        step,
        problem,
        problem === 'missing' ? 'a column blob is not stored' : 'a column blob does not hash to its address',
      );
      continue;
    }
    const pk = engine.registry.party(provider!)?.bfvPublicKeyBlob;
    try {
      const ct = (await engine.pool.run(evalBlock, {
        paramsId: engine.params.id,
        publicKey: { path: engine.store.blobPath(pk!), hash: pk! },
        columns,
        maskKey: maskKey.slice(),
        rerandomizer,
      })) as Uint8Array;
      if (sha256Hex(ct) === e.body.ciphertext) add(step, 'match');
      else add(step, 'mismatch', 'the recomputed ciphertext differs from the one sent to the custodian');
    } catch (err) {
      add(step, 'mismatch', failedDetail(err));
    }
  }

  // result
  const completed = events.find((e) => e.kind === 'job.completed');
  const resultBytes = completed ? blobOrMissing(engine, completed.body.resultHash) : 'missing';
  if (resultBytes === 'missing') add('result', 'missing', 'the result sent to the bank is not stored');
  else if (resultBytes === 'corrupt')
    add('result', 'mismatch', 'the stored result does not hash to the ledgered resultHash');
  else if (!seed || !model) add('result', 'missing', 'no seed or model to replay with');
  else {
    const result = JSON.parse(new TextDecoder().decode(resultBytes)) as ScoreResult;
    const t = engine.params.t;
    const responses = new Map(
      events.filter((e) => e.kind === 'custodian.response').map((e) => [String(e.body.label), String(e.body.sealed)]),
    );
    const bad: string[] = [];
    for (const b of result.boxes)
      if (responses.get(b.label) !== sha256Hex(canonicalize(b.sealed))) bad.push(`box ${b.label}`);
    for (const s of result.subjects) {
      if (status.get(s.uscc) !== s.status) {
        bad.push(`status of ${s.uscc}`);
        continue;
      }
      if (s.status !== 'OK') continue;
      let u = -offsets.get(s.uscc)!;
      for (const g of groups) {
        const sl = g.slots.get(s.uscc);
        if (sl) u += masks.get(`${g.datasetId}#${sl.block}`)?.[sl.slot] ?? 0n;
      }
      if (toSlot(u, t).toString() !== s.unmask) bad.push(`unmask of ${s.uscc}`);
    }
    if (result.subjects.length !== subjects.length) bad.push('subject count');
    if (bad.length) add('result', 'mismatch', `${bad.length} difference(s), first: ${bad[0]}`);
    else add('result', 'match');
  }
}
