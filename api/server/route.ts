/**
 * The one way a route is added: `route()` registers it with fastify (its role in `config.role` for the
 * authentication hook, its schemas for validation) and records it for the OpenAPI document (api/server/openapi.ts),
 * so the document always describes the routes the server has. Handlers return a value: bytes go out as
 * application/octet-stream, anything else as JSON through api/wire.ts (bigints as `{ "$bigint": "…" }`).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TSchema } from '@sinclair/typebox';
import type { Engine } from '../../engine/engine.ts';
import type { PartyRole } from '../../engine/registry.ts';
import { toJson } from '../wire.ts';
import type { Staging } from './staging.ts';
import type { JobQueue } from './jobs.ts';
import type { Custodians } from './custodians.ts';

export interface RouteSchema {
  body?: TSchema;
  params?: TSchema;
  querystring?: TSchema;
  response?: TSchema;
  status?: number;
  binary?: boolean;
}

/** A registered route as the OpenAPI document sees it. */
export interface RouteDoc {
  method: string;
  url: string;
  role: string;
  summary: string;
  schema: Record<string, unknown>;
}

export type Route = <B = unknown, P = Record<string, string>, Q = Record<string, string>>(
  method: 'GET' | 'POST' | 'PUT',
  url: string,
  role: string,
  summary: string,
  schema: RouteSchema,
  handler: (
    req: FastifyRequest & { body: B; params: P; query: Q; party: { id: string; role: PartyRole | 'admin' } },
  ) => Promise<unknown>,
) => void;

/** What every route module is given. */
export interface RouteContext {
  engine: Engine;
  route: Route;
  staging: Staging;
  jobs: JobQueue;
  custodians: Custodians;
}

/** A `route()` bound to one fastify instance, and the list it records into. */
export function router(app: FastifyInstance): { route: Route; routes: readonly RouteDoc[] } {
  const routes: RouteDoc[] = [];
  const route: Route = (method, url, role, summary, schema, handler) => {
    const s: Record<string, unknown> = {};
    if (schema.body) s.body = schema.body;
    if (schema.params) s.params = schema.params;
    if (schema.querystring) s.querystring = schema.querystring;
    routes.push({
      method,
      url,
      role,
      summary,
      schema: {
        ...s,
        ...(schema.response ? { response: schema.response } : {}),
        ...(schema.binary ? { binary: true } : {}),
        status: schema.status ?? 200,
      },
    });
    app.route({
      method,
      url,
      schema: s,
      config: { role },
      handler: async (req, reply) => {
        const out = await handler(req as never);
        if (out instanceof Uint8Array)
          return reply
            .status(schema.status ?? 200)
            .header('content-type', 'application/octet-stream')
            .send(Buffer.from(out));
        return reply
          .status(schema.status ?? 200)
          .header('content-type', 'application/json; charset=utf-8')
          .send(toJson(out));
      },
    });
  };
  return { route, routes };
}
