/**
 * Typed client for the partition-admin edge function: supabase-js functions.invoke with the service
 * role key, so for servers and terminals only (the CLI scripts/admin.ts and the tests use it).
 * Parameters are validated with the function's own schema
 * (supabase/functions/_shared/admin-contract.ts) before sending. A failure says which URL it was
 * about, why (connection refused, DNS, TLS, timeout, or the HTTP status with the answer's own
 * message, ours or the platform's) and what to do next.
 */
import { createClient, FunctionsFetchError, FunctionsRelayError, type SupabaseClient, type WebSocketLikeConstructor } from "@supabase/supabase-js";
import {
  ADMIN_FUNCTION,
  type AdminOutcome,
  type AdminRequest,
  AdminRequestSchema,
} from "../supabase/functions/_shared/admin-contract.ts";
import { describeFieldIssues, fieldIssues } from "../supabase/functions/_shared/validation.ts";
import { EdgeFunctionError, errorCodeForStatus } from "./edge-function-error.ts";

/**
 * Why no answer arrived: connection_refused, dns_failed, tls_failed, timeout, network_error.
 * With an answer, code is the server's (`already_running`, `action_failed`, …), the platform's
 * (`NOT_FOUND`, `BOOT_ERROR`, …, from the body or the sb-error-code header), or `http_error`.
 */
export type AdminNetworkCode = "connection_refused" | "dns_failed" | "tls_failed" | "timeout" | "network_error";

/** A failed call; details carry the server's (or the parameter check's) details. */
export class AdminError extends EdgeFunctionError<Record<string, unknown>> {
  override name = "AdminError";
  constructor(
    status: number | null,
    code: string,
    message: string,
    details?: Record<string, unknown>,
    /** the function's URL (null when the parameters were refused before sending) */
    readonly url: string | null = null,
    /** what to do about it, one sentence */
    readonly nextStep: string | null = null,
  ) {
    super(status, code, message, details);
  }
}

// Node 20 has no global WebSocket and supabase-js builds its realtime client eagerly; the admin
// client never opens a channel.
class NoRealtime {
  constructor() {
    throw new Error("realtime is not used by the admin client");
  }
}

/** The function's URL per client adminSupabase made (supabase-js keeps its own protected). */
const functionUrls = new WeakMap<SupabaseClient, string>();

/** The URL functions.invoke calls for partition-admin on a project's base URL. */
export function adminFunctionUrl(projectUrl: string): string {
  return `${projectUrl.replace(/\/+$/, "")}/functions/v1/${ADMIN_FUNCTION}`;
}

export function adminSupabase(url: string, key: string): SupabaseClient {
  const client = createClient(url, key, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    realtime: { transport: NoRealtime as unknown as WebSocketLikeConstructor },
  });
  functionUrls.set(client, adminFunctionUrl(url));
  return client;
}

interface SystemError {
  code?: string;
  message?: string;
  hostname?: string;
  address?: string;
  port?: number;
  cause?: unknown;
  errors?: unknown[];
}

/** The innermost errors with a code: fetch's TypeError -> its cause -> an AggregateError's errors. */
function systemErrors(err: unknown, depth = 0): SystemError[] {
  if (!err || typeof err !== "object" || depth > 5) return [];
  const e = err as SystemError;
  const inner = [...(e.cause ? systemErrors(e.cause, depth + 1) : []), ...(Array.isArray(e.errors) ? e.errors.flatMap((x) => systemErrors(x, depth + 1)) : [])];
  if (inner.length > 0) return inner;
  return typeof e.code === "string" ? [e] : [];
}

const TLS_CODE = /CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_VERIFY|DEPTH_ZERO|HOSTNAME|ALTNAME|EPROTO/i;

/** No answer arrived: which of connection refused, DNS, TLS, timeout, and what to do. */
function networkFailure(url: string, err: unknown): AdminError {
  const found = systemErrors(err);
  const first = found[0];
  const code = first?.code ?? "";
  const host = (() => {
    try {
      return new URL(url).host;
    } catch {
      return url;
    }
  })();
  const local = /^(127\.0\.0\.1|localhost|\[::1\])(:|$)/.test(host);
  const checkUrl = "check SUPABASE_URL (a hosted project's is https://<project-ref>.supabase.co)";
  if (code === "ECONNREFUSED") {
    return new AdminError(null, "connection_refused", `cannot reach ${url}: connection refused (nothing listens on ${host})`, { cause: code }, url,
      local ? `start the local stack with npm start (it serves the functions), or ${checkUrl}` : `${checkUrl}; the project may be paused (Dashboard)`);
  }
  if (code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "EAI_NONAME" || code === "EAI_FAIL") {
    return new AdminError(null, "dns_failed", `cannot reach ${url}: the host name ${first?.hostname ?? host} does not resolve (${code})`, { cause: code }, url,
      `${checkUrl}, and this machine's DNS and network`);
  }
  if (TLS_CODE.test(code)) {
    return new AdminError(null, "tls_failed", `cannot reach ${url}: TLS failed: ${first?.message ?? code} (${code})`, { cause: code }, url,
      "check SUPABASE_URL (a hosted project's is https://<project-ref>.supabase.co, the local stack's plain http://127.0.0.1:54321); behind a proxy that inspects TLS, give Node its CA with NODE_EXTRA_CA_CERTS=<file>");
  }
  if (/TIMEOUT|ETIMEDOUT/i.test(code) || (err as { name?: string } | null)?.name === "AbortError") {
    return new AdminError(null, "timeout", `no answer from ${url} in time (${code || "aborted"})`, { cause: code || "timeout" }, url,
      "check the network path to the project; an action cut off by the platform's 150 s limit can run from psql instead (README, Operating the migration)");
  }
  const message = first?.message ?? (err instanceof Error ? err.message : String(err));
  return new AdminError(null, "network_error", `cannot reach ${url}: ${message}${code && !message.includes(code) ? ` (${code})` : ""}`, { cause: code || null }, url,
    `${checkUrl}, and the network between here and the project`);
}

type ServerBody = { error?: { code?: string; message?: string; details?: Record<string, unknown> } };

/** An answer that is not ours: the platform's (`{ code, message }`, `{ msg }`, `{ message }`), or a proxy's text or HTML page. */
function platformMessage(text: string, contentType: string): { code: string | null; message: string | null } {
  if (/json/i.test(contentType) || /^\s*[[{]/.test(text)) {
    try {
      const body = JSON.parse(text) as Record<string, unknown>;
      const str = (v: unknown) => (typeof v === "string" && v.trim() ? v.trim() : typeof v === "number" ? String(v) : null);
      const message = str(body.message) ?? str(body.msg) ?? str(body.error_description) ?? str(body.error);
      return { code: str(body.code) ?? str(body.error_code), message };
    } catch {
      // not JSON after all: read it as text
    }
  }
  const title = /<title>([^<]*)<\/title>/i.exec(text)?.[1];
  const plain = (title ?? text.replace(/<[^>]*>/g, " ")).replace(/\s+/g, " ").trim();
  return { code: null, message: plain ? plain.slice(0, 200) : null };
}

/** What to do about an HTTP failure without advice from our server. */
function httpNextStep(status: number, code: string): string {
  if (status === 401) return "SUPABASE_SERVICE_ROLE_KEY must be this project's service role key (Dashboard > Project Settings > API keys)";
  if (status === 403) return "use the project's service role key: partition-admin refuses the anon key and users' tokens";
  if (status === 404) return `deploy the function (supabase functions deploy ${ADMIN_FUNCTION}), or check SUPABASE_URL`;
  if (status === 409 && code === "already_running") return "another call for this table is running: wait for it to end (npm run admin -- status), then run this again";
  if (status === 409) return "see the table's phase with npm run admin -- status, then take the step it needs";
  if (status === 400) return "change the request as the message says (npm run admin -- --help lists the parameters)";
  if (status === 429) return "the platform is rate limiting: wait a moment and run it again";
  if (status === 546 || code === "WORKER_LIMIT") return "the function ran out of resources on the platform: run the action from psql instead (README, Operating the migration)";
  if (status === 504 || code === "IDLE_TIMEOUT") return "the platform cut the request off: run the action from psql instead (README, Operating the migration)";
  if (status >= 500) return `read the function's logs (Dashboard > Edge Functions > ${ADMIN_FUNCTION} > Logs), then run it again`;
  return "see the message above";
}

/** One action. Resolves with the outcome (status "ok"); rejects with AdminError otherwise. */
export async function invokeAdmin(supabase: SupabaseClient, request: AdminRequest): Promise<AdminOutcome> {
  const parsed = AdminRequestSchema.safeParse(request);
  if (!parsed.success) {
    const issues = fieldIssues(parsed.error.issues);
    throw new AdminError(null, "validation_failed", `Invalid request: ${describeFieldIssues(issues)}`, { issues });
  }
  const { data, error, response } = await supabase.functions.invoke(ADMIN_FUNCTION, { body: parsed.data });
  if (!error) return data as AdminOutcome;
  const res = response as Response | undefined;
  const url = functionUrls.get(supabase) ?? (res?.url || ADMIN_FUNCTION);
  if (error instanceof FunctionsFetchError || !res) throw networkFailure(url, (error as { context?: unknown }).context ?? error);
  const text = await res.text().catch(() => "");
  let ours: ServerBody = {};
  try {
    ours = JSON.parse(text) as ServerBody;
  } catch {
    // not JSON: the platform's or a proxy's page, read below
  }
  if (ours.error && typeof ours.error === "object" && typeof ours.error.message === "string") {
    const hint = ours.error.details?.hint;
    const code = ours.error.code ?? "http_error";
    throw new AdminError(res.status, code, ours.error.message, ours.error.details, url,
      typeof hint === "string" && hint ? hint : httpNextStep(res.status, code));
  }
  const platform = platformMessage(text, res.headers.get("content-type") ?? "");
  // the status's code (a 401 of verify_jwt: unauthorized), as the frontend client reads it; the
  // platform's own code (sb-error-code, NOT_FOUND, …) stays in the details
  const platformCode = res.headers.get("sb-error-code") ?? platform.code ?? null;
  const code = errorCodeForStatus(res.status);
  const relay = error instanceof FunctionsRelayError ? " (relay error)" : "";
  const message = `${platform.message ?? res.statusText ?? `HTTP ${res.status}`}${relay}`;
  throw new AdminError(res.status, code, message, { body: text.slice(0, 2000), platform_code: platformCode }, url,
    httpNextStep(res.status, platformCode ?? code));
}

/** The lines a terminal shows for a failure: where, why, what to do. */
export function describeAdminError(err: AdminError): string[] {
  const where = err.url ? `${err.url} answered` : "";
  // the platform's own code where it sent one (NOT_FOUND, BOOT_ERROR, …), else ours
  const platform = err.details?.platform_code;
  const shown = typeof platform === "string" && platform ? platform : err.code;
  const head = err.status !== null
    ? `${where || "the function answered"} HTTP ${err.status}${shown && shown !== "http_error" ? ` ${shown}` : ""}: ${err.message}`
    : err.message;
  const lines = [`error: ${head}`];
  const d = err.details ?? {};
  if (typeof d.sqlstate === "string" && d.sqlstate) lines.push(`sqlstate: ${d.sqlstate}`);
  if (err.nextStep) lines.push(`what to do: ${err.nextStep}`);
  return lines;
}
