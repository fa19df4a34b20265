// Calls the partition-admin edge function with supabase-js functions.invoke and the service role
// key (the CLI scripts/admin.ts and the tests use it). Parameters are validated with the function's
// own schema before sending.
import { createClient, type SupabaseClient, type WebSocketLikeConstructor } from "@supabase/supabase-js";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  ADMIN_FUNCTION,
  type AdminOutcome,
  type AdminRequest,
  AdminRequestSchema,
} from "../../supabase/functions/_shared/admin-contract.ts";
import { describeFieldIssues, fieldIssues } from "../../supabase/functions/_shared/validation.ts";

/** A failed call: HTTP status (null: refused before sending or no answer) and the server's error. */
export class AdminError extends Error {
  constructor(
    message: string,
    readonly status: number | null,
    readonly code: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = "AdminError";
  }
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

/** SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY from the environment, else from .env.local (npm start writes it). */
export function adminEnv(root: string): { url: string; serviceRoleKey: string } {
  const file = join(root, ".env.local");
  const fromFile: Record<string, string> = {};
  if (existsSync(file)) {
    for (const line of readFileSync(file, "utf8").split("\n")) {
      const m = /^\s*([A-Z0-9_]+)\s*=\s*"?([^"\n]*)"?\s*$/.exec(line);
      if (m?.[1]) fromFile[m[1]] = m[2] ?? "";
    }
  }
  const url = process.env.SUPABASE_URL || fromFile.SUPABASE_URL;
  const serviceRoleKey = process.env.SUPABASE_SERVICE_ROLE_KEY || fromFile.SUPABASE_SERVICE_ROLE_KEY;
  if (!url || !serviceRoleKey) {
    throw new Error("SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY are not set (export them, or run `npm start`, which writes .env.local)");
  }
  return { url, serviceRoleKey };
}

/** One action. Resolves with the outcome (status "ok"); rejects with AdminError otherwise. */
export async function invokeAdmin(supabase: SupabaseClient, request: AdminRequest): Promise<AdminOutcome> {
  const parsed = AdminRequestSchema.safeParse(request);
  if (!parsed.success) {
    const issues = fieldIssues(parsed.error.issues);
    throw new AdminError(`Invalid request: ${describeFieldIssues(issues)}`, null, "validation_failed", { issues });
  }
  const { data, error, response } = await supabase.functions.invoke(ADMIN_FUNCTION, { body: parsed.data });
  if (!error) return data as AdminOutcome;
  const res = response as Response | undefined;
  if (!res) throw new AdminError(error.message, null, "network_error");
  let body: { error?: { code?: string; message?: string; details?: Record<string, unknown> } } = {};
  try {
    body = (await res.json()) as typeof body;
  } catch {
    // not JSON (gateway error page): fall through with the status
  }
  throw new AdminError(body.error?.message ?? `HTTP ${res.status}`, res.status, body.error?.code ?? "http_error", body.error?.details);
}
