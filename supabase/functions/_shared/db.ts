/**
 * Postgres access for edge functions, run as the caller's database role so
 * that Row Level Security applies exactly as it would through PostgREST.
 */
import postgres from "postgres";
import { CALLER_ROLES, type CallerRole, callerContextStatement } from "./caller-context.ts";
import { forbidden } from "./errors.ts";
import type { Claims } from "./jwt.ts";
import type { ServerTiming } from "./server-timing.ts";

export type Sql = postgres.Sql;
export type Tx = postgres.TransactionSql;

export type { CallerRole } from "./caller-context.ts";

/**
 * Which connection a piece of work needs. "pooled": short per-request transactions that set
 * everything they need locally (the read API, health); through a transaction pooler when the
 * project sets DB_POOLER_URL (its Supavisor transaction-mode URL, port 6543; the local stack sets
 * it to its PgBouncer), else SUPABASE_DB_URL. "direct": SUPABASE_DB_URL, the direct connection
 * hosted functions get, for what needs a session of its own (partition-admin: a fresh session
 * for the swap, statements outside a transaction, long actions). "replica": DB_REPLICA_URL, a read
 * replica's connection string, for reads only; ./replica.ts decides when to use it.
 */
export type Connection = "pooled" | "direct" | "replica";

// Module scope so that one isolate reuses its connections across requests;
// created lazily so importing this file never needs the env var.
const pools: Partial<Record<Connection, Sql>> = {};

export function dbUrl(connection: Connection = "direct"): string {
  if (connection === "replica") {
    const replica = Deno.env.get("DB_REPLICA_URL");
    if (!replica) throw new Error("DB_REPLICA_URL is not set");
    return replica;
  }
  if (connection === "pooled") {
    const pooled = Deno.env.get("DB_POOLER_URL");
    if (pooled) return pooled;
  }
  const url = Deno.env.get("SUPABASE_DB_URL");
  if (!url) throw new Error("SUPABASE_DB_URL is not set");
  return url;
}

export function getSql(connection: Connection = "pooled"): Sql {
  // prepare: false: behind a transaction pooler consecutive statements may run on different
  // server sessions, so no named prepared statement may be assumed to exist
  // (a replica that is down is found in 2 s, and the read goes to the primary: ./replica.ts)
  return pools[connection] ??= postgres(dbUrl(connection), {
    max: 3, prepare: false, idle_timeout: 20, ...(connection === "replica" ? { connect_timeout: 2 } : {}),
  });
}

function callerRole(role: string): CallerRole {
  const match = CALLER_ROLES.find((allowed) => allowed === role);
  if (!match) throw forbidden(`Role '${role}' may not access the database`);
  return match;
}

/**
 * Runs fn in one transaction with request.jwt.claims and the role set locally
 * (everything transaction-scoped, so it works through a transaction pooler),
 * mirroring what PostgREST does, so auth.uid()/auth.jwt() and RLS work. Like
 * PostgREST, it also applies the role's own settings (`alter role … set`): SET
 * ROLE alone does not, and hosted Supabase bounds anon at 3 s and authenticated
 * at 8 s with statement_timeout there. All of it is one statement without
 * parameters (./caller-context.ts), pipelined with fn's first statement: BEGIN,
 * then the context and fn's statement together, then COMMIT.
 */
export interface CallerContextOptions {
  connection?: Connection;
  freshSession?: boolean;
  /** a bound of the caller's own, over the role's (the service role has none on hosted Supabase) */
  statementTimeout?: string;
  /** further settings for the transaction, over the role's, e.g. { timezone: "UTC" } */
  settings?: Readonly<Record<string, string>>;
  /** phases marked: begin (a connection and BEGIN), context, query, commit */
  timing?: ServerTiming;
}

export async function withCallerContext<T>(
  claims: Claims,
  fn: (tx: Tx) => Promise<T>,
  options: CallerContextOptions = {},
): Promise<T> {
  const role = callerRole(claims.role);
  const settings = options.statementTimeout === undefined
    ? { ...options.settings }
    : { ...options.settings, statement_timeout: options.statementTimeout };
  const context = callerContextStatement(role, JSON.stringify(claims.raw), settings);
  // A fresh session for statements that change the catalog of a whole partition tree: a pooled
  // session that has touched every leaf (a backfill) processes each catalog change slowly, and
  // the swap does that while it holds ACCESS EXCLUSIVE. Only a direct connection gives one: a
  // pooler hands out a server session it already has.
  const sql = options.freshSession ? postgres(dbUrl("direct"), { max: 1, prepare: false }) : getSql(options.connection);
  const timing = options.timing;
  try {
    const result = await sql.begin(async (tx) => {
      timing?.mark("begin");
      // sent now, not awaited: fn's first statement follows it on the wire. Should it fail, the
      // transaction is aborted and fn's statements fail too; its own error is the one thrown.
      const ready = tx.unsafe(context).execute().then(() => timing?.mark("context"));
      const [, out] = await Promise.all([ready, fn(tx)]);
      timing?.mark("query");
      return out;
    });
    timing?.mark("commit");
    // postgres.js widens the result type for array results; fn's own type is exact.
    return result as T;
  } finally {
    if (options.freshSession) await sql.end({ timeout: 5 });
  }
}
