/**
 * get-observations-optimized: its parameters and the two reads behind it.
 *
 *   parameters (JSON body or query string) → zod
 *   → one transaction as the caller (role + request.jwt.claims, like PostgREST), on the read
 *     replica when one is configured and fresh enough, else on the primary (../_shared/replica.ts)
 *   → rows:      public.get_observations_optimized (the SQL read API), keyset-paginated
 *     aggregate: counts and growth_index statistics per UTC day or per site,
 *                over the live table under RLS
 *
 * index.ts checks the method and the caller, then calls readObservationsRequest and readObservations.
 */
import type { Tx } from "../_shared/db.ts";
import { readAsCaller } from "../_shared/replica.ts";
import { validationFailed } from "../_shared/errors.ts";
import type { ServiceClaims, UserClaims } from "../_shared/jwt.ts";
import {
  type DailyAggregateRow,
  MAX_AGGREGATE_GROUPS,
  MAX_BODY_BYTES,
  type ObservationRow,
  type ObservationsPageResponse,
  ObservationsRequestSchema,
  type ObservationsResponse,
  type ParsedObservationsRequest,
  type SiteAggregateRow,
} from "../_shared/observations-contract.ts";
import { queryObject, readJsonObject } from "../_shared/request.ts";
import { retryRecoveryConflicts } from "../_shared/retry.ts";
import { fieldIssues } from "../_shared/validation.ts";

type PageRequest = Extract<ParsedObservationsRequest, { limit: number }>;
type AggregateRequest = Extract<ParsedObservationsRequest, { mode: "aggregate" }>;

// supabase-js adds this when a region is forced; it is not a parameter of ours.
const PLATFORM_QUERY_PARAMETERS = ["forceFunctionRegion"];

// ---------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------

/**
 * Query strings carry only text: a limit of digits becomes a number so GET and
 * POST share one schema; anything else stays text and the schema names it.
 */
function fromQueryString(params: Record<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...params };
  if (typeof params.limit === "string" && /^\d{1,9}$/.test(params.limit)) out.limit = Number(params.limit);
  return out;
}

/** Validated parameters of a GET (query string) or POST (JSON body) request. */
export async function readObservationsRequest(req: Request): Promise<ParsedObservationsRequest> {
  const raw = req.method === "GET"
    ? fromQueryString(queryObject(new URL(req.url), PLATFORM_QUERY_PARAMETERS))
    : await readJsonObject(req, MAX_BODY_BYTES);
  return parseObservationsRequest(raw);
}

function parseObservationsRequest(raw: unknown): ParsedObservationsRequest {
  const parsed = ObservationsRequestSchema.safeParse(raw);
  if (!parsed.success) throw validationFailed(fieldIssues(parsed.error.issues));
  return parsed.data;
}

// ---------------------------------------------------------------------------
// Reads (inside the caller's transaction)
// ---------------------------------------------------------------------------

/** Keyset cursor of a row, in the read API's format; created_at keeps its microseconds. */
function cursorOf(row: ObservationRow): string {
  return `${row.created_at}|${row.observation_id}`;
}

// In the statements below every timestamp is bound as text and cast in SQL
// (`::text::timestamptz`): bound as timestamptz, postgres.js would round-trip it through a JS
// Date and drop the microseconds a date-time bound may carry.

// Output of timestamps (and "day") in UTC whatever the database's TimeZone is.
async function useUtc(tx: Tx): Promise<void> {
  await tx`select set_config('timezone', 'UTC', true)`;
}

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
async function readPage(tx: Tx, p: PageRequest): Promise<Omit<ObservationsPageResponse, "meta">> {
  await useUtc(tx);
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
async function readAggregate(
  tx: Tx,
  p: AggregateRequest,
): Promise<{ rows: (DailyAggregateRow | SiteAggregateRow)[]; truncated: boolean }> {
  await useUtc(tx);
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

// ---------------------------------------------------------------------------
// The response
// ---------------------------------------------------------------------------

function elapsedMs(startedAt: number): number {
  return Math.round((performance.now() - startedAt) * 10) / 10;
}

/** The response body for validated parameters, read as the caller; startedAt: when the request arrived. */
export async function readObservations(
  caller: UserClaims | ServiceClaims,
  params: ParsedObservationsRequest,
  startedAt: number,
): Promise<ObservationsResponse> {
  if (params.mode === "aggregate") {
    const { result: { rows, truncated }, routing } = await retryRecoveryConflicts(() => readAsCaller(caller, (tx) => readAggregate(tx, params)));
    const meta = { mode: "aggregate" as const, count: rows.length, truncated, duration_ms: elapsedMs(startedAt), ...routing };
    // The statement's grouping column decides the row shape.
    return params.group_by === "day"
      ? { rows: rows as DailyAggregateRow[], next_cursor: null, meta: { ...meta, group_by: "day" } }
      : { rows: rows as SiteAggregateRow[], next_cursor: null, meta: { ...meta, group_by: "site" } };
  }

  const { result: page, routing } = await retryRecoveryConflicts(() => readAsCaller(caller, (tx) => readPage(tx, params)));
  return {
    ...page,
    meta: { mode: "rows", count: page.rows.length, limit: params.limit, duration_ms: elapsedMs(startedAt), ...routing },
  };
}
