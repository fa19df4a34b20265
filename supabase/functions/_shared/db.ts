/**
 * Postgres access for edge functions, run as the caller's database role so
 * that Row Level Security applies exactly as it would through PostgREST.
 */
import postgres from "postgres";
import { forbidden } from "./errors.ts";
import type { Claims } from "./jwt.ts";

export type Sql = postgres.Sql;
export type Tx = postgres.TransactionSql;

// Roles a JWT may map to. Anything else (e.g. a forged "postgres") must never
// reach SET ROLE.
const CALLER_ROLES = ["anon", "authenticated", "service_role"] as const;
export type CallerRole = (typeof CALLER_ROLES)[number];

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

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * Runs fn in one transaction with request.jwt.claims and the role set locally
 * (everything transaction-scoped, so it works through a transaction pooler),
 * mirroring what PostgREST does, so auth.uid()/auth.jwt() and RLS work. Like
 * PostgREST, it also applies the role's own settings (`alter role … set`): SET
 * ROLE alone does not, and hosted Supabase bounds anon at 3 s and authenticated
 * at 8 s with statement_timeout there.
 */
export async function withCallerContext<T>(
  claims: Claims,
  fn: (tx: Tx) => Promise<T>,
  options: { connection?: Connection; freshSession?: boolean; statementTimeout?: string } = {},
): Promise<T> {
  const role = callerRole(claims.role);
  // A fresh session for statements that change the catalog of a whole partition tree: a pooled
  // session that has touched every leaf (a backfill) processes each catalog change slowly, and
  // the swap does that while it holds ACCESS EXCLUSIVE. Only a direct connection gives one: a
  // pooler hands out a server session it already has.
  const sql = options.freshSession ? postgres(dbUrl("direct"), { max: 1, prepare: false }) : getSql(options.connection);
  try {
    const result = await sql.begin(async (tx) => {
      await tx`select set_config('request.jwt.claims', ${JSON.stringify(claims.raw)}, true)`;
      // the role's settings for this database win over its settings for every database
      await tx`
        select set_config(x.name, x.value, true) from (
          select distinct on (split_part(c, '=', 1)) split_part(c, '=', 1) as name, substr(c, strpos(c, '=') + 1) as value
          from pg_catalog.pg_db_role_setting s
          cross join lateral unnest(s.setconfig) c
          join pg_catalog.pg_settings g on g.name = split_part(c, '=', 1) and g.context = 'user'
          where s.setrole = (select r.oid from pg_catalog.pg_roles r where r.rolname = ${role})
            and s.setdatabase in (0, (select d.oid from pg_catalog.pg_database d where d.datname = current_database()))
          order by split_part(c, '=', 1), s.setdatabase desc) x`;
      // a bound of the caller's own, over the role's (the service role has none on hosted Supabase)
      if (options.statementTimeout !== undefined) {
        await tx`select set_config('statement_timeout', ${options.statementTimeout}, true)`;
      }
      await tx.unsafe(`set local role ${quoteIdent(role)}`);
      return await fn(tx);
    });
    // postgres.js widens the result type for array results; fn's own type is exact.
    return result as T;
  } finally {
    if (options.freshSession) await sql.end({ timeout: 5 });
  }
}
