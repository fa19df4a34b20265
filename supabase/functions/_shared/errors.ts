/**
 * One error shape for every function: `{ error: { code, message, details } }`,
 * always with CORS headers so browsers can read the failure.
 */
import { corsHeaders } from "./cors.ts";

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

export function badRequest(message: string, details?: unknown): HttpError {
  return new HttpError(400, "bad_request", message, details);
}

export function unauthorized(message: string): HttpError {
  return new HttpError(401, "unauthorized", message);
}

export function forbidden(message: string): HttpError {
  return new HttpError(403, "forbidden", message);
}

export function notFound(message: string): HttpError {
  return new HttpError(404, "not_found", message);
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

export function jsonResponse(
  body: unknown,
  status = 200,
  headers: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { ...corsHeaders, "Content-Type": "application/json; charset=utf-8", ...headers },
  });
}

type ValidationError = Error & { issues: unknown };

// Duck-typed so that functions which never import zod need not map it.
function isValidationError(err: unknown): err is ValidationError {
  return err instanceof Error && err.name === "ZodError" && "issues" in err;
}

function errorBody(code: string, message: string, details?: unknown): unknown {
  return { error: { code, message, details } };
}

export function errorResponse(err: unknown): Response {
  if (err instanceof HttpError) {
    return jsonResponse(errorBody(err.code, err.message, err.details), err.status, {
      ...(err.headers ?? {}),
    });
  }
  if (isValidationError(err)) {
    return jsonResponse(errorBody("validation_failed", "Request validation failed", err.issues), 400);
  }
  // Internals (SQL text, stack) stay in the logs, never in the response.
  console.error("unhandled error:", err);
  return jsonResponse(errorBody("internal_error", "Internal server error"), 500);
}
