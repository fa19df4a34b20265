/**
 * get-observations-optimized's two statements, each run as the caller inside withCallerContext
 * (../_shared/db.ts) with the session's TimeZone set to UTC (READ_SETTINGS), so timestamps and
 * "day" come out in UTC whatever the database's TimeZone is. Imports nothing Deno-only:
 * `npm run bench:edge` (scripts/bench-edge.ts) sends the very same statements as direct SQL to
 * measure the function's overhead over them.
 */
import type postgres from "postgres";
import {
  type DailyAggregateRow,
  MAX_AGGREGATE_GROUPS,
  type ObservationRow,
  type ObservationsPageResponse,
  type ParsedObservationsRequest,
  type SiteAggregateRow,
} from "../_shared/observations-contract.ts";

type Tx = postgres.TransactionSql;
export type PageRequest = Extract<ParsedObservationsRequest, { limit: number }>;
export type AggregateRequest = Extract<ParsedObservationsRequest, { mode: "aggregate" }>;

/** What the reads need of the session besides the caller's role and claims. */
export const READ_SETTINGS: Readonly<Record<string, string>> = Object.freeze({ timezone: "UTC" });

/** Keyset cursor of a row, in the read API's format; created_at keeps its microseconds. */
function cursorOf(row: ObservationRow): string {
  return `${row.created_at}|${row.observation_id}`;
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
 */
export async function readPage(tx: Tx, p: PageRequest): Promise<Omit<ObservationsPageResponse, "meta">> {
  // the request's filters, the same for the page and for the one-row look-ahead past it
  const filters = tx`
        p_company_id    => ${p.company_id}::uuid,
        p_program_id    => ${p.program_id}::uuid,
        p_start_date    => ${p.start_date ?? null}::text::timestamptz,
        p_end_date      => ${p.end_date ?? null}::text::timestamptz,
        p_site_id       => ${p.site_id ?? null}::uuid,
        p_submission_id => ${p.submission_id ?? null}::uuid`;
  const [result] = await tx<{ rows: ObservationRow[]; more: boolean }[]>`
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
      coalesce((select json_agg(p order by p.created_at desc, p.observation_id desc) from page p), '[]'::json) as rows,
      case when (select count(*) from page) = ${p.limit}::integer
           then exists (
             select from oldest o, public.get_observations_optimized(${filters},
               p_limit         => 1,
               p_cursor        => o.cursor))
           else false
      end as more`;
  const rows = result?.rows ?? [];
  const last = rows.at(-1);
  return { rows, next_cursor: result?.more && last ? cursorOf(last) : null };
}

/**
 * Counts and growth_index statistics per UTC day or per site, from the SQL API
 * beside get_observations_optimized (public.get_observation_aggregates: the same
 * filter and checks, pruned the same way), read as the caller: RLS applies, and
 * the figures are fresh, unlike analytics.mv_daily_metrics. One group more than
 * the cap is asked for, to tell a truncated answer.
 */
export async function readAggregate(
  tx: Tx,
  p: AggregateRequest,
): Promise<{ rows: (DailyAggregateRow | SiteAggregateRow)[]; truncated: boolean }> {
  const [result] = await tx<{ rows: (DailyAggregateRow | SiteAggregateRow)[] }[]>`
    -- each row without the other grouping's (null) column
    select coalesce(json_agg(to_jsonb(a) - ${p.group_by === "day" ? "site_id" : "day"}::text order by a.day, a.site_id), '[]'::json) as rows
    from public.get_observation_aggregates(
      p_company_id    => ${p.company_id}::uuid,
      p_program_id    => ${p.program_id}::uuid,
      p_group_by      => ${p.group_by}::text,
      p_start_date    => ${p.start_date ?? null}::text::timestamptz,
      p_end_date      => ${p.end_date ?? null}::text::timestamptz,
      p_site_id       => ${p.site_id ?? null}::uuid,
      p_submission_id => ${p.submission_id ?? null}::uuid,
      p_limit         => ${MAX_AGGREGATE_GROUPS + 1}::integer) a`;
  const rows = result?.rows ?? [];
  return { rows: rows.slice(0, MAX_AGGREGATE_GROUPS), truncated: rows.length > MAX_AGGREGATE_GROUPS };
}
