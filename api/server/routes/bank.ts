/**
 * A bank's routes: registering its models (bank-signed) and reading them back, and its asynchronous jobs — submit a
 * signed score, verify or train request, poll it, send a planned training job its encrypted labels, fetch the result
 * (sealed to the bank where it carries values). The queue itself is api/server/jobs.ts.
 */
import { Type } from '@sinclair/typebox';
import { fail } from '../../../core/errors.ts';
import { requireSignature, type Signed } from '../../../core/sign.ts';
import type { TrainLabels } from '../../../engine/protocols/train/messages.ts';
import { Obj, SignedDoc, JobParams, JobView } from '../schemas.ts';
import type { JobSubmission } from '../jobs.ts';
import type { RouteContext } from '../route.ts';

export function bankRoutes({ engine: e, route, staging, jobs }: RouteContext): void {
  route<{ registration: Signed<never> }>(
    'POST',
    '/v1/bank/models',
    'bank',
    'Register a model (bank-signed)',
    { status: 201, body: Obj({ registration: SignedDoc }) },
    async (req) => {
      if (req.body.registration.signer !== req.party.id)
        fail('SH_ERR_FORBIDDEN', `bank ${req.party.id} may not register ${req.body.registration.signer}'s model`);
      const m = e.models.register(req.body.registration);
      return { id: m.spec.id, hash: m.hash, scale: m.scale, bound: m.bound.toString() };
    },
  );
  route<unknown, { id: string }>(
    'GET',
    '/v1/bank/models/:id',
    'bank',
    "One of the bank's models",
    { params: JobParams },
    async (req) => {
      const m = e.models.get(req.params.id);
      if (!m)
        fail('SH_ERR_NOT_FOUND', `no model ${JSON.stringify(req.params.id)} is registered`, { model: req.params.id });
      if (m.bank !== req.party.id) fail('SH_ERR_FORBIDDEN', `model ${req.params.id} belongs to another bank`);
      return { spec: m.spec, hash: m.hash, approvals: Object.fromEntries(e.models.approvals(req.params.id)) };
    },
  );
  route<JobSubmission>(
    'POST',
    '/v1/bank/jobs',
    'bank',
    'Submit a bank-signed score, verify or train job',
    {
      status: 202,
      body: Obj({
        kind: Type.Union([Type.Literal('score'), Type.Literal('verify'), Type.Literal('train')]),
        request: SignedDoc,
        openings: Type.Optional(
          Type.Record(
            Type.String(),
            Obj({
              values: Type.Array(Type.String({ maxLength: 256 }), { maxItems: 16 }),
              salt: Type.String({ pattern: '^[0-9a-f]{32,64}$' }),
            }),
          ),
        ),
      }),
      response: Obj({ jobId: Type.String(), status: Type.String() }),
    },
    async (req) => jobs.submit(req.party.id, req.body),
  );
  route<unknown, { id: string }>(
    'GET',
    '/v1/bank/jobs/:id',
    'bank',
    'Job status and progress',
    { params: JobParams, response: JobView },
    async (req) => jobs.view(jobs.own(req.params.id, req.party.id), true),
  );
  route<{ labels: Signed<never> }, { id: string }>(
    'POST',
    '/v1/bank/jobs/:id/labels',
    'bank',
    'Encrypted labels for a planned training job (blobs staged first)',
    { status: 202, params: JobParams, body: Obj({ labels: SignedDoc }) },
    async (req) => {
      const job = jobs.own(req.params.id, req.party.id);
      if (job.kind !== 'train' || job.status !== 'awaiting-labels')
        fail('SH_ERR_JOB_NOT_READY', `job ${job.id} is ${job.status}, not a training job awaiting labels`);
      const labels = req.body.labels as unknown as Signed<TrainLabels>;
      requireSignature(
        labels,
        e.registry.requireParty(req.party.id, 'bank').ed25519,
        'safehouse.train.labels.v1',
        `labels from ${req.party.id}`,
      );
      if (labels.signer !== req.party.id || labels.body.jobId !== job.id)
        fail('SH_ERR_PARAMS_MISMATCH', 'labels are for another job or bank');
      const blobs = staging.of(req.party.id);
      for (const b of labels.body.blocks)
        if (!blobs.has(b.blob)) fail('SH_ERR_BLOB_MISSING', `label blob ${b.blob} was not uploaded`);
      jobs.saveInputs(
        job.id,
        labels.body.blocks.map((b) => b.blob),
        blobs,
      );
      staging.clear(req.party.id);
      jobs.queueLabelled(job.id, labels);
      return { jobId: job.id, status: 'queued' };
    },
  );
  route<unknown, { id: string }>(
    'GET',
    '/v1/bank/jobs/:id/result',
    'bank',
    "A finished job's result (sealed to the bank where it carries values)",
    { params: JobParams },
    async (req) => jobs.result(jobs.own(req.params.id, req.party.id)),
  );
}
