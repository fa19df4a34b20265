/**
 * Partition-aware read of petri observations for frontends and dashboards:
 * pages of rows (keyset cursor) or per-day / per-site aggregates, run as the
 * caller so RLS decides. Contract: ../_shared/observations-contract.ts;
 * pipeline: ../_shared/observations.ts.
 */
import { handlePreflight } from "../_shared/cors.ts";
import { errorResponse } from "../_shared/errors.ts";
import { handleObservationsRequest } from "../_shared/observations.ts";

Deno.serve(async (req) => {
  const preflight = handlePreflight(req);
  if (preflight) return preflight;
  try {
    return await handleObservationsRequest(req);
  } catch (err) {
    return errorResponse(err);
  }
});
