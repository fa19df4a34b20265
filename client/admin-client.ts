/**
 * Typed client for the partition-admin edge function: supabase-js functions.invoke with the service
 * role key, so for servers and terminals only (the CLI scripts/admin.ts and the tests use it).
 * Parameters are validated with the function's own schema
 * (supabase/functions/_shared/admin-contract.ts) before sending.
 */
import { createClient, type SupabaseClient, type WebSocketLikeConstructor } from "@supabase/supabase-js";
import {
  ADMIN_FUNCTION,
  type AdminOutcome,
  type AdminRequest,
  AdminRequestSchema,
} from "../supabase/functions/_shared/admin-contract.ts";
import { describeFieldIssues, fieldIssues } from "../supabase/functions/_shared/validation.ts";
import { EdgeFunctionError, readFailedResponse, responseOfInvokeError } from "./edge-function-error.ts";

/** A failed call; details carry the server's (or the parameter check's) details. */
export class AdminError extends EdgeFunctionError<Record<string, unknown>> {
  override name = "AdminError";
}

// Node 20 has no global WebSocket and supabase-js builds its realtime client eagerly; the admin
// client never opens a channel.
class NoRealtime {
  constructor() {
    throw new Error("realtime is not used by the admin client");
  }
}

export function adminSupabase(url: string, key: string): SupabaseClient {
  return createClient(url, key, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    realtime: { transport: NoRealtime as unknown as WebSocketLikeConstructor },
  });
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
  const res = responseOfInvokeError(error, response);
  if (!res) throw new AdminError(null, "network_error", error instanceof Error ? error.message : String(error));
  // the function's own code, or the status's for the platform's answers (a 401 of verify_jwt: unauthorized)
  const failed = await readFailedResponse(res);
  throw new AdminError(failed.status, failed.code, failed.message, failed.details as Record<string, unknown> | undefined);
}
