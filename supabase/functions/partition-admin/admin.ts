/**
 * partition-admin: operator actions on the partition migration, for the service role only.
 *
 * Every action is one statement, `select partition_mgmt.admin_run(action, table, args)`, run as
 * the caller (set local role service_role, request.jwt.claims set): the SQL dispatcher calls the
 * SQL API, holds the per-table try-lock and writes the audit row in the same transaction, and
 * reports the outcome instead of raising. This module only checks who calls, validates the
 * request and maps the outcome to HTTP. Refused and invalid requests are audited here.
 */
import { AdminRequestSchema, FRESH_SESSION_ACTIONS, MAX_BODY_BYTES, type AdminOutcome, type ParsedAdminRequest } from "../_shared/admin-contract.ts";
import postgres from "postgres";
import { dbUrl, getSql, withCallerContext } from "../_shared/db.ts";
import { forbidden, HttpError, jsonResponse, validationFailed } from "../_shared/errors.ts";
import { type Claims, readClaims, type ServiceClaims } from "../_shared/jwt.ts";
import { readJsonObject } from "../_shared/request.ts";
import { describeFieldIssues, fieldIssues } from "../_shared/validation.ts";

/** Only the service role: the phases rename, lock and drop the app's tables. */
function requireServiceRole(claims: Claims): ServiceClaims {
  if (claims.role === "service_role") return claims as ServiceClaims;
  throw forbidden(`partition-admin accepts only the service role key (the caller's role is '${claims.role}')`);
}

/** The action's arguments as admin_run takes them (everything but action and table). */
function argumentsOf(req: ParsedAdminRequest): Record<string, unknown> {
  const { action: _action, table: _table, ...args } = req;
  return args;
}

function elapsedMs(startedAt: number): number {
  return Math.round((performance.now() - startedAt) * 10) / 10;
}

/** Audit row for a call refused before it reached the SQL API, or cut off by the statement timeout (best effort: never hides the answer). */
async function auditRejected(
  claims: Claims,
  raw: Record<string, unknown>,
  status: "refused" | "invalid" | "error",
  error: string,
  startedAt: number,
  table: string | null = null,
): Promise<void> {
  const action = typeof raw.action === "string" ? raw.action.slice(0, 100) : "?";
  try {
    await getSql("direct")`
      select partition_mgmt.admin_record(${action}, ${table}, ${JSON.stringify(raw)}::text::jsonb, ${status}, null, ${error},
        ${elapsedMs(startedAt)}, ${JSON.stringify({ role: claims.role, sub: claims.sub ?? null })}::text::jsonb)`;
  } catch (err) {
    console.error("partition-admin: could not audit a rejected call:", err);
  }
}


/**
 * A rollback commits the swap back (or the end of the sync) alone, so that no lock on the app's
 * table is held while the copy is emptied; the emptying follows in a transaction of its own.
 */
const FOLLOW_UPS: Readonly<Record<string, ParsedAdminRequest["action"]>> = { rollback: "finish-rollback", "sync-off": "finish-rollback" };

/**
 * Every action's statement ends within this (PARTITION_ADMIN_STATEMENT_TIMEOUT, default 140 s):
 * hosted Edge Functions end a request that has not answered after 150 s, and the statement of a
 * request that was cut off would go on running in the database with nobody to hear its outcome.
 * The service role has no statement_timeout of its own on hosted Supabase; the database-wide 2
 * minutes would apply otherwise.
 */
function adminStatementTimeout(): string {
  return Deno.env.get("PARTITION_ADMIN_STATEMENT_TIMEOUT") || "140s";
}

async function runOne(claims: ServiceClaims, req: ParsedAdminRequest, startedAt: number): Promise<AdminOutcome> {
  const args = JSON.stringify(argumentsOf(req));
  const timeout = adminStatementTimeout();
  try {
    const [row] = await withCallerContext(
      claims,
      (tx) =>
        tx<{ outcome: AdminOutcome }[]>`
        select partition_mgmt.admin_run(${req.action}, ${req.table ?? null}, ${args}::text::jsonb) as outcome`,
      { connection: "direct", freshSession: FRESH_SESSION_ACTIONS.includes(req.action), statementTimeout: timeout },
    );
    if (!row) throw new Error("partition_mgmt.admin_run returned no row");
    return row.outcome;
  } catch (err) {
    // A cancelled statement takes its transaction (and admin_run's audit row) with it.
    if ((err as { code?: string }).code !== "57014") throw err;
    const message = `${req.action} did not finish within partition-admin's statement_timeout (${timeout}); nothing it did in this call was kept`;
    await auditRejected(claims, { ...req }, "error", message, startedAt, req.table ?? null);
    throw new HttpError(503, "retry_later", message, {
      sqlstate: "57014",
      hint: req.action === "backfill"
        ? "Call again with a smaller batch_size or max_seconds."
        : "Run it where no request limit applies: from the SQL editor or psql (select partition_mgmt.admin_run(...)), or the whole migration with the statement partition_mgmt.migration_runner(table) returns (psql \\gexec or a pg_cron job).",
      action: req.action,
    });
  }
}

/**
 * The setup step that builds an index hands back `create index concurrently …`, which cannot run
 * inside a transaction (nor inside admin_run): it is run here, on a connection of its own, as the
 * database user of SUPABASE_DB_URL (the tables' owner). Only that statement shape, generated by
 * partition_mgmt.setup_tasks() from quoted identifiers, is ever run this way.
 */
const CONCURRENT_INDEX = /^(create index concurrently if not exists "?[a-z_][a-z0-9_]*"? on [a-z_][a-z0-9_.]* \((company_id|program_id, site_id, created_at)\)|drop index concurrently if exists [a-z_][a-z0-9_."]*)$/;

async function runOutsideTransaction(outcome: AdminOutcome): Promise<AdminOutcome> {
  const statement = outcome.result?.run_outside_transaction;
  if (outcome.status !== "ok" || typeof statement !== "string") return outcome;
  if (!CONCURRENT_INDEX.test(statement)) throw new Error(`partition-admin: refusing to run an unexpected statement outside a transaction: ${statement}`);
  const sql = postgres(dbUrl("direct"), { max: 1, prepare: false });
  const t0 = performance.now();
  try {
    await sql.unsafe(`set statement_timeout = '${adminStatementTimeout().replaceAll("'", "")}'`);
    await sql.unsafe(statement);
  } finally {
    await sql.end({ timeout: 5 });
  }
  return { ...outcome, result: { ...outcome.result, ran: statement, ran_ms: Math.round(performance.now() - t0) } };
}

/** Runs one action through the SQL dispatcher as the service role (and its follow-up, if any). */
export async function runAdminAction(claims: ServiceClaims, req: ParsedAdminRequest): Promise<AdminOutcome> {
  const startedAt = performance.now();
  const outcome = req.action === "setup" ? await runOutsideTransaction(await runOne(claims, req, startedAt)) : await runOne(claims, req, startedAt);
  const next = FOLLOW_UPS[req.action];
  if (next === undefined || outcome.status !== "ok") return outcome;
  const finish = await runOne(claims, { action: next, ...(req.table === undefined ? {} : { table: req.table }) }, performance.now());
  return {
    ...outcome,
    phase: finish.phase ?? outcome.phase ?? null,
    result: { ...(outcome.result ?? {}), [next]: finish.status === "ok" ? finish.result : { error: finish.error } },
  };
}

/** HTTP status of an outcome that is not ok. */
function statusOf(outcome: AdminOutcome): { status: number; code: string } {
  if (outcome.status === "invalid") return { status: 400, code: "bad_request" };
  if (outcome.status === "busy") return { status: 409, code: "already_running" };
  const sqlstate = outcome.error?.sqlstate ?? null;
  if (sqlstate === null || sqlstate === "P0001") return { status: 409, code: "action_failed" };
  if (sqlstate.startsWith("22")) return { status: 400, code: "bad_request" };
  if (sqlstate === "42501") return { status: 403, code: "forbidden" };
  // lock_timeout exhausted (swap, sync), statement timeout: retry later
  if (sqlstate === "55P03" || sqlstate === "57014") return { status: 503, code: "retry_later" };
  return { status: 500, code: "action_failed" };
}

export function outcomeResponse(outcome: AdminOutcome): Response {
  if (outcome.status === "ok") return jsonResponse(outcome);
  const { status, code } = statusOf(outcome);
  // Callers are the service role: the database's message and hint are for them.
  throw new HttpError(status, code, outcome.error?.message ?? `${outcome.action} failed`, {
    sqlstate: outcome.error?.sqlstate ?? null,
    hint: outcome.error?.hint ?? null,
    action: outcome.action,
    table_key: outcome.table_key,
    phase: outcome.phase ?? null,
    result: outcome.result ?? null,
    audit_id: outcome.audit_id,
    duration_ms: outcome.duration_ms,
  });
}

/**
 * Who calls (the service role only) and what they ask, validated. Refused and invalid calls are
 * audited before the error is thrown; startedAt: when the request arrived.
 */
export async function readAdminRequest(
  req: Request,
  startedAt: number,
): Promise<{ caller: ServiceClaims; request: ParsedAdminRequest }> {
  let claims: Claims;
  try {
    claims = await readClaims(req);
  } catch (err) {
    // unauthenticated: logged, never stored (the public anon key must not fill the audit table)
    console.warn(`partition-admin: unauthenticated call refused: ${(err as Error).message}`);
    throw err;
  }
  let caller: ServiceClaims;
  try {
    caller = requireServiceRole(claims);
  } catch (err) {
    // refused before validation: the audit keeps what was asked, whatever its shape
    const asked = await readJsonObject(req, MAX_BODY_BYTES).catch((e: Error) => ({ body_error: e.message }));
    await auditRejected(claims, asked, "refused", (err as Error).message, startedAt);
    throw err;
  }
  let raw: Record<string, unknown>;
  try {
    raw = await readJsonObject(req, MAX_BODY_BYTES);
  } catch (err) {
    // a body that is not JSON, not an object or too large is on record too
    await auditRejected(claims, { body_error: (err as Error).message }, "invalid", (err as Error).message, startedAt);
    throw err;
  }
  const parsed = AdminRequestSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = fieldIssues(parsed.error.issues);
    await auditRejected(claims, raw, "invalid", describeFieldIssues(issues), startedAt);
    throw validationFailed(issues);
  }
  return { caller, request: parsed.data };
}
