/**
 * A failed call of one of the bundle's edge functions, as both typed clients report it, and how a
 * failed response is read.
 *
 * A failure reaches the caller from one of two places:
 *  - the function itself, always `{ error: { code, message, details } }` (supabase/functions/_shared/errors.ts);
 *  - the platform in front of it, before or instead of the function, in the platform's own shapes:
 *      hosted (the verify_jwt check, routing, the edge runtime): `{ "code": 401, "message": "Invalid JWT" }`,
 *        `{ "code": "BOOT_ERROR", "message": … }`, with the reason in the `sb-error-code` header
 *        (UNAUTHORIZED_NO_AUTH_HEADER, UNAUTHORIZED_LEGACY_JWT, WORKER_LIMIT, …; Supabase's
 *        "Edge Functions > Error codes" page);
 *      `supabase functions serve` (the CLI's edge runtime): `{ "msg": "Invalid JWT" }`, a text body
 *        "Function not found";
 *      anything else (a proxy's HTML page, an empty body).
 *    These get their code from the HTTP status (errorCodeForStatus), so a 401 of the gateway is
 *    `unauthorized` exactly like a 401 of the function.
 */
export class EdgeFunctionError<Details = unknown, Code extends string = string> extends Error {
  constructor(
    /** The HTTP status; null when no response arrived or the parameters were refused before sending. */
    readonly status: number | null,
    readonly code: Code,
    message: string,
    readonly details?: Details,
  ) {
    super(message);
    this.name = "EdgeFunctionError";
  }
}

/** The code of a failure the function did not describe itself, by HTTP status. */
const CODE_BY_STATUS = {
  400: "bad_request",
  401: "unauthorized",
  403: "forbidden",
  404: "not_found",
  405: "method_not_allowed",
  413: "payload_too_large",
  415: "unsupported_media_type",
  429: "rate_limited",
  500: "internal_error",
  // the local gateway: the function's worker did not start or crashed
  502: "function_unavailable",
  // hosted BOOT_ERROR: the function failed to start
  503: "function_unavailable",
  // hosted IDLE_TIMEOUT: no answer within the request timeout
  504: "function_timeout",
  // hosted WORKER_LIMIT / WORKER_RESOURCE_LIMIT: memory or CPU time ran out
  546: "resource_limit",
} as const;

/** Codes by HTTP status, and `http_error` for a status without one. */
export type StatusErrorCode = (typeof CODE_BY_STATUS)[keyof typeof CODE_BY_STATUS] | "http_error";

export function errorCodeForStatus(status: number): StatusErrorCode {
  return (CODE_BY_STATUS as Record<number, StatusErrorCode>)[status] ?? "http_error";
}

/** What a failed response says, read once. */
export interface FailedResponse {
  status: number;
  /** The function's own code, or the status's (errorCodeForStatus) for an answer of the platform. */
  code: string;
  message: string;
  /** The function's details; for the platform, its own code (sb-error-code header or body), if any. */
  details: unknown;
  /** true: the body is the function's `{ error: { code, message, details } }`. */
  fromFunction: boolean;
}

/** The platform's own name for the failure: the sb-error-code header, or a code in the body. */
export interface PlatformErrorDetails {
  platform_code: string | null;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

async function readBody(response: Response): Promise<unknown> {
  let text: string;
  try {
    // clone: the caller (or supabase-js' own error.context) may read it too
    text = await response.clone().text();
  } catch {
    return null;
  }
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

const SHORT_TEXT = 200;

export async function readFailedResponse(response: Response): Promise<FailedResponse> {
  const body = await readBody(response);
  const error = isRecord(body) ? body.error : undefined;
  if (isRecord(error) && typeof error.code === "string" && typeof error.message === "string") {
    return { status: response.status, code: error.code, message: error.message, details: error.details, fromFunction: true };
  }
  const header = response.headers.get("sb-error-code");
  const bodyCode = isRecord(body) && typeof body.code === "string" ? body.code : null;
  const text = typeof body === "string" && body.trim() !== "" && body.length <= SHORT_TEXT && !body.trimStart().startsWith("<")
    ? body.trim()
    : null;
  const said = isRecord(body) ? (body.message ?? body.msg ?? body.error) : text;
  const message = typeof said === "string" && said !== "" ? said : `HTTP ${response.status} ${response.statusText}`.trim();
  const details: PlatformErrorDetails = { platform_code: header ?? bodyCode };
  return { status: response.status, code: errorCodeForStatus(response.status), message, details, fromFunction: false };
}

/**
 * The Response of a failed functions.invoke: supabase-js returns it beside the error, and as
 * error.context of a FunctionsHttpError or FunctionsRelayError. By name rather than instanceof: an
 * app may bundle its own copy of supabase-js.
 */
export function responseOfInvokeError(error: unknown, response: unknown): Response | null {
  if (response instanceof Response) return response;
  const name = isRecord(error) || error instanceof Error ? (error as { name?: unknown }).name : undefined;
  const context = isRecord(error) || error instanceof Error ? (error as { context?: unknown }).context : undefined;
  if ((name === "FunctionsHttpError" || name === "FunctionsRelayError") && context instanceof Response) return context;
  return null;
}
