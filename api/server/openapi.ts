/**
 * `GET /docs`: the OpenAPI 3.0 document, built from the routes as `route()` recorded them (api/server/route.ts), with
 * the same typebox schemas that validate requests (docs/design.md §9).
 */
import type { FastifyInstance } from 'fastify';
import type { TSchema } from '@sinclair/typebox';
import { ErrorBody } from './schemas.ts';
import type { RouteDoc } from './route.ts';

/** OpenAPI 3.0 from the registered routes' schemas. */
export function openApi(routes: readonly RouteDoc[]): unknown {
  const paths: Record<string, Record<string, unknown>> = {};
  const strip = (x: unknown) => JSON.parse(JSON.stringify(x)) as Record<string, unknown>;
  for (const r of routes) {
    const path = r.url.replace(/:([A-Za-z]+)/g, '{$1}');
    const s = r.schema as {
      body?: TSchema;
      params?: TSchema;
      querystring?: TSchema;
      response?: TSchema;
      binary?: boolean;
      status: number;
    };
    const params = [
      ...Object.entries((s.params as { properties?: Record<string, unknown> } | undefined)?.properties ?? {}).map(
        ([name, schema]) => ({ name, in: 'path', required: true, schema: strip(schema) }),
      ),
      ...Object.entries((s.querystring as { properties?: Record<string, unknown> } | undefined)?.properties ?? {}).map(
        ([name, schema]) => ({ name, in: 'query', required: false, schema: strip(schema) }),
      ),
    ];
    (paths[path] ??= {})[r.method.toLowerCase()] = {
      summary: r.summary,
      tags: [r.role.split('|')[0]],
      ...(r.role === 'public' ? { security: [] } : {}),
      ...(params.length ? { parameters: params } : {}),
      ...(s.body
        ? { requestBody: { required: true, content: { 'application/json': { schema: strip(s.body) } } } }
        : s.binary
          ? {
              requestBody: {
                required: true,
                content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } },
              },
            }
          : {}),
      responses: {
        [String(s.status)]: {
          description: 'OK',
          content: { 'application/json': { schema: s.response ? strip(s.response) : { type: 'object' } } },
        },
        '4XX': {
          description: 'Coded error (docs/errors.md)',
          content: { 'application/json': { schema: strip(ErrorBody) } },
        },
      },
    };
  }
  return {
    openapi: '3.0.3',
    info: {
      title: 'Safehouse engine API',
      version: '1',
      description:
        'Every /v1 route except GET /v1/info takes an RFC 9421 HTTP message signature (Ed25519; covered: @method @authority @path @query content-digest; created, nonce, keyid = party id). Errors: { code, message, details } from docs/errors.md.',
    },
    components: { securitySchemes: { httpsig: { type: 'apiKey', in: 'header', name: 'Signature' } } },
    security: [{ httpsig: [] }],
    paths,
  };
}

/** Serves the document; `/docs` itself is public and not in it. */
export function docsRoute(app: FastifyInstance, routes: readonly RouteDoc[]): void {
  app.get('/docs', { config: { role: 'public' } }, async () => openApi(routes));
}
