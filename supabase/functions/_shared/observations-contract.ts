/**
 * The HTTP contract of get-observations-optimized: request and response schemas.
 *
 * Imported by the edge function (Deno, "zod" from supabase/functions/deno.json) and
 * by the frontend client in client/ (Node/bundlers, "zod" from node_modules), so
 * it must import nothing but "zod" and must not use Deno APIs. Every request and
 * response type either side uses is inferred from these schemas.
 *
 * `import * as z` (zod's own recommendation), not `import { z }`: bundlers cannot tree-shake the
 * `z` re-export, which puts all of zod, its locales included, into a frontend's bundle (measured
 * with esbuild: 454 KB minified against 90 KB; test/edge/client-package.test.ts keeps it down).
 */
import * as z from "zod";

/** Page size bounds: those of public.get_observations_optimized (p_limit 1..1000). */
export const MAX_LIMIT = 1000;
export const DEFAULT_LIMIT = 100;
/** Aggregate mode returns at most this many groups (days or sites); meta.truncated says when more matched. */
export const MAX_AGGREGATE_GROUPS = 1000;
/** Request bodies are a handful of short parameters. */
export const MAX_BODY_BYTES = 16 * 1024;

// ---------------------------------------------------------------------------
// Field schemas
// ---------------------------------------------------------------------------

const isMissing = (input: unknown): boolean => input === undefined;

// Any 8-4-4-4-12 hex id, as Postgres' uuid type accepts (not only RFC 4122 versions).
const uuid = (what: string) =>
  z.guid({ error: (issue) => (isMissing(issue.input) ? "is required" : `must be a UUID (${what})`) });

const isoDate = z.iso.date();
const isoDateTime = z.iso.datetime({ offset: true });

/** "2025-01-31" (midnight UTC) or "2025-01-31T12:00:00Z" / "…+02:00". */
const timestampParam = z
  .string({ error: "must be a string: an ISO 8601 date or date-time" })
  .max(40, "is too long for an ISO 8601 date-time")
  .refine(
    (value) => isoDate.safeParse(value).success || isoDateTime.safeParse(value).success,
    "must be an ISO 8601 date (YYYY-MM-DD) or date-time with a UTC offset (YYYY-MM-DDTHH:MM:SSZ)",
  )
  // Year 0 passes the ISO format but is no year to Postgres.
  .refine((value) => !value.startsWith("0000"), "must be in the years 0001 to 9999");

/** Splits a keyset cursor "<created_at>|<observation_id>"; null when malformed. */
export function parseCursor(cursor: string): { createdAt: string; observationId: string } | null {
  const parts = cursor.split("|");
  if (parts.length !== 2) return null;
  const [createdAt = "", observationId = ""] = parts;
  if (!isoDateTime.safeParse(createdAt).success || !z.guid().safeParse(observationId).success) return null;
  return { createdAt, observationId };
}

const cursorParam = z
  .string({ error: "must be a string: the next_cursor of the previous page" })
  .max(100, "is too long to be a cursor")
  .refine(
    (value) => parseCursor(value) !== null,
    'must be the next_cursor of the previous page ("<created_at>|<observation_id>")',
  );

const limitParam = z
  .int({ error: `must be an integer from 1 to ${MAX_LIMIT}` })
  .min(1, `must be an integer from 1 to ${MAX_LIMIT}`)
  .max(MAX_LIMIT, `must be an integer from 1 to ${MAX_LIMIT}`);

export const GroupBySchema = z.enum(["day", "site"], { error: 'must be "day" or "site"' });
export type GroupBy = z.infer<typeof GroupBySchema>;

/** Filters shared by both modes (the read API's parameters without p_). */
const filterFields = {
  company_id: uuid("the company whose observations you read"),
  program_id: uuid("a program of that company"),
  site_id: uuid("a site of the program").optional(),
  submission_id: uuid("a submission of the program").optional(),
  /** Inclusive lower bound on created_at. */
  start_date: timestampParam.optional(),
  /** Exclusive upper bound on created_at (as the SQL read API). */
  end_date: timestampParam.optional(),
};

function checkDateOrder(
  value: { start_date?: string | undefined; end_date?: string | undefined },
  ctx: z.RefinementCtx,
): void {
  if (value.start_date === undefined || value.end_date === undefined) return;
  if (Date.parse(value.end_date) < Date.parse(value.start_date)) {
    ctx.addIssue({
      code: "custom",
      path: ["end_date"],
      message: `must not be before start_date (${value.start_date}); the range is [start_date, end_date)`,
    });
  }
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/** mode "rows" (the default): one page of observations, newest first. */
export const ObservationsPageRequestSchema = z.strictObject({
  mode: z.literal("rows").optional(),
  ...filterFields,
  limit: limitParam.default(DEFAULT_LIMIT),
  /** next_cursor of the previous page; absent for the first page. */
  cursor: cursorParam.optional(),
});

/** mode "aggregate": counts and growth_index statistics per UTC day or per site. */
export const ObservationsAggregateRequestSchema = z.strictObject({
  mode: z.literal("aggregate"),
  ...filterFields,
  group_by: GroupBySchema.default("day"),
});

export const ObservationsRequestSchema = z
  .discriminatedUnion("mode", [ObservationsPageRequestSchema, ObservationsAggregateRequestSchema], {
    error: 'must be "rows" (the default) or "aggregate"',
  })
  .superRefine(checkDateOrder);

export type ObservationsPageRequest = z.input<typeof ObservationsPageRequestSchema>;
export type ObservationsAggregateRequest = z.input<typeof ObservationsAggregateRequestSchema>;
/** After validation: defaults applied. */
export type ParsedObservationsRequest = z.output<typeof ObservationsRequestSchema>;

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

/**
 * A row of the live observation table, exactly as PostgREST would serialise it
 * (numerics as numbers, timestamps as ISO strings with microseconds). Only the
 * keys the contract relies on are checked; the frontend client types the full
 * row from the generated database types.
 */
export const ObservationRowSchema = z.looseObject({
  observation_id: z.string(),
  created_at: z.string(),
});

const durationMs = z.number().nonnegative();

/**
 * Which database served the read: "replica" when the function has a read replica (the secret
 * DB_REPLICA_URL) that is up and within its lag bound, else "primary"; fallback says why a
 * configured replica was not used (null when it was, or when there is none). docs/replicas.md.
 */
export const READ_SOURCES = ["primary", "replica"] as const;
export type ReadSource = (typeof READ_SOURCES)[number];
export const REPLICA_FALLBACK_REASONS = [
  "replica_unreachable", "replica_lagging", "replica_lag_unknown", "replica_not_standby", "replica_lock_wait",
] as const;
export type ReplicaFallbackReason = (typeof REPLICA_FALLBACK_REASONS)[number];
const readRouting = {
  served_by: z.enum(READ_SOURCES),
  fallback: z.enum(REPLICA_FALLBACK_REASONS).nullable(),
};
export type ReadRouting = { served_by: ReadSource; fallback: ReplicaFallbackReason | null };

export const ObservationsPageResponseSchema = z.object({
  rows: z.array(ObservationRowSchema),
  /** Pass as `cursor` for the next page; null when no row follows this page (a full last page says so too). */
  next_cursor: z.string().nullable(),
  meta: z.object({
    mode: z.literal("rows"),
    count: z.int().nonnegative(),
    limit: z.int(),
    duration_ms: durationMs,
    ...readRouting,
  }),
});

const aggregateStats = {
  observation_count: z.int().nonnegative(),
  /** Observations with a growth_index (the statistics below ignore NULLs). */
  growth_index_count: z.int().nonnegative(),
  avg_growth_index: z.number().nullable(),
  min_growth_index: z.number().nullable(),
  max_growth_index: z.number().nullable(),
  /** Sample standard deviation; null below two values. */
  stddev_growth_index: z.number().nullable(),
  first_observation_at: z.string(),
  last_observation_at: z.string(),
};

export const DailyAggregateRowSchema = z.object({ day: isoDate, ...aggregateStats });
export const SiteAggregateRowSchema = z.object({ site_id: z.string(), ...aggregateStats });

const aggregateMeta = <G extends GroupBy>(groupBy: G) =>
  z.object({
    mode: z.literal("aggregate"),
    group_by: z.literal(groupBy),
    count: z.int().nonnegative(),
    /** More than MAX_AGGREGATE_GROUPS groups matched: only the first ones (by day or site_id) are returned. */
    truncated: z.boolean(),
    duration_ms: durationMs,
    ...readRouting,
  });

export const DailyAggregateResponseSchema = z.object({
  rows: z.array(DailyAggregateRowSchema),
  next_cursor: z.null(),
  meta: aggregateMeta("day"),
});

export const SiteAggregateResponseSchema = z.object({
  rows: z.array(SiteAggregateRowSchema),
  next_cursor: z.null(),
  meta: aggregateMeta("site"),
});

/**
 * The `code` of every error the function answers itself (docs/read-api.md, "Errors"); the body is
 * ErrorResponseSchema's. (client_closed_request, for a client that left before its body was read,
 * reaches no one.)
 */
export const OBSERVATIONS_ERROR_CODES = [
  "validation_failed",
  "bad_request",
  "unauthorized",
  "forbidden",
  "method_not_allowed",
  "payload_too_large",
  "unsupported_media_type",
  "query_timeout",
  "database_unavailable",
  "internal_error",
] as const;
export type ObservationsErrorCodeOfFunction = (typeof OBSERVATIONS_ERROR_CODES)[number];

export const ErrorResponseSchema = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    details: z.unknown().optional(),
  }),
});

export type ObservationRow = z.infer<typeof ObservationRowSchema>;
export type ObservationsPageResponse = z.infer<typeof ObservationsPageResponseSchema>;
export type DailyAggregateRow = z.infer<typeof DailyAggregateRowSchema>;
export type SiteAggregateRow = z.infer<typeof SiteAggregateRowSchema>;
export type DailyAggregateResponse = z.infer<typeof DailyAggregateResponseSchema>;
export type SiteAggregateResponse = z.infer<typeof SiteAggregateResponseSchema>;
export type ObservationsAggregateResponse = DailyAggregateResponse | SiteAggregateResponse;
export type ObservationsResponse = ObservationsPageResponse | ObservationsAggregateResponse;
