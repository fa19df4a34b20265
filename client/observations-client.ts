/**
 * Typed frontend client for the get-observations-optimized edge function.
 *
 *   const observations = createObservationsClient(supabase);
 *   const { data, error } = await observations.page({ company_id, program_id, limit: 200 });
 *   for await (const page of observations.pages({ company_id, program_id })) render(page.rows);
 *   const { data: perDay } = await observations.aggregate({ company_id, program_id, group_by: "day" });
 *
 * Wraps supabase.functions.invoke (so the signed-in user's token is sent). Request and
 * response types are inferred from the function's own zod schemas
 * (supabase/functions/_shared/observations-contract.ts); a row's columns come from the
 * generated database types. Parameters are validated before the request is sent, with
 * the same rules and error shape as the server.
 */
import type { SupabaseClient } from "@supabase/supabase-js";
import type { z } from "zod";
import {
  type DailyAggregateResponse,
  DailyAggregateResponseSchema,
  ErrorResponseSchema,
  type GroupBy,
  type ObservationsAggregateRequest,
  type ObservationsPageRequest,
  type ObservationsPageResponse,
  ObservationsPageResponseSchema,
  ObservationsRequestSchema,
  type SiteAggregateResponse,
  SiteAggregateResponseSchema,
} from "../supabase/functions/_shared/observations-contract.ts";
import { describeFieldIssues, fieldIssues, type IssueLike } from "../supabase/functions/_shared/validation.ts";
import type { Database } from "../supabase/types/database.types.ts";
import { EdgeFunctionError } from "./edge-function-error.ts";

export type {
  DailyAggregateResponse,
  DailyAggregateRow,
  GroupBy,
  SiteAggregateResponse,
  SiteAggregateRow,
} from "../supabase/functions/_shared/observations-contract.ts";

export const OBSERVATIONS_FUNCTION = "get-observations-optimized";

/** One observation, as public.get_observations_optimized returns it (generated database types). */
export type ObservationRow = Database["public"]["Functions"]["get_observations_optimized"]["Returns"][number];

export type PageParams = Omit<ObservationsPageRequest, "mode">;
export type AggregateParams<G extends GroupBy = GroupBy> = Omit<ObservationsAggregateRequest, "mode" | "group_by"> & {
  group_by?: G;
};

export type ObservationsPage = Omit<ObservationsPageResponse, "rows"> & { rows: ObservationRow[] };
export type AggregateResponse<G extends GroupBy> = G extends "site" ? SiteAggregateResponse : DailyAggregateResponse;

/** A failed call (status, code, message, details: see EdgeFunctionError). */
export class ObservationsError extends EdgeFunctionError {
  override name = "ObservationsError";
}

export type Result<T> = { data: T; error: null } | { data: null; error: ObservationsError };

/** Anything with supabase-js's functions client: a SupabaseClient of any schema. */
export interface FunctionsInvoker {
  functions: Pick<SupabaseClient["functions"], "invoke">;
}

// By name rather than instanceof: an app may bundle its own copy of supabase-js.
function responseOf(error: unknown): Response | null {
  const context = (error as { context?: unknown } | null)?.context;
  const name = (error as { name?: unknown } | null)?.name;
  if ((name === "FunctionsHttpError" || name === "FunctionsRelayError") && context instanceof Response) return context;
  return null;
}

async function toObservationsError(error: unknown): Promise<ObservationsError> {
  const response = responseOf(error);
  if (!response) {
    const message = error instanceof Error ? error.message : String(error);
    return new ObservationsError(null, "network_error", message);
  }
  let body: unknown = null;
  try {
    body = await response.clone().json();
  } catch {
    // not JSON: described by the status alone
  }
  const parsed = ErrorResponseSchema.safeParse(body);
  if (parsed.success) {
    const { code, message, details } = parsed.data.error;
    return new ObservationsError(response.status, code, message, details);
  }
  return new ObservationsError(response.status, "http_error", `HTTP ${response.status} ${response.statusText}`.trim());
}

function invalidParams(issues: readonly IssueLike[]): ObservationsError {
  const fields = fieldIssues(issues);
  return new ObservationsError(null, "validation_failed", `Invalid request: ${describeFieldIssues(fields)}`, {
    issues: fields,
  });
}

export function createObservationsClient(supabase: FunctionsInvoker) {
  async function call<S extends z.ZodType>(body: Record<string, unknown>, responseSchema: S): Promise<Result<z.output<S>>> {
    const checked = ObservationsRequestSchema.safeParse(body);
    if (!checked.success) return { data: null, error: invalidParams(checked.error.issues) };
    const { data, error } = await supabase.functions.invoke(OBSERVATIONS_FUNCTION, { method: "POST", body });
    if (error) return { data: null, error: await toObservationsError(error) };
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

  /** One page, newest first. Pass the previous page's next_cursor as `cursor` for the next. */
  async function page(params: PageParams): Promise<Result<ObservationsPage>> {
    // The schema checks the keys the cursor needs; the columns are the read API's (see ObservationRow).
    return (await call({ ...params }, ObservationsPageResponseSchema)) as Result<ObservationsPage>;
  }

  /** Every page from the first (or from `cursor`) to the last; throws ObservationsError on failure. */
  async function* pages(params: PageParams): AsyncGenerator<ObservationsPage, void, undefined> {
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

  return { page, pages, aggregate };
}

export type ObservationsClient = ReturnType<typeof createObservationsClient>;
