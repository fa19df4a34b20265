/**
 * Typed frontend client for the read API: the get-observations-optimized edge function (pages,
 * aggregates) and the routed RPCs by id (get/update/delete_observation_by_id).
 *
 *   const observations = createObservationsClient(supabase);
 *   const { data, error } = await observations.page({ company_id, program_id, limit: 200 });
 *   for await (const page of observations.pages({ company_id, program_id })) render(page.rows);
 *   const { data: perDay } = await observations.aggregate({ company_id, program_id, group_by: "day" });
 *   const { data: row } = await observations.getById("petri_observations", id);
 *
 * Wraps supabase.functions.invoke and supabase.rpc (so the signed-in user's token is sent).
 * Request and response types are inferred from the function's own zod schemas
 * (supabase/functions/_shared/observations-contract.ts); rows are typed by the generated database
 * types (supabase/types/, or your project's own: createObservationsClient<Database>(supabase)).
 * Parameters are validated before the request is sent, with the same rules and error shape as the
 * server. Every failure, the function's or the platform's in front of it, comes back as an
 * ObservationsError with a code from ObservationsErrorCode.
 *
 * Imports use .js specifiers: `npm run build:client` compiles this file and what it imports into a
 * package of JavaScript and .d.ts files (dist/observations-client/).
 */
import type { SupabaseClient } from "@supabase/supabase-js";
import type { z } from "zod";
import {
  type DailyAggregateResponse,
  DailyAggregateResponseSchema,
  type GroupBy,
  OBSERVATIONS_ERROR_CODES,
  type ObservationsAggregateRequest,
  type ObservationsErrorCodeOfFunction,
  type ObservationsPageRequest,
  type ObservationsPageResponse,
  ObservationsPageResponseSchema,
  ObservationsRequestSchema,
  type SiteAggregateResponse,
  SiteAggregateResponseSchema,
} from "../supabase/functions/_shared/observations-contract.js";
import { describeFieldIssues, fieldIssues, type IssueLike } from "../supabase/functions/_shared/validation.js";
import type { Database, Json } from "../supabase/types/database.types.js";
import {
  EdgeFunctionError,
  errorCodeForStatus,
  readFailedResponse,
  responseOfInvokeError,
  type StatusErrorCode,
} from "./edge-function-error.js";

export type {
  DailyAggregateResponse,
  DailyAggregateRow,
  GroupBy,
  SiteAggregateResponse,
  SiteAggregateRow,
} from "../supabase/functions/_shared/observations-contract.js";
export type { Database } from "../supabase/types/database.types.js";
export type { Database as DatabaseAfterSwap } from "../supabase/types/database-after-swap.types.js";
export { EdgeFunctionError, type PlatformErrorDetails } from "./edge-function-error.js";

export const OBSERVATIONS_FUNCTION = "get-observations-optimized";

// ---------------------------------------------------------------------------
// Row types, from a generated Database type
// ---------------------------------------------------------------------------

/** The observation tables the routed RPCs serve. */
export type ObservationTable = "petri_observations" | "gasifier_observations";

/**
 * What the client reads of a generated Database type (`supabase gen types`): the bundle's own
 * (Database: before the swap, the default; DatabaseAfterSwap) or your project's.
 */
export interface ObservationsDatabase {
  public: {
    Tables: Record<ObservationTable, { Row: object; Update: object }>;
    Functions: { get_observations_optimized: { Returns: readonly object[] } };
  };
}

/** One observation, as public.get_observations_optimized returns it. */
export type ObservationRow<DB extends ObservationsDatabase = Database> =
  DB["public"]["Functions"]["get_observations_optimized"]["Returns"][number];

/** A row of an observation table, as the routed RPCs return it. */
export type ObservationTableRow<T extends ObservationTable, DB extends ObservationsDatabase = Database> =
  DB["public"]["Tables"][T]["Row"];

/** The columns update_observation_by_id may change (the table's Update type). */
export type ObservationChanges<T extends ObservationTable, DB extends ObservationsDatabase = Database> =
  DB["public"]["Tables"][T]["Update"];

// ---------------------------------------------------------------------------
// Parameters and responses
// ---------------------------------------------------------------------------

export type PageParams = Omit<ObservationsPageRequest, "mode">;
export type AggregateParams<G extends GroupBy = GroupBy> = Omit<ObservationsAggregateRequest, "mode" | "group_by"> & {
  group_by?: G;
};

export type ObservationsPage<DB extends ObservationsDatabase = Database> = Omit<ObservationsPageResponse, "rows"> & {
  rows: ObservationRow<DB>[];
};
export type AggregateResponse<G extends GroupBy> = G extends "site" ? SiteAggregateResponse : DailyAggregateResponse;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/**
 * Every code a failure can carry:
 *  - the function's own (docs/read-api.md, "Errors": validation_failed, bad_request, unauthorized, forbidden,
 *    method_not_allowed, payload_too_large, unsupported_media_type, query_timeout, database_unavailable,
 *    internal_error);
 *  - by HTTP status, for what the platform answers before or instead of the function (a 401 of the
 *    verify_jwt check is `unauthorized`; not_found, rate_limited, function_unavailable,
 *    function_timeout, resource_limit; http_error for a status without a code);
 *  - the client's own: validation_failed (status null: refused before sending), network_error (no
 *    response), invalid_response (a 200 that does not match the contract).
 */
export type ObservationsErrorCode = ObservationsErrorCodeOfFunction | StatusErrorCode | "network_error" | "invalid_response";

/** A failed call (status, code, message, details: see EdgeFunctionError). */
export class ObservationsError extends EdgeFunctionError<unknown, ObservationsErrorCode> {
  override name = "ObservationsError";
}

export type Result<T> = { data: T; error: null } | { data: null; error: ObservationsError };

const FUNCTION_CODES: ReadonlySet<string> = new Set(OBSERVATIONS_ERROR_CODES);

function isFunctionCode(code: string): code is ObservationsErrorCodeOfFunction {
  return FUNCTION_CODES.has(code);
}

async function fromInvokeError(error: unknown, response: unknown): Promise<ObservationsError> {
  const res = responseOfInvokeError(error, response);
  if (!res) {
    const message = error instanceof Error ? error.message : String(error);
    return new ObservationsError(null, "network_error", message);
  }
  const failed = await readFailedResponse(res);
  if (failed.fromFunction && isFunctionCode(failed.code)) {
    return new ObservationsError(failed.status, failed.code, failed.message, failed.details);
  }
  // A platform answer, or a `{ error }` body with a code the function does not answer (the local
  // gateway's worker_unavailable): the status decides, the original code stays in details.
  const details = failed.fromFunction ? { server_code: failed.code, server_details: failed.details } : failed.details;
  return new ObservationsError(failed.status, errorCodeForStatus(failed.status), failed.message, details);
}

/** The parts of supabase-js' PostgrestError the client reads. */
interface RpcError {
  code: string;
  message: string;
  details: string | null;
  hint: string | null;
}

// PostgREST answers a statement timeout (57014) with 500; the edge function calls it query_timeout.
const STATEMENT_TIMEOUT = "57014";

/**
 * A failed routed RPC, by PostgREST's HTTP status (its SQLSTATE table: P0001 and class 22 → 400,
 * 42501 → 401 for anon / 403 for a signed-in user, …), like the function's errors.
 */
function fromRpcError(status: number, error: RpcError): ObservationsError {
  const code = error.code === STATEMENT_TIMEOUT ? "query_timeout" : errorCodeForStatus(status);
  return new ObservationsError(status, code, error.message, { sqlstate: error.code, hint: error.hint, details: error.details });
}

function invalidParams(issues: readonly IssueLike[]): ObservationsError {
  const fields = fieldIssues(issues);
  return new ObservationsError(null, "validation_failed", `Invalid request: ${describeFieldIssues(fields)}`, {
    issues: fields,
  });
}

// ---------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------

type RoutedRpc = "get_observation_by_id" | "update_observation_by_id" | "delete_observation_by_id";
/** The routed RPCs' arguments, as the generated types declare them (a typed client checks them). */
type RoutedRpcArgs =
  | { p_table: string; p_observation_id: string }
  | { p_table: string; p_observation_id: string; p_changes: Json };

/**
 * Anything with supabase-js' functions client and rpc: a SupabaseClient of any schema, typed with
 * a generated Database or not.
 */
export interface SupabaseLike {
  functions: Pick<SupabaseClient["functions"], "invoke">;
  rpc(fn: RoutedRpc, args: RoutedRpcArgs): PromiseLike<{ data: unknown; error: RpcError | null; status: number }>;
}

export function createObservationsClient<DB extends ObservationsDatabase = Database>(supabase: SupabaseLike) {
  async function call<S extends z.ZodType>(body: Record<string, unknown>, responseSchema: S): Promise<Result<z.output<S>>> {
    const checked = ObservationsRequestSchema.safeParse(body);
    if (!checked.success) return { data: null, error: invalidParams(checked.error.issues) };
    const { data, error, response } = await supabase.functions.invoke(OBSERVATIONS_FUNCTION, { method: "POST", body });
    if (error) return { data: null, error: await fromInvokeError(error, response) };
    const parsed = responseSchema.safeParse(data);
    if (!parsed.success) {
      return {
        data: null,
        error: new ObservationsError(200, "invalid_response", "The function's response does not match its contract", {
          issues: fieldIssues(parsed.error.issues),
        }),
      };
    }
    return { data: parsed.data, error: null };
  }

  async function rpc<T>(fn: RoutedRpc, args: RoutedRpcArgs): Promise<Result<T>> {
    let answer: { data: unknown; error: RpcError | null; status: number };
    try {
      answer = await supabase.rpc(fn, args);
    } catch (err) {
      return { data: null, error: new ObservationsError(null, "network_error", err instanceof Error ? err.message : String(err)) };
    }
    // supabase-js reports a failed fetch as status 0
    if (answer.error && answer.status === 0) return { data: null, error: new ObservationsError(null, "network_error", answer.error.message) };
    if (answer.error) return { data: null, error: fromRpcError(answer.status, answer.error) };
    return { data: answer.data as T, error: null };
  }

  /** One page, newest first. Pass the previous page's next_cursor as `cursor` for the next (null: this is the last). */
  async function page(params: PageParams): Promise<Result<ObservationsPage<DB>>> {
    // The schema checks the keys the cursor needs; the columns are the read API's (see ObservationRow).
    return (await call({ ...params }, ObservationsPageResponseSchema)) as Result<ObservationsPage<DB>>;
  }

  /** Every page from the first (or from `cursor`) to the last, one request each; throws ObservationsError on failure. */
  async function* pages(params: PageParams): AsyncGenerator<ObservationsPage<DB>, void, undefined> {
    let cursor = params.cursor;
    for (;;) {
      const { data, error } = await page({ ...params, cursor });
      if (error) throw error;
      yield data;
      if (data.next_cursor === null) return;
      cursor = data.next_cursor;
    }
  }

  /** Counts and growth_index statistics per UTC day (default) or per site, over the live table. */
  async function aggregate<G extends GroupBy = "day">(params: AggregateParams<G>): Promise<Result<AggregateResponse<G>>> {
    const schema = params.group_by === "site" ? SiteAggregateResponseSchema : DailyAggregateResponseSchema;
    return (await call({ ...params, mode: "aggregate" }, schema)) as Result<AggregateResponse<G>>;
  }

  /** The row (null: no such row, or not one the caller may see), read from the one partition that holds it. */
  function getById<T extends ObservationTable>(table: T, observationId: string): Promise<Result<ObservationTableRow<T, DB> | null>> {
    return rpc("get_observation_by_id", { p_table: table, p_observation_id: observationId });
  }

  /** Changes the row's columns; the row as it is afterwards (null: no such row the caller may change). */
  function updateById<T extends ObservationTable>(
    table: T,
    observationId: string,
    changes: ObservationChanges<T, DB>,
  ): Promise<Result<ObservationTableRow<T, DB> | null>> {
    // (a generated Update type is JSON: strings, numbers, booleans, null, Json)
    return rpc("update_observation_by_id", { p_table: table, p_observation_id: observationId, p_changes: changes as Json });
  }

  /** true: the row was deleted; false: no such row the caller may delete. */
  function deleteById(table: ObservationTable, observationId: string): Promise<Result<boolean>> {
    return rpc("delete_observation_by_id", { p_table: table, p_observation_id: observationId });
  }

  return { page, pages, aggregate, getById, updateById, deleteById };
}

export type ObservationsClient<DB extends ObservationsDatabase = Database> = ReturnType<typeof createObservationsClient<DB>>;
