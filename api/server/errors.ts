/**
 * The server's error handling: every refusal, whoever raises it (an engine function, the schema validator, fastify's
 * body parser or router), leaves as the one coded body `{ code, message, details }` of core/errors.ts with that
 * code's status (docs/errors.md). Messages of kind `internal` and of anything uncoded (a 5xx) are not returned: they
 * may name files or runtime state, so they go to the log and the caller gets the catalog's summary.
 */
import type { FastifyReply, FastifyRequest, FastifyServerOptions } from 'fastify';
import { SafehouseError, ERRORS, storageFull, type ErrorCode } from '../../core/errors.ts';

/** The router's own refusals (a path parameter over 100 characters, a malformed percent-encoding) are coded too. */
export const frameworkErrors: FastifyServerOptions['frameworkErrors'] = (err, _req, reply) =>
  (reply as unknown as FastifyReply).status(400).send({
    code: 'SH_ERR_INVALID_ARGUMENT',
    message:
      err.code === 'FST_ERR_MAX_PARAM_LENGTH'
        ? 'a path parameter is longer than 100 characters'
        : 'the request URL is malformed',
    details: {},
  });

/** The error handler: coded errors as they are (retry-after on a rate limit), fastify's own mapped onto the catalog. */
export function errorHandler(log: (line: string) => void) {
  return (raw: unknown, req: FastifyRequest, reply: FastifyReply) => {
    // A full disk is the operator's to fix; the request changed nothing (its transaction rolled back).
    const err = storageFull(raw) ?? raw;
    const e = err as Error & { statusCode?: number; code?: string; validation?: unknown[]; validationContext?: string };
    if (err instanceof SafehouseError) {
      if (err.kind === 'internal')
        log(
          `${req.method} ${req.routeOptions.url ?? 'unmatched'}: ${err.code} ${err.message}${err.cause ? ` (${String((err.cause as Error).message ?? err.cause)})` : ''}`,
        );
      if (err.code === 'SH_ERR_RATE_LIMITED')
        void reply.header('retry-after', String(err.details.retryAfterSeconds ?? 1));
      (reply as unknown as { shCode?: string }).shCode = err.code; // the request log names the code, not the message
      return reply.status(err.status).send(err.toPublic());
    }
    const pub = (code: ErrorCode, message: string, details: Record<string, string | number | boolean> = {}) => {
      (reply as unknown as { shCode?: string }).shCode = code;
      return reply.status(ERRORS[code].status).send({ code, message, details });
    };
    if (e.validation)
      return pub(
        'SH_ERR_INVALID_ARGUMENT',
        `request ${e.validationContext ?? ''} ${e.message}`.replace(/\s+/g, ' ').trim(),
        { where: e.validationContext ?? '' },
      );
    if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || e.statusCode === 413)
      return pub('SH_ERR_BODY_TOO_LARGE', 'request body too large');
    if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' || e.statusCode === 415)
      return pub(
        'SH_ERR_UNSUPPORTED_MEDIA_TYPE',
        `content type ${JSON.stringify(req.headers['content-type'] ?? '')} is not accepted here`,
      );
    if (e.statusCode === 503) return pub('SH_ERR_UNAVAILABLE', 'the server is shutting down');
    if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500)
      return pub('SH_ERR_INVALID_ARGUMENT', `malformed request: ${e.message}`.slice(0, 300));
    log(`${req.method} ${req.routeOptions.url ?? 'unmatched'}: uncoded ${e.stack ?? e.message}`);
    return pub('SH_ERR_INTERNAL', ERRORS.SH_ERR_INTERNAL.summary);
  };
}

/** An unknown route is a coded 404 naming the method and path. */
export function notFound(req: FastifyRequest, reply: FastifyReply) {
  return reply
    .status(404)
    .send({ code: 'SH_ERR_NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}`, details: {} });
}
