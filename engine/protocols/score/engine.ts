/**
 * Scoring, the engine's steps (docs/protocols.md "Scoring"): pin the approved model, group its terms by provider
 * dataset, judge every subject (consent first, then data), evaluate each touched block under the provider's key with
 * a mask from the job seed and have the custodian seal v + m to the bank, then build the result — unmask values U_s
 * only for subjects whose status is OK. The engine never sees a decrypted value; `run.ts` puts these steps in order.
 */
import { fail } from '../../../core/errors.ts';
import { sha256Hex } from '../../../core/hash.ts';
import { canonicalize } from '../../../core/jcs.ts';
import { toSlot } from '../../../core/fixed.ts';
import { bytesToHex, type Signed } from '../../../core/sign.ts';
import type { ConsentStatus } from '../../../sandbox/consent.ts';
import type { CompiledModel, CompiledTerm } from '../../../models/model.ts';
import { deriveMaskKey, maskVector } from '../../he/mask.ts';
import { kernelRef } from '../../pool/kernel.ts';
import type { Engine } from '../../engine.ts';
import type { DatasetRecord, SubjectSlot } from '../../datasets.ts';
import type { PartyRecord } from '../../registry.ts';
import type { DecryptRequest, DecryptResponse } from '../../custodian/messages.ts';
import { askCustodian } from '../ask.ts';
import type * as Kernels from './kernels.ts';
import { scoreLabel, type ScoreBox, type ScoreRequest, type ScoreResult, type ScoreStatus } from './messages.ts';

export const evalBlock = kernelRef<typeof Kernels.evalBlock>(new URL('./kernels.ts', import.meta.url), 'evalBlock');

/** The model a request pins: registered, the bank's own, the same hash, approved by every provider it uses. */
export function pinnedModel(engine: Engine, req: ScoreRequest, bank: string): CompiledModel {
  const registered = engine.models.get(req.modelId);
  if (!registered)
    fail('SH_ERR_NOT_FOUND', `no model ${JSON.stringify(req.modelId)} is registered`, { model: req.modelId });
  if (registered.bank !== bank)
    fail('SH_ERR_PARTY_ROLE', `model ${req.modelId} belongs to ${registered.bank}, not ${bank}`);
  if (registered.hash !== req.modelHash)
    fail(
      'SH_ERR_PARAMS_MISMATCH',
      `request pins model hash ${req.modelHash.slice(0, 12)}…, registered is ${registered.hash.slice(0, 12)}…`,
    );
  const model = engine.models.compiled(req.modelId);
  const approvals = engine.models.approvals(req.modelId);
  for (const p of new Set(model.terms.map((t) => t.provider))) {
    if (approvals.get(p) !== model.hash)
      fail('SH_ERR_MODEL_NOT_APPROVED', `model ${req.modelId} is not approved by provider ${p}`, { provider: p });
  }
  return model;
}

/** A model's terms over one provider dataset, and the slots of the job's subjects in it. */
export interface Group {
  provider: string;
  dataset: DatasetRecord;
  terms: CompiledTerm[];
  slots: Map<string, SubjectSlot>;
}

/** The model's terms grouped by the current dataset holding each field, in term order. */
export function modelGroups(engine: Engine, model: CompiledModel): Group[] {
  const groups = new Map<string, Group>();
  for (const term of model.terms) {
    const ds = engine.datasets.withField(term.provider, term.field)!;
    const g: Group = groups.get(ds.id) ?? { provider: term.provider, dataset: ds, terms: [], slots: new Map() };
    g.terms.push(term);
    groups.set(ds.id, g);
  }
  return [...groups.values()];
}

/**
 * Each requested subject's status (consent first, then data: a term whose field is missing contributes its
 * `missingOffset`, or makes the subject NO_DATA) and, for scorable subjects, the plaintext part of its score (intercept
 * and missing-value offsets). Shared by the job and its replay. `groups[].slots` must hold the consented subjects.
 */
export function scoreStatuses(
  model: CompiledModel,
  groups: ReadonlyArray<{ terms: CompiledTerm[]; slots: Map<string, SubjectSlot> }>,
  subjects: readonly string[],
  consent: ReadonlyMap<string, { status: ConsentStatus }>,
): { status: Map<string, ScoreStatus>; offsets: Map<string, bigint> } {
  const status = new Map<string, ScoreStatus>(subjects.map((s) => [s, consent.get(s)!.status]));
  const offsets = new Map<string, bigint>();
  for (const s of subjects) {
    if (status.get(s) !== 'OK') continue;
    let offset = model.intercept;
    let available = true;
    for (const g of groups) {
      const slot = g.slots.get(s);
      if (slot && slot.missing.size === 0) continue; // every term of the group has its value (the common case)
      for (const term of g.terms) {
        if (slot && !slot.missing.has(term.field)) continue;
        if (term.missingOffset === undefined) available = false;
        else offset += term.missingOffset;
      }
    }
    if (available) offsets.set(s, offset);
    else status.set(s, 'NO_DATA');
  }
  return { status, offsets };
}

/** The blocks a job touches: per group, every block holding a scored subject, in order. */
export function touchedBlocks(groups: readonly Group[], scored: readonly string[]): Array<{ g: Group; block: number }> {
  const work: Array<{ g: Group; block: number }> = [];
  for (const g of groups) {
    const blocks = new Set<number>();
    for (const s of scored) {
      const sl = g.slots.get(s);
      if (sl) blocks.add(sl.block);
    }
    for (const b of [...blocks].sort((x, y) => x - y)) work.push({ g, block: b });
  }
  return work;
}

export interface Evaluated {
  boxes: ScoreBox[];
  boxIndex: Map<string, number>;
  masks: Map<string, BigUint64Array>;
}

/**
 * Every touched block through the pool and its custodian: Enc(Σ w·x) + m (mask key from the seed and the label), a
 * logged re-randomizer, the custodian's signed `seal` answer — v + m sealed to the bank — and its ledger pair.
 */
export async function evaluateBlocks(
  engine: Engine,
  job: { jobId: string; jobHash: string; bank: PartyRecord; seed: Uint8Array },
  work: ReadonlyArray<{ g: Group; block: number }>,
  onBlock: () => void,
): Promise<Evaluated> {
  const out: Evaluated = { boxes: [], boxIndex: new Map(), masks: new Map() };
  const t = engine.params.t;
  const runBlock = async ({ g, block }: { g: Group; block: number }, i: number) => {
    const label = scoreLabel(g.provider, g.dataset.id, block);
    const maskKey = deriveMaskKey(job.seed, `${job.jobId}/${label}`);
    const columns = g.terms.flatMap((term) =>
      term.columns.map((c) => {
        const blob = engine.datasets.columnBlob(g.dataset.id, c.column, block);
        if (!blob)
          fail(
            'SH_ERR_MODEL_STALE',
            `provider ${g.provider} has no column ${c.column} for block ${block} of dataset ${g.dataset.id} (re-approve the model after re-ingesting)`,
            { provider: g.provider },
          );
        return { path: engine.store.blobPath(blob), hash: blob, multiplier: c.multiplier.toString() };
      }),
    );
    const pk = engine.registry.requireParty(g.provider, 'provider').bfvPublicKeyBlob!;
    const res = (await engine.pool.run(evalBlock, {
      paramsId: engine.params.id,
      publicKey: { path: engine.store.blobPath(pk), hash: pk },
      columns,
      maskKey: maskKey.slice(),
    })) as { ciphertext: Uint8Array; rerandomizer: Uint8Array };
    const ct = res.ciphertext;
    // The fresh encryption of zero is kept so an auditor can replay this block bit for bit.
    const rerandomizer = engine.jobs.putJobBlob(job.jobId, res.rerandomizer);
    const request: DecryptRequest = {
      type: 'safehouse.custodian.decrypt.v1',
      paramsId: engine.params.id,
      provider: g.provider,
      jobId: job.jobId,
      jobHash: job.jobHash,
      label,
      mode: 'seal',
      ciphertext: sha256Hex(ct),
      rerandomizer,
      recipient: { party: job.bank.id, x25519: bytesToHex(job.bank.x25519!) },
      // The key holder checks v against its own records before it seals v + m (engine/protocols/score/custodian.ts).
      maskKey: bytesToHex(maskKey),
    };
    const response = await askCustodian<DecryptRequest, Signed<DecryptResponse>>(engine, {
      provider: g.provider,
      body: request,
      send: (c, signed) => c.decrypt(signed as Signed<DecryptRequest>, ct),
      response: (r) => r,
      complete: (r) => !!r.body.sealed,
      requestEvent: { mode: 'seal', ciphertext: request.ciphertext, rerandomizer },
      discard: () => engine.store.dropBlob(rerandomizer),
      responseEvent: (r) => ({
        responseHash: sha256Hex(canonicalize(r)),
        sealed: sha256Hex(canonicalize(r.body.sealed)),
      }),
    });
    out.masks.set(`${g.dataset.id}#${block}`, maskVector(maskKey, t, engine.params.slots));
    out.boxes[i] = { provider: g.provider, datasetId: g.dataset.id, block, label, sealed: response.body.sealed! };
    out.boxIndex.set(`${g.dataset.id}#${block}`, i);
    onBlock();
  };
  await engine.pool.all(work.map((w, i) => runBlock(w, i)));
  return out;
}

/** Unmask values for OK subjects only; refused subjects get a status and nothing else. */
export function scoreResult(
  engine: Engine,
  job: { jobId: string; jobHash: string; req: ScoreRequest; model: CompiledModel },
  subjects: readonly string[],
  groups: readonly Group[],
  judged: { status: Map<string, ScoreStatus>; offsets: Map<string, bigint> },
  ev: Evaluated,
): ScoreResult {
  const t = engine.params.t;
  const out: ScoreResult['subjects'] = subjects.map((s) => {
    const st = judged.status.get(s)!;
    if (st !== 'OK') return { uscc: s, status: st };
    let u = -judged.offsets.get(s)!;
    const refs: Array<[number, number]> = [];
    for (const g of groups) {
      const sl = g.slots.get(s);
      if (!sl) continue;
      const key = `${g.dataset.id}#${sl.block}`;
      u += ev.masks.get(key)![sl.slot]!;
      refs.push([ev.boxIndex.get(key)!, sl.slot]);
    }
    return { uscc: s, status: 'OK', refs, unmask: toSlot(u, t).toString() };
  });
  return {
    type: 'safehouse.score.result.v1',
    jobId: job.jobId,
    jobHash: job.jobHash,
    modelId: job.req.modelId,
    paramsId: engine.params.id,
    t: t.toString(),
    scale: job.model.scale,
    boxes: ev.boxes,
    subjects: out,
  };
}
