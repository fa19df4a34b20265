/**
 * One error shape for every function: `{ error: { code, message, details } }`,
 * always with CORS headers so browsers can read the failure.
 */
import { corsHeaders } from "./cors.ts";
import type { ServerTiming } from "./server-timing.ts";
import { describeFieldIssues, type FieldIssue, fieldIssues, type IssueLike } from "./validation.ts";

export class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details?: unknown;
  readonly headers?: Readonly<Record<string, string>>;

  constructor(
    status: number,
    code: string,
    message: string,
    details?: unknown,
    headers?: Record<string, string>,
  ) {
    super(message);
    this.name = "HttpError";
    this.status = status;
    this.code = code;
    this.details = details;
    this.headers = headers;
  }
}

export function unauthorized(message: string): HttpError {
  return new HttpError(401, "unauthorized", message);
}

export function forbidden(message: string): HttpError {
  return new HttpError(403, "forbidden", message);
}

export function methodNotAllowed(allowed: readonly string[]): HttpError {
  return new HttpError(405, "method_not_allowed", "Method not allowed", { allowed }, {
    Allow: allowed.join(", "),
  });
}

export function payloadTooLarge(limitBytes: number): HttpError {
  return new HttpError(413, "payload_too_large", `Request body exceeds ${limitBytes} bytes`, {
    limitBytes,
  });
}

/** The client closed the connection before its request body was read (a client's doing, not ours). */
export function clientClosed(): HttpError {
  return new HttpError(400, "client_closed_request", "The client closed the connection before sending its whole request body");
}

export function unsupportedMediaType(expected: string): HttpError {
  return new HttpError(415, "unsupported_media_type", `Request body must be ${expected}`, {
    expected,
  });
}

/** 400 naming every offending field, in message and details. */
export function validationFailed(issues: readonly FieldIssue[]): HttpError {
  return new HttpError(400, "validation_failed", `Invalid request: ${describeFieldIssues(issues)}`, {
    issues,
  });
}

/** timing: the request's phases so far, sent as Server-Timing with the serialization as "json". */
export function jsonResponse(
  body: unknown,
  status = 200,
  headers: Record<string, string> = {},
  timing?: ServerTiming,
): Response {
  return jsonTextResponse(JSON.stringify(body), status, headers, timing);
}

/** jsonResponse for a body that is JSON text already. */
export function jsonTextResponse(
  text: string,
  status = 200,
  headers: Record<string, string> = {},
  timing?: ServerTiming,
): Response {
  timing?.mark("json");
  return new Response(text, {
    status,
    headers: {
      ...corsHeaders,
      "Content-Type": "application/json; charset=utf-8",
      ...(timing ? { "Server-Timing": timing.header() } : {}),
      ...headers,
    },
  });
}

type ValidationError = Error & { issues: readonly IssueLike[] };

// Duck-typed so that functions which never import zod need not map it.
function isValidationError(err: unknown): err is ValidationError {
  return err instanceof Error && err.name === "ZodError" && "issues" in err && Array.isArray(err.issues);
}

// ---------------------------------------------------------------------------
// Postgres errors
// The SQL API reports caller mistakes with SQLSTATEs; those become 4xx with
// the database's own message and hint (written for users). Anything else is a
// fault of ours and becomes a generic 500.
// ---------------------------------------------------------------------------

interface PostgresErrorLike {
  code: string;
  message: string;
  hint?: string;
}

// postgres.js throws PostgresError; duck-typed so callers need not import it.
function isPostgresError(err: unknown): err is PostgresErrorLike {
  if (!(err instanceof Error) || err.name !== "PostgresError") return false;
  const code: unknown = (err as { code?: unknown }).code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code);
}

const BAD_INPUT_SQLSTATES = new Set([
  "22004", // null_value_not_allowed
  "22023", // invalid_parameter_value
  "22P02", // invalid_text_representation
  "22007", // invalid_datetime_format
  "22008", // datetime_field_overflow
]);

/** The request parameter a SQL API message is about ("p_end_date …" → end_date), if any. */
function parameterOf(message: string): string | undefined {
  if (/\bcursor\b/i.test(message)) return "cursor";
  return /\bp_([a-z_]+)/.exec(message)?.[1];
}

export function httpErrorFromPostgres(err: unknown): HttpError | null {
  if (!isPostgresError(err)) return null;
  const details = { sqlstate: err.code, hint: err.hint, field: parameterOf(err.message) };
  if (err.code === "42501") return new HttpError(403, "forbidden", err.message, details);
  if (BAD_INPUT_SQLSTATES.has(err.code)) return new HttpError(400, "bad_request", err.message, details);
  if (err.code === "57014") {
    // statement_timeout or a cancel: the request was too expensive, not wrong
    return new HttpError(503, "query_timeout", "The query took too long; narrow the filters", {
      sqlstate: err.code,
    });
  }
  return null;
}

/**
 * The database refused or dropped the connection rather than the statement: too many connections
 * (53300, also "remaining connection slots are reserved"), a server shutting down, restarting or in
 * recovery (57P01–57P03), a connection exception (class 08), or no connection at all (the socket's
 * and postgres.js' own codes). Not the request's fault: 503 with Retry-After, so that a frontend or
 * a proxy tries again.
 */
export const CONNECTION_FAILURE_CODES: readonly string[] = [
  "53300", "57P01", "57P02", "57P03",
  "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH", "ENOTFOUND", "EPIPE",
  "CONNECT_TIMEOUT", "CONNECTION_CLOSED", "CONNECTION_ENDED", "CONNECTION_DESTROYED",
];

export function connectionFailure(err: unknown): string | null {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return null;
  return code.startsWith("08") || CONNECTION_FAILURE_CODES.includes(code) ? code : null;
}

/** Seconds a caller should wait before retrying a request the database could not take. */
export const DATABASE_RETRY_AFTER_SECONDS = 1;

function errorBody(code: string, message: string, details?: unknown): unknown {
  return { error: { code, message, details } };
}

export function errorResponse(err: unknown): Response {
  if (err instanceof HttpError) {
    return jsonResponse(errorBody(err.code, err.message, err.details), err.status, {
      ...(err.headers ?? {}),
    });
  }
  if (isValidationError(err)) return errorResponse(validationFailed(fieldIssues(err.issues)));
  const fromPostgres = httpErrorFromPostgres(err);
  if (fromPostgres) return errorResponse(fromPostgres);
  const refused = connectionFailure(err);
  if (refused) {
    // the operator's signal: connections exhausted or the database away (the pooler URL avoids the first)
    console.error(`database unavailable (${refused}):`, err instanceof Error ? err.message : err);
    return errorResponse(new HttpError(503, "database_unavailable",
      "The database cannot take this request right now (too many connections, or restarting); retry shortly",
      { code: refused }, { "Retry-After": String(DATABASE_RETRY_AFTER_SECONDS) }));
  }
  // Internals (SQL text, stack) stay in the logs, never in the response.
  console.error("unhandled error:", err);
  return jsonResponse(errorBody("internal_error", "Internal server error"), 500);
}
