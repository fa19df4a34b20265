/**
 * get-observations-optimized's two statements, each run as the caller inside withCallerContext
 * (../_shared/db.ts) with the session's TimeZone set to UTC (READ_SETTINGS), so timestamps and
 * "day" come out in UTC whatever the database's TimeZone is. Imports nothing Deno-only:
 * `npm run bench:edge` (scripts/bench-edge.ts) sends the very same statements as direct SQL to
 * measure the function's overhead over them.
 */
import type postgres from "postgres";
import { MAX_AGGREGATE_GROUPS, type ParsedObservationsRequest } from "../_shared/observations-contract.ts";

type Tx = postgres.TransactionSql;
export type PageRequest = Extract<ParsedObservationsRequest, { limit: number }>;
export type AggregateRequest = Extract<ParsedObservationsRequest, { mode: "aggregate" }>;

/** What the reads need of the session besides the caller's role and claims. */
export const READ_SETTINGS: Readonly<Record<string, string>> = Object.freeze({ timezone: "UTC" });

/**
 * A read's rows as the JSON text the database wrote (an array), with what the response says of
 * them: the function passes the text through into its body instead of parsing and serialising it
 * again (see jsonBody in ./observations.ts).
 */
export interface RowsJson {
  /** a JSON array, as json_agg wrote it */
  rowsJson: string;
  count: number;
}

// In the statements below every timestamp is bound as text and cast in SQL
// (`::text::timestamptz`): bound as timestamptz, postgres.js would round-trip it through a JS
// Date and drop the microseconds a date-time bound may carry.

/**
 * One page through the SQL read API, so the same pruning, validation and RLS
 * apply as for supabase.rpc('get_observations_optimized'). json_agg serialises
 * the rows in SQL, exactly as PostgREST does (numerics as numbers, timestamps
 * with microseconds, which the keyset cursor needs).
 *
 * A full page may be the last one: the same statement asks the read API for one
 * row past the page's oldest (only when the page is full), so the last page says
 * it is the last and the caller sends no request for an empty page. (p_limit stops
 * at 1000, so asking for limit + 1 rows is not possible for the largest pages.)
 * The next page's cursor is the page's oldest row's, in the read API's format
 * ("<created_at as to_json writes it, microseconds kept>|<observation_id>").
 */
export async function readPage(tx: Tx, p: PageRequest): Promise<RowsJson & { next_cursor: string | null }> {
  // the request's filters, the same for the page and for the one-row look-ahead past it
  const filters = tx`
        p_company_id    => ${p.company_id}::uuid,
        p_program_id    => ${p.program_id}::uuid,
        p_start_date    => ${p.start_date ?? null}::text::timestamptz,
        p_end_date      => ${p.end_date ?? null}::text::timestamptz,
        p_site_id       => ${p.site_id ?? null}::uuid,
        p_submission_id => ${p.submission_id ?? null}::uuid`;
  const [result] = await tx<{ rows: string; count: number; next_cursor: string | null }[]>`
    with page as materialized (
      select r.* from public.get_observations_optimized(${filters},
        p_limit         => ${p.limit}::integer,
        p_cursor        => ${p.cursor ?? null}::text) r
    ),
    oldest as (
      -- the cursor of the page's last row, as cursorOf writes it (to_json: ISO 8601, microseconds)
      select (to_json(p.created_at) #>> '{}') || '|' || p.observation_id as cursor
      from page p order by p.created_at, p.observation_id limit 1
    )
    select
      coalesce((select json_agg(p order by p.created_at desc, p.observation_id desc) from page p), '[]'::json)::text as rows,
      (select count(*) from page)::integer as count,
      case when (select count(*) from page) = ${p.limit}::integer
            and exists (
              select from oldest o, public.get_observations_optimized(${filters},
                p_limit         => 1,
                p_cursor        => o.cursor))
           then (select o.cursor from oldest o)
      end as next_cursor`;
  if (!result) throw new Error("the page statement returned no row");
  return { rowsJson: result.rows, count: result.count, next_cursor: result.next_cursor };
}

/**
 * Counts and growth_index statistics per UTC day or per site, from the SQL API
 * beside get_observations_optimized (public.get_observation_aggregates: the same
 * filter and checks, pruned the same way), read as the caller: RLS applies, and
 * the figures are fresh, unlike analytics.mv_daily_metrics. One group more than
 * the cap is asked for, to tell a truncated answer; the first MAX_AGGREGATE_GROUPS
 * (by day or site_id) are returned.
 */
export async function readAggregate(tx: Tx, p: AggregateRequest): Promise<RowsJson & { truncated: boolean }> {
  const [result] = await tx<{ rows: string; count: number; truncated: boolean }[]>`
    with a as materialized (
      select a.* from public.get_observation_aggregates(
      p_company_id    => ${p.company_id}::uuid,
      p_program_id    => ${p.program_id}::uuid,
      p_group_by      => ${p.group_by}::text,
      p_start_date    => ${p.start_date ?? null}::text::timestamptz,
      p_end_date      => ${p.end_date ?? null}::text::timestamptz,
      p_site_id       => ${p.site_id ?? null}::uuid,
      p_submission_id => ${p.submission_id ?? null}::uuid,
      p_limit         => ${MAX_AGGREGATE_GROUPS + 1}::integer) a
    ),
    shown as (select a.* from a order by a.day, a.site_id limit ${MAX_AGGREGATE_GROUPS}::integer)
    select
      -- each row without the other grouping's (null) column
      coalesce((select json_agg(to_jsonb(s) - ${p.group_by === "day" ? "site_id" : "day"}::text order by s.day, s.site_id) from shown s), '[]'::json)::text as rows,
      (select count(*) from shown)::integer as count,
      (select count(*) from a) > ${MAX_AGGREGATE_GROUPS}::integer as truncated`;
  if (!result) throw new Error("the aggregate statement returned no row");
  return { rowsJson: result.rows, count: result.count, truncated: result.truncated };
}
